/*
 * ws_load: a WebSocket load generator for the benchmarks in tests/bench.
 * Figures, not pass/fail. C11, epoll, no third-party libraries.
 *
 *   ws_load idle     hold N WebSocket connections open (answering pings)
 *   ws_load recv     hold N connections and count the data frames they receive;
 *                    a frame whose payload contains ts=<ns CLOCK_REALTIME> yields
 *                    a latency sample (now - ts)
 *   ws_load pub-http publish M messages at R/s with HTTP POST (keep-alive)
 *   ws_load pub-ws   publish M messages at R/s as masked text frames over one
 *                    WebSocket connection
 *
 * Run `ws_load --help` for the options. Results are `key=value` lines on stdout;
 * progress events are lines starting with `event=`; diagnostics go to stderr.
 *
 * Connections are spread over source addresses 127.0.0.1..127.0.0.K (one source
 * address gives about 28,000 ports towards one destination) and over P forked
 * worker processes (one process may hold about 20,000 fds here). Workers report
 * through a shared anonymous mapping; the parent only watches and aggregates.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_FRAME (16u << 20)
#define MAX_PROCS 64
#define MAX_HEADERS 32

/* ------------------------------------------------------------------ time */

static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t real_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ------------------------------------------------------------- histogram */
/* Log-linear buckets over nanoseconds: exact below 128, then 64 sub-buckets
 * per power of two (relative error under 1.6 %). Mergeable by addition. */

#define H_SUB 64
#define H_BUCKETS (58 * H_SUB + 2 * H_SUB)

typedef struct {
    uint64_t count, max, sum_us;
    uint64_t b[H_BUCKETS];
} hist_t;

static unsigned h_index(uint64_t v)
{
    if (v < 2 * H_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6;
    return shift * H_SUB + (unsigned)(v >> shift);
}

static uint64_t h_value(unsigned idx)
{
    if (idx < 2 * H_SUB)
        return idx;
    unsigned shift = idx / H_SUB - 1;
    uint64_t lo = (uint64_t)(idx - shift * H_SUB) << shift;
    return lo + ((1ull << shift) >> 1);
}

static void h_add(hist_t *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    h->sum_us += v / 1000;
    if (v > h->max)
        h->max = v;
}

static void h_merge(hist_t *into, const hist_t *from)
{
    for (unsigned i = 0; i < H_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum_us += from->sum_us;
    if (from->max > into->max)
        into->max = from->max;
}

static double h_pct_ms(const hist_t *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = h_value(i);
            if (v > h->max)
                v = h->max;
            return (double)v / 1e6;
        }
    }
    return (double)h->max / 1e6;
}

static void h_print(const char *prefix, const hist_t *h)
{
    printf("%s_count=%llu\n", prefix, (unsigned long long)h->count);
    printf("%s_p50_ms=%.3f\n", prefix, h_pct_ms(h, 50));
    printf("%s_p90_ms=%.3f\n", prefix, h_pct_ms(h, 90));
    printf("%s_p99_ms=%.3f\n", prefix, h_pct_ms(h, 99));
    printf("%s_max_ms=%.3f\n", prefix, (double)h->max / 1e6);
    printf("%s_avg_ms=%.3f\n", prefix, h->count ? (double)h->sum_us / 1e3 / (double)h->count : 0.0);
}

/* --------------------------------------------------------------- options */

enum { M_IDLE, M_RECV, M_PUB_HTTP, M_PUB_WS };

static struct {
    int mode;
    const char *host;
    int port;
    struct sockaddr_in dst;
    char **paths;
    size_t npaths;
    long conns;
    int sources;
    int procs;
    double conn_rate;
    long max_pending;
    const char *init;
    const char *wait_type;
    double connect_timeout;
    double duration;
    long expect;
    double quiet;
    double hold;
    /* publishing */
    const char *url;
    char url_host[256];
    char *url_path;
    const char *headers[MAX_HEADERS];
    int nheaders;
    int have_ctype;
    const char *body;
    long count;
    double msg_rate;
    int pipeline;
    int pub_conns;
    long start_n;
    const char *save;
    double linger;
    long dump;
    int verbose;
} opt = {
    .host = "127.0.0.1", .port = 0, .conns = 1, .sources = 1, .procs = 1,
    .max_pending = 1000, .connect_timeout = 60, .quiet = 3, .body = "ts={ts} n={n}",
    .count = 1, .pipeline = 1, .pub_conns = 1, .linger = 1,
};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ws_load: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void usage(FILE *f)
{
    fputs(
"usage: ws_load MODE [options]\n"
"modes:\n"
"  idle      open N connections, hold them (answer pings) for --duration seconds\n"
"            or until SIGINT/SIGTERM; prints event=ready once all are ready\n"
"  recv      like idle, and count the data frames each connection receives once\n"
"            ready (frames before that are pre_ready_frames); payloads\n"
"            holding ts=<ns CLOCK_REALTIME> give latency samples; done when every\n"
"            connection got --expect frames with ts=, or --quiet seconds passed\n"
"            without frames, or --duration; prints event=done and the summary, then\n"
"            holds the connections --hold seconds (or until a signal)\n"
"  pub-http  POST --count bodies to --url at --msg-rate per second (0: as fast as\n"
"            possible), keep-alive, up to --pipeline requests in flight on each of\n"
"            --pub-conns connections\n"
"  pub-ws    open one WebSocket connection (--host/--port/--path, --init,\n"
"            --wait-type apply) and send --count masked text frames at --msg-rate\n"
"WebSocket options:\n"
"  --host ADDR            server IPv4 address (127.0.0.1)\n"
"  --port PORT            server port (required for idle/recv/pub-ws)\n"
"  --path PATH            request path for every connection (/)\n"
"  --paths FILE           one path per line, used round-robin over connections\n"
"  -n, --conns N          connections (1)\n"
"  --sources K            bind to 127.0.0.1..127.0.0.K round-robin (1)\n"
"  --procs P              worker processes (1); each holds about N/P connections\n"
"  --conn-rate R          connections started per second over all workers (0: no limit)\n"
"  --max-pending M        handshakes in flight per worker (1000)\n"
"  --init TEXT            text frame sent on each connection right after the 101\n"
"  --wait-type STR        ready only once a frame containing STR arrived\n"
"  --connect-timeout S    a connection not ready after S seconds fails (60)\n"
"  --duration S           idle: hold time after ready (0: until a signal);\n"
"                         recv: longest wait for frames after ready (0: none)\n"
"  --expect M             recv: frames with ts= expected on every connection\n"
"  --quiet S              recv: done S seconds after the last frame (3; 0: off)\n"
"  --hold S               recv: keep connections S seconds after done (0; -1: until a signal)\n"
"  -H, --header 'N: V'    extra request header (handshake and POST), repeatable\n"
"Publishing options:\n"
"  --url URL              pub-http: http://ADDR:PORT/path ({n} is replaced)\n"
"  --body TEMPLATE        {ts}: CLOCK_REALTIME ns at send time, {n}: counter\n"
"  --count M              messages (1)\n"
"  --msg-rate R           messages per second (0: as fast as possible)\n"
"  --pipeline D           pub-http: requests in flight per connection (1)\n"
"  --pub-conns C          pub-http: connections (1)\n"
"  --start N0             first value of {n} (0)\n"
"  --save FILE            pub-http: write 'n<TAB>status<TAB>body' per response\n"
"  --linger S             pub-ws: keep reading S seconds after the last send (1)\n"
"  --dump K               print the first K received data frames on stderr (per worker)\n"
"  -v                     progress on stderr\n", f);
}

