#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "parley_pubsub.h"
#include "parley_redis_slot.h"

#define U64_MAX_STR "18446744073709551615"
#define U64_OVER    "18446744073709551616"

static char buf[PARLEY_PUBSUB_CHANNEL_MAX];

static unsigned slot(const char *s)
{
    return parley_redis_slot((const unsigned char *) s, strlen(s));
}

static int kind_of(const char *name)
{
    parley_pubsub_channel_t ch;
    return parley_pubsub_channel_parse(name, strlen(name), &ch);
}

static int parse(const char *s, parley_pubsub_msg_t *m)
{
    return parley_pubsub_parse(s, strlen(s), m);
}

static int parses(const char *s)
{
    parley_pubsub_msg_t m;
    return parse(s, &m) == 0;
}

/* ---- channel writers --------------------------------------------------- */

Test(pubsub, conversation_channel)
{
    cr_assert_eq(parley_pubsub_conversation_channel(buf, sizeof(buf), 7, 42),
                 strlen("parley:{c:7:42}"));
    cr_assert_str_eq(buf, "parley:{c:7:42}");

    cr_assert_eq(parley_pubsub_conversation_channel(buf, sizeof(buf), 0, 0),
                 14);
    cr_assert_str_eq(buf, "parley:{c:0:0}");

    parley_pubsub_conversation_channel(buf, sizeof(buf), UINT64_MAX,
                                       UINT64_MAX);
    cr_assert_str_eq(buf, "parley:{c:" U64_MAX_STR ":" U64_MAX_STR "}");
}

Test(pubsub, user_presence_channels_and_keys)
{
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 7, "alice", 5),
                 strlen("parley:{u:7:alice}"));
    cr_assert_str_eq(buf, "parley:{u:7:alice}");

    cr_assert_eq(
        parley_pubsub_presence_channel(buf, sizeof(buf), 7, "alice", 5),
        strlen("parley:{u:7:alice}:presence"));
    cr_assert_str_eq(buf, "parley:{u:7:alice}:presence");

    cr_assert_gt(parley_pubsub_presence_key(buf, sizeof(buf), 7, "alice", 5,
                                            "conns"),
                 0);
    cr_assert_str_eq(buf, "parley:{u:7:alice}:conns");

    cr_assert_gt(parley_pubsub_presence_key(buf, sizeof(buf), 7, "alice", 5,
                                            "seen"),
                 0);
    cr_assert_str_eq(buf, "parley:{u:7:alice}:seen");

    /* any other suffix */
    cr_assert_eq(parley_pubsub_presence_key(buf, sizeof(buf), 7, "alice", 5,
                                            "presence"),
                 0);
    cr_assert_eq(parley_pubsub_presence_key(buf, sizeof(buf), 7, "alice", 5,
                                            "conn"),
                 0);
    cr_assert_eq(parley_pubsub_presence_key(buf, sizeof(buf), 7, "alice", 5,
                                            ""),
                 0);
    cr_assert_eq(parley_pubsub_presence_key(buf, sizeof(buf), 7, "alice", 5,
                                            NULL),
                 0);

    /* uids may hold spaces, colons, UTF-8 */
    cr_assert_gt(parley_pubsub_user_channel(buf, sizeof(buf), 1,
                                            "a b:c\xc3\xa9", 7),
                 0);
    cr_assert_str_eq(buf, "parley:{u:1:a b:c\xc3\xa9}");
}

