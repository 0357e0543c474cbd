/*
 * JSON Web Tokens: verification of compact JWS tokens (RFC 7515, 7519) and
 * signing of the HS256 tokens Parley issues itself.  docs/tokens.md says
 * which tokens are accepted and why the others are not.
 *
 * Contract, for use from nginx workers:
 *  - plain functions over buffers: no clock reads (the caller passes `now`),
 *    no file or network I/O, no key fetching, no global mutable state;
 *  - every allocation is checked; failures are reported, never aborted on;
 *  - work per token is bounded: at most PARLEY_JWT_MAX_LEN bytes, at most
 *    PARLEY_JWT_MAX_TRIES signature checks;
 *  - a key set is built once (keyset_new, then add_*), after which it is
 *    read-only and may be shared by any number of threads that only verify;
 *  - on failure the OpenSSL error queue of the calling thread is left empty
 *    (nginx reads that queue for its own TLS errors).
 *
 * Algorithms: HS256, RS256 and ES256 only.  Every key belongs to exactly one
 * of them, fixed when it is added, and is used with that algorithm only: an
 * HMAC secret never checks an RS256 or ES256 signature and a public key is
 * never used as an HMAC secret.  "none", in any casing, is always rejected.
 */
#ifndef PARLEY_JWT_H
#define PARLEY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define PARLEY_JWT_MAX_LEN       8192 /* a longer token is token_too_large */
#define PARLEY_JWT_MAX_TRIES     8    /* keys tried for a token without kid */
#define PARLEY_JWT_KEYSET_MAX    32   /* keys in one key set */
#define PARLEY_JWT_KID_MAX       128  /* bytes of a kid (header and keys) */
#define PARLEY_JWT_SUB_MAX       128  /* bytes of sub */
#define PARLEY_JWT_STR_MAX       256  /* bytes of iss, jti, tid, each aud */
#define PARLEY_JWT_AUD_MAX       32   /* entries of an aud array */
#define PARLEY_JWT_HMAC_MIN      32   /* bytes of an HMAC secret, RFC 7518 */
#define PARLEY_JWT_HMAC_MAX      1024
#define PARLEY_JWT_RSA_MIN_BITS  2048
#define PARLEY_JWT_RSA_MAX_BITS  8192 /* bounds the cost of one check */
#define PARLEY_JWT_KEYDOC_MAX    65536 /* bytes of a PEM or JWKS document */
#define PARLEY_JWT_LEEWAY_MAX    3600
#define PARLEY_JWT_DEFAULT_LEEWAY 60
/* NumericDates, `now` and lifetimes are limited to [0, 2^53) seconds */
#define PARLEY_JWT_TIME_MAX      ((int64_t) 1 << 53)

/* algorithms, usable as bits of a mask */
typedef enum {
    PARLEY_JWT_ALG_UNKNOWN = 0,
    PARLEY_JWT_HS256 = 1 << 0,
    PARLEY_JWT_RS256 = 1 << 1,
    PARLEY_JWT_ES256 = 1 << 2
} parley_jwt_alg_t;

#define PARLEY_JWT_ALGS_ALL                                                    \
    (PARLEY_JWT_HS256 | PARLEY_JWT_RS256 | PARLEY_JWT_ES256)

/*
 * Results.  The machine names returned by parley_jwt_status_name() are
 * stable: clients and logs may depend on them.  Token errors start with
 * "token_", key set errors with "key".
 */
