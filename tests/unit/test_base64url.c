#include <criterion/criterion.h>
#include <string.h>

#include "parley_base64url.h"

/* RFC 4648 section 10 vectors, in the URL alphabet and without padding */
static const struct {
    const char *plain;
    const char *encoded;
} rfc4648[] = {
    { "", "" },          { "f", "Zg" },         { "fo", "Zm8" },
    { "foo", "Zm9v" },   { "foob", "Zm9vYg" },  { "fooba", "Zm9vYmE" },
    { "foobar", "Zm9vYmFy" },
};

Test(base64url, rfc4648_vectors_encode_and_decode)
{
    char          enc[16];
    unsigned char dec[16];
    size_t        i, n;

    for (i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        size_t plen = strlen(rfc4648[i].plain);
        size_t elen = strlen(rfc4648[i].encoded);

        cr_assert_eq(parley_base64url_encoded_len(plen), elen);
        cr_assert_eq(parley_base64url_encode(rfc4648[i].plain, plen, enc,
                                             sizeof(enc), &n),
                     PARLEY_BASE64URL_OK);
        cr_assert_eq(n, elen);
        cr_assert(memcmp(enc, rfc4648[i].encoded, n) == 0);

        cr_assert_eq(parley_base64url_decoded_len(elen), plen);
        cr_assert_eq(parley_base64url_decode(rfc4648[i].encoded, elen, dec,
                                             sizeof(dec), &n),
                     PARLEY_BASE64URL_OK);
        cr_assert_eq(n, plen);
        cr_assert(memcmp(dec, rfc4648[i].plain, n) == 0);
    }
}

Test(base64url, uses_the_url_alphabet)
{
    static const unsigned char bytes[] = { 0xfb, 0xff, 0xbf };
    char                       enc[8];
    unsigned char              dec[8];
    size_t                     n;

    cr_assert_eq(parley_base64url_encode(bytes, 3, enc, sizeof(enc), &n), 0);
    cr_assert_eq(n, 4);
    cr_assert(memcmp(enc, "-_-_", 4) == 0);
    cr_assert_eq(parley_base64url_decode("-_-_", 4, dec, sizeof(dec), &n), 0);
    cr_assert_eq(n, 3);
    cr_assert(memcmp(dec, bytes, 3) == 0);
}

Test(base64url, round_trips_every_length_and_byte)
{
    unsigned char src[300], dec[300];
    char          enc[400];
    size_t        len, i, n, m;

    for (i = 0; i < sizeof(src); i++) {
        src[i] = (unsigned char) (i * 151 + 7);
    }
    for (len = 0; len <= sizeof(src); len++) {
        cr_assert_eq(parley_base64url_encode(src, len, enc, sizeof(enc), &n),
                     PARLEY_BASE64URL_OK);
        cr_assert_eq(n, parley_base64url_encoded_len(len));
        cr_assert_eq(parley_base64url_decode(enc, n, dec, sizeof(dec), &m),
                     PARLEY_BASE64URL_OK, "len %zu", len);
        cr_assert_eq(m, len);
        cr_assert(memcmp(dec, src, len) == 0);
    }
}

Test(base64url, rejects_padding)
{
    unsigned char dec[8];
    size_t        n = 99;

    cr_assert_eq(parley_base64url_decode("Zg==", 4, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
    cr_assert_eq(n, 0);
    cr_assert_eq(parley_base64url_decode("Zm8=", 4, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
    cr_assert_eq(parley_base64url_decode("Zg=", 3, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
}

Test(base64url, rejects_characters_outside_the_alphabet)
{
    static const char *bad[] = {
        "Zm9v+g", "Zm9v/g", "Zm 9v", "Zm9v\n", "Zm9\0v", "Zm9v\xc3\xa9",
        "Zm9v.g", "Zm9v%3D",
    };
    unsigned char dec[16];
    size_t        i, n;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = i == 4 ? 5 : strlen(bad[i]);
        cr_assert_eq(parley_base64url_decode(bad[i], len, dec, sizeof(dec), &n),
                     PARLEY_BASE64URL_EINVAL, "case %zu", i);
    }
}

Test(base64url, rejects_impossible_lengths)
{
    unsigned char dec[8];
    size_t        n;

    cr_assert_eq(parley_base64url_decode("Z", 1, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
    cr_assert_eq(parley_base64url_decode("Zm9vY", 5, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
}

Test(base64url, rejects_non_canonical_trailing_bits)
{
    unsigned char dec[8];
    size_t        n;

    /* "f" is Zg; Zh..Zv decode to "f" too if the low 4 bits are ignored */
    cr_assert_eq(parley_base64url_decode("Zg", 2, dec, sizeof(dec), &n), 0);
    cr_assert_eq(parley_base64url_decode("Zh", 2, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
    cr_assert_eq(parley_base64url_decode("Zv", 2, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
    /* "fo" is Zm8; Zm9 differs only in the 2 unused bits */
    cr_assert_eq(parley_base64url_decode("Zm8", 3, dec, sizeof(dec), &n), 0);
    cr_assert_eq(parley_base64url_decode("Zm9", 3, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
    cr_assert_eq(parley_base64url_decode("Zm-", 3, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_EINVAL);
}

Test(base64url, respects_the_output_capacity)
{
    unsigned char dec[3];
    char          enc[4];
    size_t        n;

    cr_assert_eq(parley_base64url_decode("Zm9vYg", 6, dec, sizeof(dec), &n),
                 PARLEY_BASE64URL_ENOSPC);
    cr_assert_eq(parley_base64url_decode("Zm9v", 4, dec, sizeof(dec), &n), 0);
    cr_assert_eq(parley_base64url_encode("foob", 4, enc, sizeof(enc), &n),
                 PARLEY_BASE64URL_ENOSPC);
    cr_assert_eq(parley_base64url_encode("foo", 3, enc, sizeof(enc), &n), 0);
    /* invalid input is reported as such even when the buffer is small */
    cr_assert_eq(parley_base64url_decode("Zm9v+g", 6, dec, 1, &n),
                 PARLEY_BASE64URL_EINVAL);
}

Test(base64url, lengths_are_bounded)
{
    char   c = 'A';
    size_t n;

    cr_assert_eq(parley_base64url_encoded_len(PARLEY_BASE64URL_MAX_INPUT + 1), 0);
    cr_assert_eq(parley_base64url_encode(&c, PARLEY_BASE64URL_MAX_INPUT + 1,
                                         &c, 1, &n),
                 PARLEY_BASE64URL_EINVAL);
    cr_assert_eq(parley_base64url_decode(&c, (size_t) -1, NULL, 0, &n),
                 PARLEY_BASE64URL_EINVAL);
}
