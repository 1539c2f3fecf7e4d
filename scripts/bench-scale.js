#!/usr/bin/env node
'use strict';
/**
 * The exchanges table at scale: fills a fresh database with N exchanges (default 10,000,000) over the last year,
 * starts the built server on it, and measures the reads the API and the console make (p50/p95 over repeated calls
 * with varied parameters) and the proxy's write throughput against the filled table and an empty database.
 *
 *   npm run bench:scale                      10,000,000 rows (the fill takes a while)
 *   npm run bench:scale -- --rows 1000000
 *   npm run bench:scale -- --small           ~200,000 rows, a few minutes; exits 1 when a read misses its goal badly
 *
 * Options: --rows N, --small, --calls N (timed calls per read), --write-seconds S (per database), --keep (the
 * databases are kept), --database NAME (an earlier --keep's filled database: no fill), --json FILE, --only TEXT (only
 * the reads whose name holds TEXT; no writes).
 * DATABASE_URL names the PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres); the script makes
 * its own databases (scale_…) and drops them after.
 *
 * The rows are made by PostgreSQL itself (INSERT … SELECT over generate_series, in chunks), in the shapes the
 * recorder writes: 20 organizations (one with a fifth of the rows), 100,000 users (fewer below 10,000,000 rows:
 * one per 100 exchanges), 500 personas with versions, sessions of six exchanges, ratings (1 in 20 completed
 * exchanges) and analysis results (1 in 20 exchanges with a persona; 1 in 40 a second type).
 */
require('./check-node');
const { execFile } = require('node:child_process');
const { randomBytes, randomUUID } = require('node:crypto');
const { existsSync, mkdirSync, readFileSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { Client } = require('pg');
const procs = require('../bench/lib/procs');
const { mintToken, proxyEnv, startFlags, waitHealthy } = require('../bench/lib/setup');
const { ensureWrk } = require('../bench/lib/wrk');

const ROOT = path.join(__dirname, '..');
const MAIN = path.join(ROOT, 'dist', 'src', 'main.js');
const FAKE = path.join(ROOT, 'dist', 'test', 'support', 'fake-upstream.js');
const RESULTS = path.join(ROOT, 'bench', 'results');
const DAY = 86_400_000;
const ORGS = 20;
const PERSONAS = 500;
const SESSION_SIZE = 6;
const READ_GOAL_MS = 100;
const WRITE_GOAL = 0.9;
/** --small fails when a read's p95 is this many times its goal, or writes fall below this share of the empty table's */
const SMALL_READ_LIMIT = 3;
const SMALL_WRITE_LIMIT = 0.5;
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'o3-mini'];
const CATEGORIES = { intent: ['billing', 'technical_support', 'sales', 'account', 'other'], sentiment: ['positive', 'neutral', 'frustrated'] };

function parseArgs(argv) {
  const o = { rows: 10_000_000, small: false, calls: undefined, writeSeconds: undefined, keep: false, database: undefined, json: path.join(RESULTS, 'scale.json') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--rows') o.rows = Number(next());
    else if (a === '--small') o.small = true;
    else if (a === '--calls') o.calls = Number(next());
    else if (a === '--write-seconds') o.writeSeconds = Number(next());
    else if (a === '--keep') o.keep = true;
    else if (a === '--database') o.database = next();
    else if (a === '--json') o.json = path.resolve(next());
    else if (a === '--only') o.only = next();
    else if (a === '--help' || a === '-h') {
      console.log(readFileSync(__filename, 'utf8').split('*/')[0]);
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (o.small && !argv.includes('--rows')) o.rows = 200_000;
  if (!Number.isInteger(o.rows) || o.rows < 10_000) throw new Error('--rows must be a whole number of at least 10000');
  o.calls ??= o.small ? 15 : 20;
  o.writeSeconds ??= o.small ? 6 : 10;
  return o;
}

const fmt = (n) => Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 });
const log = (msg) => console.log(msg);

async function timed(label, fn) {
  const t = performance.now();
  const result = await fn();
  log(`  ${label}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return result;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

// ------------------------------------------------------------------------------------------------ databases

function dbUrl(base, name) {
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

async function withClient(url, fn) {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function createDatabase(adminUrl, name, keep) {
  await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`));
  if (!keep) procs.onCleanup(() => withClient(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
  return dbUrl(adminUrl, name);
}

// ------------------------------------------------------------------------------------------------ processes

async function startServer(name, { databaseUrl, upstreamUrl, jwtSecret, encryptionKey, pinning }) {
  const port = await procs.freePort();
  const env = proxyEnv({ port, databaseUrl, jwtSecret, encryptionKey, upstreamUrl });
  const child = procs.start(name, process.execPath, [...startFlags(ROOT), MAIN], { env, core: pinning.sutCore, pinning });
  const url = `http://127.0.0.1:${port}`;
  // a server on ten million rows may take a while to answer its first health check
  await waitHealthy(url, child, 600_000);
  return { child, url };
}

/** The migrations, by the built CLI (what `openai-proxy migrate` runs). */
function migrate(databaseUrl, jwtSecret, encryptionKey) {
  const env = { ...process.env, DATABASE_URL: databaseUrl, JWT_SECRET: jwtSecret, ENCRYPTION_KEY: encryptionKey, LOG_LEVEL: 'warn' };
  delete env.DATA_DIR;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli.js'), 'migrate'], { env, timeout: 1_800_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`migrate failed: ${stderr || stdout || err.message}`)) : resolve(),
    ),
  );
}

