#include <criterion/criterion.h>
#include <string.h>

#include "parley_apikey.h"

/*
 * Expected keys from Python's base64.urlsafe_b64encode (padding stripped),
 * expected hashes from `printf %s KEY | sha256sum`.
 */
static const struct {
    unsigned char fill; /* 0: zeros, 1: 0..31, 2: 0xff */
    const char   *key;
    const char   *sha256;
} vectors[] = {
    { 0, "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "fc03697119e33d7be05062769f7244a89202a1f5b264b9a33454f4f33d2e4cee" },
    { 1, "pk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
      "53c0e92043d79911eef4abeec9f151eb52ed6f0bad6f7130b29d8ac9b0e0a38c" },
    { 2, "pk___________________________________________8",
      "1160f9e42a59d797532f7f624e451a72406e8af9d451d1caba306317f9cb427d" },
};

static void fill(unsigned char r[PARLEY_APIKEY_RANDOM_LEN], unsigned char how)
{
    size_t i;

    for (i = 0; i < PARLEY_APIKEY_RANDOM_LEN; i++) {
        r[i] = how == 0 ? 0 : how == 1 ? (unsigned char) i : 0xff;
    }
}

Test(apikey, format_known_vectors)
{
    unsigned char r[PARLEY_APIKEY_RANDOM_LEN];
    char          key[PARLEY_APIKEY_LEN + 1];
    size_t        i;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        fill(r, vectors[i].fill);
        memset(key, 'x', sizeof(key));
        parley_apikey_format(r, key);
        cr_assert_str_eq(key, vectors[i].key);
        cr_assert_eq(strlen(key), 46);
        cr_assert_eq(parley_apikey_parse(key, strlen(key)), 0);
    }
}

Test(apikey, hash_known_vectors)
{
    char   hex[PARLEY_SHA256_HEX_LEN + 1];
    size_t i;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        cr_assert_eq(parley_apikey_hash(vectors[i].key, strlen(vectors[i].key),
                                        hex),
                     0);
        cr_assert_str_eq(hex, vectors[i].sha256);
    }

    /* printf '' | sha256sum */
    cr_assert_eq(parley_sha256_hex("", 0, hex), 0);
    cr_assert_str_eq(
        hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(apikey, distinct_random_gives_distinct_keys)
{
    unsigned char r[PARLEY_APIKEY_RANDOM_LEN] = { 0 };
    char          a[PARLEY_APIKEY_LEN + 1], b[PARLEY_APIKEY_LEN + 1];
    size_t        i;

    /* flipping any one bit anywhere changes the key */
    parley_apikey_format(r, a);
    for (i = 0; i < PARLEY_APIKEY_RANDOM_LEN * 8; i++) {
        r[i / 8] ^= (unsigned char) (0x80 >> (i % 8));
        parley_apikey_format(r, b);
        cr_assert_str_neq(a, b, "bit %zu lost", i);
        cr_assert_eq(parley_apikey_parse(b, strlen(b)), 0, "bit %zu: %s", i, b);
        r[i / 8] ^= (unsigned char) (0x80 >> (i % 8));
    }
}

Test(apikey, parse_rejects_wrong_shapes)
{
    static const char *bad[] = {
        "",
        "pk_",
        /* 42 and 44 characters after the tag */
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        /* wrong tag */
        "PK_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        /* standard base64 alphabet, padding, whitespace */
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+A",
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/A",
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",
        /* last character with padding bits set: a second spelling */
        "pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
        "pk___________________________________________-",
        "pk___________________________________________9",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parley_apikey_parse(bad[i], strlen(bad[i])), -1,
                     "accepted \"%s\"", bad[i]);
    }

    /* NUL inside and length honoured */
    cr_assert_eq(parley_apikey_parse("pk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                     "\0AA",
                                     46),
                 -1);
    cr_assert_eq(parley_apikey_parse(vectors[1].key, 45), -1);
}

Test(apikey, every_canonical_last_character_is_accepted)
{
    char   key[PARLEY_APIKEY_LEN + 1];
    char   lasts[] = "AEIMQUYcgkosw048";
    size_t i;

    strcpy(key, vectors[0].key);
    for (i = 0; i < 16; i++) {
        key[PARLEY_APIKEY_LEN - 1] = lasts[i];
        cr_assert_eq(parley_apikey_parse(key, PARLEY_APIKEY_LEN), 0, "%s", key);
    }
}

Test(apikey, prefix)
{
    char prefix[PARLEY_APIKEY_PREFIX_LEN + 1];

    memcpy(prefix, vectors[1].key, PARLEY_APIKEY_PREFIX_LEN);
    prefix[PARLEY_APIKEY_PREFIX_LEN] = '\0';
    cr_assert_str_eq(prefix, "pk_AAECAwQF");
    cr_assert_eq(parley_apikey_prefix_parse(prefix, strlen(prefix)), 0);

    cr_assert_eq(parley_apikey_prefix_parse("pk_AAECAwQ", 10), -1);
    cr_assert_eq(parley_apikey_prefix_parse(vectors[1].key, 46), -1);
    cr_assert_eq(parley_apikey_prefix_parse("pk_AAEC+wQF", 11), -1);
    cr_assert_eq(parley_apikey_prefix_parse("xk_AAECAwQF", 11), -1);
}
