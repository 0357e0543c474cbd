/*
 * WebSocket framing, server side (RFC 6455 section 5), over caller buffers.
 *
 * Three layers, each usable alone:
 *
 *   - the parser (parley_ws_parse): an incremental state machine over the
 *     wire bytes.  It accepts input in chunks of any size (one byte at a
 *     time works) and reports frame headers and payload slices that point
 *     into the caller's input; it copies nothing and does not unmask.  It
 *     checks only the length encoding (minimal, top bit clear);
 *
 *   - the reader (parley_ws_read): a message assembler on top of the
 *     parser that enforces what RFC 6455 and RFC 7692 demand of a client's
 *     frames (masking, RSV bits, opcodes, control frames, fragmentation,
 *     the caller's size limits, UTF-8 of text messages and close reasons,
 *     close codes) and answers a violation with the close code to send.
 *     It unmasks data payloads in place in the caller's buffer and control
 *     payloads into its own 125-byte buffer;
 *
 *   - the writer (parley_ws_write_*): unmasked server frames into a caller
 *     buffer whose exact size parley_ws_frame_len gives.
 *
 * Nothing here allocates, performs I/O or keeps global state.  Every
 * function reads only the bytes it is given.  docs/websocket-framing.md
 * lists the checks and the close codes.
 */
#ifndef PARLEY_WS_H
#define PARLEY_WS_H

#include <stddef.h>
#include <stdint.h>

/* ---- opcodes, flags, close codes --------------------------------------- */

#define PARLEY_WS_OP_CONT   0x0
#define PARLEY_WS_OP_TEXT   0x1
#define PARLEY_WS_OP_BINARY 0x2
#define PARLEY_WS_OP_CLOSE  0x8
#define PARLEY_WS_OP_PING   0x9
#define PARLEY_WS_OP_PONG   0xa

/* flags for parley_ws_write_header and parley_ws_write_frame */
#define PARLEY_WS_FIN  0x80
#define PARLEY_WS_RSV1 0x40 /* "compressed" under permessage-deflate */

#define PARLEY_WS_CLOSE_NORMAL         1000
#define PARLEY_WS_CLOSE_GOING_AWAY     1001
#define PARLEY_WS_CLOSE_PROTOCOL_ERROR 1002
#define PARLEY_WS_CLOSE_UNSUPPORTED    1003
#define PARLEY_WS_CLOSE_NO_STATUS      1005 /* never on the wire */
#define PARLEY_WS_CLOSE_ABNORMAL       1006 /* never on the wire */
#define PARLEY_WS_CLOSE_INVALID_DATA   1007
#define PARLEY_WS_CLOSE_POLICY         1008
#define PARLEY_WS_CLOSE_TOO_BIG        1009
#define PARLEY_WS_CLOSE_EXTENSION      1010
#define PARLEY_WS_CLOSE_INTERNAL       1011

/* a control frame's payload is at most this long (RFC 6455 5.5) */
#define PARLEY_WS_CONTROL_MAX 125
/* a close reason is at most this long: 125 minus the 2-byte code */
#define PARLEY_WS_REASON_MAX 123
/* the longest frame header: 2 + 8 (length) + 4 (mask key) */
#define PARLEY_WS_HEADER_MAX 14
/* the largest payload length the wire format can carry */
#define PARLEY_WS_PAYLOAD_MAX ((uint64_t) INT64_MAX)

/*
 * 1 when code may appear in a close frame (RFC 6455 7.4): 1000-1003,
 * 1007-1011 and 3000-4999.  1004-1006 and 1015 are reserved and never sent;
 * 1012-1014 (registered with IANA after the RFC) and everything else are
 * refused too, as RFC 6455 7.4.1 defines them and as Autobahn tests.
 */
int parley_ws_close_code_valid(unsigned code);

/*
 * The IANA name of a close code ("Normal Closure", ...), "Registered" for
 * 3000-3999 without a name here, "Private Use" for 4000-4999, NULL for the
 * rest.  For logs and docs.
 */
const char *parley_ws_close_name(unsigned code);

typedef struct {
    uint16_t    code;
    uint8_t     on_wire; /* parley_ws_close_code_valid(code) */
    const char *name;
} parley_ws_close_info_t;

/* The table behind parley_ws_close_name (1000-1015), ascending; *n entries. */
const parley_ws_close_info_t *parley_ws_close_table(size_t *n);

/* ---- UTF-8, incrementally ---------------------------------------------- */

/*
 * An incremental UTF-8 validator (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF).  Input may be cut anywhere, also inside a code
 * point.  It fails at the first byte after which no continuation could make
 * the text valid.  Zero-initialised (or parley_ws_utf8_init) means "at a
 * code point boundary".
 */
