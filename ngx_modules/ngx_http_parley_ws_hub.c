
/*
 * The worker's hub: channels, the Redis subscriber connection, and ordered
 * delivery of the conversation logs (docs/realtime.md, "Delivery").
 *
 * A worker subscribes once per channel however many of its connections
 * need it (a reference count of subscriptions), on a connection of its own
 * that does nothing but (S)SUBSCRIBE: the core's command connection cannot
 * carry pushed messages.  hiredis's reply parser reads the stream; the
 * socket is an nginx peer connection.
 *
 * Ordering.  Log entries carry a gap-free event_seq per conversation and
 * each subscription remembers the last one its client was given.  An
 * entry at delivered + 1 goes out; one at or below is a duplicate and
 * dropped; one further ahead is held (publishes from different workers may
 * overtake each other) and, if the hole is still there after
 * parley_ws_gap_wait, the channel reads the missing entries from the store.
 * A channel that is (re)subscribed does the same, since Redis keeps nothing
 * for a worker that was not listening.  So a publish lost anywhere costs a
 * read, never a gap.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_ws.h"
#include "ngx_http_parley_api_access.h"
#include "parley_pubsub.h"

#include <hiredis/read.h>


#define NGX_PARLEY_WS_FETCH_BATCH   200
#define NGX_PARLEY_WS_SUB_BATCH     128    /* channels per SUBSCRIBE */
#define NGX_PARLEY_WS_HUB_PING      15000
#define NGX_PARLEY_WS_FETCH_RETRY   1000


typedef struct {
    ngx_rbtree_t                     tree;
    ngx_rbtree_node_t                sentinel;
    ngx_uint_t                       nchannels;

    ngx_parley_redis_conf_t         *conf;
    ngx_http_parley_core_main_conf_t *core;
    ngx_http_parley_api_loc_conf_t  *api_conf;  /* for store reads */
    ngx_addr_t                       addr;
    ngx_peer_connection_t            peer;
    ngx_connection_t                *connection;
    redisReader                     *reader;
    u_char                          *out;        /* commands to write */
    size_t                           out_len;
    size_t                           out_cap;
    ngx_event_t                      reconnect;
    ngx_event_t                      ping;
    ngx_uint_t                       failures;
    ngx_log_t                        log;
    unsigned                         ready:1;    /* AUTH done */
    unsigned                         heard:1;    /* data since last ping */
    unsigned                         exiting:1;
} ngx_http_parley_ws_hub_t;


typedef struct {
    ngx_http_parley_ws_channel_t    *ch;
    ngx_pool_t                      *pool;
} ngx_http_parley_ws_fetch_t;


static ngx_http_parley_ws_hub_t  *ngx_http_parley_ws_hub;
ngx_queue_t                       ngx_http_parley_ws_watched;


static ngx_http_parley_ws_channel_t *ngx_http_parley_ws_channel_get(
    ngx_str_t *name, uint32_t hash);
static void ngx_http_parley_ws_channel_put(ngx_http_parley_ws_channel_t *ch);
static void ngx_http_parley_ws_hub_command(const char *verb,
    ngx_str_t *channel);
static void ngx_http_parley_ws_hub_connect(void);
static void ngx_http_parley_ws_hub_close(ngx_http_parley_ws_hub_t *hub);
static void ngx_http_parley_ws_hub_lost(const char *why);
static void ngx_http_parley_ws_hub_reconnect(ngx_event_t *ev);
static void ngx_http_parley_ws_hub_ping(ngx_event_t *ev);
static void ngx_http_parley_ws_hub_read(ngx_event_t *rev);
static void ngx_http_parley_ws_hub_write(ngx_event_t *wev);
static void ngx_http_parley_ws_hub_reply(redisReply *reply);
static void ngx_http_parley_ws_hub_subscribed(ngx_str_t *name);
static void ngx_http_parley_ws_hub_message(ngx_str_t *name, u_char *data,
    size_t len);
static void ngx_http_parley_ws_hub_user_event(ngx_http_parley_ws_sub_t *us,
    parley_pubsub_msg_t *m, ngx_http_parley_ws_frame_t *f);
static void ngx_http_parley_ws_deliver(ngx_http_parley_ws_sub_t *sub,
    ngx_http_parley_ws_frame_t *f, char ends);
static void ngx_http_parley_ws_drain(ngx_http_parley_ws_sub_t *sub);
static void ngx_http_parley_ws_fetch_later(ngx_http_parley_ws_channel_t *ch,
    ngx_msec_t delay);
