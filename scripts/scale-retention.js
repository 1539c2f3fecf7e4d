#!/usr/bin/env node
'use strict';
/**
 * Retention at scale: a fresh database, ~1,000,000 exchanges spread over the last twelve months (with ratings and
 * analysis results), then the retention job until it has nothing left to do. Prints what it took and that every
 * analytics total is unchanged.
 *
 *   npm run scale:retention            (builds first; runs the built dist)
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres SCALE_EXCHANGES=1000000 node scripts/scale-retention.js
 *
 * DATABASE_URL names any database of the server: the script creates its own (proxy_scale_…) and drops it after.
 *
 * Organizations: A and B keep exchanges 180 days and bodies 30 days (45 % of the rows each); C keeps everything
 * and has traffic in the last 120 days only (10 %). So the months older than 180 days hold A's and B's rows only
 * and are dropped whole; the month across the 180-day line is deleted in batches; A's and B's bodies between 30
 * and 180 days are cleared in batches; C is never touched.
 */
require('./check-node');
const { randomBytes, randomUUID } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { join } = require('node:path');
const { Client } = require('pg');

const DIST = join(__dirname, '..', 'dist', 'src');
const { startServer } = require(join(DIST, 'server'));
const { loadConfig } = require(join(DIST, 'config', 'app-config'));
const { RetentionService } = require(join(DIST, 'retention', 'retention.service'));
const { ExchangePartitions } = require(join(DIST, 'retention', 'exchange-partitions'));
const { ExchangesRepository } = require(join(DIST, 'exchanges', 'exchanges.repository'));

const N = Number(process.env.SCALE_EXCHANGES || 1_000_000);
const DAY = 86_400_000;
const USERS = 20;
const GROUPS = ['user', 'model', 'persona', 'day'];

const fmt = (n) => n.toLocaleString('en-US', { maximumFractionDigits: 1 });
const mb = (bytes) => `${fmt(bytes / 1024 / 1024)} MB`;
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;
/** float sums change in their last bits with the order of addition */
const rounded = (v) =>
  typeof v === 'number' ? Math.round(v * 1e9) / 1e9 : Array.isArray(v) ? v.map(rounded) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rounded(x)])) : v;

async function timed(label, fn) {
  const t = performance.now();
  const result = await fn();
  const ms = performance.now() - t;
  console.log(`${label.padEnd(52)} ${secs(ms)}`);
  return { result, ms };
}

