
/*
 * Parley Redis client: hiredis' asynchronous API driven by the nginx event
 * loop of one worker.
 *
 * A client owns one command connection (a redisAsyncContext whose socket is
 * wrapped in an nginx connection).  Its life:
 *
 *   IDLE --connect--> CONNECTING --AUTH/SELECT/PING answered--> READY
 *     ^                   |                                       |
 *     |                   +---- error, connect_timeout -----------+-- error,
 *     |                   v                                           command
 *     +-- reconnect <-- DOWN (context being freed)  <---------------- timeout
 *         timer
 *
 * Commands are accepted only in READY; otherwise the caller gets
 * NGX_DECLINED at once and the client's last error says why and when the
 * next attempt is due.  The handshake always ends with a PING, so READY
 * means "the server answers", not only "the kernel accepted the TCP
 * connection": a stopped server (SIGSTOP) is then seen as a connect timeout
 * and retried with backoff, instead of every command waiting out its
 * timeout on a fresh connection.
 *
 * Ownership of a command wrapper: from ngx_parley_redis_command_argv()
 * until hiredis calls its reply callback, which it does exactly once per
 * command, with the reply or, when the context is freed, with NULL.  The
 * wrapper is freed only there.  "active" tells whether the caller still
 * waits: cancel and timeout clear it (and the timer), so a late reply is
 * dropped and the wrapper freed without touching the caller's data.
 *
 * The context is never freed from inside a hiredis callback or event hook
 * (hiredis 0.14 does not guard its connect callback, and the callers up the
 * stack still use the context): such a drop only marks the connection DOWN
 * and posts an event that calls redisAsyncFree() from the top of the loop.
 * The event library "cleanup" hook is the one place that learns, for every
 * way a context dies, that it is gone: it unwraps the fd (hiredis closes it
 * right after) and schedules the reconnect.
 *
 * The pub/sub role will need a dedicated subscriber connection: that is a
 * second ngx_parley_redis_conn_t beside "conn" with its own callbacks; all
 * connection state is kept per ngx_parley_redis_conn_t for that reason.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <netdb.h>

#include "ngx_http_parley_core.h"


/* command wrappers kept for reuse, per client */
#define NGX_PARLEY_REDIS_FREE_MAX      64

/* past this, the backoff sits at its ceiling anyway */
#define NGX_PARLEY_REDIS_MAX_FAILURES  64

/* AUTH, SELECT, PING */
#define NGX_PARLEY_REDIS_MAX_STEPS     3


typedef enum {
    NGX_PARLEY_REDIS_IDLE = 0,      /* no context; a reconnect may be due */
    NGX_PARLEY_REDIS_CONNECTING,    /* TCP connect or handshake running */
    NGX_PARLEY_REDIS_READY,         /* commands accepted */
    NGX_PARLEY_REDIS_DOWN           /* context lost or being freed */
} ngx_parley_redis_state_e;


typedef struct {
    ngx_parley_redis_t          *redis;
    redisAsyncContext           *ac;
    ngx_connection_t            *c;
    ngx_parley_redis_state_e     state;

    ngx_uint_t                   failures;     /* consecutive, for backoff */
    ngx_uint_t                   steps;        /* handshake replies due */
    ngx_uint_t                   step;         /* the next one */
    const char                  *step_name[NGX_PARLEY_REDIS_MAX_STEPS];

    ngx_event_t                  connect_timer;
    ngx_event_t                  reconnect_timer;
    ngx_event_t                  drop;         /* posted: free the context */

    ngx_queue_t                  cmds;         /* active commands */

    unsigned                     outage:1;     /* its [error] was logged */
    unsigned                     closing:1;    /* worker shutdown timeout */

    u_char                       reason[NGX_PARLEY_ERRLEN];  /* why down */
    u_char                       error[NGX_PARLEY_ERRLEN];   /* the same,
                                                                named */
} ngx_parley_redis_conn_t;


struct ngx_parley_redis_s {
    ngx_parley_redis_conf_t     *conf;
    ngx_str_t                    name;         /* "host:port" */
    ngx_log_t                    log;

    char                        *addr;         /* numeric, for hiredis */
    u_char                       addr_buf[NGX_SOCKADDR_STRLEN + 1];
    u_char                       db[NGX_INT_T_LEN + 1];

    ngx_parley_redis_conn_t      conn;         /* commands */

    ngx_queue_t                  free;         /* reusable wrappers */
    ngx_uint_t                   nfree;
    ngx_uint_t                   ncmds;        /* wrappers hiredis holds */

    unsigned                     destroying:1;

    u_char                       errstr[NGX_PARLEY_ERRLEN];
};


struct ngx_parley_redis_cmd_s {
    ngx_queue_t                  queue;        /* conn->cmds or redis->free */
    ngx_parley_redis_conn_t     *conn;
    ngx_parley_redis_reply_pt    handler;
    void                        *data;
    ngx_event_t                  timer;
    unsigned                     active:1;     /* the handler is still due */
};


static ngx_int_t ngx_parley_redis_resolve(ngx_parley_redis_t *redis);
static void ngx_parley_redis_connect(ngx_parley_redis_conn_t *conn);
static void ngx_parley_redis_keepalive(ngx_parley_redis_t *redis,
    ngx_socket_t fd);