static void ngx_http_parley_ws_fetch_timer(ngx_event_t *ev);
static void ngx_http_parley_ws_fetched(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_ws_fetch_sink(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *body, size_t len);
static char ngx_http_parley_ws_ends(ngx_http_parley_ws_sub_t *sub,
    char effect, const char *subject, size_t subject_len);


/* ---- setup --------------------------------------------------------- */


ngx_int_t
ngx_http_parley_ws_hub_init(ngx_cycle_t *cycle)
{
    int                                rc;
    ngx_uint_t                         i;
    struct addrinfo                    hints, *res;
    ngx_parley_redis_conf_t           *rcf;
    ngx_http_parley_ws_hub_t          *hub;
    ngx_http_parley_core_main_conf_t  *core;
    ngx_http_conf_ctx_t               *ctx;

    ctx = (ngx_http_conf_ctx_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_http_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    core = ctx->main_conf[ngx_http_parley_core_module.ctx_index];

    hub = ngx_pcalloc(cycle->pool, sizeof(ngx_http_parley_ws_hub_t));
    if (hub == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&hub->tree, &hub->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_http_parley_ws_watched);
    hub->core = core;
    hub->api_conf = ctx->loc_conf[ngx_http_parley_api_module.ctx_index];
    hub->log = *cycle->log;
    ngx_http_parley_ws_hub = hub;

    rcf = core->redis.elts;

    for (i = 0; i < core->redis.nelts; i++) {
        if (rcf[i].roles & (1 << NGX_PARLEY_REDIS_PUBSUB)) {
            hub->conf = &rcf[i];
            break;
        }
    }

    if (hub->conf == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "parley ws: no parley_redis for pub/sub: clients "
                      "get what they missed at start and resume, but no "
                      "live events");
        return NGX_OK;
    }

    /* resolved once per worker start, as the core's clients do */
    ngx_memzero(&hints, sizeof(struct addrinfo));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo((char *) hub->conf->host.data, NULL, &hints, &res);
    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "parley ws: cannot resolve \"%V\": %s",
                      &hub->conf->host, gai_strerror(rc));
        return NGX_ERROR;
    }

    hub->addr.sockaddr = ngx_pcalloc(cycle->pool, res->ai_addrlen);
    if (hub->addr.sockaddr == NULL) {
        freeaddrinfo(res);
        return NGX_ERROR;
    }

    ngx_memcpy(hub->addr.sockaddr, res->ai_addr, res->ai_addrlen);
    hub->addr.socklen = res->ai_addrlen;
    freeaddrinfo(res);
    ngx_inet_set_port(hub->addr.sockaddr, hub->conf->port);
    hub->addr.name = hub->conf->host;

    hub->reconnect.handler = ngx_http_parley_ws_hub_reconnect;
    hub->reconnect.log = &hub->log;
    hub->reconnect.data = hub;
    hub->reconnect.cancelable = 1;

    hub->ping.handler = ngx_http_parley_ws_hub_ping;
    hub->ping.log = &hub->log;
    hub->ping.data = hub;
    hub->ping.cancelable = 1;

    ngx_http_parley_ws_hub_connect();

    return NGX_OK;
}


void
ngx_http_parley_ws_hub_exit(ngx_cycle_t *cycle)
{
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    if (hub == NULL) {
        return;
    }

    hub->exiting = 1;

    if (hub->reconnect.timer_set) {
        ngx_del_timer(&hub->reconnect);
    }

    if (hub->ping.timer_set) {
        ngx_del_timer(&hub->ping);
    }

    ngx_http_parley_ws_hub_close(hub);

    ngx_free(hub->out);
    hub->out = NULL;
}


ngx_uint_t
ngx_http_parley_ws_hub_connected(void)
{
    return ngx_http_parley_ws_hub && ngx_http_parley_ws_hub->ready;
}


/* ---- channels and subscriptions ------------------------------------ */


ngx_http_parley_ws_sub_t *
ngx_http_parley_ws_subscribe(ngx_http_parley_ws_conn_t *wc, ngx_uint_t kind,
    uint64_t cid, const u_char *uid, size_t uid_len, uint64_t delivered)
{
    size_t                         len;
    uint32_t                       hash;
    ngx_str_t                      name;
    ngx_http_parley_ws_sub_t      *sub;
    ngx_http_parley_ws_channel_t  *ch;
    char                           buf[PARLEY_PUBSUB_CHANNEL_MAX];

    switch (kind) {
    case NGX_PARLEY_WS_CH_CONVERSATION:
        len = parley_pubsub_conversation_channel(buf, sizeof(buf),
                                                 wc->tenant_id, cid);
        break;
    case NGX_PARLEY_WS_CH_USER:
        len = parley_pubsub_user_channel(buf, sizeof(buf), wc->tenant_id,
                                         (const char *) uid, uid_len);
        break;
    default:
        len = parley_pubsub_presence_channel(buf, sizeof(buf), wc->tenant_id,
                                             (const char *) uid, uid_len);
        break;
    }

    if (len == 0) {
        return NULL;
    }

    sub = ngx_calloc(sizeof(ngx_http_parley_ws_sub_t), ngx_cycle->log);
    if (sub == NULL) {
        return NULL;
    }

    name.data = (u_char *) buf;
    name.len = len;
    hash = ngx_crc32_short(name.data, name.len);

    ch = ngx_http_parley_ws_channel_get(&name, hash);
    if (ch == NULL) {
        ngx_free(sub);
        return NULL;
    }

    ch->kind = kind;
    ch->tenant_id = wc->tenant_id;
    ch->cid = cid;

    sub->wc = wc;
    sub->ch = ch;
    parley_order_init(&sub->order, delivered);
    sub->state = NGX_PARLEY_WS_SUB_SYNCING;
    ngx_queue_insert_tail(&ch->subs, &sub->in_channel);
    ch->nsubs++;

    /* with Redis down nobody waits: the store read after reconnecting
     * brings what passed */
    if (!ch->subscribed && ngx_http_parley_ws_hub_connected()) {
        sub->waits = 1;
        wc->waiting++;
    }

    return sub;
}


