/*
 * parley_sql: string-literal and LIKE-pattern escaping.
 *
 * Every output buffer is allocated at exactly the size the _len function
 * announces and every input at exactly its length, so ASan reports a write
 * past the reservation or a read past the input.  The literal is checked
 * three ways: against fixed expectations, by decoding it the way the server
 * does (reference decoders below), and against mariadb-connector-c's own
 * mysql_real_escape_string on 10k seeded random buffers.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley_sql.h"

#if defined(__has_include)
#if __has_include(<mysql.h>)
#include <mysql.h>
#define HAVE_MARIADB 1
#endif
#endif

#define RANDOM_ROUNDS 10000

/* splitmix64: a fixed seed keeps every run on the same buffers */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed;
}

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/*
 * Fills buf with a mix that hits every branch: the special bytes, LIKE
 * metacharacters, ASCII, valid multi-byte UTF-8 and arbitrary bytes (so
 * invalid and truncated sequences as well).
 */
static size_t random_buffer(unsigned char *buf, size_t max)
{
    static const unsigned char special[] = {'\0', '\n', '\r', '\\', '\'',
                                            '"',  0x1a, '%',  '_'};
    static const char *const utf8[] = {"\xc3\xa9", "\xe2\x82\xac",
                                       "\xf0\x9f\x98\x80", "\xed\x9f\xbf",
                                       "\xf4\x8f\xbf\xbf"};
    size_t len = rng_next() % (max + 1), i = 0, k;
    const char *seq;

    while (i < len) {
        switch (rng_next() % 4) {
        case 0:
            buf[i++] = special[rng_next() % sizeof(special)];
            break;
        case 1:
            buf[i++] = (unsigned char) (0x20 + rng_next() % 0x5f);
            break;
        case 2:
            seq = utf8[rng_next() % (sizeof(utf8) / sizeof(utf8[0]))];
            for (k = 0; seq[k] != '\0' && i < len; k++) {
                buf[i++] = (unsigned char) seq[k];
            }
            break;
        default:
            buf[i++] = (unsigned char) rng_next();
            break;
        }
    }

    return len;
}

/* a copy of exactly len bytes, so that reading past the input is caught */
static unsigned char *dup_exact(const void *src, size_t len)
{
    unsigned char *p = malloc(len ? len : 1);

    cr_assert_not_null(p);
    memcpy(p, src, len);
    return p;
}

typedef unsigned char *(*escape_fn)(unsigned char *, const unsigned char *,
                                    size_t);
typedef size_t (*escaped_len_fn)(const unsigned char *, size_t);

/*
 * Escapes src into a buffer of exactly the announced size and checks that
 * exactly that many bytes were written.  Returns a NUL-terminated copy
 * (the caller frees it) and its length in *out_len.
 */
static char *run_escape(escape_fn escape, escaped_len_fn escaped_len,
                        const void *src, size_t len, size_t *out_len)
{
    unsigned char *in = dup_exact(src, len), *dst, *end;
    size_t need = escaped_len(in, len);
    char *copy;

    dst = malloc(need ? need : 1);
    cr_assert_not_null(dst);
    end = escape(dst, in, len);
    cr_assert_eq((size_t) (end - dst), need,
                 "wrote %zu bytes, announced %zu", (size_t) (end - dst), need);

    copy = malloc(need + 1);
    cr_assert_not_null(copy);
    memcpy(copy, dst, need);
    copy[need] = '\0';
    *out_len = need;

    free(dst);
    free(in);
    return copy;
}

static char *esc(const void *src, size_t len, size_t *out_len)
{
    return run_escape(parley_sql_escape, parley_sql_escaped_len, src, len,
                      out_len);
}

static char *like_esc(const void *src, size_t len, size_t *out_len)
{
    return run_escape(parley_sql_like_escape, parley_sql_like_escaped_len,
                      src, len, out_len);
}

/*
 * What the server's string parser makes of the body of '...' (MariaDB
 * without NO_BACKSLASH_ESCAPES): \0 \n \r \Z \b \t are those bytes, \% and
 * \_ stay two bytes (so LIKE sees them), any other \c is c.  An unescaped
 * single quote would end the literal early: -1.  Returns the decoded length.
 */
static long literal_decode(const char *lit, size_t len, unsigned char *out)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (lit[i] == '\'') {
            return -1;
        }
        if (lit[i] != '\\') {
            out[n++] = (unsigned char) lit[i];
            continue;
        }
        if (++i == len) {
            return -1; /* a trailing backslash would escape the quote */
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
            out[n++] = (unsigned char) lit[i];
            break;
        default: out[n++] = (unsigned char) lit[i]; break;
        }
    }

    return (long) n;
}

/*
 * What LIKE (ESCAPE '\') makes of a pattern: \c is the literal c, a final
 * lone backslash is literal, and a bare % or _ is a wildcard (-1, since the
 * escaped pattern must hold none).  Returns the number of literal bytes.
 */
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

static int is_special(unsigned c)
{
    return c == 0 || c == '\n' || c == '\r' || c == '\\' || c == '\''
           || c == '"' || c == 0x1a;
}

