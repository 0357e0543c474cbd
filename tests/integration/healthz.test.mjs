// /healthz against real MariaDB, Redis and the dev Kafka broker, each a
// private instance so that this file can kill, pause and restart them.

import { test, before, after } from 'node:test';
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { startNginx, getJson, waitFor, sleep, Redis, MariaDB, Broker } from './lib/harness.mjs';

const REDIS_TIMEOUT = 500;
const DB_TIMEOUT = 700;
const KAFKA_TIMEOUT = 1000;

let redis, db, broker, nginx;

before(async () => {
    [redis, db, broker] = await Promise.all([Redis.start(), MariaDB.start(), Broker.start()]);
    nginx = await startNginx({
        name: 'healthz',
        workers: 1,
        main: 'thread_pool parley threads=2;',
        http: `
    ${db.directive(`pool=2 connect_timeout=${DB_TIMEOUT}ms timeout=${DB_TIMEOUT}ms reconnect=50ms..300ms`)}
    parley_redis 127.0.0.1:${redis.port} timeout=${REDIS_TIMEOUT}ms connect_timeout=${REDIS_TIMEOUT}ms reconnect=50ms..300ms;
    parley_kafka 127.0.0.1:${broker.port} timeout=${KAFKA_TIMEOUT}ms health_topic=parley.health;`,
        server: `
        location = /healthz { parley_healthz; }`,
    });
});

after(async () => {
    if (nginx) await nginx.finish();
    for (const s of [redis, db, broker]) if (s) await s.kill();
});

const healthz = () => getJson(`${nginx.base}/healthz`);

async function waitHealthy() {
    return waitFor('healthz 200', async () => {
        const r = await healthz();
        return r.status === 200 ? r : null;
    }, { timeout: 15000, interval: 100 });
}

test('every backend up: 200 with a state and latency per backend', async () => {
    const r = await waitHealthy();
    assert.equal(r.body.status, 'ok');
    assert.deepEqual(r.body.down, []);
    assert.deepEqual(Object.keys(r.body.backends).sort(), ['db', 'kafka', 'redis:all']);
    for (const [name, b] of Object.entries(r.body.backends)) {
        assert.equal(b.state, 'up', name);
        assert.equal(typeof b.latency_ms, 'number', name);
        assert.ok(b.latency_ms >= 0 && b.latency_ms < 1000, `${name} latency ${b.latency_ms}`);
    }
    assert.equal(r.body.backends.db.address, `127.0.0.1:${db.port}`);
    // the Kafka check proves the write path: a heartbeat acknowledged on the loop
    assert.match(r.body.backends.kafka.detail, /^1 broker\(s\), heartbeat delivered to partition \d+ offset \d+$/);
    const offsets = [];
    for (let i = 0; i < 3; i++) {
        const h = await healthz();
        offsets.push(Number(/offset (\d+)/.exec(h.body.backends.kafka.detail)[1]));
    }
    // one key, so one partition: each heartbeat is the next record there
    assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `offsets ${offsets}`);
    assert.equal(r.body.backends['redis:all'].address, `127.0.0.1:${redis.port}`);
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('cache-control'), 'no-store');
});

test('only GET and HEAD', async () => {
    const r = await fetch(`${nginx.base}/healthz`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 405);
});

// A backend that stops answering (SIGSTOP) must turn /healthz to 503 within
// its timeout, while the single worker keeps serving other requests.
async function checkHung(service, name, timeout) {
    await waitHealthy();
    await service.pause();
    try {
        const pending = healthz();
        await sleep(50);
        const t0 = performance.now();
        const ping = await fetch(`${nginx.base}/ping`);
        const pingMs = performance.now() - t0;
        assert.equal(ping.status, 200);
        assert.ok(pingMs < 200, `worker stalled: /ping took ${pingMs.toFixed(1)} ms while ${name} hung`);
        const r = await pending;
        assert.equal(r.status, 503);
        assert.equal(r.body.status, 'degraded');
        assert.deepEqual(r.body.down, [name]);
        assert.equal(r.body.backends[name].state, 'down');
        assert.ok(r.body.backends[name].detail.length > 0);
        assert.ok(r.ms < timeout * 2 + 1500, `503 took ${r.ms.toFixed(0)} ms, timeout is ${timeout} ms`);
    } finally {
        service.resume();
    }
    const back = await waitHealthy();
    assert.equal(back.body.backends[name].state, 'up');
}

// A backend that dies must be reported at once (connection refused) or
// within its timeout, and be found again after it restarts, without any
// nginx restart.
async function checkKilled(service, name, timeout) {
    await waitHealthy();
    await service.kill();
    const r = await waitFor(`${name} reported down`, async () => {
        const h = await healthz();
        return h.status === 503 ? h : null;
    }, { timeout: timeout * 2 + 2000, interval: 100 });
    assert.ok(r.body.down.includes(name), JSON.stringify(r.body));
    assert.ok(r.ms < timeout * 2 + 1500, `503 took ${r.ms.toFixed(0)} ms`);
    const ping = await fetch(`${nginx.base}/ping`);
    assert.equal(ping.status, 200);
    await service.start();
    const back = await waitHealthy();
    assert.equal(back.body.backends[name].state, 'up');
}

test('redis hung: 503 naming it within the timeout, worker keeps serving, recovers', () =>
    checkHung(redis, 'redis:all', REDIS_TIMEOUT));

test('redis killed and restarted: 503 naming it, then recovery without nginx restart', () =>
    checkKilled(redis, 'redis:all', REDIS_TIMEOUT));

test('mariadb hung: 503 naming db within the timeout, worker keeps serving, recovers', () =>
    checkHung(db, 'db', DB_TIMEOUT));

test('mariadb killed and restarted: 503 naming db, then recovery', () =>
    checkKilled(db, 'db', DB_TIMEOUT));

test('kafka broker hung: 503 naming kafka, worker keeps serving, recovers', () =>
    checkHung(broker, 'kafka', KAFKA_TIMEOUT));

test('kafka broker killed and restarted: 503 naming kafka, then recovery', () =>
    checkKilled(broker, 'kafka', KAFKA_TIMEOUT));

test('many concurrent health checks while redis is down all answer', async () => {
    await waitHealthy();
    await redis.kill();
    try {
        const all = await Promise.all(Array.from({ length: 50 }, () => healthz()));
        for (const r of all) {
            assert.equal(r.status, 503);
            assert.ok(r.body.down.includes('redis:all'));
        }
    } finally {
        await redis.start();
    }
    await waitHealthy();
});

test('repeated reloads: new workers reconnect every backend, old ones exit cleanly', async () => {
    await waitHealthy();
    const workers = () => fs.readFileSync(`/proc/${nginx.child.pid}/task/${nginx.child.pid}/children`, 'utf8')
        .trim().split(/\s+/).filter(Boolean);
    const before = workers();
    for (let i = 0; i < 3; i++) {
        nginx.reload();
        await sleep(300);
    }
    const after = await waitFor('old workers gone', () => {
        const now = workers();
        return now.length === 1 && !before.includes(now[0]) ? now : null;
    }, { timeout: 15000, interval: 100 });
    assert.equal(after.length, 1);
    const r = await waitHealthy();
    for (const b of Object.values(r.body.backends)) assert.equal(b.state, 'up');
});
