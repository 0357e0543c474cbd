/*
 * permessage-deflate (RFC 7692) for the server side: negotiation of the
 * client's Sec-WebSocket-Extensions offer, and a bounded inflater and a
 * deflater over zlib (raw DEFLATE, RFC 1951).
 *
 * Memory is what bounds a server with many connections, so we choose the
 * small end: our compressor uses the window the configuration names (the
 * response always carries server_max_window_bits), and the inflater uses
 * the window we answer in client_max_window_bits when the client offered
 * that parameter (otherwise the client may use 15 bits and so must we).
 * zlib's cost, measured with zlib 1.2.13 on x86-64 (tests check it):
 *
 *   deflater: (1 << (W + 2)) + (1 << (M + 9)) + ~6 KB of state,
 *             W = window bits, M = memLevel;  defaults W 10, M 3: 14,144 B
 *   inflater: (1 << W) + ~7 KB of state (the window is allocated at the
 *             first output);  W 10: 8,184 B;  W 15: 39,928 B
 *
 * With no context takeover in a direction, that direction's state holds
 * nothing between messages, so a caller may drop it (or share one per
 * worker) between messages; with context takeover it lives as long as the
 * connection.  docs/websocket-framing.md has the figures per setting.
 *
 * Inflating is bounded twice: the reader bounds the compressed size of a
 * message (parley_ws.h), the inflater stops as soon as the inflated size
 * would exceed its cap (1009), after work proportional to the cap plus the
 * input it has read, so a decompression bomb costs no more than a message
 * of the cap's size.  Errors are close codes: 1007 for data that is not
 * DEFLATE (or not UTF-8 when a text validator is passed), 1009 for a
 * message over the cap, 1011 for zlib's own failures (out of memory).
 */
#ifndef PARLEY_WS_DEFLATE_H
#define PARLEY_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "parley_ws.h"

/* ---- negotiation ------------------------------------------------------- */

#define PARLEY_WS_DEFLATE_ACCEPT    1    /* resp holds the response value */
#define PARLEY_WS_DEFLATE_DECLINE   0    /* no acceptable offer: none used */
#define PARLEY_WS_DEFLATE_MALFORMED (-1) /* broken header syntax: none used */
#define PARLEY_WS_DEFLATE_EINVAL    (-2) /* bad configuration or resp_cap */

/* room for the longest response parley_ws_deflate_negotiate writes */
#define PARLEY_WS_DEFLATE_RESPONSE_MAX 128

/* our defaults: see the memory figures above */
#define PARLEY_WS_DEFLATE_SERVER_BITS 10
#define PARLEY_WS_DEFLATE_CLIENT_BITS 10
#define PARLEY_WS_DEFLATE_MEM_LEVEL   3

typedef struct {
    unsigned server_max_window_bits; /* our compressor's window: 9-15 */
    unsigned client_max_window_bits; /* answered when offered: 8-15 */
    unsigned mem_level;              /* our compressor's memLevel: 1-9 */
    int      level;                  /* zlib level: -1 (default), 0-9 */
    int      server_no_context_takeover; /* always answer it */
    int      client_no_context_takeover; /* always answer it */
} parley_ws_deflate_config_t;

/* what one connection uses, agreed by both ends */
typedef struct {
    unsigned server_window_bits; /* for parley_ws_deflater_init */
    unsigned client_window_bits; /* for parley_ws_inflater_init: 9-15 */
    unsigned mem_level;
    int      level;
    int      server_no_context_takeover;
    int      client_no_context_takeover;
} parley_ws_deflate_params_t;

/* Fills cfg with the defaults above (context takeover both ways). */
void parley_ws_deflate_config_default(parley_ws_deflate_config_t *cfg);

/*
 * Reads a Sec-WebSocket-Extensions value (RFC 6455 9.1: a comma list of
 * offers, each a token and ";"-separated parameters with optional token or
 * quoted-string values) and accepts the first permessage-deflate offer we
 * can honour.  An offer is declined (RFC 7692 5, 7.1) when it has an
 * unknown parameter, a parameter twice, a value where none belongs or a
 * missing or invalid one (window bits: a decimal 8-15, no leading zero;
 * server_max_window_bits needs one, client_max_window_bits may go
 * without), or asks for server_max_window_bits=8 (zlib cannot compress
 * with a 256-byte window).  Other extensions are skipped.  Several header
 * lines are several calls, or one value joined with ", ".
 *
 * On ACCEPT, *out holds the agreed parameters and resp[0..*resp_len) the
 * response value (no NUL), e.g. "permessage-deflate;
 * server_max_window_bits=10; client_max_window_bits=10".  resp_cap must be
 * at least PARLEY_WS_DEFLATE_RESPONSE_MAX.
 */
