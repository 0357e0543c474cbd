/*
 * parley_route: REST path matching and parameter validation.
 *
 * The path is handed over in a heap copy of exactly path_len bytes (no NUL
 * after it), the value buffer is exactly path_len + PARLEY_ROUTE_MAX_PARAMS
 * bytes and the params array exactly PARLEY_ROUTE_MAX_PARAMS entries, so
 * ASan reports any read or write past what the header allows.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley_route.h"

#define USER_TOKEN "/v1/users/{uid}/tokens/{tid}"
#define ONE_PARAM  "/v1/items/{id}"

typedef struct {
    parley_route_rc_t rc;
    size_t nparams;
    size_t bad;
    char value[PARLEY_ROUTE_MAX_PARAMS][1024];
    size_t len[PARLEY_ROUTE_MAX_PARAMS];
} result_t;

/*
 * Matches pattern against len bytes of path, checks what the header
 * promises about the params (names inside the pattern, values inside the
 * buffer, NUL-terminated, in order, no overlap) and copies them out.
 */
static result_t route(const char *pattern, const char *path, size_t len)
{
    char *p = malloc(len ? len : 1);
    char *buf = malloc(len + PARLEY_ROUTE_MAX_PARAMS);
    parley_route_param_t *params =
        malloc(PARLEY_ROUTE_MAX_PARAMS * sizeof(*params));
    char *prev_end = NULL;
    result_t r;
    size_t i;

    cr_assert(p != NULL && buf != NULL && params != NULL);
    memset(&r, 0, sizeof(r));
    memcpy(p, path, len);
    r.nparams = 99;
    r.bad = 99;

    r.rc = parley_route_match(pattern, p, len, buf, params, &r.nparams, &r.bad);

    cr_assert(r.rc == PARLEY_ROUTE_MATCH || r.rc == PARLEY_ROUTE_NO_MATCH
                  || r.rc == PARLEY_ROUTE_BAD_PARAM,
              "rc %d", (int) r.rc);
    if (r.rc == PARLEY_ROUTE_NO_MATCH) {
        cr_assert_eq(r.nparams, 0);
    }
    if (r.rc == PARLEY_ROUTE_BAD_PARAM) {
        cr_assert_lt(r.bad, r.nparams);
    }
    cr_assert_leq(r.nparams, PARLEY_ROUTE_MAX_PARAMS);

    for (i = 0; r.rc != PARLEY_ROUTE_NO_MATCH && i < r.nparams; i++) {
        cr_assert(params[i].name > pattern
                  && params[i].name + params[i].name_len
                         < pattern + strlen(pattern));
        cr_assert_eq(params[i].name[-1], '{');
        cr_assert_eq(params[i].name[params[i].name_len], '}');
        cr_assert(params[i].value >= buf);
        cr_assert(params[i].value + params[i].len
                  < buf + len + PARLEY_ROUTE_MAX_PARAMS);
        cr_assert(prev_end == NULL || params[i].value > prev_end);
        cr_assert_eq(params[i].value[params[i].len], '\0');
        prev_end = params[i].value + params[i].len;
        cr_assert_lt(params[i].len, sizeof(r.value[0]));
        memcpy(r.value[i], params[i].value, params[i].len + 1);
        r.len[i] = params[i].len;
    }

    free(params);
    free(buf);
    free(p);
    return r;
}

static result_t route_str(const char *pattern, const char *path)
{
    return route(pattern, path, strlen(path));
}

static void expect_no_match(const char *pattern, const char *path)
{
    result_t r = route_str(pattern, path);

    cr_assert_eq(r.rc, PARLEY_ROUTE_NO_MATCH, "%s against \"%s\": %d",
                 pattern, path, (int) r.rc);
}

static void expect_bad(const char *pattern, const char *path, size_t len,
                       size_t bad)
{
    result_t r = route(pattern, path, len);

    cr_assert_eq(r.rc, PARLEY_ROUTE_BAD_PARAM, "%s against \"%.*s\": %d",
                 pattern, (int) len, path, (int) r.rc);
    cr_assert_eq(r.bad, bad, "%s against \"%.*s\": bad %zu", pattern,
                 (int) len, path, r.bad);
}

static void expect_bad_id(const char *segment)
{
    char path[2048];

    snprintf(path, sizeof(path), "/v1/items/%s", segment);
    expect_bad(ONE_PARAM, path, strlen(path), 0);
}

