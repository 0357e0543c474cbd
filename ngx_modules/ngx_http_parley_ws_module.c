
/*
 * The WebSocket gateway: `location = /v1/ws { parley_ws; }`.
 *
 * The upgrade is an ordinary content handler: it checks the handshake
 * (lib/parley_ws_handshake.c), authenticates the user token exactly as the
 * REST API does, and answers 101.  Then the connection leaves nginx's HTTP
 * machinery: the request is freed (its access log line says 101), the
 * header buffers and, for plain TCP, the connection's pool go back, and
 * the connection's handlers become those of ngx_http_parley_ws_conn.c: a
 * frame reader (lib/parley_ws.c), a queue of outgoing frames, and one timer
 * for heartbeats, start, token expiry and closing.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_ws.h"
#include "ngx_parley_module.h"
#include "parley_ws_handshake.h"




static char *ngx_http_parley_ws(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_parley_ws_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_parley_ws_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_parley_ws_init_process(ngx_cycle_t *cycle);
static void ngx_http_parley_ws_exit_process(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_parley_ws_handler(ngx_http_request_t *r);
static void ngx_http_parley_ws_authenticated(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_ws_token(ngx_http_request_t *r,
    ngx_http_parley_api_req_t *ar, ngx_uint_t *protocol);
static void ngx_http_parley_ws_refuse(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, const char *code, const char *msg);
static void ngx_http_parley_ws_takeover(ngx_event_t *wev);
static ngx_http_parley_ws_frame_t *ngx_http_parley_ws_response(
    ngx_http_request_t *r, ngx_uint_t protocol, u_char *ext, size_t ext_len);

static ngx_int_t ngx_http_parley_ws_shed_pool(ngx_http_parley_ws_conn_t *wc);
static u_char *ngx_http_parley_ws_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static void *ngx_http_parley_ws_zalloc(void *opaque, unsigned items,
    unsigned size);
static void ngx_http_parley_ws_zfree(void *opaque, void *ptr);


static ngx_conf_num_bounds_t  ngx_http_parley_ws_count_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


static ngx_command_t  ngx_http_parley_ws_commands[] = {

    { ngx_string("parley_ws"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_parley_ws,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("parley_ws_max_frame"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, max_frame),
      NULL },

    { ngx_string("parley_ws_max_message"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, max_message),
      NULL },

    { ngx_string("parley_ws_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, send_buffer),
      NULL },

    { ngx_string("parley_ws_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, send_timeout),
      NULL },

    { ngx_string("parley_ws_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, ping_interval),
      NULL },

    { ngx_string("parley_ws_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("parley_ws_start_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, start_timeout),
      NULL },

    { ngx_string("parley_ws_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, close_timeout),
      NULL },

    { ngx_string("parley_ws_reconnect_window"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, reconnect_window),
      NULL },

    { ngx_string("parley_ws_presence_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, presence_ttl),
      NULL },

    { ngx_string("parley_ws_gap_wait"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, gap_wait),
      NULL },

    { ngx_string("parley_ws_resume_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, resume_max),
      &ngx_http_parley_ws_count_bounds },

    { ngx_string("parley_ws_max_conversations"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, max_conversations),
      &ngx_http_parley_ws_count_bounds },

    { ngx_string("parley_ws_max_inflight"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, max_inflight),
      &ngx_http_parley_ws_count_bounds },

    { ngx_string("parley_ws_transient_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, transient_rate),
      &ngx_http_parley_ws_count_bounds },

    { ngx_string("parley_ws_deflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_ws_loc_conf_t, deflate),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_parley_ws_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_parley_ws_create_loc_conf,    /* create location configuration */
    ngx_http_parley_ws_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_parley_ws_module = {
    NGX_MODULE_V1,
    &ngx_http_parley_ws_module_ctx,        /* module context */
    ngx_http_parley_ws_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_parley_ws_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_parley_ws_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* what authentication checks the caller against: user tokens only */
static ngx_http_parley_api_route_t  ngx_http_parley_ws_route = {
    NGX_HTTP_GET, "/v1/ws", NGX_PARLEY_AUTH_USER, NULL, "connectWebSocket", 0
};


/* per worker */
static ngx_uint_t                 ngx_http_parley_ws_enabled;


/* ---- configuration ------------------------------------------------- */


static char *
ngx_http_parley_ws(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_ws_loc_conf_t *wlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (wlcf->enable == 1) {
        return "is duplicate";
    }

    wlcf->enable = 1;
    ngx_http_parley_ws_enabled = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_parley_ws_handler;

    return NGX_CONF_OK;
}


static void *
ngx_http_parley_ws_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_parley_ws_loc_conf_t  *wlcf;

    wlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_parley_ws_loc_conf_t));
    if (wlcf == NULL) {
        return NULL;
    }

    wlcf->enable = NGX_CONF_UNSET;
    wlcf->max_frame = NGX_CONF_UNSET_SIZE;
    wlcf->max_message = NGX_CONF_UNSET_SIZE;
    wlcf->send_buffer = NGX_CONF_UNSET_SIZE;
    wlcf->send_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->ping_interval = NGX_CONF_UNSET_MSEC;
    wlcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->start_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->close_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->reconnect_window = NGX_CONF_UNSET_MSEC;
    wlcf->presence_ttl = NGX_CONF_UNSET_MSEC;
    wlcf->gap_wait = NGX_CONF_UNSET_MSEC;
    wlcf->resume_max = NGX_CONF_UNSET_UINT;
    wlcf->max_conversations = NGX_CONF_UNSET_UINT;
    wlcf->max_inflight = NGX_CONF_UNSET_UINT;
    wlcf->transient_rate = NGX_CONF_UNSET_UINT;
    wlcf->deflate = NGX_CONF_UNSET;

    return wlcf;
}


