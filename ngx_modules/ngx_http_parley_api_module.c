
/*
 * parley_api: the REST API content handler.
 *
 *   location /v1/ { parley_api; }
 *
 * One request: route it (method + raw path), read and parse its JSON body
 * within the configured limits, authenticate the caller, then run the
 * endpoint's handler, whose SQL chain ends in one answer.  Every error has
 * the same JSON shape (ngx_http_parley_api_fail) and changes nothing.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_cache.h"
#include "ngx_parley_module.h"
#include "parley_base64url.h"
#include "parley_id.h"
#include "parley_json.h"
#include "parley_sql.h"


#define NGX_PARLEY_API_TXN_ATTEMPTS  4
#define NGX_PARLEY_API_SQL_MAX       (8 * 1024 * 1024)
#define NGX_PARLEY_API_CACHE_MAX     65536


typedef struct {
    ngx_http_parley_cache_t          cache;
} ngx_http_parley_api_main_conf_t;


static char *ngx_http_parley_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_parley_api_platform_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_parley_api_token_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_parley_api_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_parley_api_init_process(ngx_cycle_t *cycle);
static void ngx_http_parley_api_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_parley_api_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_parley_api_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static ngx_int_t ngx_http_parley_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_parley_api_route(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_api_match(ngx_http_parley_api_req_t *ar,
    ngx_uint_t method, u_char *path, size_t path_len);
static void ngx_http_parley_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_parley_api_parse_body(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_api_dispatch(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_api_cleanup(void *data);
static void ngx_http_parley_api_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_api_finish(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_api_answer(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *data, size_t len);
static void ngx_http_parley_api_rolled_back(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static ngx_int_t ngx_http_parley_api_send(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *data, size_t len);
static void ngx_http_parley_api_run(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, ngx_uint_t errors_ok,
    const char *fmt, va_list args);
static void ngx_http_parley_api_acquired(ngx_parley_db_conn_t *conn,
    ngx_int_t rc, const char *err, void *data);
static void ngx_http_parley_api_query(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_api_result(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *res, void *data);
static void ngx_http_parley_api_begun(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_api_retry(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static ngx_uint_t ngx_http_parley_api_conflict(ngx_parley_db_result_t *res);
static u_char *ngx_http_parley_api_format(u_char *p, u_char *last,
    const char *fmt, va_list args, size_t *need);


static ngx_conf_num_bounds_t  ngx_http_parley_api_depth_bounds = {
    ngx_conf_check_num_bounds, 1, 64
};

static ngx_conf_num_bounds_t  ngx_http_parley_api_page_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};


static ngx_command_t  ngx_http_parley_api_commands[] = {

    { ngx_string("parley_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_parley_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("parley_api_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, max_body),
      NULL },

    { ngx_string("parley_api_max_text"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, max_text),
      NULL },

    { ngx_string("parley_api_max_metadata"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, max_metadata),
      NULL },

    { ngx_string("parley_api_max_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, max_depth),
      &ngx_http_parley_api_depth_bounds },

    { ngx_string("parley_api_page_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, page_default),
      &ngx_http_parley_api_page_bounds },

    { ngx_string("parley_api_max_page_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, page_max),
      &ngx_http_parley_api_page_bounds },

    { ngx_string("parley_api_max_members"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, max_members),
      NULL },

    { ngx_string("parley_api_token_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, token_ttl),
      NULL },

    { ngx_string("parley_api_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_parley_api_loc_conf_t, cache_ttl),
      NULL },

    { ngx_string("parley_platform_key_sha256"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_parley_api_platform_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("parley_token_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_parley_api_token_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_parley_api_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_parley_api_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_parley_api_create_loc_conf,   /* create location configuration */
    ngx_http_parley_api_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_parley_api_module = {
    NGX_MODULE_V1,
    &ngx_http_parley_api_module_ctx,       /* module context */
    ngx_http_parley_api_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_parley_api_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_parley_api_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* every endpoint file's table, in the order they are tried */
static ngx_http_parley_api_route_t  *ngx_http_parley_api_tables[] = {
    ngx_http_parley_api_users_routes,
    ngx_http_parley_api_blocks_routes,
    ngx_http_parley_api_keys_routes,
    ngx_http_parley_api_platform_routes,
    ngx_http_parley_api_conversations_routes,
    ngx_http_parley_api_members_routes,
    ngx_http_parley_api_messages_routes,
    ngx_http_parley_api_reactions_routes,
    ngx_http_parley_api_receipts_routes,
    ngx_http_parley_api_sync_routes,
    ngx_http_parley_api_events_routes,
    NULL
};


static void *
ngx_http_parley_api_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_parley_api_main_conf_t));
}


static ngx_int_t
ngx_http_parley_api_init_process(ngx_cycle_t *cycle)
{
    ngx_http_parley_api_main_conf_t  *amcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_parley_api_module);
    if (amcf == NULL) {
        return NGX_OK;
    }

    ngx_http_parley_cache_init(&amcf->cache, NGX_PARLEY_API_CACHE_MAX);
    ngx_http_parley_auth_cache = &amcf->cache;

    return NGX_OK;
}


