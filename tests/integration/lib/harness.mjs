// Integration test harness: starts nginx with the Parley module (Debian's
// nginx + the dynamic module, or the static ASan build, as scripts/test.sh
// says through PARLEY_NGINX / PARLEY_MODULE), private backend instances for
// fault tests, and checks nginx's error log after every test.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { checkResponse } from './openapi.mjs';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const bin = process.env.PARLEY_BIN || path.join(repo, 'build/bin');
export const nginxBin = process.env.PARLEY_NGINX || '/usr/sbin/nginx';
export const modulePath = process.env.PARLEY_MODULE ?? path.join(repo, 'build/modules/ngx_parley_module.so');
export const flavor = process.env.PARLEY_FLAVOR || 'dynamic';
const scratch = path.join(repo, 'var/test/runs');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

export function tmpDir(name) {
    fs.mkdirSync(scratch, { recursive: true });
    return fs.mkdtempSync(path.join(scratch, `${name}-`));
}

export async function waitFor(what, fn, { timeout = 10000, interval = 50 } = {}) {
    const deadline = Date.now() + timeout;
    let last;
    while (Date.now() < deadline) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            last = e;
        }
        await sleep(interval);
    }
    throw new Error(`${what}: not within ${timeout} ms${last ? `: ${last.message}` : ''}`);
}

async function portOpen(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('connect', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
    });
}

// Lines an error log must never hold: nginx's own alarms and sanitizer reports.
const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;
const BAD_LOG = new RegExp(`\\[(alert|emerg|crit)\\]|${SANITIZER.source}`);

export function assertCleanLog(file) {
    if (!fs.existsSync(file)) return;
    const bad = fs.readFileSync(file, 'utf8').split('\n').filter((l) => BAD_LOG.test(l));
    assert.deepEqual(bad, [], `${file} has alarming lines`);
}

function loadModuleLine() {
    return modulePath ? `load_module ${modulePath};` : '';
}

export function nginxConf({ port, dir, http = '', server = '', main = '', workers = 1, listen = '' }) {
    return `${loadModuleLine()}
worker_processes ${workers};
error_log ${dir}/error.log info;
pid ${dir}/nginx.pid;
${main}
events { worker_connections 1024; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/tmp;
    proxy_temp_path ${dir}/tmp;
    fastcgi_temp_path ${dir}/tmp;
    uwsgi_temp_path ${dir}/tmp;
    scgi_temp_path ${dir}/tmp;
${http}
    server {
        listen 127.0.0.1:${port}${listen};
        location = /ping { return 200 "pong\\n"; }
${server}
    }
}
`;
}

// `nginx -t` on a configuration: { ok, output }.
export function nginxTest(opts) {
    const dir = tmpDir('conftest');
    fs.mkdirSync(path.join(dir, 'tmp'));
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, nginxConf({ port: 1, dir, ...opts }));
    const r = spawnSync(nginxBin, ['-t', '-p', dir, '-c', conf], { encoding: 'utf8', timeout: 30000 });
    const output = `${r.stdout}${r.stderr}`;
    assert.doesNotMatch(output, SANITIZER, 'sanitizer report from nginx -t');
    return { ok: r.status === 0, output };
}

export async function startNginx(opts = {}) {
    const port = opts.port || await freePort();
    const dir = tmpDir(opts.name || 'nginx');
    // workers run as nobody and write large request bodies here: outside the
    // checkout, whose parent directories they may not be allowed to enter
    const bodies = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-bodies-'));
    fs.chmodSync(bodies, 0o777);
    fs.symlinkSync(bodies, path.join(dir, 'tmp'));
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, nginxConf({ port, dir, ...opts }));
    const errorLog = path.join(dir, 'error.log');
    const child = spawn(nginxBin, ['-p', dir, '-c', conf, '-g', 'daemon off;'], {
        stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'stderr.log'), 'a')],
        env: process.env,
    });
    let exited = null;
    child.on('exit', (code, sig) => { exited = { code, sig }; });
    await waitFor(`nginx on ${port}`, async () => {
        if (exited) throw new Error(`nginx exited ${JSON.stringify(exited)}: ${fs.readFileSync(path.join(dir, 'stderr.log'), 'utf8')}`);
        return portOpen(port);
    });
    const stop = async (signal = 'SIGQUIT', timeout = 15000) => {
        if (exited) return exited;
        child.kill(signal);
        await waitFor('nginx exit', () => exited, { timeout }).catch(() => child.kill('SIGKILL'));
        return exited;
    };
    return {
        port,
        dir,
        base: `http://127.0.0.1:${port}`,
        errorLog,
        child,
        get exited() { return exited; },
        stop,
        reload() { child.kill('SIGHUP'); },
        log() { return fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8') : ''; },
        // stop gracefully, then assert the error logs hold nothing alarming
        async finish() {
            await stop();
            assertCleanLog(errorLog);
            assertCleanLog(path.join(dir, 'stderr.log'));
        },
    };
}

