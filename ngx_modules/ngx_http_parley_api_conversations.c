
/*
 * Conversations: direct (1:1) and group.
 *
 *   POST   /v1/conversations                  create; direct: find-or-create
 *   GET    /v1/conversations/public           public groups, paginated
 *   GET    /v1/conversations/{cid}            get      (member; any user
 *                                                       for public groups)
 *   PATCH  /v1/conversations/{cid}            update   (admin+)
 *   DELETE /v1/conversations/{cid}            delete   (owner; soft)
 *   POST   /v1/conversations/{cid}/join       join     (public; password)
 *   POST   /v1/conversations/{cid}/leave      leave
 *   POST   /v1/conversations/{cid}/transfer   transfer ownership (owner)
 *
 * The tenant's API key (no user) may call all of them with the owner's
 * powers; it creates a conversation for a user named by "owner".  The
 * membership rules and the membership engine are in
 * ngx_http_parley_api_members.c.
 *
 * A direct conversation is found by direct_key, the two user ids in byte
 * order joined by a NUL byte, unique per tenant: two concurrent creates of
 * the same pair insert the same key, the second waits for the first and
 * finds a duplicate (INSERT IGNORE: no row), rolls back and reads the
 * first one's conversation.  Deleting a direct conversation clears its key,
 * so that the pair may start a new one.
 *
 * Group passwords are stored as 64 hex digits (the width of the column): a
 * random 16-byte salt and the first 16 bytes of PBKDF2-HMAC-SHA256(password,
 * salt).  The round count is kept small on purpose: the hash runs on the
 * worker's event loop (about 1.5 ms, once per password set or join, never
 * inside a transaction), and a group's password guards a join, not an
 * account.  Moving it to a thread pool would allow more rounds.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_sql.h"
#include "parley_id.h"


#define NGX_PARLEY_PASSWORD_ROUNDS   4096
#define NGX_PARLEY_PASSWORD_SALT     16
#define NGX_PARLEY_PASSWORD_KEY      16
#define NGX_PARLEY_PASSWORD_HEX      64

#define NGX_PARLEY_CONV_COLUMNS                                              \
    "c.id, c.kind, c.access, c.name, c.description, c.avatar_url, "          \
    "c.metadata, c.created_by, c.member_count, c.last_seq, c.created_at, "   \
    "c.updated_at, m.role, m.state"


typedef struct {
    uint64_t                   cid;
    ngx_str_t                  me;          /* acting user, or empty */
    ngx_str_t                  peer;
    ngx_str_t                  direct_key;
    ngx_str_t                  target;      /* transfer */
    ngx_str_t                  old_owner;
    ngx_str_t                  viewer;      /* whose my_role to show */
    ngx_str_t                 *uids;
    ngx_uint_t                 nuids;
    u_char                    *outcome;
    ngx_uint_t                 status;
    ngx_uint_t                 limit;
    uint64_t                   event_seq;
    uint64_t                   count;       /* member_count to write */
    u_char                     hash[NGX_PARLEY_PASSWORD_HEX];
    ngx_str_t                  password_hash; /* data NULL: none */
    ngx_uint_t                 password_set;  /* PATCH: hash changes */
    u_char                     join_outcome;
    ngx_http_parley_access_t   acc;
    ngx_http_parley_event_t    ev;
} ngx_http_parley_conv_ctx_t;


static ngx_http_parley_conv_ctx_t *ngx_http_parley_conv_ctx(
    ngx_http_parley_api_req_t *ar, ngx_uint_t with_cid);
