
/*
 * The platform API: tenants, for the operator of a Parley deployment.
 *
 *   POST   /v1/platform/tenants                 create, with a first key
 *   GET    /v1/platform/tenants                 list
 *   GET    /v1/platform/tenants/{tid}           get
 *   POST   /v1/platform/tenants/{tid}/suspend   stop its keys and tokens
 *   POST   /v1/platform/tenants/{tid}/activate  let them work again
 *   DELETE /v1/platform/tenants/{tid}           delete it and all its data
 *
 * Every route needs the operator credential, configured as its SHA-256
 * with parley_platform_key_sha256 (the auth layer checks it).  A suspended
 * tenant's keys and tokens answer 403 tenant_suspended within
 * parley_api_cache_ttl on every worker.
 *
 * Deleting a tenant suspends it, waits out the workers' credential caches
 * (parley_api_cache_ttl) so that no new request of the tenant starts, then
 * deletes its rows table by table in batches of
 * NGX_PARLEY_PLATFORM_BATCH, each its own small transaction (TiDB limits
 * transaction size, and a long one would hold locks for its whole run),
 * and the tenant row last.  The tables are all those with a tenant_id
 * column, read from information_schema, so tables added by later
 * migrations are covered without a change here.  A deletion that stops
 * half-way (a store failure, nginx stopping) leaves a suspended tenant
 * with part of its data: deleting again continues.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_idp.h"
#include "ngx_http_parley_api_json.h"
#include "parley_apikey.h"
#include "parley_id.h"


#define NGX_PARLEY_PLATFORM_NAME_MAX   128
#define NGX_PARLEY_PLATFORM_BATCH      1000
#define NGX_PARLEY_PLATFORM_TABLES_MAX 256

#define NGX_PARLEY_TENANT_COLUMNS                                            \
    "t.id, t.name, t.status, t.created_at, t.updated_at, "                   \
    "(SELECT COUNT(*) FROM tenant_api_keys k WHERE k.tenant_id = t.id "      \
    "AND k.revoked_at IS NULL)"


typedef struct {
    uint64_t                   tid;
    uint64_t                   key_id;
    ngx_str_t                  name;
    ngx_uint_t                 status;       /* of the answer */
    const char                *target;       /* suspend/activate: status */
    const char                *event;
    char                       key[PARLEY_APIKEY_LEN + 1];
    char                       hash[PARLEY_SHA256_HEX_LEN + 1];

    /* delete */
    ngx_array_t               *tables;       /* of char *, NUL-terminated */
    ngx_uint_t                 table;
    uint64_t                   deleted;      /* rows, for the log */
    ngx_event_t                wait;
} ngx_http_parley_platform_ctx_t;