Test(pubsub, one_slot_per_user_spread_over_conversations)
{
    char     a[PARLEY_PUBSUB_CHANNEL_MAX], b[PARLEY_PUBSUB_CHANNEL_MAX];
    unsigned seen[PARLEY_REDIS_SLOTS / 32 + 1] = {0}, distinct = 0;

    parley_pubsub_user_channel(a, sizeof(a), 7, "alice", 5);
    parley_pubsub_presence_channel(b, sizeof(b), 7, "alice", 5);
    cr_assert_eq(slot(a), slot(b));
    cr_assert_eq(slot(a), slot("u:7:alice"));
    parley_pubsub_presence_key(b, sizeof(b), 7, "alice", 5, "conns");
    cr_assert_eq(slot(a), slot(b));
    parley_pubsub_presence_key(b, sizeof(b), 7, "alice", 5, "seen");
    cr_assert_eq(slot(a), slot(b));

    parley_pubsub_conversation_channel(a, sizeof(a), 7, 42);
    cr_assert_eq(slot(a), slot("c:7:42"));

    /* 1000 conversations land on many slots, not one */
    for (uint64_t cid = 1; cid <= 1000; cid++) {
        unsigned s;
        parley_pubsub_conversation_channel(a, sizeof(a), 7,
                                           254428574059069440ull + cid);
        s = slot(a);
        if (!(seen[s / 32] & (1u << (s % 32)))) {
            seen[s / 32] |= 1u << (s % 32);
            distinct++;
        }
    }
    cr_assert_gt(distinct, 900);
}

Test(pubsub, invalid_uids)
{
    char long_uid[PARLEY_PUBSUB_UID_MAX + 1];
    char c[2] = {0, 0};

    memset(long_uid, 'a', sizeof(long_uid));

    cr_assert_gt(parley_pubsub_user_channel(buf, sizeof(buf), 1, long_uid,
                                            PARLEY_PUBSUB_UID_MAX),
                 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, long_uid,
                                            PARLEY_PUBSUB_UID_MAX + 1),
                 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, "", 0), 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, NULL, 3), 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, "-", 1), 0);
    cr_assert_gt(parley_pubsub_user_channel(buf, sizeof(buf), 1, "--", 2), 0);
    cr_assert_gt(parley_pubsub_user_channel(buf, sizeof(buf), 1, "-a", 2), 0);

    for (int i = 0; i < 256; i++) {
        int bad = i < 0x20 || i == 0x7f || i == '{' || i == '}' || i == '-';
        c[0] = (char) i;
        cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, c, 1)
                         == 0,
                     bad, "byte 0x%02x", i);
        cr_assert_eq(parley_pubsub_presence_channel(buf, sizeof(buf), 1, c, 1)
                         == 0,
                     bad, "byte 0x%02x", i);
        cr_assert_eq(parley_pubsub_presence_key(buf, sizeof(buf), 1, c, 1,
                                                "seen")
                         == 0,
                     bad, "byte 0x%02x", i);
    }

    /* a bad byte anywhere, a NUL included */
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, "ab}", 3), 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, "a{b", 3), 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, "a\0b", 3),
                 0);
    cr_assert_eq(parley_pubsub_user_channel(buf, sizeof(buf), 1, "a\nb", 3),
                 0);
}

Test(pubsub, channel_cap_exact_and_short_by_one)
{
    char   uid[PARLEY_PUBSUB_UID_MAX];
    char   small[PARLEY_PUBSUB_CHANNEL_MAX];
    size_t n;

    memset(uid, 'z', sizeof(uid));

    /* the longest name of all fits the documented bound */
    n = parley_pubsub_presence_channel(small, sizeof(small), UINT64_MAX, uid,
                                       sizeof(uid));
    cr_assert_eq(n, 169);
    cr_assert_lt(n, PARLEY_PUBSUB_CHANNEL_MAX);

    n = strlen("parley:{c:7:42}");
    memset(small, '#', sizeof(small));
    cr_assert_eq(parley_pubsub_conversation_channel(small, n, 7, 42), 0);
    cr_assert_eq(small[0], '#', "dst untouched on failure");
    cr_assert_eq(parley_pubsub_conversation_channel(small, n + 1, 7, 42), n);
    cr_assert_eq(small[n], '\0');
    cr_assert_eq(parley_pubsub_conversation_channel(NULL, 100, 7, 42), 0);

    n = strlen("parley:{u:7:bob}");
    cr_assert_eq(parley_pubsub_user_channel(small, n, 7, "bob", 3), 0);
    cr_assert_eq(parley_pubsub_user_channel(small, n + 1, 7, "bob", 3), n);

    n = strlen("parley:{u:7:bob}:presence");
    cr_assert_eq(parley_pubsub_presence_channel(small, n, 7, "bob", 3), 0);
    cr_assert_eq(parley_pubsub_presence_channel(small, n + 1, 7, "bob", 3), n);

    n = strlen("parley:{u:7:bob}:conns");
    cr_assert_eq(parley_pubsub_presence_key(small, n, 7, "bob", 3, "conns"),
                 0);
    cr_assert_eq(
        parley_pubsub_presence_key(small, n + 1, 7, "bob", 3, "conns"), n);

    cr_assert_eq(parley_pubsub_conversation_channel(small, 0, 7, 42), 0);
}