static void ngx_http_parley_conv_create(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_conv_direct_key(
    ngx_http_parley_api_req_t *ar, ngx_str_t *a, ngx_str_t *b,
    ngx_str_t *key);
static void ngx_http_parley_conv_direct_checked(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_direct_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_direct_inserted(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_direct_reread(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_direct_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_direct_created(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_direct_peer(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_group_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_group_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_group_owner(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_group_created(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_group_admit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_sync_grow(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_no_content(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_get(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_got(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_public(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_public_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_update(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_update_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_update_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_update_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_delete(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_delete_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_delete_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_delete_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_join(ngx_http_parley_api_req_t *ar);
static ngx_int_t ngx_http_parley_conv_join_allowed(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_join_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_join_password(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_join_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_join_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_leave(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_leave_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_leave_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_leave_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_leave_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_transfer(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_transfer_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_conv_transfer_access(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_transfer_target(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_transfer_owner(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_transfer_new(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_conv_transfer_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static json_t *ngx_http_parley_conv_row(MYSQL_ROW row, unsigned long *len);
static ngx_int_t ngx_http_parley_conv_hash(ngx_http_parley_api_req_t *ar,
    ngx_str_t *password, u_char *salt, u_char *out);
static ngx_int_t ngx_http_parley_conv_hex_decode(u_char *dst, u_char *src,
    size_t len);


ngx_http_parley_api_route_t  ngx_http_parley_api_conversations_routes[] = {

    { NGX_HTTP_POST, "/v1/conversations",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_create, "createConversation", 1 },

    /* before {cid}: "public" is not an id */
    { NGX_HTTP_GET, "/v1/conversations/public",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_public, "listPublicConversations", 0 },

    { NGX_HTTP_GET, "/v1/conversations/{cid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_get, "getConversation", 0 },

    { NGX_HTTP_PATCH, "/v1/conversations/{cid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_update, "updateConversation", 1 },

    { NGX_HTTP_DELETE, "/v1/conversations/{cid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_delete, "deleteConversation", 0 },

    { NGX_HTTP_POST, "/v1/conversations/{cid}/join", NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_join, "joinConversation", 1 },

    { NGX_HTTP_POST, "/v1/conversations/{cid}/leave", NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_leave, "leaveConversation", 0 },

    { NGX_HTTP_POST, "/v1/conversations/{cid}/transfer",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_conv_transfer, "transferConversation", 1 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


/* direct and group share one body; the type says which fields apply */
static const ngx_http_parley_field_t  ngx_http_parley_conv_create_fields[] = {
    { "type", NGX_PARLEY_FIELD_ENUM, 0, 16, 1, 0, "direct|group" },
    { "peer", NGX_PARLEY_FIELD_ID, 1, NGX_PARLEY_ID_MAX, 0, 0, NULL },
    { "owner", NGX_PARLEY_FIELD_ID, 1, NGX_PARLEY_ID_MAX, 0, 0, NULL },
    { "name", NGX_PARLEY_FIELD_STRING, 0, 255, 0, 0, NULL },
    { "description", NGX_PARLEY_FIELD_STRING, 0, 2048, 0, 0, NULL },
    { "avatar_url", NGX_PARLEY_FIELD_STRING, 0, 2048, 0, 0, NULL },
    { "metadata", NGX_PARLEY_FIELD_OBJECT, 0, 0, 0, 1, NULL },
    { "access", NGX_PARLEY_FIELD_ENUM, 0, 16, 0, 0,
      "public|private|password" },
    { "password", NGX_PARLEY_FIELD_STRING, 8, 128, 0, 0, NULL },
    { "members", NGX_PARLEY_FIELD_ID_ARRAY, 0, 0, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_conv_update_fields[] = {
    { "name", NGX_PARLEY_FIELD_STRING, 0, 255, 0, 0, NULL },
    { "description", NGX_PARLEY_FIELD_STRING, 0, 2048, 0, 0, NULL },
    { "avatar_url", NGX_PARLEY_FIELD_STRING, 0, 2048, 0, 0, NULL },
    { "metadata", NGX_PARLEY_FIELD_OBJECT, 0, 0, 0, 1, NULL },
    { "access", NGX_PARLEY_FIELD_ENUM, 0, 16, 0, 0,
      "public|private|password" },
    { "password", NGX_PARLEY_FIELD_STRING, 8, 128, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_conv_join_fields[] = {
    { "password", NGX_PARLEY_FIELD_STRING, 0, 128, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_conv_transfer_fields[] = {
    { "user_id", NGX_PARLEY_FIELD_ID, 1, NGX_PARLEY_ID_MAX, 1, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


/* fields a direct conversation has no use for */
static const char  *ngx_http_parley_conv_group_only[] = {
    "name", "description", "avatar_url", "access", "password", "members",
    NULL
};


static ngx_http_parley_conv_ctx_t *
ngx_http_parley_conv_ctx(ngx_http_parley_api_req_t *ar, ngx_uint_t with_cid)
{
    ngx_http_parley_conv_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_conv_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    if (with_cid
        && ngx_http_parley_api_conversation_id(ar, 0, &ctx->cid) != NGX_OK)
    {
        return NULL;
    }

    ctx->me = ar->user_id;
    ctx->viewer = ar->user_id;
    ctx->status = NGX_HTTP_OK;
    ar->data = ctx;

    return ctx;
}


/* ---- create -------------------------------------------------------- */

static void
ngx_http_parley_conv_create(ngx_http_parley_api_req_t *ar)
{
    json_t                       *members;
    ngx_str_t                     type, owner, access, password;
    ngx_uint_t                    i;
    ngx_http_parley_conv_ctx_t   *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_conv_create_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_conv_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    /* who creates: the calling user, or the user the API key names */
    ngx_http_parley_api_str(ar->body, "owner", &owner);

    if (ar->auth == NGX_PARLEY_AUTH_ADMIN) {
        if (owner.data == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", "owner",
                                     "the API key creates for a user: "
                                     "\"owner\" is required");
            return;
        }

        ctx->me = owner;
        ctx->viewer = owner;

    } else if (owner.data
               && (owner.len != ar->user_id.len
                   || ngx_memcmp(owner.data, ar->user_id.data, owner.len)
                      != 0))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", "owner",
                                 "a user creates conversations for itself "
                                 "only");
        return;
    }

    ngx_http_parley_api_str(ar->body, "type", &type);

    if (type.len == 6 && ngx_strncmp(type.data, "direct", 6) == 0) {

        for (i = 0; ngx_http_parley_conv_group_only[i]; i++) {
            if (json_object_get(ar->body, ngx_http_parley_conv_group_only[i])) {
                ngx_http_parley_api_fail(ar, 422, "invalid_value",
                                         ngx_http_parley_conv_group_only[i],
                                         "\"%s\" is only for group "
                                         "conversations",
                                         ngx_http_parley_conv_group_only[i]);
                return;
            }
        }

        if (ngx_http_parley_api_str(ar->body, "peer", &ctx->peer) == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", "peer",
                                     "a direct conversation needs \"peer\"");
            return;
        }

        if (ctx->peer.len == ctx->me.len
            && ngx_memcmp(ctx->peer.data, ctx->me.data, ctx->me.len) == 0)
        {
            ngx_http_parley_api_fail(ar, 422, "invalid_value", "peer",
                                     "a direct conversation is between two "
                                     "different users");
            return;
        }

        if (ngx_http_parley_conv_direct_key(ar, &ctx->me, &ctx->peer,
                                            &ctx->direct_key)
            != NGX_OK)
        {
            return;
        }

        ngx_http_parley_api_sql(ar, ngx_http_parley_conv_direct_checked,
            "SELECT (SELECT status FROM users WHERE tenant_id = %U "
            "AND user_id = %L), "
            "(SELECT status FROM users WHERE tenant_id = %U "
            "AND user_id = %L), "
            "EXISTS (SELECT 1 FROM user_blocks WHERE tenant_id = %U "
            "AND ((user_id = %L AND blocked_id = %L) "
            "OR (user_id = %L AND blocked_id = %L))), "
            "(SELECT id FROM conversations WHERE tenant_id = %U "
            "AND direct_key = %L AND deleted_at IS NULL)",
            ar->tenant_id, &ctx->me, ar->tenant_id, &ctx->peer,
            ar->tenant_id, &ctx->me, &ctx->peer, &ctx->peer, &ctx->me,
            ar->tenant_id, &ctx->direct_key);
        return;
    }

    /* a group */

    if (json_object_get(ar->body, "peer")) {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "peer",
                                 "\"peer\" is only for direct conversations");
        return;
    }

    if (ngx_http_parley_api_str(ar->body, "access", &access) == NULL) {
        ngx_str_set(&access, "private");
    }

    ngx_http_parley_api_str(ar->body, "password", &password);

    if (access.len == 8 && ngx_strncmp(access.data, "password", 8) == 0) {
        if (password.data == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", "password",
                                     "access \"password\" needs a password");
            return;
        }

        if (ngx_http_parley_conv_hash(ar, &password, NULL, ctx->hash)
            != NGX_OK)
        {
            return;
        }

        ctx->password_hash.data = ctx->hash;
        ctx->password_hash.len = NGX_PARLEY_PASSWORD_HEX;

    } else if (password.data) {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "password",
                                 "a password is only for access "
                                 "\"password\"");
        return;
    }

    members = json_object_get(ar->body, "members");

    if (json_array_size(members) > ar->conf->max_members) {
        ngx_http_parley_api_fail(ar, 422, "invalid_length", "members",
                                 "\"members\" must hold at most %ui ids",
                                 ar->conf->max_members);
        return;
    }

    if (ngx_http_parley_api_members_ids(ar, members, &ctx->uids,
                                        &ctx->nuids, &ctx->outcome)
        != NGX_OK)
    {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_group_checked,
        "SELECT status FROM users WHERE tenant_id = %U AND user_id = %L",
        ar->tenant_id, &ctx->me);
}


/* the two ids in byte order (a prefix first), joined by a NUL byte */

static ngx_int_t
ngx_http_parley_conv_direct_key(ngx_http_parley_api_req_t *ar, ngx_str_t *a,
    ngx_str_t *b, ngx_str_t *key)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t  *lo, *hi;

    rc = ngx_memcmp(a->data, b->data, ngx_min(a->len, b->len));

    if (rc == 0) {
        rc = (a->len < b->len) ? -1 : 1;
    }

    lo = rc < 0 ? a : b;
    hi = rc < 0 ? b : a;

    p = ngx_pnalloc(ar->pool, lo->len + 1 + hi->len);
    if (p == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    key->data = p;
    p = ngx_cpymem(p, lo->data, lo->len);
    *p++ = '\0';
    p = ngx_cpymem(p, hi->data, hi->len);
    key->len = p - key->data;

    return NGX_OK;
}


/*
 * The caller of a user token is known to be active; one acting through the
 * API key (X-Parley-User, "owner") is checked here.
 */

static void
ngx_http_parley_conv_direct_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    const char                  *who;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "no answer");
        return;
    }

    who = ar->auth == NGX_PARLEY_AUTH_ADMIN ? "owner" : NULL;

    if (row[0] == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found", who,
                                 "no user \"%V\"", &ctx->me);
        return;
    }

    if (ngx_strcmp(row[0], "active") != 0) {
        ngx_http_parley_api_fail(ar, who ? NGX_HTTP_CONFLICT
                                         : NGX_HTTP_FORBIDDEN,
                                 "user_inactive", who,
                                 "user \"%V\" is deactivated", &ctx->me);
        return;
    }

    if (row[1] == NULL || ngx_strcmp(row[1], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found",
                                 "peer", "no user \"%V\"", &ctx->peer);
        return;
    }

    if (ngx_strcmp(row[1], "active") != 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT, "user_inactive",
                                 "peer", "user \"%V\" is deactivated",
                                 &ctx->peer);
        return;
    }

    if (row[2] && row[2][0] == '1') {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "blocked", "peer",
                                 "one of these users blocks the other");
        return;
    }

    if (row[3]) {
        ctx->cid = ngx_http_parley_api_col_u64(row, 3);
        ngx_http_parley_conv_select(ar, res);
        return;
    }

    ctx->status = NGX_HTTP_CREATED;
    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_direct_txn);
}


static void
ngx_http_parley_conv_direct_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_api_new_id(ar, &ctx->cid) != NGX_OK) {
        return;
    }

    /*
     * A concurrent create of the same pair waits here for the key and then
     * inserts nothing; its events 1 and 2 are written below.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_direct_inserted,
        "INSERT IGNORE INTO conversations (tenant_id, id, kind, access, "
        "direct_key, created_by, member_count, last_seq, event_seq, "
        "metadata, created_at, updated_at) VALUES "
        "(%U, %U, 'direct', 'private', %L, %L, 2, 0, 2, %J, "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, &ctx->direct_key, &ctx->me,
        json_object_get(ar->body, "metadata"));
}


static void
ngx_http_parley_conv_direct_inserted(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (res->affected_rows == 0) {
        /* the other create won: read its row outside this snapshot */
        ngx_http_parley_api_rollback(ar, ngx_http_parley_conv_direct_reread);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_direct_created,
        "INSERT INTO members (tenant_id, conversation_id, user_id, role, "
        "state, joined_seq, joined_event, left_event, delivered_seq, "
        "read_seq, last_activity_at, created_at, updated_at) VALUES "
        "(%U, %U, %L, 'participant', 'active', 0, 1, NULL, 0, 0, "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)), "
        "(%U, %U, %L, 'participant', 'active', 0, 2, NULL, 0, 0, "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, &ctx->me,
        ar->tenant_id, ctx->cid, &ctx->peer);
}


static void
ngx_http_parley_conv_direct_reread(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_direct_found,
        "SELECT id FROM conversations WHERE tenant_id = %U "
        "AND direct_key = %L AND deleted_at IS NULL",
        ar->tenant_id, &ctx->direct_key);
}


static void
ngx_http_parley_conv_direct_found(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        /* created and deleted in between: rare enough to retry */
        ngx_http_parley_api_fail(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "unavailable", NULL,
                                 "the conversation changed meanwhile, "
                                 "retry");
        return;
    }

    ctx->cid = ngx_http_parley_api_col_u64(row, 0);
    ctx->status = NGX_HTTP_OK;

    ngx_http_parley_conv_select(ar, res);
}


static void
ngx_http_parley_conv_direct_created(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = 1;
    ctx->ev.type = "conversation.created";
    ctx->ev.subject = ctx->me;
    ctx->ev.payload = json_pack("{s:s,s:s%}", "type", "direct",
                                "peer", ctx->peer.data, ctx->peer.len);

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_direct_peer,
                                 &ctx->ev);
}


static void
ngx_http_parley_conv_direct_peer(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = 2;
    ctx->ev.type = "member.added";
    ctx->ev.subject = ctx->peer;
    ctx->ev.payload = json_pack("{s:s}", "role", "participant");

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_commit, &ctx->ev);
}


static void
ngx_http_parley_conv_group_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    const char                  *who;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;
    who = ar->auth == NGX_PARLEY_AUTH_ADMIN ? "owner" : NULL;

    if (row == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "user_not_found", who,
                                 "no user \"%V\"", &ctx->me);
        return;
    }

    if (ngx_strcmp(row[0], "active") != 0) {
        ngx_http_parley_api_fail(ar, who ? NGX_HTTP_CONFLICT
                                         : NGX_HTTP_FORBIDDEN,
                                 "user_inactive", who,
                                 "user \"%V\" is deactivated", &ctx->me);
        return;
    }

    ctx->status = NGX_HTTP_CREATED;
    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_group_txn);
}


static void
ngx_http_parley_conv_group_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                    name, description, avatar, access;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_api_new_id(ar, &ctx->cid) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_str(ar->body, "name", &name);
    ngx_http_parley_api_str(ar->body, "description", &description);
    ngx_http_parley_api_str(ar->body, "avatar_url", &avatar);

    if (ngx_http_parley_api_str(ar->body, "access", &access) == NULL) {
        ngx_str_set(&access, "private");
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_group_owner,
        "INSERT INTO conversations (tenant_id, id, kind, access, "
        "password_hash, name, description, avatar_url, metadata, "
        "created_by, member_count, last_seq, event_seq, created_at, "
        "updated_at) VALUES "
        "(%U, %U, 'group', %L, %N, %L, %L, %L, %J, %L, 1, 0, 1, "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, &access, &ctx->password_hash, &name,
        &description, &avatar, json_object_get(ar->body, "metadata"),
        &ctx->me);
}


static void
ngx_http_parley_conv_group_owner(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_group_created,
        "INSERT INTO members (tenant_id, conversation_id, user_id, role, "
        "state, joined_seq, joined_event, left_event, delivered_seq, "
        "read_seq, last_activity_at, created_at, updated_at) VALUES "
        "(%U, %U, %L, 'owner', 'active', 0, 1, NULL, 0, 0, "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, &ctx->me);
}


static void
ngx_http_parley_conv_group_created(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_str_t                    access, name;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (ngx_http_parley_api_str(ar->body, "access", &access) == NULL) {
        ngx_str_set(&access, "private");
    }

    if (ngx_http_parley_api_str(ar->body, "name", &name) == NULL) {
        ngx_str_set(&name, "");
    }

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = 1;
    ctx->ev.type = "conversation.created";
    ctx->ev.subject = ctx->me;
    ctx->ev.payload = json_pack("{s:s,s:s%,s:s%}", "type", "group",
                                "access", access.data, access.len,
                                "name", name.data, name.len);

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_group_admit,
                                 &ctx->ev);
}


static void
ngx_http_parley_conv_group_admit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ctx->event_seq = 1;
    ctx->count = 1;

    ngx_http_parley_api_members_admit(ar, ctx->cid, 0, &ctx->event_seq,
                                      &ctx->count, ctx->uids, ctx->nuids,
                                      ctx->outcome, "members", "participant",
                                      "member.added",
                                      ngx_http_parley_conv_sync_grow);
}


/* ---- the common tail of writes ------------------------------------- */

static void
ngx_http_parley_conv_sync_grow(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_members_sync(ar, ctx->cid, ctx->event_seq,
                                     ctx->count, 1,
                                     ngx_http_parley_conv_commit);
}


static void
ngx_http_parley_conv_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_members_sync(ar, ctx->cid, ctx->event_seq,
                                     ctx->count, 0,
                                     ngx_http_parley_conv_commit);
}


static void
ngx_http_parley_conv_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_commit(ar, ctx->status == NGX_HTTP_NO_CONTENT
                                   ? ngx_http_parley_conv_no_content
                                   : ngx_http_parley_conv_select);
}


static void
ngx_http_parley_conv_no_content(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
}


static void
ngx_http_parley_conv_select(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_str_t                    none = ngx_string("");
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_render,
        "SELECT " NGX_PARLEY_CONV_COLUMNS " FROM conversations c "
        "LEFT JOIN members m ON m.tenant_id = c.tenant_id "
        "AND m.conversation_id = c.id AND m.user_id = %L "
        "WHERE c.tenant_id = %U AND c.id = %U AND c.deleted_at IS NULL",
        ctx->viewer.len ? &ctx->viewer : &none, ar->tenant_id, ctx->cid);
}


static void
ngx_http_parley_conv_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND,
                                 "conversation_not_found", "cid",
                                 "no conversation %uL", ctx->cid);
        return;
    }

    ngx_http_parley_api_reply(ar, ctx->status,
                              ngx_http_parley_conv_row(row,
                                               mysql_fetch_lengths(res->res)));
}