static char **read_lines(const char *file, size_t *n)
{
    FILE *f = fopen(file, "r");
    if (!f)
        die("%s: %s", file, strerror(errno));
    char **v = NULL;
    size_t cap = 0, len = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t r;
    while ((r = getline(&line, &lcap, f)) >= 0) {
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r'))
            line[--r] = 0;
        if (!r)
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 1024;
            v = realloc(v, cap * sizeof *v);
        }
        v[len++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!len)
        die("%s: no paths", file);
    *n = len;
    return v;
}

/* -------------------------------------------------------------- templates */

static size_t expand(char *dst, size_t cap, const char *tpl, uint64_t n)
{
    size_t o = 0;
    char num[32];
    for (const char *p = tpl; *p;) {
        const char *rep = NULL;
        size_t skip = 0;
        if (p[0] == '{' && !strncmp(p, "{ts}", 4)) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)real_ns());
            rep = num, skip = 4;
        } else if (p[0] == '{' && !strncmp(p, "{n}", 3)) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)n);
            rep = num, skip = 3;
        }
        if (rep) {
            size_t l = strlen(rep);
            if (o + l < cap)
                memcpy(dst + o, rep, l);
            o += l;
            p += skip;
        } else {
            if (o + 1 < cap)
                dst[o] = *p;
            o++;
            p++;
        }
    }
    if (o >= cap)
        die("template expands beyond %zu bytes", cap);
    dst[o] = 0;
    return o;
}

/* ------------------------------------------------------------ buffers */

typedef struct {
    char *p;
    size_t len, off, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + more <= b->cap)
        return;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + more)
        cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
        die("out of memory");
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *d, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->off = b->cap = 0;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* A masked client frame (RFC 6455 5.2, 5.3). */
static void ws_frame(buf_t *b, int opcode, const void *payload, size_t len)
{
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    uint32_t m = rnd32();
    unsigned char *mk = h + hl;
    memcpy(mk, &m, 4);
    hl += 4;
    buf_reserve(b, hl + len);
    unsigned char *d = (unsigned char *)b->p + b->len;
    memcpy(d, h, hl);
    const unsigned char *s = payload;
    for (size_t i = 0; i < len; i++)
        d[hl + i] = s[i] ^ mk[i & 3];
    b->len += hl + len;
}

/* ---------------------------------------------------------- shared stats */

typedef struct {
    atomic_int phase; /* 0 connecting, 1 ready phase over, 2 done, 3 exited */
    uint64_t started, connected, upgraded, ready, failed;
    uint64_t fail_connect, fail_handshake, fail_timeout, fail_closed;
    uint64_t closed_by_server, closed_after_ready;
    uint64_t frames, frame_bytes, ts_frames, ts_frame_bytes, pings, sent_frames, pre_ready_frames;
    uint64_t per_conn_min, per_conn_max;
    double connect_s;
    char first_error[160];
    hist_t lat;
} wstat_t;

static wstat_t *shm;
static int nstat;
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void note_error(wstat_t *st, const char *fmt, ...)
{
    if (st->first_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->first_error, sizeof st->first_error, fmt, ap);
    va_end(ap);
    for (char *p = st->first_error; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == ' ' || *p == '"')
            *p = '_';
}

/* --------------------------------------------------- WebSocket clients */

enum { C_NEW, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

typedef struct conn {
    int fd;
    unsigned char state;
    unsigned char ready, want_out, closing;
    long gidx;
    double t_start;
    uint64_t ts_frames;
    buf_t in, out;
} conn_t;

typedef struct {
    int ep;
    wstat_t *st;
    conn_t *c;
    long n;          /* connections of this worker */
    long base, step; /* global index of conn i = base + i * step */
    long next;       /* next to start */
    long pending;    /* started, not yet ready or failed */
    long alive_ready;
    long reached;    /* connections that got --expect frames */
    double rate;     /* connections/s for this worker */
    double t0, t_ready, last_frame;
    char *rbuf;
    size_t rcap;
} worker_t;

static void conn_close(worker_t *w, conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    buf_free(&c->in);
    buf_free(&c->out);
    c->state = C_DEAD;
}

static void conn_fail(worker_t *w, conn_t *c, uint64_t *counter)
{
    int was_pending = c->state != C_DEAD && !c->ready;
    if (c->ready) {
        w->alive_ready--;
        w->st->closed_after_ready++;
        if (opt.expect && c->ts_frames >= (uint64_t)opt.expect)
            w->reached--;
    }
    conn_close(w, c);
    if (was_pending) {
        w->pending--;
        w->st->failed++;
        if (counter)
            (*counter)++;
    }
}

static void conn_set_ready(worker_t *w, conn_t *c)
{
    if (c->ready)
        return;
    c->ready = 1;
    w->pending--;
    w->alive_ready++;
    w->st->ready++;
}

static int conn_flush(worker_t *w, conn_t *c)
{
    while (c->out.len > c->out.off) {
        ssize_t r = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (r > 0) {
            c->out.off += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        note_error(w->st, "send: %s", strerror(errno));
        return -1;
    }
    int want = c->out.len > c->out.off;
    if (!want && c->out.cap > 4096)
        buf_free(&c->out);
    else if (!want)
        c->out.len = c->out.off = 0;
    if (want != c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = (unsigned char)want;
    }
    if (!want && c->closing)
        return -1;
    return 0;
}

static void conn_start(worker_t *w, conn_t *c)
{
    wstat_t *st = w->st;
    c->t_start = mono_now();
    st->started++;
    w->pending++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error(st, "socket: %s", strerror(errno));
        c->state = C_DEAD;
        w->pending--;
        st->failed++;
        st->fail_connect++;
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.sources > 1 || opt.dst.sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(c->gidx % opt.sources));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            note_error(st, "bind: %s", strerror(errno));
            conn_fail(w, c, &st->fail_connect);
            return;
        }
    }
    c->state = C_CONNECTING;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    c->want_out = 1;
    epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
    if (connect(fd, (struct sockaddr *)&opt.dst, sizeof opt.dst) < 0 && errno != EINPROGRESS) {
        note_error(st, "connect: %s", strerror(errno));
        conn_fail(w, c, &st->fail_connect);
    }
}

