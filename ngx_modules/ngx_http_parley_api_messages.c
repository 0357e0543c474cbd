
/*
 * Messages of a conversation: send, history, threads, edit, delete.
 *
 *   POST   /v1/conversations/{cid}/messages               send     (user)
 *   GET    /v1/conversations/{cid}/messages               history  (key, user)
 *   GET    /v1/conversations/{cid}/messages/{seq}         one      (key, user)
 *   PATCH  /v1/conversations/{cid}/messages/{seq}         edit     (key, user)
 *   DELETE /v1/conversations/{cid}/messages/{seq}         delete   (key, user)
 *   GET    /v1/conversations/{cid}/messages/{seq}/thread  replies  (key, user)
 *   GET    /v1/messages/{mid}                             by id    (key, user)
 *
 * A message is addressed by its conversation and its seq, the gap-free
 * sequence assigned in the send transaction under the conversation row's
 * lock (DESIGN §2.4); a rolled-back send gives its number back with the
 * rolled-back UPDATE.  Every write here takes that lock first (the send's
 * UPDATE, or the access row read FOR UPDATE), so writes to one
 * conversation serialize in one order and cannot deadlock each other.
 *
 * client_id is the sender's idempotency key (DESIGN §2.2): a retry answers
 * the stored message with 200, whatever the retry's content, and a
 * concurrent retry that loses the race on the unique key rolls back and
 * answers the winner's message.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_id.h"


#define NGX_PARLEY_MSG_COLUMNS                                               \
    "id, conversation_id, seq, client_id, sender_id, type, custom_type, "    \
    "text, metadata, attachment, mentions, parent_seq, reply_count, "        \
    "last_reply_at, reactions, created_at, edited_at, deleted_at"

#define NGX_PARLEY_MSG_MAX_MENTIONS    32
#define NGX_PARLEY_MSG_MAX_ATTACHMENT  4096

#define NGX_PARLEY_HISTORY_LATEST      0
#define NGX_PARLEY_HISTORY_BEFORE      1
#define NGX_PARLEY_HISTORY_AFTER       2
#define NGX_PARLEY_HISTORY_AROUND      3

#define NGX_PARLEY_CHANGE_EDIT         0
#define NGX_PARLEY_CHANGE_DELETE       1


typedef struct {
    uint64_t                    cid;
    uint64_t                    seq;         /* path {seq}, or the new one */
    uint64_t                    id;          /* the new message's id */
    uint64_t                    parent_seq;  /* 0: not a reply */
    uint64_t                    mid;         /* GET /v1/messages/{mid} */
    ngx_str_t                   client_id;
    ngx_str_t                   type;
    ngx_str_t                   custom_type;
    ngx_str_t                   text;
    ngx_uint_t                  change;      /* NGX_PARLEY_CHANGE_* */
    ngx_uint_t                  locked;      /* access read FOR UPDATE */
    ngx_uint_t                  after_dup;   /* lost the client_id race */

    ngx_uint_t                  mode;        /* NGX_PARLEY_HISTORY_* */
    uint64_t                    cursor;
    ngx_uint_t                  limit;
    ngx_uint_t                  threads;
    ngx_uint_t                  more_before;
    ngx_uint_t                  more_after;

    json_t                     *mentions;    /* as stored */
    json_t                     *message;     /* rendered */
    json_t                     *list;        /* a page */
    json_t                     *before;      /* around: rows before */

    /* an error answered once the transaction is rolled back */
    ngx_uint_t                  err_status;
    const char                 *err_code;
    const char                 *err_field;
    u_char                      err_msg[256];

    ngx_http_parley_access_t    acc;
    ngx_http_parley_event_t     ev;
} ngx_http_parley_msg_ctx_t;


static ngx_http_parley_msg_ctx_t *ngx_http_parley_msg_ctx(
    ngx_http_parley_api_req_t *ar, ngx_uint_t nseq);
static void ngx_http_parley_msg_cleanup(void *data);
static ngx_int_t ngx_http_parley_msg_member(ngx_http_parley_api_req_t *ar,
    ngx_uint_t admin_ok);
static ngx_int_t ngx_http_parley_msg_arg_seq(ngx_http_parley_api_req_t *ar,
    const char *name, uint64_t min, uint64_t *v);

