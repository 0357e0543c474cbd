/*
 * parley-devbroker: a development Kafka broker.  librdkafka's mock cluster
 * speaks the real Kafka protocol; this program pins its brokers to fixed
 * loopback ports, creates Parley's topics, and exposes fault injection on a
 * control socket.  IN-MEMORY ONLY: every topic, record, offset and group is
 * lost when the process exits.  Never point anything real at it.
 *
 *   parley-devbroker --port P [--brokers N] [--topics name:parts,...]
 *                    [--control PATH] [--pidfile PATH]
 *   parley-devbroker ctl PATH command [args...]
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime failure (port taken,
 * socket errors), 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devbroker.h"

typedef struct {
    char name[PARLEY_DEVBROKER_TOPIC_MAX + 1];
    int partitions;
} parley_devbroker_topic_t;

typedef struct {
    long port;
    long brokers;
    const char *topics;
    const char *control;
    const char *pidfile;
} parley_devbroker_args_t;

/* Topics of DESIGN.md §4; consumers get a .retry and a .dlq each. */
static const char *const parley_devbroker_default_topics[] = {
    "parley.messages",          "parley.events",
    "parley.moderation",        "parley.moderation.retry",
    "parley.moderation.dlq",    "parley.push",
    "parley.push.retry",        "parley.push.dlq",
    "parley.webhooks",          "parley.webhooks.retry",
    "parley.webhooks.dlq",
};
#define PARLEY_DEVBROKER_DEFAULT_PARTITIONS 3

/* Signal state: the handler sets the flag and wakes poll() via the pipe. */
static volatile sig_atomic_t parley_devbroker_stop_signal;
static int parley_devbroker_sigpipe[2] = {-1, -1};

static void parley_devbroker_usage(FILE *out)
{
    fprintf(out,
            "usage: %s --port P [--brokers N] [--topics name:partitions,...]\n"
            "                        [--control PATH] [--pidfile PATH]\n"
            "       %s ctl PATH command [args...]\n"
            "\n"
            "In-memory Kafka broker for development and tests (librdkafka\n"
            "mock cluster). NOT DURABLE: everything is lost on exit.\n"
            "Broker i (1..N, default N=1) listens on 127.0.0.1:P+i-1.\n"
            "See docs/devbroker.md.\n",
            PARLEY_DEVBROKER_NAME, PARLEY_DEVBROKER_NAME);
}

static void parley_devbroker_on_signal(int signo)
{
    int saved = errno;
    char byte = 1;
    ssize_t rc;

    parley_devbroker_stop_signal = signo;
    rc = write(parley_devbroker_sigpipe[1], &byte, 1);
    (void)rc; /* a full pipe already holds a wake-up */
    errno = saved;
}

static int parley_devbroker_signals_init(void)
{
    struct sigaction sa;
    int i;

    if (pipe(parley_devbroker_sigpipe) == -1) {
        return -1;
    }
    for (i = 0; i < 2; i++) {
        int fl = fcntl(parley_devbroker_sigpipe[i], F_GETFL);

        if (fl == -1
            || fcntl(parley_devbroker_sigpipe[i], F_SETFL, fl | O_NONBLOCK)
                   == -1
            || fcntl(parley_devbroker_sigpipe[i], F_SETFD, FD_CLOEXEC) == -1) {
            return -1;
        }
    }

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = parley_devbroker_on_signal;
    if (sigaction(SIGTERM, &sa, NULL) == -1
        || sigaction(SIGINT, &sa, NULL) == -1) {
        return -1;
    }
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

/* Blocks or unblocks SIGTERM/SIGINT in the calling thread.  librdkafka's
 * threads are created while blocked, so only the main thread takes them. */
static void parley_devbroker_signals_mask(int how)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(how, &set, NULL);
}

