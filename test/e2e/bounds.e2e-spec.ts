import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { KeyResolver } from '../../src/keys/key-resolver';
import { KeysService } from '../../src/keys/keys.service';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { createKey } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, waitFor } from '../support/proxy-test-helpers';
import { cliEnvFor, runCli } from '../support/run-cli';

/** A port nothing listens on: an upstream that is down. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('bounds on what tenants and upstreams can make the proxy hold', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, KEY_CACHE_SIZE: '3', UPSTREAM_MAX_BODY: '64kb', BODY_LIMIT: '1mb' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  describe('exchange lists carry bodies only up to a bound', () => {
    it('a list omits a large body and names it; the single-record route has it whole', async () => {
      const o = await proxyOrg(app, fake.url);
      const large = 'x'.repeat(40 * 1024);
      const big = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: large }, { 'x-session-id': 'bounded-list' });
      expect(big.status).toBe(200);
      const small = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' }, { 'x-session-id': 'bounded-list' });
      expect(small.status).toBe(200);
      // incompressible: larger than the bound as stored too
      const random = randomBytes(30 * 1024).toString('base64');
      const noisy = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: random }, { 'x-session-id': 'bounded-list' });
      expect(noisy.status).toBe(200);
      const noisyId = noisy.headers.get('x-request-id')!;
      const bigId = big.headers.get('x-request-id')!;
      const smallId = small.headers.get('x-request-id')!;

      for (const path of ['/v1/requests?limit=100', '/v1/sessions/bounded-list?limit=100']) {
        const list = await o.call('GET', path);
        expect(list.status).toBe(200);
        const bigRow = list.body.data.find((e: any) => e.id === bigId);
        const smallRow = list.body.data.find((e: any) => e.id === smallId);
        expect(bigRow).toMatchObject({ request_body: null, response_body: null, output_text: null, status: 'completed' });
        expect(bigRow.omitted_fields.sort()).toEqual(['output_text', 'request_body', 'response_body']);
        expect(bigRow.usage.total_tokens).toBeGreaterThan(0);
        const noisyRow = list.body.data.find((e: any) => e.id === noisyId);
        expect(noisyRow.omitted_fields.sort()).toEqual(['output_text', 'request_body', 'response_body']);
        expect(smallRow.omitted_fields).toEqual([]);
        expect(smallRow.request_body).toEqual({ model: 'gpt-4o-mini', input: 'hi' });
        expect(smallRow.output_text).toBe('Echo: hi');
        expect(list.text.length).toBeLessThan(16 * 1024);
      }
      const whole = await o.call('GET', `/v1/requests/${bigId}`);
      expect(whole.body.request_body.input).toBe(large);
      expect(whole.body.output_text).toBe(`Echo: ${large}`);
      expect(whole.body.omitted_fields).toBeUndefined();
    });
  });

  describe('dates: one strict ISO-8601 reading on every route', () => {
    it.each([
      ['from=2026-02-30', 'from'],
      ['from=2025-02-29T00:00:00Z', 'from'],
      ['from=0000-01-01', 'from'],
      ['to=2026-06-05T24:00:00Z', 'to'],
      ['to=2026-06-05T12:00:60Z', 'to'],
      ['from=2026-06-05T10:00:00%2B15:00', 'from'],
      ['from=2026-06-05T10:00:00 01:00', 'from'],
      ['from=1700000000', 'from'],
      ['from=2026-06-05&from=2026-06-06', 'from'],
      ['from=2026-06-06T00:00:00Z&to=2026-06-05T00:00:00Z', 'from'],
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['limit=abc', 'limit'],
      ['persona_id=nope', 'persona_id'],
      ['model=a%00b', 'model'],
      ['unknown=1', 'unknown'],
    ])('GET /v1/requests?%s is a 400 naming %s', async (query, param) => {
      const o = await proxyOrg(app, fake.url);
      for (const path of [`/v1/requests?${query}`, ...(['from', 'to'].includes(param) ? [`/v1/analytics/usage?${query}`] : [])]) {
        const res = await o.call('GET', path);
        expect(res.status, `${path}: ${res.text}`).toBe(400);
        expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
      }
    });

    it('reads a time without a zone as UTC, whatever the server’s time zone', async () => {
      const o = await proxyOrg(app, fake.url);
      expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' })).status).toBe(200);
      const zoneless = (ms: number) => new Date(ms).toISOString().slice(0, 19);
      const tz = process.env.TZ;
      process.env.TZ = 'Pacific/Kiritimati'; // UTC+14: a local reading would move the window by 14 hours
      try {
        const within = await o.call('GET', `/v1/requests?from=${zoneless(Date.now() - 60_000)}&to=${zoneless(Date.now() + 60_000)}`);
        expect(within.status).toBe(200);
        expect(within.body.data).toHaveLength(1);
        const dateOnly = new Date().toISOString().slice(0, 10);
        const today = await o.call('GET', `/v1/requests?from=${dateOnly}`);
        expect(today.body.data).toHaveLength(1);
      } finally {
        if (tz === undefined) delete process.env.TZ;
        else process.env.TZ = tz;
      }
      // from = to is an empty range, not an error; offsets are honoured
      expect((await o.call('GET', '/v1/requests?from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z')).status).toBe(200);
      // the same instants written at +02:00
      const at2 = (ms: number) => `${new Date(ms + 2 * 3600_000).toISOString().slice(0, 19)}%2B02:00`;
      expect((await o.call('GET', `/v1/requests?from=${at2(Date.now() - 60_000)}&to=${at2(Date.now() + 60_000)}`)).body.data).toHaveLength(1);
      expect((await o.call('GET', `/v1/requests?to=${at2(Date.now() - 60_000)}`)).body.data).toHaveLength(0);
    });
  });

  describe('money is rounded to the precision of the price table', () => {
    it('a sum of costs reads 0.0000033, not 0.0000032999999999999997', async () => {
      const o = await proxyOrg(app, fake.url);
      // the fake upstream counts ceil(characters / 4) input tokens and 2 output tokens: 1 and 5 input tokens on
      // gpt-4o-mini cost 0.00000135 and 0.00000195, whose float sum is 0.0000032999999999999997
      for (const input of ['a', 'a'.repeat(20)]) expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input })).status).toBe(200);
      const costs = (await o.call('GET', '/v1/requests')).body.data.map((e: any) => e.cost).sort();
      expect(costs).toEqual([0.00000135, 0.00000195]);
      const usage = await o.call('GET', '/v1/analytics/usage?group_by=model');
      expect(usage.body.data).toEqual([expect.objectContaining({ key: 'gpt-4o-mini', source: 'proxy', requests: 2, cost: 0.0000033 })]);
      expect(usage.text).toContain('"cost":0.0000033,');
      const day = await o.call('GET', '/v1/analytics/usage');
      expect(day.body.data[0].cost).toBe(0.0000033);

      // the CLI prints the day's spending at the same precision (it printed $0.000003, cut to 6 decimals)
      await app.app.get(LimitsAdminService).setOrganizationLimits(o.orgId, { daily_budget_usd: 1 }, cliActor());
      const [prose, json] = await Promise.all([runCli(['org', 'show', o.orgId], cliEnvFor(app)), runCli(['org', 'show', o.orgId, '--json'], cliEnvFor(app))]);
      expect(prose.code, prose.stderr).toBe(0);
      expect(prose.stdout).toMatch(/daily budget:\s+\$1 \(\$0\.0000033 used today/);
      expect(json.json.usage.cost_today_usd).toBe(0.0000033);
    });
  });

  describe('upstream answers read by the proxy itself are bounded', () => {
    it('a models list larger than UPSTREAM_MAX_BODY is a 502, not read whole', async () => {
      const o = await proxyOrg(app, fake.url);
      const data = Array.from({ length: 2000 }, (_, i) => ({ id: `model-${i}-${'m'.repeat(40)}`, object: 'model', created: 0, owned_by: 'system' }));
      fake.enqueue({ kind: 'status', status: 200, body: { object: 'list', data } });
      const res = await o.call('GET', '/v1/models');
      expect(res.status).toBe(502);
      expect(res.body.error).toMatchObject({ type: 'upstream_error' });
      expect(res.body.error.message).toContain('UPSTREAM_MAX_BODY');
      // a list within the bound still passes
      expect((await o.call('GET', '/v1/models')).status).toBe(200);
    });

    it('an analysis answer larger than UPSTREAM_MAX_BODY is a 502, and nothing is stored', async () => {
      const o = await proxyOrg(app, fake.url);
      const call = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'My invoice is wrong' });
      const requestId = call.headers.get('x-request-id');
      fake.enqueue({ kind: 'huge', bytes: 100 * 1024 });
      const res = await o.call('POST', '/v1/analysis', { request_id: requestId, config: { analysis_type: 'sentiment' } });
      expect(res.status, res.text).toBe(502);
      expect(res.body.error.message).toContain('UPSTREAM_MAX_BODY');
      expect((await o.call('GET', `/v1/analysis/results?request_id=${requestId}`)).body.data).toEqual([]);
    });
  });

  describe('the key cache', () => {
    it('holds at most KEY_CACHE_SIZE entries and still follows key changes', async () => {
      const o = await proxyOrg(app, fake.url, 'sk-key-cache-first-0001');
      // a user's own keys are cached per (organization, user); the organization's once per organization
      const resolver = app.app.get(KeyResolver, { strict: false }) as unknown as { users: { size: number }; organizations: { size: number } };
      const users = Array.from({ length: 8 }, (_, i) => `cache-user-${i}-${o.orgId}`);
      const ask = (user: string) =>
        fetch(`${app.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${o.token}`, 'x-user-id': user, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi' }),
        });
      const internals = resolver as unknown as { loadUser: (...args: unknown[]) => Promise<unknown> };
      const load = internals.loadUser;
      let loads = 0;
      internals.loadUser = function (this: unknown, ...args: unknown[]) {
        loads++;
        return load.apply(this, args);
      };
      for (const user of users) expect((await ask(user)).status).toBe(200);
      expect(loads).toBe(8);
      // the most recent three are held; the first user was dropped and is read again
      for (const user of users.slice(5)) expect((await ask(user)).status).toBe(200);
      expect(loads).toBe(8);
      expect((await ask(users[0])).status).toBe(200);
      expect(loads).toBe(9);
      expect(resolver.users.size).toBeLessThanOrEqual(3);
      expect(resolver.organizations.size).toBeLessThanOrEqual(3);

      // a new organization key, the old one revoked: every user moves to it, cached or evicted
      const keys = app.app.get(KeysService);
      await createKey(app, o.orgId, 'sk-key-cache-second-0002', { baseUrl: fake.url });
      await keys.revoke(o.keyId, cliActor());
      const lastKeyOf = async (user: string) => {
        expect((await ask(user)).status).toBe(200);
        return fake.requests[fake.requests.length - 1].headers.authorization;
      };
      await waitFor(async () => (await lastKeyOf(users[7])) === 'Bearer sk-key-cache-second-0002', 8000, 'the new key');
      for (const user of users) expect(await lastKeyOf(user)).toBe('Bearer sk-key-cache-second-0002');
      expect(resolver.users.size).toBeLessThanOrEqual(3);
      expect(resolver.organizations.size).toBeLessThanOrEqual(3);
    });
  });

  describe('a dead upstream is explained in the log', () => {
    it('each failed attempt logs the host, the error code and the retry, never the key', async () => {
      const port = await deadPort();
      const o = await proxyOrg(app, `http://127.0.0.1:${port}/v1`, 'sk-dead-upstream-secret-0003');
      const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' });
      expect(res.status).toBe(502);
      const requestId = res.headers.get('x-request-id');
      const lines = app.logs.map((l) => JSON.parse(l)).filter((l) => l.request_id === requestId && l.msg === 'upstream call failed');
      expect(lines.map((l) => l.retry)).toEqual([0, 1, 2]);
      for (const line of lines) {
        expect(line).toMatchObject({ level: 'warn', host: `127.0.0.1:${port}`, code: 'ECONNREFUSED', method: 'POST', path: '/responses' });
      }
      expect(app.logs.join('\n')).not.toContain('sk-dead-upstream-secret');
    });
  });
});
