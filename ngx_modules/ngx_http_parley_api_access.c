
/*
 * What every conversation endpoint needs first: the conversation (of the
 * caller's tenant only -- another tenant's conversation is "not found")
 * and the caller's membership in it; and, for every change, the event that
 * records it in the conversation's log and in the outbox.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"


static void ngx_http_parley_api_access_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_api_event_advanced(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_api_event_seq(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_api_event_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);


static const char  *ngx_http_parley_roles = "participant|moderator|admin|owner";
static const char  *ngx_http_parley_states = "active|left|kicked|banned";


ngx_int_t
ngx_http_parley_api_conversation_id(ngx_http_parley_api_req_t *ar,
    ngx_uint_t param, uint64_t *id)
{
    ngx_str_t  s;

    s = ngx_http_parley_api_param(ar, param);

    if (parley_id_parse((const char *) s.data, s.len, id) != 0 || *id == 0) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                 "invalid_parameter", "cid",
                                 "\"cid\" is not a conversation id");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_parley_api_access(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_access_t *acc, uint64_t conversation_id,
    ngx_uint_t for_update, ngx_http_parley_api_step_pt next)
{
    ngx_str_t  none = ngx_string("");

    ngx_memzero(acc, sizeof(ngx_http_parley_access_t));
    acc->conversation_id = conversation_id;
    acc->next = next;
    ar->access = acc;

    /* an admin call has no user: no membership row will match '' */
    ngx_http_parley_api_sql(ar, ngx_http_parley_api_access_row,
        "SELECT c.kind, c.access, c.last_seq, c.event_seq, c.member_count, "
        "m.role, m.state, m.joined_seq, m.delivered_seq, m.read_seq, "
        "m.joined_event, m.left_event, c.created_by "
        "FROM conversations c LEFT JOIN members m "
        "ON m.tenant_id = c.tenant_id AND m.conversation_id = c.id "
        "AND m.user_id = %L "
        "WHERE c.tenant_id = %U AND c.id = %U AND c.deleted_at IS NULL%S",
        ar->user_id.len ? &ar->user_id : &none, ar->tenant_id,
        conversation_id, for_update ? " FOR UPDATE" : "");
}


static void
ngx_http_parley_api_access_row(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                  row;
    ngx_int_t                  i;
    ngx_http_parley_access_t  *acc;

    acc = ar->access;
    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND,
                                 "conversation_not_found", "cid",
                                 "no conversation %uL", acc->conversation_id);
        return;
    }

    acc->direct = (ngx_strcmp(row[0], "direct") == 0);
    ngx_cpystrn((u_char *) acc->access_mode, (u_char *) row[1],
                sizeof(acc->access_mode));
    acc->last_seq = ngx_http_parley_api_col_u64(row, 2);
    acc->event_seq = ngx_http_parley_api_col_u64(row, 3);
    acc->member_count = ngx_http_parley_api_col_u64(row, 4);

    acc->role = NGX_PARLEY_ROLE_NONE;
    acc->state = NGX_PARLEY_STATE_NONE;

    if (row[5]) {
        i = ngx_http_parley_api_enum(ngx_http_parley_roles, row[5]);
        acc->role = (i < 0) ? NGX_PARLEY_ROLE_NONE : (ngx_uint_t) i + 1;
        i = ngx_http_parley_api_enum(ngx_http_parley_states, row[6]);
        acc->state = (i < 0) ? NGX_PARLEY_STATE_NONE : (ngx_uint_t) i + 1;
        acc->joined_seq = ngx_http_parley_api_col_u64(row, 7);
        acc->delivered_seq = ngx_http_parley_api_col_u64(row, 8);
        acc->read_seq = ngx_http_parley_api_col_u64(row, 9);
        acc->joined_event = ngx_http_parley_api_col_u64(row, 10);
        acc->left_event = ngx_http_parley_api_col_u64(row, 11);
    }

    /* the tenant's API key without X-Parley-User administers everything */
    acc->tenant_admin = (ar->auth == NGX_PARLEY_AUTH_ADMIN);

    acc->next(ar, res);
}


ngx_uint_t
ngx_http_parley_api_is_member(ngx_http_parley_access_t *acc)
{
    return acc->state == NGX_PARLEY_STATE_ACTIVE;
}


ngx_uint_t
ngx_http_parley_api_role_at_least(ngx_http_parley_access_t *acc,
    ngx_uint_t role)
{
    return acc->tenant_admin
           || (acc->state == NGX_PARLEY_STATE_ACTIVE && acc->role >= role);
}


const char *
ngx_http_parley_api_role_name(ngx_uint_t role)
{
    static const char  *names[] = {
        "none", "participant", "moderator", "admin", "owner"
    };

    return role <= NGX_PARLEY_ROLE_OWNER ? names[role] : "none";
}


