// Conversations over the REST API, against the shared test stack: direct
// find-or-create (and its race), groups, visibility, update, delete, the
// public directory, join/leave/transfer, and tenant isolation.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const u = {};       // user id -> client with that user's token

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

function events(cid) {
    return sql(`SELECT event_seq, type, actor_id, IFNULL(subject_id, '-'), payload FROM conversation_events
                WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid} ORDER BY event_seq`)
        .map(([seq, type, actor, subject, payload]) => ({
            seq: Number(seq), type, actor, subject: subject === '-' ? null : subject, payload: JSON.parse(payload),
        }));
}

function memberRow(cid, uid) {
    const rows = sql(`SELECT role, state, joined_seq, joined_event, IFNULL(left_event, '-') FROM members
                      WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid} AND user_id = '${uid}'`);
    if (!rows.length) return null;
    const [role, state, joinedSeq, joinedEvent, leftEvent] = rows[0];
    return { role, state, joinedSeq: Number(joinedSeq), joinedEvent: Number(joinedEvent),
        leftEvent: leftEvent === '-' ? null : Number(leftEvent) };
}

function outboxTypes(cid) {
    return sql(`SELECT JSON_VALUE(payload, '$.type') FROM outbox WHERE tenant_id = ${tenant.id}
                AND msg_key = '${cid}' ORDER BY id`).map((r) => r[0]);
}

async function user(id, t = tenant, adm = admin) {
    const c = await adm.post('/v1/users', { user_id: id, name: id });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const tok = await adm.post(`/v1/users/${encodeURIComponent(id)}/tokens`, {});
    assert.equal(tok.status, 201);
    return client(nginx.base, { token: tok.body.token });
}

async function group(owner, body = {}) {
    const r = await u[owner].post('/v1/conversations', { type: 'group', name: 'g', ...body });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
}

