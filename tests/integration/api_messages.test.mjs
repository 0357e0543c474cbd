// Messages over the REST API: send (idempotent, gap-free), history, threads,
// edit, delete, permissions and tenant isolation, against the shared stack.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const as = {};   // user id -> client acting for that user (API key + X-Parley-User)

const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field);
    assert.equal(r.body.error.retryable, status === 503 || status === 429);
}

// ---- conversations, through the conversations and members endpoints ----

async function ok(r, status = [200, 201, 204]) {
    const res = await r;
    assert.ok(status.includes(res.status), JSON.stringify(res.body));
    return res;
}

const conv = {
    async group(owner, members) {
        return (await ok(as[owner].post('/v1/conversations', { type: 'group', name: 'g', members }))).body.id;
    },
    async direct(a, b) {
        return (await ok(as[a].post('/v1/conversations', { type: 'direct', peer: b }))).body.id;
    },
    async role(cid, uid, role) { await ok(admin.patch(`/v1/conversations/${cid}/members/${uid}`, { role })); },
    async kick(cid, uid) { await ok(admin.del(`/v1/conversations/${cid}/members/${uid}`)); },
    async ban(cid, uid) { await ok(admin.post(`/v1/conversations/${cid}/members/${uid}/ban`, {})); },
    async block(a, b) { await ok(admin.put(`/v1/users/${a}/blocks/${b}`)); },
    async unblock(a, b) { await ok(admin.del(`/v1/users/${a}/blocks/${b}`)); },
};

