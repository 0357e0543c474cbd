// The platform (operator) API: /v1/platform/tenants, guarded by the operator
// credential configured as parley_platform_key_sha256, against the shared
// test stack.  Deletion is checked through the API and, independently, by
// counting the tenant's rows in every table with the mariadb client.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, sleep, stackEnv, parleyctl } from './lib/harness.mjs';

const operatorKey = crypto.randomBytes(32).toString('base64url');
const operatorHash = crypto.createHash('sha256').update(operatorKey).digest('hex');

let nginx, op;

before(async () => {
    nginx = await startApi({ name: 'api-platform', http: `parley_platform_key_sha256 ${operatorHash};` });
    op = client(nginx.base, { key: operatorKey });
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

// the mariadb command-line client, independent of the code under test
function sql(query) {
    const env = stackEnv();
    const r = spawnSync('mariadb', ['--no-defaults', `-h${env.PARLEY_DB_HOST}`, `-P${env.PARLEY_DB_PORT}`,
        `-u${env.PARLEY_DB_USER}`, `-p${env.PARLEY_DB_PASSWORD}`, '-N', '-B', env.PARLEY_DB_NAME],
    { input: query, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

// the event types left in the outbox for tenant tid (startApi configures no
// Kafka, so nothing drains it during these tests)
function outboxTypes(tid) {
    return sql(`SELECT payload FROM outbox WHERE tenant_id = ${tid} ORDER BY id`).map((r) => JSON.parse(r[0]).type);
}

// rows of tenant tid in every table with a tenant_id column, but for the
// outbox row that announces the deletion
function rowsOf(tid) {
    const tables = sql("SELECT c.TABLE_NAME FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
        + 'ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME WHERE c.TABLE_SCHEMA = DATABASE() '
        + "AND c.COLUMN_NAME = 'tenant_id' AND t.TABLE_TYPE = 'BASE TABLE'").map((r) => r[0]);
    assert.ok(tables.includes('users') && tables.includes('tenant_api_keys') && tables.includes('documents'));
    const counts = {};
    for (const t of tables) {
        const n = Number(sql(`SELECT COUNT(*) FROM \`${t}\` WHERE tenant_id = ${tid}`)[0][0])
            - (t === 'outbox' && outboxTypes(tid).includes('tenant.deleted') ? 1 : 0);
        if (n) counts[t] = n;
    }
    return counts;
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const uniq = (p) => `${p}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;

test('the operator credential: right, wrong, absent, not configured', async () => {
    assert.equal((await op.get('/v1/platform/tenants?limit=1')).status, 200);
    assertError(await client(nginx.base).get('/v1/platform/tenants'), 401, 'unauthenticated');
    assertError(await client(nginx.base, { key: 'not-the-key' }).get('/v1/platform/tenants'), 401, 'invalid_credential');
    assertError(await client(nginx.base, { key: operatorHash }).get('/v1/platform/tenants'), 401, 'invalid_credential');
    // a tenant's API key is no operator credential
    const t = createTenant();
    assertError(await client(nginx.base, { key: t.key }).get('/v1/platform/tenants'), 401, 'invalid_credential');
    assertError(await client(nginx.base, { key: t.key }).post('/v1/platform/tenants', { name: uniq('x') }),
        401, 'invalid_credential');
    assertError(await client(nginx.base, { key: t.key }).del(`/v1/platform/tenants/${t.id}`), 401, 'invalid_credential');
    assert.equal((await client(nginx.base, { key: t.key }).get('/v1/users')).status, 200, 'the tenant still exists');
    // nor the operator credential a tenant key
    assert.equal((await op.get('/v1/users')).status, 401);

    const bare = await startApi({ name: 'api-platform-off' });
    try {
        assertError(await client(bare.base, { key: operatorKey }).get('/v1/platform/tenants'), 403, 'forbidden');
    } finally {
        await bare.finish();
    }
});

test('create a tenant: its first key works at once, names are unique', async () => {
    const name = uniq('acme ünïcode');
    const c = await op.post('/v1/platform/tenants', { name });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.deepEqual(Object.keys(c.body).sort(), ['api_key', 'tenant']);
    const t = c.body.tenant;
    assert.match(t.id, /^\d+$/);
    assert.equal(t.name, name);
    assert.equal(t.status, 'active');
    assert.equal(t.active_keys, 1);
    assert.match(t.created_at, ISO);
    assert.match(t.updated_at, ISO);
    assert.match(c.body.api_key, /^pk_[A-Za-z0-9_-]{43}$/);

    const admin = client(nginx.base, { key: c.body.api_key });
    assert.equal((await admin.post('/v1/users', { user_id: 'first' })).status, 201);
    const keys = (await admin.get('/v1/apikeys')).body.api_keys;
    assert.deepEqual(keys.map((k) => k.prefix), [c.body.api_key.slice(0, 11)]);
    // only the hash is stored
    assert.deepEqual(sql(`SELECT key_hash FROM tenant_api_keys WHERE tenant_id = ${t.id}`),
        [[crypto.createHash('sha256').update(c.body.api_key).digest('hex')]]);

    const g = await op.get(`/v1/platform/tenants/${t.id}`);
    assert.equal(g.status, 200);
    assert.deepEqual(g.body, t);
    assert.equal(JSON.stringify(g.body).includes(c.body.api_key), false);

    assertError(await op.post('/v1/platform/tenants', { name }), 409, 'tenant_exists', 'name');
    // a tenant made by parleyctl has its name taken too
    const ctl = createTenant(uniq('ctl'));
    assertError(await op.post('/v1/platform/tenants', { name: ctl.name }), 409, 'tenant_exists', 'name');
    assert.equal((await op.get(`/v1/platform/tenants/${ctl.id}`)).body.name, ctl.name);
});

test('bad input: one error shape, nothing created', async () => {
    const before = Number(sql('SELECT COUNT(*) FROM tenants')[0][0]);
    assertError(await op.post('/v1/platform/tenants', {}), 422, 'missing_field', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: '' }), 422, 'invalid_length', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: 'x'.repeat(129) }), 422, 'invalid_length', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: 'é'.repeat(65) }), 422, 'invalid_length', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: 5 }), 422, 'invalid_type', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: 'a\nb' }), 422, 'invalid_value', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: ' padded' }), 422, 'invalid_value', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: 'padded ' }), 422, 'invalid_value', 'name');
    assertError(await op.post('/v1/platform/tenants', { name: uniq('n'), plan: 'gold' }), 422, 'unknown_field', 'plan');
    assertError(await op.post('/v1/platform/tenants', '{"name":'), 400, 'invalid_json');
    assertError(await op.get('/v1/platform/tenants/acme'), 400, 'invalid_parameter', 'tid');
    assertError(await op.get('/v1/platform/tenants/0'), 400, 'invalid_parameter', 'tid');
    assertError(await op.get('/v1/platform/tenants/0123'), 400, 'invalid_parameter', 'tid');
    assertError(await op.get('/v1/platform/tenants/123456789'), 404, 'tenant_not_found', 'tid');
    assertError(await op.post('/v1/platform/tenants/123456789/suspend'), 404, 'tenant_not_found', 'tid');
    assertError(await op.post('/v1/platform/tenants/123456789/activate'), 404, 'tenant_not_found', 'tid');
    assertError(await op.del('/v1/platform/tenants/123456789'), 404, 'tenant_not_found', 'tid');
    assertError(await op.get('/v1/platform/tenants?limit=0'), 400, 'invalid_parameter', 'limit');
    assertError(await op.get('/v1/platform/tenants?limit=100000'), 400, 'invalid_parameter', 'limit');
    assertError(await op.get('/v1/platform/tenants?cursor=x'), 400, 'invalid_parameter', 'cursor');
    assertError(await op.put('/v1/platform/tenants', {}), 405, 'method_not_allowed');
    assert.equal(Number(sql('SELECT COUNT(*) FROM tenants')[0][0]) >= before, true);
    assert.deepEqual(sql("SELECT COUNT(*) FROM tenants WHERE name IN ('', ' padded', 'padded ', 'a\\nb')"), [['0']]);
});

test('list pages through tenants in id order', async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await op.post('/v1/platform/tenants', { name: uniq(`page${i}`) })).body.tenant);
    const ids = made.map((t) => t.id);
    // start just before the first: other test files may add tenants meanwhile
    let cursor = (BigInt(ids[0]) - 1n).toString();
    const seen = [];
    for (let page = 0; page < 100 && seen.filter((id) => ids.includes(id)).length < 3; page++) {
        const r = await op.get(`/v1/platform/tenants?limit=2&cursor=${cursor}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(r.body.tenants.length <= 2);
        for (const t of r.body.tenants) {
            assert.deepEqual(Object.keys(t).sort(), ['active_keys', 'created_at', 'id', 'name', 'status', 'updated_at']);
            seen.push(t.id);
        }
        if (!r.body.next_cursor) break;
        assert.equal(r.body.next_cursor, r.body.tenants.at(-1).id);
        cursor = r.body.next_cursor;
    }
    const sorted = [...seen].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
    assert.deepEqual(seen, sorted, 'ascending ids');
    assert.deepEqual(seen.filter((id) => ids.includes(id)), ids);
    const first = await op.get('/v1/platform/tenants');
    assert.equal(first.status, 200);
    assert.ok(first.body.tenants.length >= 1 && first.body.tenants.length <= 50);
});

test('suspend stops the tenant\'s keys and tokens, activate restores them', async () => {
    const c = (await op.post('/v1/platform/tenants', { name: uniq('suspend') })).body;
    const tid = c.tenant.id;
    const admin = client(nginx.base, { key: c.api_key });
    assert.equal((await admin.post('/v1/users', { user_id: 'u1' })).status, 201);
    const token = (await admin.post('/v1/users/u1/tokens', {})).body.token;
    const user = client(nginx.base, { token });
    // an identity-provider token too, when that tenant configured one
    const idpKey = 'k'.repeat(40);
    const put = await admin.put('/v1/settings/tokens', { issuer: 'https://idp', algorithms: ['HS256'], hs256_secret: idpKey });
    const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ iss: 'https://idp', sub: 'u1', iat: now, exp: now + 600 })}`;
    const idpToken = `${input}.${crypto.createHmac('sha256', idpKey).update(input).digest('base64url')}`;
    const idp = client(nginx.base, { token: idpToken });
    const idpGet = () => idp.get('/v1/users/u1', { 'x-parley-tenant': tid });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal((await idpGet()).status, 200);

    const s = await op.post(`/v1/platform/tenants/${tid}/suspend`);
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.equal(s.body.status, 'suspended');
    assert.equal(s.body.id, tid);
    assert.notEqual(s.body.updated_at, undefined);
    await sleep(1100); // parley_api_cache_ttl 1s
    assertError(await admin.get('/v1/users'), 403, 'tenant_suspended');
    assertError(await admin.post('/v1/users', { user_id: 'u2' }), 403, 'tenant_suspended');
    assertError(await user.get('/v1/users/u1'), 403, 'tenant_suspended');
    assertError(await idpGet(), 403, 'tenant_suspended');
    assert.equal((await op.get(`/v1/platform/tenants/${tid}`)).body.status, 'suspended');

    // suspending again changes nothing
    const again = await op.post(`/v1/platform/tenants/${tid}/suspend`);
    assert.equal(again.status, 200);
    assert.equal(again.body.updated_at, s.body.updated_at);

    // other tenants are not affected
    const bystander = createTenant();
    assert.equal((await client(nginx.base, { key: bystander.key }).get('/v1/users')).status, 200);

    const a = await op.post(`/v1/platform/tenants/${tid}/activate`);
    assert.equal(a.status, 200);
    assert.equal(a.body.status, 'active');
    await sleep(1100);
    assert.equal((await admin.get('/v1/users')).status, 200);
    assert.equal((await user.get('/v1/users/u1')).status, 200);
    assert.equal((await idpGet()).status, 200);
    assert.equal((await op.post(`/v1/platform/tenants/${tid}/activate`)).body.status, 'active');
});

test('delete removes every row of the tenant, in batches, and nothing else', async () => {
    const c = (await op.post('/v1/platform/tenants', { name: uniq('doomed') })).body;
    const tid = c.tenant.id;
    const admin = client(nginx.base, { key: c.api_key });
    for (const u of ['a', 'b', 'c']) assert.equal((await admin.post('/v1/users', { user_id: u })).status, 201);
    const second = (await admin.post('/v1/apikeys', { label: 'second' })).body;
    const token = (await admin.post('/v1/users/a/tokens', {})).body;
    await admin.post('/v1/users/a/tokens/revoke', { jti: token.jti });
    await admin.put('/v1/settings/tokens', { issuer: 'https://idp', algorithms: ['HS256'], hs256_secret: 'z'.repeat(40) });
    // more rows than one batch, in a table this file knows nothing about
    const values = Array.from({ length: 2500 }, (_, i) => `(${tid}, 'test', 'd${i}', '{}', UTC_TIMESTAMP(3))`);
    sql(`INSERT INTO documents (tenant_id, collection, doc_id, body, updated_at) VALUES ${values.join(',')}`);

    // a bystander with the same user ids keeps everything
    const by = createTenant();
    const byAdmin = client(nginx.base, { key: by.key });
    for (const u of ['a', 'b']) assert.equal((await byAdmin.post('/v1/users', { user_id: u })).status, 201);
    sql(`INSERT INTO documents (tenant_id, collection, doc_id, body, updated_at) VALUES (${by.id}, 'test', 'keep', '{}', UTC_TIMESTAMP(3))`);
    const byBefore = rowsOf(by.id);

    const rows = rowsOf(tid);
    assert.equal(rows.documents, 2500);
    assert.ok(rows.users >= 3 && rows.tenant_api_keys === 2, JSON.stringify(rows));

    const t0 = Date.now();
    const d = await op.del(`/v1/platform/tenants/${tid}`);
    assert.equal(d.status, 204, JSON.stringify(d.body));
    assert.ok(Date.now() - t0 >= 1000, 'it waited out the credential caches');

    assert.deepEqual(rowsOf(tid), {}, 'no row of the tenant is left in any table');
    assert.deepEqual(outboxTypes(tid), ['tenant.deleted'], 'only the event that announces it');
    assert.deepEqual(sql(`SELECT COUNT(*) FROM tenants WHERE id = ${tid}`), [['0']]);
    assertError(await op.get(`/v1/platform/tenants/${tid}`), 404, 'tenant_not_found');
    assertError(await op.del(`/v1/platform/tenants/${tid}`), 404, 'tenant_not_found');

    await sleep(1100);
    assertError(await admin.get('/v1/users/a'), 401, 'invalid_api_key');
    assertError(await client(nginx.base, { key: second.api_key }).get('/v1/users'), 401, 'invalid_api_key');
    const tokUser = await client(nginx.base, { token: token.token }).get('/v1/users/a');
    assert.equal(tokUser.status, 401, JSON.stringify(tokUser.body));

    // the name is free again; the bystander is untouched
    assert.equal((await op.post('/v1/platform/tenants', { name: c.tenant.name })).status, 201);
    assert.deepEqual(rowsOf(by.id), byBefore);
    assert.equal((await byAdmin.get('/v1/users/a')).status, 200);
});

test('delete of a suspended tenant, and of one deleted meanwhile', async () => {
    const c = (await op.post('/v1/platform/tenants', { name: uniq('suspended-doomed') })).body;
    const tid = c.tenant.id;
    assert.equal((await op.post(`/v1/platform/tenants/${tid}/suspend`)).status, 200);
    const [d1, d2] = await Promise.all([op.del(`/v1/platform/tenants/${tid}`), op.del(`/v1/platform/tenants/${tid}`)]);
    assert.ok([d1.status, d2.status].includes(204), JSON.stringify([d1.body, d2.body]));
    for (const r of [d1, d2]) assert.ok(r.status === 204 || (r.status === 404 && r.body.error.code === 'tenant_not_found'), JSON.stringify(r.body));
    assert.deepEqual(rowsOf(tid), {});
    assert.deepEqual(outboxTypes(tid), ['tenant.deleted'], 'announced once');
    assertError(await op.get(`/v1/platform/tenants/${tid}`), 404, 'tenant_not_found');
});

test('parleyctl tenant suspend, activate, delete and apikey list', async () => {
    const t = createTenant(uniq('ctl-ops'));
    const admin = client(nginx.base, { key: t.key });
    assert.equal((await admin.post('/v1/users', { user_id: 'u' })).status, 201);
    const k2 = (await admin.post('/v1/apikeys', { label: 'ci key' })).body;
    assert.equal((await admin.del(`/v1/apikeys/${t.key.slice(0, 11)}`)).status, 204);

    const list = parleyctl('apikey', 'list', '--tenant', t.id).split('\n').filter(Boolean);
    assert.match(list[0], /^PREFIX\s+CREATED \(UTC\)\s+REVOKED \(UTC\)\s+LABEL$/);
    assert.equal(list.length, 3);
    assert.match(list[1], new RegExp(`^${t.key.slice(0, 11)}\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\s+\\d{4}-.*\\s+admin$`));
    assert.match(list[2], new RegExp(`^${k2.prefix}\\s+\\d{4}-\\S+ \\S+\\s+-\\s+ci key$`));
    assert.equal(list.join('\n').includes(k2.api_key), false);
    assert.throws(() => parleyctl('apikey', 'list', '--tenant', '123456789'), /no tenant with id/);
    assert.throws(() => parleyctl('apikey', 'list'), /--tenant ID is required/);

    const b = client(nginx.base, { key: k2.api_key });
    assert.match(parleyctl('tenant', 'suspend', '--tenant', t.id), /suspended/);
    assert.equal((await op.get(`/v1/platform/tenants/${t.id}`)).body.status, 'suspended');
    await sleep(1100);
    assertError(await b.get('/v1/users'), 403, 'tenant_suspended');
    parleyctl('tenant', 'suspend', '--tenant', t.id); // already: a success
    assert.match(parleyctl('tenant', 'activate', '--tenant', t.id), /active/);
    await sleep(1100);
    assert.equal((await b.get('/v1/users')).status, 200);
    assert.throws(() => parleyctl('tenant', 'suspend', '--tenant', 'acme'), /decimal tenant id/);
    assert.throws(() => parleyctl('tenant', 'activate', '--tenant', '123456789'), /no tenant with id/);

    sql(`INSERT INTO documents (tenant_id, collection, doc_id, body, updated_at) VALUES ${
        Array.from({ length: 1500 }, (_, i) => `(${t.id}, 'ctl', 'd${i}', '{}', UTC_TIMESTAMP(3))`).join(',')}`);
    assert.throws(() => parleyctl('tenant', 'delete', '--tenant', t.id, '--grace', 'soon'), /--grace takes seconds/);
    const out = parleyctl('tenant', 'delete', '--tenant', t.id, '--grace', '1');
    assert.match(out, new RegExp(`deleted tenant ${t.id} and \\d+ rows`));
    assert.deepEqual(rowsOf(t.id), {});
    assert.deepEqual(sql(`SELECT COUNT(*) FROM tenants WHERE id = ${t.id}`), [['0']]);
    assertError(await op.get(`/v1/platform/tenants/${t.id}`), 404, 'tenant_not_found');
    await sleep(1100);
    assertError(await b.get('/v1/users'), 401, 'invalid_api_key');
    assert.throws(() => parleyctl('tenant', 'delete', '--tenant', t.id, '--grace', '0'), /no tenant with id/);
});