/* ---- channel parse ----------------------------------------------------- */

Test(pubsub, channel_parse_round_trip)
{
    parley_pubsub_channel_t ch;
    size_t                  n;

    n = parley_pubsub_conversation_channel(buf, sizeof(buf), 7, 42);
    cr_assert_eq(parley_pubsub_channel_parse(buf, n, &ch),
                 PARLEY_PUBSUB_CONVERSATION);
    cr_assert_eq(ch.kind, PARLEY_PUBSUB_CONVERSATION);
    cr_assert_eq(ch.tenant, 7);
    cr_assert_eq(ch.cid, 42);
    cr_assert_null(ch.uid);
    cr_assert_eq(ch.uid_len, 0);

    n = parley_pubsub_conversation_channel(buf, sizeof(buf), UINT64_MAX, 0);
    cr_assert_eq(parley_pubsub_channel_parse(buf, n, &ch),
                 PARLEY_PUBSUB_CONVERSATION);
    cr_assert_eq(ch.tenant, UINT64_MAX);
    cr_assert_eq(ch.cid, 0);

    n = parley_pubsub_user_channel(buf, sizeof(buf), 9, "a b:c", 5);
    cr_assert_eq(parley_pubsub_channel_parse(buf, n, &ch), PARLEY_PUBSUB_USER);
    cr_assert_eq(ch.tenant, 9);
    cr_assert_eq(ch.cid, 0);
    cr_assert_eq(ch.uid, buf + strlen("parley:{u:9:"), "points into name");
    cr_assert_eq(ch.uid_len, 5);

    n = parley_pubsub_presence_channel(buf, sizeof(buf), 9, "bob", 3);
    cr_assert_eq(parley_pubsub_channel_parse(buf, n, &ch),
                 PARLEY_PUBSUB_PRESENCE);
    cr_assert_eq(ch.tenant, 9);
    cr_assert_eq(ch.uid_len, 3);
    cr_assert_eq(memcmp(ch.uid, "bob", 3), 0);

    /* a user named like the presence suffix is still a user */
    cr_assert_eq(kind_of("parley:{u:1::presence}"), PARLEY_PUBSUB_USER);
    cr_assert_eq(kind_of("parley:{u:1::presence}:presence"),
                 PARLEY_PUBSUB_PRESENCE);

    /* without out */
    cr_assert_eq(parley_pubsub_channel_parse(buf, n, NULL),
                 PARLEY_PUBSUB_PRESENCE);
}

