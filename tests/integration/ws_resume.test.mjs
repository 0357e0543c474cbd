// No loss across disconnects: resume from positions or a sync token gives
// exactly what was missed, then the live stream; a resume over budget names
// the ranges to read over REST; a slow client is dropped without holding
// others back and resumes without loss; a reload says when to come back;
// a Redis outage costs no event (docs/realtime.md, "Delivery").

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApi, createTenant, client, waitFor, Redis, stackEnv, tokenKeyFile, startNginx } from './lib/harness.mjs';
import { connect } from './lib/wsclient.mjs';

let nginx, tenant, admin;
const tok = {};
const u = {};
let n = 0;

async function user(id) {
    assert.equal((await admin.post('/v1/users', { user_id: id })).status, 201);
    const t = await admin.post(`/v1/users/${id}/tokens`, {});
    tok[id] = t.body.token;
    u[id] = client(nginx.base, { token: t.body.token });
}

async function group(owner, members) {
    const r = await u[owner].post('/v1/conversations', { type: 'group', name: 'g', members });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
}

async function send(who, cid, text = `m${++n}`) {
    const r = await u[who].post(`/v1/conversations/${cid}/messages`, { client_id: `c${++n}-${Date.now()}`, type: 'text', text });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
}

// the client's positions: the last event_seq it has of each conversation
function positions(c) {
    const p = {};
    for (const f of c.events()) p[f.conversation_id] = Math.max(p[f.conversation_id] || 0, f.event_seq);
    return p;
}

