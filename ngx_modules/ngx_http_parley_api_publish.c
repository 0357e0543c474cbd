
/*
 * Publishing to the WebSocket gateways (docs/realtime.md, "Fanout").
 *
 * A log entry is published only after its transaction committed, so a
 * gateway never shows what a rollback took back.  Publishing is
 * fire-and-forget: Redis pub/sub keeps nothing for a gateway that is not
 * listening, and a publish lost between COMMIT and Redis (a crash, Redis
 * down) is not retried here.  That is safe because every log entry has a
 * gap-free event_seq: a gateway that sees seq n + 2 after n, or that
 * (re)subscribes, reads what it missed from the store.  What is lost for
 * good is only transient (typing, signals, presence).
 *
 * The message is one header line (lib/parley_pubsub.h) and the entry's JSON
 * as GET /v1/sync shows it, which the gateway forwards without parsing.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "parley_pubsub.h"


typedef struct {
    uint64_t                   cid;
    u_char                    *msg;      /* header + JSON */
    size_t                     len;
    char                       effect;   /* parley_pubsub_effect() */
    ngx_str_t                  subject;
} ngx_http_parley_publication_t;


static void ngx_http_parley_publish_done(ngx_parley_redis_t *redis,
    redisReply *reply, ngx_int_t status, const char *err, void *data);


void
ngx_http_parley_api_publish_queue(ngx_http_parley_api_req_t *ar,
    uint64_t cid, uint64_t event_seq, const char *type, ngx_str_t *subject,
    json_t *entry)
{
    u_char                         *p;
    char                            ts[32];
    size_t                          hlen, jlen;
    json_t                         *shown;
    ngx_tm_t                        tm;
    ngx_time_t                     *tp;
    parley_pubsub_msg_t             m;
    ngx_http_parley_publication_t  *pub;
    char                            header[PARLEY_PUBSUB_HEADER_MAX];

    if (ar->core->redis_role[NGX_PARLEY_REDIS_PUBSUB] == NULL) {
        return;     /* no Redis, no gateway to tell */
    }

    if (ar->published == NULL) {
        ar->published = ngx_array_create(ar->pool, 2,
                                         sizeof(ngx_http_parley_publication_t));
        if (ar->published == NULL) {
            return;
        }
    }

    /* the shape sync gives: every key present, created_at set */
    shown = json_copy(entry);
    if (shown == NULL) {
        return;
    }

    if (json_object_get(shown, "subject_id") == NULL) {
        json_object_set_new(shown, "subject_id", json_null());
    }

    if (json_object_get(shown, "message_seq") == NULL) {
        json_object_set_new(shown, "message_seq", json_null());
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);
    *ngx_sprintf((u_char *) ts, "%4d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                 tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                 (int) tp->msec) = '\0';
    json_object_set_new(shown, "created_at", json_string(ts));

    ngx_memzero(&m, sizeof(parley_pubsub_msg_t));
    m.kind = 'E';
    m.cid = cid;
    m.seq = event_seq;
    m.effect = parley_pubsub_effect(type, ngx_strlen(type));
    m.origin = ar->origin;

    if (subject->data && subject->len) {
        m.subject = (const char *) subject->data;
        m.subject_len = subject->len;
    }

    hlen = parley_pubsub_header(header, sizeof(header), &m);
    jlen = json_dumpb(shown, NULL, 0, JSON_COMPACT);

    if (hlen == 0 || jlen == 0) {
        json_decref(shown);
        ngx_log_error(NGX_LOG_ERR, ar->log, 0,
                      "parley publish: cannot render event %uL/%uL",
                      cid, event_seq);
        return;
    }

    pub = ngx_array_push(ar->published);
    p = ngx_pnalloc(ar->pool, hlen + jlen);

    if (pub == NULL || p == NULL) {
        json_decref(shown);
        return;
    }

    ngx_memcpy(p, header, hlen);
    json_dumpb(shown, (char *) p + hlen, jlen, JSON_COMPACT);
    json_decref(shown);

    pub->cid = cid;
    pub->msg = p;
    pub->len = hlen + jlen;
    pub->effect = m.effect;
    pub->subject.len = m.subject_len;
    pub->subject.data = (u_char *) m.subject;

    if (m.subject_len) {
        pub->subject.data = ngx_pnalloc(ar->pool, m.subject_len);
        if (pub->subject.data == NULL) {
            ar->published->nelts--;
            return;
        }

        ngx_memcpy(pub->subject.data, m.subject, m.subject_len);
    }
}


void
ngx_http_parley_api_publish_flush(ngx_http_parley_api_req_t *ar)
{
    size_t                          len;
    ngx_uint_t                      i;
    ngx_http_parley_publication_t  *pub;
    char                            channel[PARLEY_PUBSUB_CHANNEL_MAX];

    if (ar->published == NULL) {
        return;
    }

    pub = ar->published->elts;

    for (i = 0; i < ar->published->nelts; i++) {
        len = parley_pubsub_conversation_channel(channel, sizeof(channel),
                                                 ar->tenant_id, pub[i].cid);
        if (len) {
            (void) ngx_http_parley_publish(ar->core, (u_char *) channel, len,
                                           pub[i].msg, pub[i].len);
        }

        /* a user joining or leaving hears it on its own channel too: its
         * connections are not (or no longer) on the conversation's */
        if ((pub[i].effect == '+' || pub[i].effect == '-')
            && pub[i].subject.len)
        {
            len = parley_pubsub_user_channel(channel, sizeof(channel),
                                             ar->tenant_id,
                                             (char *) pub[i].subject.data,
                                             pub[i].subject.len);
            if (len) {
                (void) ngx_http_parley_publish(ar->core, (u_char *) channel,
                                               len, pub[i].msg, pub[i].len);
            }
        }
    }

    ar->published->nelts = 0;
}


ngx_int_t
ngx_http_parley_publish(ngx_http_parley_core_main_conf_t *core,
    u_char *channel, size_t channel_len, u_char *msg, size_t len)
{
    const char           *argv[3];
    size_t                argvlen[3];
    ngx_int_t             rc;
    ngx_parley_redis_t   *redis;

    redis = core->redis_role[NGX_PARLEY_REDIS_PUBSUB];
    if (redis == NULL) {
        return NGX_DECLINED;
    }

    argv[0] = core->pubsub_sharded ? "SPUBLISH" : "PUBLISH";
    argvlen[0] = ngx_strlen(argv[0]);
    argv[1] = (const char *) channel;
    argvlen[1] = channel_len;
    argv[2] = (const char *) msg;
    argvlen[2] = len;

    rc = ngx_parley_redis_command_argv(redis, ngx_http_parley_publish_done,
                                       NULL, 3, argv, argvlen, NULL);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "parley publish: not published to \"%*s\" (%s); "
                      "gateways will read it from the store",
                      channel_len, channel,
                      ngx_parley_redis_last_error(redis));
    }

    return rc;
}


static void
ngx_http_parley_publish_done(ngx_parley_redis_t *redis, redisReply *reply,
    ngx_int_t status, const char *err, void *data)
{
    if (status != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "parley publish: %s", err);

    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "parley publish: redis answered %*s",
                      (size_t) reply->len, reply->str);
    }
}