static void
ngx_http_parley_api_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_parley_auth_cache) {
        ngx_http_parley_cache_destroy(ngx_http_parley_auth_cache);
        ngx_http_parley_auth_cache = NULL;
    }
}


static void *
ngx_http_parley_api_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_parley_api_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_parley_api_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->max_body = NGX_CONF_UNSET_SIZE;
    alcf->max_text = NGX_CONF_UNSET_SIZE;
    alcf->max_metadata = NGX_CONF_UNSET_SIZE;
    alcf->max_depth = NGX_CONF_UNSET_UINT;
    alcf->page_default = NGX_CONF_UNSET_UINT;
    alcf->page_max = NGX_CONF_UNSET_UINT;
    alcf->max_members = NGX_CONF_UNSET_UINT;
    alcf->token_ttl = NGX_CONF_UNSET_MSEC;
    alcf->cache_ttl = NGX_CONF_UNSET_MSEC;
    alcf->enable = NGX_CONF_UNSET;

    return alcf;
}


static char *
ngx_http_parley_api_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_parley_api_loc_conf_t *prev = parent;
    ngx_http_parley_api_loc_conf_t *conf = child;

    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 256 * 1024);
    ngx_conf_merge_size_value(conf->max_text, prev->max_text, 16 * 1024);
    ngx_conf_merge_size_value(conf->max_metadata, prev->max_metadata,
                              8 * 1024);
    ngx_conf_merge_uint_value(conf->max_depth, prev->max_depth, 8);
    ngx_conf_merge_uint_value(conf->page_default, prev->page_default, 50);
    ngx_conf_merge_uint_value(conf->page_max, prev->page_max, 200);
    ngx_conf_merge_uint_value(conf->max_members, prev->max_members, 10000);
    ngx_conf_merge_msec_value(conf->token_ttl, prev->token_ttl,
                              24 * 3600 * 1000);
    ngx_conf_merge_msec_value(conf->cache_ttl, prev->cache_ttl, 5000);
    ngx_conf_merge_str_value(conf->platform_key_hash,
                             prev->platform_key_hash, "");
    ngx_conf_merge_str_value(conf->token_key, prev->token_key, "");
    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    if (conf->page_default > conf->page_max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"parley_api_page_size\" %ui is above "
                           "\"parley_api_max_page_size\" %ui",
                           conf->page_default, conf->page_max);
        return NGX_CONF_ERROR;
    }

    if (conf->max_body < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"parley_api_max_body\" must be at least 1k");
        return NGX_CONF_ERROR;
    }

    if (conf->token_ttl < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"parley_api_token_ttl\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_parley_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_api_loc_conf_t *alcf = conf;

    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_parley_core_main_conf_t  *cmcf;

    if (alcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_parley_core_module);

    if (cmcf->db == NULL) {
        return "needs \"parley_db\" before it in the http block";
    }

    alcf->enable = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_parley_api_handler;

    return NGX_CONF_OK;
}


/* the operator credential is configured as its SHA-256, never in clear */

static char *
ngx_http_parley_api_platform_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_parley_api_loc_conf_t *alcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (alcf->platform_key_hash.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len != 64) {
        goto invalid;
    }

    for (i = 0; i < 64; i++) {
        if (!((value[1].data[i] >= '0' && value[1].data[i] <= '9')
              || (value[1].data[i] >= 'a' && value[1].data[i] <= 'f')))
        {
            goto invalid;
        }
    }

    alcf->platform_key_hash = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"%V\" \"%V\", expected 64 lowercase hex "
                       "digits (sha256sum of the key)", &cmd->name,
                       &value[1]);
    return NGX_CONF_ERROR;
}


/*
 * The key that user-token secrets derive from: at least 32 bytes read from
 * a file at configuration time (every node of a deployment shares it).
 */

