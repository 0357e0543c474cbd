#include "parley_sync_state.h"

#include <string.h>

#include "parley_base64url.h"

/* ---- varints ----------------------------------------------------------- */

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (unsigned char) (v | 0x80);
        v >>= 7;
    }

    p[n++] = (unsigned char) v;

    return n;
}

/*
 * Reads a minimal LEB128 varint of at most 64 bits from *p (below end);
 * -1 when truncated, overlong or too large.
 */
static int get_varint(const unsigned char **p, const unsigned char *end,
                      uint64_t *v)
{
    const unsigned char *s = *p;
    uint64_t             r = 0;
    unsigned             shift = 0;
    unsigned char        c;

    for (;;) {
        if (s == end) {
            return -1;
        }

        c = *s++;

        if (shift == 63 && c > 1) {
            return -1; /* more than 64 bits */
        }

        r |= (uint64_t) (c & 0x7f) << shift;

        if (!(c & 0x80)) {
            /* a zero last byte after others would be an overlong form */
            if (c == 0 && shift != 0) {
                return -1;
            }
            break;
        }

        shift += 7;

        if (shift > 63) {
            return -1;
        }
    }

    *p = s;
    *v = r;

    return 0;
}

/* ---- states ------------------------------------------------------------ */

size_t parley_sync_state_encoded_max(size_t n)
{
    if (n > PARLEY_SYNC_STATE_MAX) {
        n = PARLEY_SYNC_STATE_MAX;
    }

    return 1 + 10 + n * 20;
}

int parley_sync_state_encode(const parley_sync_pos_t *pos, size_t n,
                             unsigned char *dst, size_t cap, size_t *out_len)
{
    unsigned char  tmp[20];
    uint64_t       prev = 0;
    size_t         len, k, i;

    if (n > PARLEY_SYNC_STATE_MAX) {
        return PARLEY_SYNC_EINVAL;
    }

    for (i = 0; i < n; i++) {
        if (pos[i].conversation_id == 0 || pos[i].conversation_id <= prev) {
            return PARLEY_SYNC_EINVAL;
        }
        prev = pos[i].conversation_id;
    }

    if (cap < 1) {
        return PARLEY_SYNC_ENOSPC;
    }

    dst[0] = PARLEY_SYNC_STATE_VERSION;
    len = 1;

    k = put_varint(tmp, n);
    if (cap - len < k) {
        return PARLEY_SYNC_ENOSPC;
    }
    memcpy(dst + len, tmp, k);
    len += k;

    prev = 0;

    for (i = 0; i < n; i++) {
        k = put_varint(tmp, pos[i].conversation_id - prev);
        k += put_varint(tmp + k, pos[i].event_seq);

        if (cap - len < k) {
            return PARLEY_SYNC_ENOSPC;
        }

        memcpy(dst + len, tmp, k);
        len += k;
        prev = pos[i].conversation_id;
    }

    *out_len = len;

    return PARLEY_SYNC_OK;
}

int parley_sync_state_count(const unsigned char *src, size_t len, size_t *n)
{
    const unsigned char *p, *end;
    uint64_t             count;

    if (len < 2 || src[0] != PARLEY_SYNC_STATE_VERSION) {
        return PARLEY_SYNC_EINVAL;
    }

    p = src + 1;
    end = src + len;

    if (get_varint(&p, end, &count) != 0 || count > PARLEY_SYNC_STATE_MAX
        || count * 2 > (uint64_t) (end - p))
    {
        return PARLEY_SYNC_EINVAL;
    }

    *n = (size_t) count;

    return PARLEY_SYNC_OK;
}

int parley_sync_state_decode(const unsigned char *src, size_t len,
                             parley_sync_pos_t *pos, size_t cap, size_t *n)
{
    const unsigned char *p, *end;
    uint64_t             count, delta, seq, prev;
    size_t               i;

    if (parley_sync_state_count(src, len, n) != PARLEY_SYNC_OK) {
        return PARLEY_SYNC_EINVAL;
    }

    if (*n > cap) {
        return PARLEY_SYNC_ENOSPC;
    }

    p = src + 1;
    end = src + len;
    (void) get_varint(&p, end, &count); /* checked by the count above */

    prev = 0;

    for (i = 0; i < count; i++) {
        if (get_varint(&p, end, &delta) != 0 || delta == 0
            || delta > UINT64_MAX - prev
            || get_varint(&p, end, &seq) != 0)
        {
            return PARLEY_SYNC_EINVAL;
        }

        prev += delta;
        pos[i].conversation_id = prev;
        pos[i].event_seq = seq;
    }

    if (p != end) {
        return PARLEY_SYNC_EINVAL;
    }

    return PARLEY_SYNC_OK;
}

