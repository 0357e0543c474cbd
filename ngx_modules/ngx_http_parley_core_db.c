
/*
 * Parley core: the SQL-store client (MariaDB in development, TiDB in
 * production), one pool per worker, on mariadb-connector-c's non-blocking
 * API driven by the nginx event loop.
 *
 * Each pooled connection runs the library's suspended calls
 * (mysql_real_connect, mysql_real_query, mysql_store_result) and resumes
 * them when nginx reports the socket ready in the direction the library asked
 * for (MYSQL_WAIT_READ / MYSQL_WAIT_WRITE).  Every deadline is an nginx timer;
 * the library's own timeouts are never set and its MYSQL_WAIT_TIMEOUT wishes
 * are ignored.  When a deadline passes, the suspended call is resumed with
 * MYSQL_WAIT_TIMEOUT: that makes the library fail the read or write it waits
 * on and unwind its coroutine, close its socket and free its state, with no
 * further I/O, so nothing here ever blocks.
 *
 * Facts about the connector this file relies on (libmariadb 3.3, checked):
 *
 *   - the library owns the socket: it closes it inside a _cont() call when
 *     the server is lost (end_server(), net.pvio becomes NULL) or a connect
 *     attempt fails; nginx must then forget the fd without an epoll_ctl();
 *   - while connecting, the socket may change from one address of a host
 *     name to the next, so during connect the fd is unwrapped before each
 *     _cont() and wrapped again after it;
 *   - mysql_get_socket() reads a stale pointer once a connection has failed;
 *     it is called only while a call is suspended or right after success;
 *   - the library reads until EAGAIN before it suspends, so edge-triggered
 *     events are safe;
 *   - a MYSQL_RES from mysql_store_result() does not refer to its MYSQL
 *     (res->handle is NULL), so it may outlive the connection;
 *   - mysql_close() of a healthy connection writes COM_QUIT into an empty
 *     socket buffer (no wait); of an aborted one, nothing.
 *
 * Memory: the pool, its connections and the wait records are ngx_alloc()ed
 * (a reply may outlive any request) and freed in ngx_parley_db_destroy().
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_parley_core.h"


/* connection states */
#define NGX_PARLEY_DB_CLOSED       0     /* no session; reconnect timer */
#define NGX_PARLEY_DB_CONNECTING   1     /* mysql_real_connect suspended */
#define NGX_PARLEY_DB_IDLE         2     /* in db->idle */
#define NGX_PARLEY_DB_ACQUIRED     3     /* owned by a caller */
#define NGX_PARLEY_DB_CLOSING      4     /* released inside its handler */

/* what an acquired connection is doing */
#define NGX_PARLEY_DB_OP_NONE      0
#define NGX_PARLEY_DB_OP_QUERY     1     /* mysql_real_query suspended */
#define NGX_PARLEY_DB_OP_STORE     2     /* mysql_store_result suspended */
#define NGX_PARLEY_DB_OP_DONE      3     /* query ended inside the call */
#define NGX_PARLEY_DB_OP_LOST      4     /* query on a lost session */

/* wait record states */
#define NGX_PARLEY_DB_WAIT_FREE    0
#define NGX_PARLEY_DB_WAIT_QUEUED  1     /* in db->waiters, timer set */
#define NGX_PARLEY_DB_WAIT_POSTED  2     /* in db->posted, event posted */

/* resumptions allowed to unwind one aborted call (one per address) */
#define NGX_PARLEY_DB_ABORT_LIMIT  32

/* client error numbers of libmariadb (errmsg.h) */
#define NGX_PARLEY_CR_UNKNOWN_ERROR       2000
#define NGX_PARLEY_CR_SERVER_GONE_ERROR   2006
#define NGX_PARLEY_CR_SERVER_LOST         2013


struct ngx_parley_db_conn_s {
    ngx_parley_db_t           *db;
    MYSQL                     *mysql;
    ngx_connection_t          *c;           /* wraps the library's socket */

    ngx_event_t                timer;       /* connect or query deadline,
                                               reconnect delay */
    ngx_event_t                post;        /* delivers OP_DONE / OP_LOST */
    ngx_queue_t                queue;       /* link in db->idle */

    ngx_parley_db_wait_t      *wait;        /* hand-over not yet delivered */

    ngx_parley_db_query_pt     handler;
    void                      *data;

    ngx_uint_t                 failures;    /* consecutive connect failures */
    int                        qret;        /* result of OP_DONE */

    unsigned                   state:3;
    unsigned                   op:3;
    unsigned                   up:1;        /* live session, counted */
    unsigned                   broken:1;    /* never reuse the session */
    unsigned                   in_handler:1;

    char                       error[NGX_PARLEY_ERRLEN];
};


struct ngx_parley_db_wait_s {
    ngx_parley_db_t           *db;
    ngx_event_t                ev;          /* deadline, then delivery */
    ngx_queue_t                queue;       /* waiters, posted or free */
    ngx_parley_db_conn_t      *conn;        /* handed over */
    ngx_parley_db_acquire_pt   handler;
    void                      *data;
    ngx_int_t                  rc;
    ngx_uint_t                 state;
};


struct ngx_parley_db_s {
    ngx_parley_db_conf_t      *conf;
    ngx_log_t                 *log;

    ngx_parley_db_conn_t      *conns;
    ngx_uint_t                 nconns;
    ngx_uint_t                 nup;         /* connections with a session */
    ngx_uint_t                 nwaiters;

    ngx_queue_t                idle;        /* FIFO: every session is used */
    ngx_queue_t                waiters;     /* FIFO */
    ngx_queue_t                posted;
    ngx_queue_t                free;

    char                      *socket;      /* NUL-terminated, or NULL */
    u_char                    *name;        /* "host:port", "unix:/path" */

    unsigned                   outage:1;    /* connect failure logged */
    unsigned                   stalled:1;   /* query timeout logged */

    char                       error[NGX_PARLEY_ERRLEN];
    char                       connect_error[NGX_PARLEY_ERRLEN];
    char                       scratch[2 * NGX_PARLEY_ERRLEN];
};


