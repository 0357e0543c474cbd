// Integration test for parley-devbroker (consumers/devbroker, docs/devbroker.md):
// a 3-broker dev broker on fixed loopback ports, observed only from outside,
// with kcat as an independent Kafka client and the ctl mode / a raw unix
// socket for the control protocol.
//
//   node --test tests/integration/devbroker.test.mjs
//
// env: PARLEY_BIN                  dir of built binaries (default build/bin)
//      PARLEY_TEST_DEVBROKER_PORT  base port (default: first free of 39092,
//                                  39102, ...)
//      KCAT                        kcat binary (default /usr/bin/kcat)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN_DIR = path.resolve(ROOT, process.env.PARLEY_BIN || 'build/bin');
const DEVBROKER = path.join(BIN_DIR, 'parley-devbroker');
const KCAT = process.env.KCAT || '/usr/bin/kcat';
const BROKERS = 3;
const DEFAULT_TOPICS = [
  'parley.messages', 'parley.events',
  'parley.moderation', 'parley.moderation.retry', 'parley.moderation.dlq',
  'parley.push', 'parley.push.retry', 'parley.push.dlq',
  'parley.webhooks', 'parley.webhooks.retry', 'parley.webhooks.dlq',
];

// Every process this file starts, so after() can kill what is left.
const children = new Set();

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

// Runs cmd to completion or until timeoutMs (then SIGKILL, timedOut=true).
function run(cmd, args, { input, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = track(spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: performance.now() - t0 });
    });
    child.stdin.on('error', () => {}); // a child that exits early closes its stdin
    child.stdin.end(input ?? '');
  });
}

function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

async function pickBasePort() {
  const fromEnv = process.env.PARLEY_TEST_DEVBROKER_PORT;
  const candidates = fromEnv ? [Number(fromEnv)] : Array.from({ length: 20 }, (_, i) => 39092 + 10 * i);
  for (const base of candidates) {
    let free = true;
    for (let i = 0; i < BROKERS && free; i++) free = await portFree(base + i);
    if (free) return base;
  }
  throw new Error(`no free port range among ${candidates.join(', ')}`);
}

// Starts a devbroker; resolves once the ready line is out, with how long it took.
function startDevbroker(args, readyTimeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = track(spawn(DEVBROKER, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const state = { child, stdout: '', stderr: '', readyMs: null };
    const timer = setTimeout(() => {
      reject(new Error(`devbroker not ready within ${readyTimeoutMs} ms; stderr:\n${state.stderr}`));
    }, readyTimeoutMs);
    child.stderr.setEncoding('utf8').on('data', (d) => { state.stderr += d; });
    child.stdout.setEncoding('utf8').on('data', (d) => {
      state.stdout += d;
      if (state.readyMs === null && state.stdout.includes('\n')) {
        state.readyMs = performance.now() - t0;
        clearTimeout(timer);
        resolve(state);
      }
    });
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (state.readyMs === null) {
        reject(new Error(`devbroker exited (${code ?? signal}) before ready; stderr:\n${state.stderr}`));
      }
    });
  });
}

function waitExit(child, timeoutMs) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode, timedOut: false });
      return;
    }
    const timer = setTimeout(() => resolve({ code: null, signal: null, timedOut: true }), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut: false });
    });
  });
}

function tcpConnect(port, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const done = (result) => { clearTimeout(timer); sock.destroy(); resolve(result); };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    sock.once('connect', () => done('connected'));
    sock.once('error', (e) => done(e.code));
  });
}

