#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley_json.h"
#include "parley_ws.h"

/* ---- helpers ----------------------------------------------------------- */

static const unsigned char rfc_key[4] = { 0x37, 0xfa, 0x21, 0x3d };

/*
 * A client frame: b0 is the first byte (FIN, RSV, opcode), the length is
 * encoded minimally, the payload is masked with key.
 */
static size_t client_frame(unsigned char *dst, unsigned b0, const void *payload,
                           size_t len, const unsigned char key[4])
{
    size_t h = 0, i;

    dst[h++] = (unsigned char) b0;
    if (len < 126) {
        dst[h++] = (unsigned char) (0x80 | len);
    } else if (len <= 0xffff) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (unsigned char) (len >> 8);
        dst[h++] = (unsigned char) len;
    } else {
        dst[h++] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            dst[h++] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
        }
    }
    memcpy(dst + h, key, 4);
    h += 4;
    for (i = 0; i < len; i++) {
        dst[h + i] = ((const unsigned char *) payload)[i] ^ key[i & 3];
    }
    return h + len;
}

/* a trace of reader events, consecutive DATA merged, as text */
typedef struct {
    char  *s;
    size_t len, cap;
    int    in_data;
} trace_t;

static void tr_put(trace_t *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        cr_assert(t->s != NULL);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void tr_str(trace_t *t, const char *s)
{
    tr_put(t, s, strlen(s));
}

static void tr_bytes(trace_t *t, const unsigned char *p, size_t n)
{
    char   esc[8];
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\' && p[i] != '|') {
            tr_put(t, (const char *) p + i, 1);
        } else {
            snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
            tr_str(t, esc);
        }
    }
}

static void tr_event(trace_t *t, const parley_ws_read_event_t *ev)
{
    char buf[64];

    if (ev->type == PARLEY_WS_READ_DATA) {
        if (!t->in_data) {
            tr_str(t, "data:");
            t->in_data = 1;
        }
        tr_bytes(t, ev->data, ev->len);
        return;
    }
    if (ev->type == PARLEY_WS_READ_AGAIN) {
        return;
    }
    if (t->in_data) {
        tr_str(t, "|");
        t->in_data = 0;
    }
    switch (ev->type) {
    case PARLEY_WS_READ_MESSAGE_START:
        snprintf(buf, sizeof(buf), "start:%s%s|",
                 ev->opcode == PARLEY_WS_OP_TEXT ? "text" : "binary",
                 ev->compressed ? "+z" : "");
        tr_str(t, buf);
        break;
    case PARLEY_WS_READ_MESSAGE_END:
        tr_str(t, "end|");
        break;
    case PARLEY_WS_READ_PING:
    case PARLEY_WS_READ_PONG:
        tr_str(t, ev->type == PARLEY_WS_READ_PING ? "ping:" : "pong:");
        tr_bytes(t, ev->data, ev->len);
        tr_str(t, "|");
        break;
    case PARLEY_WS_READ_CLOSE:
        snprintf(buf, sizeof(buf), "close:%u:", ev->close_code);
        tr_str(t, buf);
        tr_bytes(t, ev->data, ev->len);
        tr_str(t, "|");
        break;
    case PARLEY_WS_READ_ERROR:
        snprintf(buf, sizeof(buf), "error:%u|", ev->close_code);
        tr_str(t, buf);
        break;
    default:
        cr_assert_fail("unexpected event %d", ev->type);
    }
}

/*
 * Feeds a copy of wire[0..len) to r in chunks of `step` bytes (0: all at
 * once; SIZE_MAX: sizes from a PRNG seeded with `seed`) and returns the
 * trace (caller frees).  Checks the reader's contract on every call.
 */
static char *feed(parley_ws_reader_t *r, const unsigned char *wire, size_t len,
                  size_t step, unsigned seed)
{
    unsigned char         *buf = malloc(len + 1);
    trace_t                t = { 0 };
    parley_ws_read_event_t ev;
    size_t                 off = 0, n, used, k;
    int                    done = 0;

    cr_assert(buf != NULL);
    memcpy(buf, wire, len);
    tr_str(&t, "");
    srand(seed);

    do {
        if (step == 0) {
            n = len - off;
        } else if (step == SIZE_MAX) {
            n = (size_t) (rand() % 9);
            n = n > len - off ? len - off : n;
        } else {
            n = step > len - off ? len - off : step;
        }
        used = 0;
        for (;;) {
            k = parley_ws_read(r, buf + off + used, n - used, &ev);
            cr_assert(k <= n - used, "consumed %zu of %zu", k, n - used);
            used += k;
            if (ev.type == PARLEY_WS_READ_DATA) {
                cr_assert(ev.len > 0);
                cr_assert(ev.data >= buf + off && ev.data + ev.len <= buf + off + n);
            }
            tr_event(&t, &ev);
            if (ev.type == PARLEY_WS_READ_AGAIN) {
                cr_assert_eq(used, n);
                break;
            }
            if (ev.type == PARLEY_WS_READ_ERROR) {
                done = 1;
                break;
            }
        }
        off += n;
    } while (!done && off < len);

    if (t.in_data) {
        tr_str(&t, "|");
    }
    free(buf);
    return t.s;
}

static char *feed_new(const unsigned char *wire, size_t len, size_t step,
                      uint64_t max_frame, uint64_t max_msg, unsigned flags)
{
    parley_ws_reader_t r;

    parley_ws_reader_init(&r, max_frame, max_msg, flags);
    return feed(&r, wire, len, step, 1);
}

/* the trace, checked to be the same whole, byte by byte and in odd chunks */
static void expect(const unsigned char *wire, size_t len, unsigned flags,
                   const char *want)
{
    static const size_t steps[] = { 0, 1, 2, 3, 5, 7, 13, SIZE_MAX };
    size_t              i;

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char *got = feed_new(wire, len, steps[i], 1 << 20, 1 << 20, flags);

        cr_assert_str_eq(got, want, "step %zu:\n got  %s\n want %s", steps[i], got, want);
        free(got);
    }
}

/* ---- RFC 6455 5.7 examples --------------------------------------------- */

