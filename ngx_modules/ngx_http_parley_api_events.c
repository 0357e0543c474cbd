
/*
 * A conversation's event log, by number.
 *
 *   GET /v1/conversations/{cid}/events?after=N&limit=L    (key, user)
 *
 * The entries with event_seq > after, ascending, at most limit of them,
 * rendered exactly as GET /v1/sync gives them: what a WebSocket client
 * asks for when the gateway says it could not replay a range.
 *
 * A user reads the part of the log its membership covers, the range sync
 * delivers (lib/parley_sync_state.h): from its joined event on and, once
 * it is no longer an active member (left, kicked, banned), up to its
 * removal event; re-joined, from the new joining on.  A user that never
 * was a member (also one banned without ever being one) reads nothing and
 * is refused as history refuses non-members.  The tenant's API key reads
 * the whole log.
 *
 * Two statements, no transaction: the access row gives the conversation's
 * event_seq, and the fetch stays at or below it.  The counter moves in the
 * transaction that writes the entry, so everything up to it is committed:
 * a page never skips an entry that commits later.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_id.h"
#include "parley_sync_state.h"


typedef struct {
    uint64_t                     cid;
    uint64_t                     after;
    ngx_uint_t                   limit;
    uint64_t                     last;       /* last readable event */
    ngx_http_parley_access_t     acc;
} ngx_http_parley_events_ctx_t;


static void ngx_http_parley_events_list(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_events_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_events_fetched(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_events_reply(ngx_http_parley_api_req_t *ar,
    json_t *events, json_t *next);


ngx_http_parley_api_route_t  ngx_http_parley_api_events_routes[] = {

    { NGX_HTTP_GET, "/v1/conversations/{cid}/events",
      NGX_PARLEY_AUTH_ADMIN|NGX_PARLEY_AUTH_USER,
      ngx_http_parley_events_list, "listConversationEvents", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static void
ngx_http_parley_events_list(ngx_http_parley_api_req_t *ar)
{
    ngx_str_t                      v;
    ngx_http_parley_events_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_events_ctx_t));
    if (ctx == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ar->data = ctx;

    if (ngx_http_parley_api_conversation_id(ar, 0, &ctx->cid) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    ctx->after = 0;

    if (ngx_http_parley_api_arg(ar, "after", &v) == NGX_OK
        && parley_id_parse((const char *) v.data, v.len, &ctx->after) != 0)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                 "invalid_parameter", "after",
                                 "\"after\" must be an event number "
                                 "(0 or more)");
        return;
    }

    ngx_http_parley_api_access(ar, &ctx->acc, ctx->cid, 0,
                               ngx_http_parley_events_access);
}


static void
ngx_http_parley_events_access(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    parley_sync_pos_t              pos;
    parley_sync_range_t            r;
    parley_sync_member_t           m;
    ngx_http_parley_events_ctx_t  *ctx = ar->data;

    ngx_memzero(&m, sizeof(parley_sync_member_t));
    m.conversation_id = ctx->cid;
    m.event_seq = ctx->acc.event_seq;

    if (ctx->acc.tenant_admin) {
        /* the whole log */
        m.active = 1;

    } else {
        /*
         * Never a member: no row, or the row of a ban (perhaps lifted
         * since) of someone who was not one, joined_event = left_event.
         */
        if (ctx->acc.state == NGX_PARLEY_STATE_NONE
            || (ctx->acc.state != NGX_PARLEY_STATE_ACTIVE
                && ctx->acc.left_event != 0
                && ctx->acc.left_event == ctx->acc.joined_event))
        {
            if (ctx->acc.state == NGX_PARLEY_STATE_BANNED) {
                ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "banned",
                                         NULL, "you are banned from "
                                         "conversation %uL", ctx->cid);
                return;
            }

            ngx_http_parley_api_fail(ar, NGX_HTTP_FORBIDDEN, "not_member",
                                     NULL, "you are not a member of "
                                     "conversation %uL", ctx->cid);
            return;
        }

        m.active = (ctx->acc.state == NGX_PARLEY_STATE_ACTIVE);
        m.joined_event = ctx->acc.joined_event;
        m.left_event = ctx->acc.left_event;
    }

    /* the range sync would deliver to a device positioned at after */
    pos.conversation_id = ctx->cid;
    pos.event_seq = ctx->after;

    parley_sync_range(&m, &pos, ctx->limit, &r);

    ctx->last = parley_sync_now(&m);

    if (!parley_sync_pending(&r)) {
        ngx_http_parley_events_reply(ar, json_array(), json_null());
        return;
    }

    /* one more row than asked for says whether a next page exists */
    ngx_http_parley_api_sql(ar, ngx_http_parley_events_fetched,
        "SELECT " NGX_PARLEY_EVENT_COLUMNS " FROM " NGX_PARLEY_EVENT_FROM
        " WHERE e.tenant_id = %U AND e.conversation_id = %U "
        "AND e.event_seq > %U AND e.event_seq <= %U "
        "ORDER BY e.event_seq LIMIT %U",
        ar->tenant_id, ctx->cid, r.from - 1, r.to,
        (uint64_t) ctx->limit + 1);
}


static void
ngx_http_parley_events_fetched(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    json_t                        *events, *item, *next;
    uint64_t                       last;
    MYSQL_ROW                      row;
    ngx_uint_t                     n;
    ngx_http_parley_events_ctx_t  *ctx = ar->data;

    events = json_array();
    next = json_null();
    last = 0;

    if (events == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    for (n = 0; res->res && (row = mysql_fetch_row(res->res)); n++) {

        if (n == ctx->limit) {
            next = json_integer((json_int_t) last);
            break;
        }

        item = ngx_http_parley_api_event_json(row,
                                              mysql_fetch_lengths(res->res));

        if (item == NULL || json_array_append_new(events, item) != 0) {
            json_decref(events);
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        last = ngx_http_parley_api_col_u64(row, 1);
    }

    ngx_http_parley_events_reply(ar, events, next);
}


/* steals events and next */

static void
ngx_http_parley_events_reply(ngx_http_parley_api_req_t *ar, json_t *events,
    json_t *next)
{
    json_t                        *body;
    ngx_http_parley_events_ctx_t  *ctx = ar->data;

    body = json_pack("{s:o,s:o,s:I}",
                     "events", events,
                     "next_after", next,
                     "event_seq", (json_int_t) ctx->last);

    if (body == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}