async function logOf(cid, after = 0) {
    const r = await u.alice.get(`/v1/conversations/${cid}/events?after=${after}&limit=200`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.events;
}

function assertContiguous(events, from, to, what) {
    assert.deepEqual(events.map((e) => e.event_seq), Array.from({ length: to - from }, (_, i) => from + 1 + i), what);
}

before(async () => {
    nginx = await startApi({
        name: 'ws-resume', workers: 2,
        server: 'location = /v1/ws { parley_ws; }\n        location = /v1/ws-small { parley_ws; parley_ws_resume_max 5; }',
        http: 'parley_ws_reconnect_window 5s;',
    });
    tenant = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    for (const id of ['alice', 'bob', 'carol']) await user(id);
});

after(async () => { await nginx?.finish(); });

test('a dropped connection resumes with exactly what it missed, then live', async () => {
    const a = await group('alice', ['bob']);
    const b = await group('alice', ['bob', 'carol']);
    const c = await group('carol', ['bob']);
    let bob = await connect(nginx.port, tok.bob);
    await send('alice', a); await send('alice', b); await send('carol', c);
    await waitFor('three', () => bob.events().filter((f) => f.type === 'message.new').length === 3);
    const pos = positions(bob);
    bob.ws.terminate();                      // no close frame: as a network drop

    const m1 = await send('alice', a, 'while away 1');
    await send('alice', a, 'while away 2');
    await u.alice.patch(`/v1/conversations/${a}/messages/${m1.seq}`, { text: 'edited while away' });
    await send('carol', b, 'in b');
    await u.carol.put(`/v1/conversations/${c}/messages/1/reactions/%E2%9C%85`);
    assert.ok((await u.carol.del(`/v1/conversations/${c}/members/bob`)).status < 300);  // bob kicked from c
    await send('carol', c, 'after the kick');

    bob = await connect(nginx.port, tok.bob, { resume: { positions: pos } });
    const resumed = bob.frames[bob.startedAt];
    assert.equal(resumed.complete, true);
    assert.deepEqual(resumed.gaps, []);
    const replay = bob.frames.slice(0, bob.startedAt).filter((f) => f.event_seq !== undefined);
    assert.equal(resumed.replayed, replay.length);
    for (const cid of [a, b]) {
        const expected = await logOf(cid, pos[cid]);
        assert.deepEqual(replay.filter((f) => f.conversation_id === cid), expected, `replay of ${cid} is the log`);
    }
    // c: up to the kick and nothing after it
    const inC = replay.filter((f) => f.conversation_id === c);
    assert.deepEqual(inC.map((f) => f.type), ['reaction.added', 'member.kicked']);
    assert.equal(resumed.conversations, 2);

    const live = await send('alice', a, 'live again');
    const got = await bob.next((f) => f.payload?.id === live.id);
    assert.equal(got.event_seq, Math.max(...replay.filter((f) => f.conversation_id === a).map((f) => f.event_seq)) + 1);
    await new Promise((r) => setTimeout(r, 300));
    const all = bob.events(a).map((f) => f.event_seq);
    assert.equal(new Set(all).size, all.length, 'no duplicate');
    await bob.close();
});

test('a resume from a sync token starts where GET /v1/sync left the client', async () => {
    const cid = await group('alice', ['bob']);
    await send('alice', cid, 'before the token');
    let s = await u.bob.get('/v1/sync');
    while (s.body.has_more) s = await u.bob.get(`/v1/sync?since=${s.body.next}`);
    const token = s.body.next;
    const m = await send('alice', cid, 'after the token');
    const bob = await connect(nginx.port, tok.bob, { resume: { sync_token: token } });
    const replay = bob.frames.slice(0, bob.startedAt).filter((f) => f.event_seq !== undefined);
    assert.deepEqual(replay.map((f) => f.payload?.id), [m.id]);
    assert.equal(bob.frames[bob.startedAt].complete, true);
    const bad = await connect(nginx.port, tok.bob, { start: false });
    const r = await bad.op({ op: 'resume', sync_token: 'AAAAAAAAAAAA' });
    assert.equal(r.type, 'error');
    assert.equal(r.error.code, 'invalid_cursor');
    await bob.close(); await bad.close();
});

test('a resume over its budget names the ranges to read over REST, and live goes on without a gap', async () => {
    const a = await group('alice', ['bob']);
    const b = await group('alice', ['bob']);
    let bob = await connect(nginx.port, tok.bob, { path: '/v1/ws-small' });
    await send('alice', a); await send('alice', b);
    await waitFor('two', () => bob.events().filter((f) => f.type === 'message.new').length === 2);
    const pos = positions(bob);
    await bob.close();
    for (let i = 0; i < 8; i++) await send('alice', a, `a${i}`);
    await send('alice', b, 'b0');

    bob = await connect(nginx.port, tok.bob, { path: '/v1/ws-small', resume: { positions: pos } });
    const resumed = bob.frames[bob.startedAt];
    assert.equal(resumed.complete, false);
    const gapA = resumed.gaps.find((g) => g.conversation_id === a);
    assert.ok(gapA, JSON.stringify(resumed));
    assert.equal(gapA.after_event_seq, pos[a]);
    // what the gap names is exactly what the log holds there
    const fill = (await logOf(a, gapA.after_event_seq)).filter((e) => e.event_seq <= gapA.until_event_seq);
    assertContiguous(fill, gapA.after_event_seq, gapA.until_event_seq, 'the gap over REST');
    assert.equal(fill.filter((e) => e.type === 'message.new').length, 8);
    // whatever was not a gap was replayed, and the live stream follows the gap
    const replayed = bob.frames.slice(0, bob.startedAt).filter((f) => f.event_seq !== undefined);
    assert.ok(replayed.length <= 5);
    const live = await send('alice', a, 'after the gap');
    const got = await bob.next((f) => f.payload?.id === live.id);
    assert.equal(got.event_seq, gapA.until_event_seq + 1);
    await bob.close();
});

test('a client that cannot keep up is closed with 4008; the others are not held back; it resumes without loss', async () => {
    // small kernel buffers, so that the queue in nginx is what fills up
    const slowConf = await startApi({ name: 'ws-slow', http: 'client_body_buffer_size 64k;', listen: ' sndbuf=16k',
        server: 'location = /v1/ws { parley_ws; parley_ws_send_buffer 32k; }' });
    try {
        const cid = await group('alice', ['bob', 'carol']);
        const fast = await connect(slowConf.port, tok.carol);
        let slow = await connect(slowConf.port, tok.bob);
        const pos = positions(slow);
        pos[cid] = (await logOf(cid)).at(-1).event_seq;
        slow.ws._socket.pause();                  // stops reading
        const text = 'x'.repeat(12000);
        const N = 300;
        const t0 = Date.now();
        const sent = [];
        for (let i = 0; i < N; i++) {
            const r = await client(slowConf.base, { token: tok.alice }).post(`/v1/conversations/${cid}/messages`,
                { client_id: `slow-${i}-${t0}`, type: 'text', text: `${i} ${text}` });
            assert.equal(r.status, 201);
            sent.push(r.body.id);
        }
        await waitFor('the fast client has all', () => fast.events(cid).filter((f) => f.type === 'message.new').length === N, { timeout: 20000 });
        const fastMs = Date.now() - t0;
        // longer than parley_ws_close_timeout: the close code still arrives
        await new Promise((r) => setTimeout(r, 2500));
        slow.ws._socket.resume();
        const closed = await slow.waitClosed(10000);
        assert.equal(closed.code, 4008, JSON.stringify(closed));
        // what it got before the close, then the resume: every message once
        const got = slow.events(cid).filter((f) => f.type === 'message.new').map((f) => f.payload.id);
        assert.ok(got.length < N, 'it was cut off');
        const p = positions(slow);
        slow = await connect(slowConf.port, tok.bob, { resume: { positions: { ...pos, ...p } } });
        const rest = slow.events(cid).filter((f) => f.type === 'message.new').map((f) => f.payload.id);
        const resumedF = slow.frames[slow.startedAt];
        assert.equal(resumedF.complete, true, JSON.stringify(resumedF));
        assert.deepEqual([...got, ...rest], sent, `got ${got.length}, then ${rest.length}: ${JSON.stringify(resumedF)}`);
        assert.ok(fastMs < 20000, `the fast client took ${fastMs} ms`);
        await slow.close(); await fast.close();
    } finally {
        await slowConf.finish();
    }
});

test('a reload closes with 1001 and a spread-out reconnect delay; nothing is lost', async () => {
    const cid = await group('alice', ['bob']);
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await connect(nginx.port, tok.bob));
    const pos = positions(clients[0]);
    pos[cid] = (await logOf(cid)).at(-1).event_seq;
    nginx.reload();
    const delays = [];
    for (const c of clients) {
        const closed = await c.waitClosed(8000);
        assert.equal(closed.code, 1001);
        const m = /retry_ms=(\d+)/.exec(closed.reason);
        assert.ok(m, closed.reason);
        const goaway = c.frames.find((f) => f.type === 'goaway');
        assert.equal(goaway.retry_ms, Number(m[1]));
        assert.ok(goaway.retry_ms >= 0 && goaway.retry_ms < 5000);
        delays.push(goaway.retry_ms);
    }
    assert.ok(new Set(delays).size > 1, `delays spread: ${delays}`);
    const during = await send('alice', cid, 'during the reload');
    await waitFor('new workers', async () => {
        try { const c = await connect(nginx.port, tok.bob, { resume: { positions: pos } }); clients.push(c); return c; } catch { return null; }
    });
    const back = clients.at(-1);
    await back.next((f) => f.payload?.id === during.id);
    await back.close();
});

