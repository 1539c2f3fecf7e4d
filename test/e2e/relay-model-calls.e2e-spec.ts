import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { fakeEmbedding } from '../support/fake-openai-api';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg } from '../support/proxy-test-helpers';
import { expectJsonRequestStored, relayed } from '../support/relay-test-helpers';

/** Embeddings, legacy completions, moderations and models.retrieve through the relay, with the official SDK. */
describe('relay: embeddings, completions, moderations, models', () => {
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

  it('embeddings.create, float and base64: the vectors arrive, usage and cost are recorded, the vectors are not', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.embeddings
      .create({ model: 'text-embedding-3-small', input: ['the first text', 'a second one'], encoding_format: 'float' })
      .withResponse();
    expect(data.data[1].embedding).toEqual(fakeEmbedding('text-embedding-3-small', 'a second one'));
    expect(data.usage).toEqual({ prompt_tokens: 4 + 3, total_tokens: 7 });
    const r = await relayed(o, fake, response.headers, { method: 'POST', route: '/v1/embeddings' });
    expectJsonRequestStored(r);
    expect(r.record).toMatchObject({ endpoint: 'embeddings', model: 'text-embedding-3-small', object_id: null });
    expect(r.record.usage).toMatchObject({ input_tokens: 7, total_tokens: 7 });
    expect(r.record.response_body.data).toBeUndefined();
    expect(r.record.response_body.embeddings).toEqual({ count: 2, dimensions: 1536 });
    expect(r.record.response_body.usage).toEqual(data.usage);

    // the SDK's default: base64 on the wire, decoded by the SDK; the record holds no base64 either
    const b64 = await o.client.embeddings.create({ model: 'text-embedding-3-small', input: 'short', dimensions: 64 }).withResponse();
    expect(Array.from(b64.data.data[0].embedding)).toEqual(fakeEmbedding('text-embedding-3-small', 'short', 64));
    const r2 = await relayed(o, fake, b64.response.headers, { method: 'POST', route: '/v1/embeddings' });
    expect(r2.upstream.body.encoding_format).toBe('base64');
    expect(r2.record.response_body.embeddings).toEqual({ count: 1, dimensions: 64 });
    const wire = Buffer.from(new Float32Array(fakeEmbedding('text-embedding-3-small', 'short', 64)).buffer).toString('base64');
    expect(JSON.stringify(r2.record)).not.toContain(wire.slice(0, 40));
    expect(r2.record.usage).toMatchObject({ input_tokens: 2, total_tokens: 2 });
    // text-embedding-3-small: $0.02 per million tokens
    expect(r.record.cost).toBeCloseTo((7 * 0.02) / 1e6, 15);
    expect(r2.record.cost).toBeCloseTo((2 * 0.02) / 1e6, 15);
  });

  it('completions.create, plain and streamed: the text, usage (from the last chunk of a stream) and cost are recorded', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.completions
      .create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say this is a test', max_tokens: 20 })
      .withResponse();
    expect(data).toMatchObject({ object: 'text_completion', choices: [{ text: ' Echo: Say this is a test', finish_reason: 'stop' }] });
    const r = await relayed(o, fake, response.headers, { method: 'POST', route: '/v1/completions' });
    expectJsonRequestStored(r);
    expect(r.record.response_body).toEqual(JSON.parse(JSON.stringify(data)));
    expect(r.record).toMatchObject({ model: 'gpt-3.5-turbo-instruct', output_text: ' Echo: Say this is a test', object_id: data.id });
    expect(r.record.usage).toMatchObject({ input_tokens: data.usage!.prompt_tokens, output_tokens: data.usage!.completion_tokens, total_tokens: data.usage!.total_tokens });
    // gpt-3.5-turbo-instruct: $1.50 in, $2.00 out per million tokens
    expect(r.record.cost).toBeCloseTo((data.usage!.prompt_tokens * 1.5 + data.usage!.completion_tokens * 2) / 1e6, 15);

    const streamed = await o.client.completions
      .create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say this is a test', max_tokens: 20, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let text = '';
    let usage: any;
    for await (const chunk of streamed.data) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(' Echo: Say this is a test');
    expect(usage).toEqual(data.usage);
    const s = await relayed(o, fake, streamed.response.headers, { method: 'POST', route: '/v1/completions' });
    expect(s.record).toMatchObject({ stream: true, output_text: text });
    expect(s.record.usage).toMatchObject({ input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens, total_tokens: usage.total_tokens });
    expect(s.record.cost).toBeCloseTo(r.record.cost, 15);
  });

  it('moderations.create: the results as sent, the bodies stored, no usage', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.moderations.create({ model: 'omni-moderation-latest', input: ['I will attack the castle', 'tea time'] }).withResponse();
    expect(data.results.map((x) => x.flagged)).toEqual([true, false]);
    const r = await relayed(o, fake, response.headers, { method: 'POST', route: '/v1/moderations' });
    expectJsonRequestStored(r);
    expect(r.record.response_body).toEqual(JSON.parse(JSON.stringify(data)));
    expect(r.record.usage).toMatchObject({ input_tokens: null, output_tokens: null, total_tokens: null });
  });

  it('models.retrieve: the model as the upstream has it, recorded under its route', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.models.retrieve('gpt-4.1').withResponse();
    expect(data).toEqual({ id: 'gpt-4.1', object: 'model', created: 1744316542, owned_by: 'system' });
    const up = fake.requests.at(-1)!;
    expect(up).toMatchObject({ method: 'GET', path: '/v1/models/gpt-4.1' });
    expect(up.headers.authorization).toBe('Bearer sk-test-proxy-0001');
    const upstreamId = response.headers.get('x-upstream-request-id');
    expect(upstreamId).toMatch(/^req_[0-9a-f]{32}$/);
    const rec = await pollRequest(o.call, response.headers.get('x-request-id')!, (x) => x.status !== 'pending');
    expect(rec).toMatchObject({ method: 'GET', route: '/v1/models/{model}', status: 'completed', upstream_status: 200, upstream_request_id: upstreamId, request_body: null });
    expect(rec.response_body).toEqual(data);

    await expect(o.client.models.retrieve('no-such-model')).rejects.toMatchObject({ status: 404 });
  });
});
