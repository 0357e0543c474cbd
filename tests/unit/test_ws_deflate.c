#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "parley_ws.h"
#include "parley_ws_deflate.h"

/* ---- negotiation ------------------------------------------------------- */

static parley_ws_deflate_config_t cfg_default(void)
{
    parley_ws_deflate_config_t cfg;

    parley_ws_deflate_config_default(&cfg);
    return cfg;
}

static int nego(const char *offer, const parley_ws_deflate_config_t *cfg,
                parley_ws_deflate_params_t *out, char *resp)
{
    char   buf[PARLEY_WS_DEFLATE_RESPONSE_MAX];
    size_t n = 0;
    int    rc;

    memset(out, 0xee, sizeof(*out));
    rc = parley_ws_deflate_negotiate(offer, offer ? strlen(offer) : 0, cfg, out,
                                     buf, sizeof(buf), &n);
    cr_assert(n <= sizeof(buf));
    memcpy(resp, buf, n);
    resp[n] = '\0';
    if (rc != PARLEY_WS_DEFLATE_ACCEPT) {
        cr_assert_eq(n, 0);
    }
    return rc;
}

static void accepts(const char *offer, const char *want_resp)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    cr_assert_eq(nego(offer, &cfg, &p, resp), PARLEY_WS_DEFLATE_ACCEPT, "%s", offer);
    cr_assert_str_eq(resp, want_resp, "offer %s", offer);
}

static void declines(const char *offer)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    cr_assert_eq(nego(offer, &cfg, &p, resp), PARLEY_WS_DEFLATE_DECLINE, "%s", offer);
}

static void malformed(const char *offer)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    cr_assert_eq(nego(offer, &cfg, &p, resp), PARLEY_WS_DEFLATE_MALFORMED, "%s", offer);
}

Test(ws_deflate_offer, bare_offer_gets_our_server_window)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    cr_assert_eq(nego("permessage-deflate", &cfg, &p, resp), PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10");
    cr_assert_eq(p.server_window_bits, 10);
    cr_assert_eq(p.client_window_bits, 15, "the client may use 15 bits");
    cr_assert_eq(p.mem_level, PARLEY_WS_DEFLATE_MEM_LEVEL);
    cr_assert(!p.server_no_context_takeover && !p.client_no_context_takeover);
}