static void conn_send_handshake(worker_t *w, conn_t *c)
{
    unsigned char key[16];
    char k64[32], req[8192];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)rnd32();
    base64(key, 16, k64);
    const char *path = opt.paths[c->gidx % (long)opt.npaths];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n",
                     path, opt.host, opt.port, k64);
    for (int i = 0; i < opt.nheaders && n < (int)sizeof req; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%s\r\n", opt.headers[i]);
    if (n + 3 > (int)sizeof req)
        die("handshake request too long");
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    buf_add(&c->out, req, (size_t)n);
    c->state = C_HANDSHAKE;
    (void)w;
}

static const char *find_ts(const char *p, size_t len)
{
    const char *end = p + len;
    while (p + 3 < end) {
        const char *q = memmem(p, (size_t)(end - p), "ts=", 3);
        if (!q)
            return NULL;
        if (q + 3 < end && isdigit((unsigned char)q[3]))
            return q + 3;
        p = q + 3;
    }
    return NULL;
}

static void on_data_frame(worker_t *w, conn_t *c, const char *p, size_t len, int fin)
{
    wstat_t *st = w->st;
    if (opt.dump > 0) {
        opt.dump--;
        fprintf(stderr, "frame conn=%ld len=%zu: %.*s\n", c->gidx, len, (int)(len > 2000 ? 2000 : len), p);
    }
    if (!c->ready) {
        /* frames before ready (greetings, the answer to --init) are not data */
        if (fin)
            st->pre_ready_frames++;
        if (opt.wait_type && memmem(p, len, opt.wait_type, strlen(opt.wait_type)))
            conn_set_ready(w, c);
        return;
    }
    if (!fin)
        return; /* fragments: the final one counts (fine for our short frames) */
    st->frames++;
    st->frame_bytes += len;
    const char *ts = find_ts(p, len);
    if (!ts)
        return;
    uint64_t v = 0;
    const char *end = p + len;
    while (ts < end && isdigit((unsigned char)*ts) && v < 1000000000000000000ull * 10)
        v = v * 10 + (uint64_t)(*ts++ - '0');
    uint64_t now = real_ns();
    h_add(&st->lat, now > v ? now - v : 0);
    st->ts_frames++;
    st->ts_frame_bytes += len;
    c->ts_frames++;
    w->last_frame = mono_now();
    if (opt.expect && c->ready && c->ts_frames == (uint64_t)opt.expect)
        w->reached++;
}

/* Parse the frames in [p, p+len); returns bytes consumed, or -1 to close. */
static long parse_frames(worker_t *w, conn_t *c, char *p, size_t len)
{
    size_t off = 0;
    while (len - off >= 2) {
        unsigned char *h = (unsigned char *)p + off;
        int fin = h[0] & 0x80, op = h[0] & 0x0f, masked = h[1] & 0x80;
        uint64_t plen = h[1] & 0x7f;
        size_t hl = 2;
        if (plen == 126) {
            if (len - off < 4)
                break;
            plen = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | h[2 + i];
            hl = 10;
        }
        if (plen > MAX_FRAME) {
            note_error(w->st, "frame of %llu bytes", (unsigned long long)plen);
            return -1;
        }
        if (masked)
            hl += 4;
        if (len - off < hl + plen)
            break;
        char *pl = (char *)h + hl;
        if (masked)
            for (uint64_t i = 0; i < plen; i++)
                pl[i] ^= (char)h[hl - 4 + (i & 3)];
        switch (op) {
        case 0x0: case 0x1: case 0x2:
            on_data_frame(w, c, pl, (size_t)plen, fin);
            break;
        case 0x8:
            w->st->closed_by_server++;
            if (!c->closing) {
                ws_frame(&c->out, 0x8, pl, plen >= 2 ? 2 : 0);
                c->closing = 1;
            }
            if (!c->ready) {
                note_error(w->st, "closed by server before ready: %.*s",
                           (int)(plen > 2 ? (plen - 2 > 80 ? 80 : plen - 2) : 0), pl + 2);
            }
            return -1;
        case 0x9:
            w->st->pings++;
            ws_frame(&c->out, 0xA, pl, (size_t)plen);
            break;
        default:
            break;
        }
        off += hl + (size_t)plen;
    }
    return (long)off;
}

static void conn_opened(worker_t *w, conn_t *c)
{
    c->state = C_OPEN;
    w->st->upgraded++;
    if (opt.init)
        ws_frame(&c->out, 0x1, opt.init, strlen(opt.init));
    if (!opt.wait_type)
        conn_set_ready(w, c);
}

static void conn_on_read(worker_t *w, conn_t *c)
{
    wstat_t *st = w->st;
    for (;;) {
        ssize_t r = recv(c->fd, w->rbuf, w->rcap, 0);
        if (r == 0) {
            if (!c->ready)
                note_error(st, "server closed the connection before ready");
            if (c->state == C_OPEN)
                st->closed_by_server++;
            conn_fail(w, c, c->state == C_HANDSHAKE ? &st->fail_handshake : &st->fail_closed);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            note_error(st, "recv: %s", strerror(errno));
            conn_fail(w, c, &st->fail_closed);
            return;
        }
        char *data = w->rbuf;
        size_t len = (size_t)r;
        if (c->in.len > c->in.off || c->state == C_HANDSHAKE) {
            buf_add(&c->in, w->rbuf, (size_t)r);
            data = c->in.p + c->in.off;
            len = c->in.len - c->in.off;
        }
        size_t used = 0;
        if (c->state == C_HANDSHAKE) {
            char *e = memmem(data, len, "\r\n\r\n", 4);
            if (!e) {
                if (len > 16384) {
                    note_error(st, "handshake answer too long");
                    conn_fail(w, c, &st->fail_handshake);
                    return;
                }
                continue;
            }
            if (len < 12 || strncmp(data, "HTTP/1.1 101", 12)) {
                char *eol = memchr(data, '\r', len);
                note_error(st, "handshake: %.*s", (int)(eol ? eol - data : 40), data);
                conn_fail(w, c, &st->fail_handshake);
                return;
            }
            used = (size_t)(e + 4 - data);
            conn_opened(w, c);
        }
        long k = parse_frames(w, c, data + used, len - used);
        if (k < 0) {
            conn_flush(w, c);
            conn_fail(w, c, &st->fail_closed);
            return;
        }
        used += (size_t)k;
        if (data == w->rbuf) {
            if (used < len)
                buf_add(&c->in, data + used, len - used);
        } else {
            c->in.off += used;
            if (c->in.off == c->in.len) {
                if (c->in.cap > 4096)
                    buf_free(&c->in);
                else
                    c->in.off = c->in.len = 0;
            }
        }
        if ((size_t)r < w->rcap)
            break;
    }
    if (c->out.len > c->out.off && conn_flush(w, c) < 0)
        conn_fail(w, c, &st->fail_closed);
}