static void ngx_http_parley_msg_send(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_msg_check_send(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_msg_check_attachment(
    ngx_http_parley_api_req_t *ar, json_t *att);
static ngx_int_t ngx_http_parley_msg_mime_type(const char *s, size_t len);
static void ngx_http_parley_msg_send_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_mentioned(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_send_advanced(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_numbered(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_member(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_insert(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_lost(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_restart(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_send_rendered(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static void ngx_http_parley_msg_history(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_history_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_page(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *cmp, uint64_t bound,
    const char *order, uint64_t n);
static void ngx_http_parley_msg_history_first(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_history_other(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_history_reply(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static ngx_uint_t ngx_http_parley_msg_collect(json_t *list,
    ngx_parley_db_result_t *res, ngx_uint_t keep);
static void ngx_http_parley_msg_around(ngx_http_parley_msg_ctx_t *ctx);

static void ngx_http_parley_msg_get(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_get_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_get_by_id(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_by_id_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_by_id_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static void ngx_http_parley_msg_thread(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_thread_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_thread_parent(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_thread_replies(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static void ngx_http_parley_msg_edit(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_delete(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_change_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_msg_change_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_change_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_change_erase(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_change_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_change_rendered(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);

static void ngx_http_parley_msg_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_msg_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static json_t *ngx_http_parley_msg_row(MYSQL_ROW row, unsigned long *len);


ngx_http_parley_api_route_t  ngx_http_parley_api_messages_routes[] = {

    { NGX_HTTP_POST, "/v1/conversations/{cid}/messages",
      NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_send, "sendMessage", 1 },

    { NGX_HTTP_GET, "/v1/conversations/{cid}/messages",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_history, "listMessages", 0 },

    { NGX_HTTP_GET, "/v1/conversations/{cid}/messages/{seq}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_get, "getMessage", 0 },

    { NGX_HTTP_PATCH, "/v1/conversations/{cid}/messages/{seq}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_edit, "editMessage", 1 },

    { NGX_HTTP_DELETE, "/v1/conversations/{cid}/messages/{seq}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_delete, "deleteMessage", 0 },

    { NGX_HTTP_GET, "/v1/conversations/{cid}/messages/{seq}/thread",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_thread, "listThread", 0 },

    { NGX_HTTP_GET, "/v1/messages/{mid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_msg_get_by_id, "getMessageById", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static const ngx_http_parley_field_t  ngx_http_parley_msg_send_fields[] = {
    { "client_id", NGX_PARLEY_FIELD_STRING, 1, 64, 1, 0, NULL },
    { "type", NGX_PARLEY_FIELD_ENUM, 0, 16, 0, 0, "text|custom|media" },
    { "text", NGX_PARLEY_FIELD_STRING, 1, 0, 0, 0, NULL },
    { "custom_type", NGX_PARLEY_FIELD_STRING, 1, 64, 0, 0, NULL },
    { "metadata", NGX_PARLEY_FIELD_OBJECT, 0, 0, 0, 1, NULL },
    { "attachment", NGX_PARLEY_FIELD_OBJECT, 0,
      NGX_PARLEY_MSG_MAX_ATTACHMENT, 0, 0, NULL },
    { "parent_seq", NGX_PARLEY_FIELD_INT, 1, 0, 0, 1, NULL },
    { "mentions", NGX_PARLEY_FIELD_ID_ARRAY, 0, NGX_PARLEY_MSG_MAX_MENTIONS,
      0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_msg_edit_fields[] = {
    { "text", NGX_PARLEY_FIELD_STRING, 1, 0, 0, 0, NULL },
    { "metadata", NGX_PARLEY_FIELD_OBJECT, 0, 0, 0, 1, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


/* ---- common -------------------------------------------------------- */

/*
 * The endpoint state: the {cid} parameter, and {seq} when nseq (its
 * position).  Answers 400 itself on a bad parameter.
 */

static ngx_http_parley_msg_ctx_t *
ngx_http_parley_msg_ctx(ngx_http_parley_api_req_t *ar, ngx_uint_t nseq)
{
    ngx_str_t                   s;
    ngx_pool_cleanup_t         *cln;
    ngx_http_parley_msg_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_msg_ctx_t));
    cln = ngx_pool_cleanup_add(ar->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    cln->handler = ngx_http_parley_msg_cleanup;
    cln->data = ctx;
    ar->data = ctx;

    if (ngx_http_parley_api_conversation_id(ar, 0, &ctx->cid) != NGX_OK) {
        return NULL;
    }

    if (nseq) {
        s = ngx_http_parley_api_param(ar, nseq);

        if (parley_id_parse((const char *) s.data, s.len, &ctx->seq) != 0
            || ctx->seq == 0)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "seq",
                                     "\"seq\" is not a message sequence "
                                     "number");
            return NULL;
        }
    }

    return ctx;
}


/* JSON the endpoint still holds when the request goes, on any path */

static void
ngx_http_parley_msg_cleanup(void *data)
{
    ngx_http_parley_msg_ctx_t *ctx = data;

    if (ctx->mentions) {
        json_decref(ctx->mentions);
        ctx->mentions = NULL;
    }

    if (ctx->message) {
        json_decref(ctx->message);
        ctx->message = NULL;
    }

    if (ctx->list) {
        json_decref(ctx->list);
        ctx->list = NULL;
    }

    if (ctx->before) {
        json_decref(ctx->before);
        ctx->before = NULL;
    }
}


/*
 * The caller may read (admin_ok: the tenant's API key too) the loaded
 * conversation: NGX_OK, or NGX_ERROR once refused.  Past members are
 * refused: history is for active members (docs/api/messages.md).
 */

static ngx_int_t
ngx_http_parley_msg_member(ngx_http_parley_api_req_t *ar, ngx_uint_t admin_ok)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (admin_ok && ctx->acc.tenant_admin) {
        return NGX_OK;
    }

    if (ctx->acc.state == NGX_PARLEY_STATE_BANNED) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "banned", NULL,
                                  "you are banned from conversation %uL",
                                  ctx->cid);
        return NGX_ERROR;
    }

    if (!ngx_http_parley_api_is_member(&ctx->acc)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "not_member", NULL,
                                  "you are not a member of conversation %uL",
                                  ctx->cid);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* An unsigned query argument >= min: NGX_OK, NGX_DECLINED when absent. */

static ngx_int_t
ngx_http_parley_msg_arg_seq(ngx_http_parley_api_req_t *ar, const char *name,
    uint64_t min, uint64_t *v)
{
    ngx_str_t  s;

    if (ngx_http_parley_api_arg(ar, name, &s) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (parley_id_parse((const char *) s.data, s.len, v) != 0 || *v < min) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 name, "\"%s\" must be a sequence number of "
                                 "at least %uL", name, min);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* ---- send ---------------------------------------------------------- */

static void
ngx_http_parley_msg_send(ngx_http_parley_api_req_t *ar)
{
    json_t                     *v;
    ngx_http_parley_msg_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_msg_send_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_msg_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_msg_check_send(ar) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_str(ar->body, "client_id", &ctx->client_id);
    ngx_http_parley_api_str(ar->body, "text", &ctx->text);

    if (ngx_http_parley_api_str(ar->body, "type", &ctx->type) == NULL) {
        ngx_str_set(&ctx->type, "text");
    }

    if (ngx_http_parley_api_str(ar->body, "custom_type", &ctx->custom_type)
        == NULL)
    {
        ngx_str_set(&ctx->custom_type, "");
    }

    v = json_object_get(ar->body, "parent_seq");
    ctx->parent_seq = json_is_integer(v) ? (uint64_t) json_integer_value(v)
                                         : 0;

    /*
     * A retry usually finds its message here, before any lock is taken.
     * It answers the stored message even if the sender has left since:
     * the send did succeed.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_found,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND sender_id = %L AND client_id = %L",
        ar->tenant_id, &ar->user_id, &ctx->client_id);
}


/* what the field table cannot say: which fields go with which type */

static ngx_int_t
ngx_http_parley_msg_check_send(ngx_http_parley_api_req_t *ar)
{
    json_t      *att;
    ngx_str_t    type;
    const char  *t;

    t = ngx_http_parley_api_str(ar->body, "type", &type);
    if (t == NULL) {
        t = "text";
    }

    att = json_object_get(ar->body, "attachment");

    if (ngx_strcmp(t, "text") == 0
        && json_object_get(ar->body, "text") == NULL)
    {
        ngx_http_parley_api_fail(ar, 422, "missing_field", "text",
                                 "a text message needs \"text\"");
        return NGX_ERROR;
    }

    if (ngx_strcmp(t, "custom") == 0) {
        if (json_object_get(ar->body, "custom_type") == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", "custom_type",
                                     "a custom message needs "
                                     "\"custom_type\"");
            return NGX_ERROR;
        }

    } else if (json_object_get(ar->body, "custom_type")) {
        ngx_http_parley_api_fail(ar, 422, "not_allowed", "custom_type",
                                 "\"custom_type\" goes with type custom "
                                 "only");
        return NGX_ERROR;
    }

    if (ngx_strcmp(t, "media") == 0) {
        if (att == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", "attachment",
                                     "a media message needs \"attachment\"");
            return NGX_ERROR;
        }

        return ngx_http_parley_msg_check_attachment(ar, att);
    }

    if (att) {
        ngx_http_parley_api_fail(ar, 422, "not_allowed", "attachment",
                                 "\"attachment\" goes with type media only");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * {"name","size","mime_type"} and exactly one of "url" (http or https) and
 * "object_key"; nothing else.
 */

static ngx_int_t
ngx_http_parley_msg_check_attachment(ngx_http_parley_api_req_t *ar,
    json_t *att)
{
    size_t        len, max, i;
    json_t       *v;
    ngx_uint_t    n;
    const char   *key, *s;

    static const char  *names[] = {
        "name", "size", "mime_type", "url", "object_key", NULL
    };

    static const char  *fields[] = {
        "attachment.name", "attachment.size", "attachment.mime_type",
        "attachment.url", "attachment.object_key"
    };

    static const size_t  maxes[] = { 255, 0, 255, 2048, 1024 };

    json_object_foreach(att, key, v) {
        for (n = 0; names[n]; n++) {
            if (ngx_strcmp(names[n], key) == 0) {
                break;
            }
        }

        if (names[n] == NULL) {
            ngx_http_parley_api_fail(ar, 422, "unknown_field", "attachment",
                                     "unknown field \"attachment.%s\"", key);
            return NGX_ERROR;
        }

        if (n == 1) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                ngx_http_parley_api_fail(ar, 422,
                                         json_is_integer(v) ? "out_of_range"
                                                            : "invalid_type",
                                         fields[n], "\"%s\" must be an "
                                         "integer of at least 0", fields[n]);
                return NGX_ERROR;
            }

            continue;
        }

        if (!json_is_string(v)) {
            ngx_http_parley_api_fail(ar, 422, "invalid_type", fields[n],
                                     "\"%s\" must be a string", fields[n]);
            return NGX_ERROR;
        }

        s = json_string_value(v);
        len = json_string_length(v);
        max = maxes[n];

        if (len == 0 || len > max) {
            ngx_http_parley_api_fail(ar, 422, "invalid_length", fields[n],
                                     "\"%s\" must be 1 to %uz bytes long",
                                     fields[n], max);
            return NGX_ERROR;
        }

        for (i = 0; i < len; i++) {
            if ((u_char) s[i] < 0x20 || s[i] == 0x7f) {
                ngx_http_parley_api_fail(ar, 422, "invalid_value", fields[n],
                                         "\"%s\" holds a control character",
                                         fields[n]);
                return NGX_ERROR;
            }
        }

        if (n == 2 && ngx_http_parley_msg_mime_type(s, len) != NGX_OK) {
            ngx_http_parley_api_fail(ar, 422, "invalid_value", fields[n],
                                     "\"%s\" must look like type/subtype",
                                     fields[n]);
            return NGX_ERROR;
        }

        if (n == 3
            && !(len > 8 && ngx_strncasecmp((u_char *) s,
                                            (u_char *) "https://", 8) == 0)
            && !(len > 7 && ngx_strncasecmp((u_char *) s,
                                            (u_char *) "http://", 7) == 0))
        {
            ngx_http_parley_api_fail(ar, 422, "invalid_value", fields[n],
                                     "\"%s\" must be an http or https URL",
                                     fields[n]);
            return NGX_ERROR;
        }
    }

    for (n = 0; n < 3; n++) {
        if (json_object_get(att, names[n]) == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", fields[n],
                                     "field \"%s\" is required", fields[n]);
            return NGX_ERROR;
        }
    }

    if ((json_object_get(att, "url") == NULL)
        == (json_object_get(att, "object_key") == NULL))
    {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "attachment",
                                 "an attachment has exactly one of \"url\" "
                                 "and \"object_key\"");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* RFC 6838 restricted names: type "/" subtype */

static ngx_int_t
ngx_http_parley_msg_mime_type(const char *s, size_t len)
{
    u_char      c;
    size_t      i, part;
    ngx_uint_t  slash;

    slash = 0;
    part = 0;

    for (i = 0; i < len; i++) {
        c = (u_char) s[i];

        if (c == '/') {
            if (slash || part == 0) {
                return NGX_ERROR;
            }
            slash = 1;
            part = 0;
            continue;
        }

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9'))
        {
            part++;
            continue;
        }

        if (part == 0 || ngx_strchr("!#$&^_.+-", c) == NULL) {
            return NGX_ERROR;
        }

        part++;
    }

    return (slash && part) ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_parley_msg_send_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row) {
        if (ngx_http_parley_api_col_u64(row, 1) != ctx->cid) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "client_id_in_use",
                                     "client_id", "client_id was used for "
                                     "a message in another conversation");
            return;
        }

        /* the stored message, whatever this retry holds */
        ngx_http_parley_api_reply(ar, NGX_HTTP_OK,
                                  ngx_http_parley_msg_row(row,
                                               mysql_fetch_lengths(res->res)));
        return;
    }

    if (ctx->after_dup) {
        /* the unique key said it exists; it must be visible by now */
        ngx_http_parley_api_fail(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "unavailable", NULL, "the stored message "
                                 "could not be read back, retry");
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_send_access);
}


static void
ngx_http_parley_msg_send_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_msg_member(ar, 0) != NGX_OK) {
        return;
    }

    /*
     * One read for the rest: the sender's account (an API key acting for
     * a user skips the token checks), a block between the two users of a
     * direct conversation (either way), and the parent of a reply:
     * 'p'/'r' top level or reply, 'l'/'d' live or deleted.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_checked,
        "SELECT (SELECT status FROM users WHERE tenant_id = %U "
        "AND user_id = %L), "
        "(%U AND EXISTS (SELECT 1 FROM user_blocks b JOIN members m "
        "ON m.tenant_id = b.tenant_id AND m.conversation_id = %U "
        "AND m.user_id = IF(b.user_id = %L, b.blocked_id, b.user_id) "
        "WHERE b.tenant_id = %U AND (b.user_id = %L OR b.blocked_id = %L))), "
        "(SELECT CONCAT(IF(parent_seq IS NULL, 'p', 'r'), "
        "IF(deleted_at IS NULL, 'l', 'd')) FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U)",
        ar->tenant_id, &ar->user_id,
        (uint64_t) ctx->acc.direct, ctx->cid, &ar->user_id, ar->tenant_id,
        &ar->user_id, &ar->user_id,
        ar->tenant_id, ctx->cid, ctx->parent_seq);
}


static void
ngx_http_parley_msg_send_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                      i, j, n;
    json_t                     *want, *e;
    MYSQL_ROW                   row;
    ngx_str_t                   m[NGX_PARLEY_MSG_MAX_MENTIONS];
    u_char                     *fmt, *p;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "no check result");
        return;
    }

    if (row[0] == NULL || ngx_strcmp(row[0], "active") != 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "user_inactive",
                                 NULL, "user \"%V\" is deactivated or does "
                                 "not exist", &ar->user_id);
        return;
    }

    if (row[1] && row[1][0] == '1') {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "blocked", NULL,
                                 "one of the two users of this direct "
                                 "conversation blocks the other");
        return;
    }

    if (ctx->parent_seq) {
        if (row[2] == NULL) {
            ngx_http_parley_api_fail(ar, 422, "parent_not_found",
                                     "parent_seq", "no message %uL in this "
                                     "conversation", ctx->parent_seq);
            return;
        }

        if (row[2][0] == 'r') {
            ngx_http_parley_api_fail(ar, 422, "parent_is_reply",
                                     "parent_seq", "message %uL is itself a "
                                     "reply: threads are one level deep",
                                     ctx->parent_seq);
            return;
        }

        if (row[2][1] == 'd') {
            ngx_http_parley_api_fail(ar, 422, "parent_deleted", "parent_seq",
                                     "message %uL is deleted",
                                     ctx->parent_seq);
            return;
        }
    }

    /* mentions: each id once, in the order given, members only */
    want = json_object_get(ar->body, "mentions");
    n = 0;

    json_array_foreach(want, i, e) {
        for (j = 0; j < n; j++) {
            if (m[j].len == json_string_length(e)
                && ngx_memcmp(m[j].data, json_string_value(e), m[j].len) == 0)
            {
                break;
            }
        }

        if (j == n) {
            m[n].data = (u_char *) json_string_value(e);
            m[n].len = json_string_length(e);
            n++;
        }
    }

    ctx->mentions = json_array();
    if (ctx->mentions == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    if (n == 0) {
        ngx_http_parley_api_begin(ar, ngx_http_parley_msg_send_txn);
        return;
    }

    for (i = n; i < NGX_PARLEY_MSG_MAX_MENTIONS; i++) {
        ngx_str_set(&m[i], "");
    }

    /* n literals; the arguments beyond them are passed and not used */
    fmt = ngx_pnalloc(ar->pool, 256 + 3 * NGX_PARLEY_MSG_MAX_MENTIONS);
    if (fmt == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    p = ngx_cpystrn(fmt, (u_char *) "SELECT user_id FROM members "
                    "WHERE tenant_id = %U AND conversation_id = %U "
                    "AND state = 'active' AND user_id IN (", 256);

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, i ? ",%L" : "%L", i ? 3 : 2);
    }

    *p++ = ')';
    *p = '\0';

#define M4(i)  &m[i], &m[i + 1], &m[i + 2], &m[i + 3]

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_mentioned,
                            (const char *) fmt, ar->tenant_id, ctx->cid,
                            M4(0), M4(4), M4(8), M4(12), M4(16), M4(20),
                            M4(24), M4(28));

#undef M4
}


static void
ngx_http_parley_msg_send_mentioned(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                      i, len;
    json_t                     *want, *e;
    MYSQL_ROW                   row;
    ngx_uint_t                  found;
    unsigned long              *lens;
    ngx_str_t                   member[NGX_PARLEY_MSG_MAX_MENTIONS];
    ngx_uint_t                  j, nmember;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    nmember = 0;

    while (res->res && nmember < NGX_PARLEY_MSG_MAX_MENTIONS
           && (row = mysql_fetch_row(res->res)))
    {
        lens = mysql_fetch_lengths(res->res);
        member[nmember].data = ngx_pnalloc(ar->pool, lens[0] + 1);
        if (member[nmember].data == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        ngx_memcpy(member[nmember].data, row[0], lens[0]);
        member[nmember].len = lens[0];
        nmember++;
    }

    /* the request's order, unknown ids and non-members dropped */
    want = json_object_get(ar->body, "mentions");

    json_array_foreach(want, i, e) {
        len = json_string_length(e);
        found = 0;

        for (j = 0; j < nmember; j++) {
            if (member[j].len == len
                && ngx_memcmp(member[j].data, json_string_value(e), len) == 0)
            {
                found = 1;
                member[j].len = (size_t) -1;   /* once */
                break;
            }
        }

        if (found) {
            json_array_append(ctx->mentions, e);
        }
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_msg_send_txn);
}


/* the transaction: number, count, store, read back, log; from a clean start */

static void
ngx_http_parley_msg_send_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ctx->message) {
        json_decref(ctx->message);
        ctx->message = NULL;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_advanced,
        "UPDATE conversations SET last_seq = last_seq + 1, "
        "event_seq = event_seq + 1, last_message_at = UTC_TIMESTAMP(3), "
        "updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND id = %U AND deleted_at IS NULL",
        ar->tenant_id, ctx->cid);
}


static void
ngx_http_parley_msg_send_advanced(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                  "conversation_not_found", "cid",
                                  "no conversation %uL", ctx->cid);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_numbered,
        "SELECT last_seq, event_seq FROM conversations "
        "WHERE tenant_id = %U AND id = %U",
        ar->tenant_id, ctx->cid);
}


static void
ngx_http_parley_msg_send_numbered(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                  "conversation_not_found", "cid",
                                  "no conversation %uL", ctx->cid);
        return;
    }

    ctx->seq = ngx_http_parley_api_col_u64(row, 0);
    ngx_memzero(&ctx->ev, sizeof(ngx_http_parley_event_t));
    ctx->ev.event_seq = ngx_http_parley_api_col_u64(row, 1);

    /*
     * The sender has read their own message.  The state condition also
     * re-checks membership under the conversation's lock: a kick that
     * committed after the check above wins.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_member,
        "UPDATE members SET read_seq = GREATEST(read_seq, %U), "
        "delivered_seq = GREATEST(delivered_seq, %U), "
        "last_activity_at = UTC_TIMESTAMP(3), updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L "
        "AND state = 'active'",
        ctx->seq, ctx->seq, ar->tenant_id, ctx->cid, &ar->user_id);
}


static void
ngx_http_parley_msg_send_member(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "not_member", NULL,
                                  "you are not a member of conversation %uL",
                                  ctx->cid);
        return;
    }

    if (ctx->parent_seq == 0) {
        ngx_http_parley_msg_send_insert(ar, res);
        return;
    }

    /* the parent is checked again here, under the lock */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_insert,
        "UPDATE messages SET reply_count = reply_count + 1, "
        "last_reply_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U "
        "AND parent_seq IS NULL AND deleted_at IS NULL",
        ar->tenant_id, ctx->cid, ctx->parent_seq);
}


static void
ngx_http_parley_msg_send_insert(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ctx->parent_seq && res->affected_rows == 0) {
        ngx_http_parley_api_refuse(ar, 422, "parent_deleted", "parent_seq",
                                  "message %uL is deleted", ctx->parent_seq);
        return;
    }

    if (ngx_http_parley_api_new_id(ar, &ctx->id) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql_any(ar, ngx_http_parley_msg_send_inserted,
        "INSERT INTO messages (tenant_id, conversation_id, seq, id, "
        "client_id, sender_id, type, custom_type, text, metadata, "
        "attachment, mentions, parent_seq, reply_count, reactions, "
        "created_at) VALUES (%U, %U, %U, %U, %L, %L, %L, %L, %N, %J, %J, %J, "
        "%S, 0, NULL, UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, ctx->seq, ctx->id, &ctx->client_id,
        &ar->user_id, &ctx->type, &ctx->custom_type, &ctx->text,
        json_object_get(ar->body, "metadata"),
        json_object_get(ar->body, "attachment"), ctx->mentions,
        ctx->parent_seq ? ngx_http_parley_api_u64_text(ar, ctx->parent_seq)
                        : "NULL");
}


static void
ngx_http_parley_msg_send_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (res->status == NGX_OK) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_rendered,
            "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
            "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
            ar->tenant_id, ctx->cid, ctx->seq);
        return;
    }

    if (res->errcode == 1062) {
        /*
         * A concurrent retry of the same client_id committed first: roll
         * back (the seq goes back with the UPDATE) and answer its message.
         */
        ctx->after_dup = 1;
        ngx_http_parley_api_rollback(ar, ngx_http_parley_msg_send_lost);
        return;
    }

    switch (res->errcode) {
    case 1205:  /* the framework's conflict list (_api_module.c) */
    case 1213:
    case 8002:
    case 8022:
    case 9007:
        if (ar->txn_attempts < 4) {
            ngx_http_parley_api_rollback(ar, ngx_http_parley_msg_send_restart);
            return;
        }
        break;
    }

    ar->sql_errors_ok = 0;
    ngx_http_parley_api_fail(ar, res->retryable
                                 ? NGX_HTTP_SERVICE_UNAVAILABLE
                                 : NGX_HTTP_INTERNAL_SERVER_ERROR,
                             res->retryable ? "unavailable" : "internal",
                             NULL, "the message could not be stored: %s",
                             res->retryable ? res->error : "server error");
}


static void
ngx_http_parley_msg_send_lost(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_send_found,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND sender_id = %L AND client_id = %L",
        ar->tenant_id, &ar->user_id, &ctx->client_id);
}


static void
ngx_http_parley_msg_send_restart(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_begin(ar, ngx_http_parley_msg_send_txn);
}


static void
ngx_http_parley_msg_send_rendered(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "the message vanished");
        return;
    }

    ctx->message = ngx_http_parley_msg_row(row, mysql_fetch_lengths(res->res));
    if (ctx->message == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    /* event_seq was advanced by the numbering UPDATE */
    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.type = "message.new";
    ctx->ev.message_seq = ctx->seq;
    ctx->ev.payload = json_incref(ctx->message);

    ngx_http_parley_api_event_at(ar, ngx_http_parley_msg_logged, &ctx->ev);
}


/* ---- the common tail of writes: commit, answer ---------------------- */

static void
ngx_http_parley_msg_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_msg_committed);
}


static void
ngx_http_parley_msg_committed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                     *msg;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ar->route->method == NGX_HTTP_DELETE) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    msg = ctx->message;
    ctx->message = NULL;

    ngx_http_parley_api_reply(ar, ar->route->method == NGX_HTTP_POST
                                  ? NGX_HTTP_CREATED : NGX_HTTP_OK, msg);
}


/* ---- history ------------------------------------------------------- */

/*
 * One page of the conversation, tombstones included:
 *   (none)      the latest messages, newest first
 *   before=N    seq < N, newest first
 *   after=N     seq > N, oldest first
 *   around=N    about half before N, the rest from N on, oldest first
 * Thread replies are in it (parent_seq set) unless threads=false.
 */

static void
ngx_http_parley_msg_history(ngx_http_parley_api_req_t *ar)
{
    ngx_int_t                   rc;
    ngx_str_t                   v;
    ngx_uint_t                  i, given;
    ngx_http_parley_msg_ctx_t  *ctx;

    static const char  *names[] = { "before", "after", "around" };
    static const uint64_t  mins[] = { 1, 0, 1 };

    ctx = ngx_http_parley_msg_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    given = 0;
    ctx->mode = NGX_PARLEY_HISTORY_LATEST;

    for (i = 0; i < 3; i++) {
        rc = ngx_http_parley_msg_arg_seq(ar, names[i], mins[i], &ctx->cursor);

        if (rc == NGX_ERROR) {
            return;
        }

        if (rc == NGX_OK) {
            if (given++) {
                ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_parameter", names[i],
                                         "give at most one of before, after "
                                         "and around");
                return;
            }

            ctx->mode = NGX_PARLEY_HISTORY_BEFORE + i;
        }
    }

    ctx->threads = 1;

    if (ngx_http_parley_api_arg(ar, "threads", &v) == NGX_OK) {
        if (v.len == 5 && ngx_strncmp(v.data, "false", 5) == 0) {
            ctx->threads = 0;

        } else if (!(v.len == 4 && ngx_strncmp(v.data, "true", 4) == 0)) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "threads",
                                     "threads must be true or false");
            return;
        }
    }

    ctx->list = json_array();
    if (ctx->list == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_history_access);
}


static void
ngx_http_parley_msg_history_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_msg_member(ar, 1) != NGX_OK) {
        return;
    }

    switch (ctx->mode) {

    case NGX_PARLEY_HISTORY_LATEST:
        ngx_http_parley_msg_page(ar, ngx_http_parley_msg_history_first, ">", 0,
                                 "DESC", ctx->limit + 1);
        return;

    case NGX_PARLEY_HISTORY_BEFORE:
        ngx_http_parley_msg_page(ar, ngx_http_parley_msg_history_first, "<",
                                 ctx->cursor, "DESC", ctx->limit + 1);
        return;

    case NGX_PARLEY_HISTORY_AFTER:
        ngx_http_parley_msg_page(ar, ngx_http_parley_msg_history_first, ">",
                                 ctx->cursor, "ASC", ctx->limit + 1);
        return;

    default: /* NGX_PARLEY_HISTORY_AROUND: a full page each way, then trim */
        ngx_http_parley_msg_page(ar, ngx_http_parley_msg_history_first, "<",
                                 ctx->cursor, "DESC", ctx->limit + 1);
        return;
    }
}