static json_t *
ngx_http_parley_conv_row(MYSQL_ROW row, unsigned long *len)
{
    json_t      *meta, *obj;
    ngx_uint_t   active;

    meta = ngx_http_parley_api_col_json(row, len, 6);
    active = row[13] && ngx_strcmp(row[13], "active") == 0;

    obj = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:o}",
                    "id",
                    ngx_http_parley_api_id_json(
                        ngx_http_parley_api_col_u64(row, 0)),
                    "type", ngx_http_parley_api_col_string(row, len, 1),
                    "access", ngx_http_parley_api_col_string(row, len, 2),
                    "name", ngx_http_parley_api_col_string(row, len, 3),
                    "description", ngx_http_parley_api_col_string(row, len, 4),
                    "avatar_url", ngx_http_parley_api_col_string(row, len, 5),
                    "metadata", json_is_null(meta) ? json_object() : meta,
                    "created_by", ngx_http_parley_api_col_string(row, len, 7),
                    "member_count",
                    (json_int_t) ngx_http_parley_api_col_u64(row, 8),
                    "last_seq",
                    (json_int_t) ngx_http_parley_api_col_u64(row, 9),
                    "created_at", ngx_http_parley_api_col_time(row, len, 10),
                    "updated_at", ngx_http_parley_api_col_time(row, len, 11));

    if (obj == NULL) {
        return NULL;
    }

    /* the viewer's own standing: a role only while an active member */
    json_object_set_new(obj, "my_role",
                        active ? ngx_http_parley_api_col_string(row, len, 12)
                               : json_null());
    json_object_set_new(obj, "my_state",
                        ngx_http_parley_api_col_string(row, len, 13));

    return obj;
}


