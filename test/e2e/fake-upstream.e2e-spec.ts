import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import OpenAI from 'openai';
import { startFakeUpstream, type FakeUpstream, type StructuredFaultMode } from '../support/fake-upstream';

const CATEGORIES = ['billing', 'technical', 'account', 'feedback', 'other'];

const analysisSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['primary_category', 'confidence', 'categories', 'topics', 'summary', 'language', 'escalate', 'turns'],
  properties: {
    primary_category: { type: 'string', enum: CATEGORIES },
    confidence: { type: 'number' },
    categories: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'score', 'reasoning'],
        properties: {
          name: { type: 'string', enum: CATEGORIES },
          score: { type: 'number' },
          reasoning: { type: 'string' },
        },
      },
    },
    topics: { type: 'array', items: { type: 'string' } },
    summary: { type: ['string', 'null'] },
    language: { anyOf: [{ type: 'string', enum: ['en', 'de'] }, { type: 'null' }] },
    escalate: { type: 'boolean' },
    turns: { type: 'integer' },
  },
};

const json = (r: Response): Promise<any> => r.json();

function jsonSchemaBody(input = 'analyze this') {
  return {
    model: 'gpt-4o-mini',
    input,
    text: { format: { type: 'json_schema', name: 'analysis', schema: analysisSchema, strict: true } },
  };
}