static void conn_on_event(worker_t *w, conn_t *c, uint32_t ev)
{
    wstat_t *st = w->st;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            note_error(st, "connect: %s", strerror(err ? err : ECONNRESET));
            conn_fail(w, c, &st->fail_connect);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        st->connected++;
        conn_send_handshake(w, c);
        if (conn_flush(w, c) < 0)
            conn_fail(w, c, &st->fail_connect);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        conn_on_read(w, c);
        if (c->state == C_DEAD)
            return;
    }
    if ((ev & EPOLLOUT) && conn_flush(w, c) < 0)
        conn_fail(w, c, &st->fail_closed);
}

static void raise_nofile(long need)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)need > rl.rlim_cur)
        die("%ld fds needed per process, limit %llu: use more --procs", need,
            (unsigned long long)rl.rlim_cur);
}

static void worker_init(worker_t *w, wstat_t *st, long base, long step, long total)
{
    memset(w, 0, sizeof *w);
    w->st = st;
    w->base = base;
    w->step = step;
    w->n = total > base ? (total - base + step - 1) / step : 0;
    w->c = calloc((size_t)(w->n ? w->n : 1), sizeof *w->c);
    for (long i = 0; i < w->n; i++) {
        w->c[i].fd = -1;
        w->c[i].gidx = base + i * step;
    }
    w->rate = opt.conn_rate > 0 ? opt.conn_rate / (double)step : 0;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->rcap = 256 * 1024;
    w->rbuf = malloc(w->rcap);
    w->t0 = mono_now();
    st->per_conn_min = UINT64_MAX;
    rng_state ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ real_ns();
}

/* One turn of the event loop; returns after events or timeout_ms. */
static void worker_turn(worker_t *w, int timeout_ms)
{
    double now = mono_now();
    /* start connections within the rate and the pending bound */
    while (w->next < w->n && w->pending < opt.max_pending) {
        if (w->rate > 0 && (double)w->next >= (now - w->t0) * w->rate + 1)
            break;
        conn_start(w, &w->c[w->next++]);
    }
    if (w->next < w->n && w->rate > 0 && timeout_ms > 2)
        timeout_ms = 2;
    struct epoll_event evs[512];
    int k = epoll_wait(w->ep, evs, 512, timeout_ms);
    for (int i = 0; i < k; i++)
        conn_on_event(w, evs[i].data.ptr, evs[i].events);
}

static void worker_sweep_timeouts(worker_t *w)
{
    double now = mono_now();
    for (long i = 0; i < w->next; i++) {
        conn_t *c = &w->c[i];
        if (c->state != C_DEAD && !c->ready && now - c->t_start > opt.connect_timeout) {
            note_error(w->st, "not ready after %.0f s (state %d)", opt.connect_timeout, c->state);
            conn_fail(w, c, &w->st->fail_timeout);
        }
    }
}

static void worker_finish_stats(worker_t *w)
{
    uint64_t mn = UINT64_MAX, mx = 0;
    for (long i = 0; i < w->n; i++) {
        conn_t *c = &w->c[i];
        if (!c->ready)
            continue;
        if (c->ts_frames < mn) mn = c->ts_frames;
        if (c->ts_frames > mx) mx = c->ts_frames;
    }
    w->st->per_conn_min = mn;
    w->st->per_conn_max = mx;
}

static void worker_close_all(worker_t *w)
{
    for (long i = 0; i < w->n; i++)
        if (w->c[i].state != C_DEAD && w->c[i].fd >= 0)
            conn_close(w, &w->c[i]);
}

/* idle / recv worker process */
static void worker_run(wstat_t *st, long base, long step)
{
    worker_t w;
    worker_init(&w, st, base, step, opt.conns);
    raise_nofile(w.n + 64);
    double last_sweep = 0, done_at = 0;
    int phase = 0;
    while (!stop_flag) {
        worker_turn(&w, phase ? 100 : 20);
        double now = mono_now();
        if (phase == 0) {
            if (now - last_sweep > 0.25) {
                worker_sweep_timeouts(&w);
                last_sweep = now;
            }
            if (w.next == w.n && w.pending == 0) {
                st->connect_s = now - w.t0;
                w.t_ready = now;
                phase = 1;
                atomic_store(&st->phase, 1);
            }
            continue;
        }
        if (opt.mode == M_IDLE) {
            if (opt.duration > 0 && now - w.t_ready >= opt.duration)
                break;
            continue;
        }
        if (phase == 1) {
            int done = 0;
            if (opt.expect && w.reached >= w.alive_ready)
                done = 1;
            if (opt.quiet > 0 && w.last_frame > 0 && now - w.last_frame >= opt.quiet)
                done = 1;
            if (opt.duration > 0 && now - w.t_ready >= opt.duration)
                done = 1;
            if (w.alive_ready == 0)
                done = 1;
            if (done) {
                worker_finish_stats(&w);
                phase = 2;
                done_at = now;
                atomic_store(&st->phase, 2);
            }
            continue;
        }
        if (opt.hold >= 0 && now - done_at >= opt.hold)
            break;
    }
    if (phase < 2)
        worker_finish_stats(&w);
    if (st->connect_s == 0)
        st->connect_s = mono_now() - w.t0;
    worker_close_all(&w);
    atomic_store(&st->phase, 3);
}

/* ------------------------------------------------------------ summary */

