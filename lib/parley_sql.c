#include "parley_sql.h"

static int escape_char(unsigned char c, unsigned char *out)
{
    switch (c) {
    case '\0':   *out = '0';  return 1;
    case '\n':   *out = 'n';  return 1;
    case '\r':   *out = 'r';  return 1;
    case '\\':   *out = '\\'; return 1;
    case '\'':   *out = '\''; return 1;
    case '"':    *out = '"';  return 1;
    case '\032': *out = 'Z';  return 1;
    default:     return 0;
    }
}

size_t parley_sql_escaped_len(const unsigned char *src, size_t len)
{
    size_t n = len, i;
    unsigned char e;

    for (i = 0; i < len; i++) {
        n += escape_char(src[i], &e);
    }

    return n;
}

unsigned char *parley_sql_escape(unsigned char *dst, const unsigned char *src,
                                 size_t len)
{
    size_t i;
    unsigned char e;

    for (i = 0; i < len; i++) {
        if (escape_char(src[i], &e)) {
            *dst++ = '\\';
            *dst++ = e;
        } else {
            *dst++ = src[i];
        }
    }

    return dst;
}

size_t parley_sql_like_escaped_len(const unsigned char *src, size_t len)
{
    size_t n = parley_sql_escaped_len(src, len), i;

    for (i = 0; i < len; i++) {
        n += (src[i] == '%' || src[i] == '_');
        n += (src[i] == '\\') * 2; /* \\\\ rather than \\ */
    }

    return n;
}

unsigned char *parley_sql_like_escape(unsigned char *dst,
                                      const unsigned char *src, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (src[i] == '%' || src[i] == '_') {
            *dst++ = '\\';
            *dst++ = src[i];
        } else if (src[i] == '\\') {
            /* the literal yields \\, which LIKE reads as one backslash */
            *dst++ = '\\';
            *dst++ = '\\';
            *dst++ = '\\';
            *dst++ = '\\';
        } else {
            dst = parley_sql_escape(dst, src + i, 1);
        }
    }

    return dst;
}

unsigned char *parley_sql_like_pattern(unsigned char *dst,
                                       const unsigned char *src, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (src[i] == '%' || src[i] == '_' || src[i] == '\\') {
            *dst++ = '\\';
        }
        *dst++ = src[i];
    }

    return dst;
}
