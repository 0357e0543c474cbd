/*
 * The server's half of the WebSocket opening handshake (RFC 6455 4.2):
 * checks on the pieces of an upgrade request, Sec-WebSocket-Accept, and
 * Sec-WebSocket-Protocol lists.
 *
 * Header values come as (pointer, length) pairs, not NUL-terminated, as
 * nginx holds them; a NULL pointer means the header is absent.  A request
 * that repeats a header is the caller's to join with ", " (RFC 7230 3.2.2)
 * or to refuse.  Every function reads only the bytes it is given.
 */
#ifndef PARLEY_WS_HANDSHAKE_H
#define PARLEY_WS_HANDSHAKE_H

#include <stddef.h>

typedef struct {
    const char *method;       /* "GET" */
    size_t      method_len;
    const char *http_version; /* "HTTP/1.1" */
    size_t      http_version_len;
    const char *upgrade;      /* Upgrade */
    size_t      upgrade_len;
    const char *connection;   /* Connection */
    size_t      connection_len;
    const char *version;      /* Sec-WebSocket-Version */
    size_t      version_len;
    const char *key;          /* Sec-WebSocket-Key */
    size_t      key_len;
} parley_ws_upgrade_t;

typedef enum {
    PARLEY_WS_HS_OK = 0,
    PARLEY_WS_HS_BAD_METHOD,       /* not GET: 405, Allow: GET */
    PARLEY_WS_HS_BAD_HTTP_VERSION, /* not HTTP/1.1: 400 */
    PARLEY_WS_HS_NO_UPGRADE,       /* no "websocket" in Upgrade: 426 */
    PARLEY_WS_HS_NO_CONNECTION,    /* no "Upgrade" in Connection: 400 */
    PARLEY_WS_HS_BAD_VERSION,      /* not 13: 426, Sec-WebSocket-Version: 13 */
    PARLEY_WS_HS_BAD_KEY           /* not base64 of 16 bytes: 400 */
} parley_ws_hs_rc_t;

/*
 * Checks, in this order: method GET (case-sensitive, RFC 7230 3.1.1);
 * version exactly HTTP/1.1; an Upgrade list item equal to "websocket"
 * (ASCII case-insensitive); a Connection list item equal to "Upgrade"
 * (case-insensitive); Sec-WebSocket-Version exactly "13"; a
 * Sec-WebSocket-Key of 22 base64 characters and "==" (what encoding 16
 * bytes gives).  Surrounding spaces and tabs are ignored.
 */
parley_ws_hs_rc_t parley_ws_handshake_check(const parley_ws_upgrade_t *req);

/*
 * The HTTP status to answer a check result with: 101 for OK, else as
 * listed above.  A 426 for BAD_VERSION must carry
 * "Sec-WebSocket-Version: 13" (RFC 6455 4.4); one for NO_UPGRADE
 * "Upgrade: websocket" and "Connection: Upgrade" (RFC 7231 6.5.15).
 */
unsigned parley_ws_handshake_status(parley_ws_hs_rc_t rc);

/* A short English reason for logs and error bodies. */
const char *parley_ws_handshake_reason(parley_ws_hs_rc_t rc);

/* ---- Sec-WebSocket-Accept ---------------------------------------------- */

#define PARLEY_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */
#define PARLEY_WS_KEY_LEN    24 /* base64 of 16 bytes */

/*
 * Writes base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) into
 * out: 28 characters, no NUL.  key is the header value as received (spaces
 * around it ignored); it must pass the key check above.  Returns 0, or -1
 * for a bad key or a digest failure.
 */
int parley_ws_accept(const char *key, size_t key_len,
                     char out[PARLEY_WS_ACCEPT_LEN]);

/* ---- comma lists ------------------------------------------------------- */

/*
 * Steps through a comma-separated header list (RFC 7230 7): returns 1 and
 * the next non-empty item (spaces and tabs around it trimmed; not checked
 * further), or 0 at the end.  *pos starts at 0.  Empty items are skipped,
 * as the RFC asks of recipients.
 */
int parley_ws_list_next(const char *list, size_t len, size_t *pos,
                        const char **item, size_t *item_len);

/* 1 when s[0..len) is an RFC 7230 token (1*tchar). */
int parley_ws_is_token(const char *s, size_t len);

/* ---- Sec-WebSocket-Protocol -------------------------------------------- */

/*
 * Sec-WebSocket-Protocol carries a list of tokens (RFC 6455 4.1, 11.3.4).
 * Parley's clients offer "parley.v1, bearer.<token>" (browsers cannot set
 * an Authorization header on a WebSocket): the server selects "parley.v1"
 * and reads the token from the other item, and never echoes the latter.
 */

/* 1 when every item of the list is a token (and there is at least one). */
int parley_ws_protocol_valid(const char *list, size_t len);

/* 1 when the list holds an item exactly equal (case-sensitive) to name. */
int parley_ws_protocol_has(const char *list, size_t len, const char *name,
                           size_t name_len);

/*
 * Finds the items that start with prefix (case-sensitive) and are longer
 * than it.  Returns how many there are; *item and *item_len get the first (the
 * whole item, prefix included), NULL/0 when none.  A caller that wants
 * exactly one token refuses a count other than 1.  Reads only
 * list[0..len); prefix_len 0 matches nothing.
 */
size_t parley_ws_protocol_find_prefix(const char *list, size_t len,
                                      const char *prefix, size_t prefix_len,
                                      const char **item, size_t *item_len);

#endif
