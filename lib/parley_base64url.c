#include <stdint.h>

#include "parley_base64url.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* value of a base64url character, or -1 (a branchy map, public data only) */
static int value_of(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

size_t parley_base64url_encoded_len(size_t len)
{
    if (len > PARLEY_BASE64URL_MAX_INPUT) {
        return 0;
    }
    return (len / 3) * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
}

size_t parley_base64url_decoded_len(size_t len)
{
    size_t rest = len % 4;

    return (len / 4) * 3 + (rest >= 2 ? rest - 1 : 0);
}

int parley_base64url_encode(const void *src, size_t len, char *dst, size_t cap,
                            size_t *out_len)
{
    const unsigned char *s = src;
    size_t               need, i, o = 0;
    uint32_t             v;

    *out_len = 0;

    if (len > PARLEY_BASE64URL_MAX_INPUT) {
        return PARLEY_BASE64URL_EINVAL;
    }

    need = parley_base64url_encoded_len(len);
    if (cap < need) {
        return PARLEY_BASE64URL_ENOSPC;
    }

    for (i = 0; i + 3 <= len; i += 3) {
        v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
        dst[o++] = alphabet[(v >> 18) & 0x3f];
        dst[o++] = alphabet[(v >> 12) & 0x3f];
        dst[o++] = alphabet[(v >> 6) & 0x3f];
        dst[o++] = alphabet[v & 0x3f];
    }

    if (len - i == 1) {
        v = (uint32_t) s[i] << 16;
        dst[o++] = alphabet[(v >> 18) & 0x3f];
        dst[o++] = alphabet[(v >> 12) & 0x3f];
    } else if (len - i == 2) {
        v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8;
        dst[o++] = alphabet[(v >> 18) & 0x3f];
        dst[o++] = alphabet[(v >> 12) & 0x3f];
        dst[o++] = alphabet[(v >> 6) & 0x3f];
    }

    *out_len = o;
    return PARLEY_BASE64URL_OK;
}

int parley_base64url_decode(const char *src, size_t len, unsigned char *dst,
                            size_t cap, size_t *out_len)
{
    size_t   i, o = 0, rest;
    uint32_t v;
    int      c[4], k;

    *out_len = 0;

    if (len > PARLEY_BASE64URL_MAX_INPUT) {
        return PARLEY_BASE64URL_EINVAL;
    }

    rest = len % 4;
    if (rest == 1) {
        return PARLEY_BASE64URL_EINVAL; /* 6 bits cannot make a byte */
    }

    for (i = 0; i < len; i++) {
        if (value_of((unsigned char) src[i]) < 0) {
            return PARLEY_BASE64URL_EINVAL;
        }
    }

    if (cap < parley_base64url_decoded_len(len)) {
        return PARLEY_BASE64URL_ENOSPC;
    }

    for (i = 0; i + 4 <= len; i += 4) {
        for (k = 0; k < 4; k++) {
            c[k] = value_of((unsigned char) src[i + k]);
        }
        v = (uint32_t) c[0] << 18 | (uint32_t) c[1] << 12
            | (uint32_t) c[2] << 6 | (uint32_t) c[3];
        dst[o++] = (unsigned char) (v >> 16);
        dst[o++] = (unsigned char) (v >> 8);
        dst[o++] = (unsigned char) v;
    }

    if (rest == 2) {
        c[0] = value_of((unsigned char) src[i]);
        c[1] = value_of((unsigned char) src[i + 1]);
        if (c[1] & 0x0f) {
            return PARLEY_BASE64URL_EINVAL; /* non-zero unused bits */
        }
        dst[o++] = (unsigned char) (c[0] << 2 | c[1] >> 4);
    } else if (rest == 3) {
        c[0] = value_of((unsigned char) src[i]);
        c[1] = value_of((unsigned char) src[i + 1]);
        c[2] = value_of((unsigned char) src[i + 2]);
        if (c[2] & 0x03) {
            return PARLEY_BASE64URL_EINVAL;
        }
        v = (uint32_t) c[0] << 18 | (uint32_t) c[1] << 12
            | (uint32_t) c[2] << 6;
        dst[o++] = (unsigned char) (v >> 16);
        dst[o++] = (unsigned char) (v >> 8);
    }

    *out_len = o;
    return PARLEY_BASE64URL_OK;
}
