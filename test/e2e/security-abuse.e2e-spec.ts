import { createHmac, randomUUID } from 'node:crypto';
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, pollRequest, proxyOrg, waitFor } from '../support/proxy-test-helpers';

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function hs256(claims: Record<string, unknown>, secret = TEST_JWT_SECRET): string {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

interface StreamConn {
  written: number;
  closed: boolean;
  blocked: boolean;
}

/** An upstream that streams `total` bytes of SSE per request as fast as the connection takes them, counting what it wrote. */
async function startStreamingUpstream(total: number) {
  const conns: StreamConn[] = [];
  const chunk = `: ${'x'.repeat(16 * 1024 - 4)}\n\n`;
  const server = http.createServer((req, res) => {
    req.resume();
    const state: StreamConn = { written: 0, closed: false, blocked: false };
    conns.push(state);
    res.on('close', () => (state.closed = true));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`event: response.created\ndata: {"type":"response.created","response":{"id":"resp_big","model":"gpt-4o-mini"}}\n\n`);
    const pump = () => {
      while (state.written < total && !state.closed) {
        state.written += chunk.length;
        if (!res.write(chunk)) {
          state.blocked = true;
          res.once('drain', () => {
            state.blocked = false;
            pump();
          });
          return;
        }
      }
      if (!state.closed) res.end(`event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_big","output":[]}}\n\n`);
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`,
    conns,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A raw streaming request whose response the caller reads by hand (paused mode). */
function openStream(url: string, token: string, userId: string): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/responses`, {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${token}`, 'x-user-id': userId, 'content-type': 'application/json' },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      res.pause();
      resolve({ req, res });
    });
    req.end(JSON.stringify({ model: 'gpt-4o-mini', input: 'long story', stream: true }));
  });
}

describe('abuse bounds', () => {
  let fake: FakeUpstream;
  let elsewhere: FakeUpstream;
  let app: TestApp;

  beforeAll(async () => {
    [fake, elsewhere] = await Promise.all([startFakeUpstream(), startFakeUpstream()]);
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, BODY_LIMIT: '1kb', UPSTREAM_MAX_BODY: '64kb', LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
    await elsewhere?.close();
  });

  it('a body over BODY_LIMIT is an actual 413 body_too_large, nothing goes upstream; without a token it is 401', async () => {
    const o = await proxyOrg(app, fake.url);
    fake.reset();
    const big = { model: 'gpt-4o-mini', input: 'x'.repeat(4096) };
    for (const path of ['/v1/responses', '/v1/chat/completions', '/v1/personas', '/v1/analysis/configs']) {
      const res = await o.call('POST', path, big);
      expect(res.status, path).toBe(413);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'body_too_large' });
      const anonymous = await api(app, undefined, o.userId)('POST', path, big);
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.body.error.type).toBe('authentication_error');
    }
    expect(fake.requests).toHaveLength(0);
    // just under the limit is an ordinary call
    expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'small' })).status).toBe(200);
  });

  it('limit over 100 (or under 1) is a 400 on every list route', async () => {
    const o = await proxyOrg(app, fake.url);
    const made = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'one' });
    const session = made.headers.get('x-session-id');
    const persona = await o.call('POST', '/v1/personas', { name: 'p', content: 'c' });
    for (const base of ['/v1/requests', '/v1/personas', '/v1/analysis/configs', '/v1/analysis/results', `/v1/sessions/${session}`, `/v1/personas/${persona.body.id}/versions`]) {
      for (const limit of ['101', '1000', '0', '-1']) {
        if (base.endsWith('/versions') && limit !== '101') continue;
        const res = await o.call('GET', `${base}?limit=${limit}`);
        if (base.endsWith('/versions') && res.status === 200) continue; // versions are not paged (the whole history, by number)
        expect(res.status, `${base}?limit=${limit}`).toBe(400);
        expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'limit' });
      }
      expect((await o.call('GET', `${base}?limit=100`)).status, base).toBe(200);
    }
  });

  it('a flood of requests with invalid tokens writes nothing, while valid requests during the flood all succeed', async () => {
    const o = await proxyOrg(app, fake.url);
    const marker = `flood-${randomUUID()}`;
    const now = Math.floor(Date.now() / 1000);
    const ghostOrg = randomUUID();
    const invalidTokens = [
      'garbage',
      hs256({ org_id: o.orgId, jti: randomUUID(), iat: now, exp: now + 600 }, 'another-secret-that-is-long-enough-0123456789'),
      hs256({ org_id: o.orgId, jti: randomUUID(), iat: now - 7200, exp: now - 3600 }), // expired
      hs256({ org_id: ghostOrg, jti: randomUUID(), iat: now, exp: now + 600 }), // unknown organization
      hs256({ org_id: o.orgId, iat: now, exp: now + 600 }), // no jti
      `${o.token.slice(0, -2)}${o.token.endsWith('AA') ? 'BB' : 'AA'}`,
    ];
    const counts = async () => {
      const q = (sql: string, p: unknown[]) => app.dataSource.query(sql, p).then((r: { n: string }[]) => Number(r[0].n));
      return {
        orgs: await q('SELECT count(*) AS n FROM organizations WHERE id = $1', [ghostOrg]),
        users: await q("SELECT count(*) AS n FROM users WHERE organization_id = $1 OR external_id LIKE $2", [o.orgId, `${marker}%`]),
        exchanges: await q("SELECT count(*) AS n FROM exchanges WHERE organization_id = $1 OR external_user_id LIKE $2", [o.orgId, `${marker}%`]),
        personas: await q('SELECT count(*) AS n FROM personas WHERE organization_id = $1 OR name LIKE $2', [o.orgId, `${marker}%`]),
        ratings: await q('SELECT count(*) AS n FROM ratings r JOIN exchanges e ON e.id = r.exchange_id WHERE e.organization_id = $1', [o.orgId]),
        configs: await q('SELECT count(*) AS n FROM analysis_configs WHERE organization_id = $1 OR name LIKE $2', [o.orgId, `${marker}%`]),
        results: await q('SELECT count(*) AS n FROM analysis_results WHERE organization_id = $1', [o.orgId]),
        revoked: await q('SELECT count(*) AS n FROM revoked_tokens', []),
      };
    };
    const first = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'before the flood' });
    const firstId = first.headers.get('x-request-id')!;
    const before = await counts();
    const upstreamBefore = fake.requests.length;

    const floodOne = (i: number) => {
      const token = invalidTokens[i % invalidTokens.length];
      const user = `${marker}-${i}`;
      const c = api(app, token, user);
      switch (i % 5) {
        case 0:
          return c('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'flood' });
        case 1:
          return c('POST', '/v1/personas', { name: `${marker}-${i}`, content: 'flood' });
        case 2:
          return c('POST', `/v1/requests/${firstId}/rating`, { rating: 1 });
        case 3:
          return c('POST', '/v1/analysis/configs', { name: `${marker}-${i}`, analysis_type: 'sentiment' });
        default:
          return c('GET', '/v1/requests');
      }
    };
    const valid: Promise<{ status: number }>[] = [];
    const statuses: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all([
        ...Array.from({ length: 50 }, (_, j) => floodOne(batch * 50 + j)),
        ...Array.from({ length: 3 }, () => {
          const p = o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'valid during the flood' });
          valid.push(p);
          return p;
        }),
      ]);
      statuses.push(...results.slice(0, 50).map((r) => r.status));
    }
    expect(statuses).toHaveLength(500);
    expect(new Set(statuses)).toEqual(new Set([401]));
    const validResults = await Promise.all(valid);
    expect(validResults.map((r) => r.status)).toEqual(validResults.map(() => 200));

    const after = await counts();
    // only the 30 valid calls left rows (their exchanges)
    expect(after).toEqual({ ...before, exchanges: before.exchanges + validResults.length });
    expect(fake.requests.length - upstreamBefore).toBe(validResults.length);
  });

  it('X-User-ID with control characters or over 256 characters is 422 on every route', async () => {
    const o = await proxyOrg(app, fake.url);
    const routes: [string, string, unknown?][] = [
      ['POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'x' }],
      ['POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] }],
      ['GET', '/v1/requests'],
      ['GET', '/v1/personas'],
      ['POST', '/v1/personas', { name: 'n', content: 'c' }],
      ['GET', '/v1/analysis/configs'],
      ['GET', '/v1/analytics/usage'],
      ['GET', '/v1/limits'],
      ['GET', '/v1/models'],
    ];
    fake.reset();
    for (const bad of ['alice\tbob', 'a\tb\tc', 'u'.repeat(257)]) {
      for (const [method, path, body] of routes) {
        const res = await api(app, o.token, bad)(method, path, body);
        expect(res.status, `${method} ${path} ${JSON.stringify(bad).slice(0, 20)}`).toBe(422);
        expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_user_id' });
      }
    }
    expect(fake.requests).toHaveLength(0);
    expect(await app.dataSource.query('SELECT 1 FROM users WHERE organization_id = $1', [o.orgId])).toHaveLength(0);
  });

  it('upstream redirects are never followed: the redirect target receives nothing', async () => {
    const o = await proxyOrg(app, fake.url);
    elsewhere.reset();
    const location = `${elsewhere.url}/responses`;
    fake.enqueue({ kind: 'redirect', location }, { kind: 'redirect', location }, { kind: 'redirect', location: `${elsewhere.url}/models` });
    expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'redirect me' })).status).toBe(502);
    expect((await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'redirect me', stream: true })).status).toBe(502);
    expect((await o.call('GET', '/v1/models')).status).toBe(502);
    for (const status of [301, 307, 308]) {
      fake.enqueue({ kind: 'status', status, body: { error: { message: 'moved', type: 'x', code: null } } });
      // the fake's status fault carries no location; the redirect fault above is the one with a target
      expect((await o.call('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(502);
    }
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('only the key’s base URL picks the upstream host: no header or body field sends the call elsewhere', async () => {
    const o = await proxyOrg(app, fake.url);
    elsewhere.reset();
    const other = new URL(elsewhere.url);
    const headerCases: Record<string, string>[] = [
      { 'x-forwarded-host': other.host },
      { 'x-forwarded-host': other.host, 'x-forwarded-proto': 'http', 'x-forwarded-port': other.port },
      { 'x-upstream-url': elsewhere.url },
      { 'openai-base-url': elsewhere.url },
      { 'x-openai-base-url': elsewhere.url },
      { 'x-base-url': elsewhere.url },
      { forwarded: `host=${other.host};proto=http` },
      { 'x-original-url': `${elsewhere.url}/responses` },
      { 'x-rewrite-url': `${elsewhere.url}/responses` },
    ];
    const before = fake.requests.length;
    for (const headers of headerCases) {
      const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'where to?' }, headers);
      expect(res.status, JSON.stringify(headers)).toBe(200);
    }
    // the Host header itself (fetch will not let us set it; a raw request will)
    const hostRes = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${app.url}/v1/responses`, {
        method: 'POST',
        setHost: false,
        headers: { host: other.host, authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      });
      req.once('error', reject);
      req.once('response', (r) => {
        r.resume();
        resolve(r.statusCode!);
      });
      req.end(JSON.stringify({ model: 'gpt-4o-mini', input: 'host header' }));
    });
    expect(hostRes).toBe(200);
    const fields = { base_url: elsewhere.url, api_base: elsewhere.url, baseURL: elsewhere.url, url: `${elsewhere.url}/responses`, host: other.host };
    for (const [name, value] of Object.entries(fields)) {
      const res = await o.call('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], [name]: value });
      expect(res.status, name).toBe(200);
      // forwarded as an ordinary unknown field, to the configured upstream
      expect(fake.requests[fake.requests.length - 1].body[name]).toBe(value);
    }
    expect(fake.requests.length - before).toBe(headerCases.length + 1 + Object.keys(fields).length);
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('an upstream answer over UPSTREAM_MAX_BODY is refused: 502 for JSON, an upstream_error end for a stream', async () => {
    const o = await proxyOrg(app, fake.url);
    fake.enqueue({ kind: 'huge', bytes: 1024 * 1024 });
    const json = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'big' });
    expect(json.status).toBe(502);
    expect(json.body.error.type).toBe('upstream_error');
    expect(json.text.length).toBeLessThan(2048);

    fake.enqueue({ kind: 'huge', bytes: 1024 * 1024 });
    const chat = await o.call('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'big' }] });
    expect(chat.status).toBe(502);

    // a stream is cut once it passes the limit: a 502 if nothing was relayed yet, else an SSE error event
    for (const path of ['/v1/responses', '/v1/chat/completions']) {
      fake.enqueue({ kind: 'huge', bytes: 4 * 1024 * 1024 });
      const body = path === '/v1/responses' ? { model: 'gpt-4o-mini', input: 'big', stream: true } : { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'big' }], stream: true };
      const res = await o.call('POST', path, body);
      expect(res.text.length, path).toBeLessThan(64 * 1024 + 16 * 1024);
      if (res.status === 200) {
        const events = parseSse(res.text);
        const last = events[events.length - 1];
        expect(last.event, path).toBe('error');
        expect(JSON.parse(last.data).error.type).toBe('upstream_error');
      } else expect(res.status, path).toBe(502);
      const rec = await pollRequest(o.call, res.headers.get('x-request-id')!, (r) => r.status !== 'pending');
      expect(rec.status).toBe('upstream_error');
    }
  });
});

