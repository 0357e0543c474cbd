// Sync over the REST API, against the shared test stack: a device that was
// offline while every kind of change happened -- messages new, edited and
// deleted, reactions, receipts, members added, being added to a new
// conversation, being kicked from another -- pages through with small
// limits and receives every change of its conversations exactly once, in
// order; tokens are idempotent, per device, per user and per tenant.

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

// the log of a conversation from..to, as sync shows it: [seq, type, subject]
function log(cid, from, to) {
    return sql(`SELECT event_seq, type, IFNULL(subject_id, '-') FROM conversation_events
                WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid}
                AND event_seq BETWEEN ${from} AND ${to} ORDER BY event_seq`)
        .map(([seq, type, subject]) => [Number(seq), type, subject === '-' ? null : subject]);
}

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

async function start(c) {
    const r = await c.get('/v1/sync');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
}

// every page from since on: { events, pages, last }
async function drain(c, since, limit) {
    const events = [];
    const pages = [];
    let token = since;
    for (let i = 0; i < 500; i++) {
        const r = await c.get(`/v1/sync?since=${token}&limit=${limit}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(r.body.events.length <= limit, 'a page holds at most limit events');
        pages.push({ since: token, body: r.body });
        events.push(...r.body.events);
        token = r.body.next;
        if (!r.body.has_more) return { events, pages, last: token };
    }
    throw new Error('sync does not end');
}

function byConversation(events) {
    const m = new Map();
    for (const e of events) {
        if (!m.has(e.conversation_id)) m.set(e.conversation_id, []);
        m.get(e.conversation_id).push([e.event_seq, e.type, e.subject_id]);
    }
    return m;
}

before(async () => {
    nginx = await startApi({ name: 'api-sync', pool: 8 });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const id of ['sa', 'sb', 'sc', 'sd', 'iso']) {
        u[id] = await user(id);
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('a first sync gives a token and no history', async () => {
    const g = await group('sd', ['sc']);
    await send('sd', g);
    const s = await start(u.sd);
    assert.deepEqual(s.events, []);
    assert.equal(s.has_more, false);
    assert.match(s.next, /^[A-Za-z0-9_-]{12}$/);

    // nothing new: the same token comes back, nothing is written
    const rows = sql(`SELECT COUNT(*) FROM sync_cursors WHERE tenant_id = ${tenant.id} AND user_id = 'sd'`)[0][0];
    const again = await u.sd.get(`/v1/sync?since=${s.next}`);
    assert.deepEqual(again.body, { events: [], next: s.next, has_more: false });
    assert.equal(sql(`SELECT COUNT(*) FROM sync_cursors WHERE tenant_id = ${tenant.id} AND user_id = 'sd'`)[0][0], rows);

    // then exactly what happens afterwards, in the documented shape
    const m = await send('sc', g, 'after the token');
    const r = await u.sd.get(`/v1/sync?since=${s.next}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.has_more, false);
    assert.notEqual(r.body.next, s.next);
    assert.equal(r.body.events.length, 1);
    const e = r.body.events[0];
    assert.deepEqual(Object.keys(e).sort(),
        ['actor_id', 'conversation_id', 'created_at', 'event_seq', 'message_seq', 'payload', 'subject_id', 'type']);
    assert.equal(e.conversation_id, g);
    assert.equal(e.type, 'message.new');
    assert.equal(e.actor_id, 'sc');
    assert.equal(e.subject_id, null);
    assert.equal(e.message_seq, m.seq);
    assert.equal(e.event_seq, eventSeq(g));
    assert.equal(e.payload.text, 'after the token');
    assert.match(e.created_at, TIME);
});

