
/*
 * Members of a conversation, and the membership rules.
 *
 *   GET    /v1/conversations/{cid}/members            list      (member)
 *   POST   /v1/conversations/{cid}/members            add       (admin+;
 *                                                      moderator+ public)
 *   PATCH  /v1/conversations/{cid}/members/{uid}      set role  (admin+)
 *   DELETE /v1/conversations/{cid}/members/{uid}      kick      (moderator+)
 *   POST   /v1/conversations/{cid}/members/{uid}/ban  ban       (moderator+)
 *   DELETE /v1/conversations/{cid}/members/{uid}/ban  unban     (moderator+)
 *
 * Roles are ordered (participant < moderator < admin < owner).  Acting on
 * another member (kick, ban) needs a role above the target's and at least
 * moderator; only the owner makes or unmakes admins; nobody acts on the
 * owner, whose role moves only by transfer.  The tenant's API key (no user)
 * acts with the owner's powers but is never the owner.
 *
 * Every change runs under the conversation row's lock (SELECT ... FOR
 * UPDATE through ngx_http_parley_api_access), which serializes membership
 * changes and message sends of one conversation: the event numbers this
 * file hands out (event_seq + 1, + 2, ...) and the joined_seq it records
 * are therefore exact, and so is member_count, kept from the locked row's
 * value plus the changes made under the lock.  Rows a change depends on
 * are read with FOR UPDATE too: TiDB's plain reads see the transaction's
 * start, not what committed while it waited for the lock.
 *
 * Membership rows (table members) are never deleted: state is active,
 * left, kicked or banned.  A (re)join sets joined_seq to the conversation's
 * last_seq and joined_event to the number of its member.added or
 * member.joined event; leaving (left, kicked, banned) sets left_event to
 * the number of that event, so sync can show a former member the log up to
 * the moment it left.  A ban of someone who never was a member writes a row
 * with joined_event = left_event = the ban's event: nothing to read.
 *
 * This file also holds the membership engine the conversations endpoints
 * use (admit, sync, refuse: see the exported functions below).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"


#define NGX_PARLEY_MEMBER_ADDED     0
#define NGX_PARLEY_MEMBER_ALREADY   1

#define NGX_PARLEY_MEMBER_KICK      1
#define NGX_PARLEY_MEMBER_BAN       2
#define NGX_PARLEY_MEMBER_UNBAN     3
#define NGX_PARLEY_MEMBER_ROLE      4


/*
 * The state of the engine's chains (admit, sync, refuse).  They run in the
 * middle of an endpoint's chain whose own state is in ar->data, so they
 * keep theirs where only they look while they run: ar->event points at the
 * ev member, the first one (ngx_http_parley_api_event_at sets ar->event to
 * the same ev).  A transaction rerun restarts the endpoint, which starts a
 * fresh engine state.
 */
typedef struct {
    ngx_http_parley_event_t      ev;         /* first: see above */

    uint64_t                     cid;
    uint64_t                     last_seq;
    uint64_t                    *event_seq;
    uint64_t                    *count;
    uint64_t                     total;
    ngx_str_t                   *uids;
    ngx_uint_t                   n;
    ngx_uint_t                   i;
    u_char                      *outcome;
    const char                  *field;
    const char                  *role;
    const char                  *type;
    ngx_uint_t                   growing;
    ngx_http_parley_api_step_pt  done;

    /* refuse: the answer to give once the transaction is rolled back */
    ngx_uint_t                   status;
    const char                  *code;
    const char                  *efield;
    u_char                       msg[256];
    size_t                       msg_len;
} ngx_http_parley_members_op_t;


typedef struct {
    uint64_t                     cid;
    ngx_str_t                    target;
    ngx_uint_t                   target_role;
    ngx_uint_t                   target_state;
    ngx_uint_t                   target_row;   /* a members row exists */
    ngx_uint_t                   action;
    ngx_uint_t                   new_role;
    uint64_t                     event_seq;
    uint64_t                     count;
    ngx_str_t                   *uids;
    ngx_uint_t                   nuids;
    u_char                      *outcome;
    const char                  *role;
    ngx_uint_t                   limit;
    ngx_http_parley_access_t     acc;
    ngx_http_parley_event_t      ev;
} ngx_http_parley_members_ctx_t;


