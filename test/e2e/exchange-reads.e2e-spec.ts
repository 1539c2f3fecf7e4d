import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

/**
 * Every reader of the exchanges table waits for the records written after their answers, not only the
 * exchange routes: the usage report and the budget a new limit starts from count a call answered a moment ago.
 */
describe.skipIf(!process.env.DATABASE_URL)('reads of exchanges right after an answer recorded later (RECORD_WRITE=after_answer)', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ RECORD_WRITE: 'after_answer' });
    // the recorder's first write sets up its connection: done here, so the held write below is the call's record
    const warm = await proxyOrg(app, fake.url);
    const answer = await warm.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'warm-up' });
    expect((await warm.call('GET', `/v1/requests/${answer.headers.get('x-request-id')}`)).status).toBe(200);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  /** Runs `read` after a call answered while every write to exchanges is held, and lets the writes go a moment later. */
  async function readAfterHeldCall<T>(o: ProxyTestOrg, read: () => Promise<T>): Promise<{ requestId: string; result: T; settledWhileHeld: boolean }> {
    // SHARE blocks INSERT/UPDATE on exchanges, not SELECT
    const blocker = new Client({ connectionString: app.db.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE exchanges IN SHARE MODE');
      const answer = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'held' });
      expect(answer.status).toBe(200);
      // the record's write is under way (waiting for the lock) before the read starts
      await waitFor(
        async () => (await blocker.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%exchanges%'`)).rowCount! > 0,
        8000,
        'the held write to exchanges',
      );
      const pending = read();
      let settled = false;
      void pending.then(() => (settled = true)).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const settledBeforeCommit = settled;
      await blocker.query('COMMIT');
      return { requestId: answer.headers.get('x-request-id')!, result: await pending, settledWhileHeld: settledBeforeCommit };
    } finally {
      await blocker.end();
    }
  }

  it('the usage report counts the call', async () => {
    const o = await proxyOrg(app, fake.url);
    const { result, settledWhileHeld } = await readAfterHeldCall(o, () => o.call('GET', '/v1/analytics/usage?group_by=model'));
    expect(result.status).toBe(200);
    expect(settledWhileHeld).toBe(false);
    expect(result.body.data).toEqual([expect.objectContaining({ key: 'gpt-4o-mini', source: 'proxy', requests: 1 })]);
  });

  it('a new daily budget starts from the cost of the call', async () => {
    const o = await proxyOrg(app, fake.url);
    const { requestId, settledWhileHeld } = await readAfterHeldCall(o, () =>
      app.app.get(LimitsAdminService).setOrganizationLimits(o.orgId, { daily_budget_usd: 1 }, cliActor()),
    );
    expect(settledWhileHeld).toBe(false);
    const cost = (await o.call('GET', `/v1/requests/${requestId}`)).body.cost;
    expect(cost).toBeGreaterThan(0);
    expect((await o.call('GET', '/v1/limits')).body.organization.usage.cost_today_usd).toBeCloseTo(cost, 12);
  });
});
