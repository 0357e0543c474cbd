// fuzz-sources: lib/parley_ws_deflate.c lib/parley_ws.c lib/parley_json.c -lz
/*
 * libFuzzer harness for permessage-deflate (lib/parley_ws_deflate.h).
 *
 * Input: byte 0 picks the inflater (window bits, context takeover, text or
 * binary) and a small cap, byte 1 the slice size, byte 2 where the input
 * is cut into two messages; the rest is hostile compressed data.
 *
 *   - inflate: every result is 0, 1007 or 1009; the output never passes
 *     the cap (the work that costs is bounded by libFuzzer's timeout; the
 *     unit tests count zlib's output for the bomb: z.total_out restarts at
 *     every BFINAL block, so it cannot be checked here); a text message
 *     that ends well is valid UTF-8 by an independent validator; an
 *     inflater that failed stays failed;
 *   - deflate: the same bytes compressed as two messages (context
 *     takeover or not) fit parley_ws_deflate_bound and inflate back to
 *     themselves;
 *   - negotiate: the whole input as a Sec-WebSocket-Extensions value never
 *     overruns; an accepted answer is itself an offer we accept with the
 *     same answer.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley_json.h"
#include "parley_ws.h"
#include "parley_ws_deflate.h"

static const size_t caps[8] = { 0, 1, 7, 64, 300, 1024, 4096, 16384 };

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

/* inflates in[0..len) as one message in slices; returns the close code */
static int inflate_one(parley_ws_inflater_t *inf, const uint8_t *in, size_t len,
                       size_t step, int text, size_t cap, unsigned char *out)
{
    parley_ws_utf8_t u;
    size_t           off = 0, out_len = 0, n;
    int              rc = 0;

    parley_ws_utf8_init(&u);
    while (off < len && rc == 0) {
        /* exact-size copies: any read past a slice is an ASan error */
        unsigned char *slice;

        n = len - off < step ? len - off : step;
        slice = malloc(n);
        assert(slice != NULL);
        memcpy(slice, in + off, n);
        rc = parley_ws_inflate(inf, slice, n, out, cap, &out_len, text ? &u : NULL);
        free(slice);
        assert(out_len <= cap);
        off += n;
    }
    if (rc == 0) {
        rc = parley_ws_inflate_end(inf, out, cap, &out_len, text ? &u : NULL);
        assert(out_len <= cap);
    }
    assert(rc == 0 || rc == PARLEY_WS_CLOSE_INVALID_DATA || rc == PARLEY_WS_CLOSE_TOO_BIG);
    if (rc == 0 && text) {
        assert(ref_utf8(out, out_len));
    }
    return rc;
}

static void hostile(const uint8_t *data, size_t size)
{
    unsigned             cfg = data[0];
    unsigned             bits = 8 + (cfg & 7);
    int                  nct = (cfg >> 3) & 1, text = (cfg >> 4) & 1;
    size_t               cap = caps[(cfg >> 5) & 7];
    size_t               step = data[1] == 0 ? 4096 : data[1];
    const uint8_t       *in = data + 3;
    size_t               len = size - 3, cut = len == 0 ? 0 : data[2] % (len + 1);
    unsigned char       *out = malloc(cap ? cap : 1);
    parley_ws_inflater_t inf;
    int                  rc;

    assert(out != NULL);
    assert(parley_ws_inflater_init(&inf, bits, nct, NULL) == 0);
    rc = inflate_one(&inf, in, cut, step, text, cap, out);
    if (rc == 0) {
        rc = inflate_one(&inf, in + cut, len - cut, step, text, cap, out);
    } else {
        size_t n = 0;

        assert(parley_ws_inflate(&inf, in, len, out, cap, &n, NULL) == PARLEY_WS_CLOSE_INTERNAL);
    }
    parley_ws_inflater_free(&inf);
    free(out);
}

static void round_trip(const uint8_t *data, size_t size)
{
    unsigned             cfg = data[0];
    unsigned             bits = 9 + (cfg % 7);
    unsigned             mem = 1 + (data[1] % 9);
    int                  level = (int) (data[2] % 11) - 1;
    int                  snct = (cfg >> 3) & 1;
    const uint8_t       *in = data + 3;
    size_t               len = size - 3, cut = len / 2, part, i, clen, got;
    parley_ws_deflater_t d;
    parley_ws_inflater_t inf;
    unsigned char       *comp = malloc(parley_ws_deflate_bound(len) + 1);
    unsigned char       *back = malloc(len + 1);

    assert(comp != NULL && back != NULL);
    assert(parley_ws_deflater_init(&d, bits, mem, level, snct, NULL) == 0);
    assert(parley_ws_inflater_init(&inf, bits, snct, NULL) == 0);
    for (i = 0; i < 3; i++) {
        const uint8_t *m = i == 0 ? in : i == 1 ? in + cut : in;
        size_t         mlen = i == 0 ? cut : i == 1 ? len - cut : len;

        assert(parley_ws_deflate_message(&d, m, mlen, comp, parley_ws_deflate_bound(mlen),
                                         &clen)
               == 0);
        assert(clen <= parley_ws_deflate_bound(mlen));
        part = clen / 3 + 1;
        got = 0;
        for (size_t off = 0; off < clen; off += part) {
            assert(parley_ws_inflate(&inf, comp + off, clen - off < part ? clen - off : part,
                                     back, mlen, &got, NULL)
                   == 0);
        }
        assert(parley_ws_inflate_end(&inf, back, mlen, &got, NULL) == 0);
        assert(got == mlen);
        assert(mlen == 0 || memcmp(back, m, mlen) == 0);
    }
    parley_ws_deflater_free(&d);
    parley_ws_inflater_free(&inf);
    free(comp);
    free(back);
}

static void negotiate(const uint8_t *data, size_t size)
{
    parley_ws_deflate_config_t cfg;
    parley_ws_deflate_params_t p, q;
    char                      *value = malloc(size ? size : 1);
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX], again[PARLEY_WS_DEFLATE_RESPONSE_MAX];
    size_t                     n, m;
    int                        rc;

    assert(value != NULL);
    memcpy(value, data, size);
    parley_ws_deflate_config_default(&cfg);
    cfg.server_no_context_takeover = size > 0 && (data[0] & 1);
    rc = parley_ws_deflate_negotiate(value, size, &cfg, &p, resp, sizeof(resp), &n);
    assert(rc == PARLEY_WS_DEFLATE_ACCEPT || rc == PARLEY_WS_DEFLATE_DECLINE
           || rc == PARLEY_WS_DEFLATE_MALFORMED);
    if (rc == PARLEY_WS_DEFLATE_ACCEPT) {
        assert(n <= sizeof(resp) && n >= 18 && memcmp(resp, "permessage-deflate", 18) == 0);
        assert(p.server_window_bits >= 9 && p.server_window_bits <= 15);
        assert(p.client_window_bits >= 9 && p.client_window_bits <= 15);
        assert(parley_ws_deflate_negotiate(resp, n, &cfg, &q, again, sizeof(again), &m)
               == PARLEY_WS_DEFLATE_ACCEPT);
        assert(m == n && memcmp(again, resp, n) == 0);
        assert(memcmp(&p, &q, sizeof(p)) == 0);
    } else {
        assert(n == 0);
    }
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    negotiate(data, size);
    if (size < 3) {
        return 0;
    }
    hostile(data, size);
    round_trip(data, size);
    return 0;
}