export async function getJson(url, opts = {}) {
    const t0 = performance.now();
    const res = await fetch(url, { ...opts, signal: AbortSignal.timeout(opts.timeout || 15000) });
    const text = await res.text();
    const ms = performance.now() - t0;
    let body;
    try { body = JSON.parse(text); } catch { body = text; }
    return { status: res.status, headers: res.headers, body, ms };
}

// ---------------------------------------------------------------------------
// private backend instances for fault tests

class Service {
    constructor(name, port, dir) {
        this.name = name;
        this.port = port;
        this.dir = dir;
        this.child = null;
    }
    get running() { return this.child && this.child.exitCode === null && this.child.signalCode === null; }
    spawnChild(cmd, args) {
        const log = fs.openSync(path.join(this.dir, `${this.name}.log`), 'a');
        this.child = spawn(cmd, args, { stdio: ['ignore', log, log] });
        const c = this.child;
        this.exit = new Promise((r) => c.on('exit', r));
        return c;
    }
    // SIGSTOP takes effect thread by thread; a test may only proceed once
    // every thread of the service has really stopped.
    async pause() {
        this.child.kill('SIGSTOP');
        const dir = `/proc/${this.child.pid}/task`;
        await waitFor(`${this.name} stopped`, () => fs.readdirSync(dir).every((t) => {
            const stat = fs.readFileSync(`${dir}/${t}/stat`, 'utf8');
            return /^\S+ \(.*\) [Tt] /.test(stat);
        }), { timeout: 2000, interval: 5 });
    }
    resume() { this.child.kill('SIGCONT'); }
    async kill() {
        if (!this.running) return;
        this.child.kill('SIGCONT');
        this.child.kill('SIGKILL');
        await this.exit;
    }
}

export class Redis extends Service {
    static async start() {
        const r = new Redis('redis', await freePort(), tmpDir('redis'));
        await r.start();
        return r;
    }
    async start() {
        this.spawnChild('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'no', '--dir', this.dir]);
        await waitFor('redis', () => portOpen(this.port));
    }
}

export class MariaDB extends Service {
    static async start() {
        const m = new MariaDB('mariadb', await freePort(), tmpDir('mariadb'));
        const r = spawnSync('mariadb-install-db', ['--no-defaults', `--datadir=${m.dir}/data`, '--user=root',
            '--auth-root-authentication-method=normal', '--skip-test-db'], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        await m.start();
        const sql = `CREATE DATABASE parley; CREATE USER 'parley'@'127.0.0.1' IDENTIFIED BY 'pw';
            GRANT ALL ON parley.* TO 'parley'@'127.0.0.1';`;
        const c = spawnSync('mariadb', ['--no-defaults', `--socket=${m.socket}`, '-uroot', '-e', sql], { encoding: 'utf8' });
        assert.equal(c.status, 0, c.stderr);
        return m;
    }
    get socket() { return path.join(this.dir, 'sock'); }
    async start() {
        this.spawnChild('mariadbd', ['--no-defaults', '--user=root', `--datadir=${this.dir}/data`,
            `--socket=${this.socket}`, `--port=${this.port}`, '--bind-address=127.0.0.1',
            '--innodb-buffer-pool-size=32M', '--innodb-log-file-size=16M', '--skip-name-resolve',
            `--pid-file=${this.dir}/mariadb.pid`]);
        await waitFor('mariadb', () => portOpen(this.port), { timeout: 20000 });
    }
    directive(extra = '') {
        return `parley_db 127.0.0.1:${this.port} user=parley password=pw database=parley ${extra};`;
    }
}

export class Broker extends Service {
    static async start() {
        const b = new Broker('devbroker', await freePort(), tmpDir('devbroker'));
        await b.start();
        return b;
    }
    async start() {
        const c = this.spawnChild(path.join(bin, 'parley-devbroker'), ['--port', String(this.port), '--brokers', '1']);
        void c;
        await waitFor('devbroker', () => portOpen(this.port));
    }
}

export function cpuCount() { return os.availableParallelism(); }

// ---------------------------------------------------------------------------
// the shared test stack (scripts/stack.sh test start; scripts/test.sh) and
// nginx instances serving the REST API against it

export function stackEnv() {
    const file = path.join(repo, 'var/test/stack.env');
    const env = {};
    if (fs.existsSync(file)) {
        for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
            const m = /^(PARLEY_[A-Z_]+)='?([^']*)'?$/.exec(line);
            if (m) env[m[1]] = m[2];
        }
    }
    return { ...env, ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('PARLEY_'))) };
}