Test(pubsub, channel_parse_strict)
{
    parley_pubsub_channel_t ch;
    char                    name[300];
    char                    uid[PARLEY_PUBSUB_UID_MAX + 1];

    static const char *bad[] = {
        "",
        "parley:",
        "parley:{c:",
        "parley:{c:}",
        "parley:{c:7}",
        "parley:{c:7:}",
        "parley:{c::42}",
        "parley:{c:7:42",
        "parley:{c:7:42}x",
        "parley:{c:7:42}:presence",
        "parley:{c:07:42}",
        "parley:{c:7:042}",
        "parley:{c:00:42}",
        "parley:{c:7:-1}",
        "parley:{c:7:+1}",
        "parley:{c:7:4 2}",
        "parley:{c:7:42:1}",
        "parley:{c:" U64_OVER ":1}",
        "parley:{c:1:" U64_OVER "}",
        "parley:{c:1:99999999999999999999}",
        "parley:{c:1:000000000000000000001}",
        "parley:{x:7:42}",
        "Parley:{c:7:42}",
        "parley:{C:7:42}",
        "parley:c:7:42",
        "parley:{c:7:42}}",
        " parley:{c:7:42}",
        "parley:{u:7:}",
        "parley:{u:7:-}",
        "parley:{u:7:a{b}",
        "parley:{u:7:a\tb}",
        "parley:{u:7:a\x7f}",
        "parley:{u:7:alice",
        "parley:{u:7:alice}:conns",
        "parley:{u:7:alice}:seen",
        "parley:{u:7:alice}:presenc",
        "parley:{u:7:alice}:presencex",
        "parley:{u:7:alice}:presence:presence",
        "parley:{u:7:alice}}",
        "parley:{u:07:alice}",
        "parley:{u::alice}",
        "parley:{u:" U64_OVER ":alice}",
        "parley:{u:7alice}",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ch.kind = 99;
        cr_assert_eq(parley_pubsub_channel_parse(bad[i], strlen(bad[i]), &ch),
                     0, "accepted \"%s\"", bad[i]);
        cr_assert_eq(ch.kind, 0);
        cr_assert_eq(ch.tenant, 0);
    }

    /* the largest numbers and the longest uid are fine, one more is not */
    cr_assert_eq(kind_of("parley:{c:" U64_MAX_STR ":" U64_MAX_STR "}"),
                 PARLEY_PUBSUB_CONVERSATION);

    memset(uid, 'q', sizeof(uid));
    snprintf(name, sizeof(name), "parley:{u:1:%.*s}", PARLEY_PUBSUB_UID_MAX,
             uid);
    cr_assert_eq(kind_of(name), PARLEY_PUBSUB_USER);
    snprintf(name, sizeof(name), "parley:{u:1:%.*s}",
             PARLEY_PUBSUB_UID_MAX + 1, uid);
    cr_assert_eq(kind_of(name), 0);

    /* a NUL inside the length is a byte like any other: rejected */
    cr_assert_eq(parley_pubsub_channel_parse("parley:{u:1:a\0b}", 16, &ch), 0);
    /* a prefix of a valid name, by length */
    cr_assert_eq(parley_pubsub_channel_parse("parley:{c:7:42}", 14, &ch), 0);
    cr_assert_eq(parley_pubsub_channel_parse(NULL, 0, &ch), 0);
}

/* ---- headers ----------------------------------------------------------- */

static parley_pubsub_msg_t msg(char kind, uint64_t cid, uint64_t seq,
                               char effect, uint64_t origin,
                               const char *subject)
{
    parley_pubsub_msg_t m;

    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.cid = cid;
    m.seq = seq;
    m.effect = effect;
    m.origin = origin;
    m.subject = subject;
    m.subject_len = subject ? strlen(subject) : 0;

    return m;
}

static const char *header(parley_pubsub_msg_t m)
{
    static char h[PARLEY_PUBSUB_HEADER_MAX];

    if (parley_pubsub_header(h, sizeof(h), &m) == 0) {
        return NULL;
    }

    return h;
}

Test(pubsub, header_writes)
{
    cr_assert_str_eq(header(msg('E', 42, 12, '+', 0, "bob")),
                     "E 42 12 + 0 bob\n");
    cr_assert_str_eq(header(msg('E', 42, 13, '.', 991, NULL)),
                     "E 42 13 . 991 -\n");
    cr_assert_str_eq(header(msg('E', 42, 14, 'x', 0, NULL)),
                     "E 42 14 x 0 -\n");
    cr_assert_str_eq(header(msg('E', 42, 15, '-', 0, "bob smith")),
                     "E 42 15 - 0 bob smith\n");
    cr_assert_str_eq(header(msg('T', 42, 0, '.', 77, "alice")),
                     "T 42 0 . 77 alice\n");
    cr_assert_str_eq(header(msg('T', 0, 0, '.', 0, NULL)), "T 0 0 . 0 -\n");
    cr_assert_str_eq(header(msg('E', UINT64_MAX, UINT64_MAX, '.', UINT64_MAX,
                                NULL)),
                     "E " U64_MAX_STR " " U64_MAX_STR " . " U64_MAX_STR
                     " -\n");
}

