
/*
 * Receipts, unread counts and the caller's conversation list.
 *
 *   POST /v1/conversations/{cid}/delivered  move my delivered cursor (member)
 *   POST /v1/conversations/{cid}/read       move my read cursor      (member)
 *   GET  /v1/conversations/{cid}/receipts   every member's cursors   (key,
 *                                                                  member)
 *   GET  /v1/conversations                  my conversations, newest (user)
 *   GET  /v1/unread                         my unread counts         (user)
 *
 * A member's two cursors are message seqs: delivered_seq (the member's
 * devices have the messages up to it) and read_seq (the member has seen
 * them).  They only move forward, never past the conversation's last_seq,
 * and read implies delivered.  A move that changes nothing writes nothing
 * and records no event, so clients may repeat a receipt freely.
 *
 * Unread counts are last_seq - max(read_seq, joined_seq): a send moves the
 * sender's own read cursor to their message (messages.c) and a (re)join
 * starts both cursors at the join (members.c), so what is counted is the
 * messages of others since the member last read, tombstones and thread
 * replies included.  It costs nothing to compute, for any number of
 * conversations.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_sync_state.h"


/* activity of a conversation: its last message, or its creation */
#define NGX_PARLEY_ACTIVITY                                                  \
    "COALESCE(c.last_message_at, c.created_at)"

/* unread, for rows where it is positive (unsigned arithmetic) */
#define NGX_PARLEY_UNREAD                                                    \
    "c.last_seq - GREATEST(m.read_seq, m.joined_seq)"

/* a cursor above every real row: the first page */
#define NGX_PARLEY_LIST_TOP          "9999-12-31 23:59:59.999"


typedef struct {
    uint64_t                     cid;
    uint64_t                     seq;        /* the body's seq */
    ngx_uint_t                   read;       /* POST .../read */
    uint64_t                     delivered_seq;  /* the cursors after */
    uint64_t                     read_seq;
    uint64_t                     last_seq;
    uint64_t                     joined_seq;

    ngx_uint_t                   limit;
    ngx_str_t                    after;      /* receipts: a user id */
    char                         after_time[PARLEY_LIST_TIME_LEN + 1];
    uint64_t                     after_id;
    uint64_t                     total;
    uint64_t                     count;

    /* an error answered once the transaction is rolled back */
    ngx_uint_t                   err_status;
    const char                  *err_code;
    const char                  *err_field;
    u_char                       err_msg[256];

    ngx_http_parley_access_t     acc;
    ngx_http_parley_event_t      ev;
} ngx_http_parley_receipts_ctx_t;


static ngx_http_parley_receipts_ctx_t *ngx_http_parley_receipts_ctx(
    ngx_http_parley_api_req_t *ar, ngx_uint_t has_cid);
static ngx_int_t ngx_http_parley_receipts_member(
    ngx_http_parley_api_req_t *ar, ngx_uint_t admin_ok);

