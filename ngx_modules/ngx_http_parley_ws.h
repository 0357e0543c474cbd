
/*
 * Parley WebSocket gateway: what its files share (docs/realtime.md).
 *
 *   ngx_http_parley_ws_module.c   directives, the upgrade, the takeover
 *   ngx_http_parley_ws_conn.c     the connection: frames in and out,
 *                                 heartbeats, closing
 *   ngx_http_parley_ws_hub.c      the worker's channels and their Redis
 *                                 subscriber connection; ordered delivery
 *   ngx_http_parley_ws_session.c  the JSON protocol: start and resume,
 *                                 operations, presence
 *
 * After the 101 the HTTP request is freed: a connection keeps only its
 * ngx_connection_t, a small pool and an ngx_http_parley_ws_conn_t, so an
 * idle client costs little.  Frames sent to many connections are built
 * once and shared by reference.
 */


#ifndef _NGX_HTTP_PARLEY_WS_H_INCLUDED_
#define _NGX_HTTP_PARLEY_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "parley_order.h"
#include "parley_ws.h"
#include "parley_ws_deflate.h"


/* close codes of our own (4000-4999, docs/realtime.md) */
#define NGX_PARLEY_WS_CLOSE_TOKEN_EXPIRED   4001
#define NGX_PARLEY_WS_CLOSE_HEARTBEAT       4002
#define NGX_PARLEY_WS_CLOSE_START_TIMEOUT   4003
#define NGX_PARLEY_WS_CLOSE_BAD_OP          4004
#define NGX_PARLEY_WS_CLOSE_UNAVAILABLE     4005
#define NGX_PARLEY_WS_CLOSE_SLOW            4008

#define NGX_PARLEY_WS_HELD_MAX              32


typedef struct ngx_http_parley_ws_conn_s     ngx_http_parley_ws_conn_t;
typedef struct ngx_http_parley_ws_sub_s      ngx_http_parley_ws_sub_t;
typedef struct ngx_http_parley_ws_channel_s  ngx_http_parley_ws_channel_t;


typedef struct {
    ngx_flag_t                       enable;
    size_t                           max_frame;
    size_t                           max_message;
    size_t                           send_buffer;
    ngx_msec_t                       send_timeout;
    ngx_msec_t                       ping_interval;
    ngx_msec_t                       idle_timeout;
    ngx_msec_t                       start_timeout;
    ngx_msec_t                       close_timeout;
    ngx_msec_t                       reconnect_window;
    ngx_msec_t                       presence_ttl;
    ngx_msec_t                       gap_wait;
    ngx_uint_t                       resume_max;
    ngx_uint_t                       max_conversations;
    ngx_uint_t                       max_inflight;
    ngx_uint_t                       transient_rate;   /* per second */
    ngx_flag_t                       deflate;
} ngx_http_parley_ws_loc_conf_t;


/* a wire frame, built once, queued on any number of connections */
typedef struct {
    ngx_uint_t                       refs;
    size_t                           len;       /* header + payload */
    size_t                           hlen;
    u_char                          *data;
} ngx_http_parley_ws_frame_t;


typedef struct ngx_http_parley_ws_out_s  ngx_http_parley_ws_out_t;

struct ngx_http_parley_ws_out_s {
    ngx_http_parley_ws_out_t        *next;
    ngx_http_parley_ws_frame_t      *frame;
};


#define NGX_PARLEY_WS_CH_CONVERSATION  1
#define NGX_PARLEY_WS_CH_USER          2
#define NGX_PARLEY_WS_CH_PRESENCE      3


struct ngx_http_parley_ws_channel_s {
    ngx_str_node_t                   sn;        /* the Redis channel name */
    ngx_queue_t                      subs;
    ngx_uint_t                       nsubs;
    ngx_uint_t                       kind;
    uint64_t                         tenant_id;
    uint64_t                         cid;
    ngx_event_t                     *fetch_timer;  /* while a gap waits */
    void                            *fetch;        /* the read in flight */
    ngx_queue_t                      watched;      /* presence channels */
    unsigned                         in_watched:1;
    unsigned                         subscribed:1;
    unsigned                         fetching:1;
    unsigned                         fetch_again:1;
};


