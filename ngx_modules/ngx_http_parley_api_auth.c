
/*
 * Who calls: every API request is scoped to exactly one tenant, found from
 * its credential, before any endpoint runs.
 *
 *   Authorization: Bearer pk_...   (or X-Api-Key: pk_...)  tenant API key;
 *                  with X-Parley-User: <uid> it acts for that user
 *   Authorization: Bearer <JWT>    user token issued by Parley
 *                  (kid "parley:<tenant id>", HS256 under the tenant's
 *                  derived secret)
 *   Authorization: Bearer <key>    operator credential, platform routes
 *
 * Lookups that every request makes are cached per worker for
 * parley_api_cache_ttl: API key -> tenant and state, and the revocation
 * state of a user's token.  Revoking a key or a token therefore takes
 * effect everywhere within that time (at once on the worker that did it).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_cache.h"
#include "ngx_http_parley_api_idp.h"
#include "parley_apikey.h"
#include "parley_id.h"
#include "parley_jwt.h"
#include "parley_route.h"


#define NGX_PARLEY_KID_PREFIX     "parley:"


typedef struct {
    uint64_t                   tenant_id;
    ngx_uint_t                 suspended;
} ngx_http_parley_key_entry_t;


typedef struct {
    int64_t                    token_epoch;
    ngx_uint_t                 active;
    ngx_uint_t                 revoked;
} ngx_http_parley_user_entry_t;


/* a verified Parley token, cached by its exact bytes */
typedef struct {
    uint64_t                   tenant_id;
    int64_t                    iat;
    int64_t                    exp;
    size_t                     sub_len;
    size_t                     jti_len;
    u_char                     sub[128];
    u_char                     jti[64];
} ngx_http_parley_token_entry_t;


typedef struct {
    u_char                     key[64 + 2];     /* "k:" + hash */
    size_t                     key_len;
    ngx_http_parley_api_handler_pt  done;
    parley_jwt_claims_t        claims;
    int64_t                    iat;
    int64_t                    exp;
    u_char                     ukey[200];
    size_t                     ukey_len;
} ngx_http_parley_auth_ctx_t;


static ngx_int_t ngx_http_parley_auth_credential(ngx_http_parley_api_req_t *ar,
    ngx_str_t *cred);
static void ngx_http_parley_auth_platform(ngx_http_parley_api_req_t *ar,
    ngx_str_t *cred);
static void ngx_http_parley_auth_api_key(ngx_http_parley_api_req_t *ar,
    ngx_str_t *cred);
static void ngx_http_parley_auth_key_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_auth_key_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_key_entry_t *entry);
static void ngx_http_parley_auth_token(ngx_http_parley_api_req_t *ar,
    ngx_str_t *cred);
static void ngx_http_parley_auth_token_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_token_entry_t *t);
static void ngx_http_parley_auth_user_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_auth_user_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_user_entry_t *entry);
static ngx_int_t ngx_http_parley_auth_valid_uid(ngx_str_t *uid);


ngx_http_parley_cache_t  *ngx_http_parley_auth_cache;


void
ngx_http_parley_api_authenticate(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_handler_pt done)
{
    ngx_str_t                    cred;
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_auth_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ctx->done = done;
    ar->auth_ctx = ctx;

    if (ngx_http_parley_auth_credential(ar, &cred) != NGX_OK) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "unauthenticated",
                                 NULL, "send a credential: Authorization: "
                                 "Bearer <API key or user token>");
        return;
    }

    if (ar->route->auth == NGX_PARLEY_AUTH_PLATFORM) {
        ngx_http_parley_auth_platform(ar, &cred);
        return;
    }

    if (cred.len > 3 && ngx_strncmp(cred.data, "pk_", 3) == 0) {
        ngx_http_parley_auth_api_key(ar, &cred);
        return;
    }

    ngx_http_parley_auth_token(ar, &cred);
}


void
ngx_http_parley_api_auth_cleanup(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    if (ctx) {
        parley_jwt_claims_free(&ctx->claims);
    }
}


