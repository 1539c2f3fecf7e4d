import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { createHmac, randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_PUBLIC } from '../../src/auth/public.decorator';
import { REQUIRED_SCOPE, SCOPE_EXTENSION } from '../../src/auth/require-scope.decorator';
import type { Scope } from '../../src/auth/scopes';
import { cliActor } from '../../src/audit/audit-actor';
import { TokensService } from '../../src/auth/tokens.service';
import { OPENAI_ROUTES } from '../../src/relay/openai-route-list';
import { createTestApp, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { api } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';
import { rawRequest } from '../support/raw-http';

/**
 * What each route needs, written out independently of the decorators: the matrix below compares the server with this
 * table, and the walk of the router fails on a route the table does not name.
 */
const NEST_ROUTES: Record<string, Scope | 'public'> = {
  'GET /health': 'public',
  'GET /metrics': 'public',
  // the console's static files: its data comes from /v1 with the token pasted into it
  'GET /console': 'public',
  'GET /console/*path': 'public',
  'POST /v1/responses': 'proxy',
  'POST /v1/chat/completions': 'proxy',
  'GET /v1/models': 'proxy',
  'GET /v1/responses/:response_id': 'proxy',
  'POST /v1/requests/:request_id/rating': 'proxy',
  'POST /v1/responses/:response_id/rating': 'proxy',
  'GET /v1/requests/:request_id/rating': 'proxy',
  'GET /v1/responses/:response_id/rating': 'proxy',
  'GET /v1/requests': 'read',
  'GET /v1/requests/:request_id': 'read',
  'GET /v1/sessions/:session_id': 'read',
  'GET /v1/personas': 'read',
  'GET /v1/personas/:id': 'read',
  'GET /v1/personas/:id/versions': 'read',
  'POST /v1/personas': 'manage',
  'PATCH /v1/personas/:id': 'manage',
  'DELETE /v1/personas/:id': 'manage',
  'GET /v1/analysis/configs': 'read',
  'GET /v1/analysis/configs/:id': 'read',
  'POST /v1/analysis/configs': 'manage',
  'PATCH /v1/analysis/configs/:id': 'manage',
  'DELETE /v1/analysis/configs/:id': 'manage',
  'POST /v1/analysis': 'manage',
  'GET /v1/analysis/results': 'read',
  'GET /v1/analytics/personas/:id': 'read',
  'GET /v1/analytics/usage': 'read',
  'GET /v1/limits': 'read',
  'GET /v1/audit': 'admin',
  'GET /v1/users/:user_id/export': 'admin',
  'DELETE /v1/users/:user_id': 'admin',
  'GET /v1/settings': 'admin',
  'PATCH /v1/settings': 'admin',
};

/** The token variants: each scope alone, and a token without a scope claim (the defaults). */
const SCOPE_SETS: { name: string; scope?: string; has: Scope[] }[] = [
  { name: 'proxy', scope: 'proxy', has: ['proxy'] },
  { name: 'read', scope: 'read', has: ['read'] },
  { name: 'manage', scope: 'manage', has: ['manage'] },
  { name: 'admin', scope: 'admin', has: ['admin'] },
  { name: 'none (default)', has: ['proxy', 'read', 'manage'] },
];

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function sign(payload: Record<string, unknown>): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', TEST_JWT_SECRET).update(input).digest('base64url')}`;
}

const concrete = (template: string) => template.replace(/:[a-z_]+|\{[a-z_]+\}/g, 'x_' + randomUUID().replace(/-/g, ''));

/** Every handler Nest registered, as `METHOD /path`, with the scope the guard will read for it (handler, then class). */
function registeredRoutes(app: TestApp): Map<string, { scope: Scope | undefined; public: boolean }> {
  const routes = new Map<string, { scope: Scope | undefined; public: boolean }>();
  for (const mod of app.app.get(ModulesContainer).values()) {
    for (const wrapper of mod.controllers.values()) {
      const ctrl = wrapper.metatype as { prototype: Record<string, unknown> } & object;
      const base = String(Reflect.getMetadata(PATH_METADATA, ctrl) ?? '');
      for (const name of Object.getOwnPropertyNames(ctrl.prototype)) {
        const handler = ctrl.prototype[name];
        if (name === 'constructor' || typeof handler !== 'function' || !Reflect.hasMetadata(PATH_METADATA, handler)) continue;
        const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod];
        const path = ('/' + [base, String(Reflect.getMetadata(PATH_METADATA, handler))].filter((p) => p && p !== '/').join('/')).replace(/\/+/g, '/');
        routes.set(`${method} ${path}`, {
          scope: Reflect.getMetadata(REQUIRED_SCOPE, handler) ?? Reflect.getMetadata(REQUIRED_SCOPE, ctrl),
          public: Reflect.getMetadata(IS_PUBLIC, handler) === true || Reflect.getMetadata(IS_PUBLIC, ctrl) === true,
        });
      }
    }
  }
  return routes;
}

