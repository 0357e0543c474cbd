// Receipts, unread counts and the caller's conversation list over the REST
// API, against the shared test stack: cursors only move forward and a
// repeated receipt writes nothing; unread counts between users; the list's
// order and its cursor under new activity; permissions, bad input and
// tenant isolation.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const u = {};       // user id -> client with that user's token
let n = 0;

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

function receiptEvents(cid) {
    return sql(`SELECT event_seq, type, subject_id, message_seq, payload FROM conversation_events
                WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid} AND type LIKE 'receipt.%'
                ORDER BY event_seq`)
        .map(([seq, type, subject, mseq, payload]) => ({
            seq: Number(seq), type, subject, message_seq: Number(mseq), payload: JSON.parse(payload),
        }));
}

function outboxTypes(cid) {
    return sql(`SELECT JSON_VALUE(payload, '$.type') FROM outbox WHERE tenant_id = ${tenant.id}
                AND msg_key = '${cid}' AND JSON_VALUE(payload, '$.type') LIKE 'receipt.%' ORDER BY id`)
        .map((r) => r[0]);
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

async function direct(a, b) {
    const r = await u[a].post('/v1/conversations', { type: 'direct', peer: b });
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
    return r.body.id;
}

async function send(who, cid, text = `m${++n}`) {
    const r = await u[who].post(`/v1/conversations/${cid}/messages`, { client_id: `c${++n}`, type: 'text', text });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
}

async function unread(who) {
    const r = await u[who].get('/v1/unread');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
}

async function listAll(who, limit) {
    const out = [];
    let cursor = null;
    for (let i = 0; i < 50; i++) {
        const r = await u[who].get(`/v1/conversations?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(r.body.conversations.length <= limit);
        out.push(...r.body.conversations);
        cursor = r.body.next_cursor;
        if (!cursor) return out;
    }
    throw new Error('the list does not end');
}

before(async () => {
    nginx = await startApi({ name: 'api-receipts', pool: 8 });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const id of ['alice', 'bob', 'carol', 'dave', 'erin', 'lister', 'l1', 'l2', 'l3', 'l4', 'l5']) {
        u[id] = await user(id);
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('receipts move forward only, read implies delivered, a repeat writes nothing', async () => {
    const g = await group('alice', ['bob', 'carol']);
    for (let i = 0; i < 4; i++) await send('alice', g);

    let r = await u.bob.post(`/v1/conversations/${g}/delivered`, { seq: 2 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { conversation_id: g, user_id: 'bob', delivered_seq: 2, read_seq: 0, last_seq: 4, unread: 4 });

    r = await u.bob.post(`/v1/conversations/${g}/read`, { seq: 1 });
    assert.deepEqual([r.body.delivered_seq, r.body.read_seq, r.body.unread], [2, 1, 3], 'read below delivered');

    // backwards and repeated: nothing moves
    for (const [path, seq] of [['read', 1], ['read', 0], ['delivered', 1], ['delivered', 2]]) {
        r = await u.bob.post(`/v1/conversations/${g}/${path}`, { seq });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual([r.body.delivered_seq, r.body.read_seq], [2, 1], `${path} ${seq}`);
    }

    // read past delivered moves both
    r = await u.bob.post(`/v1/conversations/${g}/read`, { seq: 3 });
    assert.deepEqual([r.body.delivered_seq, r.body.read_seq, r.body.unread], [3, 3, 1]);

    // never past the last message
    assertError(await u.bob.post(`/v1/conversations/${g}/read`, { seq: 5 }), 422, 'out_of_range', 'seq');
    assertError(await u.bob.post(`/v1/conversations/${g}/delivered`, { seq: 99 }), 422, 'out_of_range', 'seq');

    // exactly one event per change, naming bob, with both cursors
    const evs = receiptEvents(g);
    assert.deepEqual(evs.map((e) => [e.type, e.subject, e.message_seq, e.payload]), [
        ['receipt.delivered', 'bob', 2, { delivered_seq: 2, read_seq: 0 }],
        ['receipt.read', 'bob', 1, { delivered_seq: 2, read_seq: 1 }],
        ['receipt.read', 'bob', 3, { delivered_seq: 3, read_seq: 3 }],
    ]);
    assert.deepEqual(outboxTypes(g), ['receipt.delivered', 'receipt.read', 'receipt.read'], 'one outbox row each');

    // everyone's cursors; the sender's own read cursor follows their sends
    r = await u.carol.get(`/v1/conversations/${g}/receipts`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, {
        conversation_id: g,
        last_seq: 4,
        receipts: [
            { user_id: 'alice', delivered_seq: 4, read_seq: 4 },
            { user_id: 'bob', delivered_seq: 3, read_seq: 3 },
            { user_id: 'carol', delivered_seq: 0, read_seq: 0 },
        ],
        next_cursor: null,
    });
});

test('receipts of a conversation: pages, the API key, former and non-members', async () => {
    const g = await group('alice', ['bob', 'carol', 'dave', 'erin']);
    await send('alice', g);

    const p1 = await u.bob.get(`/v1/conversations/${g}/receipts?limit=2`);
    assert.equal(p1.status, 200);
    assert.deepEqual(p1.body.receipts.map((x) => x.user_id), ['alice', 'bob']);
    assert.equal(typeof p1.body.next_cursor, 'string');
    const p2 = await u.bob.get(`/v1/conversations/${g}/receipts?limit=2&cursor=${p1.body.next_cursor}`);
    assert.deepEqual(p2.body.receipts.map((x) => x.user_id), ['carol', 'dave']);
    const p3 = await u.bob.get(`/v1/conversations/${g}/receipts?limit=2&cursor=${p2.body.next_cursor}`);
    assert.deepEqual(p3.body.receipts.map((x) => x.user_id), ['erin']);
    assert.equal(p3.body.next_cursor, null);

    // the tenant's key sees every conversation
    const k = await admin.get(`/v1/conversations/${g}/receipts`);
    assert.equal(k.status, 200, JSON.stringify(k.body));
    assert.equal(k.body.receipts.length, 5);

    // a kicked member is no longer listed and may no longer look or mark
    const kick = await u.alice.del(`/v1/conversations/${g}/members/erin`);
    assert.ok(kick.status === 200 || kick.status === 204, JSON.stringify(kick.body));
    assertError(await u.erin.get(`/v1/conversations/${g}/receipts`), 403, 'not_member');
    assertError(await u.erin.post(`/v1/conversations/${g}/read`, { seq: 1 }), 403, 'not_member');
    assert.deepEqual((await u.bob.get(`/v1/conversations/${g}/receipts`)).body.receipts.map((x) => x.user_id),
        ['alice', 'bob', 'carol', 'dave']);

    // banned
    const ban = await u.alice.post(`/v1/conversations/${g}/members/dave/ban`);
    assert.ok(ban.status === 200 || ban.status === 204, JSON.stringify(ban.body));
    assertError(await u.dave.post(`/v1/conversations/${g}/read`, { seq: 1 }), 403, 'banned');
    assertError(await u.dave.get(`/v1/conversations/${g}/receipts`), 403, 'banned');

    // never a member
    assertError(await u.lister.get(`/v1/conversations/${g}/receipts`), 403, 'not_member');
    assertError(await u.lister.post(`/v1/conversations/${g}/delivered`, { seq: 1 }), 403, 'not_member');
    assert.equal(receiptEvents(g).length, 0, 'no refused receipt left an event');
});

test('receipts: bad input and credentials', async () => {
    const g = await group('alice', ['bob']);
    await send('alice', g);
    const p = `/v1/conversations/${g}/read`;

    assertError(await u.bob.post(p, {}), 422, 'missing_field', 'seq');
    assertError(await u.bob.post(p, { seq: -1 }), 422, 'out_of_range', 'seq');
    assertError(await u.bob.post(p, { seq: '1' }), 422, 'invalid_type', 'seq');
    assertError(await u.bob.post(p, { seq: 1.5 }), 422, 'invalid_type', 'seq');
    assertError(await u.bob.post(p, { seq: 1, at: 'now' }), 422, 'unknown_field', 'at');
    assertError(await u.bob.post(p, '{"seq":'), 400, 'invalid_json');
    assertError(await u.bob.post('/v1/conversations/abc/read', { seq: 1 }), 400, 'invalid_parameter', 'cid');
    assertError(await u.bob.post('/v1/conversations/12345/read', { seq: 1 }), 404, 'conversation_not_found');
    assertError(await u.bob.post('/v1/conversations/12345/delivered', { seq: 1 }), 404, 'conversation_not_found');
    assertError(await u.bob.get('/v1/conversations/12345/receipts'), 404, 'conversation_not_found');
    assertError(await u.bob.get(`/v1/conversations/${g}/receipts?limit=0`), 400, 'invalid_parameter', 'limit');
    assertError(await u.bob.get(`/v1/conversations/${g}/receipts?limit=100000`), 400, 'invalid_parameter', 'limit');
    assertError(await u.bob.get(`/v1/conversations/${g}/receipts?cursor=***`), 400, 'invalid_parameter', 'cursor');
    assertError(await u.bob.get('/v1/conversations?cursor=***'), 400, 'invalid_parameter', 'cursor');
    assertError(await u.bob.get('/v1/conversations?cursor=AAAA'), 400, 'invalid_parameter', 'cursor');
    assertError(await u.bob.get('/v1/conversations?limit=0'), 400, 'invalid_parameter', 'limit');
    assertError(await u.bob.get('/v1/unread?limit=x'), 400, 'invalid_parameter', 'limit');

    // receipts, the list and unread counts belong to a user
    assertError(await admin.post(p, { seq: 1 }), 403, 'user_required');
    assertError(await admin.get('/v1/conversations'), 403, 'user_required');
    assertError(await admin.get('/v1/unread'), 403, 'user_required');
    assertError(await client(nginx.base).post(p, { seq: 1 }), 401, 'unauthenticated');
    assertError(await client(nginx.base).get('/v1/unread'), 401, 'unauthenticated');
    assertError(await client(nginx.base).get(`/v1/conversations/${g}/receipts`), 401, 'unauthenticated');

    // the API key acting for a member marks as that member
    const r = await admin.as({ user: 'bob' }).post(p, { seq: 1 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.user_id, 'bob');
    assert.equal(r.body.read_seq, 1);
    assert.equal(receiptEvents(g).length, 1, 'only the accepted receipt was recorded');
});

test('unread counts between two users, and across conversations', async () => {
    await user('ua').then((c) => { u.ua = c; });
    await user('ub').then((c) => { u.ub = c; });
    await user('uc').then((c) => { u.uc = c; });
    const d = await direct('ua', 'ub');

    let a = await unread('ua');
    assert.deepEqual(a, { total: 0, conversation_count: 0, conversations: [], has_more: false });

    for (let i = 0; i < 3; i++) await send('ua', d);
    let b = await unread('ub');
    assert.equal(b.total, 3);
    assert.deepEqual(b.conversations, [{ conversation_id: d, unread: 3, last_seq: 3, read_seq: 0 }]);
    assert.equal((await unread('ua')).total, 0, 'own messages are not unread');

    // a reply counts as having read what came before it
    await send('ub', d);
    assert.equal((await unread('ub')).total, 0);
    a = await unread('ua');
    assert.equal(a.total, 1);
    assert.deepEqual(a.conversations.map((c) => [c.conversation_id, c.unread]), [[d, 1]]);

    // a group joins the counts; newest activity first
    const g = await group('uc', ['ua', 'ub']);
    await send('uc', g);
    await send('uc', g);
    a = await unread('ua');
    assert.equal(a.total, 3);
    assert.equal(a.conversation_count, 2);
    assert.deepEqual(a.conversations.map((c) => [c.conversation_id, c.unread]), [[g, 2], [d, 1]]);

    // bounded: limit caps the list, not the total
    const lim = await u.ua.get('/v1/unread?limit=1');
    assert.equal(lim.body.total, 3);
    assert.equal(lim.body.conversations.length, 1);
    assert.equal(lim.body.has_more, true);

    // reading clears; the list agrees
    await u.ua.post(`/v1/conversations/${g}/read`, { seq: 1 });
    a = await unread('ua');
    assert.equal(a.total, 2);
    const list = await u.ua.get('/v1/conversations');
    const byId = Object.fromEntries(list.body.conversations.map((c) => [c.id, c]));
    assert.equal(byId[g].unread, 1);
    assert.equal(byId[d].unread, 1);
    await u.ua.post(`/v1/conversations/${d}/read`, { seq: 4 });
    await u.ua.post(`/v1/conversations/${g}/read`, { seq: 2 });
    assert.equal((await unread('ua')).total, 0);

    // a member who joins later starts with nothing unread
    await user('late').then((c) => { u.late = c; });
    const add = await u.uc.post(`/v1/conversations/${g}/members`, { user_ids: ['late'] });
    assert.ok(add.status === 200 || add.status === 201, JSON.stringify(add.body));
    assert.equal((await unread('late')).total, 0);
    await send('uc', g);
    assert.equal((await unread('late')).total, 1);
});

test('the conversation list: newest activity first, pages, last message, tombstones', async () => {
    // five conversations, made in order c0..c4
    const c = [];
    c.push(await group('lister', ['l1'], 'zero'));
    c.push(await group('l1', ['lister'], 'one'));
    c.push(await direct('lister', 'l2'));
    c.push(await group('l3', ['lister', 'l4'], 'three'));
    c.push(await group('lister', [], 'four'));

    // activity: c1, then c3, then c0; c2 and c4 have none (by creation)
    await send('l1', c[1], 'hello one');
    await send('l3', c[3], 'hello three');
    const last0 = await send('lister', c[0], 'bye zero');

    let all = await listAll('lister', 50);
    assert.deepEqual(all.map((x) => x.id), [c[0], c[3], c[1], c[4], c[2]]);

    const x0 = all[0];
    assert.equal(x0.type, 'group');
    assert.equal(x0.name, 'zero');
    assert.equal(x0.my_role, 'owner');
    assert.equal(x0.my_state, 'active');
    assert.equal(x0.unread, 0);
    assert.equal(x0.last_seq, 1);
    assert.match(x0.last_message_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(x0.last_message, {
        seq: 1, sender_id: 'lister', type: 'text', text: 'bye zero',
        created_at: last0.created_at, edited_at: null, deleted: false,
    });
    const x3 = all[1];
    assert.equal(x3.my_role, 'participant');
    assert.equal(x3.unread, 1);
    assert.equal(x3.last_message.text, 'hello three');
    assert.equal(x3.last_message.sender_id, 'l3');
    const x2 = all.find((x) => x.id === c[2]);
    assert.equal(x2.type, 'direct');
    assert.equal(x2.peer, 'l2');
    assert.equal(x2.last_message, null);
    assert.equal(x2.last_message_at, null);

    // the same through pages of two
    const paged = await listAll('lister', 2);
    assert.deepEqual(paged.map((x) => x.id), all.map((x) => x.id));

    // activity between pages: the active one moves to the top and is not
    // shown again; nothing else is skipped or repeated
    const p1 = await u.lister.get('/v1/conversations?limit=2');
    assert.deepEqual(p1.body.conversations.map((x) => x.id), [c[0], c[3]]);
    await send('l2', c[2], 'late news');
    const rest = [];
    let cursor = p1.body.next_cursor;
    while (cursor) {
        const r = await u.lister.get(`/v1/conversations?limit=2&cursor=${cursor}`);
        rest.push(...r.body.conversations.map((x) => x.id));
        cursor = r.body.next_cursor;
    }
    assert.deepEqual(rest, [c[1], c[4]]);
    all = await listAll('lister', 50);
    assert.deepEqual(all.map((x) => x.id), [c[2], c[0], c[3], c[1], c[4]]);

    // a deleted last message shows as a tombstone
    const del = await u.lister.del(`/v1/conversations/${c[0]}/messages/1`);
    assert.ok(del.status === 200 || del.status === 204, JSON.stringify(del.body));
    const t = (await listAll('lister', 50)).find((x) => x.id === c[0]).last_message;
    assert.equal(t.deleted, true);
    assert.equal(t.text, null);
    assert.equal(t.sender_id, 'lister');
    assert.equal(t.seq, 1);

    // a conversation left is no longer listed
    const leave = await u.lister.post(`/v1/conversations/${c[3]}/leave`);
    assert.ok(leave.status === 200 || leave.status === 204, JSON.stringify(leave.body));
    assert.ok(!(await listAll('lister', 50)).some((x) => x.id === c[3]));
    // and others' lists are their own
    assert.deepEqual((await listAll('l4', 50)).map((x) => x.id), [c[3]]);
});

test('tenant isolation: another tenant sees none of it', async () => {
    const g = await group('alice', ['bob']);
    await send('alice', g);
    // the same user id in another tenant
    const cr = await otherAdmin.post('/v1/users', { user_id: 'bob' });
    assert.equal(cr.status, 201);
    const tok = await otherAdmin.post('/v1/users/bob/tokens', {});
    const otherBob = client(nginx.base, { token: tok.body.token });

    assertError(await otherBob.post(`/v1/conversations/${g}/read`, { seq: 1 }), 404, 'conversation_not_found');
    assertError(await otherBob.post(`/v1/conversations/${g}/delivered`, { seq: 1 }), 404, 'conversation_not_found');
    assertError(await otherBob.get(`/v1/conversations/${g}/receipts`), 404, 'conversation_not_found');
    assertError(await otherAdmin.get(`/v1/conversations/${g}/receipts`), 404, 'conversation_not_found');
    assertError(await otherAdmin.as({ user: 'bob' }).post(`/v1/conversations/${g}/read`, { seq: 1 }), 404,
        'conversation_not_found');
    assert.deepEqual((await otherBob.get('/v1/conversations')).body, { conversations: [], next_cursor: null });
    assert.deepEqual((await otherBob.get('/v1/unread')).body,
        { total: 0, conversation_count: 0, conversations: [], has_more: false });

    // and bob's own view is untouched
    assert.equal((await u.bob.get(`/v1/conversations/${g}/receipts`)).body.receipts
        .find((x) => x.user_id === 'bob').read_seq, 0);
    assert.equal(receiptEvents(g).length, 0);
});
