
/*
 * A WebSocket connection after the upgrade (docs/realtime.md): frames in
 * through lib/parley_ws.c, frames out through a queue per connection, one
 * timer for heartbeats, start deadline, token expiry and closing.
 *
 * Writes are merged: ngx_http_parley_ws_send() queues and posts one worker
 * event that writes every connection that has something queued, so a burst
 * of events to a connection leaves in one writev.  A queue that grows past
 * parley_ws_send_buffer closes the connection with 4008: a client that
 * cannot keep up is dropped (it resumes without loss) and never holds the
 * others back.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_ws.h"


#define NGX_PARLEY_WS_READ_BUF    16384
#define NGX_PARLEY_WS_IOV_MAX     64
#define NGX_PARLEY_WS_DEFLATE_MIN 128   /* smaller payloads go plain */
#define NGX_PARLEY_WS_FLUSH_BATCH 256   /* connections written per pass */


static ngx_int_t ngx_http_parley_ws_append(ngx_http_parley_ws_conn_t *wc,
    const u_char *data, size_t len, ngx_uint_t compressed);
static void ngx_http_parley_ws_message_end(ngx_http_parley_ws_conn_t *wc,
    ngx_uint_t compressed);
static ngx_int_t ngx_http_parley_ws_grow(ngx_http_parley_ws_conn_t *wc,
    size_t want);
static ngx_int_t ngx_http_parley_ws_inflate_failed(
    ngx_http_parley_ws_conn_t *wc, int rc);
static void ngx_http_parley_ws_tick(ngx_http_parley_ws_conn_t *wc);
static void ngx_http_parley_ws_shutdown(ngx_http_parley_ws_conn_t *wc);
static void ngx_http_parley_ws_control(ngx_http_parley_ws_conn_t *wc,
    ngx_uint_t opcode, const u_char *data, size_t len);
static void ngx_http_parley_ws_flush_posted(ngx_event_t *ev);
static void ngx_http_parley_ws_flush(ngx_http_parley_ws_conn_t *wc);
static void ngx_http_parley_ws_drop_queue(ngx_http_parley_ws_conn_t *wc);


/* per worker: one read buffer serves every connection (frames are copied
 * out as they are parsed), and the list of connections to write */
static u_char                     ngx_http_parley_ws_rbuf[NGX_PARLEY_WS_READ_BUF];
static ngx_queue_t                ngx_http_parley_ws_flushq;
static ngx_event_t                ngx_http_parley_ws_flush_ev;
static ngx_http_parley_ws_out_t  *ngx_http_parley_ws_free_out;


void
ngx_http_parley_ws_conn_init(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_parley_ws_flushq);
    ngx_http_parley_ws_flush_ev.handler = ngx_http_parley_ws_flush_posted;
    ngx_http_parley_ws_flush_ev.log = cycle->log;
    ngx_http_parley_ws_flush_ev.data = NULL;
}


void
ngx_http_parley_ws_conn_exit(ngx_cycle_t *cycle)
{
    ngx_http_parley_ws_out_t  *o;

    while (ngx_http_parley_ws_free_out) {
        o = ngx_http_parley_ws_free_out;
        ngx_http_parley_ws_free_out = o->next;
        ngx_free(o);
    }
}


/* ---- reading ------------------------------------------------------- */


void
ngx_http_parley_ws_read_handler(ngx_event_t *rev)
{
    ssize_t                     n;
    ngx_connection_t           *c;
    ngx_http_parley_ws_conn_t  *wc;

    c = rev->data;
    wc = c->data;

    if (c->close) {
        c->close = 0;
        ngx_http_parley_ws_shutdown(wc);
        goto done;
    }

    if (rev->timedout) {
        rev->timedout = 0;
        ngx_http_parley_ws_tick(wc);
        goto done;
    }

    for ( ;; ) {
        n = c->recv(c, ngx_http_parley_ws_rbuf, NGX_PARLEY_WS_READ_BUF);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            /* gone without a close frame: 1006 for whoever counts */
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "parley ws: \"%V\" disconnected", &wc->user_id);
            ngx_http_parley_ws_finalize(wc);
            goto done;
        }

        wc->last_rx = ngx_current_msec;
        ngx_http_parley_ws_consume(wc, ngx_http_parley_ws_rbuf, n);

        if (wc->destroyed) {
            goto done;
        }

        if ((size_t) n < NGX_PARLEY_WS_READ_BUF) {
            break;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_parley_ws_finalize(wc);
    }