/* cmp and order are trusted fragments of this file */

static void
ngx_http_parley_msg_page(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *cmp, uint64_t bound,
    const char *order, uint64_t n)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, next,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq %S %U%S "
        "ORDER BY seq %S LIMIT %U",
        ar->tenant_id, ctx->cid, cmp, bound,
        ctx->threads ? "" : " AND parent_seq IS NULL", order, n);
}


static void
ngx_http_parley_msg_history_first(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    const char                 *cmp;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    switch (ctx->mode) {

    case NGX_PARLEY_HISTORY_LATEST:
        ctx->more_before = ngx_http_parley_msg_collect(ctx->list, res,
                                                       ctx->limit);
        ngx_http_parley_msg_history_reply(ar, NULL);
        return;

    case NGX_PARLEY_HISTORY_AROUND:
        ctx->before = json_array();
        if (ctx->before == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        (void) ngx_http_parley_msg_collect(ctx->before, res, ctx->limit + 1);
        ngx_http_parley_msg_page(ar, ngx_http_parley_msg_history_other, ">=",
                                 ctx->cursor, "ASC", ctx->limit + 1);
        return;

    case NGX_PARLEY_HISTORY_BEFORE:
        ctx->more_before = ngx_http_parley_msg_collect(ctx->list, res,
                                                       ctx->limit);
        cmp = ">=";
        break;

    default: /* NGX_PARLEY_HISTORY_AFTER */
        ctx->more_after = ngx_http_parley_msg_collect(ctx->list, res,
                                                      ctx->limit);
        cmp = "<=";
        break;
    }

    /* is there anything on the other side of the cursor */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_history_other,
        "SELECT EXISTS (SELECT 1 FROM messages WHERE tenant_id = %U "
        "AND conversation_id = %U AND seq %S %U%S)",
        ar->tenant_id, ctx->cid, cmp, ctx->cursor,
        ctx->threads ? "" : " AND parent_seq IS NULL");
}


