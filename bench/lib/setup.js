'use strict';
/**
 * The proxy under test: its database (a fresh PostgreSQL database, or the embedded one in a temp DATA_DIR), the
 * server process, and the organizations, org keys and JWTs the load is sent with.
 */
const { execFile } = require('node:child_process');
const { createHmac, randomBytes, randomUUID } = require('node:crypto');
const { existsSync, mkdtempSync, readFileSync } = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Client } = require('pg');
const procs = require('./procs');

const ROOT = path.resolve(__dirname, '..', '..');
/** The built server and CLI of a checkout: this one, or a baseline's (`--baseline DIR`). */
const mainOf = (root) => path.join(root, 'dist', 'src', 'main.js');
const cliOf = (root) => path.join(root, 'dist', 'src', 'cli.js');

/** Creates `bench_<ts>` on the server of `databaseUrl`; dropped again by the cleanup. */
async function createBenchDatabase(databaseUrl, settings = {}) {
  const name = `bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const admin = new Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
    // experiments only (e.g. synchronous_commit=off, to show what the commits on the request path cost)
    for (const [k, v] of Object.entries(settings)) await admin.query(`ALTER DATABASE ${name} SET ${k} = '${String(v).replace(/'/g, "''")}'`);
  } finally {
    await admin.end();
  }
  procs.onCleanup(async () => {
    const c = new Client({ connectionString: databaseUrl });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => c.query(`DROP DATABASE IF EXISTS ${name}`));
    } finally {
      await c.end();
    }
  });
  const u = new URL(databaseUrl);
  u.pathname = `/${name}`;
  return { name, url: u.toString() };
}

function proxyEnv({ port, databaseUrl, dataDir, jwtSecret, encryptionKey, upstreamUrl }) {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.DATA_DIR;
  Object.assign(env, {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    PORT: String(port),
    HOST: '127.0.0.1',
    JWT_SECRET: jwtSecret,
    ENCRYPTION_KEY: encryptionKey,
    OPENAI_BASE_URL: upstreamUrl,
  });
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  else env.DATA_DIR = dataDir;
  return env;
}

async function waitHealthy(url, child, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the proxy exited (${child.exitCode ?? child.signalCode}) during start: ${child.stderrTail.trim() || child.stdoutTail.trim()}`);
    }
    try {
      const res = await fetch(`${url}/health`);
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the proxy did not answer /health within ${timeoutMs} ms`);
}

/** The node flags `npm start` runs the server with (package.json), so the bench measures the server as shipped. */
function startFlags(root) {
  const script = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.start;
  const m = /^node((?: --\S+)*) dist\/src\/main\.js$/.exec(script);
  if (!m) throw new Error(`package.json scripts.start is not "node [flags] dist/src/main.js": ${script}`);
  return m[1].trim().split(' ').filter(Boolean);
}

/**
 * Starts dist/src/main.js pinned to the system-under-test core.
 * @returns {{child, url, env, dbUrl: () => string, jwtSecret, encryptionKey, mode}}
 */
