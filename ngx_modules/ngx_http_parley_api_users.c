
/*
 * Users of a tenant, and their tokens.
 *
 *   POST   /v1/users                      create              (API key)
 *   GET    /v1/users                      list, search        (key, user)
 *   GET    /v1/users/{uid}                get                 (key, user)
 *   PATCH  /v1/users/{uid}                update              (key, self)
 *   DELETE /v1/users/{uid}                erase (GDPR)        (API key)
 *   POST   /v1/users/{uid}/deactivate     deactivate          (API key)
 *   POST   /v1/users/{uid}/reactivate     reactivate          (API key)
 *   POST   /v1/users/{uid}/tokens         issue a user token  (API key)
 *   POST   /v1/users/{uid}/tokens/revoke  revoke tokens       (API key)
 *   GET    /v1/me                         who is calling      (key, user)
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_sql.h"
#include "parley_jwt.h"


#define NGX_PARLEY_USER_COLUMNS                                              \
    "user_id, name, avatar_url, metadata, role, status, created_at, "        \
    "updated_at"


typedef struct {
    ngx_str_t                  uid;
    ngx_uint_t                 status;      /* of the answer */
    const char                *event;       /* outbox event type */
    int64_t                    epoch;
    int64_t                    expires_in;
    ngx_str_t                  jti;
    ngx_uint_t                 erase_messages;

    /* erasure: the conversations the user leaves, one at a time */
    uint64_t                  *cids;
    ngx_uint_t                 ncids;
    ngx_uint_t                 next_cid;
    ngx_http_parley_event_t    ev;
} ngx_http_parley_users_ctx_t;