typedef struct {
    uint8_t need; /* continuation bytes still expected */
    uint8_t lo;   /* bounds of the next continuation byte */
    uint8_t hi;
} parley_ws_utf8_t;

void parley_ws_utf8_init(parley_ws_utf8_t *u);

/*
 * Validates s[0..len) as the continuation of what u has seen.  Returns len
 * when every byte is acceptable so far, else the offset of the first byte
 * that makes the text invalid (u is then left unchanged by the bad byte and
 * must not be fed again).
 */
size_t parley_ws_utf8_feed(parley_ws_utf8_t *u, const unsigned char *s,
                           size_t len);

/* 1 when u stands at a code point boundary (the text may end here). */
int parley_ws_utf8_complete(const parley_ws_utf8_t *u);

/* 1 when s[0..len) is entirely valid UTF-8. */
int parley_ws_utf8_valid(const unsigned char *s, size_t len);

/* ---- masking ----------------------------------------------------------- */

/*
 * XORs src[0..len) with key and writes the result to dst (dst == src
 * unmasks in place; otherwise the ranges must not overlap).  offset is the
 * position of src[0] in the frame's payload, so that a payload delivered in
 * slices is unmasked slice by slice.
 */
void parley_ws_unmask(unsigned char *dst, const unsigned char *src,
                      size_t len, const unsigned char key[4],
                      uint64_t offset);

/* ---- parser ------------------------------------------------------------ */

typedef struct {
    uint64_t      len;     /* payload length */
    unsigned char mask[4]; /* masking key when masked */
    uint8_t       opcode;  /* 0x0-0xf, not checked here */
    uint8_t       fin;
    uint8_t       rsv1;
    uint8_t       rsv2;
    uint8_t       rsv3;
    uint8_t       masked;
} parley_ws_header_t;

typedef enum {
    PARLEY_WS_PARSE_AGAIN = 0, /* all input consumed; give more */
    PARLEY_WS_PARSE_HEADER,    /* p->header is the next frame's header */
    PARLEY_WS_PARSE_PAYLOAD,   /* ev->data/len: a slice of the payload */
    PARLEY_WS_PARSE_FRAME_END, /* the frame's payload is complete */
    PARLEY_WS_PARSE_ERROR      /* ev->close_code; sticky */
} parley_ws_parse_rc_t;

typedef struct {
    parley_ws_parse_rc_t type;
    uint16_t             close_code; /* PARSE_ERROR: always 1002 */
    const unsigned char *data;       /* PARSE_PAYLOAD: inside the input */
    size_t               len;
    uint64_t             offset; /* position of data[0] in the payload */
} parley_ws_parse_event_t;

typedef struct {
    parley_ws_header_t header;
    uint64_t           done; /* payload bytes reported so far */
    unsigned char      hdr[PARLEY_WS_HEADER_MAX];
    uint8_t            hdr_have;
    uint8_t            hdr_need;
    uint8_t            state;
} parley_ws_parser_t;

void parley_ws_parser_init(parley_ws_parser_t *p);

/*
 * Consumes in[0..len) up to the next event, stores it in *ev and returns
 * the number of bytes consumed (never more than len).  PARSE_AGAIN comes
 * only once every byte is consumed.  PARSE_HEADER and PARSE_FRAME_END may
 * come with nothing consumed, even for len == 0: call again until
 * PARSE_AGAIN.  Every frame yields HEADER, zero or more non-empty PAYLOAD
 * slices and FRAME_END, whatever the chunking of the input.  A length
 * encoded in more bytes than needed, or a 64-bit length with the top bit
 * set, is an error (1002), reported as soon as the length bytes are in.
 */
size_t parley_ws_parse(parley_ws_parser_t *p, const unsigned char *in,
                       size_t len, parley_ws_parse_event_t *ev);

/* ---- reader: messages from a client ------------------------------------ */

/* flags for parley_ws_reader_init */
#define PARLEY_WS_READ_DEFLATE 0x1 /* permessage-deflate negotiated */

typedef enum {
    PARLEY_WS_READ_AGAIN = 0,      /* all input consumed; give more */
    PARLEY_WS_READ_MESSAGE_START,  /* ev->opcode TEXT/BINARY, ev->compressed */
    PARLEY_WS_READ_DATA,           /* ev->data/len: unmasked payload bytes */
    PARLEY_WS_READ_MESSAGE_END,    /* the data message is complete */
    PARLEY_WS_READ_PING,           /* ev->data/len: the payload */
    PARLEY_WS_READ_PONG,           /* ev->data/len: the payload */
    PARLEY_WS_READ_CLOSE,          /* ev->close_code, ev->data/len: reason */
    PARLEY_WS_READ_ERROR           /* ev->close_code: close with it; sticky */
} parley_ws_read_rc_t;