static const unsigned char rfc_hello_unmasked[] = {
    0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
};
static const unsigned char rfc_hello_masked[] = {
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
};
static const unsigned char rfc_fragmented[] = {
    0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f
};
static const unsigned char rfc_ping[] = {
    0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
};
static const unsigned char rfc_pong_masked[] = {
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
};

/* parser events as text, fed `step` bytes at a time */
static void parse_trace(const unsigned char *wire, size_t len, size_t step,
                        char *out, size_t cap)
{
    parley_ws_parser_t      p;
    parley_ws_parse_event_t ev;
    size_t                  off = 0, n, used, k, o = 0;

    parley_ws_parser_init(&p);
    out[0] = '\0';
    do {
        n = step == 0 || step > len - off ? len - off : step;
        used = 0;
        for (;;) {
            k = parley_ws_parse(&p, wire + off + used, n - used, &ev);
            cr_assert(k <= n - used);
            used += k;
            switch (ev.type) {
            case PARLEY_WS_PARSE_AGAIN:
                break;
            case PARLEY_WS_PARSE_HEADER:
                o += snprintf(out + o, cap - o, "H%u%u%u%u:%x:%u:%llu ",
                              p.header.fin, p.header.rsv1, p.header.rsv2,
                              p.header.rsv3, p.header.opcode, p.header.masked,
                              (unsigned long long) p.header.len);
                break;
            case PARLEY_WS_PARSE_PAYLOAD: {
                unsigned char tmp[256];
                size_t        m = ev.len < sizeof(tmp) ? ev.len : sizeof(tmp);

                cr_assert(ev.data >= wire + off && ev.data + ev.len <= wire + off + n);
                parley_ws_unmask(tmp, ev.data, m, p.header.mask, ev.offset);
                for (size_t i = 0; i < m && o + 2 < cap; i++) {
                    out[o++] = (tmp[i] >= 0x20 && tmp[i] < 0x7f) ? (char) tmp[i] : '.';
                }
                out[o] = '\0';
                break;
            }
            case PARLEY_WS_PARSE_FRAME_END:
                o += snprintf(out + o, cap - o, " E ");
                break;
            case PARLEY_WS_PARSE_ERROR:
                o += snprintf(out + o, cap - o, "X%u", ev.close_code);
                return;
            }
            if (ev.type == PARLEY_WS_PARSE_AGAIN) {
                cr_assert_eq(used, n);
                break;
            }
        }
        off += n;
    } while (off < len);
}

static void expect_parse(const unsigned char *wire, size_t len, const char *want)
{
    char   got[1024];
    size_t step;

    for (step = 0; step <= 4; step++) {
        parse_trace(wire, len, step, got, sizeof(got));
        cr_assert_str_eq(got, want, "step %zu", step);
    }
}

Test(ws_rfc, single_frame_unmasked_text_parses)
{
    expect_parse(rfc_hello_unmasked, sizeof(rfc_hello_unmasked),
                 "H1000:1:0:5 Hello E ");
}

Test(ws_rfc, single_frame_masked_text_parses_and_unmasks)
{
    expect_parse(rfc_hello_masked, sizeof(rfc_hello_masked),
                 "H1000:1:1:5 Hello E ");
}

Test(ws_rfc, fragmented_unmasked_text_parses)
{
    expect_parse(rfc_fragmented, sizeof(rfc_fragmented),
                 "H0000:1:0:3 Hel E H1000:0:0:2 lo E ");
}

Test(ws_rfc, ping_and_masked_pong_parse)
{
    expect_parse(rfc_ping, sizeof(rfc_ping), "H1000:9:0:5 Hello E ");
    expect_parse(rfc_pong_masked, sizeof(rfc_pong_masked), "H1000:a:1:5 Hello E ");
}

Test(ws_rfc, lengths_256_and_64k_parse)
{
    unsigned char *w = calloc(1, 10 + 65536);
    char           got[1024];
    parley_ws_parser_t      p;
    parley_ws_parse_event_t ev;
    size_t                  used = 0, total = 0;

    cr_assert(w != NULL);
    w[0] = 0x82;
    w[1] = 0x7e;
    w[2] = 0x01;
    w[3] = 0x00;
    parse_trace(w, 4 + 256, 0, got, sizeof(got));
    cr_assert(strncmp(got, "H1000:2:0:256 ", 14) == 0, "%s", got);
    cr_assert(strstr(got, " E ") != NULL);

    memset(w, 0, 10);
    w[0] = 0x82;
    w[1] = 0x7f;
    w[7] = 0x01; /* 0x0000000000010000 */
    parley_ws_parser_init(&p);
    used += parley_ws_parse(&p, w, 10 + 65536, &ev);
    cr_assert_eq(ev.type, PARLEY_WS_PARSE_HEADER);
    cr_assert_eq(used, 10);
    cr_assert_eq(p.header.len, 65536);
    cr_assert_eq(p.header.opcode, PARLEY_WS_OP_BINARY);
    while (used < 10 + 65536) {
        used += parley_ws_parse(&p, w + used, 10 + 65536 - used, &ev);
        cr_assert_eq(ev.type, PARLEY_WS_PARSE_PAYLOAD);
        total += ev.len;
    }
    cr_assert_eq(total, 65536);
    parley_ws_parse(&p, w + used, 0, &ev);
    cr_assert_eq(ev.type, PARLEY_WS_PARSE_FRAME_END);
    free(w);
}