Test(pubsub, header_rejects)
{
    char long_uid[PARLEY_PUBSUB_UID_MAX + 2];

    /* kind */
    cr_assert_null(header(msg('e', 42, 1, '.', 0, NULL)));
    cr_assert_null(header(msg('X', 42, 1, '.', 0, NULL)));
    cr_assert_null(header(msg(' ', 42, 1, '.', 0, NULL)));
    cr_assert_null(header(msg('\0', 42, 1, '.', 0, NULL)));
    /* seq rules, and an entry always has a conversation */
    cr_assert_null(header(msg('E', 42, 0, '.', 0, NULL)));
    cr_assert_null(header(msg('T', 42, 1, '.', 0, NULL)));
    cr_assert_null(header(msg('E', 0, 1, '.', 0, NULL)));
    /* effects: only the four, '+' '-' need a subject, transients none */
    cr_assert_null(header(msg('E', 42, 1, '*', 0, NULL)));
    cr_assert_null(header(msg('E', 42, 1, ' ', 0, NULL)));
    cr_assert_null(header(msg('E', 42, 1, '+', 0, NULL)));
    cr_assert_null(header(msg('E', 42, 1, '-', 0, NULL)));
    cr_assert_null(header(msg('T', 42, 0, '+', 0, "bob")));
    cr_assert_null(header(msg('T', 42, 0, 'x', 0, NULL)));
    /* subjects as uids */
    cr_assert_null(header(msg('E', 42, 1, '.', 0, "-")));
    cr_assert_null(header(msg('E', 42, 1, '.', 0, "a\nb")));
    cr_assert_null(header(msg('E', 42, 1, '.', 0, "a\rb")));
    cr_assert_null(header(msg('E', 42, 1, '.', 0, "a}")));
    cr_assert_null(header(msg('E', 42, 1, '.', 0, "{a")));
    cr_assert_null(header(msg('E', 42, 1, '.', 0, "a\x7f")));

    memset(long_uid, 'a', sizeof(long_uid));
    long_uid[PARLEY_PUBSUB_UID_MAX + 1] = '\0';
    cr_assert_null(header(msg('E', 42, 1, '.', 0, long_uid)));
    long_uid[PARLEY_PUBSUB_UID_MAX] = '\0';
    cr_assert_not_null(header(msg('E', 42, 1, '.', 0, long_uid)));

    cr_assert_eq(parley_pubsub_header(buf, sizeof(buf), NULL), 0);
}

Test(pubsub, header_cap)
{
    char                h[PARLEY_PUBSUB_HEADER_MAX];
    char                uid[PARLEY_PUBSUB_UID_MAX + 1];
    parley_pubsub_msg_t m;
    size_t              n;

    memset(uid, 'u', PARLEY_PUBSUB_UID_MAX);
    uid[PARLEY_PUBSUB_UID_MAX] = '\0';

    /* the longest header fits PARLEY_PUBSUB_HEADER_MAX exactly */
    m = msg('E', UINT64_MAX, UINT64_MAX, '+', UINT64_MAX, uid);
    n = parley_pubsub_header(h, sizeof(h), &m);
    cr_assert_eq(n, PARLEY_PUBSUB_HEADER_MAX - 1);
    cr_assert_eq(h[n - 1], '\n');
    cr_assert_eq(h[n], '\0');

    memset(h, '#', sizeof(h));
    cr_assert_eq(parley_pubsub_header(h, n, &m), 0);
    cr_assert_eq(h[0], '#', "dst untouched on failure");

    m = msg('E', 42, 12, '+', 0, "bob");
    n = strlen("E 42 12 + 0 bob\n");
    cr_assert_eq(parley_pubsub_header(h, n, &m), 0);
    cr_assert_eq(parley_pubsub_header(h, n + 1, &m), n);
    cr_assert_eq(parley_pubsub_header(NULL, 100, &m), 0);
}