typedef struct {
    parley_ws_read_rc_t type;
    uint8_t             opcode;     /* MESSAGE_START..END */
    uint8_t             compressed; /* MESSAGE_START..END: RSV1 was set */
    uint16_t            close_code; /* CLOSE (1005: none given), ERROR */
    const unsigned char *data;      /* DATA: inside the caller's buffer */
    size_t              len;        /* PING/PONG/CLOSE: inside the reader */
} parley_ws_read_event_t;

typedef struct {
    parley_ws_parser_t parser;
    uint64_t           max_frame;   /* data frame payload limit */
    uint64_t           max_message; /* data message payload limit */
    uint64_t           msg_len;     /* payload bytes of the open message */
    parley_ws_utf8_t   utf8;
    unsigned           flags;
    uint16_t           error;
    uint8_t            state;
    uint8_t            msg_opcode; /* 0: no data message open */
    uint8_t            msg_compressed;
    uint8_t            ctrl_len;
    unsigned char      ctrl[PARLEY_WS_CONTROL_MAX];
} parley_ws_reader_t;

/*
 * max_frame bounds the payload of each data frame and max_message the sum
 * of the payloads of a data message's frames (for a compressed message,
 * its compressed size; the inflated size is bounded by the inflater).  A
 * header announcing more is refused at once with 1009, before its payload
 * is read.  0 allows only empty payloads: there is no "unlimited".
 */
void parley_ws_reader_init(parley_ws_reader_t *r, uint64_t max_frame,
                           uint64_t max_message, unsigned flags);

/*
 * Consumes buf[0..len) up to the next event, stores it in *ev and returns
 * the number of bytes consumed.  Data payloads are unmasked in place in
 * buf, and ev->data points there (it stays valid as long as buf does);
 * empty slices are never reported.  PING, PONG and CLOSE payloads are
 * unmasked into the reader and stay valid until the next call.  READ_AGAIN
 * comes only once every byte is consumed; other events may come with
 * nothing consumed: call again until READ_AGAIN (or until ERROR/CLOSE).
 *
 * Text messages that are not compressed are checked for UTF-8 on the fly:
 * the valid prefix of a slice is delivered, then READ_ERROR 1007.  The
 * bytes of a compressed message are delivered as they came (compressed);
 * the inflater checks the text (parley_ws_deflate.h).
 *
 * After READ_CLOSE the reader discards further input (RFC 6455 5.5.1: the
 * peer sends nothing after a close frame; what it sends is ignored).
 * After READ_ERROR it consumes nothing and repeats the error.
 */
size_t parley_ws_read(parley_ws_reader_t *r, unsigned char *buf, size_t len,
                      parley_ws_read_event_t *ev);

/* ---- writer: server frames (unmasked) ---------------------------------- */

/* Header bytes for a payload of len bytes: 2, 4 or 10. */
size_t parley_ws_header_len(uint64_t len);

/* Exact size of a whole frame, or 0 when len cannot be framed or counted. */
size_t parley_ws_frame_len(size_t len);

/* Exact size of a close frame with a reason of reason_len bytes (code 0: 2). */
size_t parley_ws_close_frame_len(unsigned code, size_t reason_len);

/*
 * Writes a frame header into dst (cap bytes) and returns its length, or 0
 * when cap is too small or the frame would be invalid: an opcode outside
 * 0-2 and 8-10, a flag other than FIN and RSV1, a control frame that is
 * fragmented, compressed or longer than 125 bytes, RSV1 on a continuation
 * frame, len above PARLEY_WS_PAYLOAD_MAX.  For writev: header here, payload
 * from where it lies.
 */
size_t parley_ws_write_header(unsigned char *dst, size_t cap, unsigned opcode,
                              unsigned flags, uint64_t len);

/*
 * Writes header and payload (same rules) and returns the frame's length,
 * or 0.  The payload is copied as is: text frames are the caller's to keep
 * valid UTF-8, RSV1 frames the caller's to compress.
 */
size_t parley_ws_write_frame(unsigned char *dst, size_t cap, unsigned opcode,
                             unsigned flags, const void *payload, size_t len);

/*
 * Writes a close frame: code 0 writes an empty payload (no status); any
 * other code must satisfy parley_ws_close_code_valid and the reason (may be
 * NULL when reason_len is 0) must be valid UTF-8 of at most 123 bytes.
 * Returns the frame's length, or 0 when any of that fails or cap is short.
 */
size_t parley_ws_write_close(unsigned char *dst, size_t cap, unsigned code,
                             const char *reason, size_t reason_len);

#endif