test('an offline device catches up on every kind of change, exactly once, in order', async () => {
    // before the device goes offline
    const g1 = await group('sb', ['sa', 'sc'], 'one');
    await send('sb', g1);
    await send('sb', g1);
    const g2 = await group('sb', ['sa'], 'two');
    await send('sb', g2);
    const dr = await ok(u.sa.post('/v1/conversations', { type: 'direct', peer: 'sb' }));
    const d = dr.body.id;
    await send('sa', d);
    const g4 = await group('sb', ['sa'], 'left before');
    await ok(u.sa.post(`/v1/conversations/${g4}/leave`));

    const devA = await start(u.sa);
    const devB = await start(u.sa);
    assert.notEqual(devA.next, devB.next, 'each device its own token');
    const at = { g1: eventSeq(g1), g2: eventSeq(g2), d: eventSeq(d), g4: eventSeq(g4) };

    // the day offline: changes of every kind in several conversations
    const m3 = await send('sb', g1, 'three');
    const m4 = await send('sb', g1, 'four (to be deleted)');
    const m5 = await send('sc', g1, 'five');
    await ok(u.sb.patch(`/v1/conversations/${g1}/messages/${m3.seq}`, { text: 'three, edited' }));
    await ok(u.sb.del(`/v1/conversations/${g1}/messages/${m4.seq}`));
    await ok(u.sc.put(`/v1/conversations/${g1}/messages/${m5.seq}/reactions/%F0%9F%91%8D`));
    await ok(u.sa.post(`/v1/conversations/${g1}/read`, { seq: m5.seq }));     // another device of sa
    await ok(u.sb.post(`/v1/conversations/${g1}/delivered`, { seq: m5.seq }));
    await ok(u.sb.post(`/v1/conversations/${g1}/members`, { user_ids: ['sd'] }));

    await send('sb', d);
    await send('sb', d);
    await send('sa', d);

    const g3 = await group('sb', ['sa', 'sc'], 'three');    // sa added to a new one
    await send('sb', g3);
    await send('sc', g3);

    await send('sb', g2, 'before the kick');
    await ok(u.sb.del(`/v1/conversations/${g2}/members/sa`));              // sa kicked
    await send('sb', g2, 'after the kick');
    await send('sb', g2, 'after the kick, again');

    const g5 = await group('sb', ['sa'], 'in and out');        // added and kicked while away
    await send('sb', g5, 'brief');
    await ok(u.sb.del(`/v1/conversations/${g5}/members/sa`));
    await send('sb', g5, 'gone');

    await send('sb', g4, 'sa left before the token');

    // the truth, from the store: what sa may read of each log
    const k2 = membership(g2, 'sa');
    const j3 = membership(g3, 'sa');
    const k5 = membership(g5, 'sa');
    assert.ok(k2.left > at.g2 && k2.left < eventSeq(g2));
    const want = new Map([
        [g1, log(g1, at.g1 + 1, eventSeq(g1))],
        [d, log(d, at.d + 1, eventSeq(d))],
        [g3, log(g3, j3.joined, eventSeq(g3))],
        [g2, log(g2, at.g2 + 1, k2.left)],
        [g5, log(g5, k5.joined, k5.left)],
    ]);
    // the log holds each kind of change
    const types = new Set([...want.values()].flat().map((e) => e[1]));
    for (const t of ['message.new', 'message.edited', 'message.deleted', 'receipt.read', 'receipt.delivered',
        'member.added', 'member.kicked']) {
        assert.ok(types.has(t), `the scenario logs ${t}: ${[...types]}`);
    }
    assert.ok([...types].some((t) => t.startsWith('reaction.')), `a reaction: ${[...types]}`);
    assert.deepEqual(want.get(g2).at(-1).slice(1), ['member.kicked', 'sa'], 'the kick is the last one of g2');
    assert.deepEqual(want.get(g3)[0].slice(1), ['member.added', 'sa'], 'g3 starts at sa\'s joining');

    // device A pages through three at a time
    const a = await drain(u.sa, devA.next, 3);
    const got = byConversation(a.events);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), 'exactly these conversations');
    for (const [cid, evs] of want) {
        assert.deepEqual(got.get(cid), evs, `conversation ${cid}: every event once, in event_seq order`);
    }
    const total = [...want.values()].reduce((s, v) => s + v.length, 0);
    assert.equal(a.events.length, total, 'no duplicate');
    assert.ok(total >= 20 && a.pages.length >= total / 3, `${total} events in ${a.pages.length} pages`);
    // across conversations, pages follow the events' times
    for (let i = 1; i < a.events.length; i++) {
        assert.ok(a.events[i - 1].created_at <= a.events[i].created_at, 'time order');
    }

    // content as of now: the deleted message's earlier event is a tombstone
    const new4 = a.events.find((e) => e.conversation_id === g1 && e.type === 'message.new'
        && e.message_seq === m4.seq);
    assert.equal(new4.payload.text, null);
    assert.match(new4.payload.deleted_at, TIME);
    const new3 = a.events.find((e) => e.conversation_id === g1 && e.type === 'message.new'
        && e.message_seq === m3.seq);
    assert.equal(new3.payload.text, 'three', 'a message not deleted keeps its content');

    // the same token twice: the same page (a retry after a lost answer)
    const mid = a.pages[3];
    const again = await u.sa.get(`/v1/sync?since=${mid.since}&limit=3`);
    assert.equal(again.status, 200);
    assert.deepEqual(again.body.events, mid.body.events);
    assert.equal(again.body.has_more, mid.body.has_more);
    // and the page after either answer is the same too
    const n1 = await u.sa.get(`/v1/sync?since=${mid.body.next}&limit=3`);
    const n2 = await u.sa.get(`/v1/sync?since=${again.body.next}&limit=3`);
    assert.deepEqual(n1.body.events, n2.body.events);
    assert.deepEqual(n1.body.events, a.pages[4].body.events);

    // device B, on its own token, sees the same, in pages of its own size
    const b = await drain(u.sa, devB.next, 7);
    assert.deepEqual(byConversation(b.events), got);
    assert.equal(b.events.length, total);

    // caught up: nothing, the same token, nothing written
    const idle = await u.sa.get(`/v1/sync?since=${a.last}&limit=3`);
    assert.deepEqual(idle.body, { events: [], next: a.last, has_more: false });

    // after the kick nothing of g2 reaches sa; g1 still does
    await send('sb', g2, 'still not for sa');
    const mine = await send('sb', g1, 'for sa');
    const after1 = await u.sa.get(`/v1/sync?since=${a.last}`);
    assert.deepEqual(after1.body.events.map((e) => [e.conversation_id, e.type, e.message_seq]),
        [[g1, 'message.new', mine.seq]]);

    // added back: from the new joining on, not what was missed between
    await ok(u.sb.post(`/v1/conversations/${g2}/members`, { user_ids: ['sa'] }));
    await send('sb', g2, 'welcome back');
    const back = membership(g2, 'sa');
    const after2 = await u.sa.get(`/v1/sync?since=${after1.body.next}`);
    assert.deepEqual(after2.body.events.map((e) => [e.conversation_id, e.event_seq, e.type, e.subject_id]),
        log(g2, back.joined, eventSeq(g2)).map(([s, t, sub]) => [g2, s, t, sub]));
    assert.equal(after2.body.events[0].type, 'member.added');
});

