/*
 * Fixed ports for librdkafka 2.0.2's mock brokers.
 *
 * The mock cluster creates each broker's listener with
 * socket(AF_INET) + bind(127.0.0.1:0) + getsockname() + listen(), in the
 * thread that calls rd_kafka_mock_cluster_new(), broker 1 first, and
 * advertises whatever port getsockname() reports.  2.0.2 has no option for
 * a fixed port.  This executable therefore defines bind() itself: the
 * dynamic linker resolves librdkafka.so's reference to bind to the
 * executable's definition first (an executable's symbols precede every
 * shared object's), so these binds come here.
 *
 * Rewriting the port and calling the real bind() would leave a gap between
 * our check that the ports are free and librdkafka's bind(), and a failed
 * bind inside rd_kafka_mock_cluster_new() is fatal in 2.0.2 (its error path
 * destroys a half-built cluster and aborts).  So the ports are bound and
 * listened on up front by parley_devbroker_ports_reserve(), where a taken
 * port is a clean error, and while armed bind() hands librdkafka the
 * reserved socket: dup2() puts it on librdkafka's descriptor, so its
 * getsockname() sees the fixed port and its listen() only resets the
 * backlog.
 *
 * Every other bind() - other families, other addresses, non-zero ports,
 * other threads, or any bind while not armed (the mock thread re-binds the
 * same fixed port when a broker is set down) - goes to the real bind() via
 * dlsym(RTLD_NEXT).
 *
 * Deliberately not _GNU_SOURCE: with it glibc declares bind() with a
 * transparent-union parameter that a plain definition would conflict with.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devbroker.h"

typedef int (*parley_devbroker_bind_fn)(int, const struct sockaddr *,
                                        socklen_t);

/* Process-wide by nature: bind() has no context argument. */
static int parley_devbroker_reserved[PARLEY_DEVBROKER_MAX_BROKERS];
static int parley_devbroker_reserved_count;
static int parley_devbroker_reserved_next;
static pthread_t parley_devbroker_arming_thread;
static atomic_int parley_devbroker_armed;

static pthread_once_t parley_devbroker_real_once = PTHREAD_ONCE_INIT;
static parley_devbroker_bind_fn parley_devbroker_real_bind;

static void parley_devbroker_real_lookup(void)
{
    void *sym = parley_devbroker_dl_next("bind");

    /* POSIX guarantees a dlsym() result converts to a function pointer. */
    memcpy(&parley_devbroker_real_bind, &sym, sizeof(sym));
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
