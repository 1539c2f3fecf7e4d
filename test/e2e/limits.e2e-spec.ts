import { randomUUID } from 'node:crypto';
import { createServer, Server, Socket, connect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { estimateCall } from '../../src/limits/call-estimate';
import { LimitCountersService } from '../../src/limits/limit-counters.service';
import type { LimitPatch } from '../../src/limits/limit-definitions';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { LimitsService } from '../../src/limits/limits.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const BODY = { model: 'gpt-4o-mini', input: 'Say hello to the limits test' };
const MINUTE = 60_000;
const DAY = 86_400_000;

/** The middle of the current minute: every call of a test lands in one window, whatever the wall clock does. */
const midMinute = () => Math.floor(Date.now() / MINUTE) * MINUTE + 30_000;

const limitsOf = (app: TestApp) => app.app.get(LimitsService);
const adminOf = (app: TestApp) => app.app.get(LimitsAdminService);

/** A fresh organization with its own upstream key (so upstream calls can be counted per test) and its user's internal id. */
async function org(app: TestApp, fake: FakeUpstream): Promise<ProxyTestOrg & { apiKey: string; internalUserId: string }> {
  const apiKey = `sk-limits-${randomUUID()}`;
  const o = await proxyOrg(app, fake.url, apiKey);
  const user = await createUser(app, o.orgId, o.userId);
  return { ...o, apiKey, internalUserId: user.id };
}

const upstreamCalls = (fake: FakeUpstream, apiKey: string) =>
  fake.requests.filter((r) => r.path.endsWith('/responses') && r.headers.authorization === `Bearer ${apiKey}`).length;

function expect429(res: { status: number; headers: Headers; body: any }, code: 'rate_limit_exceeded' | 'budget_exceeded'): void {
  expect(res.status).toBe(429);
  expect(res.body.error).toMatchObject({ type: 'rate_limit_error', code });
  expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
}

describe('limits and budgets', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let now: number;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn', DB_POOL_SIZE: '4' });
    now = midMinute();
    limitsOf(app).clock = () => now;
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  /** A second server process on the same database (the first one's embedded database when no DATABASE_URL is set). */
  const secondServer = (env: NodeJS.ProcessEnv = {}) =>
    createTestApp({
      OPENAI_BASE_URL: fake.url,
      LOG_LEVEL: 'warn',
      DATABASE_URL: process.env.DATABASE_URL ?? app.db.url,
      DB_POOL_SIZE: '2',
      ...env,
    });

  const scopes = ['organization', 'user'] as const;
  const kinds: [string, LimitPatch, 'rate_limit_exceeded' | 'budget_exceeded'][] = [
    ['requests per minute', { rpm: 1 }, 'rate_limit_exceeded'],
    ['tokens per minute', { tpm: 1 }, 'rate_limit_exceeded'],
    ['daily budget', { daily_budget_usd: 1e-9 }, 'budget_exceeded'],
    ['monthly budget', { monthly_budget_usd: 1e-9 }, 'budget_exceeded'],
  ];
  for (const scope of scopes) {
    for (const [kind, patch, code] of kinds) {
      it(`${kind} of the ${scope}: the call over it is refused before upstream; others are not affected`, async () => {
        const o = await org(app, fake);
        if (scope === 'organization') await adminOf(app).setOrganizationLimits(o.orgId, patch, cliActor());
        else await adminOf(app).setUserLimits(o.internalUserId, patch, cliActor());

        expect((await o.call('POST', '/v1/responses', BODY)).status).toBe(200);
        const refused = await o.call('POST', '/v1/responses', BODY);
        expect429(refused, code);
        expect(refused.body.error.message).toContain(scope === 'organization' ? "organization's" : "user's");
        expect(upstreamCalls(fake, o.apiKey)).toBe(1);

        // another user of the organization is refused only by an organization limit
        const other = await api(app, o.token, `other-${randomUUID()}`)('POST', '/v1/responses', BODY);
        if (scope === 'organization') expect429(other, code);
        else expect(other.status).toBe(200);
      });
    }
  }

  it('the stricter of the organization and user limits applies, and the headers report it', async () => {
    const o = await org(app, fake);
    await adminOf(app).setOrganizationLimits(o.orgId, { rpm: 5 }, cliActor());
    await adminOf(app).setUserLimits(o.internalUserId, { rpm: 2 }, cliActor());
    const first = await o.call('POST', '/v1/responses', BODY);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect((await o.call('POST', '/v1/responses', BODY)).status).toBe(200);
    const third = await o.call('POST', '/v1/responses', BODY);
    expect429(third, 'rate_limit_exceeded');
    expect(third.body.error.message).toContain("user's limit of 2 requests per minute");
    expect(third.headers.get('x-ratelimit-remaining-requests')).toBe('0');

    // a stricter organization limit wins over a looser user limit
    const p = await org(app, fake);
    await adminOf(app).setOrganizationLimits(p.orgId, { rpm: 1 }, cliActor());
    await adminOf(app).setUserLimits(p.internalUserId, { rpm: 10 }, cliActor());
    expect((await p.call('POST', '/v1/responses', BODY)).headers.get('x-ratelimit-limit-requests')).toBe('1');
    const refused = await p.call('POST', '/v1/responses', BODY);
    expect429(refused, 'rate_limit_exceeded');
    expect(refused.body.error.message).toContain("organization's limit of 1 requests per minute");
  });

  it('an organization id typed in capitals sets the same limits the running server enforces', async () => {
    const o = await org(app, fake);
    // the server has already cached "no limits" for the organization
    expect((await o.call('POST', '/v1/responses', BODY)).status).toBe(200);
    const view = await adminOf(app).setOrganizationLimits(o.orgId.toUpperCase(), { rpm: 1 }, cliActor());
    expect(view.id).toBe(o.orgId);
    expect((await o.call('GET', '/v1/limits')).body.organization.limits.rpm).toBe(1);
    expect((await o.call('POST', '/v1/responses', BODY)).status).toBe(200);
    expect429(await o.call('POST', '/v1/responses', BODY), 'rate_limit_exceeded');
  });

  it("X-RateLimit-* headers: present when a rate limit applies, OpenAI's names and formats; absent otherwise", async () => {
    const free = await org(app, fake);
    const plain = await free.call('POST', '/v1/responses', BODY);
    expect(plain.status).toBe(200);
    expect([...plain.headers.keys()].filter((h) => h.startsWith('x-ratelimit'))).toEqual([]);

    const o = await org(app, fake);
    await adminOf(app).setOrganizationLimits(o.orgId, { rpm: 3, tpm: 100_000 }, cliActor());
    const first = await o.call('POST', '/v1/responses', BODY);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('3');
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('2');
    expect(first.headers.get('x-ratelimit-reset-requests')).toBe('30s');
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBe('100000');
    // what remains once this call's estimate is reserved (OpenAI counts a call's own reservation the same way)
    const estimate = estimateCall({ model: BODY.model, body: BODY });
    expect(first.headers.get('x-ratelimit-remaining-tokens')).toBe(String(100_000 - estimate.input - estimate.output));
    expect(first.headers.get('x-ratelimit-reset-tokens')).toBe('30s');
    const used = (await o.call('GET', `/v1/requests/${first.headers.get('x-request-id')}`)).body.usage.total_tokens;
    expect(used).toBeGreaterThan(0);

    const second = await o.client.responses.create(BODY).withResponse();
    expect(second.response.headers.get('x-ratelimit-remaining-requests')).toBe('1');
    expect(second.response.headers.get('x-ratelimit-remaining-tokens')).toBe(String(100_000 - used - estimate.input - estimate.output));
  });

  it('GET /v1/limits: the acting user and organization, their limits and consumption', async () => {
    const o = await org(app, fake);
    await adminOf(app).setOrganizationLimits(o.orgId, { rpm: 10, daily_budget_usd: 5 }, cliActor());
    await adminOf(app).setUserLimits(o.internalUserId, { tpm: 1000, monthly_budget_usd: 50 }, cliActor());
    const before = await o.call('GET', '/v1/limits');
    expect(before.status).toBe(200);
    expect(before.body.organization.usage).toEqual({ requests_this_minute: 0, tokens_this_minute: null, cost_today_usd: 0, cost_this_month_usd: null });

    const call = await o.call('POST', '/v1/responses', BODY);
    const row = (await o.call('GET', `/v1/requests/${call.headers.get('x-request-id')}`)).body;
    expect(row.cost).toBeGreaterThan(0);
    const res = await o.call('GET', '/v1/limits');
    expect(res.status).toBe(200);
    const minuteEnd = new Date(Math.floor(now / MINUTE) * MINUTE + MINUTE).toISOString();
    expect(res.body).toEqual({
      object: 'limits',
      organization: {
        id: o.orgId,
        limits: { rpm: 10, tpm: null, daily_budget_usd: 5, monthly_budget_usd: null },
        usage: { requests_this_minute: 1, tokens_this_minute: null, cost_today_usd: expect.closeTo(row.cost, 12), cost_this_month_usd: null },
        resets_at: { minute: minuteEnd, day: expect.any(String), month: expect.any(String) },
      },
      user: {
        id: o.internalUserId,
        external_id: o.userId,
        limits: { rpm: null, tpm: 1000, daily_budget_usd: null, monthly_budget_usd: 50 },
        usage: {
          requests_this_minute: null,
          tokens_this_minute: row.usage.total_tokens,
          cost_today_usd: null,
          cost_this_month_usd: expect.closeTo(row.cost, 12),
        },
        resets_at: { minute: minuteEnd, day: expect.any(String), month: expect.any(String) },
      },
    });
    expect(new Date(res.body.user.resets_at.day).getTime() % DAY).toBe(0);
    expect(new Date(res.body.user.resets_at.month).getUTCDate()).toBe(1);
    expect((await fetch(`${app.url}/v1/limits`)).status).toBe(401);
  });

  it('a new window starts afresh: the minute for rates, the UTC day for the daily budget', async () => {
    const rate = await org(app, fake);
    const budget = await org(app, fake);
    await adminOf(app).setOrganizationLimits(rate.orgId, { rpm: 1 }, cliActor());
    await adminOf(app).setUserLimits(budget.internalUserId, { daily_budget_usd: 1e-9 }, cliActor());
    try {
      for (const o of [rate, budget]) expect((await o.call('POST', '/v1/responses', BODY)).status).toBe(200);
      expect429(await rate.call('POST', '/v1/responses', BODY), 'rate_limit_exceeded');
      expect429(await budget.call('POST', '/v1/responses', BODY), 'budget_exceeded');

      limitsOf(app).clock = () => now + MINUTE;
      expect((await rate.call('POST', '/v1/responses', BODY)).status).toBe(200);
      expect429(await rate.call('POST', '/v1/responses', BODY), 'rate_limit_exceeded');
      // the next minute is still the same day
      expect429(await budget.call('POST', '/v1/responses', BODY), 'budget_exceeded');

      limitsOf(app).clock = () => now + DAY;
      expect((await budget.call('POST', '/v1/responses', BODY)).status).toBe(200);
      expect429(await budget.call('POST', '/v1/responses', BODY), 'budget_exceeded');
      expect(upstreamCalls(fake, rate.apiKey)).toBe(2);
      expect(upstreamCalls(fake, budget.apiKey)).toBe(2);
    } finally {
      limitsOf(app).clock = () => now;
    }
  });

  it('a budget crossed during a stream: the stream finishes, the next call is refused; a new budget counts what was already spent', async () => {
    const o = await org(app, fake);
    const first = await o.call('POST', '/v1/responses', BODY);
    const spent = (await o.call('GET', `/v1/requests/${first.headers.get('x-request-id')}`)).body.cost;
    expect(spent).toBeGreaterThan(0);

    await adminOf(app).setOrganizationLimits(o.orgId, { daily_budget_usd: spent * 1.0001 }, cliActor());
    expect((await o.call('GET', '/v1/limits')).body.organization.usage.cost_today_usd).toBeCloseTo(spent, 12);

    fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 20 });
    const stream = await o.call('POST', '/v1/responses', { ...BODY, stream: true });
    expect(stream.status).toBe(200);
    const events = parseSse(stream.text);
    expect(events.at(-1)?.event).toBe('response.completed');
    const row = (await o.call('GET', `/v1/requests/${stream.headers.get('x-request-id')}`)).body;
    expect(row.status).toBe('completed');

    const next = await o.call('POST', '/v1/responses', BODY);
    expect429(next, 'budget_exceeded');
    expect(next.body.error.message).toMatch(/daily budget/);
    const usage = (await o.call('GET', '/v1/limits')).body.organization.usage;
    expect(usage.cost_today_usd).toBeCloseTo(spent + row.cost, 12);
    expect(upstreamCalls(fake, o.apiKey)).toBe(2);
  });

  it('analysis calls spend the same budget: their recorded cost counts, and a spent budget refuses them too', async () => {
    const o = await org(app, fake);
    const ex = await o.call('POST', '/v1/responses', BODY);
    const spent = (await o.call('GET', `/v1/requests/${ex.headers.get('x-request-id')}`)).body.cost;
    await adminOf(app).setUserLimits(o.internalUserId, { daily_budget_usd: spent * 1.0001 }, cliActor());

    const analysis = await o.call('POST', '/v1/analysis', { request_id: ex.headers.get('x-request-id'), config: { analysis_type: 'sentiment' } });
    expect(analysis.status).toBe(200);
    expect(analysis.body.cost).toBeGreaterThan(0);
    expect((await o.call('GET', '/v1/limits')).body.user.usage.cost_today_usd).toBeCloseTo(spent + analysis.body.cost, 12);

    expect429(await o.call('POST', '/v1/responses', BODY), 'budget_exceeded');
    const refused = await o.call('POST', '/v1/analysis', { request_id: ex.headers.get('x-request-id'), config: { analysis_type: 'urgency' } });
    expect429(refused, 'budget_exceeded');
  });

  it('concurrent calls never pass the request limit (PostgreSQL counters)', async () => {
    const o = await org(app, fake);
    await adminOf(app).setOrganizationLimits(o.orgId, { rpm: 4 }, cliActor());
    const results = await Promise.all(Array.from({ length: 12 }, () => o.call('POST', '/v1/responses', BODY)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(4);
    expect(results.filter((r) => r.status === 429)).toHaveLength(8);
    expect(upstreamCalls(fake, o.apiKey)).toBe(4);
  });

  it('two server processes share one counter through PostgreSQL', async () => {
    const second = await secondServer();
    try {
      limitsOf(second).clock = () => now;
      const o = await org(app, fake);
      await adminOf(app).setOrganizationLimits(o.orgId, { rpm: 4 }, cliActor());
      const servers = [app, second];
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          fetch(`${servers[i % 2].url}/v1/responses`, {
            method: 'POST',
            headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
            body: JSON.stringify(BODY),
          }).then(async (r) => ({ status: r.status, server: i % 2, text: await r.text() })),
        ),
      );
      expect(results.filter((r) => r.status === 200)).toHaveLength(4);
      expect(results.filter((r) => r.status === 429)).toHaveLength(6);
      expect(upstreamCalls(fake, o.apiKey)).toBe(4);
      const rows = await app.dataSource.query(`SELECT value FROM limit_counters WHERE key LIKE $1`, [`%:o:${o.orgId}:rpm:%`]);
      expect(rows.map((r: { value: number }) => Number(r.value))).toEqual([4]);
    } finally {
      await second.close();
    }
  });

  it('two server processes share one counter through Redis (nothing counted in PostgreSQL)', async () => {
    const prefix = `test-${randomUUID()}:`;
    const redis = new Redis(REDIS_URL, { lazyConnect: true });
    await redis.connect();
    const a = await secondServer({ REDIS_URL, REDIS_KEY_PREFIX: prefix });
    const b = await secondServer({ REDIS_URL, REDIS_KEY_PREFIX: prefix });
    try {
      for (const s of [a, b]) {
        limitsOf(s).clock = () => now;
        expect(s.app.get(LimitCountersService).current).toBe('redis');
      }
      const o = await org(a, fake);
      await adminOf(a).setOrganizationLimits(o.orgId, { rpm: 3, tpm: 1_000_000 }, cliActor());
      const results = await Promise.all(
        Array.from({ length: 9 }, (_, i) =>
          fetch(`${[a, b][i % 2].url}/v1/responses`, {
            method: 'POST',
            headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
            body: JSON.stringify(BODY),
          }).then((r) => r.status),
        ),
      );
      expect(results.filter((s) => s === 200)).toHaveLength(3);
      expect(results.filter((s) => s === 429)).toHaveLength(6);
      const keys = await redis.keys(`${prefix}limit:o:${o.orgId}:*`);
      expect(keys.sort()).toEqual([expect.stringContaining(':rpm:'), expect.stringContaining(':tpm:')]);
      expect(await redis.get(keys.find((k) => k.includes(':rpm:'))!)).toBe('3');
      expect(await app.dataSource.query(`SELECT key FROM limit_counters WHERE key LIKE $1`, [`${prefix}%`])).toEqual([]);
    } finally {
      await Promise.all([a.close(), b.close()]);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it('Redis going away: limits keep being enforced, on PostgreSQL', async () => {
    // a TCP relay in front of Redis that the test can cut
    const sockets = new Set<Socket>();
    const relay: Server = createServer((client) => {
      const upstream = connect(6379, '127.0.0.1');
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const port = (relay.address() as { port: number }).port;
    const prefix = `test-${randomUUID()}:`;
    const s = await secondServer({ REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_KEY_PREFIX: prefix });
    try {
      limitsOf(s).clock = () => now;
      const counters = s.app.get(LimitCountersService);
      expect(counters.current).toBe('redis');
      const o = await org(s, fake);
      await adminOf(s).setOrganizationLimits(o.orgId, { rpm: 3 }, cliActor());
      const call = () =>
        fetch(`${s.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
          body: JSON.stringify(BODY),
        });
      expect((await call()).status).toBe(200);

      relay.close();
      for (const sock of sockets) sock.destroy();
      await waitFor(() => counters.current === 'postgres', 5000, 'the switch to PostgreSQL');

      // the minute starts afresh in PostgreSQL: three more calls, then the limit holds again
      expect((await Promise.all([call(), call(), call()])).map((r) => r.status)).toEqual([200, 200, 200]);
      const refused = await call();
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as any).error.code).toBe('rate_limit_exceeded');
      const rows = await s.dataSource.query(`SELECT value FROM limit_counters WHERE key LIKE $1`, [`${prefix}limit:o:${o.orgId}:rpm:%`]);
      expect(rows.map((r: { value: number }) => Number(r.value))).toEqual([3]);
      expect(s.logs.some((l) => l.includes('"level":"warn"') && l.includes('limit counters use PostgreSQL'))).toBe(true);
      expect((await o.call('GET', '/v1/limits')).status).toBe(200);
    } finally {
      await s.close();
      relay.close();
    }
  });
});