Test(ws_rfc, writer_reproduces_the_unmasked_examples)
{
    unsigned char out[16];
    unsigned char big[10 + 65536];
    size_t        n;

    n = parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_TEXT, PARLEY_WS_FIN,
                              "Hello", 5);
    cr_assert_eq(n, sizeof(rfc_hello_unmasked));
    cr_assert(memcmp(out, rfc_hello_unmasked, n) == 0);

    n = parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_TEXT, 0, "Hel", 3);
    cr_assert_eq(n, 5);
    n += parley_ws_write_frame(out + n, sizeof(out) - n, PARLEY_WS_OP_CONT,
                               PARLEY_WS_FIN, "lo", 2);
    cr_assert_eq(n, sizeof(rfc_fragmented));
    cr_assert(memcmp(out, rfc_fragmented, n) == 0);

    n = parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_PING, PARLEY_WS_FIN,
                              "Hello", 5);
    cr_assert_eq(n, sizeof(rfc_ping));
    cr_assert(memcmp(out, rfc_ping, n) == 0);

    n = parley_ws_write_header(out, sizeof(out), PARLEY_WS_OP_BINARY,
                               PARLEY_WS_FIN, 256);
    cr_assert_eq(n, 4);
    cr_assert(memcmp(out, "\x82\x7e\x01\x00", 4) == 0);

    memset(big, 0xab, sizeof(big));
    n = parley_ws_write_frame(big, sizeof(big), PARLEY_WS_OP_BINARY,
                              PARLEY_WS_FIN, big + 10, 65536);
    cr_assert_eq(n, sizeof(big));
    cr_assert(memcmp(big, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
}

Test(ws_rfc, reader_takes_the_masked_examples)
{
    unsigned char w[64];
    size_t        n = 0;

    expect(rfc_hello_masked, sizeof(rfc_hello_masked), 0,
           "start:text|data:Hello|end|");
    expect(rfc_pong_masked, sizeof(rfc_pong_masked), 0, "pong:Hello|");

    /* the fragmented example, masked as a client must */
    n += client_frame(w + n, 0x01, "Hel", 3, rfc_key);
    n += client_frame(w + n, 0x80, "lo", 2, rfc_key);
    expect(w, n, 0, "start:text|data:Hello|end|");
}

Test(ws_rfc, reader_refuses_the_unmasked_examples)
{
    expect(rfc_hello_unmasked, sizeof(rfc_hello_unmasked), 0, "error:1002|");
    expect(rfc_ping, sizeof(rfc_ping), 0, "error:1002|");
    expect(rfc_fragmented, sizeof(rfc_fragmented), 0, "error:1002|");
}

Test(ws_rfc, reader_takes_256_and_64k_masked_binary)
{
    static unsigned char payload[65536], w[65536 + 14];
    parley_ws_reader_t     r;
    parley_ws_read_event_t ev;
    size_t                 n, used = 0, total = 0, i;
    size_t                 sizes[] = { 256, 65536 };

    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = (unsigned char) (i * 7);
    }
    for (i = 0; i < 2; i++) {
        n = client_frame(w, 0x82, payload, sizes[i], rfc_key);
        cr_assert_eq(n, sizes[i] + (i == 0 ? 8 : 14));
        parley_ws_reader_init(&r, 1 << 20, 1 << 20, 0);
        used = total = 0;
        used += parley_ws_read(&r, w, n, &ev);
        cr_assert_eq(ev.type, PARLEY_WS_READ_MESSAGE_START);
        while (used < n) {
            used += parley_ws_read(&r, w + used, n - used, &ev);
            cr_assert_eq(ev.type, PARLEY_WS_READ_DATA);
            cr_assert(memcmp(ev.data, payload + total, ev.len) == 0);
            /* unmasked in place */
            cr_assert_eq(ev.data, w + (i == 0 ? 8 : 14) + total);
            total += ev.len;
        }
        cr_assert_eq(total, sizes[i]);
        parley_ws_read(&r, w + used, 0, &ev);
        cr_assert_eq(ev.type, PARLEY_WS_READ_MESSAGE_END);
        parley_ws_read(&r, w + used, 0, &ev);
        cr_assert_eq(ev.type, PARLEY_WS_READ_AGAIN);
    }
}

/* ---- length encoding --------------------------------------------------- */

Test(ws_length, non_minimal_16_bit_length_is_1002)
{
    /* 125 in the 16-bit form */
    unsigned char w[] = { 0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4 };
    parley_ws_parser_t      p;
    parley_ws_parse_event_t ev;
    size_t                  n;

    expect(w, sizeof(w), 0, "error:1002|");
    /* reported as soon as the length is in, before the mask key */
    parley_ws_parser_init(&p);
    n = parley_ws_parse(&p, w, sizeof(w), &ev);
    cr_assert_eq(ev.type, PARLEY_WS_PARSE_ERROR);
    cr_assert_eq(ev.close_code, 1002);
    cr_assert_eq(n, 4);
    /* sticky */
    cr_assert_eq(parley_ws_parse(&p, w + 4, 4, &ev), 0);
    cr_assert_eq(ev.type, PARLEY_WS_PARSE_ERROR);
}

Test(ws_length, non_minimal_64_bit_length_is_1002)
{
    unsigned char w[] = { 0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4 };
    unsigned char small[] = { 0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x05, 1, 2, 3, 4 };

    expect(w, sizeof(w), 0, "error:1002|");
    expect(small, sizeof(small), 0, "error:1002|");
}

Test(ws_length, top_bit_of_64_bit_length_is_1002)
{
    unsigned char w[] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };

    expect(w, sizeof(w), 0, "error:1002|");
}

Test(ws_length, minimal_boundaries_are_accepted)
{
    unsigned char w[14 + 65536];
    unsigned char payload[65536];
    parley_ws_parser_t      p;
    parley_ws_parse_event_t ev;
    size_t                  sizes[] = { 0, 125, 126, 65535, 65536 }, i, n;

    memset(payload, 'a', sizeof(payload));
    for (i = 0; i < 5; i++) {
        n = client_frame(w, 0x82, payload, sizes[i], rfc_key);
        parley_ws_parser_init(&p);
        parley_ws_parse(&p, w, n, &ev);
        cr_assert_eq(ev.type, PARLEY_WS_PARSE_HEADER, "size %zu", sizes[i]);
        cr_assert_eq(p.header.len, sizes[i]);
    }
}

/* ---- header rules ------------------------------------------------------ */

Test(ws_rules, unmasked_client_frame_is_1002)
{
    unsigned char w[] = { 0x82, 0x00 };

    expect(w, sizeof(w), 0, "error:1002|");
}

Test(ws_rules, rsv1_needs_deflate_and_a_first_frame)
{
    unsigned char w[64];
    size_t        n;

    n = client_frame(w, 0xc1, "x", 1, rfc_key);
    expect(w, n, 0, "error:1002|");
    expect(w, n, PARLEY_WS_READ_DEFLATE, "start:text+z|data:x|end|");

    /* RSV1 on a continuation frame */
    n = client_frame(w, 0x41, "a", 1, rfc_key);
    n += client_frame(w + n, 0xc0, "b", 1, rfc_key);
    expect(w, n, PARLEY_WS_READ_DEFLATE, "start:text+z|data:a|error:1002|");

    /* RSV1 on a control frame */
    n = client_frame(w, 0xc9, "", 0, rfc_key);
    expect(w, n, PARLEY_WS_READ_DEFLATE, "error:1002|");
}