static void expect_id(const char *segment, const char *value)
{
    char path[2048];
    result_t r;

    snprintf(path, sizeof(path), "/v1/items/%s", segment);
    r = route_str(ONE_PARAM, path);
    cr_assert_eq(r.rc, PARLEY_ROUTE_MATCH, "\"%s\": %d", path, (int) r.rc);
    cr_assert_eq(r.nparams, 1);
    cr_assert_str_eq(r.value[0], value, "\"%s\"", path);
    cr_assert_eq(r.len[0], strlen(value));
}

/* ---- matching --------------------------------------------------------- */

Test(route, literal_path_matches)
{
    result_t r = route_str("/v1/health", "/v1/health");

    cr_assert_eq(r.rc, PARLEY_ROUTE_MATCH);
    cr_assert_eq(r.nparams, 0);
    cr_assert_eq(route_str("/", "/").rc, PARLEY_ROUTE_MATCH);
}

Test(route, params_are_captured_with_names)
{
    static const char pattern[] = USER_TOKEN;
    char buf[64];
    parley_route_param_t params[PARLEY_ROUTE_MAX_PARAMS];
    size_t n = 0, bad = 0;
    const char *path = "/v1/users/u-42/tokens/t7";

    cr_assert_eq(parley_route_match(pattern, path, strlen(path), buf, params,
                                    &n, &bad),
                 PARLEY_ROUTE_MATCH);
    cr_assert_eq(n, 2);
    cr_assert_eq(params[0].name, pattern + 11);
    cr_assert_eq(params[0].name_len, 3);
    cr_assert_eq(memcmp(params[0].name, "uid", 3), 0);
    cr_assert_eq(memcmp(params[1].name, "tid", 3), 0);
    cr_assert_str_eq(params[0].value, "u-42");
    cr_assert_eq(params[0].len, 4);
    cr_assert_str_eq(params[1].value, "t7");
    cr_assert_eq(params[1].len, 2);
}

Test(route, params_are_percent_decoded)
{
    expect_id("a%20b", "a b");
    expect_id("%41%62%63", "Abc");
    expect_id("%7e%7E", "~~");
    expect_id("100%25", "100%");
    expect_id("a+b", "a+b"); /* '+' is a space only in a query string */
}

Test(route, encoded_slash_stays_inside_the_param)
{
    result_t r = route_str(USER_TOKEN, "/v1/users/a%2Fb/tokens/c%2fd");

    cr_assert_eq(r.rc, PARLEY_ROUTE_MATCH);
    cr_assert_str_eq(r.value[0], "a/b");
    cr_assert_str_eq(r.value[1], "c/d");

    expect_no_match(USER_TOKEN, "/v1/users/a/b/tokens/c");
}

Test(route, utf8_ids_are_accepted)
{
    expect_id("%C3%A9t%C3%A9", "\xc3\xa9t\xc3\xa9");       /* été, encoded */
    expect_id("\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9");   /* été, raw */
    expect_id("%F0%9F%98%80", "\xf0\x9f\x98\x80");         /* U+1F600 */
    expect_id("%E2%82%AC", "\xe2\x82\xac");                /* € */
    expect_id("%F4%8F%BF%BF", "\xf4\x8f\xbf\xbf");         /* U+10FFFF */
    expect_id("%C2%A0", "\xc2\xa0");                       /* first after C1 */
}

Test(route, literal_segments_are_not_decoded)
{
    expect_no_match("/v1/health", "/v1/%68ealth");
    expect_no_match("/v1/health", "/v1/Health");
}

Test(route, different_literal_does_not_match)
{
    expect_no_match(USER_TOKEN, "/v1/users/u1/token/t1");
    expect_no_match(USER_TOKEN, "/v2/users/u1/tokens/t1");
    expect_no_match("/v1/health", "/v1/healthz");
    expect_no_match("/v1/health", "/v1/healt");
}

Test(route, extra_or_missing_segment_does_not_match)
{
    expect_no_match(USER_TOKEN, "/v1/users/u1/tokens/t1/x");
    expect_no_match(USER_TOKEN, "/v1/users/u1/tokens");
    expect_no_match(USER_TOKEN, "/v1/users/u1");
    expect_no_match("/v1/health", "/v1");
    expect_no_match("/v1/health", "/v1/health/x");
}

Test(route, trailing_slash_does_not_match)
{
    expect_no_match(USER_TOKEN, "/v1/users/u1/tokens/t1/");
    expect_no_match("/v1/health", "/v1/health/");
    expect_no_match(ONE_PARAM, "/v1/items/");
}