/* ---- message parse ----------------------------------------------------- */

Test(pubsub, parse_fields)
{
    parley_pubsub_msg_t m;
    const char         *s = "E 42 12 + 991 bob\n{\"type\":\"member.added\"}";

    cr_assert_eq(parse(s, &m), 0);
    cr_assert_eq(m.kind, 'E');
    cr_assert_eq(m.cid, 42);
    cr_assert_eq(m.seq, 12);
    cr_assert_eq(m.effect, '+');
    cr_assert_eq(m.origin, 991);
    cr_assert_eq(m.subject, s + 14);
    cr_assert_eq(m.subject_len, 3);
    cr_assert_eq(m.body, s + 18);
    cr_assert_eq(m.body_len, strlen("{\"type\":\"member.added\"}"));

    cr_assert_eq(parse("T 0 0 . 0 -\n", &m), 0);
    cr_assert_eq(m.kind, 'T');
    cr_assert_null(m.subject);
    cr_assert_eq(m.subject_len, 0);
    cr_assert_eq(m.body_len, 0);

    /* the body is any bytes, newlines and NULs included */
    cr_assert_eq(parley_pubsub_parse("T 0 0 . 0 -\na\nb\0c", 17, &m), 0);
    cr_assert_eq(m.body_len, 5);

    /* the subject runs to the newline, spaces and all */
    cr_assert_eq(parse("E 1 1 . 0 bob smith\n{}", &m), 0);
    cr_assert_eq(m.subject_len, 9);
    cr_assert_eq(parse("E 1 1 . 0  bob\n{}", &m), 0);
    cr_assert_eq(m.subject_len, 4);
    cr_assert_eq(parse("E 1 1 . 0 bob \n{}", &m), 0);
    cr_assert_eq(m.subject_len, 4);

    cr_assert_eq(parse("E " U64_MAX_STR " " U64_MAX_STR " . " U64_MAX_STR
                       " -\n{}",
                       &m),
                 0);
    cr_assert_eq(m.cid, UINT64_MAX);
    cr_assert_eq(m.seq, UINT64_MAX);
    cr_assert_eq(m.origin, UINT64_MAX);

    cr_assert_eq(parley_pubsub_parse("T 0 0 . 0 -\n", 12, NULL), 0);
}

Test(pubsub, parse_round_trip)
{
    static const char *ok[] = {
        "E 42 12 + 0 bob\n",    "E 42 13 - 7 bob\n", "E 42 14 x 0 -\n",
        "E 42 15 x 0 bob\n",    "E 1 1 . 0 -\n",     "T 42 0 . 77 alice\n",
        "T 0 0 . 0 \xc3\xa9\n", "T 0 0 . 0 --\n",
    };
    parley_pubsub_msg_t m;
    char                h[PARLEY_PUBSUB_HEADER_MAX];
    size_t              n;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(parse(ok[i], &m), 0, "rejected \"%s\"", ok[i]);
        n = parley_pubsub_header(h, sizeof(h), &m);
        cr_assert_eq(n, strlen(ok[i]));
        cr_assert_str_eq(h, ok[i]);
    }
}