/* the engine, used by ngx_http_parley_api_conversations.c as well */
void ngx_http_parley_api_refuse(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, const char *code, const char *field,
    const char *fmt, ...);
void ngx_http_parley_api_members_admit(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t last_seq, uint64_t *event_seq, uint64_t *count,
    ngx_str_t *uids, ngx_uint_t n, u_char *outcome, const char *field,
    const char *role, const char *type, ngx_http_parley_api_step_pt done);
void ngx_http_parley_api_members_sync(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t event_seq, uint64_t count, ngx_uint_t growing,
    ngx_http_parley_api_step_pt done);
ngx_int_t ngx_http_parley_api_members_ids(ngx_http_parley_api_req_t *ar,
    json_t *array, ngx_str_t **uids, ngx_uint_t *n, u_char **outcome);

static void ngx_http_parley_members_admit_next(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_admit_user(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_admit_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_admit_logged(
    ngx_http_parley_api_req_t *ar, ngx_parley_db_result_t *res);
static void ngx_http_parley_members_sync_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);

static ngx_http_parley_members_ctx_t *ngx_http_parley_members_ctx(
    ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_list_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_add(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_add_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_add_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_add_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_add_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_add_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_kick(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_ban(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_unban(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_set_role(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_target(ngx_http_parley_api_req_t *ar,
    ngx_uint_t action, ngx_uint_t new_role);
static void ngx_http_parley_members_act_txn(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_members_act_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_act_target(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_act_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_act_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_act_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_act_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_members_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static ngx_uint_t ngx_http_parley_members_outranks(
    ngx_http_parley_access_t *acc, ngx_uint_t role);
static json_t *ngx_http_parley_members_row(MYSQL_ROW row, unsigned long *len);


#define NGX_PARLEY_MEMBER_COLUMNS                                            \
    "user_id, role, state, created_at, updated_at"


ngx_http_parley_api_route_t  ngx_http_parley_api_members_routes[] = {

    { NGX_HTTP_GET, "/v1/conversations/{cid}/members",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_members_list, "listMembers", 0 },

    { NGX_HTTP_POST, "/v1/conversations/{cid}/members",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_members_add, "addMembers", 1 },

    { NGX_HTTP_PATCH, "/v1/conversations/{cid}/members/{uid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_members_set_role, "setMemberRole", 1 },

    { NGX_HTTP_DELETE, "/v1/conversations/{cid}/members/{uid}",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_members_kick, "kickMember", 0 },

    { NGX_HTTP_POST, "/v1/conversations/{cid}/members/{uid}/ban",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_members_ban, "banMember", 0 },

    { NGX_HTTP_DELETE, "/v1/conversations/{cid}/members/{uid}/ban",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_members_unban, "unbanMember", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static const ngx_http_parley_field_t  ngx_http_parley_members_add_fields[] = {
    { "user_ids", NGX_PARLEY_FIELD_ID_ARRAY, 1, 0, 1, 0, NULL },
    { "role", NGX_PARLEY_FIELD_ENUM, 0, 16, 0, 0,
      "participant|moderator|admin" },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


static const ngx_http_parley_field_t  ngx_http_parley_members_role_fields[] = {
    { "role", NGX_PARLEY_FIELD_ENUM, 0, 16, 1, 0,
      "participant|moderator|admin|owner" },
    { NULL, 0, 0, 0, 0, 0, NULL }
};


/* ---- the engine ---------------------------------------------------- */

/*
 * Inside a transaction that holds the conversation's row lock: makes each
 * of uids[0..n) an active member with role, one event of type (member.added
 * or member.joined) each, numbered from *event_seq + 1 on (*event_seq ends
 * at the last one used; *count grows by one per member added); outcome[i]
 * says ADDED or ALREADY (an active member stays as it is).  A user that
 * does not exist, is deactivated or is banned refuses the whole request,
 * naming field.  Then calls done; the caller still has to write event_seq
 * and member_count back (members_sync).
 */

void
ngx_http_parley_api_members_admit(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t last_seq, uint64_t *event_seq, uint64_t *count,
    ngx_str_t *uids, ngx_uint_t n, u_char *outcome, const char *field,
    const char *role, const char *type, ngx_http_parley_api_step_pt done)
{
    ngx_http_parley_members_op_t  *op;

    op = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_members_op_t));
    if (op == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    op->cid = cid;
    op->last_seq = last_seq;
    op->event_seq = event_seq;
    op->count = count;
    op->uids = uids;
    op->n = n;
    op->outcome = outcome;
    op->field = field;
    op->role = role;
    op->type = type;
    op->done = done;

    ar->event = &op->ev;

    ngx_http_parley_members_admit_next(ar, NULL);
}


static void
ngx_http_parley_members_admit_next(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_op_t  *op;

    op = (ngx_http_parley_members_op_t *) ar->event;

    if (op->i == op->n) {
        op->done(ar, res);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_members_admit_user,
        "SELECT u.status, m.state FROM users u LEFT JOIN members m "
        "ON m.tenant_id = u.tenant_id AND m.conversation_id = %U "
        "AND m.user_id = u.user_id "
        "WHERE u.tenant_id = %U AND u.user_id = %L FOR UPDATE",
        op->cid, ar->tenant_id, &op->uids[op->i]);
}


static void
ngx_http_parley_members_admit_user(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    uint64_t                       seq;
    MYSQL_ROW                      row;
    ngx_str_t                     *uid;
    ngx_http_parley_members_op_t  *op;

    op = (ngx_http_parley_members_op_t *) ar->event;
    uid = &op->uids[op->i];

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                           "user_not_found", op->field,
                                           "no user \"%V\"", uid);
        return;
    }

    if (ngx_strcmp(row[0], "active") != 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "user_inactive", op->field,
                                           "user \"%V\" is deactivated", uid);
        return;
    }

    if (row[1] && ngx_strcmp(row[1], "active") == 0) {
        op->outcome[op->i++] = NGX_PARLEY_MEMBER_ALREADY;
        ngx_http_parley_members_admit_next(ar, res);
        return;
    }

    if (row[1] && ngx_strcmp(row[1], "banned") == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "user_banned", op->field,
                                           "user \"%V\" is banned from this "
                                           "conversation: unban first", uid);
        return;
    }

    seq = ++*op->event_seq;

    /*
     * New, or back after leaving or a kick: the receipt cursors start at
     * the join, so that what came before never counts as unread.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_members_admit_event,
        "INSERT INTO members (tenant_id, conversation_id, user_id, role, "
        "state, joined_seq, joined_event, left_event, delivered_seq, "
        "read_seq, last_activity_at, created_at, updated_at) VALUES "
        "(%U, %U, %L, %Q, 'active', %U, %U, NULL, %U, %U, UTC_TIMESTAMP(3), "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3)) "
        "ON DUPLICATE KEY UPDATE role = VALUES(role), state = 'active', "
        "joined_seq = VALUES(joined_seq), "
        "joined_event = VALUES(joined_event), left_event = NULL, "
        "delivered_seq = GREATEST(delivered_seq, VALUES(delivered_seq)), "
        "read_seq = GREATEST(read_seq, VALUES(read_seq)), "
        "last_activity_at = VALUES(last_activity_at), "
        "created_at = VALUES(created_at), updated_at = VALUES(updated_at)",
        ar->tenant_id, op->cid, uid, op->role, op->last_seq, seq,
        op->last_seq, op->last_seq);
}


static void
ngx_http_parley_members_admit_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_op_t  *op;

    op = (ngx_http_parley_members_op_t *) ar->event;

    op->outcome[op->i] = NGX_PARLEY_MEMBER_ADDED;
    (*op->count)++;

    op->ev.conversation_id = op->cid;
    op->ev.event_seq = *op->event_seq;
    op->ev.type = op->type;
    op->ev.subject = op->uids[op->i];
    op->ev.message_seq = 0;
    op->ev.payload = json_pack("{s:s}", "role", op->role);

    ngx_http_parley_api_event_at(ar, ngx_http_parley_members_admit_logged,
                                 &op->ev);
}


static void
ngx_http_parley_members_admit_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_op_t  *op;

    op = (ngx_http_parley_members_op_t *) ar->event;
    op->i++;

    ngx_http_parley_members_admit_next(ar, res);
}


/*
 * Writes the conversation row back after membership changes: its event
 * sequence and its member count.  growing: the change added members, so
 * the count may not pass parley_api_max_members.
 */

void
ngx_http_parley_api_members_sync(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t event_seq, uint64_t count, ngx_uint_t growing,
    ngx_http_parley_api_step_pt done)
{
    ngx_http_parley_members_op_t  *op;

    if (growing && count > ar->conf->max_members) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "too_many_members", NULL,
                                           "a conversation holds at most %ui "
                                           "members", ar->conf->max_members);
        return;
    }

    op = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_members_op_t));
    if (op == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    op->done = done;
    ar->event = &op->ev;

    ngx_http_parley_api_sql(ar, ngx_http_parley_members_sync_done,
        "UPDATE conversations SET event_seq = %U, member_count = %U, "
        "updated_at = UTC_TIMESTAMP(3) WHERE tenant_id = %U AND id = %U",
        event_seq, count, ar->tenant_id, cid);
}


static void
ngx_http_parley_members_sync_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_op_t  *op;

    op = (ngx_http_parley_members_op_t *) ar->event;

    op->done(ar, res);
}


/*
 * The ids of a checked id array (borrowed from the body, which lives as
 * long as the request), with room for an outcome each.
 */

ngx_int_t
ngx_http_parley_api_members_ids(ngx_http_parley_api_req_t *ar, json_t *array,
    ngx_str_t **uids, ngx_uint_t *n, u_char **outcome)
{
    size_t   i;
    json_t  *e;

    *n = array ? json_array_size(array) : 0;

    *uids = ngx_pcalloc(ar->pool, (*n + 1) * sizeof(ngx_str_t));
    *outcome = ngx_pcalloc(ar->pool, *n + 1);

    if (*uids == NULL || *outcome == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    if (array) {
        json_array_foreach(array, i, e) {
            (*uids)[i].data = (u_char *) json_string_value(e);
            (*uids)[i].len = json_string_length(e);
        }
    }

    return NGX_OK;
}


/* ---- endpoints ----------------------------------------------------- */

static ngx_http_parley_members_ctx_t *
ngx_http_parley_members_ctx(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_members_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_members_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NULL;
    }

    if (ngx_http_parley_api_conversation_id(ar, 0, &ctx->cid) != NGX_OK) {
        return NULL;
    }

    if (ar->nparams > 1) {
        ctx->target = ngx_http_parley_api_param(ar, 1);

        if (ngx_http_parley_api_valid_id(&ctx->target) != NGX_OK) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "uid",
                                     "\"uid\" is not a valid user id");
            return NULL;
        }
    }

    ar->data = ctx;

    return ctx;
}


/* ---- list ---------------------------------------------------------- */

/*
 * Members page through user ids in byte order; the cursor is the last id
 * of a page, base64url.  state=active (the default), left, kicked, banned
 * or all; anything but the active members is for moderators and up.
 */

static void
ngx_http_parley_members_list(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                       state;
    ngx_http_parley_members_ctx_t  *ctx;

    ctx = ngx_http_parley_members_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    ctx->role = "active";

    if (ngx_http_parley_api_arg(ar, "state", &state) == NGX_OK) {
        if (ngx_http_parley_api_enum("active|left|kicked|banned|all",
                                     (const char *) state.data)
            < 0)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_parameter", "state",
                                     "state must be active, left, kicked, "
                                     "banned or all");
            return;
        }

        /* a decoded argument is NUL-terminated request memory */
        ctx->role = (const char *) state.data;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_members_list_access);
}


static void
ngx_http_parley_members_list_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_str_t                       after;
    ngx_uint_t                      all;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    if (!ngx_http_parley_api_role_at_least(&ctx->acc,
                                           NGX_PARLEY_ROLE_PARTICIPANT))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "not_member", NULL,
                                 "only members see the members");
        return;
    }

    if (ngx_strcmp(ctx->role, "active") != 0
        && !ngx_http_parley_api_role_at_least(&ctx->acc,
                                              NGX_PARLEY_ROLE_MODERATOR))
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "forbidden", "state",
                                 "former and banned members are listed for "
                                 "moderators only");
        return;
    }

    if (ngx_http_parley_api_arg_string_cursor(ar, &after) != NGX_OK) {
        return;
    }

    all = (ngx_strcmp(ctx->role, "all") == 0);

    ngx_http_parley_api_sql(ar, ngx_http_parley_members_listed,
        "SELECT " NGX_PARLEY_MEMBER_COLUMNS " FROM members "
        "WHERE tenant_id = %U AND conversation_id = %U AND user_id > %L "
        "AND (%U OR state = %Q) ORDER BY user_id LIMIT %U",
        ar->tenant_id, ctx->cid, &after, (uint64_t) all, ctx->role,
        (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_members_listed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                         *items, *next, *body;
    MYSQL_ROW                       row;
    ngx_uint_t                      n;
    unsigned long                  *len, last_len;
    char                            last[NGX_PARLEY_ID_MAX + 1];
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

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

        json_array_append_new(items, ngx_http_parley_members_row(row, len));
        last_len = ngx_min(len[0], NGX_PARLEY_ID_MAX);
        ngx_memcpy(last, row[0], last_len);
        n++;
    }

    body = json_pack("{s:o,s:o}", "members", items, "next_cursor", next);
    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- add ----------------------------------------------------------- */

static void
ngx_http_parley_members_add(ngx_http_parley_api_req_t *ar)
{
    json_t                         *ids;
    ngx_str_t                       role;
    ngx_http_parley_members_ctx_t  *ctx;

    if (ngx_http_parley_api_check_body(ar, ngx_http_parley_members_add_fields)
        != NGX_OK)
    {
        return;
    }

    ctx = ngx_http_parley_members_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ids = json_object_get(ar->body, "user_ids");

    if (json_array_size(ids) > ar->conf->max_members) {
        ngx_http_parley_api_fail(ar, 422, "invalid_length", "user_ids",
                                 "\"user_ids\" must hold 1 to %ui ids",
                                 ar->conf->max_members);
        return;
    }

    if (ngx_http_parley_api_members_ids(ar, ids, &ctx->uids, &ctx->nuids,
                                        &ctx->outcome)
        != NGX_OK)
    {
        return;
    }

    ctx->role = ngx_http_parley_api_str(ar->body, "role", &role)
                ? (const char *) role.data : "participant";

    ngx_http_parley_api_begin(ar, ngx_http_parley_members_add_txn);
}


static void
ngx_http_parley_members_add_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_members_add_access);
}