#define NGX_PARLEY_WS_SUB_SYNCING  0   /* the start's catch-up runs */
#define NGX_PARLEY_WS_SUB_LIVE     1

struct ngx_http_parley_ws_sub_s {
    ngx_queue_t                      in_channel;
    ngx_queue_t                      in_conn;
    ngx_http_parley_ws_conn_t       *wc;
    ngx_http_parley_ws_channel_t    *ch;
    parley_order_t                   order;      /* event_seq given, held */
    ngx_uint_t                       state;
    unsigned                         waits:1;    /* counted in wc->waiting */
};


#define NGX_PARLEY_WS_NEW       0   /* waiting for start or resume */
#define NGX_PARLEY_WS_STARTING  1
#define NGX_PARLEY_WS_LIVE      2
#define NGX_PARLEY_WS_CLOSING   3   /* close frame queued or sent */

struct ngx_http_parley_ws_conn_s {
    ngx_connection_t                *connection;
    ngx_http_parley_ws_loc_conf_t   *conf;
    ngx_http_parley_api_loc_conf_t  *api_conf;
    ngx_http_parley_core_main_conf_t *core;

    uint64_t                         id;         /* origin of its events */
    uint64_t                         tenant_id;
    ngx_str_t                        user_id;
    ngx_uint_t                       auth;       /* NGX_PARLEY_AUTH_USER */
    int64_t                          token_exp;  /* Unix seconds */

    parley_ws_reader_t               reader;
    u_char                          *msg;        /* message being read */
    size_t                           msg_len;
    size_t                           msg_cap;
    parley_ws_utf8_t                 msg_utf8;
    parley_ws_inflater_t            *inflater;   /* permessage-deflate */
    parley_ws_deflater_t            *deflater;

    ngx_http_parley_ws_out_t        *out;        /* queued frames */
    ngx_http_parley_ws_out_t        *out_tail;
    size_t                           out_sent;   /* of out->frame */
    size_t                           out_bytes;
    ngx_queue_t                      flush_link;

    ngx_queue_t                      ops;        /* operations running */
    ngx_queue_t                      queries;    /* presence reads */
    ngx_queue_t                      subs;       /* conversation subs */
    ngx_http_parley_ws_sub_t        *user_sub;
    ngx_queue_t                      watches;    /* presence subs */
    ngx_uint_t                       nsubs;
    ngx_uint_t                       nwatches;
    ngx_uint_t                       waiting;    /* channels to confirm */

    ngx_log_t                        log;        /* the connection's, once
                                                    its pool is gone */
    u_char                          *peer;       /* its sockaddr, address */
    ngx_msec_t                       opened;     /* the takeover */
    ngx_msec_t                       last_rx;
    ngx_msec_t                       ping_due;
    ngx_msec_t                       transient_at;
    ngx_uint_t                       transient_n;
    ngx_uint_t                       inflight;   /* operations running */
    ngx_uint_t                       state;
    void                            *start;      /* session's start state */
    ngx_pool_t                      *start_pool;

    unsigned                         flush_posted:1;
    unsigned                         close_received:1;
    unsigned                         ping_sent:1;
    unsigned                         online:1;   /* counted in presence */
    unsigned                         resync:1;   /* joined while starting */
    unsigned                         destroyed:1;
};


extern ngx_module_t  ngx_http_parley_ws_module;


/* ---- the connection (ngx_http_parley_ws_conn.c) -------------------- */

void ngx_http_parley_ws_conn_init(ngx_cycle_t *cycle);
void ngx_http_parley_ws_conn_exit(ngx_cycle_t *cycle);

void ngx_http_parley_ws_read_handler(ngx_event_t *rev);
void ngx_http_parley_ws_write_handler(ngx_event_t *wev);
/* Feeds bytes from the client; wc->destroyed may be set afterwards. */
void ngx_http_parley_ws_consume(ngx_http_parley_ws_conn_t *wc, u_char *buf,
    size_t n);
