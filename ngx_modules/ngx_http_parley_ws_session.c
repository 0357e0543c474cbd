
/*
 * The gateway's JSON protocol (docs/realtime.md): start and resume,
 * operations, transient events, presence.
 *
 * Start.  A connection subscribes to its user's channel, then reads its
 * memberships, subscribes to each conversation's channel, and only once
 * Redis confirmed every subscription reads the log from each starting
 * position.  In that order nothing can fall between the read and the live
 * stream: whatever commits after the read is published after the
 * subscription exists.  Entries that arrive while the read runs are held
 * by their subscriptions and flow, in order and without duplicates, once
 * the read is delivered.  A resume that would replay more than
 * parley_ws_resume_max entries stops at whole conversations and names the
 * ranges it skipped; the client reads them with
 * GET /v1/conversations/{cid}/events.
 *
 * Operations that change data run the REST API's own route handlers
 * (ngx_http_parley_api_invoke): same checks, same transaction, same
 * events; the answer comes back as an ack carrying the REST body.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_ws.h"
#include "ngx_http_parley_api_access.h"
#include "parley_json.h"
#include "parley_pubsub.h"
#include "parley_sync_state.h"


#define NGX_PARLEY_WS_REF_MAX        64
#define NGX_PARLEY_WS_POSITIONS_MAX  10000
#define NGX_PARLEY_WS_WATCH_MAX      1000
#define NGX_PARLEY_WS_WATCH_BATCH    100
#define NGX_PARLEY_WS_SIGNAL_MAX     4096
#define NGX_PARLEY_WS_TYPING_TTL     6000
#define NGX_PARLEY_WS_SEEN_KEEP      (30 * 86400 * 1000LL)
#define NGX_PARLEY_WS_CATCHUP_BATCH  500


typedef struct {
    uint64_t                         cid;
    uint64_t                         from;      /* given up to here */
    uint64_t                         until;     /* 0: open; else last */
    uint64_t                         current;   /* event_seq at the read */
    ngx_http_parley_ws_sub_t        *sub;       /* NULL: replay only */
    unsigned                         cut:1;     /* beyond the budget */
} ngx_http_parley_ws_member_t;


typedef struct {
    ngx_http_parley_ws_conn_t       *wc;
    ngx_pool_t                      *pool;
    ngx_http_parley_api_req_t       *ar;
    json_t                          *ref;
    ngx_uint_t                       resume;
    ngx_uint_t                       resync;    /* Redis came back */
    ngx_uint_t                       phase;
    parley_sync_pos_t               *pos;
    size_t                           npos;
    ngx_http_parley_ws_member_t     *m;
    ngx_uint_t                       nm;
    ngx_uint_t                       next;      /* catch-up progress */
    ngx_uint_t                       replayed;
    json_t                          *gaps;

    /* the batch being replayed, at the pace the client reads */
    MYSQL_RES                       *res;
    ngx_uint_t                       batch_start;
    ngx_uint_t                       batch_end;
    ngx_uint_t                       j;
    unsigned                         paused:1;
} ngx_http_parley_ws_start_t;

#define NGX_PARLEY_WS_PHASE_USER     1   /* waiting for the user channel */
#define NGX_PARLEY_WS_PHASE_MEMBERS  2   /* waiting for conversations */


typedef struct {
    ngx_queue_t                      link;      /* wc->ops */
    ngx_http_parley_ws_conn_t       *wc;
    ngx_pool_t                      *pool;
    json_t                          *ref;
    const char                      *op;
} ngx_http_parley_ws_op_t;


typedef struct {
    ngx_queue_t                      link;      /* wc->queries */
    ngx_http_parley_ws_conn_t       *wc;
    ngx_parley_redis_cmd_t          *cmd;
    size_t                           uid_len;
    u_char                           uid[1];
} ngx_http_parley_ws_query_t;


typedef struct {
    const char                      *name;
    ngx_uint_t                       method;
    ngx_uint_t                       seq;       /* needs "seq" */
    ngx_uint_t                       emoji;     /* needs "emoji" */
    const char                      *tail;      /* after /messages/<seq> or
                                                   the conversation */
} ngx_http_parley_ws_route_t;


static ngx_http_parley_ws_route_t  ngx_http_parley_ws_routes[] = {
    { "message.send",    NGX_HTTP_POST,   0, 0, "/messages" },
    { "message.edit",    NGX_HTTP_PATCH,  1, 0, "" },
    { "message.delete",  NGX_HTTP_DELETE, 1, 0, "" },
    { "reaction.add",    NGX_HTTP_PUT,    1, 1, "/reactions/" },
    { "reaction.remove", NGX_HTTP_DELETE, 1, 1, "/reactions/" },
    { "mark.delivered",  NGX_HTTP_POST,   0, 0, "/delivered" },
    { "mark.read",       NGX_HTTP_POST,   0, 0, "/read" },
    { NULL, 0, 0, 0, NULL }
};


static void ngx_http_parley_ws_error(ngx_http_parley_ws_conn_t *wc,
    json_t *ref, const char *op, const char *code, const char *fmt, ...);
static ngx_int_t ngx_http_parley_ws_cid(ngx_http_parley_ws_conn_t *wc,
    json_t *msg, json_t *ref, const char *op, uint64_t *cid);
static ngx_http_parley_ws_sub_t *ngx_http_parley_ws_find(
    ngx_http_parley_ws_conn_t *wc, uint64_t cid);
static ngx_int_t ngx_http_parley_ws_rate(ngx_http_parley_ws_conn_t *wc);

static void ngx_http_parley_ws_op_start(ngx_http_parley_ws_conn_t *wc,
    json_t *msg, json_t *ref, ngx_uint_t resume);
static ngx_int_t ngx_http_parley_ws_positions(ngx_http_parley_ws_start_t *st,
    json_t *positions);
static void ngx_http_parley_ws_start_cursor(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_ws_start_members(ngx_http_parley_ws_start_t *st);
static void ngx_http_parley_ws_start_loaded(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_ws_start_catchup(ngx_http_parley_ws_start_t *st);
static void ngx_http_parley_ws_start_replayed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_ws_replay(ngx_http_parley_ws_start_t *st);
static void ngx_http_parley_ws_start_done(ngx_http_parley_ws_start_t *st);
static void ngx_http_parley_ws_start_sink(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *body, size_t len);
static void ngx_http_parley_ws_start_free(ngx_http_parley_ws_start_t *st);

static void ngx_http_parley_ws_op_route(ngx_http_parley_ws_conn_t *wc,
    json_t *msg, json_t *ref, ngx_http_parley_ws_route_t *rt);
static void ngx_http_parley_ws_op_sink(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *body, size_t len);
static void ngx_http_parley_ws_op_typing(ngx_http_parley_ws_conn_t *wc,
    json_t *msg, json_t *ref, const char *op);
static void ngx_http_parley_ws_op_signal(ngx_http_parley_ws_conn_t *wc,
    json_t *msg, json_t *ref);
static void ngx_http_parley_ws_op_watch(ngx_http_parley_ws_conn_t *wc,
    json_t *msg, json_t *ref, ngx_uint_t on);
static ngx_int_t ngx_http_parley_ws_transmit(ngx_http_parley_ws_conn_t *wc,
    ngx_uint_t kind, uint64_t cid, const char *uid, size_t uid_len,
    json_t *body);

static void ngx_http_parley_ws_presence(ngx_http_parley_ws_conn_t *wc,
    ngx_uint_t online);
static void ngx_http_parley_ws_presence_query(ngx_http_parley_ws_conn_t *wc,
    ngx_str_t *uid);
static void ngx_http_parley_ws_presence_reply(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data);
static void ngx_http_parley_ws_redis_done(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data);
static void ngx_http_parley_ws_sweep(ngx_event_t *ev);
static u_char *ngx_http_parley_ws_presence_prefix(ngx_pool_t *pool,
    uint64_t tenant, ngx_str_t *uid, size_t *len);


static ngx_event_t                     ngx_http_parley_ws_sweep_ev;
static ngx_http_parley_ws_loc_conf_t  *ngx_http_parley_ws_sweep_conf;


/*
 * Presence lives in one sorted set per user: a member per connection,
 * scored by when it expires.  Connections refresh their score every ping
 * interval; a node that dies stops refreshing and its entries lapse.
 * Whoever finds a set empty (the last connection leaving, or a watcher's
 * sweep finding only lapsed entries) records last-seen and announces the
 * user offline, atomically, so exactly one announcement is made.
 *
 * KEYS: 1 conns, 2 presence channel, 3 seen.
 */

static const char  ngx_http_parley_ws_lua_online[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2]) "
    "local n = redis.call('ZCARD', KEYS[1]) "
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) "
    "redis.call('PEXPIRE', KEYS[1], ARGV[4]) "
    "if n == 0 then redis.call(ARGV[5], KEYS[2], ARGV[6]) end "
    "return n";