static void ngx_parley_db_connect(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_connect_step(ngx_parley_db_conn_t *conn,
    int status, MYSQL *ret);
static void ngx_parley_db_connect_failed(ngx_parley_db_conn_t *conn,
    const char *why);
static void ngx_parley_db_connected(ngx_parley_db_conn_t *conn);

static void ngx_parley_db_query_step(ngx_parley_db_conn_t *conn, int ready);
static void ngx_parley_db_query_done(ngx_parley_db_conn_t *conn, int qret);
static void ngx_parley_db_store_done(ngx_parley_db_conn_t *conn,
    MYSQL_RES *res);
static void ngx_parley_db_query_error(ngx_parley_db_conn_t *conn,
    unsigned int errcode, const char *text);
static void ngx_parley_db_query_finish(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *result);

static void ngx_parley_db_conn_event(ngx_event_t *ev);
static void ngx_parley_db_conn_timer(ngx_event_t *ev);
static void ngx_parley_db_conn_posted(ngx_event_t *ev);

static ngx_int_t ngx_parley_db_wrap(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_unwrap(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_check_fd(ngx_parley_db_conn_t *conn);
static ngx_int_t ngx_parley_db_wait_io(ngx_parley_db_conn_t *conn,
    int status);
static ngx_int_t ngx_parley_db_watch(ngx_parley_db_conn_t *conn,
    ngx_uint_t read, ngx_uint_t write);
static ngx_int_t ngx_parley_db_peek(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_abort(ngx_parley_db_conn_t *conn);

static void ngx_parley_db_set_broken(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_put(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_ready(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_close(ngx_parley_db_conn_t *conn);
static void ngx_parley_db_schedule(ngx_parley_db_conn_t *conn,
    ngx_msec_t delay);

static ngx_parley_db_wait_t *ngx_parley_db_wait_alloc(ngx_parley_db_t *db);
static void ngx_parley_db_wait_free(ngx_parley_db_wait_t *w);
static void ngx_parley_db_wait_post(ngx_parley_db_wait_t *w, ngx_int_t rc,
    ngx_parley_db_conn_t *conn);
static void ngx_parley_db_wait_handler(ngx_event_t *ev);
static void ngx_parley_db_fail_waiters(ngx_parley_db_t *db);

static ngx_uint_t ngx_parley_db_lost(unsigned int errcode);
static ngx_uint_t ngx_parley_db_retryable(unsigned int errcode);
static void ngx_parley_db_strerror(char *buf, size_t size,
    const char *fmt, ...);


/* ------------------------------------------------------------------ */
/* life cycle */

ngx_parley_db_t *
ngx_parley_db_create(ngx_cycle_t *cycle, ngx_parley_db_conf_t *conf)
{
    size_t                 len;
    u_char                *p;
    ngx_uint_t             i;
    ngx_parley_db_t       *db;
    ngx_parley_db_conn_t  *conn;
#if (NGX_HAVE_INET6)
    u_char                 addr6[16];
#endif

    if (mysql_library_init(0, NULL, NULL) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "parley db: mysql_library_init() failed");
        return NULL;
    }

    db = ngx_calloc(sizeof(ngx_parley_db_t), cycle->log);
    if (db == NULL) {
        return NULL;
    }

    db->conf = conf;
    db->log = cycle->log;

    ngx_queue_init(&db->idle);
    ngx_queue_init(&db->waiters);
    ngx_queue_init(&db->posted);
    ngx_queue_init(&db->free);

    len = sizeof("unix:") + conf->socket.len + conf->host.len
          + sizeof(":65535");

    db->name = ngx_alloc(len, cycle->log);
    if (db->name == NULL) {
        goto failed;
    }

    if (conf->socket.len) {
        p = ngx_sprintf(db->name, "unix:%V", &conf->socket);

        /* a private NUL-terminated copy: the conf holds a token suffix */
        db->socket = ngx_alloc(conf->socket.len + 1, cycle->log);
        if (db->socket == NULL) {
            goto failed;
        }

        ngx_memcpy(db->socket, conf->socket.data, conf->socket.len);
        db->socket[conf->socket.len] = '\0';

    } else {
        p = ngx_sprintf(db->name, "%V:%d", &conf->host, (int) conf->port);

        if (ngx_inet_addr(conf->host.data, conf->host.len) == INADDR_NONE
#if (NGX_HAVE_INET6)
            && ngx_inet6_addr(conf->host.data, conf->host.len, addr6)
               != NGX_OK
#endif
            )
        {
            /* the connector resolves names with getaddrinfo(), blocking */
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "parley db %V:%d: \"%V\" is a host name, "
                          "resolved with a blocking getaddrinfo() on every "
                          "connect; use an IP address",
                          &conf->host, (int) conf->port, &conf->host);
        }
    }

    *p = '\0';

    db->nconns = conf->pool_size;

    db->conns = ngx_calloc(db->nconns * sizeof(ngx_parley_db_conn_t),
                           cycle->log);
    if (db->conns == NULL) {
        goto failed;
    }

    ngx_parley_db_strerror(db->error, sizeof(db->error),
                           "db %s: not connected yet", db->name);

    for (i = 0; i < db->nconns; i++) {
        conn = &db->conns[i];

        conn->db = db;
        conn->state = NGX_PARLEY_DB_CLOSED;

        conn->timer.handler = ngx_parley_db_conn_timer;
        conn->timer.data = conn;
        conn->timer.log = db->log;

        conn->post.handler = ngx_parley_db_conn_posted;
        conn->post.data = conn;
        conn->post.log = db->log;
    }

    /*
     * Cache manager and loader processes run init_process too, but never
     * serve a request: they get an empty pool rather than open sessions.
     */
    if (ngx_process == NGX_PROCESS_HELPER) {
        return db;
    }

    for (i = 0; i < db->nconns; i++) {
        ngx_parley_db_connect(&db->conns[i]);
    }

    return db;

failed:

    if (db->conns) {
        ngx_free(db->conns);
    }

    if (db->socket) {
        ngx_free(db->socket);
    }

    if (db->name) {
        ngx_free(db->name);
    }

    ngx_free(db);

    return NULL;
}


/*
 * Closes every session (aborted calls unwind without I/O; idle sessions get
 * a COM_QUIT that fits the empty socket buffer), drops waiters without
 * calling their handlers and frees everything.
 */

void
ngx_parley_db_destroy(ngx_parley_db_t *db)
{
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_parley_db_wait_t  *w;
    ngx_parley_db_conn_t  *conn;

    if (db == NULL) {
        return;
    }

    for (i = 0; i < db->nconns; i++) {
        conn = &db->conns[i];

        conn->wait = NULL;
        conn->handler = NULL;
        conn->data = NULL;

        ngx_parley_db_close(conn);
    }

    while (!ngx_queue_empty(&db->waiters)) {
        q = ngx_queue_head(&db->waiters);
        w = ngx_queue_data(q, ngx_parley_db_wait_t, queue);
        ngx_parley_db_wait_free(w);
    }

    while (!ngx_queue_empty(&db->posted)) {
        q = ngx_queue_head(&db->posted);
        w = ngx_queue_data(q, ngx_parley_db_wait_t, queue);
        ngx_parley_db_wait_free(w);
    }

    while (!ngx_queue_empty(&db->free)) {
        q = ngx_queue_head(&db->free);
        ngx_queue_remove(q);
        w = ngx_queue_data(q, ngx_parley_db_wait_t, queue);
        ngx_free(w);
    }

    ngx_free(db->conns);

    if (db->socket) {
        ngx_free(db->socket);
    }

    ngx_free(db->name);
    ngx_free(db);

    mysql_library_end();
}


/* ------------------------------------------------------------------ */
/* acquire and release */

ngx_int_t
ngx_parley_db_acquire(ngx_parley_db_t *db, ngx_parley_db_acquire_pt handler,
    void *data, ngx_parley_db_wait_t **wait)
{
    ngx_queue_t           *q;
    ngx_parley_db_wait_t  *w;
    ngx_parley_db_conn_t  *conn;

    if (handler == NULL) {
        return NGX_ERROR;
    }

    if (ngx_queue_empty(&db->idle) && db->nwaiters >= db->conf->queue_size) {
        ngx_parley_db_strerror(db->error, sizeof(db->error),
                               "db %s: %ui requests already wait for a "
                               "connection", db->name, db->nwaiters);
        return NGX_BUSY;
    }

    w = ngx_parley_db_wait_alloc(db);
    if (w == NULL) {
        ngx_parley_db_strerror(db->error, sizeof(db->error),
                               "db %s: out of memory", db->name);
        return NGX_ERROR;
    }

    w->handler = handler;
    w->data = data;

    if (!ngx_queue_empty(&db->idle)) {
        q = ngx_queue_head(&db->idle);
        ngx_queue_remove(q);
        conn = ngx_queue_data(q, ngx_parley_db_conn_t, queue);

        conn->state = NGX_PARLEY_DB_ACQUIRED;
        ngx_parley_db_wait_post(w, NGX_OK, conn);

        *wait = w;
        return NGX_OK;
    }

    w->state = NGX_PARLEY_DB_WAIT_QUEUED;
    ngx_queue_insert_tail(&db->waiters, &w->queue);
    db->nwaiters++;

    /* the request waits on this timer: it holds a graceful shutdown */
    w->ev.cancelable = 0;
    ngx_add_timer(&w->ev, db->conf->timeouts.connect_timeout);

    *wait = w;
    return NGX_OK;
}


/*
 * Must not be called once the handler has run: the record is reused.
 * A connection already handed over goes back to the pool.
 */

void
ngx_parley_db_acquire_cancel(ngx_parley_db_wait_t *w)
{
    ngx_parley_db_conn_t  *conn;

    if (w == NULL || w->state == NGX_PARLEY_DB_WAIT_FREE) {
        return;
    }

    conn = w->conn;

    ngx_parley_db_wait_free(w);

    if (conn) {
        conn->wait = NULL;
        ngx_parley_db_put(conn);
    }
}


void
ngx_parley_db_release(ngx_parley_db_conn_t *conn, ngx_uint_t broken)
{
    if (conn == NULL) {
        return;
    }

    if (conn->state != NGX_PARLEY_DB_ACQUIRED || conn->wait) {
        ngx_log_error(NGX_LOG_ERR, conn->db->log, 0,
                      "parley db %s: release of a connection that is not "
                      "acquired", conn->db->name);
        return;
    }

    if (conn->op != NGX_PARLEY_DB_OP_NONE) {

        /* nobody wants the answer: the handler is never called */

        conn->handler = NULL;
        conn->data = NULL;

        if (conn->post.posted) {
            ngx_delete_posted_event(&conn->post);
        }

        if (conn->timer.timer_set) {
            ngx_del_timer(&conn->timer);
        }

        if (conn->op == NGX_PARLEY_DB_OP_QUERY
            || conn->op == NGX_PARLEY_DB_OP_STORE)
        {
            ngx_parley_db_abort(conn);
        }

        conn->op = NGX_PARLEY_DB_OP_NONE;

        /* an unread reply or result is left on the session */
        broken = 1;
    }

    if (broken) {
        ngx_parley_db_set_broken(conn);
    }

    ngx_parley_db_put(conn);
}


/* ------------------------------------------------------------------ */
/* query */

ngx_int_t
ngx_parley_db_query(ngx_parley_db_conn_t *conn, u_char *sql, size_t len,
    ngx_parley_db_query_pt handler, void *data)
{
    int               status;
    ngx_parley_db_t  *db;

    db = conn->db;

    if (conn->state != NGX_PARLEY_DB_ACQUIRED
        || conn->op != NGX_PARLEY_DB_OP_NONE
        || conn->wait
        || handler == NULL)
    {
        ngx_parley_db_strerror(db->error, sizeof(db->error),
                               "db %s: query on a connection that is not "
                               "acquired or still busy", db->name);
        ngx_log_error(NGX_LOG_ERR, db->log, 0, "parley %s", db->error);
        return NGX_ERROR;
    }

    conn->handler = handler;
    conn->data = data;

    if (conn->broken || conn->c == NULL) {
        /* reported like any lost session, from the loop */
        conn->op = NGX_PARLEY_DB_OP_LOST;
        ngx_post_event(&conn->post, &ngx_posted_events);
        return NGX_OK;
    }

    conn->op = NGX_PARLEY_DB_OP_QUERY;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, db->log, 0,
                   "parley db: query fd:%d \"%*s\"", conn->c->fd,
                   ngx_min(len, 256), sql);

    status = mysql_real_query_start(&conn->qret, conn->mysql,
                                    (const char *) sql, len);

    /* the library may have lost the server already while sending */
    ngx_parley_db_check_fd(conn);

    if (status == 0) {
        conn->op = NGX_PARLEY_DB_OP_DONE;
        ngx_post_event(&conn->post, &ngx_posted_events);
        return NGX_OK;
    }

    conn->timer.cancelable = 0;
    ngx_add_timer(&conn->timer, db->conf->timeouts.timeout);

    if (ngx_parley_db_wait_io(conn, status) != NGX_OK) {
        ngx_del_timer(&conn->timer);
        ngx_parley_db_abort(conn);
        ngx_parley_db_set_broken(conn);
        conn->op = NGX_PARLEY_DB_OP_LOST;
        ngx_post_event(&conn->post, &ngx_posted_events);
    }

    return NGX_OK;
}


/* resumes a suspended query or store on an event */

static void
ngx_parley_db_query_step(ngx_parley_db_conn_t *conn, int ready)
{
    int         status, qret;
    MYSQL_RES  *res;

    res = NULL;
    qret = 1;

    if (conn->op == NGX_PARLEY_DB_OP_QUERY) {
        status = mysql_real_query_cont(&qret, conn->mysql, ready);

    } else {
        status = mysql_store_result_cont(&res, conn->mysql, ready);
    }

    ngx_parley_db_check_fd(conn);

    if (status) {
        if (conn->c && ngx_parley_db_wait_io(conn, status) == NGX_OK) {
            return;
        }

        ngx_parley_db_abort(conn);
        ngx_parley_db_set_broken(conn);
        ngx_parley_db_query_error(conn, NGX_PARLEY_CR_SERVER_LOST,
                                  "cannot watch the socket");
        return;
    }

    if (conn->op == NGX_PARLEY_DB_OP_QUERY) {
        ngx_parley_db_query_done(conn, qret);

    } else {
        ngx_parley_db_store_done(conn, res);
    }
}


static void
ngx_parley_db_query_done(ngx_parley_db_conn_t *conn, int qret)
{
    int                     status;
    MYSQL_RES              *res;
    ngx_parley_db_result_t  result;

    if (qret != 0) {
        ngx_parley_db_query_error(conn, mysql_errno(conn->mysql),
                                  mysql_error(conn->mysql));
        return;
    }

    if (mysql_field_count(conn->mysql) == 0) {
        if (mysql_more_results(conn->mysql)) {
            ngx_parley_db_set_broken(conn);
        }

        ngx_memzero(&result, sizeof(ngx_parley_db_result_t));
        result.status = NGX_OK;
        result.error = "";
        result.affected_rows = mysql_affected_rows(conn->mysql);

        ngx_parley_db_query_finish(conn, &result);
        return;
    }

    conn->op = NGX_PARLEY_DB_OP_STORE;
    res = NULL;

    status = mysql_store_result_start(&res, conn->mysql);

    ngx_parley_db_check_fd(conn);

    if (status == 0) {
        ngx_parley_db_store_done(conn, res);
        return;
    }

    if (conn->c && ngx_parley_db_wait_io(conn, status) == NGX_OK) {
        if (!conn->timer.timer_set) {
            /* OP_DONE arrived here with no deadline running */
            conn->timer.cancelable = 0;
            ngx_add_timer(&conn->timer, conn->db->conf->timeouts.timeout);
        }

        return;
    }

    ngx_parley_db_abort(conn);
    ngx_parley_db_set_broken(conn);
    ngx_parley_db_query_error(conn, NGX_PARLEY_CR_SERVER_LOST,
                              "cannot watch the socket");
}


static void
ngx_parley_db_store_done(ngx_parley_db_conn_t *conn, MYSQL_RES *res)
{
    ngx_parley_db_result_t  result;

    if (res == NULL) {
        ngx_parley_db_query_error(conn, mysql_errno(conn->mysql),
                                  mysql_error(conn->mysql));
        return;
    }

    if (mysql_more_results(conn->mysql)) {
        /* a CALL or multi-statement left results the pool cannot drain */
        ngx_parley_db_set_broken(conn);
    }

    ngx_memzero(&result, sizeof(ngx_parley_db_result_t));
    result.status = NGX_OK;
    result.error = "";
    result.res = res;
    result.affected_rows = mysql_num_rows(res);

    ngx_parley_db_query_finish(conn, &result);
}


/* a failed statement: server error, lost session or local trouble */

static void
ngx_parley_db_query_error(ngx_parley_db_conn_t *conn, unsigned int errcode,
    const char *text)
{
    ngx_parley_db_t         *db;
    ngx_parley_db_result_t   result;

    db = conn->db;

    if (errcode == 0) {
        errcode = NGX_PARLEY_CR_UNKNOWN_ERROR;
    }

    if (text == NULL || text[0] == '\0') {
        text = "unknown error";
    }

    ngx_parley_db_strerror(conn->error, sizeof(conn->error),
                           "db %s: %s (%ud)", db->name, text, errcode);

    if (conn->c == NULL || ngx_parley_db_lost(errcode)) {
        ngx_parley_db_set_broken(conn);

        ngx_memcpy(db->error, conn->error, sizeof(db->error));

        ngx_log_error(NGX_LOG_INFO, db->log, 0,
                      "parley %s, the connection will be replaced",
                      conn->error);
    }

    ngx_memzero(&result, sizeof(ngx_parley_db_result_t));
    result.status = NGX_ERROR;
    result.errcode = errcode;
    result.error = conn->error;
    result.retryable = (conn->broken || ngx_parley_db_retryable(errcode));

    ngx_parley_db_query_finish(conn, &result);
}


/*
 * Calls the query handler.  The result lives on this stack, so the handler
 * may start the next statement on the connection at once; result->res is
 * freed after the handler returns unless the handler set result->res to
 * NULL to keep the rows (it then calls mysql_free_result() itself; the rows
 * stay valid after release, even after the connection is closed).  A
 * release inside the handler that closes the connection is carried out
 * only here, after the handler returned.
 */

static void
ngx_parley_db_query_finish(ngx_parley_db_conn_t *conn,
    ngx_parley_db_result_t *result)
{
    void                    *data;
    ngx_parley_db_query_pt   handler;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->post.posted) {
        ngx_delete_posted_event(&conn->post);
    }

    conn->op = NGX_PARLEY_DB_OP_NONE;

    handler = conn->handler;
    data = conn->data;
    conn->handler = NULL;
    conn->data = NULL;

    if (result->status == NGX_OK) {
        conn->db->stalled = 0;
    }

    /* between statements, watch only for the server hanging up */
    if (conn->c) {
        if (ngx_parley_db_watch(conn, !conn->broken, 0) != NGX_OK) {
            ngx_parley_db_set_broken(conn);
        }
    }

    if (handler) {
        conn->in_handler = 1;
        handler(conn, result, data);
        conn->in_handler = 0;
    }

    if (result->res) {
        mysql_free_result(result->res);
        result->res = NULL;
    }

    if (conn->state == NGX_PARLEY_DB_CLOSING) {
        ngx_parley_db_close(conn);
        ngx_parley_db_schedule(conn, 0);
    }
}


/* ------------------------------------------------------------------ */
/* connect */

static void
ngx_parley_db_connect(ngx_parley_db_conn_t *conn)
{
    int                    status;
    MYSQL                 *mysql, *ret;
    my_bool                off;
    unsigned int           protocol, infile, write_timeout;
    ngx_parley_db_t       *db;
    ngx_parley_db_conf_t  *conf;

    db = conn->db;
    conf = db->conf;

    mysql = mysql_init(NULL);
    if (mysql == NULL) {
        ngx_parley_db_connect_failed(conn, "mysql_init() failed");
        return;
    }

    off = 0;
    infile = 0;
    protocol = db->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;

    /*
     * The write timeout is never waited for on the loop (our timers decide);
     * it only bounds the blocking COM_QUIT write of mysql_close() should a
     * socket buffer ever be full.
     */
    write_timeout = 1;

    if (mysql_options(mysql, MYSQL_OPT_NONBLOCK, 0) != 0
        || mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0
        || mysql_options(mysql, MYSQL_OPT_PROTOCOL, &protocol) != 0
        || mysql_options(mysql, MYSQL_OPT_RECONNECT, &off) != 0
        || mysql_options(mysql, MYSQL_OPT_LOCAL_INFILE, &infile) != 0
        || mysql_options(mysql, MYSQL_OPT_WRITE_TIMEOUT, &write_timeout)
           != 0)
    {
        mysql_close(mysql);
        ngx_parley_db_connect_failed(conn, "mysql_options() failed");
        return;
    }

    conn->mysql = mysql;
    conn->state = NGX_PARLEY_DB_CONNECTING;
    conn->op = NGX_PARLEY_DB_OP_NONE;
    conn->broken = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, db->log, 0,
                   "parley db %s: connecting #%ui", db->name,
                   (ngx_uint_t) (conn - db->conns));

    /* a pool filling up must not hold a graceful shutdown */
    conn->timer.cancelable = 1;
    ngx_add_timer(&conn->timer, conf->timeouts.connect_timeout);

    ret = NULL;

    status = mysql_real_connect_start(&ret, mysql, (char *) conf->host.data,
                                      (char *) conf->user.data,
                                      (char *) conf->password.data,
                                      (char *) conf->database.data,
                                      conf->port, db->socket, 0);

    ngx_parley_db_connect_step(conn, status, ret);
}


static void
ngx_parley_db_connect_step(ngx_parley_db_conn_t *conn, int status,
    MYSQL *ret)
{
    char  why[NGX_PARLEY_ERRLEN];

    if (status) {
        if (ngx_parley_db_wrap(conn) == NGX_OK
            && ngx_parley_db_wait_io(conn, status) == NGX_OK)
        {
            return;
        }

        ngx_parley_db_abort(conn);
        mysql_close(conn->mysql);
        conn->mysql = NULL;

        ngx_parley_db_connect_failed(conn, "cannot watch the socket");
        return;
    }

    if (ret == NULL) {
        ngx_parley_db_strerror(why, sizeof(why), "%s (%ud)",
                               mysql_error(conn->mysql),
                               mysql_errno(conn->mysql));

        /* the library closed its socket already: this is only free() */
        mysql_close(conn->mysql);
        conn->mysql = NULL;

        ngx_parley_db_connect_failed(conn, why);
        return;
    }

    if (ngx_parley_db_wrap(conn) != NGX_OK) {
        mysql_close(conn->mysql);
        conn->mysql = NULL;

        ngx_parley_db_connect_failed(conn, "cannot watch the socket");
        return;
    }

    ngx_parley_db_connected(conn);
}


static void
ngx_parley_db_connect_failed(ngx_parley_db_conn_t *conn, const char *why)
{
    ngx_uint_t        level;
    ngx_msec_t        delay;
    ngx_parley_db_t  *db;

    db = conn->db;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    /* every path here has unwrapped the fd before the library closed it */

    conn->state = NGX_PARLEY_DB_CLOSED;
    conn->op = NGX_PARLEY_DB_OP_NONE;
    conn->failures++;

    ngx_parley_db_strerror(db->connect_error, sizeof(db->connect_error),
                           "db %s: %s", db->name, why);
    ngx_memcpy(db->error, db->connect_error, sizeof(db->error));

    delay = ngx_parley_reconnect_delay(&db->conf->timeouts,
                                       conn->failures - 1);

    /* one error per outage; the retries are for the curious */
    level = db->outage ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, db->log, 0,
                  "parley %s, retrying in %M ms", db->connect_error, delay);

    db->outage = 1;

    ngx_parley_db_schedule(conn, delay);

    if (db->nup == 0) {
        ngx_parley_db_fail_waiters(db);
    }
}


static void
ngx_parley_db_connected(ngx_parley_db_conn_t *conn)
{
    ngx_uint_t             i;
    ngx_parley_db_t       *db;
    ngx_parley_db_conn_t  *other;

    db = conn->db;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    conn->up = 1;
    conn->failures = 0;
    db->nup++;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, db->log, 0,
                   "parley db %s: connected #%ui fd:%d", db->name,
                   (ngx_uint_t) (conn - db->conns), conn->c->fd);

    if (db->outage) {
        db->outage = 0;

        ngx_log_error(NGX_LOG_NOTICE, db->log, 0,
                      "parley db %s: connected again", db->name);

        /* the server is back: refill the pool without the long backoff */
        for (i = 0; i < db->nconns; i++) {
            other = &db->conns[i];

            if (other->state == NGX_PARLEY_DB_CLOSED
                && other->timer.timer_set
                && other->failures)
            {
                ngx_parley_db_schedule(other,
                          ngx_parley_reconnect_delay(&db->conf->timeouts, 0));
            }
        }
    }

    ngx_parley_db_ready(conn);
}