test('large catch-up pages stay bounded and complete', async () => {
    await user('bulk1').then((c) => { u.bulk1 = c; });
    await user('bulk2').then((c) => { u.bulk2 = c; });
    const gs = [];
    for (let i = 0; i < 4; i++) gs.push(await group('bulk2', ['bulk1'], `bulk${i}`));
    const s = await start(u.bulk1);
    const sends = [];
    for (let i = 0; i < 60; i++) sends.push(send('bulk2', gs[i % 4], `b${i}`));
    await Promise.all(sends);
    const all = await drain(u.bulk1, s.next, 7);
    assert.equal(all.events.length, 60);
    const got = byConversation(all.events);
    for (const g of gs) {
        const seqs = got.get(g).map((e) => e[0]);
        assert.equal(seqs.length, 15);
        for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, 'no gap, no repeat');
    }
    // the largest page size in one go
    const big = await u.bulk1.get(`/v1/sync?since=${s.next}&limit=200`);
    assert.equal(big.body.events.length, 60);
    assert.equal(big.body.has_more, false);
});

test('tokens: other users, other tenants, expired, malformed; credentials', async () => {
    const mine = await start(u.sa);
    const bobs = await start(u.sb);

    // another user's token names no row of the caller
    assertError(await u.sb.get(`/v1/sync?since=${mine.next}`), 400, 'invalid_token', 'since');
    assertError(await u.sa.get(`/v1/sync?since=${bobs.next}`), 400, 'invalid_token', 'since');

    // the same user id in another tenant
    const cr = await otherAdmin.post('/v1/users', { user_id: 'sa' });
    assert.equal(cr.status, 201);
    const tok = await otherAdmin.post('/v1/users/sa/tokens', {});
    const otherSa = client(nginx.base, { token: tok.body.token });
    assertError(await otherSa.get(`/v1/sync?since=${mine.next}`), 400, 'invalid_token', 'since');
    assertError(await otherAdmin.as({ user: 'sa' }).get(`/v1/sync?since=${mine.next}`), 400, 'invalid_token');

    // a token older than 30 days: version 1, an id minted 31 days ago
    const ms = BigInt(Date.now() - 31 * 86400 * 1000) - 1735689600000n;
    const raw = Buffer.alloc(9);
    raw[0] = 1;
    raw.writeBigUInt64BE(ms << 22n, 1);
    assertError(await u.sa.get(`/v1/sync?since=${raw.toString('base64url')}`), 410, 'token_expired', 'since');
    // a well-formed token that names nothing
    raw.writeBigUInt64BE((BigInt(Date.now()) - 1735689600000n) << 22n, 1);
    assertError(await u.sa.get(`/v1/sync?since=${raw.toString('base64url')}`), 400, 'invalid_token', 'since');

    for (const bad of ['', 'x', '***', `${mine.next}A`, mine.next.slice(1), 'AAAAAAAAAAAA', `${mine.next}=`]) {
        assertError(await u.sa.get(`/v1/sync?since=${encodeURIComponent(bad)}`), 400, 'invalid_token', 'since');
    }
    assertError(await u.sa.get(`/v1/sync?since=${mine.next}&limit=0`), 400, 'invalid_parameter', 'limit');
    assertError(await u.sa.get(`/v1/sync?since=${mine.next}&limit=201`), 400, 'invalid_parameter', 'limit');
    assertError(await u.sa.get('/v1/sync?limit=abc'), 400, 'invalid_parameter', 'limit');

    assertError(await admin.get('/v1/sync'), 403, 'user_required');
    assertError(await client(nginx.base).get('/v1/sync'), 401, 'unauthenticated');
    assertError(await u.sa.post('/v1/sync', {}), 405, 'method_not_allowed');

    // the API key acting for sa uses sa's tokens
    const k = await admin.as({ user: 'sa' }).get(`/v1/sync?since=${mine.next}`);
    assert.equal(k.status, 200, JSON.stringify(k.body));
});

