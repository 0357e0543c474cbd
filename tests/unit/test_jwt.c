/*
 * JWT verification.  Keys are generated here with EVP and tokens are signed
 * here with EVP_DigestSign / HMAC, independently of lib/parley_jwt.c, so the
 * library is checked against libcrypto rather than against itself.  Known
 * answers: RFC 7515 appendix A.1, and an HS256 token computed in the shell:
 *
 *   b64u() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
 *   H=$(printf %s '{"alg":"HS256","typ":"JWT","kid":"k1"}' | b64u)
 *   P=$(printf %s '{"iss":"parley","aud":"t1","sub":"u42","tid":"t1",'\
 *   '"jti":"j1","iat":1700000000,"exp":1700003600}' | b64u)
 *   printf %s "$H.$P" | openssl dgst -sha256 \
 *       -hmac 0123456789abcdef0123456789abcdef -binary | b64u
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "parley_base64url.h"
#include "parley_jwt.h"

#define NOW    1700000000LL
#define ISSUER "https://idp.example"

static const unsigned char SECRET[] = "0123456789abcdef0123456789abcdef";
#define SECRET_LEN (sizeof(SECRET) - 1)

static const char KAT_TOKEN[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0."
    "eyJpc3MiOiJwYXJsZXkiLCJhdWQiOiJ0MSIsInN1YiI6InU0MiIsInRpZCI6InQxIiwianRp"
    "IjoiajEiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0."
    "Vmr-6AuAsG8T9BI5Sm5fLdkw3Jh08b_wg4O4_52pd1A";

/* ------------------------------------------------------------------------ */
/* helpers: keys, encodings, independent signing */

static char *b64(const void *data, size_t len)
{
    size_t cap = parley_base64url_encoded_len(len) + 1, n;
    char  *out = malloc(cap);

    cr_assert_not_null(out);
    cr_assert_eq(parley_base64url_encode(data, len, out, cap, &n), 0);
    out[n] = '\0';
    return out;
}

static char *b64s(const char *s)
{
    return b64(s, strlen(s));
}

static EVP_PKEY *gen_rsa(int bits)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) bits);

    cr_assert_not_null(k);
    return k;
}

static EVP_PKEY *gen_ec(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);

    cr_assert_not_null(k);
    return k;
}

static char *bio_string(BIO *bio)
{
    char *data, *out;
    long  n = BIO_get_mem_data(bio, &data);

    out = malloc((size_t) n + 1);
    cr_assert_not_null(out);
    memcpy(out, data, (size_t) n);
    out[n] = '\0';
    BIO_free(bio);
    return out;
}

static char *public_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());

    cr_assert(PEM_write_bio_PUBKEY(bio, k));
    return bio_string(bio);
}

static char *private_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());

    cr_assert(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL));
    return bio_string(bio);
}

static char *certificate_pem(EVP_PKEY *k)
{
    X509      *x = X509_new();
    X509_NAME *name;
    BIO       *bio = BIO_new(BIO_s_mem());

    cr_assert_not_null(x);
    cr_assert(X509_set_version(x, 2));
    cr_assert(ASN1_INTEGER_set(X509_get_serialNumber(x), 1));
    cr_assert(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    cr_assert(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    cr_assert(X509_set_pubkey(x, k));
    name = X509_get_subject_name(x);
    cr_assert(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                         (const unsigned char *) "idp", -1,
                                         -1, 0));
    cr_assert(X509_set_issuer_name(x, name));
    cr_assert(X509_sign(x, k, EVP_sha256()) > 0);
    cr_assert(PEM_write_bio_X509(bio, x));
    X509_free(x);
    return bio_string(bio);
}

static char *bn_param_b64(EVP_PKEY *k, const char *param, int pad)
{
    BIGNUM        *bn = NULL;
    unsigned char  buf[1100];
    int            n;

    cr_assert(EVP_PKEY_get_bn_param(k, param, &bn));
    n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    cr_assert(n > 0);
    BN_free(bn);
    return b64(buf, (size_t) n);
}

/* a JWK object for the public half of k; extra goes inside the braces */
static char *jwk_of(EVP_PKEY *k, const char *kid, const char *extra)
{
    char *out, *a, *b, kidpart[200] = "";

    if (kid != NULL) {
        snprintf(kidpart, sizeof(kidpart), "\"kid\":\"%s\",", kid);
    }
    if (EVP_PKEY_is_a(k, "RSA")) {
        a = bn_param_b64(k, OSSL_PKEY_PARAM_RSA_N, 0);
        b = bn_param_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
        cr_assert(asprintf(&out, "{%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}",
                           kidpart, a, b, extra ? extra : "") > 0);
    } else {
        a = bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        b = bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        cr_assert(asprintf(&out,
                           "{%s\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
                           "\"y\":\"%s\"%s}",
                           kidpart, a, b, extra ? extra : "") > 0);
    }
    free(a);
    free(b);
    return out;
}

/* DER ECDSA signature -> JWS r||s */
static size_t der_to_raw(const unsigned char *der, size_t len,
                         unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG           *sig = d2i_ECDSA_SIG(NULL, &p, (long) len);
    const BIGNUM        *r, *s;

    cr_assert_not_null(sig);
    ECDSA_SIG_get0(sig, &r, &s);
    cr_assert_eq(BN_bn2binpad(r, raw, 32), 32);
    cr_assert_eq(BN_bn2binpad(s, raw + 32, 32), 32);
    ECDSA_SIG_free(sig);
    return 64;
}

enum { SIG_NATURAL, SIG_DER }; /* ES256: r||s, or leave it DER */

/*
 * Signature over input: HS256 with secret, RS256/ES256 with k.  Returns the
 * length written into sig (>= 512 bytes).
 */
static size_t sign_input(parley_jwt_alg_t alg, EVP_PKEY *k,
                         const unsigned char *secret, size_t secret_len,
                         const char *input, unsigned char *sig, int form)
{
    unsigned char der[1100];
    unsigned int  mac_len = 0;
    size_t        len = sizeof(der);
    EVP_MD_CTX   *ctx;

    if (alg == PARLEY_JWT_HS256) {
        cr_assert_not_null(HMAC(EVP_sha256(), secret, (int) secret_len,
                                (const unsigned char *) input, strlen(input),
                                sig, &mac_len));
        return mac_len;
    }

    ctx = EVP_MD_CTX_new();
    cr_assert_not_null(ctx);
    cr_assert_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    cr_assert_eq(EVP_DigestSign(ctx, der, &len, (const unsigned char *) input,
                                strlen(input)),
                 1);
    EVP_MD_CTX_free(ctx);

    if (alg == PARLEY_JWT_ES256 && form == SIG_NATURAL) {
        return der_to_raw(der, len, sig);
    }
    memcpy(sig, der, len);
    return len;
}

/* header.payload.signature from JSON texts */
static char *make_token_form(const char *header, const char *payload,
                             parley_jwt_alg_t alg, EVP_PKEY *k,
                             const unsigned char *secret, size_t secret_len,
                             int form)
{
    unsigned char sig[1100];
    size_t        sig_len;
    char         *h = b64s(header), *p = b64s(payload), *input, *s, *out;

    cr_assert(asprintf(&input, "%s.%s", h, p) > 0);
    sig_len = sign_input(alg, k, secret, secret_len, input, sig, form);
    s = b64(sig, sig_len);
    cr_assert(asprintf(&out, "%s.%s", input, s) > 0);
    free(h);
    free(p);
    free(s);
    free(input);
    return out;
}

static char *make_token(const char *header, const char *payload,
                        parley_jwt_alg_t alg, EVP_PKEY *k)
{
    return make_token_form(header, payload, alg, k, SECRET, SECRET_LEN,
                           SIG_NATURAL);
}

/* standard claims, with extra members appended (",\"x\":1") */
static char *claims(const char *extra)
{
    char *out;

    cr_assert(asprintf(&out,
                       "{\"iss\":\"" ISSUER "\",\"aud\":\"tenant-1\","
                       "\"sub\":\"user-1\",\"iat\":%lld,\"exp\":%lld%s}",
                       NOW - 10, NOW + 3600, extra ? extra : "") > 0);
    return out;
}

static const char *const AUDIENCES[] = { "tenant-1", "tenant-9" };

static parley_jwt_policy_t policy(unsigned algs)
{
    parley_jwt_policy_t p;

    parley_jwt_policy_init(&p, algs, NOW);
    p.issuer = ISSUER;
    p.audiences = AUDIENCES;
    p.naudiences = 2;
    return p;
}

static parley_jwt_keyset_t *keyset_hmac(void)
{
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;

    cr_assert_not_null(ks);
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, NULL, SECRET, SECRET_LEN, &err),
                 PARLEY_JWT_OK, "%s", err.message);
    return ks;
}

static parley_jwt_keyset_t *keyset_pem(EVP_PKEY *k, const char *kid)
{
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *pem = public_pem(k);

    cr_assert_not_null(ks);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, kid, pem, strlen(pem), &err),
                 PARLEY_JWT_OK, "%s", err.message);
    free(pem);
    return ks;
}