static void ngx_http_parley_users_create(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_create_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_get(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_update(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_update_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_deactivate(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_reactivate(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_status_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_erase(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_erase_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_erase_blocks(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_members(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_leave(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_left(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_counted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_messages(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_users_erase_reactions(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_users_changed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_announce(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_token(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_token_user(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_revoke(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_users_revoked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_users_me(ngx_http_parley_api_req_t *ar);
static json_t *ngx_http_parley_users_row(MYSQL_ROW row, unsigned long *len);
static ngx_http_parley_users_ctx_t *ngx_http_parley_users_ctx(
    ngx_http_parley_api_req_t *ar);


ngx_http_parley_api_route_t  ngx_http_parley_api_users_routes[] = {

    { NGX_HTTP_POST, "/v1/users", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_users_create, "createUser", 1 },

    { NGX_HTTP_GET, "/v1/users", NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_users_list, "listUsers", 0 },

    { NGX_HTTP_GET, "/v1/users/{uid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_users_get, "getUser", 0 },

    { NGX_HTTP_PATCH, "/v1/users/{uid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_users_update, "updateUser", 1 },

    { NGX_HTTP_DELETE, "/v1/users/{uid}", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_users_erase, "deleteUser", 0 },

    { NGX_HTTP_POST, "/v1/users/{uid}/deactivate", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_users_deactivate, "deactivateUser", 0 },

    { NGX_HTTP_POST, "/v1/users/{uid}/reactivate", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_users_reactivate, "reactivateUser", 0 },

    { NGX_HTTP_POST, "/v1/users/{uid}/tokens", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_users_token, "issueUserToken", 1 },

    { NGX_HTTP_POST, "/v1/users/{uid}/tokens/revoke", NGX_PARLEY_AUTH_ADMIN,
      ngx_http_parley_users_revoke, "revokeUserTokens", 1 },

    { NGX_HTTP_GET, "/v1/me", NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_users_me, "getCaller", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static const ngx_http_parley_field_t  ngx_http_parley_user_create_fields[] = {
    { "user_id", NGX_PARLEY_FIELD_ID, 1, NGX_PARLEY_ID_MAX, 1, 0, NULL },
    { "name", NGX_PARLEY_FIELD_STRING, 0, 255, 0, 0, NULL },
    { "avatar_url", NGX_PARLEY_FIELD_STRING, 0, 2048, 0, 0, NULL },
    { "metadata", NGX_PARLEY_FIELD_OBJECT, 0, 0, 0, 1, NULL },
    { "role", NGX_PARLEY_FIELD_ENUM, 0, 16, 0, 0, "user|admin" },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_user_update_fields[] = {
    { "name", NGX_PARLEY_FIELD_STRING, 0, 255, 0, 0, NULL },
    { "avatar_url", NGX_PARLEY_FIELD_STRING, 0, 2048, 0, 0, NULL },
    { "metadata", NGX_PARLEY_FIELD_OBJECT, 0, 0, 0, 1, NULL },
    { "role", NGX_PARLEY_FIELD_ENUM, 0, 16, 0, 0, "user|admin" },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_token_fields[] = {
    { "expires_in", NGX_PARLEY_FIELD_INT, 60, 0, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_revoke_fields[] = {
    { "jti", NGX_PARLEY_FIELD_STRING, 1, 64, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static ngx_http_parley_users_ctx_t *
ngx_http_parley_users_ctx(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_users_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    if (ar->nparams) {
        ctx->uid = ngx_http_parley_api_param(ar, 0);

        if (ngx_http_parley_api_valid_id(&ctx->uid) != NGX_OK) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "uid",
                                     "\"uid\" is not a valid user id");
            return NULL;
        }
    }

    ctx->status = NGX_HTTP_OK;
    ar->data = ctx;

    return ctx;
}


/* ---- create -------------------------------------------------------- */

static void
ngx_http_parley_users_create(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_user_create_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_str(ar->body, "user_id", &ctx->uid);
    ctx->status = NGX_HTTP_CREATED;
    ctx->event = "user.created";

    ngx_http_parley_api_begin(ar, ngx_http_parley_users_create_txn);
}


static void
ngx_http_parley_users_create_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                     name, avatar, role;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_str(ar->body, "name", &name);
    ngx_http_parley_api_str(ar->body, "avatar_url", &avatar);

    if (ngx_http_parley_api_str(ar->body, "role", &role) == NULL) {
        ngx_str_set(&role, "user");
    }

    ngx_http_parley_api_sql_any(ar, ngx_http_parley_users_inserted,
        "INSERT INTO users (tenant_id, user_id, name, avatar_url, metadata, "
        "role, status, token_epoch, created_at, updated_at) VALUES "
        "(%U, %L, %L, %L, %J, %L, 'active', 0, UTC_TIMESTAMP(3), "
        "UTC_TIMESTAMP(3))",
        ar->tenant_id, &ctx->uid, &name, &avatar,
        json_object_get(ar->body, "metadata"), &role);
}


static void
ngx_http_parley_users_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (res->status == NGX_OK) {
        ngx_http_parley_users_select(ar, res);
        return;
    }

    if (res->errcode == 1062) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "user_exists",
                                 "user_id", "user \"%V\" already exists",
                                 &ctx->uid);
        return;
    }

    /* anything else takes the common path (retry, 503, 500) */
    ar->sql_errors_ok = 0;
    ngx_http_parley_api_fail(ar, res->retryable
                                 ? NGX_HTTP_SERVICE_UNAVAILABLE
                                 : NGX_HTTP_INTERNAL_SERVER_ERROR,
                             res->retryable ? "unavailable" : "internal",
                             NULL, "the user could not be stored: %s",
                             res->retryable ? res->error : "server error");
}


/* ---- read ---------------------------------------------------------- */

static void
ngx_http_parley_users_get(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_render,
        "SELECT " NGX_PARLEY_USER_COLUMNS " FROM users "
        "WHERE tenant_id = %U AND user_id = %L AND status <> 'deleted'",
        ar->tenant_id, &ctx->uid);
}


/*
 * Listing pages through user ids in byte order; q narrows to ids or names
 * starting with it.  The cursor is the last id of a page, base64url.
 */

static void
ngx_http_parley_users_list(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t     after, like;
    ngx_uint_t    limit;

    if (ngx_http_parley_api_limit(ar, &limit) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_arg_string_cursor(ar, &after) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_arg_like(ar, "q", 0, &like) != NGX_OK) {
        return;
    }

    ar->data = (void *) (uintptr_t) limit;

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_listed,
        "SELECT " NGX_PARLEY_USER_COLUMNS " FROM users "
        "WHERE tenant_id = %U AND user_id > %L AND status <> 'deleted' "
        "AND (user_id LIKE %L OR name LIKE %L) "
        "ORDER BY user_id LIMIT %U",
        ar->tenant_id, &after, &like, &like, (uint64_t) limit + 1);
}


static void
ngx_http_parley_users_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t          *items, *body, *next;
    MYSQL_ROW        row;
    ngx_uint_t       limit, n;
    unsigned long   *len, last_len;
    char             last[NGX_PARLEY_ID_MAX + 1];

    limit = (ngx_uint_t) (uintptr_t) ar->data;
    items = json_array();
    n = 0;
    last_len = 0;
    next = json_null();

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        if (n == limit) {
            /* one row more than the page: there is a next page */
            json_decref(next);
            next = ngx_http_parley_api_string_cursor_json(ar, last, last_len);
            break;
        }

        json_array_append_new(items, ngx_http_parley_users_row(row, len));
        last_len = ngx_min(len[0], NGX_PARLEY_ID_MAX);
        ngx_memcpy(last, row[0], last_len);
        n++;
    }

    body = json_pack("{s:o,s:o}", "users", items, "next_cursor", next);
    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- update -------------------------------------------------------- */

static void
ngx_http_parley_users_update(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_user_update_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    if (ar->auth == NGX_PARLEY_AUTH_USER
        && (ar->user_id.len != ctx->uid.len
            || ngx_memcmp(ar->user_id.data, ctx->uid.data, ctx->uid.len) != 0))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", NULL,
                                 "a user may only update itself");
        return;
    }

    if (ar->auth == NGX_PARLEY_AUTH_USER && !ar->acting_admin
        && json_object_get(ar->body, "role"))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", "role",
                                 "only the tenant's API key sets roles");
        return;
    }

    ctx->event = "user.updated";

    ngx_http_parley_api_begin(ar, ngx_http_parley_users_update_txn);
}


static void
ngx_http_parley_users_update_txn(ngx_http_parley_api_req_t *ar)
{
    json_t                       *v;
    ngx_str_t                     name, avatar, role;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    /* absent fields keep their value: each SET names itself when given */
    ngx_http_parley_api_str(ar->body, "name", &name);
    ngx_http_parley_api_str(ar->body, "avatar_url", &avatar);
    ngx_http_parley_api_str(ar->body, "role", &role);
    v = json_object_get(ar->body, "metadata");

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_changed,
        "UPDATE users SET "
        "name = IF(%U, %L, name), avatar_url = IF(%U, %L, avatar_url), "
        "role = IF(%U, %L, role), metadata = IF(%U, %J, metadata), "
        "updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND user_id = %L AND status <> 'deleted'",
        (uint64_t) (name.data != NULL), &name,
        (uint64_t) (avatar.data != NULL), &avatar,
        (uint64_t) (role.data != NULL), &role,
        (uint64_t) (v != NULL), v,
        ar->tenant_id, &ctx->uid);
}


/* ---- deactivate, reactivate ---------------------------------------- */

static void
ngx_http_parley_users_deactivate(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->event = "user.deactivated";
    ngx_http_parley_api_begin(ar, ngx_http_parley_users_status_txn);
}


static void
ngx_http_parley_users_reactivate(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->event = "user.reactivated";
    ngx_http_parley_api_begin(ar, ngx_http_parley_users_status_txn);
}


static void
ngx_http_parley_users_status_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_uint_t                    deactivate;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    deactivate = (ngx_strcmp(ctx->event, "user.deactivated") == 0);

    /* deactivation ends every token issued so far */
    ngx_http_parley_api_sql(ar, ngx_http_parley_users_changed,
        "UPDATE users SET status = %Q, "
        "token_epoch = IF(%U, UNIX_TIMESTAMP() + 1, token_epoch), "
        "updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND user_id = %L AND status <> 'deleted'",
        deactivate ? "deactivated" : "active", (uint64_t) deactivate,
        ar->tenant_id, &ctx->uid);
}


/* ---- erase (GDPR) -------------------------------------------------- */

/*
 * The profile is blanked and the user leaves every conversation; messages
 * stay readable by the other members, attributed to the erased id, unless
 * ?erase_messages=true tombstones them too.  The row stays, so the id
 * cannot be reused to impersonate the erased user in old history.
 */

static void
ngx_http_parley_users_erase(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                     v;
    ngx_http_parley_users_ctx_t  *ctx;

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_arg(ar, "erase_messages", &v) == NGX_OK) {
        if (v.len == 4 && ngx_strncmp(v.data, "true", 4) == 0) {
            ctx->erase_messages = 1;

        } else if (!(v.len == 5 && ngx_strncmp(v.data, "false", 5) == 0)) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "erase_messages",
                                     "erase_messages must be true or false");
            return;
        }
    }

    ctx->event = "user.deleted";
    ctx->status = NGX_HTTP_NO_CONTENT;
    ngx_http_parley_api_begin(ar, ngx_http_parley_users_erase_txn);
}


static void
ngx_http_parley_users_erase_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_erase_blocks,
        "UPDATE users SET name = '', avatar_url = '', metadata = NULL, "
        "status = 'deleted', token_epoch = UNIX_TIMESTAMP() + 1, "
        "updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND user_id = %L AND status <> 'deleted'",
        ar->tenant_id, &ctx->uid);
}


static void
ngx_http_parley_users_erase_blocks(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_erase_members,
        "DELETE FROM user_blocks WHERE tenant_id = %U "
        "AND (user_id = %L OR blocked_id = %L)",
        ar->tenant_id, &ctx->uid, &ctx->uid);
}


/*
 * The erased user leaves each conversation as a member would: under the
 * conversation's lock, with a member.left event, member_count kept exact
 * and left_event set, so that sync and member lists agree.  A group whose
 * owner is erased keeps no owner; the tenant's API key can transfer it.
 */

static void
ngx_http_parley_users_erase_members(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_erase_listed,
        "SELECT conversation_id FROM members WHERE tenant_id = %U "
        "AND user_id = %L AND state = 'active' ORDER BY conversation_id "
        "FOR UPDATE",
        ar->tenant_id, &ctx->uid);
}


static void
ngx_http_parley_users_erase_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                     row;
    ngx_uint_t                    n;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    n = res->res ? (ngx_uint_t) mysql_num_rows(res->res) : 0;

    ctx->cids = ngx_palloc(ar->pool, (n + 1) * sizeof(uint64_t));
    if (ctx->cids == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ctx->ncids = 0;
    ctx->next_cid = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        ctx->cids[ctx->ncids++] = ngx_http_parley_api_col_u64(row, 0);
    }

    ngx_http_parley_users_erase_leave(ar, res);
}


static void
ngx_http_parley_users_erase_leave(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (ctx->next_cid == ctx->ncids) {
        ngx_http_parley_users_erase_messages(ar, res);
        return;
    }

    ngx_memzero(&ctx->ev, sizeof(ngx_http_parley_event_t));
    ctx->ev.conversation_id = ctx->cids[ctx->next_cid];
    ctx->ev.type = "member.left";
    ctx->ev.subject = ctx->uid;
    ctx->ev.payload = json_pack("{s:s}", "reason", "user_deleted");

    ngx_http_parley_api_event(ar, ngx_http_parley_users_erase_left, &ctx->ev);
}


static void
ngx_http_parley_users_erase_left(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_erase_counted,
        "UPDATE members SET state = 'left', left_event = %U, "
        "updated_at = UTC_TIMESTAMP(3) WHERE tenant_id = %U "
        "AND conversation_id = %U AND user_id = %L AND state = 'active'",
        ctx->ev.event_seq, ar->tenant_id, ctx->ev.conversation_id,
        &ctx->uid);
}


static void
ngx_http_parley_users_erase_counted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    ctx->next_cid++;

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_erase_leave,
        "UPDATE conversations SET member_count = member_count - 1 "
        "WHERE tenant_id = %U AND id = %U AND member_count > 0",
        ar->tenant_id, ctx->ev.conversation_id);
}