Test(pubsub, parse_rejects)
{
    static const char *bad[] = {
        /* kind */
        "X 42 1 . 0 -\n{}",
        "e 42 1 . 0 -\n{}",
        "EE 42 1 . 0 -\n{}",
        " 42 1 . 0 -\n{}",
        /* seq rules and the conversation of an entry */
        "E 42 0 . 0 -\n{}",
        "T 42 1 . 0 -\n{}",
        "E 0 1 . 0 -\n{}",
        /* effects */
        "E 42 1 * 0 -\n{}",
        "E 42 1 ++ 0 bob\n{}",
        "E 42 1 + 0 -\n{}",
        "E 42 1 - 0 -\n{}",
        "T 42 0 + 0 bob\n{}",
        "T 42 0 x 0 -\n{}",
        /* leading zeros, signs, non-digits */
        "E 042 1 . 0 -\n{}",
        "E 42 01 . 0 -\n{}",
        "E 42 1 . 00 -\n{}",
        "E 42 1 . 01 -\n{}",
        "T 00 0 . 0 -\n{}",
        "E +42 1 . 0 -\n{}",
        "E -42 1 . 0 -\n{}",
        "E 4a2 1 . 0 -\n{}",
        "E 0x2a 1 . 0 -\n{}",
        /* overflow */
        "E " U64_OVER " 1 . 0 -\n{}",
        "E 42 " U64_OVER " . 0 -\n{}",
        "E 42 1 . " U64_OVER " -\n{}",
        "E 42 1 . 99999999999999999999 -\n{}",
        "E 42 1 . 100000000000000000000 -\n{}",
        /* missing fields */
        "\n{}",
        "E\n{}",
        "E 42\n{}",
        "E 42 1\n{}",
        "E 42 1 .\n{}",
        "E 42 1 . 0\n{}",
        "E 42 1 . 0 \n{}",
        "E 42 1 0 -\n{}",
        "E 42 . 0 -\n{}",
        /* double spaces, other separators */
        "E  42 1 . 0 -\n{}",
        "E 42  1 . 0 -\n{}",
        "E 42 1  . 0 -\n{}",
        "E 42 1 .  0 -\n{}",
        "E\t42 1 . 0 -\n{}",
        " E 42 1 . 0 -\n{}",
        /* no newline, or CRLF */
        "E 42 1 . 0 -",
        "E 42 1 . 0 -{}",
        "E 42 1 . 0 -\r\n{}",
        "",
        /* bad subjects */
        "E 42 1 . 0 a{b\n{}",
        "E 42 1 . 0 a}b\n{}",
        "E 42 1 . 0 a\tb\n{}",
        "E 42 1 . 0 a\x7f\n{}",
        "E 42 1 . 0 a\x01\n{}",
    };
    parley_pubsub_msg_t m;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m.kind = 'Q';
        cr_assert_eq(parse(bad[i], &m), -1, "accepted \"%s\"", bad[i]);
        cr_assert_eq(m.kind, 0);
        cr_assert_null(m.body);
    }

    cr_assert_eq(parley_pubsub_parse(NULL, 0, &m), -1);
    /* a NUL in the header is a control character */
    cr_assert_eq(parley_pubsub_parse("E 42 1 . 0 a\0b\n{}", 17, &m), -1);
    /* the header is cut by the length */
    cr_assert_eq(parley_pubsub_parse("E 42 1 . 0 -\n", 12, &m), -1);
}

Test(pubsub, parse_long_subjects)
{
    char                s[PARLEY_PUBSUB_HEADER_MAX + 64];
    char                uid[PARLEY_PUBSUB_UID_MAX + 2];
    parley_pubsub_msg_t m;

    memset(uid, 'u', sizeof(uid));

    snprintf(s, sizeof(s), "E 1 1 . 0 %.*s\n{}", PARLEY_PUBSUB_UID_MAX, uid);
    cr_assert_eq(parse(s, &m), 0);
    cr_assert_eq(m.subject_len, PARLEY_PUBSUB_UID_MAX);

    snprintf(s, sizeof(s), "E 1 1 . 0 %.*s\n{}", PARLEY_PUBSUB_UID_MAX + 1,
             uid);
    cr_assert_eq(parse(s, &m), -1);

    /* the longest header of all, and one byte more */
    snprintf(s, sizeof(s),
             "E " U64_MAX_STR " " U64_MAX_STR " + " U64_MAX_STR " %.*s\n{}",
             PARLEY_PUBSUB_UID_MAX, uid);
    cr_assert_eq(parse(s, &m), 0);
    cr_assert_eq((size_t) (m.body - s), PARLEY_PUBSUB_HEADER_MAX - 1);
    snprintf(s, sizeof(s),
             "E " U64_MAX_STR " " U64_MAX_STR " + " U64_MAX_STR " %.*s\n{}",
             PARLEY_PUBSUB_UID_MAX + 1, uid);
    cr_assert_eq(parse(s, &m), -1);
}