Test(ws_deflate_offer, client_max_window_bits_lets_us_bound_the_inflater)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    /* the offer Chrome sends */
    cr_assert_eq(nego("permessage-deflate; client_max_window_bits", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10; "
                           "client_max_window_bits=10");
    cr_assert_eq(p.client_window_bits, 10);

    cr_assert_eq(nego("permessage-deflate; client_max_window_bits=12", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10; "
                           "client_max_window_bits=10");

    cr_assert_eq(nego("permessage-deflate; client_max_window_bits=9", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10; "
                           "client_max_window_bits=9");
    cr_assert_eq(p.client_window_bits, 9);

    /* 8 is answered as 8; the inflater reads it with 9 */
    cr_assert_eq(nego("permessage-deflate; client_max_window_bits=8", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10; "
                           "client_max_window_bits=8");
    cr_assert_eq(p.client_window_bits, 9);

    cfg.client_max_window_bits = 15;
    cr_assert_eq(nego("permessage-deflate; client_max_window_bits=12", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=10; "
                           "client_max_window_bits=12");
    cr_assert_eq(p.client_window_bits, 12);
}

Test(ws_deflate_offer, server_max_window_bits_lowers_ours)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    accepts("permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=10");
    cr_assert_eq(nego("permessage-deflate; server_max_window_bits=9", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_max_window_bits=9");
    cr_assert_eq(p.server_window_bits, 9);
    /* zlib cannot do 8: that offer is declined, the next one taken */
    declines("permessage-deflate; server_max_window_bits=8");
    accepts("permessage-deflate; server_max_window_bits=8, permessage-deflate",
            "permessage-deflate; server_max_window_bits=10");
}

Test(ws_deflate_offer, no_context_takeover_is_echoed_and_configurable)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    cr_assert_eq(nego("permessage-deflate; server_no_context_takeover", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_no_context_takeover; "
                           "server_max_window_bits=10");
    cr_assert(p.server_no_context_takeover && !p.client_no_context_takeover);

    cr_assert_eq(nego("permessage-deflate; client_no_context_takeover", &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; client_no_context_takeover; "
                           "server_max_window_bits=10");
    cr_assert(!p.server_no_context_takeover && p.client_no_context_takeover);

    cfg.server_no_context_takeover = 1;
    cfg.client_no_context_takeover = 1;
    cr_assert_eq(nego("permessage-deflate", &cfg, &p, resp), PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_str_eq(resp, "permessage-deflate; server_no_context_takeover; "
                           "client_no_context_takeover; server_max_window_bits=10");
    cr_assert(p.server_no_context_takeover && p.client_no_context_takeover);
}

Test(ws_deflate_offer, the_longest_answer_fits)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];

    cfg.server_max_window_bits = 15;
    cfg.client_max_window_bits = 15;
    cr_assert_eq(nego("permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=15; "
                      "client_max_window_bits=15",
                      &cfg, &p, resp),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_eq(strlen(resp), PARLEY_WS_DEFLATE_RESPONSE_MAX);
}

Test(ws_deflate_offer, duplicates_are_declined)
{
    declines("permessage-deflate; server_no_context_takeover; server_no_context_takeover");
    declines("permessage-deflate; client_no_context_takeover; client_no_context_takeover");
    declines("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10");
    declines("permessage-deflate; client_max_window_bits; client_max_window_bits=10");
    /* a later valid offer is still taken */
    accepts("permessage-deflate; client_max_window_bits; client_max_window_bits, "
            "permessage-deflate; client_max_window_bits=11",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10");
}

Test(ws_deflate_offer, invalid_values_are_declined)
{
    static const char *bad[] = {
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"123456789\"",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=-9",
        "permessage-deflate; client_max_window_bits=99",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; x=1",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        declines(bad[i]);
    }
}

Test(ws_deflate_offer, quoted_values_are_unescaped)
{
    accepts("permessage-deflate; client_max_window_bits=\"11\"",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10");
    accepts("permessage-deflate; server_max_window_bits=\"9\"",
            "permessage-deflate; server_max_window_bits=9");
    accepts("permessage-deflate; server_max_window_bits=\"\\9\"",
            "permessage-deflate; server_max_window_bits=9");
    /* commas and semicolons inside quotes belong to the value */
    accepts("foo; bar=\"a,b;c\", permessage-deflate",
            "permessage-deflate; server_max_window_bits=10");
}

Test(ws_deflate_offer, other_extensions_are_skipped_and_names_fold_case)
{
    accepts("x-webkit-deflate-frame, permessage-deflate",
            "permessage-deflate; server_max_window_bits=10");
    accepts("permessage-foo; server_max_window_bits=8, PerMessage-Deflate; "
            "Client_Max_Window_Bits",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10");
    accepts("  ,, permessage-deflate ;  client_max_window_bits = 9 ,  ",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9");
    declines("x-webkit-deflate-frame");
    declines("");
    declines(" , ");
    declines(NULL);
}

Test(ws_deflate_offer, the_first_acceptable_offer_wins)
{
    accepts("permessage-deflate; server_max_window_bits=9, "
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=9");
    accepts("permessage-deflate; bogus, permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
}

Test(ws_deflate_offer, syntax_errors_are_malformed)
{
    malformed("permessage-deflate;");
    malformed("permessage-deflate; ;");
    malformed("permessage-deflate; =1");
    malformed("permessage-deflate; client_max_window_bits=");
    malformed("permessage-deflate; client_max_window_bits=\"10");
    malformed("permessage-deflate; client_max_window_bits=\"1\\");
    malformed("permessage-deflate client_max_window_bits");
    malformed("permessage-deflate, ;x");
    malformed("\"permessage-deflate\"");
    malformed("permessage-deflate; a=b c");
    malformed("permessage-deflate; a=\"\x01\"");
    /* a syntax error after an acceptable offer still spoils the header */
    malformed("permessage-deflate, @");
}

Test(ws_deflate_offer, bad_configuration_is_einval)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX];
    size_t                     n;

    cfg.server_max_window_bits = 8;
    cr_assert_eq(parley_ws_deflate_negotiate("permessage-deflate", 18, &cfg, &p, resp,
                                             sizeof(resp), &n),
                 PARLEY_WS_DEFLATE_EINVAL);
    cfg = cfg_default();
    cfg.mem_level = 10;
    cr_assert_eq(parley_ws_deflate_negotiate("permessage-deflate", 18, &cfg, &p, resp,
                                             sizeof(resp), &n),
                 PARLEY_WS_DEFLATE_EINVAL);
    cfg = cfg_default();
    cr_assert_eq(parley_ws_deflate_negotiate("permessage-deflate", 18, &cfg, &p, resp,
                                             sizeof(resp) - 1, &n),
                 PARLEY_WS_DEFLATE_EINVAL);
}

Test(ws_deflate_offer, reads_only_len_bytes)
{
    parley_ws_deflate_config_t cfg = cfg_default();
    parley_ws_deflate_params_t p;
    char                       resp[PARLEY_WS_DEFLATE_RESPONSE_MAX];
    char                      *heap = malloc(18);
    size_t                     n;

    memcpy(heap, "permessage-deflate", 18); /* no NUL: ASan catches overreads */
    cr_assert_eq(parley_ws_deflate_negotiate(heap, 18, &cfg, &p, resp, sizeof(resp), &n),
                 PARLEY_WS_DEFLATE_ACCEPT);
    cr_assert_eq(parley_ws_deflate_negotiate(heap, 11, &cfg, &p, resp, sizeof(resp), &n),
                 PARLEY_WS_DEFLATE_DECLINE);
    free(heap);
}

/* ---- deflate / inflate ------------------------------------------------- */

static void deflater(parley_ws_deflater_t *d, unsigned bits, int nct)
{
    cr_assert_eq(parley_ws_deflater_init(d, bits, 8, Z_DEFAULT_COMPRESSION, nct, NULL), 0);
}

static void inflater(parley_ws_inflater_t *inf, unsigned bits, int nct)
{
    cr_assert_eq(parley_ws_inflater_init(inf, bits, nct, NULL), 0);
}

/* inflates one whole message given in `parts` slices; returns the code */
static int inflate_msg(parley_ws_inflater_t *inf, const unsigned char *in, size_t len,
                       size_t parts, unsigned char *out, size_t cap, size_t *out_len,
                       int text)
{
    parley_ws_utf8_t u;
    size_t           off = 0, step = parts == 0 ? len : (len + parts - 1) / parts;
    int              rc;

    parley_ws_utf8_init(&u);
    *out_len = 0;
    if (step == 0) {
        step = 1;
    }
    while (off < len) {
        size_t n = len - off < step ? len - off : step;

        rc = parley_ws_inflate(inf, in + off, n, out, cap, out_len, text ? &u : NULL);
        if (rc != 0) {
            return rc;
        }
        off += n;
    }
    return parley_ws_inflate_end(inf, out, cap, out_len, text ? &u : NULL);
}

Test(ws_deflate_rfc7692, hello_compresses_to_the_rfc_bytes)
{
    static const unsigned char want[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
    parley_ws_deflater_t       d;
    unsigned char              out[64], frame[64];
    size_t                     n, f;

    deflater(&d, 15, 0);
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "Hello", 5, out,
                                           sizeof(out), &n),
                 0);
    cr_assert_eq(n, sizeof(want));
    cr_assert(memcmp(out, want, n) == 0);
    /* 7.2.3.1: the frame 0xc1 0x07 ... */
    f = parley_ws_write_frame(frame, sizeof(frame), PARLEY_WS_OP_TEXT,
                              PARLEY_WS_FIN | PARLEY_WS_RSV1, out, n);
    cr_assert_eq(f, 9);
    cr_assert(memcmp(frame, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", 9) == 0);

    /* 7.2.3.2: the same message again shares the sliding window */
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "Hello", 5, out,
                                           sizeof(out), &n),
                 0);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(out, "\xf2\x00\x11\x00\x00", 5) == 0);
    parley_ws_deflater_free(&d);

    /* without context takeover the second is like the first */
    deflater(&d, 10, 1);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "Hello", 5,
                                               out, sizeof(out), &n),
                     0);
        cr_assert_eq(n, sizeof(want));
        cr_assert(memcmp(out, want, n) == 0);
    }
    parley_ws_deflater_free(&d);
}

Test(ws_deflate_rfc7692, every_example_inflates_to_hello)
{
    static const struct {
        const char   *name;
        unsigned char bytes[16];
        size_t        len;
    } ex[] = {
        { "7.2.3.1", { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 }, 7 },
        { "7.2.3.3 no compression",
          { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00 }, 11 },
        { "7.2.3.4 BFINAL", { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00 }, 8 },
        { "7.2.3.5 two blocks",
          { 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00 },
          13 },
    };
    unsigned char out[64];
    size_t        i, parts, n;

    for (i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
        for (parts = 0; parts <= ex[i].len; parts++) {
            parley_ws_inflater_t inf;

            inflater(&inf, 15, 0);
            cr_assert_eq(inflate_msg(&inf, ex[i].bytes, ex[i].len, parts, out, sizeof(out),
                                     &n, 1),
                         0, "%s", ex[i].name);
            cr_assert_eq(n, 5, "%s parts %zu", ex[i].name, parts);
            cr_assert(memcmp(out, "Hello", 5) == 0, "%s", ex[i].name);
            /* and the inflater goes on to the next message */
            cr_assert_eq(inflate_msg(&inf, ex[0].bytes, ex[0].len, 1, out, sizeof(out), &n,
                                     1),
                         0);
            cr_assert_eq(n, 5);
            parley_ws_inflater_free(&inf);
        }
    }
}

Test(ws_deflate_rfc7692, fragmented_and_shared_window_examples)
{
    /* 7.2.3.1 fragmented: 0x41 0x03 f2 48 cd, 0x80 0x04 c9 c9 07 00 */
    static const unsigned char frag1[] = { 0xf2, 0x48, 0xcd };
    static const unsigned char frag2[] = { 0xc9, 0xc9, 0x07, 0x00 };
    static const unsigned char second[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
    parley_ws_inflater_t       inf;
    unsigned char              out[64];
    size_t                     n = 0;

    inflater(&inf, 15, 0);
    cr_assert_eq(parley_ws_inflate(&inf, frag1, 3, out, sizeof(out), &n, NULL), 0);
    cr_assert_eq(parley_ws_inflate(&inf, frag2, 4, out, sizeof(out), &n, NULL), 0);
    cr_assert_eq(parley_ws_inflate_end(&inf, out, sizeof(out), &n, NULL), 0);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(out, "Hello", 5) == 0);
    /* 7.2.3.2: the second message refers back into the first */
    cr_assert_eq(inflate_msg(&inf, second, sizeof(second), 0, out, sizeof(out), &n, 1), 0);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(out, "Hello", 5) == 0);
    parley_ws_inflater_free(&inf);

    /* with client_no_context_takeover the reference is invalid */
    inflater(&inf, 15, 1);
    cr_assert_eq(inflate_msg(&inf, frag2 - 0, 0, 0, out, sizeof(out), &n, 0), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(inflate_msg(&inf, (const unsigned char *) "\xf2\x48\xcd\xc9\xc9\x07\x00",
                             7, 0, out, sizeof(out), &n, 1),
                 0);
    cr_assert_eq(inflate_msg(&inf, second, sizeof(second), 0, out, sizeof(out), &n, 1),
                 PARLEY_WS_CLOSE_INVALID_DATA);
    parley_ws_inflater_free(&inf);
}

Test(ws_deflate_rfc7692, empty_message_is_one_zero_byte)
{
    parley_ws_deflater_t d;
    parley_ws_inflater_t inf;
    unsigned char        out[16];
    size_t               n;

    deflater(&d, 10, 0);
    inflater(&inf, 15, 0);
    cr_assert_eq(parley_ws_deflate_message(&d, NULL, 0, out, sizeof(out), &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], 0x00);
    /* after another message too */
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "abc", 3, out,
                                           sizeof(out), &n),
                 0);
    cr_assert_eq(inflate_msg(&inf, out, n, 0, out + 8, 8, &n, 1), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(parley_ws_deflate_message(&d, NULL, 0, out, sizeof(out), &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], 0x00);
    cr_assert_eq(inflate_msg(&inf, out, n, 0, out + 8, 8, &n, 1), 0);
    cr_assert_eq(n, 0);
    /* and the stream still works afterwards */
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "abcabc", 6, out,
                                           sizeof(out), &n),
                 0);
    cr_assert_eq(inflate_msg(&inf, out, n, 0, out + 8, 8, &n, 1), 0);
    cr_assert_eq(n, 6);
    cr_assert(memcmp(out + 8, "abcabc", 6) == 0);
    parley_ws_deflater_free(&d);
    parley_ws_inflater_free(&inf);
}

/* messages of random shapes: JSON-like text and noise */
static size_t make_message(unsigned char *buf, size_t cap, unsigned *seed, int *text)
{
    size_t len = (size_t) rand_r(seed) % (rand_r(seed) % 5 == 0 ? cap : 2000);
    size_t i;

    *text = rand_r(seed) % 3 != 0;
    if (*text) {
        static const char *words[] = { "{\"type\":\"message\",", "\"conversation\":",
                                       "\"text\":\"h\xc3\xa9llo\",", "42,", "\xe2\x82\xac",
                                       "\"ts\":1700000000}", " " };
        size_t o = 0;

        while (o < len) {
            const char *w = words[rand_r(seed) % 7];
            size_t      k = strlen(w);

            if (o + k > len) {
                break;
            }
            memcpy(buf + o, w, k);
            o += k;
        }
        return o;
    }
    for (i = 0; i < len; i++) {
        buf[i] = (unsigned char) (rand_r(seed) % (rand_r(seed) % 2 ? 256 : 4));
    }
    return len;
}

static void round_trips(unsigned sbits, unsigned cbits, int snct, int cnct)
{
    static unsigned char msg[70000], comp[80000], back[70000];
    parley_ws_deflater_t d;
    parley_ws_inflater_t inf;
    unsigned             seed = sbits * 100 + cbits + (unsigned) snct * 7 + (unsigned) cnct;
    int                  m, text;
    size_t               len, n, got;

    /* our deflater is the client's here: its window is what we inflate */
    cr_assert_eq(parley_ws_deflater_init(&d, sbits, 3, 6, snct, NULL), 0);
    inflater(&inf, cbits, cnct);
    for (m = 0; m < 60; m++) {
        len = make_message(msg, sizeof(msg), &seed, &text);
        cr_assert(parley_ws_deflate_bound(len) <= sizeof(comp));
        cr_assert_eq(parley_ws_deflate_message(&d, msg, len, comp,
                                               parley_ws_deflate_bound(len), &n),
                     0);
        cr_assert(n <= parley_ws_deflate_bound(len));
        cr_assert_eq(inflate_msg(&inf, comp, n, (size_t) m % 5, back, len, &got, text), 0,
                     "message %d len %zu", m, len);
        cr_assert_eq(got, len);
        cr_assert(memcmp(back, msg, len) == 0);
    }
    parley_ws_deflater_free(&d);
    parley_ws_inflater_free(&inf);
}

Test(ws_deflate_roundtrip, with_context_takeover)
{
    round_trips(10, 10, 0, 0);
    round_trips(15, 15, 0, 0);
    round_trips(9, 9, 0, 0);
    round_trips(9, 15, 0, 0); /* the inflater's window may be larger */
}

Test(ws_deflate_roundtrip, without_context_takeover)
{
    round_trips(10, 10, 1, 1);
    round_trips(15, 15, 1, 1);
    round_trips(12, 12, 1, 0); /* the sender resets; the receiver need not */
}

Test(ws_deflate_roundtrip, context_takeover_compresses_repeats_better)
{
    static const char    msg[] = "{\"type\":\"message\",\"conversation\":\"c_123\","
                                 "\"text\":\"hello there\",\"ts\":1700000000}";
    parley_ws_deflater_t keep, reset;
    unsigned char        out[256];
    size_t               n_keep = 0, n_reset = 0;
    int                  i;

    deflater(&keep, 10, 0);
    deflater(&reset, 10, 1);
    for (i = 0; i < 2; i++) {
        cr_assert_eq(parley_ws_deflate_message(&keep, (const unsigned char *) msg,
                                               sizeof(msg) - 1, out, sizeof(out), &n_keep),
                     0);
        cr_assert_eq(parley_ws_deflate_message(&reset, (const unsigned char *) msg,
                                               sizeof(msg) - 1, out, sizeof(out), &n_reset),
                     0);
    }
    cr_assert(n_keep < n_reset / 2, "%zu vs %zu", n_keep, n_reset);
    parley_ws_deflater_free(&keep);
    parley_ws_deflater_free(&reset);
}

Test(ws_deflate_roundtrip, bound_holds_for_incompressible_data)
{
    static unsigned char msg[200000], comp[230000];
    unsigned             seed = 99, bits, mem;
    size_t               sizes[] = { 1, 2, 100, 4096, 65535, 65536, 200000 }, i, j, n;

    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (unsigned char) rand_r(&seed);
    }
    for (bits = 9; bits <= 15; bits += 3) {
        for (mem = 1; mem <= 9; mem += 4) {
            for (int level = 0; level <= 9; level += 9) {
                parley_ws_deflater_t d;

                cr_assert_eq(parley_ws_deflater_init(&d, bits, mem, level, 0, NULL), 0);
                for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
                    size_t b = parley_ws_deflate_bound(sizes[j]);

                    cr_assert(b <= sizeof(comp));
                    cr_assert_eq(parley_ws_deflate_message(&d, msg, sizes[j], comp, b, &n), 0,
                                 "bits %u mem %u level %d size %zu", bits, mem, level,
                                 sizes[j]);
                    cr_assert(n <= b);
                }
                parley_ws_deflater_free(&d);
            }
        }
    }
}

