import * as http from 'node:http';
import { Client } from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, pollRequest, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

describe('proxy: upstream failures, retries, timeouts, aborts, backpressure', () => {
  let app: TestApp;
  let tight: TestApp;
  let fake: FakeUpstream;
  let o: ProxyTestOrg;
  let t: ProxyTestOrg;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ RETRY_AFTER_CAP_MS: '1500', UPSTREAM_MAX_BODY: '1gb', DB_POOL_SIZE: '6' });
    // a second server with tight limits on the same database (the embedded one too: no second start-up)
    tight = await createTestApp({
      DATABASE_URL: app.db.url,
      DB_POOL_SIZE: '4',
      UPSTREAM_TIMEOUT_MS: '400',
      STREAM_IDLE_TIMEOUT_MS: '400',
      UPSTREAM_MAX_BODY: '1mb',
    });
    o = await proxyOrg(app, fake.url);
    t = await proxyOrg(tight, fake.url);
  });
  afterAll(async () => {
    await tight?.close();
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const record = (org: ProxyTestOrg, res: { headers: Headers }) => org.call('GET', `/v1/requests/${res.headers.get('x-request-id')}`);
  const ask = (org: ProxyTestOrg, extra: Record<string, unknown> = {}) => org.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi', ...extra });

  it('an upstream 4xx reaches the client with its status and message, is not retried, and is stored as failed', async () => {
    const res = await o.call('POST', '/v1/responses', { model: 'fail-400', input: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ message: 'The model `fail-400` does not exist', type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
    expect(fake.requests).toHaveLength(1);
    const rec = await record(o, res);
    expect(rec.body).toMatchObject({ status: 'failed', upstream_status: 400, model: 'fail-400' });
    expect(rec.body.error.message).toBe('The model `fail-400` does not exist');
    expect(rec.body.response_body.error.code).toBe('model_not_found');
  });

  it('5xx is retried twice, then 502, stored as upstream_error', async () => {
    fake.enqueue({ kind: 'status', status: 500 }, { kind: 'status', status: 502 }, { kind: 'status', status: 503 });
    const res = await ask(o);
    expect(res.status).toBe(502);
    expect(res.body.error.type).toBe('upstream_error');
    expect(fake.requests).toHaveLength(3);
    expect((await record(o, res)).body).toMatchObject({ status: 'upstream_error', upstream_status: 503 });
  });

  it('a retried 503 or connection reset that then succeeds is a normal answer', async () => {
    fake.enqueue({ kind: 'status', status: 503 }, { kind: 'reset' });
    const res = await ask(o);
    expect(res.status).toBe(200);
    expect(fake.requests).toHaveLength(3);
    expect((await record(o, res)).body).toMatchObject({ status: 'completed', upstream_status: 200 });
  });

  it('Retry-After within the cap is honoured; over the cap it is a 429 at once with Retry-After', async () => {
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '1' });
    const ok = await ask(o);
    expect(ok.status).toBe(200);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1].receivedAt - fake.requests[0].receivedAt).toBeGreaterThanOrEqual(900);

    fake.reset();
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '30' });
    const limited = await ask(o);
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('30');
    expect(limited.body.error.type).toBe('rate_limit_error');
    expect(fake.requests).toHaveLength(1);
    expect((await record(o, limited)).body).toMatchObject({ status: 'upstream_error', upstream_status: 429 });

    fake.reset();
    fake.setDefaultFault({ kind: 'status', status: 429 });
    const exhausted = await ask(o);
    expect(exhausted.status).toBe(429);
    expect(fake.requests).toHaveLength(3);
  });

  it('a redirect, an invalid JSON body and malformed SSE are 502s (never followed, never retried)', async () => {
    fake.enqueue({ kind: 'redirect' });
    const redirect = await ask(o);
    expect(redirect.status).toBe(502);
    expect(fake.requests.map((r) => r.path)).toEqual(['/v1/responses']);
    expect((await record(o, redirect)).body).toMatchObject({ status: 'upstream_error', upstream_status: 302 });

    fake.enqueue({ kind: 'malformed-json' });
    const badJson = await ask(o);
    expect(badJson.status).toBe(502);
    expect(badJson.body.error.type).toBe('upstream_error');
    expect((await record(o, badJson)).body).toMatchObject({ status: 'upstream_error', upstream_status: 200 });

    fake.enqueue({ kind: 'malformed-sse' });
    const badSse = await ask(o, { stream: true });
    expect(badSse.status).toBe(502);
    expect(badSse.headers.get('content-type')).toMatch(/application\/json/);
    expect((await record(o, badSse)).body).toMatchObject({ status: 'upstream_error', stream: true });
    expect(fake.requests).toHaveLength(3);
  });

  it('a stream reset mid-way ends with an SSE error event; the record keeps what arrived', async () => {
    fake.enqueue({ kind: 'reset-mid-stream', afterEvents: 6 });
    const res = await fetch(`${app.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'a fairly long input for several deltas', stream: true }),
    });
    expect(res.status).toBe(200);
    const events = parseSse(await res.text());
    const last = events.at(-1)!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data).error.type).toBe('upstream_error');
    const deltas = events.filter((e) => e.event === 'response.output_text.delta').map((e) => JSON.parse(e.data).delta);
    expect(deltas).toHaveLength(2);
    const rec = await record(o, res);
    expect(rec.body).toMatchObject({ status: 'upstream_error', upstream_status: 200, output_text: deltas.join('') });
    expect(rec.body.response_id).toMatch(/^resp_/);
  });

  it.skipIf(!process.env.DATABASE_URL)('an upstream that fails while the pending row is still being written: the answer still comes, with what arrived', async () => {
    // writes to exchanges wait (SHARE blocks INSERT/UPDATE) while the upstream answers part of a stream and resets
    const blocker = new Client({ connectionString: app.db.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE exchanges IN SHARE MODE');
      fake.enqueue({ kind: 'reset-mid-stream', afterEvents: 6 }, { kind: 'reset-mid-stream', afterEvents: 0 }, { kind: 'reset-mid-stream', afterEvents: 1000 });
      const stream = () =>
        fetch(`${app.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', input: 'a fairly long input for several deltas', stream: true }),
        }).then(async (r) => ({ status: r.status, id: r.headers.get('x-request-id'), text: await r.text() }));
      const streamed = stream();
      await waitFor(() => fake.requests.length === 1, 8000, 'the stream call upstream');
      // the JSON answer's body is cut half-way (a reset is not retried once the answer has begun)
      const json = ask(o, { input: 'cut' });
      await waitFor(() => fake.requests.length === 2, 8000, 'the JSON call upstream');
      // a whole stream, then a reset instead of its end
      const whole = stream();
      await waitFor(() => fake.requests.length === 3, 8000, 'the last call upstream');
      await new Promise((r) => setTimeout(r, 300)); // the resets happen while the inserts wait
      await blocker.query('COMMIT');

      const w = await whole;
      expect(w.status).toBe(200);
      const wEvents = parseSse(w.text);
      expect(wEvents.at(-1)!.event).toBe('response.completed');
      expect((await record(o, { headers: new Headers({ 'x-request-id': w.id! }) })).body.status).toBe('completed');

      const s = await streamed;
      expect(s.status).toBe(200);
      const events = parseSse(s.text);
      expect(events.at(-1)!.event).toBe('error');
      const deltas = events.filter((e) => e.event === 'response.output_text.delta').map((e) => JSON.parse(e.data).delta);
      expect(deltas).toHaveLength(2);
      expect((await record(o, { headers: new Headers({ 'x-request-id': s.id! }) })).body).toMatchObject({
        status: 'upstream_error',
        output_text: deltas.join(''),
      });
      const j = await json;
      expect(j.status).toBe(502);
      expect(j.body.error.type).toBe('upstream_error');
      expect((await record(o, j)).body).toMatchObject({ status: 'upstream_error', upstream_status: 200 });
    } finally {
      await blocker.end();
    }
  });

  it('a pending row the database refuses: 503, nothing relayed, never recorded as delivered, for a stream (its events already arriving) and a JSON call', async () => {
    await app.dataSource.query(`CREATE OR REPLACE FUNCTION refuse_marked_exchange() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.request_body->>'input' = 'refuse-me' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF; RETURN NEW; END $$`);
    await app.dataSource.query(`CREATE TRIGGER refuse_marked BEFORE INSERT ON exchanges FOR EACH ROW EXECUTE FUNCTION refuse_marked_exchange()`);
    // a stream's pending row is its open call
    await app.dataSource.query(`CREATE TRIGGER refuse_marked BEFORE INSERT ON open_calls FOR EACH ROW EXECUTE FUNCTION refuse_marked_exchange()`);
    try {
      for (const firstByteMs of [0, 150]) {
        fake.enqueue({ kind: 'slow-stream', firstByteMs, eventIntervalMs: 0 });
        const res = await ask(o, { input: 'refuse-me', stream: true });
        expect(res.status).toBe(503);
        expect(res.body.error.code).toBe('database_unavailable');
      }
      const json = await ask(o, { input: 'refuse-me' });
      expect(json.status).toBe(503);
      // the upstream was called: a row may follow once the database takes it, but never as a delivered answer
      const rows = await app.dataSource.query(
        `SELECT id FROM exchanges WHERE organization_id = $1 AND request_body->>'input' = 'refuse-me' AND status <> 'interrupted'`,
        [o.orgId],
      );
      expect(rows).toHaveLength(0);
      expect((await ask(o, { input: 'fine' })).status).toBe(200);
    } finally {
      await app.dataSource.query('DROP TRIGGER IF EXISTS refuse_marked ON exchanges');
      await app.dataSource.query('DROP TRIGGER IF EXISTS refuse_marked ON open_calls');
    }
  });

  it('no first byte within UPSTREAM_TIMEOUT_MS is a 504 stored as upstream_timeout', async () => {
    fake.enqueue({ kind: 'stall' });
    const res = await ask(t);
    expect(res.status).toBe(504);
    expect(res.body.error.type).toBe('upstream_timeout');
    expect((await record(t, res)).body).toMatchObject({ status: 'upstream_timeout', upstream_status: null });
  });

  it('an idle stream ends with an SSE upstream_timeout error event', async () => {
    fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 1500 });
    const res = await fetch(`${tight.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.token}`, 'x-user-id': t.userId, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'x', stream: true }),
    });
    expect(res.status).toBe(200);
    const events = parseSse(await res.text());
    expect(events[0].event).toBe('response.created');
    expect(events.at(-1)!.event).toBe('error');
    expect(JSON.parse(events.at(-1)!.data)).toEqual({ error: expect.objectContaining({ type: 'upstream_timeout', code: 'upstream_timeout' }) });
    expect((await record(t, res)).body).toMatchObject({ status: 'upstream_timeout' });
  });

  it('an upstream body over UPSTREAM_MAX_BODY is a 502', async () => {
    fake.enqueue({ kind: 'huge', bytes: 3 * 1024 * 1024 });
    const res = await ask(t);
    expect(res.status).toBe(502);
    expect((await record(t, res)).body).toMatchObject({ status: 'upstream_error', upstream_status: 200 });
  });

  it('a client that goes away aborts the upstream call; the record is client_aborted with what had arrived', async () => {
    fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 300 });
    const ac = new AbortController();
    const res = await fetch(`${app.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'abort me', stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    const id = res.headers.get('x-request-id')!;
    // 9 more events at 300 ms would take 2.7 s: a record within 2 s means the upstream call was cut
    const rec = await pollRequest(o.call, id, (r) => r.status !== 'pending', 2000);
    expect(rec.status).toBe('client_aborted');
    expect(rec.response_id).toMatch(/^resp_/);

    // before any answer (non-streaming, upstream still thinking)
    fake.enqueue({ kind: 'delay', ms: 3000 });
    const ac2 = new AbortController();
    const pending = fetch(`${app.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json', 'x-session-id': 'abort-json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'abort me too' }),
      signal: ac2.signal,
    }).catch(() => undefined);
    await waitFor(() => fake.requests.length === 2, 5000, 'the upstream call');
    ac2.abort();
    await pending;
    await waitFor(async () => (await o.call('GET', '/v1/sessions/abort-json')).body?.data?.[0]?.status === 'client_aborted', 2500, 'client_aborted record');
  });

  it('a slow reader makes the upstream wait: the proxy does not buffer the stream', async () => {
    const total = 256 * 1024 * 1024;
    const chunk = `: ${'x'.repeat(64 * 1024 - 4)}\n\n`;
    const state = { written: 0, blockedSince: 0, closed: false };
    const upstream = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.on('close', () => (state.closed = true));
      res.write(`event: response.created\ndata: {"type":"response.created","response":{"id":"resp_slow","model":"gpt-4o-mini"}}\n\n`);
      const pump = () => {
        while (state.written < total && !state.closed) {
          state.written += chunk.length;
          if (!res.write(chunk)) {
            state.blockedSince = Date.now();
            res.once('drain', () => {
              state.blockedSince = 0;
              pump();
            });
            return;
          }
        }
        if (!state.closed) res.end(`event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_slow","output":[]}}\n\n`);
      };
      pump();
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    try {
      const org = await proxyOrg(app, `http://127.0.0.1:${(upstream.address() as any).port}/v1`);
      const clientReq = http.request(`${app.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${org.token}`, 'x-user-id': org.userId, 'content-type': 'application/json' },
      });
      clientReq.end(JSON.stringify({ model: 'gpt-4o-mini', input: 'slow', stream: true }));
      const clientRes = await new Promise<http.IncomingMessage>((r) => clientReq.once('response', r));
      clientRes.pause(); // the client reads nothing
      await waitFor(() => state.blockedSince > 0 && Date.now() - state.blockedSince > 500, 15000, 'the upstream to block');
      expect(state.written).toBeLessThan(total / 4);
      const id = clientRes.headers['x-request-id'] as string;
      clientRes.destroy();
      const rec = await pollRequest(org.call, id, (r) => r.status !== 'pending', 5000);
      expect(rec.status).toBe('client_aborted');
      await waitFor(() => state.closed, 5000, 'the upstream connection to close');
    } finally {
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
    }
  });
});
