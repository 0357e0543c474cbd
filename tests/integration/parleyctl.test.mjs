// Integration test of parleyctl against a real MariaDB.
//
// Starts its own private mariadbd under a temporary directory (DESIGN §3.1),
// on 127.0.0.1:$PARLEY_TEST_CTL_DB_PORT (default 33306) and a Unix socket, and
// stops it afterwards whatever happened.  With PARLEY_DB_URL set, uses that
// server instead, in fresh databases it drops at the end.
//
//   node --test tests/integration/parleyctl.test.mjs
//
// Binaries come from $PARLEY_BIN (default build/bin, relative to the repo).
// Queries go through the mariadb command-line client, independent of the
// code under test.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFileSync, cpSync, existsSync, mkdtempSync, openSync, closeSync,
  readdirSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CTL = join(resolve(ROOT, process.env.PARLEY_BIN ?? 'build/bin'), 'parleyctl');
const MIGRATIONS = join(ROOT, 'conf/migrations');
const PORT = Number(process.env.PARLEY_TEST_CTL_DB_PORT ?? 33306);
const EXTERNAL = process.env.PARLEY_DB_URL || null;
const EPOCH_MS = 1735689600000n; // lib/parley_id.h

const tmp = mkdtempSync(join(tmpdir(), 'parley-ctl-'));
let server = null;      // the private mariadbd
let serverExit = null;  // resolves when it exits
const created = [];     // databases to drop in external mode

// ---- the server -------------------------------------------------------------

function killServerNow() {
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGKILL');
  }
}
process.on('exit', killServerNow); // last resort if after() never runs

function serverLogTail() {
  try {
    return readFileSync(join(tmp, 'mariadbd.log'), 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  assert.ok(existsSync(CTL), `${CTL} not built (set PARLEY_BIN or build parleyctl)`);
  if (EXTERNAL) return;

  const datadir = join(tmp, 'data');
  const asRoot = process.getuid && process.getuid() === 0 ? ['--user=root'] : [];
  const init = spawnSync('mariadb-install-db', [
    '--no-defaults', `--datadir=${datadir}`, '--auth-root-authentication-method=normal',
    '--skip-test-db', ...asRoot,
  ], { encoding: 'utf8' });
  assert.equal(init.status, 0, `mariadb-install-db failed:\n${init.stdout}\n${init.stderr}`);

  const log = openSync(join(tmp, 'mariadbd.log'), 'w');
  server = spawn('mariadbd', [
    '--no-defaults', `--datadir=${datadir}`, `--socket=${join(tmp, 'sock')}`,
    `--port=${PORT}`, '--bind-address=127.0.0.1', '--innodb-buffer-pool-size=32M',
    '--innodb-log-file-size=16M', `--pid-file=${join(tmp, 'mariadbd.pid')}`, ...asRoot,
  ], { stdio: ['ignore', log, log] });
  closeSync(log);
  serverExit = new Promise((r) => server.once('exit', r));

  for (let i = 0; i < 300; i++) {
    if (server.exitCode !== null) break;
    if (clientRaw('SELECT 1', null).status === 0) return;
    await sleep(100);
  }
  throw new Error(`mariadbd did not start on port ${PORT}:\n${serverLogTail()}`);
});

after(async () => {
  try {
    for (const db of created) clientRaw(`DROP DATABASE IF EXISTS \`${db}\``, null);
  } finally {
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGTERM');
      const force = setTimeout(killServerNow, 15000); // a clean shutdown takes ~1 s
      await serverExit;
      clearTimeout(force);
    }
    rmSync(tmp, { recursive: true, force: true });
  }
});

// ---- connections ------------------------------------------------------------

function external() {
  const u = new URL(EXTERNAL);
  return {
    url: u,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port,
    socket: u.searchParams.get('socket'),
  };
}

// The URL parleyctl gets for database db.
function dbUrl(db) {
  if (!EXTERNAL) return `mysql://root@localhost/${db}?socket=${join(tmp, 'sock')}`;
  const { url } = external();
  const auth = url.password ? `${url.username}:${url.password}` : url.username;
  return `${url.protocol}//${auth}@${url.host}/${db}${url.search}`;
}

// A fresh database name (created by parleyctl migrate --create-db or here).
function freshDb(tag) {
  const db = `parley_ctl_${tag}_${randomBytes(4).toString('hex')}`;
  created.push(db);
  return db;
}

