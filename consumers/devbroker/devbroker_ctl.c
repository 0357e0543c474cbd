/*
 * The control socket: a unix stream socket through which tests inject
 * faults into the mock cluster, one command per line, one answer line per
 * command ("ok ..." or "error <why>").  The mock API is only reachable
 * in-process, hence this socket.
 *
 * Input is bounded: a line longer than PARLEY_DEVBROKER_LINE_MAX - 1 bytes
 * gets "error line too long" and the connection is closed; at most
 * PARLEY_DEVBROKER_CLIENTS_MAX clients at a time.  A client's next line is
 * read only once the previous answer is written, so a client that does not
 * read its answers cannot make the broker buffer without bound.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "devbroker.h"

#define PARLEY_DEVBROKER_WORDS_MAX 8
#define PARLEY_DEVBROKER_CLIENT_TIMEOUT_MS 10000

typedef struct {
    int argc;
    char *argv[PARLEY_DEVBROKER_WORDS_MAX];
} parley_devbroker_words_t;

static const char parley_devbroker_commands[] =
    "ping, brokers, broker-down <id|all>, broker-up <id|all>, "
    "rtt <id|all> <ms>, errors <apikey> <errcode> <count>, "
    "topic-create <name> <partitions>, help";

static int parley_devbroker_set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) {
        return -1;
    }
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Splits line in place on spaces and tabs.  -1 if there are too many words. */
static int parley_devbroker_split(char *line, parley_devbroker_words_t *w)
{
    char *p = line;

    w->argc = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            *p++ = '\0';
        }
        if (*p == '\0') {
            return 0;
        }
        if (w->argc == PARLEY_DEVBROKER_WORDS_MAX) {
            return -1;
        }
        w->argv[w->argc++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            p++;
        }
    }
}

/* Broker id 1..N, or "all" / "-1" for every broker (*id = -1). */
static int parley_devbroker_parse_broker(const parley_devbroker_t *db,
                                         const char *s, int32_t *id)
{
    long v;

    if (strcmp(s, "all") == 0 || strcmp(s, "-1") == 0) {
        *id = -1;
        return 0;
    }
    if (parley_devbroker_parse_long(s, 1, db->broker_count, &v) != 0) {
        return -1;
    }
    *id = (int32_t)v;
    return 0;
}

/* 1 if librdkafka knows `code` as an error code (it has a name for it). */
static int parley_devbroker_errcode_known(long code)
{
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    size_t i;

    rd_kafka_get_err_descs(&descs, &cnt);
    for (i = 0; i < cnt; i++) {
        if (descs[i].name != NULL && (long)descs[i].code == code) {
            return 1;
        }
    }
    return 0;
}

