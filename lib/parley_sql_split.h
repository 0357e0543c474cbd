/*
 * Splits an SQL script (a migration file) into statements, the way the
 * mysql command-line client does for the statements Parley's migrations may
 * use: on ';' outside quotes and comments.
 *
 * Lexing follows MySQL/MariaDB/TiDB in their default sql_mode:
 *   '...' and "..."  strings; a backslash escapes the next byte, a doubled
 *                    quote stands for itself
 *   `...`            identifiers; only a doubled backtick escapes (a
 *                    backslash is an ordinary character there, as in MySQL)
 *   -- comment       "--" then a space, tab, CR, LF, FF, VT or the end of
 *                    input, up to the end of the line ("1--1" is no comment)
 *   # comment        up to the end of the line
 *   / * comment * /  not nested; the forms a server executes count as
 *                    statement text and are never trimmed: "/ *!" (version
 *                    comments), "/ *M!" (MariaDB only), "/ *T!" (TiDB only,
 *                    e.g. SHARD_ROW_ID_BITS) and "/ *+" (optimizer hints)
 * There is no DELIMITER command: Parley migrations hold no procedures or
 * triggers (DESIGN §2.7), so ';' always ends a statement.
 *
 * The splitter works on any bytes (NUL included) in one pass without
 * recursion or allocation, and never reads outside buf[0..len).
 */
#ifndef PARLEY_SQL_SPLIT_H
#define PARLEY_SQL_SPLIT_H

#include <stddef.h>

/*
 * A statement: text points into the input, len excludes the ';' and the
 * whitespace and plain comments before and after the statement (comments
 * inside it are kept).  line is the 1-based line where it starts.
 */
typedef struct {
    const char *text;
    size_t      len;
    unsigned    line;
} parley_sql_stmt_t;

typedef struct {
    const char *buf;
    size_t      len;
    size_t      pos;
    unsigned    line;       /* line of buf[pos] */
    int         failed;
    const char *error;      /* after -1: static message, e.g. */
    unsigned    error_line; /* "unterminated '...' string" and its line */
} parley_sql_split_t;

void parley_sql_split_init(parley_sql_split_t *sp, const char *buf,
                           size_t len);

/*
 * Next non-empty statement: 1 and *stmt set; 0 at the end of the input (a
 * last statement needs no ';'); -1 on an unterminated string, identifier or
 * comment, with sp->error and sp->error_line naming it and where it opened.
 * After 0 or -1, further calls return the same.  Statements holding only
 * whitespace and plain comments (";;", "-- x\n;") are skipped.
 */
int parley_sql_split_next(parley_sql_split_t *sp, parley_sql_stmt_t *stmt);

#endif