/* ---- parley_sql_escape ------------------------------------------------ */

Test(sql, each_special_byte_is_escaped)
{
    static const struct {
        char in;
        const char *out;
    } cases[] = {
        {'\0', "\\0"}, {'\n', "\\n"}, {'\r', "\\r"},   {'\\', "\\\\"},
        {'\'', "\\'"}, {'"', "\\\""}, {'\032', "\\Z"},
    };
    size_t i, n;
    char *s;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s = esc(&cases[i].in, 1, &n);
        cr_assert_eq(n, 2, "byte 0x%02x", (unsigned char) cases[i].in);
        cr_assert_str_eq(s, cases[i].out, "byte 0x%02x",
                         (unsigned char) cases[i].in);
        free(s);
    }
}

Test(sql, mixed_string_is_escaped_in_place)
{
    static const char in[] = "it's \"a\"\\b\0c\r\n\032end";
    size_t n;
    char *s = esc(in, sizeof(in) - 1, &n);

    cr_assert_str_eq(s, "it\\'s \\\"a\\\"\\\\b\\0c\\r\\n\\Zend");
    free(s);
}

Test(sql, plain_ascii_is_copied)
{
    static const char in[] = "SELECT * FROM t WHERE a = 1; -- %_`#\t";
    size_t n;
    char *s = esc(in, sizeof(in) - 1, &n);

    cr_assert_eq(n, sizeof(in) - 1);
    cr_assert_str_eq(s, in);
    free(s);
}

