/*
 * JWT verification and HS256 signing; the contract is in parley_jwt.h, the
 * reasons in docs/tokens.md.
 *
 * The order of work in parley_jwt_verify is deliberate: the shape and the
 * header are checked first (they choose the key), the signature next, and
 * the claims are parsed only once the signature holds, so that no claim is
 * ever looked at before it is authenticated and unauthenticated input
 * reaches the JSON parser only through the small header.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "parley_base64url.h"
#include "parley_json.h"
#include "parley_jwt.h"

#define HS256_LEN        32
#define ES256_COORD_LEN  32
#define ES256_SIG_LEN    64
#define HEADER_DEPTH_MAX 4  /* a JOSE header is flat; a little slack */
#define CLAIMS_DEPTH_MAX 32 /* custom claims may nest, not without end */
#define AUDIENCES_MAX    64 /* accepted audiences in one policy */

typedef struct {
    parley_jwt_alg_t alg;
    int              has_kid;
    size_t           kid_len;
    char             kid[PARLEY_JWT_KID_MAX + 1];
    EVP_PKEY        *pkey;       /* RS256, ES256 */
    unsigned char   *secret;     /* HS256 */
    size_t           secret_len;
} jwt_key_t;

struct parley_jwt_keyset {
    size_t    n;
    jwt_key_t keys[PARLEY_JWT_KEYSET_MAX];
};

typedef struct {
    const char *p;
    size_t      len;
} segment_t;

static const char *const status_names[] = {
    [PARLEY_JWT_OK] = "ok",
    [PARLEY_JWT_ERR_MALFORMED] = "token_malformed",
    [PARLEY_JWT_ERR_TOO_LARGE] = "token_too_large",
    [PARLEY_JWT_ERR_HEADER_REJECTED] = "token_header_rejected",
    [PARLEY_JWT_ERR_ALG_NOT_ALLOWED] = "token_algorithm_not_allowed",
    [PARLEY_JWT_ERR_KEY_UNKNOWN] = "token_key_unknown",
    [PARLEY_JWT_ERR_SIGNATURE_INVALID] = "token_signature_invalid",
    [PARLEY_JWT_ERR_EXPIRED] = "token_expired",
    [PARLEY_JWT_ERR_NOT_YET_VALID] = "token_not_yet_valid",
    [PARLEY_JWT_ERR_ISSUER_MISMATCH] = "token_issuer_mismatch",
    [PARLEY_JWT_ERR_AUDIENCE_MISMATCH] = "token_audience_mismatch",
    [PARLEY_JWT_ERR_LIFETIME_TOO_LONG] = "token_lifetime_too_long",
    [PARLEY_JWT_ERR_CLAIMS_INVALID] = "token_claims_invalid",
    [PARLEY_JWT_ERR_KEY_INVALID] = "key_invalid",
    [PARLEY_JWT_ERR_KEY_UNSUPPORTED] = "key_unsupported",
    [PARLEY_JWT_ERR_KEY_TOO_WEAK] = "key_too_weak",
    [PARLEY_JWT_ERR_KEY_DUPLICATE] = "key_duplicate_kid",
    [PARLEY_JWT_ERR_KEYSET_FULL] = "keyset_full",
    [PARLEY_JWT_ERR_ARGUMENT] = "invalid_argument",
    [PARLEY_JWT_ERR_BUFFER_TOO_SMALL] = "buffer_too_small",
    [PARLEY_JWT_ERR_INTERNAL] = "internal_error",
};

/*
 * Header parameters that are refused outright.  crit: we implement no
 * extension, and RFC 7515 4.1.11 says a recipient that does not understand
 * a listed one must reject the token.  jku, x5u: would make us fetch keys
 * named by the attacker.  jwk, x5c: would let the token carry its own key.
 * cty: nested JWTs are not supported.  zip, enc: JWE only.  b64: RFC 7797
 * unencoded payloads change what is signed.
 */
static const char *const rejected_params[] = {
    "crit", "jku", "jwk", "x5u", "x5c", "cty", "zip", "enc", "b64",
};

/* JWK members that only a private key has: such a JWKS is a leaked secret */
static const char *const private_members[] = {
    "d", "p", "q", "dp", "dq", "qi", "oth", "k",
};

static parley_jwt_status_t fail(parley_jwt_err_t *err,
                                parley_jwt_status_t status, const char *fmt,
                                ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------ */
/* small helpers */

/*
 * Records status and message in err (when given) and empties the OpenSSL
 * error queue, which would otherwise surface later in an unrelated nginx
 * TLS error.  Returns status.
 */
static parley_jwt_status_t fail(parley_jwt_err_t *err,
                                parley_jwt_status_t status, const char *fmt,
                                ...)
{
    va_list ap;

    ERR_clear_error();

    if (err != NULL) {
        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }

    return status;
}

/* success: also drops what libcrypto queued along the way (keys tried) */
static void ok(parley_jwt_err_t *err)
{
    ERR_clear_error();
    if (err != NULL) {
        err->status = PARLEY_JWT_OK;
        err->message[0] = '\0';
    }
}

const char *parley_jwt_status_name(parley_jwt_status_t status)
{
    if ((unsigned) status >= sizeof(status_names) / sizeof(status_names[0])
        || status_names[status] == NULL)
    {
        return "unknown";
    }
    return status_names[status];
}

const char *parley_jwt_alg_name(parley_jwt_alg_t alg)
{
    switch (alg) {
    case PARLEY_JWT_HS256:
        return "HS256";
    case PARLEY_JWT_RS256:
        return "RS256";
    case PARLEY_JWT_ES256:
        return "ES256";
    default:
        return "unknown";
    }
}

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* s[0..len) equals the NUL-terminated lit, ASCII case-insensitively */
static int equal_nocase(const char *s, size_t len, const char *lit)
{
    size_t i;

    if (strlen(lit) != len) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (ascii_lower((unsigned char) s[i])
            != ascii_lower((unsigned char) lit[i]))
        {
            return 0;
        }
    }
    return 1;
}

/* s[0..len) contains the NUL-terminated lit (memmem is a GNU extension) */
static int contains(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit), i;

    for (i = 0; n <= len && i <= len - n; i++) {
        if (memcmp(s + i, lit, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static int equal_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * 1 when s[0..len) is 1..max bytes of valid UTF-8 without C0 controls or
 * DEL: the rule for kids and string claims, which end up in logs, SQL
 * parameters and Redis keys.
 */
static int text_valid(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *) s;
    size_t               i = 0, seq;

    if (len == 0 || len > max) {
        return 0;
    }
    while (i < len) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            return 0;
        }
        seq = parley_utf8_sequence(u + i, len - i);
        if (seq == 0) {
            return 0;
        }
        i += seq;
    }
    return 1;
}

/*
 * 1 when the JSON text nests arrays and objects at most max deep.  Run before
 * json_loadb so that hostile nesting costs a linear scan instead of deep
 * recursion in the parser.  Malformed text is left to the parser.
 */