/* verify and compare; the OpenSSL error queue must be left empty */
static void expect_pol(const char *token, const parley_jwt_keyset_t *ks,
                       const parley_jwt_policy_t *p, parley_jwt_status_t want)
{
    parley_jwt_claims_t c;
    parley_jwt_err_t    err;
    parley_jwt_status_t got;

    got = parley_jwt_verify(token, strlen(token), ks, p, &c, &err);
    cr_assert_eq(got, want, "got %s (%s), want %s", parley_jwt_status_name(got),
                 err.message, parley_jwt_status_name(want));
    cr_assert_eq(err.status, got);
    cr_assert_eq(ERR_peek_error(), 0, "OpenSSL error queue not empty");
    if (got != PARLEY_JWT_OK) {
        cr_assert_null(c.json);
    } else {
        cr_assert_not_null(c.json);
    }
    parley_jwt_claims_free(&c);
}

static void expect(const char *token, const parley_jwt_keyset_t *ks,
                   unsigned algs, parley_jwt_status_t want)
{
    parley_jwt_policy_t p = policy(algs);

    expect_pol(token, ks, &p, want);
}

#define HS_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS_HEADER "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES_HEADER "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"

/* a HS256 token over an arbitrary header and claims text */
static void expect_hs(const char *header, const char *payload,
                      parley_jwt_status_t want)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *t = make_token(header, payload, PARLEY_JWT_HS256, NULL);

    expect(t, ks, PARLEY_JWT_ALGS_ALL, want);
    free(t);
    parley_jwt_keyset_free(ks);
}

/* ------------------------------------------------------------------------ */
/* known answers */

Test(jwt, rfc7515_a1_hs256_known_answer)
{
    static const char token[] =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
        "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    static const char k[] = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZ"
                            "H75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    unsigned char        secret[64];
    size_t               n;
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_policy_t  p;
    parley_jwt_claims_t  c;
    parley_jwt_err_t     err;

    cr_assert_eq(parley_base64url_decode(k, strlen(k), secret, sizeof(secret),
                                         &n), 0);
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, NULL, secret, n, &err), 0);

    parley_jwt_policy_init(&p, PARLEY_JWT_HS256, 1300819380 - 100);
    p.required = PARLEY_JWT_CLAIM_EXP;
    p.issuer = "joe";
    cr_assert_eq(parley_jwt_verify(token, strlen(token), ks, &p, &c, &err),
                 PARLEY_JWT_OK, "%s", err.message);
    cr_assert_str_eq(c.iss, "joe");
    cr_assert_eq(c.exp, 1300819380);
    cr_assert(json_is_true(json_object_get(c.json, "http://example.com/is_root")));
    parley_jwt_claims_free(&c);

    /* and it expired in 2011 */
    p.now = 1300819380 + 60;
    expect_pol(token, ks, &p, PARLEY_JWT_ERR_EXPIRED);
    parley_jwt_keyset_free(ks);
}

Test(jwt, sign_hs256_matches_the_shell_vector_and_verifies)
{
    json_t              *cl;
    char                 out[1024];
    size_t               n;
    parley_jwt_err_t     err;
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_policy_t  p;
    parley_jwt_claims_t  c;
    const char          *aud[] = { "t1" };

    cl = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss", "parley",
                   "aud", "t1", "sub", "u42", "tid", "t1", "jti", "j1", "iat",
                   (json_int_t) 1700000000, "exp", (json_int_t) 1700003600);
    cr_assert_not_null(cl);
    cr_assert_eq(parley_jwt_sign_hs256("k1", cl, SECRET, SECRET_LEN, out,
                                       sizeof(out), &n, &err),
                 PARLEY_JWT_OK, "%s", err.message);
    cr_assert_eq(n, strlen(KAT_TOKEN));
    cr_assert_str_eq(out, KAT_TOKEN);

    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, "k1", SECRET, SECRET_LEN, &err),
                 0);
    parley_jwt_policy_init(&p, PARLEY_JWT_HS256, 1700000100);
    p.issuer = "parley";
    p.audiences = aud;
    p.naudiences = 1;
    p.required |= PARLEY_JWT_CLAIM_IAT | PARLEY_JWT_CLAIM_JTI
                  | PARLEY_JWT_CLAIM_TID;
    p.max_lifetime = 3600;
    cr_assert_eq(parley_jwt_verify(out, n, ks, &p, &c, &err), PARLEY_JWT_OK,
                 "%s", err.message);
    cr_assert_str_eq(c.sub, "u42");
    cr_assert_eq(c.sub_len, 3);
    cr_assert_str_eq(c.iss, "parley");
    cr_assert_str_eq(c.tid, "t1");
    cr_assert_str_eq(c.jti, "j1");
    cr_assert_str_eq(c.aud, "t1");
    cr_assert_eq(c.iat, 1700000000);
    cr_assert_eq(c.exp, 1700003600);
    cr_assert_eq(c.alg, PARLEY_JWT_HS256);
    cr_assert_str_eq(c.kid, "k1");
    cr_assert(c.present & PARLEY_JWT_CLAIM_JTI);
    cr_assert(!(c.present & PARLEY_JWT_CLAIM_NBF));
    parley_jwt_claims_free(&c);
    cr_assert_null(c.json);

    /* buffer one byte short of token + NUL */
    cr_assert_eq(parley_jwt_sign_hs256("k1", cl, SECRET, SECRET_LEN, out, n, &n,
                                       &err),
                 PARLEY_JWT_ERR_BUFFER_TOO_SMALL);
    /* short secret, non-object claims */
    cr_assert_eq(parley_jwt_sign_hs256(NULL, cl, SECRET, 31, out, sizeof(out),
                                       &n, &err),
                 PARLEY_JWT_ERR_KEY_TOO_WEAK);
    json_decref(cl);
    cl = json_array();
    cr_assert_eq(parley_jwt_sign_hs256(NULL, cl, SECRET, SECRET_LEN, out,
                                       sizeof(out), &n, &err),
                 PARLEY_JWT_ERR_ARGUMENT);
    json_decref(cl);
    parley_jwt_keyset_free(ks);
}

/* ------------------------------------------------------------------------ */
/* valid tokens */

Test(jwt, hs256_valid)
{
    char *cl = claims(NULL);

    expect_hs(HS_HEADER, cl, PARLEY_JWT_OK);
    free(cl);
}

Test(jwt, rs256_valid_with_spki_pem)
{
    EVP_PKEY            *k = gen_rsa(2048);
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL);
    char                *cl = claims(NULL), *t = make_token(RS_HEADER, cl,
                                                            PARLEY_JWT_RS256, k);
    parley_jwt_policy_t  p = policy(PARLEY_JWT_RS256);
    parley_jwt_claims_t  c;
    parley_jwt_err_t     err;

    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, &p, &c, &err),
                 PARLEY_JWT_OK, "%s", err.message);
    cr_assert_str_eq(c.sub, "user-1");
    cr_assert_str_eq(c.aud, "tenant-1");
    cr_assert_eq(c.alg, PARLEY_JWT_RS256);
    cr_assert_eq(c.kid_len, 0);
    parley_jwt_claims_free(&c);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
}

Test(jwt, rs256_valid_with_certificate_pem)
{
    EVP_PKEY            *k = gen_rsa(2048);
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *pem = certificate_pem(k), *cl = claims(NULL), *t;

    cr_assert_eq(parley_jwt_keyset_add_pem(ks, "c1", pem, strlen(pem), &err),
                 PARLEY_JWT_OK, "%s", err.message);
    t = make_token("{\"alg\":\"RS256\",\"kid\":\"c1\"}", cl, PARLEY_JWT_RS256, k);
    expect(t, ks, PARLEY_JWT_RS256, PARLEY_JWT_OK);
    free(t);
    free(cl);
    free(pem);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
}

Test(jwt, es256_valid_with_pem_and_jwks)
{
    EVP_PKEY            *k = gen_ec("P-256");
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL), *ks2 = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *cl = claims(NULL), *t, *jwk, *jwks;

    t = make_token(ES_HEADER, cl, PARLEY_JWT_ES256, k);
    expect(t, ks, PARLEY_JWT_ES256, PARLEY_JWT_OK);

    jwk = jwk_of(k, "e1", ",\"use\":\"sig\",\"alg\":\"ES256\"");
    cr_assert(asprintf(&jwks, "{\"keys\":[%s]}", jwk) > 0);
    cr_assert_eq(parley_jwt_keyset_add_jwks(ks2, jwks, strlen(jwks), &err),
                 PARLEY_JWT_OK, "%s", err.message);
    expect(t, ks2, PARLEY_JWT_ES256, PARLEY_JWT_OK);
    free(t);
    t = make_token("{\"alg\":\"ES256\",\"kid\":\"e1\"}", cl, PARLEY_JWT_ES256, k);
    expect(t, ks2, PARLEY_JWT_ES256, PARLEY_JWT_OK);

    free(t);
    free(jwk);
    free(jwks);
    free(cl);
    parley_jwt_keyset_free(ks);
    parley_jwt_keyset_free(ks2);
    EVP_PKEY_free(k);
}