before(async () => {
    nginx = await startApi({ name: 'api-conversations', pool: 8, http: 'parley_api_max_members 8;' });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const id of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivy', 'jack']) {
        u[id] = await user(id);
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('direct: find-or-create, one conversation per pair in either order', async () => {
    const c = await u.alice.post('/v1/conversations', { type: 'direct', peer: 'bob', metadata: { topic: 'x' } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.match(c.body.id, /^\d+$/);
    assert.equal(c.body.type, 'direct');
    assert.equal(c.body.access, 'private');
    assert.equal(c.body.created_by, 'alice');
    assert.equal(c.body.member_count, 2);
    assert.equal(c.body.last_seq, 0);
    assert.equal(c.body.my_role, 'participant');
    assert.deepEqual(c.body.metadata, { topic: 'x' });
    assert.match(c.body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    const again = await u.alice.post('/v1/conversations', { type: 'direct', peer: 'bob' });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, c.body.id);
    const reverse = await u.bob.post('/v1/conversations', { type: 'direct', peer: 'alice' });
    assert.equal(reverse.status, 200);
    assert.equal(reverse.body.id, c.body.id);
    assert.equal(reverse.body.my_role, 'participant');

    assert.deepEqual(events(c.body.id).map((e) => [e.seq, e.type, e.subject]),
        [[1, 'conversation.created', 'alice'], [2, 'member.added', 'bob']]);
    assert.deepEqual(outboxTypes(c.body.id), ['conversation.created', 'member.added']);
    assert.equal(memberRow(c.body.id, 'alice').joinedEvent, 1);
    assert.equal(memberRow(c.body.id, 'bob').joinedEvent, 2);
    // the key is the two ids in byte order joined by NUL
    assert.deepEqual(sql(`SELECT HEX(direct_key) FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${c.body.id}`),
        [[Buffer.from('alice\0bob').toString('hex').toUpperCase()]]);

    // the API key creates for a named user, and sees it as that user
    const k = await admin.post('/v1/conversations', { type: 'direct', owner: 'carol', peer: 'dave' });
    assert.equal(k.status, 201, JSON.stringify(k.body));
    assert.equal(k.body.created_by, 'carol');
    assert.equal(k.body.my_role, 'participant');
    const ka = await u.dave.post('/v1/conversations', { type: 'direct', peer: 'carol' });
    assert.equal(ka.body.id, k.body.id);
    // and so does X-Parley-User
    const x = await admin.as({ user: 'erin' }).post('/v1/conversations', { type: 'direct', peer: 'carol' });
    assert.equal(x.status, 201, JSON.stringify(x.body));
    assert.equal(x.body.created_by, 'erin');
});

test('direct: 20 concurrent creates of one pair yield one conversation', async () => {
    await user('race1');
    await user('race2');
    const calls = Array.from({ length: 20 }, (_, i) => (i % 2 ? admin.as({ user: 'race1' }) : admin.as({ user: 'race2' }))
        .post('/v1/conversations', { type: 'direct', peer: i % 2 ? 'race2' : 'race1' }));
    const rs = await Promise.all(calls);
    for (const r of rs) assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
    assert.equal(new Set(rs.map((r) => r.body.id)).size, 1);
    assert.equal(rs.filter((r) => r.status === 201).length, 1);
    const id = rs[0].body.id;
    assert.deepEqual(sql(`SELECT COUNT(*) FROM conversations WHERE tenant_id = ${tenant.id} AND created_by IN ('race1','race2')`), [['1']]);
    assert.equal(events(id).length, 2);
    assert.deepEqual(sql(`SELECT COUNT(*) FROM members WHERE tenant_id = ${tenant.id} AND conversation_id = ${id}`), [['2']]);
});

test('direct: bad input, missing and inactive users, blocks', async () => {
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'alice' }), 422, 'invalid_value', 'peer');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct' }), 422, 'missing_field', 'peer');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'bob', name: 'x' }), 422, 'invalid_value', 'name');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'bob', members: [] }), 422, 'invalid_value', 'members');
    assertError(await u.alice.post('/v1/conversations', { type: 'chat', peer: 'bob' }), 422, 'invalid_value', 'type');
    assertError(await u.alice.post('/v1/conversations', { peer: 'bob' }), 422, 'missing_field', 'type');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 5 }), 422, 'invalid_type', 'peer');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'a/b' }), 422, 'invalid_value', 'peer');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'bob', colour: 1 }), 422, 'unknown_field', 'colour');
    assertError(await u.alice.post('/v1/conversations', '{"type":"direct",'), 400, 'invalid_json');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'nobody' }), 404, 'user_not_found', 'peer');
    assertError(await admin.post('/v1/conversations', { type: 'direct', peer: 'bob' }), 422, 'missing_field', 'owner');
    assertError(await admin.post('/v1/conversations', { type: 'direct', owner: 'ghost', peer: 'bob' }), 404, 'user_not_found', 'owner');
    assertError(await admin.as({ user: 'ghost' }).post('/v1/conversations', { type: 'direct', peer: 'bob' }), 404, 'user_not_found');
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', owner: 'bob', peer: 'carol' }), 403, 'forbidden', 'owner');

    await user('sleepy');
    assert.equal((await admin.post('/v1/users/sleepy/deactivate')).status, 200);
    assertError(await u.alice.post('/v1/conversations', { type: 'direct', peer: 'sleepy' }), 409, 'user_inactive', 'peer');
    assertError(await admin.post('/v1/conversations', { type: 'direct', owner: 'sleepy', peer: 'bob' }), 409, 'user_inactive', 'owner');

    // a block in either direction refuses the pair
    assert.equal((await u.frank.put('/v1/users/frank/blocks/gina')).status, 201);
    assertError(await u.frank.post('/v1/conversations', { type: 'direct', peer: 'gina' }), 403, 'blocked', 'peer');
    assertError(await u.gina.post('/v1/conversations', { type: 'direct', peer: 'frank' }), 403, 'blocked', 'peer');
    assert.equal((await u.frank.del('/v1/users/frank/blocks/gina')).status, 204);
    assert.equal((await u.gina.post('/v1/conversations', { type: 'direct', peer: 'frank' })).status, 201);

    assert.deepEqual(sql(`SELECT COUNT(*) FROM conversations WHERE tenant_id = ${tenant.id}
                          AND (created_by IN ('sleepy','ghost') OR direct_key LIKE '%sleepy%')`), [['0']]);
});