static int json_depth_ok(const unsigned char *s, size_t len, unsigned max)
{
    unsigned depth = 0;
    int      in_string = 0;
    size_t   i;

    for (i = 0; i < len; i++) {
        if (in_string) {
            if (s[i] == '\\') {
                i++;
            } else if (s[i] == '"') {
                in_string = 0;
            }
        } else if (s[i] == '"') {
            in_string = 1;
        } else if (s[i] == '{' || s[i] == '[') {
            if (++depth > max) {
                return 0;
            }
        } else if ((s[i] == '}' || s[i] == ']') && depth > 0) {
            depth--;
        }
    }
    return 1;
}

/* a JSON object from buf, or NULL; *position gets where parsing failed */
static json_t *load_object(const unsigned char *buf, size_t len,
                           unsigned max_depth, int *position)
{
    json_error_t jerr;
    json_t      *json;

    *position = -1;

    if (!json_depth_ok(buf, len, max_depth)) {
        return NULL;
    }

    json = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (json == NULL) {
        *position = jerr.position;
        return NULL;
    }
    if (!json_is_object(json)) {
        json_decref(json);
        return NULL;
    }
    return json;
}

static int kid_valid(const char *kid, size_t len)
{
    return text_valid(kid, len, PARLEY_JWT_KID_MAX);
}

/* 0 when secret obeys the rules of parley_jwt_keyset_add_hmac */
static parley_jwt_status_t secret_check(const unsigned char *secret,
                                        size_t len, parley_jwt_err_t *err)
{
    size_t i = 0;

    if (secret == NULL) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT, "no HMAC secret");
    }
    if (len < PARLEY_JWT_HMAC_MIN) {
        return fail(err, PARLEY_JWT_ERR_KEY_TOO_WEAK,
                    "HMAC secret has %zu bytes, at least %d required", len,
                    PARLEY_JWT_HMAC_MIN);
    }
    if (len > PARLEY_JWT_HMAC_MAX) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "HMAC secret has %zu bytes, at most %d allowed", len,
                    PARLEY_JWT_HMAC_MAX);
    }

    while (i < len && (secret[i] == ' ' || secret[i] == '\t'
                       || secret[i] == '\r' || secret[i] == '\n'))
    {
        i++;
    }
    /*
     * Narrow on purpose: derived or random binary secrets start with any
     * byte, '{' included, and must not be refused 1 time in 256.
     */
    if ((len - i >= 10 && memcmp(secret + i, "-----BEGIN", 10) == 0)
        || (i < len && secret[i] == '{'
            && contains((const char *) secret + i, len - i, "\"kty\"")))
    {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "HMAC secret looks like a PEM or JSON key document; a "
                    "public key must never serve as an HMAC secret");
    }
    return PARLEY_JWT_OK;
}

/* ------------------------------------------------------------------------ */
/* key sets */

parley_jwt_keyset_t *parley_jwt_keyset_new(void)
{
    return calloc(1, sizeof(parley_jwt_keyset_t));
}

static void key_clear(jwt_key_t *key)
{
    EVP_PKEY_free(key->pkey);
    if (key->secret != NULL) {
        OPENSSL_cleanse(key->secret, key->secret_len);
        free(key->secret);
    }
    memset(key, 0, sizeof(*key));
}

void parley_jwt_keyset_free(parley_jwt_keyset_t *ks)
{
    size_t i;

    if (ks == NULL) {
        return;
    }
    for (i = 0; i < ks->n; i++) {
        key_clear(&ks->keys[i]);
    }
    free(ks);
}

size_t parley_jwt_keyset_count(const parley_jwt_keyset_t *ks)
{
    return ks == NULL ? 0 : ks->n;
}

unsigned parley_jwt_keyset_algs(const parley_jwt_keyset_t *ks)
{
    unsigned algs = 0;
    size_t   i;

    for (i = 0; ks != NULL && i < ks->n; i++) {
        algs |= (unsigned) ks->keys[i].alg;
    }
    return algs;
}

/* the key with this kid in keys[0..n), or NULL */
static const jwt_key_t *find_kid(const jwt_key_t *keys, size_t n,
                                 const char *kid, size_t kid_len)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (keys[i].has_kid
            && equal_bytes(keys[i].kid, keys[i].kid_len, kid, kid_len))
        {
            return &keys[i];
        }
    }
    return NULL;
}

/* sets the kid of key from kid_or_null (a C string) after checking it */
static parley_jwt_status_t key_set_kid(jwt_key_t *key, const char *kid,
                                       size_t kid_len, parley_jwt_err_t *err)
{
    if (kid == NULL) {
        key->has_kid = 0;
        key->kid_len = 0;
        key->kid[0] = '\0';
        return PARLEY_JWT_OK;
    }
    if (!kid_valid(kid, kid_len)) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "kid must be 1 to %d bytes of UTF-8 without control "
                    "characters", PARLEY_JWT_KID_MAX);
    }
    memcpy(key->kid, kid, kid_len);
    key->kid[kid_len] = '\0';
    key->kid_len = kid_len;
    key->has_kid = 1;
    return PARLEY_JWT_OK;
}

/*
 * Appends keys[0..n) to ks, taking them over, or fails and clears them all:
 * the all-or-nothing step shared by the add_* functions.
 */
static parley_jwt_status_t keyset_append(parley_jwt_keyset_t *ks,
                                         jwt_key_t *keys, size_t n,
                                         parley_jwt_err_t *err)
{
    parley_jwt_status_t status = PARLEY_JWT_OK;
    size_t              i;

    if (n > PARLEY_JWT_KEYSET_MAX - ks->n) {
        status = fail(err, PARLEY_JWT_ERR_KEYSET_FULL,
                      "a key set holds at most %d keys",
                      PARLEY_JWT_KEYSET_MAX);
        goto out;
    }

    for (i = 0; i < n; i++) {
        if (keys[i].has_kid
            && (find_kid(ks->keys, ks->n, keys[i].kid, keys[i].kid_len)
                || find_kid(keys, i, keys[i].kid, keys[i].kid_len)))
        {
            status = fail(err, PARLEY_JWT_ERR_KEY_DUPLICATE,
                          "two keys share the kid \"%s\"", keys[i].kid);
            goto out;
        }
    }

    memcpy(&ks->keys[ks->n], keys, n * sizeof(jwt_key_t));
    ks->n += n;
    ok(err);
    return PARLEY_JWT_OK;

out:
    for (i = 0; i < n; i++) {
        key_clear(&keys[i]);
    }
    return status;
}

/*
 * Decides which algorithm a public key serves and checks it: RSA of allowed
 * size, or EC on the named curve P-256; and a public-key validity check
 * (for RSA OpenSSL's SP 800-56B checks, which include e >= 65537; for EC the
 * point on the curve, not at infinity, of the right order).
 */
