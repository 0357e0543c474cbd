/*
 * bind() and poll() as librdkafka sees them.  This executable defines both;
 * the dynamic linker resolves librdkafka.so's references to the
 * executable's definitions first (an executable's symbols precede every
 * shared object's), and each calls the real one found with
 * dlsym(RTLD_NEXT).  Both act only in narrow, named circumstances and pass
 * everything else straight through.
 *
 * bind(): fixed ports.  The 2.0.2 mock cluster creates each broker's
 * listener with socket(AF_INET) + bind(127.0.0.1:0) + getsockname() +
 * listen(), in the thread that calls rd_kafka_mock_cluster_new(), broker 1
 * first, and advertises whatever port getsockname() reports; it has no
 * option for a fixed port.  Rewriting the port and calling the real bind()
 * would leave a gap between our check that the ports are free and
 * librdkafka's bind(), and a failed bind inside rd_kafka_mock_cluster_new()
 * is fatal in 2.0.2 (its error path destroys a half-built cluster and
 * aborts).  So parley_devbroker_ports_reserve() binds and listens on the
 * ports up front, where a taken port is a clean error, and while armed
 * bind() hands librdkafka the reserved socket: dup2() puts it on
 * librdkafka's descriptor, so its getsockname() sees the fixed port and its
 * listen() only resets the backlog.  Other families, addresses, non-zero
 * ports, other threads, and any bind while not armed (the mock thread
 * re-binds the same fixed port when a broker is set down) go to the real
 * bind().
 *
 * poll(): a lost wake-up in the 2.0.2 mock thread.  Control calls
 * (rd_kafka_mock_topic_create, _broker_set_down, ...) enqueue an op, write a
 * byte to a wake-up pipe and wait for the reply.  The mock thread's loop is
 * poll() -> serve ops -> run I/O handlers, and the wake-up pipe's handler
 * reads the pipe dry.  An op enqueued after "serve ops" has its byte eaten
 * by that handler and waits for the next poll() timeout: up to 1 s per
 * call, so a startup that creates 11 topics took 2-4 s in about one run out
 * of five.  While a control call is in flight (the caller brackets it with
 * parley_devbroker_mock_call_begin/end), poll() on the thread named
 * "rdk:mock" sleeps at most PARLEY_DEVBROKER_MOCK_POLL_MS, so the op is
 * served on the next round at the latest.  At rest nothing changes.
 *
 * Deliberately not _GNU_SOURCE: with it glibc declares bind() with a
 * transparent-union parameter that a plain definition would conflict with.
 * Not fortified either: _FORTIFY_SOURCE turns poll() into an inline wrapper.
 */
#undef _FORTIFY_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devbroker.h"

#define PARLEY_DEVBROKER_MOCK_POLL_MS 1

typedef int (*parley_devbroker_bind_fn)(int, const struct sockaddr *,
                                        socklen_t);
typedef int (*parley_devbroker_poll_fn)(struct pollfd *, nfds_t, int);

/* Process-wide by nature: bind() and poll() have no context argument. */
static int parley_devbroker_reserved[PARLEY_DEVBROKER_MAX_BROKERS];
static int parley_devbroker_reserved_count;
static int parley_devbroker_reserved_next;
static pthread_t parley_devbroker_arming_thread;
static atomic_int parley_devbroker_armed;
static atomic_int parley_devbroker_mock_calls;

/* 0 not yet known, 1 the mock thread, -1 any other thread */
static _Thread_local int parley_devbroker_thread_role;

static pthread_once_t parley_devbroker_real_once = PTHREAD_ONCE_INIT;
static parley_devbroker_bind_fn parley_devbroker_real_bind;
static parley_devbroker_poll_fn parley_devbroker_real_poll;

static void parley_devbroker_real_lookup(void)
{
    void *sym;

    /* POSIX guarantees a dlsym() result converts to a function pointer. */
    sym = parley_devbroker_sys_next_symbol("bind");
    memcpy(&parley_devbroker_real_bind, &sym, sizeof(sym));
    sym = parley_devbroker_sys_next_symbol("poll");
    memcpy(&parley_devbroker_real_poll, &sym, sizeof(sym));
}