test('tenant isolation: another tenant\'s user of the same id sees none of it', async () => {
    const cr = await otherAdmin.post('/v1/users', { user_id: 'iso' });
    assert.equal(cr.status, 201);
    const tok = await otherAdmin.post('/v1/users/iso/tokens', {});
    const otherIso = client(nginx.base, { token: tok.body.token });

    const theirs = await start(otherIso);
    const ours = await start(u.iso);
    const g = await group('sb', ['iso']);
    await send('sb', g, 'tenant one only');

    const t = await otherIso.get(`/v1/sync?since=${theirs.next}`);
    assert.deepEqual(t.body, { events: [], next: theirs.next, has_more: false });
    const o = await u.iso.get(`/v1/sync?since=${ours.next}`);
    assert.ok(o.body.events.some((e) => e.payload.text === 'tenant one only'));
    assertError(await otherIso.get(`/v1/sync?since=${ours.next}`), 400, 'invalid_token');
    assertError(await u.iso.get(`/v1/sync?since=${theirs.next}`), 400, 'invalid_token');
});

test('a log whose times disagree with its order still pages in event order', async () => {
    // two SQL nodes with skewed clocks: a later event stamped earlier
    await user('skew').then((c) => { u.skew = c; });
    const g = await group('sb', ['skew']);
    const s = await start(u.skew);
    const base = eventSeq(g);
    for (let i = 0; i < 6; i++) await send('sb', g, `s${i}`);
    sql(`UPDATE conversation_events SET created_at = created_at - INTERVAL 1 HOUR
         WHERE tenant_id = ${tenant.id} AND conversation_id = ${g} AND event_seq IN (${base + 2}, ${base + 5})`);

    for (const limit of [1, 2, 4, 50]) {
        const all = await drain(u.skew, s.next, limit);
        assert.deepEqual(all.events.map((e) => e.event_seq), [1, 2, 3, 4, 5, 6].map((i) => base + i),
            `limit ${limit}: strict event order, nothing lost, nothing twice`);
    }
});