static parley_jwt_status_t classify_pkey(EVP_PKEY *pkey, parley_jwt_alg_t *alg,
                                         const char *where,
                                         parley_jwt_err_t *err)
{
    EVP_PKEY_CTX *pctx;
    char          group[64];
    size_t        group_len = 0;
    int           bits, good;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        bits = EVP_PKEY_get_bits(pkey);
        if (bits < PARLEY_JWT_RSA_MIN_BITS) {
            return fail(err, PARLEY_JWT_ERR_KEY_TOO_WEAK,
                        "%sRSA key has %d bits, at least %d required", where,
                        bits, PARLEY_JWT_RSA_MIN_BITS);
        }
        if (bits > PARLEY_JWT_RSA_MAX_BITS) {
            return fail(err, PARLEY_JWT_ERR_KEY_UNSUPPORTED,
                        "%sRSA key has %d bits, at most %d supported", where,
                        bits, PARLEY_JWT_RSA_MAX_BITS);
        }
        *alg = PARLEY_JWT_RS256;
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        if (!EVP_PKEY_get_group_name(pkey, group, sizeof(group), &group_len)
            || OBJ_sn2nid(group) != NID_X9_62_prime256v1)
        {
            return fail(err, PARLEY_JWT_ERR_KEY_UNSUPPORTED,
                        "%sEC key is not on the named curve P-256 (ES256)",
                        where);
        }
        *alg = PARLEY_JWT_ES256;
    } else {
        return fail(err, PARLEY_JWT_ERR_KEY_UNSUPPORTED,
                    "%skey type is neither RSA (RS256) nor EC P-256 (ES256)",
                    where);
    }

    pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (pctx == NULL) {
        return fail(err, PARLEY_JWT_ERR_INTERNAL, "out of memory");
    }
    good = EVP_PKEY_public_check(pctx) == 1;
    EVP_PKEY_CTX_free(pctx);
    if (!good) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "%spublic key fails validation", where);
    }
    return PARLEY_JWT_OK;
}

/* a pass phrase callback that never asks: encrypted PEM simply fails */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) u;
    return 0;
}

static EVP_PKEY *pem_public_key(const char *pem, size_t len)
{
    EVP_PKEY *pkey;
    X509     *x509;
    BIO      *bio;

    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        return NULL;
    }
    pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (pkey != NULL) {
        return pkey;
    }

    ERR_clear_error();
    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        return NULL;
    }
    x509 = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (x509 == NULL) {
        return NULL;
    }
    pkey = X509_get_pubkey(x509);
    X509_free(x509);
    return pkey;
}

parley_jwt_status_t parley_jwt_keyset_add_pem(parley_jwt_keyset_t *ks,
                                              const char *kid_or_null,
                                              const char *pem, size_t len,
                                              parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    jwt_key_t           key;

    memset(&key, 0, sizeof(key));

    if (ks == NULL || pem == NULL || len == 0) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT, "no key set or no PEM");
    }
    if (len > PARLEY_JWT_KEYDOC_MAX) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "PEM document has %zu bytes, at most %d allowed", len,
                    PARLEY_JWT_KEYDOC_MAX);
    }
    status = key_set_kid(&key, kid_or_null,
                         kid_or_null ? strlen(kid_or_null) : 0, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    if (contains(pem, len, "PRIVATE KEY-----")) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "PEM document holds a private key; configure the public "
                    "key or certificate only");
    }

    key.pkey = pem_public_key(pem, len);
    if (key.pkey == NULL) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "no PUBLIC KEY or CERTIFICATE could be read from the "
                    "PEM document");
    }

    status = classify_pkey(key.pkey, &key.alg, "", err);
    if (status != PARLEY_JWT_OK) {
        key_clear(&key);
        return status;
    }

    return keyset_append(ks, &key, 1, err);
}

parley_jwt_status_t parley_jwt_keyset_add_hmac(parley_jwt_keyset_t *ks,
                                               const char *kid_or_null,
                                               const unsigned char *secret,
                                               size_t len,
                                               parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    jwt_key_t           key;

    memset(&key, 0, sizeof(key));

    if (ks == NULL) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT, "no key set");
    }
    status = secret_check(secret, len, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    status = key_set_kid(&key, kid_or_null,
                         kid_or_null ? strlen(kid_or_null) : 0, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }

    key.secret = malloc(len);
    if (key.secret == NULL) {
        return fail(err, PARLEY_JWT_ERR_INTERNAL, "out of memory");
    }
    memcpy(key.secret, secret, len);
    key.secret_len = len;
    key.alg = PARLEY_JWT_HS256;

    return keyset_append(ks, &key, 1, err);
}

/* ---- JWKS ---- */

/*
 * Decodes the base64url string member `name` of jwk into buf (cap bytes).
 * Returns 1 with *len set, or fails (key_invalid) naming the member.
 */
static parley_jwt_status_t jwk_bytes(json_t *jwk, const char *name,
                                     unsigned char *buf, size_t cap,
                                     size_t *len, size_t index,
                                     parley_jwt_err_t *err)
{
    json_t *v = json_object_get(jwk, name);

    if (!json_is_string(v) || json_string_length(v) == 0) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: \"%s\" must be a base64url string", index,
                    name);
    }
    switch (parley_base64url_decode(json_string_value(v),
                                    json_string_length(v), buf, cap, len))
    {
    case PARLEY_BASE64URL_OK:
        return PARLEY_JWT_OK;
    case PARLEY_BASE64URL_ENOSPC:
        return fail(err, PARLEY_JWT_ERR_KEY_UNSUPPORTED,
                    "keys[%zu]: \"%s\" is too long", index, name);
    default:
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: \"%s\" is not canonical unpadded base64url",
                    index, name);
    }
}

static parley_jwt_status_t pkey_from_params(const char *type,
                                            OSSL_PARAM *params,
                                            EVP_PKEY **pkey, size_t index,
                                            parley_jwt_err_t *err)
{
    EVP_PKEY_CTX *pctx;
    int           good;

    pctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (pctx == NULL) {
        return fail(err, PARLEY_JWT_ERR_INTERNAL, "out of memory");
    }
    good = EVP_PKEY_fromdata_init(pctx) == 1
           && EVP_PKEY_fromdata(pctx, pkey, EVP_PKEY_PUBLIC_KEY,
                                params) == 1;
    EVP_PKEY_CTX_free(pctx);
    if (!good) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: not a valid %s public key", index, type);
    }
    return PARLEY_JWT_OK;
}

