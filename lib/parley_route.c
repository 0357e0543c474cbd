#include "parley_route.h"

#include <string.h>

#include "parley_json.h"

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long parley_percent_decode(char *dst, const char *src, size_t len)
{
    size_t i, n = 0;
    int hi, lo;

    for (i = 0; i < len; i++) {
        if (src[i] == '%') {
            if (len - i < 3) {
                return -1; /* truncated escape */
            }
            hi = hexval((unsigned char) src[i + 1]);
            lo = hexval((unsigned char) src[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            dst[n++] = (char) (hi << 4 | lo);
            i += 2;
        } else {
            dst[n++] = src[i];
        }
    }

    return (long) n;
}

/*
 * A decoded parameter: 1 to PARLEY_ROUTE_PARAM_MAX bytes of UTF-8 with no
 * control character, C0 and DEL or C1 (U+0080..U+009F, which terminals and
 * some log readers act on, e.g. NEL U+0085 as a line break, CSI U+009B).
 */
static int param_ok(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *) s;
    size_t i = 0, seq;

    if (len == 0 || len > PARLEY_ROUTE_PARAM_MAX) {
        return 0;
    }

    while (i < len) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            return 0;
        }
        seq = parley_utf8_sequence(u + i, len - i);
        if (seq == 0 || (seq == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0)) {
            return 0;
        }
        i += seq;
    }

    return 1;
}

parley_route_rc_t parley_route_match(const char *pattern, const char *path,
                                     size_t path_len, char *buf,
                                     parley_route_param_t *params,
                                     size_t *nparams, size_t *bad)
{
    const char *p = pattern, *seg_end, *q = path, *qend = path + path_len;
    const char *pseg_end;
    size_t n = 0, plen;
    long dlen;
    char *out = buf;
    int bad_param = -1;

    *nparams = 0;

    while (*p) {
        if (*p != '/' || q >= qend || *q != '/') {
            return PARLEY_ROUTE_NO_MATCH;
        }
        p++;
        q++;

        pseg_end = strchr(p, '/');
        if (pseg_end == NULL) {
            pseg_end = p + strlen(p);
        }

        seg_end = memchr(q, '/', qend - q);
        if (seg_end == NULL) {
            seg_end = qend;
        }

        plen = pseg_end - p;

        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (seg_end == q || n == PARLEY_ROUTE_MAX_PARAMS) {
                return PARLEY_ROUTE_NO_MATCH;
            }
            dlen = parley_percent_decode(out, q, seg_end - q);
            params[n].name = p + 1;
            params[n].name_len = plen - 2;
            params[n].value = out;
            if (dlen < 0 || !param_ok(out, (size_t) dlen)
                || memchr(out, '\0', (size_t) dlen) != NULL)
            {
                if (bad_param < 0) {
                    bad_param = (int) n;
                }
                dlen = dlen < 0 ? 0 : dlen;
            }
            params[n].len = (size_t) dlen;
            out[dlen] = '\0';
            out += dlen + 1;
            n++;

        } else if ((size_t) (seg_end - q) != plen || memcmp(p, q, plen) != 0) {
            return PARLEY_ROUTE_NO_MATCH;
        }

        p = pseg_end;
        q = seg_end;
    }

    if (q != qend) {
        return PARLEY_ROUTE_NO_MATCH;
    }

    *nparams = n;

    if (bad_param >= 0) {
        *bad = (size_t) bad_param;
        return PARLEY_ROUTE_BAD_PARAM;
    }

    return PARLEY_ROUTE_MATCH;
}
