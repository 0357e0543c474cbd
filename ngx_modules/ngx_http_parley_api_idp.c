
/*
 * Tenant identity providers.
 *
 *   GET    /v1/settings/tokens   the tenant's token settings   (API key)
 *   PUT    /v1/settings/tokens   replace them                  (API key)
 *   DELETE /v1/settings/tokens   remove them                   (API key)
 *
 * A tenant whose users sign in elsewhere (an OIDC provider, its own
 * backend) tells Parley how to check the tokens issued there: issuer,
 * audiences, algorithms, keys (PEM public keys, a JWK Set inline or in a
 * file on the nginx host, an HS256 secret), leeway and maximum lifetime.
 * The settings live in tenants.settings under "token"; they are checked by
 * building the key set before they are stored, so a stored document always
 * builds.
 *
 * A request then carries the IdP's token and names the tenant:
 *
 *   Authorization: Bearer <JWT>      kid absent or not "parley:..."
 *   X-Parley-Tenant: <tenant id>
 *
 * Each worker keeps the parsed key set of a tenant for parley_api_cache_ttl
 * (parsing PEM and JWKS documents costs far more than one verification), so
 * a settings change takes effect on every worker within that time, at once
 * on the worker that made it.  The user the token's "sub" names must exist
 * and be active; users.token_epoch and revoked_tokens (by "jti") revoke IdP
 * tokens as they revoke Parley's own.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_cache.h"
#include "ngx_http_parley_api_idp.h"
#include "ngx_http_parley_api_json.h"
#include "parley_id.h"
#include "parley_jwt.h"


#define NGX_PARLEY_IDP_CACHE_MAX         1024
#define NGX_PARLEY_IDP_TEXT_MAX          256     /* issuer, each audience */
#define NGX_PARLEY_IDP_PATH_MAX          4096
#define NGX_PARLEY_IDP_LEEWAY_DEFAULT    60
#define NGX_PARLEY_IDP_LEEWAY_MAX        300
#define NGX_PARLEY_IDP_LIFETIME_DEFAULT  86400
#define NGX_PARLEY_IDP_LIFETIME_MIN      60
#define NGX_PARLEY_IDP_LIFETIME_MAX      (366 * 86400)

/* what a cache entry says about a tenant */
#define NGX_PARLEY_IDP_NONE              0   /* no tenant, or no settings */
#define NGX_PARLEY_IDP_READY             1
#define NGX_PARLEY_IDP_BROKEN            2   /* stored settings do not build */

/* what the user lookup found (cached in the shared auth cache) */
#define NGX_PARLEY_IDP_TENANT_GONE       0
#define NGX_PARLEY_IDP_TENANT_ACTIVE     1
#define NGX_PARLEY_IDP_TENANT_SUSPENDED  2

#define NGX_PARLEY_IDP_USER_UNKNOWN      0
#define NGX_PARLEY_IDP_USER_ACTIVE       1
#define NGX_PARLEY_IDP_USER_INACTIVE     2


/* a tenant's settings, parsed: heap memory owned by the worker's cache */
typedef struct {
    ngx_rbtree_node_t          node;
    ngx_queue_t                queue;        /* age order, newest at head */
    uint64_t                   tenant_id;
    ngx_msec_t                 expires;
    ngx_uint_t                 state;
    parley_jwt_keyset_t       *ks;
    unsigned                   algs;
    int64_t                    leeway;
    int64_t                    max_lifetime;
    char                      *issuer;
    const char               **audiences;
    size_t                     naudiences;
} ngx_http_parley_idp_entry_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
    ngx_uint_t                 count;
    ngx_cycle_t               *cycle;
} ngx_http_parley_idp_cache_t;


/* building a key set and policy from a settings document */
typedef struct {
    parley_jwt_keyset_t       *ks;
    unsigned                   algs;         /* allowed */
    int64_t                    leeway;
    int64_t                    max_lifetime;
    const char                *issuer;       /* borrowed from the document */
    json_t                    *audiences;    /* borrowed; NULL: none */

    const char                *code;         /* on error */
    const char                *field;
    u_char                     message[256];
} ngx_http_parley_idp_build_t;


typedef struct {
    int64_t                    token_epoch;
    ngx_uint_t                 tenant;
    ngx_uint_t                 user;
    ngx_uint_t                 revoked;
} ngx_http_parley_idp_user_t;


typedef struct {
    ngx_http_parley_api_handler_pt  done;
    uint64_t                   tenant_id;
    ngx_str_t                  token;
    ngx_str_t                  sub;          /* copies in request memory */
    ngx_str_t                  jti;
    int64_t                    iat;
    ngx_uint_t                 has_iat;
    u_char                    *ukey;
    size_t                     ukey_len;
} ngx_http_parley_idp_ctx_t;