static parley_jwt_status_t jwk_rsa(json_t *jwk, EVP_PKEY **pkey, size_t index,
                                   parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    /* one spare byte for a leading zero some encoders add */
    unsigned char       n[PARLEY_JWT_RSA_MAX_BITS / 8 + 1], e[8];
    size_t              n_len = 0, e_len = 0;
    OSSL_PARAM_BLD     *bld = NULL;
    OSSL_PARAM         *params = NULL;
    BIGNUM             *bn_n = NULL, *bn_e = NULL;

    status = jwk_bytes(jwk, "n", n, sizeof(n), &n_len, index, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    status = jwk_bytes(jwk, "e", e, sizeof(e), &e_len, index, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }

    bn_n = BN_bin2bn(n, (int) n_len, NULL);
    bn_e = BN_bin2bn(e, (int) e_len, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (bn_n == NULL || bn_e == NULL || bld == NULL
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
    {
        status = fail(err, PARLEY_JWT_ERR_INTERNAL, "out of memory");
    } else {
        status = pkey_from_params("RSA", params, pkey, index, err);
    }

    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return status;
}

static parley_jwt_status_t jwk_ec(json_t *jwk, EVP_PKEY **pkey, size_t index,
                                  parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    unsigned char       x[ES256_COORD_LEN + 1], y[ES256_COORD_LEN + 1];
    unsigned char       point[1 + 2 * ES256_COORD_LEN];
    size_t              x_len = 0, y_len = 0;
    char                group[] = "prime256v1";
    OSSL_PARAM          params[3];

    status = jwk_bytes(jwk, "x", x, sizeof(x), &x_len, index, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    status = jwk_bytes(jwk, "y", y, sizeof(y), &y_len, index, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    /* RFC 7518 6.2.1.2: the full coordinate length, leading zeros kept */
    if (x_len != ES256_COORD_LEN || y_len != ES256_COORD_LEN) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: P-256 \"x\" and \"y\" must be 32 bytes each",
                    index);
    }

    point[0] = 0x04; /* uncompressed */
    memcpy(point + 1, x, ES256_COORD_LEN);
    memcpy(point + 1 + ES256_COORD_LEN, y, ES256_COORD_LEN);

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  point, sizeof(point));
    params[2] = OSSL_PARAM_construct_end();

    return pkey_from_params("EC", params, pkey, index, err);
}

/*
 * Optional string member: 0 absent, 1 present (stored in *s, *len), or a
 * failure when present but not a string.
 */
static int jwk_string(json_t *jwk, const char *name, const char **s,
                      size_t *len)
{
    json_t *v = json_object_get(jwk, name);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v)) {
        return -1;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

/*
 * Reads one JWK into key.  PARLEY_JWT_OK with key->alg set: a key to add;
 * PARLEY_JWT_OK with key->alg unknown: a key to skip; otherwise the failure.
 */
static parley_jwt_status_t jwk_parse(json_t *jwk, size_t index, jwt_key_t *key,
                                     parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    parley_jwt_alg_t    alg;
    const char         *kty, *s, *kid = NULL;
    size_t              kty_len, s_len, kid_len = 0, i;
    json_t             *ops, *op;
    char                where[32];
    int                 r, is_rsa, verify;

    memset(key, 0, sizeof(*key));

    if (!json_is_object(jwk)) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu] is not an object", index);
    }

    if (jwk_string(jwk, "kty", &kty, &kty_len) != 1) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: \"kty\" must be a string", index);
    }

    r = jwk_string(jwk, "kid", &kid, &kid_len);
    if (r < 0 || (r == 1 && !kid_valid(kid, kid_len))) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: \"kid\" must be a string of 1 to %d bytes "
                    "without control characters", index, PARLEY_JWT_KID_MAX);
    }

    r = jwk_string(jwk, "use", &s, &s_len);
    if (r < 0) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: \"use\" must be a string", index);
    }
    if (r == 1 && !equal_bytes(s, s_len, "sig", 3)) {
        return PARLEY_JWT_OK; /* an encryption key: skip */
    }

    ops = json_object_get(jwk, "key_ops");
    if (ops != NULL) {
        if (!json_is_array(ops)) {
            return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                        "keys[%zu]: \"key_ops\" must be an array", index);
        }
        verify = 0;
        json_array_foreach(ops, i, op) {
            if (json_is_string(op)
                && equal_bytes(json_string_value(op), json_string_length(op),
                               "verify", 6))
            {
                verify = 1;
            }
        }
        if (!verify) {
            return PARLEY_JWT_OK;
        }
    }

    if (equal_bytes(kty, kty_len, "RSA", 3)) {
        is_rsa = 1;
        alg = PARLEY_JWT_RS256;
    } else if (equal_bytes(kty, kty_len, "EC", 2)) {
        is_rsa = 0;
        alg = PARLEY_JWT_ES256;
        if (jwk_string(jwk, "crv", &s, &s_len) != 1) {
            return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                        "keys[%zu]: EC key without a \"crv\" string", index);
        }
        if (!equal_bytes(s, s_len, "P-256", 5)) {
            return PARLEY_JWT_OK; /* P-384, P-521...: not for ES256 */
        }
    } else {
        return PARLEY_JWT_OK; /* oct, OKP, unknown: skip */
    }

    r = jwk_string(jwk, "alg", &s, &s_len);
    if (r < 0) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "keys[%zu]: \"alg\" must be a string", index);
    }
    if (r == 1 && !equal_bytes(s, s_len, parley_jwt_alg_name(alg), 5)) {
        return PARLEY_JWT_OK; /* RS384, PS256...: not ours */
    }

    for (i = 0; i < sizeof(private_members) / sizeof(private_members[0]); i++) {
        if (json_object_get(jwk, private_members[i]) != NULL) {
            return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                        "keys[%zu] holds private key material (\"%s\"); "
                        "configure the public JWKS only", index,
                        private_members[i]);
        }
    }

    status = is_rsa ? jwk_rsa(jwk, &key->pkey, index, err)
                    : jwk_ec(jwk, &key->pkey, index, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }

    snprintf(where, sizeof(where), "keys[%zu]: ", index);
    status = classify_pkey(key->pkey, &key->alg, where, err);
    if (status == PARLEY_JWT_OK && key->alg != alg) {
        status = fail(err, PARLEY_JWT_ERR_INTERNAL,
                      "keys[%zu]: key type changed while loading", index);
    }
    if (status == PARLEY_JWT_OK) {
        status = key_set_kid(key, kid, kid ? kid_len : 0, err);
    }
    if (status != PARLEY_JWT_OK) {
        key_clear(key);
    }
    return status;
}

parley_jwt_status_t parley_jwt_keyset_add_jwks(parley_jwt_keyset_t *ks,
                                               const char *json, size_t len,
                                               parley_jwt_err_t *err)
{
    parley_jwt_status_t status = PARLEY_JWT_OK;
    jwt_key_t           keys[PARLEY_JWT_KEYSET_MAX];
    json_t             *doc, *array, *jwk;
    size_t              n = 0, i, skipped = 0;
    int                 position;

    if (ks == NULL || json == NULL) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT, "no key set or no JWKS");
    }
    if (len > PARLEY_JWT_KEYDOC_MAX) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "JWKS has %zu bytes, at most %d allowed", len,
                    PARLEY_JWT_KEYDOC_MAX);
    }

    doc = load_object((const unsigned char *) json, len, CLAIMS_DEPTH_MAX,
                      &position);
    if (doc == NULL) {
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "JWKS is not a JSON object without duplicate members "
                    "(error at byte %d)", position);
    }

    array = json_object_get(doc, "keys");
    if (!json_is_array(array)) {
        json_decref(doc);
        return fail(err, PARLEY_JWT_ERR_KEY_INVALID,
                    "JWKS has no \"keys\" array");
    }
    if (json_array_size(array) > PARLEY_JWT_KEYSET_MAX) {
        json_decref(doc);
        return fail(err, PARLEY_JWT_ERR_KEYSET_FULL,
                    "JWKS has %zu keys, at most %d supported",
                    json_array_size(array), PARLEY_JWT_KEYSET_MAX);
    }

    json_array_foreach(array, i, jwk) {
        status = jwk_parse(jwk, i, &keys[n], err);
        if (status != PARLEY_JWT_OK) {
            break;
        }
        if (keys[n].alg == PARLEY_JWT_ALG_UNKNOWN) {
            skipped++;
        } else {
            n++;
        }
    }
    json_decref(doc);

    if (status != PARLEY_JWT_OK) {
        for (i = 0; i < n; i++) {
            key_clear(&keys[i]);
        }
        return status;
    }
    if (n == 0) {
        return fail(err, PARLEY_JWT_ERR_KEY_UNSUPPORTED,
                    "JWKS holds no usable signing key (%zu skipped: use, "
                    "key_ops, kty, crv or alg not RS256/ES256)", skipped);
    }

    return keyset_append(ks, keys, n, err);
}

