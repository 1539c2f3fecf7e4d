import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/app-config';
import { createTestApp, TestApp } from '../support/create-test-app';
import { ExchangeRecorder } from '../../src/exchanges/recorder/exchange-recorder.service';
import { api, createKey, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, proxyOrg, waitFor } from '../support/proxy-test-helpers';

describe('proxy: forwarding through the official SDK, records, sessions, personas', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  it('Responses, non-streaming: the upstream body unchanged, headers, and a complete record', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.responses
      .create({ model: 'gpt-4o-mini', input: 'hello there', metadata: { a: 'b' } })
      .withResponse();
    expect(data.output_text).toBe('Echo: hello there');
    const requestId = response.headers.get('x-request-id')!;
    expect(requestId).toMatch(/^req_[A-Za-z0-9_-]{24}$/);
    expect(response.headers.get('x-session-id')).toMatch(/^session_[A-Za-z0-9_-]{24}$/);
    expect(response.headers.get('x-key-source')).toBe('organization');

    // upstream saw the client's bytes, our key, and none of the client's credentials
    expect(fake.requests).toHaveLength(1);
    const up = fake.requests[0];
    expect(up.path).toBe('/v1/responses');
    expect(up.headers.authorization).toBe('Bearer sk-test-proxy-0001');
    expect(up.headers['x-user-id']).toBeUndefined();
    expect(up.rawBody).toBe(JSON.stringify({ model: 'gpt-4o-mini', input: 'hello there', metadata: { a: 'b' } }));

    const rec = await o.call('GET', `/v1/requests/${requestId}`);
    expect(rec.status).toBe(200);
    expect(rec.body).toMatchObject({
      id: requestId,
      response_id: data.id,
      session_id: response.headers.get('x-session-id'),
      user_id: o.userId,
      persona_id: null,
      persona_version: null,
      endpoint: 'responses',
      model: 'gpt-4o-mini',
      stream: false,
      status: 'completed',
      upstream_status: 200,
      key_id: o.keyId,
      key_source: 'organization',
      request_body: { model: 'gpt-4o-mini', input: 'hello there', metadata: { a: 'b' } },
      output_text: 'Echo: hello there',
      error: null,
    });
    // the SDK adds output_text to what it returns; the wire body has no such field
    const { output_text: _sdkOnly, ...wire } = JSON.parse(JSON.stringify(data));
    expect(rec.body.response_body).toEqual(wire);
    expect(rec.body.usage).toEqual({
      input_tokens: data.usage!.input_tokens,
      output_tokens: data.usage!.output_tokens,
      total_tokens: data.usage!.total_tokens,
      cached_tokens: 0,
      reasoning_tokens: 0,
    });
    // gpt-4o-mini: $0.15 / $0.60 per million
    expect(rec.body.cost).toBeCloseTo((data.usage!.input_tokens * 0.15 + data.usage!.output_tokens * 0.6) / 1e6, 12);
    expect(rec.body.latency_ms).toEqual(expect.any(Number));
    expect(rec.body.time_to_first_byte_ms).toEqual(expect.any(Number));
    expect(new Date(rec.body.created_at).toISOString()).toBe(rec.body.created_at);

    const stored = await o.call('GET', `/v1/responses/${data.id}`);
    expect(stored.status).toBe(200);
    expect(stored.body).toEqual(wire);
  });

  it('Responses, streaming: events relayed unchanged and in order; the completed response is stored', async () => {
    const o = await proxyOrg(app, fake.url);
    const stream = await o.client.responses.create({ model: 'gpt-4.1', input: 'stream me please', stream: true });
    const types: string[] = [];
    let text = '';
    let completed: any;
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') completed = ev.response;
    }
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(5);
    expect(text).toBe('Echo: stream me please');

    const list = await o.call('GET', '/v1/requests');
    expect(list.body.data).toHaveLength(1);
    const rec = list.body.data[0];
    expect(rec).toMatchObject({ stream: true, status: 'completed', response_id: completed.id, output_text: text, upstream_status: 200 });
    expect(rec.response_body).toEqual(completed);
    expect(rec.usage.total_tokens).toBe(completed.usage.total_tokens);
    expect(rec.cost).toBeGreaterThan(0);
  });

  it('the raw SSE bytes reach the client exactly as the upstream sent them', async () => {
    const o = await proxyOrg(app, fake.url);
    const res = await fetch(`${app.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', input: 'bytes', stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    const events = parseSse(text);
    expect(events.every((e) => e.event === JSON.parse(e.data).type)).toBe(true);
    expect(events.map((e) => JSON.parse(e.data).sequence_number)).toEqual(events.map((_, i) => i));
    // no re-serialization: the bytes are the upstream's own formatting
    expect(text).toContain(`event: response.created\ndata: {"type":"response.created","sequence_number":0,`);
  });

  it('client.responses.stream() helper gives the final response', async () => {
    const o = await proxyOrg(app, fake.url);
    const runner = o.client.responses.stream({ model: 'gpt-4o-mini', input: 'helper' });
    const deltas: string[] = [];
    runner.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await runner.finalResponse();
    expect(final.output_text).toBe('Echo: helper');
    expect(deltas.join('')).toBe('Echo: helper');
    const stored = await o.call('GET', `/v1/responses/${final.id}`);
    expect(stored.status).toBe(200);
    expect(stored.body.id).toBe(final.id);
  });

  it('Chat Completions, non-streaming and streaming (ends with [DONE]; content and usage rebuilt for the record)', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data: done, response } = await o.client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi chat' }] })
      .withResponse();
    expect(done.choices[0].message.content).toBe('Echo: hi chat');
    const rec1 = await o.call('GET', `/v1/requests/${response.headers.get('x-request-id')}`);
    expect(rec1.body).toMatchObject({
      endpoint: 'chat.completions',
      status: 'completed',
      response_id: done.id,
      output_text: 'Echo: hi chat',
      usage: { input_tokens: done.usage!.prompt_tokens, output_tokens: done.usage!.completion_tokens, total_tokens: done.usage!.total_tokens },
    });

    const raw = await fetch(`${app.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream chat' }], stream: true, stream_options: { include_usage: true } }),
    });
    const text = await raw.text();
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const rec2 = await o.call('GET', `/v1/requests/${raw.headers.get('x-request-id')}`);
    expect(rec2.body).toMatchObject({ stream: true, status: 'completed', output_text: 'Echo: stream chat' });
    expect(rec2.body.usage.total_tokens).toBeGreaterThan(0);
    expect(rec2.body.response_body).toMatchObject({ object: 'chat.completion', choices: [{ message: { content: 'Echo: stream chat' }, finish_reason: 'stop' }] });

    const stream = await o.client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'sdk stream' }], stream: true });
    let content = '';
    for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? '';
    expect(content).toBe('Echo: sdk stream');
  });

  it('a user key is preferred and reported in X-Key-Source; upstream cookies never reach the client', async () => {
    const o = await proxyOrg(app, fake.url);
    const user = await createUser(app, o.orgId);
    const own = await createKey(app, o.orgId, 'sk-users-own-key-9999', { userId: user.id, baseUrl: fake.url });
    const call = api(app, o.token, user.external_id);
    fake.enqueue({ kind: 'set-cookie' });
    const res = await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'mine' }, { cookie: 'session=abc' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-key-source')).toBe('user');
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(fake.requests[0].headers.authorization).toBe('Bearer sk-users-own-key-9999');
    expect(fake.requests[0].headers.cookie).toBeUndefined();
    const rec = await call('GET', `/v1/requests/${res.headers.get('x-request-id')}`);
    expect(rec.body).toMatchObject({ key_id: (own as any).id, key_source: 'user' });
  });

  it('validates only the fields the proxy reads; unknown fields pass through', async () => {
    const o = await proxyOrg(app, fake.url);
    const cases: [unknown, string | null][] = [
      [[1, 2], null],
      [{ model: 5, input: 'x' }, 'model'],
      [{ model: 'gpt-4o', stream: 'yes' }, 'stream'],
      [{ model: 'gpt-4o', persona_id: 'nope' }, 'persona_id'],
      [{ model: 'gpt-4o', previous_response_id: 7 }, 'previous_response_id'],
    ];
    for (const [body, param] of cases) {
      const r = await o.call('POST', '/v1/responses', body);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    const bad = await o.call('POST', '/v1/responses', '{"model": ');
    expect(bad.status).toBe(400);
    const session = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'x' }, { 'x-session-id': 'bad session!' });
    expect(session.status).toBe(400);
    expect(session.body.error.type).toBe('invalid_request_error');
    expect(fake.requests).toHaveLength(0);

    const extra = { model: 'gpt-4o', input: 'x', some_future_param: { deep: [1, 2, 3] }, temperature: 0.2 };
    const ok = await o.call('POST', '/v1/responses', extra);
    expect(ok.status).toBe(200);
    expect(fake.requests[0].body).toEqual(extra);
  });

  it('persona: content becomes instructions (before the client’s) or a leading system message; version recorded', async () => {
    const o = await proxyOrg(app, fake.url);
    const created = await o.call('POST', '/v1/personas', { name: `p-${randomUUID()}`, content: 'You are a pirate.' });
    expect(created.status).toBe(201);
    const personaId = created.body.id;

    const r1 = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'hi', instructions: 'Be brief.', persona_id: personaId, extra_field: 1 });
    expect(r1.status).toBe(200);
    expect(fake.requests[0].body).toEqual({ model: 'gpt-4o', input: 'hi', instructions: 'You are a pirate.\n\nBe brief.', extra_field: 1 });
    const rec1 = await o.call('GET', `/v1/requests/${r1.headers.get('x-request-id')}`);
    expect(rec1.body).toMatchObject({ persona_id: personaId, persona_version: 1 });
    expect(rec1.body.request_body.persona_id).toBeUndefined();

    const r2 = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'hi', persona_id: personaId });
    expect(fake.requests[1].body.instructions).toBe('You are a pirate.');
    expect(r2.status).toBe(200);

    const patched = await o.call('PATCH', `/v1/personas/${personaId}`, { content: 'You are a poet.' });
    expect(patched.status).toBe(200);
    const r3 = await o.call('POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'yo' }], persona_id: personaId });
    expect(r3.status).toBe(200);
    expect(fake.requests[2].body.messages).toEqual([
      { role: 'system', content: 'You are a poet.' },
      { role: 'user', content: 'yo' },
    ]);
    expect(fake.requests[2].body.persona_id).toBeUndefined();
    const rec3 = await o.call('GET', `/v1/requests/${r3.headers.get('x-request-id')}`);
    expect(rec3.body).toMatchObject({ persona_id: personaId, persona_version: 2 });

    const unknown = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'hi', persona_id: randomUUID() });
    expect(unknown.status).toBe(404);
    const other = await proxyOrg(app, fake.url);
    const foreign = await other.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'hi', persona_id: personaId });
    expect(foreign.status).toBe(404);
    expect(fake.requests).toHaveLength(3);
  });

  it('sessions: X-Session-ID, previous_response_id joins the stored session, otherwise a new one', async () => {
    const o = await proxyOrg(app, fake.url);
    const first = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'one' }, { 'x-session-id': 'conv:42.a_b-c' });
    expect(first.headers.get('x-session-id')).toBe('conv:42.a_b-c');
    const second = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'two', previous_response_id: first.body.id });
    expect(second.headers.get('x-session-id')).toBe('conv:42.a_b-c');
    expect(fake.requests[1].body.previous_response_id).toBe(first.body.id);
    const fresh = await o.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'three', previous_response_id: 'resp_unknown' });
    expect(fresh.headers.get('x-session-id')).toMatch(/^session_/);

    const session = await o.call('GET', '/v1/sessions/conv:42.a_b-c');
    expect(session.status).toBe(200);
    expect(session.body).toMatchObject({ object: 'list', has_more: false });
    expect(session.body.data.map((e: any) => e.id)).toEqual([first.headers.get('x-request-id'), second.headers.get('x-request-id')]);

    // another organization cannot join it, list it or see its records
    const other = await proxyOrg(app, fake.url);
    const foreign = await other.call('POST', '/v1/responses', { model: 'gpt-4o', input: 'x', previous_response_id: first.body.id });
    expect(foreign.headers.get('x-session-id')).not.toBe('conv:42.a_b-c');
    for (const path of [
      '/v1/sessions/conv:42.a_b-c',
      `/v1/requests/${first.headers.get('x-request-id')}`,
      `/v1/responses/${first.body.id}`,
    ]) {
      const r = await other.call('GET', path);
      expect(r.status).toBe(404);
      expect(r.body.error.type).toBe('not_found_error');
    }
    const missing = await o.call('GET', '/v1/requests/req_doesnotexist000000000000');
    expect(missing.status).toBe(404);
    expect((await o.call('GET', '/v1/sessions/nope')).status).toBe(404);
  });

  it('lists requests newest first with filters and cursor pagination', async () => {
    const o = await proxyOrg(app, fake.url);
    const other = await createUser(app, o.orgId);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await o.call('POST', '/v1/responses', { model: i === 2 ? 'gpt-4.1' : 'gpt-4o', input: `n${i}` }, { 'x-session-id': 'list-s' });
      ids.push(r.headers.get('x-request-id')!);
    }
    await api(app, o.token, other.external_id)('POST', '/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });

    const all = await o.call('GET', '/v1/requests');
    expect(all.body.data).toHaveLength(4);
    const page1 = await o.call('GET', '/v1/requests?session_id=list-s&limit=2');
    expect(page1.body.data.map((e: any) => e.id)).toEqual([ids[2], ids[1]]);
    expect(page1.body).toMatchObject({ has_more: true, first_id: ids[2], last_id: ids[1] });
    const page2 = await o.call('GET', `/v1/requests?session_id=list-s&limit=2&after=${page1.body.last_id}`);
    expect(page2.body.data.map((e: any) => e.id)).toEqual([ids[0]]);
    expect(page2.body.has_more).toBe(false);

    expect((await o.call('GET', '/v1/requests?model=gpt-4.1')).body.data.map((e: any) => e.id)).toEqual([ids[2]]);
    expect((await o.call('GET', `/v1/requests?user_id=${encodeURIComponent(other.external_id)}`)).body.data).toHaveLength(1);
    const future = new Date(Date.now() + 3600_000).toISOString();
    expect((await o.call('GET', `/v1/requests?from=${future}`)).body.data).toHaveLength(0);
    expect((await o.call('GET', `/v1/requests?to=${future}`)).body.data).toHaveLength(4);
    const bad = await o.call('GET', '/v1/requests?from=yesterday');
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe('from');
    expect((await o.call('GET', '/v1/requests?limit=0')).status).toBe(400);
  });

  it('concurrent calls are recorded with group commit: fewer statements than rows, every row complete', async () => {
    const o = await proxyOrg(app, fake.url);
    const recorder = app.app.get(ExchangeRecorder) as any;
    const original = recorder.execute;
    let statements = 0;
    recorder.execute = function (batch: unknown[]) {
      statements++;
      return original.call(this, batch);
    };
    try {
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: `c${i}` }, { 'x-session-id': 'burst' })),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      // 40 pending rows + 40 completions
      expect(statements).toBeLessThan(80);
    } finally {
      recorder.execute = original;
    }
    const stored = await o.call('GET', '/v1/sessions/burst?limit=100');
    expect(stored.body.data).toHaveLength(40);
    expect(stored.body.data.every((e: any) => e.status === 'completed' && e.output_text.startsWith('Echo: c'))).toBe(true);
  });
  it('record batches of every size, alone and mixed, write every row once and complete it (prepared shapes on PostgreSQL)', async () => {
    const recorder = app.app.get(ExchangeRecorder) as any;
    const names: (string | undefined)[] = [];
    const originalPool = recorder.pool;
    recorder.pool = function (durable: boolean) {
      const pool = originalPool.call(this, durable);
      return { query: (q: { name?: string }) => (names.push(q.name), pool.query(q)) };
    };
    const orgId = randomUUID();
    const pending = (n: number, tag: string) =>
      Array.from({ length: n }, (_, i) => ({
        id: `req_batch_${tag}_${i}_${randomUUID().slice(0, 8)}`,
        organizationId: orgId,
        userId: randomUUID(),
        externalUserId: 'batch-user',
        sessionId: `sess_batch_${tag}`,
        personaId: null,
        personaVersion: null,
        endpoint: 'responses',
        model: 'gpt-4o-mini',
        stream: false,
        requestBody: JSON.stringify({ model: 'gpt-4o-mini', input: `${tag} ${i}` }),
        keyId: randomUUID(),
        keySource: 'org',
        createdAt: new Date(),
      }));
    const outcome = (id: string) => ({
      id, status: 'completed', upstreamStatus: 200, responseId: `resp_${id}`, responseBody: { id: `resp_${id}` }, outputText: `out ${id}`,
      error: null, usage: { input: 3, output: 4, total: 7 }, cost: 0.001, latencyMs: 5, timeToFirstByteMs: 2,
    });
    try {
      const all: string[] = [];
      let previous: ReturnType<typeof pending> = [];
      for (const [n, tag] of [[1, 'a'], [3, 'b'], [5, 'c'], [17, 'd'], [70, 'e'], [2, 'f']] as const) {
        const rows = pending(n, tag);
        // one tick: these pending rows and the previous rows' completions share one flush
        await Promise.all([...rows.map((r) => recorder.begin(r)), ...previous.map((r) => recorder.complete(outcome(r.id)))]);
        all.push(...rows.map((r) => r.id));
        previous = rows;
      }
      await Promise.all(previous.map((r) => recorder.complete(outcome(r.id))));
      const stored = await app.dataSource.query(
        `SELECT id, status, output_text, total_tokens FROM exchanges WHERE organization_id = $1 ORDER BY id`,
        [orgId],
      );
      expect(stored.map((r: any) => r.id)).toEqual([...all].sort());
      expect(stored.every((r: any) => r.status === 'completed' && r.output_text === `out ${r.id}` && Number(r.total_tokens) === 7)).toBe(true);
      if (process.env.DATABASE_URL) {
        // one statement per step (open calls, rows written whole, completions), each part padded to 1, 2, 4, 8 …
        // rows; over 64 rows a statement is not prepared
        expect(names).toEqual(['records_1_0_0', 'records_4_0_1', 'records_8_0_4', 'records_32_0_8', undefined, undefined, 'records_0_0_2']);
        // nothing of them is left open
        expect(await app.dataSource.query(`SELECT id FROM open_calls WHERE organization_id = $1`, [orgId])).toEqual([]);
      }

      // completions whose pending rows are still queued join them: three rows written whole in one INSERT
      names.length = 0;
      const quick = pending(3, 'g');
      await Promise.all(quick.flatMap((r) => [recorder.begin(r), recorder.complete(outcome(r.id))]));
      expect(names).toHaveLength(1);
      if (process.env.DATABASE_URL) expect(names).toEqual(['records_0_4_0']);
      const whole = await app.dataSource.query(`SELECT status, output_text, completed_at FROM exchanges WHERE id = ANY($1)`, [quick.map((r) => r.id)]);
      expect(whole).toHaveLength(3);
      expect(whole.every((r: any) => r.status === 'completed' && r.output_text.startsWith('out ') && r.completed_at)).toBe(true);
      if (process.env.DATABASE_URL) {
      }
    } finally {
      recorder.pool = originalPool;
    }
  });
  it('a JSON call that ends within RECORD_PENDING_AFTER_MS is written once, whole; a slower one is pending while it runs; a stream at once', async () => {
    const o = await proxyOrg(app, fake.url);
    const recorder = app.app.get(ExchangeRecorder) as any;
    const statements: { name?: string; text: string }[] = [];
    const originalPool = recorder.pool;
    recorder.pool = function (durable: boolean) {
      const pool = originalPool.call(this, durable);
      return { query: (q: { name?: string; text: string }) => pool.query(q).then((r: unknown) => (statements.push(q), r)) };
    };
    try {
      const quick = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'quick' });
      expect(quick.status).toBe(200);
      expect(statements).toHaveLength(1);
      expect(statements[0].text).toMatch(/^INSERT INTO exchanges/);
      const rec = await o.call('GET', `/v1/requests/${quick.headers.get('x-request-id')}`);
      expect(rec.body).toMatchObject({ status: 'completed', output_text: 'Echo: quick' });

      statements.length = 0;
      fake.enqueue({ kind: 'delay', ms: 400 });
      const slow = o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'slow' });
      await waitFor(() => fake.requests.length > 0 && statements.length === 1, 5000, 'the pending row of the slow call');
      // while it runs, its record is an open call (read as a pending exchange), not a row of exchanges
      const [{ id }] = await app.dataSource.query(`SELECT id FROM open_calls WHERE request_body->>'input' = 'slow' AND organization_id = $1`, [o.orgId]);
      expect(await app.dataSource.query(`SELECT id FROM exchanges WHERE id = $1`, [id])).toEqual([]);
      expect((await slow).status).toBe(200);
      expect(statements.map((q) => q.text.slice(0, 22))).toEqual(['INSERT INTO open_calls', 'WITH outcome AS (SELEC']);
      expect((await o.call('GET', `/v1/requests/${id}`)).body.status).toBe('completed');
      expect(await app.dataSource.query(`SELECT id FROM open_calls WHERE id = $1`, [id])).toEqual([]);

    } finally {
      recorder.pool = originalPool;
    }

    // with a long hold, a JSON call is still one INSERT, and a stream's pending row is still written at once
    expect(() => loadConfig({ ...app.env, RECORD_PENDING_AFTER_MS: 'soon' })).toThrow(ConfigError);
    const held = await createTestApp({ DATABASE_URL: app.db.url, RECORD_PENDING_AFTER_MS: '60000' });
    try {
      const h = await proxyOrg(held, fake.url);
      const heldRecorder = held.app.get(ExchangeRecorder) as any;
      const originalHeldPool = heldRecorder.pool;
      heldRecorder.pool = function (durable: boolean) {
        const pool = originalHeldPool.call(this, durable);
        return { query: (q: { name?: string; text: string }) => pool.query(q).then((r: unknown) => (statements.push(q), r)) };
      };
      statements.length = 0;
      fake.reset();
      fake.enqueue({ kind: 'delay', ms: 300 });
      expect((await h.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'held' })).status).toBe(200);
      expect(statements.map((q) => q.text.slice(0, 22))).toEqual(['INSERT INTO exchanges ']);

      statements.length = 0;
      fake.enqueue({ kind: 'slow-stream', firstByteMs: 300, eventIntervalMs: 0 });
      const streamed = h.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'streamed', stream: true });
      await waitFor(() => statements.length === 1, 5000, "the stream's pending row before its first byte");
      expect(fake.requests.length).toBe(2); // the upstream has the call, and has not answered yet
      expect((await streamed).status).toBe(200);
      expect(statements.map((q) => q.text.slice(0, 22))).toEqual(['INSERT INTO open_calls', 'WITH outcome AS (SELEC']);
    } finally {
      await held.close();
    }
  });
});