async function startProxy({ root = ROOT, databaseUrl, upstreamUrl, pinning, cpuProfDir, dbSettings, nodeFlags = [], extraEnv = {} }) {
  const MAIN = mainOf(root);
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build${root === ROOT ? '' : ' in the baseline checkout'}`);
  const jwtSecret = randomBytes(48).toString('base64url');
  const encryptionKey = randomBytes(32).toString('hex');
  let dbUrl;
  let dataDir;
  let dbName;
  if (databaseUrl) {
    const db = await createBenchDatabase(databaseUrl, dbSettings);
    dbUrl = db.url;
    dbName = db.name;
  } else {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'proxy-bench-'));
    procs.removeDirLater(dataDir);
  }
  const port = await procs.freePort();
  const env = { ...proxyEnv({ port, databaseUrl: dbUrl, dataDir, jwtSecret, encryptionKey, upstreamUrl }), ...extraEnv };
  const profFlags = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, '--cpu-prof-name=proxy.cpuprofile'] : [];
  const child = procs.start(root === ROOT ? 'proxy' : 'baseline', process.execPath, [...startFlags(root), ...nodeFlags, ...profFlags, MAIN], {
    env,
    core: pinning.sutCore,
    pinning,
  });
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(url, child);
  if (!dbUrl) {
    // The embedded database is served on a private Unix socket by the proxy process; its endpoint file says where.
    dbUrl = JSON.parse(readFileSync(path.join(dataDir, 'embedded-db.json'), 'utf8')).url;
  }
  return { root, child, url, env, dbUrl, dbName, dataDir, jwtSecret, encryptionKey, mode: databaseUrl ? 'postgresql' : 'embedded' };
}

function runCli(root, env, args) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cliOf(root), ...args, '--json'], { env, cwd: root, timeout: 60000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`cli ${args.slice(0, 2).join(' ')} failed: ${(stderr || err.message).trim().split('\n').slice(-3).join(' ')}`));
      const i = stdout.indexOf('{');
      try {
        resolve(JSON.parse(stdout.slice(i)));
      } catch {
        reject(new Error(`cli ${args.slice(0, 2).join(' ')} printed no JSON: ${stdout.slice(0, 200)}`));
      }
    });
  });
}

/** The same HS256 token the CLI's `jwt create` mints (JWT_SECRET as the raw UTF-8 HMAC key). */
function mintToken(jwtSecret, orgId, orgName) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { org_id: orgId, org_name: orgName, jti: randomUUID(), iat: now, exp: now + 86400 };
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${unsigned}.${createHmac('sha256', jwtSecret).update(unsigned).digest('base64url')}`;
}

async function orgsWithCli(proxy, { orgs, upstreamUrl, stamp }) {
  // one chain of commands per organization, the chains side by side (each CLI run boots the app)
  const one = async (i) => {
    const name = `bench-org-${stamp}-${i}`;
    const org = await runCli(proxy.root, proxy.env, ['org', 'create', name]);
    const orgId = org.id ?? org.organization?.id;
    if (!orgId) throw new Error(`cli org create printed no id: ${JSON.stringify(org)}`);
    await runCli(proxy.root, proxy.env, ['key', 'create', orgId, `sk-bench-${randomBytes(12).toString('hex')}`, '--label', 'bench', '--base-url', upstreamUrl]);
    const jwt = await runCli(proxy.root, proxy.env, ['jwt', 'create', '--org-id', orgId, '--expires-in', '1d']);
    if (!jwt.token) throw new Error(`cli jwt create printed no token: ${JSON.stringify(jwt)}`);
    return { id: orgId, name, token: jwt.token };
  };
  return Promise.all(Array.from({ length: orgs }, (_, i) => one(i)));
}

/** Without the CLI: rows by SQL, the key encrypted by the built KeyCryptoService, tokens signed here. */
async function orgsWithSql(proxy, { orgs, upstreamUrl, stamp }) {
  const { KeyCryptoService } = require(path.join(proxy.root, 'dist', 'src', 'keys', 'key-crypto.service.js'));
  const { parseMasterKey } = require(path.join(proxy.root, 'dist', 'src', 'config', 'app-config.js'));
  const crypto = new KeyCryptoService({ encryptionKey: parseMasterKey('ENCRYPTION_KEY', proxy.encryptionKey) });
  const client = new Client({ connectionString: proxy.dbUrl });
  await client.connect();
  const out = [];
  try {
    for (let i = 0; i < orgs; i++) {
      const name = `bench-org-${stamp}-${i}`;
      const { rows } = await client.query('INSERT INTO organizations (name) VALUES ($1) RETURNING id', [name]);
      const orgId = rows[0].id;
      const keyId = randomUUID();
      const apiKey = `sk-bench-${randomBytes(12).toString('hex')}`;
      await client.query(
        `INSERT INTO api_keys (id, organization_id, user_id, label, base_url, last4, encrypted_key) VALUES ($1, $2, NULL, 'bench', $3, $4, $5)`,
        [keyId, orgId, upstreamUrl, apiKey.slice(-4), crypto.encrypt(apiKey, { id: keyId, organizationId: orgId, userId: null })],
      );
      out.push({ id: orgId, name, token: mintToken(proxy.jwtSecret, orgId, name) });
    }
  } finally {
    await client.end();
  }
  return out;
}