static void
ngx_http_parley_msg_history_other(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_uint_t                  more;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ctx->mode == NGX_PARLEY_HISTORY_AROUND) {
        (void) ngx_http_parley_msg_collect(ctx->list, res, ctx->limit + 1);
        ngx_http_parley_msg_around(ctx);
        ngx_http_parley_msg_history_reply(ar, res);
        return;
    }

    row = res->res ? mysql_fetch_row(res->res) : NULL;
    more = (row && row[0] && row[0][0] == '1');

    if (ctx->mode == NGX_PARLEY_HISTORY_BEFORE) {
        ctx->more_after = more;

    } else {
        ctx->more_before = more;
    }

    ngx_http_parley_msg_history_reply(ar, res);
}


static void
ngx_http_parley_msg_history_reply(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                     *body;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    body = json_pack("{s:o,s:b,s:b}", "messages", ctx->list,
                     "has_more_before", (int) ctx->more_before,
                     "has_more_after", (int) ctx->more_after);
    ctx->list = NULL;

    if (body == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* Appends at most keep rows to list; says whether there were more. */

static ngx_uint_t
ngx_http_parley_msg_collect(json_t *list, ngx_parley_db_result_t *res,
    ngx_uint_t keep)
{
    MYSQL_ROW   row;
    ngx_uint_t  n;

    n = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        if (n == keep) {
            return 1;
        }

        json_array_append_new(list,
                              ngx_http_parley_msg_row(row,
                                               mysql_fetch_lengths(res->res)));
        n++;
    }

    return 0;
}


/*
 * around=N: ctx->before holds up to limit + 1 messages before N (newest
 * first), ctx->list up to limit + 1 from N on.  The page takes half of the
 * limit from before N and the rest from N on, and when one side runs
 * short the other fills the page; it ends up oldest first in ctx->list.
 */

static void
ngx_http_parley_msg_around(ngx_http_parley_msg_ctx_t *ctx)
{
    size_t   nb, na, b, a, i;
    json_t  *page;

    nb = json_array_size(ctx->before);
    na = json_array_size(ctx->list);

    b = ngx_max(ctx->limit / 2, ctx->limit - ngx_min(na, ctx->limit));
    b = ngx_min(b, ngx_min(nb, ctx->limit));
    a = ngx_min(na, ctx->limit - b);

    ctx->more_before = (nb > b);
    ctx->more_after = (na > a);

    page = json_array();
    if (page == NULL) {
        return;
    }

    for (i = b; i > 0; i--) {
        json_array_append(page, json_array_get(ctx->before, i - 1));
    }

    for (i = 0; i < a; i++) {
        json_array_append(page, json_array_get(ctx->list, i));
    }

    json_decref(ctx->list);
    ctx->list = page;
}


/* ---- one message --------------------------------------------------- */

static void
ngx_http_parley_msg_get(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_msg_ctx_t  *ctx;

    ctx = ngx_http_parley_msg_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_get_access);
}


