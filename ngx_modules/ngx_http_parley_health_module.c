
/*
 * parley_healthz: a location whose GET answers, as JSON, the state of every
 * configured backend, found by a real round trip from this worker to each
 * one (SELECT 1, PING, Kafka metadata), with its latency.  200 when all are
 * up, 503 naming the ones that are not.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <time.h>

#include "ngx_http_parley_core.h"
#include "parley_json.h"


#define NGX_PARLEY_HEALTH_MAX      16
#define NGX_PARLEY_HEALTH_SLACK    1000


typedef struct {
    ngx_flag_t                 enable;
} ngx_http_parley_health_loc_conf_t;


typedef struct ngx_http_parley_health_ctx_s  ngx_http_parley_health_ctx_t;
typedef struct ngx_http_parley_health_check_s
    ngx_http_parley_health_check_t;

typedef void (*ngx_http_parley_health_start_pt)(
    ngx_http_parley_health_check_t *hc, void *client);

struct ngx_http_parley_health_check_s {
    ngx_str_t                  name;
    ngx_str_t                  address;
    ngx_http_parley_health_start_pt  start;
    void                      *client;
    ngx_http_parley_health_ctx_t  *ctx;
    struct timespec            started;
    double                     latency_ms;
    ngx_uint_t                 done;
    ngx_uint_t                 up;
    u_char                     detail[NGX_PARLEY_ERRLEN];
    size_t                     detail_len;

    /* what to cancel if the request goes away first */
    ngx_parley_db_wait_t      *db_wait;
    ngx_parley_db_conn_t      *db_conn;
    ngx_parley_redis_cmd_t    *redis_cmd;
    ngx_parley_kafka_op_t     *kafka_op;
    u_char                     kafka_detail[64];
};


struct ngx_http_parley_health_ctx_s {
    ngx_http_request_t        *request;
    ngx_http_parley_health_check_t  checks[NGX_PARLEY_HEALTH_MAX];
    ngx_uint_t                 nchecks;
    ngx_uint_t                 pending;
    ngx_event_t                guard;
    ngx_uint_t                 finished;
};


