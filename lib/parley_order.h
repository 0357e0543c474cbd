/*
 * In-order delivery of a gap-free sequence that arrives out of order, with
 * duplicates and holes: what the WebSocket gateway does per connection and
 * conversation with the log's event_seq (docs/realtime.md, "Delivery").
 *
 * A window remembers the last number it gave out (`delivered`) and holds,
 * sorted, at most `cap` numbers that came early, each with an opaque item
 * (the caller's frame) and a small flag.  Offering a number says what to
 * do with it:
 *
 *   DELIVER    it is the next one: give it out now (delivered advanced);
 *              then call parley_order_next until it says NONE, since held
 *              ones may have come in turn;
 *   DUPLICATE  given out or held already: drop it;
 *   BEYOND     past the window's end (`until`: the membership ended
 *              there): drop it;
 *   HELD       kept until the hole before it fills; the caller owns a
 *              reference to the item while it is held (it gets it back
 *              from parley_order_next, or as `evicted`);
 *   FULL       too far ahead to keep: drop it, the store still has it.
 *
 * When the window is full an earlier number pushes out the latest held one
 * (returned in *evicted, to release): the earliest numbers are the ones that
 * let delivery go on.  parley_order_hole says whether a hole is waiting to
 * be filled from elsewhere (the gateway then reads the store).
 *
 * Nothing here allocates: the caller gives the slots (cap of them) and may
 * give them late — a window without slots holds nothing (FULL).
 */
#ifndef PARLEY_ORDER_H
#define PARLEY_ORDER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t seq;
    void    *item;
    int      flag;
} parley_order_slot_t;

typedef struct {
    uint64_t             delivered; /* last number given out; 0: none */
    uint64_t             until;     /* 0: open; else the last acceptable */
    parley_order_slot_t *slots;     /* NULL until the caller gives some */
    size_t               cap;
    size_t               nheld;
} parley_order_t;

typedef enum {
    PARLEY_ORDER_DELIVER = 0,
    PARLEY_ORDER_DUPLICATE,
    PARLEY_ORDER_BEYOND,
    PARLEY_ORDER_HELD,
    PARLEY_ORDER_FULL
} parley_order_rc_t;

/* A window that has given out everything up to delivered. */
void parley_order_init(parley_order_t *o, uint64_t delivered);

/* Gives the window cap slots (when it has none yet). */
void parley_order_slots(parley_order_t *o, parley_order_slot_t *slots,
                        size_t cap);

/*
 * Offers seq (>= 1) with its item and flag.  *evicted is set to an item
 * the window let go of (HELD with a full window), else to NULL.
 */
parley_order_rc_t parley_order_offer(parley_order_t *o, uint64_t seq,
                                     void *item, int flag, void **evicted);

/*
 * As parley_order_offer for a window that is paused (its start is still
 * being read from elsewhere): even the next number is held, never
 * delivered; HELD, DUPLICATE, BEYOND or FULL.
 */
parley_order_rc_t parley_order_hold(parley_order_t *o, uint64_t seq,
                                    void *item, int flag, void **evicted);

/*
 * Takes the next held entry that needs the caller: returns 1 when it is in
 * turn (deliver it: delivered advanced), 2 when it is stale (given out
 * meanwhile, or past `until`: drop it), 0 when none (nothing held, or a
 * hole before the first held).  *seq, *item and *flag describe it.
 */
int parley_order_next(parley_order_t *o, uint64_t *seq, void **item,
                      int *flag);

/*
 * Moves delivered forward to seq (a range filled from elsewhere, or
 * skipped on purpose); a seq at or below delivered changes nothing.  Held
 * entries at or below it become stale for parley_order_next.
 */
void parley_order_skip(parley_order_t *o, uint64_t seq);

/* 1 when entries are held behind a hole: the next one is not held. */
int parley_order_hole(const parley_order_t *o);

#endif
