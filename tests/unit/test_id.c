#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "parley_id.h"

/* 2025-06-01T12:00:00Z */
#define T0 1748779200000ULL

Test(id, epoch_is_2025_01_01_utc)
{
    cr_assert_eq(PARLEY_ID_EPOCH_MS, 1735689600000ULL);
    cr_assert_eq(parley_id_unix_ms(0), PARLEY_ID_EPOCH_MS);
}

Test(id, monotonic_over_100k_ids_with_a_moving_clock)
{
    parley_id_gen_t gen;
    uint64_t        prev = 0, id, now = T0;
    int             i;

    cr_assert_eq(parley_id_gen_init(&gen, 7), PARLEY_ID_OK);

    for (i = 0; i < 100000; i++) {
        /* clock advances by one ms every 1000 ids: exercises both branches */
        if (i % 1000 == 0) {
            now++;
        }
        cr_assert_eq(parley_id_next(&gen, now, &id), PARLEY_ID_OK);
        cr_assert_gt(id, prev, "id %d not increasing", i);
        cr_assert_eq(parley_id_node(id), 7);
        prev = id;
    }
}

Test(id, monotonic_over_100k_ids_on_a_frozen_clock)
{
    parley_id_gen_t gen;
    uint64_t        prev = 0, id;
    int             i;

    parley_id_gen_init(&gen, 1);

    for (i = 0; i < 100000; i++) {
        cr_assert_eq(parley_id_next(&gen, T0, &id), PARLEY_ID_OK);
        cr_assert_gt(id, prev);
        prev = id;
    }

    /* 100000 ids at 4096 per ms: the generator borrowed 24 ms */
    cr_assert_eq(parley_id_unix_ms(prev), T0 + 100000 / 4096);
    cr_assert_eq(parley_id_seq(prev), 100000 % 4096 - 1);
}

Test(id, clock_going_backwards_keeps_last_ms)
{
    parley_id_gen_t gen;
    uint64_t        a, b, c, d;

    parley_id_gen_init(&gen, 3);

    cr_assert_eq(parley_id_next(&gen, T0 + 1000, &a), PARLEY_ID_OK);
    cr_assert_eq(parley_id_next(&gen, T0, &b), PARLEY_ID_OK); /* -1 s */
    cr_assert_eq(parley_id_next(&gen, T0 + 500, &c), PARLEY_ID_OK);

    cr_assert_gt(b, a);
    cr_assert_gt(c, b);
    cr_assert_eq(parley_id_unix_ms(b), T0 + 1000);
    cr_assert_eq(parley_id_seq(b), 1);
    cr_assert_eq(parley_id_unix_ms(c), T0 + 1000);
    cr_assert_eq(parley_id_seq(c), 2);

    /* once the clock passes last_ms again, it is followed again */
    cr_assert_eq(parley_id_next(&gen, T0 + 1001, &d), PARLEY_ID_OK);
    cr_assert_gt(d, c);
    cr_assert_eq(parley_id_unix_ms(d), T0 + 1001);
    cr_assert_eq(parley_id_seq(d), 0);
}

Test(id, clock_stepping_back_before_the_epoch_after_start)
{
    parley_id_gen_t gen;
    uint64_t        a, b;

    parley_id_gen_init(&gen, 3);
    cr_assert_eq(parley_id_next(&gen, T0, &a), PARLEY_ID_OK);
    cr_assert_eq(parley_id_next(&gen, 0, &b), PARLEY_ID_OK);
    cr_assert_gt(b, a);
    cr_assert_eq(parley_id_unix_ms(b), T0);
}

Test(id, sequence_overflow_borrows_next_ms)
{
    parley_id_gen_t gen;
    uint64_t        id, prev = 0;
    unsigned        i;

    parley_id_gen_init(&gen, 1023);

    for (i = 0; i <= PARLEY_ID_SEQ_MAX; i++) {
        cr_assert_eq(parley_id_next(&gen, T0, &id), PARLEY_ID_OK);
        cr_assert_eq(parley_id_unix_ms(id), T0);
        cr_assert_eq(parley_id_seq(id), i);
        cr_assert_gt(id, prev);
        prev = id;
    }

    /* the 4097th id in the same ms lives in the next one */
    cr_assert_eq(parley_id_next(&gen, T0, &id), PARLEY_ID_OK);
    cr_assert_gt(id, prev);
    cr_assert_eq(parley_id_unix_ms(id), T0 + 1);
    cr_assert_eq(parley_id_seq(id), 0);
    cr_assert_eq(parley_id_node(id), 1023);

    /* the real clock catching up to the borrowed ms continues the sequence */
    prev = id;
    cr_assert_eq(parley_id_next(&gen, T0 + 1, &id), PARLEY_ID_OK);
    cr_assert_gt(id, prev);
    cr_assert_eq(parley_id_unix_ms(id), T0 + 1);
    cr_assert_eq(parley_id_seq(id), 1);
}

Test(id, node_out_of_range)
{
    parley_id_gen_t gen;
    uint64_t        id = 42;

    cr_assert_eq(parley_id_gen_init(&gen, 1024), PARLEY_ID_ENODE);
    cr_assert_eq(parley_id_gen_init(&gen, 1023), PARLEY_ID_OK);

    gen.node = 5000; /* a corrupted or hand-built generator */
    cr_assert_eq(parley_id_next(&gen, T0, &id), PARLEY_ID_ENODE);
    cr_assert_eq(id, 42, "id written on error");
}

