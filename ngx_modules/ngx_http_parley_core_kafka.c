
/*
 * Kafka producer of a worker.
 *
 * librdkafka runs its own threads; everything it reports (delivery reports,
 * errors, logs) is routed to its main queue, which wakes the event loop
 * through a pipe (rd_kafka_queue_io_event_enable) so that handlers run on
 * the worker's thread.  The queue writes to the pipe only when it turns
 * non-empty, so each wake-up drains it until rd_kafka_poll() finds nothing.
 *
 * Metadata requests have no asynchronous form in librdkafka 2.0; they run on
 * the "parley" nginx thread pool and complete back on the loop.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_core.h"


#define NGX_PARLEY_KAFKA_PRODUCE   0
#define NGX_PARLEY_KAFKA_METADATA  1


struct ngx_parley_kafka_op_s {
    ngx_queue_t                queue;        /* in kafka->ops */
    ngx_parley_kafka_t        *kafka;
    ngx_parley_kafka_pt        handler;      /* NULL once cancelled */
    void                      *data;
    ngx_uint_t                 kind;

    /* metadata: filled by the thread, read on the loop */
    ngx_thread_task_t          task;
    rd_kafka_resp_err_t        err;
    int                        brokers;
    int                        topics;
};


struct ngx_parley_kafka_s {
    ngx_parley_kafka_conf_t   *conf;
    rd_kafka_t                *rk;
    rd_kafka_queue_t          *mainq;
    ngx_connection_t          *wakeup;       /* read end of the pipe */
    ngx_socket_t               wakeup_write;
    ngx_thread_pool_t         *thread_pool;
    ngx_log_t                 *log;
    ngx_queue_t                ops;
    char                       last_error[NGX_PARLEY_ERRLEN];
};


static void ngx_parley_kafka_wakeup_handler(ngx_event_t *ev);
static void ngx_parley_kafka_drain(ngx_parley_kafka_t *kafka);
static void ngx_parley_kafka_dr_cb(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static void ngx_parley_kafka_error_cb(rd_kafka_t *rk, int err,
    const char *reason, void *opaque);
static void ngx_parley_kafka_log_cb(const rd_kafka_t *rk, int level,
    const char *fac, const char *buf);
static void ngx_parley_kafka_metadata_thread(void *data, ngx_log_t *log);
static void ngx_parley_kafka_metadata_done(ngx_event_t *ev);
static ngx_parley_kafka_op_t *ngx_parley_kafka_op_new(
    ngx_parley_kafka_t *kafka, ngx_uint_t kind, ngx_parley_kafka_pt handler,
    void *data);
static void ngx_parley_kafka_op_free(ngx_parley_kafka_op_t *op);
static ngx_int_t ngx_parley_kafka_set(ngx_parley_kafka_t *kafka,
    rd_kafka_conf_t *kconf, const char *name, const char *value);


static ngx_str_t  ngx_parley_kafka_pool_name = ngx_string("parley");


ngx_parley_kafka_t *
ngx_parley_kafka_create(ngx_cycle_t *cycle, ngx_parley_kafka_conf_t *conf)
{
    int                  fds[2];
    char                 errstr[256], client_id[64];
    ngx_uint_t           i;
    ngx_keyval_t        *kv;
    rd_kafka_conf_t     *kconf;
    ngx_parley_kafka_t  *kafka;

    kafka = ngx_pcalloc(cycle->pool, sizeof(ngx_parley_kafka_t));
    if (kafka == NULL) {
        return NULL;
    }

    kafka->conf = conf;
    kafka->log = cycle->log;
    kafka->wakeup_write = (ngx_socket_t) -1;
    ngx_queue_init(&kafka->ops);

    kafka->thread_pool = ngx_thread_pool_get(cycle,
                                             &ngx_parley_kafka_pool_name);
    if (kafka->thread_pool == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "parley kafka: thread pool \"%V\" not found",
                      &ngx_parley_kafka_pool_name);
        return NULL;
    }

    kconf = rd_kafka_conf_new();
    if (kconf == NULL) {
        return NULL;
    }

    ngx_snprintf((u_char *) client_id, sizeof(client_id), "parley-nginx-%P%Z",
                 ngx_pid);

    /*
     * Idempotent, fully acknowledged production (DESIGN §2.2); logs go to
     * the main queue so that they are written from this thread.
     */
    if (ngx_parley_kafka_set(kafka, kconf, "bootstrap.servers",
                             (char *) conf->brokers.data) != NGX_OK
        || ngx_parley_kafka_set(kafka, kconf, "client.id", client_id)
           != NGX_OK
        || ngx_parley_kafka_set(kafka, kconf, "enable.idempotence", "true")
           != NGX_OK
        || ngx_parley_kafka_set(kafka, kconf, "acks", "all") != NGX_OK
        || ngx_parley_kafka_set(kafka, kconf, "log.queue", "true") != NGX_OK
        || ngx_parley_kafka_set(kafka, kconf, "reconnect.backoff.max.ms",
                                "2000") != NGX_OK)
    {
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }

    kv = conf->properties->elts;

    for (i = 0; i < conf->properties->nelts; i++) {
        if (ngx_parley_kafka_set(kafka, kconf, (char *) kv[i].key.data,
                                 (char *) kv[i].value.data)
            != NGX_OK)
        {
            rd_kafka_conf_destroy(kconf);
            return NULL;
        }
    }

    rd_kafka_conf_set_opaque(kconf, kafka);
    rd_kafka_conf_set_dr_msg_cb(kconf, ngx_parley_kafka_dr_cb);
    rd_kafka_conf_set_error_cb(kconf, ngx_parley_kafka_error_cb);
    rd_kafka_conf_set_log_cb(kconf, ngx_parley_kafka_log_cb);

    kafka->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, errstr,
                             sizeof(errstr));
    if (kafka->rk == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "parley kafka: rd_kafka_new() failed: %s", errstr);
        rd_kafka_conf_destroy(kconf);
        return NULL;
    }

    /* rd_kafka_new() owns kconf from here on */

    kafka->mainq = rd_kafka_queue_get_main(kafka->rk);

    if (rd_kafka_set_log_queue(kafka->rk, kafka->mainq)
        != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "parley kafka: could not route logs to the loop");
    }

    if (pipe(fds) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "parley kafka: pipe() failed");
        goto failed;
    }

    if (ngx_nonblocking(fds[0]) == -1 || ngx_nonblocking(fds[1]) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "parley kafka: " ngx_nonblocking_n " failed");
        close(fds[0]);
        close(fds[1]);
        goto failed;
    }

    kafka->wakeup = ngx_get_connection(fds[0], cycle->log);
    if (kafka->wakeup == NULL) {
        close(fds[0]);
        close(fds[1]);
        goto failed;
    }

    kafka->wakeup_write = fds[1];
    kafka->wakeup->data = kafka;
    kafka->wakeup->read->handler = ngx_parley_kafka_wakeup_handler;
    kafka->wakeup->read->log = cycle->log;

    if (ngx_add_event(kafka->wakeup->read, NGX_READ_EVENT, 0) != NGX_OK) {
        goto failed;
    }

    rd_kafka_queue_io_event_enable(kafka->mainq, fds[1], "1", 1);

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "parley kafka: producer for \"%V\" started",
                  &conf->brokers);

    return kafka;

