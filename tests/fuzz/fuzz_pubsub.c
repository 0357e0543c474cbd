// fuzz-sources: lib/parley_pubsub.c
/*
 * libFuzzer harness for the pub/sub message header, channel names and
 * effect table.  Both formats must be canonical: whatever parses is written
 * back to the very same bytes, and whatever the writers produce parses back
 * to the same fields.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "parley_pubsub.h"

/* arbitrary input as a message: a parsed header writes back identically */
static void message(const char *s, size_t size)
{
    parley_pubsub_msg_t m;
    char                h[PARLEY_PUBSUB_HEADER_MAX];
    size_t              n;

    if (parley_pubsub_parse(s, size, &m) != 0) {
        return;
    }

    assert(m.body >= s && m.body <= s + size);
    assert(m.body_len == size - (size_t) (m.body - s));
    assert(m.subject_len <= PARLEY_PUBSUB_UID_MAX);
    assert((m.subject == NULL) == (m.subject_len == 0));

    n = parley_pubsub_header(h, sizeof(h), &m);
    assert(n > 0 && n == (size_t) (m.body - s));
    assert(memcmp(h, s, n) == 0);
    assert(h[n] == '\0');

    /* one byte short never fits */
    assert(parley_pubsub_header(h, n, &m) == 0);
}

/* arbitrary input as a channel name: a parsed name writes back identically */
static void channel(const char *s, size_t size)
{
    parley_pubsub_channel_t ch;
    char                    name[PARLEY_PUBSUB_CHANNEL_MAX];
    size_t                  n = 0;
    int                     kind;

    kind = parley_pubsub_channel_parse(s, size, &ch);
    assert(kind == ch.kind);

    switch (kind) {
    case 0:
        return;
    case PARLEY_PUBSUB_CONVERSATION:
        assert(ch.uid == NULL && ch.uid_len == 0);
        n = parley_pubsub_conversation_channel(name, sizeof(name), ch.tenant,
                                               ch.cid);
        break;
    case PARLEY_PUBSUB_USER:
        assert(ch.cid == 0 && ch.uid > s && ch.uid + ch.uid_len < s + size);
        n = parley_pubsub_user_channel(name, sizeof(name), ch.tenant, ch.uid,
                                       ch.uid_len);
        break;
    case PARLEY_PUBSUB_PRESENCE:
        assert(ch.cid == 0 && ch.uid > s && ch.uid + ch.uid_len < s + size);
        n = parley_pubsub_presence_channel(name, sizeof(name), ch.tenant,
                                           ch.uid, ch.uid_len);
        break;
    default:
        assert(0);
    }

    assert(n == size && memcmp(name, s, n) == 0 && name[n] == '\0');
}

/*
 * Input as fields: bytes 0..1 kind and effect, 2..25 cid, seq, origin
 * (little endian), the rest the subject.  When the writer accepts them, the
 * header parses back to the same fields; the user channels of the subject
 * parse back to it.
 */
static void fields(const uint8_t *data, size_t size)
{
    parley_pubsub_msg_t     m, back;
    parley_pubsub_channel_t ch;
    char                    h[PARLEY_PUBSUB_HEADER_MAX + 8];
    char                    name[PARLEY_PUBSUB_CHANNEL_MAX];
    size_t                  n;

    if (size < 26) {
        return;
    }

    memset(&m, 0, sizeof(m));
    m.kind = (char) data[0];
    m.effect = (char) data[1];
    memcpy(&m.cid, data + 2, 8);
    memcpy(&m.seq, data + 10, 8);
    memcpy(&m.origin, data + 18, 8);
    m.subject = (const char *) data + 26;
    m.subject_len = size - 26;

    /* small numbers too, or kind/seq rules would almost never hold */
    if (data[0] & 0x80) {
        m.kind = (data[0] & 1) ? 'E' : 'T';
        m.seq = m.kind == 'E' ? 1 + data[10] : 0;
        m.cid = data[2] % 4;
    }

    n = parley_pubsub_header(h, PARLEY_PUBSUB_HEADER_MAX, &m);
    if (n > 0) {
        assert(n < PARLEY_PUBSUB_HEADER_MAX && h[n - 1] == '\n');
        memcpy(h + n, "{}", 2);
        assert(parley_pubsub_parse(h, n + 2, &back) == 0);
        assert(back.kind == m.kind && back.cid == m.cid && back.seq == m.seq
               && back.effect == m.effect && back.origin == m.origin);
        assert(back.subject_len == m.subject_len);
        assert(m.subject_len == 0
               || memcmp(back.subject, m.subject, m.subject_len) == 0);
        assert(back.body == h + n && back.body_len == 2);
    }

    n = parley_pubsub_user_channel(name, sizeof(name), m.origin, m.subject,
                                   m.subject_len);
    if (n > 0) {
        assert(parley_pubsub_channel_parse(name, n, &ch) == PARLEY_PUBSUB_USER);
        assert(ch.tenant == m.origin && ch.uid_len == m.subject_len
               && memcmp(ch.uid, m.subject, ch.uid_len) == 0);

        n = parley_pubsub_presence_channel(name, sizeof(name), m.origin,
                                           m.subject, m.subject_len);
        assert(n > 0);
        assert(parley_pubsub_channel_parse(name, n, &ch)
               == PARLEY_PUBSUB_PRESENCE);
        assert(ch.uid_len == m.subject_len);

        /* presence keys are names, not channels */
        n = parley_pubsub_presence_key(name, sizeof(name), m.origin, m.subject,
                                       m.subject_len, "seen");
        assert(n > 0 && parley_pubsub_channel_parse(name, n, &ch) == 0);
    }

    n = parley_pubsub_conversation_channel(name, sizeof(name), m.cid, m.seq);
    assert(n > 0);
    assert(parley_pubsub_channel_parse(name, n, &ch)
           == PARLEY_PUBSUB_CONVERSATION);
    assert(ch.tenant == m.cid && ch.cid == m.seq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *) data;
    char        e = parley_pubsub_effect(s, size);

    assert(e == '+' || e == '-' || e == 'x' || e == '.');

    message(s, size);
    channel(s, size);
    fields(data, size);

    return 0;
}