static void ngx_parley_redis_schedule(ngx_parley_redis_conn_t *conn);
static void ngx_parley_redis_ready(ngx_parley_redis_conn_t *conn);
static void ngx_parley_redis_down(ngx_parley_redis_conn_t *conn,
    const char *fmt, ...);
static void ngx_parley_redis_drop(ngx_parley_redis_conn_t *conn);
static void ngx_parley_redis_lost(ngx_parley_redis_conn_t *conn,
    const redisAsyncContext *ac);
static void ngx_parley_redis_set_reason(ngx_parley_redis_conn_t *conn,
    const char *fmt, ...);
static void ngx_parley_redis_vset_reason(ngx_parley_redis_conn_t *conn,
    const char *fmt, va_list args);
static void ngx_parley_redis_copy_error(u_char *dst, size_t size,
    const char *src);
static void ngx_parley_redis_not_ready(ngx_parley_redis_t *redis,
    ngx_parley_redis_conn_t *conn);
static ngx_int_t ngx_parley_redis_forbidden(const char *name, size_t len);

static ngx_parley_redis_cmd_t *ngx_parley_redis_cmd_alloc(
    ngx_parley_redis_t *redis);
static void ngx_parley_redis_cmd_free(ngx_parley_redis_t *redis,
    ngx_parley_redis_cmd_t *cmd);
static void ngx_parley_redis_cmd_detach(ngx_parley_redis_cmd_t *cmd);

static void ngx_parley_redis_connect_handler(const redisAsyncContext *ac,
    int status);
static void ngx_parley_redis_disconnect_handler(const redisAsyncContext *ac,
    int status);
static void ngx_parley_redis_handshake_reply(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_parley_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);

static void ngx_parley_redis_add_read(void *privdata);
static void ngx_parley_redis_del_read(void *privdata);
static void ngx_parley_redis_add_write(void *privdata);
static void ngx_parley_redis_del_write(void *privdata);
static void ngx_parley_redis_add_event(ngx_parley_redis_conn_t *conn,
    ngx_event_t *ev, ngx_int_t event);
static void ngx_parley_redis_del_event(ngx_event_t *ev, ngx_int_t event);
static void ngx_parley_redis_cleanup(void *privdata);

static void ngx_parley_redis_read_handler(ngx_event_t *rev);
static void ngx_parley_redis_write_handler(ngx_event_t *wev);
static void ngx_parley_redis_connect_timeout(ngx_event_t *ev);
static void ngx_parley_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_parley_redis_drop_handler(ngx_event_t *ev);
static void ngx_parley_redis_cmd_timeout(ngx_event_t *ev);

static u_char *ngx_parley_redis_log_error(ngx_log_t *log, u_char *buf,
    size_t len);


/*
 * Commands that put the connection into push mode (or, for hiredis 0.14,
 * are unknown push commands whose messages would hit an assert): they need
 * the future subscriber connection, never the shared command connection.
 */
static ngx_str_t  ngx_parley_redis_push_commands[] = {
    ngx_string("SUBSCRIBE"),
    ngx_string("PSUBSCRIBE"),
    ngx_string("SSUBSCRIBE"),
    ngx_string("UNSUBSCRIBE"),
    ngx_string("PUNSUBSCRIBE"),
    ngx_string("SUNSUBSCRIBE"),
    ngx_string("MONITOR"),
    ngx_null_string
};


ngx_parley_redis_t *
ngx_parley_redis_create(ngx_cycle_t *cycle, ngx_parley_redis_conf_t *conf)
{
    u_char                   *p;
    ngx_parley_redis_t       *redis;
    ngx_parley_redis_conn_t  *conn;

    redis = ngx_calloc(sizeof(ngx_parley_redis_t) + conf->host.len
                       + sizeof(":65535"), cycle->log);
    if (redis == NULL) {
        return NULL;
    }

    redis->conf = conf;

    p = (u_char *) redis + sizeof(ngx_parley_redis_t);
    redis->name.data = p;
    redis->name.len = ngx_sprintf(p, "%V:%d", &conf->host, (int) conf->port)
                      - p;

    /* every message about this backend names it, whoever logs it */
    redis->log = *cycle->log;
    redis->log.handler = ngx_parley_redis_log_error;
    redis->log.data = redis;
    redis->log.action = NULL;
    redis->log.connection = 0;

    ngx_sprintf(redis->db, "%i%Z", conf->db);

    ngx_queue_init(&redis->free);

    conn = &redis->conn;
    conn->redis = redis;
    ngx_queue_init(&conn->cmds);

    conn->connect_timer.handler = ngx_parley_redis_connect_timeout;
    conn->connect_timer.data = conn;
    conn->connect_timer.log = &redis->log;
    conn->connect_timer.cancelable = 1;

    /* a pending reconnect must not hold a gracefully exiting worker */
    conn->reconnect_timer.handler = ngx_parley_redis_reconnect_handler;
    conn->reconnect_timer.data = conn;
    conn->reconnect_timer.log = &redis->log;
    conn->reconnect_timer.cancelable = 1;

    conn->drop.handler = ngx_parley_redis_drop_handler;
    conn->drop.data = conn;
    conn->drop.log = &redis->log;

    ngx_cpystrn(redis->errstr, (u_char *) "no error", NGX_PARLEY_ERRLEN);

    /*
     * Names are resolved here, once, before the worker serves anything:
     * hiredis would otherwise call getaddrinfo() on every reconnect, a
     * blocking call in the middle of the event loop.
     */
    (void) ngx_parley_redis_resolve(redis);

    if (redis->addr) {
        ngx_parley_redis_connect(conn);

    } else {
        ngx_parley_redis_schedule(conn);
    }

    return redis;
}


