import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { TokensService } from '../../src/auth/tokens.service';
import { KeysService } from '../../src/keys/keys.service';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createKey, createOrg } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';

/**
 * Three server instances on one PostgreSQL, as replicas behind a load balancer: each has its own caches
 * (organizations, users, keys, tokens), so this checks they stay coherent through the database.
 * Needs a real PostgreSQL: the embedded database belongs to one process.
 */
describe.skipIf(!process.env.DATABASE_URL)('several server processes on one database', () => {
  let fake: FakeUpstream;
  let servers: TestApp[] = [];

  beforeAll(async () => {
    fake = await startFakeUpstream();
    // the invalidation poll is the slow path; keep it at its production default so NOTIFY is what is tested
    const env = { OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn', CACHE_SYNC_INTERVAL_MS: '1000' };
    servers = await Promise.all([createTestApp(env), createTestApp(env), createTestApp(env)]);
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await fake?.close();
  });

  /** Polls until every server answers `status`, for at most `ms`; returns the last statuses seen. */
  async function untilAll(ms: number, status: number, call: (s: TestApp) => Promise<{ status: number }>): Promise<number[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const statuses = (await Promise.all(servers.map(call))).map((r) => r.status);
      if (statuses.every((s) => s === status) || Date.now() > deadline) return statuses;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it('serves one organization from any server: requests spread over them share sessions and records', async () => {
    const org = await createOrg(servers[0]);
    await createKey(servers[1], org.orgId, 'sk-multi-process-aaaa');
    const user = 'spread@example.com';
    const session = `spread-${Date.now()}`;

    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await api(servers[i % 3], org.token, user)('POST', '/v1/responses', { model: 'gpt-4o-mini', input: `call ${i}` }, { 'x-session-id': session });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-session-id')).toBe(session);
      ids.push(res.headers.get('x-request-id')!);
    }
    // every server sees every exchange, wherever it was made
    for (const [i, id] of ids.entries()) {
      const other = servers[(i + 1) % 3];
      const stored = await api(other, org.token, user)('GET', `/v1/requests/${id}`);
      expect(stored.status).toBe(200);
      expect(stored.body).toMatchObject({ id, session_id: session, status: 'completed' });
    }
    const sessionView = await api(servers[2], org.token, user)('GET', `/v1/sessions/${session}`);
    expect(sessionView.status).toBe(200);
    expect(JSON.stringify(sessionView.body)).toContain(ids[5]);
    for (const id of ids) expect(JSON.stringify(sessionView.body)).toContain(id);
  });

  it('a response made on one server can be rated on another and read on the third', async () => {
    const org = await createOrg(servers[0]);
    await createKey(servers[0], org.orgId, 'sk-multi-process-bbbb');
    const user = 'rater@example.com';

    const made = await api(servers[0], org.token, user)('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'rate me' });
    expect(made.status).toBe(200);
    const responseId = made.body.id as string;
    const requestId = made.headers.get('x-request-id');

    const rated = await api(servers[1], org.token, user)('POST', `/v1/responses/${responseId}/rating`, { rating: 4, comment: 'from server 2' });
    expect(rated.status).toBe(201);
    expect(rated.body).toMatchObject({ request_id: requestId, response_id: responseId, rating: 4 });

    const read = await api(servers[2], org.token, user)('GET', `/v1/requests/${requestId}/rating`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ rating: 4, comment: 'from server 2' });

    const replaced = await api(servers[2], org.token, user)('POST', `/v1/requests/${requestId}/rating`, { rating: 2 });
    expect(replaced.status).toBe(200);
    const again = await api(servers[0], org.token, user)('GET', `/v1/responses/${responseId}/rating`);
    expect(again.body).toMatchObject({ rating: 2, comment: null });
  });

  it('a key revoked on one server is refused by all of them within a second', async () => {
    const org = await createOrg(servers[0]);
    const key = await createKey(servers[0], org.orgId, 'sk-multi-process-cccc');
    const models = (s: TestApp) => api(s, org.token, 'keys@example.com')('GET', '/v1/models');

    // every server has resolved (and cached) the key
    expect((await Promise.all(servers.map(models))).map((r) => r.status)).toEqual([200, 200, 200]);

    await servers[1].app.get(KeysService).revoke(key.id, cliActor());
    expect(await untilAll(1000, 403, models)).toEqual([403, 403, 403]);
    const refused = await models(servers[2]);
    expect(refused.body.error).toMatchObject({ type: 'permission_error', code: 'no_api_key' });
  });

  it('a token revoked on one server is refused by all of them within a second', async () => {
    const org = await createOrg(servers[0]);
    const personas = (s: TestApp) => api(s, org.token, 'tokens@example.com')('GET', '/v1/personas');
    expect((await Promise.all(servers.map(personas))).map((r) => r.status)).toEqual([200, 200, 200]);

    await servers[2].app.get(TokensService).revoke(org.jti, cliActor());
    expect(await untilAll(1000, 401, personas)).toEqual([401, 401, 401]);
  });
});