Test(jwt, es256_high_s_signature_is_accepted)
{
    /* documented choice: ECDSA (s) and (n - s) both verify */
    static const char order_hex[] =
        "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
    EVP_PKEY            *k = gen_ec("P-256");
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL);
    char                *cl = claims(NULL), *h = b64s(ES_HEADER), *p = b64s(cl);
    char                *input, *s, *t;
    unsigned char        sig[1100];
    BIGNUM              *order = NULL, *bs;
    BN_CTX              *bnctx = BN_CTX_new();

    cr_assert(asprintf(&input, "%s.%s", h, p) > 0);
    sign_input(PARLEY_JWT_ES256, k, NULL, 0, input, sig, SIG_NATURAL);
    cr_assert(BN_hex2bn(&order, order_hex));
    bs = BN_bin2bn(sig + 32, 32, NULL);
    cr_assert(BN_sub(bs, order, bs));
    cr_assert_eq(BN_bn2binpad(bs, sig + 32, 32), 32);
    s = b64(sig, 64);
    cr_assert(asprintf(&t, "%s.%s", input, s) > 0);
    expect(t, ks, PARLEY_JWT_ES256, PARLEY_JWT_OK);

    BN_free(order);
    BN_free(bs);
    BN_CTX_free(bnctx);
    free(t);
    free(s);
    free(input);
    free(h);
    free(p);
    free(cl);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
}

Test(jwt, typ_variants)
{
    char *cl = claims(NULL);

    expect_hs("{\"alg\":\"HS256\"}", cl, PARLEY_JWT_OK);
    expect_hs("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", cl, PARLEY_JWT_OK);
    expect_hs("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", cl, PARLEY_JWT_OK);
    expect_hs("{\"alg\":\"HS256\",\"typ\":\"application/at+JWT\"}", cl,
              PARLEY_JWT_OK);
    expect_hs("{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", cl,
              PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\",\"typ\":1}", cl, PARLEY_JWT_ERR_MALFORMED);
    /* unknown header parameters are ignored (RFC 7515 4) */
    expect_hs("{\"alg\":\"HS256\",\"x5t\":\"abc\",\"foo\":[1]}", cl,
              PARLEY_JWT_OK);
    free(cl);
}

/* ------------------------------------------------------------------------ */
/* signatures and keys */

Test(jwt, wrong_key_is_rejected)
{
    EVP_PKEY            *r1 = gen_rsa(2048), *r2 = gen_rsa(2048);
    EVP_PKEY            *e1 = gen_ec("P-256"), *e2 = gen_ec("P-256");
    parley_jwt_keyset_t *ks_r = keyset_pem(r2, NULL), *ks_e = keyset_pem(e2, NULL);
    parley_jwt_keyset_t *ks_h = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *cl = claims(NULL), *t;

    t = make_token(RS_HEADER, cl, PARLEY_JWT_RS256, r1);
    expect(t, ks_r, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);
    t = make_token(ES_HEADER, cl, PARLEY_JWT_ES256, e1);
    expect(t, ks_e, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);
    cr_assert_eq(parley_jwt_keyset_add_hmac(
                     ks_h, NULL,
                     (const unsigned char *) "another secret of 32 bytes or more",
                     34, &err),
                 0);
    t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    expect(t, ks_h, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);

    free(cl);
    parley_jwt_keyset_free(ks_r);
    parley_jwt_keyset_free(ks_e);
    parley_jwt_keyset_free(ks_h);
    EVP_PKEY_free(r1);
    EVP_PKEY_free(r2);
    EVP_PKEY_free(e1);
    EVP_PKEY_free(e2);
}

/* replaces segment i (0..2) of token by text */
static char *replace_segment(const char *token, int i, const char *text)
{
    const char *d1 = strchr(token, '.'), *d2 = strchr(d1 + 1, '.');
    char       *out;

    if (i == 0) {
        cr_assert(asprintf(&out, "%s%s", text, d1) > 0);
    } else if (i == 1) {
        cr_assert(asprintf(&out, "%.*s%s%s", (int) (d1 + 1 - token), token,
                           text, d2) > 0);
    } else {
        cr_assert(asprintf(&out, "%.*s%s", (int) (d2 + 1 - token), token,
                           text) > 0);
    }
    return out;
}

Test(jwt, tampered_header_payload_or_signature_is_rejected)
{
    EVP_PKEY            *k = gen_rsa(2048);
    EVP_PKEY            *e = gen_ec("P-256");
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL);
    parley_jwt_err_t     err;
    char                *cl = claims(NULL), *t, *bad, *seg, *other, *pem;
    size_t               i;
    const char          *tokens_alg[2] = { RS_HEADER, ES_HEADER };
    EVP_PKEY            *keys[2] = { k, e };

    pem = public_pem(e);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, NULL, pem, strlen(pem), &err), 0);
    free(pem);

    for (i = 0; i < 2; i++) {
        parley_jwt_alg_t alg = i == 0 ? PARLEY_JWT_RS256 : PARLEY_JWT_ES256;

        t = make_token(tokens_alg[i], cl, alg, keys[i]);
        expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_OK);

        /* header: same alg, different bytes */
        seg = b64s(i == 0 ? "{\"alg\":\"RS256\",\"typ\":\"jwt\"}"
                          : "{\"alg\":\"ES256\",\"typ\":\"jwt\"}");
        bad = replace_segment(t, 0, seg);
        expect(bad, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
        free(bad);
        free(seg);

        /* payload: another subject */
        other = claims(NULL);
        memcpy(strstr(other, "user-1"), "admin1", 6);
        seg = b64s(other);
        bad = replace_segment(t, 1, seg);
        expect(bad, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
        free(bad);
        free(seg);
        free(other);

        /* signature: one character changed */
        bad = strdup(t);
        seg = strrchr(bad, '.') + 1;
        seg[3] = seg[3] == 'A' ? 'B' : 'A';
        expect(bad, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
        free(bad);

        free(t);
    }

    free(cl);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
    EVP_PKEY_free(e);
}

Test(jwt, alg_none_is_rejected_in_every_casing)
{
    static const char *casings[] = { "none", "None", "NONE", "nOnE", "NoNe" };
    parley_jwt_keyset_t *ks = keyset_hmac();
    parley_jwt_header_t  hdr;
    parley_jwt_err_t     err;
    char                *cl = claims(NULL), *hj, *h, *p = b64s(cl), *t;
    size_t               i;

    for (i = 0; i < sizeof(casings) / sizeof(casings[0]); i++) {
        cr_assert(asprintf(&hj, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", casings[i]) > 0);
        h = b64s(hj);

        /* the unsecured form: empty signature */
        cr_assert(asprintf(&t, "%s.%s.", h, p) > 0);
        expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_MALFORMED);
        free(t);

        /* with some signature: refused for its alg */
        cr_assert(asprintf(&t, "%s.%s.AAAA", h, p) > 0);
        expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_ALG_NOT_ALLOWED);
        cr_assert_eq(parley_jwt_peek(t, strlen(t), &hdr, &err),
                     PARLEY_JWT_ERR_ALG_NOT_ALLOWED);
        cr_assert(strstr(err.message, "alg none") != NULL, "%s", err.message);
        free(t);

        /* and signed with the HMAC secret, still refused */
        t = make_token(hj, cl, PARLEY_JWT_HS256, NULL);
        expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_ALG_NOT_ALLOWED);
        free(t);
        free(h);
        free(hj);
    }
    free(p);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, unsupported_algorithms_are_rejected)
{
    static const char *algs[] = {
        "hs256", "HS384", "HS512", "RS512", "PS256", "ES384", "EdDSA", "",
        "HS256\\u0000",
    };
    char  *cl = claims(NULL), *hj;
    size_t i;

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        cr_assert(asprintf(&hj, "{\"alg\":\"%s\"}", algs[i]) > 0);
        expect_hs(hj, cl, i == 8 ? PARLEY_JWT_ERR_MALFORMED
                                 : PARLEY_JWT_ERR_ALG_NOT_ALLOWED);
        free(hj);
    }
    expect_hs("{\"alg\":256}", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"typ\":\"JWT\"}", cl, PARLEY_JWT_ERR_MALFORMED);
    free(cl);
}