Test(ws_rules, rsv2_and_rsv3_are_always_1002)
{
    unsigned char w[16];
    unsigned      b0[] = { 0xa1, 0x91, 0xb2, 0xf1, 0xa9, 0x90 };
    size_t        i, n;

    for (i = 0; i < sizeof(b0) / sizeof(b0[0]); i++) {
        n = client_frame(w, b0[i], "x", 1, rfc_key);
        expect(w, n, 0, "error:1002|");
        expect(w, n, PARLEY_WS_READ_DEFLATE, "error:1002|");
    }
}

Test(ws_rules, unknown_opcodes_are_1002)
{
    unsigned char w[16];
    unsigned      op;
    size_t        n;

    for (op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10)) {
            continue;
        }
        n = client_frame(w, 0x80 | op, "", 0, rfc_key);
        expect(w, n, 0, "error:1002|");
        n = client_frame(w, op, "", 0, rfc_key); /* FIN clear too */
        expect(w, n, 0, "error:1002|");
    }
}

Test(ws_rules, control_frames_must_be_short_and_final)
{
    unsigned char payload[126], w[256];
    size_t        n;

    memset(payload, 'p', sizeof(payload));
    n = client_frame(w, 0x89, payload, 125, rfc_key);
    {
        char want[200] = "ping:";

        memset(want + 5, 'p', 125);
        strcpy(want + 130, "|");
        expect(w, n, 0, want);
    }
    n = client_frame(w, 0x89, payload, 126, rfc_key);
    expect(w, n, 0, "error:1002|");
    n = client_frame(w, 0x8a, payload, 126, rfc_key);
    expect(w, n, 0, "error:1002|");
    n = client_frame(w, 0x88, payload, 126, rfc_key);
    expect(w, n, 0, "error:1002|");

    n = client_frame(w, 0x09, "x", 1, rfc_key); /* fragmented ping */
    expect(w, n, 0, "error:1002|");
    n = client_frame(w, 0x08, "\x03\xe8", 2, rfc_key); /* fragmented close */
    expect(w, n, 0, "error:1002|");
}

Test(ws_rules, control_frames_interleave_with_fragments)
{
    unsigned char w[128];
    size_t        n = 0;

    n += client_frame(w + n, 0x01, "Hel", 3, rfc_key);
    n += client_frame(w + n, 0x89, "p1", 2, rfc_key);
    n += client_frame(w + n, 0x00, "l", 1, rfc_key);
    n += client_frame(w + n, 0x8a, "", 0, rfc_key);
    n += client_frame(w + n, 0x80, "o", 1, rfc_key);
    n += client_frame(w + n, 0x82, "\x00\x01", 2, rfc_key);
    expect(w, n, 0,
           "start:text|data:Hel|ping:p1|data:l|pong:|data:o|end|"
           "start:binary|data:\\x00\\x01|end|");
}

Test(ws_rules, close_may_come_inside_a_fragmented_message)
{
    unsigned char w[64];
    size_t        n = 0;

    n += client_frame(w + n, 0x01, "ab", 2, rfc_key);
    n += client_frame(w + n, 0x88, "\x03\xe9", 2, rfc_key);
    n += client_frame(w + n, 0x80, "c", 1, rfc_key); /* after close: ignored */
    expect(w, n, 0, "start:text|data:ab|close:1001:|");
}

Test(ws_rules, continuation_without_a_message_is_1002)
{
    unsigned char w[64];
    size_t        n;

    n = client_frame(w, 0x80, "x", 1, rfc_key);
    expect(w, n, 0, "error:1002|");
    n = client_frame(w, 0x00, "x", 1, rfc_key);
    expect(w, n, 0, "error:1002|");

    /* a continuation after a finished message */
    n = client_frame(w, 0x81, "a", 1, rfc_key);
    n += client_frame(w + n, 0x80, "b", 1, rfc_key);
    expect(w, n, 0, "start:text|data:a|end|error:1002|");
}

Test(ws_rules, new_data_frame_inside_a_message_is_1002)
{
    unsigned char w[64];
    size_t        n;

    n = client_frame(w, 0x01, "a", 1, rfc_key);
    n += client_frame(w + n, 0x81, "b", 1, rfc_key);
    expect(w, n, 0, "start:text|data:a|error:1002|");

    n = client_frame(w, 0x02, "a", 1, rfc_key);
    n += client_frame(w + n, 0x01, "b", 1, rfc_key);
    expect(w, n, 0, "start:binary|data:a|error:1002|");
}

Test(ws_rules, errors_are_sticky)
{
    unsigned char          w[] = { 0x83, 0x80, 1, 2, 3, 4, 0x81, 0x80, 1, 2, 3, 4 };
    parley_ws_reader_t     r;
    parley_ws_read_event_t ev;
    size_t                 n;

    parley_ws_reader_init(&r, 100, 100, 0);
    n = parley_ws_read(&r, w, sizeof(w), &ev);
    cr_assert_eq(ev.type, PARLEY_WS_READ_ERROR);
    cr_assert_eq(ev.close_code, 1002);
    cr_assert_eq(n, 6);
    cr_assert_eq(parley_ws_read(&r, w + n, sizeof(w) - n, &ev), 0);
    cr_assert_eq(ev.type, PARLEY_WS_READ_ERROR);
    cr_assert_eq(ev.close_code, 1002);
}

/* ---- limits ------------------------------------------------------------ */

Test(ws_limits, frame_over_max_frame_is_1009_before_its_payload)
{
    unsigned char          payload[200], w[256];
    parley_ws_reader_t     r;
    parley_ws_read_event_t ev;
    size_t                 n, k;
    char                  *got;

    memset(payload, 'a', sizeof(payload));
    n = client_frame(w, 0x82, payload, 101, rfc_key);
    parley_ws_reader_init(&r, 100, 1000, 0);
    k = parley_ws_read(&r, w, n, &ev);
    cr_assert_eq(ev.type, PARLEY_WS_READ_ERROR);
    cr_assert_eq(ev.close_code, 1009);
    cr_assert_eq(k, 2 + 4, "payload must not be read");

    n = client_frame(w, 0x82, payload, 100, rfc_key);
    got = feed_new(w, n, 1, 100, 1000, 0);
    cr_assert(strncmp(got, "start:binary|data:", 18) == 0);
    cr_assert(strstr(got, "|end|") != NULL);
    free(got);
}

