/*
 * SQL string literals for the MySQL protocol (MariaDB, TiDB), built without
 * a connection: with utf8mb4 (no multi-byte character contains a byte below
 * 0x80) escaping does not depend on connection state, only on sql_mode not
 * holding NO_BACKSLASH_ESCAPES, which Parley's connections never set.
 */
#ifndef PARLEY_SQL_H
#define PARLEY_SQL_H

#include <stddef.h>

/* Bytes parley_sql_escape writes for src (without the quotes). */
size_t parley_sql_escaped_len(const unsigned char *src, size_t len);

/*
 * Writes src escaped for use between single quotes: NUL, LF, CR, backslash,
 * both quotes and ^Z get a backslash escape, as mysql_real_escape_string
 * does.  dst needs parley_sql_escaped_len(src, len) bytes; returns the end.
 */
unsigned char *parley_sql_escape(unsigned char *dst, const unsigned char *src,
                                 size_t len);

/*
 * Escapes for the pattern of a LIKE with the default ESCAPE '\', so that
 * every byte of src matches only itself: as parley_sql_escape, except that
 * '%' and '_' become \% and \_ (which the string parser keeps as they are)
 * and a backslash becomes four, \\\\: the string parser makes it \\, which
 * LIKE reads as one literal backslash.  With only \\, LIKE would take the
 * backslash as escaping the next byte, so "\%" would turn into a literal
 * backslash followed by a wildcard.  Worst case 4 bytes per input byte.
 */
size_t parley_sql_like_escaped_len(const unsigned char *src, size_t len);
unsigned char *parley_sql_like_escape(unsigned char *dst,
                                      const unsigned char *src, size_t len);

/*
 * The LIKE-pattern escaping alone, for text that is then passed through
 * parley_sql_escape (or a formatter that does it): '%', '_' and '\\' get a
 * backslash so that they match themselves.  dst needs 2 * len bytes;
 * returns the end of what was written.
 */
unsigned char *parley_sql_like_pattern(unsigned char *dst,
                                       const unsigned char *src, size_t len);

#endif
