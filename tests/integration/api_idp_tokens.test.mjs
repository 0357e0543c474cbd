// Tenant token settings (GET/PUT/DELETE /v1/settings/tokens) and user tokens
// issued by a tenant's own identity provider, against the shared test stack.
// Keys are generated and tokens signed here with node:crypto, independently
// of the code under test.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startApi, createTenant, client, sleep, tmpDir } from './lib/harness.mjs';

let nginx, ta, tb, adminA, adminB;

const ISS = 'https://idp.example.com/';
const AUD = 'parley-chat';
const now = () => Math.floor(Date.now() / 1000);

const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsa2 = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
const rsa2Pem = rsa2.publicKey.export({ type: 'spki', format: 'pem' });
const secret = crypto.randomBytes(24).toString('hex'); // 48 bytes of text

const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

// A compact JWS: alg RS256 / ES256 / HS256 / none, key as node:crypto wants it.
function sign(alg, key, claims, header = {}) {
    const input = `${b64({ alg, typ: 'JWT', ...header })}.${b64(claims)}`;
    let sig;
    if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
    else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    else if (alg === 'HS256') sig = crypto.createHmac('sha256', key).update(input).digest();
    else sig = Buffer.alloc(0);
    return `${input}.${sig.toString('base64url')}`;
}

const claims = (more = {}) => ({ iss: ISS, aud: AUD, sub: 'alice', iat: now(), exp: now() + 600, ...more });

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field, JSON.stringify(r.body));
}

// GET /v1/users/{uid} with an IdP token for tenant t (header omitted if null)
function asIdp(token, tenant = ta) {
    const c = client(nginx.base, { token });
    const h = tenant ? { 'x-parley-tenant': tenant.id } : {};
    return {
        get: (p) => c.get(p, h),
        patch: (p, b) => c.patch(p, b, h),
        post: (p, b) => c.post(p, b, h),
    };
}

const rsSettings = (more = {}) => ({
    issuer: ISS, audiences: [AUD], algorithms: ['RS256'], public_keys_pem: [rsaPem], ...more,
});