Test(ws_deflate_roundtrip, short_output_fails_and_resets_safely)
{
    static unsigned char msg[5000], comp[6000], back[5000];
    parley_ws_deflater_t d;
    parley_ws_inflater_t inf;
    unsigned             seed = 5;
    size_t               i, n, got;

    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (unsigned char) rand_r(&seed);
    }
    deflater(&d, 10, 0);
    inflater(&inf, 10, 0);
    /* one message goes through, so both windows hold it */
    cr_assert_eq(parley_ws_deflate_message(&d, msg, 3000, comp, sizeof(comp), &n), 0);
    cr_assert_eq(inflate_msg(&inf, comp, n, 0, back, sizeof(back), &got, 0), 0);
    /* the next does not fit: refused, never sent */
    cr_assert_eq(parley_ws_deflate_message(&d, msg, 5000, comp, 100, &n), -1);
    cr_assert_eq(parley_ws_deflate_message(&d, msg, 1, comp, 0, &n), -1);
    /* and the one after still inflates on the peer's side */
    cr_assert_eq(parley_ws_deflate_message(&d, msg + 10, 2000, comp, sizeof(comp), &n), 0);
    cr_assert_eq(inflate_msg(&inf, comp, n, 3, back, sizeof(back), &got, 0), 0);
    cr_assert_eq(got, 2000);
    cr_assert(memcmp(back, msg + 10, 2000) == 0);
    parley_ws_deflater_free(&d);
    parley_ws_inflater_free(&inf);
}