// what the store holds (events, outbox, receipt cursors), read-only, with an
// independent client
function sql(query) {
    const env = stackEnv();
    const r = spawnSync('mariadb', ['--no-defaults', '--default-character-set=utf8mb4', '-h', '127.0.0.1',
        '-P', env.PARLEY_DB_PORT, '-u', env.PARLEY_DB_USER, `-p${env.PARLEY_DB_PASSWORD}`, env.PARLEY_DB_NAME,
        '-N', '-B', '-r', '-e', query], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
}

function events(c) {
    return sql(`SELECT event_seq, type, actor_id, IFNULL(message_seq, 0), payload FROM conversation_events
                WHERE tenant_id = ${tenant.id} AND conversation_id = ${c} ORDER BY event_seq`)
        .map(([seq, type, actor, mseq, payload]) => ({ seq: Number(seq), type, actor, mseq: Number(mseq), payload: JSON.parse(payload) }));
}

function outbox(c) {
    return sql(`SELECT topic, payload FROM outbox WHERE tenant_id = ${tenant.id} AND msg_key = '${c}' ORDER BY id`)
        .map(([topic, payload]) => ({ topic, ...JSON.parse(payload) }));
}

let seq = 0;
const cid = () => `c-${process.pid}-${++seq}`;

async function send(user, c, body) {
    return as[user].post(`/v1/conversations/${c}/messages`, { client_id: cid(), ...body });
}

// every message of a conversation, oldest first, through after= pages
async function all(user, c, extra = '') {
    const out = [];
    let after = 0;
    for (;;) {
        const r = await as[user].get(`/v1/conversations/${c}/messages?after=${after}&limit=7${extra}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        out.push(...r.body.messages);
        if (!r.body.has_more_after) break;
        after = r.body.messages.at(-1).seq;
    }
    return out;
}

before(async () => {
    // bodies up to parley_api_max_body stay in memory (see the report: the
    // harness' client_body_temp_path is not writable by the workers)
    nginx = await startApi({ name: 'api-messages', pool: 8, http: 'client_body_buffer_size 512k;' });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const u of ['alice', 'bob', 'carol', 'dave', 'erin', 's1', 's2', 's3', 's4', 's5']) {
        const r = await admin.post('/v1/users', { user_id: u, name: u });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        as[u] = admin.as({ user: u });
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('send a text message; read it back; the shape', async () => {
    const g = await conv.group('alice', ['bob', 'carol']);
    const r = await as.alice.post(`/v1/conversations/${g}/messages`, {
        client_id: 'hello-1', text: 'hello ✓', metadata: { k: [1, 2] },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const m = r.body;
    assert.match(m.id, /^\d+$/);
    assert.equal(m.conversation_id, g);
    assert.equal(m.seq, 1);
    assert.equal(m.client_id, 'hello-1');
    assert.equal(m.sender_id, 'alice');
    assert.equal(m.type, 'text');
    assert.equal(m.text, 'hello ✓');
    assert.equal(m.custom_type, null);
    assert.deepEqual(m.metadata, { k: [1, 2] });
    assert.equal(m.attachment, null);
    assert.deepEqual(m.mentions, []);
    assert.equal(m.parent_seq, null);
    assert.equal(m.reply_count, 0);
    assert.deepEqual(m.reactions, {});
    assert.match(m.created_at, TIME);
    assert.equal(m.edited_at, null);
    assert.equal(m.deleted_at, null);

    const one = await as.bob.get(`/v1/conversations/${g}/messages/1`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body, m);

    const byId = await as.carol.get(`/v1/messages/${m.id}`);
    assert.equal(byId.status, 200);
    assert.deepEqual(byId.body, m);

    // the tenant's API key reads every conversation
    assert.deepEqual((await admin.get(`/v1/conversations/${g}/messages/1`)).body, m);

    const second = await send('bob', g, { text: 'hi' });
    assert.equal(second.body.seq, 2);
    assert.ok(BigInt(second.body.id) > BigInt(m.id), 'ids are time-ordered');

    // a user token works the same as the key acting for the user
    const t = await admin.post('/v1/users/carol/tokens', {});
    const carol = client(nginx.base, { token: t.body.token });
    const c3 = await carol.post(`/v1/conversations/${g}/messages`, { client_id: 'tok-1', text: 'via token' });
    assert.equal(c3.status, 201, JSON.stringify(c3.body));
    assert.equal(c3.body.sender_id, 'carol');
    assert.equal(c3.body.seq, 3);
});

test('custom and media messages; mentions keep members only', async () => {
    const g = await conv.group('alice', ['bob', 'carol']);
    const c = await send('alice', g, { type: 'custom', custom_type: 'poll', metadata: { q: '?' } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.type, 'custom');
    assert.equal(c.body.custom_type, 'poll');
    assert.equal(c.body.text, null);

    const att = { name: 'cat.png', size: 1234, mime_type: 'image/png', url: 'https://cdn.example/cat.png' };
    const md = await send('alice', g, { type: 'media', attachment: att, text: 'a cat' });
    assert.equal(md.status, 201, JSON.stringify(md.body));
    assert.deepEqual(md.body.attachment, att);
    assert.equal(md.body.text, 'a cat');
    const key = await send('alice', g, { type: 'media', attachment: { name: 'a.pdf', size: 0, mime_type: 'application/vnd.x+json', object_key: 'up/1/a.pdf' } });
    assert.equal(key.status, 201, JSON.stringify(key.body));

    // dave is no member, "nobody" does not exist; bob twice counts once
    const mt = await send('alice', g, { text: '@all', mentions: ['bob', 'dave', 'carol', 'nobody', 'bob'] });
    assert.equal(mt.status, 201, JSON.stringify(mt.body));
    assert.deepEqual(mt.body.mentions, ['bob', 'carol']);
});

test('a retry with the same client_id answers the stored message, whatever it holds', async () => {
    const g = await conv.group('alice', ['bob']);
    const first = await as.alice.post(`/v1/conversations/${g}/messages`, { client_id: 'retry-me', text: 'one' });
    assert.equal(first.status, 201);
    const again = await as.alice.post(`/v1/conversations/${g}/messages`, { client_id: 'retry-me', text: 'one' });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(again.body, first.body);
    const changed = await as.alice.post(`/v1/conversations/${g}/messages`, { client_id: 'retry-me', text: 'two' });
    assert.equal(changed.status, 200);
    assert.equal(changed.body.text, 'one', 'the stored content wins');
    // the key belongs to the sender: another sender's same client_id is a new message
    const bob = await as.bob.post(`/v1/conversations/${g}/messages`, { client_id: 'retry-me', text: 'bob' });
    assert.equal(bob.status, 201);
    assert.equal(bob.body.seq, 2);
    // reused in another conversation: a conflict, not someone else's message
    const g2 = await conv.group('alice', []);
    assertError(await as.alice.post(`/v1/conversations/${g2}/messages`, { client_id: 'retry-me', text: 'x' }),
        409, 'client_id_in_use', 'client_id');
    assert.deepEqual((await all('alice', g)).map((m) => m.seq), [1, 2]);
    assert.deepEqual(await all('alice', g2), []);
});

test('20 concurrent sends of one client_id store exactly one message', async () => {
    const g = await conv.group('alice', ['bob']);
    await send('bob', g, { text: 'before' });
    const body = { client_id: 'storm', text: 'once' };
    const rs = await Promise.all(Array.from({ length: 20 }, () => as.alice.post(`/v1/conversations/${g}/messages`, body)));
    for (const r of rs) assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
    assert.equal(rs.filter((r) => r.status === 201).length, 1, 'one of them stored it');
    assert.equal(new Set(rs.map((r) => r.body.id)).size, 1);
    assert.deepEqual([...new Set(rs.map((r) => r.body.seq))], [2]);
    // the losers gave their seq back: the next message is 3
    assert.equal((await send('bob', g, { text: 'after' })).body.seq, 3);
    assert.deepEqual((await all('bob', g)).map((m) => [m.seq, m.text]), [[1, 'before'], [2, 'once'], [3, 'after']]);
    const news = events(g).filter((e) => e.type === 'message.new');
    assert.deepEqual(news.map((e) => [e.mseq, e.payload.text]), [[1, 'before'], [2, 'once'], [3, 'after']], 'one event per stored message');
});

test('5 senders x 20 concurrent messages get seqs 1..100 with no gap or duplicate', async () => {
    const senders = ['s1', 's2', 's3', 's4', 's5'];
    const g = await conv.group('s1', senders.slice(1));
    const rs = await Promise.all(senders.flatMap((s) => Array.from({ length: 20 }, (_, i) =>
        as[s].post(`/v1/conversations/${g}/messages`, { client_id: `${s}-${i}`, text: `${s} ${i}` }))));
    for (const r of rs) assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.deepEqual(rs.map((r) => r.body.seq).sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1));
    const stored = await all('s3', g);
    assert.deepEqual(stored.map((m) => m.seq), Array.from({ length: 100 }, (_, i) => i + 1));
    // each sender's messages keep their own order
    for (const s of senders) {
        const mine = stored.filter((m) => m.sender_id === s);
        assert.equal(mine.length, 20);
    }
    assert.deepEqual(new Set(stored.map((m) => m.id)).size, 100);
    const log = events(g);
    assert.deepEqual(log.map((e) => e.seq), log.map((_, i) => i + 1));
    assert.deepEqual(log.filter((e) => e.type === 'message.new').map((e) => e.mseq).sort((x, y) => x - y),
        Array.from({ length: 100 }, (_, i) => i + 1));
});

test('bad input: one error shape, the right status, nothing stored', async () => {
    const g = await conv.group('alice', ['bob']);
    const p = `/v1/conversations/${g}/messages`;
    const a = as.alice;
    assertError(await a.post(p, { text: 'no id' }), 422, 'missing_field', 'client_id');
    assertError(await a.post(p, { client_id: '', text: 'x' }), 422, 'invalid_length', 'client_id');
    assertError(await a.post(p, { client_id: 'x'.repeat(65), text: 'x' }), 422, 'invalid_length', 'client_id');
    assertError(await a.post(p, { client_id: 5, text: 'x' }), 422, 'invalid_type', 'client_id');
    assertError(await a.post(p, { client_id: 'b1', type: 'video', text: 'x' }), 422, 'invalid_value', 'type');
    assertError(await a.post(p, { client_id: 'b2' }), 422, 'missing_field', 'text');
    assertError(await a.post(p, { client_id: 'b3', text: '' }), 422, 'invalid_length', 'text');
    assertError(await a.post(p, { client_id: 'b4', text: 'x'.repeat(16 * 1024 + 1) }), 422, 'invalid_length', 'text');
    assert.equal((await a.post(p, { client_id: 'b4-ok', text: 'é'.repeat(8 * 1024) })).status, 201, 'exactly the limit in bytes is fine');
    assertError(await a.post(p, { client_id: 'b5', text: 7 }), 422, 'invalid_type', 'text');
    assertError(await a.post(p, { client_id: 'b6', text: 'x', colour: 'red' }), 422, 'unknown_field', 'colour');
    assertError(await a.post(p, { client_id: 'b7', text: 'x', metadata: [1] }), 422, 'invalid_type', 'metadata');
    assertError(await a.post(p, { client_id: 'b8', text: 'x', metadata: { a: 'x'.repeat(9000) } }), 422, 'too_large', 'metadata');
    assertError(await a.post(p, { client_id: 'b9', type: 'custom' }), 422, 'missing_field', 'custom_type');
    assertError(await a.post(p, { client_id: 'b10', type: 'custom', custom_type: 'x'.repeat(65) }), 422, 'invalid_length', 'custom_type');
    assertError(await a.post(p, { client_id: 'b11', text: 'x', custom_type: 'poll' }), 422, 'not_allowed', 'custom_type');
    assertError(await a.post(p, { client_id: 'b12', type: 'media' }), 422, 'missing_field', 'attachment');
    assertError(await a.post(p, { client_id: 'b13', text: 'x', attachment: { name: 'a', size: 1, mime_type: 'a/b', url: 'https://x/' } }), 422, 'not_allowed', 'attachment');
    const att = { name: 'a', size: 1, mime_type: 'image/png', url: 'https://x/a' };
    const media = (over) => a.post(p, { client_id: `m-${Math.random()}`, type: 'media', attachment: { ...att, ...over } });
    assertError(await media({ mime_type: 'png' }), 422, 'invalid_value', 'attachment.mime_type');
    assertError(await media({ mime_type: 'image/' }), 422, 'invalid_value', 'attachment.mime_type');
    assertError(await media({ mime_type: 'ima ge/png' }), 422, 'invalid_value', 'attachment.mime_type');
    assertError(await media({ size: -1 }), 422, 'out_of_range', 'attachment.size');
    assertError(await media({ size: '1' }), 422, 'invalid_type', 'attachment.size');
    assertError(await media({ name: undefined }), 422, 'missing_field', 'attachment.name');
    assertError(await media({ url: 'javascript:alert(1)' }), 422, 'invalid_value', 'attachment.url');
    assertError(await media({ object_key: 'k' }), 422, 'invalid_value', 'attachment');
    assertError(await media({ url: undefined }), 422, 'invalid_value', 'attachment');
    assertError(await media({ extra: 1 }), 422, 'unknown_field', 'attachment');
    assertError(await a.post(p, { client_id: 'b14', type: 'media', attachment: 'x' }), 422, 'invalid_type', 'attachment');
    assertError(await a.post(p, { client_id: 'b15', text: 'x', mentions: 'bob' }), 422, 'invalid_type', 'mentions');
    assertError(await a.post(p, { client_id: 'b16', text: 'x', mentions: Array.from({ length: 33 }, (_, i) => `u${i}`) }), 422, 'invalid_length', 'mentions');
    assertError(await a.post(p, { client_id: 'b17', text: 'x', mentions: ['a/b'] }), 422, 'invalid_value', 'mentions');
    assertError(await a.post(p, { client_id: 'b18', text: 'x', parent_seq: 0 }), 422, 'out_of_range', 'parent_seq');
    assertError(await a.post(p, { client_id: 'b19', text: 'x', parent_seq: 'one' }), 422, 'invalid_type', 'parent_seq');
    assertError(await a.post(p, { client_id: 'b20', text: 'x', parent_seq: 999 }), 422, 'parent_not_found', 'parent_seq');
    assertError(await a.post(p, JSON.stringify({ client_id: 'b21', text: 'y'.repeat(300 * 1024) })), 413, 'body_too_large');
    assertError(await a.post(p, Buffer.concat([Buffer.from('{"client_id":"b22","text":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')])), 400, 'invalid_json');
    assertError(await a.post(p, '{"client_id":"b23","text":"x"'), 400, 'invalid_json');
    assertError(await a.post(p, '{"client_id":"b24","text":"a\\u0000b"}'), 400, 'invalid_json');
    assertError(await a.post(p, { client_id: 'b25', text: 'x' }, { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    assertError(await a.post('/v1/conversations/abc/messages', { client_id: 'b26', text: 'x' }), 400, 'invalid_parameter', 'cid');
    assertError(await a.post('/v1/conversations/12345/messages', { client_id: 'b27', text: 'x' }), 404, 'conversation_not_found');
    // only the good message is there
    assert.deepEqual((await all('alice', g)).map((m) => m.client_id), ['b4-ok']);

    // the query string
    assertError(await a.get(`${p}?before=abc`), 400, 'invalid_parameter', 'before');
    assertError(await a.get(`${p}?before=0`), 400, 'invalid_parameter', 'before');
    assertError(await a.get(`${p}?after=-1`), 400, 'invalid_parameter', 'after');
    assertError(await a.get(`${p}?before=5&after=1`), 400, 'invalid_parameter');
    assertError(await a.get(`${p}?threads=maybe`), 400, 'invalid_parameter', 'threads');
    assertError(await a.get(`${p}?limit=0`), 400, 'invalid_parameter', 'limit');
    assertError(await a.get(`${p}?limit=201`), 400, 'invalid_parameter', 'limit');
    assertError(await a.get(`${p}/0`), 400, 'invalid_parameter', 'seq');
    assertError(await a.get(`${p}/x1`), 400, 'invalid_parameter', 'seq');
    assertError(await a.get(`${p}/99`), 404, 'message_not_found', 'seq');
    assertError(await a.get('/v1/messages/nope'), 400, 'invalid_parameter', 'mid');
    assertError(await a.get('/v1/messages/12345'), 404, 'message_not_found');
    assertError(await a.patch(`${p}/1`, {}), 422, 'missing_field');
    assertError(await a.patch(`${p}/1`, { text: '' }), 422, 'invalid_length', 'text');
    assertError(await a.patch(`${p}/1`, { text: 'x', sender_id: 'bob' }), 422, 'unknown_field', 'sender_id');
    assertError(await a.put(`${p}/1`, {}), 405, 'method_not_allowed');
});

test('who may send: members only; kicked, banned, blocked and deactivated users may not', async () => {
    const g = await conv.group('alice', ['bob', 'carol', 'erin']);
    assertError(await send('dave', g, { text: 'x' }), 403, 'not_member');
    // the API key alone is nobody: a message needs a sender
    assertError(await admin.post(`/v1/conversations/${g}/messages`, { client_id: 'k', text: 'x' }), 403, 'user_required');
    assert.equal((await send('bob', g, { text: 'still here' })).status, 201);
    await conv.kick(g, 'bob');
    assertError(await send('bob', g, { text: 'x' }), 403, 'not_member');
    assertError(await as.bob.get(`/v1/conversations/${g}/messages`), 403, 'not_member');
    await conv.ban(g, 'carol');
    assertError(await send('carol', g, { text: 'x' }), 403, 'banned');
    assertError(await as.carol.get(`/v1/conversations/${g}/messages/1`), 403, 'banned');
    assertError(await as.dave.get(`/v1/conversations/${g}/messages`), 403, 'not_member');

    const d = await conv.direct('alice', 'bob');
    assert.equal((await send('bob', d, { text: 'hi' })).status, 201);
    await conv.block('alice', 'bob');
    assertError(await send('bob', d, { text: 'x' }), 403, 'blocked');
    assertError(await send('alice', d, { text: 'x' }), 403, 'blocked', undefined);
    await conv.unblock('alice', 'bob');
    assert.equal((await send('alice', d, { text: 'ok again' })).status, 201);
    // a block matters in direct conversations only
    await conv.block('erin', 'alice');
    assert.equal((await send('erin', g, { text: 'group is fine' })).status, 201);

    assert.equal((await admin.post('/v1/users/erin/deactivate', {})).status, 200);
    assertError(await send('erin', g, { text: 'x' }), 403, 'user_inactive');
    assert.equal((await admin.post('/v1/users/erin/reactivate', {})).status, 200);
    assert.deepEqual((await all('alice', g)).map((m) => m.text), ['still here', 'group is fine']);
});

test('threads: replies, counts, listing, and their place in the history', async () => {
    const g = await conv.group('alice', ['bob', 'carol']);
    const parent = await send('alice', g, { text: 'topic' });
    const other = await send('bob', g, { text: 'unrelated' });
    const replies = [];
    for (const [u, t] of [['bob', 'r1'], ['carol', 'r2'], ['alice', 'r3']]) {
        const r = await send(u, g, { text: t, parent_seq: parent.body.seq });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        assert.equal(r.body.parent_seq, parent.body.seq);
        replies.push(r.body);
    }
    const p = (await as.bob.get(`/v1/conversations/${g}/messages/${parent.body.seq}`)).body;
    assert.equal(p.reply_count, 3);
    assert.match(p.last_reply_at, TIME);
    assert.equal((await as.bob.get(`/v1/conversations/${g}/messages/${other.body.seq}`)).body.reply_count, 0);

    const th = await as.carol.get(`/v1/conversations/${g}/messages/${parent.body.seq}/thread?limit=2`);
    assert.equal(th.status, 200, JSON.stringify(th.body));
    assert.equal(th.body.parent.seq, parent.body.seq);
    assert.deepEqual(th.body.messages.map((m) => m.text), ['r1', 'r2']);
    assert.equal(th.body.has_more, true);
    const th2 = await as.carol.get(`/v1/conversations/${g}/messages/${parent.body.seq}/thread?limit=2&after=${th.body.messages[1].seq}`);
    assert.deepEqual(th2.body.messages.map((m) => m.text), ['r3']);
    assert.equal(th2.body.has_more, false);

    // no replies to replies, none to deleted messages
    assertError(await send('bob', g, { text: 'x', parent_seq: replies[0].seq }), 422, 'parent_is_reply', 'parent_seq');
    assert.equal((await as.bob.del(`/v1/conversations/${g}/messages/${other.body.seq}`)).status, 204);
    assertError(await send('bob', g, { text: 'x', parent_seq: other.body.seq }), 422, 'parent_deleted', 'parent_seq');

    // replies are in the main history, unless threads=false
    assert.deepEqual((await all('alice', g)).map((m) => m.text), ['topic', null, 'r1', 'r2', 'r3']);
    assert.deepEqual((await all('alice', g, '&threads=false')).map((m) => m.text), ['topic', null]);
    const latest = await as.alice.get(`/v1/conversations/${g}/messages?threads=false&limit=1`);
    assert.deepEqual(latest.body.messages.map((m) => m.seq), [2]);
    assert.equal(latest.body.has_more_before, true);
    assertError(await as.alice.get(`/v1/conversations/${g}/messages/99/thread`), 404, 'message_not_found');
    assertError(await as.dave.get(`/v1/conversations/${g}/messages/1/thread`), 403, 'not_member');
});

test('history pages both ways with no gap and no duplicate', async () => {
    const g = await conv.group('alice', ['bob']);
    for (let i = 1; i <= 25; i++) assert.equal((await send(i % 2 ? 'alice' : 'bob', g, { text: `m${i}` })).body.seq, i);
    const base = `/v1/conversations/${g}/messages`;

    const latest = await as.bob.get(`${base}?limit=10`);
    assert.deepEqual(latest.body.messages.map((m) => m.seq), [25, 24, 23, 22, 21, 20, 19, 18, 17, 16]);
    assert.equal(latest.body.has_more_before, true);
    assert.equal(latest.body.has_more_after, false);

    // backwards from the latest page
    const back = [...latest.body.messages];
    let page = latest.body;
    while (page.has_more_before) {
        const r = await as.bob.get(`${base}?limit=10&before=${page.messages.at(-1).seq}`);
        assert.equal(r.status, 200);
        assert.equal(r.body.has_more_after, true);
        back.push(...r.body.messages);
        page = r.body;
    }
    assert.deepEqual(back.map((m) => m.seq), Array.from({ length: 25 }, (_, i) => 25 - i));

    // forwards from the start
    const fwd = [];
    let after = 0;
    for (let first = true; ; first = false) {
        const r = await as.alice.get(`${base}?limit=10&after=${after}`);
        assert.equal(r.body.has_more_before, !first);
        fwd.push(...r.body.messages);
        if (!r.body.has_more_after) break;
        after = r.body.messages.at(-1).seq;
    }
    assert.deepEqual(fwd.map((m) => m.seq), Array.from({ length: 25 }, (_, i) => i + 1));
    assert.deepEqual(fwd.map((m) => m.text), Array.from({ length: 25 }, (_, i) => `m${i + 1}`));

    const around = await as.alice.get(`${base}?around=13&limit=6`);
    assert.deepEqual(around.body.messages.map((m) => m.seq), [10, 11, 12, 13, 14, 15]);
    assert.equal(around.body.has_more_before, true);
    assert.equal(around.body.has_more_after, true);
    const edge = await as.alice.get(`${base}?around=2&limit=6`);
    assert.deepEqual(edge.body.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6], 'a short side leaves its room to the other');
    assert.equal(edge.body.has_more_before, false);
    assert.equal(edge.body.has_more_after, true);
    const end = await as.alice.get(`${base}?around=24&limit=6`);
    assert.deepEqual(end.body.messages.map((m) => m.seq), [20, 21, 22, 23, 24, 25]);
    assert.equal(end.body.has_more_before, true);
    assert.equal(end.body.has_more_after, false);
    const odd = await as.alice.get(`${base}?around=13&limit=5`);
    assert.deepEqual(odd.body.messages.map((m) => m.seq), [11, 12, 13, 14, 15]);

    const empty = await as.alice.get(`${base}?after=25`);
    assert.deepEqual(empty.body, { messages: [], has_more_before: true, has_more_after: false });
    const first = await as.alice.get(`${base}?before=2`);
    assert.deepEqual(first.body.messages.map((m) => m.seq), [1]);
    assert.equal(first.body.has_more_before, false);
    const none = await conv.group('alice', []);
    assert.deepEqual((await as.alice.get(`/v1/conversations/${none}/messages`)).body,
        { messages: [], has_more_before: false, has_more_after: false });
});

test('edit: the sender (or the API key) changes text and metadata', async () => {
    const g = await conv.group('alice', ['bob']);
    const m = (await send('alice', g, { text: 'typo', metadata: { v: 1 } })).body;
    const u = `/v1/conversations/${g}/messages/${m.seq}`;
    const e = await as.alice.patch(u, { text: 'fixed' });
    assert.equal(e.status, 200, JSON.stringify(e.body));
    assert.equal(e.body.text, 'fixed');
    assert.deepEqual(e.body.metadata, { v: 1 }, 'absent fields keep their value');
    assert.match(e.body.edited_at, TIME);
    assert.equal(e.body.seq, m.seq);
    assert.equal(e.body.id, m.id);
    assert.deepEqual((await as.bob.get(u)).body, e.body);

    const e2 = await as.alice.patch(u, { metadata: null });
    assert.equal(e2.body.metadata, null);
    assert.equal(e2.body.text, 'fixed');

    assertError(await as.bob.patch(u, { text: 'not yours' }), 403, 'not_sender');
    assertError(await as.dave.patch(u, { text: 'x' }), 403, 'not_member');
    const byKey = await admin.patch(u, { text: 'moderated' });
    assert.equal(byKey.status, 200);
    assert.equal(byKey.body.text, 'moderated');
    assert.equal(byKey.body.sender_id, 'alice');
    assertError(await as.alice.patch(`/v1/conversations/${g}/messages/77`, { text: 'x' }), 404, 'message_not_found');

    assert.equal((await as.alice.del(u)).status, 204);
    assertError(await as.alice.patch(u, { text: 'too late' }), 409, 'message_deleted');
});

test('delete: a tombstone keeps its seq; sender, moderators and the API key may delete', async () => {
    const g = await conv.group('alice', ['bob', 'carol', 'dave']);
    await conv.role(g, 'carol', 'moderator');
    const m1 = (await send('bob', g, { text: 'secret', metadata: { a: 1 }, mentions: ['alice'] })).body;
    const m2 = (await send('bob', g, { text: 'two' })).body;
    const m3 = (await send('dave', g, { text: 'three' })).body;
    const m4 = (await send('dave', g, { text: 'four' })).body;
    const u = (m) => `/v1/conversations/${g}/messages/${m.seq}`;

    assertError(await as.dave.del(u(m1)), 403, 'not_allowed');
    assert.equal((await as.bob.del(u(m1))).status, 204);
    const t = (await as.alice.get(u(m1))).body;
    assert.equal(t.seq, m1.seq);
    assert.equal(t.id, m1.id);
    assert.equal(t.sender_id, 'bob');
    assert.equal(t.text, null);
    assert.equal(t.metadata, null);
    assert.equal(t.attachment, null);
    assert.equal(t.mentions, null);
    assert.match(t.deleted_at, TIME);
    // twice: nothing more to do
    assert.equal((await as.bob.del(u(m1))).status, 204);
    assert.equal((await as.alice.get(u(m1))).body.deleted_at, t.deleted_at);

    assert.equal((await as.carol.del(u(m2))).status, 204, 'a moderator deletes what others wrote');
    assert.equal((await admin.del(u(m3))).status, 204, 'so does the API key');
    assertError(await as.erin.del(u(m4)), 403, 'not_member');
    assertError(await as.bob.del(`/v1/conversations/${g}/messages/99`), 404, 'message_not_found');

    const h = await all('alice', g);
    assert.deepEqual(h.map((m) => m.seq), [1, 2, 3, 4]);
    assert.deepEqual(h.map((m) => m.deleted_at === null), [false, false, false, true]);
    assert.equal((await send('bob', g, { text: 'five' })).body.seq, 5, 'deleted seqs are never reused');
});

test('tenant isolation: another tenant sees nothing', async () => {
    const g = await conv.group('alice', ['bob']);
    const m = (await send('alice', g, { text: 'private' })).body;
    const stranger = otherAdmin.as({ user: 'alice' });   // same user id, other tenant
    assertError(await otherAdmin.get(`/v1/conversations/${g}/messages`), 404, 'conversation_not_found');
    assertError(await stranger.get(`/v1/conversations/${g}/messages`), 404, 'conversation_not_found');
    assertError(await stranger.get(`/v1/conversations/${g}/messages/${m.seq}`), 404, 'conversation_not_found');
    assertError(await stranger.get(`/v1/conversations/${g}/messages/${m.seq}/thread`), 404, 'conversation_not_found');
    assertError(await otherAdmin.get(`/v1/messages/${m.id}`), 404, 'message_not_found');
    assertError(await stranger.post(`/v1/conversations/${g}/messages`, { client_id: 'x', text: 'x' }), 404, 'conversation_not_found');
    // the same client_id in the other tenant finds nothing of this one
    assertError(await stranger.post(`/v1/conversations/${g}/messages`, { client_id: m.client_id, text: 'x' }), 404, 'conversation_not_found');
    assertError(await otherAdmin.patch(`/v1/conversations/${g}/messages/${m.seq}`, { text: 'x' }), 404, 'conversation_not_found');
    assertError(await otherAdmin.del(`/v1/conversations/${g}/messages/${m.seq}`), 404, 'conversation_not_found');
    const still = (await as.bob.get(`/v1/conversations/${g}/messages/${m.seq}`)).body;
    assert.equal(still.text, 'private');
    assert.equal(still.edited_at, null);
});

test('events: every change is logged once, with the message as the API shows it, and goes to the outbox', async () => {
    const g = await conv.group('alice', ['bob', 'carol']);
    await conv.role(g, 'carol', 'moderator');
    const before = events(g).length;
    const m = (await as.alice.post(`/v1/conversations/${g}/messages`, { client_id: 'ev-1', text: 'one' })).body;
    assert.equal((await as.alice.post(`/v1/conversations/${g}/messages`, { client_id: 'ev-1', text: 'one' })).status, 200);
    const r = (await send('bob', g, { text: 'reply', parent_seq: m.seq })).body;
    const e = (await as.alice.patch(`/v1/conversations/${g}/messages/${m.seq}`, { text: 'one!' })).body;
    assert.equal((await as.carol.del(`/v1/conversations/${g}/messages/${r.seq}`)).status, 204);
    assert.equal((await as.carol.del(`/v1/conversations/${g}/messages/${r.seq}`)).status, 204);
    const t = (await as.bob.get(`/v1/conversations/${g}/messages/${r.seq}`)).body;
    assertError(await as.bob.patch(`/v1/conversations/${g}/messages/${m.seq}`, { text: 'x' }), 403, 'not_sender');

    const log = events(g);
    const mine = log.slice(before);
    assert.deepEqual(log.map((x) => x.seq), log.map((_, i) => i + 1), 'the event log is gap-free');
    assert.deepEqual(mine.map((x) => [x.type, x.actor, x.mseq]), [
        ['message.new', 'alice', m.seq], ['message.new', 'bob', r.seq],
        ['message.edited', 'alice', m.seq], ['message.deleted', 'carol', r.seq],
    ], 'a retry, a second delete and a refusal log nothing');
    assert.deepEqual(mine[0].payload, m);
    assert.deepEqual(mine[1].payload, r);
    assert.deepEqual(mine[2].payload, e);
    assert.deepEqual(mine[3].payload, t);
    const conversation = (await as.alice.get(`/v1/conversations/${g}`)).body;
    assert.equal(conversation.last_seq, r.seq);

    // the outbox holds the same events, message.* on parley.messages keyed by the conversation
    const out = outbox(g).filter((x) => x.type.startsWith('message.'));
    assert.deepEqual(out.map((x) => [x.topic, x.type, x.data.event_seq]),
        mine.map((x) => ['parley.messages', x.type, x.seq]));
    assert.equal(out[0].tenant, tenant.id);
    assert.deepEqual(out[0].data.payload, m);
    assert.equal(out[0].data.conversation_id, g);
    assert.equal(out[0].data.message_seq, m.seq);

    // the sender has read (and received) their own message; the others not yet
    const cursors = Object.fromEntries(sql(`SELECT user_id, read_seq, delivered_seq FROM members
        WHERE tenant_id = ${tenant.id} AND conversation_id = ${g}`).map(([u, rd, dl]) => [u, [Number(rd), Number(dl)]]));
    assert.deepEqual(cursors, { alice: [m.seq, m.seq], bob: [r.seq, r.seq], carol: [0, 0] });
});
