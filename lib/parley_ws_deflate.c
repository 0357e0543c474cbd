#define ZLIB_CONST /* next_in is const: we never write through it */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parley_ws_deflate.h"

/* ---- negotiation ------------------------------------------------------- */

void parley_ws_deflate_config_default(parley_ws_deflate_config_t *cfg)
{
    cfg->server_max_window_bits = PARLEY_WS_DEFLATE_SERVER_BITS;
    cfg->client_max_window_bits = PARLEY_WS_DEFLATE_CLIENT_BITS;
    cfg->mem_level = PARLEY_WS_DEFLATE_MEM_LEVEL;
    cfg->level = Z_DEFAULT_COMPRESSION;
    cfg->server_no_context_takeover = 0;
    cfg->client_no_context_takeover = 0;
}

/* RFC 7230 3.2.6 tchar */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct {
    const unsigned char *s;
    size_t               len;
    size_t               pos;
} cursor_t;

static int cur_at(const cursor_t *c, unsigned char ch)
{
    return c->pos < c->len && c->s[c->pos] == ch;
}

static void skip_ows(cursor_t *c)
{
    while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t')) {
        c->pos++;
    }
}

/* Takes a token; returns its length (0: none there). */
static size_t take_token(cursor_t *c, const unsigned char **tok)
{
    size_t start = c->pos;

    while (c->pos < c->len && is_tchar(c->s[c->pos])) {
        c->pos++;
    }
    *tok = c->s + start;
    return c->pos - start;
}

/*
 * Takes a quoted-string (RFC 7230 3.2.6) and unescapes it into val (cap
 * bytes); *vlen gets the full unescaped length even when it did not fit.
 * Returns -1 on a syntax error (bad character, unterminated).
 */
static int take_quoted(cursor_t *c, unsigned char *val, size_t cap,
                       size_t *vlen)
{
    unsigned char ch;
    size_t        n = 0;

    c->pos++; /* the opening quote */
    while (c->pos < c->len) {
        ch = c->s[c->pos++];
        if (ch == '"') {
            *vlen = n;
            return 0;
        }
        if (ch == '\\') {
            if (c->pos >= c->len) {
                return -1;
            }
            ch = c->s[c->pos++];
            if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
                return -1;
            }
        } else if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
            return -1;
        }
        if (n < cap) {
            val[n] = ch;
        }
        n++;
    }
    return -1;
}

static int name_is(const unsigned char *s, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp((const char *) s, name, len) == 0;
}

/* RFC 7692 7.1.2: 1*DIGIT, 8-15, no leading zero; -1 otherwise */
static int window_bits(const unsigned char *v, size_t len)
{
    if (len == 1 && v[0] >= '8' && v[0] <= '9') {
        return v[0] - '0';
    }
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        return 10 + (v[1] - '0');
    }
    return -1;
}

typedef struct {
    int      bad;         /* declined: invalid parameter */
    int      snct, cnct;  /* *_no_context_takeover present */
    int      sbits_seen;
    int      cbits_seen;
    unsigned sbits;       /* server_max_window_bits value */
    unsigned cbits;       /* client_max_window_bits value, 0: no value */
} offer_t;

static void offer_param(offer_t *o, const unsigned char *name, size_t nlen,
                        int has_value, const unsigned char *val, size_t vlen)
{
    int bits;

    if (name_is(name, nlen, "server_no_context_takeover")) {
        if (o->snct || has_value) {
            o->bad = 1;
        }
        o->snct = 1;
    } else if (name_is(name, nlen, "client_no_context_takeover")) {
        if (o->cnct || has_value) {
            o->bad = 1;
        }
        o->cnct = 1;
    } else if (name_is(name, nlen, "server_max_window_bits")) {
        bits = has_value ? window_bits(val, vlen) : -1;
        if (o->sbits_seen || bits < 0) {
            o->bad = 1;
        }
        o->sbits_seen = 1;
        o->sbits = bits < 0 ? 0 : (unsigned) bits;
    } else if (name_is(name, nlen, "client_max_window_bits")) {
        bits = has_value ? window_bits(val, vlen) : 0;
        if (o->cbits_seen || bits < 0) {
            o->bad = 1;
        }
        o->cbits_seen = 1;
        o->cbits = bits < 0 ? 0 : (unsigned) bits;
    } else {
        o->bad = 1; /* not defined for use in an offer */
    }
}