static char *
ngx_http_parley_api_token_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_api_loc_conf_t *alcf = conf;

    u_char           *buf;
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (alcf->token_key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;
    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\": cannot open \"%V\"", &cmd->name, &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) < 32 || ngx_file_size(&fi) > 4096)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"%V\" must hold 32 to 4096 bytes of "
                           "random data", &cmd->name, &name);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(cf->pool, ngx_file_size(&fi));
    if (buf == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, buf, ngx_file_size(&fi), 0);
    ngx_close_file(file.fd);

    if (n != ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": cannot read \"%V\"",
                           &cmd->name, &name);
        return NGX_CONF_ERROR;
    }

    alcf->token_key.data = buf;
    alcf->token_key.len = n;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_parley_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_pool_cleanup_t          *cln;
    ngx_http_parley_api_req_t   *ar;

    ar = ngx_pcalloc(r->pool, sizeof(ngx_http_parley_api_req_t));
    if (ar == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->request = r;
    ar->pool = r->pool;
    ar->log = r->connection->log;
    ar->conf = ngx_http_get_module_loc_conf(r, ngx_http_parley_api_module);
    ar->core = ngx_http_get_module_main_conf(r, ngx_http_parley_core_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_parley_api_cleanup;
    cln->data = ar;

    ngx_http_set_ctx(r, ar, ngx_http_parley_api_module);

    /* from here on every answer goes through ngx_http_parley_api_fail */
    r->main->count++;

    if (ngx_http_parley_api_route(ar) != NGX_OK) {
        return NGX_DONE;
    }

    if (!ar->route->body) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            r->main->count--;
            return rc;
        }

        ngx_http_parley_api_authenticate(ar, ngx_http_parley_api_dispatch);
        return NGX_DONE;
    }

    /* a body-less POST (no length, not chunked) reads as {} */
    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            r->main->count--;
            return rc;
        }

        ar->body = json_object();
        ngx_http_parley_api_authenticate(ar, ngx_http_parley_api_dispatch);
        return NGX_DONE;
    }

    if (r->headers_in.content_type == NULL
        || r->headers_in.content_type->value.len < 16
        || ngx_strncasecmp(r->headers_in.content_type->value.data,
                           (u_char *) "application/json", 16) != 0
        || (r->headers_in.content_type->value.len > 16
            && r->headers_in.content_type->value.data[16] != ';'
            && r->headers_in.content_type->value.data[16] != ' '))
    {
        (void) ngx_http_discard_request_body(r);
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                 "unsupported_media_type", NULL,
                                 "the body must be application/json");
        return NGX_DONE;
    }

    if (r->headers_in.content_length_n > (off_t) ar->conf->max_body) {
        /* no keepalive: the body is not worth reading */
        r->keepalive = 0;
        (void) ngx_http_discard_request_body(r);
        ngx_http_parley_api_fail(ar, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                 "body_too_large", NULL,
                                 "the body is larger than %uz bytes",
                                 ar->conf->max_body);
        return NGX_DONE;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_parley_api_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        r->main->count--;
        return rc;
    }

    /* the body handler answers; drop the reference taken above, since
     * reading the body took its own */
    r->main->count--;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_parley_api_route(ngx_http_parley_api_req_t *ar)
{
    u_char              *q;
    size_t               path_len;
    ngx_http_request_t  *r;

    r = ar->request;

    q = ngx_strlchr(r->unparsed_uri.data,
                    r->unparsed_uri.data + r->unparsed_uri.len, '?');
    path_len = (q ? q : r->unparsed_uri.data + r->unparsed_uri.len)
               - r->unparsed_uri.data;

    return ngx_http_parley_api_match(ar, r->method, r->unparsed_uri.data,
                                     path_len);
}


/* Finds the route; answers 400/404/405 itself (NGX_ERROR) when none fits. */

static ngx_int_t
ngx_http_parley_api_match(ngx_http_parley_api_req_t *ar, ngx_uint_t method,
    u_char *path, size_t path_len)
{
    char                          *buf, *name;
    size_t                         bad;
    ngx_uint_t                     t, path_matched;
    parley_route_rc_t              rc;
    ngx_http_request_t            *r;
    ngx_http_parley_api_route_t   *route;

    r = ar->request;

    buf = ngx_pnalloc(ar->pool, path_len + PARLEY_ROUTE_MAX_PARAMS);
    if (buf == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    path_matched = 0;

    for (t = 0; ngx_http_parley_api_tables[t]; t++) {
        for (route = ngx_http_parley_api_tables[t]; route->pattern; route++) {

            rc = parley_route_match(route->pattern, (const char *) path,
                                    path_len, buf, ar->params, &ar->nparams,
                                    &bad);

            if (rc == PARLEY_ROUTE_NO_MATCH) {
                continue;
            }

            if (!(route->method & method)) {
                path_matched = 1;
                continue;
            }

            ar->route = route;

            if (rc == PARLEY_ROUTE_BAD_PARAM) {
                if (r) {
                    (void) ngx_http_discard_request_body(r);
                }

                name = ngx_pnalloc(ar->pool, ar->params[bad].name_len + 1);
                if (name == NULL) {
                    return NGX_ERROR;
                }

                ngx_memcpy(name, ar->params[bad].name,
                           ar->params[bad].name_len);
                name[ar->params[bad].name_len] = '\0';

                ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_parameter", name,
                                         "path parameter \"%*s\" is not a "
                                         "valid id",
                                         ar->params[bad].name_len,
                                         ar->params[bad].name);
                return NGX_ERROR;
            }

            return NGX_OK;
        }
    }

    if (r) {
        /* the body of a refused request must not be read as the next one */
        (void) ngx_http_discard_request_body(r);
    }

    if (path_matched) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                 "method_not_allowed", NULL,
                                 "this method is not allowed here");
    } else {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "not_found", NULL,
                                 "no such endpoint");
    }

    return NGX_ERROR;
}