test('group: create with members, password rules, bounds', async () => {
    const g = await u.alice.post('/v1/conversations', {
        type: 'group', name: 'Team', description: 'd', avatar_url: 'https://x/a.png', metadata: { k: 1 },
        members: ['bob', 'carol', 'bob', 'alice'],
    });
    assert.equal(g.status, 201, JSON.stringify(g.body));
    assert.equal(g.body.type, 'group');
    assert.equal(g.body.access, 'private', 'private by default');
    assert.equal(g.body.name, 'Team');
    assert.equal(g.body.description, 'd');
    assert.equal(g.body.avatar_url, 'https://x/a.png');
    assert.deepEqual(g.body.metadata, { k: 1 });
    assert.equal(g.body.member_count, 3, 'duplicates and the creator count once');
    assert.equal(g.body.my_role, 'owner');
    assert.equal('password' in g.body || 'password_hash' in g.body, false);
    assert.deepEqual(events(g.body.id).map((e) => [e.seq, e.type, e.subject]),
        [[1, 'conversation.created', 'alice'], [2, 'member.added', 'bob'], [3, 'member.added', 'carol']]);
    assert.deepEqual(memberRow(g.body.id, 'carol'), { role: 'participant', state: 'active', joinedSeq: 0, joinedEvent: 3, leftEvent: null });
    assert.equal(memberRow(g.body.id, 'alice').role, 'owner');

    const viaKey = await admin.post('/v1/conversations', { type: 'group', owner: 'dave', access: 'public' });
    assert.equal(viaKey.status, 201, JSON.stringify(viaKey.body));
    assert.equal(viaKey.body.created_by, 'dave');
    assert.equal(viaKey.body.my_role, 'owner');
    assert.equal(viaKey.body.member_count, 1);

    const p = await u.alice.post('/v1/conversations', { type: 'group', access: 'password', password: 'open sesame' });
    assert.equal(p.status, 201);
    const stored = sql(`SELECT password_hash FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${p.body.id}`)[0][0];
    assert.match(stored, /^[0-9a-f]{64}$/);
    assert.doesNotMatch(stored, /sesame/);
    const p2 = await u.alice.post('/v1/conversations', { type: 'group', access: 'password', password: 'open sesame' });
    assert.notEqual(sql(`SELECT password_hash FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${p2.body.id}`)[0][0],
        stored, 'salted: the same password hashes differently');

    const before = sql(`SELECT COUNT(*) FROM conversations WHERE tenant_id = ${tenant.id}`)[0][0];
    assertError(await u.alice.post('/v1/conversations', { type: 'group', access: 'password' }), 422, 'missing_field', 'password');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', access: 'password', password: 'short' }), 422, 'invalid_length', 'password');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', access: 'password', password: 'x'.repeat(129) }), 422, 'invalid_length', 'password');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', access: 'public', password: 'long enough' }), 422, 'invalid_value', 'password');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', access: 'secret' }), 422, 'invalid_value', 'access');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', peer: 'bob' }), 422, 'invalid_value', 'peer');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', name: 'n'.repeat(256) }), 422, 'invalid_length', 'name');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', metadata: 'x' }), 422, 'invalid_type', 'metadata');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', members: 'bob' }), 422, 'invalid_type', 'members');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', members: ['ok', 7] }), 422, 'invalid_type', 'members');
    assertError(await u.alice.post('/v1/conversations', { type: 'group', members: Array.from({ length: 9 }, (_, i) => `m${i}`) }),
        422, 'invalid_length', 'members');
    // the total is bounded as well: 8 members plus the creator is 9
    assertError(await u.alice.post('/v1/conversations', { type: 'group', members: ['bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivy'] }),
        409, 'too_many_members');
    // a member that does not exist refuses the whole create
    assertError(await u.alice.post('/v1/conversations', { type: 'group', members: ['bob', 'nobody'] }), 404, 'user_not_found', 'members');
    assert.equal(sql(`SELECT COUNT(*) FROM conversations WHERE tenant_id = ${tenant.id}`)[0][0], before, 'nothing was stored');
});

