
/*
 * Reactions to messages.
 *
 *   PUT    /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}  (user)
 *   DELETE /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}  (user)
 *   GET    /v1/conversations/{cid}/messages/{seq}/reactions      (key, user)
 *   GET    /v1/conversations/{cid}/messages/{seq}/reactions/{emoji}
 *                                                                (key, user)
 *
 * The reactions table says who reacted with what; messages.reactions caches
 * the count per emoji for message rendering, and both change in one
 * transaction, under the conversation row's lock (as every message write:
 * see ngx_http_parley_api_messages.c).  Adding a reaction that is there, or
 * removing one that is not, changes nothing and records no event.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_id.h"


#define NGX_PARLEY_EMOJI_MAX          64    /* bytes, as reactions.emoji */
#define NGX_PARLEY_REACTIONS_MAX      50    /* distinct emoji per message */


typedef struct {
    uint64_t                    cid;
    uint64_t                    seq;
    uint64_t                    mid;
    ngx_str_t                   emoji;       /* NUL-terminated (route) */
    ngx_str_t                   after;       /* user id cursor */
    ngx_uint_t                  add;         /* PUT, not DELETE */
    ngx_uint_t                  per_emoji;   /* one emoji's users */
    ngx_uint_t                  locked;
    ngx_uint_t                  limit;
    json_int_t                  count;       /* of emoji, after the change */
    json_t                     *counts;      /* messages.reactions */

    ngx_uint_t                  err_status;
    const char                 *err_code;
    const char                 *err_field;
    u_char                      err_msg[256];

    ngx_http_parley_access_t    acc;
    ngx_http_parley_event_t     ev;
} ngx_http_parley_react_ctx_t;


static ngx_http_parley_react_ctx_t *ngx_http_parley_react_ctx(
    ngx_http_parley_api_req_t *ar, ngx_uint_t emoji);
static void ngx_http_parley_react_cleanup(void *data);
static ngx_int_t ngx_http_parley_react_member(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_react_counts(ngx_http_parley_api_req_t *ar,
    MYSQL_ROW row, unsigned long *len, unsigned i);

static void ngx_http_parley_react_put(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_react_delete(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_react_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_react_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_changed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_cached(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static void ngx_http_parley_react_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_react_users(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_react_list_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_list_message(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_react_users_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);


ngx_http_parley_api_route_t  ngx_http_parley_api_reactions_routes[] = {

    { NGX_HTTP_PUT,
      "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}",
      NGX_PARLEY_AUTH_USER,
      ngx_http_parley_react_put, "addReaction", 0 },

    { NGX_HTTP_DELETE,
      "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}",
      NGX_PARLEY_AUTH_USER,
      ngx_http_parley_react_delete, "removeReaction", 0 },

    { NGX_HTTP_GET, "/v1/conversations/{cid}/messages/{seq}/reactions",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_react_list, "listReactions", 0 },

    { NGX_HTTP_GET,
      "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_react_users, "listReactionUsers", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


/* ---- common -------------------------------------------------------- */

/*
 * {cid}, {seq} and, when emoji, {emoji}: 1..64 bytes of UTF-8 without
 * control characters (the router checked those) or spaces.
 */

static ngx_http_parley_react_ctx_t *
ngx_http_parley_react_ctx(ngx_http_parley_api_req_t *ar, ngx_uint_t emoji)
{
    size_t                        i;
    ngx_str_t                     s;
    ngx_pool_cleanup_t           *cln;
    ngx_http_parley_react_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_react_ctx_t));
    cln = ngx_pool_cleanup_add(ar->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    cln->handler = ngx_http_parley_react_cleanup;
    cln->data = ctx;
    ar->data = ctx;

    if (ngx_http_parley_api_conversation_id(ar, 0, &ctx->cid) != NGX_OK) {
        return NULL;
    }

    s = ngx_http_parley_api_param(ar, 1);

    if (parley_id_parse((const char *) s.data, s.len, &ctx->seq) != 0
        || ctx->seq == 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "seq", "\"seq\" is not a message sequence "
                                 "number");
        return NULL;
    }

    if (!emoji) {
        return ctx;
    }

    ctx->emoji = ngx_http_parley_api_param(ar, 2);

    if (ctx->emoji.len == 0 || ctx->emoji.len > NGX_PARLEY_EMOJI_MAX) {
        goto invalid;
    }

    for (i = 0; i < ctx->emoji.len; i++) {
        if (ctx->emoji.data[i] <= 0x20 || ctx->emoji.data[i] == 0x7f) {
            goto invalid;
        }
    }

    return ctx;

invalid:

    ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                             "emoji", "\"emoji\" must be 1 to %d bytes of "
                             "UTF-8 without spaces or control characters",
                             NGX_PARLEY_EMOJI_MAX);
    return NULL;
}


static void
ngx_http_parley_react_cleanup(void *data)
{
    ngx_http_parley_react_ctx_t *ctx = data;

    if (ctx->counts) {
        json_decref(ctx->counts);
        ctx->counts = NULL;
    }
}


/* an active member (or, for reading, the tenant's API key) */

static ngx_int_t
ngx_http_parley_react_member(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    if (ctx->acc.tenant_admin) {
        return NGX_OK;
    }

    if (ctx->acc.state == NGX_PARLEY_STATE_BANNED) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "banned", NULL,
                                    "you are banned from conversation %uL",
                                    ctx->cid);
        return NGX_ERROR;
    }

    if (!ngx_http_parley_api_is_member(&ctx->acc)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "not_member",
                                    NULL, "you are not a member of "
                                    "conversation %uL", ctx->cid);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the cached counts of a message row's column i, as an object */

static ngx_int_t
ngx_http_parley_react_counts(ngx_http_parley_api_req_t *ar, MYSQL_ROW row,
    unsigned long *len, unsigned i)
{
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    if (ctx->counts) {
        json_decref(ctx->counts);
    }

    ctx->counts = ngx_http_parley_api_col_json(row, len, i);

    if (!json_is_object(ctx->counts)) {
        json_decref(ctx->counts);
        ctx->counts = json_object();
    }

    if (ctx->counts == NULL) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                    "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* ---- add, remove --------------------------------------------------- */

static void
ngx_http_parley_react_put(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_react_ctx_t  *ctx;

    ctx = ngx_http_parley_react_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->add = 1;
    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_react_access);
}


static void
ngx_http_parley_react_delete(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_react_ctx_t  *ctx;

    ctx = ngx_http_parley_react_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_react_access);
}


/*
 * As edits: checked once without locks (refusals cost no transaction),
 * then again inside the transaction with the conversation row locked.
 */

static void
ngx_http_parley_react_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_react_access);
}