test('a Redis outage loses no event: the gateway reads what passed once it is back', async () => {
    const redis = await Redis.start();
    const env = stackEnv();
    const own = await startNginx({
        name: 'ws-redis',
        main: 'thread_pool parley threads=1;',
        http: `
    parley_db 127.0.0.1:${env.PARLEY_DB_PORT} user=${env.PARLEY_DB_USER} password=${env.PARLEY_DB_PASSWORD} database=${env.PARLEY_DB_NAME} pool=4;
    parley_redis 127.0.0.1:${redis.port} reconnect=100ms..500ms timeout=1s;
    parley_token_key ${tokenKeyFile()};`,
        server: 'location /v1/ { parley_api; }\n        location = /v1/ws { parley_ws; }',
    });
    try {
        const rest = client(own.base, { token: tok.alice });
        const mk = async (members) => (await rest.post('/v1/conversations', { type: 'group', name: 'r', members })).body.id;
        const cid = await mk(['bob']);
        const bob = await connect(own.port, tok.bob);
        await redis.kill();
        const ids = [];
        for (let i = 0; i < 3; i++) {
            const r = await rest.post(`/v1/conversations/${cid}/messages`, { client_id: `outage-${i}-${Date.now()}`, type: 'text', text: `o${i}` });
            assert.equal(r.status, 201);
            ids.push(r.body.id);
        }
        // added to a conversation while Redis was away
        const later = await mk(['carol']);
        assert.ok((await rest.post(`/v1/conversations/${later}/members`, { user_ids: ['bob'] })).status < 300);
        await redis.start();
        for (const id of ids) await bob.next((f) => f.payload?.id === id, { timeout: 10000 });
        const seqs = bob.events(cid).map((f) => f.event_seq);
        assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
        assert.equal(new Set(seqs).size, seqs.length);
        // and the conversation joined meanwhile is live now
        const m = await rest.post(`/v1/conversations/${later}/messages`, { client_id: `in-${Date.now()}`, type: 'text', text: 'you are in' });
        await bob.next((f) => f.payload?.id === m.body.id, { timeout: 10000 });
        await bob.close();
    } finally {
        await own.stop();
        await redis.kill();
    }
});

test('sharded pub/sub (SPUBLISH/SSUBSCRIBE) carries the same traffic across nodes', async () => {
    const opts = { server: 'location = /v1/ws { parley_ws; }', http: 'parley_pubsub_sharded on;' };
    const s1 = await startApi({ name: 'ws-sharded1', ...opts });
    const s2 = await startApi({ name: 'ws-sharded2', ...opts });
    try {
        const rest = client(s1.base, { token: tok.alice });
        const cid = (await rest.post('/v1/conversations', { type: 'group', name: 's', members: ['bob'] })).body.id;
        const bob = await connect(s2.port, tok.bob);
        const m = await rest.post(`/v1/conversations/${cid}/messages`, { client_id: `sh-${Date.now()}`, type: 'text', text: 'sharded' });
        const got = await bob.next((f) => f.payload?.id === m.body.id);
        assert.equal(got.payload.text, 'sharded');
        const alice = await connect(s1.port, tok.alice);
        await alice.op({ op: 'typing.start', conversation_id: cid });
        await bob.next('typing.start');
        await alice.close(); await bob.close();
    } finally {
        await s1.finish();
        await s2.finish();
    }
});