static int parley_devbroker_answer(char *answer, size_t size, int rc,
                                   const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int parley_devbroker_answer(char *answer, size_t size, int rc,
                                   const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(answer, size, fmt, ap);
    va_end(ap);
    return rc;
}

#define PARLEY_DEVBROKER_OK(...) \
    parley_devbroker_answer(answer, answer_size, 0, "ok " __VA_ARGS__)
#define PARLEY_DEVBROKER_ERR(...) \
    parley_devbroker_answer(answer, answer_size, -1, "error " __VA_ARGS__)

static int parley_devbroker_cmd_updown(parley_devbroker_t *db,
                                       const parley_devbroker_words_t *w,
                                       int up, char *answer,
                                       size_t answer_size)
{
    rd_kafka_resp_err_t kerr;
    int32_t id;
    int i;

    if (w->argc != 2 || parley_devbroker_parse_broker(db, w->argv[1], &id)) {
        return PARLEY_DEVBROKER_ERR("usage: %s <1..%d|all>", w->argv[0],
                                    db->broker_count);
    }
    parley_devbroker_mock_call_begin();
    kerr = up ? rd_kafka_mock_broker_set_up(db->mcluster, id)
              : rd_kafka_mock_broker_set_down(db->mcluster, id);
    parley_devbroker_mock_call_end();
    if (kerr) {
        return PARLEY_DEVBROKER_ERR("%s failed: %s", w->argv[0],
                                    rd_kafka_err2str(kerr));
    }
    for (i = 0; i < db->broker_count; i++) {
        if (id == -1 || db->brokers[i].id == id) {
            db->brokers[i].up = up;
        }
    }
    if (id == -1) {
        return PARLEY_DEVBROKER_OK("all brokers %s", up ? "up" : "down");
    }
    return PARLEY_DEVBROKER_OK("broker %d %s", (int)id, up ? "up" : "down");
}

static int parley_devbroker_cmd_rtt(parley_devbroker_t *db,
                                    const parley_devbroker_words_t *w,
                                    char *answer, size_t answer_size)
{
    rd_kafka_resp_err_t kerr;
    int32_t id;
    long ms;
    int i;

    if (w->argc != 3 || parley_devbroker_parse_broker(db, w->argv[1], &id)
        || parley_devbroker_parse_long(w->argv[2], 0,
                                       PARLEY_DEVBROKER_RTT_MAX_MS, &ms)) {
        return PARLEY_DEVBROKER_ERR("usage: rtt <1..%d|all> <0..%d ms>",
                                    db->broker_count,
                                    PARLEY_DEVBROKER_RTT_MAX_MS);
    }
    parley_devbroker_mock_call_begin();
    kerr = rd_kafka_mock_broker_set_rtt(db->mcluster, id, (int)ms);
    parley_devbroker_mock_call_end();
    if (kerr) {
        return PARLEY_DEVBROKER_ERR("rtt failed: %s", rd_kafka_err2str(kerr));
    }
    for (i = 0; i < db->broker_count; i++) {
        if (id == -1 || db->brokers[i].id == id) {
            db->brokers[i].rtt_ms = (int)ms;
        }
    }
    if (id == -1) {
        return PARLEY_DEVBROKER_OK("all brokers rtt %ldms", ms);
    }
    return PARLEY_DEVBROKER_OK("broker %d rtt %ldms", (int)id, ms);
}

static int parley_devbroker_cmd_errors(parley_devbroker_t *db,
                                       const parley_devbroker_words_t *w,
                                       char *answer, size_t answer_size)
{
    rd_kafka_resp_err_t errs[PARLEY_DEVBROKER_ERRORS_MAX];
    long apikey;
    long code;
    long count;
    long i;

    /* ApiKeys are int16 on the wire; Kafka defines far fewer than 1000. */
    if (w->argc != 4 || parley_devbroker_parse_long(w->argv[1], 0, 999, &apikey)
        || parley_devbroker_parse_long(w->argv[2], RD_KAFKA_RESP_ERR__BEGIN,
                                       32767, &code)
        || parley_devbroker_parse_long(w->argv[3], 1,
                                       PARLEY_DEVBROKER_ERRORS_MAX, &count)) {
        return PARLEY_DEVBROKER_ERR("usage: errors <apikey 0..999> <kafka "
                                    "errcode> <count 1..%d>",
                                    PARLEY_DEVBROKER_ERRORS_MAX);
    }
    if (!parley_devbroker_errcode_known(code)) {
        return PARLEY_DEVBROKER_ERR("unknown kafka error code %ld", code);
    }
    for (i = 0; i < count; i++) {
        errs[i] = (rd_kafka_resp_err_t)code;
    }
    rd_kafka_mock_push_request_errors_array(db->mcluster, (int16_t)apikey,
                                            (size_t)count, errs);
    return PARLEY_DEVBROKER_OK("next %ld request(s) with apikey %ld fail "
                               "with %s (%ld)",
                               count, apikey,
                               rd_kafka_err2name((rd_kafka_resp_err_t)code),
                               code);
}

static int parley_devbroker_cmd_topic(parley_devbroker_t *db,
                                      const parley_devbroker_words_t *w,
                                      char *answer, size_t answer_size)
{
    rd_kafka_resp_err_t kerr;
    long partitions;

    if (w->argc != 3
        || parley_devbroker_parse_long(w->argv[2], 1,
                                       PARLEY_DEVBROKER_MAX_PARTITIONS,
                                       &partitions)) {
        return PARLEY_DEVBROKER_ERR("usage: topic-create <name> <1..%d>",
                                    PARLEY_DEVBROKER_MAX_PARTITIONS);
    }
    if (!parley_devbroker_topic_name_valid(w->argv[1])) {
        return PARLEY_DEVBROKER_ERR("invalid topic name (want "
                                    "[A-Za-z0-9._-]{1,%d})",
                                    PARLEY_DEVBROKER_TOPIC_MAX);
    }
    parley_devbroker_mock_call_begin();
    kerr = rd_kafka_mock_topic_create(db->mcluster, w->argv[1],
                                      (int)partitions, db->replication_factor);
    parley_devbroker_mock_call_end();
    if (kerr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        return PARLEY_DEVBROKER_ERR("topic %s already exists", w->argv[1]);
    }
    if (kerr) {
        return PARLEY_DEVBROKER_ERR("topic-create failed: %s",
                                    rd_kafka_err2str(kerr));
    }
    return PARLEY_DEVBROKER_OK("topic %s created with %ld partition(s)",
                               w->argv[1], partitions);
}

static int parley_devbroker_cmd_brokers(parley_devbroker_t *db,
                                        char *answer, size_t answer_size)
{
    size_t off;
    int i;

    off = (size_t)snprintf(answer, answer_size, "ok");
    for (i = 0; i < db->broker_count && off < answer_size; i++) {
        const parley_devbroker_broker_t *b = &db->brokers[i];

        off += (size_t)snprintf(answer + off, answer_size - off,
                                "%s %d 127.0.0.1:%u %s", i ? "," : "",
                                (int)b->id, (unsigned)b->port,
                                b->up ? "up" : "down");
    }
    return 0;
}

int parley_devbroker_ctl_exec(parley_devbroker_t *db, const char *line,
                              char *answer, size_t answer_size)
{
    char buf[PARLEY_DEVBROKER_LINE_MAX];
    parley_devbroker_words_t w;
    const unsigned char *p;
    const char *cmd;

    if (strlen(line) >= sizeof(buf)) {
        return PARLEY_DEVBROKER_ERR("line too long (limit %d bytes)",
                                    PARLEY_DEVBROKER_LINE_MAX - 1);
    }
    for (p = (const unsigned char *)line; *p; p++) {
        if ((*p < 0x20 && *p != '\t') || *p >= 0x7f) {
            return PARLEY_DEVBROKER_ERR("control characters or non-ASCII "
                                        "bytes in command");
        }
    }
    memcpy(buf, line, strlen(line) + 1);
    if (parley_devbroker_split(buf, &w) != 0) {
        return PARLEY_DEVBROKER_ERR("too many words (limit %d)",
                                    PARLEY_DEVBROKER_WORDS_MAX);
    }
    if (w.argc == 0) {
        return PARLEY_DEVBROKER_ERR("empty command; try help");
    }

    cmd = w.argv[0];
    if (strcmp(cmd, "ping") == 0 && w.argc == 1) {
        return PARLEY_DEVBROKER_OK("pong");
    }
    if (strcmp(cmd, "help") == 0 && w.argc == 1) {
        return PARLEY_DEVBROKER_OK("%s", parley_devbroker_commands);
    }
    if (strcmp(cmd, "brokers") == 0 && w.argc == 1) {
        return parley_devbroker_cmd_brokers(db, answer, answer_size);
    }
    if (strcmp(cmd, "broker-down") == 0) {
        return parley_devbroker_cmd_updown(db, &w, 0, answer, answer_size);
    }
    if (strcmp(cmd, "broker-up") == 0) {
        return parley_devbroker_cmd_updown(db, &w, 1, answer, answer_size);
    }
    if (strcmp(cmd, "rtt") == 0) {
        return parley_devbroker_cmd_rtt(db, &w, answer, answer_size);
    }
    if (strcmp(cmd, "errors") == 0) {
        return parley_devbroker_cmd_errors(db, &w, answer, answer_size);
    }
    if (strcmp(cmd, "topic-create") == 0) {
        return parley_devbroker_cmd_topic(db, &w, answer, answer_size);
    }
    if (strcmp(cmd, "ping") == 0 || strcmp(cmd, "help") == 0
        || strcmp(cmd, "brokers") == 0) {
        return PARLEY_DEVBROKER_ERR("%s takes no arguments", cmd);
    }
    /* the word is printable ASCII and shorter than a line: safe to echo */
    return PARLEY_DEVBROKER_ERR("unknown command \"%.64s\"; commands: %s", cmd,
                                parley_devbroker_commands);
}

/* ---- server side ---- */

static int parley_devbroker_fill_sun(struct sockaddr_un *sun, const char *path,
                                     char *err, size_t errlen)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (path[0] == '\0' || strlen(path) >= sizeof(sun->sun_path)) {
        snprintf(err, errlen, "control socket path must be 1..%zu bytes",
                 sizeof(sun->sun_path) - 1);
        return -1;
    }
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return 0;
}