Test(sql, utf8_is_copied)
{
    /* é, €, 😀, U+10FFFF: no byte of a multi-byte character is below 0x80 */
    static const char in[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                             "\xf4\x8f\xbf\xbf";
    size_t n;
    char *s = esc(in, sizeof(in) - 1, &n);

    cr_assert_eq(n, sizeof(in) - 1);
    cr_assert_str_eq(s, in);
    free(s);
}

Test(sql, invalid_utf8_is_copied_as_bytes)
{
    /* a lone lead byte before a quote must not swallow the quote's escape */
    static const char in[] = "\xff\xc3'\xe2\x82\\\xc0\x80";
    size_t n;
    char *s = esc(in, sizeof(in) - 1, &n);

    cr_assert_str_eq(s, "\xff\xc3\\'\xe2\x82\\\\\xc0\x80");
    free(s);
}

Test(sql, empty_input_writes_nothing)
{
    unsigned char dst[1] = {0x55};

    cr_assert_eq(parley_sql_escaped_len((const unsigned char *) "", 0), 0);
    cr_assert_eq(parley_sql_escape(dst, (const unsigned char *) "", 0), dst);
    cr_assert_eq(dst[0], 0x55);
}

Test(sql, escaped_len_matches_output_for_every_single_byte)
{
    unsigned c;
    unsigned char b;
    size_t n;
    char *s;

    for (c = 0; c < 256; c++) {
        b = (unsigned char) c;
        s = esc(&b, 1, &n); /* asserts announced == written */
        if (is_special(c)) {
            cr_assert_eq(n, 2, "byte 0x%02x", c);
            cr_assert_eq(s[0], '\\', "byte 0x%02x", c);
        } else {
            cr_assert_eq(n, 1, "byte 0x%02x", c);
            cr_assert_eq((unsigned char) s[0], c);
        }
        free(s);
    }
}

Test(sql, random_buffers_have_exact_length_and_round_trip)
{
    unsigned char in[512], dec[1024];
    size_t len, n, i;
    long dlen;
    char *s;

    rng_seed(0x5eed0001);
    for (i = 0; i < RANDOM_ROUNDS; i++) {
        len = random_buffer(in, sizeof(in));
        s = esc(in, len, &n);
        cr_assert_leq(n, 2 * len);
        dlen = literal_decode(s, n, dec);
        cr_assert_eq(dlen, (long) len, "round %zu: decoded %ld of %zu", i,
                     dlen, len);
        cr_assert_eq(memcmp(dec, in, len), 0, "round %zu", i);
        free(s);
    }
}

/* ---- parley_sql_like_escape ------------------------------------------- */

Test(sql, like_escapes_percent_and_underscore)
{
    size_t n;
    char *s = like_esc("50%_off", 7, &n);

    cr_assert_str_eq(s, "50\\%\\_off");
    cr_assert_eq(n, 9);
    free(s);
}

Test(sql, like_escapes_backslash_for_both_parsers)
{
    /*
     * "\%" from a user must match a backslash and a percent sign: the
     * literal \\\\\% reaches LIKE as \\\%, a literal backslash then a
     * literal percent.  With only \\\% it reached LIKE as \\% (a backslash
     * then a wildcard); checked against MariaDB 10.11.
     */
    size_t n;
    char *s = like_esc("\\%", 2, &n);

    cr_assert_str_eq(s, "\\\\\\\\\\%");
    cr_assert_eq(n, 6);
    free(s);

    s = like_esc("a\\b", 3, &n);
    cr_assert_str_eq(s, "a\\\\\\\\b");
    free(s);
}

Test(sql, like_keeps_string_escapes)
{
    static const char in[] = "o'\"\0\n\r\032";
    size_t n;
    char *s = like_esc(in, sizeof(in) - 1, &n);

    cr_assert_str_eq(s, "o\\'\\\"\\0\\n\\r\\Z");
    free(s);
}

Test(sql, like_len_matches_output_for_every_single_byte)
{
    unsigned c;
    unsigned char b;
    size_t n, want;
    char *s;

    for (c = 0; c < 256; c++) {
        b = (unsigned char) c;
        s = like_esc(&b, 1, &n);
        want = c == '\\' ? 4 : (is_special(c) || c == '%' || c == '_') ? 2 : 1;
        cr_assert_eq(n, want, "byte 0x%02x: %zu bytes", c, n);
        free(s);
    }
}

Test(sql, like_random_buffers_match_only_themselves)
{
    unsigned char in[512], str[2048], lit[2048];
    size_t len, n, i;
    long slen, llen;
    char *s;

    rng_seed(0x5eed0002);
    for (i = 0; i < RANDOM_ROUNDS; i++) {
        len = random_buffer(in, sizeof(in));
        s = like_esc(in, len, &n);
        cr_assert_leq(n, 4 * len);
        slen = literal_decode(s, n, str);
        cr_assert_geq(slen, 0, "round %zu: literal breaks out", i);
        llen = like_decode(str, (size_t) slen, lit);
        cr_assert_eq(llen, (long) len, "round %zu: LIKE sees %ld of %zu", i,
                     llen, len);
        cr_assert_eq(memcmp(lit, in, len), 0, "round %zu", i);
        free(s);
    }
}

/* ---- against mariadb-connector-c -------------------------------------- */

#ifdef HAVE_MARIADB

/*
 * An unconnected handle: escaping reads only mysql->charset and
 * server_status (NO_BACKSLASH_ESCAPES, 0 before connecting).  Connector/C
 * 3.x sets charset to utf8mb4 in mysql_init and MYSQL_SET_CHARSET_NAME only
 * records a name for the connect; should a version leave it elsewhere, it
 * is set from the library's own utf8mb4 table.
 */
static MYSQL *utf8mb4_handle(void)
{
    MYSQL *m = mysql_init(NULL);

    cr_assert_not_null(m);
    cr_assert_eq(mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4"), 0);
    if (m->charset == NULL || strcmp(m->charset->csname, "utf8mb4") != 0) {
        m->charset = mariadb_get_charset_by_name("utf8mb4");
    }
    cr_assert_not_null(m->charset);
    cr_assert_str_eq(m->charset->csname, "utf8mb4");
    cr_assert_eq(m->charset->char_maxlen, 4);
    return m;
}

static void same_as_mariadb(MYSQL *m, const unsigned char *in, size_t len,
                            const char *what)
{
    char *ours, *theirs = malloc(2 * len + 1), *plain = malloc(2 * len + 1);
    unsigned long tlen, plen;
    size_t n;

    cr_assert(theirs != NULL && plain != NULL);
    ours = esc(in, len, &n);
    tlen = mysql_real_escape_string(m, theirs, (const char *) in, len);
    plen = mysql_escape_string(plain, (const char *) in, len);
    cr_assert_eq(n, tlen, "%s: %zu bytes, mysql_real_escape_string %lu", what,
                 n, tlen);
    cr_assert_eq(memcmp(ours, theirs, n), 0, "%s", what);
    cr_assert_eq(plen, tlen, "%s: mysql_escape_string differs", what);
    cr_assert_eq(memcmp(plain, theirs, n), 0, "%s", what);
    free(ours);
    free(theirs);
    free(plain);
}

Test(sql_mariadb, every_single_byte_as_connector_c)
{
    MYSQL *m = utf8mb4_handle();
    unsigned c;
    unsigned char b;
    char what[32];

    for (c = 0; c < 256; c++) {
        b = (unsigned char) c;
        snprintf(what, sizeof(what), "byte 0x%02x", c);
        same_as_mariadb(m, &b, 1, what);
    }
    mysql_close(m);
}

Test(sql_mariadb, random_buffers_as_connector_c)
{
    MYSQL *m = utf8mb4_handle();
    unsigned char in[512];
    size_t len, i;
    char what[32];

    rng_seed(0x5eed0003);
    for (i = 0; i < RANDOM_ROUNDS; i++) {
        len = random_buffer(in, sizeof(in));
        snprintf(what, sizeof(what), "round %zu", i);
        same_as_mariadb(m, in, len, what);
    }
    mysql_close(m);
}

#else
#error "test_sql compares with mariadb-connector-c: build with $(pkg-config --cflags --libs libmariadb)"
#endif

Test(sql_like, pattern_escaping_alone)
{
    unsigned char out[32];
    const char in[] = "50%_a\\b";
    unsigned char *end = parley_sql_like_pattern(out, (const unsigned char *) in,
                                                 sizeof(in) - 1);
    cr_assert_eq((size_t) (end - out), sizeof("50\\%\\_a\\\\b") - 1);
    cr_assert(memcmp(out, "50\\%\\_a\\\\b", end - out) == 0);
}