/* ARGV: 1 member, 2 now, 3 publish verb, 4 message prefix, 5 seen keep */
static const char  ngx_http_parley_ws_lua_offline[] =
    "redis.call('ZREM', KEYS[1], ARGV[1]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2]) "
    "if redis.call('ZCARD', KEYS[1]) > 0 then return 1 end "
    "redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[5]) "
    "redis.call(ARGV[3], KEYS[2], ARGV[4] .. ARGV[2] .. '}') "
    "return 0";

/* ARGV: 1 now, 2 ttl, 3 publish verb, 4 message prefix, 5 seen keep */
static const char  ngx_http_parley_ws_lua_sweep[] =
    "local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES') "
    "if #top == 0 then return 0 end "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) "
    "if redis.call('ZCARD', KEYS[1]) > 0 then return 1 end "
    "local seen = tostring(math.floor(tonumber(top[2]) - tonumber(ARGV[2]))) "
    "redis.call('SET', KEYS[3], seen, 'PX', ARGV[5]) "
    "redis.call(ARGV[3], KEYS[2], ARGV[4] .. seen .. '}') "
    "return 2";


/* ---- connection life ----------------------------------------------- */


void
ngx_http_parley_ws_session_open(ngx_http_parley_ws_conn_t *wc)
{
    json_t  *hello;

    ngx_queue_init(&wc->ops);
    ngx_queue_init(&wc->queries);

    if (ngx_http_parley_ws_sweep_conf == NULL) {
        ngx_http_parley_ws_sweep_conf = wc->conf;
        ngx_http_parley_ws_sweep_ev.handler = ngx_http_parley_ws_sweep;
        ngx_http_parley_ws_sweep_ev.log = ngx_cycle->log;
        ngx_http_parley_ws_sweep_ev.cancelable = 1;
        ngx_add_timer(&ngx_http_parley_ws_sweep_ev, wc->conf->presence_ttl / 3);
    }

    hello = json_pack("{s:s,s:s,s:o,s:I,s:s%,s:I,s:I,s:I,s:I,s:b}",
                      "type", "hello",
                      "protocol", "parley.v1",
                      "session_id", ngx_http_parley_api_id_json(wc->id),
                      "worker", (json_int_t) ngx_pid,
                      "user_id", (char *) wc->user_id.data, wc->user_id.len,
                      "heartbeat_ms", (json_int_t) wc->conf->ping_interval,
                      "max_message", (json_int_t) wc->conf->max_message,
                      "resume_max", (json_int_t) wc->conf->resume_max,
                      "token_expires_at", (json_int_t) wc->token_exp,
                      "deflate", wc->deflater != NULL);

    if (hello) {
        ngx_http_parley_ws_send_json(wc, hello);
    }
}


/* Everything the connection holds in the hub, the store and Redis goes. */

void
ngx_http_parley_ws_session_close(ngx_http_parley_ws_conn_t *wc)
{
    ngx_queue_t                 *q;
    ngx_http_parley_ws_op_t     *op;
    ngx_http_parley_ws_sub_t    *sub;
    ngx_http_parley_ws_query_t  *qr;

    if (wc->start) {
        ngx_http_parley_ws_start_free(wc->start);
    }

    while (!ngx_queue_empty(&wc->ops)) {
        q = ngx_queue_head(&wc->ops);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_http_parley_ws_op_t, link);
        json_decref(op->ref);
        /* cancels the store work and rolls back an open transaction */
        ngx_destroy_pool(op->pool);
    }

    wc->inflight = 0;

    while (!ngx_queue_empty(&wc->queries)) {
        q = ngx_queue_head(&wc->queries);
        ngx_queue_remove(q);
        qr = ngx_queue_data(q, ngx_http_parley_ws_query_t, link);
        ngx_parley_redis_cancel(qr->cmd);
        ngx_free(qr);
    }

    while (!ngx_queue_empty(&wc->subs)) {
        q = ngx_queue_head(&wc->subs);
        ngx_queue_remove(q);
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_conn);
        ngx_http_parley_ws_unsubscribe(sub);
    }

    while (!ngx_queue_empty(&wc->watches)) {
        q = ngx_queue_head(&wc->watches);
        ngx_queue_remove(q);
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_conn);
        ngx_http_parley_ws_unsubscribe(sub);
    }

    wc->nsubs = 0;
    wc->nwatches = 0;

    if (wc->user_sub) {
        ngx_http_parley_ws_unsubscribe(wc->user_sub);
        wc->user_sub = NULL;
    }

    if (wc->online) {
        wc->online = 0;
        ngx_http_parley_ws_presence(wc, 0);
    }
}


void
ngx_http_parley_ws_session_tick(ngx_http_parley_ws_conn_t *wc)
{
    if (wc->online) {
        ngx_http_parley_ws_presence(wc, 1);
    }
}


/* ---- messages from the client -------------------------------------- */