before(async () => {
    nginx = await startApi({ name: 'api-idp' });
    ta = createTenant();
    tb = createTenant();
    adminA = client(nginx.base, { key: ta.key });
    adminB = client(nginx.base, { key: tb.key });
    for (const u of ['alice', 'bob', 'carol', 'rev', 'revall']) {
        assert.equal((await adminA.post('/v1/users', { user_id: u })).status, 201);
    }
    assert.equal((await adminB.post('/v1/users', { user_id: 'alice', name: 'B alice' })).status, 201);
    assert.equal((await adminB.post('/v1/users', { user_id: 'only-b' })).status, 201);
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('RS256 with a PEM key: settings round-trip, tokens authenticate the sub', async () => {
    assertError(await adminA.get('/v1/settings/tokens'), 404, 'token_settings_not_found');

    const put = await adminA.put('/v1/settings/tokens', rsSettings({ leeway: 30 }));
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.issuer, ISS);
    assert.deepEqual(put.body.audiences, [AUD]);
    assert.deepEqual(put.body.algorithms, ['RS256']);
    assert.deepEqual(put.body.public_keys_pem, [rsaPem]);
    assert.equal(put.body.leeway, 30);
    assert.equal(put.body.max_lifetime, 86400, 'the default is stored explicitly');
    assert.equal(put.body.hs256_secret_set, false);
    assert.match(put.body.updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.deepEqual((await adminA.get('/v1/settings/tokens')).body, put.body);

    const token = sign('RS256', rsa.privateKey, claims());
    const me = await asIdp(token).get('/v1/users/alice');
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.equal(me.body.user_id, 'alice');

    // the token acts as alice: her own profile yes, bob's no
    assert.equal((await asIdp(token).patch('/v1/users/alice', { name: 'Alice via IdP' })).body.name, 'Alice via IdP');
    assertError(await asIdp(token).patch('/v1/users/bob', { name: 'x' }), 403, 'forbidden');
    // a user token is not an admin credential
    assertError(await asIdp(token).post('/v1/users', { user_id: 'x' }), 403, 'admin_required');

    // a key without kid accepts any kid; the aud array form works too
    const kidded = sign('RS256', rsa.privateKey, claims({ aud: ['other', AUD] }), { kid: 'idp-key-7' });
    assert.equal((await asIdp(kidded).get('/v1/users/alice')).status, 200);

    // Parley's own tokens are unaffected and need no X-Parley-Tenant
    const own = await adminA.post('/v1/users/alice/tokens', {});
    assert.equal((await client(nginx.base, { token: own.body.token }).get('/v1/users/alice')).status, 200);
});

test('rejected IdP tokens: the header, algorithms, key confusion, claims', async () => {
    assert.equal((await adminA.put('/v1/settings/tokens', rsSettings())).status, 200);
    const good = sign('RS256', rsa.privateKey, claims());

    assertError(await asIdp(good, null).get('/v1/users/alice'), 401, 'tenant_required');
    assertError(await client(nginx.base, { token: good }).get('/v1/users/alice', { 'x-parley-tenant': 'acme' }),
        400, 'invalid_parameter', 'X-Parley-Tenant');
    assertError(await client(nginx.base, { token: good }).get('/v1/users/alice', { 'x-parley-tenant': '0' }),
        400, 'invalid_parameter', 'X-Parley-Tenant');

    // alg none, in any casing, and an unsigned token
    for (const alg of ['none', 'None', 'NONE']) {
        const t = `${b64({ alg, typ: 'JWT' })}.${b64(claims())}.`;
        const r = await asIdp(t).get('/v1/users/alice');
        assert.equal(r.status, 401, alg);
        assert.match(r.body.error.code, /^token_(algorithm_not_allowed|malformed)$/, alg);
        const t2 = `${b64({ alg, typ: 'JWT' })}.${b64(claims())}.AA`;
        assertError(await asIdp(t2).get('/v1/users/alice'), 401, 'token_algorithm_not_allowed');
    }

    // an algorithm the tenant does not allow, though the signature is good
    assertError(await asIdp(sign('ES256', ec.privateKey, claims())).get('/v1/users/alice'),
        401, 'token_algorithm_not_allowed');

    // key confusion: HS256 "signed" with the tenant's RSA public key as secret
    const confused = sign('HS256', rsaPem, claims());
    assertError(await asIdp(confused).get('/v1/users/alice'), 401, 'token_algorithm_not_allowed');
    // ... also refused when HS256 is allowed (with a real secret): the public
    // key never becomes an HMAC secret
    assert.equal((await adminA.put('/v1/settings/tokens',
        rsSettings({ algorithms: ['RS256', 'HS256'], hs256_secret: secret }))).status, 200);
    assertError(await asIdp(confused).get('/v1/users/alice'), 401, 'token_signature_invalid');
    assert.equal((await asIdp(good).get('/v1/users/alice')).status, 200, 'RS256 still works');
    assert.equal((await adminA.put('/v1/settings/tokens', rsSettings())).status, 200);

    // another RSA key's signature, a tampered payload
    assertError(await asIdp(sign('RS256', rsa2.privateKey, claims())).get('/v1/users/alice'),
        401, 'token_signature_invalid');
    const [h, , s] = good.split('.');
    assertError(await asIdp(`${h}.${b64(claims({ sub: 'bob' }))}.${s}`).get('/v1/users/alice'),
        401, 'token_signature_invalid');

    // time, issuer, audience, lifetime
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ iat: now() - 900, exp: now() - 120 })))
        .get('/v1/users/alice'), 401, 'token_expired');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ nbf: now() + 600 })))
        .get('/v1/users/alice'), 401, 'token_not_yet_valid');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ iss: 'https://evil.example.com/' })))
        .get('/v1/users/alice'), 401, 'token_issuer_mismatch');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ iss: undefined })))
        .get('/v1/users/alice'), 401, 'token_issuer_mismatch');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ aud: 'someone-else' })))
        .get('/v1/users/alice'), 401, 'token_audience_mismatch');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ exp: now() + 2 * 86400 })))
        .get('/v1/users/alice'), 401, 'token_lifetime_too_long');
    const noExp = await asIdp(sign('RS256', rsa.privateKey, claims({ exp: undefined }))).get('/v1/users/alice');
    assert.equal(noExp.status, 401);
    assert.match(noExp.body.error.code, /^token_(claims_invalid|lifetime_too_long)$/);

    // sub: missing, not a valid user id, no such user, deactivated
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ sub: undefined })))
        .get('/v1/users/alice'), 401, 'token_claims_invalid');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ sub: 'a/b' })))
        .get('/v1/users/alice'), 401, 'token_claims_invalid');
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ sub: 'nobody' })))
        .get('/v1/users/alice'), 401, 'user_unknown');
    assert.equal((await adminA.post('/v1/users/carol/deactivate')).status, 200);
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims({ sub: 'carol', iat: now() + 5 })))
        .get('/v1/users/carol'), 403, 'user_inactive');
});

