// Members of conversations over the REST API: listing, adding, kicking,
// banning, roles -- each permission rule of the role hierarchy -- and the
// membership rows and events sync relies on.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startApi, createTenant, client, stackEnv } from './lib/harness.mjs';

let nginx, tenant, other, admin, otherAdmin;
const u = {};       // user id -> client with that user's token

function assertError(r, status, code, field) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
    if (field !== undefined) assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    assert.equal(r.body.error.retryable, status === 503 || status === 429);
}

function sql(query) {
    const env = stackEnv();
    const r = spawnSync('mariadb', ['--no-defaults', '-h', '127.0.0.1', '-P', env.PARLEY_DB_PORT,
        '-u', env.PARLEY_DB_USER, `-p${env.PARLEY_DB_PASSWORD}`, env.PARLEY_DB_NAME,
        '-N', '-B', '-r', '-e', query], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
}

function events(cid) {
    return sql(`SELECT event_seq, type, actor_id, IFNULL(subject_id, '-'), payload FROM conversation_events
                WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid} ORDER BY event_seq`)
        .map(([seq, type, actor, subject, payload]) => ({
            seq: Number(seq), type, actor, subject: subject === '-' ? null : subject, payload: JSON.parse(payload),
        }));
}

function memberRow(cid, uid) {
    const rows = sql(`SELECT role, state, joined_event, IFNULL(left_event, '-') FROM members
                      WHERE tenant_id = ${tenant.id} AND conversation_id = ${cid} AND user_id = '${uid}'`);
    if (!rows.length) return null;
    const [role, state, joinedEvent, leftEvent] = rows[0];
    return { role, state, joinedEvent: Number(joinedEvent), leftEvent: leftEvent === '-' ? null : Number(leftEvent) };
}

function counts(cid) {
    const [[stored, actual, seq, maxSeq]] = sql(`SELECT c.member_count,
        (SELECT COUNT(*) FROM members m WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id AND m.state = 'active'),
        c.event_seq,
        (SELECT IFNULL(MAX(event_seq), 0) FROM conversation_events e WHERE e.tenant_id = c.tenant_id AND e.conversation_id = c.id)
        FROM conversations c WHERE c.tenant_id = ${tenant.id} AND c.id = ${cid}`);
    return { stored: Number(stored), actual: Number(actual), seq: Number(seq), maxSeq: Number(maxSeq) };
}

async function user(id, adm = admin) {
    const c = await adm.post('/v1/users', { user_id: id, name: id });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const tok = await adm.post(`/v1/users/${encodeURIComponent(id)}/tokens`, {});
    assert.equal(tok.status, 201);
    return client(nginx.base, { token: tok.body.token });
}

// a group owned by "owner" with an admin, a moderator and participants
async function staffed(access = 'private') {
    const g = await u.owner.post('/v1/conversations', {
        type: 'group', access, members: ['adm', 'adm2', 'mod', 'mod2', 'p1', 'p2'],
    });
    assert.equal(g.status, 201, JSON.stringify(g.body));
    for (const [who, role] of [['adm', 'admin'], ['adm2', 'admin'], ['mod', 'moderator'], ['mod2', 'moderator']]) {
        const r = await u.owner.patch(`/v1/conversations/${g.body.id}/members/${who}`, { role });
        assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    return g.body.id;
}

before(async () => {
    nginx = await startApi({ name: 'api-members', http: 'parley_api_max_members 8;' });
    tenant = createTenant();
    other = createTenant();
    admin = client(nginx.base, { key: tenant.key });
    otherAdmin = client(nginx.base, { key: other.key });
    for (const id of ['owner', 'adm', 'adm2', 'mod', 'mod2', 'p1', 'p2', 'out1', 'out2', 'out3']) {
        u[id] = await user(id);
    }
});

after(async () => {
    if (nginx) await nginx.finish();
});

test('list: members only, paginated, with role, state and joined_at', async () => {
    const cid = await staffed();
    const all = await u.p1.get(`/v1/conversations/${cid}/members`);
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(all.body.members.map((m) => [m.user_id, m.role, m.state]), [
        ['adm', 'admin', 'active'], ['adm2', 'admin', 'active'], ['mod', 'moderator', 'active'],
        ['mod2', 'moderator', 'active'], ['owner', 'owner', 'active'], ['p1', 'participant', 'active'],
        ['p2', 'participant', 'active']]);
    assert.match(all.body.members[0].joined_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(all.body.next_cursor, null);

    const pages = [];
    let cursor = '';
    for (;;) {
        const r = await u.p1.get(`/v1/conversations/${cid}/members?limit=3${cursor}`);
        assert.equal(r.status, 200);
        pages.push(r.body.members.map((m) => m.user_id));
        if (!r.body.next_cursor) break;
        cursor = `&cursor=${r.body.next_cursor}`;
    }
    assert.deepEqual(pages, [['adm', 'adm2', 'mod'], ['mod2', 'owner', 'p1'], ['p2']]);

    assert.equal((await admin.get(`/v1/conversations/${cid}/members`)).body.members.length, 7);
    assertError(await u.out1.get(`/v1/conversations/${cid}/members`), 403, 'not_member');

    // former members: for moderators and up
    assert.equal((await u.mod.del(`/v1/conversations/${cid}/members/p2`)).status, 204);
    assertError(await u.p1.get(`/v1/conversations/${cid}/members?state=kicked`), 403, 'forbidden', 'state');
    const kicked = await u.mod.get(`/v1/conversations/${cid}/members?state=kicked`);
    assert.deepEqual(kicked.body.members.map((m) => [m.user_id, m.state]), [['p2', 'kicked']]);
    assert.equal((await u.mod.get(`/v1/conversations/${cid}/members?state=all`)).body.members.length, 7);
    assert.equal((await u.mod.get(`/v1/conversations/${cid}/members`)).body.members.length, 6);
    assertError(await u.p2.get(`/v1/conversations/${cid}/members`), 403, 'not_member');

    assertError(await u.p1.get(`/v1/conversations/${cid}/members?state=gone`), 400, 'invalid_parameter', 'state');
    assertError(await u.p1.get(`/v1/conversations/${cid}/members?limit=0`), 400, 'invalid_parameter', 'limit');
    assertError(await u.p1.get(`/v1/conversations/${cid}/members?cursor=***`), 400, 'invalid_parameter', 'cursor');
    assertError(await u.p1.get('/v1/conversations/x/members'), 400, 'invalid_parameter', 'cid');
    assertError(await u.p1.get('/v1/conversations/999/members'), 404, 'conversation_not_found');
});

test('add: admin+ in private groups, moderator+ in public ones; roles given with care', async () => {
    const priv = await staffed('private');
    assertError(await u.p1.post(`/v1/conversations/${priv}/members`, { user_ids: ['out1'] }), 403, 'forbidden');
    assertError(await u.mod.post(`/v1/conversations/${priv}/members`, { user_ids: ['out1'] }), 403, 'forbidden');
    assertError(await u.out2.post(`/v1/conversations/${priv}/members`, { user_ids: ['out2'] }), 403, 'forbidden');
    assert.equal(memberRow(priv, 'out1'), null);
    const a = await u.adm.post(`/v1/conversations/${priv}/members`, { user_ids: ['out1', 'p1'] });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.deepEqual(a.body, { added: ['out1'], already_members: ['p1'], member_count: 8 });
    const ev = events(priv).at(-1);
    assert.deepEqual([ev.type, ev.actor, ev.subject, ev.payload], ['member.added', 'adm', 'out1', { role: 'participant' }]);
    assert.equal(memberRow(priv, 'out1').joinedEvent, ev.seq);
    // full: 8 is the bound here, and nothing of a refused add stays
    assertError(await u.adm.post(`/v1/conversations/${priv}/members`, { user_ids: ['out2'] }), 409, 'too_many_members');
    assert.equal(memberRow(priv, 'out2'), null);
    assert.deepEqual(counts(priv), { stored: 8, actual: 8, seq: ev.seq, maxSeq: ev.seq });

    const pub = await staffed('public');
    assertError(await u.p1.post(`/v1/conversations/${pub}/members`, { user_ids: ['out1'] }), 403, 'forbidden');
    assert.equal((await u.mod.post(`/v1/conversations/${pub}/members`, { user_ids: ['out1'] })).status, 200);
    assert.equal((await u.owner.del(`/v1/conversations/${pub}/members/p2`)).status, 204, 'room for one more');
    assertError(await u.mod.post(`/v1/conversations/${pub}/members`, { user_ids: ['out2'], role: 'moderator' }), 403, 'forbidden', 'role');
    assertError(await u.adm.post(`/v1/conversations/${pub}/members`, { user_ids: ['out2'], role: 'admin' }), 403, 'forbidden', 'role');
    const m = await u.adm.post(`/v1/conversations/${pub}/members`, { user_ids: ['out2'], role: 'moderator' });
    assert.equal(m.status, 200);
    assert.equal(memberRow(pub, 'out2').role, 'moderator');
    assert.equal(events(pub).at(-1).payload.role, 'moderator');
    assertError(await u.adm.post(`/v1/conversations/${pub}/members`, { user_ids: ['out3'], role: 'owner' }), 422, 'invalid_value', 'role');

    // a failing id refuses the whole list: nothing is added
    const g = (await u.owner.post('/v1/conversations', { type: 'group' })).body.id;
    const seq = counts(g).seq;
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: ['out1', 'nobody'] }), 404, 'user_not_found', 'user_ids');
    assert.equal(memberRow(g, 'out1'), null);
    assert.deepEqual(counts(g), { stored: 1, actual: 1, seq, maxSeq: seq });
    await user('resting');
    assert.equal((await admin.post('/v1/users/resting/deactivate')).status, 200);
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: ['resting'] }), 409, 'user_inactive', 'user_ids');

    // bad bodies
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, {}), 422, 'missing_field', 'user_ids');
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: [] }), 422, 'invalid_length', 'user_ids');
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: 'out1' }), 422, 'invalid_type', 'user_ids');
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: ['a/b'] }), 422, 'invalid_value', 'user_ids');
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: Array(9).fill('out1') }), 422, 'invalid_length', 'user_ids');
    assertError(await u.owner.post(`/v1/conversations/${g}/members`, { user_ids: ['out1'], x: 1 }), 422, 'unknown_field', 'x');

    // the API key adds anywhere; a direct conversation never gains members
    assert.equal((await admin.post(`/v1/conversations/${g}/members`, { user_ids: ['out3'] })).status, 200);
    const dm = await u.p1.post('/v1/conversations', { type: 'direct', peer: 'p2' });
    assertError(await admin.post(`/v1/conversations/${dm.body.id}/members`, { user_ids: ['out1'] }), 409, 'direct_conversation');
    assertError(await u.p1.post(`/v1/conversations/${dm.body.id}/members`, { user_ids: ['out1'] }), 409, 'direct_conversation');
});