/* (Re)arms the connection's one timer. */
void ngx_http_parley_ws_arm(ngx_http_parley_ws_conn_t *wc);
/* Queues bytes as they are, also before the connection is taken over. */
void ngx_http_parley_ws_enqueue(ngx_http_parley_ws_conn_t *wc,
    ngx_http_parley_ws_frame_t *f);
/* Closes the socket and frees all but wc, which the caller frees. */
void ngx_http_parley_ws_finalize(ngx_http_parley_ws_conn_t *wc);

ngx_http_parley_ws_frame_t *ngx_http_parley_ws_frame_text(u_char *text,
    size_t len);
ngx_http_parley_ws_frame_t *ngx_http_parley_ws_frame_json(json_t *json);
void ngx_http_parley_ws_frame_release(ngx_http_parley_ws_frame_t *f);

/* Queues a frame (a reference is taken); the write happens after the
 * current event, merged with whatever else is queued by then. */
void ngx_http_parley_ws_send(ngx_http_parley_ws_conn_t *wc,
    ngx_http_parley_ws_frame_t *f);
void ngx_http_parley_ws_send_json(ngx_http_parley_ws_conn_t *wc,
    json_t *json);

/* Starts the closing handshake with code and reason. */
void ngx_http_parley_ws_close(ngx_http_parley_ws_conn_t *wc,
    ngx_uint_t code, const char *reason);


/* ---- the hub (ngx_http_parley_ws_hub.c) ---------------------------- */

ngx_int_t ngx_http_parley_ws_hub_init(ngx_cycle_t *cycle);
void ngx_http_parley_ws_hub_exit(ngx_cycle_t *cycle);

/* A subscription of wc to a channel, subscribing the worker if needed. */
ngx_http_parley_ws_sub_t *ngx_http_parley_ws_subscribe(
    ngx_http_parley_ws_conn_t *wc, ngx_uint_t kind, uint64_t cid,
    const u_char *uid, size_t uid_len, uint64_t delivered);
void ngx_http_parley_ws_unsubscribe(ngx_http_parley_ws_sub_t *sub);

/* Gives an event of the log to sub, in order: see the hub's comment. */
void ngx_http_parley_ws_offer(ngx_http_parley_ws_sub_t *sub, uint64_t seq,
    char effect, ngx_http_parley_ws_frame_t *frame);
/* The start's catch-up is over: held events flow. */
void ngx_http_parley_ws_sub_live(ngx_http_parley_ws_sub_t *sub);

/* Reads from the store what the channel's subscribers miss. */
void ngx_http_parley_ws_channel_fetch(ngx_http_parley_ws_channel_t *ch);

ngx_uint_t ngx_http_parley_ws_hub_connected(void);

/* the worker's presence channels, which its sweep checks */
extern ngx_queue_t  ngx_http_parley_ws_watched;


/* ---- the protocol (ngx_http_parley_ws_session.c) ------------------- */

void ngx_http_parley_ws_session_open(ngx_http_parley_ws_conn_t *wc);
void ngx_http_parley_ws_session_message(ngx_http_parley_ws_conn_t *wc,
    u_char *text, size_t len);
void ngx_http_parley_ws_session_close(ngx_http_parley_ws_conn_t *wc);

/* A presence channel a connection watches is subscribed (again). */
void ngx_http_parley_ws_session_watching(ngx_http_parley_ws_sub_t *sub);

/* The send queue went down: a paused replay goes on. */
void ngx_http_parley_ws_session_drained(ngx_http_parley_ws_conn_t *wc);

/* Every channel wc waited for is subscribed. */
void ngx_http_parley_ws_session_subscribed(ngx_http_parley_ws_conn_t *wc);

/* A transient event for wc's user, or from a conversation it is in. */
void ngx_http_parley_ws_session_transient(ngx_http_parley_ws_conn_t *wc,
    uint64_t origin, ngx_http_parley_ws_frame_t *frame);

/* Called every ping interval for a live connection. */
void ngx_http_parley_ws_session_tick(ngx_http_parley_ws_conn_t *wc);


#endif /* _NGX_HTTP_PARLEY_WS_H_INCLUDED_ */
