
/*
 * A tenant's own credentials.
 *
 *   GET    /v1/apikeys              list the admin API keys    (API key)
 *   POST   /v1/apikeys              issue one more             (API key)
 *   DELETE /v1/apikeys/{prefix}     revoke one                 (API key)
 *   GET    /v1/settings/tokens      identity provider settings (API key)
 *   PUT    /v1/settings/tokens                                 (API key)
 *   DELETE /v1/settings/tokens                                 (API key)
 *
 * Keys rotate by overlap: issue a new key, move the clients to it, revoke
 * the old one.  A key is shown once, when it is issued; the database keeps
 * its SHA-256 and its 11-character prefix, by which it is listed and
 * revoked.  The last active key cannot be revoked (a tenant without a key
 * could only be reached through the platform API again).  A revoked key
 * stops working at once on the worker that revoked it and within
 * parley_api_cache_ttl on every other.
 *
 * The token settings handlers live in ngx_http_parley_api_idp.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_cache.h"
#include "ngx_http_parley_api_idp.h"
#include "ngx_http_parley_api_json.h"
#include "parley_apikey.h"
#include "parley_id.h"


#define NGX_PARLEY_KEYS_ACTIVE_MAX   20   /* active keys of one tenant */
#define NGX_PARLEY_KEYS_LABEL_MAX    128

#define NGX_PARLEY_KEY_COLUMNS                                               \
    "id, key_prefix, label, created_at, revoked_at"


typedef struct {
    uint64_t                   id;
    ngx_str_t                  label;
    ngx_str_t                  prefix;
    char                       key[PARLEY_APIKEY_LEN + 1];
    char                       hash[PARLEY_SHA256_HEX_LEN + 1];
} ngx_http_parley_keys_ctx_t;


static ngx_http_parley_keys_ctx_t *ngx_http_parley_keys_ctx(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_keys_cleanup(void *data);
static void ngx_http_parley_keys_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_keys_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_create(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_keys_create_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_keys_locked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_counted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_created(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_revoke(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_keys_revoke_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_keys_revoke_find(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_revoke_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_revoked_before(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_revoked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_revoke_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_keys_announce(ngx_http_parley_api_req_t *ar,
    const char *type, ngx_http_parley_api_step_pt next);
static json_t *ngx_http_parley_keys_row(MYSQL_ROW row, unsigned long *len);
static ngx_int_t ngx_http_parley_keys_label(ngx_str_t *label);


ngx_http_parley_api_route_t  ngx_http_parley_api_keys_routes[] = {

    { NGX_HTTP_GET, "/v1/apikeys", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_keys_list, "listApiKeys", 0 },

    { NGX_HTTP_POST, "/v1/apikeys", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_keys_create, "createApiKey", 1 },

    { NGX_HTTP_DELETE, "/v1/apikeys/{prefix}", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_keys_revoke, "revokeApiKey", 0 },

    { NGX_HTTP_GET, "/v1/settings/tokens", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_api_idp_settings_get, "getTokenSettings", 0 },

    { NGX_HTTP_PUT, "/v1/settings/tokens", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_api_idp_settings_put, "putTokenSettings", 1 },

    { NGX_HTTP_DELETE, "/v1/settings/tokens", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_api_idp_settings_delete, "deleteTokenSettings", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static const ngx_http_parley_field_t  ngx_http_parley_key_create_fields[] = {
    { "label", NGX_PARLEY_FIELD_STRING, 0, NGX_PARLEY_KEYS_LABEL_MAX, 0, 0,
      NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static ngx_http_parley_keys_ctx_t *
ngx_http_parley_keys_ctx(ngx_http_parley_api_req_t *ar)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_parley_keys_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_keys_ctx_t));
    cln = ngx_pool_cleanup_add(ar->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    /* a new key must not outlive the request in freed pool memory */
    cln->handler = ngx_http_parley_keys_cleanup;
    cln->data = ctx;

    ar->data = ctx;

    return ctx;
}


static void
ngx_http_parley_keys_cleanup(void *data)
{
    ngx_http_parley_keys_ctx_t *ctx = data;

    OPENSSL_cleanse(ctx->key, sizeof(ctx->key));
}


/* ---- list ---------------------------------------------------------- */

/* revoked keys too, oldest first; the cursor is the last key id */

static void
ngx_http_parley_keys_list(ngx_http_parley_api_req_t *ar)
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

    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_listed,
        "SELECT " NGX_PARLEY_KEY_COLUMNS " FROM tenant_api_keys "
        "WHERE tenant_id = %U AND id > %U ORDER BY id LIMIT %U",
        ar->tenant_id, after, (uint64_t) limit + 1);
}


static void
ngx_http_parley_keys_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_reply_id_page(ar, res,
                                      (ngx_uint_t) (uintptr_t) ar->data,
                                      "api_keys", ngx_http_parley_keys_row);
}


static json_t *
ngx_http_parley_keys_row(MYSQL_ROW row, unsigned long *len)
{
    return json_pack("{s:o,s:o,s:o,s:o,s:o}",
                     "id", ngx_http_parley_api_id_json(
                               ngx_http_parley_api_col_u64(row, 0)),
                     "prefix", ngx_http_parley_api_col_string(row, len, 1),
                     "label", ngx_http_parley_api_col_string(row, len, 2),
                     "created_at", ngx_http_parley_api_col_time(row, len, 3),
                     "revoked_at", ngx_http_parley_api_col_time(row, len, 4));
}


/* ---- issue --------------------------------------------------------- */

static void
ngx_http_parley_keys_create(ngx_http_parley_api_req_t *ar)
{
    u_char                       random[PARLEY_APIKEY_RANDOM_LEN];
    ngx_http_parley_keys_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_key_create_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_keys_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_str(ar->body, "label", &ctx->label) == NULL) {
        ngx_str_set(&ctx->label, "");
    }

    if (ngx_http_parley_keys_label(&ctx->label) != NGX_OK) {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "label",
                                 "\"label\" may not hold control characters "
                                 "or start or end with a space");
        return;
    }

    if (ngx_http_parley_api_new_id(ar, &ctx->id) != NGX_OK) {
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

    ctx->prefix.data = (u_char *) ctx->key;
    ctx->prefix.len = PARLEY_APIKEY_PREFIX_LEN;

    ngx_http_parley_api_begin(ar, ngx_http_parley_keys_create_txn);
}


/*
 * The tenant row is locked first, so that issuing and revoking keys of a
 * tenant take turns: two revocations at once could otherwise each see the
 * other key still active and leave none.  The active keys are then read
 * with FOR UPDATE too: a locking read sees the latest committed rows on
 * TiDB as on InnoDB, where a plain read inside the transaction could see
 * its older snapshot.
 */

static void
ngx_http_parley_keys_create_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_locked,
        "SELECT id FROM tenants WHERE id = %U FOR UPDATE", ar->tenant_id);
}


static void
ngx_http_parley_keys_locked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    if (res->res == NULL || mysql_num_rows(res->res) == 0) {
        /* the tenant went away under its own key */
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
                                 NULL, "the API key is not valid");
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_counted,
        "SELECT id FROM tenant_api_keys WHERE tenant_id = %U "
        "AND revoked_at IS NULL FOR UPDATE", ar->tenant_id);
}