/* ------------------------------------------------------------------------ */
/* verification */

void parley_jwt_policy_init(parley_jwt_policy_t *policy, unsigned algs,
                            int64_t now)
{
    memset(policy, 0, sizeof(*policy));
    policy->algs = algs;
    policy->now = now;
    policy->leeway = PARLEY_JWT_DEFAULT_LEEWAY;
    policy->required = PARLEY_JWT_CLAIM_EXP | PARLEY_JWT_CLAIM_SUB;
}

void parley_jwt_claims_free(parley_jwt_claims_t *claims)
{
    if (claims == NULL) {
        return;
    }
    json_decref(claims->json);
    memset(claims, 0, sizeof(*claims));
}

/*
 * Splits token into its three segments.  Length first, so that an oversize
 * token costs nothing more than its length check.
 */
static parley_jwt_status_t split(const char *token, size_t len,
                                 segment_t seg[3], parley_jwt_err_t *err)
{
    size_t i, start = 0, n = 0;

    memset(seg, 0, 3 * sizeof(segment_t));

    if (len > PARLEY_JWT_MAX_LEN) {
        return fail(err, PARLEY_JWT_ERR_TOO_LARGE,
                    "token has %zu bytes, at most %d allowed", len,
                    PARLEY_JWT_MAX_LEN);
    }
    if (token == NULL || len == 0) {
        return fail(err, PARLEY_JWT_ERR_MALFORMED, "empty token");
    }

    for (i = 0; i <= len; i++) {
        if (i == len || token[i] == '.') {
            if (n == 3) {
                return fail(err, PARLEY_JWT_ERR_MALFORMED,
                            "token has more than 3 segments (JWE and "
                            "detached forms are not accepted)");
            }
            seg[n].p = token + start;
            seg[n].len = i - start;
            n++;
            start = i + 1;
        }
    }
    if (n != 3) {
        return fail(err, PARLEY_JWT_ERR_MALFORMED,
                    "token has %zu segments, expected 3", n);
    }
    for (i = 0; i < 3; i++) {
        if (seg[i].len == 0) {
            return fail(err, PARLEY_JWT_ERR_MALFORMED,
                        "token segment %zu is empty", i + 1);
        }
    }
    return PARLEY_JWT_OK;
}

static parley_jwt_status_t decode(const segment_t *seg, unsigned char *buf,
                                  size_t cap, size_t *len, const char *what,
                                  parley_jwt_err_t *err)
{
    if (parley_base64url_decode(seg->p, seg->len, buf, cap, len)
        != PARLEY_BASE64URL_OK)
    {
        return fail(err, PARLEY_JWT_ERR_MALFORMED,
                    "token %s is not canonical unpadded base64url", what);
    }
    return PARLEY_JWT_OK;
}

/* the header rules of parley_jwt_verify step 2 and 3 (without policy) */
static parley_jwt_status_t parse_header(const unsigned char *buf, size_t len,
                                        parley_jwt_header_t *hdr,
                                        parley_jwt_err_t *err)
{
    static const char *const typs[] = {
        "JWT", "application/jwt", "at+jwt", "application/at+jwt",
    };
    parley_jwt_status_t status = PARLEY_JWT_OK;
    const char         *s;
    json_t             *json, *v;
    size_t              i, s_len;
    int                 position, good;

    memset(hdr, 0, sizeof(*hdr));

    json = load_object(buf, len, HEADER_DEPTH_MAX, &position);
    if (json == NULL) {
        return fail(err, PARLEY_JWT_ERR_MALFORMED,
                    "token header is not a JSON object without duplicate "
                    "members (error at byte %d)", position);
    }

    for (i = 0; i < sizeof(rejected_params) / sizeof(rejected_params[0]); i++) {
        if (json_object_get(json, rejected_params[i]) != NULL) {
            status = fail(err, PARLEY_JWT_ERR_HEADER_REJECTED,
                          "token header parameter \"%s\" is not accepted",
                          rejected_params[i]);
            goto out;
        }
    }

    v = json_object_get(json, "alg");
    if (!json_is_string(v)) {
        status = fail(err, PARLEY_JWT_ERR_MALFORMED,
                      "token header has no \"alg\" string");
        goto out;
    }
    s = json_string_value(v);
    s_len = json_string_length(v);
    if (equal_bytes(s, s_len, "HS256", 5)) {
        hdr->alg = PARLEY_JWT_HS256;
    } else if (equal_bytes(s, s_len, "RS256", 5)) {
        hdr->alg = PARLEY_JWT_RS256;
    } else if (equal_bytes(s, s_len, "ES256", 5)) {
        hdr->alg = PARLEY_JWT_ES256;
    } else if (equal_nocase(s, s_len, "none")) {
        status = fail(err, PARLEY_JWT_ERR_ALG_NOT_ALLOWED,
                      "unsigned tokens (alg none) are never accepted");
        goto out;
    } else {
        status = fail(err, PARLEY_JWT_ERR_ALG_NOT_ALLOWED,
                      "token alg is not one of HS256, RS256, ES256");
        goto out;
    }

    v = json_object_get(json, "typ");
    if (v != NULL) {
        good = 0;
        if (json_is_string(v)) {
            for (i = 0; i < sizeof(typs) / sizeof(typs[0]); i++) {
                good |= equal_nocase(json_string_value(v),
                                     json_string_length(v), typs[i]);
            }
        }
        if (!good) {
            status = fail(err, PARLEY_JWT_ERR_MALFORMED,
                          "token typ must be \"JWT\" or \"at+jwt\"");
            goto out;
        }
    }

    v = json_object_get(json, "kid");
    if (v != NULL) {
        if (!json_is_string(v)
            || !kid_valid(json_string_value(v), json_string_length(v)))
        {
            status = fail(err, PARLEY_JWT_ERR_MALFORMED,
                          "token kid must be a string of 1 to %d bytes "
                          "without control characters", PARLEY_JWT_KID_MAX);
            goto out;
        }
        hdr->kid_len = json_string_length(v);
        memcpy(hdr->kid, json_string_value(v), hdr->kid_len);
        hdr->kid[hdr->kid_len] = '\0';
        hdr->has_kid = 1;
    }

out:
    json_decref(json);
    if (status != PARLEY_JWT_OK) {
        hdr->alg = PARLEY_JWT_ALG_UNKNOWN;
    }
    return status;
}