static void
ngx_http_parley_msg_get_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_msg_member(ar, 1) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_render,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_msg_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "message_not_found",
                                 "seq", "no message %uL in conversation %uL",
                                 ctx->seq, ctx->cid);
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK,
                              ngx_http_parley_msg_row(row,
                                               mysql_fetch_lengths(res->res)));
}


/* by its id: the message first, then the caller's access to its home */

static void
ngx_http_parley_msg_get_by_id(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                   s;
    ngx_pool_cleanup_t         *cln;
    ngx_http_parley_msg_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_msg_ctx_t));
    cln = ngx_pool_cleanup_add(ar->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    cln->handler = ngx_http_parley_msg_cleanup;
    cln->data = ctx;
    ar->data = ctx;

    s = ngx_http_parley_api_param(ar, 0);

    if (parley_id_parse((const char *) s.data, s.len, &ctx->mid) != 0
        || ctx->mid == 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_parameter",
                                 "mid", "\"mid\" is not a message id");
        return;
    }

    /* a message of a deleted conversation is gone with it */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_by_id_row,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND id = %U AND EXISTS (SELECT 1 FROM "
        "conversations c WHERE c.tenant_id = messages.tenant_id "
        "AND c.id = messages.conversation_id AND c.deleted_at IS NULL)",
        ar->tenant_id, ctx->mid);
}


