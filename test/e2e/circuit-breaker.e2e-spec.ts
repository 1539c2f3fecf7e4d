import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, waitFor } from '../support/proxy-test-helpers';

describe('circuit breaker per upstream and key', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({
      OPENAI_BASE_URL: fake.url,
      CIRCUIT_FAILURE_THRESHOLD: '3',
      CIRCUIT_COOLDOWN_MS: '1500',
      UPSTREAM_MAX_RETRIES: '0',
    });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  const ask = (org: Awaited<ReturnType<typeof proxyOrg>>) => org.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' });
  const upstreamCallsWith = (key: string) => fake.requests.filter((r) => r.headers.authorization === `Bearer ${key}`).length;

  it('opens after consecutive failures, answers 503 without calling upstream, spares other keys, probes after the cool-down', async () => {
    const a = await proxyOrg(app, fake.url, 'sk-circuit-org-a-0001');
    const b = await proxyOrg(app, fake.url, 'sk-circuit-org-b-0002');
    for (let i = 0; i < 3; i++) {
      fake.enqueue({ kind: 'status', status: 500 });
      expect((await ask(a)).status).toBe(502);
    }
    expect(upstreamCallsWith('sk-circuit-org-a-0001')).toBe(3);

    const refused = await ask(a);
    expect(refused.status).toBe(503);
    expect(refused.body.error).toMatchObject({ type: 'service_unavailable', code: 'circuit_open' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(upstreamCallsWith('sk-circuit-org-a-0001')).toBe(3);
    // the refused call is stored too, under its request id
    const stored = await a.call('GET', `/v1/requests/${refused.headers.get('x-request-id')}`);
    expect(stored.status).toBe(200);
    expect(stored.body).toMatchObject({ status: 'upstream_error', upstream_status: null });

    // another organization's key on the same upstream is unaffected
    expect((await ask(b)).status).toBe(200);

    // after the cool-down one probe goes through; a failing probe re-opens at once
    await new Promise((r) => setTimeout(r, 1600));
    fake.enqueue({ kind: 'status', status: 503 });
    expect((await ask(a)).status).toBe(502);
    expect((await ask(a)).status).toBe(503);
    expect(upstreamCallsWith('sk-circuit-org-a-0001')).toBe(4);

    // a successful probe closes the circuit
    await new Promise((r) => setTimeout(r, 1600));
    expect((await ask(a)).status).toBe(200);
    expect((await ask(a)).status).toBe(200);
    expect(upstreamCallsWith('sk-circuit-org-a-0001')).toBe(6);
  });

  it('client errors (4xx) do not count as upstream failures', async () => {
    const c = await proxyOrg(app, fake.url, 'sk-circuit-org-c-0003');
    for (let i = 0; i < 5; i++) {
      fake.enqueue({ kind: 'status', status: 400 });
      expect((await ask(c)).status).toBe(400);
    }
    expect((await ask(c)).status).toBe(200);
  });

  it('a call the client abandons is neutral: it neither closes the circuit nor resets its failure count', async () => {
    const d = await proxyOrg(app, fake.url, 'sk-circuit-org-d-0004');
    const abandon = async () => {
      const before = upstreamCallsWith('sk-circuit-org-d-0004');
      const abortedBefore = (await d.call('GET', '/v1/requests?limit=100')).body.data.filter((e: any) => e.status === 'client_aborted').length;
      fake.enqueue({ kind: 'delay', ms: 10_000 });
      const controller = new AbortController();
      const call = fetch(`${app.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${d.token}`, 'x-user-id': d.userId, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi' }),
        signal: controller.signal,
      }).catch(() => undefined);
      // abandoned once the upstream has it, before its answer
      await waitFor(() => upstreamCallsWith('sk-circuit-org-d-0004') > before, 5000, 'the call to reach upstream');
      controller.abort();
      await call;
      const aborted = async () => (await d.call('GET', '/v1/requests?limit=100')).body.data.filter((e: any) => e.status === 'client_aborted').length;
      await waitFor(async () => (await aborted()) > abortedBefore, 8000, 'the abandoned call to be recorded');
    };
    // two failures, then abandoned calls, then a third failure: the threshold (3) is reached and the circuit opens
    for (let i = 0; i < 2; i++) {
      fake.enqueue({ kind: 'status', status: 500 });
      expect((await ask(d)).status).toBe(502);
    }
    await abandon();
    await abandon();
    fake.enqueue({ kind: 'status', status: 500 });
    expect((await ask(d)).status).toBe(502);
    const refused = await ask(d);
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('circuit_open');

    // after the cool-down, an abandoned probe does not close the circuit: the next call is the probe, and its
    // failure re-opens it at once
    await new Promise((r) => setTimeout(r, 1600));
    await abandon();
    fake.enqueue({ kind: 'status', status: 500 });
    expect((await ask(d)).status).toBe(502);
    expect((await ask(d)).status).toBe(503);
  });
});
