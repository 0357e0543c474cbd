// Users and user tokens over the REST API, against the shared test stack.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApi, createTenant, client, sleep } from './lib/harness.mjs';

let nginx, tenant, admin, other, otherAdmin;

before(async () => {
    nginx = await startApi({ name: 'api-users' });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
});

after(async () => {
    if (nginx) await nginx.finish();
});

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field);
    assert.equal(r.body.error.retryable, status === 503 || status === 429);
}

test('create, get, update and list a user', async () => {
    const c = await admin.post('/v1/users', { user_id: 'alice', name: 'Alice', metadata: { team: 'ops' } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.user_id, 'alice');
    assert.equal(c.body.name, 'Alice');
    assert.deepEqual(c.body.metadata, { team: 'ops' });
    assert.equal(c.body.role, 'user');
    assert.equal(c.body.status, 'active');
    assert.match(c.body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    const g = await admin.get('/v1/users/alice');
    assert.equal(g.status, 200);
    assert.deepEqual(g.body, c.body);

    const u = await admin.patch('/v1/users/alice', { name: 'Alice A.', avatar_url: 'https://x/a.png' });
    assert.equal(u.status, 200, JSON.stringify(u.body));
    assert.equal(u.body.name, 'Alice A.');
    assert.equal(u.body.avatar_url, 'https://x/a.png');
    assert.deepEqual(u.body.metadata, { team: 'ops' }, 'absent fields keep their value');

    for (const id of ['bob', 'carol', 'dave', 'al/ex'.replace('/', '_')]) {
        assert.equal((await admin.post('/v1/users', { user_id: id, name: id.toUpperCase() })).status, 201);
    }
    const page1 = await admin.get('/v1/users?limit=2');
    assert.equal(page1.status, 200);
    assert.deepEqual(page1.body.users.map((x) => x.user_id), ['al_ex', 'alice']);
    assert.equal(typeof page1.body.next_cursor, 'string');
    const page2 = await admin.get(`/v1/users?limit=2&cursor=${page1.body.next_cursor}`);
    assert.deepEqual(page2.body.users.map((x) => x.user_id), ['bob', 'carol']);
    const page3 = await admin.get(`/v1/users?limit=2&cursor=${page2.body.next_cursor}`);
    assert.deepEqual(page3.body.users.map((x) => x.user_id), ['dave']);
    assert.equal(page3.body.next_cursor, null);

    const search = await admin.get('/v1/users?q=al');
    assert.deepEqual(search.body.users.map((x) => x.user_id), ['al_ex', 'alice']);
    const pct = await admin.get('/v1/users?q=%25');
    assert.deepEqual(pct.body.users, [], '% is a literal in a search');
});

test('user ids with UTF-8 and escapes round-trip through the path', async () => {
    const id = 'zoë+1@example.com';
    assert.equal((await admin.post('/v1/users', { user_id: id })).status, 201);
    const g = await admin.get(`/v1/users/${encodeURIComponent(id)}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.user_id, id);
});

test('duplicate user is a 409 and changes nothing', async () => {
    await admin.post('/v1/users', { user_id: 'dup', name: 'first' });
    const r = await admin.post('/v1/users', { user_id: 'dup', name: 'second' });
    assertError(r, 409, 'user_exists', 'user_id');
    assert.equal((await admin.get('/v1/users/dup')).body.name, 'first');
});

test('bad input: one error shape, the right status, nothing written', async () => {
    assertError(await admin.post('/v1/users', '{"user_id": "x",'), 400, 'invalid_json');
    assertError(await admin.post('/v1/users', '[1]'), 400, 'invalid_json');
    assertError(await admin.post('/v1/users', '{"user_id":"a","user_id":"b"}'), 400, 'invalid_json');
    assertError(await admin.post('/v1/users', { user_id: 'x', colour: 'red' }), 422, 'unknown_field', 'colour');
    assertError(await admin.post('/v1/users', { name: 'no id' }), 422, 'missing_field', 'user_id');
    assertError(await admin.post('/v1/users', { user_id: 7 }), 422, 'invalid_type', 'user_id');
    assertError(await admin.post('/v1/users', { user_id: 'x'.repeat(129) }), 422, 'invalid_length', 'user_id');
    assertError(await admin.post('/v1/users', { user_id: 'a/b' }), 422, 'invalid_value', 'user_id');
    assertError(await admin.post('/v1/users', { user_id: 'a\u0000b' }), 400, 'invalid_json');
    assertError(await admin.post('/v1/users', { user_id: 'x', role: 'god' }), 422, 'invalid_value', 'role');
    assertError(await admin.post('/v1/users', { user_id: 'x', metadata: [1] }), 422, 'invalid_type', 'metadata');
    assertError(await admin.post('/v1/users', { user_id: 'x', metadata: { a: 'x'.repeat(9000) } }), 422, 'too_large', 'metadata');
    let deep = {};
    for (let i = 0; i < 20; i++) deep = { d: deep };
    assertError(await admin.post('/v1/users', { user_id: 'x', metadata: deep }), 422, 'too_deep');
    // invalid UTF-8 in a JSON string
    assertError(await admin.post('/v1/users', Buffer.from([0x7b, 0x22, 0x75, 0x73, 0x65, 0x72, 0x5f, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])), 400, 'invalid_json');
    assertError(await admin.post('/v1/users', { user_id: 'x' }, { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    assertError(await admin.post('/v1/users', JSON.stringify({ user_id: 'x', name: 'y'.repeat(300 * 1024) })), 413, 'body_too_large');
    assertError(await admin.get('/v1/users?limit=0'), 400, 'invalid_parameter', 'limit');
    assertError(await admin.get('/v1/users?cursor=***'), 400, 'invalid_parameter', 'cursor');
    assertError(await admin.get('/v1/users/%ff'), 400, 'invalid_parameter', 'uid');
    assertError(await admin.get('/v1/nothing'), 404, 'not_found');
    assertError(await admin.put('/v1/users/alice', {}), 405, 'method_not_allowed');
    assert.equal((await admin.get('/v1/users/x')).status, 404, 'no failed create stored anything');
});

test('authentication: missing, malformed and foreign credentials', async () => {
    assertError(await client(nginx.base).get('/v1/users'), 401, 'unauthenticated');
    assertError(await client(nginx.base, { key: 'pk_nope' }).get('/v1/users'), 401, 'invalid_api_key');
    assertError(await client(nginx.base, { key: `pk_${'A'.repeat(43)}` }).get('/v1/users'), 401, 'invalid_api_key');
    assertError(await client(nginx.base, { token: 'a.b.c' }).get('/v1/users'), 401, 'token_malformed');
});

test('tenant isolation: another tenant sees none of these users', async () => {
    await admin.post('/v1/users', { user_id: 'secret-user' });
    assertError(await otherAdmin.get('/v1/users/secret-user'), 404, 'user_not_found');
    assert.deepEqual((await otherAdmin.get('/v1/users')).body.users, []);
    assertError(await otherAdmin.patch('/v1/users/secret-user', { name: 'x' }), 404, 'user_not_found');
    assertError(await otherAdmin.del('/v1/users/secret-user'), 404, 'user_not_found');
    assertError(await otherAdmin.post('/v1/users/secret-user/tokens', {}), 404, 'user_not_found');
    // the same id may exist in both tenants independently
    assert.equal((await otherAdmin.post('/v1/users', { user_id: 'secret-user', name: 'other' })).status, 201);
    assert.equal((await admin.get('/v1/users/secret-user')).body.name, '');
});

test('user tokens: issue, use, scope, revoke one, revoke all', async () => {
    await admin.post('/v1/users', { user_id: 'tok' });
    await admin.post('/v1/users', { user_id: 'tok2' });
    const t = await admin.post('/v1/users/tok/tokens', { expires_in: 600 });
    assert.equal(t.status, 201, JSON.stringify(t.body));
    assert.equal(t.body.user_id, 'tok');
    assert.ok(t.body.expires_at > Date.now() / 1000 + 590);
    const user = client(nginx.base, { token: t.body.token });

    const me = await user.get('/v1/users/tok');
    assert.equal(me.status, 200);
    const who = await user.get('/v1/me');
    assert.deepEqual(who.body, { tenant_id: tenant.id, user_id: 'tok', credential: 'user_token', expires_at: t.body.expires_at });
    assert.deepEqual((await admin.get('/v1/me')).body, { tenant_id: tenant.id, credential: 'api_key' });
    assert.equal((await user.patch('/v1/users/tok', { name: 'Me' })).body.name, 'Me');
    assertError(await user.patch('/v1/users/tok2', { name: 'not me' }), 403, 'forbidden');
    assertError(await user.patch('/v1/users/tok', { role: 'admin' }), 403, 'forbidden', 'role');
    assertError(await user.post('/v1/users', { user_id: 'x' }), 403, 'admin_required');
    assertError(await user.post('/v1/users/tok/tokens', {}), 403, 'admin_required');

    // a token of this tenant means nothing to the other tenant's data
    await otherAdmin.post('/v1/users', { user_id: 'only-other' });
    assertError(await user.get('/v1/users/only-other'), 404, 'user_not_found');

    // tampered tokens fail
    const [h, p, s] = t.body.token.split('.');
    const forged = JSON.parse(Buffer.from(p, 'base64url'));
    forged.sub = 'tok2';
    const bad = `${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`;
    assertError(await client(nginx.base, { token: bad }).get('/v1/users/tok'), 401, 'token_signature_invalid');
    const otherTid = JSON.parse(Buffer.from(h, 'base64url'));
    otherTid.kid = `parley:${other.id}`;
    const moved = `${Buffer.from(JSON.stringify(otherTid)).toString('base64url')}.${p}.${s}`;
    assertError(await client(nginx.base, { token: moved }).get('/v1/users/tok'), 401, 'token_signature_invalid');

    // revoke one token by jti
    const t2 = await admin.post('/v1/users/tok/tokens', {});
    assert.equal((await admin.post('/v1/users/tok/tokens/revoke', { jti: t2.body.jti })).status, 204);
    await sleep(1100); // parley_api_cache_ttl 1s in this test
    assertError(await client(nginx.base, { token: t2.body.token }).get('/v1/users/tok'), 401, 'token_revoked');
    assert.equal((await user.get('/v1/users/tok')).status, 200, 'the other token still works');

    // revoke all
    assert.equal((await admin.post('/v1/users/tok/tokens/revoke', {})).status, 204);
    await sleep(1100);
    assertError(await user.get('/v1/users/tok'), 401, 'token_revoked');
    const t3 = await admin.post('/v1/users/tok/tokens', {});
    assert.equal((await client(nginx.base, { token: t3.body.token }).get('/v1/users/tok')).status, 200,
        'a token issued after revocation works');
    assertError(await admin.post('/v1/users/tok/tokens', { expires_in: 10 }), 422, 'out_of_range', 'expires_in');
    assertError(await admin.post('/v1/users/tok/tokens', { expires_in: 10 ** 9 }), 422, 'out_of_range', 'expires_in');
});

test('API key acting for a user with X-Parley-User', async () => {
    await admin.post('/v1/users', { user_id: 'acted' });
    const acting = admin.as({ user: 'acted' });
    assert.equal((await acting.patch('/v1/users/acted', { name: 'via key' })).body.name, 'via key');
    assertError(await admin.as({ user: 'a/b' }).get('/v1/users/acted'), 400, 'invalid_parameter', 'X-Parley-User');
});

test('deactivate, reactivate, erase', async () => {
    await admin.post('/v1/users', { user_id: 'gone', name: 'Gone Person', metadata: { email: 'g@x' } });
    const t = await admin.post('/v1/users/gone/tokens', {});
    const user = client(nginx.base, { token: t.body.token });
    assert.equal((await user.get('/v1/users/gone')).status, 200);

    const d = await admin.post('/v1/users/gone/deactivate');
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal(d.body.status, 'deactivated');
    assertError(await admin.post('/v1/users/gone/tokens', {}), 403, 'user_inactive');
    await sleep(1100);
    assert.notEqual((await user.get('/v1/users/gone')).status, 200, 'tokens end with deactivation');

    assert.equal((await admin.post('/v1/users/gone/reactivate')).body.status, 'active');

    assert.equal((await admin.del('/v1/users/gone')).status, 204);
    assertError(await admin.get('/v1/users/gone'), 404, 'user_not_found');
    assertError(await admin.del('/v1/users/gone'), 404, 'user_not_found');
    assertError(await admin.post('/v1/users', { user_id: 'gone' }), 409, 'user_exists');
    assertError(await admin.del('/v1/users/x?erase_messages=maybe'), 400, 'invalid_parameter', 'erase_messages');
});

test('erasure leaves conversations like a member and keeps history readable', async () => {
    for (const id of ['era-owner', 'era-gone', 'era-gone2']) await admin.post('/v1/users', { user_id: id });
    const owner = admin.as({ user: 'era-owner' });
    const g = await owner.post('/v1/conversations', { type: 'group', name: 'era', members: ['era-gone', 'era-gone2'] });
    assert.equal(g.status, 201, JSON.stringify(g.body));
    assert.equal(g.body.member_count, 3);
    const cid = g.body.id;
    const m1 = await admin.as({ user: 'era-gone' }).post(`/v1/conversations/${cid}/messages`, { client_id: 'e1', text: 'keep me' });
    const m2 = await admin.as({ user: 'era-gone2' }).post(`/v1/conversations/${cid}/messages`, { client_id: 'e2', text: 'erase me' });
    assert.equal(m1.status, 201, JSON.stringify(m1.body));

    assert.equal((await admin.del('/v1/users/era-gone')).status, 204);
    assert.equal((await admin.del('/v1/users/era-gone2?erase_messages=true')).status, 204);

    const conv = await owner.get(`/v1/conversations/${cid}`);
    assert.equal(conv.body.member_count, 1, 'both erased users left');
    const members = await owner.get(`/v1/conversations/${cid}/members`);
    assert.deepEqual(members.body.members.map((m) => m.user_id), ['era-owner']);
    const kept = await owner.get(`/v1/conversations/${cid}/messages/${m1.body.seq}`);
    assert.equal(kept.body.text, 'keep me', 'other members still read the history');
    assert.equal(kept.body.sender_id, 'era-gone');
    const erased = await owner.get(`/v1/conversations/${cid}/messages/${m2.body.seq}`);
    assert.equal(erased.body.text, null);
    assert.notEqual(erased.body.deleted_at, null);
});
