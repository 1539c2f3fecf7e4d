import { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg } from '../support/proxy-test-helpers';
import { ORG_UPSTREAM_KEY, relayed } from '../support/relay-test-helpers';

/** The relay's headers and retries, seen from the fake upstream, with the official SDK. */
describe('relay: headers in and out, retries only where a repeat is safe', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ UPSTREAM_MAX_RETRIES: '2' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  it('OpenAI-Beta and Idempotency-Key reach the upstream; the client’s Authorization, X-User-ID and cookies never do', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.batches
      .list({ limit: 2 }, { headers: { 'OpenAI-Beta': 'assistants=v2', 'Idempotency-Key': 'idem-read-1', Cookie: 'session=secret-cookie' } })
      .withResponse();
    expect(data.data).toEqual([]);
    const r = await relayed(o, fake, response.headers, { method: 'GET', route: '/v1/batches' });
    expect(r.upstream.headers).toMatchObject({ 'openai-beta': 'assistants=v2', 'idempotency-key': 'idem-read-1', authorization: `Bearer ${ORG_UPSTREAM_KEY}` });
    expect(r.upstream.headers.cookie).toBeUndefined();
    expect(JSON.stringify(r.upstream.headers)).not.toContain(o.token);
    // the proxy's own answer headers, with OpenAI's request id beside its own
    expect(response.headers.get('x-key-source')).toBe('organization');
    expect(response.headers.get('x-upstream-request-id')).toBe(r.upstream.requestId);
    expect(response.headers.get('x-request-id')).not.toBe(r.upstream.requestId);
  });

  it('a POST whose upstream answers 500 is not repeated without Idempotency-Key; with one it is, and succeeds', async () => {
    const o = await proxyOrg(app, fake.url);
    fake.enqueue({ kind: 'status', status: 500 });
    const failed = await o.client.vectorStores.create({ name: 'once' }).withResponse().catch((e) => e);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(fake.api.recorded('POST', '/v1/vector_stores')).toHaveLength(1);
    const rec = await pollRequest(o.call, failed.headers.get('x-request-id'), (x) => x.status !== 'pending');
    expect(rec).toMatchObject({ method: 'POST', route: '/v1/vector_stores', status: 'upstream_error', upstream_status: 500 });

    fake.enqueue({ kind: 'status', status: 500 });
    const { data, response } = await o.client.vectorStores.create({ name: 'twice' }, { headers: { 'Idempotency-Key': 'idem-vs-1' } }).withResponse();
    expect(data).toMatchObject({ id: expect.stringMatching(/^vs_/), name: 'twice' });
    const attempts = fake.api.recorded('POST', '/v1/vector_stores').slice(1);
    expect(attempts).toHaveLength(2);
    expect(attempts.map((a) => a.headers['idempotency-key'])).toEqual(['idem-vs-1', 'idem-vs-1']);
    expect(attempts.map((a) => a.rawBody)).toEqual([attempts[0].rawBody, attempts[0].rawBody]);
    // the record names the attempt that answered
    const r = await relayed(o, fake, response.headers, { method: 'POST', route: '/v1/vector_stores' });
    expect(r.upstream).toBe(attempts[1]);
    expect(r.record.object_id).toBe(data.id);
  });

  it('a POST whose connection drops is not repeated without Idempotency-Key (502); with one it is', async () => {
    const o = await proxyOrg(app, fake.url);
    fake.enqueue({ kind: 'reset' });
    const failed = await o.client.conversations.create({ metadata: { try: '1' } }).withResponse().catch((e) => e);
    expect(failed.status).toBe(502);
    expect(failed.error).toMatchObject({ type: 'upstream_error' });
    const rec = await pollRequest(o.call, failed.headers.get('x-request-id'), (x) => x.status !== 'pending');
    expect(rec).toMatchObject({ method: 'POST', route: '/v1/conversations', status: 'upstream_error', upstream_status: null });
    // the upstream got the request once (then its connection was cut) and never again
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.api.recorded('POST', '/v1/conversations')).toHaveLength(1);

    fake.enqueue({ kind: 'reset' });
    const conv = await o.client.conversations.create({ metadata: { try: '2' } }, { headers: { 'Idempotency-Key': 'idem-conv-1' } });
    expect(conv.id).toMatch(/^conv_/);
    const attempts = fake.api.recorded('POST', '/v1/conversations').slice(1);
    expect(attempts.map((a) => a.headers['idempotency-key'])).toEqual(['idem-conv-1', 'idem-conv-1']);
  });

  it('a streamed upload is never repeated, even with Idempotency-Key; a model call and a read are', async () => {
    const o = await proxyOrg(app, fake.url);
    fake.enqueue({ kind: 'status', status: 503 });
    const upload = await o.client.files
      .create({ file: await toFile(Buffer.from('x'.repeat(1000)), 'x.txt'), purpose: 'user_data' }, { headers: { 'Idempotency-Key': 'idem-file-1' } })
      .catch((e) => e);
    expect(upload.status).toBeGreaterThanOrEqual(500);
    expect(fake.api.recorded('POST', '/v1/files')).toHaveLength(1);

    fake.enqueue({ kind: 'status', status: 500 });
    const emb = await o.client.embeddings.create({ model: 'text-embedding-3-small', input: 'again', encoding_format: 'float' });
    expect(emb.data).toHaveLength(1);
    expect(fake.api.recorded('POST', '/v1/embeddings')).toHaveLength(2);

    fake.enqueue({ kind: 'reset' });
    const list = await o.client.files.list();
    expect(list.data).toEqual([]);
    expect(fake.api.recorded('GET', '/v1/files')).toHaveLength(2);
  });

  it('an upstream error for an unknown id comes back in OpenAI’s envelope with the upstream request id, recorded as failed', async () => {
    const o = await proxyOrg(app, fake.url);
    const err = await o.client.batches.retrieve('batch_does_not_exist').catch((e) => e);
    expect(err.status).toBe(404);
    expect(err.error).toMatchObject({ type: 'invalid_request_error', message: 'No such batch: batch_does_not_exist', param: 'batch_id' });
    const r = await relayed(o, fake, err.headers, { method: 'GET', route: '/v1/batches/{batch_id}', status: 'failed', upstreamStatus: 404 });
    expect(r.record.object_id).toBe('batch_does_not_exist');
  });
});