function clientRaw(query, db) {
  let args = ['--no-defaults', '--batch', '--skip-column-names', '--raw'];
  const env = { ...process.env };
  if (!EXTERNAL) {
    args.push(`--socket=${join(tmp, 'sock')}`, '--user=root');
  } else {
    const c = external();
    args.push(`--user=${c.user}`);
    if (c.socket) args.push(`--socket=${c.socket}`);
    else args.push(`--host=${c.host}`, '--protocol=tcp');
    if (c.port) args.push(`--port=${c.port}`);
    env.MYSQL_PWD = c.password;
  }
  args.push('-e', query);
  if (db) args.push(db);
  return spawnSync('mariadb', args, { encoding: 'utf8', env });
}

// Rows of a query as arrays of strings (NULL as the string "NULL").
function sql(db, query) {
  const r = clientRaw(query, db);
  assert.equal(r.status, 0, `query failed: ${query}\n${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

function tableExists(db, table) {
  return sql(null, `SELECT COUNT(*) FROM information_schema.tables
                    WHERE table_schema = '${db}' AND table_name = '${table}'`)[0][0] === '1';
}

// ---- parleyctl ----------------------------------------------------------------

function ctl(db, args, extraEnv = {}) {
  const env = { ...process.env, ...extraEnv };
  if (db) env.PARLEY_DB_URL = dbUrl(db);
  else delete env.PARLEY_DB_URL;
  const r = spawnSync(CTL, args, { encoding: 'utf8', env, cwd: ROOT });
  assert.equal(r.error, undefined, `cannot run ${CTL}: ${r.error}`);
  return r;
}

function show(r) {
  return `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

// The assignments `tenant create` / `apikey create` print, as an object.
function assignments(stdout) {
  const out = {};
  for (const line of stdout.split('\n').filter(Boolean)) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    assert.ok(m, `not a shell assignment: ${JSON.stringify(line)}`);
    out[m[1]] = m[2];
  }
  return out;
}

const KEY_RE = /^pk_[A-Za-z0-9_-]{43}$/;
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

function migrationFiles(dir = MIGRATIONS) {
  return readdirSync(dir)
    .filter((f) => /^\d{4,18}_[a-z0-9][a-z0-9_]*\.sql$/.test(f))
    .map((f) => ({ file: f, version: BigInt(f.split('_')[0]), name: f.replace(/^\d+_|\.sql$/g, '') }))
    .sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
}

function copyMigrations(tag) {
  const dir = join(tmp, `migrations-${tag}`);
  cpSync(MIGRATIONS, dir, { recursive: true });
  return dir;
}

// ---- tests --------------------------------------------------------------------

const MAIN = freshDb('main');

test('migrate applies every migration once; a second run applies none', () => {
  const files = migrationFiles();
  assert.ok(files.some((f) => f.file === '0001_tenants.sql'));

  const first = ctl(MAIN, ['migrate', '--create-db']);
  assert.equal(first.status, 0, show(first));
  for (const f of files) assert.match(first.stdout, new RegExp(`^applied ${f.file} \\(\\d+ statements?\\)$`, 'm'));
  assert.match(first.stdout, new RegExp(`^migrations: ${files.length} applied, 0 already current$`, 'm'));

  const rows = sql(MAIN, 'SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version');
  assert.deepEqual(
    rows.map((r) => r.slice(0, 3)),
    files.map((f) => [String(f.version), f.name, sha256(readFileSync(join(MIGRATIONS, f.file)))]),
  );

  const second = ctl(MAIN, ['migrate']);
  assert.equal(second.status, 0, show(second));
  assert.doesNotMatch(second.stdout, /^applied /m);
  assert.match(second.stdout, new RegExp(`^migrations: 0 applied, ${files.length} already current$`, 'm'));
  assert.deepEqual(sql(MAIN, 'SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version'), rows);

  const status = ctl(MAIN, ['migrate', 'status']);
  assert.equal(status.status, 0, show(status));
  for (const f of files) assert.match(status.stdout, new RegExp(`^\\d{4,}\\s+applied\\s+\\S+ \\S+\\s+${f.file}$`, 'm'));
});

test('0001 creates tenants, tenant_api_keys and documents, tenant_id on all but tenants', () => {
  for (const t of ['tenants', 'tenant_api_keys', 'documents']) assert.ok(tableExists(MAIN, t), t);

  const tables = sql(null, `SELECT table_name FROM information_schema.tables
                            WHERE table_schema = '${MAIN}' ORDER BY table_name`).map((r) => r[0]);
  for (const t of tables) {
    if (t === 'tenants' || t === 'schema_migrations') continue;
    const cols = sql(null, `SELECT column_name FROM information_schema.columns
                            WHERE table_schema = '${MAIN}' AND table_name = '${t}'`).map((r) => r[0]);
    assert.ok(cols.includes('tenant_id'), `${t} has no tenant_id`);
  }

  // no AUTO_INCREMENT anywhere (DESIGN §2.7)
  assert.deepEqual(sql(null, `SELECT table_name, column_name FROM information_schema.columns
                              WHERE table_schema = '${MAIN}' AND extra LIKE '%auto_increment%'`), []);

  // documents: primary key (tenant_id, collection, doc_id)
  assert.deepEqual(
    sql(null, `SELECT column_name FROM information_schema.key_column_usage
               WHERE table_schema = '${MAIN}' AND table_name = 'documents'
               AND constraint_name = 'PRIMARY' ORDER BY ordinal_position`).map((r) => r[0]),
    ['tenant_id', 'collection', 'doc_id'],
  );
});

test('a changed applied migration is refused, naming the file, and nothing is applied', () => {
  const dir = copyMigrations('tampered');
  appendFileSync(join(dir, '0001_tenants.sql'), '\n-- tampered\n');
  writeFileSync(join(dir, '9001_after_tamper.sql'),
    'CREATE TABLE IF NOT EXISTS tamper_probe (tenant_id BIGINT UNSIGNED NOT NULL PRIMARY KEY);\n');
  const before = sql(MAIN, 'SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version');

  const r = ctl(MAIN, ['migrate', '--dir', dir]);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /0001_tenants\.sql changed after it was applied/);
  assert.match(r.stderr, /nothing applied/);
  assert.doesNotMatch(r.stdout, /^applied /m);

  assert.deepEqual(sql(MAIN, 'SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version'), before);
  assert.ok(!tableExists(MAIN, 'tamper_probe'), 'a pending migration ran despite the drift');

  const status = ctl(MAIN, ['migrate', 'status', '--dir', dir]);
  assert.equal(status.status, 1, show(status));
  assert.match(status.stdout, /^0001\s+changed\s.*0001_tenants\.sql$/m);
  assert.match(status.stdout, /^9001\s+pending\s+-\s+9001_after_tamper\.sql$/m);
});