static void
ngx_http_parley_keys_counted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_str_t                    hash;
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    if (res->res && mysql_num_rows(res->res) >= NGX_PARLEY_KEYS_ACTIVE_MAX) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "too_many_keys", NULL,
                                 "a tenant may have at most %d active keys: "
                                 "revoke one first",
                                 NGX_PARLEY_KEYS_ACTIVE_MAX);
        return;
    }

    hash.data = (u_char *) ctx->hash;
    hash.len = PARLEY_SHA256_HEX_LEN;

    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_inserted,
        "INSERT INTO tenant_api_keys (id, tenant_id, key_hash, key_prefix, "
        "label, created_at, revoked_at) VALUES "
        "(%U, %U, %L, %L, %L, UTC_TIMESTAMP(3), NULL)",
        ctx->id, ar->tenant_id, &hash, &ctx->prefix, &ctx->label);
}


static void
ngx_http_parley_keys_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_keys_announce(ar, "apikey.created",
                                  ngx_http_parley_keys_created);
}


static void
ngx_http_parley_keys_created(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    if (ar->in_txn) {
        ngx_http_parley_api_commit(ar, ngx_http_parley_keys_created);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_render,
        "SELECT " NGX_PARLEY_KEY_COLUMNS " FROM tenant_api_keys "
        "WHERE tenant_id = %U AND id = %U", ar->tenant_id, ctx->id);
}


static void
ngx_http_parley_keys_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                      *body;
    MYSQL_ROW                    row;
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        /* revoked and gone in between: what was issued is still the key */
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "key_not_found", NULL,
                                 "the new key was revoked meanwhile");
        return;
    }

    body = ngx_http_parley_keys_row(row, mysql_fetch_lengths(res->res));

    if (body) {
        /* the only time the key is ever shown */
        json_object_set_new(body, "api_key",
                            json_stringn(ctx->key, PARLEY_APIKEY_LEN));
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_CREATED, body);
}


/* ---- revoke -------------------------------------------------------- */

static void
ngx_http_parley_keys_revoke(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_keys_ctx_t  *ctx;

    ctx = ngx_http_parley_keys_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->prefix = ngx_http_parley_api_param(ar, 0);

    if (parley_apikey_prefix_parse((const char *) ctx->prefix.data,
                                   ctx->prefix.len)
        != 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "prefix", "\"prefix\" must be the first %d "
                                 "characters of a key",
                                 PARLEY_APIKEY_PREFIX_LEN);
        return;
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_keys_revoke_txn);
}


