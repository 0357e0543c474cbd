// Reactions over the REST API: add, remove, counts, who reacted, limits,
// permissions and tenant isolation, against the shared test stack.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const as = {};

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field);
    assert.equal(r.body.error.retryable, status === 503 || status === 429);
}

// ---- conversations, through the conversations and members endpoints ----

async function ok(r, status = [200, 201, 204]) {
    const res = await r;
    assert.ok(status.includes(res.status), JSON.stringify(res.body));
    return res;
}

const conv = {
    async group(owner, members) {
        return (await ok(as[owner].post('/v1/conversations', { type: 'group', name: 'g', members }))).body.id;
    },
    async direct(a, b) {
        return (await ok(as[a].post('/v1/conversations', { type: 'direct', peer: b }))).body.id;
    },
    async role(cid, uid, role) { await ok(admin.patch(`/v1/conversations/${cid}/members/${uid}`, { role })); },
    async kick(cid, uid) { await ok(admin.del(`/v1/conversations/${cid}/members/${uid}`)); },
    async ban(cid, uid) { await ok(admin.post(`/v1/conversations/${cid}/members/${uid}/ban`, {})); },
    async block(a, b) { await ok(admin.put(`/v1/users/${a}/blocks/${b}`)); },
    async unblock(a, b) { await ok(admin.del(`/v1/users/${a}/blocks/${b}`)); },
};