Test(ws_limits, message_over_max_message_is_1009_on_the_frame_that_crosses)
{
    unsigned char w[256];
    size_t        n = 0;
    char         *got;

    n += client_frame(w + n, 0x02, "aaaa", 4, rfc_key);
    n += client_frame(w + n, 0x00, "bbbb", 4, rfc_key);
    n += client_frame(w + n, 0x80, "cc", 2, rfc_key);
    got = feed_new(w, n, 0, 100, 10, 0);
    cr_assert_str_eq(got, "start:binary|data:aaaabbbbcc|end|");
    free(got);
    got = feed_new(w, n, 0, 100, 9, 0);
    cr_assert_str_eq(got, "start:binary|data:aaaabbbb|error:1009|");
    free(got);

    /* the limit is per message: it starts again after each */
    n = client_frame(w, 0x82, "12345678", 8, rfc_key);
    n += client_frame(w + n, 0x82, "12345678", 8, rfc_key);
    got = feed_new(w, n, 3, 8, 8, 0);
    cr_assert_str_eq(got, "start:binary|data:12345678|end|start:binary|data:12345678|end|");
    free(got);
}

Test(ws_limits, zero_limits_allow_only_empty_payloads)
{
    unsigned char w[64];
    size_t        n;
    char         *got;

    n = client_frame(w, 0x81, "", 0, rfc_key);
    n += client_frame(w + n, 0x89, "ping", 4, rfc_key); /* control: not limited */
    n += client_frame(w + n, 0x81, "x", 1, rfc_key);
    got = feed_new(w, n, 0, 0, 0, 0);
    cr_assert_str_eq(got, "start:text|end|ping:ping|error:1009|");
    free(got);
}

