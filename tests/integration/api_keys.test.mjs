// A tenant's admin API keys over the REST API (GET/POST /v1/apikeys,
// DELETE /v1/apikeys/{prefix}): rotation, revocation, the last-key rule,
// against the shared test stack, with two workers so that revocation is seen
// through the other worker's cache too.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApi, createTenant, client, sleep } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;

before(async () => {
    nginx = await startApi({ name: 'api-keys', workers: 2 });
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
    if (field !== undefined) assert.equal(r.body.error.field, field, JSON.stringify(r.body));
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// every worker answers `status` for this key, several requests in a row
async function keyAnswers(key, status, n = 8) {
    const c = client(nginx.base, { key });
    for (let i = 0; i < n; i++) {
        const r = await c.get('/v1/users');
        assert.equal(r.status, status, JSON.stringify(r.body));
    }
}

test('list shows the first key without any secret', async () => {
    const r = await admin.get('/v1/apikeys');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.api_keys.length, 1);
    const k = r.body.api_keys[0];
    assert.deepEqual(Object.keys(k).sort(), ['created_at', 'id', 'label', 'prefix', 'revoked_at']);
    assert.equal(k.prefix, tenant.key.slice(0, 11));
    assert.equal(k.label, 'admin');
    assert.match(k.id, /^\d+$/);
    assert.match(k.created_at, ISO);
    assert.equal(k.revoked_at, null);
    assert.equal(r.body.next_cursor, null);
    assert.equal(JSON.stringify(r.body).includes(tenant.key), false);
});

test('rotation: issue a second key, both work, revoke the first, the last is kept', async () => {
    const t = createTenant();
    const a = client(nginx.base, { key: t.key });
    const c = await a.post('/v1/apikeys', { label: 'rotated 2026' });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.match(c.body.api_key, /^pk_[A-Za-z0-9_-]{43}$/);
    assert.equal(c.body.prefix, c.body.api_key.slice(0, 11));
    assert.equal(c.body.label, 'rotated 2026');
    assert.equal(c.body.revoked_at, null);
    assert.match(c.body.created_at, ISO);
    const second = c.body.api_key;

    await keyAnswers(t.key, 200);
    await keyAnswers(second, 200);

    const list = (await a.get('/v1/apikeys')).body.api_keys;
    assert.deepEqual(list.map((k) => k.prefix), [t.key.slice(0, 11), c.body.prefix]);
    assert.equal(JSON.stringify(list).includes(second), false, 'the key is shown only once');

    // revoke the first with the second: at once on the worker that did it,
    // within parley_api_cache_ttl (1s here) on every worker
    const b = client(nginx.base, { key: second });
    assert.equal((await b.del(`/v1/apikeys/${t.key.slice(0, 11)}`)).status, 204);
    await sleep(1100);
    for (let i = 0; i < 8; i++) {
        assertError(await a.get('/v1/users'), 401, 'invalid_api_key');
    }
    await keyAnswers(second, 200);

    const after = (await b.get('/v1/apikeys')).body.api_keys;
    assert.match(after[0].revoked_at, ISO);
    assert.equal(after[1].revoked_at, null);

    // revoking a revoked key changes nothing; the last active key stays
    assert.equal((await b.del(`/v1/apikeys/${t.key.slice(0, 11)}`)).status, 204);
    assertError(await b.del(`/v1/apikeys/${c.body.prefix}`), 409, 'last_key', 'prefix');
    await keyAnswers(second, 200);
    assert.equal((await b.get('/v1/apikeys')).body.api_keys[1].revoked_at, null);

    // a key can revoke itself when another one is active
    const third = (await b.post('/v1/apikeys', {})).body;
    assert.equal(third.label, '');
    assert.equal((await b.del(`/v1/apikeys/${c.body.prefix}`)).status, 204);
    await sleep(1100);
    await keyAnswers(second, 401);
    await keyAnswers(third.api_key, 200);
});

test('revocation takes effect at once on the worker that revoked', async () => {
    // one worker with a long cache: only dropping the entry can stop the key
    const one = await startApi({ name: 'api-keys-1w', cacheTtl: '60s' });
    try {
        const t = createTenant();
        const a = client(one.base, { key: t.key });
        const k2 = (await a.post('/v1/apikeys', { label: 'k2' })).body;
        const b = client(one.base, { key: k2.api_key });
        assert.equal((await b.get('/v1/users')).status, 200, 'k2 is cached now');
        assert.equal((await a.del(`/v1/apikeys/${k2.prefix}`)).status, 204);
        assertError(await b.get('/v1/users'), 401, 'invalid_api_key');
        assert.equal((await a.get('/v1/users')).status, 200);
    } finally {
        await one.finish();
    }
});

test('bad input: one error shape, nothing written', async () => {
    const t = createTenant();
    const a = client(nginx.base, { key: t.key });
    assertError(await a.post('/v1/apikeys', { label: 'x'.repeat(129) }), 422, 'invalid_length', 'label');
    assertError(await a.post('/v1/apikeys', { label: 7 }), 422, 'invalid_type', 'label');
    assertError(await a.post('/v1/apikeys', { label: 'tab\there' }), 422, 'invalid_value', 'label');
    assertError(await a.post('/v1/apikeys', { label: ' padded' }), 422, 'invalid_value', 'label');
    assertError(await a.post('/v1/apikeys', { label: 'a', scope: 'all' }), 422, 'unknown_field', 'scope');
    assertError(await a.post('/v1/apikeys', '{"label":'), 400, 'invalid_json');
    assertError(await a.del('/v1/apikeys/pk_short'), 400, 'invalid_parameter', 'prefix');
    assertError(await a.del('/v1/apikeys/xx_AAAAAAAA'), 400, 'invalid_parameter', 'prefix');
    assertError(await a.del('/v1/apikeys/pk_AAAAAAAA'), 404, 'key_not_found', 'prefix');
    assertError(await a.get('/v1/apikeys?limit=0'), 400, 'invalid_parameter', 'limit');
    assertError(await a.get('/v1/apikeys?cursor=abc'), 400, 'invalid_parameter', 'cursor');
    assertError(await a.put('/v1/apikeys', {}), 405, 'method_not_allowed');
    assert.equal((await a.get('/v1/apikeys')).body.api_keys.length, 1, 'no key was added');
});

test('pages, and at most 20 active keys', async () => {
    const t = createTenant();
    const a = client(nginx.base, { key: t.key });
    for (let i = 1; i < 20; i++) {
        assert.equal((await a.post('/v1/apikeys', { label: `k${i}` })).status, 201);
    }
    assertError(await a.post('/v1/apikeys', { label: 'one too many' }), 409, 'too_many_keys');

    const seen = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
        const r = await a.get(`/v1/apikeys?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(r.status, 200);
        assert.ok(r.body.api_keys.length <= 7);
        seen.push(...r.body.api_keys.map((k) => k.label));
        cursor = r.body.next_cursor;
        if (!cursor) break;
    }
    assert.deepEqual(seen, ['admin', ...Array.from({ length: 19 }, (_, i) => `k${i + 1}`)]);

    // revoking one makes room again
    const k1 = (await a.get('/v1/apikeys?limit=2')).body.api_keys[1];
    assert.equal((await a.del(`/v1/apikeys/${k1.prefix}`)).status, 204);
    assert.equal((await a.post('/v1/apikeys', { label: 'room' })).status, 201);
});

test('permissions: only the tenant API key manages keys', async () => {
    await admin.post('/v1/users', { user_id: 'keyuser' });
    const tok = (await admin.post('/v1/users/keyuser/tokens', {})).body.token;
    const user = client(nginx.base, { token: tok });
    assertError(await user.get('/v1/apikeys'), 403, 'admin_required');
    assertError(await user.post('/v1/apikeys', {}), 403, 'admin_required');
    assertError(await user.del(`/v1/apikeys/${tenant.key.slice(0, 11)}`), 403, 'admin_required');
    assertError(await client(nginx.base).get('/v1/apikeys'), 401, 'unauthenticated');
    assertError(await client(nginx.base, { key: `pk_${'A'.repeat(43)}` }).get('/v1/apikeys'), 401, 'invalid_api_key');
    assertError(await client(nginx.base, { key: `pk_${'A'.repeat(43)}` }).post('/v1/apikeys', {}), 401, 'invalid_api_key');
});

test('tenant isolation: another tenant sees and revokes none of these keys', async () => {
    const mine = (await admin.post('/v1/apikeys', { label: 'mine' })).body;
    const theirs = (await otherAdmin.get('/v1/apikeys')).body.api_keys;
    assert.deepEqual(theirs.map((k) => k.prefix), [other.key.slice(0, 11)]);
    assertError(await otherAdmin.del(`/v1/apikeys/${mine.prefix}`), 404, 'key_not_found');
    assertError(await otherAdmin.del(`/v1/apikeys/${tenant.key.slice(0, 11)}`), 404, 'key_not_found');
    await keyAnswers(mine.api_key, 200);
    // the new key is this tenant's: it sees this tenant's users only
    await otherAdmin.post('/v1/users', { user_id: 'other-only' });
    assertError(await client(nginx.base, { key: mine.api_key }).get('/v1/users/other-only'), 404, 'user_not_found');
});

test('two revocations at once cannot leave a tenant without a key', async () => {
    for (let round = 0; round < 3; round++) {
        const t = createTenant();
        const a = client(nginx.base, { key: t.key });
        const k2 = (await a.post('/v1/apikeys', { label: 'k2' })).body;
        const [r1, r2] = await Promise.all([
            a.del(`/v1/apikeys/${t.key.slice(0, 11)}`),
            a.del(`/v1/apikeys/${k2.prefix}`),
        ]);
        // one revocation wins; the other is refused as the last key, or, when
        // it authenticates after the winner revoked its credential, as an
        // invalid key -- either way exactly one key survives
        const statuses = [r1.status, r2.status].sort();
        assert.ok(JSON.stringify(statuses) === '[204,409]' || JSON.stringify(statuses) === '[204,401]',
            JSON.stringify([r1.body, r2.body]));
        const loser = r1.status === 204 ? r2 : r1;
        assert.equal(loser.body.error.code, loser.status === 409 ? 'last_key' : 'invalid_api_key');
        const survivor = r1.status === 204 ? k2.api_key : t.key;
        const keys = (await client(nginx.base, { key: survivor }).get('/v1/apikeys')).body.api_keys;
        assert.deepEqual(keys.filter((k) => k.revoked_at === null).map((k) => k.prefix), [survivor.slice(0, 11)]);
    }
});