static void
ngx_http_parley_keys_revoke_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_revoke_find,
        "SELECT id FROM tenants WHERE id = %U FOR UPDATE", ar->tenant_id);
}


static void
ngx_http_parley_keys_revoke_find(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    if (res->res == NULL || mysql_num_rows(res->res) == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
                                 NULL, "the API key is not valid");
        return;
    }

    /* every active key (at most NGX_PARLEY_KEYS_ACTIVE_MAX, give or take) */
    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_revoke_found,
        "SELECT id, key_prefix, key_hash FROM tenant_api_keys "
        "WHERE tenant_id = %U AND revoked_at IS NULL FOR UPDATE",
        ar->tenant_id);
}


/*
 * A prefix is 48 random bits: two live keys sharing one never happen in
 * practice, and if they did, neither is revoked (the caller cannot say
 * which it meant).
 */

static void
ngx_http_parley_keys_revoke_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    ngx_uint_t                   live, active;
    unsigned long               *len;
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    live = 0;
    active = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);
        active++;

        if (row[1] && len[1] == ctx->prefix.len
            && ngx_strncmp(row[1], ctx->prefix.data, ctx->prefix.len) == 0
            && row[2] && len[2] == PARLEY_SHA256_HEX_LEN)
        {
            live++;
            ctx->id = ngx_http_parley_api_col_u64(row, 0);
            ngx_memcpy(ctx->hash, row[2], PARLEY_SHA256_HEX_LEN);
            ctx->hash[PARLEY_SHA256_HEX_LEN] = '\0';
        }
    }

    if (live == 0) {
        /* revoked already (a success that changes nothing), or unknown */
        ngx_http_parley_api_sql(ar, ngx_http_parley_keys_revoked_before,
            "SELECT id FROM tenant_api_keys WHERE tenant_id = %U "
            "AND key_prefix = %L LIMIT 1", ar->tenant_id, &ctx->prefix);
        return;
    }

    if (live > 1) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "ambiguous_prefix",
                                 "prefix", "%ui active keys start with "
                                 "\"%V\"", live, &ctx->prefix);
        return;
    }

    if (active <= 1) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "last_key", "prefix",
                                 "\"%V\" is the tenant's last active key: "
                                 "issue another one first", &ctx->prefix);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_keys_revoked,
        "UPDATE tenant_api_keys SET revoked_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND id = %U AND revoked_at IS NULL",
        ar->tenant_id, ctx->id);
}


static void
ngx_http_parley_keys_revoked_before(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    if (res->res == NULL || mysql_num_rows(res->res) == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "key_not_found",
                                 "prefix", "no key \"%V\"", &ctx->prefix);
        return;
    }

    ngx_http_parley_api_rollback(ar, ngx_http_parley_keys_revoke_done);
}


static void
ngx_http_parley_keys_revoked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_keys_announce(ar, "apikey.revoked",
                                  ngx_http_parley_keys_commit);
}


static void
ngx_http_parley_keys_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_keys_revoke_done);
}


static void
ngx_http_parley_keys_revoke_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    u_char                       key[2 + PARLEY_SHA256_HEX_LEN];
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    /* this worker stops accepting the key now, the others within the TTL */
    if (ctx->hash[0] && ngx_http_parley_auth_cache) {
        key[0] = 'k';
        key[1] = ':';
        ngx_memcpy(key + 2, ctx->hash, PARLEY_SHA256_HEX_LEN);
        ngx_http_parley_cache_delete(ngx_http_parley_auth_cache, key,
                                     sizeof(key));
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
}


/* ---- common -------------------------------------------------------- */

/* events name the key by id and prefix, never by hash */

static void
ngx_http_parley_keys_announce(ngx_http_parley_api_req_t *ar,
    const char *type, ngx_http_parley_api_step_pt next)
{
    char                         tid[NGX_INT64_LEN + 1];
    json_t                      *data;
    ngx_str_t                    key;
    ngx_http_parley_keys_ctx_t  *ctx = ar->data;

    key.data = (u_char *) tid;
    key.len = ngx_sprintf(key.data, "%uL", ar->tenant_id) - key.data;

    data = json_pack("{s:o,s:s%}",
                     "key_id", ngx_http_parley_api_id_json(ctx->id),
                     "prefix", ctx->prefix.data, ctx->prefix.len);
    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_outbox(ar, next, "parley.events", &key, type, data);
}


/* the rules of parleyctl's labels: no controls, no surrounding spaces */

static ngx_int_t
ngx_http_parley_keys_label(ngx_str_t *label)
{
    size_t  i;

    for (i = 0; i < label->len; i++) {
        if (label->data[i] < 0x20 || label->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    if (label->len
        && (label->data[0] == ' ' || label->data[label->len - 1] == ' '))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