static void ngx_http_parley_idp_settings_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_idp_doc_cleanup(void *data);
static void ngx_http_parley_idp_put_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_idp_delete_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_idp_locked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_idp_updated(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_idp_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_idp_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static json_t *ngx_http_parley_idp_render(json_t *doc);
static json_t *ngx_http_parley_idp_settings_doc(MYSQL_ROW row,
    unsigned long *len, unsigned i);

static ngx_int_t ngx_http_parley_idp_build(json_t *doc, ngx_log_t *log,
    ngx_http_parley_idp_build_t *b);
static ngx_int_t ngx_http_parley_idp_error(ngx_http_parley_idp_build_t *b,
    const char *code, const char *field, const char *fmt, ...);
static ngx_int_t ngx_http_parley_idp_text(json_t *v, size_t max);
static ngx_int_t ngx_http_parley_idp_int(json_t *doc, const char *name,
    int64_t min, int64_t max, int64_t def, int64_t *out,
    ngx_http_parley_idp_build_t *b);
static ngx_int_t ngx_http_parley_idp_jwks_file(json_t *v, ngx_log_t *log,
    ngx_http_parley_idp_build_t *b);

static ngx_http_parley_idp_cache_t *ngx_http_parley_idp_cache(void);
static void ngx_http_parley_idp_cache_cleanup(void *data);
static ngx_http_parley_idp_entry_t *ngx_http_parley_idp_cache_get(
    uint64_t tenant_id);
static void ngx_http_parley_idp_cache_put(ngx_http_parley_idp_entry_t *e,
    ngx_msec_t ttl);
static void ngx_http_parley_idp_cache_remove(ngx_http_parley_idp_cache_t *c,
    ngx_http_parley_idp_entry_t *e);
static void ngx_http_parley_idp_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_parley_idp_entry_t *ngx_http_parley_idp_entry(
    uint64_t tenant_id, ngx_uint_t state, ngx_http_parley_idp_build_t *b);

static void ngx_http_parley_idp_loaded(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_idp_check(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_idp_entry_t *e);
static void ngx_http_parley_idp_user_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_idp_user_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_idp_user_t *u);


static ngx_http_parley_idp_cache_t  *ngx_http_parley_idp_worker_cache;


/* the members a settings document may have */
static const char  *ngx_http_parley_idp_fields[] = {
    "issuer", "audiences", "algorithms", "public_keys_pem", "jwks",
    "jwks_file", "hs256_secret", "leeway", "max_lifetime", NULL
};


/* ---- settings endpoints -------------------------------------------- */

void
ngx_http_parley_api_idp_settings_get(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_sql(ar, ngx_http_parley_idp_settings_row,
        "SELECT settings FROM tenants WHERE id = %U", ar->tenant_id);
}


static void
ngx_http_parley_idp_settings_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t     *doc;
    MYSQL_ROW   row;

    row = res->res ? mysql_fetch_row(res->res) : NULL;
    doc = row ? ngx_http_parley_idp_settings_doc(row,
                                                mysql_fetch_lengths(res->res),
                                                0)
              : NULL;

    if (doc == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND,
                                 "token_settings_not_found", NULL,
                                 "this tenant has no token settings");
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK,
                              ngx_http_parley_idp_render(doc));
    json_decref(doc);
}


/* the "token" member of a tenants.settings column (a new reference) */

static json_t *
ngx_http_parley_idp_settings_doc(MYSQL_ROW row, unsigned long *len,
    unsigned i)
{
    json_t  *settings, *doc;

    settings = ngx_http_parley_api_col_json(row, len, i);
    doc = json_object_get(settings, "token");

    if (doc && json_is_object(doc)) {
        json_incref(doc);
    } else {
        doc = NULL;
    }

    json_decref(settings);

    return doc;
}


/* what GET shows: everything but the secret, of which only its presence */

static json_t *
ngx_http_parley_idp_render(json_t *doc)
{
    json_t  *out;

    out = json_copy(doc);
    if (out == NULL) {
        return NULL;
    }

    json_object_set_new(out, "hs256_secret_set",
                        json_boolean(json_object_get(out, "hs256_secret")
                                     != NULL));
    json_object_del(out, "hs256_secret");

    return out;
}


void
ngx_http_parley_api_idp_settings_put(ngx_http_parley_api_req_t *ar)
{
    u_char                       ts[32], *p;
    json_t                      *v, *doc;
    ngx_tm_t                     tm;
    ngx_uint_t                   i;
    const char                  *key;
    ngx_pool_cleanup_t          *cln;
    ngx_http_parley_idp_build_t  b;

    if (ar->body == NULL || !json_is_object(ar->body)) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                 NULL, "a JSON object body is required");
        return;
    }

    json_object_foreach(ar->body, key, v) {
        for (i = 0; ngx_http_parley_idp_fields[i]; i++) {
            if (ngx_strcmp(ngx_http_parley_idp_fields[i], key) == 0) {
                break;
            }
        }

        if (ngx_http_parley_idp_fields[i] == NULL) {
            ngx_http_parley_api_fail(ar, 422, "unknown_field", key,
                                     "unknown field \"%s\"", key);
            return;
        }
    }

    /* the settings are stored only once they have built a key set */
    if (ngx_http_parley_idp_build(ar->body, ar->log, &b) != NGX_OK) {
        ngx_http_parley_api_fail(ar, 422, b.code, b.field, "%s",
                                 b.message);
        return;
    }

    parley_jwt_keyset_free(b.ks);

    doc = json_deep_copy(ar->body);
    if (doc == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    /* stored with the defaults made explicit, so GET shows what applies */
    for (i = 0; ngx_http_parley_idp_fields[i]; i++) {
        v = json_object_get(doc, ngx_http_parley_idp_fields[i]);

        if (v && json_is_null(v)) {
            json_object_del(doc, ngx_http_parley_idp_fields[i]);
        }
    }

    if (json_object_get(doc, "audiences") == NULL) {
        json_object_set_new(doc, "audiences", json_array());
    }

    if (json_object_get(doc, "public_keys_pem") == NULL) {
        json_object_set_new(doc, "public_keys_pem", json_array());
    }

    json_object_set_new(doc, "leeway", json_integer(b.leeway));
    json_object_set_new(doc, "max_lifetime", json_integer(b.max_lifetime));

    ngx_gmtime(ngx_time(), &tm);
    p = ngx_sprintf(ts, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
    json_object_set_new(doc, "updated_at",
                        json_stringn((char *) ts, p - ts));

    cln = ngx_pool_cleanup_add(ar->pool, 0);
    if (cln == NULL) {
        json_decref(doc);
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    cln->handler = ngx_http_parley_idp_doc_cleanup;
    cln->data = doc;

    ar->data = doc;
    ngx_http_parley_api_begin(ar, ngx_http_parley_idp_put_txn);
}


static void
ngx_http_parley_idp_doc_cleanup(void *data)
{
    json_decref(data);
}


void
ngx_http_parley_api_idp_settings_delete(ngx_http_parley_api_req_t *ar)
{
    ar->data = NULL;
    ngx_http_parley_api_begin(ar, ngx_http_parley_idp_delete_txn);
}


static void
ngx_http_parley_idp_put_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_sql(ar, ngx_http_parley_idp_locked,
        "SELECT settings FROM tenants WHERE id = %U FOR UPDATE",
        ar->tenant_id);
}


static void
ngx_http_parley_idp_delete_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_sql(ar, ngx_http_parley_idp_locked,
        "SELECT settings FROM tenants WHERE id = %U FOR UPDATE",
        ar->tenant_id);
}


