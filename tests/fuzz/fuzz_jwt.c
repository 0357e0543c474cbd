// fuzz-sources: lib/parley_jwt.c lib/parley_base64url.c lib/parley_json.c -lcrypto -ljansson
/*
 * libFuzzer harness for JWT parsing and verification.  The key set (two
 * HS256 secrets, one with a kid, and a P-256 key generated once) is built on
 * the first call and shared by all runs, as a worker shares its tenant's.
 *
 * The first input byte picks a mode (bits 0-1) and a policy (bits 2-4):
 *  0: the rest is a token, given as is to peek and verify;
 *  1: the rest is "header JSON\nclaims JSON"; the harness encodes both and
 *     signs them with the HS256 secret, so that mutated JSON reaches the
 *     header and claim checks behind a valid signature;
 *  2: the rest drives a small generator of claims (names and values near
 *     the policy's boundaries), signed under a fixed header: a run that
 *     starts from an empty corpus reaches every claim check at once;
 *  3: the rest is claims JSON under a fixed HS256 header without kid.
 * The policy bits vary algorithms, issuer, audiences and lifetime.
 *
 * Properties checked besides "no crash, no leak": verify and peek agree on
 * the header; accepted claims obey the documented bounds; accepted claims
 * signed again by parley_jwt_sign_hs256 verify again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "parley_base64url.h"
#include "parley_jwt.h"

#define NOW 1700000000LL

static const unsigned char secret[] = "fuzzing-secret-0123456789abcdef!";
#define SECRET_LEN (sizeof(secret) - 1)

static parley_jwt_keyset_t *keyset;

static void must(int ok)
{
    if (!ok) {
        abort();
    }
}

static void build_keyset(void)
{
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO      *bio = BIO_new(BIO_s_mem());
    char     *pem;
    long      pem_len;

    must(ec != NULL && bio != NULL && PEM_write_bio_PUBKEY(bio, ec));
    pem_len = BIO_get_mem_data(bio, &pem);

    keyset = parley_jwt_keyset_new();
    must(keyset != NULL);
    must(parley_jwt_keyset_add_hmac(keyset, "h1", secret, SECRET_LEN, NULL)
         == PARLEY_JWT_OK);
    must(parley_jwt_keyset_add_hmac(keyset, NULL,
                                    (const unsigned char *)
                                    "another-secret-of-32-bytes-at-least",
                                    35, NULL) == PARLEY_JWT_OK);
    must(parley_jwt_keyset_add_pem(keyset, "e1", pem, (size_t) pem_len, NULL)
         == PARLEY_JWT_OK);

    BIO_free(bio);
    EVP_PKEY_free(ec);
}

static const char *const audiences[] = { "tenant-1", "tenant-2" };

static void make_policy(parley_jwt_policy_t *p, unsigned bits)
{
    parley_jwt_policy_init(p, (bits & 1) ? PARLEY_JWT_HS256 : PARLEY_JWT_ALGS_ALL,
                           NOW);
    if (bits & 2) {
        p->issuer = "parley";
        p->audiences = audiences;
        p->naudiences = 2;
        p->required |= PARLEY_JWT_CLAIM_IAT | PARLEY_JWT_CLAIM_JTI;
    }
    if (bits & 4) {
        p->max_lifetime = 3600;
        p->leeway = 0;
        p->required = 0;
    }
}

static void check_claims(const parley_jwt_claims_t *c,
                         const parley_jwt_policy_t *p)
{
    must(c->json != NULL && json_is_object(c->json));
    if (c->sub != NULL) {
        must(c->sub_len >= 1 && c->sub_len <= PARLEY_JWT_SUB_MAX);
        must(strlen(c->sub) == c->sub_len);
    }
    if (p->required & PARLEY_JWT_CLAIM_SUB) {
        must(c->sub != NULL);
    }
    if (p->naudiences > 0) {
        must(c->aud != NULL && strlen(c->aud) == c->aud_len);
    }
    if (c->present & PARLEY_JWT_CLAIM_EXP) {
        must(p->now < c->exp + p->leeway);
    } else {
        must(!(p->required & PARLEY_JWT_CLAIM_EXP) && p->max_lifetime == 0);
    }
    if (c->present & PARLEY_JWT_CLAIM_NBF) {
        must(p->now >= c->nbf - p->leeway);
    }
}

static void verify_and_check(const char *token, size_t len,
                             const parley_jwt_policy_t *p, int resign)
{
    parley_jwt_claims_t c, c2;
    parley_jwt_header_t h;
    parley_jwt_err_t    err;
    parley_jwt_status_t st, peek;
    char                out[PARLEY_JWT_MAX_LEN + 1];
    size_t              out_len;

    st = parley_jwt_verify(token, len, keyset, p, &c, &err);
    must(err.status == st);
    must(strlen(parley_jwt_status_name(st)) > 0);
    peek = parley_jwt_peek(token, len, &h, NULL);

    if (st != PARLEY_JWT_OK) {
        must(c.json == NULL);
        parley_jwt_claims_free(&c);
        return;
    }

    must(peek == PARLEY_JWT_OK && h.alg == c.alg && (p->algs & c.alg));
    must(h.kid_len == c.kid_len && memcmp(h.kid, c.kid, c.kid_len) == 0);
    check_claims(&c, p);

    if (resign) {
        st = parley_jwt_sign_hs256("h1", c.json, secret, SECRET_LEN, out,
                                   sizeof(out), &out_len, NULL);
        must(st == PARLEY_JWT_OK || st == PARLEY_JWT_ERR_TOO_LARGE);
        if (st == PARLEY_JWT_OK) {
            st = parley_jwt_verify(out, out_len, keyset, p, &c2, &err);
            must(st == PARLEY_JWT_OK);
            parley_jwt_claims_free(&c2);
        }
    }
    parley_jwt_claims_free(&c);
}

/* header, claims -> a HS256 token signed with the fuzzing secret */
static void signed_mode(const uint8_t *header, size_t hlen,
                        const uint8_t *claims, size_t plen,
                        const parley_jwt_policy_t *p)
{
    static char   token[3 * PARLEY_JWT_MAX_LEN];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int  mac_len = 0;
    size_t        o = 0, n;

    must(parley_base64url_encode(header, hlen, token, sizeof(token), &n) == 0);
    o += n;
    token[o++] = '.';
    must(parley_base64url_encode(claims, plen, token + o, sizeof(token) - o,
                                 &n) == 0);
    o += n;
    must(HMAC(EVP_sha256(), secret, (int) SECRET_LEN,
              (const unsigned char *) token, o, mac, &mac_len) != NULL);
    token[o++] = '.';
    must(parley_base64url_encode(mac, mac_len, token + o, sizeof(token) - o,
                                 &n) == 0);
    o += n;

    verify_and_check(token, o, p, 1);
}