/** An organization key pointing at the fake upstream, encrypted as the server does it. */
async function addOrgKey(db, orgId, upstreamUrl, encryptionKey) {
  const { KeyCryptoService } = require(path.join(ROOT, 'dist', 'src', 'keys', 'key-crypto.service.js'));
  const { parseMasterKey } = require(path.join(ROOT, 'dist', 'src', 'config', 'app-config.js'));
  const crypto = new KeyCryptoService({ encryptionKey: parseMasterKey('ENCRYPTION_KEY', encryptionKey) });
  const keyId = randomUUID();
  const apiKey = `sk-scale-${randomBytes(12).toString('hex')}`;
  await db.query(
    `INSERT INTO api_keys (id, organization_id, user_id, label, base_url, last4, encrypted_key) VALUES ($1, $2, NULL, 'scale', $3, $4, $5)`,
    [keyId, orgId, upstreamUrl, apiKey.slice(-4), crypto.encrypt(apiKey, { id: keyId, organizationId: orgId, userId: null })],
  );
  return keyId;
}

// ------------------------------------------------------------------------------------------------ fill

/** Monthly partitions from the month of `from` to two months after `to` (the names src/retention/exchange-partitions.ts uses). */
async function ensurePartitions(db, from, to) {
  const existing = new Set(
    (await db.query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'exchanges'::regclass`)).rows.map((r) => r.relname),
  );
  const month = (d, plus = 0) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + plus, 1));
  for (let m = month(from); m <= month(to, 2); m = month(m, 1)) {
    const name = `exchanges_p${m.getUTCFullYear()}_${String(m.getUTCMonth() + 1).padStart(2, '0')}`;
    if (existing.has(name)) continue;
    await db.query(`CREATE TABLE "${name}" PARTITION OF exchanges FOR VALUES FROM ('${m.toISOString()}') TO ('${month(m, 1).toISOString()}')`);
  }
}

async function fill(db, { rows, upstreamUrl, encryptionKey }) {
  const users = rows >= 10_000_000 ? 100_000 : Math.max(2000, Math.round(rows / 100));
  const now = new Date();
  const start = new Date(now.getTime() - 365 * DAY);
  const seed = randomBytes(4).toString('hex');
  log(`fill: ${fmt(rows)} exchanges, ${ORGS} organizations, ${fmt(users)} users, ${PERSONAS} personas, from ${start.toISOString().slice(0, 10)} to now`);
  await ensurePartitions(db, start, now);

  // organizations: the first holds a fifth of the traffic, users and personas; the others share the rest
  const orgs = [];
  let userBase = 0;
  let personaBase = 0;
  for (let i = 0; i < ORGS; i++) {
    const share = i === 0 ? 0.2 : 0.8 / (ORGS - 1);
    const nUsers = i === ORGS - 1 ? users - userBase : Math.round(users * share);
    const nPersonas = i === ORGS - 1 ? PERSONAS - personaBase : Math.round(PERSONAS * share);
    const { rows: r } = await db.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`scale-org-${i}-${seed}`]);
    const keyId = await addOrgKey(db, r[0].id, upstreamUrl, encryptionKey);
    orgs.push({ idx: i, id: r[0].id, name: `scale-org-${i}-${seed}`, keyId, users: nUsers, userBase, personas: nPersonas, personaBase });
    userBase += nUsers;
    personaBase += nPersonas;
  }
  await db.query(`CREATE TEMP TABLE fill_orgs (idx int PRIMARY KEY, id uuid, key_id uuid, users int, user_base int, personas int, persona_base int)`);
  for (const o of orgs) {
    await db.query(`INSERT INTO fill_orgs VALUES ($1, $2, $3, $4, $5, $6, $7)`, [o.idx, o.id, o.keyId, o.users, o.userBase, o.personas, o.personaBase]);
  }
  await timed('organizations, users, personas', async () => {
    await db.query(`CREATE TEMP TABLE fill_users (n int PRIMARY KEY, id uuid, ext text)`);
    await db.query(
      `WITH made AS (
         INSERT INTO users (organization_id, external_id, created_at)
         SELECT o.id, 'user-' || o.idx || '-' || k, $1::timestamptz FROM fill_orgs o, generate_series(0, o.users - 1) k
         RETURNING id, organization_id, external_id)
       INSERT INTO fill_users SELECT o.user_base + split_part(m.external_id, '-', 3)::int, m.id, m.external_id FROM made m JOIN fill_orgs o ON o.id = m.organization_id`,
      [start.toISOString()],
    );
    await db.query(`CREATE TEMP TABLE fill_personas (n int PRIMARY KEY, id uuid, versions int)`);
    await db.query(
      `WITH made AS (
         INSERT INTO personas (organization_id, name, description, content, version, created_at, updated_at)
         SELECT o.id, 'persona-' || o.idx || '-' || k, 'A scale persona', 'You are persona ' || k || ' of organization ' || o.idx || '.',
                1 + (o.persona_base + k) % 4, $1::timestamptz, $1::timestamptz
           FROM fill_orgs o, generate_series(0, o.personas - 1) k
         RETURNING id, organization_id, name, version)
       INSERT INTO fill_personas SELECT o.persona_base + split_part(m.name, '-', 3)::int, m.id, m.version FROM made m JOIN fill_orgs o ON o.id = m.organization_id`,
      [start.toISOString()],
    );
    await db.query(
      `INSERT INTO persona_versions (persona_id, version, content, created_at)
       SELECT p.id, v, 'You are persona ' || p.n || ', version ' || v || '.', $1::timestamptz FROM fill_personas p, generate_series(1, p.versions) v`,
      [start.toISOString()],
    );
    await db.query(`ANALYZE fill_orgs; ANALYZE fill_users; ANALYZE fill_personas`);
  });

  // Sessions of SESSION_SIZE consecutive exchanges share organization, user, persona, model and endpoint; rows are
  // made in time order (as the recorder appends them), the persona version rising over the year.
  const chunk = 250_000;
  const t0 = performance.now();
  for (let from = 0; from < rows; from += chunk) {
    const to = Math.min(rows, from + chunk);
    await db.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version, endpoint, model, stream,
                              status, upstream_status, response_id, request_body, response_body, output_text, error,
                              input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens, cost, latency_ms, time_to_first_byte_ms,
                              key_id, key_source, instance_id, created_at, completed_at, upstream_request_id, capture_mode)
       SELECT 'req_' || substr(md5($3 || g), 1, 24), o.id, u.id, u.ext, 'sess_' || substr(md5($3 || 's' || x.s), 1, 24),
              p.id, CASE WHEN p.id IS NOT NULL THEN least(p.versions, 1 + floor(x.frac * p.versions))::int END,
              x.endpoint, x.model, g % 3 = 0,
              x.status, CASE x.status WHEN 'completed' THEN 200 WHEN 'client_aborted' THEN 200 WHEN 'upstream_error' THEN 500 END,
              CASE WHEN x.status = 'completed' THEN 'resp_' || md5($3 || 'r' || g) END,
              jsonb_build_object('model', x.model, 'input', 'Question ' || g || ': how do I change the plan of my account ' || md5($3 || 'q' || g) || '?',
                                 'instructions', 'Answer briefly.', 'stream', g % 3 = 0),
              CASE WHEN x.status = 'completed' THEN jsonb_build_object('id', 'resp_' || md5($3 || 'r' || g), 'object', 'response', 'status', 'completed', 'model', x.model,
                     'output', jsonb_build_array(jsonb_build_object('type', 'message', 'role', 'assistant', 'content',
                       jsonb_build_array(jsonb_build_object('type', 'output_text', 'text', 'You can change it under Settings, then Plan. ' || md5($3 || 'a' || g))))),
                     'usage', jsonb_build_object('input_tokens', x.input, 'output_tokens', x.output, 'total_tokens', x.input + x.output)) END,
              CASE WHEN x.status = 'completed' THEN 'You can change it under Settings, then Plan. ' || md5($3 || 'a' || g) END,
              CASE WHEN x.status NOT IN ('completed', 'client_aborted') THEN jsonb_build_object('message', 'The upstream failed', 'type', 'server_error', 'code', NULL, 'param', NULL) END,
              CASE WHEN x.billed THEN x.input END, CASE WHEN x.billed THEN x.output END, CASE WHEN x.billed THEN x.input + x.output END,
              CASE WHEN x.billed THEN CASE WHEN (x.hr / 11) % 4 = 0 THEN x.input / 2 ELSE 0 END END,
              CASE WHEN x.billed THEN CASE WHEN x.model = 'o3-mini' THEN x.output / 2 ELSE 0 END END,
              CASE WHEN x.billed THEN x.input * 0.00000015 + x.output * 0.0000006 END,
              200 + (x.hr / 13) % 4800, CASE WHEN x.status IN ('completed', 'client_aborted') THEN 50 + (x.hr / 17) % 700 END,
              o.key_id, 'organization', 'scale-fill', x.at, x.at + make_interval(secs => (200 + (x.hr / 13) % 4800) / 1000.0),
              CASE WHEN x.status = 'completed' THEN 'req_up_' || substr(md5($3 || 'u' || g), 1, 20) END, 'full'
         FROM generate_series($1::bigint, $2::bigint - 1) g
         CROSS JOIN LATERAL (SELECT g / ${SESSION_SIZE} AS s) s0
         CROSS JOIN LATERAL (SELECT hashint8(s0.s) & 2147483647 AS h1, hashint8(s0.s + 7777777) & 2147483647 AS h2,
                                    hashint8(s0.s + 99999999) & 2147483647 AS h3, hashint8(g + 123456789) & 2147483647 AS hr) h
         JOIN fill_orgs o ON o.idx = CASE WHEN h.h1 % 100 < 20 THEN 0 ELSE 1 + (h.h1 / 100) % ${ORGS - 1} END
         JOIN fill_users u ON u.n = o.user_base + h.h2 % o.users
         LEFT JOIN fill_personas p ON h.h3 % 5 <> 0 AND p.n = o.persona_base + (h.h3 / 5) % o.personas
         CROSS JOIN LATERAL (
           SELECT s0.s, g::float8 / $4 AS frac, h.hr,
                  $5::timestamptz + make_interval(secs => g::float8 / $4 * 365 * 86400) AS at,
                  CASE WHEN (h.h2 / 1000) % 1000 < 850 THEN 'responses' WHEN (h.h2 / 1000) % 1000 < 980 THEN 'chat.completions'
                       WHEN (h.h2 / 1000) % 1000 < 995 THEN 'embeddings' ELSE 'moderations' END AS endpoint,
                  (ARRAY['${MODELS.join("','")}'])[CASE WHEN (h.h3 / 1000) % 100 < 50 THEN 1 WHEN (h.h3 / 1000) % 100 < 75 THEN 2
                                                    WHEN (h.h3 / 1000) % 100 < 90 THEN 3 ELSE 4 END] AS model,
                  CASE WHEN h.hr % 100 < 95 THEN 'completed' WHEN h.hr % 100 < 97 THEN 'upstream_error' WHEN h.hr % 100 < 98 THEN 'client_aborted'
                       WHEN h.hr % 100 < 99 THEN 'failed' ELSE 'upstream_timeout' END AS status,
                  h.hr % 100 < 95 OR h.hr % 100 = 97 AS billed,
                  50 + (h.hr / 100) % 1950 AS input, 20 + (h.hr / 7) % 780 AS output) x`,
      [from, to, seed, rows, start.toISOString()],
    );
    const done = to;
    const rate = done / ((performance.now() - t0) / 1000);
    process.stdout.write(`\r  exchanges: ${fmt(done)} / ${fmt(rows)} (${fmt(rate)} rows/s)   `);
  }
  process.stdout.write('\n');
  log(`  exchanges: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const parts = (await db.query(`SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'exchanges'::regclass ORDER BY 1`)).rows.map(
    (r) => r.name,
  );
  await timed('ratings and analysis results', async () => {
    for (const part of parts) {
      await db.query(
        `INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, comment, created_at, rated_at, exchange_created_at, persona_version)
         SELECT e.organization_id, e.id, e.user_id, e.persona_id,
                CASE WHEN v.h / 20 % 10 < 1 THEN 1 WHEN v.h / 20 % 10 < 2 THEN 2 WHEN v.h / 20 % 10 < 4 THEN 3 WHEN v.h / 20 % 10 < 7 THEN 4 ELSE 5 END,
                CASE WHEN v.h % 7 = 0 THEN 'Helpful, thanks' END, e.created_at + interval '2 minutes', e.created_at + interval '2 minutes',
                e.created_at, e.persona_version
           FROM "${part}" e CROSS JOIN LATERAL (SELECT hashtext(e.id) & 2147483647 AS h) v
          WHERE v.h % 20 = 0 AND e.status = 'completed'`,
      );
      for (const [type, cats, every] of [
        ['intent', CATEGORIES.intent, 20],
        ['sentiment', CATEGORIES.sentiment, 40],
      ]) {
        await db.query(
          `INSERT INTO analysis_results (organization_id, exchange_id, response_id, user_id, persona_id, cache_key, analysis_type, primary_category,
                                         confidence, reasoning, categories, model, input_tokens, output_tokens, total_tokens, cost, status, created_at,
                                         exchange_created_at, persona_version)
           SELECT e.organization_id, e.id, e.response_id, e.user_id, e.persona_id, md5(e.id || $1), $1, c.cat, 0.85, 'The user asks about their plan.',
                  jsonb_build_array(jsonb_build_object('category', c.cat, 'confidence', 0.85)), 'gpt-4o-mini', 420, 30, 450, 0.000081, 'completed',
                  e.created_at + interval '10 minutes', e.created_at, e.persona_version
             FROM "${part}" e
             CROSS JOIN LATERAL (SELECT hashtext(e.id || 'a') & 2147483647 AS h) v
             CROSS JOIN LATERAL (SELECT ($2::text[])[1 + (v.h / 100) % $3] AS cat) c
            WHERE v.h % $4 = 1 AND e.persona_id IS NOT NULL AND e.status = 'completed'`,
          [type, cats, cats.length, every],
        );
      }
    }
  });
  await timed('VACUUM ANALYZE', () => db.query(`VACUUM ANALYZE`));
  const counts = (
    await db.query(
      `SELECT (SELECT count(*) FROM exchanges)::bigint AS exchanges, (SELECT count(*) FROM ratings)::bigint AS ratings,
              (SELECT count(*) FROM analysis_results)::bigint AS analyses, (SELECT count(DISTINCT session_id) FROM exchanges)::bigint AS sessions,
              (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('exchanges'))::bigint AS bytes`,
    )
  ).rows[0];
  log(
    `  ${fmt(counts.exchanges)} exchanges (${fmt(Number(counts.bytes) / 1024 ** 3)} GB with indexes), ${fmt(counts.sessions)} sessions, ` +
      `${fmt(counts.ratings)} ratings, ${fmt(counts.analyses)} analysis results`,
  );
  return { seed, users, counts: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, Number(v)])) };
}

// ------------------------------------------------------------------------------------------------ reads

/**
 * The fill's writes go through the same triggers as the proxy's: the server merges what they appended to the
 * daily usage (usage_daily_changes) on its own; the reads start once it has, as in a server that has been running.
 */
async function settle(db) {
  const has = (await db.query(`SELECT to_regclass('usage_daily_changes') IS NOT NULL AS ok`)).rows[0].ok;
  if (!has) return;
  const deadline = Date.now() + 1_800_000;
  for (;;) {
    const n = Number((await db.query(`SELECT count(*) AS n FROM usage_daily_changes`)).rows[0].n);
    if (n < 1000) break;
    if (Date.now() > deadline) throw new Error(`the server did not merge the daily usage changes (${n} left)`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  await db.query(`VACUUM ANALYZE usage_daily, usage_daily_changes`);
  // the server rebuilds the indexes of months that are over, as it does month by month in production; a database
  // filled at once has a year of them to do first
  const { partitionsDue } = require(path.join(ROOT, 'dist', 'src', 'retention', 'index-compaction.js'));
  const started = performance.now();
  let waited = false;
  for (;;) {
    const due = (await partitionsDue({ query: async (sql, params) => (await db.query(sql, params)).rows }, new Date())).length;
    if (due === 0) break;
    if (!waited) log(`  the server compacts the indexes of ${due} closed months`);
    waited = true;
    if (performance.now() - started > 3_600_000) throw new Error(`the server did not compact the closed months' indexes (${due} left)`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (waited) log(`  closed months' indexes compacted: ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** What the reads vary over, taken from the filled database: the largest organization's users, sessions, personas. */
async function readParameters(db) {
  const org = (await db.query(`SELECT id, name FROM organizations WHERE name LIKE 'scale-org-0-%' ORDER BY created_at LIMIT 1`)).rows[0];
  if (!org) throw new Error('the database holds no scale organizations');
  const pick = async (sql, params = []) => (await db.query(sql, params)).rows;
  const users = (await pick(`SELECT DISTINCT external_user_id AS v FROM exchanges TABLESAMPLE SYSTEM (1) WHERE organization_id = $1 LIMIT 200`, [org.id])).map((r) => r.v);
  const sessions = (await pick(`SELECT DISTINCT session_id AS v FROM exchanges TABLESAMPLE SYSTEM (1) WHERE organization_id = $1 LIMIT 200`, [org.id])).map((r) => r.v);
  const personas = (await pick(`SELECT id AS v FROM personas WHERE organization_id = $1 ORDER BY id`, [org.id])).map((r) => r.v);
  const ids = (await pick(`SELECT id AS v FROM exchanges TABLESAMPLE SYSTEM (1) WHERE organization_id = $1 LIMIT 200`, [org.id])).map((r) => r.v);
  const span = (await pick(`SELECT min(created_at) AS first, max(created_at) AS last FROM exchanges WHERE organization_id = $1`, [org.id]))[0];
  const shuffle = (a) => a.map((v) => [Math.random(), v]).sort((x, y) => x[0] - y[0]).map(([, v]) => v);
  return { org, users: shuffle(users), sessions: shuffle(sessions), personas: shuffle(personas), ids: shuffle(ids), first: new Date(span.first), last: new Date(span.last) };
}

/** The reads measured, each a function of the call's index giving the path to GET (and, for a cursor page, a step before). */
function readCases(p) {
  const at = (list, i) => list[i % list.length];
  const pick = (list, i) => list[(i * 7 + 3) % list.length];
  const limits = [20, 50, 100];
  const rnd = (i, n) => (i * 2654435761) % n;
  // an end of period somewhere in the last 30 days, at any time of day
  const endOf = (i) => new Date(Date.now() - rnd(i + 1, 30 * 24 * 60) * 60_000);
  const iso = (d) => d.toISOString();
  const period = (i, days) => {
    const to = endOf(i);
    return `from=${encodeURIComponent(iso(new Date(to.getTime() - days * DAY)))}&to=${encodeURIComponent(iso(to))}`;
  };
  const span = p.last.getTime() - p.first.getTime();
  return [
    { name: 'requests: newest page', path: (i) => `/v1/requests?limit=${at(limits, i)}` },
    {
      name: 'requests: a later page (cursor)',
      prepare: async (i, get) => {
        let after;
        for (let k = 0; k <= i % 3; k++) after = (await get(`/v1/requests?limit=100${after ? `&after=${after}` : ''}`)).last_id;
        return after;
      },
      path: (i, after) => `/v1/requests?limit=${at(limits, i)}&after=${after}`,
    },
    { name: 'requests by user', path: (i) => `/v1/requests?user_id=${encodeURIComponent(at(p.users, i))}&limit=${at(limits, i)}` },
    { name: 'requests by session', path: (i) => `/v1/requests?session_id=${encodeURIComponent(at(p.sessions, i))}` },
    { name: 'requests by persona', path: (i) => `/v1/requests?persona_id=${at(p.personas, i)}&limit=${at(limits, i)}` },
    { name: 'requests by model', path: (i) => `/v1/requests?model=${at(MODELS, i)}&limit=${at(limits, i)}` },
    {
      name: 'requests by time range (a day)',
      path: (i) => {
        const from = new Date(p.first.getTime() + rnd(i + 5, Math.max(1, Math.floor(span / 60_000) - 1440)) * 60_000);
        return `/v1/requests?from=${encodeURIComponent(iso(from))}&to=${encodeURIComponent(iso(new Date(from.getTime() + DAY)))}&limit=${at(limits, i)}`;
      },
    },
    { name: 'requests by endpoint', path: (i) => `/v1/requests?endpoint=${at(['chat.completions', 'responses'], i)}&limit=${at(limits, i)}` },
    // 1.5% and 0.5% of the calls, then two no call has (a route never used, a misspelt one)
    { name: 'requests by a rare endpoint', path: (i) => `/v1/requests?endpoint=${at(['embeddings', 'moderations', 'audio.speech', 'embedding'], i)}&limit=${at(limits, i)}` },
    { name: 'requests by status', path: (i) => `/v1/requests?status=${at(['failed', 'upstream_error', 'client_aborted', 'completed'], i)}&limit=${at(limits, i)}` },
    { name: 'requests by rating', path: (i) => `/v1/requests?rating=${1 + (i % 5)}&limit=${at(limits, i)}` },
    {
      name: 'requests by analysis category',
      path: (i) => `/v1/requests?analysis_category=${at([...CATEGORIES.intent, ...CATEGORIES.sentiment], i)}&limit=${at(limits, i)}`,
    },
    // one status in a hundred, then two none has
    { name: 'requests by a rare status', path: (i) => `/v1/requests?status=${at(['upstream_timeout', 'interrupted', 'queued'], i)}&limit=${at(limits, i)}` },
    { name: 'requests by rating and model', path: (i) => `/v1/requests?rating=${1 + (i % 5)}&model=${pick(MODELS, i)}&limit=${at(limits, i)}` },
    {
      name: 'requests by category and endpoint',
      path: (i) => `/v1/requests?analysis_category=${pick([...CATEGORIES.intent, ...CATEGORIES.sentiment], i)}&endpoint=${at(['chat.completions', 'responses'], i)}&limit=${at(limits, i)}`,
    },
    // a judgement with a status or a route few calls have (and none has, for the second rating)
    {
      name: 'requests by a judgement and a rare status or route',
      path: (i) =>
        `/v1/requests?${at(['rating=1&status=failed', 'analysis_category=billing&endpoint=embeddings', 'rating=5&status=interrupted', 'analysis_category=frustrated&status=upstream_error'], i)}&limit=${at(limits, i)}`,
    },
    { name: 'requests by user and status', path: (i) => `/v1/requests?user_id=${encodeURIComponent(pick(p.users, i))}&status=completed` },
    { name: 'request by id', path: (i) => `/v1/requests/${at(p.ids, i)}` },
    { name: 'session', path: (i) => `/v1/sessions/${encodeURIComponent(pick(p.sessions, i))}` },
    { name: 'persona analytics, 30 days', path: (i) => `/v1/analytics/personas/${at(p.personas, i)}?${period(i, 30)}` },
    { name: 'persona analytics, 365 days', path: (i) => `/v1/analytics/personas/${pick(p.personas, i)}?${period(i, 365)}` },
    { name: 'usage by day, 90 days', path: (i) => `/v1/analytics/usage?group_by=day&${period(i, 90)}` },
    // the console's and a dashboard's read: the default period, the last 30 days up to now
    { name: 'usage by day, last 30 days (no from/to)', path: () => `/v1/analytics/usage?group_by=day` },
    { name: 'usage by user, 30 days', path: (i) => `/v1/analytics/usage?group_by=user&${period(i, 30)}` },
    { name: 'usage by user, top 10 by cost, 30 days', path: (i) => `/v1/analytics/usage?group_by=user&order=cost&limit=10&${period(i, 30)}` },
    { name: 'usage by model, 30 days', path: (i) => `/v1/analytics/usage?group_by=model&${period(i, 30)}` },
    { name: 'usage by persona, 30 days', path: (i) => `/v1/analytics/usage?group_by=persona&${period(i, 30)}` },
    { name: 'usage by day, 365 days', path: (i) => `/v1/analytics/usage?group_by=day&${period(i, 365)}` },
  ];
}

async function measureReads(url, token, params, calls, only) {
  const headers = { authorization: `Bearer ${token}`, 'x-user-id': 'scale-reader' };
  /** the answer's text, and when its last byte came (parsing it is the client's time, not the server's) */
  const fetchText = async (p) => {
    const res = await fetch(`${url}${p}`, { headers });
    const body = await res.text();
    const at = performance.now();
    if (res.status !== 200) throw new Error(`GET ${p}: HTTP ${res.status} ${body.slice(0, 300)}`);
    return { body, at };
  };
  const get = async (p) => JSON.parse((await fetchText(p)).body);
  const out = [];
  for (const c of readCases(params).filter((r) => !only || r.name.includes(only))) {
    const times = [];
    let rows = 0;
    try {
      // two calls first, not counted: connections and caches as they are in a running server
      for (let i = -2; i < calls; i++) {
        const k = i + 2;
        const extra = c.prepare ? await c.prepare(k, get) : undefined;
        const p = c.path(k, extra);
        const t = performance.now();
        const answer = await fetchText(p);
        const ms = answer.at - t;
        const body = JSON.parse(answer.body);
        if (i >= 0) {
          times.push(ms);
          rows += Array.isArray(body.data) ? body.data.length : 1;
        }
      }
      times.sort((a, b) => a - b);
      const r = { name: c.name, calls, p50_ms: round(percentile(times, 0.5)), p95_ms: round(percentile(times, 0.95)), max_ms: round(times.at(-1)), goal_ms: READ_GOAL_MS, avg_rows: Math.round(rows / calls) };
      r.pass = r.p95_ms <= READ_GOAL_MS;
      out.push(r);
      log(`  ${c.name.padEnd(40)} p50 ${String(r.p50_ms).padStart(8)} ms  p95 ${String(r.p95_ms).padStart(8)} ms`);
    } catch (err) {
      out.push({ name: c.name, calls: times.length, error: err.message, goal_ms: READ_GOAL_MS, pass: false });
      log(`  ${c.name.padEnd(40)} FAILED: ${err.message}`);
    }
  }
  return out;
}

const round = (v) => (v === null || v === undefined ? v : Math.round(v * 10) / 10);

// ------------------------------------------------------------------------------------------------ writes

/** POST /v1/responses at `url` for `seconds` over `connections` connections with wrk, the X-User-ID cycling over `users`. */
async function writeLoad(wrk, url, token, users, seconds, connections, pinning) {
  const body = JSON.stringify({ model: 'gpt-4o-mini', input: 'Write one short sentence about tables that grow.' });
  const script = path.join(os.tmpdir(), `bench-scale-${process.pid}.lua`);
  writeFileSync(
    script,
    `local users = {${users.map((u) => JSON.stringify(u)).join(',')}}
local i = 0
wrk.method = "POST"
wrk.body = ${JSON.stringify(body)}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${token}"
request = function()
  i = i + 1
  wrk.headers["X-User-ID"] = users[(i % #users) + 1]
  return wrk.format(nil, "/v1/responses")
end
`,
  );
  const args = ['-t2', `-c${connections}`, `-d${seconds}s`, '--timeout', '30s', '-s', script, url];
  const [file, argv] = pinning.ok ? ['taskset', ['-c', pinning.loadCore, wrk, ...args]] : [wrk, args];
  const out = await new Promise((resolve, reject) =>
    execFile(file, argv, { timeout: (seconds + 60) * 1000 }, (err, stdout, stderr) => (err ? reject(new Error(`wrk: ${stderr || err.message}`)) : resolve(stdout))),
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const total = Number(/(\d+) requests in/.exec(out)?.[1]);
  const bad = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const errors = /Socket errors:.*/.exec(out)?.[0];
  return { rps, requests: total, non_2xx: bad, socket_errors: errors ?? null };
}

// ------------------------------------------------------------------------------------------------ main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(MAIN) || !existsSync(FAKE)) throw new Error('dist/ is missing: run npm run build (npm run bench:scale does)');
  mkdirSync(RESULTS, { recursive: true });
  const adminUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
  const stamp = `${Date.now().toString(36)}_${randomBytes(2).toString('hex')}`;
  const pinning = procs.detectPinning();
  const jwtSecret = randomBytes(48).toString('base64url');
  const keyFile = opts.database ? path.join(os.tmpdir(), `${opts.database}.key`) : undefined;
  // a kept database keeps its encryption key beside it, so its keys can be read on the next run
  const encryptionKey = keyFile && existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : randomBytes(32).toString('hex');
  const broken = [];
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 1024 ** 3), node: process.version },
    settings: { rows: opts.rows, small: opts.small, calls_per_read: opts.calls, write_seconds: opts.writeSeconds, write_connections: 50 },
    fill: undefined,
    reads: [],
    writes: undefined,
    broken,
  };

  const fake = await procs.startAndWaitForLine(
    'fake-upstream',
    process.execPath,
    [FAKE, '--port', '0', '--first-byte-ms', '0', '--event-interval-ms', '0', '--max-recorded', '0'],
    /listening on (http:\/\/\S+)/,
    { core: pinning.ok ? pinning.loadCore : undefined, pinning },
  );
  const upstreamUrl = fake.match[1];

  // the filled database
  const filledName = opts.database ?? `scale_${stamp}`;
  const filledUrl = opts.database ? dbUrl(adminUrl, opts.database) : await createDatabase(adminUrl, filledName, opts.keep);
  if (opts.keep && !opts.database) {
    writeFileSync(path.join(os.tmpdir(), `${filledName}.key`), encryptionKey);
    log(`the filled database is kept: ${filledName} (reuse it with --database ${filledName})`);
  }
  const db = new Client({ connectionString: filledUrl });
  await db.connect();
  procs.onCleanup(() => db.end());
  // a kept database's keys point at the fake upstream of its first run
  if (opts.database) await db.query(`UPDATE api_keys SET base_url = $1 WHERE label = 'scale'`, [upstreamUrl]);
  log(`database ${filledName}: migrating`);
  await migrate(filledUrl, jwtSecret, encryptionKey);
  if (!opts.database) {
    // no server runs meanwhile: its retention job would drop the months the fill has not reached yet (empty)
    const t = performance.now();
    result.fill = await fill(db, { rows: opts.rows, upstreamUrl, encryptionKey });
    result.fill.seconds = Math.round((performance.now() - t) / 100) / 10;
  } else {
    const n = Number((await db.query(`SELECT count(*) AS n FROM exchanges`)).rows[0].n);
    result.fill = { reused: opts.database, counts: { exchanges: n } };
    log(`reusing ${opts.database}: ${fmt(n)} exchanges`);
  }

  const server = await startServer('proxy', { databaseUrl: filledUrl, upstreamUrl, jwtSecret, encryptionKey, pinning });
  await settle(db);
  const params = await readParameters(db);
  const token = mintToken(jwtSecret, params.org.id, params.org.name);
  log(`\nreads (organization with a fifth of the rows; ${opts.calls} timed calls each, varied parameters)`);
  result.reads = await measureReads(server.url, token, params, opts.calls, opts.only);
  if (opts.only) {
    writeFileSync(opts.json, `${JSON.stringify(result, null, 2)}\n`);
    return;
  }

  // writes: the filled database against an empty one, alternately (empty, filled, filled, empty) so drift cancels
  log(`\nwrites: POST /v1/responses, 50 connections, ${opts.writeSeconds} s per database (wrk)`);
  const wrk = ensureWrk(log);
  const emptyName = `scale_${stamp}_empty`;
  const emptyUrl = await createDatabase(adminUrl, emptyName, false);
  const empty = await startServer('proxy-empty', { databaseUrl: emptyUrl, upstreamUrl, jwtSecret, encryptionKey, pinning });
  const emptyOrg = await withClient(emptyUrl, async (c) => {
    const name = `scale-empty-${stamp}`;
    const id = (await c.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [name])).rows[0].id;
    await addOrgKey(c, id, upstreamUrl, encryptionKey);
    return { id, name };
  });
  const writers = params.users.slice(0, 200);
  const targets = {
    empty: { url: empty.url, token: mintToken(jwtSecret, emptyOrg.id, emptyOrg.name) },
    filled: { url: server.url, token },
  };
  for (const [side, t] of Object.entries(targets)) {
    const res = await fetch(`${t.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.token}`, 'x-user-id': writers[0], 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'Say hello.' }),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`POST /v1/responses to the ${side} database: HTTP ${res.status} ${text.slice(0, 300)}`);
  }
  // pairs of runs, each pair in the other order (empty first, then filled first, …): drift and other load on the
  // machine touch both sides alike; the ratio is that of the totals
  const pairs = 5;
  const each = Math.max(2, Math.round(opts.writeSeconds / pairs));
  // a short warm-up of each (connections, prepared statements, caches)
  for (const t of Object.values(targets)) await writeLoad(wrk, t.url, t.token, writers, 2, 50, pinning);
  const runs = { empty: [], filled: [] };
  for (let k = 0; k < pairs; k++) {
    for (const side of k % 2 ? ['filled', 'empty'] : ['empty', 'filled']) {
      const r = await writeLoad(wrk, targets[side].url, targets[side].token, writers, each, 50, pinning);
      runs[side].push(r);
      if (r.non_2xx) broken.push(`${side}: ${r.non_2xx} non-2xx answers to POST /v1/responses`);
    }
  }
  const rate = (list) => list.reduce((s, r) => s + r.requests, 0) / (list.length * each);
  const emptyRps = Math.round(rate(runs.empty));
  const filledRps = Math.round(rate(runs.filled));
  // each pair ran under the same conditions: the median of the pairs' ratios (other load on the machine varies)
  const pairRatios = runs.empty.map((e, k) => runs.filled[k].requests / e.requests).sort((a, b) => a - b);
  const ratio = Math.round(pairRatios[Math.floor(pairRatios.length / 2)] * 1000) / 1000;
  result.writes = {
    tool: 'wrk',
    empty_rps: emptyRps,
    filled_rps: filledRps,
    pair_ratios: pairRatios.map((r) => Math.round(r * 1000) / 1000),
    ratio,
    goal_ratio: WRITE_GOAL,
    pass: ratio >= WRITE_GOAL,
    runs,
  };
  log(`  empty ${fmt(emptyRps)} req/s, filled ${fmt(filledRps)} req/s; pairs ${result.writes.pair_ratios.map((r) => `${(r * 100).toFixed(1)} %`).join(', ')}: ${(ratio * 100).toFixed(1)} %`);

  // ---- table
  const rowsLabel = fmt(result.fill.counts?.exchanges ?? opts.rows);
  log(`\nscale: ${rowsLabel} exchanges`);
  log(`${'read'.padEnd(42)}${'p50 ms'.padStart(10)}${'p95 ms'.padStart(10)}${'goal'.padStart(10)}  result`);
  for (const r of result.reads) {
    log(`${r.name.padEnd(42)}${String(r.p50_ms ?? '-').padStart(10)}${String(r.p95_ms ?? '-').padStart(10)}${`≤ ${r.goal_ms}`.padStart(10)}  ${r.error ? 'BROKEN' : r.pass ? 'PASS' : 'FAIL'}`);
  }
  const w = result.writes;
  log(`${'writes, filled / empty'.padEnd(42)}${`${fmt(w.filled_rps)}/s`.padStart(10)}${`${fmt(w.empty_rps)}/s`.padStart(10)}${'≥ 90 %'.padStart(10)}  ${(w.ratio * 100).toFixed(1)} % ${w.pass ? 'PASS' : 'FAIL'}`);

  for (const r of result.reads) if (r.error) broken.push(`${r.name}: ${r.error}`);
  writeFileSync(opts.json, `${JSON.stringify(result, null, 2)}\n`);
  log(`\nwritten to ${path.relative(process.cwd(), opts.json)}`);

  if (opts.small) {
    const bad = result.reads.filter((r) => !r.error && r.p95_ms > SMALL_READ_LIMIT * r.goal_ms).map((r) => `${r.name}: p95 ${r.p95_ms} ms`);
    if (w.ratio < SMALL_WRITE_LIMIT) bad.push(`writes at ${(w.ratio * 100).toFixed(1)} % of the empty table's`);
    if (bad.length || broken.length) {
      for (const b of [...broken, ...bad]) log(`  ${b}`);
      log(`bench:scale --small: ${bad.length ? `${bad.length} far off their goal` : ''}${bad.length && broken.length ? ', ' : ''}${broken.length ? `${broken.length} broken` : ''}`);
      process.exitCode = 1;
    }
  } else if (broken.length) {
    for (const b of broken) log(`  broken: ${b}`);
    process.exitCode = 1;
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => procs.cleanupAll());