int parley_ws_deflate_negotiate(const char *value, size_t len,
                                const parley_ws_deflate_config_t *cfg,
                                parley_ws_deflate_params_t *out, char *resp,
                                size_t resp_cap, size_t *resp_len);

/* ---- allocation -------------------------------------------------------- */

/*
 * Where zlib's memory comes from: malloc/free when alloc is NULL, else the
 * caller's functions (zlib's alloc_func/free_func contract: return NULL on
 * failure).  zlib allocates in init (deflater) or at the first output
 * (inflater's window) and frees in *_free: never per message.
 */
typedef struct {
    void *(*alloc)(void *opaque, unsigned items, unsigned size);
    void  (*free)(void *opaque, void *ptr);
    void   *opaque;
} parley_ws_deflate_alloc_t;

/* ---- inflater ---------------------------------------------------------- */

typedef struct {
    z_stream                  z;
    parley_ws_deflate_alloc_t alloc;
    unsigned                  window_bits;
    int                       no_context_takeover;
    int                       ready;  /* z is initialised */
    int                       broken; /* a message failed: state unusable */
} parley_ws_inflater_t;

/*
 * window_bits 8-15 (8 is raised to 9, which reads anything 8 wrote); no
 * context takeover resets the window after every message.  Returns 0, or
 * -1 for bad arguments or no memory (then *inf needs no free).
 */
int parley_ws_inflater_init(parley_ws_inflater_t *inf, unsigned window_bits,
                            int no_context_takeover,
                            const parley_ws_deflate_alloc_t *alloc);

void parley_ws_inflater_free(parley_ws_inflater_t *inf);

/*
 * Inflates in[0..len), the next compressed bytes of a message (the
 * reader's DATA slices, in order), appending to out[*out_len..cap): out is
 * the message buffer and cap the most inflated bytes a message may have.
 * Returns 0, or a close code: 1009 as soon as the message would exceed
 * cap, 1007 for invalid DEFLATE data, 1011 for zlib failures.  With utf8
 * non-NULL (text messages), the new output is validated on the way: 1007
 * at the first byte that makes it invalid.  After an error the inflater is
 * broken (the connection is to be closed anyway): every call returns 1011.
 */
int parley_ws_inflate(parley_ws_inflater_t *inf, const unsigned char *in,
                      size_t len, unsigned char *out, size_t cap,
                      size_t *out_len, parley_ws_utf8_t *utf8);

/*
 * Ends the message (at the reader's MESSAGE_END): inflates the
 * 0x00 0x00 0xff 0xff tail RFC 7692 7.2.2 removes from the wire, checks
 * that a text message ends on a code point boundary, and resets the window
 * under no context takeover.  Same returns as parley_ws_inflate.
 */
int parley_ws_inflate_end(parley_ws_inflater_t *inf, unsigned char *out,
                          size_t cap, size_t *out_len,
                          parley_ws_utf8_t *utf8);

/* ---- deflater ---------------------------------------------------------- */

typedef struct {
    z_stream                  z;
    parley_ws_deflate_alloc_t alloc;
    int                       no_context_takeover;
    int                       ready;
} parley_ws_deflater_t;

/*
 * window_bits 9-15, mem_level 1-9, level -1..9.  Returns 0, or -1 for bad
 * arguments or no memory (then *def needs no free).
 */
int parley_ws_deflater_init(parley_ws_deflater_t *def, unsigned window_bits,
                            unsigned mem_level, int level,
                            int no_context_takeover,
                            const parley_ws_deflate_alloc_t *alloc);

void parley_ws_deflater_free(parley_ws_deflater_t *def);

/*
 * An output size that always suffices for a message of len bytes (0 when
 * len is too large to count).
 */
size_t parley_ws_deflate_bound(size_t len);

/*
 * Compresses a whole message in[0..len) into out (cap bytes) as the
 * payload of an RSV1 message: flushed to a byte boundary and without the
 * 0x00 0x00 0xff 0xff tail (RFC 7692 7.2.1).  *out_len gets the length.
 * Returns 0; -1 when cap is too small (use parley_ws_deflate_bound) or
 * zlib fails: then the compressor was reset (the peer's window may hold
 * more than ours, which is harmless) and the message may be sent
 * uncompressed.
 */
int parley_ws_deflate_message(parley_ws_deflater_t *def,
                              const unsigned char *in, size_t len,
                              unsigned char *out, size_t cap,
                              size_t *out_len);

#endif