static int config_ok(const parley_ws_deflate_config_t *cfg)
{
    return cfg->server_max_window_bits >= 9 && cfg->server_max_window_bits <= 15
           && cfg->client_max_window_bits >= 8
           && cfg->client_max_window_bits <= 15 && cfg->mem_level >= 1
           && cfg->mem_level <= 9 && cfg->level >= -1 && cfg->level <= 9;
}

/* Decides on a valid offer; 1 when we accept it (and fill out, resp). */
static int offer_accept(const offer_t *o, const parley_ws_deflate_config_t *cfg,
                        parley_ws_deflate_params_t *out, char *resp,
                        size_t *resp_len)
{
    unsigned sbits, cbits = 0;
    int      n;

    if (o->sbits_seen && o->sbits < 9) {
        return 0; /* zlib has no raw deflate with a 256-byte window */
    }
    sbits = cfg->server_max_window_bits;
    if (o->sbits_seen && o->sbits < sbits) {
        sbits = o->sbits;
    }
    if (o->cbits_seen) {
        cbits = cfg->client_max_window_bits;
        if (o->cbits != 0 && o->cbits < cbits) {
            cbits = o->cbits;
        }
    }

    out->server_window_bits = sbits;
    /* without the parameter the client may use up to 15 bits (7.1.2.2) */
    out->client_window_bits = o->cbits_seen ? (cbits < 9 ? 9 : cbits) : 15;
    out->mem_level = cfg->mem_level;
    out->level = cfg->level;
    out->server_no_context_takeover = o->snct
                                      || cfg->server_no_context_takeover;
    out->client_no_context_takeover = o->cnct
                                      || cfg->client_no_context_takeover;

    n = snprintf(resp, PARLEY_WS_DEFLATE_RESPONSE_MAX + 1,
                 "permessage-deflate%s%s; server_max_window_bits=%u",
                 out->server_no_context_takeover
                     ? "; server_no_context_takeover" : "",
                 out->client_no_context_takeover
                     ? "; client_no_context_takeover" : "",
                 sbits);
    if (n < 0 || (size_t) n > PARLEY_WS_DEFLATE_RESPONSE_MAX) {
        return 0;
    }
    if (o->cbits_seen) {
        int m = snprintf(resp + n, PARLEY_WS_DEFLATE_RESPONSE_MAX + 1 - n,
                         "; client_max_window_bits=%u", cbits);
        if (m < 0 || (size_t) (n + m) > PARLEY_WS_DEFLATE_RESPONSE_MAX) {
            return 0;
        }
        n += m;
    }
    *resp_len = (size_t) n;
    return 1;
}

