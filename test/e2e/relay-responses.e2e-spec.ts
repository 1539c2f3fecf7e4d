import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest } from '../support/proxy-test-helpers';

describe('Responses beside create: input items, delete, input tokens, compact, and the response’s key for every call naming it', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  /** The bearer key the upstream saw on its latest request to `path`. */
  const keyOfLast = (pathPart: string) => {
    const r = [...fake.requests].reverse().find((x) => x.path.includes(pathPart));
    return String(r?.headers.authorization ?? '').replace(/^Bearer /, '');
  };

  it('a response made with a user’s own key is reached with it by that user only; an org-key response by every user', async () => {
    const org = await createOrg(app);
    await createKey(app, org.orgId, 'sk-org-0001', { baseUrl: fake.url });
    const a = await createUser(app, org.orgId);
    const b = await createUser(app, org.orgId);
    await createKey(app, org.orgId, 'sk-user-a-0001', { baseUrl: fake.url, userId: a.external_id });
    await createKey(app, org.orgId, 'sk-user-b-0001', { baseUrl: fake.url, userId: b.external_id });
    const client = (user: string) => new OpenAI({ baseURL: `${app.url}/v1`, apiKey: org.token, defaultHeaders: { 'X-User-ID': user }, maxRetries: 0 });
    const [ca, cb, cc] = [client(a.external_id), client(b.external_id), client('user-c@example.com')];

    const made = await ca.responses.create({ model: 'gpt-4o-mini', input: 'Say hello' });
    expect(keyOfLast('/v1/responses')).toBe('sk-user-a-0001');

    // input items, previous_response_id and delete go with A's key; B and C get 404 and the upstream hears nothing
    const items = await ca.responses.inputItems.list(made.id).withResponse();
    expect(items.data.data[0]).toMatchObject({ type: 'message', role: 'user' });
    expect(keyOfLast(`/v1/responses/${made.id}/input_items`)).toBe('sk-user-a-0001');
    const seen = fake.requests.length;
    await expect(cb.responses.inputItems.list(made.id)).rejects.toMatchObject({ status: 404 });
    await expect(cc.responses.delete(made.id)).rejects.toMatchObject({ status: 404 });
    await expect(cb.responses.create({ model: 'gpt-4o-mini', input: 'and more', previous_response_id: made.id })).rejects.toMatchObject({ status: 404 });
    expect(fake.requests.length).toBe(seen);
    const next = await ca.responses.create({ model: 'gpt-4o-mini', input: 'and more', previous_response_id: made.id });
    expect(keyOfLast('/v1/responses')).toBe('sk-user-a-0001');

    const row = await pollRequest(api(app, org.token, a.external_id), items.response.headers.get('x-request-id')!, (r) => r.status === 'completed');
    expect(row).toMatchObject({ method: 'GET', route: '/v1/responses/{response_id}/input_items', object_id: made.id, key_source: 'user' });

    const nextRecord = (await api(app, org.token, a.external_id)('GET', `/v1/requests?user_id=${encodeURIComponent(a.external_id)}&limit=100`)).body.data.find(
      (r: any) => r.response_id === next.id,
    );
    await ca.responses.delete(next.id);
    expect(keyOfLast(`/v1/responses/${next.id}`)).toBe('sk-user-a-0001');
    // the record stays, with the deletion noted on it; the response itself is gone, as upstream
    const noted = (await api(app, org.token, a.external_id)('GET', `/v1/requests/${nextRecord.id}`)).body;
    expect(noted).toMatchObject({ status: 'completed', response_id: next.id });
    expect(Date.parse(noted.upstream_deleted_at)).toBeGreaterThan(0);
    await expect(ca.responses.retrieve(next.id)).rejects.toMatchObject({ status: 404 });

    // C (no key of their own) makes one with the organization key: B reaches it, with that key, not B's own
    const shared = await cc.responses.create({ model: 'gpt-4o-mini', input: 'Say hello' });
    await cb.responses.inputItems.list(shared.id);
    expect(keyOfLast(`/v1/responses/${shared.id}/input_items`)).toBe('sk-org-0001');
  });

  it('input_tokens and compact are forwarded and recorded; compact with usage and cost', async () => {
    const org = await createOrg(app);
    await createKey(app, org.orgId, 'sk-org-0002', { baseUrl: fake.url });
    const user = 'user-tokens@example.com';
    const c = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: org.token, defaultHeaders: { 'X-User-ID': user }, maxRetries: 0 });

    const counted = await c.responses.inputTokens.count({ model: 'gpt-4o-mini', input: 'How many tokens is this?' }).withResponse();
    expect(counted.data.input_tokens).toBeGreaterThan(0);
    const row = await pollRequest(api(app, org.token, user), counted.response.headers.get('x-request-id')!, (r) => r.status === 'completed');
    expect(row).toMatchObject({ method: 'POST', route: '/v1/responses/input_tokens', cost: null, upstream_request_id: counted.response.headers.get('x-upstream-request-id') });

    const compacted = await c.responses.compact({ model: 'gpt-4o-mini', input: 'A long conversation to compact.' }).withResponse();
    const crow = await pollRequest(api(app, org.token, user), compacted.response.headers.get('x-request-id')!, (r) => r.status === 'completed');
    expect(crow).toMatchObject({ route: '/v1/responses/compact', model: 'gpt-4o-mini' });
    const u = compacted.data.usage!;
    expect(crow.usage).toMatchObject({ input_tokens: u.input_tokens, output_tokens: u.output_tokens });
    // gpt-4o-mini: $0.15 in, $0.60 out per million tokens
    expect(crow.cost).toBeCloseTo((u.input_tokens * 0.15 + u.output_tokens * 0.6) / 1e6, 12);
  });
});