void parley_devbroker_ctl_init(parley_devbroker_ctl_t *ctl)
{
    int i;

    ctl->listen_fd = -1;
    ctl->spare_fd = -1;
    ctl->path[0] = '\0';
    for (i = 0; i < PARLEY_DEVBROKER_CLIENTS_MAX; i++) {
        ctl->clients[i].fd = -1;
    }
}

int parley_devbroker_ctl_open(parley_devbroker_ctl_t *ctl, const char *path,
                              char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    mode_t old_umask;
    int fd;
    int rc;

    parley_devbroker_ctl_init(ctl);
    if (parley_devbroker_fill_sun(&sun, path, err, errlen) != 0) {
        return -1;
    }

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -1;
        }
        /* a socket nobody answers on is left over from a dead devbroker */
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd == -1) {
            snprintf(err, errlen, "socket(): %s", strerror(errno));
            return -1;
        }
        rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
        close(fd);
        if (rc == 0) {
            snprintf(err, errlen, "control socket %s is in use by a running "
                     "process", path);
            return -1;
        }
        if (unlink(path) == -1 && errno != ENOENT) {
            snprintf(err, errlen, "cannot remove stale %s: %s", path,
                     strerror(errno));
            return -1;
        }
    }

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1) {
        snprintf(err, errlen, "socket(): %s", strerror(errno));
        return -1;
    }
    /* fault injection is for the owner only */
    old_umask = umask(077);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old_umask);
    if (rc == -1 || listen(fd, PARLEY_DEVBROKER_CLIENTS_MAX) == -1
        || parley_devbroker_set_nonblock_cloexec(fd) == -1) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }

    ctl->listen_fd = fd;
    ctl->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    memcpy(ctl->path, path, strlen(path) + 1);
    return 0;
}