void
ngx_http_parley_ws_unsubscribe(ngx_http_parley_ws_sub_t *sub)
{
    ngx_uint_t                     i;
    ngx_http_parley_ws_channel_t  *ch;

    ch = sub->ch;

    ngx_queue_remove(&sub->in_channel);
    ch->nsubs--;

    if (sub->waits) {
        sub->wc->waiting--;
    }

    for (i = 0; i < sub->order.nheld; i++) {
        ngx_http_parley_ws_frame_release(sub->order.slots[i].item);
    }

    ngx_free(sub->order.slots);
    ngx_free(sub);

    if (ch->nsubs == 0) {
        ngx_http_parley_ws_channel_put(ch);
    }
}


static ngx_http_parley_ws_channel_t *
ngx_http_parley_ws_channel_get(ngx_str_t *name, uint32_t hash)
{
    ngx_str_node_t                *sn;
    ngx_http_parley_ws_hub_t      *hub = ngx_http_parley_ws_hub;
    ngx_http_parley_ws_channel_t  *ch;

    sn = ngx_str_rbtree_lookup(&hub->tree, name, hash);

    if (sn) {
        return (ngx_http_parley_ws_channel_t *) sn;
    }

    ch = ngx_calloc(sizeof(ngx_http_parley_ws_channel_t) + name->len,
                    ngx_cycle->log);
    if (ch == NULL) {
        return NULL;
    }

    ch->sn.str.data = (u_char *) (ch + 1);
    ch->sn.str.len = name->len;
    ngx_memcpy(ch->sn.str.data, name->data, name->len);
    ch->sn.node.key = hash;
    ngx_queue_init(&ch->subs);

    ngx_rbtree_insert(&hub->tree, &ch->sn.node);
    hub->nchannels++;

    if (hub->ready) {
        ngx_http_parley_ws_hub_command(hub->core->pubsub_sharded
                                       ? "SSUBSCRIBE" : "SUBSCRIBE",
                                       &ch->sn.str);
    }

    return ch;
}


static void
ngx_http_parley_ws_channel_put(ngx_http_parley_ws_channel_t *ch)
{
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    if (hub->ready) {
        ngx_http_parley_ws_hub_command(hub->core->pubsub_sharded
                                       ? "SUNSUBSCRIBE" : "UNSUBSCRIBE",
                                       &ch->sn.str);
    }

    if (ch->fetch_timer) {
        if (ch->fetch_timer->timer_set) {
            ngx_del_timer(ch->fetch_timer);
        }

        ngx_free(ch->fetch_timer);
    }

    if (ch->in_watched) {
        ngx_queue_remove(&ch->watched);
    }

    if (ch->fetch) {
        /* the read in flight finds its channel gone */
        ((ngx_http_parley_ws_fetch_t *) ch->fetch)->ch = NULL;
    }

    ngx_rbtree_delete(&hub->tree, &ch->sn.node);
    hub->nchannels--;
    ngx_free(ch);
}


/* ---- ordered delivery ---------------------------------------------- */


/* What an event does to this subscription: '-' ends it, '.' nothing. */

static char
ngx_http_parley_ws_ends(ngx_http_parley_ws_sub_t *sub, char effect,
    const char *subject, size_t subject_len)
{
    ngx_str_t  *uid;

    if (effect == 'x') {
        return '-';
    }

    uid = &sub->wc->user_id;

    if (effect == '-' && subject_len == uid->len
        && ngx_memcmp(subject, uid->data, uid->len) == 0)
    {
        return '-';
    }

    return '.';
}


void
ngx_http_parley_ws_offer(ngx_http_parley_ws_sub_t *sub, uint64_t seq,
    char ends, ngx_http_parley_ws_frame_t *frame)
{
    void               *evicted;
    parley_order_rc_t   rc;

    if (sub->order.slots == NULL && seq > sub->order.delivered + 1) {
        /* slots only for a subscription that ever needs to hold */
        parley_order_slots(&sub->order,
                           ngx_alloc(NGX_PARLEY_WS_HELD_MAX
                                     * sizeof(parley_order_slot_t),
                                     ngx_cycle->log),
                           NGX_PARLEY_WS_HELD_MAX);
    }

    rc = sub->state == NGX_PARLEY_WS_SUB_LIVE
         ? parley_order_offer(&sub->order, seq, frame, ends, &evicted)
         : parley_order_hold(&sub->order, seq, frame, ends, &evicted);

    if (evicted) {
        /* the store still has it */
        ngx_http_parley_ws_frame_release(evicted);
    }

    switch (rc) {

    case PARLEY_ORDER_DELIVER:
        ngx_http_parley_ws_deliver(sub, frame, ends);
        return;

    case PARLEY_ORDER_HELD:
        frame->refs++;
        /* fall through */

    case PARLEY_ORDER_FULL:
        if (sub->state == NGX_PARLEY_WS_SUB_LIVE) {
            ngx_http_parley_ws_fetch_later(sub->ch, sub->wc->conf->gap_wait);
        }
        return;

    default:    /* a duplicate, or past the membership's end */
        return;
    }
}