int parley_ws_deflate_negotiate(const char *value, size_t len,
                                const parley_ws_deflate_config_t *cfg,
                                parley_ws_deflate_params_t *out, char *resp,
                                size_t resp_cap, size_t *resp_len)
{
    /* +1: snprintf's NUL, never part of the answer */
    char                 answer[PARLEY_WS_DEFLATE_RESPONSE_MAX + 1];
    size_t               answer_len = 0;
    parley_ws_deflate_params_t agreed;
    cursor_t             c;
    offer_t              o;
    const unsigned char *name, *pname, *val;
    unsigned char        qval[4];
    size_t               nlen, plen, vlen;
    int                  accepted = 0, is_pmd, has_value;

    *resp_len = 0;
    if (!config_ok(cfg) || resp_cap < PARLEY_WS_DEFLATE_RESPONSE_MAX) {
        return PARLEY_WS_DEFLATE_EINVAL;
    }

    c.s = (const unsigned char *) value;
    c.len = value == NULL ? 0 : len;
    c.pos = 0;

    /* the whole value is parsed, so that a syntax error anywhere counts */
    for (;;) {
        skip_ows(&c);
        if (c.pos >= c.len) {
            break;
        }
        if (cur_at(&c, ',')) {
            c.pos++; /* empty list element (RFC 7230 7) */
            continue;
        }

        nlen = take_token(&c, &name);
        if (nlen == 0) {
            return PARLEY_WS_DEFLATE_MALFORMED;
        }
        is_pmd = name_is(name, nlen, "permessage-deflate");
        memset(&o, 0, sizeof(o));

        for (;;) {
            skip_ows(&c);
            if (c.pos >= c.len || cur_at(&c, ',')) {
                break;
            }
            if (!cur_at(&c, ';')) {
                return PARLEY_WS_DEFLATE_MALFORMED;
            }
            c.pos++;
            skip_ows(&c);
            plen = take_token(&c, &pname);
            if (plen == 0) {
                return PARLEY_WS_DEFLATE_MALFORMED;
            }
            skip_ows(&c);
            has_value = 0;
            val = NULL;
            vlen = 0;
            if (cur_at(&c, '=')) {
                c.pos++;
                skip_ows(&c);
                if (cur_at(&c, '"')) {
                    if (take_quoted(&c, qval, sizeof(qval), &vlen) != 0) {
                        return PARLEY_WS_DEFLATE_MALFORMED;
                    }
                    /* longer than qval: not a valid value of ours anyway */
                    val = qval;
                    if (vlen > sizeof(qval)) {
                        vlen = sizeof(qval);
                    }
                } else {
                    vlen = take_token(&c, &val);
                    if (vlen == 0) {
                        return PARLEY_WS_DEFLATE_MALFORMED;
                    }
                }
                has_value = 1;
            }
            if (is_pmd) {
                offer_param(&o, pname, plen, has_value, val, vlen);
            }
        }

        if (is_pmd && !o.bad && !accepted) {
            accepted = offer_accept(&o, cfg, &agreed, answer, &answer_len);
        }
    }

    if (!accepted) {
        return PARLEY_WS_DEFLATE_DECLINE;
    }
    *out = agreed;
    memcpy(resp, answer, answer_len);
    *resp_len = answer_len;
    return PARLEY_WS_DEFLATE_ACCEPT;
}

/* ---- allocation -------------------------------------------------------- */

static voidpf default_alloc(voidpf opaque, uInt items, uInt size)
{
    (void) opaque;
    return calloc(items, size);
}

static void default_free(voidpf opaque, voidpf ptr)
{
    (void) opaque;
    free(ptr);
}

static void set_alloc(z_stream *z, parley_ws_deflate_alloc_t *mine,
                      const parley_ws_deflate_alloc_t *alloc)
{
    if (alloc != NULL && alloc->alloc != NULL && alloc->free != NULL) {
        *mine = *alloc;
    } else {
        mine->alloc = default_alloc;
        mine->free = default_free;
        mine->opaque = NULL;
    }
    z->zalloc = mine->alloc;
    z->zfree = mine->free;
    z->opaque = mine->opaque;
}

/* ---- inflater ---------------------------------------------------------- */

int parley_ws_inflater_init(parley_ws_inflater_t *inf, unsigned window_bits,
                            int no_context_takeover,
                            const parley_ws_deflate_alloc_t *alloc)
{
    memset(inf, 0, sizeof(*inf));
    if (window_bits < 8 || window_bits > 15) {
        return -1;
    }
    if (window_bits < 9) {
        window_bits = 9; /* a larger window reads whatever a smaller wrote */
    }
    set_alloc(&inf->z, &inf->alloc, alloc);
    if (inflateInit2(&inf->z, -(int) window_bits) != Z_OK) {
        return -1;
    }
    inf->window_bits = window_bits;
    inf->no_context_takeover = no_context_takeover != 0;
    inf->ready = 1;
    return 0;
}