describe('parley-devbroker', { timeout: 120000 }, () => {
  let tmp;
  let base;
  let broker;
  let sock;
  let pidfile;
  let bootstrap;

  const ctl = (...words) => run(DEVBROKER, ['ctl', sock, ...words], { timeoutMs: 5000 });
  const metadata = async () => {
    const r = await run(KCAT, ['-L', '-J', '-b', bootstrap, '-m', '5'], { timeoutMs: 10000 });
    assert.equal(r.code, 0, `kcat -L -J failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  before(async () => {
    assert.ok(fs.existsSync(DEVBROKER), `${DEVBROKER} not built (set PARLEY_BIN)`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-devbroker-'));
    sock = path.join(tmp, 'ctl.sock');
    pidfile = path.join(tmp, 'devbroker.pid');
    base = await pickBasePort();
    bootstrap = `127.0.0.1:${base}`;
    broker = await startDevbroker(['--port', String(base), '--brokers', String(BROKERS),
      '--control', sock, '--pidfile', pidfile]);
  });

  after(() => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('is ready within 1 s, warns that it is not durable, writes its pidfile', () => {
    assert.ok(broker.readyMs < 1000, `ready after ${broker.readyMs.toFixed(1)} ms`);
    assert.equal(broker.stdout, `parley-devbroker: ready on 127.0.0.1:${base} (${BROKERS} brokers)\n`);
    assert.match(broker.stderr, /NOT DURABLE/);
    assert.match(broker.stderr, /LOST/);
    assert.equal(fs.readFileSync(pidfile, 'utf8'), `${broker.child.pid}\n`);
  });

  it('advertises the fixed ports and the default topics in Metadata', async () => {
    const text = await run(KCAT, ['-L', '-b', bootstrap, '-m', '5'], { timeoutMs: 10000 });
    assert.equal(text.code, 0, text.stderr);
    for (let id = 1; id <= BROKERS; id++) {
      assert.match(text.stdout, new RegExp(`broker ${id} at 127\\.0\\.0\\.1:${base + id - 1}\\b`));
    }

    const md = await metadata();
    assert.deepEqual(
      md.brokers.map((b) => [b.id, b.name]).sort((a, b) => a[0] - b[0]),
      Array.from({ length: BROKERS }, (_, i) => [i + 1, `127.0.0.1:${base + i}`]));
    const topics = new Map(md.topics.map((t) => [t.topic, t]));
    for (const name of DEFAULT_TOPICS) {
      const t = topics.get(name);
      assert.ok(t, `topic ${name} missing`);
      assert.equal(t.partitions.length, 3, `${name} partitions`);
      for (const p of t.partitions) {
        assert.equal(p.replicas.length, 3, `${name} [${p.partition}] replication factor`);
      }
    }
  });

  it('gives back what was produced (kcat -P, kcat -C -e)', async () => {
    const tag = `m-${process.pid}-${Date.now()}`;
    const msgs = Array.from({ length: 20 }, (_, i) => `${tag}-${i}`);
    const prod = await run(KCAT, ['-P', '-b', bootstrap, '-t', 'parley.messages', '-p', '0',
      '-X', 'message.timeout.ms=5000'], { input: msgs.join('\n') + '\n', timeoutMs: 10000 });
    assert.equal(prod.code, 0, `produce: ${prod.stderr}`);

    const cons = await run(KCAT, ['-C', '-b', bootstrap, '-t', 'parley.messages', '-p', '0',
      '-o', 'beginning', '-e', '-q'], { timeoutMs: 10000 });
    assert.equal(cons.code, 0, `consume: ${cons.stderr}`);
    assert.deepEqual(cons.stdout.split('\n').filter((l) => l.startsWith(tag)), msgs);
  });

  it('broker-down makes a broker unreachable, broker-up restores it', async () => {
    // a partition led by a broker other than the bootstrap one, so the client
    // can still fetch metadata while its leader is down
    const md = await metadata();
    let target = null;
    for (const t of md.topics) {
      const p = t.partitions.find((q) => q.leader !== 1);
      if (DEFAULT_TOPICS.includes(t.topic) && p) {
        target = { topic: t.topic, partition: p.partition, leader: p.leader };
        break;
      }
    }
    assert.ok(target, 'no partition led by broker 2 or 3');
    const leaderPort = base + target.leader - 1;
    // librdkafka checks message timeouts when its broker thread wakes, and a
    // thread for a refused broker sleeps out a reconnect backoff that grows
    // towards 10 s: a short backoff keeps the failure at ~message.timeout.ms
    const produce = (line, timeoutMs) => run(KCAT, ['-P', '-b', bootstrap, '-t', target.topic,
      '-p', String(target.partition), '-X', `message.timeout.ms=${timeoutMs}`,
      '-X', 'reconnect.backoff.ms=10', '-X', 'reconnect.backoff.max.ms=100'],
    { input: `${line}\n`, timeoutMs: timeoutMs + 8000 });
    const tag = `d-${process.pid}-${Date.now()}`;

    const down = await ctl('broker-down', String(target.leader));
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.equal(down.stdout, `ok broker ${target.leader} down\n`);
    const listed = await ctl('brokers');
    assert.equal(listed.code, 0);
    assert.match(listed.stdout, new RegExp(`\\b${target.leader} 127\\.0\\.0\\.1:${leaderPort} down\\b`));
    assert.equal(await tcpConnect(leaderPort), 'ECONNREFUSED');

    const failed = await produce(`${tag}-while-down`, 1000);
    assert.equal(failed.timedOut, false, 'kcat hung while the leader was down');
    assert.notEqual(failed.code, 0, 'produce to a down leader must fail');

    const up = await ctl('broker-up', String(target.leader));
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.equal(up.stdout, `ok broker ${target.leader} up\n`);
    assert.equal(await tcpConnect(leaderPort), 'connected');

    const ok = await produce(`${tag}-after-up`, 5000);
    assert.equal(ok.code, 0, `produce after broker-up: ${ok.stderr}`);
    const cons = await run(KCAT, ['-C', '-b', bootstrap, '-t', target.topic,
      '-p', String(target.partition), '-o', 'beginning', '-e', '-q'], { timeoutMs: 10000 });
    assert.equal(cons.code, 0, cons.stderr);
    assert.deepEqual(cons.stdout.split('\n').filter((l) => l.startsWith(tag)), [`${tag}-after-up`]);
  });

  it('answers ping, rejects bogus commands with exit code 1', async () => {
    const ping = await ctl('ping');
    assert.equal(ping.code, 0);
    assert.equal(ping.stdout, 'ok pong\n');

    const bogus = await ctl('bogus');
    assert.equal(bogus.code, 1);
    assert.match(bogus.stdout, /^error /);

    const range = await ctl('broker-down', String(BROKERS + 1));
    assert.equal(range.code, 1);
    assert.match(range.stdout, /^error /);
  });

  it('bounds control lines: an over-long line gets an error and a close', async () => {
    const reply = await new Promise((resolve, reject) => {
      const c = net.connect(sock);
      let data = '';
      const timer = setTimeout(() => { c.destroy(); reject(new Error(`no close; got ${data}`)); }, 3000);
      c.setEncoding('utf8');
      c.on('data', (d) => { data += d; });
      c.on('error', () => {}); // the broker may reset: unread bytes
      c.on('close', () => { clearTimeout(timer); resolve(data); });
      c.write('A'.repeat(4096));
    });
    assert.match(reply, /^error line too long/);
    assert.equal((await ctl('ping')).stdout, 'ok pong\n');
  });

  it('refuses to start on ports that are taken, naming the port', async () => {
    const second = await run(DEVBROKER, ['--port', String(base + 1)], { timeoutMs: 5000 });
    assert.equal(second.timedOut, false);
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, new RegExp(`127\\.0\\.0\\.1:${base + 1}\\b`));
  });

  it('exits 0 within 2 s on SIGTERM and cleans up', async () => {
    const t0 = performance.now();
    broker.child.kill('SIGTERM');
    const res = await waitExit(broker.child, 2000);
    const ms = performance.now() - t0;
    assert.equal(res.timedOut, false, 'still running 2 s after SIGTERM');
    assert.equal(res.code, 0, `exit ${res.code ?? res.signal}; stderr:\n${broker.stderr}`);
    assert.ok(ms < 2000, `exit took ${ms.toFixed(1)} ms`);
    assert.equal(fs.existsSync(sock), false, 'control socket left behind');
    assert.equal(fs.existsSync(pidfile), false, 'pidfile left behind');
  });
});
