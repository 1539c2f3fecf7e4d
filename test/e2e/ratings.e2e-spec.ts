import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newRequestId } from '../../src/common/ids';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('ratings', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  async function newOrg() {
    const org = await createOrg(app);
    const externalId = `user-${randomUUID()}@example.com`;
    const user = await createUser(app, org.orgId, externalId);
    return { ...org, externalId, userId: user.id, call: api(app, org.token, externalId) };
  }

  /**
   * A stored exchange, written the way the proxy stores one (the proxy's own routes are exercised in its
   * tests; ratings only need the row).
   */
  async function storeExchange(
    org: { orgId: string; userId: string; externalId: string },
    opts: { responseId?: string | null; personaId?: string | null; personaVersion?: number | null; createdAt?: Date } = {},
  ): Promise<{ requestId: string; responseId: string | null }> {
    const requestId = newRequestId();
    const responseId = opts.responseId === undefined ? `resp_${randomUUID().replace(/-/g, '')}` : opts.responseId;
    await app.dataSource.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version,
                              endpoint, model, stream, status, upstream_status, response_id, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, '/v1/responses', 'gpt-4o-mini', false, 'completed', 200, $8, $9)`,
      [
        requestId,
        org.orgId,
        org.userId,
        org.externalId,
        `session_${randomUUID().slice(0, 24)}`,
        opts.personaId ?? null,
        opts.personaVersion ?? null,
        responseId,
        opts.createdAt ?? new Date(),
      ],
    );
    return { requestId, responseId };
  }

  it('rates by request id and by response id; rating again replaces (201, then 200)', async () => {
    const org = await newOrg();
    const ex = await storeExchange(org);

    const first = await org.call('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 4 });
    expect(first.status).toBe(201);
    expect(first.body).toEqual({
      request_id: ex.requestId,
      response_id: ex.responseId,
      user_id: org.externalId,
      rating: 4,
      comment: null,
      rated_at: expect.stringMatching(ISO),
    });

    const again = await org.call('POST', `/v1/responses/${ex.responseId}/rating`, { rating: 2, comment: 'meh' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ request_id: ex.requestId, response_id: ex.responseId, rating: 2, comment: 'meh' });

    const back = await org.call('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 5 });
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ rating: 5, comment: null });

    const stored = await app.dataSource.query('SELECT rating, comment, user_id FROM ratings WHERE exchange_id = $1', [ex.requestId]);
    expect(stored).toEqual([{ rating: 5, comment: null, user_id: org.userId }]);

    const other = await storeExchange(org);
    const byResponse = await org.call('POST', `/v1/responses/${other.responseId}/rating`, { rating: 1, comment: 'wrong answer' });
    expect(byResponse.status).toBe(201);
    expect(byResponse.body).toMatchObject({ request_id: other.requestId, response_id: other.responseId, rating: 1, comment: 'wrong answer' });
  });

  it('GET returns the acting user’s own rating, 404 when there is none', async () => {
    const org = await newOrg();
    const ex = await storeExchange(org);
    for (const path of [`/v1/requests/${ex.requestId}/rating`, `/v1/responses/${ex.responseId}/rating`]) {
      const none = await org.call('GET', path);
      expect(none.status, path).toBe(404);
      expect(none.body.error.type).toBe('not_found_error');
    }
    const posted = await org.call('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 3, comment: 'ok' });
    for (const path of [`/v1/requests/${ex.requestId}/rating`, `/v1/responses/${ex.responseId}/rating`]) {
      const got = await org.call('GET', path);
      expect(got.status, path).toBe(200);
      expect(got.body).toEqual(posted.body);
    }
    // another user of the same organization has not rated it
    const colleague = api(app, org.token, `colleague-${randomUUID()}`);
    expect((await colleague('GET', `/v1/requests/${ex.requestId}/rating`)).status).toBe(404);
  });

  it('two users rating the same exchange get a rating each', async () => {
    const org = await newOrg();
    const ex = await storeExchange(org);
    const alice = api(app, org.token, 'alice@example.com');
    const bob = api(app, org.token, 'bob@example.com');
    const a = await alice('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 5 });
    const b = await bob('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 1, comment: 'no' });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(a.body.user_id).toBe('alice@example.com');
    expect(b.body.user_id).toBe('bob@example.com');
    expect((await alice('GET', `/v1/requests/${ex.requestId}/rating`)).body).toMatchObject({ rating: 5, user_id: 'alice@example.com' });
    expect((await bob('GET', `/v1/requests/${ex.requestId}/rating`)).body).toMatchObject({ rating: 1, user_id: 'bob@example.com' });
    const [{ count }] = await app.dataSource.query('SELECT count(*)::int AS count FROM ratings WHERE exchange_id = $1', [ex.requestId]);
    expect(count).toBe(2);
  });

  it('concurrent first ratings by one user make one rating: one 201, the rest 200', async () => {
    const org = await newOrg();
    const ex = await storeExchange(org);
    const results = await Promise.all([1, 2, 3, 4, 5].map((rating) => org.call('POST', `/v1/requests/${ex.requestId}/rating`, { rating })));
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
    const rows = await app.dataSource.query('SELECT rating FROM ratings WHERE exchange_id = $1', [ex.requestId]);
    expect(rows).toHaveLength(1);
  });

  it('accepts only a JSON integer from 1 to 5 and a comment of at most 2000 characters', async () => {
    const org = await newOrg();
    const ex = await storeExchange(org);
    const path = `/v1/requests/${ex.requestId}/rating`;
    for (const body of [{ rating: 0 }, { rating: 6 }, { rating: 3.5 }, { rating: 'x' }, { rating: '5' }, { rating: null }, { rating: true }, {}, { comment: 'no rating' }]) {
      const res = await org.call('POST', path, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'rating' });
    }
    const long = await org.call('POST', path, { rating: 3, comment: 'c'.repeat(2001) });
    expect(long.status).toBe(400);
    expect(long.body.error.param).toBe('comment');
    const notString = await org.call('POST', path, { rating: 3, comment: 7 });
    expect(notString.status).toBe(400);
    expect(notString.body.error.param).toBe('comment');
    const extra = await org.call('POST', path, { rating: 3, user_id: 'someone-else' });
    expect(extra.status).toBe(400);
    expect(extra.body.error.param).toBe('user_id');
    expect((await org.call('POST', path, '{"rating": 5')).status).toBe(400);
    // nothing was stored by the refused calls
    expect((await org.call('GET', path)).status).toBe(404);

    const edge = await org.call('POST', path, { rating: 1, comment: 'c'.repeat(2000) });
    expect(edge.status).toBe(201);
    expect(edge.body.comment).toHaveLength(2000);
  });

  it("another organization's exchange and unknown ids are 404 with the same body", async () => {
    const orgA = await newOrg();
    const orgB = await newOrg();
    const ex = await storeExchange(orgA);
    await orgA.call('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 5 });

    const unknownRequest = newRequestId();
    for (const id of [ex.requestId, unknownRequest]) {
      for (const method of ['POST', 'GET']) {
        const res = await orgB.call(method, `/v1/requests/${id}/rating`, method === 'POST' ? { rating: 1 } : undefined);
        expect(res.status, `${method} ${id}`).toBe(404);
        expect(res.body).toEqual({ error: { message: `No request found with id '${id}'`, type: 'not_found_error', code: 'not_found', param: null } });
      }
    }
    for (const id of [ex.responseId!, 'resp_unknown']) {
      for (const method of ['POST', 'GET']) {
        const res = await orgB.call(method, `/v1/responses/${id}/rating`, method === 'POST' ? { rating: 1 } : undefined);
        expect(res.status, `${method} ${id}`).toBe(404);
        expect(res.body).toEqual({ error: { message: `No response found with id '${id}'`, type: 'not_found_error', code: 'not_found', param: null } });
      }
    }
    const [{ count }] = await app.dataSource.query('SELECT count(*)::int AS count FROM ratings WHERE exchange_id = $1', [ex.requestId]);
    expect(count).toBe(1);
    expect((await orgA.call('GET', `/v1/requests/${ex.requestId}/rating`)).body.rating).toBe(5);
  });

  it('a response id stored twice rates the newest exchange', async () => {
    const org = await newOrg();
    const older = await storeExchange(org, { responseId: 'resp_reused', createdAt: new Date(Date.now() - 60_000) });
    const newer = await storeExchange(org, { responseId: 'resp_reused' });
    const res = await org.call('POST', '/v1/responses/resp_reused/rating', { rating: 4 });
    expect(res.status).toBe(201);
    expect(res.body.request_id).toBe(newer.requestId);
    expect((await org.call('GET', `/v1/requests/${older.requestId}/rating`)).status).toBe(404);
  });

  it('records the exchange’s persona, and still rates exchanges of a deleted persona', async () => {
    const org = await newOrg();
    const { body: persona } = await org.call('POST', '/v1/personas', { name: 'Rated', content: 'You are rated.' });
    const ex = await storeExchange(org, { personaId: persona.id, personaVersion: 1 });
    expect((await org.call('DELETE', `/v1/personas/${persona.id}`)).status).toBe(204);

    const res = await org.call('POST', `/v1/responses/${ex.responseId}/rating`, { rating: 5 });
    expect(res.status).toBe(201);
    const [row] = await app.dataSource.query('SELECT persona_id, organization_id FROM ratings WHERE exchange_id = $1', [ex.requestId]);
    expect(row).toEqual({ persona_id: persona.id, organization_id: org.orgId });
  });

  it('rates an exchange that has no response id by its request id', async () => {
    const org = await newOrg();
    const ex = await storeExchange(org, { responseId: null });
    const res = await org.call('POST', `/v1/requests/${ex.requestId}/rating`, { rating: 2 });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ request_id: ex.requestId, response_id: null, rating: 2 });
  });

  describe('exchanges made through the proxy', () => {
    let fake: FakeUpstream;
    beforeAll(async () => {
      fake = await startFakeUpstream();
    });
    afterAll(async () => {
      await fake?.close();
    });

    async function proxiedOrg() {
      const org = await newOrg();
      await createKey(app, org.orgId, 'sk-test', { baseUrl: fake.url });
      return org;
    }

    it('rates a proxied exchange by its response id and by its request id', async () => {
      const org = await proxiedOrg();
      const { body: persona } = await org.call('POST', '/v1/personas', { name: 'Helper', content: 'You help.' });
      const res = await org.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hello', persona_id: persona.id });
      expect(res.status).toBe(200);
      const requestId = res.headers.get('x-request-id')!;
      expect(res.body.id).toMatch(/^resp_/);

      const byResponse = await org.call('POST', `/v1/responses/${res.body.id}/rating`, { rating: 4 });
      expect(byResponse.status).toBe(201);
      expect(byResponse.body).toMatchObject({ request_id: requestId, response_id: res.body.id, user_id: org.externalId, rating: 4 });
      const byRequest = await org.call('POST', `/v1/requests/${requestId}/rating`, { rating: 5 });
      expect(byRequest.status).toBe(200);
      const [row] = await app.dataSource.query('SELECT persona_id, rating FROM ratings WHERE exchange_id = $1', [requestId]);
      expect(row).toEqual({ persona_id: persona.id, rating: 5 });

      // the persona is deleted afterwards: its exchanges can still be rated
      expect((await org.call('DELETE', `/v1/personas/${persona.id}`)).status).toBe(204);
      const colleague = api(app, org.token, `colleague-${randomUUID()}`);
      expect((await colleague('POST', `/v1/responses/${res.body.id}/rating`, { rating: 2 })).status).toBe(201);
    });

    it('rates a streamed exchange right after the stream ends', async () => {
      const org = await proxiedOrg();
      const res = await fetch(`${app.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${org.token}`, 'x-user-id': org.externalId, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', input: 'stream please', stream: true }),
      });
      expect(res.status).toBe(200);
      const requestId = res.headers.get('x-request-id')!;
      const text = await res.text();
      const completed = text
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => JSON.parse(l.slice(6)))
        .find((e) => e.type === 'response.completed');
      const responseId: string = completed.response.id;

      const byResponse = await org.call('POST', `/v1/responses/${responseId}/rating`, { rating: 5, comment: 'fast' });
      expect(byResponse.status).toBe(201);
      expect(byResponse.body).toMatchObject({ request_id: requestId, response_id: responseId, rating: 5, comment: 'fast' });
      const byRequest = await org.call('GET', `/v1/requests/${requestId}/rating`);
      expect(byRequest.status).toBe(200);
      expect(byRequest.body).toEqual(byResponse.body);
    });
  });
});
