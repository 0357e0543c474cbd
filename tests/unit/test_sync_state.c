#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "parley_base64url.h"
#include "parley_sync_state.h"

/* ---- states ------------------------------------------------------------ */

static void roundtrip(const parley_sync_pos_t *pos, size_t n)
{
    unsigned char     *buf;
    parley_sync_pos_t *back;
    size_t             len, m, cap;

    cap = parley_sync_state_encoded_max(n);
    buf = malloc(cap);
    back = malloc((n ? n : 1) * sizeof(*back));
    cr_assert(buf && back);

    cr_assert_eq(parley_sync_state_encode(pos, n, buf, cap, &len),
                 PARLEY_SYNC_OK);
    cr_assert(len <= cap);
    cr_assert_eq(buf[0], PARLEY_SYNC_STATE_VERSION);

    cr_assert_eq(parley_sync_state_count(buf, len, &m), PARLEY_SYNC_OK);
    cr_assert_eq(m, n);
    cr_assert_eq(parley_sync_state_decode(buf, len, back, n, &m),
                 PARLEY_SYNC_OK);
    cr_assert_eq(m, n);
    cr_assert(n == 0 || memcmp(back, pos, n * sizeof(*pos)) == 0);

    /* every shorter prefix is refused: nothing decodes half a state */
    for (m = 0; m < len; m++) {
        size_t k;
        cr_assert_neq(parley_sync_state_decode(buf, m, back, n, &k),
                      PARLEY_SYNC_OK, "prefix %zu of %zu", m, len);
    }

    free(buf);
    free(back);
}

Test(sync_state, empty_and_small_states_round_trip)
{
    parley_sync_pos_t one[] = { { 1, 0 } };
    parley_sync_pos_t few[] = {
        { 5, 3 }, { 6, 0 }, { 254433201137172481ULL, 12 },
        { UINT64_MAX, UINT64_MAX },
    };

    roundtrip(NULL, 0);
    roundtrip(one, 1);
    roundtrip(few, 4);
}

Test(sync_state, large_random_state_round_trips_and_stays_compact)
{
    size_t             n = 5000, i, len;
    uint64_t           id = 254433201137172481ULL;
    parley_sync_pos_t *pos;
    unsigned char     *buf;

    pos = malloc(n * sizeof(*pos));
    buf = malloc(parley_sync_state_encoded_max(n));
    srand(7);

    for (i = 0; i < n; i++) {
        id += 1 + (uint64_t) rand() * 4096;
        pos[i].conversation_id = id;
        pos[i].event_seq = (uint64_t) rand() % 100000;
    }

    roundtrip(pos, n);

    cr_assert_eq(parley_sync_state_encode(pos, n, buf,
                                          parley_sync_state_encoded_max(n),
                                          &len),
                 0);
    /* deltas of time-ordered ids: far less than 8 + 8 bytes an entry */
    cr_assert(len < n * 10, "%zu bytes", len);

    free(pos);
    free(buf);
}

Test(sync_state, encoder_refuses_unordered_zero_and_too_many)
{
    unsigned char     buf[256];
    size_t            len;
    parley_sync_pos_t dup[] = { { 5, 1 }, { 5, 2 } };
    parley_sync_pos_t down[] = { { 6, 1 }, { 5, 2 } };
    parley_sync_pos_t zero[] = { { 0, 1 } };

    cr_assert_eq(parley_sync_state_encode(dup, 2, buf, sizeof(buf), &len),
                 PARLEY_SYNC_EINVAL);
    cr_assert_eq(parley_sync_state_encode(down, 2, buf, sizeof(buf), &len),
                 PARLEY_SYNC_EINVAL);
    cr_assert_eq(parley_sync_state_encode(zero, 1, buf, sizeof(buf), &len),
                 PARLEY_SYNC_EINVAL);
    cr_assert_eq(parley_sync_state_encode(zero, PARLEY_SYNC_STATE_MAX + 1,
                                          buf, sizeof(buf), &len),
                 PARLEY_SYNC_EINVAL);
}

