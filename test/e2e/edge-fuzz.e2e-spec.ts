import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createToken } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, ProxyTestOrg } from '../support/proxy-test-helpers';

interface Route {
  method: string;
  /** OpenAPI template, e.g. /v1/personas/{id} */
  path: string;
  pathParams: string[];
  queryParams: string[];
}

/** Query parameters the list routes read, whether or not the document names them on every route. */
const EXTRA_QUERY = ['after', 'model', 'user_id', 'session_id', 'request_id', 'response_id', 'limit', 'from', 'to'];

const HOSTILE = [
  '\u0000',
  'a\u0000b',
  '\u007f',
  'a\rb',
  '\r\n',
  '%00',
  '%',
  '%zz',
  '../',
  '../../../etc/passwd',
  'x'.repeat(20_000),
  '日本語 ✓ 🙂',
  '\ud800',
  "' OR 1=1 --",
  '{"$gt":""}',
  '00000000-0000-4000-8000-000000000000\u0000',
  '',
  ' ',
];

/** Percent-encodes every byte of the UTF-8 form (a lone surrogate becomes U+FFFD, as any client would send it). */
const encode = (s: string) =>
  Array.from(Buffer.from(s, 'utf8'), (b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('');

function expectSound(res: { status: number; text: string }, what: string) {
  expect(res.status, `${what}: ${res.text.slice(0, 300)}`).toBeLessThan(500);
  expect(res.text, what).not.toMatch(/\n\s+at |RangeError|TypeError|QueryFailedError|invalid byte sequence/);
  if (res.status >= 400) {
    const body = JSON.parse(res.text);
    expect(typeof body.error?.message, what).toBe('string');
    expect(typeof body.error?.type, what).toBe('string');
    expect(body.error, what).toHaveProperty('code');
    expect(body.error, what).toHaveProperty('param');
  }
}

describe('every route and parameter against hostile strings', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let o: ProxyTestOrg;
  let routes: Route[];
  const real: Record<string, string> = {};

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn' });
    o = await proxyOrg(app, fake.url);
    // every scope, so that every documented route is reached
    o.call = api(app, (await createToken(app, o.orgId, { scope: 'proxy read manage admin' })).token, o.userId);
    const made = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'something to look up' });
    const record = await o.call('GET', `/v1/requests/${made.headers.get('x-request-id')}`);
    const persona = await o.call('POST', '/v1/personas', { name: 'fuzz', content: 'You are terse.' });
    const config = await o.call('POST', '/v1/analysis/configs', { name: 'fuzz', analysis_type: 'sentiment' });
    Object.assign(real, {
      request_id: record.body.id,
      response_id: record.body.response_id,
      session_id: record.body.session_id,
      persona: persona.body.id,
      config: config.body.id,
    });

    const doc = (await (await fetch(`${app.url}/docs-json`)).json()) as { paths: Record<string, Record<string, { parameters?: { in: string; name: string }[] }>> };
    routes = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const params = op.parameters ?? [];
        const pathParams = params.filter((p) => p.in === 'path').map((p) => p.name);
        const declared = params.filter((p) => p.in === 'query').map((p) => p.name);
        routes.push({
          method: method.toUpperCase(),
          path,
          pathParams,
          queryParams: method === 'get' && path.startsWith('/v1/') ? [...new Set([...declared, ...EXTRA_QUERY])] : declared,
        });
      }
    }
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  /** A real id for a path parameter, so that the other parameters are the ones tried. */
  const realId = (route: Route, name: string) => {
    if (name === 'request_id' || name === 'response_id' || name === 'session_id') return real[name];
    return route.path.includes('/personas') ? real.persona : real.config;
  };

  const urlOf = (route: Route, values: Record<string, string> = {}, query = '') =>
    route.path.replace(/\{(\w+)\}/g, (_m, name: string) => values[name] ?? encode(realId(route, name))) + query;

  it('the document lists the routes the fuzzing covers', () => {
    const idRoutes = routes.filter((r) => r.pathParams.length);
    expect(idRoutes.length).toBeGreaterThanOrEqual(15);
    expect(routes.find((r) => r.method === 'GET' && r.path === '/v1/requests')?.queryParams).toEqual(expect.arrayContaining(['after', 'model', 'user_id', 'session_id']));
  });

  it('a NUL in any path parameter or query parameter is a 400 naming it', async () => {
    let cases = 0;
    for (const route of routes) {
      for (const name of route.pathParams) {
        for (const value of ['%00', `${encode(realId(route, name))}%00`]) {
          const res = await o.call(route.method, urlOf(route, { [name]: value }), route.method === 'POST' ? { rating: 1 } : undefined);
          expectSound(res, `${route.method} ${route.path} ${name}=${value}`);
          expect(res.status, `${route.method} ${route.path} ${name}`).toBe(400);
          expect(res.body.error.param).toBe(name);
          cases++;
        }
      }
      if (route.method !== 'GET') continue;
      for (const name of route.queryParams) {
        const res = await o.call('GET', urlOf(route, {}, `?${name}=x%00y`));
        expectSound(res, `GET ${route.path}?${name}`);
        expect(res.status, `GET ${route.path}?${name}`).toBe(400);
        expect(res.body.error.param).toBe(name);
        cases++;
      }
    }
    expect(cases).toBeGreaterThanOrEqual(42);
  });

  /** The JSON bodies of the proxy's own routes, each string field of which is tried. */
  const bodies = (): [string, string, Record<string, unknown>][] => [
    ['POST', '/v1/personas', { name: 'n', content: 'c', description: 'd' }],
    ['PATCH', `/v1/personas/${real.persona}`, { name: 'n', content: 'c', description: 'd' }],
    ['POST', '/v1/analysis/configs', { name: 'n', analysis_type: 'sentiment', instructions: 'i', model: 'gpt-4o-mini' }],
    ['PATCH', `/v1/analysis/configs/${real.config}`, { name: 'n', instructions: 'i', model: 'gpt-4o-mini' }],
    ['POST', '/v1/analysis', { request_id: real.request_id, config_id: real.config }],
    ['POST', '/v1/analysis', { response_id: real.response_id, config: { name: 'n', analysis_type: 'custom', instructions: 'i', categories: [{ name: 'a', description: 'b' }] } }],
    ['POST', `/v1/requests/${real.request_id}/rating`, { rating: 1, comment: 'c' }],
    ['POST', `/v1/responses/${real.response_id}/rating`, { rating: -1, comment: 'c' }],
  ];

  /** Every string leaf of `body`, by its path, with `set` to replace it in a copy. */
  function stringFields(body: unknown, path = ''): { path: string; set: (v: string) => unknown }[] {
    if (typeof body === 'string') return [{ path, set: (v) => v }];
    if (Array.isArray(body)) {
      return body.flatMap((item, i) => stringFields(item, `${path}[${i}]`).map((f) => ({ path: f.path, set: (v: string) => body.map((x, j) => (j === i ? f.set(v) : x)) })));
    }
    if (body && typeof body === 'object') {
      return Object.entries(body).flatMap(([k, item]) =>
        stringFields(item, path ? `${path}.${k}` : k).map((f) => ({ path: f.path, set: (v: string) => ({ ...body, [k]: f.set(v) }) })),
      );
    }
    return [];
  }

  it('a NUL in any JSON string of the proxy’s own routes is a 400 naming the field', async () => {
    for (const [method, path, body] of bodies()) {
      for (const field of stringFields(body)) {
        const res = await o.call(method, path, field.set(`x\u0000${field.path}`));
        expectSound(res, `${method} ${path} ${field.path}`);
        expect(res.status, `${method} ${path} ${field.path}: ${res.text}`).toBe(400);
        expect(res.body.error.param).toBe(field.path);
      }
    }
  });

  it('fuzzed path parameters, query parameters and body fields never give a 5xx or a stack trace', async () => {
    const hostile = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 300 }));
    const raw = fc.constantFrom('%00', '%2e%2e%2f', '..%2f..%2f', '%ff%fe', '%c0%80', '%u0000');
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), hostile, raw, fc.boolean(), async (r, p, value, rawValue, useRaw) => {
        const route = routes[r % routes.length];
        const names = [...route.pathParams.map((n) => ['path', n]), ...route.queryParams.map((n) => ['query', n])];
        if (!names.length) return;
        const [where, name] = names[p % names.length];
        const text = useRaw ? rawValue : encode(value);
        const url = where === 'path' ? urlOf(route, { [name]: text }) : urlOf(route, {}, `?${encode(name)}=${text}`);
        const res = await o.call(route.method, url, route.method === 'POST' || route.method === 'PATCH' ? {} : undefined);
        expectSound(res, `${route.method} ${url.slice(0, 200)}`);
      }),
      { numRuns: 300 },
    );
    const all = bodies();
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), hostile, async (b, f, value) => {
        const [method, path, body] = all[b % all.length];
        const fields = stringFields(body);
        const field = fields[f % fields.length];
        const res = await o.call(method, path, field.set(value));
        // an analysis runs against the fake upstream: only its own failures may be a 5xx
        if (res.status >= 500 && path === '/v1/analysis' && res.body?.error?.type?.startsWith('upstream')) return;
        expectSound(res, `${method} ${path} ${field.path}=${JSON.stringify(value).slice(0, 60)}`);
      }),
      { numRuns: 200 },
    );
  }, 120_000);
});
