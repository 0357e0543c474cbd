/*
 * parley-devbroker: librdkafka 2.0.2's in-process mock cluster served over
 * real TCP on fixed loopback ports, with a control socket for fault
 * injection.  In-memory only: everything is lost when the process exits.
 * See docs/devbroker.md.
 */
#ifndef PARLEY_DEVBROKER_H
#define PARLEY_DEVBROKER_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define PARLEY_DEVBROKER_NAME "parley-devbroker"

#define PARLEY_DEVBROKER_MAX_BROKERS 32
#define PARLEY_DEVBROKER_MAX_TOPICS 256
#define PARLEY_DEVBROKER_MAX_PARTITIONS 1000
/* Kafka's own limit on topic names. */
#define PARLEY_DEVBROKER_TOPIC_MAX 249

/* A control line, '\n' included, never exceeds this many bytes. */
#define PARLEY_DEVBROKER_LINE_MAX 256
/* Room for the longest answer: `brokers` with every broker listed. */
#define PARLEY_DEVBROKER_ANSWER_MAX 2048
#define PARLEY_DEVBROKER_CLIENTS_MAX 16
#define PARLEY_DEVBROKER_ERRORS_MAX 1000
#define PARLEY_DEVBROKER_RTT_MAX_MS 60000

typedef struct {
    int32_t id;
    uint16_t port;
    int up;
    int rtt_ms;
} parley_devbroker_broker_t;

/* The running cluster, owned by main(); the control socket acts on it. */
typedef struct {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
    uint16_t base_port;
    int broker_count;
    int replication_factor;
    parley_devbroker_broker_t brokers[PARLEY_DEVBROKER_MAX_BROKERS];
} parley_devbroker_t;

typedef struct {
    int fd;
    int eof;
    int close_after_flush;
    size_t in_len;
    size_t out_len;
    size_t out_off;
    char in[PARLEY_DEVBROKER_LINE_MAX];
    char out[PARLEY_DEVBROKER_ANSWER_MAX + 2];
} parley_devbroker_client_t;

typedef struct {
    int listen_fd;
    int spare_fd; /* held open to refuse connections at EMFILE */
    char path[108];
    parley_devbroker_client_t clients[PARLEY_DEVBROKER_CLIENTS_MAX];
} parley_devbroker_ctl_t;

/* devbroker_parse.c: strict parsers shared by the CLI and the control socket */

/*
 * Parses a whole string as a decimal integer in [min, max]: no sign unless
 * min < 0, no spaces, no trailing characters.  Returns 0 and sets *out, or -1.
 */
int parley_devbroker_parse_long(const char *s, long min, long max, long *out);

/* 1 if `name` is a legal Kafka topic name ([A-Za-z0-9._-]{1,249}, not "."
 * or ".."), 0 otherwise. */
int parley_devbroker_topic_name_valid(const char *name);

/* devbroker_interpose.c: bind() and poll() as librdkafka sees them */

/*
 * Binds and listens on 127.0.0.1:base .. base+count-1 now, before the mock
 * cluster exists, so a taken port is reported before librdkafka can trip
 * over it.  On failure closes what it opened, writes a message naming the
 * port into err and returns -1.
 */
int parley_devbroker_ports_reserve(uint16_t base, int count, char *err,
                                   size_t errlen);

/*
 * While armed, each bind() of AF_INET 127.0.0.1 port 0 made by the arming
 * thread is satisfied by the next reserved socket instead.  disarm()
 * returns how many reservations were not taken.
 */
void parley_devbroker_ports_arm(void);
int parley_devbroker_ports_disarm(void);

/* Closes reservations that were not handed over. */
void parley_devbroker_ports_release(void);

/*
 * Bracket every librdkafka mock call that waits for the mock thread
 * (rd_kafka_mock_topic_create, _broker_set_*, _cluster_destroy, ...): while
 * one is in flight the mock thread's poll() sleeps at most a millisecond,
 * which closes librdkafka 2.0.2's lost-wake-up window (devbroker_interpose.c).
 */
void parley_devbroker_mock_call_begin(void);
void parley_devbroker_mock_call_end(void);

/* devbroker_sys.c: _GNU_SOURCE helpers */

/* dlsym(RTLD_NEXT, symbol): the definition after the executable's. */
void *parley_devbroker_sys_next_symbol(const char *symbol);

/* 1 if the calling thread's name is `name`. */
int parley_devbroker_sys_thread_named(const char *name);

/* devbroker_ctl.c: the control socket */

/* Puts ctl in the closed state; ctl_close() is then a no-op. */
void parley_devbroker_ctl_init(parley_devbroker_ctl_t *ctl);

/*
 * Opens the unix stream socket at path (mode 0600).  A stale socket file
 * left by a dead devbroker is replaced; a live one or a non-socket is an
 * error.  Returns 0, or -1 with a message in err.
 */
int parley_devbroker_ctl_open(parley_devbroker_ctl_t *ctl, const char *path,
                              char *err, size_t errlen);

/* Fills at most max poll entries for the listener and clients; returns the
 * number filled.  The same array goes back to ctl_process() after poll(). */
size_t parley_devbroker_ctl_pollfds(parley_devbroker_ctl_t *ctl,
                                    struct pollfd *pfds, size_t max);

void parley_devbroker_ctl_process(parley_devbroker_ctl_t *ctl,
                                  parley_devbroker_t *db,
                                  const struct pollfd *pfds, size_t n);

/* Closes every client and the listener and removes the socket file. */
void parley_devbroker_ctl_close(parley_devbroker_ctl_t *ctl);

/*
 * Runs one control command (a line without its '\n') against the cluster
 * and writes the one-line answer, "ok ..." or "error <why>", without '\n',
 * into answer.  Returns 0 for ok, -1 for error.
 */
int parley_devbroker_ctl_exec(parley_devbroker_t *db, const char *line,
                              char *answer, size_t answer_size);

/* `parley-devbroker ctl PATH command...`: returns the process exit code. */
int parley_devbroker_ctl_client(int argc, char **argv);

#endif