/* segments and decoded header shared by peek and verify */
static parley_jwt_status_t parse_front(const char *token, size_t len,
                                       segment_t seg[3],
                                       parley_jwt_header_t *hdr,
                                       unsigned char *buf, size_t cap,
                                       parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    size_t              hlen, i;

    status = split(token, len, seg, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    /*
     * Every segment must be base64url before anything is believed.  A
     * segment decodes to 3/4 of its length, so cap >= len always suffices.
     */
    for (i = 1; i < 3; i++) {
        status = decode(&seg[i], buf, cap, &hlen,
                        i == 1 ? "payload" : "signature", err);
        if (status != PARLEY_JWT_OK) {
            return status;
        }
    }
    status = decode(&seg[0], buf, cap, &hlen, "header", err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    return parse_header(buf, hlen, hdr, err);
}

parley_jwt_status_t parley_jwt_peek(const char *token, size_t len,
                                    parley_jwt_header_t *header,
                                    parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    segment_t           seg[3];
    unsigned char       buf[PARLEY_JWT_MAX_LEN];

    if (header == NULL) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT, "no header to fill");
    }
    memset(header, 0, sizeof(*header));

    status = parse_front(token, len, seg, header, buf, sizeof(buf), err);
    if (status != PARLEY_JWT_OK) {
        memset(header, 0, sizeof(*header));
        return status;
    }
    ok(err);
    return PARLEY_JWT_OK;
}

/* 1 valid, 0 invalid, -1 out of memory */
static int check_hs256(const jwt_key_t *key, const char *input, size_t len,
                       const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int  mac_len = 0;
    int           good;

    if (sig_len != HS256_LEN) {
        return 0;
    }
    if (HMAC(EVP_sha256(), key->secret, (int) key->secret_len,
             (const unsigned char *) input, len, mac, &mac_len) == NULL
        || mac_len != HS256_LEN)
    {
        return -1;
    }
    good = CRYPTO_memcmp(mac, sig, HS256_LEN) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return good;
}

static int check_digest(EVP_PKEY *pkey, const char *input, size_t len,
                        const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int         r;

    if (ctx == NULL) {
        return -1;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    /* 0 is a bad signature, < 0 a malformed one: both are invalid */
    r = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *) input, len);
    EVP_MD_CTX_free(ctx);
    return r == 1;
}

static int check_rs256(const jwt_key_t *key, const char *input, size_t len,
                       const unsigned char *sig, size_t sig_len)
{
    /* PKCS#1 v1.5 signatures have exactly the modulus length */
    if ((int) sig_len != EVP_PKEY_get_size(key->pkey)) {
        return 0;
    }
    return check_digest(key->pkey, input, len, sig, sig_len);
}

/*
 * JWS carries ECDSA as r||s, 32 bytes each (RFC 7518 3.4); EVP wants DER.
 * High-S signatures are accepted: ECDSA allows them, IdPs produce them, and
 * a second valid signature of the same claims gains an attacker nothing here
 * (revocation keys on jti and iat, never on the signature).
 */
static int check_es256(const jwt_key_t *key, const char *input, size_t len,
                       const unsigned char *sig, size_t sig_len)
{
    unsigned char  der[80], *p = der;
    ECDSA_SIG     *esig;
    BIGNUM        *r, *s;
    int            der_len, result;

    if (sig_len != ES256_SIG_LEN) {
        return 0;
    }

    esig = ECDSA_SIG_new();
    r = BN_bin2bn(sig, ES256_COORD_LEN, NULL);
    s = BN_bin2bn(sig + ES256_COORD_LEN, ES256_COORD_LEN, NULL);
    if (esig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(esig, r, s)) {
        ECDSA_SIG_free(esig);
        BN_free(r);
        BN_free(s);
        return -1;
    }

    der_len = i2d_ECDSA_SIG(esig, NULL);
    if (der_len <= 0 || (size_t) der_len > sizeof(der)) {
        ECDSA_SIG_free(esig);
        return -1;
    }
    der_len = i2d_ECDSA_SIG(esig, &p);
    ECDSA_SIG_free(esig);
    if (der_len <= 0) {
        return -1;
    }

    result = check_digest(key->pkey, input, len, der, (size_t) der_len);
    OPENSSL_cleanse(der, sizeof(der));
    return result;
}

static int check_signature(const jwt_key_t *key, const char *input,
                           size_t len, const unsigned char *sig,
                           size_t sig_len)
{
    switch (key->alg) {
    case PARLEY_JWT_HS256:
        return check_hs256(key, input, len, sig, sig_len);
    case PARLEY_JWT_RS256:
        return check_rs256(key, input, len, sig, sig_len);
    case PARLEY_JWT_ES256:
        return check_es256(key, input, len, sig, sig_len);
    default:
        return 0;
    }
}

/*
 * Step 4 and 5: choose the candidate keys and check the signature with each
 * until one holds.  A key is a candidate only if its algorithm is the
 * token's: this is what rules out key confusion.
 */
static parley_jwt_status_t check_keys(const parley_jwt_keyset_t *ks,
                                      const parley_jwt_header_t *hdr,
                                      const char *input, size_t input_len,
                                      const unsigned char *sig, size_t sig_len,
                                      parley_jwt_err_t *err)
{
    const jwt_key_t *cand[PARLEY_JWT_MAX_TRIES], *named = NULL;
    size_t           n = 0, i;
    int              r, oom = 0;

    if (hdr->has_kid) {
        named = find_kid(ks->keys, ks->n, hdr->kid, hdr->kid_len);
        if (named != NULL && named->alg != hdr->alg) {
            return fail(err, PARLEY_JWT_ERR_KEY_UNKNOWN,
                        "the key named by the token's kid is not an %s key",
                        parley_jwt_alg_name(hdr->alg));
        }
        if (named != NULL) {
            cand[n++] = named;
        }
    }

    for (i = 0; named == NULL && i < ks->n && n < PARLEY_JWT_MAX_TRIES; i++) {
        if (ks->keys[i].alg == hdr->alg
            && (!hdr->has_kid || !ks->keys[i].has_kid))
        {
            cand[n++] = &ks->keys[i];
        }
    }

    if (n == 0) {
        return fail(err, PARLEY_JWT_ERR_KEY_UNKNOWN,
                    hdr->has_kid ? "no %s key with the token's kid"
                                 : "no %s key configured",
                    parley_jwt_alg_name(hdr->alg));
    }

    for (i = 0; i < n; i++) {
        r = check_signature(cand[i], input, input_len, sig, sig_len);
        if (r == 1) {
            ERR_clear_error(); /* from keys tried before */
            return PARLEY_JWT_OK;
        }
        oom |= r < 0;
    }

    if (oom) {
        return fail(err, PARLEY_JWT_ERR_INTERNAL,
                    "signature could not be checked (out of memory)");
    }
    return fail(err, PARLEY_JWT_ERR_SIGNATURE_INVALID,
                "token signature does not verify with %zu candidate %s "
                "key(s)", n, parley_jwt_alg_name(hdr->alg));
}

/* a NumericDate (RFC 7519 2): 1 present, 0 absent, -1 invalid */
static int claim_time(json_t *claims, const char *name, int64_t *out)
{
    json_t    *v = json_object_get(claims, name);
    json_int_t i;
    double     d;

    if (v == NULL) {
        return 0;
    }
    if (json_is_integer(v)) {
        i = json_integer_value(v);
        if (i < 0 || i >= PARLEY_JWT_TIME_MAX) {
            return -1;
        }
        *out = (int64_t) i;
        return 1;
    }
    if (json_is_real(v)) {
        d = json_real_value(v);
        if (!(d >= 0.0 && d < (double) PARLEY_JWT_TIME_MAX)) {
            return -1;
        }
        *out = (int64_t) d; /* fractions of seconds dropped */
        return 1;
    }
    return -1;
}

