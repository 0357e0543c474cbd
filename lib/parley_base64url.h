/*
 * base64url (RFC 4648 section 5) without padding, as JOSE uses it
 * (RFC 7515 section 2).
 *
 * Decoding is strict so that every byte string has exactly one accepted
 * spelling: no '=' padding, no whitespace, no character outside
 * [A-Za-z0-9_-], no length of the form 4k+1, and the unused low bits of the
 * last character must be zero.  A token that was altered in any of these
 * ways therefore fails to decode instead of decoding to the same bytes.
 *
 * Neither function is constant-time: they serve public data (token
 * segments, public keys).  Neither writes a NUL.
 */
#ifndef PARLEY_BASE64URL_H
#define PARLEY_BASE64URL_H

#include <stddef.h>

#define PARLEY_BASE64URL_OK     0
#define PARLEY_BASE64URL_EINVAL (-1) /* not canonical unpadded base64url */
#define PARLEY_BASE64URL_ENOSPC (-2) /* dst too small; nothing useful in it */

/*
 * Largest input either function accepts.  Far above anything real, it keeps
 * the length arithmetic below free of overflow.
 */
#define PARLEY_BASE64URL_MAX_INPUT ((size_t) 1 << 30)

/* Exact length of the encoding of len bytes; 0 when len is above the max. */
size_t parley_base64url_encoded_len(size_t len);

/*
 * Length that decoding len characters yields when they are valid; for a
 * length that can never be valid (4k+1) it returns a bound that still holds.
 */
size_t parley_base64url_decoded_len(size_t len);

/*
 * Encodes src[0..len) into dst, which holds cap bytes, and stores the number
 * of characters written in *out_len.  PARLEY_BASE64URL_OK, or ENOSPC when
 * cap < parley_base64url_encoded_len(len), EINVAL when len is above the max.
 */
int parley_base64url_encode(const void *src, size_t len, char *dst, size_t cap,
                            size_t *out_len);

/*
 * Decodes src[0..len) into dst (cap bytes) and stores the number of bytes in
 * *out_len.  PARLEY_BASE64URL_OK; EINVAL for input that is not canonical
 * unpadded base64url (see above; the empty string is valid and decodes to
 * nothing); ENOSPC when cap < parley_base64url_decoded_len(len).  Reads no
 * byte past len.
 */
int parley_base64url_decode(const char *src, size_t len, unsigned char *dst,
                            size_t cap, size_t *out_len);

#endif