/*
 * Called from exit_process only: no handler is called any more, the context
 * is freed at once (hiredis closes the socket), nothing waits.
 */

void
ngx_parley_redis_destroy(ngx_parley_redis_t *redis)
{
    ngx_queue_t              *q;
    redisAsyncContext        *ac;
    ngx_parley_redis_cmd_t   *cmd;
    ngx_parley_redis_conn_t  *conn;

    if (redis == NULL) {
        return;
    }

    redis->destroying = 1;
    conn = &redis->conn;

    while (!ngx_queue_empty(&conn->cmds)) {
        q = ngx_queue_head(&conn->cmds);
        cmd = ngx_queue_data(q, ngx_parley_redis_cmd_t, queue);
        ngx_parley_redis_cmd_detach(cmd);
    }

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    if (conn->reconnect_timer.timer_set) {
        ngx_del_timer(&conn->reconnect_timer);
    }

    if (conn->drop.posted) {
        ngx_delete_posted_event(&conn->drop);
    }

    ac = conn->ac;

    if (ac) {
        if (ac->c.flags & REDIS_IN_CALLBACK) {
            /* cannot happen from exit_process; leak rather than crash */
            ngx_log_error(NGX_LOG_ERR, &redis->log, 0,
                          "redis client destroyed inside a callback");
            return;
        }

        /* the wrappers come back through ngx_parley_redis_reply() */
        redisAsyncFree(ac);
    }

    while (!ngx_queue_empty(&redis->free)) {
        q = ngx_queue_head(&redis->free);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_parley_redis_cmd_t, queue));
    }

    if (redis->ncmds) {
        ngx_log_error(NGX_LOG_ERR, &redis->log, 0,
                      "redis client destroyed with %ui commands in flight",
                      redis->ncmds);
    }

    ngx_free(redis);
}


ngx_int_t
ngx_parley_redis_command_argv(ngx_parley_redis_t *redis,
    ngx_parley_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen, ngx_parley_redis_cmd_t **cmdp)
{
    size_t                    len;
    ngx_parley_redis_cmd_t   *cmd;
    ngx_parley_redis_conn_t  *conn;

    if (cmdp) {
        *cmdp = NULL;
    }

    if (argc < 1 || argv == NULL || handler == NULL) {
        ngx_snprintf(redis->errstr, NGX_PARLEY_ERRLEN,
                     "redis %V: empty command%Z", &redis->name);
        return NGX_ERROR;
    }

    len = argvlen ? argvlen[0] : ngx_strlen(argv[0]);

    if (ngx_parley_redis_forbidden(argv[0], len)) {
        ngx_snprintf(redis->errstr, NGX_PARLEY_ERRLEN,
                     "redis %V: \"%*s\" needs a subscriber connection, "
                     "not the command connection%Z",
                     &redis->name, len, argv[0]);
        return NGX_ERROR;
    }

    conn = &redis->conn;

    if (redis->destroying
        || conn->state != NGX_PARLEY_REDIS_READY
        || conn->ac == NULL
        || (conn->ac->c.flags & (REDIS_DISCONNECTING|REDIS_FREEING)))
    {
        ngx_parley_redis_not_ready(redis, conn);
        return NGX_DECLINED;
    }

    cmd = ngx_parley_redis_cmd_alloc(redis);
    if (cmd == NULL) {
        ngx_snprintf(redis->errstr, NGX_PARLEY_ERRLEN,
                     "redis %V: out of memory%Z", &redis->name);
        return NGX_ERROR;
    }

    cmd->conn = conn;
    cmd->handler = handler;
    cmd->data = data;

    /*
     * hiredis 0.14 fails here only when it cannot format the command (out
     * of memory); its own allocations past that point abort the process,
     * which no caller can prevent.
     */
    if (redisAsyncCommandArgv(conn->ac, ngx_parley_redis_reply, cmd, argc,
                              argv, argvlen)
        != REDIS_OK)
    {
        ngx_parley_redis_cmd_free(redis, cmd);
        ngx_snprintf(redis->errstr, NGX_PARLEY_ERRLEN,
                     "redis %V: cannot queue the command: %s%Z",
                     &redis->name,
                     conn->ac->c.err ? conn->ac->c.errstr : "out of memory");
        return NGX_ERROR;
    }

    cmd->active = 1;
    ngx_queue_insert_tail(&conn->cmds, &cmd->queue);

    /* not cancelable: a graceful exit waits for the reply or the timeout */
    cmd->timer.handler = ngx_parley_redis_cmd_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = &redis->log;
    ngx_add_timer(&cmd->timer, redis->conf->timeouts.timeout);

    if (cmdp) {
        *cmdp = cmd;
    }

    return NGX_OK;
}


/*
 * The caller stops waiting: its handler is never called, its data may go
 * at once.  The wrapper stays with hiredis until the reply (or the context
 * teardown) comes, and is freed then.  cmd must be one whose handler has
 * not run yet.
 */