Test(route, empty_param_does_not_match)
{
    expect_no_match(USER_TOKEN, "/v1/users//tokens/t1");
    expect_no_match(USER_TOKEN, "/v1/users/u1/tokens/");
    expect_no_match("/{a}", "/");
    expect_no_match("/{a}", "//");
}

Test(route, empty_or_relative_path_does_not_match)
{
    expect_no_match("/v1/health", "");
    expect_no_match("/", "");
    expect_no_match("/v1/health", "v1/health");
    expect_no_match(ONE_PARAM, "v1/items/x");
    expect_no_match("/v1/health", "//v1/health");
}

Test(route, zero_length_ignores_the_bytes_behind_it)
{
    result_t r = route("/v1/health", "/v1/health", 0);

    cr_assert_eq(r.rc, PARLEY_ROUTE_NO_MATCH);
}

Test(route, path_is_bounded_by_len_not_by_nul)
{
    /* a raw NUL ends neither the path nor a segment */
    cr_assert_eq(route("/v1/health", "/v1/health\0/x", 13).rc,
                 PARLEY_ROUTE_NO_MATCH);
    cr_assert_eq(route("/v1/health", "/v1/he\0lth", 11).rc,
                 PARLEY_ROUTE_NO_MATCH);
    cr_assert_eq(route("/v1/health", "/v1/health/x", 10).rc,
                 PARLEY_ROUTE_MATCH);
    expect_bad(ONE_PARAM, "/v1/items/a\0b", 13, 0);
}

/* ---- bad parameters --------------------------------------------------- */

Test(route, bad_escape_names_the_param)
{
    static const char *const bad[] = {"%", "%4", "%zz", "%g0", "%0g",
                                      "a%",  "ab%2", "%%41", "%-1", "% 1"};
    char path[64];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_bad_id(bad[i]);

        snprintf(path, sizeof(path), "/v1/users/%s/tokens/ok", bad[i]);
        expect_bad(USER_TOKEN, path, strlen(path), 0);

        snprintf(path, sizeof(path), "/v1/users/ok/tokens/%s", bad[i]);
        expect_bad(USER_TOKEN, path, strlen(path), 1);
    }
}

Test(route, first_bad_param_is_reported)
{
    result_t r = route_str(USER_TOKEN, "/v1/users/%zz/tokens/%");

    cr_assert_eq(r.rc, PARLEY_ROUTE_BAD_PARAM);
    cr_assert_eq(r.bad, 0);
    cr_assert_eq(r.nparams, 2);
}

Test(route, bad_param_with_wrong_shape_is_no_match)
{
    expect_no_match(USER_TOKEN, "/v1/users/%zz/tokenz/t1");
    expect_no_match(USER_TOKEN, "/v1/users/%zz/tokens/t1/");
    expect_no_match(USER_TOKEN, "/v1/users/%00/tokens");
}

Test(route, control_characters_are_rejected)
{
    static const char *const bad[] = {"%00",    "a%00b",  "%01", "%09",
                                      "%0A",    "%0d",    "%1F", "%1b[2J",
                                      "%7F",    "a\x01",  "\t",  "\x7f",
                                      "%C2%80", "%C2%85", "%C2%9B", "%C2%9F"};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_bad_id(bad[i]);
    }
    expect_id("%20", " ");
    expect_id("%7E", "~");
}

Test(route, invalid_utf8_is_rejected)
{
    static const char *const bad[] = {
        "%ff",          "%FE",          "%80",          "%C3",
        "a%C3",         "%C3%28",       "%C0%AF",       "%C1%BF",
        "%E0%80%AF",    "%ED%A0%80",    "%ED%BF%BF",    "%E2%82",
        "%F0%82%82%AC", "%F4%90%80%80", "%F5%80%80%80", "%F0%9F%98",
        "\xff",         "\xc3(",        "\xed\xa0\x80",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_bad_id(bad[i]);
    }
}

