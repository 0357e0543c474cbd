#include <string.h>

#include "parley_ws.h"

/* ---- close codes ------------------------------------------------------- */

static const parley_ws_close_info_t close_table[] = {
    { 1000, 1, "Normal Closure" },
    { 1001, 1, "Going Away" },
    { 1002, 1, "Protocol Error" },
    { 1003, 1, "Unsupported Data" },
    { 1004, 0, "Reserved" },
    { 1005, 0, "No Status Received" },
    { 1006, 0, "Abnormal Closure" },
    { 1007, 1, "Invalid Frame Payload Data" },
    { 1008, 1, "Policy Violation" },
    { 1009, 1, "Message Too Big" },
    { 1010, 1, "Mandatory Extension" },
    { 1011, 1, "Internal Error" },
    { 1012, 0, "Service Restart" },
    { 1013, 0, "Try Again Later" },
    { 1014, 0, "Bad Gateway" },
    { 1015, 0, "TLS Handshake" },
};

int parley_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011)
           || (code >= 3000 && code <= 4999);
}

const char *parley_ws_close_name(unsigned code)
{
    if (code >= 1000 && code <= 1015) {
        return close_table[code - 1000].name;
    }
    if (code >= 3000 && code <= 3999) {
        return "Registered";
    }
    if (code >= 4000 && code <= 4999) {
        return "Private Use";
    }
    return NULL;
}

const parley_ws_close_info_t *parley_ws_close_table(size_t *n)
{
    *n = sizeof(close_table) / sizeof(close_table[0]);
    return close_table;
}

/* ---- UTF-8 ------------------------------------------------------------- */

void parley_ws_utf8_init(parley_ws_utf8_t *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}

/*
 * The validator keeps, between calls, how many continuation bytes are due
 * and the range the next one must fall in.  The range is narrower than
 * 80..BF only right after E0 (no overlongs), ED (no surrogates), F0 (no
 * overlongs) and F4 (nothing above U+10FFFF): exactly where RFC 3629's
 * grammar narrows it, so a byte outside the range is the first point at
 * which the text can no longer be valid.
 */
size_t parley_ws_utf8_feed(parley_ws_utf8_t *u, const unsigned char *s,
                           size_t len)
{
    size_t        i = 0;
    unsigned char c;

    while (i < len) {
        c = s[i];

        if (u->need > 0) {
            if (c < u->lo || c > u->hi) {
                return i;
            }
            u->need--;
            u->lo = 0x80;
            u->hi = 0xbf;
            i++;
            continue;
        }

        if (c < 0x80) {
            i++;
            /* ASCII runs are the common case: skip them a word at a time */
            while (i + 8 <= len) {
                uint64_t w;

                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080)) {
                    break;
                }
                i += 8;
            }
            continue;
        }

        u->lo = 0x80;
        u->hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            u->need = 2;
            if (c == 0xe0) {
                u->lo = 0xa0;
            } else if (c == 0xed) {
                u->hi = 0x9f;
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            u->need = 3;
            if (c == 0xf0) {
                u->lo = 0x90;
            } else if (c == 0xf4) {
                u->hi = 0x8f;
            }
        } else {
            return i; /* 80..C1 cannot start a sequence, F5..FF never occur */
        }
        i++;
    }

    return len;
}

int parley_ws_utf8_complete(const parley_ws_utf8_t *u)
{
    return u->need == 0;
}

int parley_ws_utf8_valid(const unsigned char *s, size_t len)
{
    parley_ws_utf8_t u;

    parley_ws_utf8_init(&u);
    return parley_ws_utf8_feed(&u, s, len) == len && u.need == 0;
}

/* ---- masking ----------------------------------------------------------- */

void parley_ws_unmask(unsigned char *dst, const unsigned char *src,
                      size_t len, const unsigned char key[4],
                      uint64_t offset)
{
    unsigned char k[8];
    uint64_t      kw, w;
    size_t        i = 0, j;

    /* the key rotated so that k[0] applies to src[0] */
    for (j = 0; j < 8; j++) {
        k[j] = key[(offset + j) & 3];
    }
    memcpy(&kw, k, 8);

    for (; i + 8 <= len; i += 8) {
        memcpy(&w, src + i, 8);
        w ^= kw;
        memcpy(dst + i, &w, 8);
    }
    for (j = 0; i < len; i++, j++) {
        dst[i] = src[i] ^ k[j];
    }
}