/*
 * The other members of tenants.settings belong to other features: the
 * row is locked, read, and written back with only "token" changed.
 */

static void
ngx_http_parley_idp_locked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t     *settings, *doc;
    MYSQL_ROW   row;

    doc = ar->data;
    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        /* the tenant went away under its own key */
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "invalid_api_key",
                                 NULL, "the API key is not valid");
        return;
    }

    settings = ngx_http_parley_api_col_json(row, mysql_fetch_lengths(res->res),
                                            0);

    if (!json_is_object(settings)) {
        json_decref(settings);
        settings = json_object();
        if (settings == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }
    }

    if (doc) {
        json_object_set(settings, "token", doc);

    } else if (json_object_del(settings, "token") != 0) {
        json_decref(settings);
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND,
                                 "token_settings_not_found", NULL,
                                 "this tenant has no token settings");
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_idp_updated,
        "UPDATE tenants SET settings = %J, updated_at = UTC_TIMESTAMP(3) "
        "WHERE id = %U",
        json_object_size(settings) ? settings : NULL, ar->tenant_id);

    json_decref(settings);
}


static void
ngx_http_parley_idp_updated(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    char        tid[NGX_INT64_LEN + 1];
    json_t     *data, *doc;
    ngx_str_t   key;

    doc = ar->data;

    key.data = (u_char *) tid;
    key.len = ngx_sprintf(key.data, "%uL", ar->tenant_id) - key.data;

    if (doc) {
        /* never the keys or the secret: events reach many consumers */
        data = json_pack("{s:O,s:O}",
                         "issuer", json_object_get(doc, "issuer"),
                         "algorithms", json_object_get(doc, "algorithms"));
    } else {
        data = json_object();
    }

    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_outbox(ar, ngx_http_parley_idp_commit,
                               "parley.events", &key,
                               doc ? "token_settings.updated"
                                   : "token_settings.deleted",
                               data);
}


static void
ngx_http_parley_idp_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_idp_committed);
}


static void
ngx_http_parley_idp_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t  *doc;

    doc = ar->data;

    ngx_http_parley_api_idp_forget(ar->tenant_id);

    if (doc == NULL) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK,
                              ngx_http_parley_idp_render(doc));
}


/* ---- building a key set from settings ------------------------------ */

/*
 * Checks a settings document and builds its key set and policy.  The same
 * code checks a PUT body and a stored document, so that what was accepted
 * once builds again on every worker.  On NGX_OK the caller owns b->ks.
 */

