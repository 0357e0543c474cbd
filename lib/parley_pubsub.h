/*
 * How Parley's nginx workers talk to each other over Redis pub/sub: the
 * channel names they (S)SUBSCRIBE to, the presence keys beside them, and the
 * one-line header in front of every published message.
 *
 * A worker subscribes to the conversation channels of the conversations its
 * WebSocket connections are in, and to the user channels of their users; the
 * API publishes there after a commit.  Every name carries a Redis Cluster
 * hash tag ("{c:<tenant>:<cid>}", "{u:<tenant>:<uid>}") so that sharded
 * pub/sub (SSUBSCRIBE/SPUBLISH) spreads conversations and users over the
 * shards instead of sending every message to every node, and so that a
 * user's channel, presence channel and presence keys share one slot (one
 * node, multi-key commands allowed).  The tenant is in every name (DESIGN
 * §2.5).
 *
 * Formats (all numbers decimal, no leading zeros except "0" itself, at most
 * 2^64 - 1):
 *
 *   parley:{c:<tenant>:<cid>}             conversation channel
 *   parley:{u:<tenant>:<uid>}             user channel
 *   parley:{u:<tenant>:<uid>}:presence    presence channel of a user
 *   parley:{u:<tenant>:<uid>}:conns       presence keys of a user
 *   parley:{u:<tenant>:<uid>}:seen
 *
 * A uid here is 1..PARLEY_PUBSUB_UID_MAX bytes, any bytes but '{', '}' and
 * control characters (< 0x20 and 0x7f), and never "-" (which means "no user"
 * in a message header).  Without '}' the hash tag ends right after the uid,
 * and every name reads back one way only.  (The REST API's user ids also
 * exclude '/' and '%' but allow '{' '}' and "-": such users have no channel,
 * and the writers say so by returning 0.)
 *
 * Writers put a NUL-terminated name into dst and return its length without
 * the NUL; they return 0, and leave dst alone, when an argument is invalid
 * or the name and its NUL do not fit in cap.  A buffer of
 * PARLEY_PUBSUB_CHANNEL_MAX bytes always fits.  Nothing here allocates.
 */
#ifndef PARLEY_PUBSUB_H
#define PARLEY_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#define PARLEY_PUBSUB_UID_MAX 128

/* room for any channel or key name and its NUL (the longest is 170 bytes) */
#define PARLEY_PUBSUB_CHANNEL_MAX 200

/* "parley:{c:<tenant>:<cid>}" */
size_t parley_pubsub_conversation_channel(char *dst, size_t cap,
                                          uint64_t tenant, uint64_t cid);

/* "parley:{u:<tenant>:<uid>}"; 0 when uid is invalid (see above) */
size_t parley_pubsub_user_channel(char *dst, size_t cap, uint64_t tenant,
                                  const char *uid, size_t uid_len);

/* "parley:{u:<tenant>:<uid>}:presence", in the slot of the user channel */
size_t parley_pubsub_presence_channel(char *dst, size_t cap, uint64_t tenant,
                                      const char *uid, size_t uid_len);

/*
 * The presence keys "parley:{u:<tenant>:<uid>}:<suffix>", suffix "conns" or
 * "seen" (a NUL-terminated string; anything else gives 0).
 */
size_t parley_pubsub_presence_key(char *dst, size_t cap, uint64_t tenant,
                                  const char *uid, size_t uid_len,
                                  const char *suffix);

/*
 * Which channel a name is, read back from a (P)MESSAGE/SMESSAGE: exactly
 * the names the channel writers produce and nothing else (no presence keys,
 * no leading zeros, no overflow, a valid uid).  Returns the kind, and fills
 * *out (when not NULL): tenant always, cid for a conversation channel (0
 * otherwise), uid/uid_len pointing into name for the user and presence
 * channels (NULL/0 otherwise).  Returns 0, with *out zeroed, for anything
 * else.
 */
#define PARLEY_PUBSUB_CONVERSATION 1
#define PARLEY_PUBSUB_USER         2
#define PARLEY_PUBSUB_PRESENCE     3

typedef struct {
    int         kind;
    uint64_t    tenant;
    uint64_t    cid;
    const char *uid;
    size_t      uid_len;
} parley_pubsub_channel_t;

int parley_pubsub_channel_parse(const char *name, size_t len,
                                parley_pubsub_channel_t *out);

/*
 * A published message: one header line, then the body, a JSON text that the
 * gateway forwards to clients as is (the header is what lets a worker route
 * it without parsing JSON).  The header is
 *
 *   "<kind> <cid> <seq> <effect> <origin> <subject>\n"
 *
 *   kind     'E': an entry of a conversation's event log, seq = its
 *            event_seq >= 1, cid >= 1;
 *            'T': transient (typing, custom signal, presence), seq = 0,
 *            effect '.'.
 *   cid      the conversation, 0 when none (a user-directed transient).
 *   effect   what the event does to the membership of subject, so that
 *            workers (un)subscribe connections without reading the body:
 *            '+' subject becomes a member, '-' subject stops being one,
 *            'x' the conversation is gone (for everyone), '.' nothing.
 *            '+' and '-' need a subject.
 *   origin   the 64-bit id of the connection that caused it, 0 when none:
 *            the sender's own connection skips its own typing echo.
 *   subject  the user concerned, "-" when none; a subject follows the uid
 *            rules above.  It is the last field and runs to the newline, so
 *            it may hold spaces (the API's user ids may).
 *
 * Exactly one space between the fields before subject, nothing else on the
 * line.  In parley_pubsub_msg_t "no subject" is subject_len == 0 (subject
 * NULL after a parse).
 */
typedef struct {
    char        kind;
    uint64_t    cid;
    uint64_t    seq;
    char        effect;
    uint64_t    origin;
    const char *subject;
    size_t      subject_len;
    const char *body;
    size_t      body_len;
} parley_pubsub_msg_t;

/* the longest header line, newline and NUL included */
#define PARLEY_PUBSUB_HEADER_MAX (2 + 21 + 21 + 2 + 21 + 129 + 1)

/*
 * Writes the header line of *m (body ignored), newline included, NUL after
 * it, into dst; returns its length without the NUL.  0, with dst untouched,
 * when a field breaks the rules above or cap is too small.  The caller
 * publishes the header followed by the body.
 */
size_t parley_pubsub_header(char *dst, size_t cap, const parley_pubsub_msg_t *m);

/*
 * Parses a whole message, header and body (any bytes, possibly none; not
 * inspected here).  0 on success, with subject and body pointing into s;
 * -1 when the header is malformed or breaks a rule, with *m zeroed (m may
 * be NULL to only check).  What parses is what parley_pubsub_header writes,
 * byte for byte.
 */
int parley_pubsub_parse(const char *s, size_t len, parley_pubsub_msg_t *m);

/*
 * The effect of an event type of the conversation log (docs/events.md):
 * '+' for member.added, member.joined and conversation.created (whose
 * subject is the creator, a member from its first entry); '-' for member.left,
 * member.kicked and member.banned; 'x' for conversation.deleted; '.' for
 * everything else (member.unbanned included: a ban on a non-member changes
 * nothing, and banning a member already said '-').
 */
char parley_pubsub_effect(const char *type, size_t len);

#endif
