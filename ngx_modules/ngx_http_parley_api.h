
/*
 * Parley REST API: what endpoint files share.
 *
 * An endpoint is a route (method, path pattern, who may call it) and a
 * handler.  The handler validates its input, then drives the SQL store
 * through a chain of steps: each ngx_http_parley_api_sql() call runs one
 * statement on the request's connection and calls the next step with the
 * result.  The chain ends with ngx_http_parley_api_reply() or
 * ngx_http_parley_api_fail(), which answer the client, release the
 * connection and finalize the request.  Any SQL failure a step did not ask
 * to see ends the chain with the right error (503 for an unavailable or
 * slow store, retryable) and rolls an open transaction back; a transaction
 * that hits a deadlock or write conflict is run again from its start.
 */


#ifndef _NGX_HTTP_PARLEY_API_H_INCLUDED_
#define _NGX_HTTP_PARLEY_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_parley_core.h"
#include "parley_route.h"


/* who may call a route */
#define NGX_PARLEY_AUTH_ADMIN      0x01   /* tenant API key */
#define NGX_PARLEY_AUTH_USER       0x02   /* user token, or API key acting
                                             for a user (X-Parley-User) */
#define NGX_PARLEY_AUTH_PLATFORM   0x04   /* operator credential */


typedef struct ngx_http_parley_api_req_s  ngx_http_parley_api_req_t;