Test(ws_limits, huge_64_bit_length_is_1009_not_a_wait)
{
    unsigned char w[] = { 0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          1, 2, 3, 4 };
    char *got = feed_new(w, sizeof(w), 0, UINT64_MAX, UINT64_MAX - 1, 0);

    /* with unlimited-looking limits the frame is accepted and waits */
    cr_assert_str_eq(got, "start:binary|");
    free(got);
    expect(w, sizeof(w), 0, "error:1009|");
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* whole-buffer reference: parley_json's validator, sequence by sequence */
static int ref_valid(const unsigned char *s, size_t len)
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

Test(ws_utf8, incremental_validator_matches_the_reference)
{
    unsigned char s[12];
    unsigned      seed = 12345;
    size_t        iter, len, i, cut;

    for (iter = 0; iter < 200000; iter++) {
        len = (size_t) (rand_r(&seed) % sizeof(s));
        for (i = 0; i < len; i++) {
            unsigned v = (unsigned) rand_r(&seed);
            /* bias toward bytes that make interesting sequences */
            s[i] = (unsigned char) ((v & 3) == 0 ? v >> 8 : 0x80 | ((v >> 8) & 0x7f));
            if ((v & 15) == 1) {
                s[i] = (unsigned char) (0xc0 + ((v >> 8) % 0x38));
            }
        }
        cut = len == 0 ? 0 : (size_t) rand_r(&seed) % (len + 1);
        {
            parley_ws_utf8_t u;
            size_t           a, b;
            int              ok;

            parley_ws_utf8_init(&u);
            a = parley_ws_utf8_feed(&u, s, cut);
            if (a < cut) {
                ok = 0;
            } else {
                b = parley_ws_utf8_feed(&u, s + cut, len - cut);
                ok = b == len - cut && parley_ws_utf8_complete(&u);
            }
            cr_assert_eq(ok, ref_valid(s, len), "iter %zu", iter);
            cr_assert_eq(parley_ws_utf8_valid(s, len), ref_valid(s, len));
        }
    }
}

Test(ws_utf8, fails_at_the_first_impossible_byte)
{
    static const struct {
        const char *s;
        size_t      bad; /* offset of the first impossible byte */
    } cases[] = {
        { "\xc0\x80", 0 },         /* overlong start */
        { "\xc1\xbf", 0 },
        { "ab\xf5", 2 },
        { "\xff", 0 },
        { "\x80", 0 },             /* lone continuation */
        { "\xe0\x80\x80", 1 },     /* overlong 3-byte */
        { "\xed\xa0\x80", 1 },     /* surrogate */
        { "\xf0\x80\x80\x80", 1 }, /* overlong 4-byte */
        { "\xf4\x90\x80\x80", 1 }, /* above U+10FFFF */
        { "\xe2\x82x", 2 },        /* truncated by ASCII */
        { "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 12 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parley_ws_utf8_t u;

        parley_ws_utf8_init(&u);
        cr_assert_eq(parley_ws_utf8_feed(&u, (const unsigned char *) cases[i].s,
                                         strlen(cases[i].s)),
                     cases[i].bad, "case %zu", i);
    }
}

/* 1-, 2-, 3- and 4-byte code points */
static const char greek[] = "a\xc2\xa9\xe2\x82\xac\xf0\x9f\x98\x80z\xce\xba\xe1\xbd\xb9";

Test(ws_utf8, text_split_between_frames_at_every_position)
{
    unsigned char w[128];
    size_t        len = strlen(greek), cut, n;
    char          want[256];
    trace_t       t = { 0 };

    tr_str(&t, "start:text|data:");
    tr_bytes(&t, (const unsigned char *) greek, len);
    tr_str(&t, "|end|");
    snprintf(want, sizeof(want), "%s", t.s);
    free(t.s);

    for (cut = 0; cut <= len; cut++) {
        n = client_frame(w, 0x01, greek, cut, rfc_key);
        n += client_frame(w + n, 0x80, greek + cut, len - cut, rfc_key);
        expect(w, n, 0, want);
    }
    /* three frames, every pair of cuts */
    for (cut = 0; cut <= len; cut++) {
        size_t cut2;

        for (cut2 = cut; cut2 <= len; cut2++) {
            n = client_frame(w, 0x01, greek, cut, rfc_key);
            n += client_frame(w + n, 0x00, greek + cut, cut2 - cut, rfc_key);
            n += client_frame(w + n, 0x80, greek + cut2, len - cut2, rfc_key);
            expect(w, n, 0, want);
        }
    }
}

Test(ws_utf8, invalid_text_is_1007_after_the_valid_prefix)
{
    unsigned char w[64];
    size_t        n;

    n = client_frame(w, 0x81, "ab\xc0\x80" "cd", 6, rfc_key);
    expect(w, n, 0, "start:text|data:ab|error:1007|");
    n = client_frame(w, 0x81, "\xff", 1, rfc_key);
    expect(w, n, 0, "start:text|error:1007|");
    /* binary is not checked */
    n = client_frame(w, 0x82, "\xff", 1, rfc_key);
    expect(w, n, 0, "start:binary|data:\\xff|end|");
    /* compressed text is the inflater's to check */
    n = client_frame(w, 0xc1, "\xff", 1, rfc_key);
    expect(w, n, PARLEY_WS_READ_DEFLATE, "start:text+z|data:\\xff|end|");
}

Test(ws_utf8, invalid_text_fails_fast_before_the_message_ends)
{
    unsigned char w[64];
    size_t        n;

    /* the first frame ends in F4 90: no continuation can make it valid */
    n = client_frame(w, 0x01, "ok\xf4\x90", 4, rfc_key);
    expect(w, n, 0, "start:text|data:ok\\xf4|error:1007|");
    /* an incomplete but still possible sequence waits */
    n = client_frame(w, 0x01, "ok\xf4\x8f", 4, rfc_key);
    expect(w, n, 0, "start:text|data:ok\\xf4\\x8f|");
}

Test(ws_utf8, truncated_text_at_message_end_is_1007)
{
    unsigned char w[64];
    size_t        n;

    n = client_frame(w, 0x81, "ok\xe2\x82", 4, rfc_key);
    expect(w, n, 0, "start:text|data:ok\\xe2\\x82|error:1007|");
    n = client_frame(w, 0x01, "ok\xe2", 3, rfc_key);
    n += client_frame(w + n, 0x80, "\x82", 1, rfc_key);
    expect(w, n, 0, "start:text|data:ok\\xe2\\x82|error:1007|");
    n = client_frame(w, 0x01, "ok\xe2", 3, rfc_key);
    n += client_frame(w + n, 0x80, "\x82\xac", 2, rfc_key);
    expect(w, n, 0, "start:text|data:ok\\xe2\\x82\\xac|end|");
}

Test(ws_utf8, every_split_of_an_invalid_text_gives_the_same_error)
{
    /* valid, then a surrogate at offset 4 */
    static const char bad[] = "\xc2\xa9" "ab\xed\xa0\x80xy";
    unsigned char     w[64];
    size_t            len = sizeof(bad) - 1, cut, n;

    for (cut = 0; cut <= len; cut++) {
        char  *got;
        size_t step;

        n = client_frame(w, 0x01, bad, cut, rfc_key);
        n += client_frame(w + n, 0x80, bad + cut, len - cut, rfc_key);
        for (step = 0; step < 4; step++) {
            got = feed_new(w, n, step, 100, 100, 0);
            /* the valid prefix, "\xc2\xa9ab" plus ED when it may continue */
            cr_assert(strncmp(got, "start:text|data:\\xc2\\xa9ab", 26) == 0, "%s", got);
            cr_assert(strstr(got, "error:1007|") != NULL, "cut %zu: %s", cut, got);
            cr_assert(strstr(got, "xy") == NULL);
            free(got);
        }
    }
}

/* ---- close frames ------------------------------------------------------ */

Test(ws_close, empty_close_reports_1005)
{
    unsigned char w[16];
    size_t        n = client_frame(w, 0x88, "", 0, rfc_key);

    expect(w, n, 0, "close:1005:|");
}

Test(ws_close, one_byte_close_is_1002)
{
    unsigned char w[16];
    size_t        n = client_frame(w, 0x88, "\x03", 1, rfc_key);

    expect(w, n, 0, "error:1002|");
}

Test(ws_close, valid_codes_are_reported_with_their_reason)
{
    unsigned      codes[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                              3000, 3999, 4000, 4999 };
    unsigned char p[16], w[32];
    char          want[64];
    size_t        i, n;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        p[0] = (unsigned char) (codes[i] >> 8);
        p[1] = (unsigned char) codes[i];
        memcpy(p + 2, "bye \xe2\x82\xac", 7);
        n = client_frame(w, 0x88, p, 9, rfc_key);
        snprintf(want, sizeof(want), "close:%u:bye \\xe2\\x82\\xac|", codes[i]);
        expect(w, n, 0, want);
    }
}

Test(ws_close, invalid_codes_are_1002)
{
    unsigned      codes[] = { 0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015,
                              1016, 1100, 2000, 2999, 5000, 65535 };
    unsigned char p[2], w[16];
    size_t        i, n;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        p[0] = (unsigned char) (codes[i] >> 8);
        p[1] = (unsigned char) codes[i];
        n = client_frame(w, 0x88, p, 2, rfc_key);
        expect(w, n, 0, "error:1002|");
    }
}

Test(ws_close, invalid_utf8_reason_is_1007)
{
    unsigned char w[16];
    size_t        n = client_frame(w, 0x88, "\x03\xe8\xce", 3, rfc_key);

    expect(w, n, 0, "error:1007|");
    n = client_frame(w, 0x88, "\x03\xe8\xed\xa0\x80", 5, rfc_key);
    expect(w, n, 0, "error:1007|");
}

Test(ws_close, input_after_close_is_discarded)
{
    unsigned char          w[64];
    parley_ws_reader_t     r;
    parley_ws_read_event_t ev;
    size_t                 n, k;

    n = client_frame(w, 0x88, "\x03\xe8", 2, rfc_key);
    n += client_frame(w + n, 0x81, "late", 4, rfc_key);
    parley_ws_reader_init(&r, 100, 100, 0);
    k = parley_ws_read(&r, w, n, &ev);
    cr_assert_eq(ev.type, PARLEY_WS_READ_CLOSE);
    cr_assert_eq(ev.close_code, 1000);
    cr_assert_eq(k, 8);
    cr_assert_eq(parley_ws_read(&r, w + k, n - k, &ev), n - k);
    cr_assert_eq(ev.type, PARLEY_WS_READ_AGAIN);
}