test('get: members, public groups for anyone, the API key; others are refused', async () => {
    const priv = await group('alice', { members: ['bob'] });
    const pub = await group('alice', { access: 'public', name: 'Pub' });
    const pw = await group('alice', { access: 'password', password: 'password1' });

    const m = await u.bob.get(`/v1/conversations/${priv.id}`);
    assert.equal(m.status, 200);
    assert.equal(m.body.id, priv.id);
    assert.equal(m.body.my_role, 'participant');
    assertError(await u.carol.get(`/v1/conversations/${priv.id}`), 403, 'not_member');
    assertError(await u.carol.get(`/v1/conversations/${pw.id}`), 403, 'not_member');
    const p = await u.carol.get(`/v1/conversations/${pub.id}`);
    assert.equal(p.status, 200);
    assert.equal(p.body.my_role, null);
    assert.equal(p.body.my_state, null);
    const k = await admin.get(`/v1/conversations/${priv.id}`);
    assert.equal(k.status, 200);
    assert.equal(k.body.my_role, null);
    assertError(await u.bob.get('/v1/conversations/12345'), 404, 'conversation_not_found');
    assertError(await u.bob.get('/v1/conversations/abc'), 400, 'invalid_parameter', 'cid');
    assertError(await u.bob.get('/v1/conversations/0'), 400, 'invalid_parameter', 'cid');
    assertError(await client(nginx.base).get(`/v1/conversations/${priv.id}`), 401, 'unauthenticated');
});