Test(route, param_length_limit_is_on_decoded_bytes)
{
    char seg[4 * PARLEY_ROUTE_PARAM_MAX], want[PARLEY_ROUTE_PARAM_MAX + 2];
    size_t i;

    /* raw: exactly 256 is fine, 257 is too long */
    memset(seg, 'a', PARLEY_ROUTE_PARAM_MAX);
    seg[PARLEY_ROUTE_PARAM_MAX] = '\0';
    expect_id(seg, seg);
    seg[PARLEY_ROUTE_PARAM_MAX] = 'a';
    seg[PARLEY_ROUTE_PARAM_MAX + 1] = '\0';
    expect_bad_id(seg);

    /* encoded: 768 raw bytes decoding to 256 are fine, to 257 not */
    for (i = 0; i < PARLEY_ROUTE_PARAM_MAX; i++) {
        memcpy(seg + 3 * i, "%41", 3);
        want[i] = 'A';
    }
    seg[3 * PARLEY_ROUTE_PARAM_MAX] = '\0';
    want[PARLEY_ROUTE_PARAM_MAX] = '\0';
    expect_id(seg, want);
    strcat(seg, "B");
    expect_bad_id(seg);

    /* multi-byte: 128 x U+00E9 is 256 bytes */
    for (i = 0; i < PARLEY_ROUTE_PARAM_MAX / 2; i++) {
        memcpy(seg + 2 * i, "\xc3\xa9", 2);
    }
    seg[PARLEY_ROUTE_PARAM_MAX] = '\0';
    expect_id(seg, seg);
    strcat(seg, "x");
    expect_bad_id(seg);
}

Test(route, long_param_is_bad_in_any_position)
{
    char path[2048];
    char seg[PARLEY_ROUTE_PARAM_MAX + 2];

    memset(seg, 'z', sizeof(seg) - 1);
    seg[sizeof(seg) - 1] = '\0';
    snprintf(path, sizeof(path), "/v1/users/ok/tokens/%s", seg);
    expect_bad(USER_TOKEN, path, strlen(path), 1);
}

/* ---- parameter count -------------------------------------------------- */

Test(route, four_params_match)
{
    result_t r = route_str("/{a}/x/{b}/{c}/{d}", "/1/x/%32/3%20/4");

    cr_assert_eq(r.rc, PARLEY_ROUTE_MATCH);
    cr_assert_eq(r.nparams, 4);
    cr_assert_str_eq(r.value[0], "1");
    cr_assert_str_eq(r.value[1], "2");
    cr_assert_str_eq(r.value[2], "3 ");
    cr_assert_str_eq(r.value[3], "4");
}

Test(route, four_one_byte_params_fill_the_buffer_exactly)
{
    /* 4 values of 1 byte + 4 NULs in a buffer of path_len + 4 = 12 */
    result_t r = route_str("/{a}/{b}/{c}/{d}", "/a/b/c/d");

    cr_assert_eq(r.rc, PARLEY_ROUTE_MATCH);
    cr_assert_str_eq(r.value[3], "d");
}

Test(route, five_params_never_match)
{
    static const char pattern[] = "/{a}/{b}/{c}/{d}/{e}";

    expect_no_match(pattern, "/1/2/3/4/5");
    expect_no_match(pattern, "/1/2/3/4/%zz");
    expect_no_match(pattern, "/1/2/3/4");
    expect_no_match(pattern, "/1/2/3/4/5/6");
    expect_no_match("/{a}/{b}/{c}/{d}/x/{e}", "/1/2/3/4/x/5");
}

/* ---- pattern shapes --------------------------------------------------- */

Test(route, braces_only_make_a_param_as_a_whole_segment)
{
    expect_no_match("/v1/{id", "/v1/x");
    cr_assert_eq(route_str("/v1/{id", "/v1/{id").rc, PARLEY_ROUTE_MATCH);
    cr_assert_eq(route_str("/v1/a{id}", "/v1/a{id}").rc, PARLEY_ROUTE_MATCH);
    expect_no_match("/v1/a{id}", "/v1/ax");
}

/* ---- parley_percent_decode -------------------------------------------- */

Test(route, percent_decode_in_place)
{
    char s[] = "a%20b%2fc%41";

    cr_assert_eq(parley_percent_decode(s, s, strlen(s)), 6);
    cr_assert_eq(memcmp(s, "a b/cA", 6), 0);
}

Test(route, percent_decode_rejects_bad_escapes)
{
    static const char *const bad[] = {"%", "%4", "x%4", "%zz", "%4z", "%%"};
    char out[8];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parley_percent_decode(out, bad[i], strlen(bad[i])), -1,
                     "\"%s\"", bad[i]);
    }
    cr_assert_eq(parley_percent_decode(out, "", 0), 0);
    cr_assert_eq(parley_percent_decode(out, "%00", 3), 1);
    cr_assert_eq(out[0], '\0');
}

Test(route, percent_decode_stops_at_len)
{
    /* "%4" then a byte outside len: truncated, not "%41" */
    char out[8];

    cr_assert_eq(parley_percent_decode(out, "%41", 2), -1);
    cr_assert_eq(parley_percent_decode(out, "ab%41", 2), 2);
}
