// fuzz-sources: lib/parley_ws.c lib/parley_json.c
/*
 * libFuzzer harness for the WebSocket reader (lib/parley_ws.h).
 *
 * Input: byte 0 picks the flags and limits, byte 1 how many chunk sizes
 * follow (0-15), then those sizes, then the wire bytes.  The wire is read
 * three times, each chunk copied into an allocation of exactly its size
 * (so ASan sees any read past a chunk): whole, byte by byte, and in the
 * chunk sizes given.  The three traces of events (data slices merged) must
 * be equal, and every event must keep the contract: consumed <= given,
 * AGAIN only with everything consumed, data slices inside the chunk,
 * errors 1002/1007/1009 and sticky, close codes valid, text messages
 * valid UTF-8 by an independent whole-buffer validator, sizes within the
 * limits.  Then the writer: a frame written from the wire bytes parses
 * back to the same header and payload, and a close frame with a code and
 * reason taken from them is refused exactly when it is invalid and
 * otherwise reads back through the reader.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley_json.h"
#include "parley_ws.h"

static const uint64_t limits[8] = { 0, 1, 5, 125, 126, 1000, 65535, UINT64_MAX };

typedef struct {
    unsigned char *s;
    size_t         len, cap;
    int            in_data;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->s = realloc(b->s, b->cap);
        assert(b->s != NULL);
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
}

static int ref_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0, k;

    while (i < len) {
        k = parley_utf8_sequence(s + i, len - i);
        if (k == 0) {
            return 0;
        }
        i += k;
    }
    return 1;
}

typedef struct {
    parley_ws_reader_t r;
    buf_t              trace;
    buf_t              msg; /* data of the open message */
    uint64_t           max_frame, max_message;
    int                msg_text, msg_compressed, open;
    int                stopped;
} run_t;

static void record(run_t *run, const parley_ws_read_event_t *ev)
{
    unsigned char hdr[6];

    if (ev->type == PARLEY_WS_READ_AGAIN) {
        return; /* how often depends on the chunking */
    }
    if (ev->type == PARLEY_WS_READ_DATA) {
        assert(run->open);
        if (!run->trace.in_data) {
            put(&run->trace, "D", 1);
            run->trace.in_data = 1;
        }
        put(&run->trace, ev->data, ev->len);
        put(&run->msg, ev->data, ev->len);
        assert(run->msg.len <= run->max_message);
        if (run->msg_text && !run->msg_compressed) {
            /* what has been delivered is a prefix that may still be valid */
            parley_ws_utf8_t u;

            parley_ws_utf8_init(&u);
            assert(parley_ws_utf8_feed(&u, run->msg.s, run->msg.len) == run->msg.len);
        }
        return;
    }
    run->trace.in_data = 0;
    hdr[0] = (unsigned char) ev->type;
    hdr[1] = ev->opcode;
    hdr[2] = ev->compressed;
    hdr[3] = (unsigned char) (ev->close_code >> 8);
    hdr[4] = (unsigned char) ev->close_code;
    hdr[5] = (unsigned char) ev->len;
    put(&run->trace, hdr, sizeof(hdr));

    switch (ev->type) {
    case PARLEY_WS_READ_MESSAGE_START:
        assert(!run->open);
        assert(ev->opcode == PARLEY_WS_OP_TEXT || ev->opcode == PARLEY_WS_OP_BINARY);
        assert(!ev->compressed || (run->r.flags & PARLEY_WS_READ_DEFLATE));
        run->open = 1;
        run->msg_text = ev->opcode == PARLEY_WS_OP_TEXT;
        run->msg_compressed = ev->compressed;
        run->msg.len = 0;
        break;
    case PARLEY_WS_READ_MESSAGE_END:
        assert(run->open);
        if (run->msg_text && !run->msg_compressed) {
            assert(ref_utf8(run->msg.s, run->msg.len));
        }
        run->open = 0;
        break;
    case PARLEY_WS_READ_PING:
    case PARLEY_WS_READ_PONG:
        assert(ev->len <= PARLEY_WS_CONTROL_MAX);
        put(&run->trace, ev->data, ev->len);
        break;
    case PARLEY_WS_READ_CLOSE:
        assert(ev->close_code == PARLEY_WS_CLOSE_NO_STATUS
               || parley_ws_close_code_valid(ev->close_code));
        assert(ev->len <= PARLEY_WS_REASON_MAX);
        assert(ref_utf8(ev->data, ev->len));
        put(&run->trace, ev->data, ev->len);
        break;
    case PARLEY_WS_READ_ERROR:
        assert(ev->close_code == PARLEY_WS_CLOSE_PROTOCOL_ERROR
               || ev->close_code == PARLEY_WS_CLOSE_INVALID_DATA
               || ev->close_code == PARLEY_WS_CLOSE_TOO_BIG);
        break;
    default:
        assert(0);
    }
}