static void
ngx_http_parley_api_body_handler(ngx_http_request_t *r)
{
    ngx_http_parley_api_req_t  *ar;

    ar = ngx_http_get_module_ctx(r, ngx_http_parley_api_module);

    /* the reference reading the body took is ours now */

    if (ngx_http_parley_api_parse_body(ar) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_authenticate(ar, ngx_http_parley_api_dispatch);
}


static ngx_int_t
ngx_http_parley_api_parse_body(ngx_http_parley_api_req_t *ar)
{
    u_char              *data, *p;
    size_t               len;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    json_error_t         jerr;
    ngx_http_request_t  *r;

    r = ar->request;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                 NULL, "a JSON object body is required");
        return NGX_ERROR;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    if (len > ar->conf->max_body) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                 "body_too_large", NULL,
                                 "the body is larger than %uz bytes",
                                 ar->conf->max_body);
        return NGX_ERROR;
    }

    data = ngx_pnalloc(r->pool, len + 1);
    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    p = data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* a body beyond client_body_buffer_size: a local temp file */
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "internal", NULL,
                                         "could not read the body");
                return NGX_ERROR;
            }
            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    *p = '\0';

    if (parley_json_max_depth(data, len) > ar->conf->max_depth) {
        ngx_http_parley_api_fail(ar, 422, "too_deep", NULL,
                                 "the body nests deeper than %ui levels",
                                 ar->conf->max_depth);
        return NGX_ERROR;
    }

    /* jansson rejects invalid UTF-8 and, with this flag, duplicate keys */
    ar->body = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES,
                          &jerr);

    if (ar->body == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                 NULL, "invalid JSON at line %d column %d: "
                                 "%s", jerr.line, jerr.column, jerr.text);
        return NGX_ERROR;
    }

    if (!json_is_object(ar->body)) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                 NULL, "the body must be a JSON object");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_parley_api_dispatch(ngx_http_parley_api_req_t *ar)
{
    ar->route->handler(ar);
}


ngx_int_t
ngx_http_parley_api_req_init(ngx_http_parley_api_req_t *ar, ngx_pool_t *pool,
    ngx_log_t *log, ngx_http_parley_core_main_conf_t *core,
    ngx_http_parley_api_loc_conf_t *conf, ngx_http_parley_api_sink_pt sink,
    void *sink_data)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_parley_api_cleanup;
    cln->data = ar;

    ar->pool = pool;
    ar->log = log;
    ar->core = core;
    ar->conf = conf;
    ar->sink = sink;
    ar->sink_data = sink_data;

    return NGX_OK;
}


void
ngx_http_parley_api_invoke(ngx_http_parley_api_req_t *ar, ngx_uint_t method,
    u_char *path, size_t len, json_t *body)
{
    ar->body = body;

    if (ngx_http_parley_api_match(ar, method, path, len) != NGX_OK) {
        return;
    }

    if (!(ar->route->auth & ar->auth)) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", NULL,
                                 "this credential may not call this");
        return;
    }

    if (ar->route->body && ar->body == NULL) {
        ar->body = json_object();
    }

    ar->route->handler(ar);
}


/* runs when the request's pool goes: detaches from every backend */

static void
ngx_http_parley_api_cleanup(void *data)
{
    ngx_http_parley_api_req_t *ar = data;

    ar->finalized = 1;

    if (ar->wait) {
        ngx_parley_db_acquire_cancel(ar->wait);
        ar->wait = NULL;
    }

    if (ar->conn) {
        /* mid-query or mid-transaction: the connection cannot be reused */
        ngx_parley_db_release(ar->conn, 1);
        ar->conn = NULL;
    }

    ngx_http_parley_api_auth_cleanup(ar);

    if (ar->body) {
        json_decref(ar->body);
        ar->body = NULL;
    }
}


/* ---- answers ------------------------------------------------------- */