static void
ngx_http_parley_members_add_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_uint_t                      need;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    if (ctx->acc.direct) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "direct_conversation", NULL,
                                           "a direct conversation never "
                                           "gains members");
        return;
    }

    need = ngx_strcmp(ctx->acc.access_mode, "public") == 0
           ? NGX_PARLEY_ROLE_MODERATOR : NGX_PARLEY_ROLE_ADMIN;

    if (!ngx_http_parley_api_role_at_least(&ctx->acc, need)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", NULL,
                                           "adding members here needs the "
                                           "%s role", need
                                           == NGX_PARLEY_ROLE_ADMIN
                                           ? "admin" : "moderator");
        return;
    }

    /* a role given with the members: as in PATCH .../members/{uid} */
    if ((ngx_strcmp(ctx->role, "moderator") == 0
         && !ngx_http_parley_api_role_at_least(&ctx->acc,
                                               NGX_PARLEY_ROLE_ADMIN))
        || (ngx_strcmp(ctx->role, "admin") == 0
            && !ngx_http_parley_api_role_at_least(&ctx->acc,
                                                  NGX_PARLEY_ROLE_OWNER)))
    {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", "role",
                                           "your role cannot grant \"%s\"",
                                           ctx->role);
        return;
    }

    ctx->event_seq = ctx->acc.event_seq;
    ctx->count = ctx->acc.member_count;

    ngx_http_parley_api_members_admit(ar, ctx->cid, ctx->acc.last_seq,
                                      &ctx->event_seq, &ctx->count, ctx->uids,
                                      ctx->nuids, ctx->outcome, "user_ids",
                                      ctx->role, "member.added",
                                      ngx_http_parley_members_add_sync);
}