static void
ngx_http_parley_users_erase_messages(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (!ctx->erase_messages) {
        ngx_http_parley_users_announce(ar, res);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_erase_reactions,
        "UPDATE messages SET text = NULL, metadata = NULL, attachment = NULL, "
        "mentions = NULL, reactions = NULL, deleted_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND sender_id = %L AND deleted_at IS NULL",
        ar->tenant_id, &ctx->uid);
}


/* tombstones carry no reactions, as when a message is deleted */

static void
ngx_http_parley_users_erase_reactions(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_announce,
        "DELETE r FROM reactions r JOIN messages m "
        "ON m.tenant_id = r.tenant_id AND m.conversation_id = "
        "r.conversation_id AND m.seq = r.seq "
        "WHERE m.tenant_id = %U AND m.sender_id = %L "
        "AND m.deleted_at IS NOT NULL",
        ar->tenant_id, &ctx->uid);
}


/* ---- the common tail of writes: outbox, commit, answer -------------- */

static void
ngx_http_parley_users_changed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    ngx_http_parley_users_announce(ar, res);
}


static void
ngx_http_parley_users_announce(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                       *data;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    data = json_pack("{s:s%}", "user_id", ctx->uid.data, ctx->uid.len);
    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_outbox(ar, ngx_http_parley_users_commit,
                               "parley.events", &ctx->uid, ctx->event, data);
}