/* a bounded string claim: 1 present, 0 absent, -1 invalid */
static int claim_string(json_t *claims, const char *name, size_t max,
                        const char **s, size_t *len)
{
    json_t *v = json_object_get(claims, name);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v)
        || !text_valid(json_string_value(v), json_string_length(v), max))
    {
        return -1;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

static parley_jwt_status_t policy_check(const parley_jwt_policy_t *p,
                                        parley_jwt_err_t *err)
{
    size_t i;

    if (p->now < 0 || p->now >= PARLEY_JWT_TIME_MAX || p->leeway < 0
        || p->leeway > PARLEY_JWT_LEEWAY_MAX || p->max_lifetime < 0
        || p->max_lifetime >= PARLEY_JWT_TIME_MAX
        || p->naudiences > AUDIENCES_MAX
        || (p->naudiences > 0 && p->audiences == NULL))
    {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT,
                    "policy out of range (now, leeway, max_lifetime or "
                    "audiences)");
    }
    for (i = 0; i < p->naudiences; i++) {
        if (p->audiences[i] == NULL) {
            return fail(err, PARLEY_JWT_ERR_ARGUMENT,
                        "policy audience %zu is NULL", i);
        }
    }
    return PARLEY_JWT_OK;
}

static const char *const claim_names[] = {
    "exp", "nbf", "iat", "sub", "iss", "aud", "jti", "tid",
};