/* feeds one chunk; returns 0 once the reader has stopped (error) */
static int feed(run_t *run, const unsigned char *src, size_t n)
{
    unsigned char         *chunk = malloc(n ? n : 1);
    parley_ws_read_event_t ev;
    size_t                 used = 0, k;

    assert(chunk != NULL);
    memcpy(chunk, src, n);
    for (;;) {
        k = parley_ws_read(&run->r, chunk + used, n - used, &ev);
        assert(k <= n - used);
        used += k;
        if (ev.type == PARLEY_WS_READ_DATA) {
            assert(ev.len > 0);
            assert(ev.data >= chunk && ev.data + ev.len <= chunk + n);
        }
        record(run, &ev);
        if (ev.type == PARLEY_WS_READ_AGAIN) {
            assert(used == n);
            break;
        }
        if (ev.type == PARLEY_WS_READ_ERROR) {
            uint16_t code = ev.close_code;

            /* sticky, consumes nothing */
            assert(parley_ws_read(&run->r, chunk, n, &ev) == 0);
            assert(ev.type == PARLEY_WS_READ_ERROR && ev.close_code == code);
            run->stopped = 1;
            break;
        }
    }
    free(chunk);
    return !run->stopped;
}

static void run_init(run_t *run, unsigned flags, uint64_t max_frame, uint64_t max_message)
{
    memset(run, 0, sizeof(*run));
    run->max_frame = max_frame;
    run->max_message = max_message;
    parley_ws_reader_init(&run->r, max_frame, max_message, flags);
}

static void run_free(run_t *run)
{
    free(run->trace.s);
    free(run->msg.s);
}

static void writer_round_trip(const uint8_t *data, size_t size, unsigned cfg)
{
    static const unsigned ops[4] = { PARLEY_WS_OP_TEXT, PARLEY_WS_OP_BINARY,
                                     PARLEY_WS_OP_PING, PARLEY_WS_OP_CONT };
    unsigned                op = ops[cfg & 3];
    unsigned                flags = (cfg & 4 ? PARLEY_WS_FIN : 0) | (cfg & 8 ? PARLEY_WS_RSV1 : 0);
    size_t                  need = parley_ws_frame_len(size), n, used = 0, got = 0;
    unsigned char          *out = malloc(need);
    parley_ws_parser_t      p;
    parley_ws_parse_event_t ev;

    assert(out != NULL);
    n = parley_ws_write_frame(out, need, op, flags, data, size);
    if (n == 0) {
        /* refused: only invalid combinations */
        assert((op == PARLEY_WS_OP_PING && (!(flags & PARLEY_WS_FIN) || (flags & PARLEY_WS_RSV1)
                                            || size > 125))
               || (op == PARLEY_WS_OP_CONT && (flags & PARLEY_WS_RSV1)));
        free(out);
        return;
    }
    assert(n == need);
    assert(parley_ws_write_frame(out, need - 1, op, flags, data, size) == 0);
    parley_ws_parser_init(&p);
    used = parley_ws_parse(&p, out, n, &ev);
    assert(ev.type == PARLEY_WS_PARSE_HEADER);
    assert(used == parley_ws_header_len(size));
    assert(p.header.len == size && p.header.opcode == op && !p.header.masked);
    assert(p.header.fin == !!(flags & PARLEY_WS_FIN));
    assert(p.header.rsv1 == !!(flags & PARLEY_WS_RSV1));
    while (used < n) {
        used += parley_ws_parse(&p, out + used, n - used, &ev);
        assert(ev.type == PARLEY_WS_PARSE_PAYLOAD);
        assert(memcmp(ev.data, data + got, ev.len) == 0);
        got += ev.len;
    }
    assert(got == size);
    parley_ws_parse(&p, out + used, 0, &ev);
    assert(ev.type == PARLEY_WS_PARSE_FRAME_END);
    free(out);
}