static char *
ngx_http_parley_ws_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_parley_ws_loc_conf_t *prev = parent;
    ngx_http_parley_ws_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_size_value(conf->max_frame, prev->max_frame, 65536);
    ngx_conf_merge_size_value(conf->max_message, prev->max_message, 131072);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer, 262144);
    ngx_conf_merge_msec_value(conf->send_timeout, prev->send_timeout, 10000);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval,
                              30000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 75000);
    ngx_conf_merge_msec_value(conf->start_timeout, prev->start_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->close_timeout, prev->close_timeout, 2000);
    ngx_conf_merge_msec_value(conf->reconnect_window,
                              prev->reconnect_window, 10000);
    ngx_conf_merge_msec_value(conf->presence_ttl, prev->presence_ttl, 90000);
    ngx_conf_merge_msec_value(conf->gap_wait, prev->gap_wait, 100);
    ngx_conf_merge_uint_value(conf->resume_max, prev->resume_max, 1000);
    ngx_conf_merge_uint_value(conf->max_conversations,
                              prev->max_conversations, 10000);
    ngx_conf_merge_uint_value(conf->max_inflight, prev->max_inflight, 32);
    ngx_conf_merge_uint_value(conf->transient_rate, prev->transient_rate,
                              20);
    ngx_conf_merge_value(conf->deflate, prev->deflate, 1);

    if (conf->max_frame > conf->max_message) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "parley_ws_max_frame (%uz) is larger than "
                           "parley_ws_max_message (%uz)",
                           conf->max_frame, conf->max_message);
        return NGX_CONF_ERROR;
    }

    if (conf->ping_interval == 0 || conf->idle_timeout <= conf->ping_interval)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "parley_ws_idle_timeout must be longer than "
                           "parley_ws_ping_interval (and that above 0)");
        return NGX_CONF_ERROR;
    }

    if (conf->presence_ttl <= conf->ping_interval) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "parley_ws_presence_ttl must be longer than "
                           "parley_ws_ping_interval, which refreshes it");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_parley_ws_init_process(ngx_cycle_t *cycle)
{
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ngx_http_parley_ws_conn_init(cycle);

    if (!ngx_http_parley_ws_enabled) {
        return NGX_OK;
    }

    return ngx_http_parley_ws_hub_init(cycle);
}


static void
ngx_http_parley_ws_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_parley_ws_enabled) {
        ngx_http_parley_ws_hub_exit(cycle);
    }

    ngx_http_parley_ws_conn_exit(cycle);
}


/* ---- the upgrade --------------------------------------------------- */