/* sends; a subscription that the event ended goes (sub is freed) */

static void
ngx_http_parley_ws_deliver(ngx_http_parley_ws_sub_t *sub,
    ngx_http_parley_ws_frame_t *f, char ends)
{
    ngx_http_parley_ws_conn_t  *wc;

    wc = sub->wc;
    ngx_http_parley_ws_send(wc, f);

    if (wc->state == NGX_PARLEY_WS_CLOSING) {
        return;     /* closing dropped every subscription, sub too */
    }

    if (ends == '-') {
        ngx_queue_remove(&sub->in_conn);
        wc->nsubs--;
        ngx_http_parley_ws_unsubscribe(sub);
        return;
    }

    ngx_http_parley_ws_drain(sub);
}


/* held entries that are now in turn */

static void
ngx_http_parley_ws_drain(ngx_http_parley_ws_sub_t *sub)
{
    int                          rc, ends;
    void                        *item;
    uint64_t                     seq;
    ngx_http_parley_ws_conn_t   *wc;
    ngx_http_parley_ws_frame_t  *f;

    if (sub->state != NGX_PARLEY_WS_SUB_LIVE) {
        return;
    }

    wc = sub->wc;

    while ((rc = parley_order_next(&sub->order, &seq, &item, &ends)) != 0) {
        f = item;

        if (rc == 2) {
            ngx_http_parley_ws_frame_release(f);    /* stale */
            continue;
        }

        ngx_http_parley_ws_send(wc, f);
        ngx_http_parley_ws_frame_release(f);

        if (wc->state == NGX_PARLEY_WS_CLOSING) {
            return;
        }

        if (ends == '-') {
            ngx_queue_remove(&sub->in_conn);
            wc->nsubs--;
            ngx_http_parley_ws_unsubscribe(sub);
            return;
        }
    }

    if (parley_order_hole(&sub->order)) {
        ngx_http_parley_ws_fetch_later(sub->ch, wc->conf->gap_wait);
    }
}


void
ngx_http_parley_ws_sub_live(ngx_http_parley_ws_sub_t *sub)
{
    sub->state = NGX_PARLEY_WS_SUB_LIVE;
    ngx_http_parley_ws_drain(sub);
}


/* ---- reading the log from the store -------------------------------- */


static void
ngx_http_parley_ws_fetch_later(ngx_http_parley_ws_channel_t *ch,
    ngx_msec_t delay)
{
    if (ch->fetching) {
        ch->fetch_again = 1;
        return;
    }

    if (ch->fetch_timer == NULL) {
        ch->fetch_timer = ngx_calloc(sizeof(ngx_event_t), ngx_cycle->log);
        if (ch->fetch_timer == NULL) {
            return;
        }

        ch->fetch_timer->handler = ngx_http_parley_ws_fetch_timer;
        ch->fetch_timer->data = ch;
        ch->fetch_timer->log = ngx_cycle->log;
        ch->fetch_timer->cancelable = 1;
    }

    if (!ch->fetch_timer->timer_set) {
        ngx_add_timer(ch->fetch_timer, delay ? delay : 1);
    }
}


static void
ngx_http_parley_ws_fetch_timer(ngx_event_t *ev)
{
    ngx_http_parley_ws_channel_fetch(ev->data);
}