Test(ws_deflate_roundtrip, window_8_offers_are_read_with_9)
{
    parley_ws_inflater_t inf;
    z_stream             z;
    unsigned char        msg[3000], comp[4000], back[3000];
    size_t               i, got;

    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (unsigned char) ("abcdefghij"[i % 10] + (i / 700));
    }
    /* what a client told "client_max_window_bits=8" can produce with zlib */
    memset(&z, 0, sizeof(z));
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, -9, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = msg;
    z.avail_in = sizeof(msg);
    z.next_out = comp;
    z.avail_out = sizeof(comp);
    cr_assert_eq(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    deflateEnd(&z);

    cr_assert_eq(parley_ws_inflater_init(&inf, 8, 0, NULL), 0);
    cr_assert_eq(inf.window_bits, 9);
    cr_assert_eq(inflate_msg(&inf, comp, sizeof(comp) - z.avail_out - 4, 0, back,
                             sizeof(back), &got, 0),
                 0);
    cr_assert_eq(got, sizeof(msg));
    cr_assert(memcmp(back, msg, got) == 0);
    parley_ws_inflater_free(&inf);
    cr_assert_eq(parley_ws_inflater_init(&inf, 7, 0, NULL), -1);
    cr_assert_eq(parley_ws_inflater_init(&inf, 16, 0, NULL), -1);
}