Test(id, clock_before_epoch_or_after_41_bits)
{
    parley_id_gen_t gen;
    uint64_t        id = 42;

    parley_id_gen_init(&gen, 0);
    cr_assert_eq(parley_id_next(&gen, PARLEY_ID_EPOCH_MS - 1, &id),
                 PARLEY_ID_ECLOCK);
    cr_assert_eq(gen.started, 0);

    cr_assert_eq(parley_id_next(&gen, PARLEY_ID_EPOCH_MS + PARLEY_ID_MS_MAX + 1,
                                &id),
                 PARLEY_ID_ECLOCK);
    cr_assert_eq(id, 42);

    /* the very epoch and the very last ms are both valid */
    cr_assert_eq(parley_id_next(&gen, PARLEY_ID_EPOCH_MS, &id), PARLEY_ID_OK);
    cr_assert_eq(id, 0);
    cr_assert_eq(parley_id_next(&gen, PARLEY_ID_EPOCH_MS + PARLEY_ID_MS_MAX,
                                &id),
                 PARLEY_ID_OK);
    cr_assert_eq(id, PARLEY_ID_MS_MAX << 22);
    cr_assert_lt(id, 1ULL << 63, "top bit must stay clear");

    /* no ms left to borrow once the last one is full */
    gen.seq = PARLEY_ID_SEQ_MAX;
    cr_assert_eq(parley_id_next(&gen, PARLEY_ID_EPOCH_MS + PARLEY_ID_MS_MAX,
                                &id),
                 PARLEY_ID_ECLOCK);
    cr_assert_eq(gen.seq, PARLEY_ID_SEQ_MAX, "generator changed on error");
}

Test(id, field_round_trip)
{
    static const struct {
        uint64_t ms;
        uint32_t node, seq;
    } cases[] = {
        { PARLEY_ID_EPOCH_MS, 0, 0 },
        { PARLEY_ID_EPOCH_MS, 1023, 4095 },
        { T0, 512, 1 },
        { T0 + 123456789, 1, 4094 },
        { PARLEY_ID_EPOCH_MS + PARLEY_ID_MS_MAX, 1023, 4095 },
    };
    parley_id_gen_t gen;
    uint64_t        id;
    size_t          i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        id = parley_id_compose(cases[i].ms, cases[i].node, cases[i].seq);
        cr_assert_eq(parley_id_unix_ms(id), cases[i].ms);
        cr_assert_eq(parley_id_node(id), cases[i].node);
        cr_assert_eq(parley_id_seq(id), cases[i].seq);
    }

    /* the layout: ms in bits 62..22, node in 21..12, seq in 11..0 */
    cr_assert_eq(parley_id_compose(PARLEY_ID_EPOCH_MS + 1, 2, 3),
                 (1ULL << 22) | (2ULL << 12) | 3);

    cr_assert_eq(parley_id_compose(PARLEY_ID_EPOCH_MS - 1, 0, 0), 0);
    cr_assert_eq(parley_id_compose(T0, 1024, 0), 0);
    cr_assert_eq(parley_id_compose(T0, 0, 4096), 0);

    parley_id_gen_init(&gen, 77);
    parley_id_next(&gen, T0 + 5, &id);
    cr_assert_eq(parley_id_unix_ms(id), T0 + 5);
    cr_assert_eq(parley_id_node(id), 77);
    cr_assert_eq(parley_id_seq(id), 0);
}

Test(id, decimal_format_and_parse)
{
    char     buf[PARLEY_ID_DEC_SIZE], ref[32];
    uint64_t values[] = { 0, 1, 9, 10, 4194304, 1ULL << 62, UINT64_MAX };
    uint64_t v;
    size_t   i, n;

    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        n = parley_id_format(values[i], buf);
        snprintf(ref, sizeof(ref), "%llu", (unsigned long long) values[i]);
        cr_assert_str_eq(buf, ref);
        cr_assert_eq(n, strlen(ref));
        cr_assert_eq(parley_id_parse(buf, n, &v), 0);
        cr_assert_eq(v, values[i]);
    }

    cr_assert_eq(parley_id_format(UINT64_MAX, buf), 20);
}

Test(id, parse_rejects_anything_but_canonical_decimal)
{
    static const char *bad[] = {
        "", "-1", "+1", " 1", "1 ", "01", "00", "1a", "0x10",
        "18446744073709551616", /* UINT64_MAX + 1 */
        "99999999999999999999", "123456789012345678901",
    };
    uint64_t v = 7;
    size_t   i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parley_id_parse(bad[i], strlen(bad[i]), &v), -1,
                     "accepted \"%s\"", bad[i]);
    }
    cr_assert_eq(v, 7);

    /* length is honoured: no NUL needed, nothing read past len */
    cr_assert_eq(parley_id_parse("12345", 3, &v), 0);
    cr_assert_eq(v, 123);
    cr_assert_eq(parley_id_parse("1\0002", 3, &v), -1);
}