void
ngx_http_parley_ws_channel_fetch(ngx_http_parley_ws_channel_t *ch)
{
    uint64_t                       from;
    ngx_pool_t                    *pool;
    ngx_queue_t                   *q;
    ngx_http_parley_ws_sub_t      *sub;
    ngx_http_parley_api_req_t     *ar;
    ngx_http_parley_ws_fetch_t    *fx;
    ngx_http_parley_ws_hub_t      *hub = ngx_http_parley_ws_hub;

    if (ch->kind != NGX_PARLEY_WS_CH_CONVERSATION || ch->fetching) {
        ch->fetch_again = ch->fetching;
        return;
    }

    /* from the earliest position a live subscriber stands at */
    from = (uint64_t) -1;

    for (q = ngx_queue_head(&ch->subs); q != ngx_queue_sentinel(&ch->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_channel);

        if (sub->state == NGX_PARLEY_WS_SUB_LIVE
            && sub->order.delivered < from)
        {
            from = sub->order.delivered;
        }
    }

    if (from == (uint64_t) -1) {
        return;     /* nobody live: the start's catch-up covers them */
    }

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    ar = ngx_pcalloc(pool, sizeof(ngx_http_parley_api_req_t));
    fx = ngx_pcalloc(pool, sizeof(ngx_http_parley_ws_fetch_t));

    if (ar == NULL || fx == NULL
        || ngx_http_parley_api_req_init(ar, pool, ngx_cycle->log, hub->core,
                                        hub->api_conf,
                                        ngx_http_parley_ws_fetch_sink, fx)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    fx->ch = ch;
    fx->pool = pool;
    ch->fetch = fx;
    ar->data = fx;
    ar->tenant_id = ch->tenant_id;
    ch->fetching = 1;
    ch->fetch_again = 0;

    ngx_http_parley_api_sql(ar, ngx_http_parley_ws_fetched,
        "SELECT " NGX_PARLEY_EVENT_COLUMNS " FROM " NGX_PARLEY_EVENT_FROM
        " WHERE e.tenant_id = %U AND e.conversation_id = %U "
        "AND e.event_seq > %U ORDER BY e.event_seq LIMIT %U",
        ch->tenant_id, ch->cid, from, (uint64_t) NGX_PARLEY_WS_FETCH_BATCH);
}


static void
ngx_http_parley_ws_fetched(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    char                           effect, ends;
    json_t                        *entry;
    uint64_t                       seq;
    ngx_uint_t                     nrows;
    MYSQL_ROW                      row;
    ngx_queue_t                   *q, *next;
    unsigned long                 *len;
    ngx_http_parley_ws_sub_t      *sub;
    ngx_http_parley_ws_fetch_t    *fx = ar->data;
    ngx_http_parley_ws_frame_t    *f;
    ngx_http_parley_ws_channel_t  *ch;

    ch = fx->ch;
    nrows = 0;

    if (ch == NULL) {
        ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
        return;
    }

    ch->nsubs++;    /* pinned, as in _hub_message */

    while (res->res && (row = mysql_fetch_row(res->res))) {
        len = mysql_fetch_lengths(res->res);
        nrows++;

        seq = ngx_http_parley_api_col_u64(row, 1);
        effect = row[2] ? parley_pubsub_effect(row[2], len[2]) : '.';
        entry = ngx_http_parley_api_event_json(row, len);
        f = entry ? ngx_http_parley_ws_frame_json(entry) : NULL;
        json_decref(entry);

        if (f == NULL) {
            break;
        }

        for (q = ngx_queue_head(&ch->subs);
             q != ngx_queue_sentinel(&ch->subs);
             q = next)
        {
            next = ngx_queue_next(q);
            sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_channel);

            if (sub->state != NGX_PARLEY_WS_SUB_LIVE) {
                continue;
            }

            ends = ngx_http_parley_ws_ends(sub, effect, row[4],
                                           row[4] ? len[4] : 0);
            ngx_http_parley_ws_offer(sub, seq, ends, f);
        }

        ngx_http_parley_ws_frame_release(f);
    }

    ch->fetching = 0;
    ch->fetch = NULL;
    fx->ch = NULL;

    if (--ch->nsubs == 0) {
        ngx_http_parley_ws_channel_put(ch);

    } else if (nrows == NGX_PARLEY_WS_FETCH_BATCH || ch->fetch_again) {
        ngx_http_parley_ws_fetch_later(ch, 1);
    }

    ngx_http_parley_api_reply(ar, NGX_HTTP_NO_CONTENT, NULL);
}


static void
ngx_http_parley_ws_fetch_sink(ngx_http_parley_api_req_t *ar,
    ngx_uint_t status, u_char *body, size_t len)
{
    ngx_http_parley_ws_fetch_t  *fx = ar->sink_data;

    if (fx->ch) {
        /* the store failed: try again in a while */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "parley ws: reading conversation %uL's log failed "
                      "(%ui), retrying", fx->ch->cid, status);
        fx->ch->fetching = 0;
        fx->ch->fetch = NULL;
        ngx_http_parley_ws_fetch_later(fx->ch, NGX_PARLEY_WS_FETCH_RETRY);
        fx->ch = NULL;
    }

    ngx_destroy_pool(fx->pool);
}


/* ---- the subscriber connection ------------------------------------- */


static void
ngx_http_parley_ws_hub_command(const char *verb, ngx_str_t *channel)
{
    u_char                    *p;
    size_t                     need, vlen;
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    vlen = ngx_strlen(verb);
    need = 4 * (NGX_INT_T_LEN + 3) + vlen + (channel ? channel->len : 0);

    if (hub->out_len + need > hub->out_cap) {
        p = ngx_alloc(ngx_max(hub->out_cap * 2, hub->out_len + need + 4096),
                      &hub->log);
        if (p == NULL) {
            ngx_http_parley_ws_hub_lost("out of memory");
            return;
        }

        if (hub->out_len) {
            ngx_memcpy(p, hub->out, hub->out_len);
        }

        ngx_free(hub->out);
        hub->out = p;
        hub->out_cap = ngx_max(hub->out_cap * 2, hub->out_len + need + 4096);
    }

    p = hub->out + hub->out_len;

    if (channel) {
        p = ngx_sprintf(p, "*2\r\n$%uz\r\n%s\r\n$%uz\r\n%V\r\n", vlen, verb,
                        channel->len, channel);
    } else {
        p = ngx_sprintf(p, "*1\r\n$%uz\r\n%s\r\n", vlen, verb);
    }

    hub->out_len = p - hub->out;

    /* one write for every command queued in this pass of the event loop
     * (a start subscribes to many channels at once) */
    if (hub->connection && hub->connection->write->ready
        && !hub->connection->write->posted)
    {
        ngx_post_event(hub->connection->write, &ngx_posted_events);
    }
}