static ngx_int_t
ngx_http_parley_ws_handler(ngx_http_request_t *r)
{
    ngx_str_t                       *h;
    ngx_int_t                        rc;
    ngx_uint_t                       protocol;
    ngx_table_elt_t                 *allow;
    parley_ws_hs_rc_t                hs;
    parley_ws_upgrade_t              up;
    ngx_http_parley_api_req_t       *ar;

    ar = ngx_pcalloc(r->pool, sizeof(ngx_http_parley_api_req_t));
    if (ar == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_parley_api_req_init(ar, r->pool, r->connection->log,
            ngx_http_get_module_main_conf(r, ngx_http_parley_core_module),
            ngx_http_get_module_loc_conf(r, ngx_http_parley_api_module),
            NULL, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->request = r;
    ar->route = &ngx_http_parley_ws_route;
    ngx_http_set_ctx(r, ar, ngx_http_parley_ws_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    /* from here on every answer goes through ngx_http_parley_api_fail */
    r->main->count++;

    ngx_memzero(&up, sizeof(parley_ws_upgrade_t));
    up.method = (const char *) r->method_name.data;
    up.method_len = r->method_name.len;
    up.http_version = (const char *) r->http_protocol.data;
    up.http_version_len = r->http_protocol.len;

#define PARLEY_WS_HEADER(field, name)                                        \
    h = ngx_http_parley_api_header(r, name, sizeof(name) - 1);               \
    if (h) {                                                                 \
        up.field = (const char *) h->data;                                   \
        up.field##_len = h->len;                                             \
    }

    PARLEY_WS_HEADER(upgrade, "Upgrade");
    PARLEY_WS_HEADER(connection, "Connection");
    PARLEY_WS_HEADER(version, "Sec-WebSocket-Version");
    PARLEY_WS_HEADER(key, "Sec-WebSocket-Key");

#undef PARLEY_WS_HEADER

    hs = parley_ws_handshake_check(&up);

    if (hs != PARLEY_WS_HS_OK) {
        allow = ngx_list_push(&r->headers_out.headers);
        if (allow) {
            allow->hash = 1;

            switch (hs) {
            case PARLEY_WS_HS_BAD_METHOD:
                ngx_str_set(&allow->key, "Allow");
                ngx_str_set(&allow->value, "GET");
                break;
            case PARLEY_WS_HS_BAD_VERSION:
                ngx_str_set(&allow->key, "Sec-WebSocket-Version");
                ngx_str_set(&allow->value, "13");
                break;
            case PARLEY_WS_HS_NO_UPGRADE:
                ngx_str_set(&allow->key, "Upgrade");
                ngx_str_set(&allow->value, "websocket");
                break;
            default:
                allow->hash = 0;
                break;
            }
        }

        ngx_http_parley_ws_refuse(ar, parley_ws_handshake_status(hs),
                                  "websocket_handshake",
                                  parley_ws_handshake_reason(hs));
        return NGX_DONE;
    }

    if (ngx_exiting || ngx_terminate) {
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "unavailable", "this node is restarting");
        return NGX_DONE;
    }

    if (ngx_http_parley_ws_token(r, ar, &protocol) != NGX_OK) {
        return NGX_DONE;
    }

    ar->data = (void *) (uintptr_t) protocol;
    ngx_http_parley_api_authenticate(ar, ngx_http_parley_ws_authenticated);

    return NGX_DONE;
}


/*
 * The user token: an Authorization header, ?access_token= (URL-encoded),
 * or, for browsers, the Sec-WebSocket-Protocol item "bearer.<token>" next
 * to "parley.v1".  Exactly one of them.  The query and protocol forms are
 * turned into the Authorization header, so that authentication is the one
 * the REST API runs.
 */

static ngx_int_t
ngx_http_parley_ws_token(ngx_http_request_t *r,
    ngx_http_parley_api_req_t *ar, ngx_uint_t *protocol)
{
    u_char           *p;
    size_t            n, item_len;
    ngx_str_t        *proto, token;
    ngx_uint_t        sources;
    const char       *item;
    ngx_table_elt_t  *h;

    *protocol = 0;
    sources = r->headers_in.authorization ? 1 : 0;
    ngx_str_null(&token);

    if (ngx_http_parley_api_arg(ar, "access_token", &token) == NGX_OK) {
        sources++;
    }

    proto = ngx_http_parley_api_header(r, "Sec-WebSocket-Protocol",
                                       sizeof("Sec-WebSocket-Protocol") - 1);
    if (proto) {
        if (!parley_ws_protocol_valid((char *) proto->data, proto->len)
            || !parley_ws_protocol_has((char *) proto->data, proto->len,
                                       "parley.v1", 9))
        {
            ngx_http_parley_ws_refuse(ar, NGX_HTTP_BAD_REQUEST,
                                      "websocket_protocol",
                                      "Sec-WebSocket-Protocol must offer "
                                      "parley.v1");
            return NGX_ERROR;
        }

        *protocol = 1;

        n = parley_ws_protocol_find_prefix((char *) proto->data, proto->len,
                                           "bearer.", 7, &item, &item_len);
        if (n > 1) {
            ngx_http_parley_ws_refuse(ar, NGX_HTTP_BAD_REQUEST,
                                      "websocket_protocol",
                                      "more than one bearer.<token> item");
            return NGX_ERROR;
        }

        if (n == 1) {
            sources++;
            token.data = (u_char *) item + 7;
            token.len = item_len - 7;
        }
    }

    if (sources > 1) {
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_BAD_REQUEST,
                                  "invalid_credentials",
                                  "give the token one way only");
        return NGX_ERROR;
    }

    if (r->headers_in.authorization || token.len == 0) {
        /* authentication answers 401 for a missing credential */
        return NGX_OK;
    }

    if (token.len > 8192) {
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                  "invalid_token", "the token is too long");
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_in.headers);
    p = ngx_pnalloc(r->pool, sizeof("Bearer ") - 1 + token.len);
    if (h == NULL || p == NULL) {
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "out of memory");
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Authorization");
    h->value.data = p;
    h->value.len = ngx_cpymem(ngx_cpymem(p, "Bearer ", 7), token.data,
                              token.len) - p;
    h->lowcase_key = (u_char *) "authorization";
    r->headers_in.authorization = h;

    return NGX_OK;
}