/* ---- hostile input ----------------------------------------------------- */

/* raw DEFLATE of `len` zero bytes with window 15, level 9, tail stripped */
static unsigned char *zeros_compressed(size_t len, size_t *out_len)
{
    static unsigned char chunk[65536];
    z_stream             z;
    size_t               cap = len / 500 + 1024, left = len;
    unsigned char       *out = malloc(cap);

    cr_assert(out != NULL);
    memset(&z, 0, sizeof(z));
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_out = out;
    z.avail_out = (uInt) cap;
    while (left > 0) {
        size_t n = left < sizeof(chunk) ? left : sizeof(chunk);

        z.next_in = chunk;
        z.avail_in = (uInt) n;
        cr_assert_eq(deflate(&z, n == left ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
        cr_assert_eq(z.avail_in, 0);
        left -= n;
    }
    *out_len = cap - z.avail_out - 4;
    deflateEnd(&z);
    return out;
}

Test(ws_deflate_hostile, ten_megabytes_of_zeros_stop_at_the_cap)
{
    size_t               clen, got = 0;
    unsigned char       *bomb = zeros_compressed(10u << 20, &clen);
    static unsigned char out[65536];
    parley_ws_inflater_t inf;
    int                  rc;

    cr_assert(clen < 20000, "%zu", clen); /* ~1000:1 */
    inflater(&inf, 15, 0);
    rc = parley_ws_inflate(&inf, bomb, clen, out, sizeof(out), &got, NULL);
    cr_assert_eq(rc, PARLEY_WS_CLOSE_TOO_BIG);
    cr_assert_eq(got, sizeof(out));
    /* bounded work: zlib produced the cap plus one byte, read little input */
    cr_assert(inf.z.total_out <= sizeof(out) + 1, "%lu", inf.z.total_out);
    cr_assert(inf.z.total_in < 1000, "%lu", inf.z.total_in);
    /* broken from now on */
    cr_assert_eq(parley_ws_inflate(&inf, bomb, 1, out, sizeof(out), &got, NULL),
                 PARLEY_WS_CLOSE_INTERNAL);
    cr_assert_eq(parley_ws_inflate_end(&inf, out, sizeof(out), &got, NULL),
                 PARLEY_WS_CLOSE_INTERNAL);
    parley_ws_inflater_free(&inf);

    /* fed in small slices, the same */
    inflater(&inf, 15, 0);
    got = 0;
    rc = 0;
    for (size_t off = 0; off < clen && rc == 0; off += 7) {
        rc = parley_ws_inflate(&inf, bomb + off, clen - off < 7 ? clen - off : 7, out,
                               sizeof(out), &got, NULL);
    }
    cr_assert_eq(rc, PARLEY_WS_CLOSE_TOO_BIG);
    cr_assert(inf.z.total_out <= sizeof(out) + 1);
    parley_ws_inflater_free(&inf);
    free(bomb);
}

Test(ws_deflate_hostile, the_cap_is_exact)
{
    size_t               clen, got;
    unsigned char       *c = zeros_compressed(1000, &clen);
    unsigned char        out[1000];
    parley_ws_inflater_t inf;

    inflater(&inf, 15, 0);
    cr_assert_eq(inflate_msg(&inf, c, clen, 0, out, 1000, &got, 1), 0);
    cr_assert_eq(got, 1000);
    parley_ws_inflater_free(&inf);
    for (size_t parts = 0; parts < 4; parts++) {
        inflater(&inf, 15, 0);
        cr_assert_eq(inflate_msg(&inf, c, clen, parts, out, 999, &got, 1),
                     PARLEY_WS_CLOSE_TOO_BIG);
        cr_assert_eq(got, 999);
        parley_ws_inflater_free(&inf);
    }
    free(c);
}

Test(ws_deflate_hostile, garbage_is_1007)
{
    static const unsigned char bad[][4] = {
        { 0xff, 0xff, 0xff, 0xff }, /* reserved block type 11 */
        { 0x00, 0x05, 0x00, 0x05 }, /* stored block with NLEN != ~LEN */
        { 0x07, 0x00, 0x00, 0x00 }, /* reserved block type */
    };
    unsigned char        out[64];
    size_t               i, got;
    parley_ws_inflater_t inf;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        inflater(&inf, 15, 0);
        cr_assert_eq(inflate_msg(&inf, bad[i], 4, 0, out, sizeof(out), &got, 0),
                     PARLEY_WS_CLOSE_INVALID_DATA, "case %zu", i);
        parley_ws_inflater_free(&inf);
    }
}

Test(ws_deflate_hostile, distance_too_far_back_is_1007)
{
    static unsigned char msg[4000], comp[5000], out[4000];
    parley_ws_inflater_t inf;
    z_stream             z;
    size_t               i, got;
    unsigned             seed = 3;

    /* random 2000 bytes repeated: the repeat refers 2000 bytes back */
    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (unsigned char) (i < 2000 ? rand_r(&seed) : msg[i - 2000]);
    }
    memset(&z, 0, sizeof(z));
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = msg;
    z.avail_in = sizeof(msg);
    z.next_out = comp;
    z.avail_out = sizeof(comp);
    cr_assert_eq(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    deflateEnd(&z);
    /*
     * An inflater with a 512-byte window cannot follow once the referenced
     * bytes left its window: zlib also reaches into the output of the
     * current call, so the reference must come in a later call.
     */
    inflater(&inf, 9, 0);
    cr_assert_eq(inflate_msg(&inf, comp, sizeof(comp) - z.avail_out - 4, 400, out,
                             sizeof(out), &got, 0),
                 PARLEY_WS_CLOSE_INVALID_DATA);
    parley_ws_inflater_free(&inf);
    /* one with a 32 KiB window can */
    inflater(&inf, 15, 0);
    cr_assert_eq(inflate_msg(&inf, comp, sizeof(comp) - z.avail_out - 4, 400, out,
                             sizeof(out), &got, 0),
                 0);
    cr_assert_eq(got, sizeof(msg));
    cr_assert(memcmp(out, msg, got) == 0);
    parley_ws_inflater_free(&inf);
}

Test(ws_deflate_hostile, inflated_text_must_be_utf8)
{
    parley_ws_deflater_t d;
    parley_ws_inflater_t inf;
    unsigned char        comp[64], out[64];
    size_t               n, got;

    deflater(&d, 15, 1);
    inflater(&inf, 15, 1);
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "ok\xc0\x80", 4, comp,
                                           sizeof(comp), &n),
                 0);
    cr_assert_eq(inflate_msg(&inf, comp, n, 0, out, sizeof(out), &got, 1),
                 PARLEY_WS_CLOSE_INVALID_DATA);
    parley_ws_inflater_free(&inf);

    /* truncated at the end */
    inflater(&inf, 15, 1);
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "ok\xe2\x82", 4, comp,
                                           sizeof(comp), &n),
                 0);
    cr_assert_eq(inflate_msg(&inf, comp, n, 0, out, sizeof(out), &got, 1),
                 PARLEY_WS_CLOSE_INVALID_DATA);
    parley_ws_inflater_free(&inf);

    /* the same bytes as binary are fine */
    inflater(&inf, 15, 1);
    cr_assert_eq(inflate_msg(&inf, comp, n, 0, out, sizeof(out), &got, 0), 0);
    cr_assert_eq(got, 4);
    parley_ws_inflater_free(&inf);

    /* a code point split between inflate calls is fine */
    cr_assert_eq(parley_ws_deflate_message(&d, (const unsigned char *) "\xf0\x9f\x98\x80"
                                                                       "\xe2\x82\xac",
                                           7, comp, sizeof(comp), &n),
                 0);
    for (size_t parts = 0; parts <= n; parts++) {
        inflater(&inf, 15, 1);
        cr_assert_eq(inflate_msg(&inf, comp, n, parts, out, sizeof(out), &got, 1), 0);
        cr_assert_eq(got, 7);
        parley_ws_inflater_free(&inf);
    }
    parley_ws_deflater_free(&d);
}