export function parleyctl(...args) {
    const env = stackEnv();
    const r = spawnSync(path.join(bin, 'parleyctl'), ['--db', env.PARLEY_DB_URL, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`parleyctl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
}

// A new tenant with a fresh admin key: { id, key }.
export function createTenant(name = `t-${process.pid}-${Math.random().toString(36).slice(2, 10)}`) {
    const out = parleyctl('tenant', 'create', '--name', name);
    const id = /PARLEY_TENANT_ID=(\S+)/.exec(out)[1];
    const key = /PARLEY_API_KEY=(\S+)/.exec(out)[1];
    return { id, key, name };
}

export function tokenKeyFile() {
    const file = path.join(repo, 'var/test/token.key');
    if (!fs.existsSync(file)) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, Buffer.from(Array.from({ length: 48 }, () => Math.floor(Math.random() * 256))));
    }
    return file;
}

let nodeIds = Math.floor(Math.random() * 62);

export async function startApi(opts = {}) {
    const env = stackEnv();
    // every instance mints ids as its own node, as every node of a deployment
    nodeIds = (nodeIds + 1) % 62;
    return startNginx({
        name: opts.name || 'api',
        workers: opts.workers || 1,
        listen: opts.listen || '',
        main: `thread_pool parley threads=1;\nparley_node_id ${opts.nodeId ?? nodeIds};\n${opts.main || ''}`,
        http: `
    parley_db 127.0.0.1:${env.PARLEY_DB_PORT} user=${env.PARLEY_DB_USER} password=${env.PARLEY_DB_PASSWORD} database=${env.PARLEY_DB_NAME} pool=${opts.pool || 4} timeout=${opts.dbTimeout || '3s'};
    parley_redis 127.0.0.1:${env.PARLEY_REDIS_PORT};
    parley_token_key ${tokenKeyFile()};
    parley_api_cache_ttl ${opts.cacheTtl || '1s'};
    ${opts.http || ''}`,
        server: `
        location /v1/ { parley_api; }
        ${opts.server || ''}`,
    });
}

// A small client bound to a base URL and a credential.
export function client(base, auth = {}) {
    const call = async (method, p, body, extra = {}) => {
        const headers = { ...extra };
        if (auth.key) headers.authorization = `Bearer ${auth.key}`;
        if (auth.token) headers.authorization = `Bearer ${auth.token}`;
        if (auth.user) headers['x-parley-user'] = auth.user;
        let payload;
        if (body !== undefined) {
            payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
            headers['content-type'] = headers['content-type'] || 'application/json';
        }
        const r = await getJson(`${base}${p}`, { method, headers, body: payload });
        if (!auth.noSchema && p.startsWith('/v1/')) {
            checkResponse(method, `${base}${p}`, r.status, r.body);
        }
        return r;
    };
    return {
        get: (p, h) => call('GET', p, undefined, h),
        post: (p, b, h) => call('POST', p, b, h),
        patch: (p, b, h) => call('PATCH', p, b, h),
        put: (p, b, h) => call('PUT', p, b, h),
        del: (p, h) => call('DELETE', p, undefined, h),
        as: (more) => client(base, { ...auth, ...more }),
    };
}
