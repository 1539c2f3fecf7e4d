#!/usr/bin/env node
/*
 * Database and process faults, against the built server and a real PostgreSQL (DATABASE_URL):
 *  1. under 20 concurrent clients, PostgreSQL is stopped (immediate) and started again: meanwhile only 503s with
 *     Retry-After (no 401/403, no crash), full recovery within seconds, every 2xx of the run has its record, every
 *     call that reached the upstream has its row, and none stays `pending` past the bound;
 *  2. `LOCK TABLE exchanges` held 25 s under 50 clients: only 200/503, every call that reached the upstream has
 *     its row, none `pending` past the bound after the unlock, no write applied twice (`duplicate key`);
 *  3. kill -9 of the server mid-load, then a restart: no `pending` rows, no 2xx without a record;
 *  4. 200 concurrent streams by 150 distinct users: all recorded, none overwritten.
 * Stops PostgreSQL on this machine: run it alone (CI runs it after the test suite). Exits 1 on any violation.
 */
'use strict';
const { spawn, execSync } = require('node:child_process');
const { mkdtempSync, rmSync, readdirSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { Client } = require('pg');

const ROOT = join(__dirname, '..', '..');
const NODE = process.execPath;
const JWT_SECRET = 'fault-test-jwt-secret-0123456789-abcdefghijkl';
const ENCRYPTION_KEY = 'ab'.repeat(32);
/** calls whose record is still open: their open calls, and pending rows of exchanges (as earlier versions wrote) */
const PENDING_SQL = `SELECT (SELECT count(*) FROM exchanges WHERE status = 'pending') + (SELECT count(*) FROM open_calls) AS n`;
const baseDb = process.env.DATABASE_URL;
if (!baseDb) {
  console.error('run-faults: DATABASE_URL (a real PostgreSQL) is required');
  process.exit(1);
}
const cluster = () => readdirSync('/etc/postgresql')[0];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
let failures = 0;

function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

function start(cmd, args, env, readyPattern) {
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d) => {
      out += d.toString();
      const m = readyPattern.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        child.stdout.resume();
        child.stderr.resume();
        resolve({ child, match: m });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}: ${out.slice(-2000)}`)));
  });
}

async function cli(env, ...args) {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [join(ROOT, 'dist/src/cli.js'), ...args, '--json'], { env: { PATH: process.env.PATH, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`cli ${args.join(' ')}: ${err}`))));
  });
}

async function withDb(url, fn) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function waitHealthy(url, ms = 30000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) return true;
    } catch {}
    await sleep(200);
  }
  return false;
}

function pgStop() {
  execSync(`pg_ctlcluster --skip-systemctl-redirect ${cluster()} main stop -m immediate`, { stdio: 'ignore' });
}
function pgStart() {
  execSync(`pg_ctlcluster --skip-systemctl-redirect ${cluster()} main start`, { stdio: 'ignore' });
}

async function main() {
  const dbName = `proxy_faults_${Date.now()}`;
  const admin = new URL(baseDb);
  admin.pathname = '/postgres';
  await withDb(admin.toString(), (c) => c.query(`CREATE DATABASE "${dbName}"`));
  const dbUrl = new URL(baseDb);
  dbUrl.pathname = `/${dbName}`;
  const DATABASE_URL = dbUrl.toString();
  const dataDir = mkdtempSync(join(tmpdir(), 'proxy-faults-'));
  const env = { DATABASE_URL, JWT_SECRET, ENCRYPTION_KEY, DATA_DIR: dataDir, LOG_LEVEL: 'warn', NODE_ENV: 'production', CACHE_SYNC_INTERVAL_MS: '500' };

  const upstream = await start(
    NODE,
    [join(ROOT, 'dist/test/support/fake-upstream.js'), '--port', '0', '--delta-count', '20', '--event-interval-ms', '2', '--max-recorded', '1000000'],
    {},
    /listening on (http:\/\/\S+\/v1)/,
  );
  const upstreamUrl = upstream.match[1];
  const upstreamBase = upstreamUrl.replace(/\/v1$/, '');
  /** the inputs of the calls the upstream received since the last reset */
  const upstreamInputs = async () => {
    const r = await (await fetch(`${upstreamBase}/__fake/requests`)).json();
    return r.requests.map((q) => q.body && q.body.input).filter((x) => typeof x === 'string');
  };
  const resetUpstream = () => fetch(`${upstreamBase}/__fake/reset`, { method: 'POST' });

  console.log(`upstream stand-in at ${upstreamUrl}; database ${dbName}`);
  await cli(env, 'migrate');
  const org = await cli(env, 'org', 'create', `faults-${Date.now()}`);
  await cli(env, 'key', 'create', org.id, 'sk-fault-test-key-0001', '--base-url', upstreamUrl);
  const { token } = await cli(env, 'jwt', 'create', '--org-id', org.id);

  const port = 20000 + Math.floor(Math.random() * 20000);
  const serverEnv = { ...env, PORT: String(port), HOST: '127.0.0.1', UPSTREAM_TIMEOUT_MS: '5000' };
  // the server's log lines (warn and error), searched for writes applied twice
  let serverLog = '';
  const startServer = async () => {
    const child = spawn(NODE, [join(ROOT, 'dist/src/main.js')], { env: { PATH: process.env.PATH, ...serverEnv }, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d) => (serverLog = (serverLog + d).slice(-5_000_000)));
    children.add(child);
    child.on('exit', () => children.delete(child));
    return { child };
  };
  console.log('organization, key and token created; starting the server');
  let server = await startServer();
  const url = `http://127.0.0.1:${port}`;
  check(await waitHealthy(url), 'server healthy');

  const post = (user, stream = false, signal, input = `hello from ${user}`) =>
    fetch(`${url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-user-id': user, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input, stream }),
      signal,
    });

  // A row stays pending only while its call runs: once the database takes writes again, a record kept in memory is
  // written within the recorder's longest retry wait (10 s), and a row no call owns is swept within 15 s.
  const PENDING_BOUND_MS = 30_000;
  /** Waits up to PENDING_BOUND_MS for no pending row; returns how many are left. */
  const pendingLeft = async () => {
    const until = Date.now() + PENDING_BOUND_MS;
    let n = -1;
    while (Date.now() < until) {
      n = await withDb(DATABASE_URL, async (c) => Number((await c.query(PENDING_SQL)).rows[0].n)).catch(() => -1);
      if (n === 0) return 0;
      await sleep(500);
    }
    return n;
  };
  /** Every call the upstream received whose input starts with `tag` has its row (waits the same bound). */
  const unrecordedUpstreamCalls = async (tag) => {
    const inputs = (await upstreamInputs()).filter((x) => x.startsWith(tag));
    const until = Date.now() + PENDING_BOUND_MS;
    let missing = inputs;
    while (Date.now() < until) {
      const stored = await withDb(DATABASE_URL, async (c) =>
        (await c.query(`SELECT request_body->>'input' AS input FROM exchanges WHERE request_body->>'input' = ANY($1)`, [inputs])).rows.map((r) => r.input),
      ).catch(() => null);
      if (stored) {
        const have = new Set(stored);
        missing = inputs.filter((x) => !have.has(x));
        if (!missing.length) break;
      }
      await sleep(500);
    }
    return { reached: inputs.length, missing: missing.length };
  };

  // --- 1. database stopped and started under load
  {
    const results = [];
    let running = true;
    let n = 0;
    const worker = async (i) => {
      while (running) {
        const t = Date.now();
        try {
          const r = await post(`db-user-${i}`, i % 2 === 0, undefined, `db-outage ${i} #${n++}`);
          const text = await r.text();
          results.push({ t, end: Date.now(), status: r.status, id: r.headers.get('x-request-id'), retryAfter: r.headers.get('retry-after'), text });
        } catch (err) {
          results.push({ t, end: Date.now(), status: 0, err: String(err) });
        }
        await sleep(20);
      }
    };
    const workers = Array.from({ length: 20 }, (_, i) => worker(i));
    await sleep(2000);
    pgStop();
    const stopAt = Date.now();
    await sleep(4000);
    // pgStart blocks this process's event loop: a call begun just before it may only be sent once the database is
    // back, so "during the outage" means begun after the stop and answered before the start began.
    const startBeganAt = Date.now();
    pgStart();
    const startedAt = Date.now();
    let recoveredAt = 0;
    while (Date.now() - startedAt < 30000) {
      const recent = results.filter((r) => r.t > Date.now() - 500);
      if (recent.length >= 10 && recent.every((r) => r.status === 200)) {
        recoveredAt = Date.now();
        break;
      }
      await sleep(100);
    }
    await sleep(1500);
    running = false;
    await Promise.all(workers);
    const during = results.filter((r) => r.t >= stopAt + 100 && r.end < startBeganAt);
    const statuses = {};
    for (const r of results) statuses[r.status] = (statuses[r.status] || 0) + 1;
    console.log(`db outage: ${results.length} requests, statuses ${JSON.stringify(statuses)}, recovery ${recoveredAt ? recoveredAt - startedAt + ' ms' : 'none'}`);
    check(results.every((r) => [200, 503].includes(r.status)), 'only 200 and 503 answers (no 401/403/5xx other than 503, no crash)');
    check(during.length > 0 && during.every((r) => r.status === 503), 'every call while the database was down got 503');
    check(results.filter((r) => r.status === 503).every((r) => r.retryAfter), 'every 503 carries Retry-After');
    check(recoveredAt > 0 && recoveredAt - startedAt < 15000, 'full recovery within seconds of the database returning');
    check(server.child.exitCode === null, 'the server process survived');
    // a stream whose headers went out but that ended with an error event was not a successful answer
    const ok = results.filter((r) => r.status === 200 && !r.text.includes('event: error')).map((r) => r.id);
    const withheld = results.filter((r) => r.status === 200 && r.text.includes('event: error')).length;
    const stored = await withDb(DATABASE_URL, async (c) => (await c.query('SELECT id FROM exchanges WHERE id = ANY($1) AND status = $2', [ok, 'completed'])).rows.length);
    check(stored === ok.length, `every successful answer has its completed record (${stored}/${ok.length}; ${withheld} streams ended with an error event)`);
    const stuck = await pendingLeft();
    check(stuck === 0, `no exchange left pending ${PENDING_BOUND_MS / 1000} s after the database is back (${stuck})`);
    const upstreamCalls = await unrecordedUpstreamCalls('db-outage');
    check(upstreamCalls.missing === 0, `every call that reached the upstream has its row (${upstreamCalls.missing} of ${upstreamCalls.reached} missing)`);
  }

  // --- 2. exchanges locked for 25 s under 50 clients
  {
    await resetUpstream();
    const results = [];
    let running = true;
    let n = 0;
    const worker = async (i) => {
      while (running) {
        try {
          const r = await post(`lock-user-${i}`, i % 2 === 0, undefined, `locked ${i} #${n++}`);
          await r.text();
          results.push(r.status);
        } catch {
          results.push(0);
        }
        await sleep(20);
      }
    };
    const workers = Array.from({ length: 50 }, (_, i) => worker(i));
    await sleep(1000);
    const blocker = new Client({ connectionString: DATABASE_URL });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE exchanges');
    await sleep(25_000);
    await blocker.query('COMMIT');
    await blocker.end();
    await sleep(3000);
    running = false;
    await Promise.all(workers);
    const statuses = {};
    for (const r of results) statuses[r] = (statuses[r] || 0) + 1;
    console.log(`exchanges locked 25 s: ${results.length} requests, statuses ${JSON.stringify(statuses)}`);
    check(results.every((r) => r === 200 || r === 503), 'only 200 and 503 answers while exchanges was locked');
    const stuck = await pendingLeft();
    check(stuck === 0, `no exchange left pending ${PENDING_BOUND_MS / 1000} s after the unlock (${stuck})`);
    const upstreamCalls = await unrecordedUpstreamCalls('locked');
    check(upstreamCalls.missing === 0, `every call that reached the upstream has its row (${upstreamCalls.missing} of ${upstreamCalls.reached} missing)`);
    check(!/duplicate key/.test(serverLog), 'no record write applied twice (no duplicate key in the log)');
  }

  // --- 3. kill -9 mid-load, restart
  {
    const ids = [];
    let killed = false;
    const worker = async (i) => {
      while (!killed) {
        try {
          const r = await post(`kill-user-${i}`, i % 2 === 0);
          const id = r.headers.get('x-request-id');
          const text = await r.text();
          ids.push({ id, status: r.status, text });
        } catch {
          // the connection died with the server
        }
      }
    };
    const workers = Array.from({ length: 10 }, (_, i) => worker(i));
    await sleep(1500);
    server.child.kill('SIGKILL');
    killed = true;
    await Promise.all(workers);
    await new Promise((r) => (server.child.exitCode !== null || server.child.signalCode ? r() : server.child.once('exit', r)));
    server = await startServer();
    check(await waitHealthy(url), 'server healthy after kill -9 and restart');
    await sleep(500);
    const rows = await withDb(DATABASE_URL, async (c) => Number((await c.query(PENDING_SQL)).rows[0].n));
    check(rows === 0, `no pending rows after the restart (${rows})`);
    const ok = ids.filter((r) => r.status === 200 && !r.text.includes('event: error')).map((r) => r.id);
    const stored = await withDb(DATABASE_URL, async (c) => (await c.query(`SELECT id FROM exchanges WHERE id = ANY($1) AND status = 'completed'`, [ok])).rows.length);
    check(stored === ok.length, `no 2xx without a record after kill -9 (${stored}/${ok.length})`);
  }

  // --- 4. 200 concurrent streams by 150 users
  {
    const res = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const r = await post(`stream-user-${i % 150}`, true);
        const text = await r.text();
        return { id: r.headers.get('x-request-id'), status: r.status, text };
      }),
    );
    const ok = res.filter((r) => r.status === 200);
    check(ok.length === 200, `200 concurrent streams answered (${ok.length})`);
    const rows = await withDb(DATABASE_URL, async (c) =>
      (await c.query(`SELECT id, external_user_id, request_body->>'input' AS input FROM exchanges WHERE id = ANY($1)`, [ok.map((r) => r.id)])).rows,
    );
    check(rows.length === 200 && new Set(rows.map((r) => r.id)).size === 200, `all 200 streams recorded under distinct ids (${rows.length})`);
    check(rows.every((r) => r.input === `hello from ${r.external_user_id}`), 'no record overwritten by another (each row holds its own user input)');
  }

  server.child.kill('SIGTERM');
  upstream.child.kill('SIGTERM');
  await sleep(300);
  rmSync(dataDir, { recursive: true, force: true });
  await withDb(admin.toString(), (c) => c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`)).catch(() => undefined);
  console.log(failures ? `faults: ${failures} check(s) failed` : 'faults: all checks passed');
  process.exit(failures ? 1 : 0);
}

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
main().catch((err) => {
  console.error('run-faults:', err);
  try {
    pgStart();
  } catch {}
  process.exit(1);
});