static void
ngx_http_parley_ws_refuse(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    const char *code, const char *msg)
{
    ngx_http_parley_api_fail(ar, status, code, NULL, "%s", msg);
}


static void
ngx_http_parley_ws_authenticated(ngx_http_parley_api_req_t *ar)
{
    size_t                           resp_len;
    ngx_str_t                       *ext;
    ngx_uint_t                       protocol;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_parley_ws_conn_t       *wc;
    ngx_http_parley_ws_frame_t      *f;
    ngx_http_parley_ws_loc_conf_t   *wlcf;
    parley_ws_deflate_config_t       dcfg;
    parley_ws_deflate_params_t       params;
    parley_ws_deflate_alloc_t        zalloc;
    char                             resp[PARLEY_WS_DEFLATE_RESPONSE_MAX];

    r = ar->request;
    c = r->connection;
    protocol = (ngx_uint_t) (uintptr_t) ar->data;

    /* authentication may have read the store: its connection goes back */
    ngx_http_parley_api_release(ar);
    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_parley_ws_module);

    if (ar->auth != NGX_PARLEY_AUTH_USER || ar->user_id.len == 0
        || ar->acting_admin)
    {
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_FORBIDDEN, "user_required",
                                  "the gateway takes user tokens only");
        return;
    }

    wc = ngx_calloc(sizeof(ngx_http_parley_ws_conn_t) + ar->user_id.len,
                    c->log);
    if (wc == NULL) {
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "out of memory");
        return;
    }

    wc->conf = wlcf;
    wc->api_conf = ar->conf;
    wc->core = ar->core;
    wc->tenant_id = ar->tenant_id;
    wc->auth = ar->auth;
    wc->user_id.data = (u_char *) (wc + 1);
    wc->user_id.len = ar->user_id.len;
    ngx_memcpy(wc->user_id.data, ar->user_id.data, ar->user_id.len);
    wc->token_exp = ngx_http_parley_api_auth_expiry(ar);
    ngx_queue_init(&wc->subs);
    ngx_queue_init(&wc->watches);

    if (ngx_parley_next_id(&wc->id) != NGX_OK) {
        ngx_free(wc);
        ngx_http_parley_ws_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "no id could be minted");
        return;
    }

    parley_ws_reader_init(&wc->reader, wlcf->max_frame, wlcf->max_message,
                          0);

    resp_len = 0;
    ext = ngx_http_parley_api_header(r, "Sec-WebSocket-Extensions",
                                     sizeof("Sec-WebSocket-Extensions") - 1);

    if (ext && wlcf->deflate) {
        parley_ws_deflate_config_default(&dcfg);

        if (parley_ws_deflate_negotiate((char *) ext->data, ext->len, &dcfg,
                                        &params, resp, sizeof(resp),
                                        &resp_len)
            == PARLEY_WS_DEFLATE_ACCEPT)
        {
            zalloc.alloc = ngx_http_parley_ws_zalloc;
            zalloc.free = ngx_http_parley_ws_zfree;
            zalloc.opaque = NULL;

            wc->inflater = ngx_calloc(sizeof(parley_ws_inflater_t), c->log);
            wc->deflater = ngx_calloc(sizeof(parley_ws_deflater_t), c->log);

            if (wc->inflater == NULL || wc->deflater == NULL
                || parley_ws_inflater_init(wc->inflater,
                                           params.client_window_bits,
                                           params.client_no_context_takeover,
                                           &zalloc) != 0)
            {
                goto nomem;
            }

            if (parley_ws_deflater_init(wc->deflater,
                                        params.server_window_bits,
                                        params.mem_level, params.level,
                                        params.server_no_context_takeover,
                                        &zalloc) != 0)
            {
                parley_ws_inflater_free(wc->inflater);
                goto nomem;
            }

            parley_ws_reader_init(&wc->reader, wlcf->max_frame,
                                  wlcf->max_message, PARLEY_WS_READ_DEFLATE);

        } else {
            resp_len = 0;
        }
    }

    f = ngx_http_parley_ws_response(r, protocol, (u_char *) resp, resp_len);
    if (f == NULL) {
        if (wc->deflater) {
            parley_ws_deflater_free(wc->deflater);
            parley_ws_inflater_free(wc->inflater);
        }
        goto nomem;
    }

    ngx_http_parley_ws_enqueue(wc, f);
    ngx_http_parley_ws_frame_release(f);

    /* leave the request's code path before freeing the request */
    ar->data = wc;
    c->write->handler = ngx_http_parley_ws_takeover;
    ngx_post_event(c->write, &ngx_posted_events);

    return;

