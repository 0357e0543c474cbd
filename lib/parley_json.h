/*
 * JSON text helpers for responses built by hand on hot paths (where a
 * jansson tree per response would cost an allocation per value).
 */
#ifndef PARLEY_JSON_H
#define PARLEY_JSON_H

#include <stddef.h>

/*
 * Bytes needed to write src as the inside of a JSON string (no quotes).
 * Control characters become \uXXXX or their short escapes; '"' and '\\' are
 * escaped; bytes >= 0x80 are copied (callers pass valid UTF-8, or use
 * parley_json_escape's replacement of invalid sequences, see below).
 */
size_t parley_json_escaped_len(const unsigned char *src, size_t len);

/*
 * Writes the escaped form of src into dst, which must hold
 * parley_json_escaped_len(src, len) bytes; returns the end of what was
 * written.  Invalid UTF-8 is replaced by U+FFFD (3 bytes, never more than
 * the 6 of the \u escape that parley_json_escaped_len reserves for it), so
 * the output is always valid JSON whatever the input was.
 */
unsigned char *parley_json_escape(unsigned char *dst, const unsigned char *src,
                                  size_t len);

/*
 * Length of the longest valid UTF-8 sequence at the start of src: 1..4, or 0
 * when the bytes there are not valid UTF-8 (overlongs, surrogates, values
 * above U+10FFFF and truncated sequences are invalid).
 */
size_t parley_utf8_sequence(const unsigned char *src, size_t len);

/*
 * The deepest nesting of arrays and objects in JSON text, counted without
 * parsing (brackets inside strings are skipped, escapes honoured), so that a
 * body can be refused before a parser recurses into it.  Malformed text
 * still gets a bounded answer; the parser rejects it afterwards.
 */
unsigned parley_json_max_depth(const unsigned char *text, size_t len);

#endif