static int parley_devbroker_parse_args(int argc, char **argv,
                                       parley_devbroker_args_t *args)
{
    int i;

    memset(args, 0, sizeof(*args));
    args->port = -1;
    args->brokers = 1;

    for (i = 1; i < argc; i++) {
        const char *opt = argv[i];
        const char *val;

        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            parley_devbroker_usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s: missing value\n", PARLEY_DEVBROKER_NAME,
                    opt);
            return -1;
        }
        val = argv[++i];

        if (strcmp(opt, "--port") == 0) {
            if (parley_devbroker_parse_long(val, 1, 65535, &args->port)) {
                fprintf(stderr, "%s: --port: want 1..65535, got \"%s\"\n",
                        PARLEY_DEVBROKER_NAME, val);
                return -1;
            }
        } else if (strcmp(opt, "--brokers") == 0) {
            if (parley_devbroker_parse_long(val, 1,
                                            PARLEY_DEVBROKER_MAX_BROKERS,
                                            &args->brokers)) {
                fprintf(stderr, "%s: --brokers: want 1..%d, got \"%s\"\n",
                        PARLEY_DEVBROKER_NAME, PARLEY_DEVBROKER_MAX_BROKERS,
                        val);
                return -1;
            }
        } else if (strcmp(opt, "--topics") == 0) {
            args->topics = val;
        } else if (strcmp(opt, "--control") == 0) {
            args->control = val;
        } else if (strcmp(opt, "--pidfile") == 0) {
            args->pidfile = val;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\"\n",
                    PARLEY_DEVBROKER_NAME, opt);
            return -1;
        }
    }

    if (args->port == -1) {
        fprintf(stderr, "%s: --port is required\n", PARLEY_DEVBROKER_NAME);
        return -1;
    }
    if (args->port + args->brokers - 1 > 65535) {
        fprintf(stderr, "%s: ports %ld..%ld do not fit below 65536\n",
                PARLEY_DEVBROKER_NAME, args->port,
                args->port + args->brokers - 1);
        return -1;
    }
    return 0;
}

/*
 * Parses "name:partitions,name:partitions,..." into topics[].  Returns the
 * count, or -1 after printing what is wrong.
 */
static int parley_devbroker_parse_topics(const char *spec,
                                         parley_devbroker_topic_t *topics,
                                         int max)
{
    const char *p = spec;
    int n = 0;
    int j;

    if (*spec == '\0') {
        fprintf(stderr, "%s: --topics: empty list\n", PARLEY_DEVBROKER_NAME);
        return -1;
    }

    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t item_len = end ? (size_t)(end - p) : strlen(p);
        char item[PARLEY_DEVBROKER_TOPIC_MAX + 16];
        char *colon;
        long parts;

        if (n == max) {
            fprintf(stderr, "%s: --topics: more than %d topics\n",
                    PARLEY_DEVBROKER_NAME, max);
            return -1;
        }
        if (item_len == 0 || item_len >= sizeof(item)) {
            fprintf(stderr, "%s: --topics: item %d is empty or too long\n",
                    PARLEY_DEVBROKER_NAME, n + 1);
            return -1;
        }
        memcpy(item, p, item_len);
        item[item_len] = '\0';

        colon = strrchr(item, ':');
        if (colon == NULL) {
            fprintf(stderr, "%s: --topics: \"%s\": want name:partitions\n",
                    PARLEY_DEVBROKER_NAME, item);
            return -1;
        }
        *colon = '\0';
        if (!parley_devbroker_topic_name_valid(item)) {
            fprintf(stderr, "%s: --topics: \"%s\": invalid topic name (want "
                    "[A-Za-z0-9._-]{1,%d})\n", PARLEY_DEVBROKER_NAME, item,
                    PARLEY_DEVBROKER_TOPIC_MAX);
            return -1;
        }
        if (parley_devbroker_parse_long(colon + 1, 1,
                                        PARLEY_DEVBROKER_MAX_PARTITIONS,
                                        &parts)) {
            fprintf(stderr, "%s: --topics: \"%s\": partitions must be 1..%d\n",
                    PARLEY_DEVBROKER_NAME, item,
                    PARLEY_DEVBROKER_MAX_PARTITIONS);
            return -1;
        }
        for (j = 0; j < n; j++) {
            if (strcmp(topics[j].name, item) == 0) {
                fprintf(stderr, "%s: --topics: \"%s\" given twice\n",
                        PARLEY_DEVBROKER_NAME, item);
                return -1;
            }
        }
        memcpy(topics[n].name, item, strlen(item) + 1);
        topics[n].partitions = (int)parts;
        n++;

        p += item_len;
        if (*p == ',') {
            p++;
            if (*p == '\0') {
                fprintf(stderr, "%s: --topics: trailing ','\n",
                        PARLEY_DEVBROKER_NAME);
                return -1;
            }
        }
    }
    return n;
}

static int parley_devbroker_default_topic_list(parley_devbroker_topic_t *topics)
{
    int n = (int)(sizeof(parley_devbroker_default_topics)
                  / sizeof(parley_devbroker_default_topics[0]));
    int i;

    for (i = 0; i < n; i++) {
        snprintf(topics[i].name, sizeof(topics[i].name), "%s",
                 parley_devbroker_default_topics[i]);
        topics[i].partitions = PARLEY_DEVBROKER_DEFAULT_PARTITIONS;
    }
    return n;
}

static void parley_devbroker_log_cb(const rd_kafka_t *rk, int level,
                                    const char *fac, const char *buf)
{
    (void)rk;
    /* the host handle has no bootstrap.servers on purpose */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers")) {
        return;
    }
    fprintf(stderr, "%s: librdkafka %d %s: %s\n", PARLEY_DEVBROKER_NAME, level,
            fac, buf);
}

