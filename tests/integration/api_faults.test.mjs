// The REST API when its database hangs or dies: 503 with a retryable code
// within the configured timeout, the worker keeps serving, and a send
// retried with the same client id after recovery is stored exactly once.
// A private MariaDB, so that pausing it disturbs no other test.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startNginx, tokenKeyFile, client, sleep, waitFor, MariaDB, bin, repo } from './lib/harness.mjs';

const DB_TIMEOUT = 800;
let db, nginx, admin, alice, cid;

before(async () => {
    db = await MariaDB.start();
    const url = `mysql://parley:pw@127.0.0.1:${db.port}/parley`;
    const migrate = spawnSync(path.join(bin, 'parleyctl'), ['--db', url, 'migrate', '--dir', path.join(repo, 'conf/migrations')], { encoding: 'utf8' });
    assert.equal(migrate.status, 0, migrate.stderr);
    const t = spawnSync(path.join(bin, 'parleyctl'), ['--db', url, 'tenant', 'create', '--name', 'faults'], { encoding: 'utf8' });
    assert.equal(t.status, 0, t.stderr);
    const key = /PARLEY_API_KEY=(\S+)/.exec(t.stdout)[1];

    nginx = await startNginx({
        name: 'api-faults',
        workers: 1,
        main: 'thread_pool parley threads=1;',
        http: `
    ${db.directive(`pool=2 connect_timeout=${DB_TIMEOUT}ms timeout=${DB_TIMEOUT}ms reconnect=50ms..300ms`)}
    parley_token_key ${tokenKeyFile()};`,
        server: 'location /v1/ { parley_api; }',
    });
    admin = client(nginx.base, { key });
    for (const u of ['alice', 'bob']) assert.equal((await admin.post('/v1/users', { user_id: u })).status, 201);
    alice = admin.as({ user: 'alice' });
    const c = await alice.post('/v1/conversations', { type: 'direct', peer: 'bob' });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    cid = c.body.id;
});

after(async () => {
    if (db) await db.kill();
    if (nginx) await nginx.finish();
});

async function messages() {
    const r = await alice.get(`/v1/conversations/${cid}/messages?limit=100`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.messages;
}

test('a hung database: 503 retryable within the timeout, other requests served, retry stored once', async () => {
    await db.pause();
    let paused = true;
    try {
        const t0 = performance.now();
        const pending = alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'hang-1', text: 'hello' });
        await sleep(50);
        const ping = await fetch(`${nginx.base}/ping`);
        assert.equal(ping.status, 200, 'the worker answers while the store hangs');
        const r = await pending;
        const ms = performance.now() - t0;
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'unavailable');
        assert.equal(r.body.error.retryable, true);
        assert.ok(ms < DB_TIMEOUT * 3 + 1000, `answered after ${ms.toFixed(0)} ms`);
        db.resume();
        paused = false;
    } finally {
        if (paused) db.resume();
    }

    // the client retries with the same id until the store is back
    const stored = await waitFor('send after recovery', async () => {
        const r = await alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'hang-1', text: 'hello' });
        return r.status === 201 || r.status === 200 ? r : null;
    }, { timeout: 10000, interval: 200 });
    const again = await alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'hang-1', text: 'hello' });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, stored.body.id);
    const all = (await messages()).filter((m) => m.client_id === 'hang-1');
    assert.equal(all.length, 1, 'stored exactly once');
});

test('a dead database: 503 at once or within the timeout, then recovery without restart', async () => {
    await db.kill();
    const r = await alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'dead-1', text: 'x' });
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.equal(r.body.error.retryable, true);
    assert.equal((await fetch(`${nginx.base}/ping`)).status, 200);
    await db.start();
    const ok = await waitFor('send after restart', async () => {
        const s = await alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'dead-1', text: 'x' });
        return s.status === 201 || s.status === 200 ? s : null;
    }, { timeout: 15000, interval: 200 });
    assert.equal(ok.body.client_id, 'dead-1');
    assert.equal((await messages()).filter((m) => m.client_id === 'dead-1').length, 1);
    // sequences stayed gap-free through the outage
    const seqs = (await messages()).map((m) => m.seq).sort((a, b) => a - b);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
});

test('concurrent retries while the store recovers still store one message', async () => {
    await db.pause();
    const during = Promise.all(Array.from({ length: 10 }, () =>
        alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'storm-1', text: 'storm' })));
    await sleep(200);
    db.resume();
    const answers = await during;
    for (const a of answers) assert.ok([200, 201, 503].includes(a.status), JSON.stringify(a.body));
    await waitFor('stored', async () => {
        const s = await alice.post(`/v1/conversations/${cid}/messages`, { client_id: 'storm-1', text: 'storm' });
        return s.status === 200 || s.status === 201;
    }, { timeout: 10000, interval: 200 });
    assert.equal((await messages()).filter((m) => m.client_id === 'storm-1').length, 1);
});
