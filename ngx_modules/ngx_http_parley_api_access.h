
/*
 * Conversation access and the event log (ngx_http_parley_api_access.c).
 */


#ifndef _NGX_HTTP_PARLEY_API_ACCESS_H_INCLUDED_
#define _NGX_HTTP_PARLEY_API_ACCESS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_json.h"
#include "parley_id.h"


/* ordered: a role includes the powers of those below it */
#define NGX_PARLEY_ROLE_NONE         0
#define NGX_PARLEY_ROLE_PARTICIPANT  1
#define NGX_PARLEY_ROLE_MODERATOR    2
#define NGX_PARLEY_ROLE_ADMIN        3
#define NGX_PARLEY_ROLE_OWNER        4

#define NGX_PARLEY_STATE_NONE        0   /* never a member */
#define NGX_PARLEY_STATE_ACTIVE      1
#define NGX_PARLEY_STATE_LEFT        2
#define NGX_PARLEY_STATE_KICKED      3
#define NGX_PARLEY_STATE_BANNED      4


struct ngx_http_parley_access_s {
    uint64_t                   conversation_id;
    ngx_uint_t                 direct;         /* kind 'direct' */
    char                       access_mode[16]; /* public|private|password */
    uint64_t                   last_seq;
    uint64_t                   event_seq;
    uint64_t                   member_count;

    /* the caller's membership (role/state NONE when it has none) */
    ngx_uint_t                 role;
    ngx_uint_t                 state;
    uint64_t                   joined_seq;
    uint64_t                   delivered_seq;
    uint64_t                   read_seq;
    uint64_t                   joined_event;
    uint64_t                   left_event;
    ngx_uint_t                 tenant_admin;   /* API key, no user */

    ngx_http_parley_api_step_pt  next;
};


struct ngx_http_parley_event_s {
    uint64_t                   conversation_id;
    uint64_t                   event_seq;      /* set by _event, or given */
    const char                *type;           /* "message.new", ... */
    ngx_str_t                  subject;        /* user acted on, or null */
    uint64_t                   message_seq;    /* 0: none */
    json_t                    *payload;        /* stolen; NULL: {} */
    ngx_http_parley_api_step_pt  next;
};


/* The {cid} path parameter at position param; answers 400 if invalid. */
ngx_int_t ngx_http_parley_api_conversation_id(ngx_http_parley_api_req_t *ar,
    ngx_uint_t param, uint64_t *id);

/*
 * Loads the conversation and the caller's membership into *acc (request
 * memory), locking the conversation row when for_update (inside a
 * transaction), then calls next; answers 404 itself when the conversation
 * does not exist in the caller's tenant.
 */
void ngx_http_parley_api_access(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_access_t *acc, uint64_t conversation_id,
    ngx_uint_t for_update, ngx_http_parley_api_step_pt next);

ngx_uint_t ngx_http_parley_api_is_member(ngx_http_parley_access_t *acc);

/* An active member with at least this role, or the tenant's API key. */
ngx_uint_t ngx_http_parley_api_role_at_least(ngx_http_parley_access_t *acc,
    ngx_uint_t role);

const char *ngx_http_parley_api_role_name(ngx_uint_t role);
ngx_int_t ngx_http_parley_api_role_parse(const char *s);

/*
 * Inside a transaction: advances the conversation's event sequence, writes
 * the event to its log and its envelope to the outbox, then calls next;
 * ev->event_seq then holds the event's number.  ev must live in request
 * memory until next runs.
 */
void ngx_http_parley_api_event(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, ngx_http_parley_event_t *ev);

/* As above when the caller already advanced event_seq (message sends). */
void ngx_http_parley_api_event_at(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, ngx_http_parley_event_t *ev);

/*
 * Reading the event log: SELECT NGX_PARLEY_EVENT_COLUMNS FROM
 * NGX_PARLEY_EVENT_FROM WHERE e.tenant_id = ... gives rows that
 * ngx_http_parley_api_event_json renders as sync and the WebSocket gateway
 * show them (a deleted message's earlier events lose their content).
 */
#define NGX_PARLEY_EVENT_COLUMNS                                              \
    "e.conversation_id, e.event_seq, e.type, e.actor_id, e.subject_id, "     \
    "e.message_seq, e.payload, e.created_at, msg.deleted_at"
#define NGX_PARLEY_EVENT_FROM                                                 \
    "conversation_events e LEFT JOIN messages msg "                          \
    "ON msg.tenant_id = e.tenant_id "                                        \
    "AND msg.conversation_id = e.conversation_id "                           \
    "AND msg.seq = e.message_seq"

json_t *ngx_http_parley_api_event_json(MYSQL_ROW row, unsigned long *len);

/* Decimal text of v in request memory ("NULL" if out of memory). */
const char *ngx_http_parley_api_u64_text(ngx_http_parley_api_req_t *ar,
    uint64_t v);


/*
 * The membership engine (ngx_http_parley_api_members.c), shared by
 * conversation creation and the member endpoints: admit users (one event
 * each), keep member_count and the event sequence in step, refuse with a
 * rollback (ngx_http_parley_api_refuse).
 */
void ngx_http_parley_api_members_admit(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t last_seq, uint64_t *event_seq, uint64_t *count,
    ngx_str_t *uids, ngx_uint_t n, u_char *outcome, const char *field,
    const char *role, const char *type, ngx_http_parley_api_step_pt done);
void ngx_http_parley_api_members_sync(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t event_seq, uint64_t count, ngx_uint_t growing,
    ngx_http_parley_api_step_pt done);
ngx_int_t ngx_http_parley_api_members_ids(ngx_http_parley_api_req_t *ar,
    json_t *array, ngx_str_t **uids, ngx_uint_t *n, u_char **outcome);


#endif /* _NGX_HTTP_PARLEY_API_ACCESS_H_INCLUDED_ */