test('ES256 with a JWKS, inline and from a file', async () => {
    const jwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', alg: 'ES256', use: 'sig' };
    const put = await adminA.put('/v1/settings/tokens', {
        issuer: ISS, audiences: [AUD], algorithms: ['ES256'], jwks: { keys: [jwk] },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual(put.body.jwks, { keys: [jwk] });
    assert.deepEqual(put.body.public_keys_pem, []);

    const t = sign('ES256', ec.privateKey, claims(), { kid: 'ec-1' });
    assert.equal((await asIdp(t).get('/v1/users/alice')).status, 200);
    assert.equal((await asIdp(sign('ES256', ec.privateKey, claims())).get('/v1/users/alice')).status, 200,
        'no kid: every ES256 key is tried');
    assertError(await asIdp(sign('ES256', ec.privateKey, claims(), { kid: 'ec-2' })).get('/v1/users/alice'),
        401, 'token_key_unknown');
    // a DER-encoded ECDSA signature is not the JWS form
    const input = `${b64({ alg: 'ES256', typ: 'JWT', kid: 'ec-1' })}.${b64(claims())}`;
    const der = crypto.sign('sha256', Buffer.from(input), ec.privateKey).toString('base64url');
    assertError(await asIdp(`${input}.${der}`).get('/v1/users/alice'), 401, 'token_signature_invalid');
    // the old RSA settings are gone
    assertError(await asIdp(sign('RS256', rsa.privateKey, claims())).get('/v1/users/alice'),
        401, 'token_algorithm_not_allowed');

    // the same set from a file the worker reads
    // the workers (user nobody) read the file: keep it out of the checkout,
    // whose parents (a home directory, say) they may not be able to enter
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-jwks-'));
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(dir, 0o755); // nginx workers run as another user
    const file = path.join(dir, 'jwks.json');
    fs.writeFileSync(file, JSON.stringify({ keys: [jwk] }), { mode: 0o644 });
    const f = await adminA.put('/v1/settings/tokens', {
        issuer: ISS, audiences: [AUD], algorithms: ['ES256'], jwks_file: file,
    });
    assert.equal(f.status, 200, JSON.stringify(f.body));
    assert.equal(f.body.jwks_file, file);
    assert.equal((await asIdp(t).get('/v1/users/alice')).status, 200);

    // the worker rereads the file when the cache expires (ttl 1s here)
    const ec2 = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk2 = { ...ec2.publicKey.export({ format: 'jwk' }), kid: 'ec-2' };
    fs.writeFileSync(file, JSON.stringify({ keys: [jwk, jwk2] }));
    await sleep(1100);
    assert.equal((await asIdp(sign('ES256', ec2.privateKey, claims(), { kid: 'ec-2' })).get('/v1/users/alice')).status,
        200, 'a key added to the file works after the cache TTL');

    // a file that turned bad stops the tokens, with a clear code
    fs.writeFileSync(file, 'not json');
    await sleep(1100);
    assertError(await asIdp(t).get('/v1/users/alice'), 401, 'token_key_unknown');
    fs.writeFileSync(file, JSON.stringify({ keys: [jwk] }));

    assertError(await adminA.put('/v1/settings/tokens', {
        issuer: ISS, algorithms: ['ES256'], jwks_file: 'relative/jwks.json',
    }), 422, 'invalid_value', 'jwks_file');
    assertError(await adminA.put('/v1/settings/tokens', {
        issuer: ISS, algorithms: ['ES256'], jwks_file: `${dir}/../${path.basename(dir)}/jwks.json`,
    }), 422, 'invalid_value', 'jwks_file');
    assertError(await adminA.put('/v1/settings/tokens', {
        issuer: ISS, algorithms: ['ES256'], jwks_file: path.join(dir, 'missing.json'),
    }), 422, 'key_invalid', 'jwks_file');
    assertError(await adminA.put('/v1/settings/tokens', {
        issuer: ISS, algorithms: ['ES256'], jwks_file: dir,
    }), 422, 'key_invalid', 'jwks_file');
    assertError(await adminA.put('/v1/settings/tokens', {
        issuer: ISS, algorithms: ['ES256'], jwks_file: '/etc/passwd',
    }), 422, 'key_invalid', 'jwks_file');
    assertError(await adminA.put('/v1/settings/tokens', {
        issuer: ISS, algorithms: ['ES256'], jwks: { keys: [jwk] }, jwks_file: file,
    }), 422, 'conflicting_fields', 'jwks_file');
    assert.equal((await adminA.get('/v1/settings/tokens')).body.jwks_file, file, 'failed PUTs changed nothing');
});

test('HS256 with a tenant secret: never shown, checked like the others', async () => {
    const put = await adminA.put('/v1/settings/tokens',
        { issuer: ISS, algorithms: ['HS256'], hs256_secret: secret, audiences: null, jwks: null, leeway: null });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.hs256_secret, undefined);
    assert.equal(put.body.hs256_secret_set, true);
    assert.deepEqual(put.body.audiences, [], 'null is the default');
    assert.equal('jwks' in put.body, false);
    assert.equal(put.body.leeway, 60);
    const got = await adminA.get('/v1/settings/tokens');
    assert.equal(JSON.stringify(got.body).includes(secret), false, 'GET never returns the secret');

    // no audiences configured: a token without aud passes, one with aud does not
    assert.equal((await asIdp(sign('HS256', secret, claims({ aud: undefined }))).get('/v1/users/alice')).status, 200);
    assertError(await asIdp(sign('HS256', secret, claims())).get('/v1/users/alice'), 401, 'token_audience_mismatch');
    assertError(await asIdp(sign('HS256', 'x'.repeat(48), claims({ aud: undefined }))).get('/v1/users/alice'),
        401, 'token_signature_invalid');

    // a settings change takes effect at once on this worker
    assert.equal((await adminA.put('/v1/settings/tokens',
        { issuer: ISS, algorithms: ['HS256'], hs256_secret: 'y'.repeat(40) })).status, 200);
    assertError(await asIdp(sign('HS256', secret, claims({ aud: undefined }))).get('/v1/users/alice'),
        401, 'token_signature_invalid');
    assert.equal((await asIdp(sign('HS256', 'y'.repeat(40), claims({ aud: undefined }))).get('/v1/users/alice')).status, 200);

    assertError(await adminA.put('/v1/settings/tokens', { issuer: ISS, algorithms: ['HS256'], hs256_secret: 'short' }),
        422, 'invalid_length', 'hs256_secret');
    // a public key pasted as the secret is refused
    assertError(await adminA.put('/v1/settings/tokens', { issuer: ISS, algorithms: ['HS256'], hs256_secret: rsaPem }),
        422, 'key_invalid', 'hs256_secret');
});

test('settings validation: bad input is 422 naming the field and changes nothing', async () => {
    assert.equal((await adminA.put('/v1/settings/tokens', rsSettings())).status, 200);
    const before = (await adminA.get('/v1/settings/tokens')).body;
    const weak = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' });
    const priv = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' });
    const cases = [
        [{ algorithms: ['RS256'], public_keys_pem: [rsaPem] }, 'missing_field', 'issuer'],
        [{ issuer: 7, algorithms: ['RS256'], public_keys_pem: [rsaPem] }, 'invalid_type', 'issuer'],
        [{ issuer: '', algorithms: ['RS256'], public_keys_pem: [rsaPem] }, 'invalid_value', 'issuer'],
        [{ issuer: 'a\u0001b', algorithms: ['RS256'], public_keys_pem: [rsaPem] }, 'invalid_value', 'issuer'],
        [{ issuer: 'x'.repeat(257), algorithms: ['RS256'], public_keys_pem: [rsaPem] }, 'invalid_value', 'issuer'],
        [{ issuer: ISS, public_keys_pem: [rsaPem] }, 'missing_field', 'algorithms'],
        [{ issuer: ISS, algorithms: [], public_keys_pem: [rsaPem] }, 'invalid_length', 'algorithms'],
        [{ issuer: ISS, algorithms: 'RS256', public_keys_pem: [rsaPem] }, 'invalid_type', 'algorithms'],
        [{ issuer: ISS, algorithms: ['none'], public_keys_pem: [rsaPem] }, 'invalid_value', 'algorithms'],
        [{ issuer: ISS, algorithms: ['HS384'], public_keys_pem: [rsaPem] }, 'invalid_value', 'algorithms'],
        [{ issuer: ISS, algorithms: ['rs256'], public_keys_pem: [rsaPem] }, 'invalid_value', 'algorithms'],
        [{ issuer: ISS, algorithms: ['RS256', 'RS256'], public_keys_pem: [rsaPem] }, 'invalid_value', 'algorithms'],
        [{ issuer: ISS, algorithms: ['RS256'] }, 'missing_field', 'public_keys_pem'],
        [{ issuer: ISS, algorithms: ['RS256'], hs256_secret: secret }, 'key_algorithm_mismatch', 'algorithms'],
        [{ issuer: ISS, algorithms: ['RS256', 'ES256'], public_keys_pem: [rsaPem] }, 'key_algorithm_mismatch', 'algorithms'],
        [{ issuer: ISS, algorithms: ['HS256'], public_keys_pem: [rsaPem], hs256_secret: secret }, 'key_algorithm_mismatch', 'algorithms'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'] }, 'key_invalid', 'public_keys_pem'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [weak] }, 'key_too_weak', 'public_keys_pem'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [priv] }, null, 'public_keys_pem'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: rsaPem }, 'invalid_type', 'public_keys_pem'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], audiences: 'x' }, 'invalid_type', 'audiences'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], audiences: [''] }, 'invalid_value', 'audiences'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], audiences: Array(33).fill('a') }, 'invalid_length', 'audiences'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], leeway: 301 }, 'out_of_range', 'leeway'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], leeway: -1 }, 'out_of_range', 'leeway'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], leeway: '5' }, 'invalid_type', 'leeway'],
        [{ issuer: ISS, algorithms: ['RS256'], public_keys_pem: [rsaPem], max_lifetime: 10 }, 'out_of_range', 'max_lifetime'],
        [{ issuer: ISS, algorithms: ['ES256'], jwks: { keys: [] } }, 'key_unsupported', 'jwks'],
        [{ issuer: ISS, algorithms: ['ES256'], jwks: [1] }, 'invalid_type', 'jwks'],
        [{ issuer: ISS, algorithms: ['ES256'], jwks: { keys: [{ ...ec.privateKey.export({ format: 'jwk' }) }] } }, null, 'jwks'],
        [{ ...rsSettings(), colour: 'red' }, 'unknown_field', 'colour'],
        [{ ...rsSettings(), updated_at: 'now' }, 'unknown_field', 'updated_at'],
    ];
    for (const [body, code, field] of cases) {
        const r = await adminA.put('/v1/settings/tokens', body);
        assert.equal(r.status, 422, `${JSON.stringify(body).slice(0, 120)}: ${JSON.stringify(r.body)}`);
        if (code) assert.equal(r.body.error.code, code, JSON.stringify(r.body));
        assert.equal(r.body.error.field, field, JSON.stringify(r.body));
        assert.equal(JSON.stringify(r.body).includes('PRIVATE'), false);
    }
    assertError(await adminA.put('/v1/settings/tokens', '[1]'), 400, 'invalid_json');
    assertError(await adminA.put('/v1/settings/tokens', '{"issuer":'), 400, 'invalid_json');
    assert.deepEqual((await adminA.get('/v1/settings/tokens')).body, before, 'nothing changed');
    assert.equal((await asIdp(sign('RS256', rsa.privateKey, claims())).get('/v1/users/alice')).status, 200);
});

test('settings need the tenant API key', async () => {
    const own = await adminA.post('/v1/users/alice/tokens', {});
    const user = client(nginx.base, { token: own.body.token });
    assertError(await user.get('/v1/settings/tokens'), 403, 'admin_required');
    assertError(await user.put('/v1/settings/tokens', rsSettings()), 403, 'admin_required');
    assertError(await user.del('/v1/settings/tokens'), 403, 'admin_required');
    assertError(await client(nginx.base).get('/v1/settings/tokens'), 401, 'unauthenticated');
    assertError(await client(nginx.base).put('/v1/settings/tokens', rsSettings()), 401, 'unauthenticated');
    assertError(await client(nginx.base, { token: sign('RS256', rsa.privateKey, claims()) })
        .get('/v1/settings/tokens', { 'x-parley-tenant': ta.id }), 403, 'admin_required');
});

test('revocation applies to IdP tokens: by jti, and all tokens of a user', async () => {
    assert.equal((await adminA.put('/v1/settings/tokens', rsSettings())).status, 200);
    const t1 = sign('RS256', rsa.privateKey, claims({ sub: 'rev', jti: 'idp-jti-1' }));
    const t2 = sign('RS256', rsa.privateKey, claims({ sub: 'rev', jti: 'idp-jti-2' }));
    assert.equal((await asIdp(t1).get('/v1/users/rev')).status, 200);
    assert.equal((await adminA.post('/v1/users/rev/tokens/revoke', { jti: 'idp-jti-1' })).status, 204);
    await sleep(1100);
    assertError(await asIdp(t1).get('/v1/users/rev'), 401, 'token_revoked');
    assert.equal((await asIdp(t2).get('/v1/users/rev')).status, 200, 'another jti still works');

    const old = sign('RS256', rsa.privateKey, claims({ sub: 'revall' }));
    const noIat = sign('RS256', rsa.privateKey, claims({ sub: 'revall', iat: undefined }));
    assert.equal((await asIdp(old).get('/v1/users/revall')).status, 200);
    assert.equal((await asIdp(noIat).get('/v1/users/revall')).status, 200, 'no iat is fine before any revocation');
    assert.equal((await adminA.post('/v1/users/revall/tokens/revoke', {})).status, 204);
    await sleep(1100);
    assertError(await asIdp(old).get('/v1/users/revall'), 401, 'token_revoked');
    assertError(await asIdp(noIat).get('/v1/users/revall'), 401, 'token_revoked');
    const fresh = sign('RS256', rsa.privateKey, claims({ sub: 'revall', iat: now() + 2 }));
    assert.equal((await asIdp(fresh).get('/v1/users/revall')).status, 200, 'issued after the revocation');
});

test('tenant isolation: another tenant\'s settings and data', async () => {
    assert.equal((await adminA.put('/v1/settings/tokens', rsSettings())).status, 200);
    const tokA = sign('RS256', rsa.privateKey, claims());

    // B has no settings: A's IdP tokens mean nothing there
    assertError(await adminB.get('/v1/settings/tokens'), 404, 'token_settings_not_found');
    assertError(await asIdp(tokA, tb).get('/v1/users/alice'), 401, 'token_key_unknown');
    // a tenant that does not exist looks the same
    assertError(await asIdp(tokA, { id: '123456789' }).get('/v1/users/alice'), 401, 'token_key_unknown');

    // B trusts another key: A's token still fails there
    assert.equal((await adminB.put('/v1/settings/tokens', rsSettings({ public_keys_pem: [rsa2Pem] }))).status, 200);
    assertError(await asIdp(tokA, tb).get('/v1/users/alice'), 401, 'token_signature_invalid');
    assert.deepEqual((await adminA.get('/v1/settings/tokens')).body.public_keys_pem, [rsaPem], 'A unchanged');

    // B's token is B's alice, who sees B's users and none of A's
    const tokB = sign('RS256', rsa2.privateKey, claims());
    const meB = await asIdp(tokB, tb).get('/v1/users/alice');
    assert.equal(meB.status, 200);
    assert.equal(meB.body.name, 'B alice');
    assert.equal((await asIdp(tokB, tb).get('/v1/users/only-b')).status, 200);
    assertError(await asIdp(tokB, tb).get('/v1/users/bob'), 404, 'user_not_found');
    assertError(await asIdp(tokA, ta).get('/v1/users/only-b'), 404, 'user_not_found');
    // B's token with A named is checked under A's settings
    assertError(await asIdp(tokB, ta).get('/v1/users/alice'), 401, 'token_signature_invalid');

    // B deletes its settings: at once on this worker
    assert.equal((await adminB.del('/v1/settings/tokens')).status, 204);
    assertError(await asIdp(tokB, tb).get('/v1/users/alice'), 401, 'token_key_unknown');
    assertError(await adminB.get('/v1/settings/tokens'), 404, 'token_settings_not_found');
    assertError(await adminB.del('/v1/settings/tokens'), 404, 'token_settings_not_found');
    assert.equal((await asIdp(tokA, ta).get('/v1/users/alice')).status, 200, 'A still works');
});