static ngx_int_t
ngx_http_parley_auth_credential(ngx_http_parley_api_req_t *ar,
    ngx_str_t *cred)
{
    ngx_str_t           *h;
    ngx_table_elt_t     *auth;

    auth = ar->request->headers_in.authorization;

    if (auth) {
        if (auth->value.len <= 7
            || ngx_strncasecmp(auth->value.data, (u_char *) "Bearer ", 7) != 0)
        {
            return NGX_DECLINED;
        }

        cred->data = auth->value.data + 7;
        cred->len = auth->value.len - 7;

        while (cred->len && cred->data[0] == ' ') {
            cred->data++;
            cred->len--;
        }

        return cred->len ? NGX_OK : NGX_DECLINED;
    }

    h = ngx_http_parley_api_header(ar->request, "X-Api-Key",
                                    sizeof("X-Api-Key") - 1);
    if (h && h->len) {
        *cred = *h;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_str_t *
ngx_http_parley_api_header(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }
}


static void
ngx_http_parley_auth_platform(ngx_http_parley_api_req_t *ar, ngx_str_t *cred)
{
    char                         hex[65];
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    if (ar->conf->platform_key_hash.len != 64) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", NULL,
                                 "the platform API is not enabled "
                                 "(parley_platform_key_sha256)");
        return;
    }

    if (parley_sha256_hex(cred->data, cred->len, hex) != 0
        || CRYPTO_memcmp(hex, ar->conf->platform_key_hash.data, 64) != 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 "invalid_credential", NULL,
                                 "the operator credential is not valid");
        return;
    }

    ar->auth = NGX_PARLEY_AUTH_PLATFORM;
    ctx->done(ar);
}


static void
ngx_http_parley_auth_api_key(ngx_http_parley_api_req_t *ar, ngx_str_t *cred)
{
    char                          hex[65];
    ngx_str_t                     hash;
    ngx_http_parley_auth_ctx_t   *ctx;
    ngx_http_parley_key_entry_t   entry;

    ctx = ar->auth_ctx;

    if (!(ar->route->auth & (NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER))) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", NULL,
                                 "an API key cannot call this endpoint");
        return;
    }

    if (parley_apikey_parse((const char *) cred->data, cred->len) != 0
        || parley_apikey_hash((const char *) cred->data, cred->len, hex) != 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
                                 NULL, "the API key is not valid");
        return;
    }

    ctx->key[0] = 'k';
    ctx->key[1] = ':';
    ngx_memcpy(ctx->key + 2, hex, 64);
    ctx->key_len = 66;

    if (ngx_http_parley_cache_get(ngx_http_parley_auth_cache, ctx->key,
                                  ctx->key_len, &entry, sizeof(entry))
        == NGX_OK)
    {
        ngx_http_parley_auth_key_ok(ar, &entry);
        return;
    }

    hash.data = (u_char *) hex;
    hash.len = 64;

    ngx_http_parley_api_sql(ar, ngx_http_parley_auth_key_row,
        "SELECT k.tenant_id, t.status FROM tenant_api_keys k "
        "JOIN tenants t ON t.id = k.tenant_id "
        "WHERE k.key_hash = %L AND k.revoked_at IS NULL", &hash);
}


static void
ngx_http_parley_auth_key_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                     row;
    ngx_http_parley_auth_ctx_t   *ctx;
    ngx_http_parley_key_entry_t   entry;

    ctx = ar->auth_ctx;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
                                 NULL, "the API key is not valid");
        return;
    }

    ngx_memzero(&entry, sizeof(entry));
    entry.tenant_id = ngx_http_parley_api_col_u64(row, 0);
    entry.suspended = row[1] == NULL || ngx_strcmp(row[1], "active") != 0;

    ngx_http_parley_cache_put(ngx_http_parley_auth_cache, ctx->key,
                              ctx->key_len, &entry, sizeof(entry),
                              ar->conf->cache_ttl);

    ngx_http_parley_auth_key_ok(ar, &entry);
}