Test(ws_deflate_hostile, many_final_blocks_cost_linear_work)
{
    /* "03 00" is an empty final fixed block: every pair ends a stream */
    static unsigned char in[200000];
    unsigned char        out[16];
    parley_ws_inflater_t inf;
    size_t               i, got = 0;

    for (i = 0; i + 1 < sizeof(in); i += 2) {
        in[i] = 0x03;
        in[i + 1] = 0x00;
    }
    inflater(&inf, 15, 0);
    cr_assert_eq(parley_ws_inflate(&inf, in, sizeof(in), out, sizeof(out), &got, NULL), 0);
    cr_assert_eq(parley_ws_inflate_end(&inf, out, sizeof(out), &got, NULL), 0);
    cr_assert_eq(got, 0);
    parley_ws_inflater_free(&inf);
}

/* ---- the reader and the inflater together ------------------------------ */

Test(ws_deflate_pipeline, compressed_frames_through_the_reader)
{
    /* 7.2.3.1 fragmented, masked as a client must: 0x41 then 0x80 */
    static const unsigned char key[4] = { 1, 2, 3, 4 };
    unsigned char              w[64], out[64];
    size_t                     n = 0, used = 0, got = 0;
    const unsigned char       *p1 = (const unsigned char *) "\xf2\x48\xcd";
    const unsigned char       *p2 = (const unsigned char *) "\xc9\xc9\x07\x00";
    parley_ws_reader_t         r;
    parley_ws_read_event_t     ev;
    parley_ws_inflater_t       inf;
    parley_ws_utf8_t           u;
    int                        ended = 0;

    w[n++] = 0x41;
    w[n++] = 0x83;
    memcpy(w + n, key, 4);
    n += 4;
    for (int i = 0; i < 3; i++) {
        w[n++] = p1[i] ^ key[i & 3];
    }
    w[n++] = 0x80;
    w[n++] = 0x84;
    memcpy(w + n, key, 4);
    n += 4;
    for (int i = 0; i < 4; i++) {
        w[n++] = p2[i] ^ key[i & 3];
    }

    parley_ws_reader_init(&r, 100, 100, PARLEY_WS_READ_DEFLATE);
    inflater(&inf, 15, 0);
    parley_ws_utf8_init(&u);
    while (!ended) {
        used += parley_ws_read(&r, w + used, n - used, &ev);
        switch (ev.type) {
        case PARLEY_WS_READ_MESSAGE_START:
            cr_assert(ev.compressed);
            cr_assert_eq(ev.opcode, PARLEY_WS_OP_TEXT);
            break;
        case PARLEY_WS_READ_DATA:
            cr_assert_eq(parley_ws_inflate(&inf, ev.data, ev.len, out, sizeof(out), &got, &u),
                         0);
            break;
        case PARLEY_WS_READ_MESSAGE_END:
            cr_assert_eq(parley_ws_inflate_end(&inf, out, sizeof(out), &got, &u), 0);
            ended = 1;
            break;
        default:
            cr_assert_fail("event %d", ev.type);
        }
    }
    cr_assert_eq(got, 5);
    cr_assert(memcmp(out, "Hello", 5) == 0);
    parley_ws_inflater_free(&inf);
}

