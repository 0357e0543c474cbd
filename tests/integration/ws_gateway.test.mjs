// The WebSocket gateway against real MariaDB and Redis: the upgrade and its
// refusals, the frame protocol's violations, delivery to every device of
// every member across workers and nodes, operations that run the REST
// routes, typing, receipts, signals and membership changes on live
// connections (docs/realtime.md).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { startApi, createTenant, client, waitFor, tokenKeyFile } from './lib/harness.mjs';
import { connect } from './lib/wsclient.mjs';

const WS = 'location = /v1/ws { parley_ws; }';
let nginx, nginx2, tenant, admin;
const tok = {};
const u = {};
let n = 0;

async function user(id) {
    const c = await admin.post('/v1/users', { user_id: id, name: id });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const t = await admin.post(`/v1/users/${encodeURIComponent(id)}/tokens`, {});
    assert.equal(t.status, 201);
    tok[id] = t.body.token;
    u[id] = client(nginx.base, { token: t.body.token });
}

async function group(owner, members) {
    const r = await u[owner].post('/v1/conversations', { type: 'group', name: 'g', members });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
}

async function send(who, cid, text = `m${++n}`) {
    const r = await u[who].post(`/v1/conversations/${cid}/messages`, { client_id: `c${++n}`, type: 'text', text });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
}

// raw bytes over TCP: what no well-behaved client library would send
async function raw(port, bytes, { upgrade = true, token } = {}) {
    return new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        let got = Buffer.alloc(0);
        s.on('data', (d) => { got = Buffer.concat([got, d]); });
        s.on('error', reject);
        s.on('close', () => resolve(got));
        s.on('connect', () => {
            if (upgrade) {
                s.write(`GET /v1/ws?access_token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`
                    + `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n`
                    + `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`);
            }
            setTimeout(() => s.write(bytes), 300);
            setTimeout(() => s.destroy(), 4000);
        });
    });
}

// the status code of the first close frame the server sent
function closeCode(buf) {
    const i = buf.indexOf('\r\n\r\n');
    let p = i + 4;
    while (p + 2 <= buf.length) {
        const op = buf[p] & 0x0f;
        let len = buf[p + 1] & 0x7f;
        let h = 2;
        if (len === 126) { len = buf.readUInt16BE(p + 2); h = 4; }
        if (op === 8) return buf.readUInt16BE(p + h);
        p += h + len;
    }
    return null;
}

function mask(op, payload, { fin = true, rsv = 0, masked = true } = {}) {
    const b = Buffer.from(payload);
    const key = crypto.randomBytes(4);
    const head = Buffer.from([(fin ? 0x80 : 0) | rsv | op, (masked ? 0x80 : 0) | b.length]);
    const body = Buffer.from(b.map((x, i) => x ^ key[i % 4]));
    return masked ? Buffer.concat([head, key, body]) : Buffer.concat([head, b]);
}

before(async () => {
    const http = 'parley_ws_max_message 64k; parley_ws_max_frame 16k;';
    nginx = await startApi({ name: 'ws', workers: 2, server: WS, http });
    nginx2 = await startApi({ name: 'ws-node2', workers: 1, server: WS, http });
    tenant = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    for (const id of ['alice', 'bob', 'carol', 'dave', 'erin']) await user(id);
});

after(async () => {
    await nginx?.finish();
    await nginx2?.finish();
});

test('the upgrade refuses what is not a WebSocket handshake or not a user token', async () => {
    const plain = await fetch(`${nginx.base}/v1/ws`);
    assert.equal(plain.status, 426);
    assert.equal(plain.headers.get('upgrade'), 'websocket');
    assert.equal((await plain.json()).error.code, 'websocket_handshake');

    const none = await connect(nginx.port, undefined);
    assert.equal(none.unexpected.status, 401);
    const bad = await connect(nginx.port, 'not.a.token');
    assert.equal(bad.unexpected.status, 401);
    const key = await connect(nginx.port, tenant.key);
    assert.equal(key.unexpected.status, 403);
    assert.equal(JSON.parse(key.unexpected.body).error.code, 'user_required');

    // the browser form: the token rides in Sec-WebSocket-Protocol, never echoed
    const b = await connect(nginx.port, undefined, { protocols: ['parley.v1', `bearer.${tok.bob}`] });
    assert.equal(b.ws.protocol, 'parley.v1');
    await b.close();
    const wrong = await connect(nginx.port, undefined, { protocols: ['chat', `bearer.${tok.bob}`] });
    assert.equal(wrong.unexpected.status, 400);
});