void
ngx_parley_redis_cancel(ngx_parley_redis_cmd_t *cmd)
{
    if (cmd == NULL) {
        return;
    }

    ngx_parley_redis_cmd_detach(cmd);
}


ngx_str_t *
ngx_parley_redis_name(ngx_parley_redis_t *redis)
{
    return &redis->name;
}


const char *
ngx_parley_redis_last_error(ngx_parley_redis_t *redis)
{
    return (const char *) redis->errstr;
}


/* NGX_OK with redis->addr set, or NGX_ERROR with the reason set */

static ngx_int_t
ngx_parley_redis_resolve(ngx_parley_redis_t *redis)
{
    int               rc;
    size_t            n;
    u_char            buf[sizeof(struct in6_addr)];
    struct addrinfo   hints, *res;

    if (inet_pton(AF_INET, (char *) redis->conf->host.data, buf) == 1
        || inet_pton(AF_INET6, (char *) redis->conf->host.data, buf) == 1)
    {
        redis->addr = (char *) redis->conf->host.data;
        return NGX_OK;
    }

    /* IPv4 first, as hiredis does: local servers mostly bind 127.0.0.1 */
    ngx_memzero(&hints, sizeof(struct addrinfo));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo((char *) redis->conf->host.data, NULL, &hints, &res);

    if (rc != 0) {
        hints.ai_family = AF_INET6;
        rc = getaddrinfo((char *) redis->conf->host.data, NULL, &hints, &res);
    }

    if (rc != 0) {
        ngx_parley_redis_set_reason(&redis->conn, "cannot resolve \"%V\": %s",
                                    &redis->conf->host, gai_strerror(rc));
        return NGX_ERROR;
    }

    n = ngx_sock_ntop(res->ai_addr, res->ai_addrlen, redis->addr_buf,
                      NGX_SOCKADDR_STRLEN, 0);
    freeaddrinfo(res);

    if (n == 0) {
        ngx_parley_redis_set_reason(&redis->conn, "cannot resolve \"%V\": "
                                    "unknown address family",
                                    &redis->conf->host);
        return NGX_ERROR;
    }

    /* ngx_sock_ntop() does not terminate the string */
    redis->addr_buf[n] = '\0';
    redis->addr = (char *) redis->addr_buf;

    ngx_log_error(NGX_LOG_INFO, &redis->log, 0,
                  "redis: \"%V\" resolved to %s", &redis->conf->host,
                  redis->addr);

    return NGX_OK;
}


/* IDLE -> CONNECTING, or IDLE with a reconnect scheduled */

static void
ngx_parley_redis_connect(ngx_parley_redis_conn_t *conn)
{
    u_char               errstr[128];
    ngx_connection_t    *c;
    redisAsyncContext   *ac;
    ngx_parley_redis_t  *redis;

    redis = conn->redis;

    /*
     * A name that did not resolve at start is tried again here; this is
     * the one blocking call left, and only while DNS keeps failing.
     */
    if (redis->addr == NULL && ngx_parley_redis_resolve(redis) != NGX_OK) {
        ngx_parley_redis_schedule(conn);
        return;
    }

    /* a non-blocking connect(); the result comes as a write event */
    ac = redisAsyncConnect(redis->addr, (int) redis->conf->port);

    if (ac == NULL) {
        ngx_parley_redis_set_reason(conn, "out of memory");
        ngx_parley_redis_schedule(conn);
        return;
    }

    if (ac->err) {
        /* e.g. a refused connection to a local port fails right here */
        ngx_parley_redis_copy_error(errstr, sizeof(errstr), ac->errstr);
        ngx_parley_redis_set_reason(conn, "%s", errstr);
        redisAsyncFree(ac);
        ngx_parley_redis_schedule(conn);
        return;
    }

    c = ngx_parley_wrap_fd(ac->c.fd, &redis->log);

    if (c == NULL) {
        ngx_parley_redis_set_reason(conn, "no free nginx connection "
                                    "(worker_connections)");
        redisAsyncFree(ac);
        ngx_parley_redis_schedule(conn);
        return;
    }

    ngx_parley_redis_keepalive(redis, ac->c.fd);

    c->data = conn;
    c->read->handler = ngx_parley_redis_read_handler;
    c->write->handler = ngx_parley_redis_write_handler;

    conn->ac = ac;
    conn->c = c;
    conn->state = NGX_PARLEY_REDIS_CONNECTING;
    conn->steps = 0;
    conn->step = 0;

    ac->data = conn;
    ac->ev.data = conn;
    ac->ev.addRead = ngx_parley_redis_add_read;
    ac->ev.delRead = ngx_parley_redis_del_read;
    ac->ev.addWrite = ngx_parley_redis_add_write;
    ac->ev.delWrite = ngx_parley_redis_del_write;
    ac->ev.cleanup = ngx_parley_redis_cleanup;

    /* connect and handshake share one deadline */
    ngx_add_timer(&conn->connect_timer, redis->conf->timeouts.connect_timeout);

    redisAsyncSetDisconnectCallback(ac, ngx_parley_redis_disconnect_handler);

    /* this adds the write event that reports the connect */
    redisAsyncSetConnectCallback(ac, ngx_parley_redis_connect_handler);
}