static int parley_devbroker_call_real_bind(int fd,
                                           const struct sockaddr *addr,
                                           socklen_t len)
{
    pthread_once(&parley_devbroker_real_once, parley_devbroker_real_lookup);
    if (parley_devbroker_real_bind == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return parley_devbroker_real_bind(fd, addr, len);
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    pthread_once(&parley_devbroker_real_once, parley_devbroker_real_lookup);
    if (parley_devbroker_real_poll == NULL) {
        errno = ENOSYS;
        return -1;
    }

    if (atomic_load(&parley_devbroker_mock_calls) > 0
        && (timeout < 0 || timeout > PARLEY_DEVBROKER_MOCK_POLL_MS)) {
        if (parley_devbroker_thread_role == 0) {
            /* librdkafka names the thread before its first poll() */
            parley_devbroker_thread_role =
                parley_devbroker_sys_thread_named("rdk:mock") ? 1 : -1;
        }
        if (parley_devbroker_thread_role == 1) {
            timeout = PARLEY_DEVBROKER_MOCK_POLL_MS;
        }
    }
    return parley_devbroker_real_poll(fds, nfds, timeout);
}

void parley_devbroker_mock_call_begin(void)
{
    atomic_fetch_add(&parley_devbroker_mock_calls, 1);
}

void parley_devbroker_mock_call_end(void)
{
    atomic_fetch_sub(&parley_devbroker_mock_calls, 1);
}

/* 1 if this bind is one the mock cluster makes for a new broker. */
static int parley_devbroker_is_mock_listener_bind(const struct sockaddr *addr,
                                                  socklen_t len)
{
    const struct sockaddr_in *sin;

    if (addr == NULL || len < (socklen_t)sizeof(struct sockaddr_in)
        || addr->sa_family != AF_INET) {
        return 0;
    }
    sin = (const struct sockaddr_in *)(const void *)addr;
    return sin->sin_port == 0 && sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    int reserved;

    if (!atomic_load(&parley_devbroker_armed)
        || !pthread_equal(pthread_self(), parley_devbroker_arming_thread)
        || !parley_devbroker_is_mock_listener_bind(addr, len)
        || parley_devbroker_reserved_next >= parley_devbroker_reserved_count) {
        return parley_devbroker_call_real_bind(fd, addr, len);
    }

    reserved = parley_devbroker_reserved[parley_devbroker_reserved_next];
    if (dup2(reserved, fd) == -1) {
        return -1;
    }
    /* dup2() clears FD_CLOEXEC; librdkafka created its socket with it. */
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    close(reserved);
    parley_devbroker_reserved[parley_devbroker_reserved_next++] = -1;
    return 0;
}

int parley_devbroker_ports_reserve(uint16_t base, int count, char *err,
                                   size_t errlen)
{
    struct sockaddr_in sin;
    int on = 1;
    int i;
    int fd;

    if (count < 1 || count > PARLEY_DEVBROKER_MAX_BROKERS
        || (long)base + count - 1 > 65535) {
        snprintf(err, errlen, "cannot reserve %d ports from %u", count,
                 (unsigned)base);
        return -1;
    }

    parley_devbroker_reserved_count = 0;
    parley_devbroker_reserved_next = 0;

    for (i = 0; i < count; i++) {
        uint16_t port = (uint16_t)(base + i);

        fd = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
        if (fd == -1) {
            snprintf(err, errlen, "socket() for 127.0.0.1:%u (broker %d): %s",
                     (unsigned)port, i + 1, strerror(errno));
            goto failed;
        }
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);

        /* as librdkafka does: lets a restarted devbroker rebind at once and
         * lets the mock thread re-bind the port when a broker goes down */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1) {
            snprintf(err, errlen, "SO_REUSEADDR on 127.0.0.1:%u: %s",
                     (unsigned)port, strerror(errno));
            close(fd);
            goto failed;
        }

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

        /* listen() too: under SO_REUSEADDR two sockets may share a bound but
         * not listening port, so only a listening socket really holds it */
        if (parley_devbroker_call_real_bind(fd, (struct sockaddr *)&sin,
                                            sizeof(sin))
                == -1
            || listen(fd, 64) == -1) {
            int saved = errno;

            snprintf(err, errlen, "cannot listen on 127.0.0.1:%u (broker %d): "
                     "%s%s", (unsigned)port, i + 1, strerror(saved),
                     saved == EADDRINUSE ? " - is another broker running?"
                                         : "");
            close(fd);
            goto failed;
        }

        parley_devbroker_reserved[parley_devbroker_reserved_count++] = fd;
    }
    return 0;

failed:
    parley_devbroker_ports_release();
    return -1;
}

void parley_devbroker_ports_arm(void)
{
    parley_devbroker_arming_thread = pthread_self();
    atomic_store(&parley_devbroker_armed, 1);
}

int parley_devbroker_ports_disarm(void)
{
    atomic_store(&parley_devbroker_armed, 0);
    return parley_devbroker_reserved_count - parley_devbroker_reserved_next;
}

void parley_devbroker_ports_release(void)
{
    int i;

    atomic_store(&parley_devbroker_armed, 0);
    for (i = 0; i < parley_devbroker_reserved_count; i++) {
        if (parley_devbroker_reserved[i] != -1) {
            close(parley_devbroker_reserved[i]);
            parley_devbroker_reserved[i] = -1;
        }
    }
    parley_devbroker_reserved_count = 0;
    parley_devbroker_reserved_next = 0;
}