typedef void (*ngx_http_parley_api_handler_pt)(ngx_http_parley_api_req_t *ar);
typedef void (*ngx_http_parley_api_step_pt)(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

/*
 * Where the answer goes when the caller is not an HTTP request (the
 * WebSocket gateway runs routes for its clients): status and the JSON text
 * exactly as an HTTP client would get it (empty for 204), in ar->pool.
 */
typedef void (*ngx_http_parley_api_sink_pt)(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *body, size_t len);


typedef struct {
    ngx_uint_t                       method;     /* NGX_HTTP_GET, ... */
    const char                      *pattern;    /* "/v1/users/{uid}" */
    ngx_uint_t                       auth;       /* NGX_PARLEY_AUTH_* */
    ngx_http_parley_api_handler_pt   handler;
    const char                      *operation;  /* OpenAPI operationId */
    ngx_uint_t                       body;       /* expects a JSON body */
} ngx_http_parley_api_route_t;


typedef struct {
    size_t                           max_body;
    size_t                           max_text;
    size_t                           max_metadata;
    ngx_uint_t                       max_depth;
    ngx_uint_t                       page_default;
    ngx_uint_t                       page_max;
    ngx_uint_t                       max_members;
    ngx_msec_t                       token_ttl;
    ngx_msec_t                       cache_ttl;
    ngx_str_t                        platform_key_hash;  /* hex SHA-256 */
    ngx_str_t                        token_key;  /* parley_token_key file */
    ngx_flag_t                       enable;
} ngx_http_parley_api_loc_conf_t;


/* what a tenant's cache entry holds (see ngx_http_parley_api_auth.c) */
typedef struct ngx_http_parley_tenant_s  ngx_http_parley_tenant_t;
typedef struct ngx_http_parley_access_s  ngx_http_parley_access_t;
typedef struct ngx_http_parley_event_s   ngx_http_parley_event_t;


struct ngx_http_parley_api_req_s {
    ngx_http_request_t              *request;
    ngx_http_parley_api_loc_conf_t  *conf;
    ngx_http_parley_core_main_conf_t *core;
    const ngx_http_parley_api_route_t *route;
    ngx_pool_t                      *pool;
    ngx_log_t                       *log;

    parley_route_param_t             params[PARLEY_ROUTE_MAX_PARAMS];
    size_t                           nparams;

    json_t                          *body;       /* request body or NULL */

    /* the caller, once authenticated */
    ngx_uint_t                       auth;       /* one NGX_PARLEY_AUTH_* */
    uint64_t                         tenant_id;
    ngx_str_t                        user_id;    /* empty for admin calls */
    ngx_http_parley_tenant_t        *tenant;
    unsigned                         acting_admin:1; /* key + X-Parley-User */
    void                            *auth_ctx;

    /* the SQL chain */
    ngx_parley_db_conn_t            *conn;
    ngx_parley_db_wait_t            *wait;
    u_char                          *sql;
    size_t                           sql_len;
    ngx_http_parley_api_step_pt      next;
    ngx_uint_t                       sql_errors_ok;
    ngx_http_parley_api_handler_pt   txn_start;  /* rerun on conflict */
    ngx_uint_t                       txn_attempts;
    void                            *data_next;  /* step after COMMIT */
    ngx_uint_t                       fail_status; /* answer held back */
    u_char                          *fail_body;   /* while a ROLLBACK */
    size_t                           fail_len;    /* runs */
    unsigned                         in_txn:1;
    unsigned                         done:1;
    unsigned                         finalized:1;

    /* pending Redis or Kafka work to detach if the request goes away */
    ngx_parley_redis_cmd_t          *redis_cmd;

    ngx_http_parley_access_t        *access;     /* see _api_access.h */
    ngx_http_parley_event_t         *event;

    /* events to publish to the gateways once the transaction commits */
    ngx_array_t                     *published;

    /* with request == NULL: who gets the answer */
    ngx_http_parley_api_sink_pt      sink;
    void                            *sink_data;
    uint64_t                         origin;     /* connection that asked */

    void                            *data;       /* the endpoint's state */
};


extern ngx_module_t  ngx_http_parley_api_module;


/* ---- callers without an HTTP request -------------------------------- */

/*
 * Prepares ar (zeroed by the caller) for a caller that is not an HTTP
 * request: answers go to sink; the pool's cleanup detaches ar from the
 * store (destroying the pool cancels whatever is still running).
 */
ngx_int_t ngx_http_parley_api_req_init(ngx_http_parley_api_req_t *ar,
    ngx_pool_t *pool, ngx_log_t *log, ngx_http_parley_core_main_conf_t *core,
    ngx_http_parley_api_loc_conf_t *conf, ngx_http_parley_api_sink_pt sink,
    void *sink_data);

/*
 * Runs the route for method and path (no query string) with body (stolen,
 * may be NULL) for the caller already in ar (auth, tenant_id, user_id), the
 * same handler and checks an HTTP request gets.  The answer, also "no such
 * route" or "not allowed", goes to the sink.
 */
void ngx_http_parley_api_invoke(ngx_http_parley_api_req_t *ar,
    ngx_uint_t method, u_char *path, size_t len, json_t *body);


/* ---- answers ------------------------------------------------------- */

/*
 * Sends body (a reference is stolen) with status and ends the request.  An
 * answer given inside a transaction abandons it: it is rolled back first.
 */
void ngx_http_parley_api_reply(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, json_t *body);

/*
 * Sends the one error shape:
 *   {"error":{"code":"...","message":"...","field":"...","retryable":b}}
 * field may be NULL.  message is a printf-style format (ngx_vslprintf).
 * Inside a transaction the answer waits for a ROLLBACK, so that a refused
 * change leaves nothing behind and the connection goes back to the pool.
 */
void ngx_http_parley_api_fail(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, const char *code, const char *field,
    const char *fmt, ...);

void ngx_http_parley_api_vfail(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, const char *code, const char *field,
    const char *fmt, va_list args);

/* As _fail, except that 204 is an idempotent no-op answered with no body. */
void ngx_http_parley_api_refuse(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, const char *code, const char *field,
    const char *fmt, ...);

/* 503 "unavailable", retryable, naming the backend in the message. */
void ngx_http_parley_api_unavailable(ngx_http_parley_api_req_t *ar,
    const char *what, const char *detail);


/* ---- SQL chain ----------------------------------------------------- */

/*
 * Formats and runs one statement, then calls next.  Format directives:
 *   %L   ngx_str_t *   quoted, escaped string literal
 *   %N   ngx_str_t *   as %L, or NULL when its data is NULL
 *   %Q   const char *  quoted, escaped string literal (NUL-terminated)
 *   %J   json_t *      its compact JSON text as a literal, or NULL
 *   %U   uint64_t      decimal
 *   %D   int64_t       decimal
 *   %S   const char *  raw SQL text (trusted fragments only)
 *   %%   a percent sign
 */
void ngx_http_parley_api_sql(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *fmt, ...);

/* As above, but next also sees failed statements (res->status). */
void ngx_http_parley_api_sql_any(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *fmt, ...);

/*
 * Starts a transaction whose body begins with start(ar); on a deadlock or
 * write conflict anywhere inside it, it is rolled back and start(ar) runs
 * again (a bounded number of times).  Steps must keep their state in
 * ar->data such that a rerun starts clean.
 */
void ngx_http_parley_api_begin(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_handler_pt start);

/* Commits, then calls next with the COMMIT's result. */
void ngx_http_parley_api_commit(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next);

/*
 * Hands the store connection back between statements (outside a
 * transaction) while the chain waits for something else; the next
 * statement acquires one again.
 */
void ngx_http_parley_api_release(ngx_http_parley_api_req_t *ar);

/* Rolls back, keeping the connection; then calls next. */
void ngx_http_parley_api_rollback(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next);


/* ---- helpers for steps --------------------------------------------- */

/* A path parameter by position. */
ngx_str_t ngx_http_parley_api_param(ngx_http_parley_api_req_t *ar,
    ngx_uint_t i);

/* A request header's value by name (case-insensitive), or NULL. */
ngx_str_t *ngx_http_parley_api_header(ngx_http_request_t *r,
    const char *name, size_t len);

/* A query-string argument, decoded; NGX_DECLINED when absent. */
ngx_int_t ngx_http_parley_api_arg(ngx_http_parley_api_req_t *ar,
    const char *name, ngx_str_t *value);

/*
 * Pages ordered by a string key (user ids) carry the last key of a page,
 * base64url, as the opaque cursor.  _arg_string_cursor reads ?cursor= into
 * *after ("" when absent) and answers 400 itself on a bad one;
 * _string_cursor_json makes the next_cursor value.
 */
ngx_int_t ngx_http_parley_api_arg_string_cursor(ngx_http_parley_api_req_t *ar,
    ngx_str_t *after);
json_t *ngx_http_parley_api_string_cursor_json(ngx_http_parley_api_req_t *ar,
    const char *last, size_t len);

/*
 * Pages ordered by a 64-bit id carry the last id as their cursor (see
 * _reply_id_page): ?cursor= into *id, left as the caller set it when absent;
 * 400 answered here when it is not a positive decimal id.
 */
ngx_int_t ngx_http_parley_api_arg_id_cursor(ngx_http_parley_api_req_t *ar,
    uint64_t *id);

/*
 * ?<name>= as a LIKE pattern (its own % and _ literal): "<q>%" or, with
 * contains, "%<q>%"; "%" when absent or empty.  Answers 400 itself when the
 * text is longer than 128 bytes.
 */
ngx_int_t ngx_http_parley_api_arg_like(ngx_http_parley_api_req_t *ar,
    const char *name, ngx_uint_t contains, ngx_str_t *like);

/* "limit": page size from the query, bounded by the directives. */
ngx_int_t ngx_http_parley_api_limit(ngx_http_parley_api_req_t *ar,
    ngx_uint_t *limit);

/* Row access: NULL column -> empty string with *is_null set. */
json_t *ngx_http_parley_api_col_string(MYSQL_ROW row, unsigned long *len,
    unsigned i);
json_t *ngx_http_parley_api_col_json(MYSQL_ROW row, unsigned long *len,
    unsigned i);
uint64_t ngx_http_parley_api_col_u64(MYSQL_ROW row, unsigned i);

/*
 * Answers one page of rows read with LIMIT limit + 1, ordered by the 64-bit
 * id in column 0: {"<name>": [row(...), ...], "next_cursor": "<last id>"
 * or null}.  The extra row only says that a next page exists.
 */
typedef json_t *(*ngx_http_parley_api_row_pt)(MYSQL_ROW row,
    unsigned long *len);

void ngx_http_parley_api_reply_id_page(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res, ngx_uint_t limit, const char *name,
    ngx_http_parley_api_row_pt render);

/* A fresh time-ordered id (see ngx_parley_module.h). */
ngx_int_t ngx_http_parley_api_new_id(ngx_http_parley_api_req_t *ar,
    uint64_t *id);

/* Decimal text of a 64-bit id, allocated from the request pool. */
json_t *ngx_http_parley_api_id_json(uint64_t id);


/*
 * Inserts the outbox row of an event (steals data) inside the current
 * transaction, then calls next.  key orders the event in its topic (a
 * conversation id, or a user id).
 */
void ngx_http_parley_api_outbox(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *topic, ngx_str_t *key,
    const char *type, json_t *data);


/*
 * Publishing to the gateways (ngx_http_parley_api_publish.c): log entries
 * are queued while the transaction runs and published once it committed;
 * transient events go at once.  Both are fire-and-forget: a gateway that
 * misses one finds the log entry in the store (docs/realtime.md).
 */
void ngx_http_parley_api_publish_queue(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t event_seq, const char *type, ngx_str_t *subject,
    json_t *entry);
void ngx_http_parley_api_publish_flush(ngx_http_parley_api_req_t *ar);
ngx_int_t ngx_http_parley_publish(ngx_http_parley_core_main_conf_t *core,
    u_char *channel, size_t channel_len, u_char *msg, size_t len);


/* ---- authentication (ngx_http_parley_api_auth.c) -------------------- */

/*
 * Finds who calls and calls done(ar) once ar->auth, ar->tenant_id and
 * ar->user_id are set; answers 401/403 itself otherwise.
 */
void ngx_http_parley_api_authenticate(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_handler_pt done);

void ngx_http_parley_api_auth_cleanup(ngx_http_parley_api_req_t *ar);

/* The caller's token expiry (Unix seconds), 0 for API keys. */
int64_t ngx_http_parley_api_auth_expiry(ngx_http_parley_api_req_t *ar);
void ngx_http_parley_api_auth_set_token(ngx_http_parley_api_req_t *ar,
    int64_t iat, int64_t exp);

/* Drops this worker's cached token state of the calling user. */
void ngx_http_parley_api_auth_forget(ngx_http_parley_api_req_t *ar);

/* The HS256 secret of a tenant's Parley-issued user tokens. */
ngx_int_t ngx_http_parley_api_token_secret(ngx_http_parley_api_req_t *ar,
    uint64_t tenant_id, u_char secret[32]);

/* The worker's cache of credentials (ngx_http_parley_api_cache.h). */
struct ngx_http_parley_cache_s;
extern struct ngx_http_parley_cache_s  *ngx_http_parley_auth_cache;


/* ---- route tables of the endpoint files ---------------------------- */

extern ngx_http_parley_api_route_t  ngx_http_parley_api_users_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_blocks_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_keys_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_platform_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_conversations_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_members_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_messages_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_reactions_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_receipts_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_sync_routes[];
extern ngx_http_parley_api_route_t  ngx_http_parley_api_events_routes[];


#endif /* _NGX_HTTP_PARLEY_API_H_INCLUDED_ */