test('a failing statement names the file, the statement number and the server error', () => {
  const db = freshDb('bad');
  const dir = copyMigrations('bad');
  const bad = join(dir, '9002_bad_statement.sql');
  writeFileSync(bad, [
    '-- the second statement is broken',
    'CREATE TABLE IF NOT EXISTS bad_first (tenant_id BIGINT UNSIGNED NOT NULL PRIMARY KEY);',
    '',
    "SELEC 'oops; still the same statement';",
    'CREATE TABLE bad_never (tenant_id BIGINT UNSIGNED NOT NULL PRIMARY KEY);',
    '',
  ].join('\n'));

  const r = ctl(db, ['migrate', '--create-db', '--dir', dir]);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /9002_bad_statement\.sql: statement 2 of 3 \(line 4\) failed: server error 1064/);
  assert.match(r.stderr, /SELEC 'oops; still the same statement'/);
  assert.match(r.stdout, /^applied 0001_tenants\.sql/m);

  const versions = sql(db, 'SELECT version FROM schema_migrations').map((x) => x[0]);
  assert.ok(versions.includes('1'));
  assert.ok(!versions.includes('9002'), 'the failed migration was recorded');
  assert.ok(!tableExists(db, 'bad_never'), 'a statement after the failure ran');

  // fixed, it completes: its first statement is re-runnable
  writeFileSync(bad, readFileSync(bad, 'utf8').replace('SELEC ', 'SELECT '));
  const again = ctl(db, ['migrate', '--dir', dir]);
  assert.equal(again.status, 0, show(again));
  assert.match(again.stdout, /^applied 9002_bad_statement\.sql \(3 statements\)$/m);
  assert.ok(tableExists(db, 'bad_never'));
});

