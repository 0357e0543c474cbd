#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "parley_sql_split.h"

#define MAX_STMTS 16

typedef struct {
    int      rc; /* 0 at the end, -1 on error */
    size_t   n;
    char     text[MAX_STMTS][256];
    unsigned line[MAX_STMTS];
    unsigned error_line;
    char     error[64];
} result_t;

static void split(const char *sql, size_t len, result_t *r)
{
    parley_sql_split_t sp;
    parley_sql_stmt_t  st;
    int                rc;

    memset(r, 0, sizeof(*r));
    parley_sql_split_init(&sp, sql, len);

    while ((rc = parley_sql_split_next(&sp, &st)) == 1) {
        cr_assert_lt(r->n, MAX_STMTS);
        cr_assert_lt(st.len, sizeof(r->text[0]));
        memcpy(r->text[r->n], st.text, st.len);
        r->line[r->n] = st.line;
        r->n++;
    }

    r->rc = rc;
    if (rc == -1) {
        r->error_line = sp.error_line;
        cr_assert_not_null(sp.error);
        strncpy(r->error, sp.error, sizeof(r->error) - 1);
    }

    /* the end and a failure are both sticky */
    cr_assert_eq(parley_sql_split_next(&sp, &st), rc);
}

static void expect(const char *sql, size_t n, const char *const *stmts)
{
    result_t r;
    size_t   i;

    split(sql, strlen(sql), &r);
    cr_assert_eq(r.rc, 0, "error \"%s\" on: %s", r.error, sql);
    cr_assert_eq(r.n, n, "%zu statements instead of %zu in: %s", r.n, n, sql);
    for (i = 0; i < n; i++) {
        cr_assert_str_eq(r.text[i], stmts[i], "statement %zu of: %s", i + 1,
                         sql);
    }
}

#define EXPECT(sql, ...)                                                      \
    do {                                                                      \
        static const char *const want_[] = { __VA_ARGS__ };                   \
        expect(sql, sizeof(want_) / sizeof(want_[0]), want_);                 \
    } while (0)

#define EXPECT_NONE(sql) expect(sql, 0, NULL)

Test(sql_split, plain_statements)
{
    EXPECT("SELECT 1;SELECT 2;", "SELECT 1", "SELECT 2");
    EXPECT("  SELECT 1 ;\n\tSELECT 2  ", "SELECT 1", "SELECT 2");
    EXPECT("CREATE TABLE t (\n  a INT,\n  b INT\n);\n",
           "CREATE TABLE t (\n  a INT,\n  b INT\n)");
}

Test(sql_split, empty_statements_are_skipped)
{
    EXPECT_NONE("");
    EXPECT_NONE(";;; ;\n;\r\n;");
    EXPECT_NONE("-- only a comment\n# another\n/* and a block */;\n");
    EXPECT(";;A;;;B;;", "A", "B");
}

Test(sql_split, semicolons_inside_quotes)
{
    EXPECT("INSERT INTO t VALUES ('a;b', \"c;d\");SELECT `e;f` FROM t;",
           "INSERT INTO t VALUES ('a;b', \"c;d\")", "SELECT `e;f` FROM t");
}

Test(sql_split, backslash_escapes_in_strings)
{
    EXPECT("SELECT 'it\\'s; fine';X", "SELECT 'it\\'s; fine'", "X");
    EXPECT("SELECT \"a\\\";b\";X", "SELECT \"a\\\";b\"", "X");
    EXPECT("SELECT 'a\\\\';X", "SELECT 'a\\\\'", "X"); /* escaped backslash */
}

Test(sql_split, doubled_quote_escapes)
{
    EXPECT("SELECT 'it''s;';X", "SELECT 'it''s;'", "X");
    EXPECT("SELECT \"a\"\";\";X", "SELECT \"a\"\";\"", "X");
    EXPECT("SELECT `a``;b`;X", "SELECT `a``;b`", "X");
    EXPECT("SELECT '';X", "SELECT ''", "X");
}

Test(sql_split, backslash_is_literal_in_backticks)
{
    /* MySQL: `a\` is the identifier a\ , so the ';' after it splits */
    EXPECT("SELECT `a\\`;X", "SELECT `a\\`", "X");
}

Test(sql_split, line_comments)
{
    EXPECT("A -- c;d\n;B", "A", "B");
    EXPECT("A # c;d\nB;", "A # c;d\nB");
    EXPECT("A --\tc;d\nB;", "A --\tc;d\nB");
    EXPECT("A;--", "A");
    EXPECT("A;#", "A");
    EXPECT("A --\r\n;B", "A", "B");
    /* "--" not followed by whitespace is two minus signs */
    EXPECT("SELECT 1--1;X", "SELECT 1--1", "X");
    EXPECT("SELECT 1 --x;X", "SELECT 1 --x", "X");
    /* comment markers inside quotes are text */
    EXPECT("SELECT '-- x;', '# y;', '/* z;';W",
           "SELECT '-- x;', '# y;', '/* z;'", "W");
}

Test(sql_split, block_comments)
{
    EXPECT("A /* ; */ B;", "A /* ; */ B");
    EXPECT("/* head; */ A /* tail; */ ;B", "A", "B");
    EXPECT("A/**/B;", "A/**/B");
    EXPECT("A /* multi\nline; */;", "A");
    EXPECT("A /* * / ** */;", "A");
}