void
ngx_http_parley_api_reply(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    json_t *body)
{
    u_char  *data;
    size_t   len;

    if (ar->done) {
        json_decref(body);
        return;
    }

    len = body ? json_dumpb(body, NULL, 0, JSON_COMPACT) : 0;
    data = NULL;

    if (len) {
        data = ngx_pnalloc(ar->pool, len + 1);
        if (data == NULL) {
            json_decref(body);
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        json_dumpb(body, (char *) data, len, JSON_COMPACT);
        data[len++] = '\n';
    }

    if (body) {
        json_decref(body);
    }

    ngx_http_parley_api_answer(ar, status, data, len);
}


void
ngx_http_parley_api_fail(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    const char *code, const char *field, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_http_parley_api_vfail(ar, status, code, field, fmt, args);
    va_end(args);
}


/*
 * A refusal that may also be an idempotent no-op: 204 answers with no body,
 * anything else is an error; either way an open transaction is rolled back.
 */

void
ngx_http_parley_api_refuse(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    const char *code, const char *field, const char *fmt, ...)
{
    va_list  args;

    if (status == NGX_HTTP_NO_CONTENT) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    va_start(args, fmt);
    ngx_http_parley_api_vfail(ar, status, code, field, fmt, args);
    va_end(args);
}


void
ngx_http_parley_api_vfail(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    const char *code, const char *field, const char *fmt, va_list args)
{
    u_char      msg[512], *last, *data, *p;
    size_t      len, mlen, flen;
    ngx_uint_t  level;

    if (ar->done) {
        return;
    }

    last = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);

    mlen = last - msg;
    flen = field ? ngx_strlen(field) : 0;

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\",\"field\":\"\","
                 "\"retryable\":false}}\n")
          + ngx_strlen(code)
          + parley_json_escaped_len(msg, mlen)
          + parley_json_escaped_len((u_char *) field, flen);

    data = ngx_pnalloc(ar->pool, len);
    if (data == NULL) {
        ngx_http_parley_api_finish(ar);

        if (ar->request) {
            ngx_http_finalize_request(ar->request,
                                      NGX_HTTP_INTERNAL_SERVER_ERROR);
        } else {
            ar->sink(ar, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL, 0);
        }

        return;
    }

    p = ngx_sprintf(data, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    p = parley_json_escape(p, msg, mlen);
    *p++ = '"';

    if (field) {
        p = ngx_cpymem(p, ",\"field\":\"", sizeof(",\"field\":\"") - 1);
        p = parley_json_escape(p, (u_char *) field, flen);
        *p++ = '"';
    }

    p = ngx_sprintf(p, ",\"retryable\":%s}}\n",
                    status == NGX_HTTP_SERVICE_UNAVAILABLE
                    || status == NGX_HTTP_TOO_MANY_REQUESTS ? "true" : "false");

    level = status >= 500 ? NGX_LOG_WARN : NGX_LOG_INFO;
    if (ar->request) {
        ngx_log_error(level, ar->log, 0,
                      "parley api: %V %V: %ui %s: %*s",
                      &ar->request->method_name, &ar->request->uri, status,
                      code, mlen, msg);

    } else {
        ngx_log_error(level, ar->log, 0,
                      "parley api: %s: %ui %s: %*s",
                      ar->route ? ar->route->operation : "-", status, code,
                      mlen, msg);
    }

    ngx_http_parley_api_answer(ar, status, data, p - data);
}


/* Answers; an open transaction is rolled back first (see the header). */

static void
ngx_http_parley_api_answer(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    u_char *data, size_t len)
{
    if (ar->in_txn && ar->conn && !ar->finalized) {
        ar->fail_status = status;
        ar->fail_body = data;
        ar->fail_len = len;
        ar->in_txn = 0;
        ngx_http_parley_api_sql_any(ar, ngx_http_parley_api_rolled_back,
                                    "ROLLBACK");
        return;
    }

    ngx_http_parley_api_finish(ar);
    (void) ngx_http_parley_api_send(ar, status, data, len);
}


static void
ngx_http_parley_api_rolled_back(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    if (res->status != NGX_OK) {
        /* the session is in doubt: let the pool replace it */
        ngx_parley_db_release(ar->conn, 1);
        ar->conn = NULL;
    }

    ngx_http_parley_api_finish(ar);
    (void) ngx_http_parley_api_send(ar, ar->fail_status, ar->fail_body,
                                    ar->fail_len);
}


void
ngx_http_parley_api_unavailable(ngx_http_parley_api_req_t *ar,
    const char *what, const char *detail)
{
    ngx_http_parley_api_fail(ar, NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                             NULL, "%s is unavailable, retry later (%s)",
                             what, detail);
}


/* hands the connection back: a transaction still open is abandoned */

void
ngx_http_parley_api_release(ngx_http_parley_api_req_t *ar)
{
    if (ar->conn && !ar->in_txn) {
        ngx_parley_db_release(ar->conn, 0);
        ar->conn = NULL;
    }
}


static void
ngx_http_parley_api_finish(ngx_http_parley_api_req_t *ar)
{
    ar->done = 1;

    if (ar->wait) {
        ngx_parley_db_acquire_cancel(ar->wait);
        ar->wait = NULL;
    }

    if (ar->conn) {
        ngx_parley_db_release(ar->conn, ar->in_txn);
        ar->conn = NULL;
        ar->in_txn = 0;
    }
}