static void
ngx_http_parley_members_add_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_members_sync(ar, ctx->cid, ctx->event_seq,
                                     ctx->count, 1,
                                     ngx_http_parley_members_add_commit);
}


static void
ngx_http_parley_members_add_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_members_add_done);
}


static void
ngx_http_parley_members_add_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                         *added, *already, *body;
    ngx_uint_t                      i;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    added = json_array();
    already = json_array();

    for (i = 0; i < ctx->nuids; i++) {
        json_array_append_new(ctx->outcome[i] == NGX_PARLEY_MEMBER_ADDED
                              ? added : already,
                              json_stringn((char *) ctx->uids[i].data,
                                           ctx->uids[i].len));
    }

    body = json_pack("{s:o,s:o,s:I}", "added", added,
                     "already_members", already,
                     "member_count", (json_int_t) ctx->count);

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


/* ---- kick, ban, unban, role: one chain, four rules ----------------- */

static void
ngx_http_parley_members_kick(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_members_target(ar, NGX_PARLEY_MEMBER_KICK, 0);
}


static void
ngx_http_parley_members_ban(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_members_target(ar, NGX_PARLEY_MEMBER_BAN, 0);
}


static void
ngx_http_parley_members_unban(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_members_target(ar, NGX_PARLEY_MEMBER_UNBAN, 0);
}


