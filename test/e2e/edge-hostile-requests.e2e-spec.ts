import * as http from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, ProxyTestOrg } from '../support/proxy-test-helpers';
import { rawRequest } from '../support/raw-http';

const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function head(method: string, path: string, headers: Record<string, string | number>): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

/** A chunked body that never ends: one small chunk every `everyMs`. */
function neverEnding(everyMs: number) {
  return async function* () {
    yield '1\r\n[\r\n';
    for (;;) {
      await sleep(everyMs);
      yield '1\r\n \r\n';
    }
  };
}

/** The bytes in 64 KB writes, each after the last was taken. */
function inChunks(bytes: Buffer) {
  return async function* () {
    for (let i = 0; i < bytes.length; i += 64 * 1024) yield bytes.subarray(i, i + 64 * 1024);
  };
}

function expectEnvelope(body: any, type = 'invalid_request_error') {
  expect(body?.error, JSON.stringify(body)).toBeDefined();
  expect(body.error.type).toBe(type);
  expect(typeof body.error.message).toBe('string');
  expect(body.error).toHaveProperty('code');
  expect(body.error).toHaveProperty('param');
}

describe('hostile requests at the HTTP edge', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let attacker: ProxyTestOrg;
  let victim: ProxyTestOrg;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'info', HEADERS_TIMEOUT_MS: '1500', REQUEST_TIMEOUT_MS: '3000' });
    [attacker, victim] = await Promise.all([proxyOrg(app, fake.url), proxyOrg(app, fake.url)]);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  const auth = (o: ProxyTestOrg) => ({ authorization: `Bearer ${o.token}`, 'x-user-id': o.userId });

  it('deep, huge and never-ending bodies are refused quickly while /health and another tenant’s calls stay fast', async () => {
    const deep = Buffer.alloc(10_000_000, '[');
    deep.fill(']', 5_000_000);
    const wide = Buffer.from(`[${'0,'.repeat(1_200_000)}0]`);
    const hostile = [
      // with a token: parsed only after authentication, and refused before JSON.parse
      ...['/v1/personas', '/v1/responses', '/v1/analysis/configs'].map((path) =>
        rawRequest(app.port, head('POST', path, { ...auth(attacker), 'content-type': 'application/json', 'content-length': deep.length }), { body: deep }),
      ),
      rawRequest(app.port, head('POST', '/v1/personas', { ...auth(attacker), 'content-type': 'application/json', 'content-length': wide.length }), { body: wide }),
      // without a token: 401 before a byte of the body is read, eight at once
      ...Array.from({ length: 8 }, () =>
        rawRequest(app.port, head('POST', '/v1/personas', { 'x-user-id': 'mallory', 'content-type': 'application/json', 'content-length': deep.length }), {
          body: deep,
        }),
      ),
      // a body that never ends, with and without a token
      rawRequest(app.port, head('POST', '/v1/personas', { ...auth(attacker), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }), {
        body: neverEnding(50),
        timeoutMs: 15_000,
        waitCloseMs: 2000,
      }),
      rawRequest(app.port, head('POST', '/v1/responses', { ...auth(attacker), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }), {
        body: neverEnding(50),
        timeoutMs: 15_000,
        waitCloseMs: 2000,
      }),
      rawRequest(app.port, head('POST', '/v1/personas', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }), {
        body: neverEnding(50),
        timeoutMs: 15_000,
        waitCloseMs: 8000,
      }),
    ];
    let done = false;
    const all = Promise.all(hostile).finally(() => (done = true));

    // meanwhile, another tenant's calls and the health check, one after the other
    const health: number[] = [];
    const proxied: number[] = [];
    while (!done) {
      let t = performance.now();
      const h = await fetch(`${app.url}/health`);
      await h.text();
      health.push(performance.now() - t);
      expect(h.status).toBe(200);
      t = performance.now();
      const p = await victim.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'still here?' });
      proxied.push(performance.now() - t);
      expect(p.status).toBe(200);
      await sleep(50);
    }
    const answers = await all;
    if (process.env.EDGE_DEBUG) console.log({ health, proxied, answers: answers.map((a) => [a.status, a.ms, a.closedAfterMs, a.error]) });

    // generous bounds: a blocked event loop shows as seconds
    expect(Math.max(...health)).toBeLessThan(2500);
    expect(Math.max(...proxied)).toBeLessThan(2500);

    const [deepPersona, deepProxy, deepConfig, widePersona, ...rest] = answers;
    for (const a of [deepPersona, deepProxy, deepConfig]) {
      expect(a.status, a.body).toBe(400);
      expectEnvelope(a.json);
      expect(a.json.error.code).toBe('json_too_deep');
    }
    expect(widePersona.status).toBe(400);
    expect(widePersona.json.error.code).toBe('json_too_many_elements');
    const anonymous = rest.slice(0, 8);
    for (const a of anonymous) {
      expect(a.status, a.error).toBe(401);
      expectEnvelope(a.json, 'authentication_error');
    }
    const [trickleManaged, trickleProxy, endlessAnonymous] = rest.slice(8);
    for (const a of [trickleManaged, trickleProxy]) {
      // REQUEST_TIMEOUT_MS (3 s), checked about every 375 ms
      expect(a.status, a.body).toBe(408);
      expectEnvelope(a.json);
      expect(a.json.error.code).toBe('request_timeout');
      expect(a.headers.connection).toBe('close');
      expect(a.closedAfterMs).toBeDefined();
    }
    expect(endlessAnonymous.status).toBe(401);
    expect(endlessAnonymous.ms).toBeLessThan(2000);
    // what is left of the body is discarded for a bounded time, then the connection is closed
    expect(endlessAnonymous.closedAfterMs, JSON.stringify(endlessAnonymous)).toBeDefined();
    expect(endlessAnonymous.closedAfterMs!).toBeLessThan(8000);

    // nothing of it was stored, and no request was logged as a 500
    expect(await app.dataSource.query('SELECT 1 FROM personas WHERE organization_id = $1', [attacker.orgId])).toHaveLength(0);
    expect(app.logs.filter((l) => l.includes('"status":500') || l.includes('"level":"error"'))).toEqual([]);
  }, 60_000);

  it('a body 10,000 levels deep is a 400 on every route that takes a body, compressed or not', async () => {
    const persona = await attacker.call('POST', '/v1/personas', { name: 'deep', content: 'c' });
    const config = await attacker.call('POST', '/v1/analysis/configs', { name: 'deep', analysis_type: 'sentiment' });
    const made = await attacker.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'x' });
    const requestId = made.headers.get('x-request-id');
    const deep = `{"name":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const routes: [string, string][] = [
      ['POST', '/v1/personas'],
      ['PATCH', `/v1/personas/${persona.body.id}`],
      ['POST', '/v1/analysis/configs'],
      ['PATCH', `/v1/analysis/configs/${config.body.id}`],
      ['POST', '/v1/analysis'],
      ['POST', `/v1/requests/${requestId}/rating`],
      ['POST', '/v1/responses'],
      ['POST', '/v1/chat/completions'],
    ];
    for (const [method, path] of routes) {
      for (const zip of [false, true]) {
        const res = await fetch(`${app.url}${path}`, {
          method,
          headers: { ...auth(attacker), 'content-type': 'application/json', ...(zip ? { 'content-encoding': 'gzip' } : {}) },
          body: zip ? gzipSync(deep) : deep,
        });
        const body = (await res.json()) as any;
        expect(res.status, `${method} ${path} zip=${zip}`).toBe(400);
        expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'json_too_deep' });
      }
    }
  });

  it('HEADERS_TIMEOUT_MS over REQUEST_TIMEOUT_MS is a configuration error', () => {
    expect(() => loadConfig({ ...app.env, HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '4000' })).toThrow(/HEADERS_TIMEOUT_MS/);
    expect(() => loadConfig({ ...app.env, REQUEST_TIMEOUT_MS: 'soon' })).toThrow(/REQUEST_TIMEOUT_MS/);
  });

  it('an 11 MB body is answered 413 every time, never a reset, on the proxied and the managed routes', async () => {
    const body = Buffer.alloc(11 * MB, 'a');
    for (const path of ['/v1/responses', '/v1/chat/completions', '/v1/personas']) {
      for (let i = 0; i < 6; i++) {
        // alternately with Content-Length (known too large at once) and chunked (found too large at the limit)
        const chunked = i % 2 === 1;
        const headers = { ...auth(attacker), 'content-type': 'application/json', ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': body.length }) };
        const payload = chunked ? Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]) : body;
        // written the way most clients do it: the whole request, then the answer is read
        const a = await rawRequest(app.port, head('POST', path, headers), { body: inChunks(payload) });
        expect(a.error, `${path} try ${i}`).toBeUndefined();
        expect(a.status, `${path} try ${i}: ${a.error}`).toBe(413);
        expect(a.json.error.code).toBe('body_too_large');
      }
    }
    // and through node:http's client, which reports a reset as an error
    for (let i = 0; i < 6; i++) {
      const status = await new Promise<number | string>((resolve) => {
        const req = http.request(`${app.url}/v1/responses`, { method: 'POST', agent: false, headers: { ...auth(attacker), 'content-type': 'application/json' } });
        req.once('response', (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        req.end(body);
      });
      expect(status).toBe(413);
    }
    expect((await victim.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'after' })).status).toBe(200);
  }, 60_000);

  it('requests Node refuses itself are answered in the OpenAI error envelope', async () => {
    const cases: { name: string; bytes: string; status: number; code: string }[] = [
      { name: 'NUL in X-User-ID', bytes: head('GET', '/v1/personas', { ...auth(attacker), 'x-user-id': 'a\u0000b' }), status: 400, code: 'malformed_request' },
      { name: 'DEL in X-User-ID', bytes: head('GET', '/v1/personas', { ...auth(attacker), 'x-user-id': 'a\u007fb' }), status: 400, code: 'malformed_request' },
      { name: 'CR in X-User-ID', bytes: head('GET', '/v1/personas', { ...auth(attacker), 'x-user-id': 'a\rb' }), status: 400, code: 'malformed_request' },
      {
        name: '1,000 headers',
        bytes: head('GET', '/v1/personas', Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`x-h-${i}`, 'value']))),
        status: 431,
        code: 'headers_too_large',
      },
      {
        name: 'bad chunk size',
        bytes: head('POST', '/v1/personas', { ...auth(attacker), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }) + 'zz\r\n{}\r\n0\r\n\r\n',
        status: 400,
        code: 'malformed_request',
      },
      {
        name: 'bad chunk size on the proxy',
        bytes: head('POST', '/v1/responses', { ...auth(attacker), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }) + 'zz\r\n{}\r\n0\r\n\r\n',
        status: 400,
        code: 'malformed_request',
      },
      { name: 'not HTTP', bytes: 'HELLO THERE\r\n\r\n', status: 400, code: 'malformed_request' },
      // headers that never end: HEADERS_TIMEOUT_MS (1.5 s)
      { name: 'unfinished headers', bytes: 'GET /v1/personas HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n', status: 408, code: 'request_timeout' },
    ];
    const answers = await Promise.all(cases.map((c) => rawRequest(app.port, Buffer.from(c.bytes, 'latin1'), { timeoutMs: 10_000 })));
    answers.forEach((a, i) => {
      const c = cases[i];
      expect(a.status, `${c.name}: ${a.error} ${a.body}`).toBe(c.status);
      expect(a.headers['content-type'], c.name).toMatch(/^application\/json/);
      expectEnvelope(a.json);
      expect(a.json.error.code, c.name).toBe(c.code);
    });
    expect(answers[answers.length - 1].ms).toBeLessThan(6000);
  }, 30_000);

  it('an X-User-ID sent as UTF-8 bytes is stored as the text it spells; Latin-1 bytes still read as Latin-1', async () => {
    const o = await proxyOrg(app, fake.url);
    const send = (raw: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${app.url}/v1/personas`, { method: 'GET', headers: { authorization: `Bearer ${o.token}`, 'x-user-id': raw } });
        req.once('response', (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.once('error', reject);
        req.end();
      });
    // node:http writes a header string one byte per character: these are the UTF-8 bytes of each name
    expect(await send(Buffer.from('José', 'utf8').toString('latin1'))).toBe(200);
    expect(await send(Buffer.from('Zoë 日本', 'utf8').toString('latin1'))).toBe(200);
    expect(await send('Ren\u00e9')).toBe(200); // one byte 0xE9: not UTF-8, read as Latin-1
    const rows: { external_id: string }[] = await app.dataSource.query('SELECT external_id FROM users WHERE organization_id = $1 ORDER BY external_id', [
      o.orgId,
    ]);
    expect(rows.map((r) => r.external_id).sort()).toEqual(['José', 'René', 'Zoë 日本'].sort());
  });

  it('an OpenAI key sent as the bearer token is told how to make the proxy’s own JWT', async () => {
    for (const path of ['/v1/responses', '/v1/personas', '/v1/chat/completions']) {
      const res = await api(app, 'sk-proj-AbCdEf0123456789_abcdefXYZ', 'someone')('POST', path, { model: 'gpt-4o-mini', input: 'x' });
      expect(res.status, path).toBe(401);
      expect(res.body.error).toMatchObject({ type: 'authentication_error', code: 'openai_key_as_token' });
      expect(res.body.error.message).toContain('npm run -s cli -- jwt create --org-id <org-id>');
      expect(res.text).not.toContain('AbCdEf0123456789');
    }
  });

  it('the request log line of every 4xx/5xx answer carries its error type and code', async () => {
    const bad = await api(app, 'garbage', 'u')('GET', '/v1/personas');
    const missing = await attacker.call('GET', '/v1/personas/00000000-0000-4000-8000-000000000000');
    const lines = app.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
    const of = (id: string | null) => lines.find((l) => l.request_id === id);
    expect(of(bad.headers.get('x-request-id'))).toMatchObject({ status: 401, error_type: 'authentication_error', error_code: 'invalid_token' });
    expect(of(missing.headers.get('x-request-id'))).toMatchObject({ status: 404, error_type: 'not_found_error', error_code: 'not_found' });
  });

  it('an upstream error answer relayed as it came is logged with the upstream error type and code', async () => {
    fake.enqueue({ kind: 'status', status: 400, body: { error: { message: 'Invalid value for model.', type: 'invalid_request_error', code: 'model_not_found', param: 'model' } } });
    const res = await victim.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hello' });
    expect(res.status).toBe(400);
    const line = app.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'request' && l.request_id === res.headers.get('x-request-id'));
    expect(line).toMatchObject({ status: 400, error_type: 'invalid_request_error', error_code: 'model_not_found' });
  });
});
