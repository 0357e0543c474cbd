// GET /v1/conversations/{cid}/events against the shared test stack: a
// conversation's log by event number, paged with after/limit, in the shape
// sync gives it; a user reads only what its membership covers (from its
// joining on, up to its removal), exactly the range sync delivers; the key
// reads everything; non-members, bad arguments and other tenants are refused.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const u = {};       // user id -> client with that user's token
let n = 0;

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    assert.equal(r.body.error.retryable, status === 503 || status === 429);
}

// what the store holds, read with an independent client
function sql(query) {
    const env = stackEnv();
    const r = spawnSync('mariadb', ['--no-defaults', '-h', '127.0.0.1', '-P', env.PARLEY_DB_PORT,
        '-u', env.PARLEY_DB_USER, `-p${env.PARLEY_DB_PASSWORD}`, env.PARLEY_DB_NAME,
        '-N', '-B', '-r', '-e', query], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
}

function eventSeq(cid) {
    return Number(sql(`SELECT event_seq FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${cid}`)[0][0]);
}

function membership(cid, uid) {
    const [[joined, left]] = sql(`SELECT joined_event, IFNULL(left_event, 0) FROM members
        WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid} AND user_id = '${uid}'`);
    return { joined: Number(joined), left: Number(left) };
}

// the log of a conversation from..to: [seq, type, subject]
function log(cid, from, to) {
    return sql(`SELECT event_seq, type, IFNULL(subject_id, '-') FROM conversation_events
                WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid}
                AND event_seq BETWEEN ${from} AND ${to} ORDER BY event_seq`)
        .map(([seq, type, subject]) => [Number(seq), type, subject === '-' ? null : subject]);
}

const brief = (events) => events.map((e) => [e.event_seq, e.type, e.subject_id]);

async function user(id, adm = admin) {
    const c = await adm.post('/v1/users', { user_id: id, name: id });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const tok = await adm.post(`/v1/users/${encodeURIComponent(id)}/tokens`, {});
    assert.equal(tok.status, 201);
    return client(nginx.base, { token: tok.body.token });
}

async function group(owner, members, name = 'g') {
    const r = await u[owner].post('/v1/conversations', { type: 'group', name, members });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
}

async function send(who, cid, text = `m${++n}`) {
    const r = await u[who].post(`/v1/conversations/${cid}/messages`, { client_id: `c${++n}`, type: 'text', text });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
}

async function ok(p) {
    const r = await p;
    assert.ok(r.status >= 200 && r.status < 300, JSON.stringify(r.body));
    return r;
}

async function events(c, cid, query = '') {
    const r = await c.get(`/v1/conversations/${cid}/events${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
}

// every page from after on, limit at a time: { events, pages }
async function drain(c, cid, afterSeq, limit) {
    const all = [];
    const pages = [];
    let pos = afterSeq;
    for (let i = 0; i < 500; i++) {
        const q = `?limit=${limit}${pos === undefined ? '' : `&after=${pos}`}`;
        const body = await events(c, cid, q);
        assert.ok(body.events.length <= limit, 'a page holds at most limit events');
        pages.push(body);
        all.push(...body.events);
        if (body.next_after === null) return { events: all, pages };
        assert.equal(body.events.length, limit, 'only a full page has a next one');
        assert.equal(body.next_after, body.events.at(-1).event_seq, 'next_after is the last event_seq');
        pos = body.next_after;
    }
    throw new Error('the log does not end');
}

before(async () => {
    nginx = await startApi({ name: 'api-events', pool: 8 });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const id of ['ea', 'eb', 'ec', 'ed', 'ee', 'ef', 'eg', 'out']) {
        u[id] = await user(id);
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('the whole log, in the shape sync gives it, for a member and the key', async () => {
    const s = await ok(u.eb.get('/v1/sync'));
    const g = await group('ea', ['eb']);
    const m1 = await send('ea', g, 'one');
    const m2 = await send('eb', g, 'two (to be deleted)');
    await ok(u.ea.patch(`/v1/conversations/${g}/messages/${m1.seq}`, { text: 'one, edited' }));
    await ok(u.eb.put(`/v1/conversations/${g}/messages/${m1.seq}/reactions/%F0%9F%91%8D`));
    await ok(u.eb.del(`/v1/conversations/${g}/messages/${m2.seq}`));
    await ok(u.ea.post(`/v1/conversations/${g}/read`, { seq: m2.seq }));

    const top = eventSeq(g);
    const want = log(g, 1, top);
    assert.ok(want.length >= 8, JSON.stringify(want));

    // the creator and the key: the whole log; eb, added at the creation,
    // from its member.added on
    const joined = membership(g, 'eb').joined;
    assert.deepEqual(want[joined - 1], [joined, 'member.added', 'eb']);
    for (const [c, from] of [[u.ea, 1], [admin, 1], [u.eb, joined], [admin.as({ user: 'eb' }), joined]]) {
        const body = await events(c, g);
        assert.deepEqual(Object.keys(body).sort(), ['event_seq', 'events', 'next_after']);
        assert.equal(body.event_seq, top);
        assert.equal(body.next_after, null);
        assert.deepEqual(brief(body.events), want.slice(from - 1));
    }

    const body = await events(u.eb, g, '?after=0');
    assert.equal(body.events[0].type, 'member.added');
    const e = body.events.find((x) => x.type === 'message.new' && x.message_seq === m1.seq);
    assert.deepEqual(Object.keys(e).sort(),
        ['actor_id', 'conversation_id', 'created_at', 'event_seq', 'message_seq', 'payload', 'subject_id', 'type']);
    assert.equal(e.conversation_id, g);
    assert.equal(e.actor_id, 'ea');
    assert.equal(e.subject_id, null);
    assert.equal(e.payload.text, 'one');
    assert.match(e.created_at, TIME);
    assert.equal(body.events[0].message_seq, null);
    const created = (await events(u.ea, g)).events[0];
    assert.equal(created.type, 'conversation.created');
    assert.equal(created.event_seq, 1);
    assert.equal(created.subject_id, 'ea');

    // a message deleted since: its earlier events lose their content, as in sync
    const gone = body.events.find((x) => x.type === 'message.new' && x.message_seq === m2.seq);
    assert.equal(gone.payload.text, null);
    assert.match(gone.payload.deleted_at, TIME);

    // exactly what sync hands the same user for the same conversation
    const synced = [];
    let token = s.body.next;
    for (let i = 0; i < 50; i++) {
        const r = await ok(u.eb.get(`/v1/sync?since=${token}&limit=50`));
        synced.push(...r.body.events.filter((x) => x.conversation_id === g));
        token = r.body.next;
        if (!r.body.has_more) break;
    }
    assert.deepEqual(body.events, synced);
});

test('paging with after and limit: every entry once, in order', async () => {
    const g = await group('ea', ['ec']);
    for (let i = 0; i < 11; i++) await send(i % 2 ? 'ea' : 'ec', g, `p${i}`);
    const top = eventSeq(g);
    const want = log(g, 1, top);
    assert.equal(membership(g, 'ea').joined, 1, 'the creator reads from conversation.created');

    for (const limit of [1, 3, 4, top, top + 1, 200]) {
        const all = await drain(u.ea, g, undefined, limit);
        assert.deepEqual(brief(all.events), want, `limit ${limit}`);
        assert.equal(all.pages.length, Math.max(1, Math.ceil(top / limit)), `limit ${limit}: pages`);
        for (const p of all.pages) assert.equal(p.event_seq, top);
    }

    // from the middle on
    const mid = await events(u.ec, g, '?after=5&limit=3');
    assert.deepEqual(mid.events.map((e) => e.event_seq), [6, 7, 8]);
    assert.equal(mid.next_after, 8);
    const rest = await drain(admin, g, 5, 4);
    assert.deepEqual(brief(rest.events), want.slice(5));

    // at or past the end: nothing, and nothing more
    for (const a of [top, top + 1, 1000000, '18446744073709551615']) {
        const r = await events(u.ec, g, `?after=${a}`);
        assert.deepEqual(r, { events: [], next_after: null, event_seq: top }, `after=${a}`);
    }
    // the last entry alone
    const last = await events(u.ec, g, `?after=${top - 1}&limit=1`);
    assert.deepEqual(last.events.map((e) => e.event_seq), [top]);
    assert.equal(last.next_after, null);

    // new entries appear after the end once written
    await send('ea', g, 'later');
    const more = await events(u.ec, g, `?after=${top}`);
    assert.deepEqual(brief(more.events), log(g, top + 1, top + 1));
    assert.equal(more.event_seq, top + 1);

    // the page size is bounded as everywhere
    assertError(await u.ec.get(`/v1/conversations/${g}/events?limit=0`), 400, 'invalid_parameter', 'limit');
    assertError(await u.ec.get(`/v1/conversations/${g}/events?limit=201`), 400, 'invalid_parameter', 'limit');
});

test('a user who joined late reads from its joining on', async () => {
    const g = await group('ea', ['eb']);
    await send('ea', g, 'before ed');
    await send('eb', g, 'before ed, again');
    await ok(u.ea.post(`/v1/conversations/${g}/members`, { user_ids: ['ed'] }));
    await send('ea', g, 'for ed too');
    const j = membership(g, 'ed');
    const top = eventSeq(g);
    assert.ok(j.joined > 3);

    const all = await events(u.ed, g);
    assert.deepEqual(brief(all.events), log(g, j.joined, top));
    assert.deepEqual(brief(all.events)[0], [j.joined, 'member.added', 'ed']);
    assert.equal(all.event_seq, top);
    assert.equal(all.next_after, null);

    // an after before the joining starts at the joining too
    assert.deepEqual(await events(u.ed, g, `?after=${j.joined - 2}`), all);
    // paging inside the readable part
    const paged = await drain(u.ed, g, 0, 1);
    assert.deepEqual(paged.events, all.events);
    const tail = await events(u.ed, g, `?after=${j.joined}`);
    assert.deepEqual(brief(tail.events), log(g, j.joined + 1, top));

    // the key acting for ed reads as ed; the bare key reads everything
    assert.deepEqual(await events(admin.as({ user: 'ed' }), g), all);
    assert.deepEqual(brief((await events(admin, g)).events), log(g, 1, top));

    // joining a public group by itself: from its member.joined on
    const pub = await ok(u.ea.post('/v1/conversations', { type: 'group', name: 'pub', access: 'public' }));
    await send('ea', pub.body.id, 'before the join');
    await ok(u.ef.post(`/v1/conversations/${pub.body.id}/join`, {}));
    const pj = membership(pub.body.id, 'ef');
    const pe = await events(u.ef, pub.body.id);
    assert.deepEqual(brief(pe.events), log(pub.body.id, pj.joined, eventSeq(pub.body.id)));
    assert.deepEqual(brief(pe.events)[0], [pj.joined, 'member.joined', 'ef']);
});

test('a former member reads up to its removal; added again, from the new joining', async () => {
    const g = await group('ea', ['eb', 'ec', 'ee']);
    await send('ea', g, 'all here');
    await send('ec', g, 'ec says bye');
    await ok(u.ec.post(`/v1/conversations/${g}/leave`));                     // left
    await send('ea', g, 'after ec left');
    await ok(u.ea.del(`/v1/conversations/${g}/members/eb`));                 // kicked
    await send('ea', g, 'after eb was kicked');
    await ok(u.ea.post(`/v1/conversations/${g}/members/ee/ban`));            // banned
    await send('ea', g, 'after ee was banned');
    const top = eventSeq(g);

    for (const [who, type] of [['ec', 'member.left'], ['eb', 'member.kicked'], ['ee', 'member.banned']]) {
        const m = membership(g, who);
        assert.ok(m.left > m.joined && m.left < top, `${who}: ${JSON.stringify(m)}`);
        const body = await events(u[who], g);
        assert.deepEqual(brief(body.events), log(g, m.joined, m.left), `${who} reads up to its removal`);
        assert.deepEqual(brief(body.events).at(-1), [m.left, type, who]);
        assert.equal(body.event_seq, m.left, `${who}: its log ends at its removal`);
        assert.equal(body.next_after, null);

        // paged, and asked past its removal
        const paged = await drain(u[who], g, 0, 2);
        assert.deepEqual(paged.events, body.events);
        for (const a of [m.left, m.left + 1, top]) {
            assert.deepEqual(await events(u[who], g, `?after=${a}`), { events: [], next_after: null, event_seq: m.left });
        }
        // a page that reaches the removal has no next one
        const end = await events(u[who], g, `?after=${m.left - 2}&limit=2`);
        assert.deepEqual(end.events.map((e) => e.event_seq), [m.left - 1, m.left]);
        assert.equal(end.next_after, null);
    }

    // the key still reads the whole log
    assert.deepEqual(brief((await events(admin, g)).events), log(g, 1, top));

    // eb added again: from the new joining on, not what happened between
    await ok(u.ea.post(`/v1/conversations/${g}/members`, { user_ids: ['eb'] }));
    await send('ea', g, 'welcome back');
    const back = membership(g, 'eb');
    assert.ok(back.joined > top);
    const again = await events(u.eb, g);
    assert.deepEqual(brief(again.events), log(g, back.joined, eventSeq(g)));
    assert.deepEqual(brief(again.events)[0], [back.joined, 'member.added', 'eb']);
    assert.equal(again.event_seq, eventSeq(g));

    // ee unbanned: still a former member, up to its ban
    await ok(u.ea.del(`/v1/conversations/${g}/members/ee/ban`));
    const ee = membership(g, 'ee');
    assert.deepEqual(brief((await events(u.ee, g)).events), log(g, ee.joined, ee.left));
});

test('a user who never was a member is refused as history refuses it', async () => {
    const g = await group('ea', ['eb']);
    await send('ea', g, 'members only');

    // never a member: the same answer as history gives
    const hist = await u.out.get(`/v1/conversations/${g}/messages`);
    assertError(hist, 403, 'not_member');
    assertError(await u.out.get(`/v1/conversations/${g}/events`), 403, 'not_member');
    assertError(await u.out.get(`/v1/conversations/${g}/events?after=1`), 403, 'not_member');
    assertError(await admin.as({ user: 'out' }).get(`/v1/conversations/${g}/events`), 403, 'not_member');

    // banned without ever being a member: nothing to read
    await ok(u.ea.post(`/v1/conversations/${g}/members/eg/ban`));
    const b = membership(g, 'eg');
    assert.equal(b.joined, b.left);
    assertError(await u.eg.get(`/v1/conversations/${g}/messages`), 403, 'banned');
    assertError(await u.eg.get(`/v1/conversations/${g}/events`), 403, 'banned');
    // and once unbanned, still never a member
    await ok(u.ea.del(`/v1/conversations/${g}/members/eg/ban`));
    assertError(await u.eg.get(`/v1/conversations/${g}/events`), 403, 'not_member');

    // a public group is no different: its log is its members'
    const pub = await ok(u.ea.post('/v1/conversations', { type: 'group', name: 'open', access: 'public' }));
    assertError(await u.out.get(`/v1/conversations/${pub.body.id}/events`), 403, 'not_member');
});

test('after must be a non-negative decimal integer; cid an id', async () => {
    const g = await group('ea', ['eb']);
    for (const bad of ['-1', 'abc', '1.5', '', ' 1', '1 ', '0x10', '+1', '1e3', '01',
        '18446744073709551616', '99999999999999999999999']) {
        assertError(await u.eb.get(`/v1/conversations/${g}/events?after=${encodeURIComponent(bad)}`),
            400, 'invalid_parameter', 'after');
    }
    assertError(await admin.get(`/v1/conversations/${g}/events?after=x`), 400, 'invalid_parameter', 'after');
    // checked before the conversation is looked up
    assertError(await u.out.get(`/v1/conversations/${g}/events?after=-1`), 400, 'invalid_parameter', 'after');
    assertError(await u.eb.get('/v1/conversations/abc/events'), 400, 'invalid_parameter', 'cid');
    assertError(await u.eb.get('/v1/conversations/0/events'), 400, 'invalid_parameter', 'cid');

    assert.equal((await events(u.ea, g, '?after=0')).events[0].event_seq, 1);
});

test('another tenant\'s conversation is not found; so is a deleted one', async () => {
    const g = await group('ea', ['eb']);
    await send('ea', g, 'tenant one only');

    assertError(await otherAdmin.get(`/v1/conversations/${g}/events`), 404, 'conversation_not_found', 'cid');
    // the same user id in the other tenant
    assert.equal((await otherAdmin.post('/v1/users', { user_id: 'eb' })).status, 201);
    const tok = await otherAdmin.post('/v1/users/eb/tokens', {});
    const otherEb = client(nginx.base, { token: tok.body.token });
    assertError(await otherEb.get(`/v1/conversations/${g}/events`), 404, 'conversation_not_found', 'cid');
    assertError(await otherAdmin.as({ user: 'eb' }).get(`/v1/conversations/${g}/events`), 404,
        'conversation_not_found');

    assertError(await admin.get('/v1/conversations/123456789/events'), 404, 'conversation_not_found', 'cid');

    const d = await group('ea', ['eb']);
    await ok(u.ea.del(`/v1/conversations/${d}`));
    assertError(await u.eb.get(`/v1/conversations/${d}/events`), 404, 'conversation_not_found', 'cid');
    assertError(await admin.get(`/v1/conversations/${d}/events`), 404, 'conversation_not_found', 'cid');

    assertError(await client(nginx.base).get(`/v1/conversations/${g}/events`), 401, 'unauthenticated');
    assertError(await u.eb.post(`/v1/conversations/${g}/events`, {}), 405, 'method_not_allowed');
});