static ngx_int_t
ngx_http_parley_api_send(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    u_char *data, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ar->request;

    if (ar->finalized) {
        return NGX_OK;
    }

    if (r == NULL) {
        ar->sink(ar, status, data, len);
        return NGX_OK;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    h = ngx_list_push(&r->headers_out.headers);
    if (h) {
        h->hash = 1;
        ngx_str_set(&h->key, "Cache-Control");
        ngx_str_set(&h->value, "no-store");
    }

    if (len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);
    ngx_http_finalize_request(r, rc);

    return rc;
}


/* ---- SQL chain ----------------------------------------------------- */


void
ngx_http_parley_api_sql(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_http_parley_api_run(ar, next, 0, fmt, args);
    va_end(args);
}


void
ngx_http_parley_api_sql_any(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_http_parley_api_run(ar, next, 1, fmt, args);
    va_end(args);
}


static void
ngx_http_parley_api_run(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, ngx_uint_t errors_ok, const char *fmt,
    va_list args)
{
    size_t      need;
    va_list     copy;
    ngx_int_t   rc;

    if (ar->done) {
        return;
    }

    va_copy(copy, args);
    (void) ngx_http_parley_api_format(NULL, NULL, fmt, copy, &need);
    va_end(copy);

    if (need > NGX_PARLEY_API_SQL_MAX) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                 "body_too_large", NULL,
                                 "the request is too large to store");
        return;
    }

    ar->sql = ngx_pnalloc(ar->pool, need);
    if (ar->sql == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ar->sql_len = ngx_http_parley_api_format(ar->sql, ar->sql + need, fmt,
                                             args, &need)
                  - ar->sql;
    ar->next = next;
    ar->sql_errors_ok = errors_ok;

    if (ar->conn) {
        ngx_http_parley_api_query(ar);
        return;
    }

    rc = ngx_parley_db_acquire(ar->core->db_client,
                               ngx_http_parley_api_acquired, ar, &ar->wait);

    if (rc != NGX_OK) {
        ngx_http_parley_api_unavailable(ar, "the message store",
                                        "too many requests waiting");
    }
}


static void
ngx_http_parley_api_acquired(ngx_parley_db_conn_t *conn, ngx_int_t rc,
    const char *err, void *data)
{
    ngx_http_parley_api_req_t *ar = data;

    ar->wait = NULL;

    if (rc != NGX_OK) {
        ngx_http_parley_api_unavailable(ar, "the message store", err);
        return;
    }

    ar->conn = conn;
    ngx_http_parley_api_query(ar);
}


static void
ngx_http_parley_api_query(ngx_http_parley_api_req_t *ar)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ar->log, 0, "parley api sql: %*s",
                   ar->sql_len, ar->sql);

    if (ngx_parley_db_query(ar->conn, ar->sql, ar->sql_len,
                            ngx_http_parley_api_result, ar)
        != NGX_OK)
    {
        ngx_parley_db_release(ar->conn, 1);
        ar->conn = NULL;
        ar->in_txn = 0;
        ngx_http_parley_api_unavailable(ar, "the message store",
                                        "the query could not be sent");
    }
}


static void
ngx_http_parley_api_result(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *res, void *data)
{
    ngx_http_parley_api_req_t *ar = data;

    if (ar->done) {
        return;
    }

    if (res->status == NGX_OK || ar->sql_errors_ok) {
        ar->next(ar, res);
        return;
    }

    if (ar->in_txn && ar->txn_start && ngx_http_parley_api_conflict(res)
        && ar->txn_attempts < NGX_PARLEY_API_TXN_ATTEMPTS)
    {
        ngx_log_error(NGX_LOG_INFO, ar->log, 0,
                      "parley api: transaction conflict (%ui), attempt %ui: "
                      "%s", (ngx_uint_t) res->errcode, ar->txn_attempts,
                      res->error);
        ngx_http_parley_api_rollback(ar, ngx_http_parley_api_retry);
        return;
    }

    if (res->status == NGX_ETIMEDOUT || res->retryable) {
        ngx_http_parley_api_unavailable(ar, "the message store", res->error);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ar->log, 0,
                  "parley api: SQL error %ui: %s in \"%*s\"",
                  (ngx_uint_t) res->errcode, res->error,
                  ngx_min(ar->sql_len, 512), ar->sql);

    ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR, "internal",
                             NULL, "the request could not be completed");
}


static ngx_uint_t
ngx_http_parley_api_conflict(ngx_parley_db_result_t *res)
{
    switch (res->errcode) {
    case 1205:  /* lock wait timeout */
    case 1213:  /* deadlock */
    case 8002:  /* TiDB: SELECT FOR UPDATE conflict */
    case 8022:  /* TiDB: transaction retry */
    case 9007:  /* TiDB: write conflict */
        return 1;
    default:
        return 0;
    }
}


void
ngx_http_parley_api_begin(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_handler_pt start)
{
    ar->txn_start = start;
    ar->txn_attempts++;

    if (ar->published) {
        /* a rerun publishes only what its own run wrote */
        ar->published->nelts = 0;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_api_begun,
                            "START TRANSACTION");
}


static void
ngx_http_parley_api_begun(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ar->in_txn = 1;
    ar->txn_start(ar);
}


static void
ngx_http_parley_api_retry(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_begin(ar, ar->txn_start);
}


static void
ngx_http_parley_api_ended(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_step_pt  next;

    ar->in_txn = 0;
    next = (ngx_http_parley_api_step_pt) ar->data_next;
    next(ar, res);
}


