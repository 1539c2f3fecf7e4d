import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { KeysService } from '../../src/keys/keys.service';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { LimitsService } from '../../src/limits/limits.service';
import { RealtimeGateway } from '../../src/realtime/realtime-gateway';
import { HIGH_WATER_BYTES } from '../../src/realtime/realtime-session';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createToken } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

const MODEL = 'gpt-realtime';

/**
 * The SDK's WebSocket client on the proxy. The SDK always dials wss:; the test server speaks plain ws (as the proxy
 * does behind a TLS-terminating load balancer), so the connection is made in plain TCP.
 */
const plainTcp = ((opts: { host: string; port: number }) => net.connect({ host: opts.host, port: opts.port })) as unknown as typeof net.createConnection;

function sdkSession(o: ProxyTestOrg, model = MODEL) {
  const rt = new OpenAIRealtimeWS({ model, options: { createConnection: plainTcp } }, o.client);
  const events: any[] = [];
  const errors: Error[] = [];
  rt.on('event', (e) => events.push(e));
  rt.on('error', (e) => errors.push(e));
  const headers = new Promise<IncomingMessage['headers']>((resolve) => rt.socket.once('upgrade', (res: IncomingMessage) => resolve(res.headers)));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => rt.socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const opened = new Promise<void>((resolve, reject) => {
    rt.socket.once('open', () => resolve());
    rt.socket.once('error', reject);
  });
  const count = (type: string) => events.filter((e) => e.type === type).length;
  return { rt, events, errors, headers, closed, opened, count, until: (type: string, n = 1) => waitFor(() => count(type) >= n, 8000, `${n} × ${type}`) };
}

type Upgrade =
  /** an open socket, and every message it received (from the first one on) */
  | { ws: WebSocket; headers: IncomingMessage['headers']; messages: [Buffer, boolean][]; status?: undefined }
  | { ws?: undefined; status: number; headers: IncomingMessage['headers']; body: any };

/** A raw WebSocket upgrade to the proxy: the open socket, or the HTTP answer that refused it. */
function upgrade(app: TestApp, path: string, headers: Record<string, string>, protocols?: string[]): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${app.url.replace('http:', 'ws:')}${path}`, protocols ?? [], { headers, perMessageDeflate: false });
    let upgraded: IncomingMessage['headers'] = {};
    const messages: [Buffer, boolean][] = [];
    ws.on('message', (data: Buffer, isBinary) => messages.push([data, isBinary]));
    ws.once('upgrade', (res) => (upgraded = res.headers));
    ws.once('open', () => resolve({ ws, headers: upgraded, messages }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let body: any;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body });
      });
    });
    ws.once('error', reject);
  });
}

/** An upgrade expected to open. */
async function open(app: TestApp, path: string, headers: Record<string, string>, protocols?: string[]) {
  const r = await upgrade(app, path, headers, protocols);
  if (!r.ws) throw new Error(`the upgrade was refused: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
}

const closedWith = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));