static void
ngx_http_parley_users_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_users_committed);
}


static void
ngx_http_parley_users_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (ctx->status == NGX_HTTP_NO_CONTENT) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    ngx_http_parley_users_select(ar, res);
}


static void
ngx_http_parley_users_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (ar->in_txn) {
        /* create: the row is in; finish the transaction first */
        ngx_http_parley_users_announce(ar, res);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_render,
        "SELECT " NGX_PARLEY_USER_COLUMNS " FROM users "
        "WHERE tenant_id = %U AND user_id = %L",
        ar->tenant_id, &ctx->uid);
}


static void
ngx_http_parley_users_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                     row;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    ngx_http_parley_api_reply(ar, ctx->status,
                              ngx_http_parley_users_row(row,
                                               mysql_fetch_lengths(res->res)));
}


static json_t *
ngx_http_parley_users_row(MYSQL_ROW row, unsigned long *len)
{
    json_t  *meta;

    meta = ngx_http_parley_api_col_json(row, len, 3);

    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}",
                     "user_id", ngx_http_parley_api_col_string(row, len, 0),
                     "name", ngx_http_parley_api_col_string(row, len, 1),
                     "avatar_url", ngx_http_parley_api_col_string(row, len, 2),
                     "metadata", json_is_null(meta) ? json_object() : meta,
                     "role", ngx_http_parley_api_col_string(row, len, 4),
                     "status", ngx_http_parley_api_col_string(row, len, 5),
                     "created_at", ngx_http_parley_api_col_time(row, len, 6),
                     "updated_at", ngx_http_parley_api_col_time(row, len, 7));
}