Test(sql_split, executable_comments_are_statement_text)
{
    EXPECT("/*!40101 SET NAMES utf8mb4 */;X", "/*!40101 SET NAMES utf8mb4 */",
           "X");
    EXPECT("SELECT /*+ MAX_EXECUTION_TIME(1000) */ 1 ;",
           "SELECT /*+ MAX_EXECUTION_TIME(1000) */ 1");
    EXPECT("A /*! ; */;", "A /*! ; */");
    /* TiDB- and MariaDB-only forms: a trailing table option must survive */
    EXPECT("CREATE TABLE t (a INT) /*T! SHARD_ROW_ID_BITS=4 */;X",
           "CREATE TABLE t (a INT) /*T! SHARD_ROW_ID_BITS=4 */", "X");
    EXPECT("/*M!100100 SET x=1 */;", "/*M!100100 SET x=1 */");
    /* but a comment merely starting with T or M is plain */
    EXPECT("A /*Trailing */;/*M */", "A");
}

Test(sql_split, line_numbers)
{
    result_t    r;
    const char *sql = "\n\nA;\n B;\n\n/* x\n*/ C;'a\nb'; -- z\n\nD";

    split(sql, strlen(sql), &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 5);
    cr_assert_eq(r.line[0], 3);
    cr_assert_eq(r.line[1], 4);
    cr_assert_eq(r.line[2], 7);
    cr_assert_eq(r.line[3], 7);
    cr_assert_eq(r.line[4], 10);

    /* newlines escaped inside strings still count */
    sql = "'a\\\nb';\nC";
    split(sql, strlen(sql), &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.line[1], 3);
}

static void expect_error(const char *sql, size_t ok, const char *error,
                         unsigned line)
{
    result_t r;

    split(sql, strlen(sql), &r);
    cr_assert_eq(r.rc, -1, "no error on: %s", sql);
    cr_assert_eq(r.n, ok, "statements before the error in: %s", sql);
    cr_assert_str_eq(r.error, error, "on: %s", sql);
    cr_assert_eq(r.error_line, line, "line %u instead of %u on: %s",
                 r.error_line, line, sql);
}

Test(sql_split, unterminated_quotes_and_comments)
{
    expect_error("A; 'abc", 1, "unterminated '...' string", 1);
    expect_error("A;\n\nSELECT \"x\n\n", 1, "unterminated \"...\" string", 3);
    expect_error("SELECT `x", 0, "unterminated `...` identifier", 1);
    expect_error("A;\n/* x\n;\n", 1, "unterminated /* comment", 2);
    expect_error("A;\n\n/*/", 1, "unterminated /* comment", 3);
    expect_error("A /*! x", 0, "unterminated /* comment", 1);
    /* a backslash escaping the closing quote, or at the very end */
    expect_error("SELECT 'abc\\';\nB;", 0, "unterminated '...' string", 1);
    expect_error("SELECT 'abc\\", 0, "unterminated '...' string", 1);
    /* the error is on the line the quote opened, not where input ended */
    expect_error("A;\nB 'x\ny\nz", 1, "unterminated '...' string", 2);
}

Test(sql_split, any_bytes_and_length_honoured)
{
    result_t r;

    split("A\0B;C", 5, &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(memcmp(r.text[0], "A\0B", 3), 0);
    cr_assert_str_eq(r.text[1], "C");

    /* the quote after len is not seen */
    split("A;B'", 3, &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 2);

    split("\xff\xfe;\x80", 4, &r);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.n, 2);
}

/*
 * Invariants on every input: statements lie inside the input, in order, do
 * not overlap, start and end on non-space bytes, carry non-decreasing lines,
 * and the splitter ends.  Exhaustive over short strings of the characters
 * that matter, then pseudo-random longer ones.
 */
static void check_invariants(const char *buf, size_t len)
{
    parley_sql_split_t sp;
    parley_sql_stmt_t  st;
    const char        *prev_end = buf;
    unsigned           prev_line = 1;
    size_t             calls = 0;
    int                rc;

    parley_sql_split_init(&sp, buf, len);

    while ((rc = parley_sql_split_next(&sp, &st)) == 1) {
        cr_assert_leq(++calls, len, "more statements than bytes");
        cr_assert_geq(st.text, prev_end);
        cr_assert_gt(st.len, 0);
        cr_assert_leq(st.text + st.len, buf + len);
        cr_assert_neq(st.text[0], ' ');
        cr_assert_neq(st.text[0], '\n');
        cr_assert_neq(st.text[st.len - 1], ' ');
        cr_assert_neq(st.text[st.len - 1], ';');
        cr_assert_geq(st.line, prev_line);
        prev_end = st.text + st.len;
        prev_line = st.line;
    }

    if (rc == -1) {
        cr_assert_not_null(sp.error);
        cr_assert_geq(sp.error_line, 1);
    }
    cr_assert_leq(sp.pos, len);
}

Test(sql_split, invariants_exhaustive_short_inputs)
{
    static const char alphabet[] = "';\"`\\-#/*!\n x";
    const size_t      k = sizeof(alphabet) - 1;
    char              buf[5];
    size_t            len, i, n, total, v;

    for (len = 0; len <= 5; len++) {
        total = 1;
        for (i = 0; i < len; i++) {
            total *= k;
        }
        for (n = 0; n < total; n++) {
            v = n;
            for (i = 0; i < len; i++) {
                buf[i] = alphabet[v % k];
                v /= k;
            }
            check_invariants(buf, len);
        }
    }
}

Test(sql_split, invariants_random_inputs)
{
    static const char alphabet[] = "';\"`\\-#/*!+\n\t x\0\xff";
    char              buf[200];
    uint32_t          state = 12345;
    size_t            len, i;
    int               round;

    for (round = 0; round < 20000; round++) {
        state = state * 1103515245u + 12345u;
        len = (state >> 16) % sizeof(buf);
        for (i = 0; i < len; i++) {
            state = state * 1103515245u + 12345u;
            buf[i] = alphabet[(state >> 16) % (sizeof(alphabet) - 1)];
        }
        check_invariants(buf, len);
    }
}
