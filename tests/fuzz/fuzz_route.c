// fuzz-sources: lib/parley_route.c lib/parley_json.c
/*
 * libFuzzer harness for REST path matching.  The input is split at '\n'
 * into paths (each copied to a heap block of exactly its length, with a
 * value buffer of exactly path_len + PARLEY_ROUTE_MAX_PARAMS bytes, so ASan
 * sees any access beyond what the header allows), and every path is tried
 * against fixed patterns; the whole input, percent-encoded, is also tried as
 * one parameter.  Besides memory safety it asserts that params lie
 * inside the buffer, NUL-terminated and in order, and that the result
 * agrees with a reference matcher written here from the header's contract
 * with its own percent and UTF-8 decoders.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley_route.h"

static const char *const patterns[] = {
    "/",
    "/v1/health",
    "/{a}",
    "/v1/users/{uid}/tokens/{tid}",
    "/v1/rooms/{room}/messages",
    "/{a}/{b}/{c}/{d}",
    "/{a}/{b}/{c}/{d}/{e}",
    "/v1/{x}/{y}/z/",
    "/v1/{}/%41",
};

#define NPATTERNS (sizeof(patterns) / sizeof(patterns[0]))

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/*
 * Decodes and validates one raw segment as the header describes: valid
 * escapes, 1..PARLEY_ROUTE_PARAM_MAX decoded bytes, well-formed UTF-8
 * (shortest form, no surrogates, at most U+10FFFF) and no C0, DEL or C1
 * control character.  Writes the value to out; 0 when invalid.
 */