test('an unterminated quote is reported with its line before anything is applied', () => {
  const db = freshDb('quote');
  const dir = copyMigrations('quote');
  writeFileSync(join(dir, '9003_open_quote.sql'),
    "CREATE TABLE IF NOT EXISTS q1 (tenant_id BIGINT UNSIGNED NOT NULL);\n\nINSERT INTO q1 VALUES ('no end);\n");

  const r = ctl(db, ['migrate', '--create-db', '--dir', dir]);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /9003_open_quote\.sql:3: unterminated '\.\.\.' string/);
  assert.match(r.stderr, /nothing applied/);
  // the database exists (--create-db) but holds no table, not even schema_migrations
  assert.deepEqual(sql(null, `SELECT table_name FROM information_schema.tables WHERE table_schema = '${db}'`), []);
});

test('a misnamed migration file or a duplicate version is refused', () => {
  const dir = copyMigrations('names');
  writeFileSync(join(dir, '0002_Bad-Name.sql'), 'SELECT 1;\n');
  let r = ctl(MAIN, ['migrate', '--dir', dir]);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /0002_Bad-Name\.sql: expected NNNN_name\.sql/);

  rmSync(join(dir, '0002_Bad-Name.sql'));
  writeFileSync(join(dir, '00001_same_version.sql'), 'SELECT 1;\n');
  r = ctl(MAIN, ['migrate', '--dir', dir]);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /have the same version 1/);
});

let acme;

test('tenant create prints a key whose SHA-256 is stored and whose plaintext is stored nowhere', () => {
  const t0 = BigInt(Date.now());
  const r = ctl(MAIN, ['tenant', 'create', '--name', 'acme']);
  assert.equal(r.status, 0, show(r));
  const out = assignments(r.stdout);
  assert.deepEqual(Object.keys(out), ['PARLEY_TENANT_ID', 'PARLEY_API_KEY']);
  assert.match(out.PARLEY_TENANT_ID, /^[1-9]\d*$/);
  assert.match(out.PARLEY_API_KEY, KEY_RE);
  acme = { id: out.PARLEY_TENANT_ID, key: out.PARLEY_API_KEY };

  // the id is a parley_id minted now by node 1023 (parleyctl's default)
  const id = BigInt(acme.id);
  const ms = (id >> 22n) + EPOCH_MS;
  assert.ok(ms >= t0 - 5000n && ms <= BigInt(Date.now()) + 5000n, `id time ${ms} vs now ${t0}`);
  assert.equal((id >> 12n) & 1023n, 1023n);

  assert.deepEqual(sql(MAIN, `SELECT name, status, settings FROM tenants WHERE id = ${acme.id}`),
    [['acme', 'active', 'NULL']]);
  assert.deepEqual(sql(MAIN, `SELECT key_hash, key_prefix, revoked_at FROM tenant_api_keys WHERE tenant_id = ${acme.id}`),
    [[sha256(acme.key), acme.key.slice(0, 11), 'NULL']]);

  // the plaintext (or its secret part) appears in no column of any table
  const tables = sql(null, `SELECT table_name FROM information_schema.tables WHERE table_schema = '${MAIN}'`);
  assert.ok(tables.length >= 4);
  for (const [t] of tables) {
    const dump = clientRaw(`SELECT * FROM \`${t}\``, MAIN);
    assert.equal(dump.status, 0, dump.stderr);
    assert.ok(!dump.stdout.includes(acme.key.slice(11)), `key material found in table ${t}`);
  }

  // the same name again, without --if-absent: refused, nothing added
  const dup = ctl(MAIN, ['tenant', 'create', '--name', 'acme']);
  assert.equal(dup.status, 1, show(dup));
  assert.match(dup.stderr, /a tenant named "acme" exists/);
  assert.equal(dup.stdout, '');
  assert.equal(sql(MAIN, "SELECT COUNT(*) FROM tenants WHERE name = 'acme'")[0][0], '1');
  assert.equal(sql(MAIN, `SELECT COUNT(*) FROM tenant_api_keys WHERE tenant_id = ${acme.id}`)[0][0], '1');
});