/*
 * TCP keepalive, so that an idle connection to a host that vanished (no
 * RST, e.g. a network partition) is noticed in about 30 s.  Set here rather
 * than with redisEnableKeepAlive(), whose failure would poison the
 * context's error state.  Best effort: a failure is only logged.
 */

static void
ngx_parley_redis_keepalive(ngx_parley_redis_t *redis, ngx_socket_t fd)
{
    int  on, idle, intvl, cnt;

    on = 1;

    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(int)) == -1) {
        ngx_log_error(NGX_LOG_INFO, &redis->log, ngx_socket_errno,
                      "redis: setsockopt(SO_KEEPALIVE) failed");
        return;
    }

#if (NGX_HAVE_KEEPALIVE_TUNABLE)

    idle = 15;
    intvl = 5;
    cnt = 3;

    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(int)) == -1
        || setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(int))
           == -1
        || setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(int)) == -1)
    {
        ngx_log_error(NGX_LOG_INFO, &redis->log, ngx_socket_errno,
                      "redis: setsockopt(TCP_KEEP*) failed");
    }

#else

    (void) idle;
    (void) intvl;
    (void) cnt;

#endif
}


/*
 * Arms the reconnect timer after a failure, with backoff.  The first
 * failure of an outage is an [error], the retries are [info]: a backend
 * down for an hour must not flood the log of every worker.
 */

static void
ngx_parley_redis_schedule(ngx_parley_redis_conn_t *conn)
{
    ngx_uint_t           level;
    ngx_msec_t           delay;
    ngx_parley_redis_t  *redis;

    redis = conn->redis;

    conn->state = NGX_PARLEY_REDIS_IDLE;

    if (redis->destroying || conn->closing) {
        return;
    }

    delay = ngx_parley_reconnect_delay(&redis->conf->timeouts,
                                       conn->failures);

    if (conn->failures < NGX_PARLEY_REDIS_MAX_FAILURES) {
        conn->failures++;
    }

    if (conn->reconnect_timer.timer_set) {
        ngx_del_timer(&conn->reconnect_timer);
    }

    ngx_add_timer(&conn->reconnect_timer, delay);

    level = conn->outage ? NGX_LOG_INFO : NGX_LOG_ERR;
    conn->outage = 1;

    ngx_log_error(level, &redis->log, 0,
                  "redis: %s, reconnecting in %M ms", conn->reason, delay);
}


/* CONNECTING -> READY: the server answered the whole handshake */

static void
ngx_parley_redis_ready(ngx_parley_redis_conn_t *conn)
{
    ngx_parley_redis_t  *redis;

    redis = conn->redis;

    conn->state = NGX_PARLEY_REDIS_READY;

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    if (conn->outage) {
        ngx_log_error(NGX_LOG_NOTICE, &redis->log, 0,
                      "redis: connected again after %ui failed attempt%s",
                      conn->failures, conn->failures == 1 ? "" : "s");

    } else {
        ngx_log_error(NGX_LOG_INFO, &redis->log, 0, "redis: connected");
    }

    conn->failures = 0;
    conn->outage = 0;
    conn->reason[0] = '\0';
}


/*
 * CONNECTING or READY -> DOWN: no new commands from now on, the reason
 * becomes the error of everything still outstanding.  Later calls keep
 * the first reason, which is the cause.
 */

static void
ngx_parley_redis_down(ngx_parley_redis_conn_t *conn, const char *fmt, ...)
{
    va_list  args;

    if (conn->state != NGX_PARLEY_REDIS_CONNECTING
        && conn->state != NGX_PARLEY_REDIS_READY)
    {
        return;
    }

    conn->state = NGX_PARLEY_REDIS_DOWN;

    va_start(args, fmt);
    ngx_parley_redis_vset_reason(conn, fmt, args);
    va_end(args);

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }
}


/* frees the context from the top of the event loop (see the file head) */

static void
ngx_parley_redis_drop(ngx_parley_redis_conn_t *conn)
{
    if (conn->ac == NULL || conn->drop.posted) {
        return;
    }

    ngx_post_event(&conn->drop, &ngx_posted_events);
}


/* hiredis is tearing the context down on its own: record why */

static void
ngx_parley_redis_lost(ngx_parley_redis_conn_t *conn,
    const redisAsyncContext *ac)
{
    u_char  errstr[128];

    if (conn->ac != ac) {
        return;
    }

    if (ac->c.err) {
        ngx_parley_redis_copy_error(errstr, sizeof(errstr), ac->c.errstr);

    } else {
        ngx_cpystrn(errstr, (u_char *) "connection closed", sizeof(errstr));
    }

    if (conn->state == NGX_PARLEY_REDIS_READY) {
        ngx_parley_redis_down(conn, "connection lost: %s", errstr);

    } else {
        ngx_parley_redis_down(conn, "%s", errstr);
    }
}


static void
ngx_parley_redis_set_reason(ngx_parley_redis_conn_t *conn,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_parley_redis_vset_reason(conn, fmt, args);
    va_end(args);
}


static void
ngx_parley_redis_vset_reason(ngx_parley_redis_conn_t *conn,
    const char *fmt, va_list args)
{
    u_char  *p, *last;

    last = conn->reason + NGX_PARLEY_ERRLEN - 1;
    p = ngx_vslprintf(conn->reason, last, fmt, args);
    *p = '\0';

    p = ngx_snprintf(conn->error, NGX_PARLEY_ERRLEN - 1, "redis %V: %s",
                     &conn->redis->name, conn->reason);
    *p = '\0';
}