/* ---- get ----------------------------------------------------------- */

static void
ngx_http_parley_conv_get(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx;

    ctx = ngx_http_parley_conv_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_conv_got);
}


static void
ngx_http_parley_conv_got(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (!ctx->acc.tenant_admin && !ngx_http_parley_api_is_member(&ctx->acc)
        && (ctx->acc.direct
            || ngx_strcmp(ctx->acc.access_mode, "public") != 0))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "not_member", "cid",
                                 "only members see this conversation");
        return;
    }

    ngx_http_parley_conv_select(ar, res);
}


/* ---- public groups ------------------------------------------------- */

/*
 * Newest first, by id; the cursor is the last id of a page.  q narrows to
 * names holding it (case-insensitively).
 */

static void
ngx_http_parley_conv_public(ngx_http_parley_api_req_t *ar)
{
    uint64_t                     before;
    ngx_str_t                    like, none = ngx_string("");
    ngx_http_parley_conv_ctx_t  *ctx;

    ctx = ngx_http_parley_conv_ctx(ar, 0);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    before = (uint64_t) INT64_MAX;

    if (ngx_http_parley_api_arg_id_cursor(ar, &before) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_arg_like(ar, "q", 1, &like) != NGX_OK) {
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_public_listed,
        "SELECT " NGX_PARLEY_CONV_COLUMNS " FROM conversations c "
        "LEFT JOIN members m ON m.tenant_id = c.tenant_id "
        "AND m.conversation_id = c.id AND m.user_id = %L "
        "WHERE c.tenant_id = %U AND c.access = 'public' "
        "AND c.kind = 'group' AND c.deleted_at IS NULL AND c.id < %U "
        "AND LOWER(c.name) LIKE LOWER(%L) "
        "ORDER BY c.id DESC LIMIT %U",
        ar->user_id.len ? &ar->user_id : &none, ar->tenant_id, before, &like,
        (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_conv_public_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                      *items, *next, *body;
    uint64_t                     last;
    MYSQL_ROW                    row;
    ngx_uint_t                   n;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    items = json_array();
    next = json_null();
    n = 0;
    last = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        if (n == ctx->limit) {
            json_decref(next);
            next = ngx_http_parley_api_id_json(last);
            break;
        }

        json_array_append_new(items,
                              ngx_http_parley_conv_row(row,
                                               mysql_fetch_lengths(res->res)));
        last = ngx_http_parley_api_col_u64(row, 0);
        n++;
    }

    body = json_pack("{s:o,s:o}", "conversations", items, "next_cursor", next);
    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- update -------------------------------------------------------- */

static void
ngx_http_parley_conv_update(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                    password;
    ngx_http_parley_conv_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_conv_update_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_conv_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    /* hashed before the transaction: no lock waits on it */
    if (ngx_http_parley_api_str(ar->body, "password", &password)) {
        if (ngx_http_parley_conv_hash(ar, &password, NULL, ctx->hash)
            != NGX_OK)
        {
            return;
        }
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_update_txn);
}


static void
ngx_http_parley_conv_update_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_conv_update_access);
}


