#include "parley_sql_split.h"

void parley_sql_split_init(parley_sql_split_t *sp, const char *buf,
                           size_t len)
{
    sp->buf = buf;
    sp->len = len;
    sp->pos = 0;
    sp->line = 1;
    sp->failed = 0;
    sp->error = NULL;
    sp->error_line = 0;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
           || c == '\v';
}

static int fail(parley_sql_split_t *sp, const char *error, unsigned line)
{
    sp->failed = 1;
    sp->error = error;
    sp->error_line = line;
    return -1;
}

/*
 * Skips the quoted run opening at sp->pos; returns 0 with sp->pos after the
 * closing quote, -1 when the input ends first.
 */
static int skip_quoted(parley_sql_split_t *sp)
{
    const unsigned char *b = (const unsigned char *) sp->buf;
    unsigned char        q = b[sp->pos], c;
    int                  backslash = q != '`';

    sp->pos++;

    while (sp->pos < sp->len) {
        c = b[sp->pos++];

        if (c == '\n') {
            sp->line++;
        } else if (c == '\\' && backslash) {
            if (sp->pos < sp->len) {
                if (b[sp->pos] == '\n') {
                    sp->line++;
                }
                sp->pos++;
            }
        } else if (c == q) {
            if (sp->pos < sp->len && b[sp->pos] == q) {
                sp->pos++; /* doubled quote */
            } else {
                return 0;
            }
        }
    }

    return -1;
}

/* Skips a block comment opening at sp->pos; -1 when it is not closed. */
static int skip_block_comment(parley_sql_split_t *sp)
{
    const unsigned char *b = (const unsigned char *) sp->buf;

    sp->pos += 2;

    while (sp->pos < sp->len) {
        if (b[sp->pos] == '*' && sp->pos + 1 < sp->len && b[sp->pos + 1] == '/')
        {
            sp->pos += 2;
            return 0;
        }
        if (b[sp->pos] == '\n') {
            sp->line++;
        }
        sp->pos++;
    }

    return -1;
}

/*
 * 1 when the comment opening at b (n bytes left) is one a server executes:
 * slash-star then "!" (MySQL, MariaDB, TiDB), "M!" (MariaDB), "T!" (TiDB,
 * e.g. SHARD_ROW_ID_BITS) or "+" (optimizer hints).
 */
static int is_executable_comment(const unsigned char *b, size_t n)
{
    if (n > 2 && (b[2] == '!' || b[2] == '+')) {
        return 1;
    }
    return n > 3 && (b[2] == 'M' || b[2] == 'T') && b[3] == '!';
}

/* Skips a line comment up to and including its newline. */
static void skip_line_comment(parley_sql_split_t *sp)
{
    while (sp->pos < sp->len) {
        if (sp->buf[sp->pos++] == '\n') {
            sp->line++;
            return;
        }
    }
}

int parley_sql_split_next(parley_sql_split_t *sp, parley_sql_stmt_t *stmt)
{
    const unsigned char *b = (const unsigned char *) sp->buf;
    size_t               start = 0, end = 0, tok;
    unsigned             start_line = 0, tok_line;
    int                  have = 0, executable;
    unsigned char        c, d;

    if (sp->failed) {
        return -1;
    }

    while (sp->pos < sp->len) {
        tok = sp->pos;
        tok_line = sp->line;
        c = b[tok];
        d = tok + 1 < sp->len ? b[tok + 1] : 0;

        if (c == ';') {
            sp->pos++;
            if (have) {
                break;
            }
            continue; /* empty statement */
        }

        if (is_space(c)) {
            sp->line += c == '\n';
            sp->pos++;
            continue;
        }

        if (c == '#'
            || (c == '-' && d == '-'
                && (tok + 2 == sp->len || is_space(b[tok + 2]))))
        {
            skip_line_comment(sp);
            continue;
        }

        if (c == '/' && d == '*') {
            executable = is_executable_comment(b + tok, sp->len - tok);
            if (skip_block_comment(sp) != 0) {
                return fail(sp, "unterminated /* comment", tok_line);
            }
            if (!executable) {
                continue;
            }

        } else if (c == '\'' || c == '"' || c == '`') {
            if (skip_quoted(sp) != 0) {
                return fail(sp,
                            c == '\''  ? "unterminated '...' string"
                            : c == '"' ? "unterminated \"...\" string"
                                       : "unterminated `...` identifier",
                            tok_line);
            }

        } else {
            sp->pos++;
        }

        /* statement text: from its first token to the end of its last */
        if (!have) {
            have = 1;
            start = tok;
            start_line = tok_line;
        }
        end = sp->pos;
    }

    if (!have) {
        return 0;
    }

    stmt->text = sp->buf + start;
    stmt->len = end - start;
    stmt->line = start_line;
    return 1;
}