size_t parley_devbroker_ctl_pollfds(parley_devbroker_ctl_t *ctl,
                                    struct pollfd *pfds, size_t max)
{
    size_t n = 0;
    int i;

    if (ctl->listen_fd == -1 || max == 0) {
        return 0;
    }
    pfds[n].fd = ctl->listen_fd;
    pfds[n].events = POLLIN;
    pfds[n].revents = 0;
    n++;

    for (i = 0; i < PARLEY_DEVBROKER_CLIENTS_MAX && n < max; i++) {
        parley_devbroker_client_t *c = &ctl->clients[i];
        short events = 0;

        if (c->fd == -1) {
            continue;
        }
        if (c->out_off < c->out_len) {
            events |= POLLOUT;
        } else if (!c->eof && !c->close_after_flush) {
            events |= POLLIN;
        }
        pfds[n].fd = c->fd;
        pfds[n].events = events;
        pfds[n].revents = 0;
        n++;
    }
    return n;
}

static void parley_devbroker_client_close(parley_devbroker_client_t *c)
{
    if (c->fd != -1) {
        close(c->fd);
    }
    c->fd = -1;
}

static void parley_devbroker_client_queue(parley_devbroker_client_t *c,
                                          const char *answer)
{
    size_t len = strnlen(answer, PARLEY_DEVBROKER_ANSWER_MAX);

    memcpy(c->out, answer, len);
    c->out[len] = '\n';
    c->out_len = len + 1;
    c->out_off = 0;
}

/* Writes what it can; closes the client on error or once a final answer is
 * out.  Returns 0 while the client stays open. */