static ngx_http_parley_platform_ctx_t *ngx_http_parley_platform_ctx(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_cleanup(void *data);
static void ngx_http_parley_platform_create(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_create_txn(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_key_inserted(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_get(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_suspend(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_activate(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_status_txn(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_status_locked(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_status_changed(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_delete_txn(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_delete_locked(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete_suspended(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete_wait(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete_waited(ngx_event_t *ev);
static void ngx_http_parley_platform_delete_tables(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete_batch(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete_tenant(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_delete_final_txn(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_platform_delete_row(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_delete_done(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_announce(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *reason);
static void ngx_http_parley_platform_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_platform_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static json_t *ngx_http_parley_platform_row(MYSQL_ROW row,
    unsigned long *len);
static ngx_int_t ngx_http_parley_platform_name(ngx_str_t *name);
static ngx_int_t ngx_http_parley_platform_identifier(const char *s,
    size_t len);


ngx_http_parley_api_route_t  ngx_http_parley_api_platform_routes[] = {

    { NGX_HTTP_POST, "/v1/platform/tenants", NGX_PARLEY_AUTH_PLATFORM,
      ngx_http_parley_platform_create, "createTenant", 1 },

    { NGX_HTTP_GET, "/v1/platform/tenants", NGX_PARLEY_AUTH_PLATFORM,
      ngx_http_parley_platform_list, "listTenants", 0 },

    { NGX_HTTP_GET, "/v1/platform/tenants/{tid}", NGX_PARLEY_AUTH_PLATFORM,
      ngx_http_parley_platform_get, "getTenant", 0 },

    { NGX_HTTP_POST, "/v1/platform/tenants/{tid}/suspend",
      NGX_PARLEY_AUTH_PLATFORM,
      ngx_http_parley_platform_suspend, "suspendTenant", 0 },

    { NGX_HTTP_POST, "/v1/platform/tenants/{tid}/activate",
      NGX_PARLEY_AUTH_PLATFORM,
      ngx_http_parley_platform_activate, "activateTenant", 0 },

    { NGX_HTTP_DELETE, "/v1/platform/tenants/{tid}", NGX_PARLEY_AUTH_PLATFORM,
      ngx_http_parley_platform_delete, "deleteTenant", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static const ngx_http_parley_field_t  ngx_http_parley_tenant_fields[] = {
    { "name", NGX_PARLEY_FIELD_STRING, 1, NGX_PARLEY_PLATFORM_NAME_MAX, 1, 0,
      NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


/*
 * The request's state; with a {tid} in the path, that tenant, which also
 * becomes ar->tenant_id so that the events carry it.
 */

static ngx_http_parley_platform_ctx_t *
ngx_http_parley_platform_ctx(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                        tid;
    ngx_pool_cleanup_t              *cln;
    ngx_http_parley_platform_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_platform_ctx_t));
    cln = ngx_pool_cleanup_add(ar->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    cln->handler = ngx_http_parley_platform_cleanup;
    cln->data = ctx;

    if (ar->nparams) {
        tid = ngx_http_parley_api_param(ar, 0);

        if (parley_id_parse((const char *) tid.data, tid.len, &ctx->tid) != 0
            || ctx->tid == 0)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "tid",
                                     "\"tid\" is not a tenant id");
            return NULL;
        }

        ar->tenant_id = ctx->tid;
    }

    ctx->status = NGX_HTTP_OK;
    ar->data = ctx;

    return ctx;
}


static void
ngx_http_parley_platform_cleanup(void *data)
{
    ngx_http_parley_platform_ctx_t *ctx = data;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    OPENSSL_cleanse(ctx->key, sizeof(ctx->key));
}


/* ---- create -------------------------------------------------------- */

static void
ngx_http_parley_platform_create(ngx_http_parley_api_req_t *ar)
{
    u_char                           random[PARLEY_APIKEY_RANDOM_LEN];
    ngx_http_parley_platform_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_tenant_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_platform_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_str(ar->body, "name", &ctx->name);

    if (ngx_http_parley_platform_name(&ctx->name) != NGX_OK) {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "name",
                                 "\"name\" may not hold control characters "
                                 "or start or end with a space");
        return;
    }

    if (ngx_http_parley_api_new_id(ar, &ctx->tid) != NGX_OK
        || ngx_http_parley_api_new_id(ar, &ctx->key_id) != NGX_OK)
    {
        return;
    }

    if (RAND_bytes(random, sizeof(random)) != 1) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "no randomness for a key");
        return;
    }

    parley_apikey_format(random, ctx->key);
    OPENSSL_cleanse(random, sizeof(random));

    if (parley_apikey_hash(ctx->key, PARLEY_APIKEY_LEN, ctx->hash) != 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "the key cannot be hashed");
        return;
    }

    ar->tenant_id = ctx->tid;
    ctx->status = NGX_HTTP_CREATED;
    ctx->event = "tenant.created";

    ngx_http_parley_api_begin(ar, ngx_http_parley_platform_create_txn);
}


static void
ngx_http_parley_platform_create_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql_any(ar, ngx_http_parley_platform_inserted,
        "INSERT INTO tenants (id, name, status, settings, created_at, "
        "updated_at) VALUES (%U, %L, 'active', NULL, UTC_TIMESTAMP(3), "
        "UTC_TIMESTAMP(3))",
        ctx->tid, &ctx->name);
}


static void
ngx_http_parley_platform_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_str_t                        hash, prefix;
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    if (res->status != NGX_OK) {
        if (res->errcode == 1062) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "tenant_exists",
                                     "name", "a tenant named \"%V\" exists",
                                     &ctx->name);
            return;
        }

        ngx_http_parley_api_fail(ar, res->retryable
                                     ? NGX_HTTP_SERVICE_UNAVAILABLE
                                     : NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 res->retryable ? "unavailable" : "internal",
                                 NULL, "the tenant could not be stored: %s",
                                 res->retryable ? res->error
                                                : "server error");
        return;
    }

    hash.data = (u_char *) ctx->hash;
    hash.len = PARLEY_SHA256_HEX_LEN;
    prefix.data = (u_char *) ctx->key;
    prefix.len = PARLEY_APIKEY_PREFIX_LEN;

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_key_inserted,
        "INSERT INTO tenant_api_keys (id, tenant_id, key_hash, key_prefix, "
        "label, created_at, revoked_at) VALUES "
        "(%U, %U, %L, %L, 'admin', UTC_TIMESTAMP(3), NULL)",
        ctx->key_id, ctx->tid, &hash, &prefix);
}


static void
ngx_http_parley_platform_key_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_announce(ar, ngx_http_parley_platform_commit,
                                      NULL);
}


/* ---- read ---------------------------------------------------------- */

static void
ngx_http_parley_platform_get(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx;

    ctx = ngx_http_parley_platform_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_platform_select(ar, NULL);
}


static void
ngx_http_parley_platform_list(ngx_http_parley_api_req_t *ar)
{
    uint64_t     after;
    ngx_uint_t   limit;

    if (ngx_http_parley_api_limit(ar, &limit) != NGX_OK) {
        return;
    }

    after = 0;

    if (ngx_http_parley_api_arg_id_cursor(ar, &after) != NGX_OK) {
        return;
    }

    ar->data = (void *) (uintptr_t) limit;

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_listed,
        "SELECT " NGX_PARLEY_TENANT_COLUMNS " FROM tenants t "
        "WHERE t.id > %U ORDER BY t.id LIMIT %U",
        after, (uint64_t) limit + 1);
}


static void
ngx_http_parley_platform_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_reply_id_page(ar, res,
                                      (ngx_uint_t) (uintptr_t) ar->data,
                                      "tenants", ngx_http_parley_platform_row);
}


/* ---- suspend, activate --------------------------------------------- */

static void
ngx_http_parley_platform_suspend(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx;

    ctx = ngx_http_parley_platform_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->target = "suspended";
    ctx->event = "tenant.suspended";
    ngx_http_parley_api_begin(ar, ngx_http_parley_platform_status_txn);
}


static void
ngx_http_parley_platform_activate(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx;

    ctx = ngx_http_parley_platform_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->target = "active";
    ctx->event = "tenant.activated";
    ngx_http_parley_api_begin(ar, ngx_http_parley_platform_status_txn);
}


static void
ngx_http_parley_platform_status_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_status_locked,
        "SELECT status FROM tenants WHERE id = %U FOR UPDATE", ctx->tid);
}


/* a tenant already in the asked state is answered as is, with no event */

static void
ngx_http_parley_platform_status_locked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                        row;
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "tenant_not_found",
                                 "tid", "no tenant %uL", ctx->tid);
        return;
    }

    if (row[0] && ngx_strcmp(row[0], ctx->target) == 0) {
        ngx_http_parley_api_rollback(ar, ngx_http_parley_platform_select);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_status_changed,
        "UPDATE tenants SET status = %Q, updated_at = UTC_TIMESTAMP(3) "
        "WHERE id = %U", ctx->target, ctx->tid);
}


static void
ngx_http_parley_platform_status_changed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_announce(ar, ngx_http_parley_platform_commit,
                                      NULL);
}


/* ---- delete -------------------------------------------------------- */

static void
ngx_http_parley_platform_delete(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx;

    ctx = ngx_http_parley_platform_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->status = NGX_HTTP_NO_CONTENT;
    ngx_http_parley_api_begin(ar, ngx_http_parley_platform_delete_txn);
}


static void
ngx_http_parley_platform_delete_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_delete_locked,
        "SELECT status, name FROM tenants WHERE id = %U FOR UPDATE",
        ctx->tid);
}


static void
ngx_http_parley_platform_delete_locked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                        row;
    unsigned long                   *len;
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "tenant_not_found",
                                 "tid", "no tenant %uL", ctx->tid);
        return;
    }

    len = mysql_fetch_lengths(res->res);

    ctx->name.len = len[1];
    ctx->name.data = ngx_pnalloc(ar->pool, len[1] + 1);
    if (ctx->name.data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_memcpy(ctx->name.data, row[1], len[1]);

    if (row[0] && ngx_strcmp(row[0], "suspended") == 0) {
        ngx_http_parley_api_commit(ar, ngx_http_parley_platform_delete_wait);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_delete_suspended,
        "UPDATE tenants SET status = 'suspended', "
        "updated_at = UTC_TIMESTAMP(3) WHERE id = %U", ctx->tid);
}