failed:

    ngx_parley_kafka_destroy(kafka);
    return NULL;
}


static ngx_int_t
ngx_parley_kafka_set(ngx_parley_kafka_t *kafka, rd_kafka_conf_t *kconf,
    const char *name, const char *value)
{
    char  errstr[256];

    if (rd_kafka_conf_set(kconf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, kafka->log, 0,
                      "parley kafka: property \"%s\": %s", name, errstr);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Worker exit: outstanding operations are detached (no handler runs after
 * exit_process), then buffered messages get a bounded flush.
 */

void
ngx_parley_kafka_destroy(ngx_parley_kafka_t *kafka)
{
    ngx_queue_t            *q;
    ngx_parley_kafka_op_t  *op;

    for (q = ngx_queue_head(&kafka->ops);
         q != ngx_queue_sentinel(&kafka->ops);
         q = ngx_queue_next(q))
    {
        op = ngx_queue_data(q, ngx_parley_kafka_op_t, queue);
        op->handler = NULL;
    }

    if (kafka->mainq) {
        rd_kafka_queue_io_event_enable(kafka->mainq, -1, NULL, 0);
    }

    if (kafka->rk) {
        if (rd_kafka_flush(kafka->rk, (int) kafka->conf->flush_timeout)
            != RD_KAFKA_RESP_ERR_NO_ERROR)
        {
            ngx_log_error(NGX_LOG_WARN, kafka->log, 0,
                          "parley kafka: %d message(s) not delivered "
                          "within flush_timeout",
                          rd_kafka_outq_len(kafka->rk));
        }
    }

    if (kafka->mainq) {
        rd_kafka_queue_destroy(kafka->mainq);
        kafka->mainq = NULL;
    }

    if (kafka->rk) {
        /* remaining delivery reports are freed by librdkafka */
        rd_kafka_destroy(kafka->rk);
        kafka->rk = NULL;
    }

    /*
     * The thread pool joined its threads before this module's exit_process
     * runs (core modules exit first), so metadata tasks whose completion was
     * never run are no longer referenced.  Produce ops left after the flush
     * had their reports dropped by rd_kafka_destroy().
     */
    while (!ngx_queue_empty(&kafka->ops)) {
        q = ngx_queue_head(&kafka->ops);
        op = ngx_queue_data(q, ngx_parley_kafka_op_t, queue);
        ngx_parley_kafka_op_free(op);
    }

    if (kafka->wakeup) {
        ngx_close_connection(kafka->wakeup);
        kafka->wakeup = NULL;
    }

    if (kafka->wakeup_write != (ngx_socket_t) -1) {
        close(kafka->wakeup_write);
        kafka->wakeup_write = (ngx_socket_t) -1;
    }
}


ngx_int_t
ngx_parley_kafka_produce(ngx_parley_kafka_t *kafka, const char *topic,
    u_char *key, size_t key_len, u_char *payload, size_t len,
    ngx_parley_kafka_pt handler, void *data, ngx_parley_kafka_op_t **opp)
{
    rd_kafka_resp_err_t     err;
    ngx_parley_kafka_op_t  *op;

    op = ngx_parley_kafka_op_new(kafka, NGX_PARLEY_KAFKA_PRODUCE, handler,
                                 data);
    if (op == NULL) {
        return NGX_ERROR;
    }

    err = rd_kafka_producev(kafka->rk,
                            RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_KEY(key, key_len),
                            RD_KAFKA_V_VALUE(payload, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE(op),
                            RD_KAFKA_V_END);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_snprintf((u_char *) kafka->last_error, NGX_PARLEY_ERRLEN,
                     "kafka: produce to \"%s\" failed: %s%Z",
                     topic, rd_kafka_err2str(err));
        ngx_parley_kafka_op_free(op);
        return NGX_ERROR;
    }

    if (opp) {
        *opp = op;
    }

    return NGX_OK;
}


ngx_int_t
ngx_parley_kafka_metadata(ngx_parley_kafka_t *kafka,
    ngx_parley_kafka_pt handler, void *data, ngx_parley_kafka_op_t **opp)
{
    ngx_parley_kafka_op_t  *op;

    op = ngx_parley_kafka_op_new(kafka, NGX_PARLEY_KAFKA_METADATA, handler,
                                 data);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->task.ctx = op;
    op->task.handler = ngx_parley_kafka_metadata_thread;
    op->task.event.data = op;
    op->task.event.handler = ngx_parley_kafka_metadata_done;
    op->task.event.log = kafka->log;

    if (ngx_thread_task_post(kafka->thread_pool, &op->task) != NGX_OK) {
        ngx_snprintf((u_char *) kafka->last_error, NGX_PARLEY_ERRLEN,
                     "kafka: thread pool queue is full%Z");
        ngx_parley_kafka_op_free(op);
        return NGX_ERROR;
    }

    if (opp) {
        *opp = op;
    }

    return NGX_OK;
}


/*
 * A cancelled operation stays queued until librdkafka or the thread pool is
 * done with it; only its handler is forgotten.
 */

void
ngx_parley_kafka_cancel(ngx_parley_kafka_op_t *op)
{
    op->handler = NULL;
    op->data = NULL;
}


const char *
ngx_parley_kafka_last_error(ngx_parley_kafka_t *kafka)
{
    return kafka->last_error[0] ? kafka->last_error : "no error";
}


static ngx_parley_kafka_op_t *
ngx_parley_kafka_op_new(ngx_parley_kafka_t *kafka, ngx_uint_t kind,
    ngx_parley_kafka_pt handler, void *data)
{
    ngx_parley_kafka_op_t  *op;

    op = ngx_calloc(sizeof(ngx_parley_kafka_op_t), kafka->log);
    if (op == NULL) {
        ngx_snprintf((u_char *) kafka->last_error, NGX_PARLEY_ERRLEN,
                     "kafka: out of memory%Z");
        return NULL;
    }

    op->kafka = kafka;
    op->kind = kind;
    op->handler = handler;
    op->data = data;
    ngx_queue_insert_tail(&kafka->ops, &op->queue);

    return op;
}


static void
ngx_parley_kafka_op_free(ngx_parley_kafka_op_t *op)
{
    ngx_queue_remove(&op->queue);
    ngx_free(op);
}


/* runs on a pool thread: only librdkafka (thread-safe) and the op itself */

static void
ngx_parley_kafka_metadata_thread(void *data, ngx_log_t *log)
{
    ngx_parley_kafka_op_t *op = data;

    const struct rd_kafka_metadata  *md;

    md = NULL;
    op->err = rd_kafka_metadata(op->kafka->rk, 0, NULL, &md,
                                (int) op->kafka->conf->timeout);

    if (op->err == RD_KAFKA_RESP_ERR_NO_ERROR && md) {
        op->brokers = md->broker_cnt;
        op->topics = md->topic_cnt;
    }

    if (md) {
        rd_kafka_metadata_destroy(md);
    }
}


static void
ngx_parley_kafka_metadata_done(ngx_event_t *ev)
{
    ngx_parley_kafka_op_t *op = ev->data;

    char                 text[NGX_PARLEY_ERRLEN];
    ngx_int_t            status;
    ngx_parley_kafka_t  *kafka;

    kafka = op->kafka;

    if (op->err == RD_KAFKA_RESP_ERR_NO_ERROR && op->brokers == 0) {
        op->err = RD_KAFKA_RESP_ERR__TRANSPORT;
    }

    if (op->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        status = NGX_OK;
        ngx_snprintf((u_char *) text, sizeof(text), "%d broker(s)%Z",
                     op->brokers);

    } else {
        status = NGX_ERROR;
        ngx_snprintf((u_char *) text, sizeof(text),
                     "kafka %s: metadata: %s%Z",
                     kafka->conf->brokers.data, rd_kafka_err2str(op->err));
        ngx_cpystrn((u_char *) kafka->last_error, (u_char *) text,
                    NGX_PARLEY_ERRLEN);
    }

    if (op->handler) {
        op->handler(status, text, -1, -1, op->data);
    }

    ngx_parley_kafka_op_free(op);
}


static void
ngx_parley_kafka_wakeup_handler(ngx_event_t *ev)
{
    u_char               buf[64];
    ssize_t              n;
    ngx_connection_t    *c;
    ngx_parley_kafka_t  *kafka;

    c = ev->data;
    kafka = c->data;

    do {
        n = read(c->fd, buf, sizeof(buf));
    } while (n > 0 || (n == -1 && ngx_errno == NGX_EINTR));

    ngx_parley_kafka_drain(kafka);
}


static void
ngx_parley_kafka_drain(ngx_parley_kafka_t *kafka)
{
    while (rd_kafka_poll(kafka->rk, 0) > 0) {
        /* every event served; the queue only signals on empty -> non-empty */
    }
}


static void
ngx_parley_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque)
{
    ngx_parley_kafka_t *kafka = opaque;

    char                    text[NGX_PARLEY_ERRLEN];
    ngx_parley_kafka_op_t  *op;

    op = msg->_private;
    if (op == NULL) {
        return;
    }

    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (op->handler) {
            op->handler(NGX_OK, "delivered", msg->partition, msg->offset,
                        op->data);
        }

    } else {
        ngx_snprintf((u_char *) text, sizeof(text),
                     "kafka: delivery to \"%s\" failed: %s%Z",
                     rd_kafka_topic_name(msg->rkt),
                     rd_kafka_err2str(msg->err));
        ngx_cpystrn((u_char *) kafka->last_error, (u_char *) text,
                    NGX_PARLEY_ERRLEN);

        if (op->handler) {
            op->handler(NGX_ERROR, text, msg->partition, -1, op->data);
        }
    }

    ngx_parley_kafka_op_free(op);
}