/** Organizations with an org key each (pointing at the fake upstream) and one token each; `how`: auto|cli|sql. */
async function createOrganizations(proxy, { orgs, upstreamUrl, how }) {
  const stamp = Date.now().toString(36);
  const cliReady = existsSync(cliOf(proxy.root));
  if (how === 'cli' || (how === 'auto' && cliReady)) {
    try {
      return { orgs: await orgsWithCli(proxy, { orgs, upstreamUrl, stamp }), via: 'cli' };
    } catch (err) {
      if (how === 'cli') throw err;
      return { orgs: await orgsWithSql(proxy, { orgs, upstreamUrl, stamp: `${stamp}s` }), via: `sql (cli failed: ${err.message})` };
    }
  }
  return { orgs: await orgsWithSql(proxy, { orgs, upstreamUrl, stamp }), via: cliReady ? 'sql' : 'sql (dist/src/cli.js not built)' };
}

/** `users` X-User-IDs spread round-robin over the organizations. */
function benchUsers(orgs, users) {
  return Array.from({ length: users }, (_, i) => ({ userId: `bench-user-${i}`, org: orgs[i % orgs.length] }));
}

/** Counts completed exchanges among the given request ids (exact), and overall. */
async function countCompleted(dbUrl, ids) {
  const client = new Client({ connectionString: dbUrl });
  await client.connect();
  try {
    let matched = 0;
    for (let i = 0; i < ids.length; i += 20000) {
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM exchanges WHERE status = 'completed' AND id = ANY($1::text[])`, [
        ids.slice(i, i + 20000),
      ]);
      matched += rows[0].n;
    }
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM exchanges WHERE status = 'completed'`);
    return { matched, total: rows[0].n };
  } finally {
    await client.end();
  }
}

/** Exchanges per status (`pending`, `completed`, `failed`, …) in the proxy's database. */
async function countByStatus(dbUrl) {
  const client = new Client({ connectionString: dbUrl });
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT status, count(*)::int AS n FROM exchanges GROUP BY status ORDER BY status`);
    const counts = Object.fromEntries(rows.map((r) => [r.status, r.n]));
    // a call still running is an open call (a build before them wrote pending rows of exchanges only)
    const [{ open }] = (await client.query(`SELECT to_regclass('open_calls') IS NOT NULL AS open`)).rows;
    const [{ n }] = open ? (await client.query(`SELECT count(*)::int AS n FROM open_calls`)).rows : [{ n: 0 }];
    if (n) counts.pending = (counts.pending ?? 0) + n;
    return counts;
  } finally {
    await client.end();
  }
}

/** Transaction and row counters of the proxy's database (pg_stat_database), to tell what a request costs it. */
async function dbStats(dbUrl) {
  const client = new Client({ connectionString: dbUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT (xact_commit + xact_rollback)::bigint AS xacts, tup_fetched::bigint AS fetched, tup_inserted::bigint AS inserted,
              tup_updated::bigint AS updated FROM pg_stat_database WHERE datname = current_database()`,
    );
    return rows[0] ? Object.fromEntries(Object.entries(rows[0]).map(([k, v]) => [k, Number(v)])) : undefined;
  } catch {
    return undefined;
  } finally {
    await client.end();
  }
}

module.exports = { countByStatus, dbStats, startProxy, createOrganizations, benchUsers, countCompleted, mintToken, proxyEnv, startFlags, waitHealthy };
