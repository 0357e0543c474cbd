/*
 * The in-order delivery window (lib/parley_order.c): whatever order,
 * duplication and holes the input has, what comes out is each number once,
 * ascending, without a gap, and nothing past the window's end.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "parley_order.h"

#define CAP 8

static parley_order_t      o;
static parley_order_slot_t slots[CAP];
static uint64_t            out[1024];
static size_t              nout;
static size_t              nstale;

static void drain(void)
{
    uint64_t seq;
    void    *item;
    int      flag, rc;

    while ((rc = parley_order_next(&o, &seq, &item, &flag)) != 0) {
        cr_assert_eq((uint64_t) (uintptr_t) item, seq, "the item travels with its number");
        if (rc == 1) {
            out[nout++] = seq;
        } else {
            nstale++;
        }
    }
}

/* offers seq, delivering whatever that makes possible; returns the rc */
static parley_order_rc_t offer(uint64_t seq)
{
    void             *evicted;
    parley_order_rc_t rc;

    rc = parley_order_offer(&o, seq, (void *) (uintptr_t) seq, 0, &evicted);
    if (rc == PARLEY_ORDER_DELIVER) {
        out[nout++] = seq;
        drain();
    }
    return rc;
}

static void setup(void)
{
    parley_order_init(&o, 0);
    parley_order_slots(&o, slots, CAP);
    nout = 0;
    nstale = 0;
}

TestSuite(order, .init = setup);

Test(order, in_order_is_delivered_at_once)
{
    for (uint64_t s = 1; s <= 5; s++) {
        cr_assert_eq(offer(s), PARLEY_ORDER_DELIVER);
    }
    cr_assert_eq(nout, 5);
    cr_assert_eq(o.delivered, 5);
}

Test(order, duplicates_are_dropped_given_or_held)
{
    offer(1);
    cr_assert_eq(offer(1), PARLEY_ORDER_DUPLICATE);
    cr_assert_eq(offer(3), PARLEY_ORDER_HELD);
    cr_assert_eq(offer(3), PARLEY_ORDER_DUPLICATE);
    cr_assert_eq(o.nheld, 1);
}

Test(order, a_hole_holds_until_filled_then_everything_flows)
{
    cr_assert_eq(offer(3), PARLEY_ORDER_HELD);
    cr_assert_eq(offer(5), PARLEY_ORDER_HELD);
    cr_assert_eq(offer(4), PARLEY_ORDER_HELD);
    cr_assert(parley_order_hole(&o));
    cr_assert_eq(nout, 0);
    cr_assert_eq(offer(2), PARLEY_ORDER_HELD);
    cr_assert_eq(offer(1), PARLEY_ORDER_DELIVER);
    cr_assert_eq(nout, 5);
    for (size_t i = 0; i < 5; i++) cr_assert_eq(out[i], i + 1);
    cr_assert_not(parley_order_hole(&o));
}

Test(order, a_full_window_keeps_the_earliest)
{
    void *evicted;

    for (uint64_t s = 10; s < 10 + CAP; s++) {
        cr_assert_eq(offer(s), PARLEY_ORDER_HELD);
    }
    /* later than all: refused */
    cr_assert_eq(parley_order_offer(&o, 100, (void *) 100, 0, &evicted), PARLEY_ORDER_FULL);
    cr_assert_null(evicted);
    /* earlier: the latest held gives way */
    cr_assert_eq(parley_order_offer(&o, 5, (void *) 5, 0, &evicted), PARLEY_ORDER_HELD);
    cr_assert_eq((uintptr_t) evicted, 10 + CAP - 1);
    cr_assert_eq(o.slots[0].seq, 5);
    cr_assert_eq(o.nheld, CAP);
}

Test(order, until_ends_the_window)
{
    o.until = 3;
    cr_assert_eq(offer(1), PARLEY_ORDER_DELIVER);
    cr_assert_eq(offer(4), PARLEY_ORDER_BEYOND);
    cr_assert_eq(offer(3), PARLEY_ORDER_HELD);
    cr_assert_eq(offer(2), PARLEY_ORDER_DELIVER);
    cr_assert_eq(o.delivered, 3);
}