void
ngx_http_parley_ws_session_message(ngx_http_parley_ws_conn_t *wc,
    u_char *text, size_t len)
{
    json_t                      *msg, *ref, *jop;
    const char                  *op;
    json_error_t                 jerr;
    ngx_http_parley_ws_route_t  *rt;

    if (parley_json_max_depth(text, len) > wc->api_conf->max_depth) {
        ngx_http_parley_ws_error(wc, NULL, NULL, "too_deep",
                                 "the message nests deeper than %ui levels",
                                 wc->api_conf->max_depth);
        return;
    }

    msg = json_loadb((const char *) text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (msg == NULL || !json_is_object(msg)) {
        ngx_http_parley_ws_error(wc, NULL, NULL, "invalid_json",
                                 "a message is one JSON object");
        json_decref(msg);
        return;
    }

    ref = json_object_get(msg, "ref");

    if (ref && !(json_is_string(ref)
                 && json_string_length(ref) <= NGX_PARLEY_WS_REF_MAX))
    {
        ngx_http_parley_ws_error(wc, NULL, NULL, "invalid_field",
                                 "\"ref\" is a string of at most %d bytes",
                                 NGX_PARLEY_WS_REF_MAX);
        json_decref(msg);
        return;
    }

    jop = json_object_get(msg, "op");

    if (!json_is_string(jop)) {
        ngx_http_parley_ws_error(wc, ref, NULL, "invalid_field",
                                 "\"op\" is required");
        json_decref(msg);
        return;
    }

    op = json_string_value(jop);

    if (ngx_strcmp(op, "ping") == 0) {
        ngx_http_parley_ws_send_json(wc, json_pack("{s:s,s:O?}", "type",
                                                   "pong", "ref", ref));
        goto done;
    }

    if (ngx_strcmp(op, "start") == 0 || ngx_strcmp(op, "resume") == 0) {
        if (wc->state != NGX_PARLEY_WS_NEW || wc->start) {
            ngx_http_parley_ws_error(wc, ref, op, "already_started",
                                     "start or resume comes once");
            goto done;
        }

        ngx_http_parley_ws_op_start(wc, msg, ref, op[0] == 'r');
        goto done;
    }

    if (wc->state != NGX_PARLEY_WS_LIVE) {
        ngx_http_parley_ws_error(wc, ref, op, "not_started",
                                 "send start or resume first");
        goto done;
    }

    for (rt = ngx_http_parley_ws_routes; rt->name; rt++) {
        if (ngx_strcmp(op, rt->name) == 0) {
            ngx_http_parley_ws_op_route(wc, msg, ref, rt);
            goto done;
        }
    }

    if (ngx_strcmp(op, "typing.start") == 0
        || ngx_strcmp(op, "typing.stop") == 0)
    {
        ngx_http_parley_ws_op_typing(wc, msg, ref, op);

    } else if (ngx_strcmp(op, "signal") == 0) {
        ngx_http_parley_ws_op_signal(wc, msg, ref);

    } else if (ngx_strcmp(op, "presence.subscribe") == 0) {
        ngx_http_parley_ws_op_watch(wc, msg, ref, 1);

    } else if (ngx_strcmp(op, "presence.unsubscribe") == 0) {
        ngx_http_parley_ws_op_watch(wc, msg, ref, 0);

    } else {
        ngx_http_parley_ws_error(wc, ref, op, "unknown_op",
                                 "no operation \"%s\"", op);
    }

done:

    json_decref(msg);
}


static void
ngx_http_parley_ws_error(ngx_http_parley_ws_conn_t *wc, json_t *ref,
    const char *op, const char *code, const char *fmt, ...)
{
    u_char   buf[512], *last;
    va_list  args;

    va_start(args, fmt);
    last = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ngx_http_parley_ws_send_json(wc,
        json_pack("{s:s,s:O?,s:s?,s:{s:s,s:s%,s:b}}",
                  "type", "error", "ref", ref, "op", op,
                  "error", "code", code, "message", (char *) buf,
                  (size_t) (last - buf),
                  "retryable", ngx_strcmp(code, "unavailable") == 0
                               || ngx_strcmp(code, "rate_limited") == 0));
}


void
ngx_http_parley_ws_session_watching(ngx_http_parley_ws_sub_t *sub)
{
    ngx_str_t                uid;
    parley_pubsub_channel_t  pc;

    if (sub->wc->state != NGX_PARLEY_WS_LIVE
        || parley_pubsub_channel_parse((char *) sub->ch->sn.str.data,
                                       sub->ch->sn.str.len, &pc)
           != PARLEY_PUBSUB_PRESENCE)
    {
        return;
    }

    uid.data = (u_char *) pc.uid;
    uid.len = pc.uid_len;
    ngx_http_parley_ws_presence_query(sub->wc, &uid);
}


static ngx_int_t
ngx_http_parley_ws_cid(ngx_http_parley_ws_conn_t *wc, json_t *msg,
    json_t *ref, const char *op, uint64_t *cid)
{
    json_t  *v;

    v = json_object_get(msg, "conversation_id");

    if (!json_is_string(v)
        || parley_id_parse(json_string_value(v), json_string_length(v), cid)
           != 0)
    {
        ngx_http_parley_ws_error(wc, ref, op, "invalid_field",
                                 "\"conversation_id\" is a conversation id "
                                 "(decimal string)");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_http_parley_ws_sub_t *
ngx_http_parley_ws_find(ngx_http_parley_ws_conn_t *wc, uint64_t cid)
{
    ngx_queue_t               *q;
    ngx_http_parley_ws_sub_t  *sub;

    for (q = ngx_queue_head(&wc->subs); q != ngx_queue_sentinel(&wc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_conn);

        if (sub->ch->cid == cid) {
            return sub;
        }
    }

    return NULL;
}


/* transient events: at most transient_rate per second per connection */

static ngx_int_t
ngx_http_parley_ws_rate(ngx_http_parley_ws_conn_t *wc)
{
    if (ngx_current_msec - wc->transient_at >= 1000) {
        wc->transient_at = ngx_current_msec;
        wc->transient_n = 0;
    }

    return wc->transient_n++ < wc->conf->transient_rate ? NGX_OK : NGX_BUSY;
}


/* ---- start and resume ---------------------------------------------- */


static void
ngx_http_parley_ws_op_start(ngx_http_parley_ws_conn_t *wc, json_t *msg,
    json_t *ref, ngx_uint_t resume)
{
    json_t                      *positions, *token;
    uint64_t                     row;
    ngx_pool_t                  *pool;
    ngx_http_parley_api_req_t   *ar;
    ngx_http_parley_ws_start_t  *st;

    positions = json_object_get(msg, "positions");
    token = json_object_get(msg, "sync_token");

    if (resume == 1 && (positions == NULL) == (token == NULL)) {
        ngx_http_parley_ws_error(wc, ref, "resume", "invalid_field",
                                 "resume takes \"positions\" or "
                                 "\"sync_token\"");
        return;
    }

    pool = ngx_create_pool(4096, wc->connection->log);
    if (pool == NULL) {
        ngx_http_parley_ws_close(wc, PARLEY_WS_CLOSE_INTERNAL, "");
        return;
    }

    st = ngx_pcalloc(pool, sizeof(ngx_http_parley_ws_start_t));
    ar = ngx_pcalloc(pool, sizeof(ngx_http_parley_api_req_t));

    if (st == NULL || ar == NULL
        || ngx_http_parley_api_req_init(ar, pool, wc->connection->log,
                                        wc->core, wc->api_conf,
                                        ngx_http_parley_ws_start_sink, st)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        ngx_http_parley_ws_close(wc, PARLEY_WS_CLOSE_INTERNAL, "");
        return;
    }

    st->wc = wc;
    st->pool = pool;
    st->ar = ar;
    st->ref = json_incref(ref);
    st->resume = resume == 1;
    st->resync = resume == 2;
    st->gaps = json_array();
    ar->data = st;
    ar->auth = wc->auth;
    ar->tenant_id = wc->tenant_id;
    ar->user_id = wc->user_id;
    wc->start = st;

    if (st->resync) {
        ngx_http_parley_ws_start_members(st);
        return;
    }

    wc->state = NGX_PARLEY_WS_STARTING;

    if (positions && ngx_http_parley_ws_positions(st, positions) != NGX_OK) {
        return;
    }

    if (token) {
        if (!json_is_string(token)
            || parley_sync_token_decode(json_string_value(token),
                                        json_string_length(token), &row)
               != PARLEY_SYNC_OK)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_cursor", "sync_token",
                                     "not a sync token of this server");
            return;
        }

        ngx_http_parley_api_sql(ar, ngx_http_parley_ws_start_cursor,
            "SELECT state FROM sync_cursors "
            "WHERE tenant_id = %U AND user_id = %L AND id = %U",
            wc->tenant_id, &wc->user_id, row);
        return;
    }

    ngx_http_parley_ws_start_cursor(ar, NULL);
}


/* {"<cid>": <event_seq>, ...} into ascending positions */

static ngx_int_t
ngx_http_parley_ws_positions(ngx_http_parley_ws_start_t *st,
    json_t *positions)
{
    json_t       *v;
    size_t        n, i, j;
    uint64_t      cid;
    const char   *key;
    parley_sync_pos_t  t;

    if (!json_is_object(positions)
        || json_object_size(positions) > NGX_PARLEY_WS_POSITIONS_MAX)
    {
        ngx_http_parley_api_fail(st->ar, NGX_HTTP_BAD_REQUEST,
                                 "invalid_field", "positions",
                                 "\"positions\" maps at most %d conversation "
                                 "ids to event_seq numbers",
                                 NGX_PARLEY_WS_POSITIONS_MAX);
        return NGX_ERROR;
    }

    n = json_object_size(positions);
    st->pos = ngx_palloc(st->pool, (n + 1) * sizeof(parley_sync_pos_t));
    if (st->pos == NULL) {
        ngx_http_parley_api_fail(st->ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return NGX_ERROR;
    }

    i = 0;

    json_object_foreach(positions, key, v) {
        if (parley_id_parse(key, ngx_strlen(key), &cid) != 0
            || !json_is_integer(v) || json_integer_value(v) < 0)
        {
            ngx_http_parley_api_fail(st->ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_field", "positions",
                                     "\"positions\" maps conversation ids "
                                     "to event_seq numbers (>= 0)");
            return NGX_ERROR;
        }

        st->pos[i].conversation_id = cid;
        st->pos[i].event_seq = (uint64_t) json_integer_value(v);
        i++;
    }

    /* insertion sort: a resume carries few positions, and once */
    for (i = 1; i < n; i++) {
        t = st->pos[i];
        for (j = i; j > 0 && st->pos[j - 1].conversation_id
                             > t.conversation_id; j--)
        {
            st->pos[j] = st->pos[j - 1];
        }
        st->pos[j] = t;
    }

    st->npos = n;

    return NGX_OK;
}


static void
ngx_http_parley_ws_start_cursor(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                       n;
    MYSQL_ROW                    row;
    unsigned long               *len;
    ngx_http_parley_ws_conn_t   *wc;
    ngx_http_parley_ws_start_t  *st = ar->data;

    wc = st->wc;

    if (res) {
        row = res->res ? mysql_fetch_row(res->res) : NULL;

        if (row == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_cursor", "sync_token",
                                     "no such sync token (it may have "
                                     "expired)");
            return;
        }

        len = mysql_fetch_lengths(res->res);

        if (parley_sync_state_count((u_char *) row[0], len[0], &n)
            != PARLEY_SYNC_OK
            || (st->pos = ngx_palloc(ar->pool,
                                     (n + 1) * sizeof(parley_sync_pos_t)))
               == NULL
            || parley_sync_state_decode((u_char *) row[0], len[0], st->pos,
                                        n + 1, &st->npos)
               != PARLEY_SYNC_OK)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL,
                                     "the sync state cannot be read");
            return;
        }
    }

    st->phase = NGX_PARLEY_WS_PHASE_USER;

    wc->user_sub = ngx_http_parley_ws_subscribe(wc, NGX_PARLEY_WS_CH_USER, 0,
                                                wc->user_id.data,
                                                wc->user_id.len, 0);
    if (wc->user_sub == NULL) {
        ngx_log_error(NGX_LOG_WARN, wc->connection->log, 0,
                      "parley ws: user \"%V\" has no channel (its id holds "
                      "'{', '}' or is \"-\"): no live membership changes",
                      &wc->user_id);
    }

    if (wc->waiting == 0) {
        ngx_http_parley_ws_start_members(st);
    }
}


void
ngx_http_parley_ws_session_subscribed(ngx_http_parley_ws_conn_t *wc)
{
    ngx_http_parley_ws_start_t  *st = wc->start;

    if (wc->state == NGX_PARLEY_WS_LIVE && st == NULL) {
        /*
         * Redis came back: membership changes announced meanwhile were
         * lost with the connection; read the memberships again.
         */
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "parley ws: \"%V\" resubscribed, reading memberships",
                      &wc->user_id);
        ngx_http_parley_ws_op_start(wc, NULL, NULL, 2);
        return;
    }

    if (st == NULL) {
        return;
    }

    if (st->phase == NGX_PARLEY_WS_PHASE_USER) {
        ngx_http_parley_ws_start_members(st);

    } else if (st->phase == NGX_PARLEY_WS_PHASE_MEMBERS) {
        st->phase = 0;
        ngx_http_parley_ws_start_catchup(st);
    }
}