typedef enum {
    PARLEY_JWT_OK = 0,
    /* the token */
    PARLEY_JWT_ERR_MALFORMED,          /* token_malformed */
    PARLEY_JWT_ERR_TOO_LARGE,          /* token_too_large */
    PARLEY_JWT_ERR_HEADER_REJECTED,    /* token_header_rejected: crit, jku... */
    PARLEY_JWT_ERR_ALG_NOT_ALLOWED,    /* token_algorithm_not_allowed */
    PARLEY_JWT_ERR_KEY_UNKNOWN,        /* token_key_unknown */
    PARLEY_JWT_ERR_SIGNATURE_INVALID,  /* token_signature_invalid */
    PARLEY_JWT_ERR_EXPIRED,            /* token_expired */
    PARLEY_JWT_ERR_NOT_YET_VALID,      /* token_not_yet_valid: nbf, iat */
    PARLEY_JWT_ERR_ISSUER_MISMATCH,    /* token_issuer_mismatch */
    PARLEY_JWT_ERR_AUDIENCE_MISMATCH,  /* token_audience_mismatch */
    PARLEY_JWT_ERR_LIFETIME_TOO_LONG,  /* token_lifetime_too_long */
    PARLEY_JWT_ERR_CLAIMS_INVALID,     /* token_claims_invalid */
    /* building a key set */
    PARLEY_JWT_ERR_KEY_INVALID,        /* key_invalid */
    PARLEY_JWT_ERR_KEY_UNSUPPORTED,    /* key_unsupported */
    PARLEY_JWT_ERR_KEY_TOO_WEAK,       /* key_too_weak */
    PARLEY_JWT_ERR_KEY_DUPLICATE,      /* key_duplicate_kid */
    PARLEY_JWT_ERR_KEYSET_FULL,        /* keyset_full */
    /* the caller */
    PARLEY_JWT_ERR_ARGUMENT,           /* invalid_argument: NULL, bad policy */
    PARLEY_JWT_ERR_BUFFER_TOO_SMALL,   /* buffer_too_small */
    PARLEY_JWT_ERR_INTERNAL            /* internal_error: memory, libcrypto */
} parley_jwt_status_t;

/*
 * Error detail.  `message` is a NUL-terminated English sentence for logs and
 * operators; it never quotes token bytes (no log injection from tokens) but
 * may quote a key set document's member names and positions.
 */
typedef struct {
    parley_jwt_status_t status;
    char                message[192];
} parley_jwt_err_t;

/* "token_expired", ...; "unknown" for a value outside the enum */
const char *parley_jwt_status_name(parley_jwt_status_t status);

/* "HS256", "RS256", "ES256"; "unknown" otherwise */
const char *parley_jwt_alg_name(parley_jwt_alg_t alg);

/* ------------------------------------------------------------------------ */
/* Key sets */

typedef struct parley_jwt_keyset parley_jwt_keyset_t;

/* An empty key set, or NULL when out of memory. */
parley_jwt_keyset_t *parley_jwt_keyset_new(void);

/* Frees the set and every key in it (HMAC secrets are wiped).  NULL is ok. */
void parley_jwt_keyset_free(parley_jwt_keyset_t *ks);

/* Number of keys in the set. */
size_t parley_jwt_keyset_count(const parley_jwt_keyset_t *ks);

/*
 * Mask of the algorithms (parley_jwt_alg_t bits) the keys in the set serve;
 * 0 for an empty set or NULL.  Lets a caller narrow a policy to what the set
 * can verify, or report a configuration that can verify nothing.
 */
unsigned parley_jwt_keyset_algs(const parley_jwt_keyset_t *ks);

/*
 * Kids: a kid given to add_pem/add_hmac or found in a JWKS is 1 to
 * PARLEY_JWT_KID_MAX bytes of UTF-8 without control characters, unique in
 * the set (key_duplicate_kid otherwise).  A key added without a kid matches
 * tokens of its algorithm whatever their kid (see parley_jwt_verify).
 *
 * Every add_* either adds all it was given or nothing, and returns
 * PARLEY_JWT_OK or the reason, with detail in *err when err is not NULL.
 */

/*
 * Adds the public key of a PEM document: "PUBLIC KEY" (SubjectPublicKeyInfo)
 * or "CERTIFICATE" (X.509; only its key is used, its dates and issuer are not
 * checked: the operator pins the key).  The first such block is used.  RSA
 * keys of PARLEY_JWT_RSA_MIN_BITS to _MAX_BITS become RS256 keys, EC keys on
 * the named curve P-256 become ES256 keys; anything else (RSA-PSS, other
 * curves, explicit curve parameters, private keys, encrypted PEM) is refused.
 * Never prompts for a pass phrase.  len <= PARLEY_JWT_KEYDOC_MAX.
 */
parley_jwt_status_t parley_jwt_keyset_add_pem(parley_jwt_keyset_t *ks,
                                              const char *kid_or_null,
                                              const char *pem, size_t len,
                                              parley_jwt_err_t *err);