const parley_sync_pos_t *parley_sync_state_find(const parley_sync_pos_t *pos,
                                                size_t n,
                                                uint64_t conversation_id)
{
    size_t lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (pos[mid].conversation_id == conversation_id) {
            return &pos[mid];
        }

        if (pos[mid].conversation_id < conversation_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return NULL;
}

/* ---- tokens ------------------------------------------------------------ */

static void put_be64(unsigned char *p, uint64_t v)
{
    int i;

    for (i = 7; i >= 0; i--) {
        p[i] = (unsigned char) v;
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    int      i;

    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}

int parley_sync_token_encode(uint64_t id, char *dst, size_t cap)
{
    unsigned char raw[9];
    size_t        n;

    if (id == 0) {
        return PARLEY_SYNC_EINVAL;
    }

    if (cap < PARLEY_SYNC_TOKEN_LEN + 1) {
        return PARLEY_SYNC_ENOSPC;
    }

    raw[0] = PARLEY_SYNC_TOKEN_VERSION;
    put_be64(raw + 1, id);

    if (parley_base64url_encode(raw, sizeof(raw), dst, cap, &n)
            != PARLEY_BASE64URL_OK
        || n != PARLEY_SYNC_TOKEN_LEN)
    {
        return PARLEY_SYNC_EINVAL;
    }

    dst[n] = '\0';

    return PARLEY_SYNC_OK;
}

int parley_sync_token_decode(const char *src, size_t len, uint64_t *id)
{
    unsigned char raw[9];
    size_t        n;
    uint64_t      v;

    if (len != PARLEY_SYNC_TOKEN_LEN
        || parley_base64url_decode(src, len, raw, sizeof(raw), &n)
               != PARLEY_BASE64URL_OK
        || n != sizeof(raw) || raw[0] != PARLEY_SYNC_TOKEN_VERSION)
    {
        return PARLEY_SYNC_EINVAL;
    }

    v = get_be64(raw + 1);

    if (v == 0) {
        return PARLEY_SYNC_EINVAL;
    }

    *id = v;

    return PARLEY_SYNC_OK;
}

/* ---- one sync step ----------------------------------------------------- */

static uint64_t last_readable(const parley_sync_member_t *m)
{
    if (m->active) {
        return m->event_seq;
    }

    /* banned without ever being a member: the ban is all there is */
    if (m->left_event != 0 && m->left_event == m->joined_event) {
        return 0;
    }

    return m->left_event < m->event_seq ? m->left_event : m->event_seq;
}

uint64_t parley_sync_now(const parley_sync_member_t *m)
{
    return last_readable(m);
}

void parley_sync_range(const parley_sync_member_t *m,
                       const parley_sync_pos_t *known, uint64_t window,
                       parley_sync_range_t *r)
{
    uint64_t from;

    from = m->joined_event ? m->joined_event : 1;

    if (known && known->event_seq >= from) {
        from = known->event_seq == UINT64_MAX ? UINT64_MAX
                                              : known->event_seq + 1;
    }

    r->conversation_id = m->conversation_id;
    r->held = 0;
    r->from = from;
    r->to = last_readable(m);

    if (known && known->event_seq == UINT64_MAX) {
        /* a position cannot pass the last number: nothing is ever due */
        r->to = UINT64_MAX - 1;
    }

    if (window == 0) {
        window = 1;
    }

    if (r->from > r->to) {
        r->end = r->to;
    } else if (r->to - r->from < window) {
        r->end = r->to;
    } else {
        r->end = r->from + window - 1;
    }
}

int parley_sync_pending(const parley_sync_range_t *r)
{
    return r->from <= r->to;
}

static parley_sync_range_t *find_range(parley_sync_range_t *ranges, size_t n,
                                       uint64_t conversation_id)
{
    size_t lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (ranges[mid].conversation_id == conversation_id) {
            return &ranges[mid];
        }

        if (ranges[mid].conversation_id < conversation_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return NULL;
}

size_t parley_sync_select(parley_sync_range_t *ranges, size_t n,
                          const parley_sync_key_t *rows, size_t nrows,
                          size_t limit, int mode, unsigned char *emit)
{
    parley_sync_range_t *r;
    size_t               i, taken, seen;
    uint64_t             last_cid;
    int                  all;

    taken = 0;
    seen = 0;
    last_cid = 0;

    for (i = 0; i < nrows; i++) {
        emit[i] = 0;
    }

    for (i = 0; i < nrows && taken < limit; i++) {
        seen++;
        last_cid = rows[i].conversation_id;

        r = find_range(ranges, n, rows[i].conversation_id);
        if (r == NULL) {
            continue;
        }

        if (mode == PARLEY_SYNC_STRICT) {
            if (!r->held && r->from <= r->end
                && rows[i].event_seq == r->from)
            {
                emit[i] = 1;
                r->from++;
                taken++;

            } else if (rows[i].event_seq > r->from) {
                /* out of turn: the conversation waits for the next page */
                r->held = 1;
            }

            continue;
        }

        /* PARLEY_SYNC_SKIP_GAPS: rows come ascending per conversation */
        if (rows[i].event_seq >= r->from && rows[i].event_seq <= r->end) {
            emit[i] = 1;
            r->from = rows[i].event_seq + 1;
            taken++;
        }
    }

    if (mode != PARLEY_SYNC_SKIP_GAPS) {
        return taken;
    }

    /*
     * The fetch ran by (conversation, seq) with LIMIT limit: when it
     * returned fewer rows, it saw every window whole; otherwise every
     * conversation before the last one seen.  A window seen whole holds no
     * further event: whatever is missing in it is a hole to step over.
     */
    all = (seen == nrows && nrows < limit);

    for (i = 0; i < n; i++) {
        r = &ranges[i];

        if (!all && (seen == 0 || r->conversation_id >= last_cid)) {
            break;
        }

        if (r->from <= r->end) {
            r->from = r->end + 1;
        }
    }

    return taken;
}

/* ---- the conversation list's cursor ------------------------------------ */

static int two_digits(const char *s, unsigned lo, unsigned hi)
{
    unsigned v;

    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
        return 0;
    }

    v = (unsigned) (s[0] - '0') * 10 + (unsigned) (s[1] - '0');

    return v >= lo && v <= hi;
}

int parley_list_time_valid(const char *s, size_t len)
{
    size_t i;

    if (len != PARLEY_LIST_TIME_LEN) {
        return 0;
    }

    for (i = 0; i < 4; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    return s[4] == '-' && two_digits(s + 5, 1, 12) && s[7] == '-'
           && two_digits(s + 8, 1, 31) && s[10] == ' '
           && two_digits(s + 11, 0, 23) && s[13] == ':'
           && two_digits(s + 14, 0, 59) && s[16] == ':'
           && two_digits(s + 17, 0, 59) && s[19] == '.'
           && s[20] >= '0' && s[20] <= '9' && two_digits(s + 21, 0, 99);
}

int parley_list_cursor_encode(const char *time, size_t time_len, uint64_t id,
                              char *dst, size_t cap)
{
    unsigned char raw[1 + PARLEY_LIST_TIME_LEN + 8];
    size_t        n;

    if (!parley_list_time_valid(time, time_len) || id == 0) {
        return PARLEY_SYNC_EINVAL;
    }

    if (cap < PARLEY_LIST_CURSOR_LEN + 1) {
        return PARLEY_SYNC_ENOSPC;
    }

    raw[0] = 1;
    memcpy(raw + 1, time, PARLEY_LIST_TIME_LEN);
    put_be64(raw + 1 + PARLEY_LIST_TIME_LEN, id);

    if (parley_base64url_encode(raw, sizeof(raw), dst, cap, &n)
            != PARLEY_BASE64URL_OK
        || n != PARLEY_LIST_CURSOR_LEN)
    {
        return PARLEY_SYNC_EINVAL;
    }

    dst[n] = '\0';

    return PARLEY_SYNC_OK;
}

int parley_list_cursor_decode(const char *src, size_t len,
                              char time[PARLEY_LIST_TIME_LEN + 1],
                              uint64_t *id)
{
    unsigned char raw[1 + PARLEY_LIST_TIME_LEN + 8];
    size_t        n;
    uint64_t      v;

    if (len != PARLEY_LIST_CURSOR_LEN
        || parley_base64url_decode(src, len, raw, sizeof(raw), &n)
               != PARLEY_BASE64URL_OK
        || n != sizeof(raw) || raw[0] != 1
        || !parley_list_time_valid((const char *) raw + 1,
                                   PARLEY_LIST_TIME_LEN))
    {
        return PARLEY_SYNC_EINVAL;
    }

    v = get_be64(raw + 1 + PARLEY_LIST_TIME_LEN);

    if (v == 0) {
        return PARLEY_SYNC_EINVAL;
    }

    memcpy(time, raw + 1, PARLEY_LIST_TIME_LEN);
    time[PARLEY_LIST_TIME_LEN] = '\0';
    *id = v;

    return PARLEY_SYNC_OK;
}