Test(jwt, key_confusion_hs256_signed_with_the_rsa_public_pem)
{
    EVP_PKEY            *k = gen_rsa(2048);
    char                *pem = public_pem(k), *cl = claims(NULL), *t;
    parley_jwt_keyset_t *ks = keyset_pem(k, "rsa1"), *ks2 = parley_jwt_keyset_new();
    parley_jwt_err_t     err;

    /* the classic attack: the public key's PEM bytes used as HMAC secret */
    t = make_token_form(HS_HEADER, cl, PARLEY_JWT_HS256, NULL,
                        (const unsigned char *) pem, strlen(pem), SIG_NATURAL);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_KEY_UNKNOWN);
    free(t);
    /* naming the RSA key's kid does not help */
    t = make_token_form("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", cl,
                        PARLEY_JWT_HS256, NULL, (const unsigned char *) pem,
                        strlen(pem), SIG_NATURAL);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_KEY_UNKNOWN);
    free(t);

    /* a key set with both: the HMAC secret is not the PEM */
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, "h1", SECRET, SECRET_LEN, &err), 0);
    t = make_token_form(HS_HEADER, cl, PARLEY_JWT_HS256, NULL,
                        (const unsigned char *) pem, strlen(pem), SIG_NATURAL);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);

    /* and the PEM cannot be configured as a secret at all */
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks2, NULL, (const unsigned char *) pem,
                                            strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    cr_assert_eq(parley_jwt_keyset_count(ks2), 0);

    /* the reverse: an RS256 token against a set with only an HMAC secret */
    parley_jwt_keyset_free(ks2);
    ks2 = keyset_hmac();
    t = make_token(RS_HEADER, cl, PARLEY_JWT_RS256, k);
    expect(t, ks2, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_KEY_UNKNOWN);
    free(t);

    free(cl);
    free(pem);
    parley_jwt_keyset_free(ks);
    parley_jwt_keyset_free(ks2);
    EVP_PKEY_free(k);
}

Test(jwt, alg_not_allowed_by_policy)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *cl = claims(NULL);
    char                *t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);

    expect(t, ks, PARLEY_JWT_RS256 | PARLEY_JWT_ES256,
           PARLEY_JWT_ERR_ALG_NOT_ALLOWED);
    expect(t, ks, 0, PARLEY_JWT_ERR_ALG_NOT_ALLOWED);
    expect(t, ks, PARLEY_JWT_HS256, PARLEY_JWT_OK);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, es256_signature_of_the_wrong_length_or_der)
{
    EVP_PKEY            *k = gen_ec("P-256");
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL);
    char                *cl = claims(NULL), *t, *bad, *seg;
    unsigned char        raw[70];
    size_t               n;

    t = make_token(ES_HEADER, cl, PARLEY_JWT_ES256, k);
    seg = strrchr(t, '.') + 1;
    cr_assert_eq(parley_base64url_decode(seg, strlen(seg), raw, sizeof(raw), &n), 0);
    cr_assert_eq(n, 64);

    seg = b64(raw, 63);
    bad = replace_segment(t, 2, seg);
    expect(bad, ks, PARLEY_JWT_ES256, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(bad);
    free(seg);

    raw[64] = 0;
    seg = b64(raw, 65);
    bad = replace_segment(t, 2, seg);
    expect(bad, ks, PARLEY_JWT_ES256, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(bad);
    free(seg);

    /* r = 0 */
    memset(raw, 0, 32);
    seg = b64(raw, 64);
    bad = replace_segment(t, 2, seg);
    expect(bad, ks, PARLEY_JWT_ES256, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(bad);
    free(seg);
    free(t);

    /* a DER signature, as some libraries wrongly emit */
    t = make_token_form(ES_HEADER, cl, PARLEY_JWT_ES256, k, NULL, 0, SIG_DER);
    expect(t, ks, PARLEY_JWT_ES256, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);

    free(cl);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
}

Test(jwt, rs256_signature_of_the_wrong_length)
{
    EVP_PKEY            *k = gen_rsa(2048);
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL);
    char                *cl = claims(NULL), *t, *bad, *seg;
    unsigned char        sig[300];
    size_t               n;

    t = make_token(RS_HEADER, cl, PARLEY_JWT_RS256, k);
    seg = strrchr(t, '.') + 1;
    cr_assert_eq(parley_base64url_decode(seg, strlen(seg), sig + 1,
                                         sizeof(sig) - 1, &n), 0);
    cr_assert_eq(n, 256);
    sig[0] = 0; /* a leading zero: same number, wrong length */
    seg = b64(sig, 257);
    bad = replace_segment(t, 2, seg);
    expect(bad, ks, PARLEY_JWT_RS256, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(bad);
    free(seg);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
}

/* ------------------------------------------------------------------------ */
/* kid and JWKS */

Test(jwt, jwks_with_several_keys_and_kid_selection)
{
    EVP_PKEY            *r1 = gen_rsa(2048), *r2 = gen_rsa(2048), *r3 = gen_rsa(2048);
    EVP_PKEY            *e1 = gen_ec("P-256"), *p384 = gen_ec("P-384");
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char *j1 = jwk_of(r1, "r1", ",\"use\":\"sig\",\"alg\":\"RS256\"");
    char *j2 = jwk_of(r2, "r2", ",\"key_ops\":[\"verify\"]");
    char *j3 = jwk_of(r3, "r3", ",\"use\":\"enc\"");
    char *j4 = jwk_of(e1, "e1", NULL);
    char *j5 = jwk_of(r3, "r3-ps", ",\"alg\":\"PS256\"");
    char *jwks, *cl = claims(NULL), *t;

    cr_assert(asprintf(&jwks,
                       "{\"keys\":[%s,%s,%s,%s,%s,"
                       "{\"kty\":\"oct\",\"kid\":\"o\",\"k\":\"c2VjcmV0\"},"
                       "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"p\","
                       "\"x\":\"AA\",\"y\":\"AA\"},"
                       "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}],"
                       "\"other\":true}",
                       j1, j2, j3, j4, j5) > 0);
    cr_assert_eq(parley_jwt_keyset_add_jwks(ks, jwks, strlen(jwks), &err),
                 PARLEY_JWT_OK, "%s", err.message);
    cr_assert_eq(parley_jwt_keyset_count(ks), 3, "r1, r2, e1 usable");
    cr_assert_eq(parley_jwt_keyset_algs(ks), PARLEY_JWT_RS256 | PARLEY_JWT_ES256);

    t = make_token("{\"alg\":\"RS256\",\"kid\":\"r2\"}", cl, PARLEY_JWT_RS256, r2);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_OK);
    free(t);
    /* kid selects r1 only: r2's signature does not verify with it */
    t = make_token("{\"alg\":\"RS256\",\"kid\":\"r1\"}", cl, PARLEY_JWT_RS256, r2);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);
    /* without kid, every RS256 key is tried */
    t = make_token(RS_HEADER, cl, PARLEY_JWT_RS256, r2);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_OK);
    free(t);
    /* skipped keys are unknown */
    t = make_token("{\"alg\":\"RS256\",\"kid\":\"r3\"}", cl, PARLEY_JWT_RS256, r3);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_KEY_UNKNOWN);
    free(t);
    t = make_token("{\"alg\":\"RS256\",\"kid\":\"nope\"}", cl, PARLEY_JWT_RS256, r1);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_KEY_UNKNOWN);
    free(t);
    /* a kid naming a key of another algorithm */
    t = make_token("{\"alg\":\"RS256\",\"kid\":\"e1\"}", cl, PARLEY_JWT_RS256, r1);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_ERR_KEY_UNKNOWN);
    free(t);
    t = make_token("{\"alg\":\"ES256\",\"kid\":\"e1\"}", cl, PARLEY_JWT_ES256, e1);
    expect(t, ks, PARLEY_JWT_ALGS_ALL, PARLEY_JWT_OK);
    free(t);

    /* loading it again: every kid is now a duplicate, nothing is added */
    cr_assert_eq(parley_jwt_keyset_add_jwks(ks, jwks, strlen(jwks), &err),
                 PARLEY_JWT_ERR_KEY_DUPLICATE);
    cr_assert_eq(parley_jwt_keyset_count(ks), 3);

    free(jwks);
    free(cl);
    free(j1);
    free(j2);
    free(j3);
    free(j4);
    free(j5);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(r1);
    EVP_PKEY_free(r2);
    EVP_PKEY_free(r3);
    EVP_PKEY_free(e1);
    EVP_PKEY_free(p384);
}

Test(jwt, key_without_kid_serves_tokens_with_any_kid)
{
    EVP_PKEY            *k = gen_ec("P-256");
    parley_jwt_keyset_t *ks = keyset_pem(k, NULL);
    char                *cl = claims(NULL);
    char *t = make_token("{\"alg\":\"ES256\",\"kid\":\"rotated-2024\"}", cl,
                         PARLEY_JWT_ES256, k);
    parley_jwt_claims_t  c;
    parley_jwt_err_t     err;
    parley_jwt_policy_t  p = policy(PARLEY_JWT_ES256);

    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, &p, &c, &err), PARLEY_JWT_OK,
                 "%s", err.message);
    cr_assert_str_eq(c.kid, "rotated-2024");
    parley_jwt_claims_free(&c);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(k);
}

