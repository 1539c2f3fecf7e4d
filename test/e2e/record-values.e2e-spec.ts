import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg, ProxyTestOrg } from '../support/proxy-test-helpers';

const DEEP = 100_000;
const deep = (inner: string) => '['.repeat(DEEP) + inner + ']'.repeat(DEEP);

/** A complete Responses answer whose usage counts more tokens than an int4 column holds. */
function hugeUsageResponse(id: string) {
  return {
    id,
    object: 'response',
    created_at: 1_700_000_000,
    status: 'completed',
    model: 'gpt-4o-mini',
    output: [
      { id: `msg_${id}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'a long one', annotations: [] }] },
    ],
    usage: {
      input_tokens: 3_000_000_000,
      input_tokens_details: { cached_tokens: 2_500_000_000 },
      output_tokens: 4_000_000_000,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 7_000_000_000,
    },
  };
}

const sse = (events: { type: string }[]) => events.map((e, i) => `event: ${e.type}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`).join('');

/**
 * Values PostgreSQL cannot store as they are (NUL in text and jsonb, nesting deeper than its parser's stack,
 * token counts above int4) arrive after the upstream was called and billed: the record must be written anyway.
 */
describe('exchange records: every value the upstream or the client sends is storable', () => {
  let app: TestApp;
  let fake: FakeUpstream;
  let o: ProxyTestOrg;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
    o = await proxyOrg(app, fake.url);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  /** The call reached the upstream, so it has its row, in a final state. */
  async function recordOf(res: { headers: Headers }): Promise<any> {
    const id = res.headers.get('x-request-id')!;
    return pollRequest(o.call, id, (r) => r.status !== 'pending', 5000);
  }

  it('a NUL in the model is a 400 before the upstream; a NUL in the upstream response id is stored as U+FFFD', async () => {
    for (const stream of [false, true]) {
      const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini\u0000x', input: `nul model ${stream}`, stream });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'model' });
      expect(fake.requests.length).toBe(0);
    }
    const body = hugeUsageResponse('resp_nul\u0000id');
    body.usage = { input_tokens: 3, input_tokens_details: { cached_tokens: 0 }, output_tokens: 2, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 5 };
    fake.enqueue({ kind: 'status', status: 200, body: JSON.stringify(body), contentType: 'application/json' });
    const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'nul id' });
    // the upstream was called, so the answer is its own
    expect(res.status).toBe(200);
    const rec = await recordOf(res);
    expect(rec).toMatchObject({ status: 'completed', response_id: 'resp_nul\uFFFDid' });
    fake.reset();
  });

  it('an upstream error whose message holds a NUL keeps its status and is recorded as failed', async () => {
    fake.enqueue({ kind: 'status', status: 400, body: { error: { message: 'bad\u0000value', type: 'invalid_request_error', code: null, param: null } } });
    const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'nul error' });
    expect(res.status).toBe(400);
    const rec = await recordOf(res);
    expect(rec.status).toBe('failed');
    expect(rec.upstream_status).toBe(400);
    expect(JSON.stringify(rec.error)).toContain('bad');
  });

  it('NUL and lone surrogates in the answer body and output text are stored (replaced), with the rest of the row', async () => {
    const body = hugeUsageResponse('resp_nul_body');
    body.usage = { input_tokens: 3, input_tokens_details: { cached_tokens: 0 }, output_tokens: 2, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 5 };
    body.output[0].content[0].text = 'a\u0000b\ud800c';
    fake.enqueue({ kind: 'status', status: 200, body: JSON.stringify(body), contentType: 'application/json' });
    const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'nul body' });
    expect(res.status).toBe(200);
    const rec = await recordOf(res);
    expect(rec).toMatchObject({ status: 'completed', response_id: 'resp_nul_body', output_text: 'a\uFFFDb\uFFFDc' });
    expect(rec.response_body.output[0].content[0].text).toBe('a\uFFFDb\uFFFDc');
    expect(rec.usage.total_tokens).toBe(5);
  });

  it('token counts above int4 are stored as they are, for a JSON answer and a stream', async () => {
    fake.enqueue({ kind: 'status', status: 200, body: JSON.stringify(hugeUsageResponse('resp_huge_json')), contentType: 'application/json' });
    const json = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'huge' });
    expect(json.status).toBe(200);
    const jsonRec = await recordOf(json);
    expect(jsonRec.status).toBe('completed');
    expect(jsonRec.usage).toMatchObject({ input_tokens: 3_000_000_000, output_tokens: 4_000_000_000, total_tokens: 7_000_000_000, cached_tokens: 2_500_000_000 });

    const final = hugeUsageResponse('resp_huge_stream');
    const initial = { ...final, status: 'in_progress', output: [], usage: null };
    fake.enqueue({
      kind: 'status',
      status: 200,
      contentType: 'text/event-stream; charset=utf-8',
      body: sse([
        { type: 'response.created', response: initial } as { type: string },
        { type: 'response.output_text.delta', item_id: 'msg_resp_huge_stream', output_index: 0, content_index: 0, delta: 'a long one' } as { type: string },
        { type: 'response.completed', response: final } as { type: string },
      ]),
    });
    const stream = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'huge', stream: true });
    expect(stream.status).toBe(200);
    expect(stream.text).toContain('response.completed');
    expect(stream.text).not.toContain('event: error');
    const streamRec = await recordOf(stream);
    expect(streamRec.status).toBe('completed');
    expect(streamRec.usage.total_tokens).toBe(7_000_000_000);
    const [raw] = await app.dataSource.query(`SELECT input_tokens FROM exchanges WHERE id = $1`, [streamRec.id]);
    expect(Number(raw.input_tokens)).toBe(3_000_000_000);
  });

  it('a request field and an answer field nested 100,000 levels deep: the row is written, the over-deep body kept as its text', async () => {
    const requestText = `{"model":"gpt-4o-mini","input":"deep request","x_deep":${deep('1')}}`;
    const res = await o.call('POST', '/v1/responses', requestText);
    if (res.status >= 400 && res.status < 500) {
      // refused before the upstream (a nesting bound at the door): nothing to record
      expect(fake.requests).toHaveLength(0);
    } else {
      expect(res.status).toBe(200);
      const rec = await recordOf(res);
      expect(rec.status).toBe('completed');
      expect(rec.output_text).toBe('Echo: deep request');
      expect(typeof rec.request_body).toBe('string');
      expect(rec.request_body).toBe(requestText);
    }

    const answer = JSON.stringify(hugeUsageResponse('resp_deep')).replace('"status":"completed"', `"status":"completed","x_deep":${deep('"v"')}`);
    fake.enqueue({ kind: 'status', status: 200, body: answer, contentType: 'application/json' });
    const deepAnswer = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'deep answer' });
    expect(deepAnswer.status).toBe(200);
    expect(deepAnswer.text).toBe(answer);
    const rec = await recordOf(deepAnswer);
    expect(rec).toMatchObject({ status: 'completed', response_id: 'resp_deep', output_text: 'a long one' });
    expect(rec.response_body).toBe(answer);
    // the database is still there (the embedded one would have died parsing it)
    expect((await o.call('GET', '/health')).status).toBe(200);
  });
});