static void
ngx_http_parley_msg_by_id_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "message_not_found",
                                 "mid", "no message %uL", ctx->mid);
        return;
    }

    ctx->cid = ngx_http_parley_api_col_u64(row, 1);
    ctx->message = ngx_http_parley_msg_row(row, mysql_fetch_lengths(res->res));

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_by_id_access);
}


static void
ngx_http_parley_msg_by_id_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                     *msg;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_msg_member(ar, 1) != NGX_OK) {
        return;
    }

    msg = ctx->message;
    ctx->message = NULL;

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, msg);
}


/* ---- threads ------------------------------------------------------- */

static void
ngx_http_parley_msg_thread(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_msg_ctx_t  *ctx;

    ctx = ngx_http_parley_msg_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_msg_arg_seq(ar, "after", 0, &ctx->cursor)
        == NGX_ERROR)
    {
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_thread_access);
}


static void
ngx_http_parley_msg_thread_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_msg_member(ar, 1) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_thread_parent,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_msg_thread_parent(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "message_not_found",
                                 "seq", "no message %uL in conversation %uL",
                                 ctx->seq, ctx->cid);
        return;
    }

    ctx->message = ngx_http_parley_msg_row(row, mysql_fetch_lengths(res->res));
    ctx->list = json_array();

    if (ctx->message == NULL || ctx->list == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_thread_replies,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND parent_seq = %U "
        "AND seq > %U ORDER BY seq LIMIT %U",
        ar->tenant_id, ctx->cid, ctx->seq, ctx->cursor,
        (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_msg_thread_replies(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                     *body;
    ngx_uint_t                  more;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    more = ngx_http_parley_msg_collect(ctx->list, res, ctx->limit);

    body = json_pack("{s:o,s:o,s:b}", "parent", ctx->message,
                     "messages", ctx->list, "has_more", (int) more);
    ctx->message = NULL;
    ctx->list = NULL;

    if (body == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- edit, delete -------------------------------------------------- */

/*
 * Both check the caller and the message twice: first without a lock, so
 * that refusals cost no transaction; then inside it, with the conversation
 * row locked and the message read FOR UPDATE, so that nothing changed in
 * between (change_access and change_row run in both phases).
 */

static void
ngx_http_parley_msg_edit(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_msg_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_msg_edit_fields)
        != NGX_OK)
    {
        return;
    }

    if (json_object_size(ar->body) == 0) {
        ngx_http_parley_api_fail(ar, 422, "missing_field", "text",
                                 "give \"text\", \"metadata\" or both");
        return;
    }

    ctx = ngx_http_parley_msg_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->change = NGX_PARLEY_CHANGE_EDIT;
    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_change_access);
}


static void
ngx_http_parley_msg_delete(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_msg_ctx_t  *ctx;

    ctx = ngx_http_parley_msg_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->change = NGX_PARLEY_CHANGE_DELETE;
    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_msg_change_access);
}


