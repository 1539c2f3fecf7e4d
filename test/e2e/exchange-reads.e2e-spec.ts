import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createOrg, createToken, createUser } from '../support/factories';
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

/**
 * A call in progress is a row of `open_calls` until it ends (its exchange written whole then): the API shows it as
 * an exchange with status `pending` wherever a pending exchange was shown. The rows are written here with SQL: these
 * are the readers' rules, whatever the write path.
 */
describe('a call in progress (an open call) through the API', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  const T0 = Date.now() - 3_600_000;
  const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

  async function openCall(orgId: string, userId: string, externalId: string, sessionId: string, createdAt: string, model = 'gpt-4o-mini'): Promise<string> {
    const id = `req_open_${randomUUID().slice(0, 12)}`;
    await app.dataSource.query(
      `INSERT INTO open_calls (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, request_body, key_source, instance_id,
                               created_at, method, route, capture_mode)
       VALUES ($1, $2, $3, $4, $5, 'responses', $6, true, $7::jsonb, 'org', 'e2e-instance', $8, 'POST', '/v1/responses', 'full')`,
      [id, orgId, userId, externalId, sessionId, model, JSON.stringify({ model, input: 'still running' }), createdAt],
    );
    return id;
  }

  async function endedExchange(orgId: string, userId: string, externalId: string, sessionId: string, createdAt: string): Promise<string> {
    const id = `req_done_${randomUUID().slice(0, 12)}`;
    await app.dataSource.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, status, upstream_status, response_id,
                             request_body, output_text, total_tokens, cost, latency_ms, created_at, completed_at)
       VALUES ($1, $2, $3, $4, $5, 'responses', 'gpt-4o-mini', false, 'completed', 200, $6, '{"input":"done"}'::jsonb, 'answer', 7, 0.001, 5, $7, $7)`,
      [id, orgId, userId, externalId, sessionId, `resp_${id}`, createdAt],
    );
    return id;
  }

  it('reads, lists, pages, rates and erases it as a pending exchange', async () => {
    const org = await createOrg(app);
    const externalId = `user-${randomUUID()}@example.test`;
    const user = await createUser(app, org.orgId, externalId);
    const call = api(app, org.token, externalId);
    const session = `session_${randomUUID()}`;
    const done = await endedExchange(org.orgId, user.id, externalId, session, at(1));
    const open = await openCall(org.orgId, user.id, externalId, session, at(2), 'gpt-brand-new');

    const one = await call('GET', `/v1/requests/${open}`);
    expect(one.status, one.text).toBe(200);
    expect(one.body).toMatchObject({
      id: open,
      object: 'exchange',
      status: 'pending',
      session_id: session,
      user_id: externalId,
      model: 'gpt-brand-new',
      stream: true,
      request_body: { model: 'gpt-brand-new', input: 'still running' },
      created_at: at(2),
    });
    for (const field of [
      'response_id', 'upstream_status', 'cost', 'latency_ms', 'time_to_first_byte_ms', 'upstream_request_id', 'object_id', 'request_bytes',
      'response_content_type', 'response_bytes', 'key_attempts', 'upstream_deleted_at', 'response_body', 'output_text', 'error', 'completed_at',
    ]) {
      expect(one.body[field], field).toBeNull();
    }
    expect(one.body.usage).toEqual({ input_tokens: null, output_tokens: null, total_tokens: null, cached_tokens: null, reasoning_tokens: null });
    expect(one.body.body_truncated).toBe(false);
    // another organization's: unknown
    const other = await createOrg(app);
    expect((await api(app, other.token, externalId)('GET', `/v1/requests/${open}`)).status).toBe(404);

    const listed = async (query: string) => {
      const r = await call('GET', `/v1/requests${query}`);
      expect(r.status, r.text).toBe(200);
      return r.body;
    };
    expect((await listed('')).data.map((e: { id: string; status: string }) => [e.id, e.status])).toEqual([
      [open, 'pending'],
      [done, 'completed'],
    ]);
    expect(await listed('?limit=1')).toMatchObject({ has_more: true, first_id: open, last_id: open });
    expect(await listed(`?limit=1&after=${open}`)).toMatchObject({ has_more: false, data: [{ id: done }] });
    const ids = async (query: string) => (await listed(query)).data.map((e: { id: string }) => e.id);
    expect(await ids(`?user_id=${encodeURIComponent(externalId)}`)).toEqual([open, done]);
    expect(await ids(`?user_id=nobody`)).toEqual([]);
    // a model no ended call has: the daily usage knows nothing of it
    expect(await ids('?model=gpt-brand-new')).toEqual([open]);
    expect(await ids('?status=pending')).toEqual([open]);
    expect(await ids('?status=completed')).toEqual([done]);

    // rated by its id, as a pending exchange could be; a rating filter lists only what ended
    const rated = await call('POST', `/v1/requests/${open}/rating`, { rating: 5 });
    expect(rated.status, rated.text).toBe(201);
    expect(rated.body).toMatchObject({ request_id: open, response_id: null, rating: 5 });
    expect((await call('POST', `/v1/requests/${done}/rating`, { rating: 5 })).status).toBe(201);
    expect(await ids('?rating=5')).toEqual([done]);
    expect((await listed('')).data[0].ratings).toEqual({ count: 1, average: 5 });

    // its session, oldest first; a session whose only call is in flight
    const inSession = await call('GET', `/v1/sessions/${session}`);
    expect(inSession.status, inSession.text).toBe(200);
    expect(inSession.body.data.map((e: { id: string; status: string }) => [e.id, e.status])).toEqual([
      [done, 'completed'],
      [open, 'pending'],
    ]);
    const lone = `session_${randomUUID()}`;
    const alone = await openCall(org.orgId, user.id, externalId, lone, at(3));
    const loneSession = await call('GET', `/v1/sessions/${lone}`);
    expect(loneSession.status, loneSession.text).toBe(200);
    expect(loneSession.body.data.map((e: { id: string }) => e.id)).toEqual([alone]);
    expect((await call('GET', `/v1/sessions/session_${randomUUID()}`)).status).toBe(404);

    // the end user's export has it, and their erasure deletes it with their exchanges
    const admin = await createToken(app, org.orgId, { scope: 'admin' });
    const asAdmin = api(app, admin.token, 'operator');
    const exported = await asAdmin('GET', `/v1/users/${encodeURIComponent(externalId)}/export`);
    expect(exported.status, exported.text).toBe(200);
    const lines = exported.text.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.type === 'exchange').map((l) => [l.id, l.status])).toEqual([
      [done, 'completed'],
      [open, 'pending'],
      [alone, 'pending'],
    ]);
    const erased = await asAdmin('DELETE', `/v1/users/${encodeURIComponent(externalId)}`);
    expect(erased.status, erased.text).toBe(200);
    expect(erased.body.erased).toMatchObject({ users: 1, exchanges: 3, ratings: 2 });
    expect((await call('GET', `/v1/requests/${open}`)).status).toBe(404);
    expect(await app.dataSource.query(`SELECT id FROM open_calls WHERE organization_id = $1`, [org.orgId])).toEqual([]);
  });
});