/* ---- tokens -------------------------------------------------------- */

static void
ngx_http_parley_users_token(ngx_http_parley_api_req_t *ar)
{
    json_t                       *v;
    ngx_http_parley_users_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_token_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->expires_in = (int64_t) (ar->conf->token_ttl / 1000);
    v = json_object_get(ar->body, "expires_in");

    if (v) {
        if (json_integer_value(v) > ctx->expires_in) {
            ngx_http_parley_api_fail(ar, 422, "out_of_range", "expires_in",
                                     "expires_in may be at most %L seconds",
                                     ctx->expires_in);
            return;
        }

        ctx->expires_in = json_integer_value(v);
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_token_user,
        "SELECT status, token_epoch FROM users "
        "WHERE tenant_id = %U AND user_id = %L",
        ar->tenant_id, &ctx->uid);
}


static void
ngx_http_parley_users_token_user(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    u_char                        secret[32];
    char                          kid[64], tenant[NGX_INT64_LEN + 1];
    char                         *token;
    size_t                        token_len;
    json_t                       *claims, *body, *jti;
    int64_t                       now, iat, epoch;
    uint64_t                      id;
    MYSQL_ROW                     row;
    parley_jwt_err_t              err;
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    if (ngx_strcmp(row[0], "active") != 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "user_inactive",
                                 "uid", "user \"%V\" is deactivated",
                                 &ctx->uid);
        return;
    }

    if (ngx_http_parley_api_new_id(ar, &id) != NGX_OK
        || ngx_http_parley_api_token_secret(ar, ar->tenant_id, secret)
           != NGX_OK)
    {
        return;
    }

    /* a token issued right after a revocation must outlive it */
    now = (int64_t) ngx_time();
    epoch = row[1] ? strtoll(row[1], NULL, 10) : 0;
    iat = ngx_max(now, epoch);

    *ngx_sprintf((u_char *) tenant, "%uL", ar->tenant_id) = '\0';
    *ngx_sprintf((u_char *) kid, "parley:%uL", ar->tenant_id) = '\0';

    jti = ngx_http_parley_api_id_json(id);
    claims = json_pack("{s:s,s:s,s:s%,s:s,s:O,s:I,s:I}",
                       "iss", "parley",
                       "aud", tenant,
                       "sub", ctx->uid.data, ctx->uid.len,
                       "tid", tenant,
                       "jti", jti,
                       "iat", (json_int_t) iat,
                       "exp", (json_int_t) (now + ctx->expires_in));

    token = ngx_pnalloc(ar->pool, PARLEY_JWT_MAX_LEN + 1);

    if (claims == NULL || token == NULL
        || parley_jwt_sign_hs256(kid, claims, secret, sizeof(secret), token,
                                 PARLEY_JWT_MAX_LEN + 1, &token_len, &err)
           != PARLEY_JWT_OK)
    {
        OPENSSL_cleanse(secret, sizeof(secret));
        json_decref(claims);
        json_decref(jti);
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "the token could not be "
                                 "signed");
        return;
    }

    OPENSSL_cleanse(secret, sizeof(secret));
    json_decref(claims);

    body = json_pack("{s:s%,s:o,s:s%,s:I}",
                     "token", token, token_len,
                     "jti", jti,
                     "user_id", ctx->uid.data, ctx->uid.len,
                     "expires_at", (json_int_t) (now + ctx->expires_in));

    ngx_http_parley_api_reply(ar, NGX_HTTP_CREATED, body);
}