/* a close frame written from the input reads back through the reader */
static void close_round_trip(const uint8_t *data, size_t size)
{
    unsigned               code = size >= 2 ? ((unsigned) data[0] << 8) | data[1] : 0;
    const char            *reason = size > 2 ? (const char *) data + 2 : NULL;
    size_t                 rlen = size > 2 ? size - 2 : 0, n, want;
    unsigned char          out[PARLEY_WS_CONTROL_MAX + 2], w[PARLEY_WS_CONTROL_MAX + 6];
    parley_ws_reader_t     r;
    parley_ws_read_event_t ev;
    int                    ok;

    if (rlen > 130) {
        rlen = 130;
    }
    if (code < 1000 && size >= 3 && data[2] == 0) {
        code = 0; /* sometimes the empty close */
        rlen = 0;
    }
    ok = code == 0 ? rlen == 0
                   : parley_ws_close_code_valid(code) && rlen <= PARLEY_WS_REASON_MAX
                         && ref_utf8((const unsigned char *) reason, rlen);
    want = parley_ws_close_frame_len(code, rlen);
    n = parley_ws_write_close(out, sizeof(out), code, reason, rlen);
    assert(ok ? n == want && n > 0 : n == 0);
    if (n == 0) {
        return;
    }
    assert(out[0] == 0x88 && out[1] == n - 2);
    /* as a client sends it: masked, here with a zero key */
    w[0] = out[0];
    w[1] = (unsigned char) (0x80 | out[1]);
    memset(w + 2, 0, 4);
    memcpy(w + 6, out + 2, n - 2);
    parley_ws_reader_init(&r, 0, 0, 0);
    assert(parley_ws_read(&r, w, n + 4, &ev) == n + 4);
    assert(ev.type == PARLEY_WS_READ_CLOSE);
    assert(ev.close_code == (code == 0 ? PARLEY_WS_CLOSE_NO_STATUS : code));
    assert(ev.len == rlen && (rlen == 0 || memcmp(ev.data, reason, rlen) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_t          whole, bytes, chunks;
    const uint8_t *sizes, *wire;
    size_t         nsizes, wlen, off, i;
    unsigned       cfg, flags;
    uint64_t       max_frame, max_message;

    if (size < 2) {
        return 0;
    }
    cfg = data[0];
    nsizes = data[1] & 15;
    if (size < 2 + nsizes) {
        return 0;
    }
    sizes = data + 2;
    wire = data + 2 + nsizes;
    wlen = size - 2 - nsizes;

    flags = cfg & 1 ? PARLEY_WS_READ_DEFLATE : 0;
    max_frame = limits[(cfg >> 1) & 7];
    max_message = limits[(cfg >> 4) & 7];

    run_init(&whole, flags, max_frame, max_message);
    run_init(&bytes, flags, max_frame, max_message);
    run_init(&chunks, flags, max_frame, max_message);

    feed(&whole, wire, wlen);
    for (off = 0; off < wlen && feed(&bytes, wire + off, 1); off++) {
    }
    for (off = 0, i = 0; off < wlen;) {
        size_t n = nsizes == 0 ? 1 : sizes[i++ % nsizes];

        n = n > wlen - off ? wlen - off : n;
        if (!feed(&chunks, wire + off, n)) {
            break;
        }
        off += n;
        if (nsizes > 0 && i > 4 * wlen + 16) {
            break; /* only zero sizes: no progress */
        }
    }
    if (off < wlen && !chunks.stopped) {
        feed(&chunks, wire + off, wlen - off);
    }

    assert(whole.trace.len == bytes.trace.len);
    assert(whole.trace.len == 0 || memcmp(whole.trace.s, bytes.trace.s, whole.trace.len) == 0);
    assert(whole.trace.len == chunks.trace.len);
    assert(whole.trace.len == 0 || memcmp(whole.trace.s, chunks.trace.s, whole.trace.len) == 0);

    run_free(&whole);
    run_free(&bytes);
    run_free(&chunks);

    writer_round_trip(wire, wlen, cfg >> 4);
    close_round_trip(wire, wlen);
    return 0;
}