/* ---- parser ------------------------------------------------------------ */

enum {
    PARSE_HEADER = 0,
    PARSE_PAYLOAD,
    PARSE_END,
    PARSE_ERROR
};

void parley_ws_parser_init(parley_ws_parser_t *p)
{
    memset(p, 0, sizeof(*p));
    p->hdr_need = 2;
    p->state = PARSE_HEADER;
}

/*
 * Called when the extended length is complete (or right after byte 1 for a
 * 7-bit length): decodes it and refuses the encodings RFC 6455 5.2 forbids.
 */
static int parse_length(parley_ws_parser_t *p)
{
    unsigned len7 = p->hdr[1] & 0x7f;
    uint64_t len;
    int      i;

    if (len7 < 126) {
        p->header.len = len7;
        return 0;
    }
    if (len7 == 126) {
        len = ((uint64_t) p->hdr[2] << 8) | p->hdr[3];
        if (len < 126) {
            return -1; /* would have fit in 7 bits */
        }
    } else {
        len = 0;
        for (i = 0; i < 8; i++) {
            len = (len << 8) | p->hdr[2 + i];
        }
        if (len >> 63) {
            return -1; /* the most significant bit MUST be 0 */
        }
        if (len <= 0xffff) {
            return -1; /* would have fit in 16 bits */
        }
    }
    p->header.len = len;
    return 0;
}

size_t parley_ws_parse(parley_ws_parser_t *p, const unsigned char *in,
                       size_t len, parley_ws_parse_event_t *ev)
{
    size_t   used = 0, n;
    uint64_t left;
    unsigned len7, ext;

    memset(ev, 0, sizeof(*ev));

    switch (p->state) {
    case PARSE_ERROR:
        ev->type = PARLEY_WS_PARSE_ERROR;
        ev->close_code = PARLEY_WS_CLOSE_PROTOCOL_ERROR;
        return 0;

    case PARSE_END:
        ev->type = PARLEY_WS_PARSE_FRAME_END;
        p->state = PARSE_HEADER;
        p->hdr_have = 0;
        p->hdr_need = 2;
        return 0;

    case PARSE_PAYLOAD:
        left = p->header.len - p->done;
        n = left < len ? (size_t) left : len;
        if (n == 0) {
            ev->type = PARLEY_WS_PARSE_AGAIN;
            return 0;
        }
        ev->type = PARLEY_WS_PARSE_PAYLOAD;
        ev->data = in;
        ev->len = n;
        ev->offset = p->done;
        p->done += n;
        if (p->done == p->header.len) {
            p->state = PARSE_END;
        }
        return n;

    default:
        break;
    }

    /* PARSE_HEADER: at most 14 bytes, taken one by one */
    while (used < len) {
        p->hdr[p->hdr_have++] = in[used++];

        if (p->hdr_have == 2) {
            len7 = p->hdr[1] & 0x7f;
            ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
            p->hdr_need = (uint8_t) (2 + ext + ((p->hdr[1] & 0x80) ? 4 : 0));
        }
        if (p->hdr_have >= 2) {
            len7 = p->hdr[1] & 0x7f;
            ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
            if (p->hdr_have == 2 + ext && parse_length(p) != 0) {
                p->state = PARSE_ERROR;
                ev->type = PARLEY_WS_PARSE_ERROR;
                ev->close_code = PARLEY_WS_CLOSE_PROTOCOL_ERROR;
                return used;
            }
        }
        if (p->hdr_have == p->hdr_need) {
            p->header.fin = (p->hdr[0] >> 7) & 1;
            p->header.rsv1 = (p->hdr[0] >> 6) & 1;
            p->header.rsv2 = (p->hdr[0] >> 5) & 1;
            p->header.rsv3 = (p->hdr[0] >> 4) & 1;
            p->header.opcode = p->hdr[0] & 0x0f;
            p->header.masked = (p->hdr[1] >> 7) & 1;
            if (p->header.masked) {
                memcpy(p->header.mask, p->hdr + p->hdr_need - 4, 4);
            } else {
                memset(p->header.mask, 0, 4);
            }
            p->done = 0;
            p->state = p->header.len == 0 ? PARSE_END : PARSE_PAYLOAD;
            ev->type = PARLEY_WS_PARSE_HEADER;
            return used;
        }
    }

    ev->type = PARLEY_WS_PARSE_AGAIN;
    return used;
}