Test(ws_close, code_table_and_names)
{
    size_t                        n, i;
    const parley_ws_close_info_t *t = parley_ws_close_table(&n);

    cr_assert_eq(n, 16);
    for (i = 0; i < n; i++) {
        cr_assert_eq(t[i].code, 1000 + i);
        cr_assert_eq(t[i].on_wire, parley_ws_close_code_valid(t[i].code));
        cr_assert_str_eq(parley_ws_close_name(t[i].code), t[i].name);
    }
    cr_assert_str_eq(parley_ws_close_name(1002), "Protocol Error");
    cr_assert_str_eq(parley_ws_close_name(1009), "Message Too Big");
    cr_assert_str_eq(parley_ws_close_name(3001), "Registered");
    cr_assert_str_eq(parley_ws_close_name(4321), "Private Use");
    cr_assert_null(parley_ws_close_name(999));
    cr_assert_null(parley_ws_close_name(2000));
    cr_assert_null(parley_ws_close_name(5000));
    cr_assert(!parley_ws_close_code_valid(2999));
    cr_assert(parley_ws_close_code_valid(3000));
    cr_assert(parley_ws_close_code_valid(4999));
    cr_assert(!parley_ws_close_code_valid(5000));
}

/* ---- writer ------------------------------------------------------------ */

Test(ws_writer, exact_sizes)
{
    cr_assert_eq(parley_ws_frame_len(0), 2);
    cr_assert_eq(parley_ws_frame_len(125), 127);
    cr_assert_eq(parley_ws_frame_len(126), 130);
    cr_assert_eq(parley_ws_frame_len(65535), 65539);
    cr_assert_eq(parley_ws_frame_len(65536), 65546);
    cr_assert_eq(parley_ws_frame_len(SIZE_MAX), 0);
    cr_assert_eq(parley_ws_header_len(UINT64_MAX >> 1), 10);
    cr_assert_eq(parley_ws_close_frame_len(0, 0), 2);
    cr_assert_eq(parley_ws_close_frame_len(1000, 0), 4);
    cr_assert_eq(parley_ws_close_frame_len(1000, 123), 127);
    cr_assert_eq(parley_ws_close_frame_len(1000, 124), 0);
}

Test(ws_writer, every_size_round_trips_through_the_parser_with_exact_cap)
{
    static unsigned char payload[70000], out[70000 + 10];
    size_t               sizes[] = { 0, 1, 125, 126, 127, 65535, 65536, 70000 };
    size_t               i, n, want;
    parley_ws_parser_t      p;
    parley_ws_parse_event_t ev;

    for (i = 0; i < sizeof(payload); i++) {
        payload[i] = (unsigned char) (i ^ (i >> 8));
    }
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        want = parley_ws_frame_len(sizes[i]);
        cr_assert_eq(parley_ws_write_frame(out, want - 1, PARLEY_WS_OP_BINARY,
                                           PARLEY_WS_FIN, payload, sizes[i]),
                     0);
        n = parley_ws_write_frame(out, want, PARLEY_WS_OP_BINARY,
                                  PARLEY_WS_FIN | PARLEY_WS_RSV1, payload, sizes[i]);
        cr_assert_eq(n, want);
        parley_ws_parser_init(&p);
        cr_assert_eq(parley_ws_parse(&p, out, n, &ev), parley_ws_header_len(sizes[i]));
        cr_assert_eq(ev.type, PARLEY_WS_PARSE_HEADER);
        cr_assert_eq(p.header.len, sizes[i]);
        cr_assert(p.header.fin && p.header.rsv1 && !p.header.masked);
        cr_assert(memcmp(out + parley_ws_header_len(sizes[i]), payload, sizes[i]) == 0);
    }
}

Test(ws_writer, refuses_invalid_frames)
{
    unsigned char out[300], payload[126] = { 0 };

    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_PING,
                                       PARLEY_WS_FIN, payload, 126), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_PING, 0,
                                       payload, 1), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_PONG,
                                       PARLEY_WS_FIN | PARLEY_WS_RSV1, payload, 1), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_CONT,
                                       PARLEY_WS_RSV1, payload, 1), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), 3, PARLEY_WS_FIN, payload, 1), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), 0xb, PARLEY_WS_FIN, payload, 1), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_TEXT, 0x20,
                                       payload, 1), 0);
    cr_assert_eq(parley_ws_write_header(out, sizeof(out), PARLEY_WS_OP_BINARY,
                                        PARLEY_WS_FIN, UINT64_MAX), 0);
    cr_assert_eq(parley_ws_write_header(out, 3, PARLEY_WS_OP_BINARY,
                                        PARLEY_WS_FIN, 200), 0);
    cr_assert_eq(parley_ws_write_frame(out, sizeof(out), PARLEY_WS_OP_PONG,
                                       PARLEY_WS_FIN, payload, 125), 127);
}

Test(ws_writer, close_frames)
{
    unsigned char out[200];
    char          reason[124];

    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 0, NULL, 0), 2);
    cr_assert(memcmp(out, "\x88\x00", 2) == 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1000, "bye", 3), 7);
    cr_assert(memcmp(out, "\x88\x05\x03\xe8" "bye", 7) == 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1009, NULL, 0), 4);
    cr_assert(memcmp(out, "\x88\x02\x03\xf1", 4) == 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 4000, "\xe2\x82\xac", 3), 7);

    memset(reason, 'r', sizeof(reason));
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1000, reason, 123), 127);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1000, reason, 124), 0);
    cr_assert_eq(parley_ws_write_close(out, 126, 1000, reason, 123), 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1005, NULL, 0), 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1006, NULL, 0), 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 999, NULL, 0), 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 1000, "\xff", 1), 0);
    cr_assert_eq(parley_ws_write_close(out, sizeof(out), 0, "x", 1), 0);
}

/* a server close frame, masked as a client would send it, reads back */
Test(ws_writer, close_frame_reads_back)
{
    unsigned char out[64], w[64];
    size_t        n = parley_ws_write_close(out, sizeof(out), 1001, "going", 5);

    cr_assert_eq(n, 9);
    n = client_frame(w, out[0], out + 2, n - 2, rfc_key);
    expect(w, n, 0, "close:1001:going|");
}