async function main() {
  const adminUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `proxy_scale_${randomBytes(5).toString('hex')}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  let server;
  const db = new Client({ connectionString: url.toString() });
  try {
    server = await startServer(
      loadConfig({
        DATABASE_URL: url.toString(),
        JWT_SECRET: randomBytes(32).toString('hex'),
        ENCRYPTION_KEY: randomBytes(32).toString('hex'),
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        // the script runs the job itself, to time it
        RETENTION_INTERVAL_MS: '0',
        RETENTION_BATCH: process.env.RETENTION_BATCH || '500',
      }),
      // warnings (a partition that could not be dropped, say) are shown
      { logSink: (line) => console.log(`  log: ${line}`) },
    );
    await db.connect();
    const now = new Date();
    console.log(`retention at scale: ${fmt(N)} exchanges over 12 months, database ${dbName}\n`);

    // organizations, users, personas
    const orgs = {};
    for (const name of ['A', 'B', 'C']) {
      const { rows } = await db.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`scale-${name}-${randomUUID()}`]);
      orgs[name] = rows[0].id;
      await db.query(`INSERT INTO users (organization_id, external_id) SELECT $1, 'user-' || g FROM generate_series(0, $2 - 1) g`, [orgs[name], USERS]);
      await db.query(`INSERT INTO personas (organization_id, name, content) SELECT $1, 'persona-' || g, 'You help.' FROM generate_series(0, 2) g`, [orgs[name]]);
    }
    await db.query(`UPDATE organizations SET retention_days = 180, content_retention_days = 30 WHERE id = ANY($1)`, [[orgs.A, orgs.B]]);

    const partitions = server.app.get(ExchangePartitions);
    await partitions.ensureRange(new Date(now.getTime() - 366 * DAY), now);

    // the exchanges: A and B over 365 days, C over the last 120
    const load = async (org, count, days, seed) =>
      db.query(
        `WITH u AS (SELECT id, external_id, (row_number() OVER (ORDER BY id) - 1)::int AS n FROM users WHERE organization_id = $1),
              p AS (SELECT id, (row_number() OVER (ORDER BY id) - 1)::int AS n FROM personas WHERE organization_id = $1)
         INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version, endpoint, model, status,
                                request_body, response_body, output_text, input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens,
                                cost, latency_ms, created_at, completed_at)
         SELECT 'req_' || $4 || '_' || g, $1, u.id, u.external_id, 'sess-' || $4 || '-' || (g / 8), p.id, CASE WHEN p.id IS NULL THEN NULL ELSE 1 END,
                'responses', (ARRAY['gpt-4o-mini', 'gpt-4o', 'o3-mini'])[1 + g % 3],
                CASE WHEN g % 20 = 0 THEN 'upstream_error' ELSE 'completed' END,
                jsonb_build_object('model', 'gpt-4o-mini', 'input', 'question number ' || g || ' about something rather private'),
                jsonb_build_object('id', 'resp_' || g, 'output', jsonb_build_array(jsonb_build_object('type', 'message', 'text', 'an answer of a few words'))),
                'an answer of a few words', 100 + g % 900, 20 + g % 200, 120 + g % 900 + g % 200, g % 50, g % 7,
                (100 + g % 900) * 0.00000015 + (20 + g % 200) * 0.0000006, 50 + g % 2000, t.at, t.at
           FROM generate_series(0, $2 - 1) g
           CROSS JOIN LATERAL (SELECT $5::timestamptz - (g::float8 / $2 * $3) * interval '1 day' AS at) t
           JOIN u ON u.n = g % ${USERS}
           LEFT JOIN p ON p.n = g % 4`,
        [org, count, days, seed, now.toISOString()],
      );
    const perAB = Math.floor(N * 0.45);
    const loaded = await timed(`load ${fmt(N)} exchanges (generate_series INSERT)`, async () => {
      await load(orgs.A, perAB, 365, 'a');
      await load(orgs.B, perAB, 365, 'b');
      await load(orgs.C, N - 2 * perAB, 120, 'c');
    });
    console.log(`  ${fmt(N / (loaded.ms / 1000))} rows/s`);
    await timed('ratings (1 in 20) and analysis results (1 in 100)', async () => {
      await db.query(
        `INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, rated_at, exchange_created_at, persona_version)
         SELECT organization_id, id, user_id, persona_id, 1 + abs(hashtext(id)) % 5, created_at, created_at, persona_version FROM exchanges WHERE abs(hashtext(id)) % 20 = 0`,
      );
      await db.query(
        `INSERT INTO analysis_results (organization_id, exchange_id, user_id, persona_id, cache_key, analysis_type, primary_category, confidence,
                                       reasoning, categories, model, input_tokens, output_tokens, total_tokens, cost, status, created_at,
                                       exchange_created_at, persona_version)
         SELECT organization_id, id, user_id, persona_id, md5(id), 'intent', (ARRAY['billing', 'sales', 'support'])[1 + abs(hashtext(id)) % 3], 0.9,
                'because', '[]'::jsonb, 'gpt-4o-mini', 400, 20, 420, 0.00007, 'completed', created_at + interval '1 hour', created_at, persona_version
           FROM exchanges WHERE abs(hashtext(id)) % 100 = 1`,
      );
      await db.query(`ANALYZE`);
    });

    const size = async () =>
      Number((await db.query(`SELECT coalesce(sum(pg_total_relation_size(relid)), 0) AS s FROM pg_partition_tree('exchanges')`)).rows[0].s);
    const count = async () => Number((await db.query(`SELECT count(*) AS n FROM exchanges`)).rows[0].n);
    const partitionCount = async () => (await partitions.list()).length;

    // what a completion costs when only the id is known (no pruning) against one that names the month too
    const sample = (await db.query(`SELECT id, created_at FROM exchanges ORDER BY hashtext(id) LIMIT 2000`)).rows;
    const byId = await timed(`2,000 updates by id alone (${await partitionCount()} partitions)`, async () => {
      for (const r of sample) await db.query(`UPDATE exchanges SET upstream_status = 200 WHERE id = $1`, [r.id]);
    });
    const byKey = await timed('2,000 updates by id and created_at (pruned)', async () => {
      for (const r of sample) await db.query(`UPDATE exchanges SET upstream_status = 200 WHERE id = $1 AND created_at = $2`, [r.id, r.created_at]);
    });
    // the recorder's statements are prepared: planned once per connection, pruning or not
    const preparedById = await timed('2,000 prepared updates by id alone', async () => {
      for (const r of sample) await db.query({ name: 'by_id', text: `UPDATE exchanges SET upstream_status = 201 WHERE id = $1`, values: [r.id] });
    });
    console.log(
      `  per update: ${(byId.ms / sample.length).toFixed(3)} ms by id, ${(byKey.ms / sample.length).toFixed(3)} ms by key, ` +
        `${(preparedById.ms / sample.length).toFixed(3)} ms prepared by id`,
    );

    const analytics = async () => {
      const repo = server.app.get(ExchangesRepository);
      const period = { from: new Date(Math.floor(now.getTime() / DAY) * DAY - 400 * DAY), to: new Date(Math.floor(now.getTime() / DAY) * DAY + DAY) };
      const out = {};
      for (const [name, org] of Object.entries(orgs)) {
        // money to 12 decimals (the API rounds to the price table's): the comparison below rounds to 9, as for every figure
        for (const group of GROUPS) out[`${name}:${group}`] = JSON.parse((await repo.usageByGroup(org, period, group, undefined, 12)).json);
        const persona = (await db.query(`SELECT id FROM personas WHERE organization_id = $1 ORDER BY id LIMIT 1`, [org])).rows[0].id;
        out[`${name}:persona`] = {
          slices: await repo.personaSlices(org, persona, period),
          ratings: await repo.personaRatings(org, persona, period),
          analysis: await repo.personaAnalysis(org, persona, period),
          avgLatency: (await repo.personaLatency(org, persona, period)).avg,
        };
      }
      // per-slice rows come in any order: compare sorted
      for (const v of Object.values(out)) {
        if (v.slices) {
          v.slices = summed(v.slices, (r) => `${r.version}|${r.day}`);
          v.ratings = summed(v.ratings, (r) => `${r.version}|${r.day}|${r.rating}`);
          // a category of a version counts from stored and rolled-up exchanges alike: compare the sums
          v.analysis = summed(
            v.analysis.map(({ rolled: _rolled, ...r }) => r),
            (r) => `${r.version}|${r.analysis_type}|${r.primary_category}`,
          );
        }
      }
      return rounded(out);
    };
    const totals = (a) => {
      const rows = Object.entries(a).filter(([k]) => k.endsWith(':day')).flatMap(([, v]) => v.filter((r) => r.source === 'proxy'));
      return { requests: rows.reduce((s, r) => s + r.requests, 0), cost: rows.reduce((s, r) => s + r.cost, 0) };
    };

    const before = await timed('analytics before (every usage grouping, persona report)', analytics);
    const sizeBefore = await size();
    const rowsBefore = await count();
    const partsBefore = await partitionCount();
    console.log(`  exchanges: ${fmt(rowsBefore)} rows, ${mb(sizeBefore)} with indexes, ${partsBefore} monthly partitions`);

    // whole months first (what the job does first in each run), then the batches
    const perPartition = new Map(
      (await db.query(`SELECT tableoid::regclass::text AS part, count(*) AS n FROM exchanges GROUP BY 1`)).rows.map((r) => [r.part, Number(r.n)]),
    );
    const dropped = await timed('drop expired months (rollup + detach + drop)', () => partitions.dropExpired(now));
    const remaining = new Set((await partitions.list()).map((p) => p.name));
    const expiredRows = [...perPartition].filter(([part]) => !remaining.has(part) && part !== 'exchanges_default').reduce((s, [, n]) => s + n, 0);
    console.log(`  ${dropped.result} partitions, ${fmt(expiredRows)} rows: ${fmt(expiredRows / (dropped.ms / 1000))} rows/s`);

    const service = server.app.get(RetentionService);
    let deleted = 0;
    let cleared = 0;
    let runs = 0;
    const batches = await timed(`batch runs (batch ${process.env.RETENTION_BATCH || 500})`, async () => {
      for (;;) {
        const run = await service.runOnce(now, 100_000);
        runs++;
        deleted += run.exchangesDeleted;
        cleared += run.bodiesCleared;
        if (!run.exchangesDeleted && !run.bodiesCleared) break;
      }
    });
    console.log(`  ${runs} runs: ${fmt(deleted)} exchanges deleted and ${fmt(cleared)} bodies cleared in batches, ${fmt((deleted + cleared) / (batches.ms / 1000))} rows/s`);

    const after = await timed('analytics after', analytics);
    const sizeAfter = await size();
    console.log(`  exchanges: ${fmt(await count())} rows, ${mb(sizeAfter)} with indexes (before VACUUM), ${await partitionCount()} partitions`);
    await timed('VACUUM exchanges', () => db.query(`VACUUM exchanges`));
    console.log(`  ${mb(await size())} with indexes after VACUUM (space of cleared bodies and deleted rows reusable; dropped months returned to the OS)`);
    const rollupRows = Number((await db.query(`SELECT count(*) AS n FROM usage_rollups`)).rows[0].n);
    console.log(`  usage_rollups: ${fmt(rollupRows)} rows`);

    const same = JSON.stringify(before.result) === JSON.stringify(after.result);
    const t = totals(before.result);
    console.log(`\nanalytics totals before: ${fmt(t.requests)} requests, $${t.cost.toFixed(4)}; after: ${fmt(totals(after.result).requests)} requests, $${totals(after.result).cost.toFixed(4)}`);
    console.log(same ? 'every analytics answer unchanged: yes' : 'every analytics answer unchanged: NO');
    if (!same) {
      for (const k of Object.keys(before.result)) {
        if (JSON.stringify(before.result[k]) !== JSON.stringify(after.result[k])) {
          console.log(`  differs: ${k}`);
          // the first rows that differ, before and after
          const [b, a] = [before.result[k], after.result[k]].map((v) => (Array.isArray(v) ? v : [v]));
          let shown = 0;
          for (let i = 0; i < Math.max(b.length, a.length) && shown < 3; i++) {
            if (JSON.stringify(b[i]) === JSON.stringify(a[i])) continue;
            console.log(`    before: ${JSON.stringify(b[i])}\n    after:  ${JSON.stringify(a[i])}`);
            shown++;
          }
        }
      }
      process.exitCode = 1;
    }
  } finally {
    await db.end().catch(() => undefined);
    await server?.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

/** Rows with the same key summed (live and rolled-up parts of one slice), sorted by key. */
function summed(rows, keyOf) {
  const out = new Map();
  for (const r of rows) {
    const k = keyOf(r);
    const prev = out.get(k);
    if (!prev) out.set(k, { ...r });
    else for (const [f, v] of Object.entries(r)) if (typeof v === 'number' && !['version', 'rating'].includes(f)) prev[f] += v;
  }
  return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