nomem:

    ngx_free(wc->inflater);
    ngx_free(wc->deflater);
    ngx_free(wc);
    ngx_http_parley_ws_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal",
                              "out of memory");
}


/* the 101, written as the connection's first bytes */

static ngx_http_parley_ws_frame_t *
ngx_http_parley_ws_response(ngx_http_request_t *r, ngx_uint_t protocol,
    u_char *ext, size_t ext_len)
{
    u_char                      *p;
    ngx_str_t                   *key;
    ngx_http_parley_ws_frame_t  *f;
    char                         accept[PARLEY_WS_ACCEPT_LEN];
    u_char                       buf[512];

    key = ngx_http_parley_api_header(r, "Sec-WebSocket-Key",
                                     sizeof("Sec-WebSocket-Key") - 1);

    if (key == NULL
        || parley_ws_accept((char *) key->data, key->len, accept) != 0)
    {
        return NULL;
    }

    p = ngx_cpymem(buf, "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: ",
                   sizeof("HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: ") - 1);
    p = ngx_cpymem(p, accept, PARLEY_WS_ACCEPT_LEN);

    if (protocol) {
        p = ngx_cpymem(p, "\r\nSec-WebSocket-Protocol: parley.v1",
                       sizeof("\r\nSec-WebSocket-Protocol: parley.v1") - 1);
    }

    if (ext_len) {
        p = ngx_cpymem(p, "\r\nSec-WebSocket-Extensions: ",
                       sizeof("\r\nSec-WebSocket-Extensions: ") - 1);
        p = ngx_cpymem(p, ext, ext_len);
    }

    p = ngx_cpymem(p, "\r\n\r\n", 4);

    f = ngx_alloc(sizeof(ngx_http_parley_ws_frame_t) + (p - buf),
                  r->connection->log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = p - buf;
    f->hlen = 0;
    f->data = (u_char *) (f + 1);
    ngx_memcpy(f->data, buf, f->len);

    return f;
}


/*
 * Runs from the posted events, outside every HTTP handler: the request can
 * go.  Bytes the client sent after its handshake (frames it did not wait
 * to send) are carried over from the header buffer.
 */

static void
ngx_http_parley_ws_takeover(ngx_event_t *wev)
{
    u_char                     *early;
    size_t                      n;
    ngx_chain_t                *cl, *ln;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_connection_t      *hc;
    ngx_http_parley_api_req_t  *ar;
    ngx_http_parley_ws_conn_t  *wc;
    ngx_http_core_loc_conf_t   *clcf;

    c = wev->data;
    r = c->data;
    ar = ngx_http_get_module_ctx(r, ngx_http_parley_ws_module);
    wc = ar->data;
    hc = r->http_connection;

    early = NULL;
    n = r->header_in ? (size_t) (r->header_in->last - r->header_in->pos) : 0;

    if (n) {
        early = ngx_alloc(n, c->log);
        if (early == NULL) {
            n = 0;
        } else {
            ngx_memcpy(early, r->header_in->pos, n);
        }
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->keepalive = 0;
    r->lingering_close = 0;

    /*
     * Frames are small and go out as they come: without TCP_NODELAY, Nagle
     * would hold a frame while the previous one waits for the client's
     * (possibly delayed) ACK.  "tcp_nodelay off" in the location says no.
     */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, ngx_socket_errno,
                      "parley ws: TCP_NODELAY could not be set");
    }

    ngx_http_free_request(r, 0);
    c->destroyed = 0;

    if (c->buffer && ngx_pfree(c->pool, c->buffer->start) == NGX_OK) {
        c->buffer = NULL;
    }

    for (cl = hc->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
    }

    for (cl = hc->busy; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
    }

    hc->free = NULL;
    hc->busy = NULL;
    hc->nbusy = 0;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->data = wc;
    c->idle = 1;
    wc->connection = c;

    if (ngx_http_parley_ws_shed_pool(wc) != NGX_OK) {
        ngx_free(early);
        ngx_http_parley_ws_finalize(wc);
        ngx_free(wc);
        return;
    }

    c->log->action = "serving a WebSocket";
    c->read->handler = ngx_http_parley_ws_read_handler;
    c->write->handler = ngx_http_parley_ws_write_handler;
    wc->last_rx = ngx_current_msec;
    wc->opened = ngx_current_msec;
    wc->ping_due = ngx_current_msec + wc->conf->ping_interval;

    ngx_http_parley_ws_session_open(wc);

    if (n && !wc->destroyed) {
        ngx_http_parley_ws_consume(wc, early, n);
    }

    ngx_free(early);

    if (wc->destroyed) {
        ngx_free(wc);
        return;
    }

    ngx_http_parley_ws_arm(wc);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_parley_ws_finalize(wc);
        ngx_free(wc);
        return;
    }

    /* there may be bytes that arrived while authentication ran */
    if (c->read->ready) {
        ngx_http_parley_ws_read_handler(c->read);
    }
}