test('kick: moderators kick participants, admins moderators, the owner admins; nobody the owner', async () => {
    const cid = await staffed();
    const rules = [
        ['p1', 'p2', 403], ['mod', 'mod2', 403], ['mod', 'adm', 403], ['adm', 'adm2', 403],
        ['adm', 'owner', 403], ['mod', 'owner', 403], ['out1', 'p1', 403],
    ];
    for (const [actor, target, status] of rules) {
        const r = await u[actor].del(`/v1/conversations/${cid}/members/${target}`);
        assertError(r, status, 'forbidden');
        assert.equal(memberRow(cid, target).state, 'active', `${actor} did not kick ${target}`);
    }
    assertError(await admin.del(`/v1/conversations/${cid}/members/owner`), 403, 'forbidden', 'uid');

    const before = counts(cid);
    assert.equal((await u.mod.del(`/v1/conversations/${cid}/members/p1`)).status, 204);
    assert.equal((await u.adm.del(`/v1/conversations/${cid}/members/mod2`)).status, 204);
    assert.equal((await u.owner.del(`/v1/conversations/${cid}/members/adm2`)).status, 204);
    const ev = events(cid).slice(-3);
    assert.deepEqual(ev.map((e) => [e.type, e.actor, e.subject, e.payload.previous_role]), [
        ['member.kicked', 'mod', 'p1', 'participant'], ['member.kicked', 'adm', 'mod2', 'moderator'],
        ['member.kicked', 'owner', 'adm2', 'admin']]);
    const kicked = memberRow(cid, 'p1');
    assert.deepEqual([kicked.state, kicked.leftEvent], ['kicked', ev[0].seq]);
    assert.deepEqual(counts(cid), { stored: before.stored - 3, actual: before.stored - 3, seq: ev[2].seq, maxSeq: ev[2].seq });
    assertError(await u.p1.get(`/v1/conversations/${cid}`), 403, 'not_member');

    assertError(await u.mod.del(`/v1/conversations/${cid}/members/p1`), 404, 'member_not_found', 'uid');
    assertError(await u.mod.del(`/v1/conversations/${cid}/members/out1`), 404, 'member_not_found', 'uid');
    assertError(await u.mod.del(`/v1/conversations/${cid}/members/ghost`), 404, 'user_not_found', 'uid');
    assertError(await u.mod.del(`/v1/conversations/${cid}/members/%ff`), 400, 'invalid_parameter', 'uid');
    assert.equal((await admin.del(`/v1/conversations/${cid}/members/adm`)).status, 204, 'the API key kicks admins');

    // a kicked member may be added again, and then reads from there on
    const again = await u.owner.post(`/v1/conversations/${cid}/members`, { user_ids: ['p1'] });
    assert.deepEqual(again.body.added, ['p1']);
    const row = memberRow(cid, 'p1');
    assert.equal(row.state, 'active');
    assert.equal(row.leftEvent, null);
    assert.equal(row.joinedEvent, events(cid).at(-1).seq);
});