test('frames a client must not send close the connection with the RFC 6455 code', async () => {
    const cases = [
        ['unmasked', mask(1, '{"op":"ping"}', { masked: false }), 1002],
        ['binary', mask(2, 'abc'), 1003],
        ['reserved bit', mask(1, '{}', { rsv: 0x20 }), 1002],
        ['reserved opcode', mask(3, 'x'), 1002],
        ['invalid UTF-8', mask(1, Buffer.from([0x7b, 0xff, 0x7d])), 1007],
        ['fragmented ping', mask(9, 'x', { fin: false }), 1002],
        ['continuation first', mask(0, 'x'), 1002],
        ['too large', Buffer.concat([Buffer.from([0x81, 0xff, 0, 0, 0, 0, 0, 1, 0, 0]), crypto.randomBytes(4)]), 1009],
    ];
    for (const [name, bytes, code] of cases) {
        const got = await raw(nginx.port, bytes, { token: tok.carol });
        assert.match(got.toString('latin1'), /^HTTP\/1.1 101 /, name);
        assert.equal(closeCode(got), code, name);
    }
});

test('a message reaches every device of every member, across workers and nodes', async () => {
    const cid = await group('alice', ['bob', 'carol']);
    // bob on four devices: both workers of node 1 and node 2
    const devices = [];
    for (let i = 0; i < 6; i++) devices.push(await connect(i % 3 === 2 ? nginx2.port : nginx.port, tok.bob));
    const workers = new Set(devices.map((d) => d.frames[0].worker));
    assert.ok(workers.size >= 2, `connections on ${workers.size} worker(s)`);
    const carol = await connect(nginx2.port, tok.carol);
    const m = await send('alice', cid, 'to everyone');
    for (const c of [...devices, carol]) {
        const ev = await c.next((f) => f.type === 'message.new' && f.payload.id === m.id);
        assert.equal(ev.conversation_id, cid);
        assert.equal(ev.payload.text, 'to everyone');
        assert.equal(ev.actor_id, 'alice');
        assert.equal(typeof ev.event_seq, 'number');
    }
    // in order, no gap, no duplicate, on every device, for a burst
    const sent = [];
    for (let i = 0; i < 30; i++) sent.push(send(i % 2 ? 'alice' : 'carol', cid, `burst ${i}`));
    await Promise.all(sent);
    for (const c of [...devices, carol]) {
        await waitFor('burst', () => c.events(cid).filter((f) => f.type === 'message.new').length >= 31);
        const seqs = c.events(cid).map((f) => f.event_seq);
        for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `gap or duplicate: ${seqs}`);
    }
    for (const c of [...devices, carol]) await c.close();
});

test('sending over the socket is the REST send: ack with id and seq, idempotent, same checks', async () => {
    const cid = await group('alice', ['bob']);
    const a = await connect(nginx.port, tok.alice);
    const b = await connect(nginx2.port, tok.bob);
    const body = { client_id: 'ws-1', type: 'text', text: 'over the socket' };
    const ack = await a.op({ op: 'message.send', conversation_id: cid, body });
    assert.equal(ack.type, 'ack');
    assert.equal(ack.status, 201);
    assert.match(ack.body.id, /^\d+$/);
    assert.equal(ack.body.seq, 1);
    const again = await a.op({ op: 'message.send', conversation_id: cid, body });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, ack.body.id);
    const ev = await b.next((f) => f.type === 'message.new' && f.payload.id === ack.body.id);
    assert.equal(ev.payload.text, 'over the socket');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(b.events(cid).filter((f) => f.type === 'message.new').length, 1, 'the retry stored nothing new');
    // stored: REST history shows it
    const h = await u.bob.get(`/v1/conversations/${cid}/messages`);
    assert.deepEqual(h.body.messages.map((x) => x.id), [ack.body.id]);

    const bad = await a.op({ op: 'message.send', conversation_id: cid, body: { type: 'text', text: 'no client id' } });
    assert.equal(bad.type, 'error');
    assert.equal(bad.status, 422);
    assert.equal(bad.error.field, 'client_id');
    const other = await group('carol', ['dave']);
    const denied = await a.op({ op: 'message.send', conversation_id: other, body: { client_id: 'x', type: 'text', text: 'x' } });
    assert.equal(denied.status, 403);
    const unknown = await a.op({ op: 'message.launch', conversation_id: cid });
    assert.equal(unknown.error.code, 'unknown_op');
    a.send('not json');
    assert.equal((await a.next((f) => f.type === 'error' && f.error.code === 'invalid_json')).type, 'error');

    // edit, react, delete: every member sees each
    const ed = await a.op({ op: 'message.edit', conversation_id: cid, seq: 1, body: { text: 'edited' } });
    assert.equal(ed.status, 200, JSON.stringify(ed));
    await b.next((f) => f.type === 'message.edited' && f.payload.text === 'edited');
    const re = await b.op({ op: 'reaction.add', conversation_id: cid, seq: 1, emoji: '👍' });
    assert.ok(re.status < 300, JSON.stringify(re));
    const rev = await a.next((f) => f.type === 'reaction.added');
    assert.equal(rev.payload.emoji, '👍');
    const del = await a.op({ op: 'message.delete', conversation_id: cid, seq: 1 });
    assert.ok(del.status < 300, JSON.stringify(del));
    await b.next('message.deleted');
    await a.close(); await b.close();
});

