
/*
 * Parley core: the backend clients every Parley nginx module uses.
 *
 * All clients live per worker (created in init_process, destroyed in
 * exit_process) and never block the event loop.  The contract shared by
 * every asynchronous call below:
 *
 *   - a call returns NGX_OK when the operation was started and its handler
 *     WILL be called exactly once, later, from the event loop (never from
 *     inside the call itself);
 *   - any other return means the handler will NOT be called; the error text
 *     is left in the client's "last error" (ngx_parley_*_last_error());
 *   - a started operation may be cancelled with its cancel function; after
 *     cancel the handler is never called, and the caller may free the memory
 *     its data pointer refers to at once.  Cancellation is how a request
 *     that is finalised early (client gone) detaches from a backend.
 *
 * Operation records are allocated by the client, not from the caller's
 * pool, because a reply may outlive the request that asked for it.
 */


#ifndef _NGX_HTTP_PARLEY_CORE_H_INCLUDED_
#define _NGX_HTTP_PARLEY_CORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mysql.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <librdkafka/rdkafka.h>


#define NGX_PARLEY_ERRLEN  256


/* configuration of one backend, parsed from nginx.conf */

typedef struct {
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 timeout;          /* per query / command */
    ngx_msec_t                 reconnect_min;    /* backoff bounds */
    ngx_msec_t                 reconnect_max;
} ngx_parley_timeouts_t;


typedef struct {
    ngx_str_t                  host;             /* NUL-terminated */
    in_port_t                  port;
    ngx_str_t                  socket;           /* unix socket, or empty;
                                                    NUL-terminated */
    ngx_str_t                  user;             /* NUL-terminated */
    ngx_str_t                  password;         /* NUL-terminated */
    ngx_str_t                  database;         /* NUL-terminated */
    ngx_uint_t                 pool_size;        /* connections per worker */
    ngx_uint_t                 queue_size;       /* waiting acquires */
    ngx_parley_timeouts_t      timeouts;
    u_char                    *file;             /* where it was declared */
    ngx_uint_t                 line;
} ngx_parley_db_conf_t;


#define NGX_PARLEY_REDIS_CACHE    0
#define NGX_PARLEY_REDIS_SESSION  1
#define NGX_PARLEY_REDIS_PUBSUB   2
#define NGX_PARLEY_REDIS_ROLES    3


typedef struct {
    ngx_str_t                  name;             /* "cache,session" etc. */
    ngx_str_t                  host;             /* NUL-terminated */
    in_port_t                  port;
    ngx_str_t                  password;         /* empty: no AUTH */
    ngx_int_t                  db;               /* SELECT index, 0 */
    ngx_uint_t                 roles;            /* bit mask of 1 << role */
    ngx_parley_timeouts_t      timeouts;
} ngx_parley_redis_conf_t;


typedef struct {
    ngx_str_t                  brokers;          /* NUL-terminated list */
    ngx_array_t               *properties;       /* ngx_keyval_t, NUL-term */
    ngx_msec_t                 timeout;          /* metadata / delivery */
    ngx_msec_t                 flush_timeout;    /* on worker exit */
    ngx_str_t                  health_topic;     /* NUL-terminated, or
                                                    empty: no heartbeat */
} ngx_parley_kafka_conf_t;


/* runtime clients, one set per worker */

typedef struct ngx_parley_db_s         ngx_parley_db_t;
typedef struct ngx_parley_db_conn_s    ngx_parley_db_conn_t;
typedef struct ngx_parley_db_wait_s    ngx_parley_db_wait_t;
typedef struct ngx_parley_redis_s      ngx_parley_redis_t;
typedef struct ngx_parley_redis_cmd_s  ngx_parley_redis_cmd_t;
typedef struct ngx_parley_kafka_s      ngx_parley_kafka_t;
typedef struct ngx_parley_kafka_op_s   ngx_parley_kafka_op_t;


typedef struct {
    ngx_parley_db_conf_t      *db;               /* NULL: not configured */
    ngx_array_t                redis;            /* ngx_parley_redis_conf_t */
    ngx_parley_kafka_conf_t   *kafka;            /* NULL: not configured */
    ngx_flag_t                 pubsub_sharded;   /* SPUBLISH/SSUBSCRIBE */

    /* set in init_process */
    ngx_parley_db_t           *db_client;
    ngx_parley_redis_t       **redis_clients;    /* one per redis conf */
    ngx_parley_redis_t        *redis_role[NGX_PARLEY_REDIS_ROLES];
    ngx_parley_kafka_t        *kafka_client;
} ngx_http_parley_core_main_conf_t;


extern ngx_module_t  ngx_http_parley_core_module;


/* ------------------------------------------------------------------ */
/* SQL store (MySQL protocol: MariaDB in development, TiDB in production) */

typedef struct {
    ngx_int_t                  status;    /* NGX_OK, NGX_ERROR, NGX_ETIMEDOUT */
    unsigned int               errcode;   /* mysql_errno() or 0 */
    const char                *error;     /* NUL-terminated, never NULL */
    MYSQL_RES                 *res;       /* rows, or NULL; freed after the
                                             handler returns unless the
                                             handler sets it to NULL to keep
                                             it (then mysql_free_result is
                                             the handler's) */
    uint64_t                   affected_rows;
    unsigned                   retryable:1;  /* lost connection, timeout,
                                                deadlock, write conflict */
} ngx_parley_db_result_t;


/*
 * Called once a connection is ours (rc == NGX_OK, conn set), or when none
 * could be had within connect_timeout (rc == NGX_ETIMEDOUT) or the connect
 * attempt failed (rc == NGX_ERROR); then conn is NULL and err says why.
 */