static int parley_devbroker_client_flush(parley_devbroker_client_t *c)
{
    ssize_t n;

    while (c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                 MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (n <= 0) {
            parley_devbroker_client_close(c);
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->close_after_flush || c->eof) {
        parley_devbroker_client_close(c);
        return -1;
    }
    return 0;
}

/* Answers complete lines in the input buffer, one at a time, as long as
 * each answer can be written out at once. */
static void parley_devbroker_client_run(parley_devbroker_client_t *c,
                                        parley_devbroker_t *db)
{
    char answer[PARLEY_DEVBROKER_ANSWER_MAX];
    char *nl;
    size_t line_len;
    int has_nul;

    while (c->fd != -1 && c->out_len == 0) {
        nl = memchr(c->in, '\n', c->in_len);
        if (nl == NULL) {
            if (c->in_len == sizeof(c->in)) {
                snprintf(answer, sizeof(answer),
                         "error line too long (limit %d bytes)",
                         PARLEY_DEVBROKER_LINE_MAX - 1);
                c->close_after_flush = 1;
                c->in_len = 0;
                parley_devbroker_client_queue(c, answer);
                parley_devbroker_client_flush(c);
            } else if (c->eof) {
                /* a last line without '\n' is ignored, as a shell would */
                c->in_len = 0;
                parley_devbroker_client_flush(c);
            }
            return;
        }

        line_len = (size_t)(nl - c->in);
        has_nul = memchr(c->in, '\0', line_len) != NULL;
        *nl = '\0';
        if (line_len > 0 && c->in[line_len - 1] == '\r') {
            c->in[line_len - 1] = '\0';
        }
        if (has_nul) {
            snprintf(answer, sizeof(answer), "error NUL byte in command");
        } else {
            parley_devbroker_ctl_exec(db, c->in, answer, sizeof(answer));
        }
        memmove(c->in, nl + 1, c->in_len - line_len - 1);
        c->in_len -= line_len + 1;

        parley_devbroker_client_queue(c, answer);
        parley_devbroker_client_flush(c);
    }
}

static void parley_devbroker_client_read(parley_devbroker_client_t *c,
                                         parley_devbroker_t *db)
{
    ssize_t n;

    n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    if (n == -1
        && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    if (n < 0) {
        parley_devbroker_client_close(c);
        return;
    }
    if (n == 0) {
        c->eof = 1;
    }
    c->in_len += (size_t)n;
    parley_devbroker_client_run(c, db);
    if (c->fd != -1 && c->eof && c->out_len == 0) {
        parley_devbroker_client_close(c);
    }
}

static void parley_devbroker_ctl_accept(parley_devbroker_ctl_t *ctl)
{
    static const char busy[] = "error too many control clients\n";
    int fd;
    int i;

    for (;;) {
        fd = accept(ctl->listen_fd, NULL, NULL);
        if (fd == -1 && (errno == EMFILE || errno == ENFILE)
            && ctl->spare_fd != -1) {
            /* out of descriptors: the pending connection would keep the
             * listener readable and poll() spinning, so refuse it with the
             * descriptor kept in reserve for exactly this */
            close(ctl->spare_fd);
            fd = accept(ctl->listen_fd, NULL, NULL);
            if (fd != -1) {
                close(fd);
            }
            ctl->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd == -1) {
                return; /* Linux reports EMFILE with nothing pending too */
            }
            continue;
        }
        if (fd == -1) {
            /* EAGAIN: drained; EINTR, ECONNABORTED: next wake-up */
            return;
        }
        if (parley_devbroker_set_nonblock_cloexec(fd) == -1) {
            close(fd);
            continue;
        }
        for (i = 0; i < PARLEY_DEVBROKER_CLIENTS_MAX; i++) {
            if (ctl->clients[i].fd == -1) {
                break;
            }
        }
        if (i == PARLEY_DEVBROKER_CLIENTS_MAX) {
            (void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
            close(fd);
            continue;
        }
        ctl->clients[i].fd = fd;
        ctl->clients[i].eof = 0;
        ctl->clients[i].close_after_flush = 0;
        ctl->clients[i].in_len = 0;
        ctl->clients[i].out_len = 0;
        ctl->clients[i].out_off = 0;
    }
}

void parley_devbroker_ctl_process(parley_devbroker_ctl_t *ctl,
                                  parley_devbroker_t *db,
                                  const struct pollfd *pfds, size_t n)
{
    size_t k;
    int i;

    for (k = 0; k < n; k++) {
        const struct pollfd *pfd = &pfds[k];
        parley_devbroker_client_t *c = NULL;

        if (pfd->revents == 0) {
            continue;
        }
        if (pfd->fd == ctl->listen_fd) {
            parley_devbroker_ctl_accept(ctl);
            continue;
        }
        for (i = 0; i < PARLEY_DEVBROKER_CLIENTS_MAX; i++) {
            if (ctl->clients[i].fd == pfd->fd) {
                c = &ctl->clients[i];
                break;
            }
        }
        if (c == NULL) {
            continue;
        }
        if (pfd->revents & POLLOUT) {
            if (parley_devbroker_client_flush(c) == 0) {
                /* answer delivered: lines already buffered run now */
                parley_devbroker_client_run(c, db);
            }
        } else if (pfd->revents & (POLLIN | POLLHUP)) {
            parley_devbroker_client_read(c, db);
        } else if (pfd->revents & (POLLERR | POLLNVAL)) {
            parley_devbroker_client_close(c);
        }
    }
}

void parley_devbroker_ctl_close(parley_devbroker_ctl_t *ctl)
{
    int i;

    for (i = 0; i < PARLEY_DEVBROKER_CLIENTS_MAX; i++) {
        parley_devbroker_client_close(&ctl->clients[i]);
    }
    if (ctl->spare_fd != -1) {
        close(ctl->spare_fd);
        ctl->spare_fd = -1;
    }
    if (ctl->listen_fd != -1) {
        close(ctl->listen_fd);
        ctl->listen_fd = -1;
        unlink(ctl->path);
    }
}

/* ---- client side: `parley-devbroker ctl PATH command...` ---- */

static long parley_devbroker_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int parley_devbroker_ctl_client(int argc, char **argv)
{
    char line[PARLEY_DEVBROKER_LINE_MAX];
    char reply[PARLEY_DEVBROKER_ANSWER_MAX + 2];
    char err[160];
    struct sockaddr_un sun;
    struct pollfd pfd;
    size_t len = 0;
    size_t got = 0;
    long deadline;
    ssize_t n;
    int fd;
    int i;

    if (argc < 2) {
        fprintf(stderr, "usage: %s ctl PATH command [args...]\n",
                PARLEY_DEVBROKER_NAME);
        return 1;
    }
    if (parley_devbroker_fill_sun(&sun, argv[0], err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", PARLEY_DEVBROKER_NAME, err);
        return 1;
    }
    for (i = 1; i < argc; i++) {
        size_t wlen = strlen(argv[i]);

        if (len + wlen + 2 > sizeof(line)) {
            fprintf(stderr, "%s: command longer than %d bytes\n",
                    PARLEY_DEVBROKER_NAME, PARLEY_DEVBROKER_LINE_MAX - 1);
            return 1;
        }
        if (strchr(argv[i], '\n') != NULL) {
            fprintf(stderr, "%s: newline in command\n", PARLEY_DEVBROKER_NAME);
            return 1;
        }
        if (i > 1) {
            line[len++] = ' ';
        }
        memcpy(line + len, argv[i], wlen);
        len += wlen;
    }
    line[len++] = '\n';

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n",
                PARLEY_DEVBROKER_NAME, argv[0], strerror(errno));
        if (fd != -1) {
            close(fd);
        }
        return 1;
    }
    if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
        fprintf(stderr, "%s: send: %s\n", PARLEY_DEVBROKER_NAME,
                strerror(errno));
        close(fd);
        return 1;
    }

    deadline = parley_devbroker_now_ms() + PARLEY_DEVBROKER_CLIENT_TIMEOUT_MS;
    while (got < sizeof(reply) - 1 && memchr(reply, '\n', got) == NULL) {
        long left = deadline - parley_devbroker_now_ms();

        if (left <= 0) {
            fprintf(stderr, "%s: no answer from %s within %d ms\n",
                    PARLEY_DEVBROKER_NAME, argv[0],
                    PARLEY_DEVBROKER_CLIENT_TIMEOUT_MS);
            close(fd);
            return 1;
        }
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, (int)left) == -1) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);

    reply[got] = '\0';
    reply[strcspn(reply, "\n")] = '\0';
    if (got == 0) {
        fprintf(stderr, "%s: connection closed without an answer\n",
                PARLEY_DEVBROKER_NAME);
        return 1;
    }
    printf("%s\n", reply);
    return strncmp(reply, "ok", 2) == 0 && (reply[2] == '\0' || reply[2] == ' ')
               ? 0
               : 1;
}