test('a hole in a log does not stall a device', async () => {
    await user('holey').then((c) => { u.holey = c; });
    const g = await group('sb', ['holey']);
    const s = await start(u.holey);
    const base = eventSeq(g);
    for (let i = 0; i < 5; i++) await send('sb', g, `h${i}`);
    // damage no code path makes: an event row lost
    sql(`DELETE FROM conversation_events WHERE tenant_id = ${tenant.id} AND conversation_id = ${g}
         AND event_seq = ${base + 3}`);
    const all = await drain(u.holey, s.next, 2);
    assert.deepEqual(all.events.map((e) => e.event_seq), [1, 2, 4, 5].map((i) => base + i));
    assert.match(nginx.log(), /parley sync: 1 events of "holey"'s conversations are missing/);
});

test('expired cursors are refused and purged', async () => {
    await user('old').then((c) => { u.old = c; });
    const epoch = 1735689600000n;
    const id = (ms) => (BigInt(ms) - epoch) << 22n;
    const stale = id(Date.now() - 31 * 86400 * 1000);
    const young = id(Date.now() - 29 * 86400 * 1000);
    for (const rowId of [stale, stale + 1n, young]) {
        sql(`INSERT INTO sync_cursors (tenant_id, user_id, id, state, created_at)
             VALUES (${tenant.id}, 'old', ${rowId}, X'0100', UTC_TIMESTAMP(3))`);
    }
    const tokenOf = (rowId) => {
        const raw = Buffer.alloc(9);
        raw[0] = 1;
        raw.writeBigUInt64BE(rowId, 1);
        return raw.toString('base64url');
    };
    assertError(await u.old.get(`/v1/sync?since=${tokenOf(stale)}`), 410, 'token_expired', 'since');
    // a 29-day-old token still works (an empty state: nothing was followed)
    const y = await u.old.get(`/v1/sync?since=${tokenOf(young)}`);
    assert.equal(y.status, 200, JSON.stringify(y.body));
    assert.deepEqual(y.body, { events: [], next: tokenOf(young), has_more: false });

    // a device starting over clears the user's expired rows, and only those
    await start(u.old);
    const left = sql(`SELECT id FROM sync_cursors WHERE tenant_id = ${tenant.id} AND user_id = 'old' ORDER BY id`)
        .map((r) => BigInt(r[0]));
    assert.ok(!left.includes(stale) && !left.includes(stale + 1n), 'expired rows purged');
    assert.ok(left.includes(young), 'live rows kept');
    assert.equal(left.length, 2);

    // a row that does not decode is a token to start over from
    sql(`INSERT INTO sync_cursors (tenant_id, user_id, id, state, created_at)
         VALUES (${tenant.id}, 'old', ${young + 7n}, X'02', UTC_TIMESTAMP(3))`);
    assertError(await u.old.get(`/v1/sync?since=${tokenOf(young + 7n)}`), 410, 'token_expired', 'since');
});