/* ---- memory ------------------------------------------------------------ */

typedef struct {
    size_t live, peak, allocs;
    int    fail_after; /* allocations before failing; -1: never */
} meter_t;

static void *meter_alloc(void *opaque, unsigned items, unsigned size)
{
    meter_t *m = opaque;
    size_t   n = (size_t) items * size;
    size_t  *p;

    if (m->fail_after == 0) {
        return NULL;
    }
    if (m->fail_after > 0) {
        m->fail_after--;
    }
    p = malloc(n + sizeof(size_t));
    if (p == NULL) {
        return NULL;
    }
    memset(p + 1, 0, n);
    *p = n;
    m->live += n;
    m->allocs++;
    if (m->live > m->peak) {
        m->peak = m->live;
    }
    return p + 1;
}

static void meter_free(void *opaque, void *ptr)
{
    meter_t *m = opaque;
    size_t  *p = (size_t *) ptr - 1;

    m->live -= *p;
    free(p);
}

Test(ws_deflate_memory, per_connection_cost_matches_the_documented_formula)
{
    static unsigned char msg[20000], comp[30000], back[20000];
    unsigned             w, mem, seed = 1;
    size_t               i, n, got;

    for (i = 0; i < sizeof(msg); i++) {
        msg[i] = (unsigned char) ("parley "[i % 7] ^ (rand_r(&seed) % 3 == 0));
    }
    for (w = 9; w <= 15; w++) {
        for (mem = 1; mem <= 9; mem += 2) {
            meter_t                   m = { 0, 0, 0, -1 };
            parley_ws_deflate_alloc_t a = { meter_alloc, meter_free, &m };
            parley_ws_deflater_t      d;
            size_t                    formula = ((size_t) 1 << (w + 2)) + ((size_t) 1 << (mem + 9));
            size_t                    allocs;

            cr_assert_eq(parley_ws_deflater_init(&d, w, mem, 6, 0, &a), 0);
            allocs = m.allocs;
            for (i = 0; i < 20; i++) {
                cr_assert_eq(parley_ws_deflate_message(&d, msg, sizeof(msg) - i * 999, comp,
                                                       sizeof(comp), &n),
                             0);
            }
            cr_assert_eq(m.allocs, allocs, "no allocation per message");
            cr_assert(m.peak >= formula && m.peak <= formula + 8192,
                      "deflate W %u M %u: %zu vs %zu", w, mem, m.peak, formula);
            parley_ws_deflater_free(&d);
            cr_assert_eq(m.live, 0);
        }
    }
    for (w = 9; w <= 15; w++) {
        for (int nct = 0; nct <= 1; nct++) {
            meter_t                   m = { 0, 0, 0, -1 };
            parley_ws_deflate_alloc_t a = { meter_alloc, meter_free, &m };
            parley_ws_deflater_t      d;
            parley_ws_inflater_t      inf;
            size_t                    formula = ((size_t) 1 << w) + 7 * 1024, allocs = 0;

            cr_assert_eq(parley_ws_deflater_init(&d, w, 8, 6, nct, NULL), 0);
            cr_assert_eq(parley_ws_inflater_init(&inf, w, nct, &a), 0);
            for (i = 0; i < 20; i++) {
                cr_assert_eq(parley_ws_deflate_message(&d, msg, sizeof(msg) - i * 999, comp,
                                                       sizeof(comp), &n),
                             0);
                cr_assert_eq(inflate_msg(&inf, comp, n, 2, back, sizeof(back), &got, 0), 0);
                cr_assert_eq(got, sizeof(msg) - i * 999);
                if (i == 0) {
                    allocs = m.allocs;
                }
            }
            cr_assert_eq(m.allocs, allocs, "no allocation per message");
            cr_assert(m.peak <= formula + 512, "inflate W %u: %zu vs %zu", w, m.peak,
                      formula);
            cr_assert(m.peak >= ((size_t) 1 << w));
            parley_ws_inflater_free(&inf);
            parley_ws_deflater_free(&d);
            cr_assert_eq(m.live, 0);
        }
    }
}