static void
ngx_http_parley_ws_hub_connect(void)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    ngx_memzero(&hub->peer, sizeof(ngx_peer_connection_t));
    hub->peer.sockaddr = hub->addr.sockaddr;
    hub->peer.socklen = hub->addr.socklen;
    hub->peer.name = &hub->addr.name;
    hub->peer.get = ngx_event_get_peer;
    hub->peer.log = &hub->log;
    hub->peer.log_error = NGX_ERROR_ERR;

    hub->out_len = 0;
    hub->ready = 0;

    rc = ngx_event_connect_peer(&hub->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (hub->peer.connection) {
            ngx_close_connection(hub->peer.connection);
            hub->peer.connection = NULL;
        }
        ngx_http_parley_ws_hub_lost("cannot connect");
        return;
    }

    c = hub->peer.connection;
    c->data = hub;
    c->read->handler = ngx_http_parley_ws_hub_read;
    c->write->handler = ngx_http_parley_ws_hub_write;
    c->pool = NULL;
    hub->connection = c;

    hub->reader = redisReaderCreate();
    if (hub->reader == NULL) {
        ngx_http_parley_ws_hub_lost("out of memory");
        return;
    }

    if (hub->conf->password.len) {
        /* AUTH first; channels follow once it is accepted */
        p = ngx_alloc(64 + hub->conf->password.len, &hub->log);
        if (p == NULL) {
            ngx_http_parley_ws_hub_lost("out of memory");
            return;
        }

        ngx_free(hub->out);
        hub->out = p;
        hub->out_cap = 64 + hub->conf->password.len;
        hub->out_len = ngx_sprintf(p, "*2\r\n$4\r\nAUTH\r\n$%uz\r\n%V\r\n",
                                   hub->conf->password.len,
                                   &hub->conf->password) - p;

    } else {
        ngx_http_parley_ws_hub_reply(NULL);   /* ready at once */
    }

    ngx_add_timer(c->write, hub->conf->timeouts.connect_timeout);

    if (rc == NGX_OK) {
        ngx_http_parley_ws_hub_write(c->write);
    }
}


static void
ngx_http_parley_ws_hub_close(ngx_http_parley_ws_hub_t *hub)
{
    if (hub->connection) {
        ngx_close_connection(hub->connection);
        hub->connection = NULL;
    }

    if (hub->reader) {
        redisReaderFree(hub->reader);
        hub->reader = NULL;
    }
}


/* everything subscribed is lost: reconnect later and read what passed */

static void
ngx_http_parley_ws_hub_lost(const char *why)
{
    ngx_msec_t                 delay;
    ngx_rbtree_node_t         *node, *root, *sentinel;
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    ngx_http_parley_ws_hub_close(hub);

    hub->ready = 0;
    hub->out_len = 0;

    if (hub->ping.timer_set) {
        ngx_del_timer(&hub->ping);
    }

    root = hub->tree.root;
    sentinel = hub->tree.sentinel;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel); node;
             node = ngx_rbtree_next(&hub->tree, node))
        {
            ((ngx_http_parley_ws_channel_t *) node)->subscribed = 0;
        }
    }

    if (hub->exiting) {
        return;
    }

    delay = ngx_parley_reconnect_delay(&hub->conf->timeouts, hub->failures++);

    ngx_log_error(NGX_LOG_WARN, &hub->log, 0,
                  "parley ws: redis pub/sub %V:%d: %s, reconnecting in %M ms",
                  &hub->conf->host, (int) hub->conf->port, why, delay);

    ngx_add_timer(&hub->reconnect, delay);
}


static void
ngx_http_parley_ws_hub_reconnect(ngx_event_t *ev)
{
    ngx_http_parley_ws_hub_connect();
}


static void
ngx_http_parley_ws_hub_ping(ngx_event_t *ev)
{
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    if (!hub->heard) {
        ngx_http_parley_ws_hub_lost("no answer to PING");
        return;
    }

    hub->heard = 0;
    ngx_http_parley_ws_hub_command("PING", NULL);
    ngx_add_timer(&hub->ping, NGX_PARLEY_WS_HUB_PING);
}


static void
ngx_http_parley_ws_hub_write(ngx_event_t *wev)
{
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    c = wev->data;

    if (wev->timedout) {
        ngx_http_parley_ws_hub_lost("connect timed out");
        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    while (hub->out_len) {
        n = c->send(c, hub->out, hub->out_len);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_http_parley_ws_hub_lost("write failed");
            return;
        }

        ngx_memmove(hub->out, hub->out + n, hub->out_len - n);
        hub->out_len -= n;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_parley_ws_hub_lost("event failed");
    }
}