static void print_conn_summary(double elapsed, int final)
{
    wstat_t t;
    memset(&t, 0, sizeof t);
    t.per_conn_min = UINT64_MAX;
    const char *err = "";
    double cs = 0;
    for (int i = 0; i < nstat; i++) {
        wstat_t *s = &shm[i];
#define ADD(f) t.f += s->f
        ADD(started); ADD(connected); ADD(upgraded); ADD(ready); ADD(failed);
        ADD(fail_connect); ADD(fail_handshake); ADD(fail_timeout); ADD(fail_closed);
        ADD(closed_by_server); ADD(closed_after_ready);
        ADD(frames); ADD(frame_bytes); ADD(ts_frames); ADD(ts_frame_bytes); ADD(pings);
        ADD(sent_frames); ADD(pre_ready_frames);
#undef ADD
        if (s->per_conn_min < t.per_conn_min) t.per_conn_min = s->per_conn_min;
        if (s->per_conn_max > t.per_conn_max) t.per_conn_max = s->per_conn_max;
        if (s->connect_s > cs) cs = s->connect_s;
        if (!err[0] && s->first_error[0]) err = s->first_error;
        h_merge(&t.lat, &s->lat);
    }
    static const char *names[] = { "idle", "recv", "pub-http", "pub-ws" };
    printf("mode=%s\n", names[opt.mode]);
    printf("conns=%ld\nprocs=%d\nsources=%d\n", opt.conns, opt.procs, opt.sources);
    printf("connected=%llu\nupgraded=%llu\nready=%llu\nfailed=%llu\n",
           (unsigned long long)t.connected, (unsigned long long)t.upgraded,
           (unsigned long long)t.ready, (unsigned long long)t.failed);
    printf("fail_connect=%llu\nfail_handshake=%llu\nfail_timeout=%llu\nfail_closed=%llu\n",
           (unsigned long long)t.fail_connect, (unsigned long long)t.fail_handshake,
           (unsigned long long)t.fail_timeout, (unsigned long long)t.fail_closed);
    printf("first_error=%s\n", err[0] ? err : "none");
    printf("connect_s=%.3f\n", cs);
    printf("closed_after_ready=%llu\nclosed_by_server=%llu\npings=%llu\n",
           (unsigned long long)t.closed_after_ready, (unsigned long long)t.closed_by_server,
           (unsigned long long)t.pings);
    printf("pre_ready_frames=%llu\n", (unsigned long long)t.pre_ready_frames);
    printf("frames=%llu\nframe_bytes_avg=%.1f\n", (unsigned long long)t.frames,
           t.frames ? (double)t.frame_bytes / (double)t.frames : 0.0);
    printf("ts_frames=%llu\nts_frame_bytes_avg=%.1f\n", (unsigned long long)t.ts_frames,
           t.ts_frames ? (double)t.ts_frame_bytes / (double)t.ts_frames : 0.0);
    printf("per_conn_min=%llu\nper_conn_max=%llu\n",
           (unsigned long long)(t.per_conn_min == UINT64_MAX ? 0 : t.per_conn_min),
           (unsigned long long)t.per_conn_max);
    if (opt.mode == M_PUB_WS)
        printf("sent=%llu\n", (unsigned long long)t.sent_frames);
    h_print("lat", &t.lat);
    printf("elapsed_s=%.3f\nfinal=%d\n", elapsed, final);
    fflush(stdout);
}

static int run_conn_mode(void)
{
    nstat = opt.procs;
    shm = mmap(NULL, sizeof(wstat_t) * (size_t)nstat, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    memset(shm, 0, sizeof(wstat_t) * (size_t)nstat);
    pid_t pids[MAX_PROCS];
    fflush(stdout);
    for (int i = 0; i < opt.procs; i++) {
        pid_t p = fork();
        if (p < 0)
            die("fork: %s", strerror(errno));
        if (p == 0) {
            worker_run(&shm[i], i, opt.procs);
            _exit(0);
        }
        pids[i] = p;
    }
    double t0 = mono_now();
    int ready_printed = 0, done_printed = 0, alive = opt.procs;
    while (alive > 0) {
        if (stop_flag) {
            for (int i = 0; i < opt.procs; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGTERM);
        }
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            for (int i = 0; i < opt.procs; i++)
                if (pids[i] == p) {
                    pids[i] = -1;
                    alive--;
                    if (atomic_load(&shm[i].phase) != 3)
                        fprintf(stderr, "ws_load: worker %d died (status %d)\n", i, st);
                }
        }
        int minph = 3;
        for (int i = 0; i < opt.procs; i++) {
            int ph = atomic_load(&shm[i].phase);
            if (ph < minph)
                minph = ph;
        }
        if (!ready_printed && minph >= 1) {
            uint64_t ready = 0, failed = 0;
            double cs = 0;
            for (int i = 0; i < opt.procs; i++) {
                ready += shm[i].ready;
                failed += shm[i].failed;
                if (shm[i].connect_s > cs)
                    cs = shm[i].connect_s;
            }
            printf("event=ready conns=%ld ready=%llu failed=%llu connect_s=%.3f\n", opt.conns,
                   (unsigned long long)ready, (unsigned long long)failed, cs);
            fflush(stdout);
            ready_printed = 1;
        }
        if (opt.mode == M_RECV && !done_printed && minph >= 2 && !stop_flag) {
            printf("event=done\n");
            print_conn_summary(mono_now() - t0, 0);
            done_printed = 1;
        }
        if (opt.verbose) {
            static double last;
            if (mono_now() - last > 1) {
                uint64_t r = 0, f = 0, fr = 0;
                for (int i = 0; i < opt.procs; i++)
                    r += shm[i].ready, f += shm[i].failed, fr += shm[i].frames;
                fprintf(stderr, "ws_load: ready=%llu failed=%llu frames=%llu\n",
                        (unsigned long long)r, (unsigned long long)f, (unsigned long long)fr);
                last = mono_now();
            }
        }
        if (alive > 0)
            usleep(20000);
    }
    if (!done_printed) {
        printf("event=exit\n");
        print_conn_summary(mono_now() - t0, 1);
    } else {
        printf("event=exit\n");
        fflush(stdout);
    }
    return 0;
}

/* ------------------------------------------------------ pub-ws */

