'use strict';
/**
 * Persona analytics benchmark: one persona with 100,000 exchanges (plus ratings and analysis results) seeded
 * with SQL (generate_series), then N timed calls of GET /v1/analytics/personas/{id} over the default 30 days.
 *
 * As a library (the main benchmark calls it against a server it runs):
 *   const { runAnalyticsBench } = require('./analytics');
 *   await runAnalyticsBench({ databaseUrl, baseUrl, jwtSecret })             // seeds a fresh organization, mints a token
 *   await runAnalyticsBench({ databaseUrl, baseUrl, orgId, token, userId })   // seeds into the organization of `token`
 *   → { exchanges, calls, p50_ms, p95_ms, max_ms, seed_ms }
 *
 * Directly (after `npm run build`): DATABASE_URL=postgres://… JWT_SECRET=… node bench/analytics.js
 * starts the built server itself on a free port and prints the result as JSON.
 * Options by env: BENCH_EXCHANGES (default 100000), BENCH_CALLS (default 30).
 */
const { createHmac, randomUUID } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { Client } = require('pg');

function mintToken({ jwtSecret, orgId, issuer, audience }) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { org_id: orgId, org_name: 'bench-analytics', jti: randomUUID(), iat: now, exp: now + 3600 };
  if (issuer) claims.iss = issuer;
  if (audience) claims.aud = audience;
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${unsigned}.${createHmac('sha256', jwtSecret).update(unsigned).digest('base64url')}`;
}

/** Seeds one persona with `exchanges` rows spread over the last 29 days; returns its id. */
async function seed(client, { orgId, exchanges }) {
  const users = 200;
  await client.query(
    `INSERT INTO users (organization_id, external_id)
     SELECT $1, 'bench-user-' || g FROM generate_series(1, $2::int) g
     ON CONFLICT (organization_id, external_id) DO NOTHING`,
    [orgId, users],
  );
  const {
    rows: [persona],
  } = await client.query(
    `INSERT INTO personas (organization_id, name, content, version) VALUES ($1, $2, 'You are a benchmark persona.', 3) RETURNING id`,
    [orgId, `bench-persona-${randomUUID()}`],
  );
  await client.query(
    `INSERT INTO persona_versions (persona_id, version, content) SELECT $1, v, 'You are a benchmark persona, v' || v FROM generate_series(1, 3) v`,
    [persona.id],
  );
  // Rows as wide as real ones (request/response bodies, output text), so the heap is not unrealistically small.
  await client.query(
    `WITH u AS (SELECT array_agg(id ORDER BY external_id) AS ids, array_agg(external_id ORDER BY external_id) AS ext
                  FROM users WHERE organization_id = $1 AND external_id LIKE 'bench-user-%')
     INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version, endpoint,
                            model, stream, status, upstream_status, response_id, request_body, response_body, output_text,
                            input_tokens, output_tokens, total_tokens, cost, latency_ms, time_to_first_byte_ms, key_source,
                            created_at, completed_at)
     SELECT 'req_' || substr(md5(random()::text || g), 1, 24), $1, u.ids[1 + g % $4], u.ext[1 + g % $4],
            'session_bench' || (g / 4), $2, 1 + g % 3, '/v1/responses', 'gpt-4o-mini', g % 2 = 0,
            CASE WHEN g % 50 = 0 THEN 'upstream_error' ELSE 'completed' END, CASE WHEN g % 50 = 0 THEN 502 ELSE 200 END,
            'resp_' || md5(g::text),
            jsonb_build_object('model', 'gpt-4o-mini', 'input', repeat('How do I reset my password? ', 10)),
            jsonb_build_object('id', 'resp_' || md5(g::text), 'object', 'response', 'output_text', repeat('Here is how. ', 30)),
            repeat('Here is how. ', 30),
            100 + g % 400, 50 + g % 300, 150 + g % 400 + g % 300, (100 + g % 400) * 0.00000015 + (50 + g % 300) * 0.0000006,
            200 + (g * 7919) % 3000, 50 + g % 200, 'organization',
            now() - make_interval(secs => (g::float8 / $3) * 29 * 86400), now() - make_interval(secs => (g::float8 / $3) * 29 * 86400)
       FROM generate_series(1, $3::int) g, u`,
    [orgId, persona.id, exchanges, users],
  );
  await client.query(
    `INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, rated_at, exchange_created_at, persona_version)
     SELECT organization_id, id, user_id, persona_id, 1 + (abs(hashtext(id)) % 5), created_at, created_at, persona_version
       FROM exchanges WHERE persona_id = $1 AND abs(hashtext(id)) % 10 < 3`,
    [persona.id],
  );
  await client.query(
    `INSERT INTO analysis_results (organization_id, exchange_id, response_id, user_id, persona_id, cache_key, analysis_type,
                                   primary_category, confidence, reasoning, categories, model, input_tokens, output_tokens,
                                   total_tokens, cost, created_at, exchange_created_at, persona_version)
     SELECT organization_id, id, response_id, user_id, persona_id, md5(id), 'intent',
            (ARRAY['billing', 'technical_support', 'sales'])[1 + abs(hashtext(id)) % 3], 0.9, 'bench', '[]'::jsonb,
            'gpt-4o-mini', 300, 40, 340, 0.00007, created_at, created_at, persona_version
       FROM exchanges WHERE persona_id = $1 AND abs(hashtext(id)) % 10 = 0`,
    [persona.id],
  );
  // What autovacuum would have done on a live database after such a load.
  for (const table of ['exchanges', 'ratings', 'analysis_results']) await client.query(`VACUUM ANALYZE ${table}`);
  return persona.id;
}

function percentile(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

async function runAnalyticsBench(opts) {
  const exchanges = opts.exchanges ?? 100_000;
  const calls = opts.calls ?? 30;
  const userId = opts.userId ?? 'bench-analytics-user';
  const client = new Client({ connectionString: opts.databaseUrl });
  await client.connect();
  let personaId;
  let token = opts.token;
  let orgId = opts.orgId;
  const seedStart = performance.now();
  try {
    if (!orgId) {
      if (!opts.jwtSecret) throw new Error('runAnalyticsBench needs either orgId + token or jwtSecret');
      const { rows } = await client.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`bench-analytics-${randomUUID()}`]);
      orgId = rows[0].id;
    }
    token ??= mintToken({ jwtSecret: opts.jwtSecret, orgId, issuer: opts.jwtIssuer, audience: opts.jwtAudience });
    personaId = await seed(client, { orgId, exchanges });
  } finally {
    await client.end();
  }
  const seedMs = performance.now() - seedStart;

  const url = `${opts.baseUrl.replace(/\/+$/, '')}/v1/analytics/personas/${personaId}`;
  const headers = { authorization: `Bearer ${token}`, 'x-user-id': userId };
  const call = async () => {
    const start = performance.now();
    const res = await fetch(url, { headers });
    const body = await res.json();
    const ms = performance.now() - start;
    if (res.status !== 200) throw new Error(`analytics answered ${res.status}: ${JSON.stringify(body)}`);
    if (body.requests !== exchanges) throw new Error(`analytics counted ${body.requests} requests, expected ${exchanges}`);
    return ms;
  };
  await call(); // warm-up: connection pool, plan cache
  const times = [];
  for (let i = 0; i < calls; i++) times.push(await call());
  times.sort((a, b) => a - b);
  const round = (v) => Math.round(v * 10) / 10;
  return {
    exchanges,
    calls,
    p50_ms: round(percentile(times, 0.5)),
    p95_ms: round(percentile(times, 0.95)),
    max_ms: round(times[times.length - 1]),
    seed_ms: Math.round(seedMs),
  };
}

module.exports = { runAnalyticsBench, seedPersonaExchanges: seed };

if (require.main === module) {
  (async () => {
    if (!process.env.DATABASE_URL) throw new Error('set DATABASE_URL (and JWT_SECRET / ENCRYPTION_KEY) to run the analytics benchmark');
    const { loadConfig } = require('../dist/src/config/app-config.js');
    const { startServer } = require('../dist/src/server.js');
    const config = loadConfig({ ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
    const server = await startServer(config);
    try {
      const result = await runAnalyticsBench({
        databaseUrl: config.databaseUrl,
        baseUrl: server.url,
        jwtSecret: config.jwtSecret,
        jwtIssuer: config.jwtIssuer,
        jwtAudience: config.jwtAudience,
        exchanges: process.env.BENCH_EXCHANGES ? Number(process.env.BENCH_EXCHANGES) : undefined,
        calls: process.env.BENCH_CALLS ? Number(process.env.BENCH_CALLS) : undefined,
      });
      console.log(JSON.stringify({ benchmark: 'persona_analytics', ...result }, null, 2));
    } finally {
      await server.close();
    }
  })().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
