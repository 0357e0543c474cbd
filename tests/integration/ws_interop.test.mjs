// Interop with independent clients: Debian's python3-websockets and the
// npm `ws` package, with and without permessage-deflate, send and receive
// through the gateway.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startApi, createTenant, client, waitFor } from './lib/harness.mjs';
import { connect } from './lib/wsclient.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
let nginx, tenant, admin, alice, cid;
const tok = {};

before(async () => {
    nginx = await startApi({ name: 'ws-interop', workers: 2, server: 'location = /v1/ws { parley_ws; }' });
    tenant = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    for (const id of ['alice', 'py', 'node']) {
        assert.equal((await admin.post('/v1/users', { user_id: id })).status, 201);
        tok[id] = (await admin.post(`/v1/users/${id}/tokens`, {})).body.token;
    }
    alice = client(nginx.base, { token: tok.alice });
    const r = await alice.post('/v1/conversations', { type: 'group', name: 'interop', members: ['py', 'node'] });
    cid = r.body.id;
});

after(async () => { await nginx?.finish(); });

let n = 0;
async function restSend(text) {
    const r = await alice.post(`/v1/conversations/${cid}/messages`, { client_id: `i${++n}-${Date.now()}`, type: 'text', text });
    assert.equal(r.status, 201);
    return r.body;
}

for (const mode of ['plain', 'deflate']) {
    test(`python3-websockets (${mode}) sends and receives`, async () => {
        const url = `ws://127.0.0.1:${nginx.port}/v1/ws?access_token=${tok.py}`;
        const child = spawn('/usr/bin/python3', [path.join(here, 'clients/ws_python_client.py'), url, cid, `py-${mode}`, mode]);
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => { err += d; });
        const exit = new Promise((r) => child.on('exit', r));
        await waitFor('python ready', () => out.includes('"ready"'), { timeout: 10000 });
        await new Promise((r) => setTimeout(r, 300));
        await restSend(`to python ${mode} ${'z'.repeat(500)}`);
        assert.equal(await exit, 0, err);
        const s = JSON.parse(out.trim().split('\n').at(-1));
        assert.equal(s.ack_status, 201);
        assert.equal(s.echo_text_len, 2012);
        assert.match(s.other_text, new RegExp(`^to python ${mode}`));
        assert.equal(s.close_code, 1000);
        assert.equal(s.hello_deflate, mode === 'deflate');
        assert.equal(s.negotiated, mode === 'deflate' ? 'permessage-deflate' : null);
    });

    test(`node ws (${mode}) sends and receives`, async () => {
        const c = await connect(nginx.port, tok.node, { deflate: mode === 'deflate' ? { threshold: 64 } : false });
        assert.equal(c.frames[0].deflate, mode === 'deflate');
        assert.equal(c.ws.extensions.includes('permessage-deflate'), mode === 'deflate');
        const big = `node ${'w'.repeat(3000)}`;
        const ack = await c.op({ op: 'message.send', conversation_id: cid, body: { client_id: `node-${mode}`, type: 'text', text: big } });
        assert.equal(ack.status, 201, JSON.stringify(ack));
        const m = await restSend(`to node ${mode} ${'q'.repeat(1000)}`);
        const got = await c.next((f) => f.payload?.id === m.id);
        assert.equal(got.payload.text.length, m.text.length);
        const mine = await c.next((f) => f.payload?.client_id === `node-${mode}`);
        assert.equal(mine.payload.text, big);
        assert.equal((await c.close()).code, 1000);
    });
}

test('a compressed message that inflates past the limit closes with 1009', async () => {
    const c = await connect(nginx.port, tok.node, { deflate: { threshold: 0 } });
    c.send(JSON.stringify({ op: 'ping', pad: 'a'.repeat(200000) }));   // > parley_ws_max_message, compresses to ~1 KB
    const closed = await c.waitClosed();
    assert.equal(closed.code, 1009);
});