static int run_pub_ws(void)
{
    opt.conns = 1;
    opt.procs = 1;
    nstat = 1;
    shm = calloc(1, sizeof *shm);
    worker_t w;
    worker_init(&w, shm, 0, 1, 1);
    conn_t *c = &w.c[0];
    hist_t *lat = NULL;
    (void)lat;
    double t0 = mono_now(), tr = 0, t_last_send = 0;
    long sent = 0;
    char *frame = malloc(1 << 20);
    while (!stop_flag) {
        worker_turn(&w, 1);
        double now = mono_now();
        if (c->state == C_DEAD) {
            if (!c->ready)
                break;
            fprintf(stderr, "ws_load: pub-ws connection closed after %ld frames\n", sent);
            break;
        }
        if (!c->ready) {
            if (now - t0 > opt.connect_timeout) {
                note_error(shm, "not ready after %.0f s", opt.connect_timeout);
                conn_fail(&w, c, &shm->fail_timeout);
                break;
            }
            continue;
        }
        if (!tr) {
            tr = now;
            shm->connect_s = now - t0;
            printf("event=ready conns=1 ready=1 failed=0 connect_s=%.3f\n", shm->connect_s);
            fflush(stdout);
        }
        int queued = 0;
        while (sent < opt.count && c->out.len - c->out.off < 256 * 1024) {
            if (opt.msg_rate > 0 && now < tr + (double)sent / opt.msg_rate)
                break;
            size_t l = expand(frame, 1 << 20, opt.body, (uint64_t)(opt.start_n + sent));
            ws_frame(&c->out, 0x1, frame, l);
            sent++;
            shm->sent_frames++;
            queued = 1;
        }
        if (queued) {
            t_last_send = now;
            if (conn_flush(&w, c) < 0) {
                conn_fail(&w, c, &shm->fail_closed);
                break;
            }
        }
        if (sent == opt.count && c->out.len == c->out.off && now - t_last_send >= opt.linger)
            break;
        if (opt.duration > 0 && now - tr > opt.duration)
            break;
    }
    double el = tr ? mono_now() - tr : 0;
    worker_finish_stats(&w);
    worker_close_all(&w);
    print_conn_summary(mono_now() - t0, 1);
    double send_s = t_last_send > tr ? t_last_send - tr : 0;
    printf("send_s=%.3f\nsend_rate=%.1f\n", send_s, send_s > 0 ? (double)sent / send_s : 0.0);
    (void)el;
    fflush(stdout);
    return sent == opt.count ? 0 : 1;
}

/* ------------------------------------------------------ pub-http */

typedef struct {
    int fd, state; /* 0 closed, 1 connecting, 2 open */
    buf_t in, out;
    uint64_t *qn;
    double *qt;
    int qh, qlen; /* ring of requests in flight */
} hconn_t;

static struct {
    int ep;
    hconn_t *c;
    uint64_t *retry;
    long nretry;
    long answered, ok, non2xx, reconnects, bytes_out;
    long status_counts[6];
    int first_bad_status;
    char first_bad_body[200];
    hist_t lat;
    FILE *save;
} H;