Test(order, skip_makes_held_entries_stale)
{
    offer(4);
    offer(6);
    parley_order_skip(&o, 5);       /* 1..5 came from the store */
    drain();
    cr_assert_eq(nstale, 1);        /* 4 */
    cr_assert_eq(nout, 1);          /* 6 */
    cr_assert_eq(out[0], 6);
    parley_order_skip(&o, 2);       /* backwards: nothing */
    cr_assert_eq(o.delivered, 6);
}

Test(order, without_slots_nothing_is_held)
{
    parley_order_t bare;
    void          *evicted;

    parley_order_init(&bare, 7);
    cr_assert_eq(parley_order_offer(&bare, 8, NULL, 0, &evicted), PARLEY_ORDER_DELIVER);
    cr_assert_eq(parley_order_offer(&bare, 10, NULL, 0, &evicted), PARLEY_ORDER_FULL);
    cr_assert_not(parley_order_hole(&bare));
}

Test(order, the_flag_travels_with_the_entry)
{
    void    *evicted, *item;
    uint64_t seq;
    int      flag;

    parley_order_offer(&o, 2, (void *) 2, 42, &evicted);
    parley_order_offer(&o, 1, (void *) 1, 0, &evicted);
    cr_assert_eq(parley_order_next(&o, &seq, &item, &flag), 1);
    cr_assert_eq(flag, 42);
}

/* random permutations with duplicates, filled from "the store" when holes stay */
Test(order, any_arrival_order_gives_each_number_once_ascending)
{
    srand(7);
    for (int round = 0; round < 200; round++) {
        uint64_t n = 1 + (uint64_t) (rand() % 200), arrivals[600];
        size_t   k = 0;

        setup();
        for (uint64_t s = 1; s <= n; s++) {
            arrivals[k++] = s;
            if (rand() % 4 == 0) arrivals[k++] = s;     /* a duplicate */
        }
        for (size_t i = k - 1; i > 0; i--) {             /* local shuffles */
            size_t j = i - (size_t) (rand() % (i < 5 ? i + 1 : 5));
            uint64_t t = arrivals[i]; arrivals[i] = arrivals[j]; arrivals[j] = t;
        }
        for (size_t i = 0; i < k; i++) {
            offer(arrivals[i]);
            if (i % 16 == 15 && parley_order_hole(&o)) {
                /* the gateway's store read: deliver the hole, skip */
                uint64_t upto = o.slots[0].seq - 1;
                for (uint64_t s = o.delivered + 1; s <= upto; s++) out[nout++] = s;
                parley_order_skip(&o, upto);
                drain();
            }
        }
        /* a final store read for what is still missing */
        for (uint64_t s = o.delivered + 1; s <= n; s++) out[nout++] = s;
        parley_order_skip(&o, n);
        drain();
        cr_assert_eq(nout, n, "round %d: %zu delivered of %llu", round, nout, (unsigned long long) n);
        for (size_t i = 0; i < nout; i++) cr_assert_eq(out[i], i + 1);
    }
}

Test(order, a_paused_window_holds_even_the_next_one)
{
    void *evicted;

    cr_assert_eq(parley_order_hold(&o, 1, (void *) 1, 0, &evicted), PARLEY_ORDER_HELD);
    cr_assert_eq(parley_order_hold(&o, 2, (void *) 2, 0, &evicted), PARLEY_ORDER_HELD);
    cr_assert_eq(parley_order_hold(&o, 2, (void *) 2, 0, &evicted), PARLEY_ORDER_DUPLICATE);
    cr_assert_eq(o.delivered, 0);
    cr_assert_not(parley_order_hole(&o), "the next one is held: no hole");
    /* the start read gave out 1; 2 flows when resumed */
    parley_order_skip(&o, 1);
    drain();
    cr_assert_eq(nstale, 1);
    cr_assert_eq(nout, 1);
    cr_assert_eq(out[0], 2);
}