/* ---- masking ----------------------------------------------------------- */

Test(ws_mask, unmasking_in_slices_at_any_offset_equals_whole)
{
    unsigned char src[100], whole[100], parts[100];
    unsigned char key[4] = { 0xde, 0xad, 0xbe, 0xef };
    size_t        i, a, b;

    for (i = 0; i < sizeof(src); i++) {
        src[i] = (unsigned char) (i * 31 + 7);
    }
    parley_ws_unmask(whole, src, sizeof(src), key, 0);
    for (i = 0; i < sizeof(src); i++) {
        cr_assert_eq(whole[i], src[i] ^ key[i & 3]);
    }
    for (a = 0; a <= 20; a++) {
        for (b = a; b <= 100; b += 9) {
            memcpy(parts, src, sizeof(src));
            parley_ws_unmask(parts, parts, a, key, 0);
            parley_ws_unmask(parts + a, parts + a, b - a, key, a);
            parley_ws_unmask(parts + b, parts + b, 100 - b, key, b);
            cr_assert(memcmp(parts, whole, sizeof(whole)) == 0, "%zu %zu", a, b);
        }
    }
}

/* ---- random streams: chunking never changes the outcome ---------------- */

typedef struct {
    unsigned char *w;
    size_t         len, cap;
    trace_t        want;
} stream_t;

static void st_frame(stream_t *s, unsigned b0, const unsigned char *p, size_t n,
                     unsigned *seed)
{
    unsigned char key[4];
    size_t        i;

    if (s->len + n + 14 > s->cap) {
        s->cap = (s->len + n + 14) * 2;
        s->w = realloc(s->w, s->cap);
        cr_assert(s->w != NULL);
    }
    for (i = 0; i < 4; i++) {
        key[i] = (unsigned char) rand_r(seed);
    }
    s->len += client_frame(s->w + s->len, b0, p, n, key);
}

/* random valid UTF-8 of about n bytes */
static size_t random_text(unsigned char *dst, size_t n, unsigned *seed)
{
    static const char *pieces[] = { "a", "Z", " ", "{\"k\":1}", "\xc3\xa9",
                                    "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
                                    "\xf4\x8f\xbf\xbf", "\xef\xbf\xbd" };
    size_t o = 0, k;

    while (o < n) {
        const char *p = pieces[rand_r(seed) % 10];

        k = strlen(p);
        if (o + k > n) {
            break;
        }
        memcpy(dst + o, p, k);
        o += k;
    }
    return o;
}

static void want_event(stream_t *s, parley_ws_read_rc_t type, unsigned opcode,
                       const unsigned char *p, size_t n)
{
    parley_ws_read_event_t ev = { 0 };

    ev.type = type;
    ev.opcode = (uint8_t) opcode;
    ev.data = p;
    ev.len = n;
    ev.close_code = 1000;
    tr_event(&s->want, &ev);
}

static void random_stream(stream_t *s, unsigned seed)
{
    unsigned char msg[3000], ctl[125];
    unsigned      nmsg = 1 + (unsigned) rand_r(&seed) % 12, m;

    memset(s, 0, sizeof(*s));
    tr_str(&s->want, "");
    for (m = 0; m < nmsg; m++) {
        int    text = rand_r(&seed) & 1;
        size_t len = (size_t) rand_r(&seed) % (rand_r(&seed) % 4 == 0 ? 3000 : 200);
        size_t off = 0, nfrag = 1 + (size_t) rand_r(&seed) % 4, f;

        if (text) {
            len = random_text(msg, len, &seed);
        } else {
            for (size_t i = 0; i < len; i++) {
                msg[i] = (unsigned char) rand_r(&seed);
            }
        }
        want_event(s, PARLEY_WS_READ_MESSAGE_START, text ? 1 : 2, NULL, 0);
        for (f = 0; f < nfrag; f++) {
            size_t piece = f + 1 == nfrag ? len - off
                                          : (size_t) rand_r(&seed) % (len - off + 1);
            unsigned b0 = (f == 0 ? (text ? 1u : 2u) : 0u) | (f + 1 == nfrag ? 0x80u : 0u);

            st_frame(s, b0, msg + off, piece, &seed);
            if (piece > 0) {
                want_event(s, PARLEY_WS_READ_DATA, 0, msg + off, piece);
            }
            if (f + 1 == nfrag) {
                want_event(s, PARLEY_WS_READ_MESSAGE_END, 0, NULL, 0);
            }
            off += piece;
            if (rand_r(&seed) % 3 == 0) {
                size_t cl = (size_t) rand_r(&seed) % 126;

                for (size_t i = 0; i < cl; i++) {
                    ctl[i] = (unsigned char) rand_r(&seed);
                }
                if (rand_r(&seed) & 1) {
                    st_frame(s, 0x89, ctl, cl, &seed);
                    want_event(s, PARLEY_WS_READ_PING, 0, ctl, cl);
                } else {
                    st_frame(s, 0x8a, ctl, cl, &seed);
                    want_event(s, PARLEY_WS_READ_PONG, 0, ctl, cl);
                }
            }
        }
    }
    if (rand_r(&seed) & 1) {
        st_frame(s, 0x88, (const unsigned char *) "\x03\xe8ok", 4, &seed);
        want_event(s, PARLEY_WS_READ_CLOSE, 0, (const unsigned char *) "ok", 2);
    }
}

Test(ws_stream, random_valid_streams_read_the_same_in_any_chunking)
{
    static const size_t steps[] = { 0, 1, 2, 3, 4, 5, 8, 13, 100, 4096, SIZE_MAX };
    unsigned            seed;

    for (seed = 1; seed <= 150; seed++) {
        stream_t s;
        char    *want;
        size_t   i;

        random_stream(&s, seed);
        want = s.want.s;
        for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
            parley_ws_reader_t r;
            char              *got;

            parley_ws_reader_init(&r, 4096, 4096, 0);
            got = feed(&r, s.w, s.len, steps[i], seed);
            cr_assert_str_eq(got, want, "seed %u step %zu:\n got  %s\n want %s", seed, steps[i], got, want);
            free(got);
        }
        free(want);
        free(s.w);
    }
}
