/*
 * Sync: what GET /v1/sync needs that is pure logic (docs/api/sync.md).
 *
 * A sync state is the caller's position in each of their conversations:
 * the event_seq of the last event of that conversation's log the caller
 * has been given.  States live server-side (table sync_cursors); a token
 * names one stored state.  This file holds
 *
 *   - the state's binary encoding (versioned, bounded, canonical: a state
 *     has exactly one encoding, so two states are equal iff their bytes are);
 *   - the token's encoding (opaque to clients: base64url of a version byte
 *     and the row id);
 *   - the arithmetic of one sync step: which events of a conversation are
 *     due given the old position and the current membership, and which of
 *     the fetched events make the page;
 *   - the cursor of the conversation list (activity time, id).
 *
 * Nothing here allocates; every function validates what it reads.
 */
#ifndef PARLEY_SYNC_STATE_H
#define PARLEY_SYNC_STATE_H

#include <stddef.h>
#include <stdint.h>

#define PARLEY_SYNC_OK     0
#define PARLEY_SYNC_EINVAL (-1) /* malformed input */
#define PARLEY_SYNC_ENOSPC (-2) /* output too small */

/* ---- states ------------------------------------------------------------ */

#define PARLEY_SYNC_STATE_VERSION 1

/* most conversations one state may hold */
#define PARLEY_SYNC_STATE_MAX 50000

typedef struct {
    uint64_t conversation_id; /* never 0 */
    uint64_t event_seq;       /* last event delivered; 0: none yet */
} parley_sync_pos_t;

/*
 * Encoding: the version byte, the count as a LEB128 varint, then per entry,
 * in strictly ascending conversation order, the difference to the previous
 * conversation id (the first: the id itself; never 0) and the event_seq,
 * both as minimal LEB128 varints.  A decoder accepts exactly what the
 * encoder writes: no overlong varint, no zero delta, no id overflow, no
 * trailing byte, at most PARLEY_SYNC_STATE_MAX entries.
 */

/* Bytes that encoding n entries can take at most. */
size_t parley_sync_state_encoded_max(size_t n);

/*
 * Encodes pos[0..n) into dst (cap bytes); *out_len gets the length.
 * EINVAL when n > PARLEY_SYNC_STATE_MAX, an id is 0 or the ids are not
 * strictly ascending; ENOSPC when cap is too small.
 */
int parley_sync_state_encode(const parley_sync_pos_t *pos, size_t n,
                             unsigned char *dst, size_t cap, size_t *out_len);

/*
 * The entry count an encoding announces (checked against the maximum and
 * against len, so that a caller can size the array before decoding).
 */
int parley_sync_state_count(const unsigned char *src, size_t len, size_t *n);

/* Decodes into pos (cap entries); *n gets the count. */
int parley_sync_state_decode(const unsigned char *src, size_t len,
                             parley_sync_pos_t *pos, size_t cap, size_t *n);

/* The entry of conversation_id in pos[0..n) (ascending), or NULL. */
const parley_sync_pos_t *parley_sync_state_find(const parley_sync_pos_t *pos,
                                                size_t n,
                                                uint64_t conversation_id);

/* ---- tokens ------------------------------------------------------------ */

#define PARLEY_SYNC_TOKEN_VERSION 1
#define PARLEY_SYNC_TOKEN_LEN     12 /* base64url of 1 + 8 bytes */

/*
 * Writes the token of the state row id (not 0) and a NUL into dst, which
 * holds at least PARLEY_SYNC_TOKEN_LEN + 1 bytes.
 */
int parley_sync_token_encode(uint64_t id, char *dst, size_t cap);

/* The row id a token names; EINVAL for anything the encoder did not write. */
int parley_sync_token_decode(const char *src, size_t len, uint64_t *id);

/* ---- one sync step ----------------------------------------------------- */

/* The caller's membership of one conversation, as it is now. */
typedef struct {
    uint64_t conversation_id;
    uint64_t joined_event; /* first event the member may read (0: from 1) */
    uint64_t left_event;   /* not active: the last one (0: unknown) */
    uint64_t event_seq;    /* the conversation's last event */
    int      active;
} parley_sync_member_t;

