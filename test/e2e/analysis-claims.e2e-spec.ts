import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';

const POOL = 4;

/**
 * Analyses coalesce through a claim row, not a transaction held across the upstream call: the database pool stays
 * free for everything else while analyses wait on a slow model.
 */
describe('analysis claims', () => {
  let app: TestApp;
  /** the model the analyses wait on */
  let slow: FakeUpstream;
  /** the upstream of the other tenant's proxied calls */
  let fast: FakeUpstream;

  beforeAll(async () => {
    [slow, fast] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    app = await createTestApp({ DB_POOL_SIZE: String(POOL), LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await app?.close();
    await Promise.all([slow?.close(), fast?.close()]);
  });

  async function setupOrg(upstream: FakeUpstream) {
    const org = await createOrg(app);
    const apiKey = `sk-claims-${randomBytes(8).toString('hex')}`;
    await createKey(app, org.orgId, apiKey, { baseUrl: upstream.url });
    const externalId = `user-${randomUUID()}`;
    await createUser(app, org.orgId, externalId);
    const call = api(app, org.token, externalId);
    const analysisCalls = () =>
      upstream.requests.filter((r) => r.headers.authorization === `Bearer ${apiKey}` && r.body?.text?.format?.type === 'json_schema');
    return { ...org, call, analysisCalls };
  }

  async function exchangeOf(org: { call: ReturnType<typeof api> }, input = 'My invoice is wrong and support does not answer.') {
    const res = await org.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input });
    expect(res.status).toBe(200);
    return res.headers.get('x-request-id')!;
  }

  async function until(condition: () => boolean, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it(`${2 * POOL} distinct analyses on a slow model (DB_POOL_SIZE ${POOL}) leave /health, reads and proxied calls fast`, async () => {
    const analyst = await setupOrg(slow);
    const requestId = await exchangeOf(analyst);
    const other = await setupOrg(fast);

    slow.setDefaultFault({ kind: 'delay', ms: 4000 });
    try {
      const analyses = Array.from({ length: 2 * POOL }, (_, i) =>
        analyst.call('POST', '/v1/analysis', { request_id: requestId, config: { analysis_type: 'sentiment', instructions: `variant ${i}` } }),
      );
      // at least a pool's worth of them are waiting on the model
      await until(() => analyst.analysisCalls().length >= POOL, 10_000);

      const started = Date.now();
      const health = await fetch(`${app.url}/health`);
      const proxied = await other.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hello' });
      const read = await other.call('GET', '/v1/personas');
      const fresh = await api(app, other.token, `new-user-${randomUUID()}`)('GET', '/v1/requests');
      const elapsed = Date.now() - started;
      expect([health.status, proxied.status, read.status, fresh.status]).toEqual([200, 200, 200, 200]);
      // a generous bound: a starved pool answers only after its 3 s connection timeout, with 503
      expect(elapsed).toBeLessThan(2500);

      const results = await Promise.all(analyses);
      expect(results.map((r) => r.status)).toEqual(Array(2 * POOL).fill(200));
      expect(new Set(results.map((r) => r.body.id)).size).toBe(2 * POOL);
      expect(analyst.analysisCalls()).toHaveLength(2 * POOL);
    } finally {
      slow.setDefaultFault(undefined);
    }
  });

  it('identical analyses on a slow model make one upstream call and hold no connection while they wait', async () => {
    const analyst = await setupOrg(slow);
    const requestId = await exchangeOf(analyst, 'Identical analyses, please.');
    slow.enqueue({ kind: 'delay', ms: 1500 });
    const body = { request_id: requestId, config: { analysis_type: 'urgency' } };
    const analyses = Array.from({ length: 3 * POOL }, () => analyst.call('POST', '/v1/analysis', body));
    await until(() => analyst.analysisCalls().length >= 1, 10_000);
    const health = await fetch(`${app.url}/health`);
    expect(health.status).toBe(200);
    const results = await Promise.all(analyses);
    expect(results.map((r) => r.status)).toEqual(Array(3 * POOL).fill(200));
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect(results.filter((r) => !r.body.cached)).toHaveLength(1);
    expect(analyst.analysisCalls()).toHaveLength(1);
  });

  it('takes over the claim of a holder that died: at once when its lease ran out, when it runs out otherwise', async () => {
    const analyst = await setupOrg(fast);
    const requestId = await exchangeOf(analyst, 'A question about claims.');
    const body = { request_id: requestId, config: { analysis_type: 'sentiment' } };
    const first = await analyst.call('POST', '/v1/analysis', body);
    expect(first.status).toBe(200);
    const [{ cache_key: cacheKey }] = await app.dataSource.query('SELECT cache_key FROM analysis_results WHERE id = $1', [first.body.id]);
    await app.dataSource.query('DELETE FROM analysis_results WHERE organization_id = $1', [analyst.orgId]);

    // a claim left behind, already lapsed
    await app.dataSource.query(
      `INSERT INTO analysis_claims (organization_id, cache_key, holder, expires_at) VALUES ($1, $2, $3, now() - interval '1 second')`,
      [analyst.orgId, cacheKey, randomUUID()],
    );
    const overLapsed = await analyst.call('POST', '/v1/analysis', body);
    expect(overLapsed.status).toBe(200);
    expect(overLapsed.body.cached).toBe(false);
    expect(analyst.analysisCalls()).toHaveLength(2);
    await app.dataSource.query('DELETE FROM analysis_results WHERE organization_id = $1', [analyst.orgId]);

    // a claim whose holder stopped renewing it: waited for until it lapses, then taken over
    await app.dataSource.query(
      `INSERT INTO analysis_claims (organization_id, cache_key, holder, expires_at) VALUES ($1, $2, $3, now() + interval '1 second')`,
      [analyst.orgId, cacheKey, randomUUID()],
    );
    const waited = await analyst.call('POST', '/v1/analysis', body);
    expect(waited.status).toBe(200);
    expect(waited.body.cached).toBe(false);
    expect(analyst.analysisCalls()).toHaveLength(3);
    const claims = await app.dataSource.query('SELECT count(*)::int AS n FROM analysis_claims WHERE organization_id = $1', [analyst.orgId]);
    expect(claims[0].n).toBe(0);
  });
});