static void
ngx_http_parley_auth_key_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_key_entry_t *entry)
{
    ngx_str_t                   *uid;
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    if (entry->suspended) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "tenant_suspended",
                                 NULL, "this tenant is suspended");
        return;
    }

    ar->tenant_id = entry->tenant_id;

    uid = ngx_http_parley_api_header(ar->request, "X-Parley-User",
                                      sizeof("X-Parley-User") - 1);

    if (uid && (ar->route->auth & NGX_PARLEY_AUTH_USER)) {
        if (ngx_http_parley_auth_valid_uid(uid) != NGX_OK) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "X-Parley-User",
                                     "X-Parley-User is not a valid user id");
            return;
        }

        ar->auth = NGX_PARLEY_AUTH_USER;
        ar->user_id = *uid;
        ar->acting_admin = 1;
        ctx->done(ar);
        return;
    }

    if (!(ar->route->auth & NGX_PARLEY_AUTH_ADMIN)) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "user_required",
                                 NULL, "this endpoint acts for a user: send "
                                 "a user token, or X-Parley-User with the "
                                 "API key");
        return;
    }

    ar->auth = NGX_PARLEY_AUTH_ADMIN;
    ctx->done(ar);
}


/* Parley's own user tokens */

static void
ngx_http_parley_auth_token(ngx_http_parley_api_req_t *ar, ngx_str_t *cred)
{
    u_char                        secret[32];
    uint64_t                      tenant_id;
    ngx_str_t                     sub, jti;
    parley_jwt_err_t              err;
    parley_jwt_header_t           header;
    parley_jwt_policy_t           policy;
    parley_jwt_status_t           st;
    parley_jwt_keyset_t          *ks;
    ngx_msec_t                     ttl;
    ngx_http_parley_auth_ctx_t    *ctx;
    ngx_http_parley_token_entry_t  cached;
    char                           aud[NGX_INT64_LEN + 1];
    const char                    *audiences[1];

    ctx = ar->auth_ctx;

    if (!(ar->route->auth & NGX_PARLEY_AUTH_USER)) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "admin_required",
                                 NULL, "this endpoint needs the tenant's "
                                 "API key");
        return;
    }

    /*
     * A token this worker verified before is trusted until its expiry or
     * the cache TTL, whichever comes first: the signature check and claim
     * parsing are most of an authenticated request's cost.  Revocation is
     * still looked up below, per request.
     */
    if (cred->len <= PARLEY_JWT_MAX_LEN
        && ngx_http_parley_cache_get(ngx_http_parley_auth_cache, cred->data,
                                     cred->len, &cached, sizeof(cached))
           == NGX_OK
        && cached.exp > (int64_t) ngx_time())
    {
        ngx_http_parley_auth_token_ok(ar, &cached);
        return;
    }

    st = parley_jwt_peek((const char *) cred->data, cred->len, &header, &err);

    if (st != PARLEY_JWT_OK) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 parley_jwt_status_name(st), NULL,
                                 "the token is not valid: %s", err.message);
        return;
    }

    if (header.kid_len < sizeof(NGX_PARLEY_KID_PREFIX) - 1
        || ngx_strncmp(header.kid, NGX_PARLEY_KID_PREFIX,
                       sizeof(NGX_PARLEY_KID_PREFIX) - 1) != 0)
    {
        /* not Parley's: the tenant's identity provider may have issued it */
        ngx_http_parley_api_idp_verify(ar, cred, &header, ctx->done);
        return;
    }

    if (parley_id_parse(header.kid + sizeof(NGX_PARLEY_KID_PREFIX) - 1,
                        header.kid_len - (sizeof(NGX_PARLEY_KID_PREFIX) - 1),
                        &tenant_id) != 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 "token_key_unknown", NULL,
                                 "the token was not issued by Parley");
        return;
    }

    if (ngx_http_parley_api_token_secret(ar, tenant_id, secret) != NGX_OK) {
        return;
    }

    ks = parley_jwt_keyset_new();
    if (ks == NULL
        || parley_jwt_keyset_add_hmac(ks, header.kid, secret, sizeof(secret),
                                      &err)
           != PARLEY_JWT_OK)
    {
        parley_jwt_keyset_free(ks);
        OPENSSL_cleanse(secret, sizeof(secret));
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "token keys unavailable");
        return;
    }

    OPENSSL_cleanse(secret, sizeof(secret));

    *ngx_sprintf((u_char *) aud, "%uL", tenant_id) = '\0';
    audiences[0] = aud;

    parley_jwt_policy_init(&policy, PARLEY_JWT_HS256, (int64_t) ngx_time());
    policy.issuer = "parley";
    policy.audiences = audiences;
    policy.naudiences = 1;
    policy.max_lifetime = (int64_t) (ar->conf->token_ttl / 1000) + 60;
    policy.required |= PARLEY_JWT_CLAIM_JTI | PARLEY_JWT_CLAIM_IAT;

    st = parley_jwt_verify((const char *) cred->data, cred->len, ks, &policy,
                           &ctx->claims, &err);
    parley_jwt_keyset_free(ks);

    if (st != PARLEY_JWT_OK) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 parley_jwt_status_name(st), NULL,
                                 "the token is not valid: %s", err.message);
        return;
    }

    sub.data = (u_char *) ctx->claims.sub;
    sub.len = ctx->claims.sub_len;
    jti.data = (u_char *) ctx->claims.jti;
    jti.len = ctx->claims.jti_len;

    if (ngx_http_parley_auth_valid_uid(&sub) != NGX_OK || jti.len > 64) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 "token_claims_invalid", NULL,
                                 "the token's sub or jti is not valid");
        return;
    }

    ngx_memzero(&cached, sizeof(cached));
    cached.tenant_id = tenant_id;
    cached.iat = ctx->claims.iat;
    cached.exp = ctx->claims.exp;
    cached.sub_len = sub.len;
    cached.jti_len = jti.len;
    ngx_memcpy(cached.sub, sub.data, sub.len);
    ngx_memcpy(cached.jti, jti.data, jti.len);

    ttl = (ngx_msec_t) ngx_min((int64_t) ar->conf->cache_ttl,
                               (cached.exp - (int64_t) ngx_time()) * 1000);

    ngx_http_parley_cache_put(ngx_http_parley_auth_cache, cred->data,
                              cred->len, &cached, sizeof(cached), ttl);

    ngx_http_parley_auth_token_ok(ar, &cached);
}