/*
 * With "jti", that one token; without, every token issued so far (the
 * user's token epoch moves past now).
 */

static void
ngx_http_parley_users_revoke(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_users_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_revoke_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_users_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_str(ar->body, "jti", &ctx->jti)) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_users_revoked,
            "INSERT IGNORE INTO revoked_tokens (tenant_id, jti, user_id, "
            "expires_at) SELECT tenant_id, %L, user_id, "
            "UNIX_TIMESTAMP() + %U FROM users "
            "WHERE tenant_id = %U AND user_id = %L",
            &ctx->jti, (uint64_t) (ar->conf->token_ttl / 1000) + 60,
            ar->tenant_id, &ctx->uid);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_users_revoked,
        "UPDATE users SET token_epoch = UNIX_TIMESTAMP() + 1, "
        "updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND user_id = %L",
        ar->tenant_id, &ctx->uid);
}


static void
ngx_http_parley_users_revoked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_users_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0 && ctx->jti.len == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
}


/*
 * Who the credential belongs to, answered from the authentication alone
 * (the token's signature and this worker's cached revocation state): the
 * cheapest authenticated call, which clients use to check a token.
 */

static void
ngx_http_parley_users_me(ngx_http_parley_api_req_t *ar)
{
    json_t   *body;
    int64_t   exp;

    body = json_pack("{s:o,s:s}",
                     "tenant_id", ngx_http_parley_api_id_json(ar->tenant_id),
                     "credential", ar->auth == NGX_PARLEY_AUTH_ADMIN
                                   || ar->acting_admin ? "api_key"
                                                       : "user_token");
    if (body == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    if (ar->user_id.len) {
        json_object_set_new(body, "user_id",
                            json_stringn((char *) ar->user_id.data,
                                         ar->user_id.len));
    }

    exp = ngx_http_parley_api_auth_expiry(ar);

    if (exp) {
        json_object_set_new(body, "expires_at", json_integer(exp));
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}