static void
ngx_http_parley_members_set_role(ngx_http_parley_api_req_t *ar)
{
    ngx_int_t  role;
    ngx_str_t  s;

    if (ngx_http_parley_api_check_body(ar,
                                       ngx_http_parley_members_role_fields)
        != NGX_OK)
    {
        return;
    }

    ngx_http_parley_api_str(ar->body, "role", &s);
    role = ngx_http_parley_api_role_parse((const char *) s.data);

    if (role == NGX_PARLEY_ROLE_OWNER) {
        ngx_http_parley_api_fail(ar, 422, "invalid_value", "role",
                                 "the owner changes only by "
                                 "POST /v1/conversations/{cid}/transfer");
        return;
    }

    ngx_http_parley_members_target(ar, NGX_PARLEY_MEMBER_ROLE,
                                   (ngx_uint_t) role);
}


static void
ngx_http_parley_members_target(ngx_http_parley_api_req_t *ar,
    ngx_uint_t action, ngx_uint_t new_role)
{
    ngx_http_parley_members_ctx_t  *ctx;

    ctx = ngx_http_parley_members_ctx(ar);
    if (ctx == NULL) {
        return;
    }

    ctx->action = action;
    ctx->new_role = new_role;

    ngx_http_parley_api_begin(ar, ngx_http_parley_members_act_txn);
}