test('ban: keeps people out until unbanned; same hierarchy; idempotent', async () => {
    const cid = await staffed('public');
    assertError(await u.p1.post(`/v1/conversations/${cid}/members/p2/ban`), 403, 'forbidden');
    assertError(await u.mod.post(`/v1/conversations/${cid}/members/mod2/ban`), 403, 'forbidden');
    assertError(await u.adm.post(`/v1/conversations/${cid}/members/owner/ban`), 403, 'forbidden');
    assertError(await u.adm.post(`/v1/conversations/${cid}/members/adm2/ban`), 403, 'forbidden');

    assert.equal((await u.mod.post(`/v1/conversations/${cid}/members/p1/ban`)).status, 204);
    const ev = events(cid).at(-1);
    assert.deepEqual([ev.type, ev.subject, ev.payload], ['member.banned', 'p1', { was_member: true }]);
    assert.equal(memberRow(cid, 'p1').state, 'banned');
    assert.equal(memberRow(cid, 'p1').leftEvent, ev.seq);
    assert.equal(counts(cid).stored, 6);
    assert.equal((await u.mod.post(`/v1/conversations/${cid}/members/p1/ban`)).status, 204);
    assert.equal(events(cid).at(-1).seq, ev.seq, 'banning twice records nothing');

    assertError(await u.p1.post(`/v1/conversations/${cid}/join`), 403, 'banned');
    assertError(await u.owner.post(`/v1/conversations/${cid}/members`, { user_ids: ['p1'] }), 409, 'user_banned', 'user_ids');

    // someone who never was a member can be banned ahead
    assert.equal((await u.mod.post(`/v1/conversations/${cid}/members/out1/ban`)).status, 204);
    const pre = memberRow(cid, 'out1');
    assert.equal(pre.state, 'banned');
    assert.equal(pre.joinedEvent, pre.leftEvent, 'nothing of the log to read');
    assert.equal(events(cid).at(-1).payload.was_member, false);
    assertError(await u.out1.post(`/v1/conversations/${cid}/join`), 403, 'banned');
    assertError(await u.mod.post(`/v1/conversations/${cid}/members/ghost/ban`), 404, 'user_not_found', 'uid');

    // a banned admin loses the role; a moderator may unban it afterwards
    assert.equal((await u.owner.post(`/v1/conversations/${cid}/members/adm2/ban`)).status, 204);
    assert.equal(memberRow(cid, 'adm2').role, 'participant');
    assert.equal((await u.mod.del(`/v1/conversations/${cid}/members/adm2/ban`)).status, 204);
    assert.equal(memberRow(cid, 'adm2').state, 'left');
    assert.equal(events(cid).at(-1).type, 'member.unbanned');

    assertError(await u.p2.del(`/v1/conversations/${cid}/members/p1/ban`), 403, 'forbidden');
    assertError(await u.mod.del(`/v1/conversations/${cid}/members/p2/ban`), 404, 'ban_not_found', 'uid');
    assert.equal((await u.mod.del(`/v1/conversations/${cid}/members/p1/ban`)).status, 204);
    assert.equal((await u.p1.post(`/v1/conversations/${cid}/join`)).status, 200, 'unbanned: may come back');
    const after = counts(cid);
    assert.equal(after.stored, after.actual);
    assert.equal(after.seq, after.maxSeq);

    const dm = await u.p1.post('/v1/conversations', { type: 'direct', peer: 'out2' });
    assertError(await admin.post(`/v1/conversations/${dm.body.id}/members/out2/ban`), 409, 'direct_conversation');
});