static void
ngx_http_parley_ws_start_members(ngx_http_parley_ws_start_t *st)
{
    u_char                     *p, *ids;
    size_t                      i;
    ngx_http_parley_ws_conn_t  *wc;

    wc = st->wc;
    st->phase = 0;

    /* the conversations the client names, also the ones it left */
    ids = ngx_pnalloc(st->pool, st->npos * (NGX_INT64_LEN + 1) + 2);
    if (ids == NULL) {
        ngx_http_parley_api_fail(st->ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    p = ids;
    *p++ = '0';

    for (i = 0; i < st->npos; i++) {
        p = ngx_sprintf(p, ",%uL", st->pos[i].conversation_id);
    }

    *p = '\0';

    ngx_http_parley_api_sql(st->ar, ngx_http_parley_ws_start_loaded,
        "SELECT m.conversation_id, c.event_seq, m.joined_event, "
        "m.left_event, m.state, c.deleted_at IS NULL FROM members m "
        "JOIN conversations c ON c.tenant_id = m.tenant_id "
        "AND c.id = m.conversation_id "
        "WHERE m.tenant_id = %U AND m.user_id = %L "
        "AND (m.state = 'active' OR m.conversation_id IN (%S)) "
        "ORDER BY m.conversation_id LIMIT %U",
        wc->tenant_id, &wc->user_id, (char *) ids,
        (uint64_t) wc->conf->max_conversations);
}


static void
ngx_http_parley_ws_start_loaded(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                        n;
    uint64_t                      joined, left, first;
    ngx_uint_t                    active, i;
    MYSQL_ROW                     row;
    ngx_http_parley_ws_sub_t     *sub;
    ngx_http_parley_ws_conn_t    *wc;
    ngx_http_parley_ws_start_t   *st = ar->data;
    const parley_sync_pos_t      *pos;
    ngx_http_parley_ws_member_t  *m;

    wc = st->wc;
    n = res->res ? (size_t) mysql_num_rows(res->res) : 0;

    st->m = ngx_pcalloc(ar->pool, (n + 1) * sizeof(ngx_http_parley_ws_member_t));
    if (st->m == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    for (i = 0; i < n && (row = mysql_fetch_row(res->res)); i++) {
        m = &st->m[st->nm];
        m->cid = ngx_http_parley_api_col_u64(row, 0);
        m->current = ngx_http_parley_api_col_u64(row, 1);
        joined = ngx_http_parley_api_col_u64(row, 2);
        left = row[3] ? ngx_http_parley_api_col_u64(row, 3) : 0;
        active = row[4] && ngx_strcmp(row[4], "active") == 0
                 && row[5] && row[5][0] == '1';

        first = joined ? joined - 1 : 0;   /* may read from joined_event */
        pos = st->pos ? parley_sync_state_find(st->pos, st->npos, m->cid)
                      : NULL;

        if (st->resync) {
            if (ngx_http_parley_ws_find(wc, m->cid) || !active) {
                continue;   /* known, or nothing to start */
            }

            /* joined while Redis was away: from the joining on */
            m->from = first;

        } else if (pos && st->resume) {
            m->from = ngx_max(pos->event_seq, first);

        } else {
            m->from = m->current;
        }

        if (!active) {
            /* ended: the rest of its log up to the end, no live stream */
            m->until = row[4] && ngx_strcmp(row[4], "active") == 0
                       ? m->current : left;

            if (m->from >= m->until) {
                continue;
            }

            st->nm++;
            continue;
        }

        sub = ngx_http_parley_ws_subscribe(wc, NGX_PARLEY_WS_CH_CONVERSATION,
                                           m->cid, NULL, 0, m->from);
        if (sub == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        ngx_queue_insert_tail(&wc->subs, &sub->in_conn);
        wc->nsubs++;
        m->sub = sub;
        st->nm++;
    }

    if (wc->waiting) {
        st->phase = NGX_PARLEY_WS_PHASE_MEMBERS;
        return;
    }

    ngx_http_parley_ws_start_catchup(st);
}


/*
 * Reads the log past every starting position, in batches of conversations,
 * within the budget of parley_ws_resume_max entries.
 */

static void
ngx_http_parley_ws_start_catchup(ngx_http_parley_ws_start_t *st)
{
    u_char                       *cond, *p;
    ngx_uint_t                    i, k, budget;
    ngx_http_parley_ws_member_t  *m;

    /* conversations past the budget are not read at all */
    while (st->next < st->nm && st->m[st->next].cut) {
        st->next++;
    }

    if (st->next >= st->nm) {
        ngx_http_parley_ws_start_done(st);
        return;
    }

    k = ngx_min(st->nm - st->next, NGX_PARLEY_WS_CATCHUP_BATCH);
    cond = ngx_pnalloc(st->pool, k * (3 * NGX_INT64_LEN + 96) + 1);
    if (cond == NULL) {
        ngx_http_parley_api_fail(st->ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    p = cond;

    for (i = st->next, k = 0; i < st->nm && k < NGX_PARLEY_WS_CATCHUP_BATCH;
         i++, k++)
    {
        m = &st->m[i];
        p = ngx_sprintf(p, "%s(e.conversation_id = %uL AND e.event_seq > %uL",
                        k ? " OR " : "", m->cid, m->from);

        if (m->until) {
            p = ngx_sprintf(p, " AND e.event_seq <= %uL", m->until);
        }

        *p++ = ')';
    }

    *p = '\0';
    st->phase = i;  /* the batch ends here */

    budget = st->resume ? st->wc->conf->resume_max : 1000000;
    budget = budget > st->replayed ? budget - st->replayed : 0;

    ngx_http_parley_api_sql(st->ar, ngx_http_parley_ws_start_replayed,
        "SELECT " NGX_PARLEY_EVENT_COLUMNS " FROM " NGX_PARLEY_EVENT_FROM
        " WHERE e.tenant_id = %U AND (%S) "
        "ORDER BY e.conversation_id, e.event_seq LIMIT %U",
        st->wc->tenant_id, (char *) cond, (uint64_t) budget + 1);
}


static void
ngx_http_parley_ws_start_replayed(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                        nrows, j, budget;
    uint64_t                      cid;
    MYSQL_ROW                     row;
    ngx_http_parley_ws_conn_t    *wc;
    ngx_http_parley_ws_start_t   *st = ar->data;

    wc = st->wc;
    st->batch_end = st->phase;
    st->batch_start = st->next;
    st->phase = 0;
    nrows = res->res ? (size_t) mysql_num_rows(res->res) : 0;

    budget = st->resume ? wc->conf->resume_max : 1000000;
    budget = budget > st->replayed ? budget - st->replayed : 0;

    /*
     * Over budget: the conversation where the budget ran out and every one
     * after it are not replayed (whole conversations only, so that each is
     * either complete or one clear gap); what came before is delivered.
     */
    if (nrows > budget) {
        mysql_data_seek(res->res, budget);
        row = mysql_fetch_row(res->res);
        cid = row ? ngx_http_parley_api_col_u64(row, 0) : 0;
        mysql_data_seek(res->res, 0);

        for (j = st->next; j < st->nm; j++) {
            if (st->m[j].cid >= cid) {
                st->m[j].cut = 1;
            }
        }
    }

    /* the rows are ours now; the store connection is not needed meanwhile */
    st->res = res->res;
    res->res = NULL;
    st->j = st->next;
    ngx_http_parley_api_release(ar);

    ngx_http_parley_ws_replay(st);
}


/*
 * Sends the batch's rows while the connection's queue has room: a resume
 * never overflows the send buffer it is bounded by; the rest goes as the
 * client reads (ngx_http_parley_ws_session_drained).
 */

static void
ngx_http_parley_ws_replay(ngx_http_parley_ws_start_t *st)
{
    json_t                       *entry, *gap;
    uint64_t                      cid, seq;
    ngx_uint_t                    j, end;
    MYSQL_ROW                     row;
    unsigned long                *len;
    ngx_http_parley_ws_conn_t    *wc;
    ngx_http_parley_ws_frame_t   *f;
    ngx_http_parley_ws_member_t  *m;

    wc = st->wc;
    end = st->batch_end;
    st->paused = 0;

    while (st->res && (row = mysql_fetch_row(st->res))) {
        len = mysql_fetch_lengths(st->res);
        cid = ngx_http_parley_api_col_u64(row, 0);
        seq = ngx_http_parley_api_col_u64(row, 1);

        while (st->j < end && st->m[st->j].cid < cid) {
            st->j++;
        }

        if (st->j >= end || st->m[st->j].cid != cid || st->m[st->j].cut) {
            continue;
        }

        m = &st->m[st->j];

        if (seq != m->from + 1) {
            continue;   /* the log has no holes; ignore what would make one */
        }

        entry = ngx_http_parley_api_event_json(row, len);
        f = entry ? ngx_http_parley_ws_frame_json(entry) : NULL;
        json_decref(entry);

        if (f == NULL) {
            ngx_http_parley_api_fail(st->ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        m->from = seq;
        if (m->sub) {
            parley_order_skip(&m->sub->order, seq);
        }

        ngx_http_parley_ws_send(wc, f);
        ngx_http_parley_ws_frame_release(f);
        st->replayed++;

        if (wc->state == NGX_PARLEY_WS_CLOSING) {
            return;     /* closing freed the start */
        }

        if (wc->out_bytes > wc->conf->send_buffer / 2) {
            st->paused = 1;
            return;
        }
    }

    if (st->res) {
        mysql_free_result(st->res);
        st->res = NULL;
    }

    for (j = st->batch_start; j < end; j++) {
        m = &st->m[j];

        if (!m->cut) {
            continue;
        }

        /* the client reads (from, current] over REST; live from current */
        gap = json_pack("{s:o,s:I,s:I}",
                        "conversation_id", ngx_http_parley_api_id_json(m->cid),
                        "after_event_seq", (json_int_t) m->from,
                        "until_event_seq",
                        (json_int_t) (m->until ? m->until : m->current));
        if (gap) {
            json_array_append_new(st->gaps, gap);
        }

        if (m->sub) {
            parley_order_skip(&m->sub->order, m->current);
        }
    }

    st->next = end;
    ngx_http_parley_ws_start_catchup(st);
}


/* the client read enough of a paused replay */

void
ngx_http_parley_ws_session_drained(ngx_http_parley_ws_conn_t *wc)
{
    ngx_http_parley_ws_start_t  *st = wc->start;

    if (st && st->paused && wc->out_bytes <= wc->conf->send_buffer / 4) {
        ngx_http_parley_ws_replay(st);
    }
}


static void
ngx_http_parley_ws_start_done(ngx_http_parley_ws_start_t *st)
{
    json_t                       *done;
    ngx_uint_t                    i, resync;
    ngx_http_parley_ws_conn_t    *wc;
    ngx_http_parley_ws_member_t  *m;

    wc = st->wc;
    resync = st->resync;

    if (!resync) {
        done = json_pack("{s:s,s:O?,s:I,s:I,s:b,s:O}",
                         "type", st->resume ? "resumed" : "started",
                         "ref", st->ref,
                         "conversations", (json_int_t) wc->nsubs,
                         "replayed", (json_int_t) st->replayed,
                         "complete", json_array_size(st->gaps) == 0,
                         "gaps", st->gaps);
        if (done) {
            ngx_http_parley_ws_send_json(wc, done);
        }
    }

    wc->state = NGX_PARLEY_WS_LIVE;
    wc->start = NULL;

    if (wc->user_sub) {
        /* from now on a resubscription of it means "read memberships" */
        wc->user_sub->state = NGX_PARLEY_WS_SUB_LIVE;
    }

    /* held live entries flow now, after the replay */
    for (i = 0; i < st->nm; i++) {
        m = &st->m[i];

        if (m->sub == NULL) {
            continue;
        }

        ngx_http_parley_ws_sub_live(m->sub);

        if (wc->state == NGX_PARLEY_WS_CLOSING) {
            break;
        }

        if (m->cut) {
            /* anything after the read's current came live or is read now */
            ngx_http_parley_ws_channel_fetch(m->sub->ch);
        }
    }

    if (!resync && wc->state == NGX_PARLEY_WS_LIVE && wc->user_sub) {
        wc->online = 1;
        ngx_http_parley_ws_presence(wc, 1);
    }

    /* answers 204 to the sink, which frees the start */
    wc->start = st;
    ngx_http_parley_api_reply(st->ar, NGX_HTTP_NO_CONTENT, NULL);
}


static void
ngx_http_parley_ws_start_sink(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *body, size_t len)
{
    json_t                      *err;
    ngx_http_parley_ws_conn_t   *wc;
    ngx_http_parley_ws_start_t  *st = ar->sink_data;

    wc = st->wc;

    if (status >= 300 && !st->resync) {
        err = json_loadb((char *) body, len, 0, NULL);

        ngx_http_parley_ws_send_json(wc,
            json_pack("{s:s,s:O?,s:s,s:I,s:O?}", "type", "error",
                      "ref", st->ref, "op", st->resume ? "resume" : "start",
                      "status", (json_int_t) status,
                      "error", err ? json_object_get(err, "error") : NULL));
        json_decref(err);

        if (status >= 500) {
            ngx_http_parley_ws_close(wc, NGX_PARLEY_WS_CLOSE_UNAVAILABLE,
                                     "unavailable; retry");
            return;     /* closing freed the start */
        }

        /* a bad resume: the client may try again */
        wc->state = NGX_PARLEY_WS_NEW;
        ngx_http_parley_ws_session_close(wc);
        return;
    }

    ngx_http_parley_ws_start_free(st);

    if (wc->resync && wc->state == NGX_PARLEY_WS_LIVE) {
        wc->resync = 0;
        ngx_http_parley_ws_op_start(wc, NULL, NULL, 2);
    }
}


static void
ngx_http_parley_ws_start_free(ngx_http_parley_ws_start_t *st)
{
    if (st->wc->start == st) {
        st->wc->start = NULL;
    }

    if (st->res) {
        mysql_free_result(st->res);
        st->res = NULL;
    }

    json_decref(st->ref);
    json_decref(st->gaps);
    st->ref = NULL;
    st->gaps = NULL;
    ngx_destroy_pool(st->pool);
}


/* ---- operations over REST routes ----------------------------------- */


static void
ngx_http_parley_ws_op_route(ngx_http_parley_ws_conn_t *wc, json_t *msg,
    json_t *ref, ngx_http_parley_ws_route_t *rt)
{
    u_char                     *path, *p;
    json_t                     *body, *seq, *emoji;
    uint64_t                    cid;
    ngx_pool_t                 *pool;
    const char                 *e;
    size_t                      elen;
    ngx_http_parley_ws_op_t    *op;
    ngx_http_parley_api_req_t  *ar;

    if (ngx_http_parley_ws_cid(wc, msg, ref, rt->name, &cid) != NGX_OK) {
        return;
    }

    seq = json_object_get(msg, "seq");
    emoji = json_object_get(msg, "emoji");
    body = json_object_get(msg, "body");

    if (rt->seq && !(json_is_integer(seq) && json_integer_value(seq) > 0)) {
        ngx_http_parley_ws_error(wc, ref, rt->name, "invalid_field",
                                 "\"seq\" is a message sequence number");
        return;
    }

    if (rt->emoji && !(json_is_string(emoji)
                       && json_string_length(emoji) > 0
                       && json_string_length(emoji) <= 64))
    {
        ngx_http_parley_ws_error(wc, ref, rt->name, "invalid_field",
                                 "\"emoji\" is a string of 1..64 bytes");
        return;
    }

    if (body && !json_is_object(body)) {
        ngx_http_parley_ws_error(wc, ref, rt->name, "invalid_field",
                                 "\"body\" is the REST request body, an "
                                 "object");
        return;
    }

    if (wc->inflight >= wc->conf->max_inflight) {
        ngx_http_parley_ws_error(wc, ref, rt->name, "rate_limited",
                                 "at most %ui operations at a time",
                                 wc->conf->max_inflight);
        return;
    }

    pool = ngx_create_pool(4096, wc->connection->log);
    if (pool == NULL) {
        ngx_http_parley_ws_error(wc, ref, rt->name, "unavailable",
                                 "out of memory");
        return;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_http_parley_ws_op_t));
    ar = ngx_pcalloc(pool, sizeof(ngx_http_parley_api_req_t));
    elen = emoji ? json_string_length(emoji) : 0;
    path = ngx_pnalloc(pool, 64 + 3 * NGX_INT64_LEN + 3 * elen);

    if (op == NULL || ar == NULL || path == NULL
        || ngx_http_parley_api_req_init(ar, pool, wc->connection->log,
                                        wc->core, wc->api_conf,
                                        ngx_http_parley_ws_op_sink, op)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        ngx_http_parley_ws_error(wc, ref, rt->name, "unavailable",
                                 "out of memory");
        return;
    }

    p = ngx_sprintf(path, "/v1/conversations/%uL", cid);

    if (rt->seq) {
        p = ngx_sprintf(p, "/messages/%uL", (uint64_t) json_integer_value(seq));
    }

    p = ngx_cpymem(p, rt->tail, ngx_strlen(rt->tail));

    if (rt->emoji) {
        e = json_string_value(emoji);
        p = (u_char *) ngx_escape_uri(p, (u_char *) e, elen,
                                      NGX_ESCAPE_URI_COMPONENT);
    }

    op->wc = wc;
    op->pool = pool;
    op->ref = json_incref(ref);
    op->op = rt->name;
    ngx_queue_insert_tail(&wc->ops, &op->link);
    wc->inflight++;

    ar->auth = wc->auth;
    ar->tenant_id = wc->tenant_id;
    ar->user_id = wc->user_id;
    ar->origin = wc->id;

    ngx_http_parley_api_invoke(ar, rt->method, path, p - path,
                               body ? json_incref(body) : NULL);
}


static void
ngx_http_parley_ws_op_sink(ngx_http_parley_api_req_t *ar, ngx_uint_t status,
    u_char *body, size_t len)
{
    json_t                     *answer, *reply;
    ngx_http_parley_ws_op_t    *op = ar->sink_data;
    ngx_http_parley_ws_conn_t  *wc;

    wc = op->wc;
    answer = len ? json_loadb((char *) body, len, 0, NULL) : NULL;

    if (status < 300) {
        reply = json_pack("{s:s,s:O?,s:s,s:I,s:O?}",
                          "type", "ack", "ref", op->ref, "op", op->op,
                          "status", (json_int_t) status, "body", answer);
    } else {
        reply = json_pack("{s:s,s:O?,s:s,s:I,s:O?}",
                          "type", "error", "ref", op->ref, "op", op->op,
                          "status", (json_int_t) status,
                          "error", answer ? json_object_get(answer, "error")
                                          : NULL);
    }

    json_decref(answer);
    json_decref(op->ref);
    ngx_queue_remove(&op->link);
    wc->inflight--;

    ngx_destroy_pool(op->pool);

    if (reply) {
        ngx_http_parley_ws_send_json(wc, reply);
    }
}


/* ---- transient events ---------------------------------------------- */


static void
ngx_http_parley_ws_op_typing(ngx_http_parley_ws_conn_t *wc, json_t *msg,
    json_t *ref, const char *op)
{
    uint64_t  cid;

    if (ngx_http_parley_ws_cid(wc, msg, ref, op, &cid) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_ws_find(wc, cid) == NULL) {
        ngx_http_parley_ws_error(wc, ref, op, "not_member",
                                 "not a member of conversation %uL", cid);
        return;
    }

    if (ngx_http_parley_ws_rate(wc) != NGX_OK) {
        ngx_http_parley_ws_error(wc, ref, op, "rate_limited",
                                 "at most %ui transient events a second",
                                 wc->conf->transient_rate);
        return;
    }

    if (ngx_http_parley_ws_transmit(wc, NGX_PARLEY_WS_CH_CONVERSATION, cid,
        NULL, 0,
        json_pack("{s:s,s:o,s:s%,s:I}", "type", op,
                  "conversation_id", ngx_http_parley_api_id_json(cid),
                  "user_id", (char *) wc->user_id.data, wc->user_id.len,
                  "ttl_ms", (json_int_t) (ngx_strcmp(op, "typing.start") == 0
                                          ? NGX_PARLEY_WS_TYPING_TTL : 0)))
        != NGX_OK)
    {
        ngx_http_parley_ws_error(wc, ref, op, "unavailable",
                                 "the event could not be sent");
        return;
    }

    if (ref) {
        ngx_http_parley_ws_send_json(wc, json_pack("{s:s,s:O,s:s}", "type",
                                                   "ack", "ref", ref, "op",
                                                   op));
    }
}


static void
ngx_http_parley_ws_op_signal(ngx_http_parley_ws_conn_t *wc, json_t *msg,
    json_t *ref)
{
    json_t     *name, *data, *to_user, *body;
    uint64_t    cid;
    ngx_int_t   rc;

    name = json_object_get(msg, "name");
    data = json_object_get(msg, "data");
    to_user = json_object_get(msg, "user_id");

    if (!json_is_string(name) || json_string_length(name) == 0
        || json_string_length(name) > 64)
    {
        ngx_http_parley_ws_error(wc, ref, "signal", "invalid_field",
                                 "\"name\" is a string of 1..64 bytes");
        return;
    }

    if (data && json_dumpb(data, NULL, 0, JSON_COMPACT)
                > NGX_PARLEY_WS_SIGNAL_MAX)
    {
        ngx_http_parley_ws_error(wc, ref, "signal", "too_large",
                                 "\"data\" is at most %d bytes of JSON",
                                 NGX_PARLEY_WS_SIGNAL_MAX);
        return;
    }

    if (ngx_http_parley_ws_rate(wc) != NGX_OK) {
        ngx_http_parley_ws_error(wc, ref, "signal", "rate_limited",
                                 "at most %ui transient events a second",
                                 wc->conf->transient_rate);
        return;
    }

    body = json_pack("{s:s,s:O,s:s%,s:O?}", "type", "signal", "name", name,
                     "from", (char *) wc->user_id.data, wc->user_id.len,
                     "data", data);
    if (body == NULL) {
        return;
    }

    if (to_user) {
        if (!json_is_string(to_user) || json_object_get(msg,
                                                        "conversation_id"))
        {
            json_decref(body);
            ngx_http_parley_ws_error(wc, ref, "signal", "invalid_field",
                                     "a signal goes to \"user_id\" or to "
                                     "\"conversation_id\"");
            return;
        }

        rc = ngx_http_parley_ws_transmit(wc, NGX_PARLEY_WS_CH_USER, 0,
                                         json_string_value(to_user),
                                         json_string_length(to_user), body);

    } else {
        if (ngx_http_parley_ws_cid(wc, msg, ref, "signal", &cid) != NGX_OK) {
            json_decref(body);
            return;
        }

        if (ngx_http_parley_ws_find(wc, cid) == NULL) {
            json_decref(body);
            ngx_http_parley_ws_error(wc, ref, "signal", "not_member",
                                     "not a member of conversation %uL", cid);
            return;
        }

        json_object_set_new(body, "conversation_id",
                            ngx_http_parley_api_id_json(cid));
        rc = ngx_http_parley_ws_transmit(wc, NGX_PARLEY_WS_CH_CONVERSATION,
                                         cid, NULL, 0, body);
    }

    if (rc != NGX_OK) {
        ngx_http_parley_ws_error(wc, ref, "signal", "unavailable",
                                 "the signal could not be sent");
        return;
    }

    if (ref) {
        ngx_http_parley_ws_send_json(wc, json_pack("{s:s,s:O,s:s}", "type",
                                                   "ack", "ref", ref, "op",
                                                   "signal"));
    }
}


/* Publishes a transient event (body stolen) to every worker. */

static ngx_int_t
ngx_http_parley_ws_transmit(ngx_http_parley_ws_conn_t *wc, ngx_uint_t kind,
    uint64_t cid, const char *uid, size_t uid_len, json_t *body)
{
    u_char               *msg;
    size_t                hlen, blen, clen;
    ngx_int_t             rc;
    parley_pubsub_msg_t   m;
    char                  header[PARLEY_PUBSUB_HEADER_MAX];
    char                  channel[PARLEY_PUBSUB_CHANNEL_MAX];

    if (body == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&m, sizeof(parley_pubsub_msg_t));
    m.kind = 'T';
    m.cid = cid;
    m.effect = '.';
    m.origin = wc->id;

    clen = kind == NGX_PARLEY_WS_CH_CONVERSATION
           ? parley_pubsub_conversation_channel(channel, sizeof(channel),
                                                wc->tenant_id, cid)
           : parley_pubsub_user_channel(channel, sizeof(channel),
                                        wc->tenant_id, uid, uid_len);

    hlen = parley_pubsub_header(header, sizeof(header), &m);
    blen = json_dumpb(body, NULL, 0, JSON_COMPACT);

    if (clen == 0 || hlen == 0 || blen == 0) {
        json_decref(body);
        return NGX_ERROR;
    }

    msg = ngx_alloc(hlen + blen, wc->connection->log);
    if (msg == NULL) {
        json_decref(body);
        return NGX_ERROR;
    }

    ngx_memcpy(msg, header, hlen);
    json_dumpb(body, (char *) msg + hlen, blen, JSON_COMPACT);
    json_decref(body);

    rc = ngx_http_parley_publish(wc->core, (u_char *) channel, clen, msg,
                                 hlen + blen);
    ngx_free(msg);

    return rc;
}


/* to every connection of the user, or of a conversation, but the sender */

void
ngx_http_parley_ws_session_transient(ngx_http_parley_ws_conn_t *wc,
    uint64_t origin, ngx_http_parley_ws_frame_t *frame)
{
    if (wc->state != NGX_PARLEY_WS_LIVE || origin == wc->id) {
        return;
    }

    ngx_http_parley_ws_send(wc, frame);
}


/* ---- presence ------------------------------------------------------ */


static void
ngx_http_parley_ws_op_watch(ngx_http_parley_ws_conn_t *wc, json_t *msg,
    json_t *ref, ngx_uint_t on)
{
    json_t                    *users, *u;
    size_t                     i, len;
    ngx_str_t                  uid;
    ngx_queue_t               *q;
    ngx_http_parley_ws_sub_t  *sub, *found;
    char                       channel[PARLEY_PUBSUB_CHANNEL_MAX];

    users = json_object_get(msg, "users");

    if (!json_is_array(users) || json_array_size(users) == 0
        || json_array_size(users) > NGX_PARLEY_WS_WATCH_BATCH)
    {
        ngx_http_parley_ws_error(wc, ref, on ? "presence.subscribe"
                                             : "presence.unsubscribe",
                                 "invalid_field",
                                 "\"users\" lists 1..%d user ids",
                                 NGX_PARLEY_WS_WATCH_BATCH);
        return;
    }

    json_array_foreach(users, i, u) {
        if (!json_is_string(u)
            || parley_pubsub_presence_channel(channel, sizeof(channel),
                                              wc->tenant_id,
                                              json_string_value(u),
                                              json_string_length(u)) == 0)
        {
            ngx_http_parley_ws_error(wc, ref, "presence.subscribe",
                                     "invalid_field",
                                     "\"users\" holds user ids");
            return;
        }
    }

    json_array_foreach(users, i, u) {
        uid.data = (u_char *) json_string_value(u);
        uid.len = json_string_length(u);
        len = parley_pubsub_presence_channel(channel, sizeof(channel),
                                             wc->tenant_id,
                                             (char *) uid.data, uid.len);
        found = NULL;

        for (q = ngx_queue_head(&wc->watches);
             q != ngx_queue_sentinel(&wc->watches);
             q = ngx_queue_next(q))
        {
            sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_conn);

            if (sub->ch->sn.str.len == len
                && ngx_strncmp(sub->ch->sn.str.data, channel, len) == 0)
            {
                found = sub;
                break;
            }
        }

        if (!on) {
            if (found) {
                ngx_queue_remove(&found->in_conn);
                wc->nwatches--;
                ngx_http_parley_ws_unsubscribe(found);
            }
            continue;
        }

        if (found == NULL) {
            if (wc->nwatches >= NGX_PARLEY_WS_WATCH_MAX) {
                ngx_http_parley_ws_error(wc, ref, "presence.subscribe",
                                         "too_many",
                                         "at most %d users watched",
                                         NGX_PARLEY_WS_WATCH_MAX);
                return;
            }

            sub = ngx_http_parley_ws_subscribe(wc, NGX_PARLEY_WS_CH_PRESENCE,
                                               0, uid.data, uid.len, 0);
            if (sub == NULL) {
                continue;
            }

            /* presence never holds a start back */
            if (sub->waits) {
                sub->waits = 0;
                wc->waiting--;
            }

            ngx_queue_insert_tail(&wc->watches, &sub->in_conn);
            wc->nwatches++;

            if (!sub->ch->in_watched) {
                sub->ch->in_watched = 1;
                ngx_queue_insert_tail(&ngx_http_parley_ws_watched,
                                      &sub->ch->watched);
            }
        }

        /* a new watch reads the state once Redis confirmed it
         * (ngx_http_parley_ws_session_watching) */
        if (found || sub->ch->subscribed) {
            ngx_http_parley_ws_presence_query(wc, &uid);
        }
    }

    if (ref) {
        ngx_http_parley_ws_send_json(wc, json_pack("{s:s,s:O,s:s}", "type",
                                     "ack", "ref", ref, "op",
                                     on ? "presence.subscribe"
                                        : "presence.unsubscribe"));
    }
}




static void
ngx_http_parley_ws_presence_query(ngx_http_parley_ws_conn_t *wc,
    ngx_str_t *uid)
{
    u_char                      now[NGX_INT64_LEN + 1];
    size_t                      argvlen[6];
    const char                 *argv[6];
    ngx_parley_redis_t         *redis;
    ngx_http_parley_ws_query_t *qr;
    char                        conns[PARLEY_PUBSUB_CHANNEL_MAX];
    char                        seen[PARLEY_PUBSUB_CHANNEL_MAX];

    redis = wc->core->redis_role[NGX_PARLEY_REDIS_SESSION];

    if (redis == NULL
        || parley_pubsub_presence_key(conns, sizeof(conns), wc->tenant_id,
                                      (char *) uid->data, uid->len, "conns")
           == 0
        || parley_pubsub_presence_key(seen, sizeof(seen), wc->tenant_id,
                                      (char *) uid->data, uid->len, "seen")
           == 0)
    {
        return;
    }

    qr = ngx_alloc(sizeof(ngx_http_parley_ws_query_t) + uid->len,
                   wc->connection->log);
    if (qr == NULL) {
        return;
    }

    qr->wc = wc;
    qr->uid_len = uid->len;
    ngx_memcpy(qr->uid, uid->data, uid->len);

    argv[0] = "EVAL";
    argv[1] = "local top = redis.call('ZRANGE', KEYS[1], -1, -1, "
              "'WITHSCORES') "
              "return {redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf'), "
              "redis.call('GET', KEYS[2]), top[2] or false}";
    argv[2] = "2";
    argv[3] = conns;
    argv[4] = seen;
    argv[5] = (char *) now;
    argvlen[0] = 4;
    argvlen[1] = ngx_strlen(argv[1]);
    argvlen[2] = 1;
    argvlen[3] = ngx_strlen(conns);
    argvlen[4] = ngx_strlen(seen);
    argvlen[5] = ngx_sprintf(now, "%L", (int64_t) ngx_time() * 1000
                                        + (int64_t) ngx_timeofday()->msec)
                 - now;

    if (ngx_parley_redis_command_argv(redis,
                                      ngx_http_parley_ws_presence_reply, qr,
                                      6, argv, argvlen, &qr->cmd)
        != NGX_OK)
    {
        ngx_free(qr);
        return;
    }

    /* cancelled if the connection goes first */
    ngx_queue_insert_tail(&wc->queries, &qr->link);
}


static void
ngx_http_parley_ws_presence_reply(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data)
{
    json_t                      *ev;
    long long                    n;
    ngx_int_t                    seen, top;
    ngx_http_parley_ws_conn_t   *wc;
    ngx_http_parley_ws_query_t  *qr = data;

    wc = qr->wc;
    ngx_queue_remove(&qr->link);

    if (status == NGX_OK && reply && reply->type == REDIS_REPLY_ARRAY
        && reply->elements >= 2
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && wc->state == NGX_PARLEY_WS_LIVE)
    {
        n = reply->element[0]->integer;

        ev = json_pack("{s:s,s:s%,s:s}", "type", "presence",
                       "user_id", (char *) qr->uid, qr->uid_len,
                       "status", n > 0 ? "online" : "offline");

        /* last seen: recorded at the last goodbye, or, when a node died
         * and nobody swept yet, the last refresh of its lapsed entry */
        seen = -1;

        if (n == 0 && reply->element[1]->type == REDIS_REPLY_STRING) {
            seen = ngx_atoi((u_char *) reply->element[1]->str,
                            reply->element[1]->len);
        }

        if (n == 0 && reply->elements == 3
            && reply->element[2]->type == REDIS_REPLY_STRING)
        {
            top = ngx_atoi((u_char *) reply->element[2]->str,
                           reply->element[2]->len)
                  - (ngx_int_t) wc->conf->presence_ttl;
            seen = ngx_max(seen, top);
        }

        if (ev) {
            json_object_set_new(ev, "last_seen_ms",
                                seen >= 0 ? json_integer(seen) : json_null());
            ngx_http_parley_ws_send_json(wc, ev);
        }
    }

    ngx_free(qr);
}


static u_char *
ngx_http_parley_ws_presence_prefix(ngx_pool_t *pool, uint64_t tenant,
    ngx_str_t *uid, size_t *len)
{
    u_char               *p;
    size_t                hlen, jlen;
    json_t               *j;
    parley_pubsub_msg_t   m;
    char                  header[PARLEY_PUBSUB_HEADER_MAX];

    ngx_memzero(&m, sizeof(parley_pubsub_msg_t));
    m.kind = 'T';
    m.effect = '.';
    hlen = parley_pubsub_header(header, sizeof(header), &m);

    j = json_pack("{s:s,s:s%,s:s}", "type", "presence",
                  "user_id", (char *) uid->data, uid->len,
                  "status", "offline");
    jlen = j ? json_dumpb(j, NULL, 0, JSON_COMPACT) : 0;

    if (hlen == 0 || jlen == 0) {
        json_decref(j);
        return NULL;
    }

    /* ...,"status":"offline"} becomes ...,"status":"offline","last_seen_ms":
     * and the script appends the number and the brace */
    p = ngx_pnalloc(pool, hlen + jlen + sizeof(",\"last_seen_ms\":"));
    if (p == NULL) {
        json_decref(j);
        return NULL;
    }

    ngx_memcpy(p, header, hlen);
    json_dumpb(j, (char *) p + hlen, jlen, JSON_COMPACT);
    json_decref(j);

    *len = hlen + jlen - 1;
    *len = ngx_cpymem(p + *len, ",\"last_seen_ms\":",
                      sizeof(",\"last_seen_ms\":") - 1) - p;

    return p;
}


/*
 * online = 1: this connection is (still) there; announced when it is the
 * user's first.  online = 0: it left; announced when it was the last.
 */

static void
ngx_http_parley_ws_presence(ngx_http_parley_ws_conn_t *wc, ngx_uint_t online)
{
    u_char               *online_msg, *prefix, nums[4][NGX_INT64_LEN + 1];
    size_t                hlen, jlen, plen, argvlen[12];
    json_t               *j;
    int64_t               now;
    ngx_pool_t           *pool;
    const char           *argv[12];
    parley_pubsub_msg_t   m;
    ngx_parley_redis_t   *redis;
    char                  conns[PARLEY_PUBSUB_CHANNEL_MAX];
    char                  seen[PARLEY_PUBSUB_CHANNEL_MAX];
    char                  channel[PARLEY_PUBSUB_CHANNEL_MAX];
    char                  header[PARLEY_PUBSUB_HEADER_MAX];

    redis = wc->core->redis_role[NGX_PARLEY_REDIS_SESSION];

    if (redis == NULL
        || parley_pubsub_presence_key(conns, sizeof(conns), wc->tenant_id,
               (char *) wc->user_id.data, wc->user_id.len, "conns") == 0
        || parley_pubsub_presence_key(seen, sizeof(seen), wc->tenant_id,
               (char *) wc->user_id.data, wc->user_id.len, "seen") == 0
        || parley_pubsub_presence_channel(channel, sizeof(channel),
               wc->tenant_id, (char *) wc->user_id.data, wc->user_id.len)
           == 0)
    {
        return;
    }

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    now = (int64_t) ngx_time() * 1000 + (int64_t) ngx_timeofday()->msec;

    argv[1] = NULL;
    argv[2] = "3";
    argv[3] = conns;
    argv[4] = channel;
    argv[5] = seen;
    argv[6] = (char *) nums[0];     /* member: the connection */
    argvlen[2] = 1;
    argvlen[3] = ngx_strlen(conns);
    argvlen[4] = ngx_strlen(channel);
    argvlen[5] = ngx_strlen(seen);
    argvlen[6] = ngx_sprintf(nums[0], "%uL", wc->id) - nums[0];

    argv[0] = "EVAL";
    argvlen[0] = 4;

    if (online) {
        ngx_memzero(&m, sizeof(parley_pubsub_msg_t));
        m.kind = 'T';
        m.effect = '.';
        m.origin = wc->id;
        hlen = parley_pubsub_header(header, sizeof(header), &m);

        j = json_pack("{s:s,s:s%,s:s,s:n}", "type", "presence",
                      "user_id", (char *) wc->user_id.data, wc->user_id.len,
                      "status", "online", "last_seen_ms");
        jlen = j ? json_dumpb(j, NULL, 0, JSON_COMPACT) : 0;
        online_msg = ngx_pnalloc(pool, hlen + jlen + 1);

        if (hlen == 0 || jlen == 0 || online_msg == NULL) {
            json_decref(j);
            ngx_destroy_pool(pool);
            return;
        }

        ngx_memcpy(online_msg, header, hlen);
        json_dumpb(j, (char *) online_msg + hlen, jlen, JSON_COMPACT);
        json_decref(j);

        argv[1] = ngx_http_parley_ws_lua_online;
        argvlen[1] = sizeof(ngx_http_parley_ws_lua_online) - 1;
        argv[7] = (char *) nums[1];
        argvlen[7] = ngx_sprintf(nums[1], "%L", now) - nums[1];
        argv[8] = (char *) nums[2];
        argvlen[8] = ngx_sprintf(nums[2], "%L",
                                 now + (int64_t) wc->conf->presence_ttl)
                     - nums[2];
        /* the set outlives its entries, so that a sweep still finds the
         * lapsed entries of a node that died */
        argv[9] = (char *) nums[3];
        argvlen[9] = ngx_sprintf(nums[3], "%L", NGX_PARLEY_WS_SEEN_KEEP)
                     - nums[3];
        argv[10] = wc->core->pubsub_sharded ? "SPUBLISH" : "PUBLISH";
        argvlen[10] = ngx_strlen(argv[10]);
        argv[11] = (char *) online_msg;
        argvlen[11] = hlen + jlen;

        (void) ngx_parley_redis_command_argv(redis,
                                             ngx_http_parley_ws_redis_done,
                                             NULL, 12, argv, argvlen, NULL);
        ngx_destroy_pool(pool);
        return;
    }

    prefix = ngx_http_parley_ws_presence_prefix(pool, wc->tenant_id,
                                                &wc->user_id, &plen);
    if (prefix == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    argv[1] = ngx_http_parley_ws_lua_offline;
    argvlen[1] = sizeof(ngx_http_parley_ws_lua_offline) - 1;
    argv[7] = (char *) nums[1];
    argvlen[7] = ngx_sprintf(nums[1], "%L", now) - nums[1];
    argv[8] = wc->core->pubsub_sharded ? "SPUBLISH" : "PUBLISH";
    argvlen[8] = ngx_strlen(argv[8]);
    argv[9] = (char *) prefix;
    argvlen[9] = plen;
    argv[10] = (char *) nums[2];
    argvlen[10] = ngx_sprintf(nums[2], "%L", NGX_PARLEY_WS_SEEN_KEEP)
                  - nums[2];

    (void) ngx_parley_redis_command_argv(redis, ngx_http_parley_ws_redis_done,
                                         NULL, 11, argv, argvlen, NULL);
    ngx_destroy_pool(pool);
}


static void
ngx_http_parley_ws_redis_done(ngx_parley_redis_t *redis, redisReply *reply,
    ngx_int_t status, const char *err, void *data)
{
    if (status != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "parley ws: presence update failed: %s", err);

    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "parley ws: presence update refused: %*s",
                      (size_t) reply->len, reply->str);
    }
}


/*
 * A watcher's sweep: users watched on this worker whose every entry lapsed
 * (their node died) are announced offline by whichever worker finds it
 * first; the script makes that exactly one.
 */

static void
ngx_http_parley_ws_sweep(ngx_event_t *ev)
{
    u_char                         *prefix, nums[3][NGX_INT64_LEN + 1];
    size_t                          plen, argvlen[11];
    int64_t                         now;
    ngx_str_t                       uid;
    ngx_pool_t                     *pool;
    ngx_queue_t                    *q;
    const char                     *argv[11];
    parley_pubsub_channel_t         pc;
    ngx_parley_redis_t             *redis;
    ngx_http_parley_ws_channel_t   *ch;
    ngx_http_parley_ws_loc_conf_t  *conf = ngx_http_parley_ws_sweep_conf;
    ngx_http_parley_core_main_conf_t *core;
    char                            conns[PARLEY_PUBSUB_CHANNEL_MAX];
    char                            seen[PARLEY_PUBSUB_CHANNEL_MAX];

    ngx_add_timer(ev, conf->presence_ttl / 3);

    if (ngx_queue_empty(&ngx_http_parley_ws_watched)) {
        return;
    }

    core = ngx_http_cycle_get_module_main_conf((ngx_cycle_t *) ngx_cycle,
                                               ngx_http_parley_core_module);
    redis = core->redis_role[NGX_PARLEY_REDIS_SESSION];
    if (redis == NULL) {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    now = (int64_t) ngx_time() * 1000 + (int64_t) ngx_timeofday()->msec;

    for (q = ngx_queue_head(&ngx_http_parley_ws_watched);
         q != ngx_queue_sentinel(&ngx_http_parley_ws_watched);
         q = ngx_queue_next(q))
    {
        ch = ngx_queue_data(q, ngx_http_parley_ws_channel_t, watched);

        if (parley_pubsub_channel_parse((char *) ch->sn.str.data,
                                        ch->sn.str.len, &pc)
            != PARLEY_PUBSUB_PRESENCE)
        {
            continue;
        }

        uid.data = (u_char *) pc.uid;
        uid.len = pc.uid_len;

        if (parley_pubsub_presence_key(conns, sizeof(conns), pc.tenant,
                                       pc.uid, pc.uid_len, "conns") == 0
            || parley_pubsub_presence_key(seen, sizeof(seen), pc.tenant,
                                          pc.uid, pc.uid_len, "seen") == 0)
        {
            continue;
        }

        prefix = ngx_http_parley_ws_presence_prefix(pool, pc.tenant, &uid,
                                                    &plen);
        if (prefix == NULL) {
            continue;
        }

        argv[0] = "EVAL";
        argv[1] = ngx_http_parley_ws_lua_sweep;
        argv[2] = "3";
        argv[3] = conns;
        argv[4] = (char *) ch->sn.str.data;
        argv[5] = seen;
        argv[6] = (char *) nums[0];
        argv[7] = (char *) nums[1];
        argv[8] = core->pubsub_sharded ? "SPUBLISH" : "PUBLISH";
        argv[9] = (char *) prefix;
        argv[10] = (char *) nums[2];
        argvlen[0] = 4;
        argvlen[1] = sizeof(ngx_http_parley_ws_lua_sweep) - 1;
        argvlen[2] = 1;
        argvlen[3] = ngx_strlen(conns);
        argvlen[4] = ch->sn.str.len;
        argvlen[5] = ngx_strlen(seen);
        argvlen[6] = ngx_sprintf(nums[0], "%L", now) - nums[0];
        argvlen[7] = ngx_sprintf(nums[1], "%M", conf->presence_ttl)
                     - nums[1];
        argvlen[8] = ngx_strlen(argv[8]);
        argvlen[9] = plen;
        argvlen[10] = ngx_sprintf(nums[2], "%L", NGX_PARLEY_WS_SEEN_KEEP)
                      - nums[2];

        (void) ngx_parley_redis_command_argv(redis,
                                             ngx_http_parley_ws_redis_done,
                                             NULL, 11, argv, argvlen, NULL);
    }

    ngx_destroy_pool(pool);
}