describe('slow and stalled streaming clients', () => {
  let slowApp: TestApp;
  let stallApp: TestApp;

  beforeAll(async () => {
    [slowApp, stallApp] = await Promise.all([
      createTestApp({ LOG_LEVEL: 'warn' }),
      createTestApp({ LOG_LEVEL: 'warn', STREAM_IDLE_TIMEOUT_MS: '1500' }),
    ]);
  });
  afterAll(async () => {
    await slowApp?.close();
    await stallApp?.close();
  });

  it('fifty clients reading a long stream at ~1 KB/s keep memory flat: backpressure reaches the upstream', async () => {
    // far more than the kernel can hold in flight for one connection (loopback socket buffers autotune up to
    // tcp_rmem's 32 MB on each receiving side): a body the proxy did not throttle would be written well past that
    const perRequest = 512 * 1024 * 1024;
    const upstream = await startStreamingUpstream(perRequest);
    const clients: { req: http.ClientRequest; res: http.IncomingMessage }[] = [];
    let timer: NodeJS.Timeout | undefined;
    try {
      const org = await createOrg(slowApp);
      await createKey(slowApp, org.orgId, 'sk-slow-readers-0001', { baseUrl: upstream.url });
      global.gc?.();
      const baseline = process.memoryUsage();
      for (let i = 0; i < 50; i++) clients.push(await openStream(slowApp.url, org.token, `slow-${i}`));
      let read = 0;
      timer = setInterval(() => {
        for (const c of clients) {
          const got = c.res.read(100) as Buffer | null; // 100 bytes every 100 ms: ~1 KB/s
          if (got) read += got.length;
        }
      }, 100);
      await new Promise((r) => setTimeout(r, 5000));
      const now = process.memoryUsage();
      const written = upstream.conns.reduce((n, c) => n + c.written, 0);
      const unthrottled = 50 * perRequest; // 25.6 GB: what buffering the streams would take
      expect(upstream.conns).toHaveLength(50);
      expect(read).toBeGreaterThan(50 * 1024); // the clients did read
      // every upstream write is blocked far from the end of its body (what it did write sits mostly in kernel socket buffers)
      expect(upstream.conns.filter((c) => !(c.blocked && !c.closed && c.written < perRequest / 4))).toEqual([]);
      expect(written).toBeLessThan(unthrottled / 4);
      const rssGrowth = now.rss - baseline.rss;
      const heapGrowth = now.heapUsed - baseline.heapUsed;
      const bufferGrowth = now.arrayBuffers - baseline.arrayBuffers;
      if (process.env.SECURITY_DEBUG) console.log({ written, rssGrowth, heapGrowth, bufferGrowth, read });
      // (garbage collection timing makes these noisy: the bound is an order of magnitude, not a budget)
      // 400 MB for 50 streams: an order of magnitude, not a budget
      expect(rssGrowth).toBeLessThan(400 * 1024 * 1024);
      expect(heapGrowth + bufferGrowth).toBeLessThan(400 * 1024 * 1024);
    } finally {
      clearInterval(timer);
      for (const c of clients) c.req.destroy();
      await upstream.close();
    }
  }, 30_000);

  it('a client that stops reading past STREAM_IDLE_TIMEOUT_MS is disconnected on both sides; the exchange is stored', async () => {
    const upstream = await startStreamingUpstream(512 * 1024 * 1024);
    let cleanup = () => undefined as void;
    try {
      const org = await proxyOrg(stallApp, upstream.url);
      const { req, res } = await openStream(stallApp.url, org.token, org.userId);
      cleanup = () => req.destroy();
      const id = res.headers['x-request-id'] as string;
      let clientClosed = false;
      let clientRead = 0;
      res.once('close', () => (clientClosed = true));
      res.on('error', () => undefined);
      // the client reads nothing at all
      await waitFor(() => upstream.conns[0]?.blocked === true, 5000, 'the upstream to block');
      await waitFor(() => upstream.conns[0].closed, 8000, 'the proxy to abort the upstream connection');
      const rec = await pollRequest(org.call, id, (r) => r.status !== 'pending', 5000);
      expect(['client_aborted', 'upstream_timeout']).toContain(rec.status);
      // the proxy closed the client's connection: once the client reads again it drains what was in flight, then
      // the connection ends, far short of the body (a paused socket only notices the close after the buffered bytes)
      expect(clientClosed).toBe(false);
      res.on('data', (d: Buffer) => (clientRead += d.length));
      res.resume();
      await waitFor(() => clientClosed, 10000, 'the client connection to end');
      expect(res.complete).toBe(false);
      expect(clientRead).toBeLessThan(upstream.conns[0].written);
      expect(clientRead).toBeLessThan(64 * 1024 * 1024);
      expect(rec.response_id).toBe('resp_big');
    } finally {
      cleanup();
      await upstream.close();
    }
  }, 30_000);
});

