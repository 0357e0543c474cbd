// fuzz-sources: lib/parley_sql.c
/*
 * libFuzzer harness for SQL literal escaping: for any bytes, the escaped
 * text must fill exactly the announced size (the buffer is allocated at that
 * size, so ASan sees any overrun), stay within 2 bytes per input byte (4 for
 * LIKE), contain nothing that ends the literal or the line, and decode back
 * to the input the way the server decodes it: the string parser, then for
 * LIKE the pattern parser, which must find no wildcard.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley_sql.h"

/*
 * The server's reading of the body of '...' without NO_BACKSLASH_ESCAPES:
 * \0 \n \r \Z \b \t are those bytes, \% and \_ stay two bytes, another \c
 * is c.  A bare quote or a final lone backslash would end or break the
 * literal: -1.  Returns the decoded length.
 */
static long literal_decode(const unsigned char *lit, size_t len,
                           unsigned char *out)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (lit[i] == '\'') {
            return -1;
        }
        if (lit[i] != '\\') {
            out[n++] = lit[i];
            continue;
        }
        if (++i == len) {
            return -1;
        }
        switch (lit[i]) {
        case '0': out[n++] = '\0'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 'Z': out[n++] = 0x1a; break;
        case 'b': out[n++] = '\b'; break;
        case 't': out[n++] = '\t'; break;
        case '%':
        case '_':
            out[n++] = '\\';
            out[n++] = lit[i];
            break;
        default: out[n++] = lit[i]; break;
        }
    }

    return (long) n;
}

/* LIKE with ESCAPE '\': -1 on a wildcard, else the literal bytes */
static long like_decode(const unsigned char *pat, size_t len,
                        unsigned char *out)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (pat[i] == '%' || pat[i] == '_') {
            return -1;
        }
        if (pat[i] == '\\' && i + 1 < len) {
            i++;
        }
        out[n++] = pat[i];
    }

    return (long) n;
}

/* bytes that must never appear raw in a literal sent over the protocol */
static void assert_inert(const unsigned char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        assert(s[i] != '\0' && s[i] != '\n' && s[i] != '\r' && s[i] != 0x1a);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *dst, *end, *str, *lit;
    size_t need;
    long n;

    /* plain literal */
    need = parley_sql_escaped_len(data, size);
    assert(need >= size && need <= 2 * size);
    dst = malloc(need ? need : 1);
    str = malloc(4 * size + 1);
    lit = malloc(4 * size + 1);
    assert(dst != NULL && str != NULL && lit != NULL);

    end = parley_sql_escape(dst, data, size);
    assert((size_t) (end - dst) == need);
    assert_inert(dst, need);
    n = literal_decode(dst, need, str);
    assert(n == (long) size);
    assert(memcmp(str, data, size) == 0);
    free(dst);

    /* LIKE pattern */
    need = parley_sql_like_escaped_len(data, size);
    assert(need >= size && need <= 4 * size);
    dst = malloc(need ? need : 1);
    assert(dst != NULL);

    end = parley_sql_like_escape(dst, data, size);
    assert((size_t) (end - dst) == need);
    assert_inert(dst, need);
    n = literal_decode(dst, need, str);
    assert(n >= 0 && (size_t) n <= need);
    n = like_decode(str, (size_t) n, lit);
    assert(n == (long) size);
    assert(memcmp(lit, data, size) == 0);

    free(dst);
    free(str);
    free(lit);
    return 0;
}