static ngx_int_t
ngx_http_parley_idp_build(json_t *doc, ngx_log_t *log,
    ngx_http_parley_idp_build_t *b)
{
    char               *jwks;
    size_t              i, n;
    json_t             *v, *e;
    unsigned            alg, present, bit;
    parley_jwt_err_t    err;
    parley_jwt_status_t st;

    ngx_memzero(b, sizeof(ngx_http_parley_idp_build_t));

    if (!json_is_object(doc)) {
        return ngx_http_parley_idp_error(b, "invalid_type", NULL,
                                         "the settings are not an object");
    }

    /* issuer */

    v = json_object_get(doc, "issuer");

    if (v == NULL) {
        return ngx_http_parley_idp_error(b, "missing_field", "issuer",
                                         "field \"issuer\" is required");
    }

    if (!json_is_string(v)) {
        return ngx_http_parley_idp_error(b, "invalid_type", "issuer",
                                         "\"issuer\" must be a string");
    }

    if (ngx_http_parley_idp_text(v, NGX_PARLEY_IDP_TEXT_MAX) != NGX_OK) {
        return ngx_http_parley_idp_error(b, "invalid_value", "issuer",
                                         "\"issuer\" must be 1 to %d bytes "
                                         "without control characters",
                                         NGX_PARLEY_IDP_TEXT_MAX);
    }

    b->issuer = json_string_value(v);

    /* audiences */

    v = json_object_get(doc, "audiences");

    if (v && !json_is_null(v)) {
        if (!json_is_array(v)) {
            return ngx_http_parley_idp_error(b, "invalid_type", "audiences",
                                             "\"audiences\" must be an array "
                                             "of strings");
        }

        if (json_array_size(v) > PARLEY_JWT_AUD_MAX) {
            return ngx_http_parley_idp_error(b, "invalid_length",
                                             "audiences",
                                             "\"audiences\" may hold at most "
                                             "%d values", PARLEY_JWT_AUD_MAX);
        }

        json_array_foreach(v, i, e) {
            if (!json_is_string(e)) {
                return ngx_http_parley_idp_error(b, "invalid_type",
                                                 "audiences",
                                                 "\"audiences\" must be an "
                                                 "array of strings");
            }

            if (ngx_http_parley_idp_text(e, NGX_PARLEY_IDP_TEXT_MAX)
                != NGX_OK)
            {
                return ngx_http_parley_idp_error(b, "invalid_value",
                                                 "audiences",
                                                 "audience %uz must be 1 to "
                                                 "%d bytes without control "
                                                 "characters", i,
                                                 NGX_PARLEY_IDP_TEXT_MAX);
            }
        }

        b->audiences = json_array_size(v) ? v : NULL;
    }

    /* algorithms */

    v = json_object_get(doc, "algorithms");

    if (v == NULL) {
        return ngx_http_parley_idp_error(b, "missing_field", "algorithms",
                                         "field \"algorithms\" is required");
    }

    if (!json_is_array(v)) {
        return ngx_http_parley_idp_error(b, "invalid_type", "algorithms",
                                         "\"algorithms\" must be an array "
                                         "of strings");
    }

    if (json_array_size(v) == 0 || json_array_size(v) > 3) {
        return ngx_http_parley_idp_error(b, "invalid_length", "algorithms",
                                         "\"algorithms\" must name 1 to 3 "
                                         "of RS256, ES256, HS256");
    }

    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            return ngx_http_parley_idp_error(b, "invalid_type", "algorithms",
                                             "\"algorithms\" must be an "
                                             "array of strings");
        }

        if (ngx_strlen(json_string_value(e)) != json_string_length(e)) {
            return ngx_http_parley_idp_error(b, "invalid_value",
                                             "algorithms",
                                             "\"algorithms\" may hold only "
                                             "RS256, ES256 and HS256");
        }

        switch (ngx_http_parley_api_enum("RS256|ES256|HS256",
                                         json_string_value(e)))
        {
        case 0:
            alg = PARLEY_JWT_RS256;
            break;
        case 1:
            alg = PARLEY_JWT_ES256;
            break;
        case 2:
            alg = PARLEY_JWT_HS256;
            break;
        default:
            /* "none" and the rest: see docs/tokens.md */
            return ngx_http_parley_idp_error(b, "invalid_value",
                                             "algorithms",
                                             "\"algorithms\" may hold only "
                                             "RS256, ES256 and HS256");
        }

        if (b->algs & alg) {
            return ngx_http_parley_idp_error(b, "invalid_value",
                                             "algorithms",
                                             "\"algorithms\" names %s twice",
                                             json_string_value(e));
        }

        b->algs |= alg;
    }

    /* leeway, max_lifetime */

    if (ngx_http_parley_idp_int(doc, "leeway", 0, NGX_PARLEY_IDP_LEEWAY_MAX,
                                NGX_PARLEY_IDP_LEEWAY_DEFAULT, &b->leeway, b)
        != NGX_OK
        || ngx_http_parley_idp_int(doc, "max_lifetime",
                                   NGX_PARLEY_IDP_LIFETIME_MIN,
                                   NGX_PARLEY_IDP_LIFETIME_MAX,
                                   NGX_PARLEY_IDP_LIFETIME_DEFAULT,
                                   &b->max_lifetime, b)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the keys */

    if (json_object_get(doc, "jwks") && json_object_get(doc, "jwks_file")) {
        return ngx_http_parley_idp_error(b, "conflicting_fields",
                                         "jwks_file",
                                         "give \"jwks\" or \"jwks_file\", "
                                         "not both");
    }

    b->ks = parley_jwt_keyset_new();
    if (b->ks == NULL) {
        return ngx_http_parley_idp_error(b, "internal", NULL,
                                         "out of memory");
    }

    v = json_object_get(doc, "public_keys_pem");

    if (v && !json_is_null(v)) {
        if (!json_is_array(v)) {
            ngx_http_parley_idp_error(b, "invalid_type", "public_keys_pem",
                                      "\"public_keys_pem\" must be an "
                                      "array of strings");
            goto failed;
        }

        json_array_foreach(v, i, e) {
            if (!json_is_string(e)) {
                ngx_http_parley_idp_error(b, "invalid_type",
                                          "public_keys_pem",
                                          "\"public_keys_pem\" must be an "
                                          "array of strings");
                goto failed;
            }

            n = json_string_length(e);

            if (n == 0 || n > PARLEY_JWT_KEYDOC_MAX) {
                ngx_http_parley_idp_error(b, "invalid_length",
                                          "public_keys_pem",
                                          "PEM key %uz must be 1 to %d "
                                          "bytes", i, PARLEY_JWT_KEYDOC_MAX);
                goto failed;
            }

            st = parley_jwt_keyset_add_pem(b->ks, NULL, json_string_value(e),
                                           n, &err);
            if (st != PARLEY_JWT_OK) {
                ngx_http_parley_idp_error(b, parley_jwt_status_name(st),
                                          "public_keys_pem",
                                          "PEM key %uz: %s", i, err.message);
                goto failed;
            }
        }
    }

    v = json_object_get(doc, "jwks");

    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) {
            ngx_http_parley_idp_error(b, "invalid_type", "jwks",
                                      "\"jwks\" must be a JWK Set object");
            goto failed;
        }

        n = json_dumpb(v, NULL, 0, JSON_COMPACT);

        if (n > PARLEY_JWT_KEYDOC_MAX) {
            ngx_http_parley_idp_error(b, "too_large", "jwks",
                                      "\"jwks\" is larger than %d bytes",
                                      PARLEY_JWT_KEYDOC_MAX);
            goto failed;
        }

        jwks = ngx_alloc(n + 1, log);
        if (jwks == NULL) {
            ngx_http_parley_idp_error(b, "internal", NULL, "out of memory");
            goto failed;
        }

        json_dumpb(v, jwks, n, JSON_COMPACT);
        st = parley_jwt_keyset_add_jwks(b->ks, jwks, n, &err);
        ngx_free(jwks);

        if (st != PARLEY_JWT_OK) {
            ngx_http_parley_idp_error(b, parley_jwt_status_name(st), "jwks",
                                      "%s", err.message);
            goto failed;
        }
    }

    v = json_object_get(doc, "jwks_file");

    if (v && !json_is_null(v)
        && ngx_http_parley_idp_jwks_file(v, log, b) != NGX_OK)
    {
        goto failed;
    }

    v = json_object_get(doc, "hs256_secret");

    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            ngx_http_parley_idp_error(b, "invalid_type", "hs256_secret",
                                      "\"hs256_secret\" must be a string");
            goto failed;
        }

        n = json_string_length(v);

        if (n < PARLEY_JWT_HMAC_MIN || n > PARLEY_JWT_HMAC_MAX) {
            ngx_http_parley_idp_error(b, "invalid_length", "hs256_secret",
                                      "\"hs256_secret\" must be %d to %d "
                                      "bytes", PARLEY_JWT_HMAC_MIN,
                                      PARLEY_JWT_HMAC_MAX);
            goto failed;
        }

        st = parley_jwt_keyset_add_hmac(b->ks, NULL,
                                        (const unsigned char *)
                                            json_string_value(v),
                                        n, &err);
        if (st != PARLEY_JWT_OK) {
            ngx_http_parley_idp_error(b, parley_jwt_status_name(st),
                                      "hs256_secret", "%s", err.message);
            goto failed;
        }
    }

    if (parley_jwt_keyset_count(b->ks) == 0) {
        ngx_http_parley_idp_error(b, "missing_field", "public_keys_pem",
                                  "configure at least one key: "
                                  "\"public_keys_pem\", \"jwks\", "
                                  "\"jwks_file\" or \"hs256_secret\"");
        goto failed;
    }

    /*
     * Every allowed algorithm needs a key, and every key an allowed
     * algorithm: a key nobody may use is a configuration mistake, and an
     * algorithm without a key fails every token.
     */

    present = parley_jwt_keyset_algs(b->ks);

    for (bit = PARLEY_JWT_HS256; bit <= PARLEY_JWT_ES256; bit <<= 1) {

        if ((b->algs & bit) && !(present & bit)) {
            ngx_http_parley_idp_error(b, "key_algorithm_mismatch",
                                      "algorithms",
                                      "%s is allowed but no %s is "
                                      "configured",
                                      parley_jwt_alg_name(bit),
                                      bit == PARLEY_JWT_HS256
                                      ? "\"hs256_secret\""
                                      : bit == PARLEY_JWT_RS256
                                        ? "RSA public key" : "P-256 key");
            goto failed;
        }

        if ((present & bit) && !(b->algs & bit)) {
            ngx_http_parley_idp_error(b, "key_algorithm_mismatch",
                                      "algorithms",
                                      "a key for %s is configured but "
                                      "\"algorithms\" does not allow %s",
                                      parley_jwt_alg_name(bit),
                                      parley_jwt_alg_name(bit));
            goto failed;
        }
    }

    return NGX_OK;