/*
 * Adds the keys of a JWK Set (RFC 7517): {"keys": [...]}, at most
 * PARLEY_JWT_KEYDOC_MAX bytes, parsed with duplicate members rejected.
 *
 * Skipped (not an error): keys whose "use" is present and not "sig", whose
 * "key_ops" is present and lacks "verify", whose "kty" is neither "RSA" nor
 * "EC", EC keys on a curve other than "P-256", and keys whose "alg" is
 * present and is another algorithm than the key's (RS256 for RSA, ES256 for
 * EC): a set may legitimately carry keys for other purposes.
 *
 * Refused (the whole call fails): RSA keys below PARLEY_JWT_RSA_MIN_BITS
 * (key_too_weak) or above _MAX_BITS, malformed members (n, e, x, y not
 * canonical base64url; x and y not 32 bytes; a point not on the curve; an
 * even or oversized exponent), private key members ("d", "p", ...), a
 * non-string kid, and a set in which no usable key remains
 * (key_unsupported).  Symmetric ("oct") keys are skipped: HMAC secrets are
 * added with parley_jwt_keyset_add_hmac only.
 */
parley_jwt_status_t parley_jwt_keyset_add_jwks(parley_jwt_keyset_t *ks,
                                               const char *json, size_t len,
                                               parley_jwt_err_t *err);

/*
 * Adds an HS256 secret of PARLEY_JWT_HMAC_MIN to _MAX bytes (copied), any
 * bytes.  A secret that starts (after whitespace) like a PEM document
 * ("-----BEGIN") or a JWK ('{' and a "kty" member) is refused: it is almost
 * certainly a public key pasted in the wrong place, which would turn a
 * public value into a signing secret.
 */
parley_jwt_status_t parley_jwt_keyset_add_hmac(parley_jwt_keyset_t *ks,
                                               const char *kid_or_null,
                                               const unsigned char *secret,
                                               size_t len,
                                               parley_jwt_err_t *err);

/* ------------------------------------------------------------------------ */
/* Verification */

/* claim bits, for parley_jwt_policy_t.required and parley_jwt_claims_t */
#define PARLEY_JWT_CLAIM_EXP (1u << 0)
#define PARLEY_JWT_CLAIM_NBF (1u << 1)
#define PARLEY_JWT_CLAIM_IAT (1u << 2)
#define PARLEY_JWT_CLAIM_SUB (1u << 3)
#define PARLEY_JWT_CLAIM_ISS (1u << 4)
#define PARLEY_JWT_CLAIM_AUD (1u << 5)
#define PARLEY_JWT_CLAIM_JTI (1u << 6)
#define PARLEY_JWT_CLAIM_TID (1u << 7)

/*
 * What a token must satisfy.  Start from parley_jwt_policy_init(), which
 * requires exp and sub and sets the default leeway; a policy with algs == 0
 * accepts nothing.  The strings are borrowed for the duration of the call.
 */
typedef struct {
    unsigned            algs;       /* mask of parley_jwt_alg_t */
    const char         *issuer;     /* NULL: iss not compared */
    const char *const  *audiences;  /* accepted audiences */
    size_t              naudiences; /* 0: a token with aud is refused */
    int64_t             now;        /* seconds since the epoch */
    int64_t             leeway;     /* seconds, 0..PARLEY_JWT_LEEWAY_MAX */
    int64_t             max_lifetime; /* seconds; 0: unbounded */
    unsigned            required;   /* PARLEY_JWT_CLAIM_* that must exist */
} parley_jwt_policy_t;

void parley_jwt_policy_init(parley_jwt_policy_t *policy, unsigned algs,
                            int64_t now);

/*
 * A verified token's claims.  Everything points into `json`, which this
 * structure owns: the strings live until parley_jwt_claims_free().  Take a
 * json_incref() of `json` to keep the claims longer.  The strings are
 * NUL-terminated, valid UTF-8, without NUL or control characters (sub, iss,
 * jti, tid, aud), and of the lengths given.  `present` says which of
 * iat/nbf/exp/sub/... exist; absent strings are NULL, absent times 0.
 */
typedef struct {
    json_t           *json;    /* owned: the whole claims object */
    unsigned          present; /* PARLEY_JWT_CLAIM_* */
    const char       *sub;
    size_t            sub_len;
    const char       *iss;
    size_t            iss_len;
    const char       *jti;
    size_t            jti_len;
    const char       *tid;
    size_t            tid_len;
    const char       *aud;     /* the accepted audience that matched */
    size_t            aud_len;
    int64_t           iat;
    int64_t           nbf;
    int64_t           exp;
    parley_jwt_alg_t  alg;     /* the verified algorithm */
    char              kid[PARLEY_JWT_KID_MAX + 1]; /* "" without kid */
    size_t            kid_len;
} parley_jwt_claims_t;