/* ---- reader ------------------------------------------------------------ */

enum {
    READ_OPEN = 0,
    READ_PENDING_ERROR, /* data delivered; the error comes next call */
    READ_ERROR,
    READ_CLOSED
};

void parley_ws_reader_init(parley_ws_reader_t *r, uint64_t max_frame,
                           uint64_t max_message, unsigned flags)
{
    memset(r, 0, sizeof(*r));
    parley_ws_parser_init(&r->parser);
    parley_ws_utf8_init(&r->utf8);
    r->max_frame = max_frame;
    r->max_message = max_message;
    r->flags = flags;
    r->state = READ_OPEN;
}

static void read_fail(parley_ws_reader_t *r, parley_ws_read_event_t *ev,
                      uint16_t code)
{
    r->state = READ_ERROR;
    r->error = code;
    memset(ev, 0, sizeof(*ev));
    ev->type = PARLEY_WS_READ_ERROR;
    ev->close_code = code;
}

static int is_control(unsigned opcode)
{
    return (opcode & 0x8) != 0;
}

/*
 * The rules of RFC 6455 5.2-5.5 and RFC 7692 6 that a header alone decides.
 * Returns 0 or the close code.  Order: what makes the frame malformed
 * (1002) before what makes it too big (1009), so that a frame that is both
 * is called malformed.
 */
static uint16_t check_header(const parley_ws_reader_t *r,
                             const parley_ws_header_t *h)
{
    if (h->rsv2 || h->rsv3) {
        return PARLEY_WS_CLOSE_PROTOCOL_ERROR; /* no extension defines them */
    }

    switch (h->opcode) {
    case PARLEY_WS_OP_CONT:
    case PARLEY_WS_OP_TEXT:
    case PARLEY_WS_OP_BINARY:
    case PARLEY_WS_OP_CLOSE:
    case PARLEY_WS_OP_PING:
    case PARLEY_WS_OP_PONG:
        break;
    default:
        return PARLEY_WS_CLOSE_PROTOCOL_ERROR;
    }

    if (!h->masked) {
        return PARLEY_WS_CLOSE_PROTOCOL_ERROR; /* 5.1: clients MUST mask */
    }

    if (is_control(h->opcode)) {
        if (!h->fin || h->len > PARLEY_WS_CONTROL_MAX || h->rsv1) {
            return PARLEY_WS_CLOSE_PROTOCOL_ERROR;
        }
        return 0;
    }

    if (h->opcode == PARLEY_WS_OP_CONT) {
        if (r->msg_opcode == 0 || h->rsv1) {
            /* nothing to continue; RSV1 is for a message's first frame */
            return PARLEY_WS_CLOSE_PROTOCOL_ERROR;
        }
    } else {
        if (r->msg_opcode != 0) {
            return PARLEY_WS_CLOSE_PROTOCOL_ERROR; /* previous not finished */
        }
        if (h->rsv1 && !(r->flags & PARLEY_WS_READ_DEFLATE)) {
            return PARLEY_WS_CLOSE_PROTOCOL_ERROR;
        }
    }

    if (h->len > r->max_frame) {
        return PARLEY_WS_CLOSE_TOO_BIG;
    }
    if (h->len > r->max_message - r->msg_len) { /* msg_len <= max_message */
        return PARLEY_WS_CLOSE_TOO_BIG;
    }
    return 0;
}