/* a valid Parley token: is it revoked, is its user still active? */

static void
ngx_http_parley_auth_token_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_token_entry_t *t)
{
    ngx_str_t                      sub, jti;
    ngx_http_parley_auth_ctx_t    *ctx;
    ngx_http_parley_user_entry_t   entry;

    ctx = ar->auth_ctx;

    sub.data = ngx_pnalloc(ar->pool, t->sub_len + t->jti_len);
    if (sub.data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_memcpy(sub.data, t->sub, t->sub_len);
    sub.len = t->sub_len;
    jti.data = sub.data + sub.len;
    ngx_memcpy(jti.data, t->jti, t->jti_len);
    jti.len = t->jti_len;

    ctx->iat = t->iat;
    ctx->exp = t->exp;

    ar->tenant_id = t->tenant_id;
    ar->user_id = sub;

    ctx->ukey_len = ngx_snprintf(ctx->ukey, sizeof(ctx->ukey), "u:%uL:%V:%V",
                                 t->tenant_id, &jti, &sub)
                    - ctx->ukey;

    if (ngx_http_parley_cache_get(ngx_http_parley_auth_cache, ctx->ukey,
                                  ctx->ukey_len, &entry, sizeof(entry))
        == NGX_OK)
    {
        ngx_http_parley_auth_user_ok(ar, &entry);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_auth_user_row,
        "SELECT u.token_epoch, u.status, t.status, "
        "EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.tenant_id = %U "
        "AND r.jti = %L) FROM tenants t LEFT JOIN users u "
        "ON u.tenant_id = t.id AND u.user_id = %L WHERE t.id = %U",
        t->tenant_id, &jti, &sub, t->tenant_id);
}


static void
ngx_http_parley_auth_user_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                     row;
    ngx_http_parley_auth_ctx_t   *ctx;
    ngx_http_parley_user_entry_t  entry;

    ctx = ar->auth_ctx;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL || row[2] == NULL || ngx_strcmp(row[2], "active") != 0) {
        ngx_http_parley_api_fail(ar, row ? NGX_HTTP_FORBIDDEN
                                         : NGX_HTTP_UNAUTHORIZED,
                                 row ? "tenant_suspended" : "token_revoked",
                                 NULL, row ? "this tenant is suspended"
                                           : "the token's tenant is gone");
        return;
    }

    ngx_memzero(&entry, sizeof(entry));
    entry.active = row[1] && ngx_strcmp(row[1], "active") == 0;
    entry.token_epoch = row[0] ? strtoll(row[0], NULL, 10) : 0;
    entry.revoked = row[3] && row[3][0] == '1';

    ngx_http_parley_cache_put(ngx_http_parley_auth_cache, ctx->ukey,
                              ctx->ukey_len, &entry, sizeof(entry),
                              ar->conf->cache_ttl);

    ngx_http_parley_auth_user_ok(ar, &entry);
}


