#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "parley_ws_handshake.h"

#define S(lit) lit, sizeof(lit) - 1

static parley_ws_upgrade_t good(void)
{
    parley_ws_upgrade_t r = {
        S("GET"),
        S("HTTP/1.1"),
        S("websocket"),
        S("Upgrade"),
        S("13"),
        S("dGhlIHNhbXBsZSBub25jZQ=="),
    };
    return r;
}

/* ---- Sec-WebSocket-Accept ---------------------------------------------- */

Test(ws_accept, rfc6455_example_key)
{
    char out[PARLEY_WS_ACCEPT_LEN + 1];

    memset(out, 0, sizeof(out));
    cr_assert_eq(parley_ws_accept(S("dGhlIHNhbXBsZSBub25jZQ=="), out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* white space around the header value does not count */
    cr_assert_eq(parley_ws_accept(S(" dGhlIHNhbXBsZSBub25jZQ==\t"), out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws_accept, random_keys_match_an_independent_computation)
{
    unsigned char raw[16], md[20];
    char          key[32], want[32], got[PARLEY_WS_ACCEPT_LEN + 1];
    char          cat[80];
    unsigned      md_len;
    int           i;

    for (i = 0; i < 200; i++) {
        cr_assert_eq(RAND_bytes(raw, sizeof(raw)), 1);
        cr_assert_eq(EVP_EncodeBlock((unsigned char *) key, raw, 16), 24);
        snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        cr_assert_eq(EVP_Digest(cat, strlen(cat), md, &md_len, EVP_sha1(), NULL), 1);
        cr_assert_eq(EVP_EncodeBlock((unsigned char *) want, md, 20), 28);
        memset(got, 0, sizeof(got));
        cr_assert_eq(parley_ws_accept(key, 24, got), 0);
        cr_assert_str_eq(got, want);
    }
}

Test(ws_accept, bad_keys_are_refused)
{
    char out[PARLEY_WS_ACCEPT_LEN];

    cr_assert_eq(parley_ws_accept(NULL, 0, out), -1);
    cr_assert_eq(parley_ws_accept(S(""), out), -1);
    cr_assert_eq(parley_ws_accept(S("dGhlIHNhbXBsZSBub25jZQ="), out), -1);
    cr_assert_eq(parley_ws_accept(S("dGhlIHNhbXBsZSBub25jZQ==="), out), -1);
}

/* ---- request checks ---------------------------------------------------- */

Test(ws_handshake, a_browser_request_passes)
{
    parley_ws_upgrade_t r = good();

    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_OK), 101);

    /* Firefox: "Connection: keep-alive, Upgrade" */
    r.connection = "keep-alive, Upgrade";
    r.connection_len = strlen(r.connection);
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK);
}

Test(ws_handshake, method_must_be_get)
{
    static const char *bad[] = { "POST", "get", "GET ", "HEAD", "" };
    parley_ws_upgrade_t r = good();
    size_t              i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.method = bad[i];
        r.method_len = strlen(bad[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_METHOD, "%s", bad[i]);
    }
    r.method = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_METHOD);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_BAD_METHOD), 405);
}

Test(ws_handshake, http_version_must_be_1_1)
{
    static const char *bad[] = { "HTTP/1.0", "HTTP/2.0", "HTTP/2", "http/1.1", "HTTP/1.10",
                                 "" };
    parley_ws_upgrade_t r = good();
    size_t              i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.http_version = bad[i];
        r.http_version_len = strlen(bad[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_HTTP_VERSION, "%s",
                     bad[i]);
    }
    r.http_version = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_HTTP_VERSION);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_BAD_HTTP_VERSION), 400);
}

Test(ws_handshake, upgrade_needs_the_websocket_token)
{
    static const char *ok[] = { "websocket", "WebSocket", "WEBSOCKET", " websocket ",
                                "h2c, websocket", "websocket,foo", ",,websocket,," };
    static const char *bad[] = { "", "h2c", "websocketx", "web socket", "websocket/13",
                                 "\"websocket\"", "xwebsocket", ", ," };
    parley_ws_upgrade_t r = good();
    size_t              i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        r.upgrade = ok[i];
        r.upgrade_len = strlen(ok[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK, "%s", ok[i]);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.upgrade = bad[i];
        r.upgrade_len = strlen(bad[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_NO_UPGRADE, "%s", bad[i]);
    }
    r.upgrade = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_NO_UPGRADE);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_NO_UPGRADE), 426);
}

Test(ws_handshake, connection_needs_the_upgrade_token)
{
    static const char *ok[] = { "Upgrade", "upgrade", "UPGRADE", "keep-alive, Upgrade",
                                "Upgrade, keep-alive", "keep-alive,upgrade", "\tUpgrade\t" };
    static const char *bad[] = { "", "keep-alive", "Upgradex", "Up grade", "close",
                                 "keep-alive; Upgrade" };
    parley_ws_upgrade_t r = good();
    size_t              i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        r.connection = ok[i];
        r.connection_len = strlen(ok[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK, "%s", ok[i]);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.connection = bad[i];
        r.connection_len = strlen(bad[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_NO_CONNECTION, "%s",
                     bad[i]);
    }
    r.connection = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_NO_CONNECTION);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_NO_CONNECTION), 400);
}