static void h_connect(hconn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&opt.dst, sizeof opt.dst) < 0 && errno != EINPROGRESS)
        die("connect %s: %s", opt.url, strerror(errno));
    c->state = 1;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    epoll_ctl(H.ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void h_drop(hconn_t *c, const char *why)
{
    if (opt.verbose)
        fprintf(stderr, "ws_load: publisher connection dropped (%s), %d in flight requeued\n",
                why, c->qlen);
    epoll_ctl(H.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    for (int i = 0; i < c->qlen; i++)
        H.retry[H.nretry++] = c->qn[(c->qh + i) % opt.pipeline];
    c->qlen = c->qh = 0;
    c->in.len = c->in.off = 0;
    c->out.len = c->out.off = 0;
    if (++H.reconnects > 1000)
        die("publisher: too many reconnects (%s)", why);
    h_connect(c);
}

static void h_update_events(hconn_t *c)
{
    struct epoll_event ev = { .events = EPOLLIN | (c->out.len > c->out.off || c->state == 1 ? EPOLLOUT : 0),
                              .data.ptr = c };
    epoll_ctl(H.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int h_flush(hconn_t *c)
{
    while (c->state == 2 && c->out.len > c->out.off) {
        ssize_t r = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (r > 0) {
            c->out.off += (size_t)r;
            H.bytes_out += r;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    if (c->out.off == c->out.len)
        c->out.off = c->out.len = 0;
    h_update_events(c);
    return 0;
}

static void h_queue(hconn_t *c, uint64_t n)
{
    static char body[1 << 16], path[4096], req[1 << 17];
    size_t bl = expand(body, sizeof body, opt.body, n);
    expand(path, sizeof path, opt.url_path, n);
    int k = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: %s\r\n%s", path, opt.url_host,
                     opt.have_ctype ? "" : "Content-Type: application/json\r\n");
    for (int i = 0; i < opt.nheaders; i++)
        k += snprintf(req + k, sizeof req - (size_t)k, "%s\r\n", opt.headers[i]);
    k += snprintf(req + k, sizeof req - (size_t)k, "Content-Length: %zu\r\n\r\n", bl);
    if ((size_t)k + bl > sizeof req)
        die("request too large");
    memcpy(req + k, body, bl);
    buf_add(&c->out, req, (size_t)k + bl);
    int slot = (c->qh + c->qlen) % opt.pipeline;
    c->qn[slot] = n;
    c->qt[slot] = mono_now();
    c->qlen++;
}

/* Parse one response at the start of c->in; returns 1 done, 0 need more, -1 bad. */
static int h_parse(hconn_t *c, int *status, int *close_after, const char **body, size_t *blen)
{
    char *p = c->in.p + c->in.off;
    size_t len = c->in.len - c->in.off;
    char *e = memmem(p, len, "\r\n\r\n", 4);
    if (!e)
        return len > 65536 ? -1 : 0;
    if (len < 12 || strncmp(p, "HTTP/1.", 7))
        return -1;
    *status = atoi(p + 9);
    size_t hlen = (size_t)(e + 4 - p);
    long clen = -1;
    int chunked = 0;
    *close_after = p[7] == '0';
    for (char *l = memchr(p, '\n', hlen) + 1; l < e; l = memchr(l, '\n', (size_t)(e + 2 - l)) + 1) {
        if (!strncasecmp(l, "content-length:", 15))
            clen = atol(l + 15);
        else if (!strncasecmp(l, "transfer-encoding:", 18) && strcasestr(l, "chunked") &&
                 strcasestr(l, "chunked") < (char *)memchr(l, '\n', (size_t)(e + 2 - l)))
            chunked = 1;
        else if (!strncasecmp(l, "connection:", 11)) {
            char *eol = memchr(l, '\r', (size_t)(e + 2 - l));
            char *cl = strcasestr(l, "close");
            if (cl && cl < eol)
                *close_after = 1;
        }
    }
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200))
        clen = 0;
    if (chunked) {
        size_t o = hlen;
        for (;;) {
            char *eol = memmem(p + o, len - o, "\r\n", 2);
            if (!eol)
                return 0;
            size_t sz = strtoul(p + o, NULL, 16);
            size_t start = (size_t)(eol + 2 - p);
            if (sz == 0) {
                char *fin = memmem(p + start - 2, len - (start - 2), "\r\n\r\n", 4);
                if (!fin)
                    return 0;
                *body = p + hlen;
                *blen = 0; /* chunked bodies are not reassembled */
                c->in.off += (size_t)(fin + 4 - p);
                return 1;
            }
            if (len < start + sz + 2)
                return 0;
            o = start + sz + 2;
        }
    }
    if (clen < 0) {
        *close_after = 1; /* body until close: not expected from our servers */
        clen = 0;
    }
    if (len < hlen + (size_t)clen)
        return 0;
    *body = p + hlen;
    *blen = (size_t)clen;
    c->in.off += hlen + (size_t)clen;
    return 1;
}

static void h_on_read(hconn_t *c)
{
    for (;;) {
        buf_reserve(&c->in, 65536);
        ssize_t r = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
        if (r == 0) {
            h_drop(c, "closed by server");
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            h_drop(c, strerror(errno));
            return;
        }
        c->in.len += (size_t)r;
    }
    for (;;) {
        int status = 0, close_after = 0;
        const char *body = NULL;
        size_t blen = 0;
        int k = h_parse(c, &status, &close_after, &body, &blen);
        if (k == 0)
            break;
        if (k < 0 || c->qlen == 0) {
            h_drop(c, "unparsable response");
            return;
        }
        if (status >= 100 && status < 200)
            continue;
        double now = mono_now();
        uint64_t n = c->qn[c->qh];
        h_add(&H.lat, (uint64_t)((now - c->qt[c->qh]) * 1e9));
        c->qh = (c->qh + 1) % opt.pipeline;
        c->qlen--;
        H.answered++;
        if (status >= 200 && status < 300) {
            H.ok++;
        } else {
            H.non2xx++;
            if (!H.first_bad_status) {
                H.first_bad_status = status;
                snprintf(H.first_bad_body, sizeof H.first_bad_body, "%.*s",
                         (int)(blen > 150 ? 150 : blen), body);
                for (char *q = H.first_bad_body; *q; q++)
                    if (*q == '\n' || *q == '\r')
                        *q = ' ';
            }
        }
        if (status / 100 < 6)
            H.status_counts[status / 100]++;
        if (H.save) {
            fprintf(H.save, "%llu\t%d\t", (unsigned long long)n, status);
            for (size_t i = 0; i < blen; i++)
                fputc(body[i] == '\n' || body[i] == '\t' ? ' ' : body[i], H.save);
            fputc('\n', H.save);
        }
        if (close_after) {
            h_drop(c, "Connection: close");
            return;
        }
    }
    if (c->in.off == c->in.len)
        c->in.off = c->in.len = 0;
}

static int run_pub_http(void)
{
    if (!opt.url || strncmp(opt.url, "http://", 7))
        die("pub-http needs --url http://ADDR:PORT/path");
    const char *hp = opt.url + 7;
    const char *slash = strchr(hp, '/');
    size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
    if (hl >= sizeof opt.url_host)
        die("bad --url");
    memcpy(opt.url_host, hp, hl);
    opt.url_host[hl] = 0;
    opt.url_path = strdup(slash ? slash : "/");
    char hostonly[256];
    snprintf(hostonly, sizeof hostonly, "%s", opt.url_host);
    char *colon = strrchr(hostonly, ':');
    const char *port = "80";
    if (colon) {
        *colon = 0;
        port = colon + 1;
    }
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo(hostonly, port, &hints, &ai))
        die("cannot resolve %s", opt.url_host);
    memcpy(&opt.dst, ai->ai_addr, sizeof opt.dst);
    freeaddrinfo(ai);
    if (opt.save && !(H.save = fopen(opt.save, "w")))
        die("%s: %s", opt.save, strerror(errno));

    H.ep = epoll_create1(EPOLL_CLOEXEC);
    H.c = calloc((size_t)opt.pub_conns, sizeof *H.c);
    H.retry = malloc(sizeof(uint64_t) * (size_t)(opt.pub_conns * opt.pipeline + 1) * 2);
    for (int i = 0; i < opt.pub_conns; i++) {
        H.c[i].qn = calloc((size_t)opt.pipeline, sizeof(uint64_t));
        H.c[i].qt = calloc((size_t)opt.pipeline, sizeof(double));
        h_connect(&H.c[i]);
    }
    double t0 = mono_now(), t_first = 0, t_last_answer = 0;
    long issued = 0;
    while (!stop_flag && H.answered < opt.count) {
        double now = mono_now();
        if (opt.duration > 0 && now - t0 > opt.duration)
            break;
        /* issue what is due, to the least busy open connection */
        for (;;) {
            if (!H.nretry && issued >= opt.count)
                break;
            if (!H.nretry && opt.msg_rate > 0 && t_first &&
                now < t_first + (double)issued / opt.msg_rate)
                break;
            hconn_t *best = NULL;
            for (int i = 0; i < opt.pub_conns; i++)
                if (H.c[i].state == 2 && H.c[i].qlen < opt.pipeline &&
                    (!best || H.c[i].qlen < best->qlen))
                    best = &H.c[i];
            if (!best)
                break;
            uint64_t n;
            if (H.nretry)
                n = H.retry[--H.nretry];
            else
                n = (uint64_t)(opt.start_n + issued++);
            if (!t_first)
                t_first = now;
            h_queue(best, n);
            if (h_flush(best) < 0)
                h_drop(best, "send failed");
        }
        int timeout = 50;
        if (opt.msg_rate > 0 && issued < opt.count && t_first) {
            double due = t_first + (double)issued / opt.msg_rate - mono_now();
            timeout = due <= 0 ? 0 : (int)(due * 1000);
            if (timeout > 50)
                timeout = 50;
        }
        struct epoll_event evs[64];
        int k = epoll_wait(H.ep, evs, 64, timeout);
        for (int i = 0; i < k; i++) {
            hconn_t *c = evs[i].data.ptr;
            if (c->state == 1) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err)
                    die("connect %s: %s", opt.url, strerror(err));
                c->state = 2;
                h_update_events(c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                long before = H.answered;
                h_on_read(c);
                if (H.answered > before)
                    t_last_answer = mono_now();
            }
            if ((evs[i].events & EPOLLOUT) && h_flush(c) < 0)
                h_drop(c, "send failed");
        }
    }
    double el = t_last_answer > t_first ? t_last_answer - t_first : 0;
    printf("mode=pub-http\nurl=%s\nsent=%ld\nanswered=%ld\nok=%ld\nnon2xx=%ld\nreconnects=%ld\n",
           opt.url, issued, H.answered, H.ok, H.non2xx, H.reconnects);
    printf("status_2xx=%ld\nstatus_4xx=%ld\nstatus_5xx=%ld\n", H.status_counts[2],
           H.status_counts[4], H.status_counts[5]);
    if (H.first_bad_status)
        printf("first_bad_status=%d\nfirst_bad_body=%s\n", H.first_bad_status, H.first_bad_body);
    printf("send_s=%.3f\nsend_rate=%.1f\n", el, el > 0 ? (double)H.answered / el : 0.0);
    h_print("req", &H.lat);
    fflush(stdout);
    if (H.save)
        fclose(H.save);
    return H.answered == opt.count && H.non2xx == 0 ? 0 : 1;
}

/* ------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *m = argv[1];
    if (!strcmp(m, "idle")) opt.mode = M_IDLE;
    else if (!strcmp(m, "recv")) opt.mode = M_RECV;
    else if (!strcmp(m, "pub-http")) opt.mode = M_PUB_HTTP;
    else if (!strcmp(m, "pub-ws")) opt.mode = M_PUB_WS;
    else die("unknown mode %s (idle, recv, pub-http, pub-ws)", m);

    enum { OPT_HOST = 256, OPT_PORT, OPT_PATH, OPT_PATHS, OPT_SOURCES, OPT_PROCS, OPT_CRATE, OPT_MAXP, OPT_INIT,
           OPT_WAIT, OPT_CTO, OPT_DUR, OPT_EXPECT, OPT_QUIET, OPT_HOLD, OPT_URL, OPT_BODY, OPT_COUNT, OPT_MRATE,
           OPT_PIPE, OPT_PCONNS, OPT_START, OPT_SAVE, OPT_LINGER, OPT_DUMP };
    static const struct option lo[] = {
        { "host", 1, 0, OPT_HOST }, { "port", 1, 0, OPT_PORT }, { "path", 1, 0, OPT_PATH },
        { "paths", 1, 0, OPT_PATHS }, { "conns", 1, 0, 'n' }, { "sources", 1, 0, OPT_SOURCES },
        { "procs", 1, 0, OPT_PROCS }, { "conn-rate", 1, 0, OPT_CRATE },
        { "max-pending", 1, 0, OPT_MAXP }, { "init", 1, 0, OPT_INIT },
        { "wait-type", 1, 0, OPT_WAIT }, { "connect-timeout", 1, 0, OPT_CTO },
        { "duration", 1, 0, OPT_DUR }, { "expect", 1, 0, OPT_EXPECT }, { "quiet", 1, 0, OPT_QUIET },
        { "hold", 1, 0, OPT_HOLD }, { "header", 1, 0, 'H' }, { "url", 1, 0, OPT_URL },
        { "body", 1, 0, OPT_BODY }, { "count", 1, 0, OPT_COUNT }, { "msg-rate", 1, 0, OPT_MRATE },
        { "pipeline", 1, 0, OPT_PIPE }, { "pub-conns", 1, 0, OPT_PCONNS },
        { "start", 1, 0, OPT_START }, { "save", 1, 0, OPT_SAVE }, { "linger", 1, 0, OPT_LINGER }, { "dump", 1, 0, OPT_DUMP },
        { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
    static char *one_path[1] = { "/" };
    opt.paths = one_path;
    opt.npaths = 1;
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "n:H:vh", lo, NULL)) != -1) {
        switch (ch) {
        case OPT_HOST: opt.host = optarg; break;
        case OPT_PORT: opt.port = atoi(optarg); break;
        case OPT_PATH: one_path[0] = optarg; opt.paths = one_path; opt.npaths = 1; break;
        case OPT_PATHS: opt.paths = read_lines(optarg, &opt.npaths); break;
        case 'n': opt.conns = atol(optarg); break;
        case OPT_SOURCES: opt.sources = atoi(optarg); break;
        case OPT_PROCS: opt.procs = atoi(optarg); break;
        case OPT_CRATE: opt.conn_rate = atof(optarg); break;
        case OPT_MAXP: opt.max_pending = atol(optarg); break;
        case OPT_INIT: opt.init = optarg; break;
        case OPT_WAIT: opt.wait_type = optarg; break;
        case OPT_CTO: opt.connect_timeout = atof(optarg); break;
        case OPT_DUR: opt.duration = atof(optarg); break;
        case OPT_EXPECT: opt.expect = atol(optarg); break;
        case OPT_QUIET: opt.quiet = atof(optarg); break;
        case OPT_HOLD: opt.hold = atof(optarg); break;
        case 'H':
            if (opt.nheaders == MAX_HEADERS)
                die("too many headers");
            if (!strchr(optarg, ':'))
                die("header '%s' has no ':'", optarg);
            if (!strncasecmp(optarg, "content-type:", 13))
                opt.have_ctype = 1;
            opt.headers[opt.nheaders++] = optarg;
            break;
        case OPT_URL: opt.url = optarg; break;
        case OPT_BODY: opt.body = optarg; break;
        case OPT_COUNT: opt.count = atol(optarg); break;
        case OPT_MRATE: opt.msg_rate = atof(optarg); break;
        case OPT_PIPE: opt.pipeline = atoi(optarg); break;
        case OPT_PCONNS: opt.pub_conns = atoi(optarg); break;
        case OPT_START: opt.start_n = atol(optarg); break;
        case OPT_SAVE: opt.save = optarg; break;
        case OPT_LINGER: opt.linger = atof(optarg); break;
        case OPT_DUMP: opt.dump = atol(optarg); break;
        case 'v': opt.verbose = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc)
        die("unexpected argument %s", argv[optind]);
    if (opt.conns < 1 || opt.procs < 1 || opt.procs > MAX_PROCS || opt.sources < 1 ||
        opt.sources > 254 || opt.pipeline < 1 || opt.pub_conns < 1 || opt.count < 0 ||
        opt.max_pending < 1)
        die("bad numeric option (see --help)");
    if (opt.procs > opt.conns)
        opt.procs = (int)opt.conns;
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (opt.mode == M_PUB_HTTP)
        return run_pub_http();
    if (!opt.port)
        die("--port is required");
    opt.dst.sin_family = AF_INET;
    opt.dst.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &opt.dst.sin_addr) != 1)
        die("--host must be an IPv4 address");
    if (opt.mode == M_PUB_WS)
        return run_pub_ws();
    return run_conn_mode();
}