static void
ngx_http_parley_auth_user_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_user_entry_t *entry)
{
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    if (!entry->active) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "user_inactive",
                                 NULL, "this user is deactivated or deleted");
        return;
    }

    if (entry->revoked || ctx->iat < entry->token_epoch) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "token_revoked",
                                 NULL, "the token has been revoked");
        return;
    }

    ar->auth = NGX_PARLEY_AUTH_USER;
    ctx->done(ar);
}


/* Forgets what this worker cached about a user's tokens or a key. */

void
ngx_http_parley_api_auth_forget(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    if (ctx && ctx->ukey_len) {
        ngx_http_parley_cache_delete(ngx_http_parley_auth_cache, ctx->ukey,
                                     ctx->ukey_len);
    }
}


/*
 * The HS256 secret of a tenant's Parley-issued tokens: HMAC-SHA256 of the
 * tenant id under the node's token key (parley_token_key), so every node
 * with the same key file agrees without storing a secret per tenant.
 */

ngx_int_t
ngx_http_parley_api_token_secret(ngx_http_parley_api_req_t *ar,
    uint64_t tenant_id, u_char secret[32])
{
    u_char        msg[64];
    size_t        len;
    unsigned int  out_len;

    if (ar->conf->token_key.len < 32) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "unavailable", NULL,
                                 "user tokens are not configured "
                                 "(parley_token_key)");
        return NGX_ERROR;
    }

    len = ngx_snprintf(msg, sizeof(msg), "parley-user-token:%uL", tenant_id)
          - msg;

    if (HMAC(EVP_sha256(), ar->conf->token_key.data,
             (int) ar->conf->token_key.len, msg, len, secret, &out_len)
        == NULL || out_len != 32)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "token keys unavailable");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_auth_valid_uid(ngx_str_t *uid)
{
    char                  buf[PARLEY_ROUTE_PARAM_MAX + PARLEY_ROUTE_MAX_PARAMS
                              + 8];
    char                  path[PARLEY_ROUTE_PARAM_MAX + 2];
    size_t                n, bad;
    parley_route_param_t  params[PARLEY_ROUTE_MAX_PARAMS];

    /* the same rules as a user id in a path (length, UTF-8, no controls) */
    if (uid->len == 0 || uid->len > 128 || ngx_strlchr(uid->data,
                                                       uid->data + uid->len,
                                                       '/'))
    {
        return NGX_ERROR;
    }

    path[0] = '/';
    ngx_memcpy(path + 1, uid->data, uid->len);

    if (ngx_strlchr(uid->data, uid->data + uid->len, '%')) {
        return NGX_ERROR;
    }

    return parley_route_match("/{uid}", path, uid->len + 1, buf, params, &n,
                              &bad)
           == PARLEY_ROUTE_MATCH ? NGX_OK : NGX_ERROR;
}


/* The caller's token expiry (Unix seconds), 0 for API keys. */

int64_t
ngx_http_parley_api_auth_expiry(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    return ctx ? ctx->exp : 0;
}


/* For identity-provider tokens, verified in ngx_http_parley_api_idp.c. */

void
ngx_http_parley_api_auth_set_token(ngx_http_parley_api_req_t *ar, int64_t iat,
    int64_t exp)
{
    ngx_http_parley_auth_ctx_t  *ctx;

    ctx = ar->auth_ctx;

    if (ctx) {
        ctx->iat = iat;
        ctx->exp = exp;
    }
}
