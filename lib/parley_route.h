/*
 * REST path matching: "/v1/users/{uid}/tokens" against a request path.
 *
 * The path is the raw request target's path (before nginx's decoding, so
 * that "%2F" inside an id cannot become a separator).  Literal segments
 * must match exactly; each {name} segment matches one non-empty segment,
 * which is percent-decoded into the caller's buffer.  A decoded parameter
 * must be valid UTF-8 without control characters (C0, DEL and C1, so NUL
 * too) and at most PARLEY_ROUTE_PARAM_MAX bytes.  A trailing slash never
 * matches.
 */
#ifndef PARLEY_ROUTE_H
#define PARLEY_ROUTE_H

#include <stddef.h>

#define PARLEY_ROUTE_MAX_PARAMS 4
#define PARLEY_ROUTE_PARAM_MAX  256

typedef struct {
    const char *name;        /* points into the pattern, not NUL-ended */
    size_t      name_len;
    char       *value;       /* decoded, NUL-terminated, in the buffer */
    size_t      len;
} parley_route_param_t;

typedef enum {
    PARLEY_ROUTE_MATCH = 0,
    PARLEY_ROUTE_NO_MATCH = 1,
    PARLEY_ROUTE_BAD_PARAM = 2, /* shape matched, a parameter is invalid */
} parley_route_rc_t;

/*
 * buf must hold at least path_len + PARLEY_ROUTE_MAX_PARAMS bytes; params
 * must hold PARLEY_ROUTE_MAX_PARAMS entries; *nparams receives the count.
 * On PARLEY_ROUTE_BAD_PARAM, *bad names the offending parameter (index).
 */
parley_route_rc_t parley_route_match(const char *pattern, const char *path,
                                     size_t path_len, char *buf,
                                     parley_route_param_t *params,
                                     size_t *nparams, size_t *bad);

/* Percent-decodes src into dst (dst may equal src); -1 on a bad escape. */
long parley_percent_decode(char *dst, const char *src, size_t len);

#endif