test('roles: admins set participant and moderator, only the owner makes admins', async () => {
    const cid = await staffed();
    const r = await u.adm.patch(`/v1/conversations/${cid}/members/p1`, { role: 'moderator' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([r.body.user_id, r.body.role, r.body.state], ['p1', 'moderator', 'active']);
    const ev = events(cid).at(-1);
    assert.deepEqual([ev.type, ev.actor, ev.subject, ev.payload], ['member.role_changed', 'adm', 'p1',
        { role: 'moderator', previous_role: 'participant' }]);
    assert.equal((await u.adm.patch(`/v1/conversations/${cid}/members/p1`, { role: 'participant' })).status, 200);

    assertError(await u.mod.patch(`/v1/conversations/${cid}/members/p1`, { role: 'moderator' }), 403, 'forbidden');
    assertError(await u.p2.patch(`/v1/conversations/${cid}/members/p1`, { role: 'moderator' }), 403, 'forbidden');
    assertError(await u.adm.patch(`/v1/conversations/${cid}/members/p1`, { role: 'admin' }), 403, 'forbidden', 'role');
    assertError(await u.adm.patch(`/v1/conversations/${cid}/members/adm2`, { role: 'participant' }), 403, 'forbidden', 'role');
    assertError(await u.adm.patch(`/v1/conversations/${cid}/members/owner`, { role: 'participant' }), 403, 'forbidden', 'uid');
    assertError(await u.owner.patch(`/v1/conversations/${cid}/members/owner`, { role: 'admin' }), 403, 'forbidden', 'uid');
    assertError(await u.owner.patch(`/v1/conversations/${cid}/members/p1`, { role: 'owner' }), 422, 'invalid_value', 'role');
    assertError(await u.owner.patch(`/v1/conversations/${cid}/members/p1`, { role: 'king' }), 422, 'invalid_value', 'role');
    assertError(await u.owner.patch(`/v1/conversations/${cid}/members/p1`, {}), 422, 'missing_field', 'role');
    assertError(await u.owner.patch(`/v1/conversations/${cid}/members/out1`, { role: 'moderator' }), 404, 'member_not_found', 'uid');
    assert.equal(memberRow(cid, 'p1').role, 'participant');

    assert.equal((await u.owner.patch(`/v1/conversations/${cid}/members/p1`, { role: 'admin' })).body.role, 'admin');
    assert.equal((await u.owner.patch(`/v1/conversations/${cid}/members/adm2`, { role: 'moderator' })).body.role, 'moderator');
    assert.equal((await admin.patch(`/v1/conversations/${cid}/members/p2`, { role: 'admin' })).body.role, 'admin');

    const n = events(cid).length;
    const same = await u.owner.patch(`/v1/conversations/${cid}/members/p1`, { role: 'admin' });
    assert.equal(same.status, 200);
    assert.equal(events(cid).length, n, 'an unchanged role records nothing');
    // the new admin acts as one
    assert.equal((await u.p1.del(`/v1/conversations/${cid}/members/mod`)).status, 204);
});

test('membership changes keep member_count and event_seq exact under concurrency', async () => {
    const cid = (await u.owner.post('/v1/conversations', { type: 'group', access: 'public' })).body.id;
    const joiners = ['p1', 'p2', 'mod', 'mod2', 'adm', 'adm2', 'out1'];
    const rs = await Promise.all(joiners.map((w) => u[w].post(`/v1/conversations/${cid}/join`)));
    for (const r of rs) assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = counts(cid);
    assert.deepEqual(c, { stored: 8, actual: 8, seq: 8, maxSeq: 8 });
    assert.deepEqual(events(cid).map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8], 'gap-free');
    const rs2 = await Promise.all(joiners.map((w) => u[w].post(`/v1/conversations/${cid}/leave`)));
    for (const r of rs2) assert.equal(r.status, 204, JSON.stringify(r.body));
    assert.deepEqual(counts(cid), { stored: 1, actual: 1, seq: 15, maxSeq: 15 });
});

test('tenant isolation: other tenants cannot see, add or act on members', async () => {
    const cid = await staffed('public');
    const stranger = await user('owner', otherAdmin);   // same id in the other tenant
    await user('foreign', otherAdmin);
    assertError(await otherAdmin.get(`/v1/conversations/${cid}/members`), 404, 'conversation_not_found');
    assertError(await stranger.get(`/v1/conversations/${cid}/members`), 404, 'conversation_not_found');
    assertError(await otherAdmin.post(`/v1/conversations/${cid}/members`, { user_ids: ['foreign'] }), 404, 'conversation_not_found');
    assertError(await otherAdmin.del(`/v1/conversations/${cid}/members/p1`), 404, 'conversation_not_found');
    assertError(await stranger.del(`/v1/conversations/${cid}/members/p1`), 404, 'conversation_not_found');
    assertError(await otherAdmin.post(`/v1/conversations/${cid}/members/p1/ban`), 404, 'conversation_not_found');
    assertError(await otherAdmin.del(`/v1/conversations/${cid}/members/p1/ban`), 404, 'conversation_not_found');
    assertError(await otherAdmin.patch(`/v1/conversations/${cid}/members/p1`, { role: 'admin' }), 404, 'conversation_not_found');
    // the other tenant's users are unknown here
    assertError(await u.owner.post(`/v1/conversations/${cid}/members`, { user_ids: ['foreign'] }), 404, 'user_not_found', 'user_ids');
    assertError(await u.mod.post(`/v1/conversations/${cid}/members/foreign/ban`), 404, 'user_not_found', 'uid');
    assert.equal(memberRow(cid, 'p1').state, 'active');
    assert.equal(counts(cid).stored, 7);
});