static void
ngx_parley_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason,
    void *opaque)
{
    ngx_parley_kafka_t *kafka = opaque;

    ngx_uint_t  level;

    ngx_snprintf((u_char *) kafka->last_error, NGX_PARLEY_ERRLEN,
                 "kafka: %s: %s%Z", rd_kafka_err2name(err), reason);

    /* a fatal error (idempotence broken) stops production for good */
    level = (err == RD_KAFKA_RESP_ERR__FATAL) ? NGX_LOG_ERR : NGX_LOG_WARN;

    if (err == RD_KAFKA_RESP_ERR__TRANSPORT
        || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    {
        level = NGX_LOG_INFO;
    }

    ngx_log_error(level, kafka->log, 0, "parley kafka: %s: %s",
                  rd_kafka_err2name(err), reason);
}


static void
ngx_parley_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
    const char *buf)
{
    ngx_uint_t           ngx_level;
    ngx_parley_kafka_t  *kafka;

    kafka = rd_kafka_opaque(rk);

    /* syslog levels: 0..3 are errors, 4 warnings, the rest information */
    if (level <= 3) {
        ngx_level = NGX_LOG_ERR;

    } else if (level == 4) {
        ngx_level = NGX_LOG_WARN;

    } else {
        ngx_level = NGX_LOG_INFO;
    }

    ngx_log_error(ngx_level, kafka->log, 0, "parley kafka: %s: %s", fac, buf);
}