static void
ngx_http_parley_platform_delete_suspended(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ctx->event = "tenant.suspended";
    ngx_http_parley_platform_announce(ar, ngx_http_parley_platform_commit,
                                      "deleting");
}


/*
 * Suspended: every worker refuses the tenant's credentials once its cache
 * entries expire.  The wait holds no store connection.
 */

static void
ngx_http_parley_platform_delete_wait(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    if (ar->conn) {
        ngx_parley_db_release(ar->conn, 0);
        ar->conn = NULL;
    }

    ctx->wait.handler = ngx_http_parley_platform_delete_waited;
    ctx->wait.data = ar;
    ctx->wait.log = ar->log;

    ngx_add_timer(&ctx->wait, ar->conf->cache_ttl + 100);
}


static void
ngx_http_parley_platform_delete_waited(ngx_event_t *ev)
{
    ngx_http_parley_api_req_t  *ar = ev->data;

    /* tenant_api_keys first (the keys), outbox last, the rest by name */
    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_delete_tables,
        "SELECT c.TABLE_NAME FROM information_schema.COLUMNS c "
        "JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA "
        "AND t.TABLE_NAME = c.TABLE_NAME "
        "WHERE c.TABLE_SCHEMA = DATABASE() AND c.COLUMN_NAME = 'tenant_id' "
        "AND t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_NAME <> 'tenants' "
        "ORDER BY c.TABLE_NAME <> 'tenant_api_keys', "
        "c.TABLE_NAME = 'outbox', c.TABLE_NAME");
}


