#include "parley_pubsub.h"

#include <string.h>

#define PREFIX_C "parley:{c:"
#define PREFIX_U "parley:{u:"
#define PREFIX_LEN (sizeof(PREFIX_C) - 1)
#define PRESENCE ":presence"
#define PRESENCE_LEN (sizeof(PRESENCE) - 1)

/* ---- pieces ------------------------------------------------------------ */

/* 1..128 bytes, no '{' '}' or control characters, not "-" */
static int uid_valid(const char *uid, size_t len)
{
    size_t        i;
    unsigned char c;

    if (uid == NULL || len == 0 || len > PARLEY_PUBSUB_UID_MAX) {
        return 0;
    }

    if (len == 1 && uid[0] == '-') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) uid[i];
        if (c < 0x20 || c == 0x7f || c == '{' || c == '}') {
            return 0;
        }
    }

    return 1;
}

/* writes v in decimal at p (room for 20 digits); returns the digit count */
static size_t put_u64(char *p, uint64_t v)
{
    char   tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    for (i = 0; i < n; i++) {
        p[i] = tmp[n - 1 - i];
    }

    return n;
}

/*
 * Reads the whole of s[0..len) as a canonical decimal: 1..20 digits, no
 * leading zero unless it is "0", at most 2^64 - 1.  -1 otherwise.
 */
static int get_u64(const char *s, size_t len, uint64_t *v)
{
    uint64_t r = 0;
    unsigned d;
    size_t   i;

    if (len == 0 || len > 20 || (len > 1 && s[0] == '0')) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        d = (unsigned) (s[i] - '0');
        if (r > (UINT64_MAX - d) / 10) {
            return -1;
        }
        r = r * 10 + d;
    }

    *v = r;

    return 0;
}

/* copies a built name of len bytes and its NUL to dst when it fits */
static size_t emit(char *dst, size_t cap, const char *buf, size_t len)
{
    if (dst == NULL || cap < len + 1) {
        return 0;
    }

    memcpy(dst, buf, len);
    dst[len] = '\0';

    return len;
}

/* "parley:{u:<tenant>:<uid>}" followed by tail, or 0 when uid is invalid */
static size_t user_name(char *dst, size_t cap, uint64_t tenant,
                        const char *uid, size_t uid_len, const char *tail,
                        size_t tail_len)
{
    char   buf[PARLEY_PUBSUB_CHANNEL_MAX];
    size_t n;

    if (!uid_valid(uid, uid_len)) {
        return 0;
    }

    memcpy(buf, PREFIX_U, PREFIX_LEN);
    n = PREFIX_LEN;
    n += put_u64(buf + n, tenant);
    buf[n++] = ':';
    memcpy(buf + n, uid, uid_len);
    n += uid_len;
    buf[n++] = '}';
    memcpy(buf + n, tail, tail_len);
    n += tail_len;

    return emit(dst, cap, buf, n);
}

/* ---- channel names ----------------------------------------------------- */

size_t parley_pubsub_conversation_channel(char *dst, size_t cap,
                                          uint64_t tenant, uint64_t cid)
{
    char   buf[PARLEY_PUBSUB_CHANNEL_MAX];
    size_t n;

    memcpy(buf, PREFIX_C, PREFIX_LEN);
    n = PREFIX_LEN;
    n += put_u64(buf + n, tenant);
    buf[n++] = ':';
    n += put_u64(buf + n, cid);
    buf[n++] = '}';

    return emit(dst, cap, buf, n);
}

size_t parley_pubsub_user_channel(char *dst, size_t cap, uint64_t tenant,
                                  const char *uid, size_t uid_len)
{
    return user_name(dst, cap, tenant, uid, uid_len, "", 0);
}

size_t parley_pubsub_presence_channel(char *dst, size_t cap, uint64_t tenant,
                                      const char *uid, size_t uid_len)
{
    return user_name(dst, cap, tenant, uid, uid_len, PRESENCE, PRESENCE_LEN);
}

size_t parley_pubsub_presence_key(char *dst, size_t cap, uint64_t tenant,
                                  const char *uid, size_t uid_len,
                                  const char *suffix)
{
    if (suffix == NULL) {
        return 0;
    }

    if (strcmp(suffix, "conns") == 0) {
        return user_name(dst, cap, tenant, uid, uid_len, ":conns", 6);
    }

    if (strcmp(suffix, "seen") == 0) {
        return user_name(dst, cap, tenant, uid, uid_len, ":seen", 5);
    }

    return 0;
}

int parley_pubsub_channel_parse(const char *name, size_t len,
                                parley_pubsub_channel_t *out)
{
    parley_pubsub_channel_t ch;
    const char             *p, *end, *colon, *close;
    size_t                  rest;

    memset(&ch, 0, sizeof(ch));

    if (out) {
        memset(out, 0, sizeof(*out));
    }

    if (name == NULL || len <= PREFIX_LEN) {
        return 0;
    }

    if (memcmp(name, PREFIX_C, PREFIX_LEN) == 0) {
        ch.kind = PARLEY_PUBSUB_CONVERSATION;
    } else if (memcmp(name, PREFIX_U, PREFIX_LEN) == 0) {
        ch.kind = PARLEY_PUBSUB_USER;
    } else {
        return 0;
    }

    p = name + PREFIX_LEN;
    end = name + len;

    colon = memchr(p, ':', (size_t) (end - p));
    if (colon == NULL || get_u64(p, (size_t) (colon - p), &ch.tenant) != 0) {
        return 0;
    }

    p = colon + 1;

    /* a uid holds no '}', so the first one closes the tag */
    close = memchr(p, '}', (size_t) (end - p));
    if (close == NULL) {
        return 0;
    }

    rest = (size_t) (end - close - 1);

    if (ch.kind == PARLEY_PUBSUB_CONVERSATION) {
        if (rest != 0 || get_u64(p, (size_t) (close - p), &ch.cid) != 0) {
            return 0;
        }

    } else {
        if (!uid_valid(p, (size_t) (close - p))) {
            return 0;
        }
        ch.uid = p;
        ch.uid_len = (size_t) (close - p);

        if (rest == PRESENCE_LEN
            && memcmp(close + 1, PRESENCE, PRESENCE_LEN) == 0)
        {
            ch.kind = PARLEY_PUBSUB_PRESENCE;
        } else if (rest != 0) {
            return 0;
        }
    }

    if (out) {
        *out = ch;
    }

    return ch.kind;
}