void parley_ws_inflater_free(parley_ws_inflater_t *inf)
{
    if (inf->ready) {
        inflateEnd(&inf->z);
        inf->ready = 0;
    }
}

static int inflate_fail(parley_ws_inflater_t *inf, int code)
{
    inf->broken = 1;
    return code;
}

/*
 * Runs zlib over in[0..len) until it can make no more progress, which
 * also drains output zlib held back for want of room.  Every call to
 * inflate() either consumes input or produces output (else the loop ends),
 * and output is bounded by cap + 1 byte, so the work is bounded by the
 * input plus the cap.  Once out is full, output goes to a one-byte scratch
 * buffer: a byte there means the message exceeds the cap.
 */
static int inflate_run(parley_ws_inflater_t *inf, const unsigned char *in,
                       size_t len, unsigned char *out, size_t cap,
                       size_t *out_len, parley_ws_utf8_t *utf8)
{
    z_stream     *z = &inf->z;
    unsigned char scratch[1];
    uInt          give_in, give_out;
    size_t        consumed, produced, ok;
    int           rc, full;

    if (!inf->ready || inf->broken || *out_len > cap) {
        return inflate_fail(inf, PARLEY_WS_CLOSE_INTERNAL);
    }

    for (;;) {
        give_in = len > UINT_MAX ? UINT_MAX : (uInt) len;
        z->next_in = in;
        z->avail_in = give_in;

        full = *out_len == cap;
        if (full) {
            z->next_out = scratch;
            give_out = 1;
        } else {
            z->next_out = out + *out_len;
            give_out = cap - *out_len > UINT_MAX ? UINT_MAX
                                                 : (uInt) (cap - *out_len);
        }
        z->avail_out = give_out;

        rc = inflate(z, Z_SYNC_FLUSH);

        consumed = give_in - z->avail_in;
        produced = give_out - z->avail_out;
        if (consumed > 0) {
            in += consumed;
            len -= consumed;
        }

        if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
            return inflate_fail(inf, PARLEY_WS_CLOSE_INVALID_DATA);
        }
        if (rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR) {
            return inflate_fail(inf, PARLEY_WS_CLOSE_INTERNAL);
        }
        if (produced > 0) {
            if (full) {
                return inflate_fail(inf, PARLEY_WS_CLOSE_TOO_BIG);
            }
            if (utf8 != NULL) {
                ok = parley_ws_utf8_feed(utf8, out + *out_len, produced);
                if (ok < produced) {
                    return inflate_fail(inf, PARLEY_WS_CLOSE_INVALID_DATA);
                }
            }
            *out_len += produced;
        }
        if (rc == Z_STREAM_END) {
            /*
             * A block with BFINAL set ended the DEFLATE stream (RFC 7692
             * 7.2.3.4).  What follows, at least the tail we append, is a
             * new stream; the sender's history ended with its stream, so
             * ours does too.  inflateReset keeps the allocated window.
             */
            if (inflateReset(z) != Z_OK) {
                return inflate_fail(inf, PARLEY_WS_CLOSE_INTERNAL);
            }
            continue;
        }
        if (consumed == 0 && produced == 0) {
            return 0; /* needs more input (or has nothing left to give) */
        }
    }
}

int parley_ws_inflate(parley_ws_inflater_t *inf, const unsigned char *in,
                      size_t len, unsigned char *out, size_t cap,
                      size_t *out_len, parley_ws_utf8_t *utf8)
{
    return inflate_run(inf, in, len, out, cap, out_len, utf8);
}

int parley_ws_inflate_end(parley_ws_inflater_t *inf, unsigned char *out,
                          size_t cap, size_t *out_len,
                          parley_ws_utf8_t *utf8)
{
    static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };
    int                        rc;

    rc = inflate_run(inf, tail, sizeof(tail), out, cap, out_len, utf8);
    if (rc != 0) {
        return rc;
    }
    if (utf8 != NULL && !parley_ws_utf8_complete(utf8)) {
        return inflate_fail(inf, PARLEY_WS_CLOSE_INVALID_DATA);
    }
    if (inf->no_context_takeover && inflateReset(&inf->z) != Z_OK) {
        return inflate_fail(inf, PARLEY_WS_CLOSE_INTERNAL);
    }
    return 0;
}