ngx_int_t
ngx_http_parley_api_role_parse(const char *s)
{
    ngx_int_t  i;

    i = ngx_http_parley_api_enum(ngx_http_parley_roles, s);

    return i < 0 ? NGX_ERROR : i + 1;
}


/* ---- events -------------------------------------------------------- */

void
ngx_http_parley_api_event(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, ngx_http_parley_event_t *ev)
{
    ev->next = next;
    ar->event = ev;

    ngx_http_parley_api_sql(ar, ngx_http_parley_api_event_advanced,
        "UPDATE conversations SET event_seq = event_seq + 1 "
        "WHERE tenant_id = %U AND id = %U",
        ar->tenant_id, ev->conversation_id);
}


static void
ngx_http_parley_api_event_advanced(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_event_t  *ev = ar->event;

    ngx_http_parley_api_sql(ar, ngx_http_parley_api_event_seq,
        "SELECT event_seq FROM conversations WHERE tenant_id = %U AND id = %U",
        ar->tenant_id, ev->conversation_id);
}


static void
ngx_http_parley_api_event_seq(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    MYSQL_ROW                 row;
    ngx_http_parley_event_t  *ev = ar->event;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        json_decref(ev->payload);
        ev->payload = NULL;
        ngx_http_parley_api_fail(ar, NGX_HTTP_NOT_FOUND,
                                 "conversation_not_found", "cid",
                                 "no conversation %uL", ev->conversation_id);
        return;
    }

    ev->event_seq = ngx_http_parley_api_col_u64(row, 0);

    ngx_http_parley_api_event_at(ar, ev->next, ev);
}


void
ngx_http_parley_api_event_at(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, ngx_http_parley_event_t *ev)
{
    ngx_str_t   none = ngx_string("");
    ngx_str_t  *actor;

    ev->next = next;
    ar->event = ev;

    if (ev->payload == NULL) {
        ev->payload = json_object();
    }

    actor = ar->user_id.len ? &ar->user_id : &none;

    ngx_http_parley_api_sql(ar, ngx_http_parley_api_event_logged,
        "INSERT INTO conversation_events (tenant_id, conversation_id, "
        "event_seq, type, actor_id, subject_id, message_seq, payload, "
        "created_at) VALUES (%U, %U, %U, %Q, %L, %N, %S, %J, "
        "UTC_TIMESTAMP(3))",
        ar->tenant_id, ev->conversation_id, ev->event_seq, ev->type, actor,
        &ev->subject,
        ev->message_seq ? ngx_http_parley_api_u64_text(ar, ev->message_seq)
                        : "NULL",
        ev->payload);
}


static void
ngx_http_parley_api_event_logged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    u_char                   *p;
    json_t                   *data;
    ngx_str_t                 key;
    ngx_http_parley_event_t  *ev = ar->event;

    /* the envelope's data: the log entry as sync will show it */
    data = json_pack("{s:o,s:I,s:s,s:s%,s:O}",
                     "conversation_id",
                     ngx_http_parley_api_id_json(ev->conversation_id),
                     "event_seq", (json_int_t) ev->event_seq,
                     "type", ev->type,
                     "actor_id", ar->user_id.data ? (char *) ar->user_id.data
                                                  : "",
                     ar->user_id.len,
                     "payload", ev->payload);

    json_decref(ev->payload);
    ev->payload = NULL;

    if (data == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    if (ev->subject.data) {
        json_object_set_new(data, "subject_id",
                            json_stringn((char *) ev->subject.data,
                                         ev->subject.len));
    }

    if (ev->message_seq) {
        json_object_set_new(data, "message_seq",
                            json_integer((json_int_t) ev->message_seq));
    }

    p = ngx_pnalloc(ar->pool, NGX_INT64_LEN);
    if (p == NULL) {
        json_decref(data);
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    key.data = p;
    key.len = ngx_sprintf(p, "%uL", ev->conversation_id) - p;

    ngx_http_parley_api_publish_queue(ar, ev->conversation_id, ev->event_seq,
                                      ev->type, &ev->subject, data);

    ngx_http_parley_api_outbox(ar, ev->next,
                               ngx_strncmp(ev->type, "message.", 8) == 0
                               ? "parley.messages" : "parley.events",
                               &key, ev->type, data);
}


const char *
ngx_http_parley_api_u64_text(ngx_http_parley_api_req_t *ar, uint64_t v)
{
    u_char  *p;

    p = ngx_pnalloc(ar->pool, NGX_INT64_LEN + 1);
    if (p == NULL) {
        return "NULL";
    }

    *ngx_sprintf(p, "%uL", v) = '\0';

    return (const char *) p;
}