describe('fake upstream', () => {
  let fake: FakeUpstream;
  let client: OpenAI;

  const post = (path: string, body: unknown, init: RequestInit = {}) =>
    fetch(`${fake.url}${path}`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-test', 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...init,
    });

  beforeAll(async () => {
    fake = await startFakeUpstream();
    client = new OpenAI({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it('responses.create non-streaming', async () => {
    const { data: resp, response } = await client.responses
      .create({ model: 'gpt-4o-mini', input: 'hello world', instructions: 'Be brief.' })
      .withResponse();
    expect(resp.id).toMatch(/^resp_[0-9a-f]+$/);
    expect(resp.object).toBe('response');
    expect(resp.status).toBe('completed');
    expect(resp.model).toBe('gpt-4o-mini');
    expect(resp.instructions).toBe('Be brief.');
    expect(resp.output_text).toBe('Echo: hello world');
    expect(resp.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    expect(resp.usage).toMatchObject({
      input_tokens: Math.ceil(('Be brief.'.length + 'hello world'.length) / 4),
      output_tokens: 3,
      total_tokens: 5 + 3,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens_details: { reasoning_tokens: 0 },
    });
    expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]+$/);
    expect(response.headers.get('openai-processing-ms')).toMatch(/^\d+$/);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({ method: 'POST', path: '/v1/responses' });
    expect(fake.requests[0].headers.authorization).toBe('Bearer sk-test');
    expect(fake.requests[0].body.model).toBe('gpt-4o-mini');
  });

  it('responses input as message array', async () => {
    const resp = await client.responses.create({
      model: 'gpt-4o-mini',
      input: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: [{ type: 'input_text', text: 'second question' }] },
      ],
      previous_response_id: 'resp_prev',
    });
    expect(resp.output_text).toBe('Echo: second question');
    expect(resp.previous_response_id).toBe('resp_prev');
  });

  it('responses.create stream:true with the full event sequence', async () => {
    const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'stream me please', stream: true });
    const types: string[] = [];
    const seqs: number[] = [];
    let text = '';
    let completed: any;
    for await (const ev of stream) {
      types.push(ev.type);
      seqs.push(ev.sequence_number);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') completed = ev.response;
    }
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array(5).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(text).toBe('Echo: stream me please');
    expect(completed.usage.output_tokens).toBe(4);
  });

  it('client.responses.stream helper', async () => {
    fake.options.deltaCount = 3;
    try {
      const stream = client.responses.stream({ model: 'gpt-4o-mini', input: 'helper stream' });
      let deltas = 0;
      stream.on('response.output_text.delta', () => deltas++);
      const final = await stream.finalResponse();
      expect(final.output_text).toBe('Echo: helper stream');
      expect(final.status).toBe('completed');
      expect(deltas).toBe(3);
    } finally {
      fake.options.deltaCount = 5;
    }
  });

  it('chat.completions non-streaming and streaming', async () => {
    const c = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'hi there' },
      ],
    });
    expect(c.id).toMatch(/^chatcmpl-/);
    expect(c.object).toBe('chat.completion');
    expect(c.choices[0].message.content).toBe('Echo: hi there');
    expect(c.choices[0].finish_reason).toBe('stop');
    expect(c.usage).toMatchObject({ prompt_tokens: Math.ceil(11 / 4), completion_tokens: 3, total_tokens: 6 });

    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'stream chat' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let role: string | undefined;
    let finish: string | null | undefined;
    let usage: any;
    let n = 0;
    for await (const chunk of stream) {
      n++;
      expect(chunk.object).toBe('chat.completion.chunk');
      const choice = chunk.choices[0];
      if (choice) {
        if (choice.delta.role) role = choice.delta.role;
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(n).toBe(1 + 5 + 1 + 1);
    expect(role).toBe('assistant');
    expect(text).toBe('Echo: stream chat');
    expect(finish).toBe('stop');
    expect(usage).toMatchObject({ completion_tokens: 3 });

    const raw = await (await post('/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true })).text();
    expect(raw).not.toContain('event:');
    expect(raw.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('chat: several choices, parallel tool calls, refusals and logprobs, streamed as the SDK accumulates them into the plain answer', async () => {
    const tools = ['get_weather', 'get_time'].map((name) => ({ type: 'function' as const, function: { name, parameters: { type: 'object', properties: {} } } }));
    const shapes: Record<string, unknown>[] = [{ n: 2 }, { tools }, { messages: [{ role: 'user', content: 'REFUSE it' }] }, { logprobs: true }];
    for (const shape of shapes) {
      const body: any = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'same' }], ...shape };
      const plain = await client.chat.completions.create(body);
      const final = await client.chat.completions.stream(body).finalChatCompletion();
      expect(final.choices).toHaveLength(plain.choices.length);
      final.choices.forEach((c, i) => {
        const p = plain.choices[i];
        expect(c.finish_reason).toBe(p.finish_reason);
        expect(c.message.content).toBe(p.message.content);
        expect(c.message.refusal).toBe(p.message.refusal);
        expect(c.message.tool_calls?.map((t: any) => ({ name: t.function.name, arguments: t.function.arguments }))).toEqual(
          p.message.tool_calls?.map((t: any) => ({ name: t.function.name, arguments: t.function.arguments })),
        );
        expect(c.logprobs?.content ?? null).toEqual(p.logprobs?.content ?? null);
      });
    }
    const calls = (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], tools })).choices[0];
    expect(calls.finish_reason).toBe('tool_calls');
    expect(calls.message.tool_calls!.map((t: any) => t.function.name)).toEqual(['get_weather', 'get_time']);
  });

  it('fault: a scripted event stream is sent as given; a background response is queued, then finished when asked for', async () => {
    const chunks = ['event: ping\n\n', 'data: {"a":1}\r\r', ': c\n\n'];
    fake.enqueue({ kind: 'sse', chunks });
    const r = await post('/responses', { model: 'gpt-4o-mini', input: 'x', stream: true });
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    expect(await r.text()).toBe(chunks.join(''));

    const queued = await client.responses.create({ model: 'gpt-4o-mini', input: 'later', background: true });
    expect(queued.status).toBe('queued');
    expect(queued.usage).toBeNull();
    const done = await client.responses.retrieve(queued.id);
    expect(done.status).toBe('completed');
    expect(done.output_text).toBe('Echo: later');
    await expect(client.responses.retrieve('resp_unknown')).rejects.toMatchObject({ status: 404 });
  });

  it('models.list', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toContain('gpt-4o-mini');
    expect(ids.length).toBeGreaterThan(2);
  });

  it('auth and validation errors', async () => {
    const noAuth = await fetch(`${fake.url}/responses`, { method: 'POST', body: '{}' });
    expect(noAuth.status).toBe(401);
    expect((await json(noAuth)).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key', param: null });

    const bad = new OpenAI({ apiKey: 'sk-invalid', baseURL: fake.url, maxRetries: 0 });
    await expect(bad.responses.create({ model: 'gpt-4o-mini', input: 'x' })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(fake.requests.at(-1)!.headers.authorization).toBe('Bearer sk-invalid');

    const noModel = await post('/responses', { input: 'x' });
    expect(noModel.status).toBe(400);
    expect((await json(noModel)).error.param).toBe('model');

    await expect(client.responses.create({ model: 'fail-400', input: 'x' })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('The model `fail-400` does not exist'),
    });

    const notFound = await post('/nope', {});
    expect(notFound.status).toBe(404);
    expect((await json(notFound)).error.message).toContain('Invalid URL');

    const malformed = await post('/responses', '{"model": ');
    expect(malformed.status).toBe(400);
    expect(fake.requests.at(-1)!.rawBody).toBe('{"model": ');
    expect(fake.requests.at(-1)!.body).toBeUndefined();
  });

  it('structured output with a categories enum', async () => {
    const resp = await client.responses.create(jsonSchemaBody() as any);
    const parsed = JSON.parse(resp.output_text);
    expect(parsed.categories.map((c: any) => c.name)).toEqual(CATEGORIES);
    const scores: number[] = parsed.categories.map((c: any) => c.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
    for (const s of scores) expect(s >= 0 && s <= 1).toBe(true);
    expect(scores[0]).toBe(0.9);
    for (const c of parsed.categories) expect(typeof c.reasoning).toBe('string');
    expect(parsed.primary_category).toBe(CATEGORIES[0]);
    expect(parsed.confidence).toBe(scores[0]);
    expect(parsed.topics).toHaveLength(2);
    expect(typeof parsed.topics[0]).toBe('string');
    expect(typeof parsed.summary).toBe('string');
    expect(parsed.language).toBe('en');
    expect(parsed.escalate).toBe(true);
    expect(parsed.turns).toBe(1);

    // streamed structured output: the same JSON arrives in deltas
    const stream = client.responses.stream(jsonSchemaBody() as any);
    const final = await stream.finalResponse();
    expect(JSON.parse(final.output_text)).toEqual(parsed);

    // structuredAnswer override
    fake.structuredAnswer = (schema) => ({ custom: true, hasProps: !!schema.properties });
    const custom = await client.responses.create(jsonSchemaBody() as any);
    expect(JSON.parse(custom.output_text)).toEqual({ custom: true, hasProps: true });
  });

  it('structured fault modes', async () => {
    const get = async () => (await json(await post('/responses', jsonSchemaBody()))).output[0].content[0].text as string;
    const invalid = await getAfter(fake, get, 'invalid-json');
    expect(() => JSON.parse(invalid)).toThrow();

    const wrong = JSON.parse(await getAfter(fake, get, 'wrong-category'));
    expect(wrong.categories.some((c: any) => !CATEGORIES.includes(c.name))).toBe(true);

    const missing = JSON.parse(await getAfter(fake, get, 'missing-category'));
    expect(missing.categories).toHaveLength(CATEGORIES.length - 1);

    const range = JSON.parse(await getAfter(fake, get, 'score-out-of-range'));
    expect(range.categories.some((c: any) => c.score > 1)).toBe(true);

    const unsorted = JSON.parse(await getAfter(fake, get, 'unsorted'));
    const s: number[] = unsorted.categories.map((c: any) => c.score);
    expect(s[0]).toBeLessThan(s[s.length - 1]);
  });

  it('fault: status with Retry-After, queue before default fault', async () => {
    fake.setDefaultFault({ kind: 'status', status: 503 });
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '2' });
    const r1 = await post('/responses', { model: 'gpt-4o-mini', input: 'x' });
    expect(r1.status).toBe(429);
    expect(r1.headers.get('retry-after')).toBe('2');
    expect(r1.headers.get('x-request-id')).toMatch(/^req_/);
    expect((await json(r1)).error.code).toBe('rate_limit_exceeded');
    const r2 = await post('/chat/completions', { model: 'gpt-4o-mini', messages: [] });
    expect(r2.status).toBe(503);
    await r2.text();
    fake.setDefaultFault(undefined);
    const r3 = await fetch(`${fake.url}/models`, { headers: { authorization: 'Bearer sk-test' } });
    expect(r3.status).toBe(200);
    await r3.text();
    expect(fake.requests).toHaveLength(3);
  });

  it('fault: reset', async () => {
    fake.enqueue({ kind: 'reset' });
    await expect(post('/responses', { model: 'gpt-4o-mini', input: 'x' })).rejects.toThrow();
    expect(fake.requests).toHaveLength(1);
  });

  it('fault: stall', async () => {
    fake.enqueue({ kind: 'stall' });
    const t0 = Date.now();
    await expect(
      post('/responses', { model: 'gpt-4o-mini', input: 'x' }, { signal: AbortSignal.timeout(150) }),
    ).rejects.toThrow();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it('fault: delay and slow-stream', async () => {
    fake.enqueue({ kind: 'delay', ms: 120 });
    let t0 = Date.now();
    const r = await post('/responses', { model: 'gpt-4o-mini', input: 'x' });
    expect(r.status).toBe(200);
    await r.json();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(110);

    fake.enqueue({ kind: 'slow-stream', firstByteMs: 50, eventIntervalMs: 10 });
    t0 = Date.now();
    const s = await post('/responses', { model: 'gpt-4o-mini', input: 'x', stream: true });
    const text = await s.text();
    expect(text).toContain('event: response.completed');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50 + 12 * 10 - 10);
  });

  it('fault: malformed json / sse', async () => {
    fake.enqueue({ kind: 'malformed-json' });
    const r = await post('/responses', { model: 'gpt-4o-mini', input: 'x' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    await expect(r.json()).rejects.toThrow();

    fake.enqueue({ kind: 'malformed-sse' });
    await expect(
      (async () => {
        const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'x', stream: true });
        for await (const _ of stream) void _;
      })(),
    ).rejects.toThrow();
  });

  it('fault: redirect, set-cookie, huge', async () => {
    fake.enqueue({ kind: 'redirect' });
    const r = await post('/responses', { model: 'gpt-4o-mini', input: 'x' }, { redirect: 'manual' });
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toContain('/v1/');
    await r.text();

    fake.enqueue({ kind: 'redirect', location: 'http://127.0.0.1:1/elsewhere' });
    const r2 = await post('/responses', { model: 'gpt-4o-mini', input: 'x' }, { redirect: 'manual' });
    expect(r2.headers.get('location')).toBe('http://127.0.0.1:1/elsewhere');
    await r2.text();

    fake.enqueue({ kind: 'set-cookie' });
    const c = await post('/responses', { model: 'gpt-4o-mini', input: 'cookie' });
    expect(c.status).toBe(200);
    expect(c.headers.getSetCookie().length).toBeGreaterThan(0);
    expect((await json(c)).output[0].content[0].text).toBe('Echo: cookie');

    fake.enqueue({ kind: 'huge', bytes: 2_000_000 });
    const h = await post('/responses', { model: 'gpt-4o-mini', input: 'x' });
    const raw = await h.text();
    expect(Math.abs(raw.length - 2_000_000)).toBeLessThan(1000);
    expect(JSON.parse(raw).output[0].content[0].text.length).toBeGreaterThan(1_990_000);
  });

  it('fault: reset-mid-stream', async () => {
    fake.enqueue({ kind: 'reset-mid-stream', afterEvents: 3 });
    const r = await post('/responses', { model: 'gpt-4o-mini', input: 'x', stream: true });
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    await expect(
      (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          received += decoder.decode(value, { stream: true });
        }
      })(),
    ).rejects.toThrow();
    expect(received.match(/^event: /gm)).toHaveLength(3);

    fake.enqueue({ kind: 'reset-mid-stream', afterEvents: 0 });
    await expect(
      (async () => {
        const s = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true });
        for await (const _ of s) void _;
      })(),
    ).rejects.toThrow();

    fake.enqueue({ kind: 'reset-mid-stream', afterEvents: 1 });
    const nr = await post('/responses', { model: 'gpt-4o-mini', input: 'x' });
    await expect(nr.text()).rejects.toThrow();
  });

  it('--burst --replay (the benchmark\'s direct system): a request answered before gets the same bytes; another body, a fault or a change of options does not', async () => {
    const direct = await startFakeUpstream({ burst: true, replay: true, deltaCount: 3 });
    try {
      const call = async (input: string, stream = true) => {
        const res = await fetch(`${direct.url}/responses`, {
          method: 'POST',
          headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', input, stream }),
        });
        return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
      };
      const first = await call('a');
      expect(first.status).toBe(200);
      expect(first.type).toMatch(/^text\/event-stream/);
      expect(first.text).toContain('event: response.completed');
      // answered again: the same bytes, the response ids included (built anew, they would differ)
      expect(await call('a')).toEqual(first);
      expect((await call('a', false)).text).not.toEqual(first.text);
      const other = await call('b');
      expect(other.text).toContain('Echo: b');
      expect(other.text).not.toEqual(first.text);
      // a fault is not replayed over, and an answer is not kept from it
      direct.enqueue({ kind: 'status', status: 500 });
      expect((await call('a')).status).toBe(500);
      expect(await call('a')).toEqual(first);
      // a change of options drops what was kept
      const patched = await fetch(`${direct.url.replace(/\/v1$/, '')}/__fake/options`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ deltaCount: 2 }),
      });
      expect(patched.status).toBe(200);
      const after = await call('a');
      expect(after.status).toBe(200);
      expect(after.text).not.toEqual(first.text);
      expect(await call('a')).toEqual(after);
      // without --replay every answer is built anew
      const plain = await startFakeUpstream({ burst: true, deltaCount: 3 });
      try {
        const res = () => fetch(`${plain.url}/responses`, { method: 'POST', headers: { authorization: 'Bearer k', 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', input: 'a', stream: true }) }).then((r) => r.text());
        expect(await res()).not.toEqual(await res());
      } finally {
        await plain.close();
      }
    } finally {
      await direct.close();
    }
  });

  it('close() is fast even with stalled requests', async () => {
    const other = await startFakeUpstream();
    other.setDefaultFault({ kind: 'stall' });
    const pending = fetch(`${other.url}/models`, { headers: { authorization: 'Bearer k' } }).catch((e: unknown) => e);
    while (other.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    await other.close();
    expect(Date.now() - t0).toBeLessThan(500);
    expect(await pending).toBeInstanceOf(Error);
  });
});

async function getAfter(fake: FakeUpstream, get: () => Promise<string>, mode: StructuredFaultMode): Promise<string> {
  fake.reset();
  fake.enqueue({ kind: 'structured', mode });
  return get();
}
