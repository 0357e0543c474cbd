#include <string.h>

#include <openssl/evp.h>

#include "parley_apikey.h"

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* value of a base64url character, or -1 */
static int b64url_value(unsigned char c)
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

void parley_apikey_format(const unsigned char random[PARLEY_APIKEY_RANDOM_LEN],
                          char out[PARLEY_APIKEY_LEN + 1])
{
    unsigned long acc = 0;
    unsigned      bits = 0;
    size_t        i;
    char         *p = out;

    memcpy(p, PARLEY_APIKEY_TAG, PARLEY_APIKEY_TAG_LEN);
    p += PARLEY_APIKEY_TAG_LEN;

    for (i = 0; i < PARLEY_APIKEY_RANDOM_LEN; i++) {
        acc = (acc << 8) | random[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *p++ = b64url[(acc >> bits) & 0x3f];
        }
    }

    if (bits > 0) { /* 256 = 42 * 6 + 4: four bits left, padded with zeros */
        *p++ = b64url[(acc << (6 - bits)) & 0x3f];
    }

    *p = '\0';
}

/* 0 when s[0..n) are all base64url characters */
static int b64url_check(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (b64url_value((unsigned char) s[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

int parley_apikey_parse(const char *str, size_t len)
{
    const char *b64 = str + PARLEY_APIKEY_TAG_LEN;

    if (len != PARLEY_APIKEY_LEN
        || memcmp(str, PARLEY_APIKEY_TAG, PARLEY_APIKEY_TAG_LEN) != 0
        || b64url_check(b64, PARLEY_APIKEY_B64_LEN) != 0)
    {
        return -1;
    }

    /* the last character carries 4 bits of the key and 2 of padding */
    if (b64url_value((unsigned char) b64[PARLEY_APIKEY_B64_LEN - 1]) & 0x3) {
        return -1;
    }

    return 0;
}

int parley_apikey_prefix_parse(const char *str, size_t len)
{
    if (len != PARLEY_APIKEY_PREFIX_LEN
        || memcmp(str, PARLEY_APIKEY_TAG, PARLEY_APIKEY_TAG_LEN) != 0
        || b64url_check(str + PARLEY_APIKEY_TAG_LEN,
                        PARLEY_APIKEY_PREFIX_LEN - PARLEY_APIKEY_TAG_LEN) != 0)
    {
        return -1;
    }
    return 0;
}

int parley_sha256_hex(const void *buf, size_t len,
                      char out_hex[PARLEY_SHA256_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char     md[EVP_MAX_MD_SIZE];
    unsigned int      md_len = 0, i;

    out_hex[0] = '\0';

    if (!EVP_Digest(buf, len, md, &md_len, EVP_sha256(), NULL)
        || md_len * 2 != PARLEY_SHA256_HEX_LEN)
    {
        return -1;
    }

    for (i = 0; i < md_len; i++) {
        out_hex[2 * i] = hex[md[i] >> 4];
        out_hex[2 * i + 1] = hex[md[i] & 0xf];
    }
    out_hex[PARLEY_SHA256_HEX_LEN] = '\0';

    return 0;
}

int parley_apikey_hash(const char *str, size_t len,
                       char out_hex[PARLEY_SHA256_HEX_LEN + 1])
{
    return parley_sha256_hex(str, len, out_hex);
}