test('update: admin and up; access and password rules; an event', async () => {
    const g = await group('alice', { members: ['bob', 'carol', 'dave'] });
    assert.equal((await u.alice.patch(`/v1/conversations/${g.id}/members/carol`, { role: 'moderator' })).status, 200);
    assert.equal((await u.alice.patch(`/v1/conversations/${g.id}/members/dave`, { role: 'admin' })).status, 200);

    assertError(await u.bob.patch(`/v1/conversations/${g.id}`, { name: 'p' }), 403, 'forbidden');
    assertError(await u.carol.patch(`/v1/conversations/${g.id}`, { name: 'm' }), 403, 'forbidden');
    assertError(await u.erin.patch(`/v1/conversations/${g.id}`, { name: 'x' }), 403, 'forbidden');
    const seqBefore = events(g.id).length;
    const r = await u.dave.patch(`/v1/conversations/${g.id}`, { name: 'Renamed', metadata: { a: 1 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.name, 'Renamed');
    assert.deepEqual(r.body.metadata, { a: 1 });
    assert.equal(r.body.description, '', 'absent fields keep their value');
    assert.equal(r.body.my_role, 'admin');
    const ev = events(g.id);
    assert.equal(ev.length, seqBefore + 1);
    assert.deepEqual(ev.at(-1), { seq: seqBefore + 1, type: 'conversation.updated', actor: 'dave', subject: null,
        payload: { name: 'Renamed', metadata: { a: 1 }, password_changed: false } });

    assertError(await u.alice.patch(`/v1/conversations/${g.id}`, { access: 'password' }), 422, 'missing_field', 'password');
    assertError(await u.alice.patch(`/v1/conversations/${g.id}`, { password: 'long enough' }), 422, 'invalid_value', 'password');
    assertError(await u.alice.patch(`/v1/conversations/${g.id}`, { access: 'public', password: 'long enough' }), 422, 'invalid_value', 'password');
    assertError(await u.alice.patch(`/v1/conversations/${g.id}`, { name: 7 }), 422, 'invalid_type', 'name');
    assertError(await u.alice.patch(`/v1/conversations/${g.id}`, { owner: 'bob' }), 422, 'unknown_field', 'owner');
    assert.equal(events(g.id).length, seqBefore + 1, 'refusals changed nothing');

    const pw = await u.alice.patch(`/v1/conversations/${g.id}`, { access: 'password', password: 'letmein!!' });
    assert.equal(pw.status, 200);
    assert.equal(pw.body.access, 'password');
    assert.equal(events(g.id).at(-1).payload.password_changed, true);
    assert.equal('password' in events(g.id).at(-1).payload, false, 'the password is never in an event');
    const again = await u.alice.patch(`/v1/conversations/${g.id}`, { password: 'another one' });
    assert.equal(again.status, 200, 'a password group takes a new password');
    const pub = await u.alice.patch(`/v1/conversations/${g.id}`, { access: 'public', metadata: null });
    assert.equal(pub.body.access, 'public');
    assert.deepEqual(pub.body.metadata, {});
    assert.deepEqual(sql(`SELECT IFNULL(password_hash, 'none') FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${g.id}`), [['none']]);
    const same = await u.alice.patch(`/v1/conversations/${g.id}`, {});
    assert.equal(same.status, 200);
    const n = events(g.id).length;
    assert.equal((await u.alice.patch(`/v1/conversations/${g.id}`, {})).status, 200);
    assert.equal(events(g.id).length, n, 'an empty update records nothing');

    const k = await admin.patch(`/v1/conversations/${g.id}`, { description: 'by key' });
    assert.equal(k.status, 200);
    assert.equal(k.body.description, 'by key');

    const d = await u.alice.post('/v1/conversations', { type: 'direct', peer: 'hank' });
    assertError(await admin.patch(`/v1/conversations/${d.body.id}`, { access: 'public' }), 409, 'direct_conversation', 'access');
    assertError(await u.alice.patch(`/v1/conversations/${d.body.id}`, { name: 'dm' }), 403, 'forbidden');
});

test('delete: the owner or the API key; soft; a deleted direct pair may start anew', async () => {
    const g = await group('alice', { members: ['bob', 'carol'] });
    assert.equal((await u.alice.patch(`/v1/conversations/${g.id}/members/carol`, { role: 'admin' })).status, 200);
    assertError(await u.carol.del(`/v1/conversations/${g.id}`), 403, 'forbidden');
    assertError(await u.bob.del(`/v1/conversations/${g.id}`), 403, 'forbidden');
    const d = await u.alice.del(`/v1/conversations/${g.id}`);
    assert.equal(d.status, 204);
    assertError(await u.alice.get(`/v1/conversations/${g.id}`), 404, 'conversation_not_found');
    assertError(await u.alice.del(`/v1/conversations/${g.id}`), 404, 'conversation_not_found');
    assert.equal(events(g.id).at(-1).type, 'conversation.deleted');
    assert.equal(outboxTypes(g.id).at(-1), 'conversation.deleted');
    assert.equal(sql(`SELECT deleted_at IS NOT NULL FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${g.id}`)[0][0], '1');

    const g2 = await group('bob');
    assert.equal((await admin.del(`/v1/conversations/${g2.id}`)).status, 204);

    const dm = await u.ivy.post('/v1/conversations', { type: 'direct', peer: 'jack' });
    assert.equal(dm.status, 201);
    assertError(await u.ivy.del(`/v1/conversations/${dm.body.id}`), 403, 'forbidden');
    assert.equal((await admin.del(`/v1/conversations/${dm.body.id}`)).status, 204);
    const fresh = await u.jack.post('/v1/conversations', { type: 'direct', peer: 'ivy' });
    assert.equal(fresh.status, 201);
    assert.notEqual(fresh.body.id, dm.body.id);
});

test('public directory: only public groups, newest first, paginated, searchable', async () => {
    const t = createTenant();
    const key = client(nginx.base, { key: t.key });
    await user('p1', t, key);
    const p1 = client(nginx.base, { key: t.key, user: 'p1' });
    const made = [];
    for (const name of ['Cats', 'Dogs', 'cat lovers', '100% fun', 'Birds']) {
        made.push((await p1.post('/v1/conversations', { type: 'group', access: 'public', name })).body.id);
    }
    await p1.post('/v1/conversations', { type: 'group', access: 'private', name: 'Cats private' });
    await p1.post('/v1/conversations', { type: 'group', access: 'password', name: 'Cats pw', password: 'password!' });
    const gone = (await p1.post('/v1/conversations', { type: 'group', access: 'public', name: 'Cats gone' })).body.id;
    assert.equal((await p1.del(`/v1/conversations/${gone}`)).status, 204);

    const all = await key.get('/v1/conversations/public');
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(all.body.conversations.map((c) => c.id), [...made].reverse());
    assert.equal(all.body.next_cursor, null);
    assert.ok(all.body.conversations.every((c) => c.access === 'public' && c.type === 'group'));

    const page1 = await p1.get('/v1/conversations/public?limit=2');
    assert.deepEqual(page1.body.conversations.map((c) => c.name), ['Birds', '100% fun']);
    assert.equal(page1.body.conversations[0].my_role, 'owner');
    const page2 = await p1.get(`/v1/conversations/public?limit=2&cursor=${page1.body.next_cursor}`);
    assert.deepEqual(page2.body.conversations.map((c) => c.name), ['cat lovers', 'Dogs']);
    const page3 = await p1.get(`/v1/conversations/public?limit=2&cursor=${page2.body.next_cursor}`);
    assert.deepEqual(page3.body.conversations.map((c) => c.name), ['Cats']);
    assert.equal(page3.body.next_cursor, null);

    const cats = await p1.get('/v1/conversations/public?q=CAT');
    assert.deepEqual(cats.body.conversations.map((c) => c.name), ['cat lovers', 'Cats']);
    const pct = await p1.get('/v1/conversations/public?q=%25');
    assert.deepEqual(pct.body.conversations.map((c) => c.name), ['100% fun'], '% is a literal');
    assertError(await p1.get('/v1/conversations/public?cursor=xyz'), 400, 'invalid_parameter', 'cursor');
    assertError(await p1.get('/v1/conversations/public?limit=0'), 400, 'invalid_parameter', 'limit');
    assertError(await p1.get(`/v1/conversations/public?q=${'q'.repeat(129)}`), 400, 'invalid_parameter', 'q');

    // another tenant's directory holds none of these
    const mine = await admin.get('/v1/conversations/public?q=cat');
    assert.equal(mine.body.conversations.filter((c) => made.includes(c.id)).length, 0);
});

test('join: public for anyone not banned, password with the right password, private never', async () => {
    const pub = await group('alice', { access: 'public' });
    const j = await u.bob.post(`/v1/conversations/${pub.id}/join`);
    assert.equal(j.status, 200, JSON.stringify(j.body));
    assert.equal(j.body.my_role, 'participant');
    assert.equal(j.body.member_count, 2);
    const ev = events(pub.id).at(-1);
    assert.deepEqual([ev.type, ev.subject, ev.actor], ['member.joined', 'bob', 'bob']);
    assert.equal(memberRow(pub.id, 'bob').joinedEvent, ev.seq);
    const again = await u.bob.post(`/v1/conversations/${pub.id}/join`, {});
    assert.equal(again.status, 200);
    assert.equal(events(pub.id).at(-1).seq, ev.seq, 'joining twice records nothing');
    assert.equal((await u.bob.get(`/v1/conversations/${pub.id}`)).body.member_count, 2);

    const priv = await group('alice');
    assertError(await u.bob.post(`/v1/conversations/${priv.id}/join`), 403, 'private_conversation');

    const pw = await group('alice', { access: 'password', password: 'correct horse' });
    assertError(await u.bob.post(`/v1/conversations/${pw.id}/join`), 403, 'password_required', 'password');
    assertError(await u.bob.post(`/v1/conversations/${pw.id}/join`, { password: 'wrong horse' }), 403, 'wrong_password', 'password');
    assertError(await u.bob.post(`/v1/conversations/${pw.id}/join`, { password: 7 }), 422, 'invalid_type', 'password');
    assert.equal(memberRow(pw.id, 'bob'), null);
    const ok = await u.bob.post(`/v1/conversations/${pw.id}/join`, { password: 'correct horse' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.my_role, 'participant');
    // a changed password takes over
    await u.alice.patch(`/v1/conversations/${pw.id}`, { password: 'battery staple' });
    assertError(await u.carol.post(`/v1/conversations/${pw.id}/join`, { password: 'correct horse' }), 403, 'wrong_password');
    assert.equal((await u.carol.post(`/v1/conversations/${pw.id}/join`, { password: 'battery staple' })).status, 200);

    // banned: no way back until unbanned; kicked: may come back
    assert.equal((await u.alice.post(`/v1/conversations/${pub.id}/members/bob/ban`)).status, 204);
    assertError(await u.bob.post(`/v1/conversations/${pub.id}/join`), 403, 'banned');
    assert.equal((await u.alice.del(`/v1/conversations/${pub.id}/members/bob/ban`)).status, 204);
    assert.equal((await u.bob.post(`/v1/conversations/${pub.id}/join`)).status, 200);
    assert.equal((await u.alice.del(`/v1/conversations/${pub.id}/members/bob`)).status, 204);
    assert.equal((await u.bob.post(`/v1/conversations/${pub.id}/join`)).status, 200);

    const dm = await u.alice.post('/v1/conversations', { type: 'direct', peer: 'carol' });
    assertError(await u.dave.post(`/v1/conversations/${dm.body.id}/join`), 409, 'direct_conversation');
    assertError(await admin.post(`/v1/conversations/${pub.id}/join`), 403, 'user_required');
    assertError(await admin.as({ user: 'ghost' }).post(`/v1/conversations/${pub.id}/join`), 404, 'user_not_found');
    assertError(await u.bob.post(`/v1/conversations/${pub.id}/join`, { pass: 'x' }), 422, 'unknown_field', 'pass');
});

test('join records where the member came in: joined_seq and joined_event', async () => {
    const pub = await group('alice', { access: 'public' });
    // messages are another endpoint's; the sequence they advance is what counts here
    sql(`UPDATE conversations SET last_seq = 41 WHERE tenant_id = ${tenant.id} AND id = ${pub.id}`);
    assert.equal((await u.erin.post(`/v1/conversations/${pub.id}/join`)).status, 200);
    const row = memberRow(pub.id, 'erin');
    assert.equal(row.joinedSeq, 41);
    assert.equal(row.joinedEvent, events(pub.id).at(-1).seq);
    assert.deepEqual(sql(`SELECT read_seq, delivered_seq FROM members WHERE tenant_id = ${tenant.id}
                          AND conversation_id = ${pub.id} AND user_id = 'erin'`), [['41', '41']]);
});

test('leave: members leave; the owner transfers first unless last', async () => {
    const g = await group('alice', { members: ['bob', 'carol'] });
    const l = await u.bob.post(`/v1/conversations/${g.id}/leave`);
    assert.equal(l.status, 204);
    const ev = events(g.id).at(-1);
    assert.deepEqual([ev.type, ev.subject], ['member.left', 'bob']);
    assert.deepEqual(memberRow(g.id, 'bob'), { role: 'participant', state: 'left', joinedSeq: 0, joinedEvent: 2, leftEvent: ev.seq });
    assert.equal((await u.alice.get(`/v1/conversations/${g.id}`)).body.member_count, 2);
    assertError(await u.bob.post(`/v1/conversations/${g.id}/leave`), 409, 'not_member');
    assertError(await u.bob.get(`/v1/conversations/${g.id}`), 403, 'not_member');
    assertError(await u.alice.post(`/v1/conversations/${g.id}/leave`), 409, 'owner_must_transfer');
    assert.equal((await u.carol.post(`/v1/conversations/${g.id}/leave`)).status, 204);
    assert.equal((await u.alice.post(`/v1/conversations/${g.id}/leave`)).status, 204, 'the last member may leave');
    assert.equal(sql(`SELECT member_count FROM conversations WHERE tenant_id = ${tenant.id} AND id = ${g.id}`)[0][0], '0');
    const dm = await u.dave.post('/v1/conversations', { type: 'direct', peer: 'erin' });
    assertError(await u.dave.post(`/v1/conversations/${dm.body.id}/leave`), 409, 'direct_conversation');
});

test('transfer: owner only, to an active member; the old owner becomes admin', async () => {
    const g = await group('alice', { members: ['bob', 'carol'] });
    assert.equal((await u.alice.patch(`/v1/conversations/${g.id}/members/carol`, { role: 'admin' })).status, 200);
    assertError(await u.carol.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'bob' }), 403, 'forbidden');
    assertError(await u.alice.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'erin' }), 404, 'member_not_found', 'user_id');
    assertError(await u.alice.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'alice' }), 422, 'invalid_value', 'user_id');
    assertError(await u.alice.post(`/v1/conversations/${g.id}/transfer`, {}), 422, 'missing_field', 'user_id');
    const t = await u.alice.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'bob' });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.equal(t.body.my_role, 'admin');
    assert.equal((await u.bob.get(`/v1/conversations/${g.id}`)).body.my_role, 'owner');
    const ev = events(g.id).at(-1);
    assert.deepEqual([ev.type, ev.subject, ev.payload], ['conversation.owner_changed', 'bob',
        { previous_owner: 'alice', previous_owner_role: 'admin' }]);
    assertError(await u.alice.del(`/v1/conversations/${g.id}`), 403, 'forbidden');
    // the new owner holds the owner's powers, the old one is an admin now
    assert.equal((await u.alice.post(`/v1/conversations/${g.id}/leave`)).status, 204);
    assertError(await u.bob.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'alice' }), 404, 'member_not_found');
    // the API key moves ownership too
    const k = await admin.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'carol' });
    assert.equal(k.status, 200);
    assert.equal(memberRow(g.id, 'carol').role, 'owner');
    assert.equal(memberRow(g.id, 'bob').role, 'admin');
    assertError(await admin.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'carol' }), 409, 'already_owner');
});

