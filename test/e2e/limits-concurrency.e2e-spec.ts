import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { LimitCountersService } from '../../src/limits/limit-counters.service';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { LimitsService } from '../../src/limits/limits.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, ProxyTestOrg } from '../support/proxy-test-helpers';

const REDIS_URL = process.env.REDIS_TEST_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MINUTE = 60_000;
const BODY = { model: 'gpt-4o-mini', input: 'Say hello to the limits test' };

/** The middle of the current minute: every call of a test lands in one window, whatever the wall clock does. */
const midMinute = () => Math.floor(Date.now() / MINUTE) * MINUTE + 30_000;

type Result = { status: number; body: any; headers: Headers };

async function org(app: TestApp, upstreamUrl: string): Promise<ProxyTestOrg & { internalUserId: string }> {
  const o = await proxyOrg(app, upstreamUrl, `sk-limits-${randomUUID()}`);
  const user = await createUser(app, o.orgId, o.userId);
  return { ...o, internalUserId: user.id };
}

/** The recorded usage of the admitted calls, and the organization's counters once every call is settled. */
async function admittedUsage(o: ProxyTestOrg, results: Result[]): Promise<{ tokens: number[]; costs: number[] }> {
  const rows = await Promise.all(
    results.filter((r) => r.status === 200).map(async (r) => (await o.call('GET', `/v1/requests/${r.headers.get('x-request-id')}`)).body),
  );
  return { tokens: rows.map((r) => r.usage.total_tokens), costs: rows.map((r) => r.cost) };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe.each([
  ['PostgreSQL', false],
  ['Redis', true],
])('limits under concurrency, counters in %s', (_store, withRedis) => {
  let fake: FakeUpstream;
  let app: TestApp;
  const prefix = `test-${randomUUID()}:`;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({
      OPENAI_BASE_URL: fake.url,
      LOG_LEVEL: 'warn',
      ...(withRedis ? { REDIS_URL, REDIS_KEY_PREFIX: prefix } : {}),
    });
    expect(app.app.get(LimitCountersService).current).toBe(withRedis ? 'redis' : 'postgres');
    const now = midMinute();
    app.app.get(LimitsService).clock = () => now;
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
    if (withRedis) {
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it("a user's refused calls do not spend the organization's requests", async () => {
    const o = await org(app, fake.url);
    const limits = app.app.get(LimitsAdminService);
    await limits.setOrganizationLimits(o.orgId, { rpm: 40 }, cliActor());
    await limits.setUserLimits(o.internalUserId, { rpm: 10 }, cliActor());
    // 30 calls of the limited user and 20 of other users, interleaved and all at once
    const calls: { mine: boolean; run: () => Promise<Result> }[] = [];
    for (let i = 0; i < 50; i++) {
      const mine = i % 5 !== 0 && calls.filter((c) => c.mine).length < 30;
      const call = mine ? o.call : api(app, o.token, `other-${i}-${randomUUID()}`);
      calls.push({ mine, run: () => call('POST', '/v1/responses', BODY) });
    }
    expect(calls.filter((c) => c.mine)).toHaveLength(30);
    const results = await Promise.all(calls.map(async (c) => ({ mine: c.mine, res: await c.run() })));

    const others = results.filter((r) => !r.mine).map((r) => r.res);
    expect(others.map((r) => r.status)).toEqual(Array(20).fill(200));
    const mine = results.filter((r) => r.mine).map((r) => r.res);
    expect(mine.filter((r) => r.status === 200)).toHaveLength(10);
    const refused = mine.filter((r) => r.status !== 200);
    expect(refused).toHaveLength(20);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.body.error.message).toContain("user's limit of 10 requests per minute");
    }
    const usage = (await o.call('GET', '/v1/limits')).body;
    expect(usage.organization.usage.requests_this_minute).toBe(30);
    expect(usage.user.usage.requests_this_minute).toBe(10);
  });

  it("the same through the service: the user's admissions queued first, the others' right behind them", async () => {
    const o = await org(app, fake.url);
    const limits = app.app.get(LimitsService);
    const admin = app.app.get(LimitsAdminService);
    await admin.setOrganizationLimits(o.orgId, { rpm: 40 }, cliActor());
    await admin.setUserLimits(o.internalUserId, { rpm: 10 }, cliActor());
    const admit = (userId: string) =>
      limits.admit({ orgId: o.orgId, userId }, { model: BODY.model, body: BODY }).then(
        async (admission) => {
          await limits.settle(admission, null);
          return 'admitted';
        },
        (err: { message: string }) => err.message,
      );
    const mine = Array.from({ length: 30 }, () => admit(o.internalUserId));
    const others = Array.from({ length: 20 }, () => admit(randomUUID()));
    const [m, x] = [await Promise.all(mine), await Promise.all(others)];
    expect(x).toEqual(Array(20).fill('admitted'));
    expect(m.filter((r) => r === 'admitted')).toHaveLength(10);
    expect(m.filter((r) => r.includes("user's limit of 10 requests per minute"))).toHaveLength(20);
    const usage = (await o.call('GET', '/v1/limits')).body;
    expect(usage.organization.usage.requests_this_minute).toBe(30);
    expect(usage.user.usage.requests_this_minute).toBe(10);
  });

  it('50 concurrent calls stay within the token limit and the budget, up to one call', async () => {
    const limits = app.app.get(LimitsAdminService);
    const pricing = { 'gpt-4o': { input: 2.5, output: 10 } };
    const tokenOrg = await org(app, fake.url);
    const budgetOrg = await org(app, fake.url);
    await limits.setOrganizationLimits(tokenOrg.orgId, { tpm: 100 }, cliActor());
    const budget = 0.0003;
    await limits.setOrganizationLimits(budgetOrg.orgId, { daily_budget_usd: budget }, cliActor());
    // every call is in flight at once: none is settled before the last one is admitted
    fake.setDefaultFault({ kind: 'delay', ms: 300 });
    try {
      const body = { ...BODY, max_output_tokens: 16 };
      const [byTokens, byBudget] = await Promise.all([
        Promise.all(Array.from({ length: 50 }, () => tokenOrg.call('POST', '/v1/responses', body))),
        Promise.all(Array.from({ length: 50 }, () => budgetOrg.call('POST', '/v1/responses', { ...body, model: 'gpt-4o' }))),
      ]);
      for (const results of [byTokens, byBudget]) {
        expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(0);
        for (const r of results.filter((x) => x.status !== 200)) expect(r.status).toBe(429);
      }

      // the documented bound: the limit, plus the last admitted call (every estimate here covers its call)
      const t = await admittedUsage(tokenOrg, byTokens);
      expect(sum(t.tokens)).toBeLessThanOrEqual(100 + Math.max(...t.tokens));
      const b = await admittedUsage(budgetOrg, byBudget);
      expect(Math.max(...b.costs)).toBeCloseTo((7 * pricing['gpt-4o'].input + 7 * pricing['gpt-4o'].output) / 1e6, 12);
      expect(sum(b.costs)).toBeLessThanOrEqual(budget + Math.max(...b.costs));

      // settled: the reservations are gone, the counters hold exactly what the admitted calls used
      expect((await tokenOrg.call('GET', '/v1/limits')).body.organization.usage.tokens_this_minute).toBe(sum(t.tokens));
      expect((await budgetOrg.call('GET', '/v1/limits')).body.organization.usage.cost_today_usd).toBeCloseTo(sum(b.costs), 12);
    } finally {
      fake.setDefaultFault(undefined);
    }
  });

  it('a call that fails before reaching upstream releases its reservation', async () => {
    // a port nothing listens on
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as { port: number }).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const o = await org(app, `http://127.0.0.1:${port}/v1`);
    const limits = app.app.get(LimitsAdminService);
    await limits.setUserLimits(o.internalUserId, { tpm: 100_000, daily_budget_usd: 5 }, cliActor());

    const failed = await o.call('POST', '/v1/responses', BODY);
    expect(failed.status).toBe(502);
    const usage = (await o.call('GET', '/v1/limits')).body.user.usage;
    expect(usage.tokens_this_minute).toBe(0);
    expect(usage.cost_today_usd).toBe(0);
  });

  it('a call refused by upstream releases its reservation; a later success counts only what it used', async () => {
    const o = await org(app, fake.url);
    await app.app.get(LimitsAdminService).setUserLimits(o.internalUserId, { tpm: 100_000 }, cliActor());
    fake.enqueue({ kind: 'status', status: 400 });
    expect((await o.call('POST', '/v1/responses', BODY)).status).toBe(400);
    expect((await o.call('GET', '/v1/limits')).body.user.usage.tokens_this_minute).toBe(0);

    const ok = await o.call('POST', '/v1/responses', BODY);
    expect(ok.status).toBe(200);
    // the header counts this call's reservation; the counter afterwards only what it used
    expect(Number(ok.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThan(100_000);
    const used = (await o.call('GET', `/v1/requests/${ok.headers.get('x-request-id')}`)).body.usage.total_tokens;
    expect((await o.call('GET', '/v1/limits')).body.user.usage.tokens_this_minute).toBe(used);
  });
});
