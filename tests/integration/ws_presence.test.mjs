// Presence: online when a user's first connection starts, offline with
// last-seen when its last one ends, on any node; kept in Redis with an
// expiry, so that the users of a node that dies go offline by themselves
// and watchers are told (docs/realtime.md, "Presence").

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startApi, createTenant, client, waitFor } from './lib/harness.mjs';
import { connect } from './lib/wsclient.mjs';

// short heartbeats so that an expiry happens within the test
const HTTP = 'parley_ws_ping_interval 500ms; parley_ws_idle_timeout 2s; parley_ws_presence_ttl 1500ms;';
const WS = 'location = /v1/ws { parley_ws; }';
let node1, node2, tenant, admin;
const tok = {};

before(async () => {
    node1 = await startApi({ name: 'ws-pres1', server: WS, http: HTTP });
    node2 = await startApi({ name: 'ws-pres2', server: WS, http: HTTP });
    tenant = createTenant();
    admin = client(node1.base, { key: tenant.key });
    for (const id of ['watcher', 'bob', 'carol', 'dan']) {
        assert.equal((await admin.post('/v1/users', { user_id: id })).status, 201);
        tok[id] = (await admin.post(`/v1/users/${id}/tokens`, {})).body.token;
    }
});

after(async () => {
    await node1?.finish();
    await node2?.stop();    // node 2 is killed by a test
});

const presence = (c, uid, status, from = 0) =>
    c.next((f) => f.type === 'presence' && f.user_id === uid && f.status === status, { from, timeout: 8000 });

test('online with the first device, offline with last-seen after the last, across nodes', async () => {
    const w = await connect(node1.port, tok.watcher);
    const ack = await w.op({ op: 'presence.subscribe', users: ['bob'] });
    assert.equal(ack.type, 'ack');
    const initial = await presence(w, 'bob', 'offline');
    assert.equal(initial.last_seen_ms, null, 'never seen');

    let mark = w.frames.length;
    const d1 = await connect(node2.port, tok.bob);
    await presence(w, 'bob', 'online', mark);
    mark = w.frames.length;
    const d2 = await connect(node1.port, tok.bob);
    await d1.close();
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(w.frames.slice(mark).filter((f) => f.type === 'presence').length, 0, 'a second device changes nothing');

    // a connection that stays refreshes its entry past the TTL
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(w.frames.slice(mark).filter((f) => f.type === 'presence').length, 0, 'still online');

    const t0 = Date.now();
    await d2.close();
    const off = await presence(w, 'bob', 'offline', mark);
    assert.ok(Math.abs(off.last_seen_ms - t0) < 2000, `last seen ${off.last_seen_ms} vs ${t0}`);

    // asked later, the answer carries last-seen
    const w2 = await connect(node2.port, tok.watcher);
    await w2.op({ op: 'presence.subscribe', users: ['bob'] });
    const later = await presence(w2, 'bob', 'offline');
    assert.equal(later.last_seen_ms, off.last_seen_ms);
    const bad = await w2.op({ op: 'presence.subscribe', users: [] });
    assert.equal(bad.error.code, 'invalid_field');
    await w.close(); await w2.close();
});

test('the users of a node that dies go offline by themselves', async () => {
    const w = await connect(node1.port, tok.watcher);
    await w.op({ op: 'presence.subscribe', users: ['carol', 'dan'] });
    await presence(w, 'carol', 'offline');
    // watching again watches once: one change, one event
    await w.op({ op: 'presence.subscribe', users: ['carol', 'dan'] });
    await presence(w, 'dan', 'offline', w.frames.length - 2);
    const mark = w.frames.length;
    await connect(node2.port, tok.carol);
    const dan = await connect(node1.port, tok.dan);
    await presence(w, 'carol', 'online', mark);
    await presence(w, 'dan', 'online', mark);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(w.frames.slice(mark).filter((f) => f.type === 'presence' && f.user_id === 'carol').length, 1);

    // the whole node at once, master and workers, as a crash takes it
    const killed = Date.now();
    for (const pid of [...childrenOf(node2.child.pid), node2.child.pid]) process.kill(pid, 'SIGKILL');
    await waitFor('node 2 gone', () => node2.exited);
    const off = await presence(w, 'carol', 'offline', mark);
    const took = Date.now() - killed;
    assert.ok(took < 6000, `offline after ${took} ms`);
    assert.ok(off.last_seen_ms <= Date.now() && off.last_seen_ms > killed - 3000, JSON.stringify(off));
    // dan, on the living node, stays online
    assert.equal(w.frames.slice(mark).some((f) => f.type === 'presence' && f.user_id === 'dan' && f.status === 'offline'), false);
    await dan.close();
    await presence(w, 'dan', 'offline', mark);
    await w.close();
});

function childrenOf(ppid) {
    return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
        try {
            const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
            return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid;
        } catch { return false; }
    }).map(Number);
}