Test(ws_handshake, version_must_be_13_else_426)
{
    static const char *bad[] = { "8", "7", "12", "14", "013", "13, 8", "", "1 3" };
    parley_ws_upgrade_t r = good();
    size_t              i;

    r.version = " 13 ";
    r.version_len = 4;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.version = bad[i];
        r.version_len = strlen(bad[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_VERSION, "%s", bad[i]);
    }
    r.version = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_VERSION);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_BAD_VERSION), 426);
    cr_assert(strstr(parley_ws_handshake_reason(PARLEY_WS_HS_BAD_VERSION), "13") != NULL);
}

Test(ws_handshake, key_must_be_base64_of_16_bytes)
{
    static const char *ok[] = { "AAAAAAAAAAAAAAAAAAAAAA==", "////////////////////+w==",
                                " dGhlIHNhbXBsZSBub25jZQ== ",
                                /* non-zero trailing bits: still decodes to 16 bytes */
                                "dGhlIHNhbXBsZSBub25jZR==" };
    static const char *bad[] = {
        "", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZQ===", "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub25j-Q==", /* base64url alphabet */
        "dGhlIHNhbXBsZSBub25j_Q==", "dGhlIHNhbXBsZ SBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZQ==dGhl", "AAAAAAAAAAAAAAAAAAAAAAA=", /* 17 bytes */
        "AAAAAAAAAAAAAAAAAAAA====",                                /* 15 bytes */
    };
    parley_ws_upgrade_t r = good();
    size_t              i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        r.key = ok[i];
        r.key_len = strlen(ok[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK, "%s", ok[i]);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[PARLEY_WS_ACCEPT_LEN];

        r.key = bad[i];
        r.key_len = strlen(bad[i]);
        cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_KEY, "%s", bad[i]);
        cr_assert_eq(parley_ws_accept(r.key, r.key_len, out), -1);
    }
    r.key = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_KEY);
    cr_assert_eq(parley_ws_handshake_status(PARLEY_WS_HS_BAD_KEY), 400);
}

Test(ws_handshake, checks_come_in_a_fixed_order)
{
    parley_ws_upgrade_t r = good();

    /* a v8 client with a fine key hears about the version, with 426 */
    r.key = "bad";
    r.key_len = 3;
    r.version = "8";
    r.version_len = 1;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_VERSION);
    r.upgrade = NULL;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_NO_UPGRADE);
    r.method = "POST";
    r.method_len = 4;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_BAD_METHOD);
}

Test(ws_handshake, values_are_read_only_within_their_length)
{
    /* not NUL-terminated, right at the end of a heap block */
    char               *heap = malloc(9);
    parley_ws_upgrade_t r = good();

    memcpy(heap, "websocket", 9);
    r.upgrade = heap;
    r.upgrade_len = 9;
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_OK);
    r.upgrade_len = 8; /* "websocke" */
    cr_assert_eq(parley_ws_handshake_check(&r), PARLEY_WS_HS_NO_UPGRADE);
    free(heap);
}

Test(ws_handshake, every_result_has_a_reason)
{
    int rc;

    for (rc = PARLEY_WS_HS_OK; rc <= PARLEY_WS_HS_BAD_KEY; rc++) {
        cr_assert(parley_ws_handshake_reason((parley_ws_hs_rc_t) rc) != NULL);
        cr_assert(parley_ws_handshake_status((parley_ws_hs_rc_t) rc) >= 101);
    }
}

/* ---- lists and protocols ----------------------------------------------- */

static void items(const char *list, const char *want)
{
    char        got[256] = "";
    const char *it;
    size_t      n, pos = 0;

    while (parley_ws_list_next(list, strlen(list), &pos, &it, &n)) {
        strncat(got, it, n);
        strcat(got, "|");
    }
    cr_assert_str_eq(got, want, "list \"%s\"", list);
    cr_assert_eq(parley_ws_list_next(list, strlen(list), &pos, &it, &n), 0);
}

Test(ws_list, items_are_trimmed_and_empty_ones_skipped)
{
    items("", "");
    items(",", "");
    items(" , ,\t,", "");
    items("a", "a|");
    items("a,b", "a|b|");
    items(" a , b ,", "a|b|");
    items(",,a,,b,,", "a|b|");
    items("a b, c", "a b|c|");
    items("parley.v1, bearer.eyJhbGciOi.x-y_z", "parley.v1|bearer.eyJhbGciOi.x-y_z|");
}