describe('token scopes: every route × every scope', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let org: ProxyTestOrg;
  const tokens = new Map<string, string>();
  const port = () => Number(new URL(app.url).port);
  const q = (sql: string, params: unknown[] = []) => app.dataSource.query(sql, params);

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url });
    org = await proxyOrg(app, fake.url);
    const issue = app.app.get(TokensService);
    for (const set of SCOPE_SETS) tokens.set(set.name, (await issue.create({ orgId: org.orgId, scope: set.scope }, cliActor())).token);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  /** Asserts the answer: a refusal names the scope needed; an allowed call got past the scope check (whatever came next). */
  function expectOutcome(label: string, res: { status: number; body: any }, needed: Scope, has: Scope[]): void {
    if (has.includes(needed)) {
      expect(res.status, label).not.toBe(401);
      expect(res.body?.error?.code ?? null, label).not.toBe('insufficient_scope');
    } else {
      expect(res.status, label).toBe(403);
      expect(res.body.error, label).toMatchObject({ type: 'permission_error', code: 'insufficient_scope' });
      expect(res.body.error.message, label).toContain(`'${needed}'`);
    }
  }

  it('every registered route is public or declares a scope, and the scope the table says', () => {
    const routes = registeredRoutes(app);
    const undeclared = [...routes].filter(([, r]) => !r.public && r.scope === undefined).map(([k]) => k);
    expect(undeclared).toEqual([]);
    const actual = Object.fromEntries([...routes].map(([k, r]) => [k, r.public ? 'public' : r.scope]));
    expect(actual).toEqual(NEST_ROUTES);
  });

  it('the OpenAPI document shows each operation’s scope (x-required-scope and its description)', async () => {
    const doc = (await api(app, undefined, undefined)('GET', '/docs-json')).body;
    let operations = 0;
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(item)) {
        const key = `${method.toUpperCase()} ${path.replace(/\{([a-z_]+)\}/g, ':$1')}`;
        const expected = NEST_ROUTES[key];
        expect(expected, key).toBeDefined();
        if (expected === 'public') {
          expect(op[SCOPE_EXTENSION], key).toBeUndefined();
          continue;
        }
        operations++;
        expect(op[SCOPE_EXTENSION], key).toBe(expected);
        expect(op.description, key).toContain(`Needs the \`${expected}\` scope`);
      }
    }
    expect(operations).toBe(Object.values(NEST_ROUTES).filter((s) => s !== 'public').length);
  });

  it('Nest routes: allowed, or 403 insufficient_scope naming the scope needed', async () => {
    for (const set of SCOPE_SETS) {
      const call = api(app, tokens.get(set.name), org.userId);
      await Promise.all(
        Object.entries(NEST_ROUTES).map(async ([route, needed]) => {
          const [method, template] = route.split(' ');
          // text/plain keeps the model-call routes on their Nest controller (the dispatch takes JSON only)
          const headers: Record<string, string> = method === 'GET' || method === 'DELETE' ? {} : { 'content-type': 'text/plain' };
          const res = await call(method, concrete(template), method === 'GET' || method === 'DELETE' ? undefined : 'x', headers);
          if (needed === 'public') expect(res.status, `${set.name}: ${route}`).toBe(200);
          else expectOutcome(`${set.name}: ${route}`, res, needed, set.has);
        }),
      );
    }
  });

  it('the dispatched model calls, every relayed OpenAI route and realtime need proxy', async () => {
    for (const set of SCOPE_SETS) {
      const call = api(app, tokens.get(set.name), org.userId);
      // JSON bodies: the node:http dispatch's path
      for (const path of ['/v1/responses', '/v1/chat/completions']) {
        const res = await call('POST', path, { model: 'gpt-4o-mini', input: 'hi', messages: [{ role: 'user', content: 'hi' }] });
        expectOutcome(`${set.name}: POST ${path}`, res, 'proxy', set.has);
      }
      expectOutcome(`${set.name}: GET /v1/files`, await call('GET', '/v1/files'), 'proxy', set.has);
      if (!set.has.includes('proxy')) {
        // every OpenAI route, those with handlers of their own included
        await Promise.all(OPENAI_ROUTES.map(async (route) => {
          const [method, template] = route.split(' ');
          expectOutcome(`${set.name}: ${route}`, await call(method, concrete(template)), 'proxy', set.has);
        }));
      }
      const ws = await upgrade(app.url, { authorization: `Bearer ${tokens.get(set.name)}`, 'x-user-id': org.userId });
      if (set.has.includes('proxy')) {
        expect(ws.status, `${set.name}: realtime`).toBe(101);
      } else {
        expect(ws.status, `${set.name}: realtime`).toBe(403);
        expectOutcome(`${set.name}: realtime`, ws, 'proxy', set.has);
      }
    }
  });

  it('a refused call reads no body, calls no upstream and writes nothing', async () => {
    const upstreamBefore = fake.requests.length;
    const realtimeBefore = fake.realtime.keysSeen.length;
    // records of calls, ended or in progress (a realtime session of the test before may end meanwhile: its open call
    // becomes its exchange in one statement)
    const records = `SELECT ((SELECT count(*) FROM exchanges WHERE organization_id = $1) + (SELECT count(*) FROM open_calls WHERE organization_id = $1))::int AS count`;
    const [{ count: exchangesBefore }] = await q(records, [org.orgId]);
    const users: string[] = [];
    for (const name of ['read', 'manage', 'admin']) {
      const user = `refused-${name}-${randomUUID()}`;
      users.push(user);
      const call = api(app, tokens.get(name), user);
      expect((await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' })).status).toBe(403);
      expect((await call('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(403);
      expect((await call('POST', '/v1/files', 'x', { 'content-type': 'multipart/form-data; boundary=b' })).status).toBe(403);
      expect((await call('POST', '/v1/embeddings', { model: 'text-embedding-3-small', input: 'hi' })).status).toBe(403);
      expect((await upgrade(app.url, { authorization: `Bearer ${tokens.get(name)}`, 'x-user-id': user })).status).toBe(403);
      if (name !== 'manage') {
        expect((await call('POST', '/v1/personas', { name: `p-${randomUUID()}`, content: 'You are terse.' })).status).toBe(403);
        expect((await call('POST', '/v1/analysis', { config_id: randomUUID() })).status).toBe(403);
      }
      if (name !== 'read') expect((await call('GET', '/v1/requests')).status).toBe(403);
      // a body announced but never sent: the refusal comes without waiting for it, on both paths
      for (const [path, type] of [
        ['/v1/responses', 'application/json'],
        ['/v1/responses', 'text/plain'],
        ['/v1/files', 'application/json'],
      ]) {
        const head =
          `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.get(name)}\r\nX-User-ID: ${user}\r\n` +
          `Content-Type: ${type}\r\nContent-Length: 100000\r\n\r\n{"model":`;
        const res = await rawRequest(port(), head, { timeoutMs: 15_000 });
        expect(res.status, `${name} ${path} ${type}`).toBe(403);
        expect(res.json.error.code).toBe('insufficient_scope');
      }
    }
    expect(fake.requests.length).toBe(upstreamBefore);
    expect(fake.realtime.keysSeen.length).toBe(realtimeBefore);
    expect(await q('SELECT external_id FROM users WHERE external_id = ANY($1)', [users])).toEqual([]);
    expect(await q('SELECT id FROM personas WHERE organization_id = $1', [org.orgId])).toEqual([]);
    const [{ count: exchangesAfter }] = await q(records, [org.orgId]);
    expect(exchangesAfter).toBe(exchangesBefore);
  });

  it('through the official SDK: a proxy token calls models, a read token is refused with insufficient_scope', async () => {
    const client = (token: string) => new OpenAI({ baseURL: `${app.url}/v1`, apiKey: token, defaultHeaders: { 'X-User-ID': org.userId }, maxRetries: 0 });
    const answer = await client(tokens.get('proxy')!).responses.create({ model: 'gpt-4o-mini', input: 'Say hello' });
    expect(answer.output_text.length).toBeGreaterThan(0);
    const files = await client(tokens.get('proxy')!).files.list();
    expect(Array.isArray(files.data)).toBe(true);
    const refused = await client(tokens.get('read')!).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((refused as InstanceType<typeof OpenAI.PermissionDeniedError>).code).toBe('insufficient_scope');
    // the read token reads what the proxy token made; the proxy token cannot
    await waitFor(async () => (await api(app, tokens.get('read'), org.userId)('GET', '/v1/requests')).body.data.length > 0, 8000, 'the exchange stored');
    expect((await api(app, tokens.get('proxy'), org.userId)('GET', '/v1/requests')).status).toBe(403);
  });

  it('a token’s unknown scope words grant nothing; a scope that is not a string is an invalid token', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = (scope: unknown) => ({ org_id: org.orgId, jti: randomUUID(), iat: now, exp: now + 600, scope });
    const mixed = api(app, sign(claims('read telepathy')), org.userId);
    expect((await mixed('GET', '/v1/personas')).status).toBe(200);
    expectOutcome('read telepathy: POST /v1/personas', await mixed('POST', '/v1/personas', { name: 'n', content: 'c' }), 'manage', ['read']);
    const unknown = api(app, sign(claims('telepathy')), org.userId);
    expectOutcome('telepathy: GET /v1/personas', await unknown('GET', '/v1/personas'), 'read', []);
    expectOutcome('telepathy: GET /v1/models', await unknown('GET', '/v1/models'), 'proxy', []);
    const empty = api(app, sign(claims('')), org.userId);
    expectOutcome('empty: GET /v1/limits', await empty('GET', '/v1/limits'), 'read', []);
    for (const bad of [['read'], 7, null]) {
      const res = await api(app, sign(claims(bad)), org.userId)('GET', '/v1/personas');
      expect(res.status, JSON.stringify(bad)).toBe(401);
      expect(res.body.error.code).toBe('invalid_token');
    }
  });
});

/** A WebSocket upgrade to /v1/realtime: 101 (then closed), or the refusal's status and body. */
function upgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace('http:', 'ws:')}/v1/realtime?model=gpt-realtime`, [], { headers, perMessageDeflate: false });
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101, body: undefined });
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    ws.once('error', reject);
  });
}