static void ngx_http_parley_receipts_delivered(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_receipts_read(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_receipts_mark(ngx_http_parley_api_req_t *ar,
    ngx_uint_t read);
static void ngx_http_parley_receipts_mark_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_receipts_mark_access(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_receipts_mark_updated(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_receipts_mark_logged(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_receipts_mark_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static void ngx_http_parley_receipts_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_receipts_list_access(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_receipts_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static void ngx_http_parley_receipts_conversations(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_receipts_conversations_listed(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static json_t *ngx_http_parley_receipts_conversation_row(
    ngx_http_parley_api_req_t *ar, MYSQL_ROW row, unsigned long *len);
static json_t *ngx_http_parley_receipts_peer(ngx_http_parley_api_req_t *ar,
    MYSQL_ROW row, unsigned long *len, unsigned i);

static void ngx_http_parley_receipts_unread(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_receipts_unread_total(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_receipts_unread_listed(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);

static uint64_t ngx_http_parley_receipts_unread_of(uint64_t last_seq,
    uint64_t read_seq, uint64_t joined_seq);
static json_t *ngx_http_parley_receipts_cursor_json(
    ngx_http_parley_api_req_t *ar, ngx_http_parley_receipts_ctx_t *ctx);


ngx_http_parley_api_route_t  ngx_http_parley_api_receipts_routes[] = {

    { NGX_HTTP_POST, "/v1/conversations/{cid}/delivered",
      NGX_PARLEY_AUTH_USER,
      ngx_http_parley_receipts_delivered, "markDelivered", 1 },

    { NGX_HTTP_POST, "/v1/conversations/{cid}/read", NGX_PARLEY_AUTH_USER,
      ngx_http_parley_receipts_read, "markRead", 1 },

    { NGX_HTTP_GET, "/v1/conversations/{cid}/receipts",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_receipts_list, "listReceipts", 0 },

    { NGX_HTTP_GET, "/v1/conversations", NGX_PARLEY_AUTH_USER,
      ngx_http_parley_receipts_conversations, "listMyConversations", 0 },

    { NGX_HTTP_GET, "/v1/unread", NGX_PARLEY_AUTH_USER,
      ngx_http_parley_receipts_unread, "getUnread", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static const ngx_http_parley_field_t  ngx_http_parley_receipt_fields[] = {
    { "seq", NGX_PARLEY_FIELD_INT, 0, 0, 1, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static ngx_http_parley_receipts_ctx_t *
ngx_http_parley_receipts_ctx(ngx_http_parley_api_req_t *ar,
    ngx_uint_t has_cid)
{
    ngx_http_parley_receipts_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_receipts_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    if (has_cid
        && ngx_http_parley_api_conversation_id(ar, 0, &ctx->cid) != NGX_OK)
    {
        return NULL;
    }

    ar->data = ctx;

    return ctx;
}


/*
 * The loaded conversation may be read by the caller: an active member, or
 * (admin_ok) the tenant's API key.  NGX_ERROR once refused.
 */

static ngx_int_t
ngx_http_parley_receipts_member(ngx_http_parley_api_req_t *ar,
    ngx_uint_t admin_ok)
{
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    if (admin_ok && ctx->acc.tenant_admin) {
        return NGX_OK;
    }

    if (ctx->acc.state == NGX_PARLEY_STATE_BANNED) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "banned", NULL,
                                       "you are banned from conversation "
                                       "%uL", ctx->cid);
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


/* ---- delivered, read ------------------------------------------------ */

static void
ngx_http_parley_receipts_delivered(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_receipts_mark(ar, 0);
}


static void
ngx_http_parley_receipts_read(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_receipts_mark(ar, 1);
}


static void
ngx_http_parley_receipts_mark(ngx_http_parley_api_req_t *ar, ngx_uint_t read)
{
    ngx_http_parley_receipts_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_receipt_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_receipts_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->read = read;
    ctx->seq = (uint64_t) json_integer_value(json_object_get(ar->body,
                                                             "seq"));

    ngx_http_parley_api_begin(ar, ngx_http_parley_receipts_mark_txn);
}


/*
 * The conversation row is locked first, as every write to a conversation
 * does (a send, a membership change): the cursors read with it are the
 * current ones, and the event number taken below is the next one.
 */

static void
ngx_http_parley_receipts_mark_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_receipts_mark_access);
}


static void
ngx_http_parley_receipts_mark_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    uint64_t                         delivered, read;
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_receipts_member(ar, 0) != NGX_OK) {
        return;
    }

    ctx->last_seq = ctx->acc.last_seq;
    ctx->joined_seq = ctx->acc.joined_seq;

    /* past the last message is a client bug worth telling: no clamping */
    if (ctx->seq > ctx->acc.last_seq) {
        ngx_http_parley_api_refuse(ar, 422, "out_of_range", "seq",
                                       "\"seq\" %uL is past the last message "
                                       "%uL", ctx->seq, ctx->acc.last_seq);
        return;
    }

    read = ctx->acc.read_seq;
    delivered = ctx->acc.delivered_seq;

    if (ctx->read) {
        read = ngx_max(read, ctx->seq);
    }

    delivered = ngx_max(delivered, ngx_max(read, ctx->seq));

    ctx->read_seq = read;
    ctx->delivered_seq = delivered;

    if (read == ctx->acc.read_seq && delivered == ctx->acc.delivered_seq) {
        /* nothing moves: nothing is written, no event */
        ngx_http_parley_api_rollback(ar, ngx_http_parley_receipts_mark_done);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_receipts_mark_updated,
        "UPDATE members SET delivered_seq = GREATEST(delivered_seq, %U), "
        "read_seq = GREATEST(read_seq, %U), updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L "
        "AND state = 'active'",
        delivered, read, ar->tenant_id, ctx->cid, &ar->user_id);
}


static void
ngx_http_parley_receipts_mark_updated(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                          *payload;
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "not_member",
                                       NULL, "you are not a member of "
                                       "conversation %uL", ctx->cid);
        return;
    }

    payload = json_pack("{s:I,s:I}",
                        "delivered_seq", (json_int_t) ctx->delivered_seq,
                        "read_seq", (json_int_t) ctx->read_seq);
    if (payload == NULL) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal", NULL, "out of memory");
        return;
    }

    ngx_memzero(&ctx->ev, sizeof(ngx_http_parley_event_t));
    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.subject = ar->user_id;
    ctx->ev.payload = payload;

    /* one event per request: a read that also moved delivered is a read */
    if (ctx->read_seq != ctx->acc.read_seq) {
        ctx->ev.type = "receipt.read";
        ctx->ev.message_seq = ctx->read_seq;

    } else {
        ctx->ev.type = "receipt.delivered";
        ctx->ev.message_seq = ctx->delivered_seq;
    }

    ngx_http_parley_api_event(ar, ngx_http_parley_receipts_mark_logged,
                              &ctx->ev);
}


static void
ngx_http_parley_receipts_mark_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_receipts_mark_done);
}


static void
ngx_http_parley_receipts_mark_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                          *body;
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    body = json_pack("{s:o,s:s%,s:I,s:I,s:I,s:I}",
                     "conversation_id", ngx_http_parley_api_id_json(ctx->cid),
                     "user_id", ar->user_id.data, ar->user_id.len,
                     "delivered_seq", (json_int_t) ctx->delivered_seq,
                     "read_seq", (json_int_t) ctx->read_seq,
                     "last_seq", (json_int_t) ctx->last_seq,
                     "unread", (json_int_t)
                         ngx_http_parley_receipts_unread_of(ctx->last_seq,
                                                            ctx->read_seq,
                                                            ctx->joined_seq));

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- every member's cursors ---------------------------------------- */

/*
 * Active members in user id order, a page at a time; the cursor is the
 * last user id of a page, base64url.
 */

static void
ngx_http_parley_receipts_list(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_receipts_ctx_t  *ctx;

    ctx = ngx_http_parley_receipts_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_arg_string_cursor(ar, &ctx->after) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_receipts_list_access);
}


static void
ngx_http_parley_receipts_list_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_receipts_member(ar, 1) != NGX_OK) {
        return;
    }

    ctx->last_seq = ctx->acc.last_seq;

    ngx_http_parley_api_sql(ar, ngx_http_parley_receipts_listed,
        "SELECT user_id, delivered_seq, read_seq FROM members "
        "WHERE tenant_id = %U AND conversation_id = %U AND state = 'active' "
        "AND user_id > %L ORDER BY user_id LIMIT %U",
        ar->tenant_id, ctx->cid, &ctx->after, (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_receipts_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                           last_len;
    json_t                          *items, *next, *body;
    MYSQL_ROW                        row;
    ngx_uint_t                       n;
    unsigned long                   *len;
    char                             last[NGX_PARLEY_ID_MAX];
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

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
            json_pack("{s:o,s:I,s:I}",
                      "user_id", ngx_http_parley_api_col_string(row, len, 0),
                      "delivered_seq",
                      (json_int_t) ngx_http_parley_api_col_u64(row, 1),
                      "read_seq",
                      (json_int_t) ngx_http_parley_api_col_u64(row, 2)));

        last_len = ngx_min(len[0], NGX_PARLEY_ID_MAX);
        ngx_memcpy(last, row[0], last_len);
        n++;
    }

    body = json_pack("{s:o,s:I,s:o,s:o}",
                     "conversation_id", ngx_http_parley_api_id_json(ctx->cid),
                     "last_seq", (json_int_t) ctx->last_seq,
                     "receipts", items,
                     "next_cursor", next);

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- the caller's conversations ------------------------------------ */

/*
 * The caller's active memberships, by last activity (the last message, or
 * the creation when there is none), newest first, ties by id.  The cursor
 * holds the last item's (activity, id): a conversation that becomes active
 * meanwhile moves to the top of the list and is not shown again further
 * down, and no other conversation is skipped or repeated.
 */

static void
ngx_http_parley_receipts_conversations(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                        cursor;
    ngx_http_parley_receipts_ctx_t  *ctx;

    ctx = ngx_http_parley_receipts_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    ngx_cpystrn((u_char *) ctx->after_time, (u_char *) NGX_PARLEY_LIST_TOP,
                sizeof(ctx->after_time));
    ctx->after_id = UINT64_MAX;

    if (ngx_http_parley_api_arg(ar, "cursor", &cursor) == NGX_OK
        && parley_list_cursor_decode((const char *) cursor.data, cursor.len,
                                     ctx->after_time, &ctx->after_id)
           != PARLEY_SYNC_OK)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                 "invalid_parameter", "cursor",
                                 "the cursor is not valid");
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_receipts_conversations_listed,
        "SELECT c.id, c.kind, c.access, c.name, c.description, c.avatar_url, "
        "c.metadata, c.created_by, c.member_count, c.last_seq, "
        "c.last_message_at, c.created_at, c.updated_at, c.direct_key, "
        "m.role, m.delivered_seq, m.read_seq, m.joined_seq, "
        NGX_PARLEY_ACTIVITY ", "
        "lm.seq, lm.sender_id, lm.type, lm.text, lm.created_at, "
        "lm.edited_at, lm.deleted_at "
        "FROM members m JOIN conversations c "
        "ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id "
        "LEFT JOIN messages lm ON lm.tenant_id = c.tenant_id "
        "AND lm.conversation_id = c.id AND lm.seq = c.last_seq "
        "WHERE m.tenant_id = %U AND m.user_id = %L AND m.state = 'active' "
        "AND c.deleted_at IS NULL "
        "AND (" NGX_PARLEY_ACTIVITY " < %Q "
        "OR (" NGX_PARLEY_ACTIVITY " = %Q AND c.id < %U)) "
        "ORDER BY " NGX_PARLEY_ACTIVITY " DESC, c.id DESC LIMIT %U",
        ar->tenant_id, &ar->user_id, ctx->after_time, ctx->after_time,
        ctx->after_id, (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_receipts_conversations_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                          *items, *body, *item, *next;
    MYSQL_ROW                        row;
    ngx_uint_t                       n;
    unsigned long                   *len;
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    items = json_array();
    row = NULL;
    n = 0;
    ctx->after_id = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        if (n == ctx->limit) {
            break;
        }

        item = ngx_http_parley_receipts_conversation_row(ar, row, len);
        if (item == NULL) {
            json_decref(items);
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        json_array_append_new(items, item);
        n++;

        ctx->after_id = 0;
        if (row[18] && parley_list_time_valid(row[18], len[18])) {
            ngx_memcpy(ctx->after_time, row[18], PARLEY_LIST_TIME_LEN);
            ctx->after_time[PARLEY_LIST_TIME_LEN] = '\0';
            ctx->after_id = ngx_http_parley_api_col_u64(row, 0);
        }
    }

    next = json_null();

    if (n == ctx->limit && row != NULL && ctx->after_id) {
        json_decref(next);
        next = ngx_http_parley_receipts_cursor_json(ar, ctx);
    }

    body = json_pack("{s:o,s:o}", "conversations", items, "next_cursor", next);
    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


static json_t *
ngx_http_parley_receipts_cursor_json(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_receipts_ctx_t *ctx)
{
    char  cur[PARLEY_LIST_CURSOR_LEN + 1];

    if (parley_list_cursor_encode(ctx->after_time, PARLEY_LIST_TIME_LEN,
                                  ctx->after_id, cur, sizeof(cur))
        != PARLEY_SYNC_OK)
    {
        return json_null();
    }

    return json_string(cur);
}


/*
 * Columns: 0 id, 1 kind, 2 access, 3 name, 4 description, 5 avatar_url,
 * 6 metadata, 7 created_by, 8 member_count, 9 last_seq, 10 last_message_at,
 * 11 created_at, 12 updated_at, 13 direct_key, 14 role, 15 delivered_seq,
 * 16 read_seq, 17 joined_seq, 18 activity, 19.. the last message: seq,
 * sender_id, type, text, created_at, edited_at, deleted_at.
 */

static json_t *
ngx_http_parley_receipts_conversation_row(ngx_http_parley_api_req_t *ar,
    MYSQL_ROW row, unsigned long *len)
{
    json_t    *c, *meta, *last;
    uint64_t   last_seq, read_seq, joined_seq;
    ngx_uint_t deleted;

    c = json_object();
    if (c == NULL) {
        return NULL;
    }

    last_seq = ngx_http_parley_api_col_u64(row, 9);
    read_seq = ngx_http_parley_api_col_u64(row, 16);
    joined_seq = ngx_http_parley_api_col_u64(row, 17);

    meta = ngx_http_parley_api_col_json(row, len, 6);
    if (json_is_null(meta)) {
        json_decref(meta);
        meta = json_object();
    }

    json_object_set_new(c, "id",
                        ngx_http_parley_api_id_json(
                            ngx_http_parley_api_col_u64(row, 0)));
    json_object_set_new(c, "type", ngx_http_parley_api_col_string(row, len, 1));
    json_object_set_new(c, "access",
                        ngx_http_parley_api_col_string(row, len, 2));
    json_object_set_new(c, "name", ngx_http_parley_api_col_string(row, len, 3));
    json_object_set_new(c, "description",
                        ngx_http_parley_api_col_string(row, len, 4));
    json_object_set_new(c, "avatar_url",
                        ngx_http_parley_api_col_string(row, len, 5));
    json_object_set_new(c, "metadata", meta);
    json_object_set_new(c, "created_by",
                        ngx_http_parley_api_col_string(row, len, 7));
    json_object_set_new(c, "member_count",
                        json_integer((json_int_t)
                                     ngx_http_parley_api_col_u64(row, 8)));
    json_object_set_new(c, "last_seq", json_integer((json_int_t) last_seq));
    json_object_set_new(c, "last_message_at",
                        ngx_http_parley_api_col_time(row, len, 10));
    json_object_set_new(c, "created_at",
                        ngx_http_parley_api_col_time(row, len, 11));
    json_object_set_new(c, "updated_at",
                        ngx_http_parley_api_col_time(row, len, 12));

    if (row[1] && ngx_strcmp(row[1], "direct") == 0) {
        json_object_set_new(c, "peer",
                            ngx_http_parley_receipts_peer(ar, row, len, 13));
    }

    json_object_set_new(c, "my_role",
                        ngx_http_parley_api_col_string(row, len, 14));
    json_object_set_new(c, "my_state", json_string("active"));
    json_object_set_new(c, "delivered_seq",
                        json_integer((json_int_t)
                                     ngx_http_parley_api_col_u64(row, 15)));
    json_object_set_new(c, "read_seq", json_integer((json_int_t) read_seq));
    json_object_set_new(c, "unread",
                        json_integer((json_int_t)
                            ngx_http_parley_receipts_unread_of(last_seq,
                                                               read_seq,
                                                               joined_seq)));

    if (row[19] == NULL) {
        json_object_set_new(c, "last_message", json_null());
        return c;
    }

    /* a deleted message shows as its tombstone: who, when, no content */
    deleted = (row[25] != NULL);

    last = json_object();
    if (last == NULL) {
        json_decref(c);
        return NULL;
    }

    json_object_set_new(last, "seq",
                        json_integer((json_int_t)
                                     ngx_http_parley_api_col_u64(row, 19)));
    json_object_set_new(last, "sender_id",
                        ngx_http_parley_api_col_string(row, len, 20));
    json_object_set_new(last, "type",
                        ngx_http_parley_api_col_string(row, len, 21));
    json_object_set_new(last, "text",
                        deleted ? json_null()
                                : ngx_http_parley_api_col_string(row, len, 22));
    json_object_set_new(last, "created_at",
                        ngx_http_parley_api_col_time(row, len, 23));
    json_object_set_new(last, "edited_at",
                        ngx_http_parley_api_col_time(row, len, 24));
    json_object_set_new(last, "deleted", json_boolean(deleted));

    json_object_set_new(c, "last_message", last);

    return c;
}


/* A direct conversation's other member: direct_key is "a\0b", sorted. */

static json_t *
ngx_http_parley_receipts_peer(ngx_http_parley_api_req_t *ar, MYSQL_ROW row,
    unsigned long *len, unsigned i)
{
    u_char  *p, *nul, *end;
    size_t   alen, blen;

    if (row[i] == NULL) {
        return json_null();
    }

    p = (u_char *) row[i];
    end = p + len[i];
    nul = ngx_strlchr(p, end, '\0');

    if (nul == NULL) {
        return json_null();
    }

    alen = nul - p;
    blen = end - nul - 1;

    if (alen == ar->user_id.len
        && ngx_strncmp(p, ar->user_id.data, alen) == 0)
    {
        return json_stringn((char *) nul + 1, blen);
    }

    return json_stringn((char *) p, alen);
}


/* ---- unread counts -------------------------------------------------- */

/*
 * The total over every conversation, and the conversations with unread
 * messages, most recently active first, at most limit of them.
 */

static void
ngx_http_parley_receipts_unread(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_receipts_ctx_t  *ctx;

    ctx = ngx_http_parley_receipts_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_receipts_unread_total,
        "SELECT COUNT(*), COALESCE(SUM(" NGX_PARLEY_UNREAD "), 0) "
        "FROM members m JOIN conversations c "
        "ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id "
        "WHERE m.tenant_id = %U AND m.user_id = %L AND m.state = 'active' "
        "AND c.deleted_at IS NULL "
        "AND c.last_seq > GREATEST(m.read_seq, m.joined_seq)",
        ar->tenant_id, &ar->user_id);
}


static void
ngx_http_parley_receipts_unread_total(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                        row;
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    ctx->count = row ? ngx_http_parley_api_col_u64(row, 0) : 0;
    ctx->total = row ? ngx_http_parley_api_col_u64(row, 1) : 0;

    if (ctx->count == 0) {
        ngx_http_parley_receipts_unread_listed(ar, NULL);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_receipts_unread_listed,
        "SELECT c.id, " NGX_PARLEY_UNREAD ", c.last_seq, m.read_seq "
        "FROM members m JOIN conversations c "
        "ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id "
        "WHERE m.tenant_id = %U AND m.user_id = %L AND m.state = 'active' "
        "AND c.deleted_at IS NULL "
        "AND c.last_seq > GREATEST(m.read_seq, m.joined_seq) "
        "ORDER BY " NGX_PARLEY_ACTIVITY " DESC, c.id DESC LIMIT %U",
        ar->tenant_id, &ar->user_id, (uint64_t) ctx->limit);
}


static void
ngx_http_parley_receipts_unread_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                          *items, *body;
    MYSQL_ROW                        row;
    ngx_http_parley_receipts_ctx_t  *ctx = ar->data;

    items = json_array();

    while (res && res->res && (row = mysql_fetch_row(res->res))) {
        json_array_append_new(items,
            json_pack("{s:o,s:I,s:I,s:I}",
                      "conversation_id",
                      ngx_http_parley_api_id_json(
                          ngx_http_parley_api_col_u64(row, 0)),
                      "unread",
                      (json_int_t) ngx_http_parley_api_col_u64(row, 1),
                      "last_seq",
                      (json_int_t) ngx_http_parley_api_col_u64(row, 2),
                      "read_seq",
                      (json_int_t) ngx_http_parley_api_col_u64(row, 3)));
    }

    body = json_pack("{s:I,s:I,s:o,s:b}",
                     "total", (json_int_t) ctx->total,
                     "conversation_count", (json_int_t) ctx->count,
                     "conversations", items,
                     "has_more", ctx->count > json_array_size(items));

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


static uint64_t
ngx_http_parley_receipts_unread_of(uint64_t last_seq, uint64_t read_seq,
    uint64_t joined_seq)
{
    uint64_t  seen;

    seen = ngx_max(read_seq, joined_seq);

    return last_seq > seen ? last_seq - seen : 0;
}