Test(ws_list, token_check)
{
    cr_assert(parley_ws_is_token(S("parley.v1")));
    cr_assert(parley_ws_is_token(S("bearer.abc-_~!#$%&'*+^`|")));
    cr_assert(!parley_ws_is_token(S("")));
    cr_assert(!parley_ws_is_token(S("a b")));
    cr_assert(!parley_ws_is_token(S("a;b")));
    cr_assert(!parley_ws_is_token(S("a\"b")));
    cr_assert(!parley_ws_is_token(S("a/b")));
    cr_assert(!parley_ws_is_token("a\0b", 3));
    cr_assert(!parley_ws_is_token(S("caf\xc3\xa9")));
}

Test(ws_protocol, lists_must_be_tokens)
{
    cr_assert(parley_ws_protocol_valid(S("parley.v1")));
    cr_assert(parley_ws_protocol_valid(S("parley.v1, bearer.abc")));
    cr_assert(parley_ws_protocol_valid(S("a,,b")));
    cr_assert(!parley_ws_protocol_valid(S("")));
    cr_assert(!parley_ws_protocol_valid(S(" , ")));
    cr_assert(!parley_ws_protocol_valid(S("a b")));
    cr_assert(!parley_ws_protocol_valid(S("a;b")));
    cr_assert(!parley_ws_protocol_valid(S("a, \"b\"")));
    cr_assert(!parley_ws_protocol_valid("a\0", 2));
    cr_assert(!parley_ws_protocol_valid(NULL, 0));
}

Test(ws_protocol, select_parley_v1_and_find_the_bearer_token)
{
    const char  offer[] = "parley.v1, bearer.eyJhbGciOiJFUzI1NiJ9.e30.sig";
    const char *tok;
    size_t      tok_len;

    cr_assert(parley_ws_protocol_has(S(offer), S("parley.v1")));
    cr_assert(!parley_ws_protocol_has(S(offer), S("parley.v2")));
    cr_assert(!parley_ws_protocol_has(S(offer), S("parley")));
    cr_assert(!parley_ws_protocol_has(S(offer), S("Parley.v1")), "case-sensitive");
    cr_assert_eq(parley_ws_protocol_find_prefix(S(offer), S("bearer."), &tok, &tok_len), 1);
    cr_assert_eq(tok_len, strlen("bearer.eyJhbGciOiJFUzI1NiJ9.e30.sig"));
    cr_assert(memcmp(tok, "bearer.eyJhbGciOiJFUzI1NiJ9.e30.sig", tok_len) == 0);
}

Test(ws_protocol, find_prefix_edge_cases)
{
    const char *tok;
    size_t      tok_len;

    cr_assert_eq(parley_ws_protocol_find_prefix(S("parley.v1"), S("bearer."), &tok, &tok_len),
                 0);
    cr_assert_null(tok);
    cr_assert_eq(tok_len, 0);
    /* the bare prefix carries no token */
    cr_assert_eq(parley_ws_protocol_find_prefix(S("bearer., parley.v1"), S("bearer."), &tok,
                                                &tok_len),
                 0);
    /* two tokens: counted, the first returned, the caller refuses */
    cr_assert_eq(parley_ws_protocol_find_prefix(S("bearer.a, parley.v1, bearer.b"),
                                                S("bearer."), &tok, &tok_len),
                 2);
    cr_assert_eq(tok_len, 8);
    cr_assert(memcmp(tok, "bearer.a", 8) == 0);
    /* case-sensitive, and a prefix inside an item does not count */
    cr_assert_eq(parley_ws_protocol_find_prefix(S("Bearer.a, xbearer.b"), S("bearer."), &tok,
                                                &tok_len),
                 0);
    cr_assert_eq(parley_ws_protocol_find_prefix(S("bearer.a"), "", 0, &tok, &tok_len), 0);
    cr_assert_eq(parley_ws_protocol_find_prefix(NULL, 0, S("bearer."), &tok, &tok_len), 0);
}

Test(ws_protocol, find_prefix_reads_only_len_bytes)
{
    char       *heap = malloc(16);
    const char *tok;
    size_t      tok_len;

    memcpy(heap, "x, bearer.abcdef", 16); /* no NUL after it */
    cr_assert_eq(parley_ws_protocol_find_prefix(heap, 16, S("bearer."), &tok, &tok_len), 1);
    cr_assert_eq(tok_len, 13);
    /* cut inside the prefix: nothing */
    cr_assert_eq(parley_ws_protocol_find_prefix(heap, 8, S("bearer."), &tok, &tok_len), 0);
    /* cut right after it: only the prefix, nothing */
    cr_assert_eq(parley_ws_protocol_find_prefix(heap, 10, S("bearer."), &tok, &tok_len), 0);
    cr_assert_eq(parley_ws_protocol_find_prefix(heap, 11, S("bearer."), &tok, &tok_len), 1);
    cr_assert_eq(tok_len, 8);
    free(heap);
}