Test(sync_state, encoder_reports_short_buffers)
{
    unsigned char     buf[64];
    size_t            len, cap;
    parley_sync_pos_t few[] = { { 300, 70000 }, { 1ULL << 62, 1 } };

    cr_assert_eq(parley_sync_state_encode(few, 2, buf, sizeof(buf), &len), 0);

    for (cap = 0; cap < len; cap++) {
        size_t l2;
        cr_assert_eq(parley_sync_state_encode(few, 2, buf, cap, &l2),
                     PARLEY_SYNC_ENOSPC, "cap %zu", cap);
    }
}

Test(sync_state, known_bytes)
{
    /* version 1, count 2, (delta 300, seq 1), (delta 1, seq 128) */
    static const unsigned char want[] = {
        0x01, 0x02, 0xac, 0x02, 0x01, 0x01, 0x80, 0x01,
    };
    parley_sync_pos_t pos[] = { { 300, 1 }, { 301, 128 } };
    unsigned char     buf[32];
    size_t            len;

    cr_assert_eq(parley_sync_state_encode(pos, 2, buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, sizeof(want));
    cr_assert(memcmp(buf, want, len) == 0);
}

static int decodes(const unsigned char *b, size_t len)
{
    parley_sync_pos_t pos[8];
    size_t            n;

    return parley_sync_state_decode(b, len, pos, 8, &n) == PARLEY_SYNC_OK;
}

Test(sync_state, decoder_refuses_everything_not_canonical)
{
    static const unsigned char ok[] = { 0x01, 0x01, 0x05, 0x03 };
    static const unsigned char version[] = { 0x02, 0x01, 0x05, 0x03 };
    static const unsigned char trailing[] = { 0x01, 0x01, 0x05, 0x03, 0x00 };
    static const unsigned char overlong_seq[] = { 0x01, 0x01, 0x05, 0x83,
                                                  0x00 };
    static const unsigned char overlong_count[] = { 0x01, 0x81, 0x00, 0x05,
                                                    0x03 };
    static const unsigned char zero_delta[] = { 0x01, 0x02, 0x05, 0x03, 0x00,
                                                0x01 };
    static const unsigned char zero_first[] = { 0x01, 0x01, 0x00, 0x03 };
    static const unsigned char count_high[] = { 0x01, 0x03, 0x05, 0x03 };
    static const unsigned char empty_ok[] = { 0x01, 0x00 };
    /* 2^64 - 1 then a delta of 1: the id would wrap */
    static const unsigned char wrap[] = {
        0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x01, 0x00, 0x01, 0x00,
    };
    /* an 11-byte varint, and a 10th byte above 1: more than 64 bits */
    static const unsigned char wide[] = {
        0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x02, 0x00,
    };
    static const unsigned char max_ok[] = {
        0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x01, 0x00,
    };
    unsigned char big[16];
    size_t        n;

    cr_assert(decodes(ok, sizeof(ok)));
    cr_assert(decodes(empty_ok, sizeof(empty_ok)));
    cr_assert(decodes(max_ok, sizeof(max_ok)));
    cr_assert_not(decodes(version, sizeof(version)));
    cr_assert_not(decodes(trailing, sizeof(trailing)));
    cr_assert_not(decodes(overlong_seq, sizeof(overlong_seq)));
    cr_assert_not(decodes(overlong_count, sizeof(overlong_count)));
    cr_assert_not(decodes(zero_delta, sizeof(zero_delta)));
    cr_assert_not(decodes(zero_first, sizeof(zero_first)));
    cr_assert_not(decodes(count_high, sizeof(count_high)));
    cr_assert_not(decodes(wrap, sizeof(wrap)));
    cr_assert_not(decodes(wide, sizeof(wide)));
    cr_assert_not(decodes(NULL, 0));

    /* a count above the maximum is refused before anything is sized */
    big[0] = 0x01;
    n = 1;
    n += 0; /* count PARLEY_SYNC_STATE_MAX + 1 as a varint */
    {
        uint64_t v = PARLEY_SYNC_STATE_MAX + 1;
        while (v >= 0x80) {
            big[n++] = (unsigned char) (v | 0x80);
            v >>= 7;
        }
        big[n++] = (unsigned char) v;
    }
    memset(big + n, 0x01, sizeof(big) - n);
    cr_assert_eq(parley_sync_state_count(big, sizeof(big), &n),
                 PARLEY_SYNC_EINVAL);
}

Test(sync_state, decoder_reports_a_small_array)
{
    parley_sync_pos_t pos[] = { { 1, 1 }, { 2, 2 }, { 3, 3 } };
    parley_sync_pos_t back[2];
    unsigned char     buf[64];
    size_t            len, n;

    cr_assert_eq(parley_sync_state_encode(pos, 3, buf, sizeof(buf), &len), 0);
    cr_assert_eq(parley_sync_state_decode(buf, len, back, 2, &n),
                 PARLEY_SYNC_ENOSPC);
}

Test(sync_state, find)
{
    parley_sync_pos_t pos[] = { { 3, 30 }, { 7, 70 }, { 9, 90 }, { 20, 0 } };

    cr_assert_eq(parley_sync_state_find(pos, 4, 7)->event_seq, 70);
    cr_assert_eq(parley_sync_state_find(pos, 4, 3)->event_seq, 30);
    cr_assert_eq(parley_sync_state_find(pos, 4, 20)->event_seq, 0);
    cr_assert_null(parley_sync_state_find(pos, 4, 8));
    cr_assert_null(parley_sync_state_find(pos, 4, 1));
    cr_assert_null(parley_sync_state_find(pos, 4, 21));
    cr_assert_null(parley_sync_state_find(pos, 0, 3));
}

/* ---- tokens ------------------------------------------------------------ */

Test(sync_token, round_trips)
{
    uint64_t ids[] = { 1, 254433201137172481ULL, UINT64_MAX };
    char     tok[PARLEY_SYNC_TOKEN_LEN + 1];
    uint64_t back;
    size_t   i;

    for (i = 0; i < 3; i++) {
        cr_assert_eq(parley_sync_token_encode(ids[i], tok, sizeof(tok)), 0);
        cr_assert_eq(strlen(tok), PARLEY_SYNC_TOKEN_LEN);
        cr_assert_eq(parley_sync_token_decode(tok, strlen(tok), &back), 0);
        cr_assert_eq(back, ids[i]);
    }
}

Test(sync_token, refuses_forgeries_and_damage)
{
    char          tok[PARLEY_SYNC_TOKEN_LEN + 1], bad[32];
    unsigned char raw[9] = { 2, 0, 0, 0, 0, 0, 0, 0, 1 };
    uint64_t      id;
    size_t        n;

    cr_assert_eq(parley_sync_token_encode(0, tok, sizeof(tok)),
                 PARLEY_SYNC_EINVAL);
    cr_assert_eq(parley_sync_token_encode(5, tok, PARLEY_SYNC_TOKEN_LEN),
                 PARLEY_SYNC_ENOSPC);
    cr_assert_eq(parley_sync_token_encode(5, tok, sizeof(tok)), 0);

    cr_assert_neq(parley_sync_token_decode(tok, 11, &id), 0);
    cr_assert_neq(parley_sync_token_decode("", 0, &id), 0);

    memcpy(bad, tok, sizeof(tok));
    bad[3] = '*';
    cr_assert_neq(parley_sync_token_decode(bad, PARLEY_SYNC_TOKEN_LEN, &id),
                  0);

    memcpy(bad, tok, sizeof(tok));
    memcpy(bad + PARLEY_SYNC_TOKEN_LEN, "==", 3);
    cr_assert_neq(parley_sync_token_decode(bad, strlen(bad), &id), 0);

    /* another version */
    parley_base64url_encode(raw, 9, bad, sizeof(bad), &n);
    cr_assert_neq(parley_sync_token_decode(bad, n, &id), 0);

    /* version 1, id 0 */
    memset(raw, 0, sizeof(raw));
    raw[0] = 1;
    parley_base64url_encode(raw, 9, bad, sizeof(bad), &n);
    cr_assert_neq(parley_sync_token_decode(bad, n, &id), 0);
}

/* ---- one sync step ----------------------------------------------------- */

static parley_sync_member_t member(uint64_t cid, int active, uint64_t joined,
                                   uint64_t left, uint64_t seq)
{
    parley_sync_member_t m;

    m.conversation_id = cid;
    m.active = active;
    m.joined_event = joined;
    m.left_event = left;
    m.event_seq = seq;

    return m;
}

Test(sync_step, now_is_the_last_readable_event)
{
    parley_sync_member_t a = member(1, 1, 3, 0, 40);
    parley_sync_member_t gone = member(2, 0, 3, 17, 40);
    parley_sync_member_t lost = member(3, 0, 3, 0, 40);

    cr_assert_eq(parley_sync_now(&a), 40);
    cr_assert_eq(parley_sync_now(&gone), 17);
    cr_assert_eq(parley_sync_now(&lost), 0);
}

Test(sync_step, ranges)
{
    parley_sync_range_t  r;
    parley_sync_pos_t    p;
    parley_sync_member_t m;

    /* known, active: after the position, up to now */
    m = member(9, 1, 2, 0, 30);
    p.conversation_id = 9;
    p.event_seq = 12;
    parley_sync_range(&m, &p, 100, &r);
    cr_assert_eq(r.conversation_id, 9);
    cr_assert_eq(r.from, 13);
    cr_assert_eq(r.to, 30);
    cr_assert_eq(r.end, 30);
    cr_assert(parley_sync_pending(&r));

    /* the window bounds one page's fetch */
    parley_sync_range(&m, &p, 5, &r);
    cr_assert_eq(r.end, 17);

    /* caught up */
    p.event_seq = 30;
    parley_sync_range(&m, &p, 5, &r);
    cr_assert_not(parley_sync_pending(&r));

    /* removed: up to and including the removal, never after it */
    m = member(9, 0, 2, 25, 40);
    p.event_seq = 12;
    parley_sync_range(&m, &p, 100, &r);
    cr_assert_eq(r.from, 13);
    cr_assert_eq(r.to, 25);
    p.event_seq = 25;
    parley_sync_range(&m, &p, 100, &r);
    cr_assert_not(parley_sync_pending(&r));

    /* removed without a known removal event: nothing more */
    m = member(9, 0, 2, 0, 40);
    p.event_seq = 12;
    parley_sync_range(&m, &p, 100, &r);
    cr_assert_not(parley_sync_pending(&r));

    /* joined after the state was made: from the joined event */
    m = member(9, 1, 21, 0, 40);
    parley_sync_range(&m, NULL, 100, &r);
    cr_assert_eq(r.from, 21);
    cr_assert_eq(r.to, 40);

    /* a creator whose membership predates any event */
    m = member(9, 1, 0, 0, 4);
    parley_sync_range(&m, NULL, 100, &r);
    cr_assert_eq(r.from, 1);

    /* added and removed while away */
    m = member(9, 0, 21, 24, 40);
    parley_sync_range(&m, NULL, 100, &r);
    cr_assert_eq(r.from, 21);
    cr_assert_eq(r.to, 24);

    /* banned without ever having been a member */
    m = member(9, 0, 21, 21, 40);
    parley_sync_range(&m, NULL, 100, &r);
    cr_assert_not(parley_sync_pending(&r));
    cr_assert_eq(parley_sync_now(&m), 0);

    /* removed, then added again: the gap between is not the member's */
    m = member(9, 1, 31, 0, 40);
    p.event_seq = 12;
    parley_sync_range(&m, &p, 100, &r);
    cr_assert_eq(r.from, 31);

    /* a position at the very top does not wrap */
    p.event_seq = UINT64_MAX;
    m = member(9, 1, 1, 0, UINT64_MAX);
    parley_sync_range(&m, &p, 100, &r);
    cr_assert_not(parley_sync_pending(&r));
}

static void ranges3(parley_sync_range_t r[3], uint64_t window)
{
    parley_sync_member_t m;
    parley_sync_pos_t    p;

    /* conversation 10 owes 1..5, 20 owes 3..4, 30 owes 8..9 */
    m = member(10, 1, 1, 0, 5);
    parley_sync_range(&m, NULL, window, &r[0]);
    m = member(20, 1, 1, 0, 4);
    p.conversation_id = 20;
    p.event_seq = 2;
    parley_sync_range(&m, &p, window, &r[1]);
    m = member(30, 1, 8, 0, 9);
    parley_sync_range(&m, NULL, window, &r[2]);
}

Test(sync_select, takes_time_ordered_rows_per_conversation_in_turn)
{
    parley_sync_range_t r[3];
    parley_sync_key_t   rows[] = {
        { 10, 1 }, { 20, 3 }, { 10, 2 }, { 30, 8 }, { 10, 3 },
        { 20, 4 }, { 30, 9 }, { 10, 4 }, { 10, 5 },
    };
    unsigned char emit[9];
    size_t        i;

    ranges3(r, 100);
    cr_assert_eq(parley_sync_select(r, 3, rows, 9, 100, PARLEY_SYNC_STRICT,
                                    emit),
                 9);
    for (i = 0; i < 9; i++) {
        cr_assert(emit[i]);
    }
    cr_assert_not(parley_sync_pending(&r[0]));
    cr_assert_not(parley_sync_pending(&r[1]));
    cr_assert_not(parley_sync_pending(&r[2]));
}

Test(sync_select, stops_at_the_limit_and_resumes_exactly)
{
    parley_sync_range_t r[3];
    parley_sync_key_t   rows[] = {
        { 10, 1 }, { 20, 3 }, { 10, 2 }, { 30, 8 },
    };
    unsigned char emit[4];

    ranges3(r, 4);
    cr_assert_eq(parley_sync_select(r, 3, rows, 4, 3, PARLEY_SYNC_STRICT,
                                    emit),
                 3);
    cr_assert(emit[0] && emit[1] && emit[2]);
    cr_assert_not(emit[3]);
    cr_assert_eq(r[0].from, 3);
    cr_assert_eq(r[1].from, 4);
    cr_assert_eq(r[2].from, 8, "not taken, still due");
    cr_assert(parley_sync_pending(&r[2]));
}

Test(sync_select, an_event_out_of_turn_holds_its_conversation_back)
{
    parley_sync_range_t r[3];
    /* 10/3 carries an earlier time than 10/2 (clocks of two SQL nodes) */
    parley_sync_key_t rows[] = {
        { 10, 1 }, { 10, 3 }, { 20, 3 }, { 10, 2 }, { 10, 4 }, { 20, 4 },
    };
    unsigned char emit[6];

    ranges3(r, 100);
    cr_assert_eq(parley_sync_select(r, 3, rows, 6, 100, PARLEY_SYNC_STRICT,
                                    emit),
                 3);
    cr_assert(emit[0]);
    cr_assert_not(emit[1]);
    cr_assert(emit[2]);
    cr_assert_not(emit[3], "held back: no hole, no reordering");
    cr_assert_not(emit[4]);
    cr_assert(emit[5]);
    cr_assert_eq(r[0].from, 2);
    cr_assert_eq(r[1].from, 5);
}

Test(sync_select, ignores_rows_outside_the_ranges)
{
    parley_sync_range_t r[3];
    parley_sync_key_t   rows[] = { { 11, 1 }, { 20, 1 }, { 20, 3 } };
    unsigned char       emit[3];

    ranges3(r, 100);
    cr_assert_eq(parley_sync_select(r, 3, rows, 3, 100, PARLEY_SYNC_STRICT,
                                    emit),
                 1);
    cr_assert_not(emit[0]);
    cr_assert_not(emit[1], "already delivered");
    cr_assert(emit[2]);
}

Test(sync_select, skip_gaps_steps_over_holes_it_has_seen_whole)
{
    parley_sync_range_t r[3];
    /* 10 lost event 2; 20 lost all of its window; 30 is complete */
    parley_sync_key_t rows[] = {
        { 10, 1 }, { 10, 3 }, { 10, 4 }, { 10, 5 }, { 30, 8 }, { 30, 9 },
    };
    unsigned char emit[6];

    ranges3(r, 100);
    cr_assert_eq(parley_sync_select(r, 3, rows, 6, 100,
                                    PARLEY_SYNC_SKIP_GAPS, emit),
                 6);
    cr_assert_not(parley_sync_pending(&r[0]));
    cr_assert_not(parley_sync_pending(&r[1]));
    cr_assert_not(parley_sync_pending(&r[2]));
}

Test(sync_select, skip_gaps_leaves_what_the_limit_cut_off)
{
    parley_sync_range_t r[3];
    parley_sync_key_t   rows[] = { { 10, 1 }, { 10, 3 }, { 30, 8 } };
    unsigned char       emit[3];

    /* LIMIT 3 cut the fetch inside conversation 30 */
    ranges3(r, 100);
    cr_assert_eq(parley_sync_select(r, 3, rows, 3, 3, PARLEY_SYNC_SKIP_GAPS,
                                    emit),
                 3);
    cr_assert_not(parley_sync_pending(&r[0]), "window seen whole");
    cr_assert_not(parley_sync_pending(&r[1]), "seen whole, and empty");
    cr_assert_eq(r[2].from, 9, "the rest of 30 is still due");
    cr_assert(parley_sync_pending(&r[2]));

    /* a fetch that found nothing at all: every window is a hole */
    ranges3(r, 100);
    cr_assert_eq(parley_sync_select(r, 3, NULL, 0, 3, PARLEY_SYNC_SKIP_GAPS,
                                    emit),
                 0);
    cr_assert_not(parley_sync_pending(&r[0]));
    cr_assert_not(parley_sync_pending(&r[2]));
}

Test(sync_select, skip_gaps_honours_the_window)
{
    parley_sync_range_t r[3];
    parley_sync_key_t   rows[] = { { 10, 1 }, { 10, 2 } };
    unsigned char       emit[2];

    /* window 2: conversation 10 fetched 1..2 only, 3..5 still due */
    ranges3(r, 2);
    cr_assert_eq(parley_sync_select(r, 3, rows, 2, 10,
                                    PARLEY_SYNC_SKIP_GAPS, emit),
                 2);
    cr_assert_eq(r[0].from, 3);
    cr_assert(parley_sync_pending(&r[0]));
}

/* ---- the conversation list's cursor ------------------------------------ */

Test(list_cursor, round_trips)
{
    const char *t = "2026-12-04 02:00:30.671";
    char        cur[PARLEY_LIST_CURSOR_LEN + 1], back[PARLEY_LIST_TIME_LEN + 1];
    uint64_t    id;

    cr_assert_eq(parley_list_cursor_encode(t, strlen(t), 254433201137172481ULL,
                                           cur, sizeof(cur)),
                 0);
    cr_assert_eq(strlen(cur), PARLEY_LIST_CURSOR_LEN);
    cr_assert_eq(parley_list_cursor_decode(cur, strlen(cur), back, &id), 0);
    cr_assert_str_eq(back, t);
    cr_assert_eq(id, 254433201137172481ULL);
}

Test(list_cursor, refuses_bad_times_and_damage)
{
    const char *bad[] = {
        "2026-12-04 02:00:30",     "2026-13-04 02:00:30.671",
        "2026-12-04T02:00:30.671", "2026-12-04 24:00:30.671",
        "2026-12-04 02:00:30.6x1", "2026-12-04 02:00:30.671'",
        "20x6-12-04 02:00:30.671", "2026-12-00 02:00:30.671",
    };
    char     cur[PARLEY_LIST_CURSOR_LEN + 1], t[PARLEY_LIST_TIME_LEN + 1];
    uint64_t id;
    size_t   i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parley_list_cursor_encode(bad[i], strlen(bad[i]), 1, cur,
                                               sizeof(cur)),
                     PARLEY_SYNC_EINVAL, "%s", bad[i]);
    }

    cr_assert_eq(parley_list_cursor_encode("2026-12-04 02:00:30.671", 23, 0,
                                           cur, sizeof(cur)),
                 PARLEY_SYNC_EINVAL);
    cr_assert_eq(parley_list_cursor_encode("2026-12-04 02:00:30.671", 23, 1,
                                           cur, PARLEY_LIST_CURSOR_LEN),
                 PARLEY_SYNC_ENOSPC);

    cr_assert_eq(parley_list_cursor_encode("2026-12-04 02:00:30.671", 23, 9,
                                           cur, sizeof(cur)),
                 0);
    cr_assert_neq(parley_list_cursor_decode(cur, 42, t, &id), 0);
    cur[5] = cur[5] == 'A' ? 'B' : 'A';
    /* a changed character changes the time or id: it may still decode, but
     * only to something well-formed */
    if (parley_list_cursor_decode(cur, PARLEY_LIST_CURSOR_LEN, t, &id) == 0) {
        cr_assert(parley_list_time_valid(t, strlen(t)));
    }
    cr_assert_neq(parley_list_cursor_decode("***", 3, t, &id), 0);
}