/* ---- messages ---------------------------------------------------------- */

/* the rules of the header fields, shared by the writer and the parser */
static int msg_valid(const parley_pubsub_msg_t *m)
{
    switch (m->kind) {
    case 'E':
        if (m->seq == 0 || m->cid == 0) {
            return 0;
        }
        break;
    case 'T':
        if (m->seq != 0 || m->effect != '.') {
            return 0;
        }
        break;
    default:
        return 0;
    }

    switch (m->effect) {
    case '+':
    case '-':
        if (m->subject_len == 0) {
            return 0;
        }
        break;
    case 'x':
    case '.':
        break;
    default:
        return 0;
    }

    return m->subject_len == 0 || uid_valid(m->subject, m->subject_len);
}

size_t parley_pubsub_header(char *dst, size_t cap, const parley_pubsub_msg_t *m)
{
    char   buf[PARLEY_PUBSUB_HEADER_MAX];
    size_t n = 0;

    if (m == NULL || !msg_valid(m)) {
        return 0;
    }

    buf[n++] = m->kind;
    buf[n++] = ' ';
    n += put_u64(buf + n, m->cid);
    buf[n++] = ' ';
    n += put_u64(buf + n, m->seq);
    buf[n++] = ' ';
    buf[n++] = m->effect;
    buf[n++] = ' ';
    n += put_u64(buf + n, m->origin);
    buf[n++] = ' ';

    if (m->subject_len == 0) {
        buf[n++] = '-';
    } else {
        memcpy(buf + n, m->subject, m->subject_len);
        n += m->subject_len;
    }

    buf[n++] = '\n';

    return emit(dst, cap, buf, n);
}

/*
 * Cuts the field that starts at *p and ends before the next space, which
 * must come before end; moves *p past that space.
 */
static int field(const char **p, const char *end, const char **f, size_t *n)
{
    const char *sp = memchr(*p, ' ', (size_t) (end - *p));

    if (sp == NULL) {
        return -1;
    }

    *f = *p;
    *n = (size_t) (sp - *p);
    *p = sp + 1;

    return 0;
}

int parley_pubsub_parse(const char *s, size_t len, parley_pubsub_msg_t *m)
{
    parley_pubsub_msg_t msg;
    const char         *p, *nl, *f;
    size_t              n, scan;

    memset(&msg, 0, sizeof(msg));

    if (m) {
        memset(m, 0, sizeof(*m));
    }

    if (s == NULL) {
        return -1;
    }

    /* the newline is within the longest header */
    scan = len < PARLEY_PUBSUB_HEADER_MAX - 1 ? len
                                              : PARLEY_PUBSUB_HEADER_MAX - 1;
    nl = memchr(s, '\n', scan);
    if (nl == NULL) {
        return -1;
    }

    p = s;

    if (field(&p, nl, &f, &n) != 0 || n != 1) {
        return -1;
    }
    msg.kind = f[0];

    if (field(&p, nl, &f, &n) != 0 || get_u64(f, n, &msg.cid) != 0) {
        return -1;
    }

    if (field(&p, nl, &f, &n) != 0 || get_u64(f, n, &msg.seq) != 0) {
        return -1;
    }

    if (field(&p, nl, &f, &n) != 0 || n != 1) {
        return -1;
    }
    msg.effect = f[0];

    if (field(&p, nl, &f, &n) != 0 || get_u64(f, n, &msg.origin) != 0) {
        return -1;
    }

    /* the subject is the rest of the line */
    n = (size_t) (nl - p);
    if (!(n == 1 && p[0] == '-')) {
        if (!uid_valid(p, n)) {
            return -1;
        }
        msg.subject = p;
        msg.subject_len = n;
    }

    if (!msg_valid(&msg)) {
        return -1;
    }

    msg.body = nl + 1;
    msg.body_len = len - (size_t) (nl + 1 - s);

    if (m) {
        *m = msg;
    }

    return 0;
}

/* ---- effects of log entries -------------------------------------------- */

char parley_pubsub_effect(const char *type, size_t len)
{
    static const struct {
        const char *type;
        char        effect;
    } table[] = {
        { "member.added", '+' },  { "member.joined", '+' },
        { "conversation.created", '+' }, /* its subject is the creator */
        { "member.left", '-' },   { "member.kicked", '-' },
        { "member.banned", '-' }, { "conversation.deleted", 'x' },
    };
    size_t i;

    if (type == NULL) {
        return '.';
    }

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strlen(table[i].type) == len
            && memcmp(table[i].type, type, len) == 0)
        {
            return table[i].effect;
        }
    }

    return '.';
}