/*
 * hiredis' text for use mid-sentence: "Connection refused" is lowercased,
 * a server's "ERR ..." is kept as it is.
 */

static void
ngx_parley_redis_copy_error(u_char *dst, size_t size, const char *src)
{
    ngx_cpystrn(dst, (u_char *) (src ? src : "unknown error"), size);

    if (dst[0] >= 'A' && dst[0] <= 'Z' && dst[1] >= 'a' && dst[1] <= 'z') {
        dst[0] = (u_char) ngx_tolower(dst[0]);
    }
}


/* last_error for NGX_DECLINED: why not, and when the next try is */

static void
ngx_parley_redis_not_ready(ngx_parley_redis_t *redis,
    ngx_parley_redis_conn_t *conn)
{
    u_char          *p, *last;
    ngx_msec_int_t   left;

    p = redis->errstr;
    last = redis->errstr + NGX_PARLEY_ERRLEN - 1;

    if (redis->destroying) {
        p = ngx_slprintf(p, last, "redis %V: client is shutting down",
                         &redis->name);

    } else if (conn->state == NGX_PARLEY_REDIS_CONNECTING) {
        if (conn->reason[0]) {
            p = ngx_slprintf(p, last, "redis %V: %s, reconnecting",
                             &redis->name, conn->reason);
        } else {
            p = ngx_slprintf(p, last, "redis %V: connecting", &redis->name);
        }

    } else if (conn->state == NGX_PARLEY_REDIS_IDLE
               && conn->reconnect_timer.timer_set)
    {
        left = (ngx_msec_int_t) (conn->reconnect_timer.timer.key
                                 - ngx_current_msec);
        p = ngx_slprintf(p, last, "redis %V: %s, reconnecting in %M ms",
                         &redis->name, conn->reason,
                         (ngx_msec_t) (left > 0 ? left : 0));

    } else if (conn->reason[0]) {
        p = ngx_slprintf(p, last, "redis %V: %s%s", &redis->name,
                         conn->reason, conn->closing ? "" : ", reconnecting");

    } else {
        p = ngx_slprintf(p, last, "redis %V: connection closing",
                         &redis->name);
    }

    *p = '\0';
}