static void
ngx_http_parley_conv_update_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                      *meta;
    ngx_str_t                    name, description, avatar, access, password;
    ngx_uint_t                   to_password;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (!ngx_http_parley_api_role_at_least(&ctx->acc, NGX_PARLEY_ROLE_ADMIN)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", NULL,
                                           "updating a conversation needs "
                                           "the admin role");
        return;
    }

    ngx_http_parley_api_str(ar->body, "name", &name);
    ngx_http_parley_api_str(ar->body, "description", &description);
    ngx_http_parley_api_str(ar->body, "avatar_url", &avatar);
    ngx_http_parley_api_str(ar->body, "access", &access);
    ngx_http_parley_api_str(ar->body, "password", &password);
    meta = json_object_get(ar->body, "metadata");

    if (access.data && ctx->acc.direct) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "direct_conversation", "access",
                                           "a direct conversation stays "
                                           "private");
        return;
    }

    to_password = access.data
                  ? (access.len == 8
                     && ngx_strncmp(access.data, "password", 8) == 0)
                  : (ngx_strcmp(ctx->acc.access_mode, "password") == 0);

    if (password.data && !to_password) {
        ngx_http_parley_api_refuse(ar, 422, "invalid_value",
                                           "password",
                                           "a password is only for access "
                                           "\"password\"");
        return;
    }

    if (to_password && password.data == NULL
        && ngx_strcmp(ctx->acc.access_mode, "password") != 0)
    {
        ngx_http_parley_api_refuse(ar, 422, "missing_field",
                                           "password",
                                           "access \"password\" needs a "
                                           "password");
        return;
    }

    if (json_object_size(ar->body) == 0) {
        /* nothing to change: no event either */
        ngx_http_parley_api_rollback(ar, ngx_http_parley_conv_select);
        return;
    }

    /* a new password, or none once the access is no longer "password" */
    ctx->password_set = (password.data != NULL || !to_password);
    ctx->password_hash.data = password.data ? ctx->hash : NULL;
    ctx->password_hash.len = password.data ? NGX_PARLEY_PASSWORD_HEX : 0;

    ctx->event_seq = ctx->acc.event_seq + 1;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_update_event,
        "UPDATE conversations SET "
        "name = IF(%U, %L, name), description = IF(%U, %L, description), "
        "avatar_url = IF(%U, %L, avatar_url), "
        "metadata = IF(%U, %J, metadata), access = IF(%U, %L, access), "
        "password_hash = IF(%U, %N, password_hash), event_seq = %U, "
        "updated_at = UTC_TIMESTAMP(3) WHERE tenant_id = %U AND id = %U",
        (uint64_t) (name.data != NULL), &name,
        (uint64_t) (description.data != NULL), &description,
        (uint64_t) (avatar.data != NULL), &avatar,
        (uint64_t) (meta != NULL), meta,
        (uint64_t) (access.data != NULL), &access,
        (uint64_t) ctx->password_set, &ctx->password_hash,
        ctx->event_seq, ar->tenant_id, ctx->cid);
}