test('receipts and typing reach the other members; typing is not echoed to its sender', async () => {
    const cid = await group('alice', ['bob', 'carol']);
    const a = await connect(nginx.port, tok.alice);
    const a2 = await connect(nginx2.port, tok.alice);     // alice's other device
    const b = await connect(nginx.port, tok.bob);
    const c = await connect(nginx2.port, tok.carol);
    const m = await send('alice', cid);
    await b.next('message.new');
    const d = await b.op({ op: 'mark.delivered', conversation_id: cid, body: { seq: m.seq } });
    assert.ok(d.status < 300, JSON.stringify(d));
    const r = await b.op({ op: 'mark.read', conversation_id: cid, body: { seq: m.seq } });
    assert.ok(r.status < 300, JSON.stringify(r));
    const seen = await a.next((f) => f.type === 'receipt.read' && f.subject_id === 'bob');
    assert.equal(seen.payload.read_seq, m.seq);
    await c.next((f) => f.type === 'receipt.read' && f.subject_id === 'bob');

    const mark = a.frames.length;
    const t = await b.op({ op: 'typing.start', conversation_id: cid });
    assert.equal(t.type === 'error', false, JSON.stringify(t));
    for (const x of [a, a2, c]) {
        const ty = await x.next((f) => f.type === 'typing.start', { from: mark });
        assert.equal(ty.user_id, 'bob');
        assert.equal(ty.conversation_id, cid);
        assert.ok(ty.ttl_ms > 0);
    }
    await b.op({ op: 'typing.stop', conversation_id: cid });
    await c.next('typing.stop');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(b.frames.filter((f) => f.type === 'typing.start').length, 0, 'not echoed');
    const notMember = await b.op({ op: 'typing.start', conversation_id: await group('dave', ['erin']) });
    assert.equal(notMember.error.code, 'not_member');
    for (const x of [a, a2, b, c]) await x.close();
});

test('signals go to a user on all devices or to a conversation, and are rate limited', async () => {
    const cid = await group('alice', ['bob', 'carol']);
    const b1 = await connect(nginx.port, tok.bob);
    const b2 = await connect(nginx2.port, tok.bob);
    const c = await connect(nginx.port, tok.carol);
    const a = await connect(nginx2.port, tok.alice);
    const ack = await a.op({ op: 'signal', user_id: 'bob', name: 'call.ring', data: { room: 7 } });
    assert.equal(ack.type, 'ack');
    for (const b of [b1, b2]) {
        const s = await b.next('signal');
        assert.deepEqual([s.name, s.from, s.data], ['call.ring', 'alice', { room: 7 }]);
    }
    await a.op({ op: 'signal', conversation_id: cid, name: 'game.move', data: { x: 1 } });
    const g = await c.next((f) => f.type === 'signal' && f.name === 'game.move');
    assert.equal(g.conversation_id, cid);
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => a.op({ op: 'signal', user_id: 'bob', name: `s${i}` })));
    assert.ok(results.some((r) => r.type === 'error' && r.error.code === 'rate_limited' && r.error.retryable));
    const big = await a.op({ op: 'signal', user_id: 'bob', name: 'x', data: { blob: 'x'.repeat(5000) } });
    assert.equal(big.error.code, 'too_large');
    for (const x of [a, b1, b2, c]) await x.close();
});