done:

    if (wc->destroyed) {
        ngx_free(wc);
    }
}


void
ngx_http_parley_ws_consume(ngx_http_parley_ws_conn_t *wc, u_char *buf,
    size_t n)
{
    size_t                   used;
    ngx_uint_t               code;
    parley_ws_read_event_t   ev;

    while (!wc->destroyed) {
        used = parley_ws_read(&wc->reader, buf, n, &ev);
        buf += used;
        n -= used;

        switch (ev.type) {

        case PARLEY_WS_READ_AGAIN:
            return;

        case PARLEY_WS_READ_MESSAGE_START:
            if (ev.opcode != PARLEY_WS_OP_TEXT) {
                ngx_http_parley_ws_close(wc, PARLEY_WS_CLOSE_UNSUPPORTED,
                                         "messages are JSON text");
                return;
            }

            wc->msg_len = 0;
            parley_ws_utf8_init(&wc->msg_utf8);
            break;

        case PARLEY_WS_READ_DATA:
            if (wc->state == NGX_PARLEY_WS_CLOSING) {
                break;      /* after our close frame, data is ignored */
            }

            if (ngx_http_parley_ws_append(wc, ev.data, ev.len, ev.compressed)
                != NGX_OK)
            {
                return;
            }
            break;

        case PARLEY_WS_READ_MESSAGE_END:
            ngx_http_parley_ws_message_end(wc, ev.compressed);
            break;

        case PARLEY_WS_READ_PING:
            ngx_http_parley_ws_control(wc, PARLEY_WS_OP_PONG, ev.data,
                                       ev.len);
            break;

        case PARLEY_WS_READ_PONG:
            wc->ping_sent = 0;
            break;

        case PARLEY_WS_READ_CLOSE:
            wc->close_received = 1;

            if (wc->state == NGX_PARLEY_WS_CLOSING) {
                /* the handshake is complete once our close frame is out */
                if (wc->out == NULL) {
                    ngx_http_parley_ws_finalize(wc);
                }
                return;
            }

            /* echo the code (RFC 6455 5.5.1); none given: answer 1000 */
            code = ev.close_code == PARLEY_WS_CLOSE_NO_STATUS
                   ? PARLEY_WS_CLOSE_NORMAL : ev.close_code;
            ngx_http_parley_ws_close(wc, code, "");
            return;

        case PARLEY_WS_READ_ERROR:
            ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                          "parley ws: \"%V\" broke the protocol: %ui",
                          &wc->user_id, (ngx_uint_t) ev.close_code);
            ngx_http_parley_ws_close(wc, ev.close_code, "protocol error");
            return;
        }
    }
}