static char *ngx_http_parley_healthz(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_parley_health_create_loc_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_parley_health_handler(ngx_http_request_t *r);
static ngx_http_parley_health_check_t *ngx_http_parley_health_add(
    ngx_http_parley_health_ctx_t *ctx, const char *name, ngx_str_t *host,
    in_port_t port, ngx_http_parley_health_start_pt start, void *client);
static void ngx_http_parley_health_start_db(
    ngx_http_parley_health_check_t *hc, void *client);
static void ngx_http_parley_health_db_acquired(ngx_parley_db_conn_t *conn,
    ngx_int_t rc, const char *err, void *data);
static void ngx_http_parley_health_db_result(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *result, void *data);
static void ngx_http_parley_health_start_redis(
    ngx_http_parley_health_check_t *hc, void *client);
static void ngx_http_parley_health_redis_reply(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data);
static void ngx_http_parley_health_start_kafka(
    ngx_http_parley_health_check_t *hc, void *client);
static void ngx_http_parley_health_kafka_done(ngx_int_t status,
    const char *err, int32_t partition, int64_t offset, void *data);
static void ngx_http_parley_health_kafka_delivered(ngx_int_t status,
    const char *err, int32_t partition, int64_t offset, void *data);
static void ngx_http_parley_health_finish_check(
    ngx_http_parley_health_check_t *hc, ngx_uint_t up, const char *detail);
static void ngx_http_parley_health_guard(ngx_event_t *ev);
static void ngx_http_parley_health_cancel(ngx_http_parley_health_ctx_t *ctx);
static void ngx_http_parley_health_cleanup(void *data);
static void ngx_http_parley_health_respond(ngx_http_parley_health_ctx_t *ctx);
static ngx_int_t ngx_http_parley_health_no_store(ngx_http_request_t *r);


static ngx_command_t  ngx_http_parley_health_commands[] = {

    { ngx_string("parley_healthz"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_parley_healthz,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_parley_health_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_parley_health_create_loc_conf, /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_parley_health_module = {
    NGX_MODULE_V1,
    &ngx_http_parley_health_module_ctx,    /* module context */
    ngx_http_parley_health_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_parley_health_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_parley_health_loc_conf_t  *hlcf;

    hlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_parley_health_loc_conf_t));
    if (hlcf == NULL) {
        return NULL;
    }

    hlcf->enable = NGX_CONF_UNSET;

    return hlcf;
}


static char *
ngx_http_parley_healthz(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_health_loc_conf_t *hlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (hlcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    hlcf->enable = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_parley_health_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_parley_health_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_uint_t                         i;
    ngx_pool_cleanup_t                *cln;
    ngx_msec_t                         guard;
    ngx_parley_db_conf_t              *dbc;
    ngx_parley_redis_conf_t           *rc_conf;
    ngx_http_parley_health_ctx_t      *ctx;
    ngx_http_parley_health_check_t    *hc;
    ngx_http_parley_core_main_conf_t  *cmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_parley_core_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_parley_health_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_parley_health_cleanup;
    cln->data = ctx;

    guard = 0;

    /* every check is registered before any starts: none completes inline */

    if (cmcf->db_client) {
        dbc = cmcf->db;
        hc = ngx_http_parley_health_add(ctx, "db",
                                        dbc->socket.len ? &dbc->socket
                                                        : &dbc->host,
                                        dbc->socket.len ? 0 : dbc->port,
                                        ngx_http_parley_health_start_db,
                                        cmcf->db_client);
        if (hc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        guard = ngx_max(guard, dbc->timeouts.connect_timeout
                               + dbc->timeouts.timeout);
    }

    rc_conf = cmcf->redis.elts;

    for (i = 0; cmcf->redis_clients && i < cmcf->redis.nelts; i++) {
        hc = ngx_http_parley_health_add(ctx, "redis", &rc_conf[i].host,
                                        rc_conf[i].port,
                                        ngx_http_parley_health_start_redis,
                                        cmcf->redis_clients[i]);
        if (hc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        hc->name.data = ngx_pnalloc(r->pool, sizeof("redis:") - 1
                                             + rc_conf[i].name.len);
        if (hc->name.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        hc->name.len = ngx_sprintf(hc->name.data, "redis:%V",
                                   &rc_conf[i].name)
                       - hc->name.data;

        guard = ngx_max(guard, rc_conf[i].timeouts.timeout);
    }

    if (cmcf->kafka_client) {
        hc = ngx_http_parley_health_add(ctx, "kafka", &cmcf->kafka->brokers,
                                        0, ngx_http_parley_health_start_kafka,
                                        cmcf->kafka_client);
        if (hc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        guard = ngx_max(guard, cmcf->kafka->timeout);
    }

    ctx->pending = ctx->nchecks;

    r->main->count++;

    for (i = 0; i < ctx->nchecks; i++) {
        ctx->checks[i].start(&ctx->checks[i], ctx->checks[i].client);
    }

    if (ctx->pending == 0) {
        ngx_http_parley_health_respond(ctx);
        return NGX_DONE;
    }

    /* the backends bound their own waits; this only catches a lost reply */
    ctx->guard.handler = ngx_http_parley_health_guard;
    ctx->guard.data = ctx;
    ctx->guard.log = r->connection->log;
    ngx_add_timer(&ctx->guard, guard + NGX_PARLEY_HEALTH_SLACK);

    return NGX_DONE;
}


static ngx_http_parley_health_check_t *
ngx_http_parley_health_add(ngx_http_parley_health_ctx_t *ctx,
    const char *name, ngx_str_t *host, in_port_t port,
    ngx_http_parley_health_start_pt start, void *client)
{
    ngx_http_parley_health_check_t  *hc;

    if (ctx->nchecks == NGX_PARLEY_HEALTH_MAX) {
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "parley healthz: more than %d backends",
                      NGX_PARLEY_HEALTH_MAX);
        return NULL;
    }

    hc = &ctx->checks[ctx->nchecks++];
    hc->ctx = ctx;
    hc->start = start;
    hc->client = client;
    hc->name.data = (u_char *) name;
    hc->name.len = ngx_strlen(name);

    hc->address.data = ngx_pnalloc(ctx->request->pool,
                                   host->len + sizeof(":65535"));
    if (hc->address.data == NULL) {
        return NULL;
    }

    if (port) {
        hc->address.len = ngx_sprintf(hc->address.data, "%V:%d", host,
                                      (int) port)
                          - hc->address.data;
    } else {
        hc->address.len = ngx_sprintf(hc->address.data, "%V", host)
                          - hc->address.data;
    }

    clock_gettime(CLOCK_MONOTONIC, &hc->started);

    return hc;
}


static void
ngx_http_parley_health_start_db(ngx_http_parley_health_check_t *hc,
    void *client)
{
    ngx_parley_db_t *db = client;

    if (ngx_parley_db_acquire(db, ngx_http_parley_health_db_acquired, hc,
                              &hc->db_wait)
        != NGX_OK)
    {
        ngx_http_parley_health_finish_check(hc, 0,
                                            ngx_parley_db_last_error(db));
    }
}


static void
ngx_http_parley_health_db_acquired(ngx_parley_db_conn_t *conn, ngx_int_t rc,
    const char *err, void *data)
{
    ngx_http_parley_health_check_t *hc = data;

    static u_char  select1[] = "SELECT 1";

    hc->db_wait = NULL;

    if (rc != NGX_OK) {
        ngx_http_parley_health_finish_check(hc, 0, err);
        return;
    }

    hc->db_conn = conn;

    if (ngx_parley_db_query(conn, select1, sizeof(select1) - 1,
                            ngx_http_parley_health_db_result, hc)
        != NGX_OK)
    {
        hc->db_conn = NULL;
        ngx_parley_db_release(conn, 1);
        ngx_http_parley_health_finish_check(hc, 0, "db: query not started");
    }
}


static void
ngx_http_parley_health_db_result(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *result, void *data)
{
    ngx_http_parley_health_check_t *hc = data;

    ngx_uint_t  up;

    hc->db_conn = NULL;

    up = (result->status == NGX_OK);
    ngx_parley_db_release(conn, !up);

    ngx_http_parley_health_finish_check(hc, up, up ? "SELECT 1"
                                                   : result->error);
}


static void
ngx_http_parley_health_start_redis(ngx_http_parley_health_check_t *hc,
    void *client)
{
    ngx_parley_redis_t *redis = client;

    const char    *argv[] = { "PING" };
    const size_t   argvlen[] = { 4 };

    if (ngx_parley_redis_command_argv(redis,
                                      ngx_http_parley_health_redis_reply, hc,
                                      1, argv, argvlen, &hc->redis_cmd)
        != NGX_OK)
    {
        hc->redis_cmd = NULL;
        ngx_http_parley_health_finish_check(hc, 0,
                                         ngx_parley_redis_last_error(redis));
    }
}


static void
ngx_http_parley_health_redis_reply(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data)
{
    ngx_http_parley_health_check_t *hc = data;

    hc->redis_cmd = NULL;

    if (status != NGX_OK) {
        ngx_http_parley_health_finish_check(hc, 0, err);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_parley_health_finish_check(hc, 0, reply->str);
        return;
    }

    ngx_http_parley_health_finish_check(hc, 1, "PONG");
}


static void
ngx_http_parley_health_start_kafka(ngx_http_parley_health_check_t *hc,
    void *client)
{
    ngx_parley_kafka_t *kafka = client;

    if (ngx_parley_kafka_metadata(kafka, ngx_http_parley_health_kafka_done,
                                  hc, &hc->kafka_op)
        != NGX_OK)
    {
        hc->kafka_op = NULL;
        ngx_http_parley_health_finish_check(hc, 0,
                                         ngx_parley_kafka_last_error(kafka));
    }
}


static void
ngx_http_parley_health_kafka_done(ngx_int_t status, const char *err,
    int32_t partition, int64_t offset, void *data)
{
    ngx_http_parley_health_check_t *hc = data;

    u_char                            *p;
    ngx_parley_kafka_conf_t           *kc;
    ngx_http_parley_core_main_conf_t  *cmcf;

    hc->kafka_op = NULL;

    cmcf = ngx_http_get_module_main_conf(hc->ctx->request,
                                         ngx_http_parley_core_module);
    kc = cmcf->kafka;

    if (status != NGX_OK || kc->health_topic.len == 0) {
        ngx_http_parley_health_finish_check(hc, status == NGX_OK, err);
        return;
    }

    /*
     * With a heartbeat topic the check also proves the write path: one
     * record, acknowledged by every in-sync replica (acks=all).
     */
    ngx_cpystrn(hc->kafka_detail, (u_char *) err, sizeof(hc->kafka_detail));

    p = ngx_pnalloc(hc->ctx->request->pool, 64);
    if (p == NULL) {
        ngx_http_parley_health_finish_check(hc, 0, "out of memory");
        return;
    }

    if (ngx_parley_kafka_produce(cmcf->kafka_client,
                                 (const char *) kc->health_topic.data,
                                 (u_char *) "healthz", 7, p,
                                 ngx_sprintf(p, "{\"pid\":%P,\"ms\":%M}",
                                             ngx_pid, ngx_current_msec) - p,
                                 ngx_http_parley_health_kafka_delivered, hc,
                                 &hc->kafka_op)
        != NGX_OK)
    {
        hc->kafka_op = NULL;
        ngx_http_parley_health_finish_check(hc, 0,
                             ngx_parley_kafka_last_error(cmcf->kafka_client));
    }
}


static void
ngx_http_parley_health_kafka_delivered(ngx_int_t status, const char *err,
    int32_t partition, int64_t offset, void *data)
{
    ngx_http_parley_health_check_t *hc = data;

    u_char  detail[NGX_PARLEY_ERRLEN];

    hc->kafka_op = NULL;

    if (status != NGX_OK) {
        ngx_http_parley_health_finish_check(hc, 0, err);
        return;
    }

    ngx_snprintf(detail, sizeof(detail),
                 "%s, heartbeat delivered to partition %D offset %L%Z",
                 hc->kafka_detail, partition, offset);

    ngx_http_parley_health_finish_check(hc, 1, (const char *) detail);
}


static void
ngx_http_parley_health_finish_check(ngx_http_parley_health_check_t *hc,
    ngx_uint_t up, const char *detail)
{
    struct timespec                now;
    ngx_http_parley_health_ctx_t  *ctx;

    if (hc->done) {
        return;
    }

    clock_gettime(CLOCK_MONOTONIC, &now);

    hc->done = 1;
    hc->up = up;
    hc->latency_ms = (now.tv_sec - hc->started.tv_sec) * 1000.0
                     + (now.tv_nsec - hc->started.tv_nsec) / 1000000.0;
    hc->detail_len = ngx_cpystrn(hc->detail, (u_char *) detail,
                                 sizeof(hc->detail))
                     - hc->detail;

    ctx = hc->ctx;

    if (--ctx->pending == 0 && ctx->guard.data) {
        /* the handler has returned: the last reply answers the client */
        ngx_http_parley_health_respond(ctx);
    }
}


static void
ngx_http_parley_health_guard(ngx_event_t *ev)
{
    ngx_uint_t                       i;
    ngx_http_parley_health_ctx_t    *ctx;
    ngx_http_parley_health_check_t  *hc;

    ctx = ev->data;

    ngx_http_parley_health_cancel(ctx);

    for (i = 0; i < ctx->nchecks; i++) {
        hc = &ctx->checks[i];
        if (!hc->done) {
            ngx_http_parley_health_finish_check(hc, 0,
                                                "no answer within timeout");
        }
    }
}


/* detaches every check still waiting on a backend */

static void
ngx_http_parley_health_cancel(ngx_http_parley_health_ctx_t *ctx)
{
    ngx_uint_t                       i;
    ngx_http_parley_health_check_t  *hc;

    for (i = 0; i < ctx->nchecks; i++) {
        hc = &ctx->checks[i];

        if (hc->db_wait) {
            ngx_parley_db_acquire_cancel(hc->db_wait);
            hc->db_wait = NULL;
        }

        if (hc->db_conn) {
            ngx_parley_db_release(hc->db_conn, 1);
            hc->db_conn = NULL;
        }

        if (hc->redis_cmd) {
            ngx_parley_redis_cancel(hc->redis_cmd);
            hc->redis_cmd = NULL;
        }

        if (hc->kafka_op) {
            ngx_parley_kafka_cancel(hc->kafka_op);
            hc->kafka_op = NULL;
        }
    }
}


static void
ngx_http_parley_health_cleanup(void *data)
{
    ngx_http_parley_health_ctx_t *ctx = data;

    ctx->finished = 1;

    if (ctx->guard.timer_set) {
        ngx_del_timer(&ctx->guard);
    }

    ngx_http_parley_health_cancel(ctx);
}


static void
ngx_http_parley_health_respond(ngx_http_parley_health_ctx_t *ctx)
{
    u_char                          *p;
    size_t                           len;
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_uint_t                       i, down;
    ngx_chain_t                      out;
    ngx_http_request_t              *r;
    ngx_http_parley_health_check_t  *hc;

    static ngx_str_t  json = ngx_string("application/json");

    r = ctx->request;

    if (ctx->finished) {
        return;
    }

    ctx->finished = 1;

    if (ctx->guard.timer_set) {
        ngx_del_timer(&ctx->guard);
    }

    down = 0;
    len = sizeof("{\"status\":\"degraded\",\"down\":[],\"backends\":{}}\n");

    for (i = 0; i < ctx->nchecks; i++) {
        hc = &ctx->checks[i];
        down += !hc->up;

        len += (hc->name.len + 3) * 2
               + sizeof("{\"state\":\"down\",\"latency_ms\":,"
                        "\"address\":\"\",\"detail\":\"\"},")
               + NGX_INT64_LEN + 4
               + parley_json_escaped_len(hc->address.data, hc->address.len)
               + parley_json_escaped_len(hc->detail, hc->detail_len);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = b->last;
    p = ngx_sprintf(p, "{\"status\":\"%s\",\"down\":[",
                    down ? "degraded" : "ok");

    for (i = 0, down = 0; i < ctx->nchecks; i++) {
        hc = &ctx->checks[i];
        if (!hc->up) {
            p = ngx_sprintf(p, "%s\"%V\"", down++ ? "," : "", &hc->name);
        }
    }

    p = ngx_cpymem(p, "],\"backends\":{", sizeof("],\"backends\":{") - 1);

    for (i = 0; i < ctx->nchecks; i++) {
        hc = &ctx->checks[i];

        p = ngx_sprintf(p, "%s\"%V\":{\"state\":\"%s\",\"latency_ms\":%.3f,"
                        "\"address\":\"",
                        i ? "," : "", &hc->name, hc->up ? "up" : "down",
                        hc->latency_ms);
        p = parley_json_escape(p, hc->address.data, hc->address.len);
        p = ngx_cpymem(p, "\",\"detail\":\"", sizeof("\",\"detail\":\"") - 1);
        p = parley_json_escape(p, hc->detail, hc->detail_len);
        *p++ = '"';
        *p++ = '}';
    }

    p = ngx_cpymem(p, "}}\n", 3);
    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = down ? NGX_HTTP_SERVICE_UNAVAILABLE : NGX_HTTP_OK;
    r->headers_out.content_type = json;
    r->headers_out.content_type_len = json.len;
    r->headers_out.content_length_n = b->last - b->pos;

    if (ngx_http_parley_health_no_store(r) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
}


static ngx_int_t
ngx_http_parley_health_no_store(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    return NGX_OK;
}
