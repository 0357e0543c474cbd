
/*
 * User blocks: who does not want to hear from whom.
 *
 *   PUT    /v1/users/{uid}/blocks/{target}   block     (the user, API key)
 *   DELETE /v1/users/{uid}/blocks/{target}   unblock   (the user, API key)
 *   GET    /v1/users/{uid}/blocks            list      (the user, API key)
 *
 * A row (user_id, blocked_id) of user_blocks means user_id blocks
 * blocked_id; it is one-directional, but what it refuses is refused both
 * ways: a blocked pair (a row in either direction) cannot create a direct
 * conversation (POST /v1/conversations answers 403 "blocked"), and no
 * message is sent in an existing direct conversation of such a pair.
 * Blocks do not touch group conversations.  A block is a user-level fact,
 * not a conversation event: its change goes to the outbox only
 * (parley.events, user.blocked / user.unblocked, keyed by the blocker).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_json.h"


typedef struct {
    ngx_str_t                  uid;
    ngx_str_t                  target;
    ngx_uint_t                 status;
    ngx_uint_t                 limit;
    ngx_str_t                  after;
    const char                *event;
} ngx_http_parley_blocks_ctx_t;


static ngx_http_parley_blocks_ctx_t *ngx_http_parley_blocks_ctx(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_put(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_users(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_put_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_delete(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_delete_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_deleted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_announce(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_not_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_blocks_list_user(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_blocks_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);


ngx_http_parley_api_route_t  ngx_http_parley_api_blocks_routes[] = {

    { NGX_HTTP_GET, "/v1/users/{uid}/blocks",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_blocks_list, "listBlocks", 0 },

    { NGX_HTTP_PUT, "/v1/users/{uid}/blocks/{target}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_blocks_put, "blockUser", 0 },

    { NGX_HTTP_DELETE, "/v1/users/{uid}/blocks/{target}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_blocks_delete, "unblockUser", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


/* the path's users; a user (token or X-Parley-User) acts for itself only */

static ngx_http_parley_blocks_ctx_t *
ngx_http_parley_blocks_ctx(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_blocks_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_blocks_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    ctx->uid = ngx_http_parley_api_param(ar, 0);

    if (ngx_http_parley_api_valid_id(&ctx->uid) != NGX_OK) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                 "invalid_parameter", "uid",
                                 "\"uid\" is not a valid user id");
        return NULL;
    }

    if (ar->nparams > 1) {
        ctx->target = ngx_http_parley_api_param(ar, 1);

        if (ngx_http_parley_api_valid_id(&ctx->target) != NGX_OK) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "target",
                                     "\"target\" is not a valid user id");
            return NULL;
        }
    }

    if (ar->auth == NGX_PARLEY_AUTH_USER
        && (ar->user_id.len != ctx->uid.len
            || ngx_memcmp(ar->user_id.data, ctx->uid.data, ctx->uid.len) != 0))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", "uid",
                                 "a user manages its own blocks only");
        return NULL;
    }

    if (ar->nparams > 1
        && ctx->target.len == ctx->uid.len
        && ngx_memcmp(ctx->target.data, ctx->uid.data, ctx->uid.len) == 0)
    {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "target",
                                 "a user cannot block itself");
        return NULL;
    }

    ctx->status = NGX_HTTP_OK;
    ar->data = ctx;

    return ctx;
}


/* ---- block --------------------------------------------------------- */

static void
ngx_http_parley_blocks_put(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_blocks_ctx_t  *ctx;

    ctx = ngx_http_parley_blocks_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_blocks_users,
        "SELECT (SELECT status FROM users WHERE tenant_id = %U "
        "AND user_id = %L), "
        "(SELECT status FROM users WHERE tenant_id = %U AND user_id = %L)",
        ar->tenant_id, &ctx->uid, ar->tenant_id, &ctx->target);
}


/* both must exist; blocking a deactivated user is allowed */

static void
ngx_http_parley_blocks_users(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                      row;
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL || row[0] == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    if (row[1] == NULL || ngx_strcmp(row[1], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "target", "no user \"%V\"", &ctx->target);
        return;
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_blocks_put_txn);
}


static void
ngx_http_parley_blocks_put_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_blocks_inserted,
        "INSERT IGNORE INTO user_blocks (tenant_id, user_id, blocked_id, "
        "created_at) VALUES (%U, %L, %L, UTC_TIMESTAMP(3))",
        ar->tenant_id, &ctx->uid, &ctx->target);
}


static void
ngx_http_parley_blocks_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        /* blocked already: the same answer, no second event */
        ngx_http_parley_api_rollback(ar, ngx_http_parley_blocks_select);
        return;
    }

    ctx->status = NGX_HTTP_CREATED;
    ctx->event = "user.blocked";

    ngx_http_parley_blocks_announce(ar);
}