static void
ngx_http_parley_conv_update_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                      *payload, *v;
    const char                  *key;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    /* what changed, never the password itself */
    payload = json_object();

    json_object_foreach(ar->body, key, v) {
        if (ngx_strcmp(key, "password") != 0) {
            json_object_set(payload, key, v);
        }
    }

    json_object_set_new(payload, "password_changed",
                        json_boolean(json_object_get(ar->body, "password")
                                     != NULL));

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = ctx->event_seq;
    ctx->ev.type = "conversation.updated";
    ngx_str_null(&ctx->ev.subject);
    ctx->ev.payload = payload;

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_commit, &ctx->ev);
}


/* ---- delete -------------------------------------------------------- */

static void
ngx_http_parley_conv_delete(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx;

    ctx = ngx_http_parley_conv_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->status = NGX_HTTP_NO_CONTENT;
    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_delete_txn);
}


static void
ngx_http_parley_conv_delete_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_conv_delete_access);
}


static void
ngx_http_parley_conv_delete_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (!ngx_http_parley_api_role_at_least(&ctx->acc, NGX_PARLEY_ROLE_OWNER)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", NULL,
                                           "only the owner deletes a "
                                           "conversation");
        return;
    }

    ctx->event_seq = ctx->acc.event_seq + 1;

    /* the key goes: the pair of a direct conversation may start anew */
    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_delete_event,
        "UPDATE conversations SET deleted_at = UTC_TIMESTAMP(3), "
        "direct_key = NULL, event_seq = %U, updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND id = %U",
        ctx->event_seq, ar->tenant_id, ctx->cid);
}


static void
ngx_http_parley_conv_delete_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = ctx->event_seq;
    ctx->ev.type = "conversation.deleted";
    ngx_str_null(&ctx->ev.subject);
    ctx->ev.payload = json_object();

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_commit, &ctx->ev);
}


/* ---- join ---------------------------------------------------------- */

/*
 * The checks run twice: first without a lock, where the password is
 * checked (it costs CPU, and no lock should wait on it), then again under
 * the lock, which decides.
 */