test('tenant isolation: another tenant sees and touches nothing', async () => {
    const g = await group('alice', { access: 'public', members: ['bob'] });
    const otherUser = await user('alice', other, otherAdmin);   // same id, other tenant
    for (const r of [
        await otherAdmin.get(`/v1/conversations/${g.id}`),
        await otherUser.get(`/v1/conversations/${g.id}`),
        await otherAdmin.patch(`/v1/conversations/${g.id}`, { name: 'x' }),
        await otherAdmin.del(`/v1/conversations/${g.id}`),
        await otherUser.post(`/v1/conversations/${g.id}/join`),
        await otherUser.post(`/v1/conversations/${g.id}/leave`),
        await otherAdmin.post(`/v1/conversations/${g.id}/transfer`, { user_id: 'bob' }),
        await otherAdmin.post(`/v1/conversations/${g.id}/members`, { user_ids: ['bob'] }),
        await otherAdmin.get(`/v1/conversations/${g.id}/members`),
    ]) {
        assertError(r, 404, 'conversation_not_found');
    }
    // this tenant's users do not exist over there
    assertError(await otherUser.post('/v1/conversations', { type: 'direct', peer: 'bob' }), 404, 'user_not_found', 'peer');
    assertError(await otherUser.post('/v1/conversations', { type: 'group', members: ['bob'] }), 404, 'user_not_found', 'members');
    const list = await otherUser.get('/v1/conversations/public');
    assert.deepEqual(list.body.conversations, []);
    const same = await u.alice.get(`/v1/conversations/${g.id}`);
    assert.equal(same.body.name, 'g');
    assert.equal(same.body.member_count, 2);
});
