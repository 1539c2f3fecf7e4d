import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExchangePartitions } from '../../src/retention/exchange-partitions';
import { RetentionService } from '../../src/retention/retention.service';
import { UsageRollupsRepository } from '../../src/retention/usage-rollups.repository';
import { loadConfig } from '../../src/config/app-config';
import { createTestApp, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { api, createOrg, createUser, TestOrg } from '../support/factories';

/*
 * Retention with the clock moved: exchanges are stored with created_at in the past (the recorder stamps the
 * request's time, so old rows can only be made with SQL), then one retention run as of now.
 *
 * Organization A: content retention 7 days, retention 30 days, persona P, users alice and bob.
 *   old1  alice P gpt-4o-mini s-a1 completed  40 days ago 01:00   ratings alice 5, bob 4; analyses intent (twice), sentiment (failed)
 *   old2  alice P gpt-4o-mini s-a1 completed  40 days ago 02:00
 *   old3  bob   P gpt-4o      s-b1 upstream_error 35 days ago    rating bob 1
 *   old4  bob   - gpt-4o      s-b2 completed  45 days ago
 *   mid1  alice P gpt-4o-mini s-a2 completed  10 days ago   (bodies cleared, row kept)   rating alice 3, analysis intent
 *   new1  bob   P gpt-4o      s-b3 completed   2 days ago   (untouched)
 * Organization B: no retention; an exchange 40 days old stays whole.
 */

const DAY = 86_400_000;
const utcMidnight = (t: number) => Math.floor(t / DAY) * DAY;

interface Stored {
  user: string;
  persona: string | null;
  version?: number | null;
  model: string;
  session: string;
  status?: string;
  at: Date;
  tokens?: [number, number, number];
  cost?: number;
  latency?: number;
}

describe('retention', () => {
  let app: TestApp;
  let orgA: TestOrg;
  let orgB: TestOrg;
  let personaP: string;
  const users: Record<string, string> = {};
  const ex: Record<string, string> = {};
  const now = new Date();
  const daysAgo = (d: number, hour = 12) => new Date(utcMidnight(now.getTime()) - d * DAY + hour * 3_600_000);

  async function store(orgId: string, e: Stored): Promise<string> {
    const id = `req_${randomBytes(18).toString('base64url').slice(0, 24)}`;
    const [input, output, total] = e.tokens ?? [100, 20, 120];
    await app.dataSource.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version, endpoint, model, status,
                              request_body, response_body, output_text, error, input_tokens, output_tokens, total_tokens, cached_tokens,
                              reasoning_tokens, cost, latency_ms, created_at, completed_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'responses', $8, $9, $10, $11, $12, $13, $14, $15, $16, 5, 3, $17, $18, $19, $19)`,
      [
        id,
        orgId,
        users[`${orgId}:${e.user}`],
        e.user,
        e.session,
        e.persona,
        e.persona ? (e.version ?? 1) : null,
        e.model,
        e.status ?? 'completed',
        JSON.stringify({ model: e.model, input: `secret words of ${e.user}` }),
        JSON.stringify({ output_text: 'an answer' }),
        'an answer',
        e.status && e.status !== 'completed' ? JSON.stringify({ message: `upstream said no to ${e.user}` }) : null,
        input,
        output,
        total,
        e.cost ?? 0.001,
        e.latency ?? 100,
        e.at.toISOString(),
      ],
    );
    return id;
  }

  async function rate(orgId: string, exchangeId: string, user: string, rating: number, personaId: string | null): Promise<void> {
    await app.dataSource.query(
      `INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, rated_at) VALUES ($1, $2, $3, $4, $5, now())`,
      [orgId, exchangeId, users[`${orgId}:${user}`], personaId, rating],
    );
  }

  async function analyse(orgId: string, exchangeId: string, a: { user: string; type: string; category: string | null; at: Date; cacheKey: string }) {
    await app.dataSource.query(
      `INSERT INTO analysis_results (organization_id, exchange_id, user_id, persona_id, cache_key, analysis_type, primary_category, confidence,
                                     reasoning, categories, model, input_tokens, output_tokens, total_tokens, cost, status, error, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'gpt-4o-mini', 40, 6, 46, 0.00002, $11, $12, $13)`,
      [
        orgId,
        exchangeId,
        users[`${orgId}:${a.user}`],
        personaP,
        a.cacheKey,
        a.type,
        a.category,
        a.category ? 0.9 : null,
        a.category ? 'because' : null,
        a.category ? JSON.stringify([{ name: a.category, confidence: 0.9 }]) : null,
        a.category ? 'completed' : 'failed',
        a.category ? null : 'the model did not answer',
        a.at.toISOString(),
      ],
    );
  }

  async function setRetention(orgId: string, contentDays: number | null, days: number | null): Promise<void> {
    await app.dataSource.query(`UPDATE organizations SET content_retention_days = $2, retention_days = $3 WHERE id = $1`, [orgId, contentDays, days]);
  }

  /** Every analytics answer about organization A over a day-aligned period holding all its exchanges. */
  async function analytics(): Promise<Record<string, unknown>> {
    const from = new Date(utcMidnight(now.getTime()) - 60 * DAY).toISOString();
    const to = new Date(utcMidnight(now.getTime()) + DAY).toISOString();
    const call = api(app, orgA.token, 'alice');
    const out: Record<string, unknown> = {};
    for (const group of ['user', 'model', 'persona', 'day']) {
      const res = await call('GET', `/v1/analytics/usage?group_by=${group}&from=${from}&to=${to}`);
      expect(res.status, res.text).toBe(200);
      out[group] = res.body;
    }
    const persona = await call('GET', `/v1/analytics/personas/${personaP}?from=${from}&to=${to}`);
    expect(persona.status, persona.text).toBe(200);
    // percentiles are not additive: they cover the stored exchanges only (the average includes the deleted ones)
    const { p50: _p50, p95: _p95, ...latency } = persona.body.latency_ms;
    // the analysis categories of each version survive too (the rollups keep the version)
    out.persona = { ...persona.body, latency_ms: latency };
    return out;
  }

  const exchangeRow = async (id: string) => (await app.dataSource.query(`SELECT * FROM exchanges WHERE id = $1`, [id]))[0];

  beforeAll(async () => {
    app = await createTestApp({ RETENTION_BATCH: '2' });
    orgA = await createOrg(app);
    orgB = await createOrg(app);
    for (const org of [orgA, orgB]) {
      for (const name of ['alice', 'bob']) users[`${org.orgId}:${name}`] = (await createUser(app, org.orgId, name)).id;
    }
    const created = await api(app, orgA.token, 'alice')('POST', '/v1/personas', { name: `p-${randomUUID()}`, content: 'You help.' });
    expect(created.status, created.text).toBe(201);
    personaP = created.body.id;

    const A = orgA.orgId;
    ex.old1 = await store(A, { user: 'alice', persona: personaP, model: 'gpt-4o-mini', session: 's-a1', at: daysAgo(40, 1), latency: 120 });
    ex.old2 = await store(A, { user: 'alice', persona: personaP, model: 'gpt-4o-mini', session: 's-a1', at: daysAgo(40, 2), tokens: [50, 10, 60], cost: 0.0005, latency: 300 });
    ex.old3 = await store(A, { user: 'bob', persona: personaP, model: 'gpt-4o', session: 's-b1', status: 'upstream_error', at: daysAgo(35), tokens: [0, 0, 0], cost: 0, latency: 50 });
    ex.old4 = await store(A, { user: 'bob', persona: null, model: 'gpt-4o', session: 's-b2', at: daysAgo(45), cost: 0.002 });
    ex.mid1 = await store(A, { user: 'alice', persona: personaP, model: 'gpt-4o-mini', session: 's-a2', at: daysAgo(10), latency: 80 });
    ex.new1 = await store(A, { user: 'bob', persona: personaP, model: 'gpt-4o', session: 's-b3', at: daysAgo(2), cost: 0.003, latency: 90 });
    await rate(A, ex.old1, 'alice', 5, personaP);
    await rate(A, ex.old1, 'bob', 4, personaP);
    await rate(A, ex.old3, 'bob', 1, personaP);
    await rate(A, ex.mid1, 'alice', 3, personaP);
    await analyse(A, ex.old1, { user: 'alice', type: 'intent', category: 'billing', at: daysAgo(39, 1), cacheKey: 'k-old1-a' });
    await analyse(A, ex.old1, { user: 'alice', type: 'intent', category: 'technical_support', at: daysAgo(39, 2), cacheKey: 'k-old1-b' });
    await analyse(A, ex.old1, { user: 'bob', type: 'sentiment', category: null, at: daysAgo(38), cacheKey: 'k-old1-c' });
    await analyse(A, ex.mid1, { user: 'alice', type: 'intent', category: 'sales', at: daysAgo(9), cacheKey: 'k-mid1' });
    // an expired claim on a deleted result's cache key goes; one on a kept result's key stays
    for (const key of ['k-old1-a', 'k-mid1']) {
      await app.dataSource.query(`INSERT INTO analysis_claims (organization_id, cache_key, holder, expires_at) VALUES ($1, $2, $3, now() - interval '1 hour')`, [
        A,
        key,
        randomUUID(),
      ]);
    }
    ex.b1 = await store(orgB.orgId, { user: 'alice', persona: null, model: 'gpt-4o', session: 's-x', at: daysAgo(40) });
    await rate(orgB.orgId, ex.b1, 'alice', 2, null);
    await setRetention(A, 7, 30);
  });

  afterAll(async () => {
    await app?.close();
  });

  it('clears bodies after N days, deletes exchanges with their ratings and analyses after M days, and keeps analytics totals', async () => {
    const before = await analytics();
    expect((before.persona as { requests: number }).requests).toBe(5);

    const run = await app.app.get(RetentionService).runOnce(now);
    expect(run.exchangesDeleted + run.busy).toBeGreaterThan(0);

    // whole exchanges older than 30 days are gone, with their ratings and analyses and the expired claims of their cache keys
    for (const id of [ex.old1, ex.old2, ex.old3, ex.old4]) expect(await exchangeRow(id)).toBeUndefined();
    const orphans = await app.dataSource.query(
      `SELECT (SELECT count(*) FROM ratings WHERE exchange_id = ANY($1))::int AS ratings,
              (SELECT count(*) FROM analysis_results WHERE exchange_id = ANY($1))::int AS analyses`,
      [[ex.old1, ex.old2, ex.old3, ex.old4]],
    );
    expect(orphans[0]).toEqual({ ratings: 0, analyses: 0 });
    const claims = await app.dataSource.query(`SELECT cache_key FROM analysis_claims WHERE organization_id = $1 ORDER BY cache_key`, [orgA.orgId]);
    expect(claims.map((c: { cache_key: string }) => c.cache_key)).toEqual(['k-mid1']);

    // older than 7 days: bodies and text cleared, usage kept, marked
    const mid = await exchangeRow(ex.mid1);
    expect(mid).toMatchObject({ request_body: null, response_body: null, output_text: null, error: null, total_tokens: '120', status: 'completed' });
    expect(mid.content_deleted_at).not.toBeNull();
    expect((await app.dataSource.query(`SELECT count(*)::int AS n FROM ratings WHERE exchange_id = $1`, [ex.mid1]))[0].n).toBe(1);
    expect((await app.dataSource.query(`SELECT count(*)::int AS n FROM analysis_results WHERE exchange_id = $1`, [ex.mid1]))[0].n).toBe(1);

    // younger: untouched
    const young = await exchangeRow(ex.new1);
    expect(young.request_body).toEqual({ model: 'gpt-4o', input: 'secret words of bob' });
    expect(young.output_text).toBe('an answer');
    expect(young.content_deleted_at).toBeNull();

    // another organization (no retention): untouched
    const other = await exchangeRow(ex.b1);
    expect(other.request_body).toEqual({ model: 'gpt-4o', input: 'secret words of alice' });
    expect((await app.dataSource.query(`SELECT count(*)::int AS n FROM ratings WHERE exchange_id = $1`, [ex.b1]))[0].n).toBe(1);
    expect((await app.dataSource.query(`SELECT count(*)::int AS n FROM usage_rollups WHERE organization_id = $1`, [orgB.orgId]))[0].n).toBe(0);

    // the rollups hold what was deleted
    const rolled = await app.dataSource.query(
      `SELECT source, sum(requests)::int AS requests, sum(errors)::int AS errors, sum(total_tokens)::int AS tokens,
              sum(ratings_1 + ratings_2 + ratings_3 + ratings_4 + ratings_5)::int AS ratings
         FROM usage_rollups WHERE organization_id = $1 GROUP BY source ORDER BY source`,
      [orgA.orgId],
    );
    expect(rolled).toEqual([
      { source: 'analysis', requests: 3, errors: 1, tokens: 138, ratings: 0 },
      { source: 'proxy', requests: 4, errors: 1, tokens: 300, ratings: 3 },
    ]);

    // every analytics answer is the same as before
    expect(await analytics()).toEqual(before);

    // a second run finds nothing more to do and changes nothing
    const again = await app.app.get(RetentionService).runOnce(now);
    expect(again).toMatchObject({ bodiesCleared: 0, exchangesDeleted: 0 });
    expect(await analytics()).toEqual(before);

    const metrics = await fetch(`${app.url}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/openai_proxy_retention_exchanges_deleted_total [1-9]/);
    expect(metrics).toMatch(/openai_proxy_retention_bodies_cleared_total [1-9]/);
    expect(metrics).toMatch(/openai_proxy_retention_last_run_timestamp_seconds [1-9]/);
    expect(metrics).toMatch(/openai_proxy_retention_run_duration_seconds_count [1-9]/);
  });

  it('moves the clock on: what was kept goes when its time comes', async () => {
    const later = new Date(now.getTime() + 25 * DAY);
    await app.app.get(RetentionService).runOnce(later);
    expect(await exchangeRow(ex.mid1)).toBeUndefined();
    const young = await exchangeRow(ex.new1);
    expect(young.request_body).toBeNull();
    expect(young.content_deleted_at).not.toBeNull();
    expect(await exchangeRow(ex.b1)).toBeDefined();
  });

  it('two runners at once neither double-count nor miss anything', async () => {
    const org = await createOrg(app);
    users[`${org.orgId}:carol`] = (await createUser(app, org.orgId, 'carol')).id;
    const n = 41;
    for (let i = 0; i < n; i++) {
      await store(org.orgId, { user: 'carol', persona: null, model: 'gpt-4o-mini', session: `s-${i % 3}`, at: daysAgo(50 + (i % 4), i % 24), cost: 0.001 });
    }
    // instants with microseconds (a JavaScript Date has milliseconds only): every row is still found and deleted
    await app.dataSource.query(`UPDATE exchanges SET created_at = created_at + interval '123 microseconds' WHERE organization_id = $1`, [org.orgId]);
    await setRetention(org.orgId, null, 30);
    const service = app.app.get(RetentionService);
    // two processes' worth of runners on separate connections, each deleting 2 at a time
    await Promise.all([service.runOnce(now), service.runOnce(now), service.runOnce(now)]);
    await service.runOnce(now);
    const left = await app.dataSource.query(`SELECT count(*)::int AS n FROM exchanges WHERE organization_id = $1`, [org.orgId]);
    expect(left[0].n).toBe(0);
    const rolled = await app.dataSource.query(
      `SELECT sum(requests)::int AS requests, sum(total_tokens)::int AS tokens, round(sum(cost)::numeric, 6)::float8 AS cost, sum(sessions)::int AS sessions
         FROM usage_rollups WHERE organization_id = $1`,
      [org.orgId],
    );
    // sessions s-0, s-1, s-2 over 4 days: each (session, day) pair counted once
    const pairs = new Set(Array.from({ length: n }, (_, i) => `${i % 3}:${i % 4}`));
    expect(rolled[0]).toEqual({ requests: n, tokens: n * 120, cost: 0.041, sessions: pairs.size });
  });

  it("an erased user's rollups lose the user and keep the totals", async () => {
    const repo = app.app.get(UsageRollupsRepository);
    const bob = users[`${orgA.orgId}:bob`];
    const totals = `SELECT sum(requests)::int AS requests, sum(cost)::float8 AS cost FROM usage_rollups WHERE organization_id = $1`;
    const before = (await app.dataSource.query(totals, [orgA.orgId]))[0];
    const moved = await app.dataSource.transaction((m) => repo.forgetUser(m, orgA.orgId, bob));
    expect(moved).toBeGreaterThan(0);
    expect((await app.dataSource.query(totals, [orgA.orgId]))[0]).toEqual(before);
    expect((await app.dataSource.query(`SELECT count(*)::int AS n FROM usage_rollups WHERE user_id = $1`, [bob]))[0].n).toBe(0);
    // alice keeps hers
    expect((await app.dataSource.query(`SELECT count(*)::int AS n FROM usage_rollups WHERE user_id = $1`, [users[`${orgA.orgId}:alice`]]))[0].n).toBeGreaterThan(0);
  });

  it('drops a whole month once every organization with rows in it is done with it, and keeps its totals', async () => {
    const partitions = app.app.get(ExchangePartitions);
    if (!(await partitions.isPartitioned())) throw new Error('exchanges is not partitioned');
    // two months long past: in the first only organizations with a retention, in the second one without
    await partitions.ensureRange(new Date('2021-01-01T00:00:00Z'), new Date('2021-02-01T00:00:00Z'));
    const kept = await createOrg(app);
    const gone = [await createOrg(app), await createOrg(app)];
    for (const org of [kept, ...gone]) users[`${org.orgId}:dave`] = (await createUser(app, org.orgId, 'dave')).id;
    const jan: string[] = [];
    for (const [i, org] of gone.entries()) {
      for (let k = 0; k < 3; k++) {
        jan.push(await store(org.orgId, { user: 'dave', persona: null, model: 'gpt-4o', session: `s-${k}`, at: new Date(Date.UTC(2021, 0, 5 + k, i)), cost: 0.01 }));
      }
      await setRetention(org.orgId, null, 365);
    }
    await rate(gone[0].orgId, jan[0], 'dave', 5, null);
    const feb = await store(kept.orgId, { user: 'dave', persona: null, model: 'gpt-4o', session: 's', at: new Date('2021-02-10T00:00:00Z') });
    const febGone = await store(gone[0].orgId, { user: 'dave', persona: null, model: 'gpt-4o', session: 's-9', at: new Date('2021-02-11T00:00:00Z') });

    const usage = async (org: TestOrg) =>
      (await api(app, org.token, 'dave')('GET', '/v1/analytics/usage?group_by=day&from=2021-01-01T00:00:00Z&to=2021-03-01T00:00:00Z')).body;
    const before = await Promise.all(gone.map(usage));
    expect(before[0].data).toHaveLength(4);

    // Another server on this database may be rebuilding the old months' indexes (a day after a month ends), which
    // holds the lock dropping takes: the drop then waits for a later run of the job.
    let dropped = 0;
    for (let attempt = 0; attempt < 40 && dropped === 0; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 250));
      dropped = (await app.app.get(RetentionService).runOnce(now)).partitionsDropped;
    }
    expect(dropped).toBeGreaterThanOrEqual(1);
    const names = (await partitions.list()).map((p) => p.name);
    expect(names).not.toContain('exchanges_p2021_01');
    expect(names).toContain('exchanges_p2021_02');
    expect(await app.dataSource.query(`SELECT id FROM exchanges WHERE id = ANY($1)`, [jan])).toEqual([]);
    expect(await app.dataSource.query(`SELECT id FROM ratings WHERE exchange_id = $1`, [jan[0]])).toEqual([]);
    // the month kept for an organization without retention: its rows stay, the others' are deleted in batches
    expect(await exchangeRow(feb)).toBeDefined();
    expect(await exchangeRow(febGone)).toBeUndefined();
    expect(await Promise.all(gone.map(usage))).toEqual(before);
    const metrics = await fetch(`${app.url}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/openai_proxy_retention_partitions_dropped_total [1-9]/);
  });

  it('RETENTION_INTERVAL_MS is at most a minute (0: this process runs no job) and RETENTION_BATCH is bounded', () => {
    const env = { JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY, DATABASE_URL: 'postgres://127.0.0.1/x' };
    expect(loadConfig(env)).toMatchObject({ retentionIntervalMs: 60_000, retentionBatch: 500 });
    expect(loadConfig({ ...env, RETENTION_INTERVAL_MS: '0', RETENTION_BATCH: '50' })).toMatchObject({ retentionIntervalMs: 0, retentionBatch: 50 });
    expect(() => loadConfig({ ...env, RETENTION_INTERVAL_MS: '120000' })).toThrow(/RETENTION_INTERVAL_MS must be between 0 and 60000/);
    expect(() => loadConfig({ ...env, RETENTION_INTERVAL_MS: '5' })).toThrow(/RETENTION_INTERVAL_MS must be 0 \(off\) or between 100 and 60000/);
    expect(() => loadConfig({ ...env, RETENTION_BATCH: '0' })).toThrow(/RETENTION_BATCH must be between 1 and 10000/);
  });
});