static void
ngx_http_parley_platform_delete_tables(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    char                            **name;
    MYSQL_ROW                         row;
    unsigned long                    *len;
    ngx_http_parley_platform_ctx_t   *ctx = ar->data;

    ctx->tables = ngx_array_create(ar->pool, 32, sizeof(char *));
    if (ctx->tables == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        /* the names go into SQL text: only plain identifiers */
        if (row[0] == NULL
            || ngx_http_parley_platform_identifier(row[0], len[0]) != NGX_OK
            || ctx->tables->nelts >= NGX_PARLEY_PLATFORM_TABLES_MAX)
        {
            ngx_log_error(NGX_LOG_ERR, ar->log, 0,
                          "parley platform: cannot delete from table "
                          "\"%*s\"", row[0] ? (size_t) len[0] : 0,
                          row[0] ? row[0] : "");
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "a table of the "
                                     "schema cannot be cleared");
            return;
        }

        name = ngx_array_push(ctx->tables);
        if (name == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        *name = ngx_pnalloc(ar->pool, len[0] + 1);
        if (*name == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        ngx_cpystrn((u_char *) *name, (u_char *) row[0], len[0] + 1);
    }

    ctx->table = 0;
    ngx_http_parley_platform_delete_batch(ar, NULL);
}


/*
 * One batch of one table per statement, in autocommit: each statement is
 * its own small transaction.  A full batch means there may be more.
 */

static void
ngx_http_parley_platform_delete_batch(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    char                            **names;
    ngx_http_parley_platform_ctx_t   *ctx = ar->data;

    if (res) {
        ctx->deleted += res->affected_rows;

        if (res->affected_rows < NGX_PARLEY_PLATFORM_BATCH) {
            ctx->table++;
        }
    }

    if (ctx->table == ctx->tables->nelts) {
        ngx_http_parley_platform_delete_tenant(ar);
        return;
    }

    names = ctx->tables->elts;

    /*
     * The outbox only while the tenant row exists: once a concurrent
     * deletion has finished, the outbox holds its tenant.deleted event.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_delete_batch,
        "DELETE FROM `%S` WHERE tenant_id = %U "
        "AND (%U OR EXISTS (SELECT 1 FROM tenants WHERE id = %U)) LIMIT %U",
        names[ctx->table], ctx->tid,
        (uint64_t) (ngx_strcmp(names[ctx->table], "outbox") != 0), ctx->tid,
        (uint64_t) NGX_PARLEY_PLATFORM_BATCH);
}


static void
ngx_http_parley_platform_delete_tenant(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_begin(ar, ngx_http_parley_platform_delete_final_txn);
}


/* the last transaction: the tenant row and the event that says so */

static void
ngx_http_parley_platform_delete_final_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_delete_row,
        "DELETE FROM tenants WHERE id = %U", ctx->tid);
}