static void
ngx_http_parley_ws_hub_read(ngx_event_t *rev)
{
    void                      *reply;
    ssize_t                    n;
    ngx_connection_t          *c;
    u_char                     buf[16384];
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    c = rev->data;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_parley_ws_hub_lost(n == 0 ? "closed by redis"
                                               : "read failed");
            return;
        }

        hub->heard = 1;

        if (redisReaderFeed(hub->reader, (char *) buf, n) != REDIS_OK) {
            ngx_http_parley_ws_hub_lost("protocol error");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(hub->reader, &reply) != REDIS_OK) {
                ngx_http_parley_ws_hub_lost("protocol error");
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_http_parley_ws_hub_reply(reply);
            freeReplyObject(reply);

            if (hub->connection == NULL) {
                return;     /* lost while handling */
            }
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_parley_ws_hub_lost("event failed");
    }
}


/* reply NULL: the connection is usable (no AUTH, or AUTH accepted) */

static void
ngx_http_parley_ws_hub_reply(redisReply *reply)
{
    ngx_str_t                  kind, name;
    ngx_rbtree_node_t         *node, *root, *sentinel;
    ngx_http_parley_ws_hub_t  *hub = ngx_http_parley_ws_hub;

    if (!hub->ready) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, &hub->log, 0,
                          "parley ws: redis refused AUTH: %*s",
                          (size_t) reply->len, reply->str);
            ngx_http_parley_ws_hub_lost("AUTH refused");
            return;
        }

        if (hub->failures) {
            ngx_log_error(NGX_LOG_NOTICE, &hub->log, 0,
                          "parley ws: redis pub/sub %V:%d: connected again, "
                          "resubscribing %ui channels", &hub->conf->host,
                          (int) hub->conf->port, hub->nchannels);
        }

        hub->ready = 1;
        hub->failures = 0;
        hub->heard = 1;
        ngx_add_timer(&hub->ping, NGX_PARLEY_WS_HUB_PING);

        root = hub->tree.root;
        sentinel = hub->tree.sentinel;

        if (root != sentinel) {
            for (node = ngx_rbtree_min(root, sentinel); node;
                 node = ngx_rbtree_next(&hub->tree, node))
            {
                ngx_http_parley_ws_hub_command(hub->core->pubsub_sharded
                                               ? "SSUBSCRIBE" : "SUBSCRIBE",
                    &((ngx_http_parley_ws_channel_t *) node)->sn.str);
            }
        }

        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &hub->log, 0,
                      "parley ws: redis pub/sub error: %*s",
                      (size_t) reply->len, reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind.data = (u_char *) reply->element[0]->str;
    kind.len = reply->element[0]->len;

    if (reply->element[1]->type != REDIS_REPLY_STRING) {
        return;     /* a PING's answer */
    }

    name.data = (u_char *) reply->element[1]->str;
    name.len = reply->element[1]->len;

    if (reply->elements == 3 && reply->element[2]->type == REDIS_REPLY_STRING
        && ((kind.len == 7 && ngx_strncmp(kind.data, "message", 7) == 0)
            || (kind.len == 8 && ngx_strncmp(kind.data, "smessage", 8) == 0)))
    {
        ngx_http_parley_ws_hub_message(&name,
                                       (u_char *) reply->element[2]->str,
                                       reply->element[2]->len);
        return;
    }

    if ((kind.len == 9 && ngx_strncmp(kind.data, "subscribe", 9) == 0)
        || (kind.len == 10 && ngx_strncmp(kind.data, "ssubscribe", 10) == 0))
    {
        ngx_http_parley_ws_hub_subscribed(&name);
    }
}


static void
ngx_http_parley_ws_hub_subscribed(ngx_str_t *name)
{
    ngx_uint_t                     catchup;
    ngx_queue_t                   *q, *next;
    ngx_str_node_t                *sn;
    ngx_http_parley_ws_sub_t      *sub;
    ngx_http_parley_ws_conn_t     *wc;
    ngx_http_parley_ws_channel_t  *ch;
    ngx_http_parley_ws_hub_t      *hub = ngx_http_parley_ws_hub;

    sn = ngx_str_rbtree_lookup(&hub->tree, name,
                               ngx_crc32_short(name->data, name->len));
    if (sn == NULL) {
        return;     /* unsubscribed meanwhile */
    }

    ch = (ngx_http_parley_ws_channel_t *) sn;

    if (ch->subscribed) {
        return;
    }

    ch->subscribed = 1;
    catchup = 0;

    for (q = ngx_queue_head(&ch->subs); q != ngx_queue_sentinel(&ch->subs);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_channel);
        wc = sub->wc;

        if (ch->kind == NGX_PARLEY_WS_CH_PRESENCE) {
            /* the state is read once changes can no longer be missed */
            ngx_http_parley_ws_session_watching(sub);
            continue;
        }

        if (sub->state == NGX_PARLEY_WS_SUB_LIVE) {
            /* a resubscription: whatever passed meanwhile is in the store */
            catchup = 1;

            if (ch->kind == NGX_PARLEY_WS_CH_USER) {
                ngx_http_parley_ws_session_subscribed(wc);
            }

            continue;
        }

        if (sub->waits) {
            sub->waits = 0;

            if (--wc->waiting == 0) {
                ngx_http_parley_ws_session_subscribed(wc);
            }
        }
    }

    if (catchup && ch->kind == NGX_PARLEY_WS_CH_CONVERSATION) {
        ngx_http_parley_ws_fetch_later(ch, 1);
    }
}