static void
ngx_http_parley_react_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_react_member(ar) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_react_row,
        "SELECT id, deleted_at, reactions FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U%S",
        ar->tenant_id, ctx->cid, ctx->seq, ctx->locked ? " FOR UPDATE" : "");
}


static void
ngx_http_parley_react_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                     row;
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                    "message_not_found", "seq",
                                    "no message %uL in conversation %uL",
                                    ctx->seq, ctx->cid);
        return;
    }

    if (row[1]) {
        if (ctx->add) {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                        "message_deleted", "seq",
                                        "message %uL is deleted", ctx->seq);
            return;
        }

        /* a tombstone has no reactions left to remove */
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NO_CONTENT, "", NULL, "");
        return;
    }

    if (!ctx->locked) {
        ctx->locked = 1;
        ngx_http_parley_api_begin(ar, ngx_http_parley_react_txn);
        return;
    }

    ctx->mid = ngx_http_parley_api_col_u64(row, 0);

    if (ngx_http_parley_react_counts(ar, row, mysql_fetch_lengths(res->res), 2)
        != NGX_OK)
    {
        return;
    }

    if (!ctx->add) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_react_changed,
            "DELETE FROM reactions WHERE tenant_id = %U "
            "AND conversation_id = %U AND seq = %U AND emoji = %L "
            "AND user_id = %L",
            ar->tenant_id, ctx->cid, ctx->seq, &ctx->emoji, &ar->user_id);
        return;
    }

    if (json_object_get(ctx->counts, (char *) ctx->emoji.data) == NULL
        && json_object_size(ctx->counts) >= NGX_PARLEY_REACTIONS_MAX)
    {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                    "too_many_reactions", "emoji",
                                    "a message holds at most %d different "
                                    "reactions", NGX_PARLEY_REACTIONS_MAX);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_react_changed,
        "INSERT IGNORE INTO reactions (tenant_id, conversation_id, seq, "
        "emoji, user_id, created_at) "
        "VALUES (%U, %U, %U, %L, %L, UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, ctx->seq, &ctx->emoji, &ar->user_id);
}


static void
ngx_http_parley_react_changed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                       *v;
    json_int_t                    n;
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        /* there already, or not there: idempotent, no event */
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NO_CONTENT, "", NULL, "");
        return;
    }

    v = json_object_get(ctx->counts, (char *) ctx->emoji.data);
    n = json_is_integer(v) ? json_integer_value(v) : 0;
    n += ctx->add ? 1 : -1;
    ctx->count = n > 0 ? n : 0;

    if (ctx->count) {
        json_object_set_new(ctx->counts, (char *) ctx->emoji.data,
                            json_integer(ctx->count));

    } else {
        json_object_del(ctx->counts, (char *) ctx->emoji.data);
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_react_cached,
        "UPDATE messages SET reactions = %J "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        json_object_size(ctx->counts) ? ctx->counts : NULL,
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_react_cached(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    ngx_memzero(&ctx->ev, sizeof(ngx_http_parley_event_t));
    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.type = ctx->add ? "reaction.added" : "reaction.removed";
    ctx->ev.message_seq = ctx->seq;
    ctx->ev.payload = json_pack("{s:o,s:I,s:s%,s:s%,s:I}",
                                "message_id",
                                ngx_http_parley_api_id_json(ctx->mid),
                                "seq", (json_int_t) ctx->seq,
                                "emoji", ctx->emoji.data, ctx->emoji.len,
                                "user_id", ar->user_id.data, ar->user_id.len,
                                "count", ctx->count);

    if (ctx->ev.payload == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_event(ar, ngx_http_parley_react_logged, &ctx->ev);
}


static void
ngx_http_parley_react_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_react_committed);
}