test('tenant create output can be eval-ed by a shell', () => {
  const r = spawnSync('sh', ['-c', 'eval "$("$0" tenant create --name shell-eval)" && echo "$PARLEY_TENANT_ID $PARLEY_API_KEY"', CTL],
    { encoding: 'utf8', env: { ...process.env, PARLEY_DB_URL: dbUrl(MAIN) } });
  assert.equal(r.status, 0, show(r));
  const [id, key] = r.stdout.trim().split(' ');
  assert.match(key, KEY_RE);
  assert.equal(sql(MAIN, `SELECT key_hash FROM tenant_api_keys WHERE tenant_id = ${id}`)[0][0], sha256(key));
});

let beta;

test('tenant create --if-absent twice yields one tenant with two keys', () => {
  const a = ctl(MAIN, ['tenant', 'create', '--name', 'beta', '--if-absent']);
  const b = ctl(MAIN, ['tenant', 'create', '--name', 'beta', '--if-absent']);
  assert.equal(a.status, 0, show(a));
  assert.equal(b.status, 0, show(b));
  const x = assignments(a.stdout);
  const y = assignments(b.stdout);
  assert.equal(x.PARLEY_TENANT_ID, y.PARLEY_TENANT_ID);
  assert.notEqual(x.PARLEY_API_KEY, y.PARLEY_API_KEY);
  assert.match(b.stderr, /exists .*issued a new key/);
  beta = { id: x.PARLEY_TENANT_ID, keys: [x.PARLEY_API_KEY, y.PARLEY_API_KEY] };

  assert.equal(sql(MAIN, "SELECT COUNT(*) FROM tenants WHERE name = 'beta'")[0][0], '1');
  assert.deepEqual(
    sql(MAIN, `SELECT key_hash FROM tenant_api_keys WHERE tenant_id = ${beta.id} ORDER BY id`).map((r) => r[0]),
    beta.keys.map(sha256),
  );
});

test('apikey revoke marks revoked_at on that key only; again is a no-op', () => {
  const prefix = beta.keys[0].slice(0, 11);
  const r = ctl(MAIN, ['apikey', 'revoke', '--tenant', beta.id, '--prefix', prefix]);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stdout, new RegExp(`^revoked ${prefix} \\(tenant ${beta.id}\\)$`, 'm'));

  const rows = sql(MAIN, `SELECT key_prefix, revoked_at IS NOT NULL, revoked_at FROM tenant_api_keys
                          WHERE tenant_id = ${beta.id} ORDER BY id`);
  assert.deepEqual(rows.map((x) => x.slice(0, 2)), [[prefix, '1'], [beta.keys[1].slice(0, 11), '0']]);

  const again = ctl(MAIN, ['apikey', 'revoke', '--tenant', beta.id, '--prefix', prefix]);
  assert.equal(again.status, 0, show(again));
  assert.match(again.stderr, /already revoked/);
  assert.equal(sql(MAIN, `SELECT revoked_at FROM tenant_api_keys WHERE tenant_id = ${beta.id} ORDER BY id`)[0][0], rows[0][2]);

  // another tenant's id with this prefix: no such key
  const other = ctl(MAIN, ['apikey', 'revoke', '--tenant', acme.id, '--prefix', beta.keys[1].slice(0, 11)]);
  assert.equal(other.status, 1, show(other));
  assert.match(other.stderr, /has no key/);
  assert.equal(sql(MAIN, `SELECT revoked_at FROM tenant_api_keys WHERE tenant_id = ${beta.id} ORDER BY id`)[1][0], 'NULL');

  const list = ctl(MAIN, ['tenant', 'list']);
  assert.equal(list.status, 0, show(list));
  assert.match(list.stdout, /^ID\s+STATUS\s+KEYS\s+REVOKED\s+NAME$/m);
  assert.match(list.stdout, new RegExp(`^${beta.id}\\s+active\\s+1\\s+1\\s+beta$`, 'm'));
  assert.match(list.stdout, new RegExp(`^${acme.id}\\s+active\\s+1\\s+0\\s+acme$`, 'm'));
});