describe('realtime: GET /v1/realtime relayed as a WebSocket', () => {
  let fake: FakeUpstream;
  let app: TestApp;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const auth = (o: ProxyTestOrg) => ({ authorization: `Bearer ${o.token}`, 'x-user-id': o.userId });

  it('a session through the SDK: events both ways, the resolved key upstream, one record with the usage of every response.done summed', async () => {
    const o = await proxyOrg(app, fake.url);
    const s = sdkSession(o);
    const headers = await s.headers;
    await s.opened;
    await s.until('session.created');
    s.rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello through the proxy' }] } });
    s.rt.send({ type: 'response.create' });
    await s.until('response.done');
    s.rt.send({ type: 'response.create', response: { output_modalities: ['audio'], instructions: 'say it again, out loud' } });
    await s.until('response.done', 2);
    s.rt.close();
    expect(await s.closed).toEqual({ code: 1000, reason: 'OK' });
    expect(s.errors).toEqual([]);

    // the client saw the upstream's events as they were sent
    const types = s.events.map((e) => e.type);
    expect(types[0]).toBe('session.created');
    expect(types).toContain('conversation.item.added');
    expect(types).toContain('response.output_text.delta');
    expect(types).toContain('response.output_audio.delta');
    const firstText = s.events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
    expect(firstText).toBe('Echo 1: hello through the proxy');

    // the upstream saw the resolved key and the model, never the client's credentials
    expect(fake.realtime.sessions).toHaveLength(1);
    const up = fake.realtime.sessions[0];
    expect(up.key).toBe('sk-test-proxy-0001');
    expect(up.url).toBe(`/v1/realtime?model=${MODEL}`);
    expect(up.headers['x-user-id']).toBeUndefined();
    expect(JSON.stringify(up.headers)).not.toContain(o.token);
    expect(up.received.map((e: any) => e.type)).toEqual(['conversation.item.create', 'response.create', 'response.create']);

    const requestId = headers['x-request-id'] as string;
    expect(requestId).toMatch(/^req_[A-Za-z0-9_-]{24}$/);
    expect(headers['x-key-source']).toBe('organization');
    expect(headers['x-upstream-request-id']).toMatch(/^req_/);

    const rec = await pollRequest(o.call, requestId, (r) => r.status !== 'pending');
    const done = s.events.filter((e) => e.type === 'response.done').map((e) => e.response.usage);
    const sum = (f: (u: any) => number) => done.reduce((n, u) => n + f(u), 0);
    const usage = {
      input_tokens: sum((u) => u.input_tokens),
      output_tokens: sum((u) => u.output_tokens),
      total_tokens: sum((u) => u.total_tokens),
      cached_tokens: sum((u) => u.input_token_details.cached_tokens),
    };
    expect(usage.cached_tokens).toBeGreaterThan(0);
    expect(rec).toMatchObject({
      id: requestId,
      endpoint: 'realtime',
      model: MODEL,
      stream: true,
      status: 'completed',
      upstream_status: 101,
      user_id: o.userId,
      session_id: headers['x-session-id'],
      key_id: o.keyId,
      key_source: 'organization',
      request_body: { model: MODEL },
      usage,
      output_text: `Echo 1: hello through the proxy\nEcho 2: say it again, out loud`,
      error: null,
      response_body: { object: 'realtime.session', model: MODEL, responses: 2, closed_by: 'client', close_code: 1000, close_reason: 'OK' },
    });
    expect(rec).toMatchObject({ method: 'GET', route: '/v1/realtime', upstream_request_id: headers['x-upstream-request-id'], object_id: s.events[0].session.id });
    expect(rec.response_body.id).toBe(s.events[0].session.id);
    // gpt-realtime per million tokens: text $4 in, $0.40 cached, $16 out; audio $64 out (the fake's input is all text)
    const audioOut = sum((u) => u.output_token_details.audio_tokens);
    expect(audioOut).toBeGreaterThan(0);
    const usd = ((usage.input_tokens - usage.cached_tokens) * 4 + usage.cached_tokens * 0.4 + (usage.output_tokens - audioOut) * 16 + audioOut * 64) / 1e6;
    expect(rec.cost).toBeCloseTo(usd, 12);
    expect(rec.latency_ms).toEqual(expect.any(Number));
  });

  it('refused before the upgrade in the contract envelope: no token 401, no X-User-ID 422, an OpenAI key 401; the upstream is never reached', async () => {
    const o = await proxyOrg(app, fake.url);
    const path = `/v1/realtime?model=${MODEL}`;
    const cases: [Record<string, string>, number, string][] = [
      [{ 'x-user-id': o.userId }, 401, 'missing_token'],
      [{ authorization: 'Bearer sk-proj-abcdefgh', 'x-user-id': o.userId }, 401, 'openai_key_as_token'],
      [{ authorization: 'Bearer not.a.jwt', 'x-user-id': o.userId }, 401, 'invalid_token'],
      [{ authorization: `Bearer ${o.token}` }, 422, 'missing_user_id'],
      [{ ...auth(o), 'x-session-id': 'bad session id' }, 400, 'invalid_request_error'],
    ];
    for (const [headers, status, code] of cases) {
      const r = await upgrade(app, path, headers);
      expect(r.status, JSON.stringify(headers)).toBe(status);
      expect(r.headers!['content-type']).toMatch(/^application\/json/);
      expect(r.headers!['x-request-id']).toMatch(/^req_/);
      const err = r.ws ? null : r.body.error;
      expect(Object.keys(err).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect([err.code, err.type]).toContain(code);
    }
    // an organization without a key: 403 no_api_key
    const keyless = await createOrg(app);
    const r = await upgrade(app, path, { authorization: `Bearer ${keyless.token}`, 'x-user-id': 'someone@example.com' });
    expect(r.status).toBe(403);
    expect(r.ws ? null : r.body.error.code).toBe('no_api_key');
    expect(fake.realtime.keysSeen).toEqual([]);

    // other upgrades are not taken: they are served as plain requests
    const health = await upgrade(app, '/health', {});
    expect(health.status).toBe(200);
  });

  it('a browser passes its token as the openai-insecure-api-key subprotocol: accepted (never forwarded), the pinned user acts', async () => {
    const o = await proxyOrg(app, fake.url);
    const pinned = `browser-${randomUUID()}@example.com`;
    const { token } = await createToken(app, o.orgId, { userId: pinned });
    const r = await open(app, `/v1/realtime?model=${MODEL}`, {}, ['realtime', `openai-insecure-api-key.${token}`, 'openai-beta.realtime-v1']);
    const ws = r.ws;
    expect(ws.protocol).toBe('realtime');
    await waitFor(() => r.messages.length > 0);
    expect(JSON.parse(r.messages[0][0].toString()).type).toBe('session.created');
    const up = fake.realtime.sessions[0];
    expect(up.key).toBe('sk-test-proxy-0001');
    expect(up.headers['sec-websocket-protocol']).toBeUndefined();
    expect(up.headers['openai-beta']).toBe('realtime=v1');
    expect(JSON.stringify(up.headers)).not.toContain(token);
    ws.close(1000);
    await closedWith(ws);
    const rec = await pollRequest(o.call, r.headers['x-request-id'] as string, (x) => x.status !== 'pending');
    expect(rec).toMatchObject({ user_id: pinned, status: 'completed' });

    // a token pinned to no user still needs X-User-ID, which a browser cannot send
    const unpinned = await upgrade(app, `/v1/realtime?model=${MODEL}`, {}, ['realtime', `openai-insecure-api-key.${o.token}`]);
    expect(unpinned.status).toBe(422);
  });

  it('a limit reached refuses the session at connect with 429 and Retry-After, before the upstream', async () => {
    const limits = app.app.get(LimitsService);
    const clock = limits.clock;
    // every connect of the test lands in one minute window
    const now = Math.floor(Date.now() / 60_000) * 60_000 + 30_000;
    limits.clock = () => now;
    try {
      const o = await proxyOrg(app, fake.url);
      await app.app.get(LimitsAdminService).setOrganizationLimits(o.orgId, { rpm: 1 }, cliActor());
      const first = await open(app, `/v1/realtime?model=${MODEL}`, auth(o));
      expect(first.headers['x-ratelimit-remaining-requests']).toBe('0');
      const second = await upgrade(app, `/v1/realtime?model=${MODEL}`, auth(o));
      expect(second.status).toBe(429);
      expect(second.ws ? null : second.body.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
      expect(second.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      expect(fake.realtime.sessions).toHaveLength(1);
      first.ws.close();
      await closedWith(first.ws);
    } finally {
      limits.clock = clock;
    }
  });

  it('an upstream close reaches the client with its code and reason, and the record tells how the session ended', async () => {
    const cases: [number, string, string][] = [
      [1011, 'the model session failed', 'upstream_error'],
      [4002, 'session expired', 'upstream_error'],
      [1000, 'done', 'completed'],
    ];
    for (const [code, reason, status] of cases) {
      const o = await proxyOrg(app, fake.url);
      fake.realtime.enqueue({ kind: 'close', code, reason, afterEvents: 1 });
      const s = sdkSession(o);
      const headers = await s.headers;
      await s.until('session.created');
      s.rt.send({ type: 'response.create' });
      expect(await s.closed).toEqual({ code, reason });
      const rec = await pollRequest(o.call, headers['x-request-id'] as string, (r) => r.status !== 'pending');
      expect(rec.status).toBe(status);
      expect(rec.response_body).toMatchObject({ closed_by: 'upstream', close_code: code, close_reason: reason });
      if (status === 'upstream_error') expect(rec.error).toMatchObject({ type: 'upstream_error', code: `websocket_close_${code}`, message: reason });
    }
  });

  it('the upstream refusing the session answers the upgrade with its error (the key never in it), and is recorded', async () => {
    // a key the upstream refuses: 502 upstream_auth_failed, not the caller's 401
    const bad = await proxyOrg(app, fake.url, 'bad-key-0123456789abcdef');
    const r401 = await upgrade(app, `/v1/realtime?model=${MODEL}`, auth(bad));
    expect(r401.status).toBe(502);
    expect(r401.ws ? null : r401.body.error.code).toBe('upstream_auth_failed');
    expect(JSON.stringify(r401.ws ? null : r401.body)).not.toContain('bad-key-0123456789abcdef');
    const rec401 = await pollRequest(bad.call, r401.headers['x-request-id'] as string, (r) => r.status !== 'pending');
    expect(rec401).toMatchObject({ endpoint: 'realtime', status: 'failed', upstream_status: 401, usage: { total_tokens: null }, cost: null });
    expect(rec401.upstream_request_id).toMatch(/^req_/);
    expect(rec401.upstream_request_id).toBe(r401.headers['x-upstream-request-id']);

    const o = await proxyOrg(app, fake.url);
    fake.realtime.enqueue({ kind: 'refuse', status: 429, retryAfter: '7' });
    const r429 = await upgrade(app, `/v1/realtime?model=${MODEL}`, auth(o));
    expect(r429.status).toBe(429);
    expect(r429.ws ? null : r429.body.error.message).toBe('Rate limit reached for realtime sessions.');

    // an upstream that cannot be reached
    const gone = await createOrg(app);
    await createKey(app, gone.orgId, 'sk-unreachable-0001', { baseUrl: 'http://127.0.0.1:9/v1' });
    const r502 = await upgrade(app, `/v1/realtime?model=${MODEL}`, { authorization: `Bearer ${gone.token}`, 'x-user-id': 'u@example.com' });
    expect(r502.status).toBe(502);
    expect(r502.ws ? null : r502.body.error.type).toBe('upstream_error');
    const rec502 = await pollRequest(api(app, gone.token, 'u@example.com'), r502.headers['x-request-id'] as string, (r) => r.status !== 'pending');
    expect(rec502).toMatchObject({ status: 'upstream_error', upstream_status: null, error: { type: 'upstream_error' } });
  });

  it('a key pool fails over before the upgrade is answered: a 401 invalidates its key, a 429 rests it, the next key serves the session', async () => {
    const org = await createOrg(app);
    const keys = app.app.get(KeysService);
    const refused = (await keys.create({ orgId: org.orgId, apiKey: 'bad-realtime-key-0401', baseUrl: fake.url, priority: 3 }, cliActor())).id;
    const limited = (await keys.create({ orgId: org.orgId, apiKey: 'sk-realtime-limited-0429', baseUrl: fake.url, priority: 2 }, cliActor())).id;
    const good = (await keys.create({ orgId: org.orgId, apiKey: 'sk-realtime-good-0200', baseUrl: fake.url, priority: 1 }, cliActor())).id;
    const headers = { authorization: `Bearer ${org.token}`, 'x-user-id': 'rt-pool@example.com' };
    // the first upgrade the fake sees with an sk- key (the limited one) is refused with 429
    fake.realtime.enqueue({ kind: 'refuse', status: 429, retryAfter: '30' });
    const r = await open(app, `/v1/realtime?model=${MODEL}`, headers);
    expect(fake.realtime.keysSeen).toEqual(['bad-realtime-key-0401', 'sk-realtime-limited-0429', 'sk-realtime-good-0200']);
    r.ws!.close();
    const rec = await pollRequest(api(app, org.token, 'rt-pool@example.com'), r.headers['x-request-id'] as string, (x) => x.status !== 'pending');
    expect(rec).toMatchObject({
      endpoint: 'realtime',
      key_id: good,
      key_attempts: [
        { key_id: refused, outcome: 'invalid', status: 401 },
        { key_id: limited, outcome: 'rate_limited', status: 429 },
      ],
    });
    const states = Object.fromEntries((await keys.list(org.orgId)).map((k) => [k.id, k]));
    await waitFor(async () => Object.fromEntries((await keys.list(org.orgId)).map((k) => [k.id, k.state]))[refused] === 'invalid', 3000, 'key invalid');
    expect(states[good].state).toBe('active');
  });

  it('binary frames are relayed as binary frames, both ways, byte for byte', async () => {
    const o = await proxyOrg(app, fake.url);
    const r = await open(app, `/v1/realtime?model=${MODEL}`, auth(o));
    const ws = r.ws;
    const got = r.messages;
    const payload = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x00, 0x7f, 0x80]);
    ws.send(payload, { binary: true });
    const text = '{ "type" : "session.update", "session": {"instructions": "é \\u00e9"} }';
    ws.send(text);
    await waitFor(() => got.some(([, b]) => b) && got.some(([d]) => d.toString().includes('session.updated')));
    const echoed = got.find(([, b]) => b)!;
    expect(echoed[0].equals(payload)).toBe(true);
    const up = fake.realtime.sessions[0];
    expect((up.received[0] as Buffer).equals(payload)).toBe(true);
    expect(up.received[1]).toEqual(JSON.parse(text));
    ws.close();
    await closedWith(ws);
  });

  it('backpressure: a burst toward a client that does not read holds the upstream back instead of filling the proxy', async () => {
    const o = await proxyOrg(app, fake.url);
    const r = await open(app, `/v1/realtime?model=${MODEL}`, auth(o));
    const ws = r.ws;
    ws.pause();
    await waitFor(() => fake.realtime.sessions.length === 1);
    const up = fake.realtime.sessions[0];
    const count = 256;
    const size = 256 * 1024;
    const burst = up.burst(count, size);

    // the proxy stops reading the upstream once its queue toward the client is over the high-water mark
    const gateway = app.app.get(RealtimeGateway);
    const session = () => gateway.sessionOf(r.headers['x-request-id'] as string);
    // (without backpressure the proxy would take the whole burst into its memory, and the burst would complete)
    const heldBack = () => session()?.holdingBack('upstream') === true;
    await Promise.race([waitFor(heldBack, 15_000, 'the upstream held back'), burst]);
    expect(heldBack()).toBe(true);
    expect(up.burstSentBytes).toBeLessThan(count * size);
    expect(session()!.toward.client.peakQueuedBytes).toBeLessThanOrEqual(HIGH_WATER_BYTES + size);

    // the client reads again: every frame arrives, in order, and the upstream's burst completes
    const binary = () => r.messages.filter(([, isBinary]) => isBinary).map(([d]) => d);
    ws.resume();
    await burst;
    await waitFor(() => binary().length === count, 15_000, 'every frame');
    const frames = binary();
    expect(frames.map((f) => f.readUInt32BE(0))).toEqual([...Array(count).keys()]);
    expect(frames.every((f) => f.length === size)).toBe(true);
    expect(session()!.toward.client.peakQueuedBytes).toBeLessThanOrEqual(HIGH_WATER_BYTES + size);
    ws.close();
    await closedWith(ws);
  });

  it('a shutdown closes open sessions with 1001 and records them', async () => {
    const second = await createTestApp({ LOG_LEVEL: 'warn', DATABASE_URL: process.env.DATABASE_URL ?? app.db.url, DB_POOL_SIZE: '2' });
    let closed = false;
    try {
      const o = await proxyOrg(second, fake.url);
      const r = await open(second, `/v1/realtime?model=${MODEL}`, auth(o));
      const ws = r.ws;
      const messages = () => r.messages.map(([d]) => JSON.parse(d.toString()));
      ws.send(JSON.stringify({ type: 'response.create' }));
      await waitFor(() => messages().some((m) => m.type === 'response.done'));
      const end = closedWith(ws);
      await second.close();
      closed = true;
      expect(await end).toEqual({ code: 1001, reason: 'The server is shutting down' });
      expect(fake.realtime.sessions[0].closed?.code).toBe(1001);

      // read on the first server, which shares the database
      const rec = await pollRequest(api(app, o.token, o.userId), r.headers['x-request-id'] as string, (x) => x.status !== 'pending');
      expect(rec).toMatchObject({ status: 'interrupted', usage: { total_tokens: messages().find((m) => m.type === 'response.done').response.usage.total_tokens } });
    } finally {
      if (!closed) await second.close();
    }
  });
});
