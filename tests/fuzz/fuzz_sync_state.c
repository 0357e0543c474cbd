// fuzz-sources: lib/parley_sync_state.c lib/parley_base64url.c
/*
 * libFuzzer harness for the sync state, token and list cursor codecs, and
 * the page selection.  The codecs must be canonical: whatever decodes
 * encodes back to the very same bytes.  The selection must keep its
 * promises on any input: at most limit rows, every taken row the next one
 * of its conversation, positions only moving forward.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parley_sync_state.h"

static void state(const uint8_t *data, size_t size)
{
    parley_sync_pos_t *pos;
    unsigned char     *back;
    size_t             n, m, len;

    if (parley_sync_state_count(data, size, &n) != PARLEY_SYNC_OK) {
        return;
    }

    pos = malloc((n ? n : 1) * sizeof(*pos));
    assert(pos);

    if (parley_sync_state_decode(data, size, pos, n, &m) == PARLEY_SYNC_OK) {
        assert(m == n);
        back = malloc(parley_sync_state_encoded_max(n));
        assert(back);
        assert(parley_sync_state_encode(pos, n, back,
                                        parley_sync_state_encoded_max(n),
                                        &len)
               == PARLEY_SYNC_OK);
        assert(len == size && memcmp(back, data, size) == 0);
        free(back);
    }

    free(pos);
}

static void codecs(const uint8_t *data, size_t size)
{
    char     tok[PARLEY_SYNC_TOKEN_LEN + 1];
    char     cur[PARLEY_LIST_CURSOR_LEN + 1], t[PARLEY_LIST_TIME_LEN + 1];
    uint64_t id;

    if (parley_sync_token_decode((const char *) data, size, &id) == 0) {
        assert(parley_sync_token_encode(id, tok, sizeof(tok)) == 0);
        assert(size == PARLEY_SYNC_TOKEN_LEN && memcmp(tok, data, size) == 0);
    }

    if (parley_list_cursor_decode((const char *) data, size, t, &id) == 0) {
        assert(parley_list_cursor_encode(t, strlen(t), id, cur, sizeof(cur))
               == 0);
        assert(size == PARLEY_LIST_CURSOR_LEN
               && memcmp(cur, data, size) == 0);
    }
}

/* bytes as: nranges, limit, window, mode, then ranges, then rows */
static void select_page(const uint8_t *data, size_t size)
{
    parley_sync_range_t  r[16], before[16];
    parley_sync_member_t m;
    parley_sync_pos_t    p;
    parley_sync_key_t    rows[64];
    unsigned char        emit[64];
    size_t               n, nrows, limit, window, i, k, taken;
    int                  mode;

    if (size < 4) {
        return;
    }

    n = data[0] % 16;
    limit = 1 + data[1] % 64;
    window = 1 + data[2] % 8;
    mode = data[3] & 1;
    data += 4;
    size -= 4;

    for (i = 0; i < n; i++) {
        if (size < 4) {
            return;
        }
        m.conversation_id = 1 + i * 3;
        m.active = data[0] & 1;
        m.joined_event = data[1] % 8;
        m.left_event = data[2] % 32;
        m.event_seq = data[3] % 32;
        p.conversation_id = m.conversation_id;
        p.event_seq = data[0] >> 3;
        parley_sync_range(&m, (data[0] & 2) ? &p : NULL, window, &r[i]);
        data += 4;
        size -= 4;
    }

    memcpy(before, r, sizeof(r));

    nrows = 0;
    while (size >= 2 && nrows < 64) {
        rows[nrows].conversation_id = 1 + (data[0] % 16) * 3;
        rows[nrows].event_seq = data[1] % 32;
        nrows++;
        data += 2;
        size -= 2;
    }

    taken = parley_sync_select(r, n, rows, nrows, limit,
                               mode ? PARLEY_SYNC_SKIP_GAPS
                                    : PARLEY_SYNC_STRICT,
                               emit);
    assert(taken <= limit);

    k = 0;
    for (i = 0; i < nrows; i++) {
        k += emit[i];
    }
    assert(k == taken);

    for (i = 0; i < n; i++) {
        assert(r[i].from >= before[i].from);
        assert(r[i].to == before[i].to);
    }

    if (mode == 0) {
        /* strict: per conversation, the taken rows are from, from+1, ... */
        for (i = 0; i < n; i++) {
            uint64_t next = before[i].from;
            for (k = 0; k < nrows; k++) {
                if (emit[k] && rows[k].conversation_id == r[i].conversation_id)
                {
                    assert(rows[k].event_seq == next);
                    assert(next <= before[i].end);
                    next++;
                }
            }
            assert(next == r[i].from);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    state(data, size);
    codecs(data, size);
    select_page(data, size);

    return 0;
}