/*
 * Creates the rd_kafka_t that hosts the mock cluster, then the cluster with
 * its brokers on the reserved ports, and checks that every broker really
 * got its fixed port.  Returns 0, or -1 after printing why.
 */
static int parley_devbroker_cluster_start(parley_devbroker_t *db)
{
    char errstr[512];
    char expect[PARLEY_DEVBROKER_MAX_BROKERS * 17 + 1];
    rd_kafka_conf_t *conf;
    const char *bootstraps;
    size_t off = 0;
    int unused;
    int i;

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", PARLEY_DEVBROKER_NAME, errstr,
                          sizeof(errstr))
        != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", PARLEY_DEVBROKER_NAME, errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, parley_devbroker_log_cb);

    /* The host handle connects nowhere: it only owns the mock cluster. */
    db->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (db->rk == NULL) {
        fprintf(stderr, "%s: rd_kafka_new: %s\n", PARLEY_DEVBROKER_NAME,
                errstr);
        return -1;
    }

    parley_devbroker_ports_arm();
    db->mcluster = rd_kafka_mock_cluster_new(db->rk, db->broker_count);
    unused = parley_devbroker_ports_disarm();
    parley_devbroker_ports_release();

    if (db->mcluster == NULL) {
        fprintf(stderr, "%s: rd_kafka_mock_cluster_new failed\n",
                PARLEY_DEVBROKER_NAME);
        return -1;
    }

    for (i = 0; i < db->broker_count; i++) {
        off += (size_t)snprintf(expect + off, sizeof(expect) - off,
                                "%s127.0.0.1:%u", i ? "," : "",
                                (unsigned)db->brokers[i].port);
    }
    bootstraps = rd_kafka_mock_cluster_bootstraps(db->mcluster);
    if (unused != 0 || bootstraps == NULL || strcmp(bootstraps, expect) != 0) {
        fprintf(stderr,
                "%s: the mock brokers did not take the fixed ports (got "
                "\"%s\", want \"%s\"): this librdkafka does not call bind() "
                "through the executable as 2.0.2 does\n",
                PARLEY_DEVBROKER_NAME, bootstraps ? bootstraps : "(none)",
                expect);
        return -1;
    }
    return 0;
}

static void parley_devbroker_cluster_stop(parley_devbroker_t *db)
{
    if (db->mcluster != NULL) {
        /* a TERMINATE op and a join: the same wake-up bracket applies */
        parley_devbroker_mock_call_begin();
        rd_kafka_mock_cluster_destroy(db->mcluster);
        parley_devbroker_mock_call_end();
        db->mcluster = NULL;
    }
    if (db->rk != NULL) {
        rd_kafka_destroy(db->rk);
        db->rk = NULL;
    }
}

static int parley_devbroker_topics_create(parley_devbroker_t *db,
                                          const parley_devbroker_topic_t *t,
                                          int n)
{
    rd_kafka_resp_err_t kerr;
    int i;

    for (i = 0; i < n; i++) {
        parley_devbroker_mock_call_begin();
        kerr = rd_kafka_mock_topic_create(db->mcluster, t[i].name,
                                          t[i].partitions,
                                          db->replication_factor);
        parley_devbroker_mock_call_end();
        if (kerr) {
            fprintf(stderr, "%s: creating topic %s: %s\n",
                    PARLEY_DEVBROKER_NAME, t[i].name, rd_kafka_err2str(kerr));
            return -1;
        }
    }
    return 0;
}

static int parley_devbroker_pidfile_write(const char *path)
{
    char buf[32];
    int len;
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        fprintf(stderr, "%s: pidfile %s: %s\n", PARLEY_DEVBROKER_NAME, path,
                strerror(errno));
        return -1;
    }
    len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (write(fd, buf, (size_t)len) != len || close(fd) == -1) {
        fprintf(stderr, "%s: pidfile %s: %s\n", PARLEY_DEVBROKER_NAME, path,
                strerror(errno));
        return -1;
    }
    return 0;
}

static void parley_devbroker_banner(const parley_devbroker_t *db, int topics)
{
    static const char *const lines[] = {
        "########################################################",
        "# IN-MEMORY DEV BROKER - NOT DURABLE.                  #",
        "# Every topic, record, offset and consumer group is    #",
        "# LOST when this process exits. Dev and tests only.    #",
        "########################################################",
    };
    size_t i;

    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        fprintf(stderr, "%s: %s\n", PARLEY_DEVBROKER_NAME, lines[i]);
    }
    fprintf(stderr,
            "%s: %d broker(s) on 127.0.0.1:%u..%u, %d topic(s), "
            "replication factor %d\n",
            PARLEY_DEVBROKER_NAME, db->broker_count, (unsigned)db->base_port,
            (unsigned)(db->base_port + db->broker_count - 1), topics,
            db->replication_factor);
}

