import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { KeysService, type CreateKeyInput } from '../../src/keys/keys.service';
import { KeyResolver } from '../../src/keys/key-resolver';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createOrg, createUser } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';
import { waitFor } from '../support/proxy-test-helpers';

describe('key pools, routing and failover', () => {
  let app: TestApp;
  let fake: FakeUpstream;
  let llama: FakeUpstream;

  beforeAll(async () => {
    [fake, llama] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    app = await createTestApp({ LOG_LEVEL: 'warn', KEY_REST_MAX_MS: '60000' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
    await llama?.close();
  });
  beforeEach(() => {
    fake.reset();
    llama.reset();
  });

  const keys = () => app.app.get(KeysService);
  const addKey = async (orgId: string, apiKey: string, o: Partial<CreateKeyInput> = {}) =>
    (await keys().create({ orgId, apiKey, baseUrl: fake.url, ...o }, cliActor())).id;
  const keyOf = (r: { headers: Record<string, unknown> }) => String(r.headers.authorization).replace(/^Bearer /, '');
  const stateOf = async (orgId: string) => Object.fromEntries((await keys().list(orgId)).map((k) => [k.last4, k]));
  const ask = (call: ReturnType<typeof api>, model = 'gpt-4o-mini', headers: Record<string, string> = {}) =>
    call('POST', '/v1/responses', { model, input: 'hi' }, headers);

  it('fails over before the first byte: a 429 rests its key, a 401 invalidates its key, every call is served; the rested key returns', async () => {
    const org = await createOrg(app);
    const limited = await addKey(org.orgId, 'sk-pool-limited-A429', { priority: 2 });
    const refused = await addKey(org.orgId, 'sk-pool-refused-B401', { priority: 1 });
    const good = await addKey(org.orgId, 'sk-pool-good-C200');
    fake.keyFaults.set('sk-pool-limited-A429', { kind: 'status', status: 429, retryAfter: '2' });
    fake.keyFaults.set('sk-pool-refused-B401', { kind: 'status', status: 401 });
    const call = api(app, org.token, 'failover@example.com');

    const first = await ask(call);
    expect(first.status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-pool-limited-A429', 'sk-pool-refused-B401', 'sk-pool-good-C200']);
    const rec = await call('GET', `/v1/requests/${first.headers.get('x-request-id')}`);
    expect(rec.body).toMatchObject({
      status: 'completed',
      key_id: good,
      key_source: 'organization',
      key_attempts: [
        { key_id: limited, outcome: 'rate_limited', status: 429 },
        { key_id: refused, outcome: 'invalid', status: 401 },
      ],
    });

    // the states are stored (and shown), the invalidation audited as the system's
    await waitFor(async () => (await stateOf(org.orgId)).B401.state === 'invalid', 3000, 'key invalid');
    await waitFor(async () => (await stateOf(org.orgId)).A429.rest_until !== null, 3000, 'key resting');
    const states = await stateOf(org.orgId);
    expect(states.B401).toMatchObject({ state: 'invalid', last_error: expect.stringContaining('401') });
    expect(states.A429).toMatchObject({ state: 'active', last_error: expect.stringContaining('429') });
    expect(states.C200).toMatchObject({ state: 'active', rest_until: null });
    const events = await app.dataSource.query(`SELECT actor, action, target_id AS target FROM audit_events WHERE organization_id = $1 AND action = 'key.invalidate'`, [org.orgId]);
    expect(events).toEqual([{ actor: 'system', action: 'key.invalidate', target: refused }]);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toContain(`openai_proxy_upstream_key_events_total{key="${refused.slice(0, 8)}",event="invalid"} 1`);

    // while it rests and while the other is invalid, calls go straight to the good key
    fake.requests.length = 0;
    for (let i = 0; i < 3; i++) expect((await ask(call)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(Array(3).fill('sk-pool-good-C200'));

    // after its Retry-After the rested key is first again; the invalid one stays out
    fake.keyFaults.clear();
    await new Promise((r) => setTimeout(r, 2100));
    fake.requests.length = 0;
    expect((await ask(call)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-pool-limited-A429']);

    // enabled again, it is used again
    await keys().enable(refused, cliActor());
    await keys().revoke(limited, cliActor());
    fake.requests.length = 0;
    expect((await ask(call)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-pool-refused-B401']);
  });

  it("the proxy's own analysis calls fail over the same way: 429 rests, 401 invalidates, the next key answers", async () => {
    const org = await createOrg(app);
    await addKey(org.orgId, 'sk-pool-analysis-A429', { priority: 2 });
    await addKey(org.orgId, 'sk-pool-analysis-B401', { priority: 1 });
    await addKey(org.orgId, 'sk-pool-analysis-C200');
    const call = api(app, org.token, 'analysis-failover@example.com');
    const made = await ask(call);
    expect(made.status).toBe(200);
    fake.keyFaults.set('sk-pool-analysis-A429', { kind: 'status', status: 429 });
    fake.keyFaults.set('sk-pool-analysis-B401', { kind: 'status', status: 401 });
    fake.requests.length = 0;

    const res = await call('POST', '/v1/analysis', { request_id: made.headers.get('x-request-id'), config: { analysis_type: 'sentiment' } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-pool-analysis-A429', 'sk-pool-analysis-B401', 'sk-pool-analysis-C200']);
    await waitFor(async () => (await stateOf(org.orgId)).B401.state === 'invalid', 3000, 'key invalid');
    await waitFor(async () => (await stateOf(org.orgId)).A429.rest_until !== null, 3000, 'key resting');
  });

  it('never fails over once the answer has started: a stream cut by the upstream is not repeated on another key', async () => {
    const org = await createOrg(app);
    await addKey(org.orgId, 'sk-stream-first-0001', { priority: 1 });
    await addKey(org.orgId, 'sk-stream-second-002');
    fake.keyFaults.set('sk-stream-first-0001', { kind: 'reset-mid-stream', afterEvents: 2 });
    const call = api(app, org.token, 'stream@example.com');
    const res = await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true });
    expect(res.status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-stream-first-0001']);
  });

  it('the last key of a pool answering 401 is answered as before (502 upstream_auth_failed); then the pool is empty (403)', async () => {
    const org = await createOrg(app);
    await addKey(org.orgId, 'sk-only-refused-0401');
    fake.keyFaults.set('sk-only-refused-0401', { kind: 'status', status: 401 });
    const call = api(app, org.token, 'alone@example.com');
    const res = await ask(call);
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_auth_failed');
    const next = await ask(call);
    expect(next.status).toBe(403);
    expect(next.body.error).toMatchObject({ code: 'no_api_key', message: expect.stringContaining('refused') });
  });

  it('an object is reached with the key that made it, whatever the pool would choose: no failover away from it', async () => {
    const org = await createOrg(app);
    await addKey(org.orgId, 'sk-affinity-maker-001', { priority: 1 });
    await addKey(org.orgId, 'sk-affinity-other-002');
    const call = api(app, org.token, 'affinity@example.com');
    const made = await ask(call);
    expect(made.status).toBe(200);
    fake.keyFaults.set('sk-affinity-maker-001', { kind: 'status', status: 429, retryAfter: '30' });
    fake.requests.length = 0;
    const next = await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'and then?', previous_response_id: made.body.id });
    expect(next.status).toBe(429);
    expect(fake.requests.map(keyOf)).toEqual(['sk-affinity-maker-001']);
    // a call of its own goes on with the other key
    fake.requests.length = 0;
    expect((await ask(call)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-affinity-other-002']);
  });

  it('the generic relay fails over too (a model call safe to repeat), and routes by model', async () => {
    const org = await createOrg(app);
    const limited = await addKey(org.orgId, 'sk-relay-limited-001', { priority: 1, models: 'text-embedding-*' });
    const good = await addKey(org.orgId, 'sk-relay-good-000002', { models: 'text-embedding-*' });
    await addKey(org.orgId, 'sk-relay-llama-00003', { models: 'llama-*', baseUrl: llama.url });
    fake.keyFaults.set('sk-relay-limited-001', { kind: 'status', status: 429, retryAfter: '5' });
    const call = api(app, org.token, 'relay@example.com');
    const res = await call('POST', '/v1/embeddings', { model: 'text-embedding-3-small', input: 'hello' });
    expect(res.status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-relay-limited-001', 'sk-relay-good-000002']);
    const rec = await call('GET', `/v1/requests/${res.headers.get('x-request-id')}`);
    expect(rec.body).toMatchObject({ key_id: good, key_attempts: [{ key_id: limited, outcome: 'rate_limited', status: 429 }] });
    expect((await call('POST', '/v1/embeddings', { model: 'llama-embed', input: 'hello' })).status).toBe(200);
    expect(llama.requests.map(keyOf)).toEqual(['sk-relay-llama-00003']);
    expect((await call('POST', '/v1/embeddings', { model: 'mistral-embed', input: 'hello' })).status).toBe(404);
    expect(fake.requests).toHaveLength(2);
    expect(llama.requests).toHaveLength(1);
  });

  it('5xx answers feed the circuit of their key (no failover); a key whose circuit is open is passed over for the next', async () => {
    const tight = await createTestApp({ LOG_LEVEL: 'warn', DATABASE_URL: app.env.DATABASE_URL, DATA_DIR: app.dataDir, CIRCUIT_FAILURE_THRESHOLD: '2', UPSTREAM_MAX_RETRIES: '0' });
    try {
      const org = await createOrg(tight);
      const failing = await (await tight.app.get(KeysService).create({ orgId: org.orgId, apiKey: 'sk-circuit-fail-0001', baseUrl: fake.url, priority: 1 }, cliActor())).id;
      await tight.app.get(KeysService).create({ orgId: org.orgId, apiKey: 'sk-circuit-good-0002', baseUrl: fake.url }, cliActor());
      fake.keyFaults.set('sk-circuit-fail-0001', { kind: 'status', status: 500 });
      const call = api(tight, org.token, 'circuit@example.com');
      expect((await ask(call)).status).toBe(502);
      expect((await ask(call)).status).toBe(502);
      expect(fake.requests.map(keyOf)).toEqual(['sk-circuit-fail-0001', 'sk-circuit-fail-0001']);
      const served = await ask(call);
      expect(served.status).toBe(200);
      expect(fake.requests.map(keyOf).slice(2)).toEqual(['sk-circuit-good-0002']);
      const rec = await call('GET', `/v1/requests/${served.headers.get('x-request-id')}`);
      expect(rec.body.key_attempts).toEqual([{ key_id: failing, outcome: 'error', status: null }]);
    } finally {
      await tight.close();
    }
  });

  it('a session stays on one key while it is healthy; sessions spread over the pool', async () => {
    const org = await createOrg(app);
    for (const n of ['1111', '2222', '3333']) await addKey(org.orgId, `sk-sticky-key-${n}`);
    const call = api(app, org.token, 'sticky@example.com');
    const session = `sticky-${randomUUID()}`;
    for (let i = 0; i < 6; i++) expect((await ask(call, 'gpt-4o-mini', { 'x-session-id': session })).status).toBe(200);
    const used = new Set(fake.requests.map(keyOf));
    expect(used.size).toBe(1);
    fake.requests.length = 0;
    for (let i = 0; i < 24; i++) expect((await ask(call, 'gpt-4o-mini', { 'x-session-id': `spread-${i}-${randomUUID()}` })).status).toBe(200);
    expect(new Set(fake.requests.map(keyOf)).size).toBe(3);

    // its key rate limited: the session moves, and comes back once the key has rested
    const [stuck] = [...used];
    fake.requests.length = 0;
    fake.keyFaults.set(stuck, { kind: 'status', status: 429, retryAfter: '1' });
    expect((await ask(call, 'gpt-4o-mini', { 'x-session-id': session })).status).toBe(200);
    fake.keyFaults.clear();
    const moved = keyOf(fake.requests.at(-1)!);
    expect(moved).not.toBe(stuck);
    expect((await ask(call, 'gpt-4o-mini', { 'x-session-id': session })).status).toBe(200);
    expect(keyOf(fake.requests.at(-1)!)).toBe(moved);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await ask(call, 'gpt-4o-mini', { 'x-session-id': session })).status).toBe(200);
    expect(keyOf(fake.requests.at(-1)!)).toBe(stuck);
  });

  it('weights share the calls of equal-priority keys; a higher priority takes them all', async () => {
    const org = await createOrg(app);
    const light = await addKey(org.orgId, 'sk-weight-light-0001', { weight: 1 });
    const heavy = await addKey(org.orgId, 'sk-weight-heavy-0003', { weight: 3 });
    const resolver = app.app.get(KeyResolver);
    const user = await createUser(app, org.orgId);
    const acting = { orgId: org.orgId, userId: user.id };
    const n = 4000;
    let heavyCount = 0;
    for (let i = 0; i < n; i++) if ((await resolver.resolve(acting, { model: 'gpt-4o', sessionId: `s${i}` })).keyId === heavy) heavyCount++;
    expect(heavyCount / n).toBeGreaterThan(0.72);
    expect(heavyCount / n).toBeLessThan(0.78);
    const top = await addKey(org.orgId, 'sk-weight-top-000009', { priority: 5 });
    for (let i = 0; i < 200; i++) expect((await resolver.resolve(acting, { model: 'gpt-4o', sessionId: `t${i}` })).keyId).toBe(top);
    expect(light).toBeTruthy();
  });

  it('routes by model to each key base URL; a model no key serves is 404 model_not_found without an upstream call', async () => {
    const org = await createOrg(app);
    await addKey(org.orgId, 'sk-route-openai-0001', { models: 'gpt-*,o3*' });
    await addKey(org.orgId, 'sk-route-llama-00002', { models: ['llama-*'], baseUrl: llama.url });
    const call = api(app, org.token, 'router@example.com');
    expect((await ask(call, 'gpt-4o-mini')).status).toBe(200);
    expect((await ask(call, 'o3-mini')).status).toBe(200);
    expect((await call('POST', '/v1/chat/completions', { model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-route-openai-0001', 'sk-route-openai-0001']);
    expect(llama.requests.map(keyOf)).toEqual(['sk-route-llama-00002']);

    const missing = await ask(call, 'mistral-large');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
    expect(fake.requests).toHaveLength(2);
    expect(llama.requests).toHaveLength(1);
  });

  it('GET /v1/models is the union of what the usable keys serve, each upstream asked once while its list is fresh', async () => {
    const org = await createOrg(app);
    await addKey(org.orgId, 'sk-models-openai-001', { models: 'gpt-4o*' });
    await addKey(org.orgId, 'sk-models-llama-0002', { baseUrl: llama.url });
    const refused = await addKey(org.orgId, 'sk-models-refused-03', { baseUrl: llama.url });
    await app.dataSource.query(`UPDATE api_keys SET state = 'invalid' WHERE id = $1`, [refused]);
    llama.models = [
      { id: 'llama-3.1-8b', object: 'model', created: 1, owned_by: 'local' },
      { id: 'llama-3.1-70b', object: 'model', created: 1, owned_by: 'local' },
    ];
    const call = api(app, org.token, 'models@example.com');
    const res = await call('GET', '/v1/models');
    expect(res.status).toBe(200);
    expect(res.body.object).toBe('list');
    expect(res.body.data.map((m: { id: string }) => m.id).sort()).toEqual(['gpt-4o', 'gpt-4o-mini', 'llama-3.1-70b', 'llama-3.1-8b']);
    // the invalid key is not asked
    expect(llama.requests.map(keyOf)).toEqual(['sk-models-llama-0002']);
    expect((await call('GET', '/v1/models')).status).toBe(200);
    expect(fake.requests).toHaveLength(1);
    expect(llama.requests).toHaveLength(1);
  });

  it("falls back from the user's pool to the organization's only when the organization turns it on", async () => {
    const org = await createOrg(app);
    const user = await createUser(app, org.orgId, `fallback-${randomUUID()}@example.com`);
    const own = await addKey(org.orgId, 'sk-fallback-user-0001', { userId: user.id, models: 'gpt-*' });
    const shared = await addKey(org.orgId, 'sk-fallback-org-00002', { baseUrl: llama.url });
    const call = api(app, org.token, user.external_id);

    // off (the default): the user's own key wins, and their pool alone serves them
    expect((await ask(call, 'gpt-4o-mini')).headers.get('x-key-source')).toBe('user');
    expect((await ask(call, 'llama-3.1-8b')).status).toBe(404);
    fake.keyFaults.set('sk-fallback-user-0001', { kind: 'status', status: 429, retryAfter: '30' });
    expect((await ask(call, 'gpt-4o-mini')).status).toBe(429);
    expect(llama.requests).toHaveLength(0);

    await keys().setFallback(org.orgId, true, cliActor());
    const llamaCall = await ask(call, 'llama-3.1-8b');
    expect(llamaCall.status).toBe(200);
    expect(llamaCall.headers.get('x-key-source')).toBe('organization');
    // the user's key rests: the organization's serves
    const served = await ask(call, 'gpt-4o-mini');
    expect(served.status).toBe(200);
    const rec = await call('GET', `/v1/requests/${served.headers.get('x-request-id')}`);
    expect(rec.body).toMatchObject({ key_id: shared, key_source: 'organization' });
    const events = await app.dataSource.query(`SELECT action, details FROM audit_events WHERE organization_id = $1 AND action = 'org.key_fallback'`, [org.orgId]);
    expect(events).toEqual([{ action: 'org.key_fallback', details: { from: false, to: true } }]);
    expect(own).toBeTruthy();
  });

  it('validates the pool options of key create', async () => {
    const org = await createOrg(app);
    await expect(keys().create({ orgId: org.orgId, apiKey: 'sk-bad-weight-000001', weight: 0 }, cliActor())).rejects.toThrow(/weight/);
    await expect(keys().create({ orgId: org.orgId, apiKey: 'sk-bad-models-000001', models: ' , ' }, cliActor())).rejects.toThrow(/models/);
    await expect(keys().create({ orgId: org.orgId, apiKey: 'sk-bad-models-000002', models: 'gpt 4' }, cliActor())).rejects.toThrow(/pattern/);
    const ok = await keys().create({ orgId: org.orgId, apiKey: 'sk-fine-models-00001', models: 'gpt-*, o3*', weight: 2, priority: -1 }, cliActor());
    expect(ok).toMatchObject({ models: ['gpt-*', 'o3*'], weight: 2, priority: -1, state: 'active' });
  });
});