/*
 * Claims from bytes: each group of three bytes adds one member, a name from
 * a table and a value of a kind and size the bytes choose.
 */
static json_t *generate_claims(const uint8_t *data, size_t size)
{
    static const char *const names[] = {
        "exp", "nbf", "iat", "sub", "iss", "aud", "jti", "tid", "x",
    };
    static const char *const strings[] = {
        "parley", "tenant-1", "tenant-2", "u", "", "a\x01b", "caf\xc3\xa9",
    };
    char       longstr[PARLEY_JWT_STR_MAX + 2];
    json_t    *obj = json_object(), *v, *arr;
    size_t     i, k;
    json_int_t offset;

    must(obj != NULL);
    memset(longstr, 'u', sizeof(longstr) - 1);

    for (i = 0; i + 3 <= size; i += 3) {
        offset = (json_int_t) (int8_t) data[i + 2] * 30;
        switch (data[i + 1] % 9) {
        case 0:
            v = json_integer(NOW + offset);
            break;
        case 1:
            v = json_real((double) (NOW + offset) + 0.5);
            break;
        case 2:
            v = json_string(strings[data[i + 2] % 7]);
            break;
        case 3: /* a string of chosen length around the limits */
            k = (size_t) data[i + 2] % 2 ? PARLEY_JWT_SUB_MAX
                                         : PARLEY_JWT_STR_MAX;
            k += (size_t) (data[i + 2] >> 1) % 3;
            k = k < sizeof(longstr) ? k : sizeof(longstr) - 1;
            longstr[k] = '\0';
            v = json_string(longstr);
            longstr[k] = 'u';
            break;
        case 4:
            arr = json_array();
            for (k = 0; arr != NULL && k < (size_t) (data[i + 2] % 40); k++) {
                json_array_append_new(arr, json_string(strings[k % 7]));
            }
            v = arr;
            break;
        case 5:
            v = (data[i + 2] & 1) ? json_true() : json_null();
            break;
        case 6:
            v = json_integer((data[i + 2] & 1) ? PARLEY_JWT_TIME_MAX : -1);
            break;
        case 7:
            v = json_integer(NOW + offset * 60);
            break;
        default:
            v = json_object();
        }
        must(v != NULL);
        must(json_object_set_new(obj, names[data[i] % 9], v) == 0);
    }
    return obj;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char with_kid[] = "{\"alg\":\"HS256\",\"kid\":\"h1\"}";
    static const char no_kid[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    static char         text[PARLEY_JWT_MAX_LEN];
    parley_jwt_policy_t p;
    const uint8_t      *nl;
    json_t             *claims;
    size_t              n;

    if (keyset == NULL) {
        build_keyset();
    }
    if (size < 1) {
        return 0;
    }

    make_policy(&p, data[0] >> 2);
    data++;
    size--;

    switch (data[-1] & 3) {
    case 0:
        verify_and_check((const char *) data, size, &p, 0);
        break;
    case 1:
        nl = memchr(data, '\n', size);
        if (nl != NULL) {
            signed_mode(data, (size_t) (nl - data), nl + 1,
                        size - (size_t) (nl - data) - 1, &p);
        }
        break;
    case 2:
        claims = generate_claims(data, size);
        n = json_dumpb(claims, text, sizeof(text), JSON_COMPACT);
        json_decref(claims);
        if (n > 0 && n <= sizeof(text)) {
            signed_mode((const uint8_t *) with_kid, sizeof(with_kid) - 1,
                        (const uint8_t *) text, n, &p);
        }
        break;
    default:
        signed_mode((const uint8_t *) no_kid, sizeof(no_kid) - 1, data, size,
                    &p);
    }
    return 0;
}
