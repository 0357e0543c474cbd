// `nginx -t` judges every parley_* directive: a malformed one fails with a
// message naming it; well-formed ones pass; the module loads when unused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nginxTest, startNginx, getJson } from './lib/harness.mjs';

const DB = 'parley_db 127.0.0.1:3306 user=u password=p database=d';

const rejected = [
    ['parley_db 127.0.0.1 user=u database=d;', /invalid address "127\.0\.0\.1" in "parley_db", expected host:port/],
    ['parley_db 127.0.0.1:70000 user=u database=d;', /invalid address "127\.0\.0\.1:70000" in "parley_db"/],
    ['parley_db 127.0.0.1:3306 database=d;', /"parley_db" needs user= and database=/],
    [`${DB} pool=0;`, /invalid pool "0" in "parley_db", expected 1\.\.256/],
    [`${DB} pool=1000;`, /invalid pool "1000" in "parley_db"/],
    [`${DB} queue=-1;`, /invalid queue "-1" in "parley_db"/],
    [`${DB} timeout=soon;`, /invalid timeout "soon" in "parley_db", expected a positive time/],
    [`${DB} connect_timeout=0;`, /invalid connect_timeout "0" in "parley_db"/],
    [`${DB} reconnect=5s;`, /invalid reconnect "5s" in "parley_db", expected MIN\.\.MAX/],
    [`${DB} reconnect=5s..1s;`, /invalid reconnect "5s\.\.1s" in "parley_db", MIN must be positive and not above MAX/],
    [`${DB} colour=blue;`, /unknown parameter "colour=blue" in "parley_db"/],
    [`${DB} pool;`, /invalid parameter "pool" in "parley_db", expected name=value/],
    [`${DB}; ${DB};`, /"parley_db" directive is duplicate/],
    ['parley_redis localhost;', /invalid address "localhost" in "parley_redis"/],
    ['parley_redis 127.0.0.1:6379 roles=cache,queue;', /unknown role "queue" in "parley_redis", expected cache, session or pubsub/],
    ['parley_redis 127.0.0.1:6379 roles=cache; parley_redis 127.0.0.1:6380 roles=cache,pubsub;',
        /"parley_redis" role "cache,pubsub" is already served by 127\.0\.0\.1:6379/],
    ['parley_redis 127.0.0.1:6379; parley_redis 127.0.0.1:6380 roles=pubsub;',
        /with several redis servers each needs roles=/],
    ['parley_redis 127.0.0.1:6379 db=x;', /invalid db "x" in "parley_redis"/],
    ['parley_kafka 127.0.0.1:9092,broker;', /invalid address "broker" in "parley_kafka"/],
    ['parley_kafka 127.0.0.1:9092 timeout=0s;', /invalid timeout "0s" in "parley_kafka"/],
    ['parley_kafka 127.0.0.1:9092 health_topic=;', /invalid health_topic "" in "parley_kafka"/],
    ['parley_kafka_property acks all;', /"parley_kafka_property" directive must follow "parley_kafka"/],
    ['parley_kafka 127.0.0.1:9092; parley_kafka_property no.such.property 1;',
        /invalid "parley_kafka_property" "no\.such\.property": No such configuration property/],
    ['parley_kafka 127.0.0.1:9092; parley_kafka_property acks maybe;',
        /invalid "parley_kafka_property" "acks"/],
];

for (const [http, message] of rejected) {
    test(`nginx -t rejects: ${http}`, () => {
        const r = nginxTest({ http });
        assert.equal(r.ok, false, r.output);
        assert.match(r.output, /\[emerg\]/);
        assert.match(r.output, message);
    });
}

test('nginx -t rejects parley_healthz outside a location', () => {
    const r = nginxTest({ http: 'parley_healthz;' });
    assert.equal(r.ok, false);
    assert.match(r.output, /"parley_healthz" directive is not allowed here/);
});

test('nginx -t rejects parley_db inside a location', () => {
    const r = nginxTest({ server: `location /x { ${DB}; }` });
    assert.equal(r.ok, false);
    assert.match(r.output, /"parley_db" directive is not allowed here/);
});

test('nginx -t accepts a full, well-formed configuration', () => {
    const r = nginxTest({
        main: 'thread_pool parley threads=2;',
        http: `
    parley_db unix:/run/mysqld/mysqld.sock user=u password= database=d pool=4 queue=64 connect_timeout=1s timeout=3s reconnect=50ms..2s;
    parley_redis 127.0.0.1:6379 roles=cache,session password=secret db=2 timeout=250ms;
    parley_redis 127.0.0.1:6380 roles=pubsub;
    parley_kafka 127.0.0.1:9092,127.0.0.1:9093 timeout=2s flush_timeout=1s health_topic=parley.health;
    parley_kafka_property linger.ms 5;
    parley_kafka_property compression.codec lz4;`,
        server: 'location = /healthz { parley_healthz; }',
    });
    assert.equal(r.ok, true, r.output);
});

test('the module loads and serves when no parley directive is used', async () => {
    const nginx = await startNginx({ name: 'unused' });
    const r = await getJson(`${nginx.base}/ping`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'pong\n');
    await nginx.finish();
});

test('healthz with no backend configured answers 200 with no backends', async () => {
    const nginx = await startNginx({ name: 'nobackend', server: 'location = /healthz { parley_healthz; }' });
    const r = await getJson(`${nginx.base}/healthz`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'ok', down: [], backends: {} });
    await nginx.finish();
});