test('membership changes take effect on live connections', async () => {
    const cid = await group('alice', ['bob']);
    const d = await connect(nginx2.port, tok.dave);     // not a member yet
    const b = await connect(nginx.port, tok.bob);
    await send('alice', cid, 'before dave');
    assert.equal((await u.alice.post(`/v1/conversations/${cid}/members`, { user_ids: ['dave'] })).status < 300, true);
    const added = await d.next((f) => f.type === 'member.added' && f.subject_id === 'dave');
    assert.equal(added.conversation_id, cid);
    const m = await send('alice', cid, 'welcome dave');
    const got = await d.next((f) => f.type === 'message.new' && f.payload.id === m.id);
    assert.equal(got.payload.text, 'welcome dave');
    assert.equal(d.frames.some((f) => f.payload?.text === 'before dave'), false, 'nothing from before the joining');
    // typing works for the new member at once
    assert.notEqual((await d.op({ op: 'typing.start', conversation_id: cid })).type, 'error');

    // kicked: the kick is the last thing dave hears of it
    assert.ok((await u.alice.del(`/v1/conversations/${cid}/members/dave`)).status < 300);
    await d.next((f) => f.type === 'member.kicked' && f.subject_id === 'dave');
    await b.next((f) => f.type === 'member.kicked' && f.subject_id === 'dave');
    const after = await send('alice', cid, 'dave is gone');
    await b.next((f) => f.type === 'message.new' && f.payload.id === after.id);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(d.frames.some((f) => f.payload?.id === after.id), false);
    assert.equal((await d.op({ op: 'typing.start', conversation_id: cid })).error.code, 'not_member');
    await d.close(); await b.close();
});

test('a conversation created while connected is followed at once, by its creator and members', async () => {
    const a = await connect(nginx.port, tok.alice);
    const e = await connect(nginx2.port, tok.erin);
    const cid = await group('alice', ['erin']);
    const created = await a.next((f) => f.type === 'conversation.created' && f.conversation_id === cid);
    assert.equal(created.event_seq, 1);
    await e.next((f) => f.type === 'member.added' && f.conversation_id === cid);
    const m = await send('erin', cid, 'hello creator');
    await a.next((f) => f.payload?.id === m.id);
    const direct = (await u.erin.post('/v1/conversations', { type: 'direct', peer: 'alice' })).body.id;
    const dm = await send('erin', direct, 'direct hello');
    await a.next((f) => f.payload?.id === dm.id);
    await e.next((f) => f.payload?.id === dm.id);
    await a.close(); await e.close();
});

test('a closing handshake from the client is answered with its code', async () => {
    const b = await connect(nginx.port, tok.bob);
    const closed = await b.close(4321);
    assert.equal(closed.code, 4321);
    const c = await connect(nginx.port, tok.carol, { start: false });
    const p = await c.op({ op: 'ping' });
    assert.equal(p.type, 'pong');
    const early = await c.op({ op: 'typing.start', conversation_id: '1' });
    assert.equal(early.error.code, 'not_started');
    await c.close();
});

// a Parley user token minted here (docs/tokens.md) that expires in 2 s:
// the API's own minimum lifetime is 60 s
function shortToken(uid) {
    const secret = crypto.createHmac('sha256', fs.readFileSync(tokenKeyFile()))
        .update(`parley-user-token:${tenant.id}`).digest();
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const head = b64({ alg: 'HS256', typ: 'JWT', kid: `parley:${tenant.id}` });
    const body = b64({ iss: 'parley', aud: tenant.id, sub: uid, tid: tenant.id, jti: `${Date.now()}${n++}`, iat: now, exp: now + 2 });
    const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
    return `${head}.${body}.${sig}`;
}

test('an expired token closes the connection with 4001', async () => {
    const e = await connect(nginx.port, shortToken('erin'));
    assert.equal(e.frames[0].type, 'hello');
    const closed = await e.waitClosed(6000);
    assert.equal(closed.code, 4001);
    assert.match(closed.reason, /token expired/);
});

test('a connection that never starts is closed with 4003, pings or not', async () => {
    const own = await startApi({ name: 'ws-start', server: 'location = /v1/ws { parley_ws; parley_ws_start_timeout 1s; }' });
    try {
        const c = await connect(own.port, tok.bob, { start: false });
        const pinger = setInterval(() => c.ws.ping(), 200);
        const closed = await c.waitClosed(4000);
        clearInterval(pinger);
        assert.equal(closed.code, 4003);
    } finally {
        await own.finish();
    }
});