/* ---- deflater ---------------------------------------------------------- */

int parley_ws_deflater_init(parley_ws_deflater_t *def, unsigned window_bits,
                            unsigned mem_level, int level,
                            int no_context_takeover,
                            const parley_ws_deflate_alloc_t *alloc)
{
    memset(def, 0, sizeof(*def));
    if (window_bits < 9 || window_bits > 15 || mem_level < 1 || mem_level > 9
        || level < -1 || level > 9)
    {
        return -1;
    }
    set_alloc(&def->z, &def->alloc, alloc);
    if (deflateInit2(&def->z, level, Z_DEFLATED, -(int) window_bits,
                     (int) mem_level, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        return -1;
    }
    def->no_context_takeover = no_context_takeover != 0;
    def->ready = 1;
    return 0;
}

void parley_ws_deflater_free(parley_ws_deflater_t *def)
{
    if (def->ready) {
        deflateEnd(&def->z);
        def->ready = 0;
    }
}

size_t parley_ws_deflate_bound(size_t len)
{
    /*
     * zlib's conservative bound for non-default parameters (deflateBound:
     * len + len/8 + len/64 + 5, covering stored blocks at any memLevel),
     * plus the sync flush's empty stored block and the bits before it.
     */
    if (len > SIZE_MAX / 2) {
        return 0;
    }
    return len + (len >> 3) + (len >> 6) + 5 + 16;
}

static int deflate_fail(parley_ws_deflater_t *def)
{
    deflateReset(&def->z);
    return -1;
}

int parley_ws_deflate_message(parley_ws_deflater_t *def,
                              const unsigned char *in, size_t len,
                              unsigned char *out, size_t cap,
                              size_t *out_len)
{
    z_stream *z = &def->z;
    size_t    done = 0;
    uInt      give_in, give_out;
    int       flush, rc;

    *out_len = 0;
    if (!def->ready) {
        return -1;
    }

    if (len == 0) {
        /*
         * RFC 7692 7.2.3.6: an empty message is the single byte 0x00 (an
         * empty stored block once the tail is back).  zlib refuses a
         * second flush in a row, so we write it ourselves; it leaves the
         * window and the bit position as they were.
         */
        if (cap < 1) {
            return -1;
        }
        out[0] = 0x00;
        *out_len = 1;
        return 0;
    }
    if (in == NULL || out == NULL || cap == 0) {
        return -1;
    }

    for (;;) {
        give_in = len > UINT_MAX ? UINT_MAX : (uInt) len;
        flush = give_in == len ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        give_out = cap - done > UINT_MAX ? UINT_MAX : (uInt) (cap - done);

        z->next_in = in;
        z->avail_in = give_in;
        z->next_out = out + done;
        z->avail_out = give_out;

        rc = deflate(z, flush);
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return deflate_fail(def);
        }
        in += give_in - z->avail_in;
        len -= give_in - z->avail_in;
        done += give_out - z->avail_out;

        if (flush == Z_SYNC_FLUSH && z->avail_in == 0 && z->avail_out > 0) {
            break; /* flushed completely */
        }
        if (done == cap) {
            return deflate_fail(def); /* out too small */
        }
        if (rc == Z_BUF_ERROR) {
            return deflate_fail(def); /* no progress: cannot happen */
        }
    }

    if (done < 4 || memcmp(out + done - 4, "\x00\x00\xff\xff", 4) != 0) {
        return deflate_fail(def);
    }
    *out_len = done - 4;

    if (def->no_context_takeover && deflateReset(z) != Z_OK) {
        return deflate_fail(def);
    }
    return 0;
}