// the event log, read-only, with an independent client
function events(c) {
    const env = stackEnv();
    const r = spawnSync('mariadb', ['--no-defaults', '--default-character-set=utf8mb4', '-h', '127.0.0.1',
        '-P', env.PARLEY_DB_PORT, '-u', env.PARLEY_DB_USER, `-p${env.PARLEY_DB_PASSWORD}`, env.PARLEY_DB_NAME,
        '-N', '-B', '-r', '-e', `SELECT e.event_seq, e.type, e.actor_id, IFNULL(e.message_seq, 0), e.payload,
            (SELECT o.topic FROM outbox o WHERE o.tenant_id = e.tenant_id AND o.msg_key = '${c}'
             AND JSON_VALUE(o.payload, '$.data.event_seq') = e.event_seq)
            FROM conversation_events e WHERE e.tenant_id = ${tenant.id} AND e.conversation_id = ${c} ORDER BY e.event_seq`],
    { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'))
        .map(([seq, type, actor, mseq, payload, topic]) => ({ seq: Number(seq), type, actor, mseq: Number(mseq), payload: JSON.parse(payload), topic }));
}

let n = 0;
async function send(user, c, text = 'hi') {
    const r = await as[user].post(`/v1/conversations/${c}/messages`, { client_id: `r-${process.pid}-${++n}`, text });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
}

const THUMBS = '👍';
const HEART = '❤️';
const path = (c, s, e) => `/v1/conversations/${c}/messages/${s}/reactions${e === undefined ? '' : `/${encodeURIComponent(e)}`}`;

before(async () => {
    nginx = await startApi({ name: 'api-reactions', pool: 8 });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const u of ['alice', 'bob', 'carol', 'dave', 'erin']) {
        assert.equal((await admin.post('/v1/users', { user_id: u })).status, 201);
        as[u] = admin.as({ user: u });
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('add, count, list who reacted, remove; both idempotent', async () => {
    const g = await conv.group('alice', ['bob', 'carol']);
    const m = await send('alice', g);
    const msg = () => as.bob.get(`/v1/conversations/${g}/messages/${m.seq}`);

    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204, 'twice is once');
    assert.equal((await as.carol.put(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.carol.put(path(g, m.seq, HEART))).status, 204);
    assert.equal((await as.alice.put(path(g, m.seq, ':party:'))).status, 204);
    assert.deepEqual((await msg()).body.reactions, { [THUMBS]: 2, [HEART]: 1, ':party:': 1 });

    const list = await as.alice.get(path(g, m.seq));
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.deepEqual(list.body.reactions, [
        { emoji: THUMBS, count: 2, users: ['bob', 'carol'], has_more_users: false },
        { emoji: HEART, count: 1, users: ['carol'], has_more_users: false },
        { emoji: ':party:', count: 1, users: ['alice'], has_more_users: false },
    ]);
    // the tenant's API key reads them too
    assert.deepEqual((await admin.get(path(g, m.seq))).body, list.body);

    assert.equal((await as.bob.del(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.bob.del(path(g, m.seq, THUMBS))).status, 204, 'removing what is not there is fine');
    assert.equal((await as.carol.del(path(g, m.seq, HEART))).status, 204);
    assert.deepEqual((await msg()).body.reactions, { [THUMBS]: 1, ':party:': 1 });
    assert.deepEqual((await as.bob.get(path(g, m.seq))).body.reactions.map((r) => [r.emoji, r.count, r.users]),
        [[THUMBS, 1, ['carol']], [':party:', 1, ['alice']]]);

    // other messages are untouched
    const m2 = await send('bob', g);
    assert.deepEqual(m2.reactions, {});
    assert.deepEqual((await as.bob.get(path(g, m2.seq))).body, { reactions: [] });
});

test('concurrent reactions keep the counts exact', async () => {
    const users = ['alice', 'bob', 'carol', 'dave', 'erin'];
    const g = await conv.group('alice', users.slice(1));
    const m = await send('alice', g);
    const rs = await Promise.all(users.flatMap((u) => [THUMBS, HEART, THUMBS].map((e) => as[u].put(path(g, m.seq, e)))));
    for (const r of rs) assert.equal(r.status, 204, JSON.stringify(r.body));
    const got = (await as.alice.get(`/v1/conversations/${g}/messages/${m.seq}`)).body;
    assert.deepEqual(got.reactions, { [THUMBS]: 5, [HEART]: 5 });
    const rm = await Promise.all(users.slice(0, 3).map((u) => as[u].del(path(g, m.seq, HEART))));
    for (const r of rm) assert.equal(r.status, 204);
    assert.deepEqual((await as.alice.get(`/v1/conversations/${g}/messages/${m.seq}`)).body.reactions, { [THUMBS]: 5, [HEART]: 2 });
});

test('who reacted pages per emoji; the summary is bounded by limit', async () => {
    const users = ['alice', 'bob', 'carol', 'dave', 'erin'];
    const g = await conv.group('alice', users.slice(1));
    const m = await send('bob', g);
    for (const u of users) assert.equal((await as[u].put(path(g, m.seq, THUMBS))).status, 204);

    const sum = await as.alice.get(`${path(g, m.seq)}?limit=2`);
    assert.deepEqual(sum.body.reactions, [{ emoji: THUMBS, count: 5, users: ['alice', 'bob'], has_more_users: true }]);

    const seen = [];
    let after = '';
    for (let i = 0; i < 5; i++) {
        const r = await as.carol.get(`${path(g, m.seq, THUMBS)}?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.emoji, THUMBS);
        assert.equal(r.body.count, 5);
        seen.push(...r.body.users);
        if (r.body.next_after === null) break;
        after = r.body.next_after;
    }
    assert.deepEqual(seen, users);
    const none = await as.carol.get(path(g, m.seq, HEART));
    assert.deepEqual(none.body, { emoji: HEART, count: 0, users: [], next_after: null });
});

test('bad input and limits', async () => {
    const g = await conv.group('alice', ['bob']);
    const m = await send('alice', g);
    assertError(await as.bob.put(path(g, m.seq, 'x'.repeat(65))), 400, 'invalid_parameter', 'emoji');
    assert.equal((await as.bob.put(path(g, m.seq, 'x'.repeat(64)))).status, 204, '64 bytes is the limit');
    assertError(await as.bob.put(path(g, m.seq, 'a b')), 400, 'invalid_parameter', 'emoji');
    assertError(await as.bob.put(`/v1/conversations/${g}/messages/${m.seq}/reactions/%ff`), 400, 'invalid_parameter', 'emoji');
    assertError(await as.bob.put(`/v1/conversations/${g}/messages/${m.seq}/reactions/%0a`), 400, 'invalid_parameter', 'emoji');
    assertError(await as.bob.put(`/v1/conversations/${g}/messages/x/reactions/a`), 400, 'invalid_parameter', 'seq');
    assertError(await as.bob.put(`/v1/conversations/x/messages/1/reactions/a`), 400, 'invalid_parameter', 'cid');
    assertError(await as.bob.put(path(g, 99, THUMBS)), 404, 'message_not_found', 'seq');
    assertError(await as.bob.del(path(g, 99, THUMBS)), 404, 'message_not_found', 'seq');
    assertError(await as.bob.get(path(g, 99)), 404, 'message_not_found', 'seq');
    assertError(await as.bob.put(path('12345', 1, THUMBS)), 404, 'conversation_not_found');
    assertError(await as.bob.get(`${path(g, m.seq)}?limit=0`), 400, 'invalid_parameter', 'limit');
    assertError(await as.bob.get(`${path(g, m.seq, THUMBS)}?after=a%2Fb`), 400, 'invalid_parameter', 'after');
    assertError(await as.bob.post(path(g, m.seq, THUMBS), {}), 405, 'method_not_allowed');

    // at most 50 different reactions on one message
    const m2 = await send('alice', g);
    for (let i = 0; i < 50; i++) assert.equal((await as.bob.put(path(g, m2.seq, `e${i}`))).status, 204);
    assertError(await as.alice.put(path(g, m2.seq, 'e50')), 409, 'too_many_reactions', 'emoji');
    assert.equal((await as.alice.put(path(g, m2.seq, 'e7'))).status, 204, 'an existing one can still be added to');
    const got = (await as.alice.get(`/v1/conversations/${g}/messages/${m2.seq}`)).body.reactions;
    assert.equal(Object.keys(got).length, 50);
    assert.equal(got.e7, 2);
    assert.equal((await as.bob.get(path(g, m2.seq))).body.reactions.length, 50);
});

test('deleted messages take no reactions and lose theirs', async () => {
    const g = await conv.group('alice', ['bob']);
    const m = await send('alice', g);
    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.alice.del(`/v1/conversations/${g}/messages/${m.seq}`)).status, 204);
    assertError(await as.bob.put(path(g, m.seq, HEART)), 409, 'message_deleted', 'seq');
    assert.equal((await as.bob.del(path(g, m.seq, THUMBS))).status, 204);
    assert.deepEqual((await as.bob.get(path(g, m.seq))).body, { reactions: [] });
    assert.deepEqual((await as.bob.get(`/v1/conversations/${g}/messages/${m.seq}`)).body.reactions, {});
});

test('permissions: members react; others, kicked and banned users do not', async () => {
    const g = await conv.group('alice', ['bob', 'carol']);
    const m = await send('alice', g);
    assertError(await as.dave.put(path(g, m.seq, THUMBS)), 403, 'not_member');
    assertError(await as.dave.get(path(g, m.seq)), 403, 'not_member');
    assertError(await admin.put(path(g, m.seq, THUMBS)), 403, 'user_required');
    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204);
    await conv.kick(g, 'bob');
    assertError(await as.bob.del(path(g, m.seq, THUMBS)), 403, 'not_member');
    await conv.ban(g, 'carol');
    assertError(await as.carol.put(path(g, m.seq, THUMBS)), 403, 'banned');
    assertError(await as.carol.get(path(g, m.seq, THUMBS)), 403, 'banned');
    assert.deepEqual((await as.alice.get(path(g, m.seq))).body.reactions.map((r) => r.users), [['bob']],
        'a refused call changed nothing');
});

test('tenant isolation: another tenant sees and changes nothing', async () => {
    const g = await conv.group('alice', ['bob']);
    const m = await send('alice', g);
    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204);
    const stranger = otherAdmin.as({ user: 'bob' });
    assertError(await stranger.put(path(g, m.seq, HEART)), 404, 'conversation_not_found');
    assertError(await stranger.del(path(g, m.seq, THUMBS)), 404, 'conversation_not_found');
    assertError(await stranger.get(path(g, m.seq)), 404, 'conversation_not_found');
    assertError(await otherAdmin.get(path(g, m.seq, THUMBS)), 404, 'conversation_not_found');
    assert.deepEqual((await as.alice.get(path(g, m.seq))).body.reactions.map((r) => [r.emoji, r.users]), [[THUMBS, ['bob']]]);
});

test('events: reaction.added and reaction.removed, once per change', async () => {
    const g = await conv.group('alice', ['bob']);
    const m = await send('alice', g);
    const start = events(g).length;
    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.bob.put(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.alice.put(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.bob.del(path(g, m.seq, THUMBS))).status, 204);
    assert.equal((await as.bob.del(path(g, m.seq, THUMBS))).status, 204);
    const log = events(g);
    assert.deepEqual(log.map((e) => e.seq), log.map((_, i) => i + 1));
    assert.deepEqual(log.slice(start).map((e) => [e.type, e.actor, e.mseq, e.topic, e.payload]), [
        ['reaction.added', 'bob', m.seq, 'parley.events', { message_id: m.id, seq: m.seq, emoji: THUMBS, user_id: 'bob', count: 1 }],
        ['reaction.added', 'alice', m.seq, 'parley.events', { message_id: m.id, seq: m.seq, emoji: THUMBS, user_id: 'alice', count: 2 }],
        ['reaction.removed', 'bob', m.seq, 'parley.events', { message_id: m.id, seq: m.seq, emoji: THUMBS, user_id: 'bob', count: 1 }],
    ]);
});