static ngx_int_t
ngx_parley_redis_forbidden(const char *name, size_t len)
{
    ngx_str_t  *cmd;

    for (cmd = ngx_parley_redis_push_commands; cmd->len; cmd++) {
        if (len == cmd->len
            && ngx_strncasecmp((u_char *) name, cmd->data, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_parley_redis_cmd_t *
ngx_parley_redis_cmd_alloc(ngx_parley_redis_t *redis)
{
    ngx_queue_t             *q;
    ngx_parley_redis_cmd_t  *cmd;

    if (!ngx_queue_empty(&redis->free)) {
        q = ngx_queue_head(&redis->free);
        ngx_queue_remove(q);
        redis->nfree--;
        cmd = ngx_queue_data(q, ngx_parley_redis_cmd_t, queue);

    } else {
        /* not a request pool: the reply may outlive the request */
        cmd = ngx_alloc(sizeof(ngx_parley_redis_cmd_t), &redis->log);
        if (cmd == NULL) {
            return NULL;
        }
    }

    ngx_memzero(cmd, sizeof(ngx_parley_redis_cmd_t));
    redis->ncmds++;

    return cmd;
}


static void
ngx_parley_redis_cmd_free(ngx_parley_redis_t *redis,
    ngx_parley_redis_cmd_t *cmd)
{
    redis->ncmds--;

    if (redis->destroying || redis->nfree >= NGX_PARLEY_REDIS_FREE_MAX) {
        ngx_free(cmd);
        return;
    }

    ngx_queue_insert_head(&redis->free, &cmd->queue);
    redis->nfree++;
}


/* the handler will not be called; the wrapper stays with hiredis */

static void
ngx_parley_redis_cmd_detach(ngx_parley_redis_cmd_t *cmd)
{
    if (!cmd->active) {
        return;
    }

    cmd->active = 0;
    ngx_queue_remove(&cmd->queue);

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    cmd->handler = NULL;
    cmd->data = NULL;
}


/*
 * hiredis: called once the socket is writable (status REDIS_OK) or the
 * connect failed (REDIS_ERR; hiredis frees the context right after we
 * return).  Not guarded by REDIS_IN_CALLBACK in hiredis 0.14: nothing here
 * may free the context.
 */

static void
ngx_parley_redis_connect_handler(const redisAsyncContext *cac, int status)
{
    size_t                    len[2];
    ngx_uint_t                n;
    const char               *argv[2];
    redisAsyncContext        *ac;
    ngx_parley_redis_t       *redis;
    ngx_parley_redis_conn_t  *conn;

    ac = (redisAsyncContext *) cac;
    conn = ac->data;
    redis = conn->redis;

    if (status != REDIS_OK) {
        ngx_parley_redis_lost(conn, ac);
        return;
    }

    if (conn->state != NGX_PARLEY_REDIS_CONNECTING) {
        return;
    }

    /*
     * AUTH and SELECT go first on the wire, before any user command can
     * (commands are refused until READY); the PING proves the server
     * actually answers.
     */
    n = 0;

    if (redis->conf->password.len) {
        argv[0] = "AUTH";
        len[0] = sizeof("AUTH") - 1;
        argv[1] = (const char *) redis->conf->password.data;
        len[1] = redis->conf->password.len;

        if (redisAsyncCommandArgv(ac, ngx_parley_redis_handshake_reply, conn,
                                  2, argv, len)
            != REDIS_OK)
        {
            goto failed;
        }

        conn->step_name[n++] = "AUTH";
    }

    if (redis->conf->db) {
        argv[0] = "SELECT";
        len[0] = sizeof("SELECT") - 1;
        argv[1] = (const char *) redis->db;
        len[1] = ngx_strlen(redis->db);

        if (redisAsyncCommandArgv(ac, ngx_parley_redis_handshake_reply, conn,
                                  2, argv, len)
            != REDIS_OK)
        {
            goto failed;
        }

        conn->step_name[n++] = "SELECT";
    }

    argv[0] = "PING";
    len[0] = sizeof("PING") - 1;

    if (redisAsyncCommandArgv(ac, ngx_parley_redis_handshake_reply, conn,
                              1, argv, len)
        != REDIS_OK)
    {
        goto failed;
    }

    conn->step_name[n++] = "PING";
    conn->steps = n;
    conn->step = 0;

    return;

failed:

    /* the replies already queued come back as NULL on the free */
    conn->steps = n;
    ngx_parley_redis_down(conn, "cannot send the handshake (out of memory)");
    ngx_parley_redis_drop(conn);
}


/*
 * hiredis: called from its teardown of a connected context, after every
 * pending reply callback and after the cleanup hook (so conn->ac is already
 * NULL and this is a no-op then).
 */

static void
ngx_parley_redis_disconnect_handler(const redisAsyncContext *ac, int status)
{
    ngx_parley_redis_conn_t  *conn;

    conn = ac->data;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &conn->redis->log, 0,
                   "redis disconnected, status %d", status);

    ngx_parley_redis_lost(conn, ac);
}


static void
ngx_parley_redis_handshake_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply               *reply;
    const char               *name;
    ngx_parley_redis_conn_t  *conn;

    conn = privdata;
    reply = r;

    if (reply == NULL) {
        /* the context is being freed */
        ngx_parley_redis_lost(conn, ac);
        return;
    }

    if (conn->state != NGX_PARLEY_REDIS_CONNECTING
        || conn->step >= conn->steps)
    {
        return;
    }

    name = conn->step_name[conn->step++];

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_parley_redis_down(conn, "%s failed: %*s", name,
                              (size_t) reply->len, reply->str);
        ngx_parley_redis_drop(conn);
        return;
    }

    if (conn->step == conn->steps) {
        ngx_parley_redis_ready(conn);
    }
}


/*
 * hiredis: the reply of a user command, or NULL when the context is freed
 * with the command outstanding.  The reply is freed by hiredis after this
 * returns.  The wrapper is freed here and only here.
 */

static void
ngx_parley_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    void                       *data;
    redisReply                 *reply;
    ngx_parley_redis_t         *redis;
    ngx_parley_redis_cmd_t     *cmd;
    ngx_parley_redis_conn_t    *conn;
    ngx_parley_redis_reply_pt   handler;

    cmd = privdata;
    conn = cmd->conn;
    redis = conn->redis;
    reply = r;

    if (reply == NULL) {
        /* first, so that the handlers below see the connection down */
        ngx_parley_redis_lost(conn, ac);
    }

    if (cmd->active) {
        handler = cmd->handler;
        data = cmd->data;

        ngx_parley_redis_cmd_detach(cmd);

        if (reply) {
            handler(redis, reply, NGX_OK, NULL, data);

        } else {
            handler(redis, NULL, NGX_ERROR, (const char *) conn->error,
                    data);
        }
    }

    ngx_parley_redis_cmd_free(redis, cmd);
}


/*
 * Event hooks.  hiredis wants "call me while readable / writable": level
 * triggered events (edge triggered ones would stall, as hiredis reads at
 * most 16 KB per call).  They must be idempotent.
 */

static void
ngx_parley_redis_add_read(void *privdata)
{
    ngx_parley_redis_conn_t *conn = privdata;

    if (conn->c) {
        ngx_parley_redis_add_event(conn, conn->c->read, NGX_READ_EVENT);
    }
}


static void
ngx_parley_redis_del_read(void *privdata)
{
    ngx_parley_redis_conn_t *conn = privdata;

    if (conn->c) {
        ngx_parley_redis_del_event(conn->c->read, NGX_READ_EVENT);
    }
}


static void
ngx_parley_redis_add_write(void *privdata)
{
    ngx_parley_redis_conn_t *conn = privdata;

    if (conn->c) {
        ngx_parley_redis_add_event(conn, conn->c->write, NGX_WRITE_EVENT);
    }
}


static void
ngx_parley_redis_del_write(void *privdata)
{
    ngx_parley_redis_conn_t *conn = privdata;

    if (conn->c) {
        ngx_parley_redis_del_event(conn->c->write, NGX_WRITE_EVENT);
    }
}