static void
ngx_http_parley_msg_change_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    if (ctx->message) {
        json_decref(ctx->message);
        ctx->message = NULL;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_msg_change_access);
}


static void
ngx_http_parley_msg_change_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    /* the tenant's API key may edit and delete; a user must be a member */
    if (ngx_http_parley_msg_member(ar, 1) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_change_row,
        "SELECT sender_id, deleted_at FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U%S",
        ar->tenant_id, ctx->cid, ctx->seq, ctx->locked ? " FOR UPDATE" : "");
}


static void
ngx_http_parley_msg_change_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                     *meta;
    MYSQL_ROW                   row;
    ngx_str_t                   text;
    ngx_uint_t                  own;
    unsigned long              *len;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND, "message_not_found",
                                  "seq", "no message %uL in conversation %uL",
                                  ctx->seq, ctx->cid);
        return;
    }

    len = mysql_fetch_lengths(res->res);
    own = (len[0] == ar->user_id.len
           && ngx_memcmp(row[0], ar->user_id.data, len[0]) == 0);

    if (ctx->change == NGX_PARLEY_CHANGE_EDIT) {
        if (!own && !ctx->acc.tenant_admin) {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "not_sender",
                                      NULL, "only the sender may edit a "
                                      "message");
            return;
        }

        if (row[1]) {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                      "message_deleted", "seq",
                                      "message %uL is deleted", ctx->seq);
            return;
        }

    } else {
        if (!own && !ngx_http_parley_api_role_at_least(&ctx->acc,
                                                NGX_PARLEY_ROLE_MODERATOR))
        {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "not_allowed",
                                      NULL, "only the sender or a moderator "
                                      "may delete a message");
            return;
        }

        if (row[1]) {
            /* deleting twice is a no-op: no second event */
            ngx_http_parley_api_refuse(ar, NGX_HTTP_NO_CONTENT, "", NULL, "");
            return;
        }
    }

    if (!ctx->locked) {
        ctx->locked = 1;
        ngx_http_parley_api_begin(ar, ngx_http_parley_msg_change_txn);
        return;
    }

    if (ctx->change == NGX_PARLEY_CHANGE_EDIT) {
        ngx_http_parley_api_str(ar->body, "text", &text);
        meta = json_object_get(ar->body, "metadata");

        ngx_http_parley_api_sql(ar, ngx_http_parley_msg_change_select,
            "UPDATE messages SET text = IF(%U, %N, text), "
            "metadata = IF(%U, %J, metadata), edited_at = UTC_TIMESTAMP(3) "
            "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
            (uint64_t) (text.data != NULL), &text,
            (uint64_t) (meta != NULL), meta,
            ar->tenant_id, ctx->cid, ctx->seq);
        return;
    }

    /* a tombstone: the row and its seq stay, the content goes */
    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_change_erase,
        "UPDATE messages SET text = NULL, metadata = NULL, attachment = NULL, "
        "mentions = NULL, reactions = NULL, deleted_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_msg_change_erase(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_change_select,
        "DELETE FROM reactions "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_msg_change_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_msg_change_rendered,
        "SELECT " NGX_PARLEY_MSG_COLUMNS " FROM messages "
        "WHERE tenant_id = %U AND conversation_id = %U AND seq = %U",
        ar->tenant_id, ctx->cid, ctx->seq);
}


