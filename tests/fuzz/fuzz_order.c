// fuzz-sources: lib/parley_order.c
/*
 * libFuzzer harness for the in-order delivery window: the input is a
 * stream of operations (offer a number near the window, skip ahead, set an
 * end); whatever it is, numbers come out once each, ascending, one apart,
 * never past the end, and every held item is given back exactly once.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "parley_order.h"

#define CAP 8

static int live[4096];   /* references the window holds, per number */

static void take(uint64_t seq, void *item)
{
    assert((uint64_t) (uintptr_t) item == seq);
    assert(live[seq % 4096] > 0);
    live[seq % 4096]--;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parley_order_t      o;
    parley_order_slot_t slots[CAP];
    uint64_t            last = 0, seq;
    void               *item, *evicted;
    int                 flag, rc;
    size_t              i;

    memset(live, 0, sizeof(live));
    parley_order_init(&o, 0);
    parley_order_slots(&o, slots, CAP);

    for (i = 0; i + 1 < size; i += 2) {
        uint8_t op = data[i], arg = data[i + 1];

        if (op < 200) {
            seq = o.delivered + 1 + arg % 24;
            if (seq == 0 || seq >= 4096) break;
            rc = op < 20 ? parley_order_hold(&o, seq, (void *) (uintptr_t) seq, 0, &evicted)
                         : parley_order_offer(&o, seq, (void *) (uintptr_t) seq, 0, &evicted);
            if (evicted) take((uint64_t) (uintptr_t) evicted, evicted);
            if (rc == PARLEY_ORDER_DELIVER) {
                assert(seq == last + 1);
                assert(!o.until || seq <= o.until);
                last = seq;
            } else if (rc == PARLEY_ORDER_HELD) {
                live[seq % 4096]++;
            }
        } else if (op < 240) {
            parley_order_skip(&o, o.delivered + arg % 8);
            last = o.delivered;
        } else if (o.until == 0) {
            o.until = o.delivered + arg % 16;
        }

        while ((rc = parley_order_next(&o, &seq, &item, &flag)) != 0) {
            take(seq, item);
            if (rc == 1) {
                assert(seq == last + 1);
                assert(!o.until || seq <= o.until);
                last = seq;
            }
        }

        assert(o.delivered == last);
        for (size_t k = 1; k < o.nheld; k++) assert(o.slots[k - 1].seq < o.slots[k].seq);
        if (o.nheld) assert(o.slots[0].seq > o.delivered);
    }

    return 0;
}
