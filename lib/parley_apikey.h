/*
 * Admin API keys.  A key is "pk_" followed by the unpadded base64url form of
 * 32 random bytes (43 characters): 46 characters in all, safe in a shell
 * assignment, a URL and an HTTP header without quoting.
 *
 * The server never stores a key, only its SHA-256 (lowercase hex) and its
 * first PARLEY_APIKEY_PREFIX_LEN characters, shown to operators so they can
 * tell keys apart and revoke one.  A plain hash suffices (no salt, no slow
 * KDF): the 256 random bits make guessing hopeless, and a deterministic hash
 * lets the server find a presented key by an indexed lookup.
 *
 * The caller supplies the randomness (a CSPRNG such as RAND_bytes), which
 * keeps this file free of I/O and its tests deterministic.
 */
#ifndef PARLEY_APIKEY_H
#define PARLEY_APIKEY_H

#include <stddef.h>

#define PARLEY_APIKEY_RANDOM_LEN 32
#define PARLEY_APIKEY_TAG        "pk_"
#define PARLEY_APIKEY_TAG_LEN    3
#define PARLEY_APIKEY_B64_LEN    43 /* ceil(32 * 8 / 6) */
#define PARLEY_APIKEY_LEN        (PARLEY_APIKEY_TAG_LEN + PARLEY_APIKEY_B64_LEN)
#define PARLEY_APIKEY_PREFIX_LEN 11 /* "pk_" and 8 characters: 48 bits */
#define PARLEY_SHA256_HEX_LEN    64

/*
 * Writes the key for these 32 random bytes and a NUL into out
 * (PARLEY_APIKEY_LEN + 1 bytes).
 */
void parley_apikey_format(const unsigned char random[PARLEY_APIKEY_RANDOM_LEN],
                          char out[PARLEY_APIKEY_LEN + 1]);

/*
 * 0 when str[0..len) has exactly the shape parley_apikey_format writes, -1
 * otherwise: the tag, 43 base64url characters, and a last character whose
 * two unused low bits are zero (so that each key has one spelling only).
 * Reads no byte past len; needs no NUL.
 */
int parley_apikey_parse(const char *str, size_t len);

/*
 * 0 when str[0..len) is a valid key prefix: the first
 * PARLEY_APIKEY_PREFIX_LEN characters of some key.  -1 otherwise.
 */
int parley_apikey_prefix_parse(const char *str, size_t len);

/*
 * Writes the lowercase hex SHA-256 of str[0..len) and a NUL into out_hex:
 * the form stored in tenant_api_keys.key_hash.  Hashes whatever it is given;
 * parse first.  0, or -1 when libcrypto fails (out_hex is then "").
 */
int parley_apikey_hash(const char *str, size_t len,
                       char out_hex[PARLEY_SHA256_HEX_LEN + 1]);

/*
 * Lowercase hex SHA-256 of any buffer, as above; shared with the migration
 * checksums so that one EVP sequence serves both.
 */
int parley_sha256_hex(const void *buf, size_t len,
                      char out_hex[PARLEY_SHA256_HEX_LEN + 1]);

#endif