failed:

    parley_jwt_keyset_free(b->ks);
    b->ks = NULL;

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_parley_idp_error(ngx_http_parley_idp_build_t *b, const char *code,
    const char *field, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    b->code = code;
    b->field = field;

    va_start(args, fmt);
    p = ngx_vslprintf(b->message, b->message + sizeof(b->message) - 1, fmt,
                      args);
    va_end(args);

    *p = '\0';

    return NGX_ERROR;
}


/* 1..max bytes of text without NUL or other control characters */

static ngx_int_t
ngx_http_parley_idp_text(json_t *v, size_t max)
{
    size_t       i, len;
    const char  *s;

    s = json_string_value(v);
    len = json_string_length(v);

    if (len == 0 || len > max) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] < 0x20 || s[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_idp_int(json_t *doc, const char *name, int64_t min,
    int64_t max, int64_t def, int64_t *out, ngx_http_parley_idp_build_t *b)
{
    json_t      *v;
    json_int_t   n;

    v = json_object_get(doc, name);

    if (v == NULL || json_is_null(v)) {
        *out = def;
        return NGX_OK;
    }

    if (!json_is_integer(v)) {
        return ngx_http_parley_idp_error(b, "invalid_type", name,
                                         "\"%s\" must be an integer", name);
    }

    n = json_integer_value(v);

    if (n < min || n > max) {
        return ngx_http_parley_idp_error(b, "out_of_range", name,
                                         "\"%s\" must be %L to %L seconds",
                                         name, min, max);
    }

    *out = n;

    return NGX_OK;
}


/*
 * A JWK Set in a file on the nginx host, which the operator keeps current
 * (a cron job fetching the IdP's jwks_uri, say): workers read it whenever
 * they rebuild the tenant's key set, so a new file takes effect within
 * parley_api_cache_ttl.  The read is a bounded local read (at most 64 KiB),
 * like nginx's own reads of small files.  Its content is never quoted back:
 * the path is tenant input, and the file may be anything the worker can
 * read.
 */

static ngx_int_t
ngx_http_parley_idp_jwks_file(json_t *v, ngx_log_t *log,
    ngx_http_parley_idp_build_t *b)
{
    u_char              *buf;
    size_t               len;
    ssize_t              n;
    ngx_fd_t             fd;
    ngx_err_t            e;
    ngx_file_t           file;
    const char          *path, *why;
    ngx_file_info_t      fi;
    parley_jwt_err_t     err;
    parley_jwt_status_t  st;

    if (!json_is_string(v)) {
        return ngx_http_parley_idp_error(b, "invalid_type", "jwks_file",
                                         "\"jwks_file\" must be a string");
    }

    path = json_string_value(v);
    len = json_string_length(v);

    if (ngx_http_parley_idp_text(v, NGX_PARLEY_IDP_PATH_MAX) != NGX_OK
        || path[0] != '/'
        || ngx_strstr(path, "/../") != NULL
        || (len >= 3 && ngx_strcmp(path + len - 3, "/..") == 0))
    {
        return ngx_http_parley_idp_error(b, "invalid_value", "jwks_file",
                                         "\"jwks_file\" must be an absolute "
                                         "path without \"..\"");
    }

    /* nonblocking: a FIFO must not hold the worker in open() */
    fd = ngx_open_file(path, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK,
                       NGX_FILE_OPEN, 0);
    e = 0;
    buf = NULL;

    if (fd == NGX_INVALID_FILE) {
        e = ngx_errno;
        why = "cannot be opened";
        goto invalid;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi)
        || ngx_file_size(&fi) == 0
        || ngx_file_size(&fi) > PARLEY_JWT_KEYDOC_MAX)
    {
        (void) ngx_close_file(fd);
        why = "is not a regular file of 1 byte to 64 KiB";
        goto invalid;
    }

    len = (size_t) ngx_file_size(&fi);

    buf = ngx_alloc(len, log);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return ngx_http_parley_idp_error(b, "internal", NULL,
                                         "out of memory");
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name.data = (u_char *) path;
    file.name.len = ngx_strlen(path);
    file.log = log;

    n = ngx_read_file(&file, buf, len, 0);
    (void) ngx_close_file(fd);

    if (n != (ssize_t) len) {
        why = "could not be read";
        goto invalid;
    }

    st = parley_jwt_keyset_add_jwks(b->ks, (const char *) buf, len, &err);
    ngx_free(buf);
    buf = NULL;

    if (st != PARLEY_JWT_OK) {
        why = err.message;
        goto invalid;
    }

    return NGX_OK;

invalid:

    if (buf) {
        ngx_free(buf);
    }

    /*
     * The operator sees why; the caller only that it failed, the same way
     * whatever the reason, so that the answer does not tell which files
     * exist on the host or what they hold.
     */
    ngx_log_error(NGX_LOG_INFO, log, e, "parley idp: jwks_file \"%s\" %s",
                  path, why);

    return ngx_http_parley_idp_error(b, "key_invalid", "jwks_file",
                                     "\"jwks_file\" is not a readable JWK "
                                     "Set file (see the error log)");
}