Test(pubsub, writer_and_parser_agree)
{
    /* the same rules on both sides: a header is written iff it parses */
    static const struct {
        const char *text;
        char        kind, effect;
        uint64_t    cid, seq;
        const char *subject;
    } cases[] = {
        { "E 42 1 . 0 -\n", 'E', '.', 42, 1, NULL },
        { "E 42 0 . 0 -\n", 'E', '.', 42, 0, NULL },
        { "E 0 1 . 0 -\n", 'E', '.', 0, 1, NULL },
        { "T 42 0 x 0 -\n", 'T', 'x', 42, 0, NULL },
        { "T 42 1 . 0 -\n", 'T', '.', 42, 1, NULL },
        { "E 42 1 + 0 -\n", 'E', '+', 42, 1, NULL },
        { "E 42 1 + 0 bob\n", 'E', '+', 42, 1, "bob" },
        { "E 42 1 - 0 bob\n", 'E', '-', 42, 1, "bob" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parley_pubsub_msg_t m = msg(cases[i].kind, cases[i].cid, cases[i].seq,
                                    cases[i].effect, 0, cases[i].subject);
        const char         *h = header(m);

        cr_assert_eq(parses(cases[i].text), h != NULL, "%s", cases[i].text);
        if (h) {
            cr_assert_str_eq(h, cases[i].text);
        }
    }
}

/* ---- effects ----------------------------------------------------------- */

Test(pubsub, effect_of_every_logged_type)
{
    static const struct {
        const char *type;
        char        effect;
    } table[] = {
        /* the conversation events of docs/events.md, all of them */
        { "conversation.created", '+' },
        { "conversation.updated", '.' },
        { "conversation.deleted", 'x' },
        { "conversation.owner_changed", '.' },
        { "member.added", '+' },
        { "member.joined", '+' },
        { "member.left", '-' },
        { "member.kicked", '-' },
        { "member.banned", '-' },
        { "member.unbanned", '.' },
        { "member.role_changed", '.' },
        { "message.new", '.' },
        { "message.edited", '.' },
        { "message.deleted", '.' },
        { "reaction.added", '.' },
        { "reaction.removed", '.' },
        { "receipt.delivered", '.' },
        { "receipt.read", '.' },
        /* and what is not one */
        { "user.deleted", '.' },
        { "tenant.deleted", '.' },
        { "", '.' },
        { "member", '.' },
        { "member.adde", '.' },
        { "member.addedx", '.' },
        { "Member.added", '.' },
        { "conversation.deleted ", '.' },
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        cr_assert_eq(
            parley_pubsub_effect(table[i].type, strlen(table[i].type)),
            table[i].effect, "%s", table[i].type);
    }

    /* by length, not NUL */
    cr_assert_eq(parley_pubsub_effect("member.added.more", 12), '+');
    cr_assert_eq(parley_pubsub_effect("member.added", 11), '.');
    cr_assert_eq(parley_pubsub_effect(NULL, 0), '.');
}

Test(pubsub, effect_header_round_trip)
{
    /* a log entry's effect goes into a header that parses back */
    parley_pubsub_msg_t m = msg('E', 42, 3, 0, 0, "bob"), back;
    const char         *h;

    m.effect = parley_pubsub_effect("member.kicked", 13);
    h = header(m);
    cr_assert_str_eq(h, "E 42 3 - 0 bob\n");
    cr_assert_eq(parse(h, &back), 0);
    cr_assert_eq(back.effect, '-');
}