static void
ngx_parley_redis_add_event(ngx_parley_redis_conn_t *conn, ngx_event_t *ev,
    ngx_int_t event)
{
    if (ev->active) {
        return;
    }

    if (ngx_add_event(ev, event, NGX_LEVEL_EVENT) != NGX_OK) {
        /* a hook cannot fail back into hiredis: give the connection up */
        ngx_parley_redis_down(conn, "cannot add the socket to the event "
                              "loop");
        ngx_parley_redis_drop(conn);
    }
}


static void
ngx_parley_redis_del_event(ngx_event_t *ev, ngx_int_t event)
{
    if (!ev->active) {
        return;
    }

    (void) ngx_del_event(ev, event, 0);
}


/*
 * hiredis: the context is being freed, for whatever reason (our drop, an
 * I/O error, a failed connect, destroy); the fd is closed right after.
 */

static void
ngx_parley_redis_cleanup(void *privdata)
{
    ngx_parley_redis_conn_t *conn = privdata;

    if (conn->ac == NULL) {
        return;
    }

    ngx_parley_redis_lost(conn, conn->ac);

    ngx_parley_unwrap_fd(conn->c);
    conn->c = NULL;
    conn->ac = NULL;
    conn->steps = 0;

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    if (conn->drop.posted) {
        ngx_delete_posted_event(&conn->drop);
    }

    ngx_parley_redis_schedule(conn);
}


static void
ngx_parley_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t         *c;
    ngx_parley_redis_conn_t  *conn;

    c = rev->data;
    conn = c->data;

    if (c->close) {
        /* worker_shutdown_timeout: go, and do not come back */
        conn->closing = 1;
        ngx_parley_redis_down(conn, "worker is shutting down");
        ngx_parley_redis_drop(conn);
        return;
    }

    if (conn->ac) {
        redisAsyncHandleRead(conn->ac);
    }
}


static void
ngx_parley_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t         *c;
    ngx_parley_redis_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    if (conn->ac) {
        redisAsyncHandleWrite(conn->ac);
    }
}


static void
ngx_parley_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_parley_redis_t       *redis;
    ngx_parley_redis_conn_t  *conn;

    conn = ev->data;
    redis = conn->redis;

    if (conn->state != NGX_PARLEY_REDIS_CONNECTING || conn->ac == NULL) {
        return;
    }

    if ((conn->ac->c.flags & REDIS_CONNECTED) && conn->step < conn->steps) {
        ngx_parley_redis_down(conn, "no answer to %s within %M ms",
                              conn->step_name[conn->step],
                              redis->conf->timeouts.connect_timeout);

    } else {
        ngx_parley_redis_down(conn, "connect timed out after %M ms",
                              redis->conf->timeouts.connect_timeout);
    }

    ngx_parley_redis_drop(conn);
}


static void
ngx_parley_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_parley_redis_conn_t *conn = ev->data;

    if (conn->state == NGX_PARLEY_REDIS_IDLE && conn->ac == NULL) {
        ngx_parley_redis_connect(conn);
    }
}


static void
ngx_parley_redis_drop_handler(ngx_event_t *ev)
{
    redisAsyncContext        *ac;
    ngx_parley_redis_conn_t  *conn;

    conn = ev->data;
    ac = conn->ac;

    if (ac == NULL) {
        return;
    }

    /*
     * Outstanding commands get NGX_ERROR from the NULL replies, the cleanup
     * hook schedules the reconnect, hiredis closes the socket.
     */
    redisAsyncFree(ac);
}


/*
 * A command got no reply in time.  Redis answers in order, so a hung
 * server delays everything behind this command too: the connection is
 * given up and opened again rather than waited on.
 */

static void
ngx_parley_redis_cmd_timeout(ngx_event_t *ev)
{
    u_char                     msg[NGX_PARLEY_ERRLEN], *p;
    void                      *data;
    ngx_parley_redis_t        *redis;
    ngx_parley_redis_cmd_t    *cmd;
    ngx_parley_redis_conn_t   *conn;
    ngx_parley_redis_reply_pt  handler;

    cmd = ev->data;
    conn = cmd->conn;
    redis = conn->redis;

    if (!cmd->active) {
        return;
    }

    handler = cmd->handler;
    data = cmd->data;

    ngx_parley_redis_cmd_detach(cmd);

    /* the first timeout is the news; the others of the same tick are not */
    if (conn->state == NGX_PARLEY_REDIS_READY) {
        conn->outage = 1;
        ngx_log_error(NGX_LOG_ERR, &redis->log, 0,
                      "redis: command timed out after %M ms, "
                      "closing the connection",
                      redis->conf->timeouts.timeout);

    } else {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &redis->log, 0,
                       "redis: command timed out after %M ms",
                       redis->conf->timeouts.timeout);
    }

    /* before the handler, so a retry from it is declined, not queued */
    ngx_parley_redis_down(conn, "connection closed after a command "
                          "timed out");
    ngx_parley_redis_drop(conn);

    p = ngx_snprintf(msg, NGX_PARLEY_ERRLEN - 1, "redis %V: timeout after "
                     "%M ms", &redis->name, redis->conf->timeouts.timeout);
    *p = '\0';

    handler(redis, NULL, NGX_ETIMEDOUT, (const char *) msg, data);
}


static u_char *
ngx_parley_redis_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char              *p;
    ngx_parley_redis_t  *redis;

    redis = log->data;
    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    return ngx_snprintf(p, len, ", parley redis %V (%V)", &redis->name,
                        &redis->conf->name);
}