static ngx_int_t
ngx_http_parley_ws_append(ngx_http_parley_ws_conn_t *wc, const u_char *data,
    size_t len, ngx_uint_t compressed)
{
    int      rc;
    size_t   cap, want;

    cap = wc->conf->max_message;

    if (compressed) {
        /* inflated size is bounded by cap: the buffer is that big */
        if (wc->msg_cap < cap
            && ngx_http_parley_ws_grow(wc, cap) != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = len ? parley_ws_inflate(wc->inflater, data, len, wc->msg, cap,
                                     &wc->msg_len, &wc->msg_utf8)
                 : 0;

        return rc ? ngx_http_parley_ws_inflate_failed(wc, rc) : NGX_OK;
    }

    /* the reader bounds a plain message by max_message already */
    if (wc->msg_len + len > wc->msg_cap) {
        want = ngx_max(wc->msg_cap * 2, wc->msg_len + len);
        want = ngx_max(want, 256);

        if (ngx_http_parley_ws_grow(wc, ngx_min(want, cap)) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ngx_memcpy(wc->msg + wc->msg_len, data, len);
    wc->msg_len += len;

    return NGX_OK;
}


/* the message buffer holds want bytes, keeping what it has */

static ngx_int_t
ngx_http_parley_ws_grow(ngx_http_parley_ws_conn_t *wc, size_t want)
{
    u_char  *p;

    p = ngx_alloc(want, wc->connection->log);
    if (p == NULL) {
        ngx_http_parley_ws_close(wc, PARLEY_WS_CLOSE_INTERNAL, "");
        return NGX_ERROR;
    }

    if (wc->msg_len) {
        ngx_memcpy(p, wc->msg, wc->msg_len);
    }

    ngx_free(wc->msg);
    wc->msg = p;
    wc->msg_cap = want;

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_ws_inflate_failed(ngx_http_parley_ws_conn_t *wc, int rc)
{
    ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                  "parley ws: \"%V\" sent a compressed message that does "
                  "not inflate (%d)", &wc->user_id, rc);
    ngx_http_parley_ws_close(wc, rc, rc == PARLEY_WS_CLOSE_TOO_BIG
                                     ? "message too big"
                                     : "bad compressed message");
    return NGX_ERROR;
}


static void
ngx_http_parley_ws_message_end(ngx_http_parley_ws_conn_t *wc,
    ngx_uint_t compressed)
{
    int  rc;

    if (compressed) {
        if (wc->msg_cap < wc->conf->max_message
            && ngx_http_parley_ws_append(wc, NULL, 0, 1) != NGX_OK)
        {
            return;
        }

        rc = parley_ws_inflate_end(wc->inflater, wc->msg, wc->msg_cap,
                                   &wc->msg_len, &wc->msg_utf8);
        if (rc != 0) {
            (void) ngx_http_parley_ws_inflate_failed(wc, rc);
            return;
        }
    }

    if (wc->state != NGX_PARLEY_WS_CLOSING) {
        ngx_http_parley_ws_session_message(wc, wc->msg ? wc->msg
                                                       : (u_char *) "",
                                           wc->msg_len);
    }

    if (wc->destroyed) {
        return;
    }

    /* an idle connection keeps no message buffer */
    ngx_free(wc->msg);
    wc->msg = NULL;
    wc->msg_len = 0;
    wc->msg_cap = 0;
}


/* ---- timers -------------------------------------------------------- */


static void
ngx_http_parley_ws_tick(ngx_http_parley_ws_conn_t *wc)
{
    u_char      payload[NGX_INT64_LEN];
    ngx_msec_t  now;

    now = ngx_current_msec;

    if (wc->state == NGX_PARLEY_WS_CLOSING) {
        /* the closing handshake took too long */
        ngx_http_parley_ws_finalize(wc);
        return;
    }

    if (wc->state == NGX_PARLEY_WS_NEW
        && now - wc->opened >= wc->conf->start_timeout
        && wc->start == NULL)
    {
        ngx_http_parley_ws_close(wc, NGX_PARLEY_WS_CLOSE_START_TIMEOUT,
                                 "no start or resume");
        return;
    }

    if (wc->token_exp && ngx_time() >= wc->token_exp) {
        ngx_http_parley_ws_close(wc, NGX_PARLEY_WS_CLOSE_TOKEN_EXPIRED,
                                 "token expired");
        return;
    }

    if (now - wc->last_rx >= wc->conf->idle_timeout) {
        ngx_http_parley_ws_close(wc, NGX_PARLEY_WS_CLOSE_HEARTBEAT,
                                 "no answer to pings");
        return;
    }

    if ((ngx_msec_int_t) (now - wc->ping_due) >= 0) {
        wc->ping_due = now + wc->conf->ping_interval;
        wc->ping_sent = 1;
        ngx_http_parley_ws_control(wc, PARLEY_WS_OP_PING, payload,
                                   ngx_sprintf(payload, "%M", now)
                                   - payload);

        if (wc->state == NGX_PARLEY_WS_LIVE) {
            ngx_http_parley_ws_session_tick(wc);
        }
    }

    if (!wc->destroyed) {
        ngx_http_parley_ws_arm(wc);
    }
}


/* the one timer: the earliest of heartbeat, start deadline, token expiry */

void
ngx_http_parley_ws_arm(ngx_http_parley_ws_conn_t *wc)
{
    ngx_msec_t       now, at, t;
    ngx_event_t     *rev;

    rev = wc->connection->read;
    now = ngx_current_msec;

    if (wc->state == NGX_PARLEY_WS_CLOSING) {
        /*
         * The closing handshake is timed from when our close frame is on
         * the wire; until then the send timeout bounds a client that does
         * not read (it still gets the close code once it does).
         */
        if (wc->out == NULL) {
            ngx_add_timer(rev, wc->conf->close_timeout);
            return;
        }

        if (rev->timer_set) {
            ngx_del_timer(rev);
        }

        /* a timer of ours must stay: an exiting worker waits for timers */
        if (!wc->connection->write->timer_set) {
            ngx_add_timer(wc->connection->write, wc->conf->send_timeout);
        }

        return;
    }

    at = wc->ping_due;

    if (wc->state == NGX_PARLEY_WS_NEW && wc->start == NULL) {
        t = wc->opened + wc->conf->start_timeout;
        if ((ngx_msec_int_t) (t - at) < 0) {
            at = t;
        }
    }

    if (wc->token_exp) {
        if (wc->token_exp <= ngx_time()) {
            t = now;
        } else if (wc->token_exp - ngx_time() < 86400) {
            t = now + (ngx_msec_t) (wc->token_exp - ngx_time()) * 1000;
        } else {
            t = at;
        }

        if ((ngx_msec_int_t) (t - at) < 0) {
            at = t;
        }
    }

    ngx_add_timer(rev, (ngx_msec_int_t) (at - now) > 0 ? at - now : 1);
}


/*
 * nginx is reloading or stopping (ngx_close_idle_connections): the client
 * is told to come back after a delay drawn from the reconnect window, so
 * that thousands of clients do not all reconnect at once.
 */

static void
ngx_http_parley_ws_shutdown(ngx_http_parley_ws_conn_t *wc)
{
    u_char       reason[64];
    json_t      *goaway;
    ngx_msec_t   retry;

    if (wc->state == NGX_PARLEY_WS_CLOSING) {
        return;
    }

    /*
     * No "offline" for a reload: the client comes back within the window,
     * sooner than its presence entry lapses, so its contacts see no flap.
     * One that does not come back lapses and is swept offline.
     */
    wc->online = 0;

    retry = wc->conf->reconnect_window
            ? (ngx_msec_t) ngx_random() % wc->conf->reconnect_window : 0;

    goaway = json_pack("{s:s,s:I}", "type", "goaway",
                       "retry_ms", (json_int_t) retry);
    if (goaway) {
        ngx_http_parley_ws_send_json(wc, goaway);
    }

    *ngx_sprintf(reason, "restarting; retry_ms=%M", retry) = '\0';
    ngx_http_parley_ws_close(wc, PARLEY_WS_CLOSE_GOING_AWAY,
                             (const char *) reason);
}


/* ---- writing ------------------------------------------------------- */


ngx_http_parley_ws_frame_t *
ngx_http_parley_ws_frame_text(u_char *text, size_t len)
{
    size_t                       flen;
    ngx_http_parley_ws_frame_t  *f;

    flen = parley_ws_frame_len(len);
    if (flen == 0) {
        return NULL;
    }

    f = ngx_alloc(sizeof(ngx_http_parley_ws_frame_t) + flen, ngx_cycle->log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = flen;
    f->hlen = flen - len;
    f->data = (u_char *) (f + 1);

    if (parley_ws_write_frame(f->data, flen, PARLEY_WS_OP_TEXT, PARLEY_WS_FIN,
                              text, len)
        != flen)
    {
        ngx_free(f);
        return NULL;
    }

    return f;
}


ngx_http_parley_ws_frame_t *
ngx_http_parley_ws_frame_json(json_t *json)
{
    size_t                       len, hlen;
    ngx_http_parley_ws_frame_t  *f;

    len = json_dumpb(json, NULL, 0, JSON_COMPACT);
    if (len == 0) {
        return NULL;
    }

    hlen = parley_ws_header_len(len);

    f = ngx_alloc(sizeof(ngx_http_parley_ws_frame_t) + hlen + len,
                  ngx_cycle->log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = hlen + len;
    f->hlen = hlen;
    f->data = (u_char *) (f + 1);

    (void) parley_ws_write_header(f->data, hlen, PARLEY_WS_OP_TEXT,
                                  PARLEY_WS_FIN, len);
    json_dumpb(json, (char *) f->data + hlen, len, JSON_COMPACT);

    return f;
}


void
ngx_http_parley_ws_frame_release(ngx_http_parley_ws_frame_t *f)
{
    if (f && --f->refs == 0) {
        ngx_free(f);
    }
}


void
ngx_http_parley_ws_send_json(ngx_http_parley_ws_conn_t *wc, json_t *json)
{
    ngx_http_parley_ws_frame_t  *f;

    f = ngx_http_parley_ws_frame_json(json);
    json_decref(json);

    if (f == NULL) {
        ngx_http_parley_ws_close(wc, PARLEY_WS_CLOSE_INTERNAL, "");
        return;
    }

    ngx_http_parley_ws_send(wc, f);
    ngx_http_parley_ws_frame_release(f);
}


/*
 * A data frame for the client.  Under permessage-deflate the connection
 * compresses its own copy (its window is its own); small payloads go as
 * they are, which RFC 7692 allows per message.
 */

void
ngx_http_parley_ws_send(ngx_http_parley_ws_conn_t *wc,
    ngx_http_parley_ws_frame_t *f)
{
    size_t                       plen, clen, hlen, cap;
    ngx_http_parley_ws_frame_t  *z;

    if (wc->state == NGX_PARLEY_WS_CLOSING || wc->destroyed) {
        return;
    }

    if (wc->out_bytes + f->len > wc->conf->send_buffer) {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "parley ws: \"%V\" does not keep up (%uz bytes "
                      "queued), closing", &wc->user_id, wc->out_bytes);
        ngx_http_parley_ws_drop_queue(wc);
        ngx_http_parley_ws_close(wc, NGX_PARLEY_WS_CLOSE_SLOW,
                                 "too slow; resume");
        return;
    }

    plen = f->len - f->hlen;

    if (wc->deflater == NULL || plen < NGX_PARLEY_WS_DEFLATE_MIN) {
        ngx_http_parley_ws_enqueue(wc, f);
        return;
    }

    cap = parley_ws_deflate_bound(plen);
    hlen = PARLEY_WS_HEADER_MAX;

    z = cap ? ngx_alloc(sizeof(ngx_http_parley_ws_frame_t) + hlen + cap,
                        wc->connection->log)
            : NULL;

    if (z == NULL) {
        ngx_http_parley_ws_enqueue(wc, f);
        return;
    }

    z->refs = 1;
    z->data = (u_char *) (z + 1);

    if (parley_ws_deflate_message(wc->deflater, f->data + f->hlen, plen,
                                  z->data + hlen, cap, &clen)
        != 0)
    {
        ngx_free(z);
        ngx_http_parley_ws_enqueue(wc, f);
        return;
    }

    /* the header goes right before the payload */
    z->hlen = parley_ws_header_len(clen);
    z->data += hlen - z->hlen;
    (void) parley_ws_write_header(z->data, z->hlen, PARLEY_WS_OP_TEXT,
                                  PARLEY_WS_FIN | PARLEY_WS_RSV1, clen);
    z->len = z->hlen + clen;

    ngx_http_parley_ws_enqueue(wc, z);
    ngx_http_parley_ws_frame_release(z);
}


static void
ngx_http_parley_ws_control(ngx_http_parley_ws_conn_t *wc, ngx_uint_t opcode,
    const u_char *data, size_t len)
{
    ngx_http_parley_ws_frame_t  *f;

    if (wc->state == NGX_PARLEY_WS_CLOSING) {
        return;
    }

    f = ngx_alloc(sizeof(ngx_http_parley_ws_frame_t) + 2 + len,
                  wc->connection->log);
    if (f == NULL) {
        return;
    }

    f->refs = 1;
    f->hlen = 2;
    f->data = (u_char *) (f + 1);
    f->len = parley_ws_write_frame(f->data, 2 + len, opcode, PARLEY_WS_FIN,
                                   data, len);

    if (f->len) {
        ngx_http_parley_ws_enqueue(wc, f);
    }

    ngx_http_parley_ws_frame_release(f);
}


void
ngx_http_parley_ws_close(ngx_http_parley_ws_conn_t *wc, ngx_uint_t code,
    const char *reason)
{
    size_t                       rlen;
    ngx_http_parley_ws_frame_t  *f;

    if (wc->state == NGX_PARLEY_WS_CLOSING || wc->destroyed) {
        return;
    }

    wc->state = NGX_PARLEY_WS_CLOSING;

    rlen = reason ? ngx_min(ngx_strlen(reason), PARLEY_WS_REASON_MAX) : 0;

    f = ngx_alloc(sizeof(ngx_http_parley_ws_frame_t) + 4 + rlen,
                  wc->connection->log);

    if (f) {
        f->refs = 1;
        f->hlen = 2;
        f->data = (u_char *) (f + 1);
        f->len = parley_ws_write_close(f->data, 4 + rlen,
                                       parley_ws_close_code_valid(code)
                                       ? code : PARLEY_WS_CLOSE_INTERNAL,
                                       reason, rlen);
        if (f->len) {
            ngx_http_parley_ws_enqueue(wc, f);
        }

        ngx_http_parley_ws_frame_release(f);
    }

    /* subscriptions go now: nothing more will be sent */
    ngx_http_parley_ws_session_close(wc);

    if (wc->connection->read->timer_set) {
        ngx_del_timer(wc->connection->read);
    }

    ngx_http_parley_ws_arm(wc);
}


void
ngx_http_parley_ws_enqueue(ngx_http_parley_ws_conn_t *wc,
    ngx_http_parley_ws_frame_t *f)
{
    ngx_http_parley_ws_out_t  *o;

    o = ngx_http_parley_ws_free_out;

    if (o) {
        ngx_http_parley_ws_free_out = o->next;

    } else {
        o = ngx_alloc(sizeof(ngx_http_parley_ws_out_t), ngx_cycle->log);
        if (o == NULL) {
            return;
        }
    }

    o->next = NULL;
    o->frame = f;
    f->refs++;

    if (wc->out_tail) {
        wc->out_tail->next = o;
    } else {
        wc->out = o;
    }

    wc->out_tail = o;
    wc->out_bytes += f->len;

    if (!wc->flush_posted) {
        wc->flush_posted = 1;
        ngx_queue_insert_tail(&ngx_http_parley_ws_flushq, &wc->flush_link);

        if (!ngx_http_parley_ws_flush_ev.posted) {
            ngx_post_event(&ngx_http_parley_ws_flush_ev, &ngx_posted_events);
        }
    }
}


static void
ngx_http_parley_ws_flush_posted(ngx_event_t *ev)
{
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_http_parley_ws_conn_t  *wc;

    for (n = 0; !ngx_queue_empty(&ngx_http_parley_ws_flushq); n++) {

        if (n == NGX_PARLEY_WS_FLUSH_BATCH) {
            /*
             * A big fanout yields to the event loop between batches, so
             * that the worker's other clients (REST requests, reads) are
             * served in between instead of after thousands of writes.
             */
            ngx_post_event(&ngx_http_parley_ws_flush_ev,
                           &ngx_posted_next_events);
            return;
        }

        q = ngx_queue_head(&ngx_http_parley_ws_flushq);
        ngx_queue_remove(q);
        wc = ngx_queue_data(q, ngx_http_parley_ws_conn_t, flush_link);
        wc->flush_posted = 0;

        ngx_http_parley_ws_flush(wc);

        if (wc->destroyed) {
            ngx_free(wc);
        }
    }
}


void
ngx_http_parley_ws_write_handler(ngx_event_t *wev)
{
    ngx_connection_t           *c;
    ngx_http_parley_ws_conn_t  *wc;

    c = wev->data;
    wc = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "parley ws: \"%V\" stopped reading", &wc->user_id);
        c->timedout = 1;
        ngx_http_parley_ws_finalize(wc);
        ngx_free(wc);
        return;
    }

    ngx_http_parley_ws_flush(wc);

    if (wc->destroyed) {
        ngx_free(wc);
    }
}


static void
ngx_http_parley_ws_flush(ngx_http_parley_ws_conn_t *wc)
{
    off_t                      sent;
    size_t                     left;
    ngx_uint_t                 i, n;
    ngx_buf_t                  bufs[NGX_PARLEY_WS_IOV_MAX];
    ngx_chain_t                chain[NGX_PARLEY_WS_IOV_MAX], *rest;
    ngx_connection_t          *c;
    ngx_http_parley_ws_out_t  *o, *next;

    c = wc->connection;

    if (wc->destroyed || c == NULL) {
        return;
    }

    while (wc->out) {
        n = 0;

        for (o = wc->out; o && n < NGX_PARLEY_WS_IOV_MAX; o = o->next) {
            ngx_memzero(&bufs[n], sizeof(ngx_buf_t));
            bufs[n].pos = o->frame->data + (n == 0 ? wc->out_sent : 0);
            bufs[n].last = o->frame->data + o->frame->len;
            bufs[n].memory = 1;
            bufs[n].flush = 1;
            chain[n].buf = &bufs[n];
            chain[n].next = NULL;

            if (n) {
                chain[n - 1].next = &chain[n];
            }

            n++;
        }

        sent = c->sent;
        rest = c->send_chain(c, chain, 0);

        if (rest == NGX_CHAIN_ERROR) {
            c->error = 1;
            ngx_http_parley_ws_finalize(wc);
            return;
        }

        sent = c->sent - sent;
        wc->out_bytes -= (size_t) sent;

        for (i = 0; i < n && sent > 0; i++) {
            o = wc->out;
            left = o->frame->len - wc->out_sent;

            if ((off_t) left > sent) {
                wc->out_sent += (size_t) sent;
                break;
            }

            sent -= left;
            wc->out_sent = 0;
            next = o->next;
            ngx_http_parley_ws_frame_release(o->frame);
            o->next = ngx_http_parley_ws_free_out;
            ngx_http_parley_ws_free_out = o;
            wc->out = next;

            if (next == NULL) {
                wc->out_tail = NULL;
            }
        }

        if (rest != NULL) {
            break;  /* the socket is full */
        }
    }

    if (wc->out) {
        if (wc->start) {
            ngx_http_parley_ws_session_drained(wc);
        }

        if (!c->write->timer_set) {
            ngx_add_timer(c->write, wc->conf->send_timeout);
        }

        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            ngx_http_parley_ws_finalize(wc);
        }

        return;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (wc->start) {
        ngx_http_parley_ws_session_drained(wc);
    }

    if (wc->state == NGX_PARLEY_WS_CLOSING) {
        if (wc->close_received) {
            /* both close frames are through: the server closes TCP first */
            ngx_http_parley_ws_finalize(wc);
            return;
        }

        /* our close frame is out: the client's answer has close_timeout */
        if (!c->read->timer_set) {
            ngx_http_parley_ws_arm(wc);
        }
    }
}


/* drops what was not started; a frame half on the wire must finish */

static void
ngx_http_parley_ws_drop_queue(ngx_http_parley_ws_conn_t *wc)
{
    ngx_http_parley_ws_out_t  *o, *keep, *next;

    keep = NULL;
    o = wc->out;

    if (o && wc->out_sent) {
        keep = o;
        o = o->next;
        keep->next = NULL;
    }

    for ( /* void */ ; o; o = next) {
        next = o->next;
        wc->out_bytes -= o->frame->len;
        ngx_http_parley_ws_frame_release(o->frame);
        o->next = ngx_http_parley_ws_free_out;
        ngx_http_parley_ws_free_out = o;
    }

    wc->out = keep;
    wc->out_tail = keep;
}


/*
 * Closes the TCP connection and frees everything but wc itself, which the
 * event handler that ends up here frees once it no longer touches it
 * (wc->destroyed says so).
 */

void
ngx_http_parley_ws_finalize(ngx_http_parley_ws_conn_t *wc)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    if (wc->destroyed) {
        return;
    }

    ngx_http_parley_ws_session_close(wc);

    wc->destroyed = 1;
    c = wc->connection;

    if (wc->flush_posted) {
        ngx_queue_remove(&wc->flush_link);
        wc->flush_posted = 0;
    }

    wc->out_sent = 0;
    ngx_http_parley_ws_drop_queue(wc);

    ngx_free(wc->msg);
    wc->msg = NULL;

    if (wc->inflater) {
        parley_ws_inflater_free(wc->inflater);
        ngx_free(wc->inflater);
        wc->inflater = NULL;
    }

    if (wc->deflater) {
        parley_ws_deflater_free(wc->deflater);
        ngx_free(wc->deflater);
        wc->deflater = NULL;
    }

    if (c == NULL) {
        return;
    }

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

#if (NGX_STAT_STUB)
    (void) ngx_atomic_fetch_add(ngx_stat_active, -1);
#endif

    c->destroyed = 1;
    pool = c->pool;
    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }

    ngx_free(wc->peer);
    wc->peer = NULL;
    wc->connection = NULL;
}