/* Releases what verify stored; the structure is zeroed.  NULL is ok. */
void parley_jwt_claims_free(parley_jwt_claims_t *claims);

/*
 * Verifies a compact JWS token token[0..len) (no NUL needed) and, on
 * PARLEY_JWT_OK, fills *claims_out (free it with parley_jwt_claims_free).
 * On any error *claims_out holds nothing that needs freeing (freeing it is
 * still allowed).
 *
 * In order:
 *  1. shape: len <= PARLEY_JWT_MAX_LEN, exactly three non-empty canonical
 *     base64url segments (the signature may not be empty either);
 *  2. header: a JSON object without duplicate members, "alg" a string,
 *     "typ" absent or "JWT"/"at+jwt" (case-insensitive, "application/"
 *     prefix allowed), "kid" absent or a valid kid; "crit", "jku", "jwk",
 *     "x5u", "x5c", "cty", "zip", "enc", "b64" are token_header_rejected;
 *  3. alg: HS256, RS256 or ES256 and in policy->algs;
 *  4. key: with a kid, the key with that kid, or else the keys without a kid;
 *     without a kid, every key; in both cases only keys of the token's alg,
 *     at most PARLEY_JWT_MAX_TRIES of them (token_key_unknown when none);
 *  5. signature: HMAC compared in constant time; RS256 PKCS#1 v1.5 of the
 *     key's length; ES256 exactly 64 bytes r||s (RFC 7518 section 3.4);
 *  6. claims, only now parsed: a JSON object without duplicates; exp, nbf,
 *     iat NumericDates; sub, iss, jti, tid strings (bounded, see limits);
 *     aud a string or an array of strings; then
 *     expired when now >= exp + leeway,
 *     not yet valid when now < nbf - leeway or now < iat - leeway,
 *     issuer: equal to policy->issuer when that is set,
 *     audience: one aud value equal to one accepted audience; a token with
 *     aud is refused by a policy without audiences (RFC 7519 4.1.3),
 *     lifetime: exp - iat and exp - now - leeway at most max_lifetime,
 *     the policy's required claims present.
 */
parley_jwt_status_t parley_jwt_verify(const char *token, size_t len,
                                      const parley_jwt_keyset_t *ks,
                                      const parley_jwt_policy_t *policy,
                                      parley_jwt_claims_t *claims_out,
                                      parley_jwt_err_t *err);

/*
 * The header of a token whose signature has NOT been checked: use it only to
 * choose a key set, never to decide anything about the token.
 */
typedef struct {
    parley_jwt_alg_t alg;
    char             kid[PARLEY_JWT_KID_MAX + 1]; /* "" without kid */
    size_t           kid_len;
    int              has_kid;
} parley_jwt_header_t;

/*
 * Checks steps 1 to 3 of parley_jwt_verify (without a policy: any of the
 * three algorithms) and reads alg and kid.  The payload is not decoded.
 */
parley_jwt_status_t parley_jwt_peek(const char *token, size_t len,
                                    parley_jwt_header_t *header,
                                    parley_jwt_err_t *err);

/* ------------------------------------------------------------------------ */
/* Signing */

/*
 * Signs claims (a JSON object, serialised compactly in its member order)
 * with HS256 under the header {"alg":"HS256","typ":"JWT"} plus "kid" when
 * kid_or_null is not NULL.  Writes the token and a NUL into out (out_cap
 * bytes) and its length, without the NUL, into *out_len.  The secret obeys
 * the rules of parley_jwt_keyset_add_hmac.  buffer_too_small when out_cap is
 * short; token_too_large when the token would exceed PARLEY_JWT_MAX_LEN
 * (verify would refuse it).  The claims are not validated: the issuer sets
 * iss, aud, sub, tid, jti, iat and exp.
 */
parley_jwt_status_t parley_jwt_sign_hs256(const char *kid_or_null,
                                          const json_t *claims,
                                          const unsigned char *secret,
                                          size_t secret_len, char *out,
                                          size_t out_cap, size_t *out_len,
                                          parley_jwt_err_t *err);

#endif