Test(jwt, tries_at_most_eight_keys_without_kid)
{
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    unsigned char        secret[SECRET_LEN];
    char                 kid[16];
    char                *cl = claims(NULL), *t;
    int                  i;

    for (i = 0; i < 9; i++) {
        memcpy(secret, SECRET, SECRET_LEN);
        secret[0] = (unsigned char) ('A' + i);
        snprintf(kid, sizeof(kid), "k%d", i);
        cr_assert_eq(parley_jwt_keyset_add_hmac(ks, i == 8 ? NULL : kid, i == 8
                                                ? SECRET : secret, SECRET_LEN,
                                                &err), 0);
    }
    /* the ninth key is the right one but is never tried */
    t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    expect(t, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_SIGNATURE_INVALID);
    free(t);
    /* with an unknown kid only the kid-less key is tried: it verifies */
    t = make_token("{\"alg\":\"HS256\",\"kid\":\"zz\"}", cl, PARLEY_JWT_HS256, NULL);
    expect(t, ks, PARLEY_JWT_HS256, PARLEY_JWT_OK);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, jwks_with_a_1024_bit_rsa_key_is_rejected)
{
    EVP_PKEY            *weak = gen_rsa(1024), *good = gen_rsa(2048);
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *jg = jwk_of(good, "good", NULL);
    char                *jw = jwk_of(weak, "weak", NULL), *jwks, *pem;

    cr_assert(asprintf(&jwks, "{\"keys\":[%s,%s]}", jg, jw) > 0);
    cr_assert_eq(parley_jwt_keyset_add_jwks(ks, jwks, strlen(jwks), &err),
                 PARLEY_JWT_ERR_KEY_TOO_WEAK);
    cr_assert(strstr(err.message, "keys[1]") != NULL, "%s", err.message);
    cr_assert_str_eq(parley_jwt_status_name(err.status), "key_too_weak");
    cr_assert_eq(parley_jwt_keyset_count(ks), 0, "all or nothing");

    pem = public_pem(weak);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, NULL, pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_TOO_WEAK);
    cr_assert_eq(ERR_peek_error(), 0);

    free(pem);
    free(jwks);
    free(jg);
    free(jw);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(weak);
    EVP_PKEY_free(good);
}

Test(jwt, jwks_rejections)
{
    EVP_PKEY            *e = gen_ec("P-256");
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *jwk = jwk_of(e, "e", NULL), *doc, *y;
    size_t               i;
    static const struct {
        const char         *text;
        parley_jwt_status_t want;
    } cases[] = {
        { "", PARLEY_JWT_ERR_KEY_INVALID },
        { "[]", PARLEY_JWT_ERR_KEY_INVALID },
        { "{}", PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":{}}", PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[]}", PARLEY_JWT_ERR_KEY_UNSUPPORTED },
        { "{\"keys\":[1]}", PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[{}]}", PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[],\"keys\":[]}", PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
          PARLEY_JWT_ERR_KEY_UNSUPPORTED },
        { "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB=\",\"e\":\"AQAB\"}]}",
          PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\"}]}", PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[{\"kty\":\"RSA\",\"kid\":5,\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
          PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
          PARLEY_JWT_ERR_KEY_INVALID },
        { "{\"keys\":[{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}]}",
          PARLEY_JWT_ERR_KEY_INVALID },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(parley_jwt_keyset_add_jwks(ks, cases[i].text,
                                                strlen(cases[i].text), &err),
                     cases[i].want, "case %zu: %s (%s)", i,
                     parley_jwt_status_name(err.status), err.message);
        cr_assert_eq(ERR_peek_error(), 0);
    }

    /* private key material */
    cr_assert(asprintf(&doc, "{\"keys\":[%.*s,\"d\":\"AAAA\"}]}",
                       (int) strlen(jwk) - 1, jwk) > 0);
    cr_assert_eq(parley_jwt_keyset_add_jwks(ks, doc, strlen(doc), &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    cr_assert(strstr(err.message, "private") != NULL);
    free(doc);

    /* a point off the curve: y changed in its last character */
    doc = strdup(jwk);
    y = strstr(doc, "\"y\":\"") + 5;
    y[41] = y[41] == 'A' ? 'Q' : 'A';
    {
        char *set;
        cr_assert(asprintf(&set, "{\"keys\":[%s]}", doc) > 0);
        cr_assert_eq(parley_jwt_keyset_add_jwks(ks, set, strlen(set), &err),
                     PARLEY_JWT_ERR_KEY_INVALID, "%s", err.message);
        free(set);
    }
    free(doc);

    cr_assert_eq(parley_jwt_keyset_count(ks), 0);
    free(jwk);
    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(e);
}

Test(jwt, pem_rejections)
{
    EVP_PKEY            *p384 = gen_ec("P-384"), *ec = gen_ec("P-256");
    EVP_PKEY            *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    char                *pem;

    pem = public_pem(p384);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, NULL, pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_UNSUPPORTED, "%s", err.message);
    free(pem);
    pem = public_pem(ed);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, NULL, pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_UNSUPPORTED, "%s", err.message);
    free(pem);
    pem = private_pem(ec);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, NULL, pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_INVALID, "%s", err.message);
    free(pem);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, NULL, "garbage", 7, &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    pem = public_pem(ec);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, "bad\nkid", pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, "", pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, "a", pem, strlen(pem), &err), 0);
    cr_assert_eq(parley_jwt_keyset_add_pem(ks, "a", pem, strlen(pem), &err),
                 PARLEY_JWT_ERR_KEY_DUPLICATE);
    cr_assert_eq(parley_jwt_keyset_count(ks), 1);
    cr_assert_eq(ERR_peek_error(), 0);
    free(pem);

    parley_jwt_keyset_free(ks);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
}

Test(jwt, hmac_secret_rules_and_keyset_capacity)
{
    parley_jwt_keyset_t *ks = parley_jwt_keyset_new();
    parley_jwt_err_t     err;
    unsigned char        big[PARLEY_JWT_HMAC_MAX + 1];
    char                 kid[16];
    int                  i;

    memset(big, 'x', sizeof(big));
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, NULL, SECRET, 31, &err),
                 PARLEY_JWT_ERR_KEY_TOO_WEAK);
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, NULL, big, sizeof(big), &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    cr_assert_eq(parley_jwt_keyset_add_hmac(
                     ks, NULL,
                     (const unsigned char *) "{\"kty\":\"RSA\",\"n\":\"...........\"}",
                     33, &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    /* binary secrets may start with any byte, '{' and '-' included */
    big[0] = '{';
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, "brace", big, 32, &err), 0);
    big[0] = '-';
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, "dash", big, 32, &err), 0);
    big[0] = 'x';
    cr_assert_eq(parley_jwt_keyset_add_hmac(
                     ks, NULL,
                     (const unsigned char *) "  -----BEGIN PUBLIC KEY-----\nMIIB",
                     33, &err),
                 PARLEY_JWT_ERR_KEY_INVALID);
    for (i = 2; i < PARLEY_JWT_KEYSET_MAX; i++) {
        snprintf(kid, sizeof(kid), "k%d", i);
        cr_assert_eq(parley_jwt_keyset_add_hmac(ks, kid, big, 64, &err), 0);
    }
    cr_assert_eq(parley_jwt_keyset_add_hmac(ks, NULL, big, 64, &err),
                 PARLEY_JWT_ERR_KEYSET_FULL);
    cr_assert_eq(parley_jwt_keyset_count(ks), PARLEY_JWT_KEYSET_MAX);
    cr_assert_eq(parley_jwt_keyset_algs(ks), PARLEY_JWT_HS256);
    parley_jwt_keyset_free(ks);
    parley_jwt_keyset_free(NULL);
    cr_assert_eq(parley_jwt_keyset_algs(NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* shape and header */

Test(jwt, base64_padding_or_invalid_characters)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *cl = claims(NULL), *t, *bad, *dot;
    char                 c[2] = { 0, 0 };
    const char          *chars = "=+/ \t%!";
    size_t               i;

    t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    expect(t, ks, PARLEY_JWT_HS256, PARLEY_JWT_OK);

    for (i = 0; i < strlen(chars); i++) {
        c[0] = chars[i];
        /* appended to the header, the payload and the signature */
        dot = strchr(t, '.');
        cr_assert(asprintf(&bad, "%.*s%s%s", (int) (dot - t), t, c, dot) > 0);
        expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
        free(bad);
        dot = strrchr(t, '.');
        cr_assert(asprintf(&bad, "%.*s%s%s", (int) (dot - t), t, c, dot) > 0);
        expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
        free(bad);
        cr_assert(asprintf(&bad, "%s%s", t, c) > 0);
        expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
        free(bad);
    }
    /* padded signature (43 chars + "=") */
    cr_assert(asprintf(&bad, "%s=", t) > 0);
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    free(bad);
    /* non-canonical last character of the signature (4 unused bits) */
    bad = strdup(t);
    dot = bad + strlen(bad) - 1;
    *dot = *dot == 'A' ? 'B' : (*dot == 'B' ? 'C' : 'B');
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    free(bad);

    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, two_four_or_five_segments_and_empty_ones)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *cl = claims(NULL), *t, *bad;
    parley_jwt_header_t  hdr;
    parley_jwt_err_t     err;

    t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    bad = strdup(t);
    *strrchr(bad, '.') = '\0'; /* header.payload */
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    free(bad);
    cr_assert(asprintf(&bad, "%s.AAAA", t) > 0);
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    cr_assert_eq(parley_jwt_peek(bad, strlen(bad), &hdr, &err),
                 PARLEY_JWT_ERR_MALFORMED);
    free(bad);
    cr_assert(asprintf(&bad, "%s.AAAA.AAAA", t) > 0);
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    free(bad);
    cr_assert(asprintf(&bad, "%s.", t) > 0);
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    free(bad);
    expect("..", ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    expect("", ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    expect("abc", ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED);
    bad = strdup(t);
    memmove(strchr(bad, '.') + 1, strrchr(bad, '.'), strlen(strrchr(bad, '.')) + 1);
    expect(bad, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_MALFORMED); /* h..s */
    free(bad);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, oversize_token_and_the_exact_limit)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    json_t              *cl;
    char                *filler, *out = malloc(PARLEY_JWT_MAX_LEN + 100);
    size_t               flen, n = 0;
    parley_jwt_err_t     err;
    parley_jwt_status_t  st;
    int                  hit = 0;

    cr_assert_not_null(out);
    filler = malloc(PARLEY_JWT_MAX_LEN);
    for (flen = 5900; flen < 6100 && !hit; flen++) {
        memset(filler, 'x', flen);
        filler[flen] = '\0';
        cl = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", ISSUER, "aud",
                       "tenant-1", "sub", "user-1", "iat", (json_int_t) NOW,
                       "exp", (json_int_t) NOW + 60, "pad", filler);
        st = parley_jwt_sign_hs256(NULL, cl, SECRET, SECRET_LEN, out,
                                   PARLEY_JWT_MAX_LEN + 100, &n, &err);
        json_decref(cl);
        if (st == PARLEY_JWT_OK && n == PARLEY_JWT_MAX_LEN) {
            hit = 1;
            expect(out, ks, PARLEY_JWT_HS256, PARLEY_JWT_OK);
        } else if (st == PARLEY_JWT_ERR_TOO_LARGE) {
            break;
        }
    }
    cr_assert(hit, "no filler length gives exactly %d bytes", PARLEY_JWT_MAX_LEN);

    /* one more byte of filler: the signer refuses */
    memset(filler, 'x', flen);
    filler[flen] = '\0';
    cl = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", ISSUER, "aud",
                   "tenant-1", "sub", "user-1", "iat", (json_int_t) NOW, "exp",
                   (json_int_t) NOW + 60, "pad", filler);
    cr_assert_eq(parley_jwt_sign_hs256(NULL, cl, SECRET, SECRET_LEN, out,
                                       PARLEY_JWT_MAX_LEN + 100, &n, &err),
                 PARLEY_JWT_ERR_TOO_LARGE);
    json_decref(cl);

    /* and the verifier refuses 8193 bytes before looking at them */
    memset(out, 'A', PARLEY_JWT_MAX_LEN + 1);
    out[PARLEY_JWT_MAX_LEN + 1] = '\0';
    expect(out, ks, PARLEY_JWT_HS256, PARLEY_JWT_ERR_TOO_LARGE);

    free(filler);
    free(out);
    parley_jwt_keyset_free(ks);
}