Test(ws_deflate_memory, allocation_failures_are_reported)
{
    meter_t                   m = { 0, 0, 0, 0 };
    parley_ws_deflate_alloc_t a = { meter_alloc, meter_free, &m };
    parley_ws_deflater_t      d;
    parley_ws_inflater_t      inf;
    unsigned char             out[64];
    size_t                    got = 0;

    cr_assert_eq(parley_ws_deflater_init(&d, 10, 3, 6, 0, &a), -1);
    cr_assert_eq(parley_ws_inflater_init(&inf, 10, 0, &a), -1);
    /* the inflater's window comes at the first output */
    m.fail_after = 1;
    cr_assert_eq(parley_ws_inflater_init(&inf, 10, 0, &a), 0);
    cr_assert_eq(parley_ws_inflate(&inf, (const unsigned char *) "\xf2\x48\xcd\xc9\xc9\x07\x00",
                                   7, out, sizeof(out), &got, NULL),
                 PARLEY_WS_CLOSE_INTERNAL);
    parley_ws_inflater_free(&inf);
    cr_assert_eq(m.live, 0);
    cr_assert_eq(parley_ws_deflater_init(&d, 8, 3, 6, 0, NULL), -1);
    cr_assert_eq(parley_ws_deflater_init(&d, 10, 0, 6, 0, NULL), -1);
    cr_assert_eq(parley_ws_deflater_init(&d, 10, 3, 10, 0, NULL), -1);
}