/* ------------------------------------------------------------------ */
/* events */

static void
ngx_parley_db_conn_event(ngx_event_t *ev)
{
    int                    status, ready;
    MYSQL                 *ret;
    ngx_connection_t      *c;
    ngx_parley_db_t       *db;
    ngx_parley_db_conn_t  *conn;

    c = ev->data;
    conn = c->data;
    db = conn->db;

    ready = ev->write ? MYSQL_WAIT_WRITE : MYSQL_WAIT_READ;

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, db->log, 0,
                   "parley db: event fd:%d %s state:%ui op:%ui", c->fd,
                   ev->write ? "write" : "read", (ngx_uint_t) conn->state,
                   (ngx_uint_t) conn->op);

    switch (conn->state) {

    case NGX_PARLEY_DB_CONNECTING:

        /* the next address of a host name may come with another socket */
        ngx_parley_db_unwrap(conn);

        ret = NULL;
        status = mysql_real_connect_cont(&ret, conn->mysql, ready);

        ngx_parley_db_connect_step(conn, status, ret);
        return;

    case NGX_PARLEY_DB_ACQUIRED:

        if (conn->op == NGX_PARLEY_DB_OP_QUERY
            || conn->op == NGX_PARLEY_DB_OP_STORE)
        {
            ngx_parley_db_query_step(conn, ready);
            return;
        }

        /* fall through */

    case NGX_PARLEY_DB_IDLE:

        if (ev->write || ngx_parley_db_peek(conn) == NGX_AGAIN) {
            if (ev->write) {
                (void) ngx_parley_db_watch(conn, !conn->broken, 0);
            }

            return;
        }

        /* EOF or unsolicited data: wait_timeout, KILL, server restart */

        ngx_log_error(NGX_LOG_INFO, db->log, 0,
                      "parley db %s: connection closed by the server",
                      db->name);

        ngx_parley_db_strerror(db->error, sizeof(db->error),
                               "db %s: connection closed by the server",
                               db->name);

        ngx_parley_db_set_broken(conn);

        if (conn->state == NGX_PARLEY_DB_IDLE) {
            ngx_parley_db_close(conn);
            ngx_parley_db_schedule(conn, 0);
            return;
        }

        /* its owner learns on the next statement */
        (void) ngx_parley_db_watch(conn, 0, 0);
        return;

    default:
        (void) ngx_parley_db_watch(conn, 0, 0);
        return;
    }
}


