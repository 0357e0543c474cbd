#include <criterion/criterion.h>
#include <string.h>

#include "parley_json.h"

static char *escape(const char *src, size_t len, size_t *out_len)
{
    static unsigned char buf[4096];
    size_t need = parley_json_escaped_len((const unsigned char *) src, len);
    cr_assert(need < sizeof(buf));
    unsigned char *end = parley_json_escape(buf, (const unsigned char *) src, len);
    cr_assert((size_t) (end - buf) <= need, "wrote %zu, reserved %zu",
              (size_t) (end - buf), need);
    *end = '\0';
    *out_len = end - buf;
    return (char *) buf;
}

Test(json, plain_text_is_copied)
{
    size_t n;
    cr_assert_str_eq(escape("hello world", 11, &n), "hello world");
    cr_assert_eq(n, 11);
}

Test(json, quotes_backslashes_and_controls_are_escaped)
{
    size_t n;
    const char in[] = "a\"b\\c\nd\te\r\b\f\x01\x1f";
    cr_assert_str_eq(escape(in, sizeof(in) - 1, &n),
                     "a\\\"b\\\\c\\nd\\te\\r\\b\\f\\u0001\\u001f");
}

Test(json, nul_byte_is_escaped)
{
    size_t n;
    cr_assert_str_eq(escape("a\0b", 3, &n), "a\\u0000b");
}

Test(json, valid_utf8_is_kept)
{
    size_t n;
    const char in[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    cr_assert_str_eq(escape(in, sizeof(in) - 1, &n), in);
}

Test(json, invalid_utf8_becomes_replacement_character)
{
    size_t n;
    /* lone continuation, overlong '/', surrogate, truncated 3-byte sequence */
    const char in[] = "\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82";
    char *out = escape(in, sizeof(in) - 1, &n);
    cr_assert_str_eq(out, "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                          "\xef\xbf\xbd\xef\xbf\xbd");
}

Test(json, utf8_sequence_lengths)
{
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "A", 1), 1);
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xc3\xa9", 2), 2);
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xe2\x82\xac", 3), 3);
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xf4\x8f\xbf\xbf", 4), 4);
    /* above U+10FFFF */
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xf4\x90\x80\x80", 4), 0);
    /* overlong 4-byte */
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xf0\x8f\xbf\xbf", 4), 0);
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xc1\xbf", 2), 0);
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "\xff", 1), 0);
    cr_assert_eq(parley_utf8_sequence((const unsigned char *) "", 0), 0);
}

Test(json, every_byte_pair_yields_bounded_output)
{
    unsigned char in[2], out[16];
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            in[0] = a;
            in[1] = b;
            size_t need = parley_json_escaped_len(in, 2);
            cr_assert(need <= 12);
            unsigned char *end = parley_json_escape(out, in, 2);
            cr_assert((size_t) (end - out) <= need);
        }
    }
}

static unsigned depth(const char *s)
{
    return parley_json_max_depth((const unsigned char *) s, strlen(s));
}

Test(json, depth_counts_nesting_outside_strings)
{
    cr_assert_eq(depth("1"), 0);
    cr_assert_eq(depth("{}"), 1);
    cr_assert_eq(depth("{\"a\":[1,{\"b\":[]}]}"), 4);
    cr_assert_eq(depth("[[],[],[[]]]"), 3);
    cr_assert_eq(depth("{\"a\":\"[[[[{{{{\"}"), 1);
    cr_assert_eq(depth("{\"a\":\"\\\"[[[\"}"), 1);
    /* malformed input gets a bounded answer */
    cr_assert_eq(depth("]]]]["), 1);
    cr_assert_eq(depth("\"unterminated [[["), 0);
}