static void
ngx_http_parley_react_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
}


/* ---- reading ------------------------------------------------------- */

/*
 * Every emoji of a message with its count and its first `limit` users in
 * byte order; the rest of an emoji's users page through the per-emoji
 * endpoint.  At most NGX_PARLEY_REACTIONS_MAX emoji exist per message, so
 * the answer is bounded by that times limit.
 */

static void
ngx_http_parley_react_list(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_react_ctx_t  *ctx;

    ctx = ngx_http_parley_react_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_react_list_access);
}


static void
ngx_http_parley_react_users(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_react_ctx_t  *ctx;

    ctx = ngx_http_parley_react_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    ngx_str_set(&ctx->after, "");

    if (ngx_http_parley_api_arg(ar, "after", &ctx->after) == NGX_OK
        && ngx_http_parley_api_valid_id(&ctx->after) != NGX_OK)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "after", "\"after\" is not a user id");
        return;
    }

    ctx->per_emoji = 1;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_react_list_access);
}


static void
ngx_http_parley_react_list_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_react_member(ar) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_react_list_message,
        "SELECT id, deleted_at, reactions FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_react_list_message(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                       *v;
    MYSQL_ROW                     row;
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "message_not_found",
                                 "seq", "no message %uL in conversation %uL",
                                 ctx->seq, ctx->cid);
        return;
    }

    if (!ctx->per_emoji) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_react_listed,
            "SELECT emoji, user_id, cnt FROM (SELECT emoji, user_id, "
            "COUNT(*) OVER (PARTITION BY emoji) AS cnt, "
            "MIN(created_at) OVER (PARTITION BY emoji) AS first_at, "
            "ROW_NUMBER() OVER (PARTITION BY emoji ORDER BY user_id) AS rn "
            "FROM reactions WHERE tenant_id = %U AND conversation_id = %U "
            "AND seq = %U) t WHERE rn <= %U ORDER BY first_at, emoji, rn",
            ar->tenant_id, ctx->cid, ctx->seq, (uint64_t) ctx->limit);
        return;
    }

    if (ngx_http_parley_react_counts(ar, row, mysql_fetch_lengths(res->res), 2)
        != NGX_OK)
    {
        return;
    }

    v = json_object_get(ctx->counts, (char *) ctx->emoji.data);
    ctx->count = json_is_integer(v) ? json_integer_value(v) : 0;

    ngx_http_parley_api_sql(ar, ngx_http_parley_react_users_listed,
        "SELECT user_id FROM reactions WHERE tenant_id = %U "
        "AND conversation_id = %U AND seq = %U AND emoji = %L "
        "AND user_id > %L ORDER BY user_id LIMIT %U",
        ar->tenant_id, ctx->cid, ctx->seq, &ctx->emoji, &ctx->after,
        (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_react_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                       *list, *entry, *users, *body;
    uint64_t                      cnt;
    MYSQL_ROW                     row;
    unsigned long                *len, elen;
    ngx_http_parley_react_ctx_t  *ctx = ar->data;
    u_char                        emoji[NGX_PARLEY_EMOJI_MAX * 4 + 1];

    list = json_array();
    entry = NULL;
    users = NULL;
    elen = (unsigned long) -1;

    if (list == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        if (len[0] > sizeof(emoji) - 1) {
            continue;
        }

        if (entry == NULL || len[0] != elen
            || ngx_memcmp(emoji, row[0], elen) != 0)
        {
            elen = len[0];
            ngx_memcpy(emoji, row[0], elen);

            cnt = ngx_http_parley_api_col_u64(row, 2);
            users = json_array();
            entry = json_pack("{s:s%,s:I,s:o,s:b}",
                              "emoji", row[0], (size_t) len[0],
                              "count", (json_int_t) cnt,
                              "users", users,
                              "has_more_users", (int) (cnt > ctx->limit));

            if (entry == NULL) {
                json_decref(list);
                ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "internal", NULL, "out of memory");
                return;
            }

            json_array_append_new(list, entry);
        }

        json_array_append_new(users, json_stringn(row[1], len[1]));
    }

    body = json_pack("{s:o}", "reactions", list);
    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


static void
ngx_http_parley_react_users_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                       *users, *body, *next;
    MYSQL_ROW                     row;
    ngx_uint_t                    n;
    unsigned long                *len;
    ngx_http_parley_react_ctx_t  *ctx = ar->data;

    users = json_array();
    next = json_null();
    n = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        if (n == ctx->limit) {
            /* one row more than the page: the page's last id continues */
            json_decref(next);
            next = json_incref(json_array_get(users, n - 1));
            break;
        }

        json_array_append_new(users, json_stringn(row[0], len[0]));
        n++;
    }

    body = json_pack("{s:s%,s:I,s:o,s:o}",
                     "emoji", ctx->emoji.data, ctx->emoji.len,
                     "count", ctx->count,
                     "users", users,
                     "next_after", next);

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}