Test(jwt, duplicate_json_members)
{
    char *cl = claims(NULL), *dup_sub, *dup_esc;

    expect_hs("{\"alg\":\"HS256\",\"alg\":\"none\"}", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\",\"\\u0061lg\":\"HS256\"}", cl,
              PARLEY_JWT_ERR_MALFORMED);
    dup_sub = claims(",\"sub\":\"admin\"");
    expect_hs(HS_HEADER, dup_sub, PARLEY_JWT_ERR_MALFORMED);
    dup_esc = claims(",\"\\u0073ub\":\"admin\"");
    expect_hs(HS_HEADER, dup_esc, PARLEY_JWT_ERR_MALFORMED);
    free(dup_sub);
    free(dup_esc);
    free(cl);
}

Test(jwt, header_and_payload_must_be_json_objects)
{
    char *cl = claims(NULL);

    expect_hs("[\"HS256\"]", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("\"HS256\"", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("1", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("null", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\"", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\"} x", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\",\"x\":[[[[[[1]]]]]]}", cl,
              PARLEY_JWT_ERR_MALFORMED);
    expect_hs(HS_HEADER, "[]", PARLEY_JWT_ERR_MALFORMED);
    expect_hs(HS_HEADER, "\"sub\"", PARLEY_JWT_ERR_MALFORMED);
    expect_hs(HS_HEADER, "{\"sub\":\"a\"", PARLEY_JWT_ERR_MALFORMED);
    expect_hs(HS_HEADER, "{\"sub\":\"\xff\"}", PARLEY_JWT_ERR_MALFORMED);
    free(cl);
}

Test(jwt, claims_nesting_is_bounded)
{
    char  *deep = malloc(200), *cl;
    size_t i;

    for (i = 0; i < 40; i++) {
        deep[i] = '[';
    }
    for (i = 40; i < 80; i++) {
        deep[i] = ']';
    }
    deep[80] = '\0';
    cl = claims(NULL);
    cl[strlen(cl) - 1] = '\0';
    {
        char *doc;
        cr_assert(asprintf(&doc, "%s,\"x\":%s}", cl, deep) > 0);
        expect_hs(HS_HEADER, doc, PARLEY_JWT_ERR_MALFORMED);
        free(doc);
        deep[20] = '\0';
        memset(deep, '[', 20);
        cr_assert(asprintf(&doc, "%s,\"x\":%s%s}", cl, deep,
                           "]]]]]]]]]]]]]]]]]]]]") > 0);
        expect_hs(HS_HEADER, doc, PARLEY_JWT_OK);
        free(doc);
    }
    free(cl);
    free(deep);
}

Test(jwt, rejected_header_parameters)
{
    static const char *params[] = {
        "\"crit\":[\"exp\"]", "\"jku\":\"https://evil/jwks\"",
        "\"x5u\":\"https://evil/cert\"", "\"jwk\":{\"kty\":\"oct\",\"k\":\"AA\"}",
        "\"x5c\":[\"MII\"]", "\"cty\":\"JWT\"", "\"zip\":\"DEF\"",
        "\"enc\":\"A128GCM\"", "\"b64\":false",
    };
    char                *cl = claims(NULL), *hj;
    parley_jwt_header_t  hdr;
    parley_jwt_err_t     err;
    size_t               i;

    for (i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        cr_assert(asprintf(&hj, "{\"alg\":\"HS256\",%s}", params[i]) > 0);
        expect_hs(hj, cl, PARLEY_JWT_ERR_HEADER_REJECTED);
        {
            char *t = make_token(hj, cl, PARLEY_JWT_HS256, NULL);
            cr_assert_eq(parley_jwt_peek(t, strlen(t), &hdr, &err),
                         PARLEY_JWT_ERR_HEADER_REJECTED);
            cr_assert_str_eq(parley_jwt_status_name(err.status),
                             "token_header_rejected");
            free(t);
        }
        free(hj);
    }
    free(cl);
}

Test(jwt, kid_must_be_a_bounded_printable_string)
{
    char  *cl = claims(NULL), *hj, kid[PARLEY_JWT_KID_MAX + 2];

    expect_hs("{\"alg\":\"HS256\",\"kid\":5}", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\",\"kid\":\"\"}", cl, PARLEY_JWT_ERR_MALFORMED);
    expect_hs("{\"alg\":\"HS256\",\"kid\":\"a\\nb\"}", cl, PARLEY_JWT_ERR_MALFORMED);
    memset(kid, 'k', sizeof(kid) - 1);
    kid[sizeof(kid) - 1] = '\0';
    cr_assert(asprintf(&hj, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid) > 0);
    expect_hs(hj, cl, PARLEY_JWT_ERR_MALFORMED);
    free(hj);
    kid[PARLEY_JWT_KID_MAX] = '\0'; /* exactly the maximum: fine */
    cr_assert(asprintf(&hj, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid) > 0);
    expect_hs(hj, cl, PARLEY_JWT_OK);
    free(hj);
    free(cl);
}

Test(jwt, peek_reads_alg_and_kid_without_keys)
{
    EVP_PKEY           *k = gen_ec("P-256");
    char               *cl = claims(NULL), *t;
    parley_jwt_header_t hdr;
    parley_jwt_err_t    err;

    t = make_token("{\"alg\":\"ES256\",\"kid\":\"idp-7\"}", cl, PARLEY_JWT_ES256, k);
    cr_assert_eq(parley_jwt_peek(t, strlen(t), &hdr, &err), PARLEY_JWT_OK, "%s",
                 err.message);
    cr_assert_eq(hdr.alg, PARLEY_JWT_ES256);
    cr_assert(hdr.has_kid);
    cr_assert_str_eq(hdr.kid, "idp-7");
    cr_assert_eq(hdr.kid_len, 5);
    /* the signature is not checked by peek */
    t[strlen(t) - 5] = t[strlen(t) - 5] == 'A' ? 'B' : 'A';
    cr_assert_eq(parley_jwt_peek(t, strlen(t), &hdr, &err), PARLEY_JWT_OK);
    free(t);

    t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    cr_assert_eq(parley_jwt_peek(t, strlen(t), &hdr, &err), PARLEY_JWT_OK);
    cr_assert_eq(hdr.alg, PARLEY_JWT_HS256);
    cr_assert(!hdr.has_kid);
    cr_assert_str_eq(hdr.kid, "");
    free(t);

    cr_assert_eq(parley_jwt_peek("x.y", 3, &hdr, &err), PARLEY_JWT_ERR_MALFORMED);
    cr_assert_eq(hdr.alg, PARLEY_JWT_ALG_UNKNOWN);
    free(cl);
    EVP_PKEY_free(k);
}

/* ------------------------------------------------------------------------ */
/* claims */

static char *times_claims(const char *times)
{
    char *out;

    cr_assert(asprintf(&out,
                       "{\"iss\":\"" ISSUER "\",\"aud\":\"tenant-1\","
                       "\"sub\":\"user-1\"%s}",
                       times) > 0);
    return out;
}

static void expect_times(const char *times, int64_t leeway,
                         parley_jwt_status_t want)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *cl = times_claims(times);
    char                *t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    parley_jwt_policy_t  p = policy(PARLEY_JWT_HS256);

    p.leeway = leeway;
    p.required = PARLEY_JWT_CLAIM_SUB;
    expect_pol(t, ks, &p, want);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, expiry_and_its_boundary)
{
    /* valid while now < exp + leeway (RFC 7519 4.1.4) */
    expect_times(",\"exp\":1699999900", 60, PARLEY_JWT_ERR_EXPIRED);
    expect_times(",\"exp\":1699999940", 60, PARLEY_JWT_ERR_EXPIRED); /* == */
    expect_times(",\"exp\":1699999941", 60, PARLEY_JWT_OK);
    expect_times(",\"exp\":1700000000", 0, PARLEY_JWT_ERR_EXPIRED);
    expect_times(",\"exp\":1700000001", 0, PARLEY_JWT_OK);
    expect_times(",\"exp\":1700000000.5", 0, PARLEY_JWT_ERR_EXPIRED);
    expect_times(",\"exp\":1700000001.0", 0, PARLEY_JWT_OK);
}

Test(jwt, not_before_and_its_boundary)
{
    /* valid once now >= nbf - leeway (RFC 7519 4.1.5) */
    expect_times(",\"exp\":1700003600,\"nbf\":1700000060", 60, PARLEY_JWT_OK);
    expect_times(",\"exp\":1700003600,\"nbf\":1700000061", 60,
                 PARLEY_JWT_ERR_NOT_YET_VALID);
    expect_times(",\"exp\":1700003600,\"nbf\":1700000000", 0, PARLEY_JWT_OK);
    expect_times(",\"exp\":1700003600,\"nbf\":1700000001", 0,
                 PARLEY_JWT_ERR_NOT_YET_VALID);
    /* issued in the future */
    expect_times(",\"exp\":1700003600,\"iat\":1700000060", 60, PARLEY_JWT_OK);
    expect_times(",\"exp\":1700003600,\"iat\":1700000061", 60,
                 PARLEY_JWT_ERR_NOT_YET_VALID);
}

Test(jwt, numeric_dates_must_be_numbers_in_range)
{
    expect_times(",\"exp\":\"1700003600\"", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":-1", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":9007199254740992", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":1e300", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":true", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":null", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":1700003600,\"nbf\":{}", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_times(",\"exp\":1700003600,\"iat\":[1]", 0, PARLEY_JWT_ERR_CLAIMS_INVALID);
    /* larger than any integer jansson holds: not JSON we accept */
    expect_times(",\"exp\":99999999999999999999999", 0, PARLEY_JWT_ERR_MALFORMED);
}

Test(jwt, exp_required_by_default)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *cl = times_claims("");
    char                *t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    parley_jwt_policy_t  p = policy(PARLEY_JWT_HS256);

    expect_pol(t, ks, &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    p.required &= ~PARLEY_JWT_CLAIM_EXP;
    expect_pol(t, ks, &p, PARLEY_JWT_OK);
    /* but a bounded lifetime needs an exp */
    p.max_lifetime = 3600;
    expect_pol(t, ks, &p, PARLEY_JWT_ERR_LIFETIME_TOO_LONG);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, max_lifetime)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    parley_jwt_policy_t  p = policy(PARLEY_JWT_HS256);
    char                *cl, *t;
    size_t               i;
    static const struct {
        const char         *times;
        parley_jwt_status_t want;
    } cases[] = {
        { ",\"iat\":1700000000,\"exp\":1700003600", PARLEY_JWT_OK },
        { ",\"iat\":1700000000,\"exp\":1700003601", PARLEY_JWT_ERR_LIFETIME_TOO_LONG },
        /* iat long ago, exp near: exp - iat too long */
        { ",\"iat\":1600000000,\"exp\":1700000100", PARLEY_JWT_ERR_LIFETIME_TOO_LONG },
        /* no iat: exp - now bounded by lifetime + leeway */
        { ",\"exp\":1700003660", PARLEY_JWT_OK },
        { ",\"exp\":1700003661", PARLEY_JWT_ERR_LIFETIME_TOO_LONG },
        /* iat in the future within leeway, exp = iat + lifetime: fine */
        { ",\"iat\":1700000030,\"exp\":1700003630", PARLEY_JWT_OK },
    };

    p.max_lifetime = 3600;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cl = times_claims(cases[i].times);
        t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
        expect_pol(t, ks, &p, cases[i].want);
        free(t);
        free(cl);
    }
    parley_jwt_keyset_free(ks);
}

static void expect_claims(const char *json, const parley_jwt_policy_t *p,
                          parley_jwt_status_t want)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    char                *t = make_token(HS_HEADER, json, PARLEY_JWT_HS256, NULL);

    expect_pol(t, ks, p, want);
    free(t);
    parley_jwt_keyset_free(ks);
}

