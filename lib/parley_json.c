#include "parley_json.h"

static const char hex[] = "0123456789abcdef";

size_t parley_utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c;

    if (len == 0) {
        return 0;
    }

    c = s[0];

    if (c < 0x80) {
        return 1;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        return (len >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    }

    if (c >= 0xe0 && c <= 0xef) {
        if (len < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) {
            return 0;
        }
        if (c == 0xe0 && s[1] < 0xa0) {
            return 0; /* overlong */
        }
        if (c == 0xed && s[1] >= 0xa0) {
            return 0; /* UTF-16 surrogate */
        }
        return 3;
    }

    if (c >= 0xf0 && c <= 0xf4) {
        if (len < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80
            || (s[3] & 0xc0) != 0x80)
        {
            return 0;
        }
        if (c == 0xf0 && s[1] < 0x90) {
            return 0; /* overlong */
        }
        if (c == 0xf4 && s[1] >= 0x90) {
            return 0; /* above U+10FFFF */
        }
        return 4;
    }

    return 0;
}

static size_t escape_one(unsigned char c)
{
    switch (c) {
    case '"': case '\\': case '\b': case '\f': case '\n': case '\r': case '\t':
        return 2;
    default:
        return c < 0x20 ? 6 : 1;
    }
}

size_t parley_json_escaped_len(const unsigned char *src, size_t len)
{
    size_t n = 0, i = 0, seq;

    while (i < len) {
        if (src[i] < 0x80) {
            n += escape_one(src[i]);
            i++;
            continue;
        }
        seq = parley_utf8_sequence(src + i, len - i);
        if (seq == 0) {
            n += 6; /* room for the replacement character */
            i++;
        } else {
            n += seq;
            i += seq;
        }
    }

    return n;
}

unsigned char *parley_json_escape(unsigned char *dst, const unsigned char *src,
                                  size_t len)
{
    size_t i = 0, seq;
    unsigned char c;

    while (i < len) {
        c = src[i];

        if (c >= 0x80) {
            seq = parley_utf8_sequence(src + i, len - i);
            if (seq == 0) {
                *dst++ = 0xef; *dst++ = 0xbf; *dst++ = 0xbd;
                i++;
            } else {
                while (seq--) {
                    *dst++ = src[i++];
                }
            }
            continue;
        }

        i++;

        switch (c) {
        case '"':  *dst++ = '\\'; *dst++ = '"';  break;
        case '\\': *dst++ = '\\'; *dst++ = '\\'; break;
        case '\b': *dst++ = '\\'; *dst++ = 'b';  break;
        case '\f': *dst++ = '\\'; *dst++ = 'f';  break;
        case '\n': *dst++ = '\\'; *dst++ = 'n';  break;
        case '\r': *dst++ = '\\'; *dst++ = 'r';  break;
        case '\t': *dst++ = '\\'; *dst++ = 't';  break;
        default:
            if (c < 0x20) {
                *dst++ = '\\'; *dst++ = 'u'; *dst++ = '0'; *dst++ = '0';
                *dst++ = hex[c >> 4]; *dst++ = hex[c & 0xf];
            } else {
                *dst++ = c;
            }
        }
    }

    return dst;
}

unsigned parley_json_max_depth(const unsigned char *text, size_t len)
{
    unsigned depth = 0, max = 0;
    size_t i;
    int in_string = 0;

    for (i = 0; i < len; i++) {
        unsigned char c = text[i];

        if (in_string) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = 0;
            }
            continue;
        }

        switch (c) {
        case '"':
            in_string = 1;
            break;
        case '[':
        case '{':
            if (++depth > max) {
                max = depth;
            }
            break;
        case ']':
        case '}':
            if (depth > 0) {
                depth--;
            }
            break;
        default:
            break;
        }
    }

    return max;
}