static void
ngx_http_parley_members_act_txn(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 1,
                               ngx_http_parley_members_act_access);
}


static void
ngx_http_parley_members_act_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_uint_t                      need;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    if (ctx->acc.direct) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_CONFLICT,
                                           "direct_conversation", NULL,
                                           "the members of a direct "
                                           "conversation do not change");
        return;
    }

    need = ctx->action == NGX_PARLEY_MEMBER_ROLE ? NGX_PARLEY_ROLE_ADMIN
                                                 : NGX_PARLEY_ROLE_MODERATOR;

    if (!ngx_http_parley_api_role_at_least(&ctx->acc, need)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", NULL,
                                           "this needs the %s role",
                                           ngx_http_parley_api_role_name(
                                               need));
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_target,
        "SELECT u.status, m.role, m.state FROM users u LEFT JOIN members m "
        "ON m.tenant_id = u.tenant_id AND m.conversation_id = %U "
        "AND m.user_id = u.user_id "
        "WHERE u.tenant_id = %U AND u.user_id = %L FOR UPDATE",
        ctx->cid, ar->tenant_id, &ctx->target);
}


static void
ngx_http_parley_members_act_target(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    uint64_t                        seq;
    ngx_int_t                       i;
    MYSQL_ROW                       row;
    ngx_uint_t                      role, active;
    ngx_http_parley_access_t       *acc;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    acc = &ctx->acc;
    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL || ngx_strcmp(row[0], "deleted") == 0) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                           "user_not_found", "uid",
                                           "no user \"%V\"", &ctx->target);
        return;
    }

    ctx->target_row = (row[2] != NULL);
    i = row[1] ? ngx_http_parley_api_role_parse(row[1]) : NGX_ERROR;
    ctx->target_role = i == NGX_ERROR ? NGX_PARLEY_ROLE_PARTICIPANT
                                      : (ngx_uint_t) i;
    i = row[2] ? ngx_http_parley_api_enum("active|left|kicked|banned",
                                          row[2])
               : -1;
    ctx->target_state = i < 0 ? NGX_PARLEY_STATE_NONE : (ngx_uint_t) i + 1;
    active = (ctx->target_state == NGX_PARLEY_STATE_ACTIVE);

    /* a role counts only while its holder is an active member */
    role = active ? ctx->target_role : NGX_PARLEY_ROLE_PARTICIPANT;

    switch (ctx->action) {

    case NGX_PARLEY_MEMBER_KICK:
    case NGX_PARLEY_MEMBER_ROLE:
        if (!active) {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                               "member_not_found", "uid",
                                               "\"%V\" is not a member",
                                               &ctx->target);
            return;
        }
        break;

    case NGX_PARLEY_MEMBER_BAN:
        if (ctx->target_state == NGX_PARLEY_STATE_BANNED) {
            /* banned already: nothing changes, no event */
            ngx_http_parley_api_rollback(ar, ngx_http_parley_members_act_done);
            return;
        }
        break;

    default: /* NGX_PARLEY_MEMBER_UNBAN */
        if (ctx->target_state != NGX_PARLEY_STATE_BANNED) {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_NOT_FOUND,
                                               "ban_not_found", "uid",
                                               "\"%V\" is not banned",
                                               &ctx->target);
            return;
        }
        break;
    }

    if (role == NGX_PARLEY_ROLE_OWNER) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", "uid",
                                           "nobody acts on the owner; the "
                                           "owner may transfer ownership");
        return;
    }

    if (ctx->action == NGX_PARLEY_MEMBER_ROLE) {
        /* only the owner makes admins or changes an admin's role */
        if ((ctx->new_role == NGX_PARLEY_ROLE_ADMIN
             || role == NGX_PARLEY_ROLE_ADMIN)
            && !ngx_http_parley_api_role_at_least(acc, NGX_PARLEY_ROLE_OWNER))
        {
            ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                               "forbidden", "role",
                                               "only the owner makes or "
                                               "unmakes admins");
            return;
        }

        if (ctx->new_role == role) {
            ngx_http_parley_api_rollback(ar, ngx_http_parley_members_act_done);
            return;
        }

    } else if (!ngx_http_parley_members_outranks(acc, role)) {
        ngx_http_parley_api_refuse(ar, NGX_HTTP_FORBIDDEN,
                                           "forbidden", "uid",
                                           "a %s cannot act on a %s",
                                           ngx_http_parley_api_role_name(
                                               acc->tenant_admin
                                               ? NGX_PARLEY_ROLE_OWNER
                                               : acc->state
                                                 == NGX_PARLEY_STATE_ACTIVE
                                                 ? acc->role
                                                 : NGX_PARLEY_ROLE_NONE),
                                           ngx_http_parley_api_role_name(
                                               role));
        return;
    }

    seq = acc->event_seq + 1;
    ctx->event_seq = seq;

    switch (ctx->action) {

    case NGX_PARLEY_MEMBER_KICK:
        ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_event,
            "UPDATE members SET state = 'kicked', left_event = %U, "
            "updated_at = UTC_TIMESTAMP(3) WHERE tenant_id = %U "
            "AND conversation_id = %U AND user_id = %L",
            seq, ar->tenant_id, ctx->cid, &ctx->target);
        return;

    case NGX_PARLEY_MEMBER_ROLE:
        ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_event,
            "UPDATE members SET role = %Q, updated_at = UTC_TIMESTAMP(3) "
            "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L",
            ngx_http_parley_api_role_name(ctx->new_role), ar->tenant_id,
            ctx->cid, &ctx->target);
        return;

    case NGX_PARLEY_MEMBER_UNBAN:
        /* back to a former member: may join or be added again */
        ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_event,
            "UPDATE members SET state = 'left', updated_at = UTC_TIMESTAMP(3) "
            "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L",
            ar->tenant_id, ctx->cid, &ctx->target);
        return;
    }

    /* ban: the banned lose their role; a member's reading ends here */

    if (active) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_event,
            "UPDATE members SET state = 'banned', role = 'participant', "
            "left_event = %U, updated_at = UTC_TIMESTAMP(3) "
            "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L",
            seq, ar->tenant_id, ctx->cid, &ctx->target);
        return;
    }

    if (ctx->target_row) {
        ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_event,
            "UPDATE members SET state = 'banned', role = 'participant', "
            "updated_at = UTC_TIMESTAMP(3) "
            "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L",
            ar->tenant_id, ctx->cid, &ctx->target);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_members_act_event,
        "INSERT INTO members (tenant_id, conversation_id, user_id, role, "
        "state, joined_seq, joined_event, left_event, delivered_seq, "
        "read_seq, last_activity_at, created_at, updated_at) VALUES "
        "(%U, %U, %L, 'participant', 'banned', %U, %U, %U, %U, %U, "
        "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))",
        ar->tenant_id, ctx->cid, &ctx->target, acc->last_seq, seq, seq,
        acc->last_seq, acc->last_seq);
}


