import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, proxyOrg, ProxyTestOrg } from '../support/proxy-test-helpers';

/**
 * The proxy routes are served two ways: plain requests straight from node:http (ProxyDispatch), everything else
 * (compressed bodies, other spellings of the path) through Express and ProxyController. Both must answer alike.
 */
describe('proxy dispatch: the node:http path and the Express path answer alike', () => {
  let app: TestApp;
  let fake: FakeUpstream;
  let o: ProxyTestOrg;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ BODY_LIMIT: '2kb' });
    o = await proxyOrg(app, fake.url);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const send = (path: string, body: Buffer | string | undefined, headers: Record<string, string> = {}, auth = true) =>
    fetch(`${app.url}${path}`, {
      method: 'POST',
      headers: { ...(auth ? { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId } : {}), ...headers },
      body,
    });

  it('a plain body, a gzip-compressed body, a trailing slash and a query string all forward the same bytes and are recorded', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', input: 'same either way' });
    const answers = [
      await send('/v1/responses', body, { 'content-type': 'application/json' }),
      await send('/v1/responses', gzipSync(body), { 'content-type': 'application/json', 'content-encoding': 'gzip' }),
      await send('/v1/responses/', body, { 'content-type': 'application/json; charset=utf-8' }),
      await send('/v1/responses?x=1', body, { 'content-type': 'application/vnd.api+json' }),
    ];
    const texts: string[] = [];
    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      texts.push(await res.text());
    }
    // the upstream's answer, byte for byte (its ids differ per call)
    const shapes = texts.map((t) => t.replace(/"(resp|msg)_[A-Za-z0-9]+"/g, '"id"').replace(/"created_at":\d+/g, '"created_at":0'));
    expect(new Set(shapes).size).toBe(1);
    expect(JSON.parse(texts[0])).toMatchObject({ object: 'response', status: 'completed' });
    expect(fake.requests.map((r) => r.rawBody)).toEqual([body, body, body, body]);
    for (const res of answers) {
      const rec = await o.call('GET', `/v1/requests/${res.headers.get('x-request-id')}`);
      expect(rec.body).toMatchObject({ status: 'completed', user_id: o.userId, output_text: 'Echo: same either way' });
    }
  });

  it('streams on both paths relay the same events and record the same answer', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream me' }], stream: true });
    const plain = await send('/v1/chat/completions', body, { 'content-type': 'application/json' });
    const zipped = await send('/v1/chat/completions', gzipSync(body), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    const events = [parseSse(await plain.text()), parseSse(await zipped.text())];
    expect(events[0].at(-1)!.data).toBe('[DONE]');
    expect(events[1].map((e) => e.event)).toEqual(events[0].map((e) => e.event));
    for (const res of [plain, zipped]) {
      const rec = await o.call('GET', `/v1/requests/${res.headers.get('x-request-id')}`);
      expect(rec.body).toMatchObject({ status: 'completed', stream: true, endpoint: 'chat.completions' });
      expect(rec.body.output_text).toContain('stream me');
    }
  });

  it('body errors are the same 400/413 on both paths, and always 401 first without a token', async () => {
    const cases: { body: Buffer | string; headers?: Record<string, string>; status: number; message: RegExp }[] = [
      { body: '{"model": "gpt-4o-mini", "input": ', status: 400, message: /not valid JSON/ },
      { body: '"just a string"', status: 400, message: /not valid JSON/ },
      { body: '123', status: 400, message: /not valid JSON/ },
      { body: '[1, 2]', status: 400, message: /must be a JSON object/ },
      { body: '', status: 400, message: /must be a JSON object/ },
      { body: JSON.stringify({ model: 'm', input: 'x'.repeat(4000) }), status: 413, message: /larger than the limit/ },
    ];
    for (const c of cases) {
      for (const zip of [false, true]) {
        const payload = zip ? gzipSync(c.body) : c.body;
        const headers = { 'content-type': 'application/json', ...(zip ? { 'content-encoding': 'gzip' } : {}) };
        const res = await send('/v1/responses', payload, headers);
        const text = await res.text();
        expect(res.status, `${String(c.body).slice(0, 20)} zip=${zip}: ${text}`).toBe(c.status);
        const err = JSON.parse(text).error;
        expect(err.type).toBe('invalid_request_error');
        expect(err.message, `${String(c.body).slice(0, 20)} zip=${zip}`).toMatch(c.message);
        const anonymous = await send('/v1/responses', payload, headers, false);
        expect(anonymous.status).toBe(401);
      }
    }
    expect(fake.requests).toHaveLength(0);
  });

  it('a body over the limit sent without Content-Length (chunked) is a 413 as soon as the limit is passed', async () => {
    const chunks = [Buffer.from('{"model":"m","input":"'), Buffer.alloc(4096, 0x61), Buffer.from('"}')];
    const stream = new ReadableStream({
      start(controller) {
        for (const c of chunks) controller.enqueue(c);
        controller.close();
      },
    });
    const res = await fetch(`${app.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.code).toBe('body_too_large');
    expect(fake.requests).toHaveLength(0);
    // the server is fine afterwards
    expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'after' })).status).toBe(200);
  });

  it('a body in another charset goes through Express, which refuses it clearly', async () => {
    const res = await send('/v1/responses', '{"model":"m","input":"x"}', { 'content-type': 'application/json; charset=latin1' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.message).toMatch(/encoding/);
  });

  it('both paths are counted under the route template in /metrics', async () => {
    await send('/v1/responses', JSON.stringify({ model: 'gpt-4o-mini', input: 'count me' }), { 'content-type': 'application/json' });
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    const line = metrics.split('\n').find((l) => l.startsWith('openai_proxy_http_requests_total') && l.includes('route="/v1/responses"') && l.includes('status="200"'));
    expect(line, metrics.slice(0, 2000)).toBeDefined();
    expect(Number(line!.split(' ').at(-1))).toBeGreaterThan(0);
  });
});