void
ngx_http_parley_api_commit(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next)
{
    ar->data_next = (void *) next;
    ngx_http_parley_api_sql(ar, ngx_http_parley_api_committed, "COMMIT");
}


static void
ngx_http_parley_api_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_publish_flush(ar);
    ngx_http_parley_api_ended(ar, res);
}


void
ngx_http_parley_api_rollback(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next)
{
    ar->data_next = (void *) next;
    ngx_http_parley_api_sql(ar, ngx_http_parley_api_ended, "ROLLBACK");
}


/*
 * The SQL formatter.  With p == NULL it only measures (*need, including
 * room for nothing else); otherwise it writes up to last.
 */

static u_char *
ngx_http_parley_api_format(u_char *p, u_char *last, const char *fmt,
    va_list args, size_t *need)
{
    u_char       num[NGX_INT64_LEN + 1], *e;
    char        *js;
    size_t       n, len;
    json_t      *json;
    uint64_t     u;
    int64_t      d;
    ngx_str_t   *s;
    const char  *cs;

    n = 0;

#define PUT(src, l)                                                          \
    do {                                                                     \
        if (p) { p = ngx_cpymem(p, (src), (l)); }                            \
        n += (l);                                                            \
    } while (0)

#define PUT_LITERAL(src, l)                                                  \
    do {                                                                     \
        if (p) {                                                             \
            *p++ = '\'';                                                     \
            p = parley_sql_escape(p, (u_char *) (src), (l));                 \
            *p++ = '\'';                                                     \
        }                                                                    \
        n += 2 + parley_sql_escaped_len((u_char *) (src), (l));             \
    } while (0)

    while (*fmt) {

        if (*fmt != '%') {
            cs = fmt;
            while (*fmt && *fmt != '%') {
                fmt++;
            }
            PUT(cs, (size_t) (fmt - cs));
            continue;
        }

        fmt++;

        switch (*fmt++) {

        case 'L':
            s = va_arg(args, ngx_str_t *);
            PUT_LITERAL(s->data, s->len);
            break;

        case 'N':
            s = va_arg(args, ngx_str_t *);
            if (s->data == NULL) {
                PUT("NULL", 4);
            } else {
                PUT_LITERAL(s->data, s->len);
            }
            break;

        case 'Q':
            cs = va_arg(args, const char *);
            PUT_LITERAL(cs, ngx_strlen(cs));
            break;

        case 'J':
            json = va_arg(args, json_t *);
            if (json == NULL || json_is_null(json)) {
                PUT("NULL", 4);
                break;
            }

            len = json_dumpb(json, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
            js = ngx_alloc(len + 1, ngx_cycle->log);
            if (js == NULL) {
                PUT("NULL", 4);
                break;
            }

            json_dumpb(json, js, len, JSON_COMPACT | JSON_ENCODE_ANY);
            PUT_LITERAL(js, len);
            ngx_free(js);
            break;

        case 'U':
            u = va_arg(args, uint64_t);
            e = ngx_sprintf(num, "%uL", u);
            PUT(num, (size_t) (e - num));
            break;

        case 'D':
            d = va_arg(args, int64_t);
            e = ngx_sprintf(num, "%L", d);
            PUT(num, (size_t) (e - num));
            break;

        case 'S':
            cs = va_arg(args, const char *);
            PUT(cs, ngx_strlen(cs));
            break;

        case '%':
            PUT("%", 1);
            break;

        default:
            /* a programming error in a format string: make it visible */
            PUT("<bad format>", sizeof("<bad format>") - 1);
            break;
        }
    }

#undef PUT
#undef PUT_LITERAL

    *need = n;
    (void) last;

    return p;
}


/* ---- helpers for steps --------------------------------------------- */


ngx_str_t
ngx_http_parley_api_param(ngx_http_parley_api_req_t *ar, ngx_uint_t i)
{
    ngx_str_t  s;

    s.data = (u_char *) ar->params[i].value;
    s.len = ar->params[i].len;

    return s;
}


ngx_int_t
ngx_http_parley_api_arg(ngx_http_parley_api_req_t *ar, const char *name,
    ngx_str_t *value)
{
    u_char    *dst, *src;
    ngx_str_t  raw;

    if (ar->request == NULL
        || ngx_http_arg(ar->request, (u_char *) name, ngx_strlen(name), &raw)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(ar->pool, raw.len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    value->data = dst;
    src = raw.data;
    ngx_unescape_uri(&dst, &src, raw.len, 0);
    value->len = dst - value->data;
    *dst = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_http_parley_api_limit(ngx_http_parley_api_req_t *ar, ngx_uint_t *limit)
{
    ngx_int_t  n;
    ngx_str_t  v;

    *limit = ar->conf->page_default;

    if (ngx_http_parley_api_arg(ar, "limit", &v) != NGX_OK) {
        return NGX_OK;
    }

    n = ngx_atoi(v.data, v.len);

    if (n < 1 || (ngx_uint_t) n > ar->conf->page_max) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "limit", "limit must be 1..%ui",
                                 ar->conf->page_max);
        return NGX_ERROR;
    }

    *limit = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_parley_api_arg_string_cursor(ngx_http_parley_api_req_t *ar,
    ngx_str_t *after)
{
    u_char     *buf;
    size_t      n, cap;
    ngx_str_t   cursor;

    ngx_str_set(after, "");

    if (ngx_http_parley_api_arg(ar, "cursor", &cursor) != NGX_OK) {
        return NGX_OK;
    }

    cap = parley_base64url_decoded_len(cursor.len);

    buf = ngx_pnalloc(ar->pool, cap + 1);
    if (buf == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    n = 0;

    if (cursor.len == 0 || cursor.len > 200
        || parley_base64url_decode((const char *) cursor.data, cursor.len,
                                   buf, cap, &n)
           != 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "cursor", "the cursor is not valid");
        return NGX_ERROR;
    }

    after->data = buf;
    after->len = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_parley_api_arg_id_cursor(ngx_http_parley_api_req_t *ar, uint64_t *id)
{
    uint64_t   v;
    ngx_str_t  cursor;

    if (ngx_http_parley_api_arg(ar, "cursor", &cursor) != NGX_OK) {
        return NGX_OK;
    }

    if (parley_id_parse((const char *) cursor.data, cursor.len, &v) != 0
        || v == 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "cursor", "the cursor is not valid");
        return NGX_ERROR;
    }

    *id = v;

    return NGX_OK;
}


json_t *
ngx_http_parley_api_string_cursor_json(ngx_http_parley_api_req_t *ar,
    const char *last, size_t len)
{
    char    *cur;
    size_t   clen;

    clen = parley_base64url_encoded_len(len) + 1;

    cur = ngx_pnalloc(ar->pool, clen);
    if (cur == NULL
        || parley_base64url_encode(last, len, cur, clen, &clen) != 0)
    {
        return json_null();
    }

    return json_stringn(cur, clen);
}


ngx_int_t
ngx_http_parley_api_arg_like(ngx_http_parley_api_req_t *ar, const char *name,
    ngx_uint_t contains, ngx_str_t *like)
{
    u_char     *pat, *p;
    ngx_str_t   q;

    ngx_str_set(like, "%");

    if (ngx_http_parley_api_arg(ar, name, &q) != NGX_OK || q.len == 0) {
        return NGX_OK;
    }

    if (q.len > 128) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 name, "%s is longer than 128 bytes", name);
        return NGX_ERROR;
    }

    pat = ngx_pnalloc(ar->pool, 2 * q.len + 2);
    if (pat == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    p = pat;

    if (contains) {
        *p++ = '%';
    }

    p = parley_sql_like_pattern(p, q.data, q.len);
    *p++ = '%';

    like->data = pat;
    like->len = p - pat;

    return NGX_OK;
}


json_t *
ngx_http_parley_api_col_string(MYSQL_ROW row, unsigned long *len, unsigned i)
{
    if (row[i] == NULL) {
        return json_null();
    }

    return json_stringn(row[i], len[i]);
}


json_t *
ngx_http_parley_api_col_json(MYSQL_ROW row, unsigned long *len, unsigned i)
{
    json_t  *v;

    if (row[i] == NULL) {
        return json_null();
    }

    v = json_loadb(row[i], len[i], JSON_DECODE_ANY, NULL);

    return v ? v : json_null();
}


uint64_t
ngx_http_parley_api_col_u64(MYSQL_ROW row, unsigned i)
{
    return row[i] ? strtoull(row[i], NULL, 10) : 0;
}


void
ngx_http_parley_api_reply_id_page(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res, ngx_uint_t limit, const char *name,
    ngx_http_parley_api_row_pt render)
{
    json_t      *items, *next;
    uint64_t     last;
    MYSQL_ROW    row;
    ngx_uint_t   n;

    items = json_array();
    next = json_null();
    last = 0;

    for (n = 0; res->res && (row = mysql_fetch_row(res->res)); n++) {

        if (n == limit) {
            json_decref(next);
            next = ngx_http_parley_api_id_json(last);
            break;
        }

        json_array_append_new(items,
                              render(row, mysql_fetch_lengths(res->res)));
        last = ngx_http_parley_api_col_u64(row, 0);
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK,
                              json_pack("{s:o,s:o}", name, items,
                                        "next_cursor", next));
}


ngx_int_t
ngx_http_parley_api_new_id(ngx_http_parley_api_req_t *ar, uint64_t *id)
{
    if (ngx_parley_next_id(id) != NGX_OK) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "no id could be minted");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* ids travel as decimal strings: JavaScript numbers lose 64-bit precision */

json_t *
ngx_http_parley_api_id_json(uint64_t id)
{
    char  buf[NGX_INT64_LEN + 1];

    *ngx_sprintf((u_char *) buf, "%uL", id) = '\0';

    return json_string(buf);
}