static void
ngx_http_parley_ws_hub_message(ngx_str_t *name, u_char *data, size_t len)
{
    char                           ends;
    ngx_queue_t                   *q, *next;
    ngx_str_node_t                *sn;
    parley_pubsub_msg_t            m;
    ngx_http_parley_ws_sub_t      *sub;
    ngx_http_parley_ws_frame_t    *f;
    ngx_http_parley_ws_channel_t  *ch;
    ngx_http_parley_ws_hub_t      *hub = ngx_http_parley_ws_hub;

    sn = ngx_str_rbtree_lookup(&hub->tree, name,
                               ngx_crc32_short(name->data, name->len));
    if (sn == NULL) {
        return;
    }

    ch = (ngx_http_parley_ws_channel_t *) sn;

    if (parley_pubsub_parse((const char *) data, len, &m) != 0) {
        ngx_log_error(NGX_LOG_WARN, &hub->log, 0,
                      "parley ws: malformed message on \"%V\" ignored",
                      name);
        return;
    }

    f = ngx_http_parley_ws_frame_text((u_char *) m.body, m.body_len);
    if (f == NULL) {
        return;
    }

    /* pinned: a subscription that ends here must not free the channel */
    ch->nsubs++;

    for (q = ngx_queue_head(&ch->subs); q != ngx_queue_sentinel(&ch->subs);
         q = next)
    {
        next = ngx_queue_next(q);
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_channel);

        if (ch->kind == NGX_PARLEY_WS_CH_USER && m.kind == 'E') {
            ngx_http_parley_ws_hub_user_event(sub, &m, f);
            continue;
        }

        if (m.kind == 'T') {
            if (sub->state == NGX_PARLEY_WS_SUB_LIVE
                || ch->kind != NGX_PARLEY_WS_CH_CONVERSATION)
            {
                ngx_http_parley_ws_session_transient(sub->wc, m.origin, f);
            }
            continue;
        }

        if (ch->kind != NGX_PARLEY_WS_CH_CONVERSATION || m.cid != ch->cid) {
            continue;
        }

        ends = ngx_http_parley_ws_ends(sub, m.effect, m.subject,
                                       m.subject_len);
        ngx_http_parley_ws_offer(sub, m.seq, ends, f);
    }

    ngx_http_parley_ws_frame_release(f);

    if (--ch->nsubs == 0) {
        ngx_http_parley_ws_channel_put(ch);
    }
}


/*
 * A membership change of the user, on the user's channel: joining opens a
 * subscription to the conversation (from this very entry); leaving goes
 * through the conversation's subscription, in its order.
 */

static void
ngx_http_parley_ws_hub_user_event(ngx_http_parley_ws_sub_t *us,
    parley_pubsub_msg_t *m, ngx_http_parley_ws_frame_t *f)
{
    ngx_queue_t                *q;
    ngx_http_parley_ws_sub_t   *sub;
    ngx_http_parley_ws_conn_t  *wc;

    wc = us->wc;

    if (m->cid == 0) {
        return;
    }

    if (wc->state != NGX_PARLEY_WS_LIVE) {
        /* the start's membership read may have been before it: read again
         * once started */
        wc->resync = 1;
        return;
    }

    for (q = ngx_queue_head(&wc->subs); q != ngx_queue_sentinel(&wc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_parley_ws_sub_t, in_conn);

        if (sub->ch->cid == m->cid) {
            ngx_http_parley_ws_offer(sub, m->seq,
                                     ngx_http_parley_ws_ends(sub, m->effect,
                                         m->subject, m->subject_len),
                                     f);
            return;
        }
    }

    if (m->effect != '+' || wc->nsubs >= wc->conf->max_conversations) {
        return;
    }

    sub = ngx_http_parley_ws_subscribe(wc, NGX_PARLEY_WS_CH_CONVERSATION,
                                       m->cid, NULL, 0, m->seq - 1);
    if (sub == NULL) {
        return;
    }

    /* not a start: this sub does not hold the connection back */
    if (sub->waits) {
        sub->waits = 0;
        wc->waiting--;
    }

    ngx_queue_insert_tail(&wc->subs, &sub->in_conn);
    wc->nsubs++;
    sub->state = NGX_PARLEY_WS_SUB_LIVE;

    ngx_http_parley_ws_offer(sub, m->seq, '.', f);

    /* entries after the join may have passed before this subscription */
    ngx_http_parley_ws_fetch_later(sub->ch, 1);
}