/* ---- the worker's cache of parsed settings ------------------------- */

/*
 * Per worker and per cycle: created on first use from the cycle's pool,
 * whose cleanup frees every key set when the worker exits.
 */

static ngx_http_parley_idp_cache_t *
ngx_http_parley_idp_cache(void)
{
    ngx_cycle_t                  *cycle;
    ngx_pool_cleanup_t           *cln;
    ngx_http_parley_idp_cache_t  *c;

    cycle = (ngx_cycle_t *) ngx_cycle;
    c = ngx_http_parley_idp_worker_cache;

    if (c && c->cycle == cycle) {
        return c;
    }

    c = ngx_pcalloc(cycle->pool, sizeof(ngx_http_parley_idp_cache_t));
    if (c == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ngx_rbtree_init(&c->rbtree, &c->sentinel,
                    ngx_http_parley_idp_insert_value);
    ngx_queue_init(&c->queue);
    c->cycle = cycle;

    cln->handler = ngx_http_parley_idp_cache_cleanup;
    cln->data = c;

    ngx_http_parley_idp_worker_cache = c;

    return c;
}


static void
ngx_http_parley_idp_cache_cleanup(void *data)
{
    ngx_http_parley_idp_cache_t *c = data;

    ngx_queue_t                  *q;
    ngx_http_parley_idp_entry_t  *e;

    while (!ngx_queue_empty(&c->queue)) {
        q = ngx_queue_last(&c->queue);
        e = ngx_queue_data(q, ngx_http_parley_idp_entry_t, queue);
        ngx_http_parley_idp_cache_remove(c, e);
    }

    if (ngx_http_parley_idp_worker_cache == c) {
        ngx_http_parley_idp_worker_cache = NULL;
    }
}


static ngx_http_parley_idp_entry_t *
ngx_http_parley_idp_cache_get(uint64_t tenant_id)
{
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_parley_idp_cache_t  *c;
    ngx_http_parley_idp_entry_t  *e;

    c = ngx_http_parley_idp_cache();
    if (c == NULL) {
        return NULL;
    }

    node = c->rbtree.root;
    sentinel = c->rbtree.sentinel;

    while (node != sentinel) {
        e = (ngx_http_parley_idp_entry_t *) node;

        if (tenant_id < e->tenant_id) {
            node = node->left;
            continue;
        }

        if (tenant_id > e->tenant_id) {
            node = node->right;
            continue;
        }

        if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0) {
            ngx_http_parley_idp_cache_remove(c, e);
            return NULL;
        }

        return e;
    }

    return NULL;
}


/* takes e (heap memory from ngx_http_parley_idp_entry) */

static void
ngx_http_parley_idp_cache_put(ngx_http_parley_idp_entry_t *e, ngx_msec_t ttl)
{
    ngx_queue_t                  *q;
    ngx_http_parley_idp_cache_t  *c;
    ngx_http_parley_idp_entry_t  *old;

    c = ngx_http_parley_idp_cache();
    if (c == NULL) {
        parley_jwt_keyset_free(e->ks);
        ngx_free(e);
        return;
    }

    old = ngx_http_parley_idp_cache_get(e->tenant_id);
    if (old) {
        ngx_http_parley_idp_cache_remove(c, old);
    }

    if (c->count >= NGX_PARLEY_IDP_CACHE_MAX) {
        q = ngx_queue_last(&c->queue);
        old = ngx_queue_data(q, ngx_http_parley_idp_entry_t, queue);
        ngx_http_parley_idp_cache_remove(c, old);
    }

    e->node.key = (ngx_rbtree_key_t) e->tenant_id;
    e->expires = ngx_current_msec + ttl;

    ngx_rbtree_insert(&c->rbtree, &e->node);
    ngx_queue_insert_head(&c->queue, &e->queue);
    c->count++;
}


static void
ngx_http_parley_idp_cache_remove(ngx_http_parley_idp_cache_t *c,
    ngx_http_parley_idp_entry_t *e)
{
    ngx_rbtree_delete(&c->rbtree, &e->node);
    ngx_queue_remove(&e->queue);
    c->count--;

    parley_jwt_keyset_free(e->ks);
    ngx_free(e);
}


void
ngx_http_parley_api_idp_forget(uint64_t tenant_id)
{
    ngx_http_parley_idp_entry_t  *e;

    e = ngx_http_parley_idp_cache_get(tenant_id);
    if (e) {
        ngx_http_parley_idp_cache_remove(ngx_http_parley_idp_worker_cache, e);
    }
}


/* ordered by the whole 64-bit tenant id, whatever ngx_rbtree_key_t is */