static void
ngx_http_parley_members_act_event(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    ctx->ev.conversation_id = ctx->cid;
    ctx->ev.event_seq = ctx->event_seq;
    ctx->ev.subject = ctx->target;
    ctx->ev.message_seq = 0;

    switch (ctx->action) {

    case NGX_PARLEY_MEMBER_KICK:
        ctx->ev.type = "member.kicked";
        ctx->ev.payload = json_pack("{s:s}", "previous_role",
                                    ngx_http_parley_api_role_name(
                                        ctx->target_role));
        break;

    case NGX_PARLEY_MEMBER_BAN:
        ctx->ev.type = "member.banned";
        ctx->ev.payload = json_pack("{s:b}", "was_member",
                                    ctx->target_state
                                    == NGX_PARLEY_STATE_ACTIVE);
        break;

    case NGX_PARLEY_MEMBER_UNBAN:
        ctx->ev.type = "member.unbanned";
        ctx->ev.payload = json_object();
        break;

    default: /* NGX_PARLEY_MEMBER_ROLE */
        ctx->ev.type = "member.role_changed";
        ctx->ev.payload = json_pack("{s:s,s:s}",
                                    "role",
                                    ngx_http_parley_api_role_name(
                                        ctx->new_role),
                                    "previous_role",
                                    ngx_http_parley_api_role_name(
                                        ctx->target_role));
        break;
    }

    ngx_http_parley_api_event_at(ar, ngx_http_parley_members_act_sync,
                                 &ctx->ev);
}


