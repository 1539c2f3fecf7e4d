import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, ProxyTestOrg } from '../support/proxy-test-helpers';

/** GET /v1/requests filtered by route, status, rating and analysis category, each listed exchange with its ratings. */
describe('exchange list filters and ratings', () => {
  let app: TestApp;
  let fake: FakeUpstream;
  let o: ProxyTestOrg;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
    o = await proxyOrg(app, fake.url);
    const call = async (name: string, path: string, body: unknown) => {
      const r = await o.call('POST', path, body);
      ids[name] = r.headers.get('x-request-id')!;
    };
    await call('liked', '/v1/responses', { model: 'gpt-4o-mini', input: 'My invoice is wrong' });
    await call('disliked', '/v1/responses', { model: 'gpt-4o-mini', input: 'The app crashes' });
    await call('chat', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
    await call('failed', '/v1/responses', { model: 'fail-400', input: 'x' });
    expect((await o.call('POST', `/v1/requests/${ids.liked}/rating`, { rating: 5 })).status).toBe(201);
    expect((await o.call('POST', `/v1/requests/${ids.disliked}/rating`, { rating: 2 })).status).toBe(201);
    // a second user's rating of the same exchange: the list shows both, averaged
    const other = api(app, o.token, 'someone-else@example.com');
    expect((await other('POST', `/v1/requests/${ids.liked}/rating`, { rating: 4 })).status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  const listed = async (query: string) => {
    const r = await o.call('GET', `/v1/requests?${query}`);
    expect(r.status, r.text).toBe(200);
    return r.body.data as { id: string; ratings: { count: number; average: number | null }; status: string }[];
  };

  it('lists each exchange with the count and average of its ratings', async () => {
    const rows = await listed('');
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(ids.liked)!.ratings).toEqual({ count: 2, average: 4.5 });
    expect(byId.get(ids.disliked)!.ratings).toEqual({ count: 1, average: 2 });
    expect(byId.get(ids.chat)!.ratings).toEqual({ count: 0, average: null });
    const session = await o.call('GET', `/v1/sessions/${(await o.call('GET', `/v1/requests/${ids.liked}`)).body.session_id}`);
    expect(session.body.data[0].ratings).toEqual({ count: 2, average: 4.5 });
  });

  it('filters by rating: exchanges someone gave that rating', async () => {
    expect((await listed('rating=5')).map((r) => r.id)).toEqual([ids.liked]);
    expect((await listed('rating=4')).map((r) => r.id)).toEqual([ids.liked]);
    expect((await listed('rating=2')).map((r) => r.id)).toEqual([ids.disliked]);
    expect(await listed('rating=1')).toEqual([]);
    // with a route, a status, a model or a user besides: all of them hold
    expect((await listed('rating=5&endpoint=responses&status=completed&model=gpt-4o-mini')).map((r) => r.id)).toEqual([ids.liked]);
    expect(await listed('rating=5&endpoint=chat.completions')).toEqual([]);
    expect(await listed('rating=2&status=failed')).toEqual([]);
    expect(await listed('rating=5&model=gpt-4o')).toEqual([]);
    expect((await listed(`rating=4&user_id=${encodeURIComponent(o.userId)}`)).map((r) => r.id)).toEqual([ids.liked]);
    expect(await listed('rating=4&user_id=nobody')).toEqual([]);
  });

  it('filters by model: a model none has lists nothing', async () => {
    expect((await listed('model=gpt-4o-mini')).map((r) => r.id).sort()).toEqual([ids.liked, ids.disliked, ids.chat].sort());
    expect((await listed('model=fail-400')).map((r) => r.id)).toEqual([ids.failed]);
    expect(await listed('model=gpt-4o-mni')).toEqual([]);
  });

  it('filters by route (endpoint) and status', async () => {
    expect((await listed('endpoint=chat.completions')).map((r) => r.id)).toEqual([ids.chat]);
    const failed = (await o.call('GET', `/v1/requests/${ids.failed}`)).body.status as string;
    expect(failed).not.toBe('completed');
    expect((await listed(`status=${failed}`)).map((r) => r.id)).toEqual([ids.failed]);
    expect((await listed('status=completed&endpoint=responses')).map((r) => r.id).sort()).toEqual([ids.liked, ids.disliked].sort());
  });

  it('filters by the primary category of an analysis', async () => {
    const config = { analysis_type: 'intent', categories: [{ name: 'billing' }, { name: 'bug' }] };
    const a = await o.call('POST', '/v1/analysis', { request_id: ids.liked, config });
    expect(a.status, a.text).toBe(200);
    const category = a.body.primary_category as string;
    expect((await listed(`analysis_category=${category}`)).map((r) => r.id)).toEqual([ids.liked]);
    expect(await listed('analysis_category=no-such-category')).toEqual([]);
    expect((await listed(`analysis_category=${category}&rating=5&endpoint=responses`)).map((r) => r.id)).toEqual([ids.liked]);
    expect(await listed(`analysis_category=${category}&rating=2`)).toEqual([]);
    expect(await listed(`analysis_category=${category}&status=failed`)).toEqual([]);
  });

  it('pages through a filtered list with the keyset cursor', async () => {
    const first = await o.call('GET', '/v1/requests?status=completed&limit=1');
    expect(first.body.has_more).toBe(true);
    const second = await o.call('GET', `/v1/requests?status=completed&limit=1&after=${first.body.last_id}`);
    expect(second.body.data).toHaveLength(1);
    expect(second.body.data[0].id).not.toBe(first.body.data[0].id);
  });

  it('refuses a bad rating filter with a clear 400', async () => {
    const r = await o.call('GET', '/v1/requests?rating=6');
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('rating must be an integer between 1 and 5');
  });

  it('refuses a status no exchange can have with a clear 400 (a misspelt one matched nothing, silently)', async () => {
    const r = await o.call('GET', '/v1/requests?status=complted');
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param: 'status' });
    expect(r.body.error.message).toContain('status must be one of pending, completed, failed, upstream_error, upstream_timeout, client_aborted, interrupted, queued');
    for (const status of ['pending', 'queued', 'interrupted', 'upstream_timeout']) expect(await listed(`status=${status}`)).toEqual([]);
  });
});