static void
ngx_parley_db_conn_timer(ngx_event_t *ev)
{
    char                     why[NGX_PARLEY_ERRLEN];
    ngx_uint_t               level;
    ngx_msec_t               timeout;
    ngx_parley_db_t         *db;
    ngx_parley_db_conn_t    *conn;
    ngx_parley_db_result_t   result;

    conn = ev->data;
    db = conn->db;

    switch (conn->state) {

    case NGX_PARLEY_DB_CLOSED:
        ngx_parley_db_connect(conn);
        return;

    case NGX_PARLEY_DB_CONNECTING:
        ngx_parley_db_abort(conn);
        mysql_close(conn->mysql);
        conn->mysql = NULL;

        ngx_parley_db_strerror(why, sizeof(why), "connect timed out after "
                               "%M ms", db->conf->timeouts.connect_timeout);
        ngx_parley_db_connect_failed(conn, why);
        return;

    case NGX_PARLEY_DB_ACQUIRED:

        if (conn->op != NGX_PARLEY_DB_OP_QUERY
            && conn->op != NGX_PARLEY_DB_OP_STORE)
        {
            return;
        }

        /* the server may still run the statement: the session goes */

        timeout = db->conf->timeouts.timeout;

        ngx_parley_db_abort(conn);
        ngx_parley_db_set_broken(conn);

        ngx_parley_db_strerror(conn->error, sizeof(conn->error),
                               "db %s: query timed out after %M ms",
                               db->name, timeout);
        ngx_memcpy(db->error, conn->error, sizeof(db->error));

        level = db->stalled ? NGX_LOG_INFO : NGX_LOG_WARN;

        ngx_log_error(level, db->log, 0,
                      "parley %s, closing the connection", conn->error);

        db->stalled = 1;

        ngx_memzero(&result, sizeof(ngx_parley_db_result_t));
        result.status = NGX_ETIMEDOUT;
        result.error = conn->error;
        result.retryable = 1;

        ngx_parley_db_query_finish(conn, &result);
        return;

    default:
        return;
    }
}