static void
ngx_http_parley_msg_change_rendered(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                   row;
    ngx_http_parley_msg_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "the message vanished");
        return;
    }

    ctx->message = ngx_http_parley_msg_row(row, mysql_fetch_lengths(res->res));
    if (ctx->message == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_memzero(&ctx->ev, sizeof(ngx_http_parley_event_t));
    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.type = ctx->change == NGX_PARLEY_CHANGE_EDIT ? "message.edited"
                                                         : "message.deleted";
    ctx->ev.message_seq = ctx->seq;
    ctx->ev.payload = json_incref(ctx->message);

    ngx_http_parley_api_event(ar, ngx_http_parley_msg_logged, &ctx->ev);
}


/* ---- rendering ----------------------------------------------------- */

static json_t *
ngx_http_parley_msg_row(MYSQL_ROW row, unsigned long *len)
{
    json_t  *m, *reactions;

    reactions = ngx_http_parley_api_col_json(row, len, 14);
    if (json_is_null(reactions)) {
        json_decref(reactions);
        reactions = json_object();
    }

    m = json_object();
    if (m == NULL) {
        json_decref(reactions);
        return NULL;
    }

    json_object_set_new(m, "id",
                        ngx_http_parley_api_id_json(
                            ngx_http_parley_api_col_u64(row, 0)));
    json_object_set_new(m, "conversation_id",
                        ngx_http_parley_api_id_json(
                            ngx_http_parley_api_col_u64(row, 1)));
    json_object_set_new(m, "seq",
                        json_integer((json_int_t)
                                     ngx_http_parley_api_col_u64(row, 2)));
    json_object_set_new(m, "client_id",
                        ngx_http_parley_api_col_string(row, len, 3));
    json_object_set_new(m, "sender_id",
                        ngx_http_parley_api_col_string(row, len, 4));
    json_object_set_new(m, "type", ngx_http_parley_api_col_string(row, len, 5));
    json_object_set_new(m, "text", ngx_http_parley_api_col_string(row, len, 7));
    json_object_set_new(m, "custom_type",
                        (row[6] && len[6])
                        ? ngx_http_parley_api_col_string(row, len, 6)
                        : json_null());
    json_object_set_new(m, "metadata",
                        ngx_http_parley_api_col_json(row, len, 8));
    json_object_set_new(m, "attachment",
                        ngx_http_parley_api_col_json(row, len, 9));
    json_object_set_new(m, "mentions",
                        ngx_http_parley_api_col_json(row, len, 10));
    json_object_set_new(m, "parent_seq",
                        row[11] ? json_integer((json_int_t)
                                      ngx_http_parley_api_col_u64(row, 11))
                                : json_null());
    json_object_set_new(m, "reply_count",
                        json_integer((json_int_t)
                                     ngx_http_parley_api_col_u64(row, 12)));
    json_object_set_new(m, "last_reply_at",
                        ngx_http_parley_api_col_time(row, len, 13));
    json_object_set_new(m, "reactions", reactions);
    json_object_set_new(m, "created_at",
                        ngx_http_parley_api_col_time(row, len, 15));
    json_object_set_new(m, "edited_at",
                        ngx_http_parley_api_col_time(row, len, 16));
    json_object_set_new(m, "deleted_at",
                        ngx_http_parley_api_col_time(row, len, 17));

    return m;
}
