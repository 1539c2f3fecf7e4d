import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, pollRequest, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

/** A Responses stream as OpenAI sends it, in the given line ending, one event per chunk. */
function responsesScript(id: string, eol = '\n'): string[] {
  const resp = (status: string, extra: Record<string, unknown> = {}) => ({ id, object: 'response', status, model: 'gpt-4o-mini-2024-07-18', output: [], usage: null, ...extra });
  const done = resp('completed', {
    output: [{ id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hi there', annotations: [] }] }],
    usage: { input_tokens: 7, output_tokens: 2, total_tokens: 9 },
  });
  const ev = (type: string, body: Record<string, unknown>) => `event: ${type}${eol}data: ${JSON.stringify({ type, ...body })}${eol}${eol}`;
  return [
    ev('response.created', { response: resp('in_progress') }),
    ev('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi' }),
    ev('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: ' there' }),
    ev('response.completed', { response: done }),
  ];
}

describe('proxy streams: SSE by the specification, usage always counted, whole chat records, no key in any answer', () => {
  let app: TestApp;
  let fake: FakeUpstream;
  let o: ProxyTestOrg;
  let key: string;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
    key = `sk-proj-canary${randomBytes(24).toString('hex')}`;
    o = await proxyOrg(app, fake.url, key);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const post = (path: string, body: unknown, signal?: AbortSignal) =>
    fetch(`${app.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
  const record = async (res: Response) => (await o.call('GET', `/v1/requests/${res.headers.get('x-request-id')}`)).body;

  describe('the WHATWG event-stream rules (item 14): what the specification allows passes, byte for byte', () => {
    const cases: [string, (id: string) => (string | Buffer)[]][] = [
      ['an event without data (event: ping)', (id) => { const s = responsesScript(id); return [s[0], 'event: ping\n\n', ...s.slice(1)]; }],
      ['CR-only line endings', (id) => responsesScript(id, '\r')],
      ['CRLF line endings, split between chunks', (id) => responsesScript(id, '\r\n').flatMap((c) => [c.slice(0, -1), c.slice(-1)])],
      ['a byte order mark', (id) => { const s = responsesScript(id); return [Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(s[0])]), ...s.slice(1)]; }],
      ['comment lines', (id) => { const s = responsesScript(id); return [': keep-alive\n\n', s[0], `: ${'x'.repeat(100)}\n`, ...s.slice(1)]; }],
      ['a comment, then the first event split between chunks', (id) => { const s = responsesScript(id); return [`: keep-alive\n\n${s[0].slice(0, 12)}`, s[0].slice(12), ...s.slice(1)]; }],
      ['unknown fields and id/retry', (id) => { const s = responsesScript(id); return [`foo: bar\nid: 7\nretry: 1000\n${s[0]}`, ...s.slice(1, 3), `x-note\n${s[3]}`]; }],
    ];
    for (const [name, script] of cases) {
      it(name, async () => {
        const id = `resp_${randomBytes(8).toString('hex')}`;
        const chunks = script(id);
        fake.enqueue({ kind: 'sse', chunks });
        const res = await post('/v1/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true });
        expect(res.status).toBe(200);
        const bytes = Buffer.from(await res.arrayBuffer());
        expect(bytes.equals(Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))))).toBe(true);
        const rec = await record(res);
        expect(rec).toMatchObject({ status: 'completed', response_id: id, output_text: 'Hi there', usage: { input_tokens: 7, output_tokens: 2, total_tokens: 9 } });
      });
    }

    it('data that is not JSON is still a malformed stream (502)', async () => {
      fake.enqueue({ kind: 'malformed-sse' });
      const res = await post('/v1/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true });
      expect(res.status).toBe(502);
    });
  });

  describe('the upstream key never reaches the client or the record (streamed and not)', () => {
    const quote = () => `Incorrect API key provided: ${key}. You can find your API key at https://platform.openai.com/account/api-keys.`;
    const created = (id: string) => `event: response.created\ndata: ${JSON.stringify({ type: 'response.created', response: { id, object: 'response', status: 'in_progress', model: 'gpt-4o-mini' } })}\n\n`;
    const chatChunk = JSON.stringify({ id: 'chatcmpl-k', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }] });
    const cases: [string, 'responses' | 'chat', () => string[]][] = [
      ['Responses: event: error', 'responses', () => [created('resp_k1'), `event: error\ndata: ${JSON.stringify({ type: 'error', code: 'invalid_api_key', message: quote(), param: null, sequence_number: 1 })}\n\n`]],
      ['Responses: an error without an event name', 'responses', () => [created('resp_k2'), `data: ${JSON.stringify({ type: 'error', code: 'invalid_api_key', message: quote(), param: null })}\n\n`]],
      ['Responses: response.failed', 'responses', () => [
        created('resp_k3'),
        `event: response.failed\ndata: ${JSON.stringify({ type: 'response.failed', response: { id: 'resp_k3', object: 'response', status: 'failed', model: 'gpt-4o-mini', error: { code: 'invalid_api_key', message: quote() }, usage: null } })}\n\n`,
      ]],
      ['Chat: an {"error"} chunk', 'chat', () => [`data: ${chatChunk}\n\n`, `data: ${JSON.stringify({ error: { message: quote(), type: 'invalid_request_error', code: 'invalid_api_key', param: null } })}\n\n`]],
      ['Chat: event: error', 'chat', () => [`data: ${chatChunk}\n\n`, `event: error\ndata: ${JSON.stringify({ error: { message: quote(), type: 'invalid_request_error', code: 'invalid_api_key' } })}\n\n`]],
      ['Chat: the key split between two chunks', 'chat', () => {
        const ev = `data: ${JSON.stringify({ error: { message: quote(), type: 'invalid_request_error', code: 'invalid_api_key' } })}\n\n`;
        const cut = ev.indexOf(key) + 20;
        return [`data: ${chatChunk}\n\n`, ev.slice(0, cut), ev.slice(cut)];
      }],
    ];
    for (const [name, endpoint, script] of cases) {
      it(name, async () => {
        fake.enqueue({ kind: 'sse', chunks: script() });
        const res = await post(endpoint === 'chat' ? '/v1/chat/completions' : '/v1/responses', {
          model: 'gpt-4o-mini',
          stream: true,
          ...(endpoint === 'chat' ? { messages: [{ role: 'user', content: 'hi' }] } : { input: 'hi' }),
        });
        expect(res.status).toBe(200);
        const text = await res.text();
        expect(text).toContain('Incorrect API key provided: [redacted]');
        expect(text).not.toContain(key.slice(0, 16));
        const rec = await pollRequest(o.call, res.headers.get('x-request-id')!, (r) => r.status !== 'pending');
        expect(['upstream_error', 'failed']).toContain(rec.status);
        expect(JSON.stringify(rec.error)).toContain('[redacted]');
        expect(JSON.stringify(rec)).not.toContain(key.slice(0, 16));
      });
    }

    it('a non-streamed failed response quoting the key', async () => {
      fake.enqueue({ kind: 'status', status: 200, body: { id: 'resp_k4', object: 'response', status: 'failed', model: 'gpt-4o-mini', output: [], error: { code: 'invalid_api_key', message: quote() }, usage: null } });
      const res = await post('/v1/responses', { model: 'gpt-4o-mini', input: 'hi' });
      const text = await res.text();
      expect(text).not.toContain(key.slice(0, 16));
      expect(JSON.parse(text).error.message).toContain('[redacted]');
      const rec = await record(res);
      expect(rec.status).toBe('failed');
      expect(JSON.stringify(rec)).not.toContain(key.slice(0, 16));
    });
  });

  describe('usage is always counted (item 6)', () => {
    const chat = (extra: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'count me please' }], stream: true, ...extra });

    it('a chat stream without include_usage: usage asked of the upstream, its chunk not shown, the record counted', async () => {
      const res = await post('/v1/chat/completions', chat());
      const text = await res.text();
      expect(fake.requests[0].body.stream_options).toEqual({ include_usage: true });
      // only the member was added: the client's bytes otherwise reach the upstream as sent
      expect(fake.requests[0].rawBody).toBe(`{"stream_options":{"include_usage":true},${JSON.stringify(chat()).slice(1)}`);
      const chunks = parseSse(text).filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
      expect(chunks.length).toBeGreaterThan(2);
      expect(chunks.every((c) => c.choices.length > 0 && !c.usage)).toBe(true);
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
      const rec = await record(res);
      expect(rec.status).toBe('completed');
      expect(rec.usage.total_tokens).toBeGreaterThan(0);
      expect(rec.cost).toBeGreaterThan(0);
      expect(rec.response_body.usage.estimated).toBeUndefined();

      // through the SDK too
      const stream = await o.client.chat.completions.create(chat() as any);
      let content = '';
      for await (const c of stream as any) content += c.choices[0]?.delta?.content ?? '';
      expect(content).toBe('Echo: count me please');
    });

    it('include_usage: false is overridden upstream and hidden; a client that asked sees its usage chunk', async () => {
      const off = await post('/v1/chat/completions', chat({ stream_options: { include_usage: false } }));
      const offText = await off.text();
      expect(fake.requests[0].body.stream_options).toEqual({ include_usage: true });
      expect(parseSse(offText).some((e) => e.data !== '[DONE]' && JSON.parse(e.data).choices.length === 0)).toBe(false);
      expect((await record(off)).usage.total_tokens).toBeGreaterThan(0);

      const on = await post('/v1/chat/completions', chat({ stream_options: { include_usage: true } }));
      const onText = await on.text();
      const usageChunk = parseSse(onText).find((e) => e.data !== '[DONE]' && JSON.parse(e.data).choices.length === 0);
      expect(JSON.parse(usageChunk!.data).usage.total_tokens).toBeGreaterThan(0);
    });

    const cut = async (endpoint: 'chat' | 'responses', how: 'abort' | 'reset') => {
      const body =
        endpoint === 'chat'
          ? { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a long question that is cut short' }], stream: true }
          : { model: 'gpt-4o-mini', input: 'a long question that is cut short', stream: true };
      if (how === 'reset') fake.enqueue({ kind: 'reset-mid-stream', afterEvents: endpoint === 'chat' ? 3 : 6 });
      else fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 300 });
      const ac = new AbortController();
      const res = await post(endpoint === 'chat' ? '/v1/chat/completions' : '/v1/responses', body, ac.signal);
      if (how === 'abort') {
        const reader = res.body!.getReader();
        let seen = '';
        while (!seen.includes(endpoint === 'chat' ? '"content":"Ec' : 'output_text.delta')) seen += Buffer.from((await reader.read()).value!).toString();
        ac.abort();
      } else await res.text();
      const rec = await pollRequest(o.call, res.headers.get('x-request-id')!, (r) => r.status !== 'pending');
      expect(rec.status).toBe(how === 'abort' ? 'client_aborted' : 'upstream_error');
      expect(rec.usage.input_tokens).toBeGreaterThan(5);
      expect(rec.usage.output_tokens).toBeGreaterThan(0);
      expect(rec.usage.total_tokens).toBe(rec.usage.input_tokens + rec.usage.output_tokens);
      expect(rec.cost).toBeGreaterThan(0);
      expect(rec.response_body.usage.estimated).toBe(true);
    };
    it('an aborted chat stream is counted by estimate', () => cut('chat', 'abort'));
    it('a cut chat stream is counted by estimate', () => cut('chat', 'reset'));
    it('an aborted Responses stream is counted by estimate', () => cut('responses', 'abort'));
    it('a cut Responses stream is counted by estimate', () => cut('responses', 'reset'));

    it('a JSON call abandoned while the upstream works is counted by estimate', async () => {
      fake.enqueue({ kind: 'delay', ms: 3000 });
      const ac = new AbortController();
      const pending = post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'abandon me' }] }, ac.signal).catch(() => undefined);
      while (fake.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
      ac.abort();
      await pending;
      let rec: any;
      for (let i = 0; i < 100 && rec?.status !== 'client_aborted'; i++) {
        rec = (await o.call('GET', `/v1/requests?limit=1`)).body.data[0];
        await new Promise((r) => setTimeout(r, 30));
      }
      expect(rec.status).toBe('client_aborted');
      expect(rec.usage.input_tokens).toBeGreaterThan(0);
      expect(rec.response_body.usage.estimated).toBe(true);
    });
  });

  describe('a budget cannot be escaped by the shape of a request', () => {
    const shapes: [string, (b: ProxyTestOrg) => Promise<void>][] = [
      ['a chat stream without include_usage', async (b) => {
        await (await b.call('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })).text;
      }],
      ['an aborted chat stream', async (b) => {
        fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 300 });
        const ac = new AbortController();
        const res = await fetch(`${app.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${b.token}`, 'x-user-id': b.userId, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
          signal: ac.signal,
        });
        await res.body!.getReader().read();
        ac.abort();
      }],
      ['a cut Responses stream', async (b) => {
        fake.enqueue({ kind: 'reset-mid-stream', afterEvents: 5 });
        await b.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true });
      }],
    ];
    for (const [name, spend] of shapes) {
      it(name, async () => {
        const b = await proxyOrg(app, fake.url, `sk-budget-${randomUUID()}`);
        await app.app.get(LimitsAdminService).setOrganizationLimits(b.orgId, { daily_budget_usd: 1e-9 }, cliActor());
        await spend(b);
        await waitFor(async () => (await b.call('GET', '/v1/limits')).body.organization.usage.cost_today_usd > 0, 5000, 'the call to be counted');
        const next = await b.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'more' });
        expect(next.status).toBe(429);
        expect(next.body.error.code).toBe('budget_exceeded');
      });
    }
  });

  describe('streamed chat records equal the non-streamed answer (item 7)', () => {
    const weather = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
    const time = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };
    const shapes: [string, Record<string, unknown>][] = [
      ['text', {}],
      ['several choices', { n: 3 }],
      ['parallel tool calls', { tools: [weather, time] }],
      ['a refusal', { messages: [{ role: 'user', content: 'REFUSE this' }] }],
      ['logprobs', { logprobs: true, n: 2 }],
    ];
    for (const [name, extra] of shapes) {
      it(name, async () => {
        const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'same content' }], ...extra };
        const plain = await post('/v1/chat/completions', body);
        const answer: any = await plain.json();
        const streamed = await post('/v1/chat/completions', { ...body, stream: true });
        await streamed.text();
        const stored = (await record(streamed)).response_body;
        const normal = (await record(plain)).response_body;
        expect(normal).toEqual(answer);
        // the same answer but for its id, time and tool-call ids
        const same = (v: any) => JSON.parse(JSON.stringify({ ...v, id: 'x', created: 0 }).replace(/call_[0-9a-f]+/g, 'call_x'));
        expect(same(stored)).toEqual(same(answer));
        const rec = await record(streamed);
        expect(rec.usage.total_tokens).toBe(answer.usage.total_tokens);
      });
    }
  });

  it('background: true is recorded queued, and GET /v1/responses/{id} asks the upstream (item 8)', async () => {
    const res = await post('/v1/responses', { model: 'gpt-4o-mini', input: 'later', background: true });
    const queued: any = await res.json();
    expect(queued.status).toBe('queued');
    const rec = await record(res);
    expect(rec.status).toBe('queued');
    expect(rec.response_id).toBe(queued.id);
    const later = await o.call('GET', `/v1/responses/${queued.id}`);
    expect(later.status).toBe(200);
    expect(later.body).toMatchObject({ id: queued.id, status: 'completed' });
    expect(fake.requests.at(-1)).toMatchObject({ method: 'GET', path: `/v1/responses/${queued.id}` });
    expect(fake.requests.at(-1)!.headers.authorization).toBe(`Bearer ${key}`);
  });

  describe('bounds checked before anything else', () => {
    it('a model name longer than 256 characters is a 400 on param model: no upstream call, no record', async () => {
      for (const path of ['/v1/responses', '/v1/chat/completions']) {
        const res = await post(path, { model: 'g'.repeat(257), input: 'x', messages: [] });
        expect(res.status).toBe(400);
        expect(((await res.json()) as any).error).toMatchObject({ type: 'invalid_request_error', param: 'model' });
        expect((await o.call('GET', `/v1/requests/${res.headers.get('x-request-id')}`)).status).toBe(404);
      }
      const ok = await post('/v1/responses', { model: 'g'.repeat(256), input: 'x' });
      expect(ok.status).toBe(200);
      expect(fake.requests).toHaveLength(1);
    });

    it('previous_response_id with a NUL or of absurd length is a 400', async () => {
      for (const previous of ['resp_\u0000abc', `resp_${'a'.repeat(300)}`]) {
        const res = await post('/v1/responses', { model: 'gpt-4o-mini', input: 'x', previous_response_id: previous });
        expect(res.status).toBe(400);
        expect(((await res.json()) as any).error).toMatchObject({ type: 'invalid_request_error', param: 'previous_response_id' });
      }
      expect(fake.requests).toHaveLength(0);
    });
  });
});