static void
ngx_http_parley_idp_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t            **p;
    ngx_http_parley_idp_entry_t   *e, *t;

    e = (ngx_http_parley_idp_entry_t *) node;

    for ( ;; ) {
        t = (ngx_http_parley_idp_entry_t *) temp;

        p = (e->tenant_id < t->tenant_id) ? &temp->left : &temp->right;

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * One heap block: the entry, then the audience pointers, then the issuer
 * and audience strings.  Takes b->ks; NULL when out of memory (b->ks is
 * then freed).
 */

static ngx_http_parley_idp_entry_t *
ngx_http_parley_idp_entry(uint64_t tenant_id, ngx_uint_t state,
    ngx_http_parley_idp_build_t *b)
{
    u_char                       *p;
    size_t                        size, i, naud;
    json_t                       *v;
    ngx_http_parley_idp_entry_t  *e;

    naud = b->audiences ? json_array_size(b->audiences) : 0;
    size = sizeof(ngx_http_parley_idp_entry_t) + naud * sizeof(char *);

    if (state == NGX_PARLEY_IDP_READY) {
        size += ngx_strlen(b->issuer) + 1;

        json_array_foreach(b->audiences, i, v) {
            size += json_string_length(v) + 1;
        }
    }

    e = ngx_alloc(size, ngx_cycle->log);
    if (e == NULL) {
        parley_jwt_keyset_free(b->ks);
        b->ks = NULL;
        return NULL;
    }

    ngx_memzero(e, sizeof(ngx_http_parley_idp_entry_t));
    e->tenant_id = tenant_id;
    e->state = state;

    if (state != NGX_PARLEY_IDP_READY) {
        parley_jwt_keyset_free(b->ks);
        b->ks = NULL;
        return e;
    }

    e->ks = b->ks;
    b->ks = NULL;
    e->algs = b->algs;
    e->leeway = b->leeway;
    e->max_lifetime = b->max_lifetime;
    e->audiences = (const char **) (e + 1);
    e->naudiences = naud;

    p = (u_char *) (e->audiences + naud);

    e->issuer = (char *) p;
    p = ngx_cpymem(p, b->issuer, ngx_strlen(b->issuer) + 1);

    json_array_foreach(b->audiences, i, v) {
        e->audiences[i] = (char *) p;
        p = ngx_cpymem(p, json_string_value(v), json_string_length(v));
        *p++ = '\0';
    }

    return e;
}


/* ---- verifying a token --------------------------------------------- */

void
ngx_http_parley_api_idp_verify(ngx_http_parley_api_req_t *ar,
    ngx_str_t *token, const parley_jwt_header_t *header,
    ngx_http_parley_api_handler_pt done)
{
    ngx_str_t                    *h;
    ngx_http_parley_idp_ctx_t    *ctx;
    ngx_http_parley_idp_entry_t  *e;

    h = ngx_http_parley_api_header(ar->request, "X-Parley-Tenant",
                                   sizeof("X-Parley-Tenant") - 1);

    if (h == NULL || h->len == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "tenant_required",
                                 NULL, "a token of an identity provider "
                                 "needs X-Parley-Tenant: <tenant id>");
        return;
    }

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_idp_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    if (parley_id_parse((const char *) h->data, h->len, &ctx->tenant_id) != 0
        || ctx->tenant_id == 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "X-Parley-Tenant",
                                 "X-Parley-Tenant is not a tenant id");
        return;
    }

    /* header: the caller's peek chose this path; verify reads it again */
    ctx->done = done;
    ctx->token = *token;

    /* the endpoint's own state comes later; until then it is ours */
    ar->data = ctx;

    e = ngx_http_parley_idp_cache_get(ctx->tenant_id);
    if (e) {
        ngx_http_parley_idp_check(ar, e);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_idp_loaded,
        "SELECT settings FROM tenants WHERE id = %U", ctx->tenant_id);
}