static int ref_param(const unsigned char *s, size_t len, unsigned char *out,
                     size_t *out_len)
{
    size_t i, n = 0, k, need;
    uint32_t cp;
    int h, l;

    for (i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (len - i < 3) {
            return 0;
        }
        h = hex(s[i + 1]);
        l = hex(s[i + 2]);
        if (h < 0 || l < 0) {
            return 0;
        }
        out[n++] = (unsigned char) (h * 16 + l);
        i += 2;
    }
    *out_len = n;

    if (n == 0 || n > PARLEY_ROUTE_PARAM_MAX) {
        return 0;
    }

    for (i = 0; i < n; i += need) {
        if (out[i] < 0x80) {
            cp = out[i];
            need = 1;
        } else if ((out[i] & 0xe0) == 0xc0) {
            cp = out[i] & 0x1f;
            need = 2;
        } else if ((out[i] & 0xf0) == 0xe0) {
            cp = out[i] & 0x0f;
            need = 3;
        } else if ((out[i] & 0xf8) == 0xf0) {
            cp = out[i] & 0x07;
            need = 4;
        } else {
            return 0;
        }
        if (n - i < need) {
            return 0;
        }
        for (k = 1; k < need; k++) {
            if ((out[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = cp << 6 | (out[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800)
            || (need == 4 && cp < 0x10000) || cp > 0x10ffff
            || (cp >= 0xd800 && cp <= 0xdfff))
        {
            return 0;
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            return 0;
        }
    }

    return 1;
}

typedef struct {
    parley_route_rc_t rc;
    size_t nparams;
    size_t bad;
    size_t start[PARLEY_ROUTE_MAX_PARAMS]; /* raw segment in the path */
    size_t len[PARLEY_ROUTE_MAX_PARAMS];
} ref_t;

/* The reference: split both on '/', compare shapes, then validate. */
static void ref_match(const char *pattern, const unsigned char *path,
                      size_t len, ref_t *r)
{
    const char *p = pattern, *pe;
    size_t q = 0, qe, plen, n = 0, i, vlen;
    unsigned char value[4096];

    memset(r, 0, sizeof(*r));
    r->rc = PARLEY_ROUTE_NO_MATCH;

    while (*p != '\0') {
        if (*p != '/' || q >= len || path[q] != '/') {
            return;
        }
        p++;
        q++;
        pe = strchr(p, '/');
        pe = pe ? pe : p + strlen(p);
        plen = (size_t) (pe - p);
        for (qe = q; qe < len && path[qe] != '/'; qe++) {
        }
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (qe == q || n == PARLEY_ROUTE_MAX_PARAMS) {
                return;
            }
            r->start[n] = q;
            r->len[n] = qe - q;
            n++;
        } else if (qe - q != plen || memcmp(p, path + q, plen) != 0) {
            return;
        }
        p = pe;
        q = qe;
    }
    if (q != len) {
        return;
    }

    r->nparams = n;
    r->rc = PARLEY_ROUTE_MATCH;
    for (i = 0; i < n; i++) {
        if (r->len[i] > sizeof(value)
            || !ref_param(path + r->start[i], r->len[i], value, &vlen))
        {
            r->rc = PARLEY_ROUTE_BAD_PARAM;
            r->bad = i;
            return;
        }
    }
}

static void check(const char *pattern, const unsigned char *data, size_t len)
{
    char *path = malloc(len ? len : 1);
    char *buf = malloc(len + PARLEY_ROUTE_MAX_PARAMS);
    parley_route_param_t *params =
        malloc(PARLEY_ROUTE_MAX_PARAMS * sizeof(*params));
    size_t nparams = 99, bad = 99, i, vlen, plen = strlen(pattern);
    unsigned char value[4096];
    const char *prev_end = NULL;
    parley_route_rc_t rc;
    ref_t ref;

    assert(path != NULL && buf != NULL && params != NULL);
    memcpy(path, data, len);

    rc = parley_route_match(pattern, path, len, buf, params, &nparams, &bad);
    ref_match(pattern, data, len, &ref);

    assert(rc == ref.rc);
    if (rc == PARLEY_ROUTE_NO_MATCH) {
        assert(nparams == 0);
        goto done;
    }
    assert(nparams == ref.nparams);
    if (rc == PARLEY_ROUTE_BAD_PARAM) {
        assert(bad == ref.bad);
    }

    for (i = 0; i < nparams; i++) {
        assert(params[i].name > pattern
               && params[i].name + params[i].name_len < pattern + plen);
        assert(params[i].value >= buf);
        assert(params[i].value + params[i].len
               < buf + len + PARLEY_ROUTE_MAX_PARAMS);
        assert(prev_end == NULL || params[i].value > prev_end);
        assert(params[i].value[params[i].len] == '\0');
        prev_end = params[i].value + params[i].len;

        /* a valid param holds exactly the decoded raw segment */
        if (rc == PARLEY_ROUTE_MATCH) {
            assert(ref_param(data + ref.start[i], ref.len[i], value, &vlen));
            assert(params[i].len == vlen);
            assert(memcmp(params[i].value, value, vlen) == 0);
        }
    }

done:
    /* the path is the caller's: matching must not write to it */
    assert(memcmp(path, data, len) == 0);
    free(params);
    free(buf);
    free(path);
}

/*
 * The whole input percent-encoded as one parameter ("/%41%62..."), so that
 * every byte sequence reaches the validation, whatever bytes it holds.
 */
static void check_encoded(const uint8_t *data, size_t size)
{
    static const char upper[] = "0123456789ABCDEF";
    static const char lower[] = "0123456789abcdef";
    unsigned char *path = malloc(1 + 3 * size);
    const char *digits;
    size_t i;

    assert(path != NULL);
    path[0] = '/';
    for (i = 0; i < size; i++) {
        digits = (i & 1) ? lower : upper;
        path[1 + 3 * i] = '%';
        path[2 + 3 * i] = (unsigned char) digits[data[i] >> 4];
        path[3 + 3 * i] = (unsigned char) digits[data[i] & 0xf];
    }
    check("/{a}", path, 1 + 3 * size);
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *start = data, *end = data + size, *nl;
    size_t i;

    check_encoded(data, size);

    for (;;) {
        nl = memchr(start, '\n', (size_t) (end - start));
        for (i = 0; i < NPATTERNS; i++) {
            check(patterns[i], start, (size_t) ((nl ? nl : end) - start));
        }
        if (nl == NULL) {
            break;
        }
        start = nl + 1;
    }

    return 0;
}