/* ---- unblock ------------------------------------------------------- */

static void
ngx_http_parley_blocks_delete(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_blocks_ctx_t  *ctx;

    ctx = ngx_http_parley_blocks_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->status = NGX_HTTP_NO_CONTENT;
    ctx->event = "user.unblocked";

    ngx_http_parley_api_begin(ar, ngx_http_parley_blocks_delete_txn);
}


static void
ngx_http_parley_blocks_delete_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_blocks_deleted,
        "DELETE FROM user_blocks WHERE tenant_id = %U AND user_id = %L "
        "AND blocked_id = %L",
        ar->tenant_id, &ctx->uid, &ctx->target);
}


static void
ngx_http_parley_blocks_deleted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    if (res->affected_rows == 0) {
        ngx_http_parley_api_rollback(ar, ngx_http_parley_blocks_not_found);
        return;
    }

    ngx_http_parley_blocks_announce(ar);
}


static void
ngx_http_parley_blocks_not_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "block_not_found",
                             "target", "\"%V\" does not block \"%V\"",
                             &ctx->uid, &ctx->target);
}


/* ---- the common tail of writes: outbox, commit, answer -------------- */

static void
ngx_http_parley_blocks_announce(ngx_http_parley_api_req_t *ar)
{
    json_t                        *data;
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    data = json_pack("{s:s%,s:s%}",
                     "user_id", ctx->uid.data, ctx->uid.len,
                     "blocked_id", ctx->target.data, ctx->target.len);
    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_outbox(ar, ngx_http_parley_blocks_commit,
                               "parley.events", &ctx->uid, ctx->event, data);
}


static void
ngx_http_parley_blocks_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_blocks_committed);
}


static void
ngx_http_parley_blocks_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    if (ctx->status == NGX_HTTP_NO_CONTENT) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    ngx_http_parley_blocks_select(ar, res);
}


static void
ngx_http_parley_blocks_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_blocks_render,
        "SELECT user_id, blocked_id, created_at FROM user_blocks "
        "WHERE tenant_id = %U AND user_id = %L AND blocked_id = %L",
        ar->tenant_id, &ctx->uid, &ctx->target);
}


static void
ngx_http_parley_blocks_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                        *body;
    MYSQL_ROW                      row;
    unsigned long                 *len;
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        /* unblocked in between */
        ngx_http_parley_blocks_not_found(ar, res);
        return;
    }

    len = mysql_fetch_lengths(res->res);

    body = json_pack("{s:o,s:o,s:o}",
                     "user_id", ngx_http_parley_api_col_string(row, len, 0),
                     "blocked_id", ngx_http_parley_api_col_string(row, len, 1),
                     "created_at", ngx_http_parley_api_col_time(row, len, 2));

    ngx_http_parley_api_reply(ar, ctx->status, body);
}


/* ---- list ---------------------------------------------------------- */

/* by blocked id in byte order; the cursor is the last id, base64url */

static void
ngx_http_parley_blocks_list(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_blocks_ctx_t  *ctx;

    ctx = ngx_http_parley_blocks_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_arg_string_cursor(ar, &ctx->after) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_blocks_list_user,
        "SELECT status FROM users WHERE tenant_id = %U AND user_id = %L",
        ar->tenant_id, &ctx->uid);
}


static void
ngx_http_parley_blocks_list_user(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                      row;
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "uid", "no user \"%V\"", &ctx->uid);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_blocks_listed,
        "SELECT blocked_id, created_at FROM user_blocks "
        "WHERE tenant_id = %U AND user_id = %L AND blocked_id > %L "
        "ORDER BY blocked_id LIMIT %U",
        ar->tenant_id, &ctx->uid, &ctx->after, (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_blocks_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                        *items, *next, *body;
    MYSQL_ROW                      row;
    ngx_uint_t                     n;
    unsigned long                 *len, last_len;
    char                           last[NGX_PARLEY_ID_MAX + 1];
    ngx_http_parley_blocks_ctx_t  *ctx = ar->data;

    items = json_array();
    next = json_null();
    n = 0;
    last_len = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        if (n == ctx->limit) {
            /* one row more than the page: there is a next page */
            json_decref(next);
            next = ngx_http_parley_api_string_cursor_json(ar, last, last_len);
            break;
        }

        json_array_append_new(items,
            json_pack("{s:o,s:o}",
                      "blocked_id",
                      ngx_http_parley_api_col_string(row, len, 0),
                      "created_at",
                      ngx_http_parley_api_col_time(row, len, 1)));

        last_len = ngx_min(len[0], NGX_PARLEY_ID_MAX);
        ngx_memcpy(last, row[0], last_len);
        n++;
    }

    body = json_pack("{s:o,s:o}", "blocks", items, "next_cursor", next);
    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}