/*
 * What an idle connection keeps from the HTTP layer is its pool: the log,
 * the peer's address and the spent HTTP state.  A plain connection moves
 * the first two into one allocation of its own and frees the pool (~0.5 KB
 * per connection); TLS keeps it, since OpenSSL's state hangs off it.
 */

static ngx_int_t
ngx_http_parley_ws_shed_pool(ngx_http_parley_ws_conn_t *wc)
{
    u_char            *p;
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    c = wc->connection;

    wc->log = *c->log;
    wc->log.data = wc;
    wc->log.handler = ngx_http_parley_ws_log_error;
    c->log = &wc->log;
    c->read->log = &wc->log;
    c->write->log = &wc->log;

    if (c->ssl || c->pool == NULL) {
        return NGX_OK;
    }

    p = ngx_alloc(c->socklen + c->addr_text.len, c->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    wc->peer = p;
    ngx_memcpy(p, c->sockaddr, c->socklen);
    c->sockaddr = (struct sockaddr *) p;
    p += c->socklen;

    ngx_memcpy(p, c->addr_text.data, c->addr_text.len);
    c->addr_text.data = p;

    c->buffer = NULL;
    c->proxy_protocol = NULL;

    pool = c->pool;
    c->pool = NULL;
    ngx_destroy_pool(pool);

    return NGX_OK;
}


static u_char *
ngx_http_parley_ws_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                     *p;
    ngx_http_parley_ws_conn_t  *wc = log->data;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    if (wc->connection) {
        p = ngx_snprintf(p, len, ", client: %V", &wc->connection->addr_text);
        len -= p - buf;
        buf = p;
    }

    return ngx_snprintf(p, len, ", user: %V", &wc->user_id);
}


/* zlib's memory, from the heap (freed with the connection) */

static void *
ngx_http_parley_ws_zalloc(void *opaque, unsigned items, unsigned size)
{
    return ngx_alloc((size_t) items * size, ngx_cycle->log);
}


static void
ngx_http_parley_ws_zfree(void *opaque, void *ptr)
{
    ngx_free(ptr);
}