/* The close frame's payload (5.5.1): empty, or a valid code and UTF-8. */
static void read_close(parley_ws_reader_t *r, parley_ws_read_event_t *ev)
{
    unsigned code;

    if (r->ctrl_len == 0) {
        ev->type = PARLEY_WS_READ_CLOSE;
        ev->close_code = PARLEY_WS_CLOSE_NO_STATUS;
        ev->data = r->ctrl;
        ev->len = 0;
        r->state = READ_CLOSED;
        return;
    }
    if (r->ctrl_len == 1) {
        read_fail(r, ev, PARLEY_WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    code = ((unsigned) r->ctrl[0] << 8) | r->ctrl[1];
    if (!parley_ws_close_code_valid(code)) {
        read_fail(r, ev, PARLEY_WS_CLOSE_PROTOCOL_ERROR);
        return;
    }
    if (!parley_ws_utf8_valid(r->ctrl + 2, r->ctrl_len - 2u)) {
        read_fail(r, ev, PARLEY_WS_CLOSE_INVALID_DATA);
        return;
    }
    ev->type = PARLEY_WS_READ_CLOSE;
    ev->close_code = (uint16_t) code;
    ev->data = r->ctrl + 2;
    ev->len = r->ctrl_len - 2u;
    r->state = READ_CLOSED;
}

size_t parley_ws_read(parley_ws_reader_t *r, unsigned char *buf, size_t len,
                      parley_ws_read_event_t *ev)
{
    parley_ws_parse_event_t   pev;
    const parley_ws_header_t *h = &r->parser.header;
    unsigned char            *p;
    size_t                    used = 0, n, ok;
    uint16_t                  code;

    memset(ev, 0, sizeof(*ev));

    switch (r->state) {
    case READ_ERROR:
    case READ_PENDING_ERROR:
        read_fail(r, ev, r->error);
        return 0;
    case READ_CLOSED:
        ev->type = PARLEY_WS_READ_AGAIN;
        return len;
    default:
        break;
    }

    if (buf == NULL) {
        len = 0; /* and no arithmetic on NULL */
    }

    for (;;) {
        n = parley_ws_parse(&r->parser, len > 0 ? buf + used : buf, len - used,
                            &pev);
        used += n;

        switch (pev.type) {
        case PARLEY_WS_PARSE_AGAIN:
            ev->type = PARLEY_WS_READ_AGAIN;
            return used;

        case PARLEY_WS_PARSE_ERROR:
            read_fail(r, ev, pev.close_code);
            return used;

        case PARLEY_WS_PARSE_HEADER:
            code = check_header(r, h);
            if (code != 0) {
                read_fail(r, ev, code);
                return used;
            }
            if (is_control(h->opcode)) {
                r->ctrl_len = 0;
                continue;
            }
            r->msg_len += h->len;
            if (h->opcode == PARLEY_WS_OP_CONT) {
                continue;
            }
            r->msg_opcode = h->opcode;
            r->msg_compressed = h->rsv1;
            parley_ws_utf8_init(&r->utf8);
            ev->type = PARLEY_WS_READ_MESSAGE_START;
            ev->opcode = r->msg_opcode;
            ev->compressed = r->msg_compressed;
            return used;

        case PARLEY_WS_PARSE_PAYLOAD:
            if (is_control(h->opcode)) {
                /* check_header bounded the total to 125 */
                parley_ws_unmask(r->ctrl + r->ctrl_len, pev.data, pev.len,
                                 h->mask, pev.offset);
                r->ctrl_len += (uint8_t) pev.len;
                continue;
            }
            /* pev.data points into buf + used - n: unmask it in place */
            p = buf + (used - n);
            parley_ws_unmask(p, p, pev.len, h->mask, pev.offset);
            ev->opcode = r->msg_opcode;
            ev->compressed = r->msg_compressed;
            if (r->msg_opcode == PARLEY_WS_OP_TEXT && !r->msg_compressed) {
                ok = parley_ws_utf8_feed(&r->utf8, p, pev.len);
                if (ok < pev.len) {
                    if (ok == 0) {
                        read_fail(r, ev, PARLEY_WS_CLOSE_INVALID_DATA);
                        return used;
                    }
                    /* deliver the valid prefix; fail on the next call */
                    r->state = READ_PENDING_ERROR;
                    r->error = PARLEY_WS_CLOSE_INVALID_DATA;
                    ev->type = PARLEY_WS_READ_DATA;
                    ev->data = p;
                    ev->len = ok;
                    return used;
                }
            }
            ev->type = PARLEY_WS_READ_DATA;
            ev->data = p;
            ev->len = pev.len;
            return used;

        case PARLEY_WS_PARSE_FRAME_END:
            if (is_control(h->opcode)) {
                switch (h->opcode) {
                case PARLEY_WS_OP_PING:
                    ev->type = PARLEY_WS_READ_PING;
                    break;
                case PARLEY_WS_OP_PONG:
                    ev->type = PARLEY_WS_READ_PONG;
                    break;
                default:
                    read_close(r, ev);
                    return used;
                }
                ev->data = r->ctrl;
                ev->len = r->ctrl_len;
                return used;
            }
            if (!h->fin) {
                continue;
            }
            ev->opcode = r->msg_opcode;
            ev->compressed = r->msg_compressed;
            if (r->msg_opcode == PARLEY_WS_OP_TEXT && !r->msg_compressed
                && !parley_ws_utf8_complete(&r->utf8))
            {
                read_fail(r, ev, PARLEY_WS_CLOSE_INVALID_DATA);
                return used;
            }
            r->msg_opcode = 0;
            r->msg_compressed = 0;
            r->msg_len = 0;
            ev->type = PARLEY_WS_READ_MESSAGE_END;
            return used;
        }
    }
}

/* ---- writer ------------------------------------------------------------ */

size_t parley_ws_header_len(uint64_t len)
{
    return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

size_t parley_ws_frame_len(size_t len)
{
    size_t h = parley_ws_header_len(len);

    if ((uint64_t) len > PARLEY_WS_PAYLOAD_MAX || len > SIZE_MAX - h) {
        return 0;
    }
    return h + len;
}

size_t parley_ws_close_frame_len(unsigned code, size_t reason_len)
{
    if (code == 0) {
        return 2;
    }
    if (reason_len > PARLEY_WS_REASON_MAX) {
        return 0;
    }
    return 2 + 2 + reason_len;
}

size_t parley_ws_write_header(unsigned char *dst, size_t cap, unsigned opcode,
                              unsigned flags, uint64_t len)
{
    size_t h = parley_ws_header_len(len), i;

    switch (opcode) {
    case PARLEY_WS_OP_CONT:
        if (flags & PARLEY_WS_RSV1) {
            return 0;
        }
        break;
    case PARLEY_WS_OP_TEXT:
    case PARLEY_WS_OP_BINARY:
        break;
    case PARLEY_WS_OP_CLOSE:
    case PARLEY_WS_OP_PING:
    case PARLEY_WS_OP_PONG:
        if (!(flags & PARLEY_WS_FIN) || (flags & PARLEY_WS_RSV1)
            || len > PARLEY_WS_CONTROL_MAX)
        {
            return 0;
        }
        break;
    default:
        return 0;
    }
    if ((flags & ~(unsigned) (PARLEY_WS_FIN | PARLEY_WS_RSV1)) != 0
        || len > PARLEY_WS_PAYLOAD_MAX || cap < h)
    {
        return 0;
    }

    dst[0] = (unsigned char) (flags | opcode);
    if (h == 2) {
        dst[1] = (unsigned char) len;
    } else if (h == 4) {
        dst[1] = 126;
        dst[2] = (unsigned char) (len >> 8);
        dst[3] = (unsigned char) len;
    } else {
        dst[1] = 127;
        for (i = 0; i < 8; i++) {
            dst[2 + i] = (unsigned char) (len >> (56 - 8 * i));
        }
    }
    return h;
}

size_t parley_ws_write_frame(unsigned char *dst, size_t cap, unsigned opcode,
                             unsigned flags, const void *payload, size_t len)
{
    size_t total = parley_ws_frame_len(len), h;

    if (total == 0 || cap < total) {
        return 0;
    }
    h = parley_ws_write_header(dst, cap, opcode, flags, len);
    if (h == 0) {
        return 0;
    }
    if (len > 0) {
        memcpy(dst + h, payload, len);
    }
    return total;
}

size_t parley_ws_write_close(unsigned char *dst, size_t cap, unsigned code,
                             const char *reason, size_t reason_len)
{
    size_t total = parley_ws_close_frame_len(code, reason_len);

    if (total == 0 || cap < total) {
        return 0;
    }
    if (code == 0) {
        if (reason_len != 0) {
            return 0; /* a reason needs a code */
        }
        return parley_ws_write_header(dst, cap, PARLEY_WS_OP_CLOSE,
                                      PARLEY_WS_FIN, 0);
    }
    if (!parley_ws_close_code_valid(code)
        || (reason_len > 0
            && !parley_ws_utf8_valid((const unsigned char *) reason,
                                     reason_len)))
    {
        return 0;
    }
    parley_ws_write_header(dst, cap, PARLEY_WS_OP_CLOSE, PARLEY_WS_FIN,
                           2 + reason_len);
    dst[2] = (unsigned char) (code >> 8);
    dst[3] = (unsigned char) code;
    if (reason_len > 0) {
        memcpy(dst + 4, reason, reason_len);
    }
    return total;
}