static void
ngx_http_parley_conv_join(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_conv_join_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_conv_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->uids = &ctx->me;
    ctx->nuids = 1;
    ctx->outcome = &ctx->join_outcome;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_conv_join_checked);
}


/* NGX_OK: go on; NGX_DONE: a member already (answered); NGX_ERROR: refused */

static ngx_int_t
ngx_http_parley_conv_join_allowed(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (ctx->acc.direct) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "direct_conversation", "cid",
                                           "a direct conversation cannot be "
                                           "joined");
        return NGX_ERROR;
    }

    if (ngx_http_parley_api_is_member(&ctx->acc)) {
        return NGX_DONE;
    }

    if (ctx->acc.state == NGX_PARLEY_STATE_BANNED) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN, "banned",
                                           "cid", "you are banned from this "
                                           "conversation");
        return NGX_ERROR;
    }

    if (ngx_strcmp(ctx->acc.access_mode, "private") == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "private_conversation", "cid",
                                           "a private group is joined by "
                                           "invitation only");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_parley_conv_join_checked(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_int_t                    rc;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    rc = ngx_http_parley_conv_join_allowed(ar);

    if (rc == NGX_ERROR) {
        return;
    }

    if (rc == NGX_DONE) {
        ngx_http_parley_conv_select(ar, res);
        return;
    }

    if (ngx_strcmp(ctx->acc.access_mode, "password") == 0) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_conv_join_password,
            "SELECT password_hash FROM conversations "
            "WHERE tenant_id = %U AND id = %U",
            ar->tenant_id, ctx->cid);
        return;
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_join_txn);
}


static void
ngx_http_parley_conv_join_password(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    u_char          salt[NGX_PARLEY_PASSWORD_SALT];
    u_char          hash[NGX_PARLEY_PASSWORD_HEX];
    MYSQL_ROW       row;
    ngx_str_t       password;
    unsigned long  *len;

    if (ngx_http_parley_api_str(ar->body, "password", &password) == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "password_required",
                                 "password", "this group is joined with its "
                                 "password");
        return;
    }

    row = res->res ? mysql_fetch_row(res->res) : NULL;
    len = row ? mysql_fetch_lengths(res->res) : NULL;

    if (row == NULL || row[0] == NULL || len[0] != NGX_PARLEY_PASSWORD_HEX
        || ngx_http_parley_conv_hex_decode(salt, (u_char *) row[0],
                                           2 * NGX_PARLEY_PASSWORD_SALT)
           != NGX_OK)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "wrong_password",
                                 "password", "the password is not right");
        return;
    }

    if (ngx_http_parley_conv_hash(ar, &password, salt, hash) != NGX_OK) {
        return;
    }

    if (CRYPTO_memcmp(hash, row[0], NGX_PARLEY_PASSWORD_HEX) != 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "wrong_password",
                                 "password", "the password is not right");
        return;
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_join_txn);
}


static void
ngx_http_parley_conv_join_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_conv_join_access);
}


static void
ngx_http_parley_conv_join_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_int_t                    rc;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    rc = ngx_http_parley_conv_join_allowed(ar);

    if (rc == NGX_ERROR) {
        return;
    }

    if (rc == NGX_DONE) {
        ngx_http_parley_api_rollback(ar, ngx_http_parley_conv_select);
        return;
    }

    ctx->event_seq = ctx->acc.event_seq;
    ctx->count = ctx->acc.member_count;

    ngx_http_parley_api_members_admit(ar, ctx->cid, ctx->acc.last_seq,
                                      &ctx->event_seq, &ctx->count, ctx->uids,
                                      ctx->nuids, ctx->outcome, NULL,
                                      "participant", "member.joined",
                                      ngx_http_parley_conv_sync_grow);
}


/* ---- leave --------------------------------------------------------- */

static void
ngx_http_parley_conv_leave(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx;

    ctx = ngx_http_parley_conv_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ctx->status = NGX_HTTP_NO_CONTENT;
    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_leave_txn);
}


static void
ngx_http_parley_conv_leave_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_conv_leave_access);
}


static void
ngx_http_parley_conv_leave_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (ctx->acc.direct) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "direct_conversation", "cid",
                                           "a direct conversation cannot be "
                                           "left");
        return;
    }

    if (!ngx_http_parley_api_is_member(&ctx->acc)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "not_member", "cid",
                                           "you are not a member");
        return;
    }

    if (ctx->acc.role == NGX_PARLEY_ROLE_OWNER && ctx->acc.member_count > 1) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "owner_must_transfer", "cid",
                                           "the owner transfers ownership "
                                           "before leaving");
        return;
    }

    ctx->event_seq = ctx->acc.event_seq + 1;
    ctx->count = ctx->acc.member_count ? ctx->acc.member_count - 1 : 0;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_leave_event,
        "UPDATE members SET state = 'left', left_event = %U, "
        "updated_at = UTC_TIMESTAMP(3) WHERE tenant_id = %U "
        "AND conversation_id = %U AND user_id = %L",
        ctx->event_seq, ar->tenant_id, ctx->cid, &ctx->me);
}


static void
ngx_http_parley_conv_leave_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = ctx->event_seq;
    ctx->ev.type = "member.left";
    ctx->ev.subject = ctx->me;
    ctx->ev.payload = json_pack("{s:s}", "previous_role",
                                ngx_http_parley_api_role_name(
                                    ctx->acc.role));

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_leave_sync,
                                 &ctx->ev);
}


static void
ngx_http_parley_conv_leave_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_sync(ar, res);
}