static void
ngx_http_parley_members_act_sync(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    uint64_t                        count;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    /* a kick, or a ban of an active member, ends one membership */
    count = ctx->acc.member_count;

    if ((ctx->action == NGX_PARLEY_MEMBER_KICK
         || ctx->action == NGX_PARLEY_MEMBER_BAN)
        && ctx->target_state == NGX_PARLEY_STATE_ACTIVE && count > 0)
    {
        count--;
    }

    ngx_http_parley_api_members_sync(ar, ctx->cid, ctx->event_seq, count, 0,
                                     ngx_http_parley_members_act_commit);
}


static void
ngx_http_parley_members_act_commit(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_api_commit(ar, ngx_http_parley_members_act_done);
}


static void
ngx_http_parley_members_act_done(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    if (ctx->action != NGX_PARLEY_MEMBER_ROLE) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    ngx_http_parley_api_sql(ar, ngx_http_parley_members_render,
        "SELECT " NGX_PARLEY_MEMBER_COLUMNS " FROM members "
        "WHERE tenant_id = %U AND conversation_id = %U AND user_id = %L",
        ar->tenant_id, ctx->cid, &ctx->target);
}


static void
ngx_http_parley_members_render(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                       row;
    ngx_http_parley_members_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND, "member_not_found",
                                 "uid", "\"%V\" is not a member",
                                 &ctx->target);
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK,
                              ngx_http_parley_members_row(row,
                                               mysql_fetch_lengths(res->res)));
}


/* moderator and up, and strictly above the target; never the owner */

static ngx_uint_t
ngx_http_parley_members_outranks(ngx_http_parley_access_t *acc,
    ngx_uint_t role)
{
    if (role >= NGX_PARLEY_ROLE_OWNER) {
        return 0;
    }

    if (acc->tenant_admin) {
        return 1;
    }

    return acc->state == NGX_PARLEY_STATE_ACTIVE
           && acc->role >= NGX_PARLEY_ROLE_MODERATOR && acc->role > role;
}


/* members.created_at is the time of the latest (re)join */

static json_t *
ngx_http_parley_members_row(MYSQL_ROW row, unsigned long *len)
{
    return json_pack("{s:o,s:o,s:o,s:o,s:o}",
                     "user_id", ngx_http_parley_api_col_string(row, len, 0),
                     "role", ngx_http_parley_api_col_string(row, len, 1),
                     "state", ngx_http_parley_api_col_string(row, len, 2),
                     "joined_at", ngx_http_parley_api_col_time(row, len, 3),
                     "updated_at", ngx_http_parley_api_col_time(row, len, 4));
}
