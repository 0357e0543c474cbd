/*
 * In-order delivery window: see parley_order.h.  The held entries are a
 * sorted array without duplicates; windows are small (the gateway uses
 * 32), so insertion is a shift.
 */
#include <string.h>

#include "parley_order.h"

void parley_order_init(parley_order_t *o, uint64_t delivered)
{
    memset(o, 0, sizeof(*o));
    o->delivered = delivered;
}

void parley_order_slots(parley_order_t *o, parley_order_slot_t *slots,
                        size_t cap)
{
    if (o->slots == NULL) {
        o->slots = slots;
        o->cap = slots ? cap : 0;
        o->nheld = 0;
    }
}

static parley_order_rc_t order_put(parley_order_t *o, uint64_t seq,
                                   void *item, int flag, void **evicted,
                                   int paused)
{
    size_t i;

    *evicted = NULL;

    if (seq <= o->delivered) {
        return PARLEY_ORDER_DUPLICATE;
    }

    if (o->until && seq > o->until) {
        return PARLEY_ORDER_BEYOND;
    }

    if (seq == o->delivered + 1 && !paused) {
        o->delivered = seq;
        return PARLEY_ORDER_DELIVER;
    }

    if (o->cap == 0) {
        return PARLEY_ORDER_FULL;
    }

    /* first held entry at or after seq */
    for (i = 0; i < o->nheld && o->slots[i].seq < seq; i++) {
        /* void */
    }

    if (i < o->nheld && o->slots[i].seq == seq) {
        return PARLEY_ORDER_DUPLICATE;
    }

    if (o->nheld == o->cap) {
        if (i == o->nheld) {
            return PARLEY_ORDER_FULL;   /* later than everything held */
        }

        /* the latest held entry gives way */
        o->nheld--;
        *evicted = o->slots[o->nheld].item;
    }

    memmove(&o->slots[i + 1], &o->slots[i],
            (o->nheld - i) * sizeof(parley_order_slot_t));
    o->slots[i].seq = seq;
    o->slots[i].item = item;
    o->slots[i].flag = flag;
    o->nheld++;

    return PARLEY_ORDER_HELD;
}

parley_order_rc_t parley_order_offer(parley_order_t *o, uint64_t seq,
                                     void *item, int flag, void **evicted)
{
    return order_put(o, seq, item, flag, evicted, 0);
}

parley_order_rc_t parley_order_hold(parley_order_t *o, uint64_t seq,
                                    void *item, int flag, void **evicted)
{
    return order_put(o, seq, item, flag, evicted, 1);
}

int parley_order_next(parley_order_t *o, uint64_t *seq, void **item,
                      int *flag)
{
    parley_order_slot_t s;
    int                 rc;

    if (o->nheld == 0) {
        return 0;
    }

    s = o->slots[0];

    if (s.seq <= o->delivered || (o->until && s.seq > o->until)) {
        rc = 2;

    } else if (s.seq == o->delivered + 1) {
        o->delivered = s.seq;
        rc = 1;

    } else {
        return 0;
    }

    o->nheld--;
    memmove(&o->slots[0], &o->slots[1],
            o->nheld * sizeof(parley_order_slot_t));

    *seq = s.seq;
    *item = s.item;
    *flag = s.flag;

    return rc;
}

void parley_order_skip(parley_order_t *o, uint64_t seq)
{
    if (seq > o->delivered) {
        o->delivered = seq;
    }
}

int parley_order_hole(const parley_order_t *o)
{
    return o->nheld > 0 && o->slots[0].seq > o->delivered + 1;
}