/* ---- transfer ------------------------------------------------------ */

static void
ngx_http_parley_conv_transfer(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar,
                                       ngx_http_parley_conv_transfer_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_conv_ctx(ar, 1);
    if (ctx == NULL) {
        return;
    }

    ngx_http_parley_api_str(ar->body, "user_id", &ctx->target);

    if (ctx->target.len == ctx->me.len
        && ngx_memcmp(ctx->target.data, ctx->me.data, ctx->me.len) == 0)
    {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "user_id",
                                 "you are the owner already");
        return;
    }

    ngx_http_parley_api_begin(ar, ngx_http_parley_conv_transfer_txn);
}


static void
ngx_http_parley_conv_transfer_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_conv_transfer_access);
}


static void
ngx_http_parley_conv_transfer_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    if (ctx->acc.direct) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "direct_conversation", "cid",
                                           "a direct conversation has no "
                                           "owner");
        return;
    }

    if (!ngx_http_parley_api_role_at_least(&ctx->acc, NGX_PARLEY_ROLE_OWNER)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", NULL,
                                           "only the owner transfers "
                                           "ownership");
        return;
    }

    /* the target, and the owner now (the caller, unless the API key) */
    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_transfer_target,
        "SELECT m.user_id, m.role, m.state FROM members m "
        "WHERE m.tenant_id = %U AND m.conversation_id = %U "
        "AND (m.user_id = %L OR (m.role = 'owner' AND m.state = 'active')) "
        "FOR UPDATE",
        ar->tenant_id, ctx->cid, &ctx->target);
}


static void
ngx_http_parley_conv_transfer_target(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                    row;
    ngx_uint_t                   found, owner;
    unsigned long               *len;
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    found = 0;
    owner = 0;

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);

        if (len[0] == ctx->target.len
            && ngx_memcmp(row[0], ctx->target.data, len[0]) == 0)
        {
            found = row[2] && ngx_strcmp(row[2], "active") == 0;
            owner = found && row[1] && ngx_strcmp(row[1], "owner") == 0;
            continue;
        }

        /* the rows go with the result: keep a copy */
        ctx->old_owner.data = ngx_pnalloc(ar->pool, len[0] + 1);
        if (ctx->old_owner.data == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        ngx_memcpy(ctx->old_owner.data, row[0], len[0]);
        ctx->old_owner.len = len[0];
    }

    if (!found) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                           "member_not_found", "user_id",
                                           "\"%V\" is not a member",
                                           &ctx->target);
        return;
    }

    if (owner) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "already_owner", "user_id",
                                           "\"%V\" is the owner already",
                                           &ctx->target);
        return;
    }

    ctx->event_seq = ctx->acc.event_seq + 1;
    ctx->count = ctx->acc.member_count;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_transfer_owner,
        "UPDATE members SET role = 'admin', updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND conversation_id = %U AND role = 'owner'",
        ar->tenant_id, ctx->cid);
}


static void
ngx_http_parley_conv_transfer_owner(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_sql(ar, ngx_http_parley_conv_transfer_new,
        "UPDATE members SET role = 'owner', updated_at = UTC_TIMESTAMP(3) "
        "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L",
        ar->tenant_id, ctx->cid, &ctx->target);
}


static void
ngx_http_parley_conv_transfer_new(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_ctx_t  *ctx = ar->data;

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = ctx->event_seq;
    ctx->ev.type = "conversation.owner_changed";
    ctx->ev.subject = ctx->target;
    ctx->ev.payload = ctx->old_owner.data
                      ? json_pack("{s:s%,s:s}", "previous_owner",
                                  ctx->old_owner.data, ctx->old_owner.len,
                                  "previous_owner_role", "admin")
                      : json_pack("{s:n}", "previous_owner");

    ngx_http_parley_api_event_at(ar, ngx_http_parley_conv_transfer_event,
                                 &ctx->ev);
}


static void
ngx_http_parley_conv_transfer_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_conv_sync(ar, res);
}


/* ---- group passwords ----------------------------------------------- */

/*
 * out (64 bytes, hex): salt || PBKDF2-HMAC-SHA256(password, salt); a fresh
 * random salt unless salt is given (checking a password).
 */

static ngx_int_t
ngx_http_parley_conv_hash(ngx_http_parley_api_req_t *ar, ngx_str_t *password,
    u_char *salt, u_char *out)
{
    u_char  s[NGX_PARLEY_PASSWORD_SALT], key[NGX_PARLEY_PASSWORD_KEY];

    if (salt) {
        ngx_memcpy(s, salt, sizeof(s));

    } else if (RAND_bytes(s, sizeof(s)) != 1) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "no random salt");
        return NGX_ERROR;
    }

    if (PKCS5_PBKDF2_HMAC((const char *) password->data, (int) password->len,
                          s, sizeof(s), NGX_PARLEY_PASSWORD_ROUNDS,
                          EVP_sha256(), sizeof(key), key)
        != 1)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "the password could not "
                                 "be hashed");
        return NGX_ERROR;
    }

    out = ngx_hex_dump(out, s, sizeof(s));
    (void) ngx_hex_dump(out, key, sizeof(key));

    OPENSSL_cleanse(key, sizeof(key));

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_conv_hex_decode(u_char *dst, u_char *src, size_t len)
{
    ngx_int_t  n;

    for ( /* void */ ; len >= 2; len -= 2, src += 2) {
        n = ngx_hextoi(src, 2);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        *dst++ = (u_char) n;
    }

    return NGX_OK;
}