/* The one event loop: signals (self-pipe) and the control socket. */
static void parley_devbroker_loop(parley_devbroker_t *db,
                                  parley_devbroker_ctl_t *ctl)
{
    struct pollfd pfds[2 + PARLEY_DEVBROKER_CLIENTS_MAX];
    size_t n;
    char drain[64];

    while (!parley_devbroker_stop_signal) {
        pfds[0].fd = parley_devbroker_sigpipe[0];
        pfds[0].events = POLLIN;
        pfds[0].revents = 0;
        n = 1 + parley_devbroker_ctl_pollfds(ctl, pfds + 1,
                                             sizeof(pfds) / sizeof(pfds[0])
                                                 - 1);

        if (poll(pfds, (nfds_t)n, -1) == -1) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "%s: poll: %s\n", PARLEY_DEVBROKER_NAME,
                    strerror(errno));
            return;
        }
        if (pfds[0].revents & POLLIN) {
            while (read(parley_devbroker_sigpipe[0], drain, sizeof(drain))
                   > 0) {
            }
        }
        if (parley_devbroker_stop_signal) {
            break;
        }
        parley_devbroker_ctl_process(ctl, db, pfds + 1, n - 1);
    }
}

int main(int argc, char **argv)
{
    static parley_devbroker_topic_t topics[PARLEY_DEVBROKER_MAX_TOPICS];
    static parley_devbroker_t db;
    static parley_devbroker_ctl_t ctl;
    parley_devbroker_args_t args;
    char err[256];
    int ntopics;
    int pidfile_written = 0;
    int status = 1;
    int i;

    if (argc >= 2 && strcmp(argv[1], "ctl") == 0) {
        return parley_devbroker_ctl_client(argc - 2, argv + 2);
    }

    if (parley_devbroker_parse_args(argc, argv, &args) != 0) {
        parley_devbroker_usage(stderr);
        return 2;
    }
    ntopics = args.topics
                  ? parley_devbroker_parse_topics(args.topics, topics,
                                                  PARLEY_DEVBROKER_MAX_TOPICS)
                  : parley_devbroker_default_topic_list(topics);
    if (ntopics < 0) {
        return 2;
    }

    db.base_port = (uint16_t)args.port;
    db.broker_count = (int)args.brokers;
    db.replication_factor = db.broker_count < 3 ? db.broker_count : 3;
    for (i = 0; i < db.broker_count; i++) {
        db.brokers[i].id = i + 1;
        db.brokers[i].port = (uint16_t)(args.port + i);
        db.brokers[i].up = 1;
        db.brokers[i].rtt_ms = 0;
    }
    parley_devbroker_ctl_init(&ctl);

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (parley_devbroker_signals_init() != 0) {
        fprintf(stderr, "%s: signal setup: %s\n", PARLEY_DEVBROKER_NAME,
                strerror(errno));
        return 1;
    }
    parley_devbroker_signals_mask(SIG_BLOCK);

    if (parley_devbroker_ports_reserve(db.base_port, db.broker_count, err,
                                       sizeof(err))
        != 0) {
        fprintf(stderr, "%s: %s\n", PARLEY_DEVBROKER_NAME, err);
        return 1;
    }
    if (args.control != NULL
        && parley_devbroker_ctl_open(&ctl, args.control, err, sizeof(err))
               != 0) {
        fprintf(stderr, "%s: %s\n", PARLEY_DEVBROKER_NAME, err);
        parley_devbroker_ports_release();
        return 1;
    }

    if (parley_devbroker_cluster_start(&db) != 0
        || parley_devbroker_topics_create(&db, topics, ntopics) != 0
        || (args.pidfile != NULL
            && parley_devbroker_pidfile_write(args.pidfile) != 0)) {
        goto done;
    }
    pidfile_written = args.pidfile != NULL;

    parley_devbroker_banner(&db, ntopics);
    printf("%s: ready on 127.0.0.1:%u (%d brokers)\n", PARLEY_DEVBROKER_NAME,
           (unsigned)db.base_port, db.broker_count);
    fflush(stdout);

    parley_devbroker_signals_mask(SIG_UNBLOCK);
    parley_devbroker_loop(&db, &ctl);
    parley_devbroker_signals_mask(SIG_BLOCK);

    if (parley_devbroker_stop_signal) {
        fprintf(stderr, "%s: signal %d, shutting down (all data discarded)\n",
                PARLEY_DEVBROKER_NAME, (int)parley_devbroker_stop_signal);
        status = 0;
    }

done:
    parley_devbroker_ctl_close(&ctl);
    parley_devbroker_cluster_stop(&db);
    if (pidfile_written) {
        unlink(args.pidfile);
    }
    return status;
}