static void
ngx_http_parley_platform_delete_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        /* a concurrent deletion finished first: its event says it */
        ngx_http_parley_api_rollback(ar, ngx_http_parley_platform_delete_done);
        return;
    }

    ctx->event = "tenant.deleted";
    ngx_http_parley_platform_announce(ar, ngx_http_parley_platform_delete_done,
                                      NULL);
}


static void
ngx_http_parley_platform_delete_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    if (ar->in_txn) {
        ngx_http_parley_api_commit(ar, ngx_http_parley_platform_delete_done);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ar->log, 0,
                  "parley platform: deleted tenant %uL \"%V\" and %uL rows "
                  "of its data", ctx->tid, &ctx->name, ctx->deleted);

    ngx_http_parley_api_idp_forget(ctx->tid);
    ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
}


/* ---- the common tail of writes ------------------------------------- */

static void
ngx_http_parley_platform_announce(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *reason)
{
    char                             tid[NGX_INT64_LEN + 1];
    json_t                          *data;
    ngx_str_t                        key;
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    key.data = (u_char *) tid;
    key.len = ngx_sprintf(key.data, "%uL", ctx->tid) - key.data;

    data = json_pack("{s:s%}", "tenant_id", key.data, key.len);

    if (data && ctx->name.len) {
        json_object_set_new(data, "name",
                            json_stringn((char *) ctx->name.data,
                                         ctx->name.len));
    }

    if (data && reason) {
        json_object_set_new(data, "reason", json_string(reason));
    }

    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_outbox(ar, next, "parley.events", &key, ctx->event,
                               data);
}


static void
ngx_http_parley_platform_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_commit(ar, ctx->status == NGX_HTTP_NO_CONTENT
                                   ? ngx_http_parley_platform_delete_wait
                                   : ngx_http_parley_platform_select);
}


static void
ngx_http_parley_platform_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_platform_render,
        "SELECT " NGX_PARLEY_TENANT_COLUMNS " FROM tenants t "
        "WHERE t.id = %U", ctx->tid);
}


static void
ngx_http_parley_platform_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                          *tenant, *body;
    MYSQL_ROW                        row;
    ngx_http_parley_platform_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "tenant_not_found",
                                 "tid", "no tenant %uL", ctx->tid);
        return;
    }

    tenant = ngx_http_parley_platform_row(row, mysql_fetch_lengths(res->res));

    if (ctx->status != NGX_HTTP_CREATED) {
        ngx_http_parley_api_reply(ar, ctx->status, tenant);
        return;
    }

    /* the only time the first key is ever shown */
    body = json_pack("{s:o,s:s%}", "tenant", tenant,
                     "api_key", ctx->key, (size_t) PARLEY_APIKEY_LEN);

    ngx_http_parley_api_reply(ar, NGX_HTTP_CREATED, body);
}


static json_t *
ngx_http_parley_platform_row(MYSQL_ROW row, unsigned long *len)
{
    return json_pack("{s:o,s:o,s:o,s:I,s:o,s:o}",
                     "id", ngx_http_parley_api_id_json(
                               ngx_http_parley_api_col_u64(row, 0)),
                     "name", ngx_http_parley_api_col_string(row, len, 1),
                     "status", ngx_http_parley_api_col_string(row, len, 2),
                     "active_keys",
                     (json_int_t) ngx_http_parley_api_col_u64(row, 5),
                     "created_at", ngx_http_parley_api_col_time(row, len, 3),
                     "updated_at", ngx_http_parley_api_col_time(row, len, 4));
}


/*
 * parleyctl's rules for a tenant name (valid UTF-8, which jansson already
 * checked): no control characters, no surrounding spaces, which make two
 * names look the same.
 */

static ngx_int_t
ngx_http_parley_platform_name(ngx_str_t *name)
{
    size_t  i;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] < 0x20 || name->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    if (name->data[0] == ' ' || name->data[name->len - 1] == ' ') {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_platform_identifier(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > 64) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