typedef struct {
    uint64_t conversation_id;
    uint64_t from; /* next event to deliver */
    uint64_t to;   /* last event that may be delivered; from > to: none */
    uint64_t end;  /* last event of this page's fetch window */
    int      held; /* STRICT select: waits for the next page */
} parley_sync_range_t;

/* A fetched event: its conversation and number, in the order fetched. */
typedef struct {
    uint64_t conversation_id;
    uint64_t event_seq;
} parley_sync_key_t;

/*
 * A membership's position in a fresh state ("now"): its last readable
 * event, so that the first sync delivers only what happens afterwards.
 */
uint64_t parley_sync_now(const parley_sync_member_t *m);

/*
 * The range of m's events that are due, given the position the old state
 * holds for the conversation (known NULL: the state did not know it, so
 * the caller joined after the state was made and gets everything from the
 * joined event).  A member reads [joined_event, left_event] of the log, or
 * up to event_seq while active; a re-join after a removal starts over at
 * the new joined_event; a membership whose joined and left events are the
 * same one (a ban of someone who never was a member) reads nothing.  The
 * fetch window end is from + window - 1, bounded by to.
 */
void parley_sync_range(const parley_sync_member_t *m,
                       const parley_sync_pos_t *known, uint64_t window,
                       parley_sync_range_t *r);

#define PARLEY_SYNC_STRICT    0 /* rows in any order; take what is next */
#define PARLEY_SYNC_SKIP_GAPS 1 /* rows by (conversation, seq), fetched
                                   with LIMIT limit: holes are skipped */

/*
 * Chooses the page among rows[0..nrows), fetched in the order the page
 * should have (by time), for ranges[0..n) sorted by conversation id, and
 * advances each range's from past what it takes; emit[i] says whether
 * rows[i] is on the page.  At most limit rows are taken.
 *
 * PARLEY_SYNC_STRICT: a conversation's events are taken only as the
 * contiguous run from its from, in fetch order; once a conversation's row
 * is out of turn (timestamps that disagree with event_seq), the rest of
 * that conversation waits for the next page.  So per conversation the page
 * is in strict event_seq order with no hole and no repeat, whatever the
 * fetch order.
 *
 * PARLEY_SYNC_SKIP_GAPS: the fallback when STRICT takes nothing although
 * events are due (or the log lost rows): rows must come by conversation
 * and event_seq, as fetched with "LIMIT limit"; every conversation the
 * fetch is known to have covered moves past its whole window even where
 * rows are missing, so that a damaged log cannot stall a client.
 *
 * Returns the number of rows taken.
 */
size_t parley_sync_select(parley_sync_range_t *ranges, size_t n,
                          const parley_sync_key_t *rows, size_t nrows,
                          size_t limit, int mode, unsigned char *emit);

/* Whether a range still has events due after the page. */
int parley_sync_pending(const parley_sync_range_t *r);

/* ---- the conversation list's cursor ------------------------------------ */

/*
 * A page of the conversation list ends at (activity time, conversation
 * id); the next page starts after it.  The time is SQL DATETIME(3) text,
 * "YYYY-MM-DD HH:MM:SS.mmm" (23 bytes).  The cursor is base64url of the
 * version byte, the 23 bytes and the id (8 bytes, big-endian).
 */
#define PARLEY_LIST_TIME_LEN   23
#define PARLEY_LIST_CURSOR_LEN 43 /* base64url of 1 + 23 + 8 bytes */

/* dst holds at least PARLEY_LIST_CURSOR_LEN + 1 bytes (NUL-terminated). */
int parley_list_cursor_encode(const char *time, size_t time_len, uint64_t id,
                              char *dst, size_t cap);

/* time receives PARLEY_LIST_TIME_LEN bytes and a NUL. */
int parley_list_cursor_decode(const char *src, size_t len,
                              char time[PARLEY_LIST_TIME_LEN + 1],
                              uint64_t *id);

/* Whether s[0..len) is DATETIME(3) text as above (a plausible date). */
int parley_list_time_valid(const char *s, size_t len);

#endif