typedef void (*ngx_parley_db_acquire_pt)(ngx_parley_db_conn_t *conn,
    ngx_int_t rc, const char *err, void *data);

/* Called once per query; conn stays acquired by the caller. */
typedef void (*ngx_parley_db_query_pt)(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *result, void *data);


ngx_parley_db_t *ngx_parley_db_create(ngx_cycle_t *cycle,
    ngx_parley_db_conf_t *conf);
void ngx_parley_db_destroy(ngx_parley_db_t *db);

/*
 * NGX_OK: the handler will be called with a connection (possibly right after
 * one becomes free or connects); *wait identifies the pending acquire for
 * ngx_parley_db_acquire_cancel().  NGX_BUSY: the wait queue is full.
 */
ngx_int_t ngx_parley_db_acquire(ngx_parley_db_t *db,
    ngx_parley_db_acquire_pt handler, void *data, ngx_parley_db_wait_t **wait);
void ngx_parley_db_acquire_cancel(ngx_parley_db_wait_t *wait);

/*
 * One statement on an acquired, idle connection.  The SQL need not be
 * NUL-terminated and must stay valid until the handler runs or the query is
 * cancelled.  A timed-out query closes the connection (the server may still
 * run it); the result then says NGX_ETIMEDOUT and retryable.
 */
ngx_int_t ngx_parley_db_query(ngx_parley_db_conn_t *conn, u_char *sql,
    size_t len, ngx_parley_db_query_pt handler, void *data);

/*
 * Hands the connection back.  A connection released mid-query, inside an
 * open transaction (the caller says so with broken = 1) or after an error
 * that lost it is closed and replaced instead of reused; after release no
 * handler of that connection is called any more (release cancels).
 */
void ngx_parley_db_release(ngx_parley_db_conn_t *conn, ngx_uint_t broken);

/* Escapes src for a quoted SQL literal; dst needs 2 * len + 1 bytes. */
size_t ngx_parley_db_escape(ngx_parley_db_conn_t *conn, u_char *dst,
    u_char *src, size_t len);

const char *ngx_parley_db_last_error(ngx_parley_db_t *db);


/* ------------------------------------------------------------------ */
/* Redis (hiredis async on the nginx event loop) */

/*
 * status NGX_OK: reply is the server's answer (which may itself be an error
 * reply, type REDIS_REPLY_ERROR); it is freed after the handler returns;
 * err is NULL.  NGX_ETIMEDOUT or NGX_ERROR: reply is NULL, err says why --
 * and the command may still have run on the server: a non-idempotent
 * command that timed out has an unknown outcome.
 */
typedef void (*ngx_parley_redis_reply_pt)(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data);

ngx_parley_redis_t *ngx_parley_redis_create(ngx_cycle_t *cycle,
    ngx_parley_redis_conf_t *conf);
void ngx_parley_redis_destroy(ngx_parley_redis_t *redis);

/*
 * NGX_DECLINED: not connected right now (reconnect is scheduled).  *cmd is
 * valid until its handler has run; cancel it only before that.  Commands
 * that change the connection's mode (SUBSCRIBE, MONITOR, ...) are refused.
 */
ngx_int_t ngx_parley_redis_command_argv(ngx_parley_redis_t *redis,
    ngx_parley_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen, ngx_parley_redis_cmd_t **cmd);
void ngx_parley_redis_cancel(ngx_parley_redis_cmd_t *cmd);

ngx_str_t *ngx_parley_redis_name(ngx_parley_redis_t *redis);
const char *ngx_parley_redis_last_error(ngx_parley_redis_t *redis);


/* ------------------------------------------------------------------ */
/* Kafka producer (librdkafka, delivery reports drained on the loop) */

/*
 * Delivery report: status NGX_OK once the broker acknowledged (acks=all),
 * otherwise NGX_ERROR with err.  For metadata probes partition and offset
 * are -1 and err describes the cluster on success ("3 brokers").
 */
typedef void (*ngx_parley_kafka_pt)(ngx_int_t status, const char *err,
    int32_t partition, int64_t offset, void *data);

ngx_parley_kafka_t *ngx_parley_kafka_create(ngx_cycle_t *cycle,
    ngx_parley_kafka_conf_t *conf);
void ngx_parley_kafka_destroy(ngx_parley_kafka_t *kafka);

/* The payload and key are copied. */
ngx_int_t ngx_parley_kafka_produce(ngx_parley_kafka_t *kafka,
    const char *topic, u_char *key, size_t key_len, u_char *payload,
    size_t len, ngx_parley_kafka_pt handler, void *data,
    ngx_parley_kafka_op_t **op);

/* A metadata round trip to the cluster, run on the thread pool. */
ngx_int_t ngx_parley_kafka_metadata(ngx_parley_kafka_t *kafka,
    ngx_parley_kafka_pt handler, void *data, ngx_parley_kafka_op_t **op);
void ngx_parley_kafka_cancel(ngx_parley_kafka_op_t *op);

const char *ngx_parley_kafka_last_error(ngx_parley_kafka_t *kafka);


/* ------------------------------------------------------------------ */
/* shared helpers of the client files */

/* Next reconnect delay after `failures` consecutive failures. */
ngx_msec_t ngx_parley_reconnect_delay(ngx_parley_timeouts_t *t,
    ngx_uint_t failures);

/* Wraps an fd owned by a library in an nginx connection (no fd close). */
ngx_connection_t *ngx_parley_wrap_fd(ngx_socket_t fd, ngx_log_t *log);
void ngx_parley_unwrap_fd(ngx_connection_t *c);


#endif /* _NGX_HTTP_PARLEY_CORE_H_INCLUDED_ */