test('apikey create issues another key for an existing tenant only', () => {
  const r = ctl(MAIN, ['apikey', 'create', '--tenant', acme.id, '--label', 'ci bot']);
  assert.equal(r.status, 0, show(r));
  const { PARLEY_API_KEY: key } = assignments(r.stdout);
  assert.match(key, KEY_RE);
  assert.deepEqual(sql(MAIN, `SELECT tenant_id, label, key_prefix FROM tenant_api_keys WHERE key_hash = '${sha256(key)}'`),
    [[acme.id, 'ci bot', key.slice(0, 11)]]);

  const none = ctl(MAIN, ['apikey', 'create', '--tenant', '12345']);
  assert.equal(none.status, 1, show(none));
  assert.match(none.stderr, /no tenant with id 12345/);
  assert.equal(none.stdout, '');
});

test('bad input is a usage error and changes nothing', () => {
  const count = () => sql(MAIN, 'SELECT (SELECT COUNT(*) FROM tenants), (SELECT COUNT(*) FROM tenant_api_keys)')[0];
  const before = count();
  const cases = [
    [['tenant', 'create'], /--name NAME is required/],
    [['tenant', 'create', '--name', ''], /1 to 128 bytes, not 0/],
    [['tenant', 'create', '--name', 'x'.repeat(129)], /1 to 128 bytes, not 129/],
    [['tenant', 'create', '--name', 'tab\there'], /control character/],
    [['tenant', 'create', '--name', 'ok', '--node', '1024'], /--node must be 0\.\.1023/],
    [['tenant', 'create', '--name', 'ok', '--bogus'], /unknown option "--bogus"/],
    [['apikey', 'revoke', '--tenant', acme.id, '--prefix', 'pk_short'], /first 11 characters/],
    [['apikey', 'create', '--tenant', '-1'], /decimal tenant id/],
    [['frobnicate'], /unknown command/],
  ];
  for (const [args, re] of cases) {
    const r = ctl(MAIN, args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${show(r)}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stdout, '');
  }

  // 128 bytes of multi-byte UTF-8 is the limit, not 128 characters
  const r = ctl(MAIN, ['tenant', 'create', '--name', 'é'.repeat(64)]);
  assert.equal(r.status, 0, show(r));
  const tooLong = ctl(MAIN, ['tenant', 'create', '--name', 'é'.repeat(64) + 'x']);
  assert.equal(tooLong.status, 2, show(tooLong));

  // invalid UTF-8 cannot travel in a JS string: let the shell make it
  const bin = spawnSync('sh', ['-c', '"$0" tenant create --name "$(printf \'ab\\377\')"', CTL],
    { encoding: 'utf8', env: { ...process.env, PARLEY_DB_URL: dbUrl(MAIN) } });
  assert.equal(bin.status, 2, show(bin));
  assert.match(bin.stderr, /not valid UTF-8 \(byte 3\)/);

  const after = count();
  assert.deepEqual(after, [String(Number(before[0]) + 1), String(Number(before[1]) + 1)]);
});

test('connection errors are clear and never show the password', () => {
  let r = ctl(null, ['tenant', 'list']);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /no database: pass --db URL or set PARLEY_DB_URL/);

  r = ctl(null, ['--db', 'postgres://u@h/db', 'tenant', 'list']);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /bad database URL: the URL must start with mysql:\/\//);

  r = ctl(null, ['tenant', 'list', '--db', 'mysql://root:s3cr%40t@127.0.0.1:1/parley']);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /cannot connect to mysql:\/\/root@127\.0\.0\.1:1\/parley: server error/);
  assert.ok(!r.stderr.includes('s3cr'), 'the password was printed');

  r = ctl(MAIN.replace('main', 'absent'), ['migrate', 'status']);
  assert.equal(r.status, 1, show(r));
  assert.match(r.stderr, /Unknown database .*--create-db/);
});

test('the TCP form of the URL works', { skip: EXTERNAL ? 'uses the private server' : false }, () => {
  const r = ctl(null, ['--db', `mysql://root@127.0.0.1:${PORT}/${MAIN}`, 'tenant', 'list']);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stdout, /\sacme$/m);
});

test('--help prints the usage; no command is a usage error', () => {
  let r = ctl(null, ['--help']);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stdout, /^usage: parleyctl /);
  for (const cmd of ['migrate', 'tenant create', 'tenant list', 'apikey create', 'apikey revoke']) {
    assert.ok(r.stdout.includes(cmd), cmd);
  }
  r = ctl(null, ['tenant', 'create', '--help']);
  assert.equal(r.status, 0, show(r));
  r = ctl(null, []);
  assert.equal(r.status, 2, show(r));
});
