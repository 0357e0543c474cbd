// User blocks over the REST API: block, unblock, list, who may, the outbox
// rows they write, what they refuse (direct conversations), and tenant
// isolation.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const u = {};

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    assert.equal(r.body.error.retryable, status === 503 || status === 429);
}

function sql(query) {
    const env = stackEnv();
    const r = spawnSync('mariadb', ['--no-defaults', '-h', '127.0.0.1', '-P', env.PARLEY_DB_PORT,
        '-u', env.PARLEY_DB_USER, `-p${env.PARLEY_DB_PASSWORD}`, env.PARLEY_DB_NAME,
        '-N', '-B', '-r', '-e', query], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
}

// the envelopes of user-level block events of this tenant, oldest first
function blockEvents() {
    return sql(`SELECT topic, msg_key, payload FROM outbox WHERE tenant_id = ${tenant.id}
                AND JSON_VALUE(payload, '$.type') IN ('user.blocked', 'user.unblocked') ORDER BY id`)
        .map(([topic, key, payload]) => ({ topic, key, ...JSON.parse(payload) }));
}

async function user(id, adm = admin) {
    const c = await adm.post('/v1/users', { user_id: id });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const tok = await adm.post(`/v1/users/${encodeURIComponent(id)}/tokens`, {});
    assert.equal(tok.status, 201);
    return client(nginx.base, { token: tok.body.token });
}

before(async () => {
    nginx = await startApi({ name: 'api-blocks' });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const id of ['ann', 'ben', 'cat', 'dan', 'eve', 'zoë']) u[id] = await user(id);
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('block, list, unblock; one outbox row per change', async () => {
    const b = await u.ann.put('/v1/users/ann/blocks/ben');
    assert.equal(b.status, 201, JSON.stringify(b.body));
    assert.equal(b.body.user_id, 'ann');
    assert.equal(b.body.blocked_id, 'ben');
    assert.match(b.body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const again = await u.ann.put('/v1/users/ann/blocks/ben');
    assert.equal(again.status, 200, 'blocking twice is no error');
    assert.deepEqual(again.body, b.body);

    let ev = blockEvents();
    assert.equal(ev.length, 1, 'the second block wrote nothing');
    assert.equal(ev[0].topic, 'parley.events');
    assert.equal(ev[0].key, 'ann');
    assert.equal(ev[0].type, 'user.blocked');
    assert.equal(ev[0].tenant, tenant.id);
    assert.deepEqual(ev[0].data, { user_id: 'ann', blocked_id: 'ben' });

    // blocks are one-directional rows
    const list = await u.ann.get('/v1/users/ann/blocks');
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.blocks.map((x) => x.blocked_id), ['ben']);
    assert.equal(list.body.next_cursor, null);
    assert.deepEqual((await u.ben.get('/v1/users/ben/blocks')).body.blocks, []);

    assert.equal((await u.ann.del('/v1/users/ann/blocks/ben')).status, 204);
    assertError(await u.ann.del('/v1/users/ann/blocks/ben'), 404, 'block_not_found', 'target');
    assert.deepEqual((await u.ann.get('/v1/users/ann/blocks')).body.blocks, []);
    ev = blockEvents();
    assert.deepEqual(ev.map((e) => [e.type, e.key, e.data.blocked_id]), [['user.blocked', 'ann', 'ben'], ['user.unblocked', 'ann', 'ben']]);
});

test('list pages through blocked ids in order', async () => {
    for (const t of ['eve', 'ben', 'dan', 'cat', 'zoë']) {
        assert.equal((await u.ann.put(`/v1/users/ann/blocks/${encodeURIComponent(t)}`)).status, 201);
    }
    const pages = [];
    let cursor = '';
    for (;;) {
        const r = await u.ann.get(`/v1/users/ann/blocks?limit=2${cursor}`);
        assert.equal(r.status, 200);
        pages.push(r.body.blocks.map((x) => x.blocked_id));
        if (!r.body.next_cursor) break;
        cursor = `&cursor=${r.body.next_cursor}`;
    }
    assert.deepEqual(pages, [['ben', 'cat'], ['dan', 'eve'], ['zoë']]);
    assertError(await u.ann.get('/v1/users/ann/blocks?limit=0'), 400, 'invalid_parameter', 'limit');
    assertError(await u.ann.get('/v1/users/ann/blocks?cursor=***'), 400, 'invalid_parameter', 'cursor');
    for (const t of ['eve', 'ben', 'dan', 'cat', 'zoë']) {
        assert.equal((await u.ann.del(`/v1/users/ann/blocks/${encodeURIComponent(t)}`)).status, 204);
    }
});

test('who may: the user itself or the API key; not yourself; users must exist', async () => {
    assertError(await u.ben.put('/v1/users/ann/blocks/cat'), 403, 'forbidden', 'uid');
    assertError(await u.ben.del('/v1/users/ann/blocks/cat'), 403, 'forbidden', 'uid');
    assertError(await u.ben.get('/v1/users/ann/blocks'), 403, 'forbidden', 'uid');
    assertError(await admin.as({ user: 'ben' }).put('/v1/users/ann/blocks/cat'), 403, 'forbidden', 'uid');
    assertError(await u.ann.put('/v1/users/ann/blocks/ann'), 422, 'invalid_value', 'target');
    assertError(await u.ann.put('/v1/users/ann/blocks/ghost'), 404, 'user_not_found', 'target');
    assertError(await admin.put('/v1/users/ghost/blocks/ann'), 404, 'user_not_found', 'uid');
    assertError(await admin.get('/v1/users/ghost/blocks'), 404, 'user_not_found', 'uid');
    assertError(await u.ann.put('/v1/users/ann/blocks/%ff'), 400, 'invalid_parameter', 'target');
    assertError(await client(nginx.base).put('/v1/users/ann/blocks/cat'), 401, 'unauthenticated');
    assertError(await u.ann.post('/v1/users/ann/blocks/cat'), 405, 'method_not_allowed');
    assert.deepEqual(sql(`SELECT COUNT(*) FROM user_blocks WHERE tenant_id = ${tenant.id}`), [['0']], 'nothing was stored');

    const k = await admin.put('/v1/users/cat/blocks/dan');
    assert.equal(k.status, 201);
    assert.deepEqual((await admin.get('/v1/users/cat/blocks')).body.blocks.map((x) => x.blocked_id), ['dan']);
    assert.equal((await admin.as({ user: 'cat' }).del('/v1/users/cat/blocks/dan')).status, 204);

    // a deactivated user may still be blocked
    await user('gone');
    assert.equal((await admin.post('/v1/users/gone/deactivate')).status, 200);
    assert.equal((await u.ann.put('/v1/users/ann/blocks/gone')).status, 201);
    assert.equal((await u.ann.del('/v1/users/ann/blocks/gone')).status, 204);
});

test('a block in either direction refuses a direct conversation of the pair', async () => {
    assert.equal((await u.dan.put('/v1/users/dan/blocks/eve')).status, 201);
    assertError(await u.eve.post('/v1/conversations', { type: 'direct', peer: 'dan' }), 403, 'blocked', 'peer');
    assertError(await u.dan.post('/v1/conversations', { type: 'direct', peer: 'eve' }), 403, 'blocked', 'peer');
    // groups are not affected
    const g = await u.dan.post('/v1/conversations', { type: 'group', members: ['eve'] });
    assert.equal(g.status, 201);
    assert.equal((await u.dan.del('/v1/users/dan/blocks/eve')).status, 204);
    assert.equal((await u.eve.post('/v1/conversations', { type: 'direct', peer: 'dan' })).status, 201);
});

test('tenant isolation: another tenant can neither see nor make these blocks', async () => {
    assert.equal((await u.ann.put('/v1/users/ann/blocks/ben')).status, 201);
    assertError(await otherAdmin.get('/v1/users/ann/blocks'), 404, 'user_not_found', 'uid');
    assertError(await otherAdmin.put('/v1/users/ann/blocks/ben'), 404, 'user_not_found', 'uid');
    assertError(await otherAdmin.del('/v1/users/ann/blocks/ben'), 404, 'block_not_found');
    const otherAnn = await user('ann', otherAdmin);
    assertError(await otherAnn.put('/v1/users/ann/blocks/ben'), 404, 'user_not_found', 'target');
    assert.deepEqual((await otherAnn.get('/v1/users/ann/blocks')).body.blocks, []);
    assert.deepEqual((await u.ann.get('/v1/users/ann/blocks')).body.blocks.map((x) => x.blocked_id), ['ben']);
});