static void
ngx_http_parley_idp_loaded(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                       *doc;
    MYSQL_ROW                     row;
    ngx_uint_t                    state;
    ngx_http_parley_idp_ctx_t    *ctx = ar->data;
    ngx_http_parley_idp_entry_t  *e;
    ngx_http_parley_idp_build_t   b;

    row = res->res ? mysql_fetch_row(res->res) : NULL;
    doc = row ? ngx_http_parley_idp_settings_doc(row,
                                                mysql_fetch_lengths(res->res),
                                                0)
              : NULL;

    ngx_memzero(&b, sizeof(ngx_http_parley_idp_build_t));
    state = NGX_PARLEY_IDP_NONE;

    if (doc) {
        if (ngx_http_parley_idp_build(doc, ar->log, &b) == NGX_OK) {
            state = NGX_PARLEY_IDP_READY;

        } else {
            /* accepted when stored: a jwks_file that changed, or an edit */
            state = NGX_PARLEY_IDP_BROKEN;
            ngx_log_error(NGX_LOG_ERR, ar->log, 0,
                          "parley idp: the token settings of tenant %uL do "
                          "not build: %s: %s", ctx->tenant_id, b.code,
                          b.message);
        }
    }

    e = ngx_http_parley_idp_entry(ctx->tenant_id, state, &b);
    json_decref(doc);   /* e holds copies of what it needs */

    if (e == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    /* failures are cached too: every request would otherwise rebuild */
    ngx_http_parley_idp_cache_put(e, ar->conf->cache_ttl);

    ngx_http_parley_idp_check(ar, e);
}


/* e is only used before the first asynchronous step: it may go after */

static void
ngx_http_parley_idp_check(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_idp_entry_t *e)
{
    u_char                     *p;
    ngx_str_t                   sub;
    parley_jwt_err_t            err;
    parley_jwt_policy_t         policy;
    parley_jwt_claims_t         claims;
    parley_jwt_status_t         st;
    ngx_http_parley_idp_ctx_t  *ctx = ar->data;
    ngx_http_parley_idp_user_t  u;

    if (e->state != NGX_PARLEY_IDP_READY) {
        /* a tenant that does not exist looks like one without settings */
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 "token_key_unknown", NULL,
                                 e->state == NGX_PARLEY_IDP_NONE
                                 ? "the tenant accepts no identity provider "
                                   "tokens (no token settings)"
                                 : "the tenant's token keys cannot be "
                                   "loaded");
        return;
    }

    parley_jwt_policy_init(&policy, e->algs, (int64_t) ngx_time());
    policy.issuer = e->issuer;
    policy.audiences = e->audiences;
    policy.naudiences = e->naudiences;
    policy.leeway = e->leeway;
    policy.max_lifetime = e->max_lifetime;

    st = parley_jwt_verify((const char *) ctx->token.data, ctx->token.len,
                           e->ks, &policy, &claims, &err);

    if (st != PARLEY_JWT_OK) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 parley_jwt_status_name(st), NULL,
                                 "the token is not valid: %s", err.message);
        return;
    }

    sub.data = (u_char *) claims.sub;
    sub.len = claims.sub_len;

    if (ngx_http_parley_api_valid_id(&sub) != NGX_OK) {
        parley_jwt_claims_free(&claims);
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 "token_claims_invalid", NULL,
                                 "the token's sub is not a valid user id");
        return;
    }

    /* copies: the claims are freed before the next asynchronous step */
    ctx->sub.data = ngx_pstrdup(ar->pool, &sub);
    ctx->sub.len = sub.len;
    ctx->jti.len = claims.jti_len;
    ctx->jti.data = claims.jti_len ? ngx_pnalloc(ar->pool, claims.jti_len)
                                   : (u_char *) "";
    ctx->has_iat = (claims.present & PARLEY_JWT_CLAIM_IAT) != 0;
    ctx->iat = claims.iat;
    ngx_http_parley_api_auth_set_token(ar, claims.iat, claims.exp);

    if (ctx->sub.data == NULL || ctx->jti.data == NULL) {
        parley_jwt_claims_free(&claims);
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    if (claims.jti_len) {
        ngx_memcpy(ctx->jti.data, claims.jti, claims.jti_len);
    }

    parley_jwt_claims_free(&claims);

    /* jti and sub may hold ':': the length keeps the key unambiguous */
    ctx->ukey = ngx_pnalloc(ar->pool, sizeof("i:::") - 1 + 2 * NGX_INT64_LEN
                                      + ctx->jti.len + ctx->sub.len);
    if (ctx->ukey == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    p = ngx_sprintf(ctx->ukey, "i:%uL:%uz:%V:%V", ctx->tenant_id,
                    ctx->jti.len, &ctx->jti, &ctx->sub);
    ctx->ukey_len = p - ctx->ukey;

    if (ngx_http_parley_auth_cache
        && ngx_http_parley_cache_get(ngx_http_parley_auth_cache, ctx->ukey,
                                     ctx->ukey_len, &u, sizeof(u))
           == NGX_OK)
    {
        ngx_http_parley_idp_user_ok(ar, &u);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_idp_user_row,
        "SELECT u.token_epoch, u.status, t.status, "
        "EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.tenant_id = %U "
        "AND r.jti = %L) FROM tenants t LEFT JOIN users u "
        "ON u.tenant_id = t.id AND u.user_id = %L WHERE t.id = %U",
        ctx->tenant_id, &ctx->jti, &ctx->sub, ctx->tenant_id);
}


static void
ngx_http_parley_idp_user_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    ngx_http_parley_idp_ctx_t   *ctx = ar->data;
    ngx_http_parley_idp_user_t   u;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    ngx_memzero(&u, sizeof(ngx_http_parley_idp_user_t));

    if (row) {
        u.tenant = (row[2] && ngx_strcmp(row[2], "active") == 0)
                   ? NGX_PARLEY_IDP_TENANT_ACTIVE
                   : NGX_PARLEY_IDP_TENANT_SUSPENDED;
        u.user = row[1] == NULL ? NGX_PARLEY_IDP_USER_UNKNOWN
                 : ngx_strcmp(row[1], "active") == 0
                   ? NGX_PARLEY_IDP_USER_ACTIVE
                   : NGX_PARLEY_IDP_USER_INACTIVE;
        u.token_epoch = row[0] ? strtoll(row[0], NULL, 10) : 0;
        u.revoked = row[3] && row[3][0] == '1';
    }

    if (ngx_http_parley_auth_cache) {
        ngx_http_parley_cache_put(ngx_http_parley_auth_cache, ctx->ukey,
                                  ctx->ukey_len, &u, sizeof(u),
                                  ar->conf->cache_ttl);
    }

    ngx_http_parley_idp_user_ok(ar, &u);
}


static void
ngx_http_parley_idp_user_ok(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_idp_user_t *u)
{
    ngx_http_parley_idp_ctx_t  *ctx = ar->data;

    switch (u->tenant) {

    case NGX_PARLEY_IDP_TENANT_GONE:
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED,
                                 "token_key_unknown", NULL,
                                 "the tenant accepts no identity provider "
                                 "tokens (no token settings)");
        return;

    case NGX_PARLEY_IDP_TENANT_SUSPENDED:
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "tenant_suspended",
                                 NULL, "this tenant is suspended");
        return;
    }

    if (u->user == NGX_PARLEY_IDP_USER_UNKNOWN) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "user_unknown",
                                 NULL, "the token's sub names no user of "
                                 "this tenant");
        return;
    }

    if (u->user != NGX_PARLEY_IDP_USER_ACTIVE) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "user_inactive",
                                 NULL, "this user is deactivated or deleted");
        return;
    }

    /* without iat a token cannot show it was issued after a revocation */
    if (u->revoked
        || (u->token_epoch > 0
            && (!ctx->has_iat || ctx->iat < u->token_epoch)))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_UNAUTHORIZED, "token_revoked",
                                 NULL, "the token has been revoked");
        return;
    }

    ar->tenant_id = ctx->tenant_id;
    ar->user_id = ctx->sub;
    ar->auth = NGX_PARLEY_AUTH_USER;
    ar->data = NULL;

    ctx->done(ar);
}