/* step 6: the claims, parsed from the authenticated payload */
static parley_jwt_status_t check_claims(json_t *json,
                                        const parley_jwt_policy_t *p,
                                        parley_jwt_claims_t *c,
                                        parley_jwt_err_t *err)
{
    const char *aud[PARLEY_JWT_AUD_MAX];
    size_t      aud_len[PARLEY_JWT_AUD_MAX], naud = 0, i, j;
    json_t     *v, *item;
    int         r;
    int64_t     now = p->now, leeway = p->leeway;

#define CLAIM_TIME(name, field, bit)                                          \
    r = claim_time(json, name, &c->field);                                    \
    if (r < 0) {                                                              \
        return fail(err, PARLEY_JWT_ERR_CLAIMS_INVALID,                       \
                    "claim \"" name "\" must be a NumericDate (seconds)");    \
    }                                                                         \
    c->present |= r ? (bit) : 0

#define CLAIM_STRING(name, field, max, bit)                                   \
    r = claim_string(json, name, max, &c->field, &c->field##_len);            \
    if (r < 0) {                                                              \
        return fail(err, PARLEY_JWT_ERR_CLAIMS_INVALID,                       \
                    "claim \"" name "\" must be a string of 1 to %d bytes "   \
                    "without control characters", max);                       \
    }                                                                         \
    c->present |= r ? (bit) : 0

    CLAIM_TIME("exp", exp, PARLEY_JWT_CLAIM_EXP);
    CLAIM_TIME("nbf", nbf, PARLEY_JWT_CLAIM_NBF);
    CLAIM_TIME("iat", iat, PARLEY_JWT_CLAIM_IAT);
    CLAIM_STRING("sub", sub, PARLEY_JWT_SUB_MAX, PARLEY_JWT_CLAIM_SUB);
    CLAIM_STRING("iss", iss, PARLEY_JWT_STR_MAX, PARLEY_JWT_CLAIM_ISS);
    CLAIM_STRING("jti", jti, PARLEY_JWT_STR_MAX, PARLEY_JWT_CLAIM_JTI);
    CLAIM_STRING("tid", tid, PARLEY_JWT_STR_MAX, PARLEY_JWT_CLAIM_TID);

#undef CLAIM_TIME
#undef CLAIM_STRING

    v = json_object_get(json, "aud");
    if (v != NULL) {
        c->present |= PARLEY_JWT_CLAIM_AUD;
        if (json_is_string(v)) {
            aud[naud] = json_string_value(v);
            aud_len[naud++] = json_string_length(v);
        } else if (json_is_array(v) && json_array_size(v) > 0
                   && json_array_size(v) <= PARLEY_JWT_AUD_MAX)
        {
            json_array_foreach(v, i, item) {
                if (!json_is_string(item)) {
                    break;
                }
                aud[naud] = json_string_value(item);
                aud_len[naud++] = json_string_length(item);
            }
        }
        if (naud == 0 || naud != (json_is_array(v) ? json_array_size(v) : 1)) {
            return fail(err, PARLEY_JWT_ERR_CLAIMS_INVALID,
                        "claim \"aud\" must be a string or an array of 1 to "
                        "%d strings", PARLEY_JWT_AUD_MAX);
        }
        for (i = 0; i < naud; i++) {
            if (!text_valid(aud[i], aud_len[i], PARLEY_JWT_STR_MAX)) {
                return fail(err, PARLEY_JWT_ERR_CLAIMS_INVALID,
                            "claim \"aud\" values must be 1 to %d bytes "
                            "without control characters", PARLEY_JWT_STR_MAX);
            }
        }
    }

    for (i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++) {
        if ((p->required & (1u << i)) && !(c->present & (1u << i))) {
            return fail(err, PARLEY_JWT_ERR_CLAIMS_INVALID,
                        "required claim \"%s\" is missing", claim_names[i]);
        }
    }

    /* all values are below 2^53 and leeway below 3600: no overflow */
    if ((c->present & PARLEY_JWT_CLAIM_EXP) && now >= c->exp + leeway) {
        return fail(err, PARLEY_JWT_ERR_EXPIRED,
                    "token expired %lld s ago (leeway %lld s)",
                    (long long) (now - c->exp), (long long) leeway);
    }
    if ((c->present & PARLEY_JWT_CLAIM_NBF) && now < c->nbf - leeway) {
        return fail(err, PARLEY_JWT_ERR_NOT_YET_VALID,
                    "token is not valid for another %lld s (leeway %lld s)",
                    (long long) (c->nbf - now), (long long) leeway);
    }
    if ((c->present & PARLEY_JWT_CLAIM_IAT) && now < c->iat - leeway) {
        return fail(err, PARLEY_JWT_ERR_NOT_YET_VALID,
                    "token is issued %lld s in the future (leeway %lld s)",
                    (long long) (c->iat - now), (long long) leeway);
    }

    if (p->issuer != NULL
        && (!(c->present & PARLEY_JWT_CLAIM_ISS)
            || !equal_bytes(c->iss, c->iss_len, p->issuer, strlen(p->issuer))))
    {
        return fail(err, PARLEY_JWT_ERR_ISSUER_MISMATCH,
                    (c->present & PARLEY_JWT_CLAIM_ISS)
                        ? "token issuer is not the expected one"
                        : "token has no issuer (iss) but one is expected");
    }

    if (p->naudiences > 0 || naud > 0) {
        for (i = 0; c->aud == NULL && i < naud; i++) {
            for (j = 0; j < p->naudiences; j++) {
                if (equal_bytes(aud[i], aud_len[i], p->audiences[j],
                                strlen(p->audiences[j])))
                {
                    c->aud = aud[i];
                    c->aud_len = aud_len[i];
                    break;
                }
            }
        }
        if (c->aud == NULL) {
            return fail(err, PARLEY_JWT_ERR_AUDIENCE_MISMATCH,
                        naud == 0 ? "token has no audience (aud) but one is "
                                    "expected"
                                  : "no token audience is accepted here");
        }
    }

    if (p->max_lifetime > 0) {
        if (!(c->present & PARLEY_JWT_CLAIM_EXP)) {
            return fail(err, PARLEY_JWT_ERR_LIFETIME_TOO_LONG,
                        "token has no exp but lifetimes are limited to "
                        "%lld s", (long long) p->max_lifetime);
        }
        if (((c->present & PARLEY_JWT_CLAIM_IAT)
             && c->exp - c->iat > p->max_lifetime)
            || c->exp - now > p->max_lifetime + leeway)
        {
            return fail(err, PARLEY_JWT_ERR_LIFETIME_TOO_LONG,
                        "token lifetime exceeds %lld s",
                        (long long) p->max_lifetime);
        }
    }

    return PARLEY_JWT_OK;
}

parley_jwt_status_t parley_jwt_verify(const char *token, size_t len,
                                      const parley_jwt_keyset_t *ks,
                                      const parley_jwt_policy_t *policy,
                                      parley_jwt_claims_t *claims_out,
                                      parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    parley_jwt_header_t hdr;
    segment_t           seg[3];
    unsigned char       buf[PARLEY_JWT_MAX_LEN];
    size_t              sig_len, payload_len;
    json_t             *json;
    int                 position;

    if (claims_out == NULL || ks == NULL || policy == NULL) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT,
                    "no key set, policy or claims to fill");
    }
    memset(claims_out, 0, sizeof(*claims_out));

    status = policy_check(policy, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }

    status = parse_front(token, len, seg, &hdr, buf, sizeof(buf), err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }

    if (!(policy->algs & hdr.alg)) {
        return fail(err, PARLEY_JWT_ERR_ALG_NOT_ALLOWED,
                    "%s tokens are not accepted here",
                    parley_jwt_alg_name(hdr.alg));
    }

    /* parse_front proved every segment decodes into buf */
    status = decode(&seg[2], buf, sizeof(buf), &sig_len, "signature", err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    status = check_keys(ks, &hdr, token, (size_t) (seg[2].p - 1 - token), buf,
                        sig_len, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }

    status = decode(&seg[1], buf, sizeof(buf), &payload_len, "payload", err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    json = load_object(buf, payload_len, CLAIMS_DEPTH_MAX, &position);
    if (json == NULL) {
        return fail(err, PARLEY_JWT_ERR_MALFORMED,
                    "token payload is not a JSON object without duplicate "
                    "members (error at byte %d)", position);
    }

    claims_out->json = json;
    status = check_claims(json, policy, claims_out, err);
    if (status != PARLEY_JWT_OK) {
        parley_jwt_claims_free(claims_out);
        return status;
    }

    claims_out->alg = hdr.alg;
    memcpy(claims_out->kid, hdr.kid, hdr.kid_len + 1);
    claims_out->kid_len = hdr.kid_len;
    ok(err);
    return PARLEY_JWT_OK;
}

/* ------------------------------------------------------------------------ */
/* signing */

parley_jwt_status_t parley_jwt_sign_hs256(const char *kid_or_null,
                                          const json_t *claims,
                                          const unsigned char *secret,
                                          size_t secret_len, char *out,
                                          size_t out_cap, size_t *out_len,
                                          parley_jwt_err_t *err)
{
    parley_jwt_status_t status;
    char                header[PARLEY_JWT_KID_MAX * 6 + 64];
    char                payload[PARLEY_JWT_MAX_LEN];
    unsigned char       mac[EVP_MAX_MD_SIZE];
    unsigned int        mac_len = 0;
    size_t              header_len, payload_len, total, o = 0, n;
    json_t             *hdr;

    if (out_len != NULL) {
        *out_len = 0;
    }
    if (claims == NULL || !json_is_object(claims) || out == NULL
        || out_len == NULL)
    {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT,
                    "claims must be a JSON object and out a buffer");
    }
    status = secret_check(secret, secret_len, err);
    if (status != PARLEY_JWT_OK) {
        return status;
    }
    if (kid_or_null != NULL && !kid_valid(kid_or_null, strlen(kid_or_null))) {
        return fail(err, PARLEY_JWT_ERR_ARGUMENT,
                    "kid must be 1 to %d bytes of UTF-8 without control "
                    "characters", PARLEY_JWT_KID_MAX);
    }

    hdr = json_pack("{s:s, s:s}", "alg", "HS256", "typ", "JWT");
    if (hdr == NULL
        || (kid_or_null != NULL
            && json_object_set_new(hdr, "kid", json_string(kid_or_null)) != 0))
    {
        json_decref(hdr);
        return fail(err, PARLEY_JWT_ERR_INTERNAL, "out of memory");
    }
    header_len = json_dumpb(hdr, header, sizeof(header), JSON_COMPACT);
    json_decref(hdr);
    payload_len = json_dumpb(claims, payload, sizeof(payload), JSON_COMPACT);
    if (header_len == 0 || header_len > sizeof(header) || payload_len == 0) {
        return fail(err, PARLEY_JWT_ERR_INTERNAL,
                    "claims could not be serialised");
    }
    if (payload_len > sizeof(payload)) {
        return fail(err, PARLEY_JWT_ERR_TOO_LARGE,
                    "claims serialise to %zu bytes, too many for a token",
                    payload_len);
    }

    total = parley_base64url_encoded_len(header_len) + 1
            + parley_base64url_encoded_len(payload_len) + 1
            + parley_base64url_encoded_len(HS256_LEN);
    if (total > PARLEY_JWT_MAX_LEN) {
        return fail(err, PARLEY_JWT_ERR_TOO_LARGE,
                    "token would have %zu bytes, at most %d allowed", total,
                    PARLEY_JWT_MAX_LEN);
    }
    if (out_cap < total + 1) {
        return fail(err, PARLEY_JWT_ERR_BUFFER_TOO_SMALL,
                    "token needs %zu bytes with its NUL, %zu given", total + 1,
                    out_cap);
    }

    parley_base64url_encode(header, header_len, out + o, out_cap - o, &n);
    o += n;
    out[o++] = '.';
    parley_base64url_encode(payload, payload_len, out + o, out_cap - o, &n);
    o += n;

    if (HMAC(EVP_sha256(), secret, (int) secret_len,
             (const unsigned char *) out, o, mac, &mac_len) == NULL
        || mac_len != HS256_LEN)
    {
        out[0] = '\0';
        return fail(err, PARLEY_JWT_ERR_INTERNAL, "HMAC failed");
    }
    out[o++] = '.';
    parley_base64url_encode(mac, HS256_LEN, out + o, out_cap - o, &n);
    o += n;
    out[o] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));

    *out_len = o;
    ok(err);
    return PARLEY_JWT_OK;
}