Test(jwt, issuer)
{
    parley_jwt_policy_t p = policy(PARLEY_JWT_HS256);
    char *cl = claims(NULL);

    expect_claims(cl, &p, PARLEY_JWT_OK);
    p.issuer = "https://idp.example/";
    expect_claims(cl, &p, PARLEY_JWT_ERR_ISSUER_MISMATCH);
    p.issuer = "https://idp.exampl";
    expect_claims(cl, &p, PARLEY_JWT_ERR_ISSUER_MISMATCH);
    p.issuer = "HTTPS://IDP.EXAMPLE";
    expect_claims(cl, &p, PARLEY_JWT_ERR_ISSUER_MISMATCH);
    p.issuer = ISSUER;
    expect_claims("{\"aud\":\"tenant-1\",\"sub\":\"u\",\"exp\":1700003600}", &p,
                  PARLEY_JWT_ERR_ISSUER_MISMATCH);
    expect_claims("{\"iss\":7,\"aud\":\"tenant-1\",\"sub\":\"u\",\"exp\":1700003600}",
                  &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    /* no issuer expected: any iss is accepted and returned */
    p.issuer = NULL;
    expect_claims("{\"iss\":\"x\",\"aud\":\"tenant-1\",\"sub\":\"u\","
                  "\"exp\":1700003600}", &p, PARLEY_JWT_OK);
    free(cl);
}

Test(jwt, audience_string_or_array)
{
    parley_jwt_policy_t p = policy(PARLEY_JWT_HS256);
    parley_jwt_keyset_t *ks = keyset_hmac();
    parley_jwt_claims_t c;
    parley_jwt_err_t    err;
    const char         *only[] = { "tenant-2" };
    char               *t;

#define AUDC(aud) "{\"iss\":\"" ISSUER "\",\"sub\":\"u\",\"exp\":1700003600" aud "}"
    expect_claims(AUDC(",\"aud\":\"tenant-1\""), &p, PARLEY_JWT_OK);
    expect_claims(AUDC(",\"aud\":\"tenant-2\""), &p, PARLEY_JWT_ERR_AUDIENCE_MISMATCH);
    expect_claims(AUDC(",\"aud\":\"TENANT-1\""), &p, PARLEY_JWT_ERR_AUDIENCE_MISMATCH);
    expect_claims(AUDC(""), &p, PARLEY_JWT_ERR_AUDIENCE_MISMATCH);
    expect_claims(AUDC(",\"aud\":[\"x\",\"y\"]"), &p, PARLEY_JWT_ERR_AUDIENCE_MISMATCH);
    expect_claims(AUDC(",\"aud\":[]"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(AUDC(",\"aud\":[\"tenant-1\",3]"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(AUDC(",\"aud\":3"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(AUDC(",\"aud\":[\"\"]"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);

    /* an array whose second value matches the policy's second audience */
    t = make_token(HS_HEADER, AUDC(",\"aud\":[\"other\",\"tenant-9\"]"),
                   PARLEY_JWT_HS256, NULL);
    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, &p, &c, &err), PARLEY_JWT_OK,
                 "%s", err.message);
    cr_assert_str_eq(c.aud, "tenant-9");
    cr_assert_eq(c.aud_len, 8);
    parley_jwt_claims_free(&c);
    free(t);

    /* a policy without audiences refuses tokens that carry one */
    p.naudiences = 0;
    p.audiences = NULL;
    expect_claims(AUDC(",\"aud\":\"tenant-1\""), &p, PARLEY_JWT_ERR_AUDIENCE_MISMATCH);
    expect_claims(AUDC(""), &p, PARLEY_JWT_OK);
    p.audiences = only;
    p.naudiences = 1;
    expect_claims(AUDC(",\"aud\":[\"tenant-1\",\"tenant-2\"]"), &p, PARLEY_JWT_OK);
#undef AUDC
    parley_jwt_keyset_free(ks);
}

Test(jwt, sub_rules)
{
    parley_jwt_policy_t p = policy(PARLEY_JWT_HS256);
    char                sub[PARLEY_JWT_SUB_MAX + 2], *cl;

#define SUBC(s) "{\"iss\":\"" ISSUER "\",\"aud\":\"tenant-1\",\"exp\":1700003600" s "}"
    expect_claims(SUBC(",\"sub\":42"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(SUBC(",\"sub\":[\"a\"]"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(SUBC(",\"sub\":\"\""), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(SUBC(",\"sub\":\"a\\u0001b\""), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    expect_claims(SUBC(",\"sub\":\"a\\u0000b\""), &p, PARLEY_JWT_ERR_MALFORMED);
    expect_claims(SUBC(",\"sub\":\"\\ud800\""), &p, PARLEY_JWT_ERR_MALFORMED);
    expect_claims(SUBC(",\"sub\":\"caf\xc3\xa9\""), &p, PARLEY_JWT_OK);
    /* missing: required by default, optional when the policy says so */
    expect_claims(SUBC(""), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    p.required &= ~PARLEY_JWT_CLAIM_SUB;
    expect_claims(SUBC(""), &p, PARLEY_JWT_OK);
    expect_claims(SUBC(",\"sub\":42"), &p, PARLEY_JWT_ERR_CLAIMS_INVALID);

    memset(sub, 'u', sizeof(sub) - 1);
    sub[sizeof(sub) - 1] = '\0'; /* 129 bytes */
    cr_assert(asprintf(&cl, SUBC(",\"sub\":\"%s\""), sub) > 0);
    expect_claims(cl, &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    free(cl);
    sub[PARLEY_JWT_SUB_MAX] = '\0'; /* 128 bytes */
    cr_assert(asprintf(&cl, SUBC(",\"sub\":\"%s\""), sub) > 0);
    expect_claims(cl, &p, PARLEY_JWT_OK);
    free(cl);
#undef SUBC
}

Test(jwt, other_string_claims_and_custom_claims)
{
    parley_jwt_policy_t  p = policy(PARLEY_JWT_HS256);
    parley_jwt_keyset_t *ks = keyset_hmac();
    parley_jwt_claims_t  c;
    parley_jwt_err_t     err;
    json_t              *kept;
    char                *cl, *t;

    cl = claims(",\"jti\":\"j-1\",\"tid\":\"tenant-1\",\"nbf\":1699999000,"
                "\"roles\":[\"mod\"],\"org\":{\"id\":7}");
    t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    p.required |= PARLEY_JWT_CLAIM_JTI | PARLEY_JWT_CLAIM_TID;
    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, &p, &c, &err), PARLEY_JWT_OK,
                 "%s", err.message);
    cr_assert_str_eq(c.jti, "j-1");
    cr_assert_str_eq(c.tid, "tenant-1");
    cr_assert_eq(c.nbf, 1699999000);
    cr_assert_eq(c.iat, NOW - 10);
    cr_assert_eq(c.present,
                 PARLEY_JWT_CLAIM_EXP | PARLEY_JWT_CLAIM_NBF | PARLEY_JWT_CLAIM_IAT
                 | PARLEY_JWT_CLAIM_SUB | PARLEY_JWT_CLAIM_ISS
                 | PARLEY_JWT_CLAIM_AUD | PARLEY_JWT_CLAIM_JTI
                 | PARLEY_JWT_CLAIM_TID);
    kept = json_incref(c.json);
    parley_jwt_claims_free(&c);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(kept, "org"),
                                                    "id")),
                 7);
    json_decref(kept);
    free(t);
    free(cl);

    cl = claims(",\"tid\":17");
    expect_claims(cl, &p, PARLEY_JWT_ERR_CLAIMS_INVALID);
    free(cl);
    cl = claims(",\"tid\":\"t\"");
    expect_claims(cl, &p, PARLEY_JWT_ERR_CLAIMS_INVALID); /* jti missing */
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, invalid_policies_and_arguments)
{
    parley_jwt_keyset_t *ks = keyset_hmac();
    parley_jwt_policy_t  p = policy(PARLEY_JWT_HS256);
    parley_jwt_claims_t  c;
    parley_jwt_err_t     err;
    char                *cl = claims(NULL);
    char                *t = make_token(HS_HEADER, cl, PARLEY_JWT_HS256, NULL);
    const char          *nulls[] = { NULL };

    p.leeway = -1;
    expect_pol(t, ks, &p, PARLEY_JWT_ERR_ARGUMENT);
    p.leeway = PARLEY_JWT_LEEWAY_MAX + 1;
    expect_pol(t, ks, &p, PARLEY_JWT_ERR_ARGUMENT);
    p = policy(PARLEY_JWT_HS256);
    p.now = -5;
    expect_pol(t, ks, &p, PARLEY_JWT_ERR_ARGUMENT);
    p = policy(PARLEY_JWT_HS256);
    p.audiences = nulls;
    p.naudiences = 1;
    expect_pol(t, ks, &p, PARLEY_JWT_ERR_ARGUMENT);
    p = policy(PARLEY_JWT_HS256);
    cr_assert_eq(parley_jwt_verify(t, strlen(t), NULL, &p, &c, &err),
                 PARLEY_JWT_ERR_ARGUMENT);
    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, NULL, &c, &err),
                 PARLEY_JWT_ERR_ARGUMENT);
    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, &p, NULL, NULL),
                 PARLEY_JWT_ERR_ARGUMENT);
    /* err may be NULL */
    cr_assert_eq(parley_jwt_verify(t, strlen(t), ks, &p, &c, NULL), PARLEY_JWT_OK);
    parley_jwt_claims_free(&c);
    parley_jwt_claims_free(NULL);
    free(t);
    free(cl);
    parley_jwt_keyset_free(ks);
}

Test(jwt, status_names_are_stable_and_distinct)
{
    static const struct {
        parley_jwt_status_t status;
        const char         *name;
    } names[] = {
        { PARLEY_JWT_OK, "ok" },
        { PARLEY_JWT_ERR_MALFORMED, "token_malformed" },
        { PARLEY_JWT_ERR_TOO_LARGE, "token_too_large" },
        { PARLEY_JWT_ERR_HEADER_REJECTED, "token_header_rejected" },
        { PARLEY_JWT_ERR_ALG_NOT_ALLOWED, "token_algorithm_not_allowed" },
        { PARLEY_JWT_ERR_KEY_UNKNOWN, "token_key_unknown" },
        { PARLEY_JWT_ERR_SIGNATURE_INVALID, "token_signature_invalid" },
        { PARLEY_JWT_ERR_EXPIRED, "token_expired" },
        { PARLEY_JWT_ERR_NOT_YET_VALID, "token_not_yet_valid" },
        { PARLEY_JWT_ERR_ISSUER_MISMATCH, "token_issuer_mismatch" },
        { PARLEY_JWT_ERR_AUDIENCE_MISMATCH, "token_audience_mismatch" },
        { PARLEY_JWT_ERR_LIFETIME_TOO_LONG, "token_lifetime_too_long" },
        { PARLEY_JWT_ERR_CLAIMS_INVALID, "token_claims_invalid" },
        { PARLEY_JWT_ERR_KEY_INVALID, "key_invalid" },
        { PARLEY_JWT_ERR_KEY_UNSUPPORTED, "key_unsupported" },
        { PARLEY_JWT_ERR_KEY_TOO_WEAK, "key_too_weak" },
        { PARLEY_JWT_ERR_KEY_DUPLICATE, "key_duplicate_kid" },
        { PARLEY_JWT_ERR_KEYSET_FULL, "keyset_full" },
        { PARLEY_JWT_ERR_ARGUMENT, "invalid_argument" },
        { PARLEY_JWT_ERR_BUFFER_TOO_SMALL, "buffer_too_small" },
        { PARLEY_JWT_ERR_INTERNAL, "internal_error" },
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        cr_assert_str_eq(parley_jwt_status_name(names[i].status), names[i].name);
    }
    cr_assert_eq(i, (size_t) PARLEY_JWT_ERR_INTERNAL + 1, "every status listed");
    cr_assert_str_eq(parley_jwt_status_name((parley_jwt_status_t) 999), "unknown");
    cr_assert_str_eq(parley_jwt_alg_name(PARLEY_JWT_ES256), "ES256");
    cr_assert_str_eq(parley_jwt_alg_name(PARLEY_JWT_ALG_UNKNOWN), "unknown");
}