/* completes a statement that ended inside ngx_parley_db_query() */

static void
ngx_parley_db_conn_posted(ngx_event_t *ev)
{
    ngx_parley_db_conn_t  *conn;

    conn = ev->data;

    if (conn->state != NGX_PARLEY_DB_ACQUIRED) {
        return;
    }

    switch (conn->op) {

    case NGX_PARLEY_DB_OP_DONE:
        conn->op = NGX_PARLEY_DB_OP_QUERY;
        ngx_parley_db_query_done(conn, conn->qret);
        return;

    case NGX_PARLEY_DB_OP_LOST:
        ngx_parley_db_query_error(conn, NGX_PARLEY_CR_SERVER_GONE_ERROR,
                                  "connection lost");
        return;

    default:
        return;
    }
}


/* ------------------------------------------------------------------ */
/* the socket on the loop */

static ngx_int_t
ngx_parley_db_wrap(ngx_parley_db_conn_t *conn)
{
    my_socket          fd;
    ngx_connection_t  *c;

    if (conn->c) {
        return NGX_OK;
    }

    fd = mysql_get_socket(conn->mysql);
    if (fd == (my_socket) -1) {
        return NGX_ERROR;
    }

    c = ngx_parley_wrap_fd(fd, conn->db->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = conn;
    c->read->handler = ngx_parley_db_conn_event;
    c->write->handler = ngx_parley_db_conn_event;

    conn->c = c;

    return NGX_OK;
}


/* while the fd is still open: events off, connection slot freed */

static void
ngx_parley_db_unwrap(ngx_parley_db_conn_t *conn)
{
    if (conn->c) {
        ngx_parley_unwrap_fd(conn->c);
        conn->c = NULL;
    }
}


/*
 * After every call into the library on a wrapped session: if the library
 * closed the socket (lost server), the kernel has already dropped it from
 * epoll, and the fd number may be handed to anyone next, so nginx forgets
 * it without a system call.
 */

static void
ngx_parley_db_check_fd(ngx_parley_db_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->c;

    if (c == NULL || conn->mysql == NULL || conn->mysql->net.pvio != NULL) {
        return;
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    ngx_parley_unwrap_fd(c);
    conn->c = NULL;

    ngx_parley_db_set_broken(conn);
}


static ngx_int_t
ngx_parley_db_wait_io(ngx_parley_db_conn_t *conn, int status)
{
    /* a lone MYSQL_WAIT_TIMEOUT: our own deadline resumes the call */
    return ngx_parley_db_watch(conn,
                               status & (MYSQL_WAIT_READ|MYSQL_WAIT_EXCEPT),
                               status & MYSQL_WAIT_WRITE);
}


/* makes the watched directions exactly read/write; idempotent */

static ngx_int_t
ngx_parley_db_watch(ngx_parley_db_conn_t *conn, ngx_uint_t read,
    ngx_uint_t write)
{
    ngx_uint_t         flags;
    ngx_connection_t  *c;

    c = conn->c;

    if (c == NULL) {
        return NGX_ERROR;
    }

    flags = (ngx_event_flags & NGX_USE_CLEAR_EVENT) ? NGX_CLEAR_EVENT
                                                    : NGX_LEVEL_EVENT;

    if (read && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, flags) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (!read && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, flags) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (write && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, flags) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (!write && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, flags) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* NGX_AGAIN: nothing to read, the session is alive; NGX_ERROR: it is not */

static ngx_int_t
ngx_parley_db_peek(ngx_parley_db_conn_t *conn)
{
    u_char     buf;
    ssize_t    n;
    ngx_err_t  err;

    /* the library leaves the socket blocking; it always passes DONTWAIT */
    n = recv(conn->c->fd, &buf, 1, MSG_PEEK|MSG_DONTWAIT);

    if (n == -1) {
        err = ngx_socket_errno;

        if (err == NGX_EAGAIN || err == NGX_EINTR) {
            return NGX_AGAIN;
        }
    }

    return NGX_ERROR;
}


/*
 * Unwinds a suspended library call: the fd is detached while still open,
 * then the call is resumed with MYSQL_WAIT_TIMEOUT until it returns, which
 * fails its pending read or write, closes its socket and frees its state
 * without further I/O.  Connecting to a host name with several addresses
 * takes one resumption per address.
 */

static void
ngx_parley_db_abort(ngx_parley_db_conn_t *conn)
{
    int          status, qret;
    MYSQL       *ret;
    MYSQL_RES   *res;
    ngx_uint_t   n;

    ngx_parley_db_unwrap(conn);

    if (conn->mysql == NULL) {
        return;
    }

    status = 1;

    for (n = 0; status && n < NGX_PARLEY_DB_ABORT_LIMIT; n++) {

        if (conn->state == NGX_PARLEY_DB_CONNECTING) {
            ret = NULL;
            status = mysql_real_connect_cont(&ret, conn->mysql,
                                             MYSQL_WAIT_TIMEOUT);

        } else if (conn->op == NGX_PARLEY_DB_OP_QUERY) {
            status = mysql_real_query_cont(&qret, conn->mysql,
                                           MYSQL_WAIT_TIMEOUT);

        } else if (conn->op == NGX_PARLEY_DB_OP_STORE) {
            res = NULL;
            status = mysql_store_result_cont(&res, conn->mysql,
                                             MYSQL_WAIT_TIMEOUT);

            if (status == 0 && res) {
                mysql_free_result(res);
            }

        } else {
            break;
        }
    }

    if (status) {
        /* mysql_close() frees the suspended context regardless */
        ngx_log_error(NGX_LOG_INFO, conn->db->log, 0,
                      "parley db %s: aborted call did not unwind",
                      conn->db->name);
    }

    conn->op = NGX_PARLEY_DB_OP_NONE;
}


/* ------------------------------------------------------------------ */
/* the pool */

static void
ngx_parley_db_set_broken(ngx_parley_db_conn_t *conn)
{
    conn->broken = 1;

    if (conn->up) {
        conn->up = 0;
        conn->db->nup--;
    }
}


/* a connection nobody owns any more: reuse it or replace it */

static void
ngx_parley_db_put(ngx_parley_db_conn_t *conn)
{
    if (conn->broken || conn->mysql == NULL || conn->c == NULL) {

        if (conn->in_handler) {
            /* the query handler still runs on it: finish closes it */
            conn->state = NGX_PARLEY_DB_CLOSING;
            return;
        }

        ngx_parley_db_close(conn);
        ngx_parley_db_schedule(conn, 0);
        return;
    }

    ngx_parley_db_ready(conn);
}


/* a healthy free connection goes to the oldest waiter, or idles */

static void
ngx_parley_db_ready(ngx_parley_db_conn_t *conn)
{
    ngx_queue_t           *q;
    ngx_parley_db_t       *db;
    ngx_parley_db_wait_t  *w;

    db = conn->db;

    if (ngx_parley_db_watch(conn, 1, 0) != NGX_OK) {
        ngx_parley_db_set_broken(conn);
        ngx_parley_db_close(conn);

        conn->failures++;
        ngx_parley_db_schedule(conn,
                               ngx_parley_reconnect_delay(&db->conf->timeouts,
                                                          conn->failures - 1));
        return;
    }

    if (!ngx_queue_empty(&db->waiters)) {
        q = ngx_queue_head(&db->waiters);
        w = ngx_queue_data(q, ngx_parley_db_wait_t, queue);

        conn->state = NGX_PARLEY_DB_ACQUIRED;
        ngx_parley_db_wait_post(w, NGX_OK, conn);
        return;
    }

    conn->state = NGX_PARLEY_DB_IDLE;
    ngx_queue_insert_tail(&db->idle, &conn->queue);
}


/* ends the session at once, without calling any handler */

static void
ngx_parley_db_close(ngx_parley_db_conn_t *conn)
{
    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->post.posted) {
        ngx_delete_posted_event(&conn->post);
    }

    if (conn->state == NGX_PARLEY_DB_IDLE) {
        ngx_queue_remove(&conn->queue);
    }

    if (conn->state == NGX_PARLEY_DB_CONNECTING
        || conn->op == NGX_PARLEY_DB_OP_QUERY
        || conn->op == NGX_PARLEY_DB_OP_STORE)
    {
        ngx_parley_db_abort(conn);
    }

    /* nginx lets go of the fd first: the library closes it */
    ngx_parley_db_unwrap(conn);

    if (conn->up) {
        conn->up = 0;
        conn->db->nup--;
    }

    if (conn->mysql) {
        mysql_close(conn->mysql);
        conn->mysql = NULL;
    }

    conn->state = NGX_PARLEY_DB_CLOSED;
    conn->op = NGX_PARLEY_DB_OP_NONE;
    conn->broken = 0;
    conn->handler = NULL;
    conn->data = NULL;
}


static void
ngx_parley_db_schedule(ngx_parley_db_conn_t *conn, ngx_msec_t delay)
{
    conn->timer.cancelable = 1;
    ngx_add_timer(&conn->timer, delay);
}


/* ------------------------------------------------------------------ */
/* waiters */

static ngx_parley_db_wait_t *
ngx_parley_db_wait_alloc(ngx_parley_db_t *db)
{
    ngx_queue_t           *q;
    ngx_parley_db_wait_t  *w;

    if (!ngx_queue_empty(&db->free)) {
        q = ngx_queue_head(&db->free);
        ngx_queue_remove(q);
        w = ngx_queue_data(q, ngx_parley_db_wait_t, queue);

    } else {
        w = ngx_alloc(sizeof(ngx_parley_db_wait_t), db->log);
        if (w == NULL) {
            return NULL;
        }
    }

    ngx_memzero(w, sizeof(ngx_parley_db_wait_t));

    w->db = db;
    w->ev.handler = ngx_parley_db_wait_handler;
    w->ev.data = w;
    w->ev.log = db->log;

    return w;
}


/* unlinks a record from wherever it is and puts it on the free list */

static void
ngx_parley_db_wait_free(ngx_parley_db_wait_t *w)
{
    ngx_parley_db_t  *db;

    db = w->db;

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    if (w->ev.posted) {
        ngx_delete_posted_event(&w->ev);
    }

    if (w->state == NGX_PARLEY_DB_WAIT_QUEUED) {
        db->nwaiters--;
    }

    if (w->state != NGX_PARLEY_DB_WAIT_FREE) {
        ngx_queue_remove(&w->queue);
    }

    w->state = NGX_PARLEY_DB_WAIT_FREE;
    w->conn = NULL;
    w->handler = NULL;
    w->data = NULL;

    ngx_queue_insert_head(&db->free, &w->queue);
}


/* schedules the delivery of rc (and conn) to a new or queued waiter */

static void
ngx_parley_db_wait_post(ngx_parley_db_wait_t *w, ngx_int_t rc,
    ngx_parley_db_conn_t *conn)
{
    ngx_parley_db_t  *db;

    db = w->db;

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    if (w->state == NGX_PARLEY_DB_WAIT_QUEUED) {
        ngx_queue_remove(&w->queue);
        db->nwaiters--;
    }

    w->state = NGX_PARLEY_DB_WAIT_POSTED;
    w->rc = rc;
    w->conn = conn;

    if (conn) {
        conn->wait = w;
    }

    ngx_queue_insert_tail(&db->posted, &w->queue);
    ngx_post_event(&w->ev, &ngx_posted_events);
}


static void
ngx_parley_db_wait_handler(ngx_event_t *ev)
{
    void                      *data;
    ngx_int_t                  rc;
    const char                *err;
    ngx_parley_db_t           *db;
    ngx_parley_db_wait_t      *w;
    ngx_parley_db_conn_t      *conn;
    ngx_parley_db_acquire_pt   handler;

    w = ev->data;
    db = w->db;

    if (w->state == NGX_PARLEY_DB_WAIT_QUEUED) {

        /* no connection within connect_timeout */

        rc = NGX_ETIMEDOUT;
        conn = NULL;

        if (db->nup == 0 && db->connect_error[0]) {
            ngx_parley_db_strerror(db->scratch, sizeof(db->scratch),
                                   "%s (no connection within %M ms)",
                                   db->connect_error,
                                   db->conf->timeouts.connect_timeout);

        } else {
            ngx_parley_db_strerror(db->scratch, sizeof(db->scratch),
                                   "db %s: no free connection within %M ms "
                                   "(%ui of %ui connections up)", db->name,
                                   db->conf->timeouts.connect_timeout,
                                   db->nup, db->nconns);
        }

        err = db->scratch;

    } else {
        rc = w->rc;
        conn = w->conn;

        if (rc == NGX_OK) {
            err = "";

        } else if (db->connect_error[0]) {
            err = db->connect_error;

        } else {
            err = db->error;
        }
    }

    handler = w->handler;
    data = w->data;

    /* freed first: the handler may acquire again and reuse it */
    ngx_parley_db_wait_free(w);

    if (conn) {
        conn->wait = NULL;
    }

    handler(conn, rc, err, data);
}


/* a connect failed and no session is up: nobody should wait for one */

static void
ngx_parley_db_fail_waiters(ngx_parley_db_t *db)
{
    ngx_queue_t           *q;
    ngx_parley_db_wait_t  *w;

    while (!ngx_queue_empty(&db->waiters)) {
        q = ngx_queue_head(&db->waiters);
        w = ngx_queue_data(q, ngx_parley_db_wait_t, queue);

        ngx_parley_db_wait_post(w, NGX_ERROR, NULL);
    }
}


/* ------------------------------------------------------------------ */
/* small things */

size_t
ngx_parley_db_escape(ngx_parley_db_conn_t *conn, u_char *dst, u_char *src,
    size_t len)
{
    u_char         *d, *last;
    unsigned long   n;

    if (conn && conn->mysql) {
        /* honours the session charset and NO_BACKSLASH_ESCAPES */
        n = mysql_real_escape_string(conn->mysql, (char *) dst,
                                     (const char *) src, len);

        if (n != (unsigned long) -1) {
            return n;
        }
    }

    /* backslash escaping, right for utf8mb4 under the default sql_mode */

    d = dst;
    last = src + len;

    while (src < last) {
        switch (*src) {
        case '\0':
            *d++ = '\\'; *d++ = '0';
            break;
        case '\n':
            *d++ = '\\'; *d++ = 'n';
            break;
        case '\r':
            *d++ = '\\'; *d++ = 'r';
            break;
        case '\032':
            *d++ = '\\'; *d++ = 'Z';
            break;
        case '\\':
        case '\'':
        case '"':
            *d++ = '\\'; *d++ = *src;
            break;
        default:
            *d++ = *src;
        }

        src++;
    }

    *d = '\0';

    return d - dst;
}


const char *
ngx_parley_db_last_error(ngx_parley_db_t *db)
{
    return db ? db->error : "db: not configured";
}


/* the session is gone: the server went away or killed it */

static ngx_uint_t
ngx_parley_db_lost(unsigned int errcode)
{
    switch (errcode) {
    case 1053:      /* ER_SERVER_SHUTDOWN */
    case 1158:      /* ER_NET_READ_ERROR */
    case 1159:      /* ER_NET_READ_INTERRUPTED */
    case 1160:      /* ER_NET_ERROR_ON_WRITE */
    case 1161:      /* ER_NET_WRITE_INTERRUPTED */
    case 1927:      /* ER_CONNECTION_KILLED (MariaDB) */
    case 2006:      /* CR_SERVER_GONE_ERROR */
    case 2013:      /* CR_SERVER_LOST */
    case 2055:      /* CR_SERVER_LOST_EXTENDED */
    case 4031:      /* ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8) */
        return 1;
    default:
        return 0;
    }
}


/* running the whole transaction again may succeed */

static ngx_uint_t
ngx_parley_db_retryable(unsigned int errcode)
{
    if (ngx_parley_db_lost(errcode)) {
        return 1;
    }

    switch (errcode) {
    case 1205:      /* ER_LOCK_WAIT_TIMEOUT */
    case 1213:      /* ER_LOCK_DEADLOCK */
    case 8002:      /* TiDB: SELECT FOR UPDATE write conflict */
    case 8005:      /* TiDB: write conflict, txnStartTS is stale */
    case 8022:      /* TiDB: commit failed, rolled back, safe to retry */
    case 8027:      /* TiDB: schema version out of date */
    case 8028:      /* TiDB: information schema changed */
    case 9001:      /* TiDB: PD server timeout */
    case 9002:      /* TiDB: TiKV server timeout */
    case 9003:      /* TiDB: TiKV server busy */
    case 9004:      /* TiDB: resolve lock timeout */
    case 9005:      /* TiDB: region unavailable */
    case 9007:      /* TiDB: write conflict */
        return 1;
    default:
        return 0;
    }
}


/* formats a NUL-terminated message into buf */

static void
ngx_parley_db_strerror(char *buf, size_t size, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf((u_char *) buf, (u_char *) buf + size - 1, fmt, args);
    va_end(args);

    *p = '\0';
}
