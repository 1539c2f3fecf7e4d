import OpenAI, { toFile } from 'openai';
import WebSocket from 'ws';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

/** personal data of every kind the redacted mode replaces */
const PII = {
  email: 'alice.smith@example.com',
  phone: '+44 20 7946 0958',
  card: '4111 1111 1111 1111',
  iban: 'DE89 3704 0044 0532 0130 00',
  ip: '192.168.10.20',
  key: 'sk-proj-Zx81bq7LmN0pQrStUvWxYz_12-34567890abcdef',
};
const SENT = `I am ${PII.email}, call me on ${PII.phone}; card ${PII.card}, IBAN ${PII.iban}, from ${PII.ip} with ${PII.key}. Order #100234987 on 2024-05-17.`;
/** what the redacted record holds instead (the look-alikes stay) */
const REDACTED = 'I am [EMAIL_1], call me on [PHONE_1]; card [CARD_1], IBAN [IBAN_1], from [IP_1] with [SECRET_1]. Order #100234987 on 2024-05-17.';
const ALL_PII = Object.values(PII);

interface StoredRow {
  status: string;
  capture_mode: string;
  request_body: string | null;
  response_body: string | null;
  output_text: string | null;
  error: any;
  input_tokens: string | null;
  output_tokens: string | null;
  cost: number | null;
  latency_ms: number | null;
  model: string | null;
  response_id: string | null;
  upstream_status: number | null;
}

describe('capture modes: what is stored of an exchange (full, redacted, metadata); the upstream and the client see it all', () => {
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

  /** A fresh organization, in the given capture mode. */
  async function org(mode: 'full' | 'redacted' | 'metadata' = 'full'): Promise<ProxyTestOrg> {
    const o = await proxyOrg(app, fake.url);
    if (mode !== 'full') await app.app.get(OrganizationsService).changePrivacy(o.orgId, { captureMode: mode }, cliActor());
    return o;
  }

  /** An SDK client that sends X-Capture-Mode. */
  const lowered = (o: ProxyTestOrg, mode: string) =>
    new OpenAI({ baseURL: `${app.url}/v1`, apiKey: o.token, defaultHeaders: { 'X-User-ID': o.userId, 'X-Capture-Mode': mode }, maxRetries: 0 });

  /** The row as stored (bodies as text), once the call is over. */
  async function stored(requestId: string | null, o: ProxyTestOrg): Promise<StoredRow> {
    await pollRequest(o.call, requestId!, (r) => r.status !== 'pending');
    const rows: StoredRow[] = await app.dataSource.query(
      `SELECT status, capture_mode, request_body::text AS request_body, response_body::text AS response_body, output_text, error,
              input_tokens, output_tokens, cost, latency_ms, model, response_id, upstream_status
         FROM exchanges WHERE id = $1`,
      [requestId],
    );
    expect(rows).toHaveLength(1);
    return rows[0];
  }

  const storedText = (r: StoredRow) => [r.request_body, r.response_body, r.output_text, JSON.stringify(r.error)].join('\n');
  const expectNoPii = (r: StoredRow) => {
    for (const v of ALL_PII) expect(storedText(r)).not.toContain(v);
    // nor in the compact forms the values have in JSON
    expect(storedText(r)).not.toContain('4111111111111111');
    expect(storedText(r)).not.toContain('DE89370400440532013000');
  };
  /** the upstream received the client's body as it was sent, without the header */
  const lastUpstream = () => {
    const req = fake.requests[fake.requests.length - 1];
    expect(req.headers['x-capture-mode']).toBeUndefined();
    return req;
  };
  const expectMetrics = (r: StoredRow) => {
    expect(Number(r.input_tokens)).toBeGreaterThan(0);
    expect(Number(r.output_tokens)).toBeGreaterThan(0);
    expect(r.cost).toBeGreaterThan(0);
    expect(r.latency_ms).not.toBeNull();
    expect(r.model).toBeTruthy();
  };

  describe('redacted', () => {
    it('Responses, not streamed: request, answer and output text with placeholders, the same value with the same one', async () => {
      const o = await org('redacted');
      const { data, response } = await o.client.responses.create({ model: 'gpt-4o-mini', input: SENT }).withResponse();
      // the client's answer is the upstream's, untouched
      expect(data.output_text).toBe(`Echo: ${SENT}`);
      expect(lastUpstream().body.input).toBe(SENT);
      const r = await stored(response.headers.get('x-request-id'), o);
      expect(r).toMatchObject({ status: 'completed', capture_mode: 'redacted', response_id: data.id });
      expectNoPii(r);
      expect(JSON.parse(r.request_body!).input).toBe(REDACTED);
      expect(r.output_text).toBe(`Echo: ${REDACTED}`);
      expect(JSON.stringify(JSON.parse(r.response_body!))).toContain(`Echo: ${REDACTED}`);
      // numbers and keys of the JSON untouched
      expect(JSON.parse(r.response_body!).usage.input_tokens).toBe(Number(r.input_tokens));
      expectMetrics(r);
    });

    it('Responses, streamed: the stream capture is redacted too', async () => {
      const o = await org('redacted');
      const stream = await o.client.responses.create({ model: 'gpt-4o-mini', input: SENT, stream: true }).withResponse();
      let text = '';
      for await (const ev of stream.data) if (ev.type === 'response.output_text.delta') text += ev.delta;
      expect(text).toBe(`Echo: ${SENT}`);
      expect(lastUpstream().body.input).toBe(SENT);
      const r = await stored(stream.response.headers.get('x-request-id'), o);
      expect(r).toMatchObject({ status: 'completed', capture_mode: 'redacted' });
      expectNoPii(r);
      expect(r.output_text).toBe(`Echo: ${REDACTED}`);
      expect(JSON.parse(r.request_body!).input).toBe(REDACTED);
      expectMetrics(r);
    });

    it('chat completions, not streamed and streamed', async () => {
      const o = await org('redacted');
      const messages = [{ role: 'user' as const, content: SENT }];
      const plain = await o.client.chat.completions.create({ model: 'gpt-4o-mini', messages }).withResponse();
      expect(plain.data.choices[0].message.content).toBe(`Echo: ${SENT}`);
      expect(lastUpstream().body.messages[0].content).toBe(SENT);
      const r1 = await stored(plain.response.headers.get('x-request-id'), o);
      expectNoPii(r1);
      expect(JSON.parse(r1.request_body!).messages[0].content).toBe(REDACTED);
      expect(r1.output_text).toBe(`Echo: ${REDACTED}`);
      expect(JSON.parse(r1.response_body!).choices[0].message.content).toBe(`Echo: ${REDACTED}`);
      expectMetrics(r1);

      const streamed = await o.client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }).withResponse();
      let text = '';
      for await (const chunk of streamed.data) text += chunk.choices[0]?.delta?.content ?? '';
      expect(text).toBe(`Echo: ${SENT}`);
      const r2 = await stored(streamed.response.headers.get('x-request-id'), o);
      expectNoPii(r2);
      expect(r2.output_text).toBe(`Echo: ${REDACTED}`);
      expect(JSON.parse(r2.response_body!).choices[0].message.content).toBe(`Echo: ${REDACTED}`);
      expectMetrics(r2);
    });

    it('an upstream failure quoting personal data: the error is stored with the placeholders of the request', async () => {
      const o = await org('redacted');
      fake.enqueue({
        kind: 'status',
        status: 400,
        body: { error: { message: `Invalid content from ${PII.email} (${PII.phone})`, type: 'invalid_request_error', code: 'invalid_value', param: 'input' } },
      });
      const err = await o.client.responses.create({ model: 'gpt-4o-mini', input: SENT }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      const e = err as InstanceType<typeof OpenAI.APIError>;
      expect(e.status).toBe(400);
      // the client is told what the upstream said
      expect(e.message).toContain(PII.email);
      const r = await stored(e.headers!.get('x-request-id'), o);
      expect(r).toMatchObject({ status: 'failed', upstream_status: 400, capture_mode: 'redacted' });
      expectNoPii(r);
      expect(r.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value', message: 'Invalid content from [EMAIL_1] ([PHONE_1])' });
      expect(JSON.parse(r.request_body!).input).toBe(REDACTED);
      expect(r.response_body).toContain('[EMAIL_1]');
    });

    it('a relayed call (embeddings) and an upload (multipart fields and file name) are redacted alike', async () => {
      const o = await org('redacted');
      const emb = await o.client.embeddings.create({ model: 'text-embedding-3-small', input: SENT }).withResponse();
      expect(emb.data.data).toHaveLength(1);
      const up = fake.api.recorded('POST', '/v1/embeddings');
      expect(up[up.length - 1].body.input).toBe(SENT);
      const r = await stored(emb.response.headers.get('x-request-id'), o);
      expectNoPii(r);
      expect(JSON.parse(r.request_body!).input).toBe(REDACTED);
      expect(Number(r.input_tokens)).toBeGreaterThan(0);
      expect(r.cost).toBeGreaterThan(0);

      const file = await o.client.files.create({ file: await toFile(Buffer.from(SENT), `${PII.email}.txt`), purpose: 'user_data' }).withResponse();
      expect(file.data.filename).toBe(`${PII.email}.txt`);
      const files = fake.api.recorded('POST', '/v1/files');
      expect(files[files.length - 1].multipart!.files[0].filename).toBe(`${PII.email}.txt`);
      const rf = await stored(file.response.headers.get('x-request-id'), o);
      expect(rf.status).toBe('completed');
      expectNoPii(rf);
      expect(JSON.parse(rf.response_body!).filename).toBe('[EMAIL_1].txt');
    });
  });

  describe('metadata', () => {
    it('no bodies and no text, streamed or not; usage, cost, latency, model and ids kept', async () => {
      const o = await org('metadata');
      const plain = await o.client.responses.create({ model: 'gpt-4o-mini', input: SENT }).withResponse();
      expect(plain.data.output_text).toBe(`Echo: ${SENT}`);
      expect(lastUpstream().body.input).toBe(SENT);
      const r1 = await stored(plain.response.headers.get('x-request-id'), o);
      expect(r1).toMatchObject({ status: 'completed', capture_mode: 'metadata', request_body: null, response_body: null, output_text: null, error: null, response_id: plain.data.id });
      expectMetrics(r1);

      const streamed = await o.client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: SENT }], stream: true }).withResponse();
      let text = '';
      for await (const chunk of streamed.data) text += chunk.choices[0]?.delta?.content ?? '';
      expect(text).toBe(`Echo: ${SENT}`);
      const r2 = await stored(streamed.response.headers.get('x-request-id'), o);
      expect(r2).toMatchObject({ status: 'completed', capture_mode: 'metadata', request_body: null, response_body: null, output_text: null });
      expectMetrics(r2);
    });

    it('an upstream failure: status, error type and code kept, its message not', async () => {
      const o = await org('metadata');
      fake.enqueue({ kind: 'status', status: 400, body: { error: { message: `Bad input from ${PII.email}`, type: 'invalid_request_error', code: 'invalid_value', param: 'input' } } });
      const err = (await o.client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: SENT }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err.status).toBe(400);
      const r = await stored(err.headers!.get('x-request-id'), o);
      expect(r).toMatchObject({ status: 'failed', upstream_status: 400, request_body: null, response_body: null, output_text: null });
      expect(r.error).toEqual({ message: null, type: 'invalid_request_error', code: 'invalid_value', param: 'input' });
    });

    it('a relayed upload keeps nothing of its fields or its file name', async () => {
      const o = await org('metadata');
      const file = await o.client.files.create({ file: await toFile(Buffer.from(SENT), `${PII.email}.txt`), purpose: 'user_data' }).withResponse();
      const r = await stored(file.response.headers.get('x-request-id'), o);
      expect(r).toMatchObject({ status: 'completed', capture_mode: 'metadata', request_body: null, response_body: null, output_text: null });
    });

    it('ratings work; analysis has no content to read: 409 no_content', async () => {
      const o = await org('metadata');
      const { data, response } = await o.client.responses.create({ model: 'gpt-4o-mini', input: SENT }).withResponse();
      const id = response.headers.get('x-request-id')!;
      await stored(id, o);
      const rated = await o.call('POST', `/v1/requests/${id}/rating`, { rating: 5 });
      expect(rated.status).toBe(201);
      const byResponse = await o.call('POST', `/v1/responses/${data.id}/rating`, { rating: 4 });
      expect(byResponse.status).toBe(200);
      const before = fake.requests.length;
      const analysis = await o.call('POST', '/v1/analysis', { request_id: id, config: { analysis_type: 'sentiment' } });
      expect(analysis.status).toBe(409);
      expect(analysis.body.error).toMatchObject({ type: 'conflict_error', code: 'no_content', param: 'request_id' });
      expect(fake.requests.length).toBe(before);
    });
  });

  describe('background responses completed after the call', () => {
    /** creates one, then retrieves it until it has ended: the client always gets the response as the upstream has it */
    async function runBackground(client: OpenAI) {
      fake.background = { pollsBeforeDone: 1, outcome: 'completed' };
      const { data, response } = await client.responses.create({ model: 'gpt-4o-mini', input: SENT, background: true }).withResponse();
      expect(data.status).toBe('queued');
      let got = await client.responses.retrieve(data.id);
      for (let i = 0; i < 5 && got.status !== 'completed'; i++) got = await client.responses.retrieve(data.id);
      expect(got.status).toBe('completed');
      expect(got.output_text).toBe(`Echo: ${SENT}`);
      return { id: data.id, requestId: response.headers.get('x-request-id')! };
    }

    it('redacted: the ended response is stored with the placeholders its request got; a retrieve is answered as it is', async () => {
      const o = await org('full');
      const client = lowered(o, 'redacted');
      const made = await runBackground(client);
      await pollRequest(o.call, made.requestId, (r) => r.status === 'completed');
      const r = await stored(made.requestId, o);
      expect(r.capture_mode).toBe('redacted');
      expectNoPii(r);
      expect(JSON.parse(r.request_body!).input).toBe(REDACTED);
      expect(r.output_text).toBe(`Echo: ${REDACTED}`);
      expect(Number(r.output_tokens)).toBeGreaterThan(0);
      // not from the (redacted) record: from upstream, as it is
      const again = await client.responses.retrieve(made.id);
      expect(again.output_text).toBe(`Echo: ${SENT}`);
    });

    it('metadata: the ended response stores no body and no text; a retrieve still answers it', async () => {
      const o = await org('full');
      const client = lowered(o, 'metadata');
      const made = await runBackground(client);
      await pollRequest(o.call, made.requestId, (r) => r.status === 'completed');
      const r = await stored(made.requestId, o);
      expect(r).toMatchObject({ capture_mode: 'metadata', request_body: null, response_body: null, output_text: null, response_id: made.id });
      expect(Number(r.output_tokens)).toBeGreaterThan(0);
      const again = await client.responses.retrieve(made.id);
      expect(again.output_text).toBe(`Echo: ${SENT}`);
    });
  });

  describe('realtime sessions', () => {
    /** a raw upgrade: the open socket and the events it received, or the answer that refused it */
    function connect(o: ProxyTestOrg, mode: string) {
      const ws = new WebSocket(`${app.url.replace('http:', 'ws:')}/v1/realtime?model=gpt-realtime`, [], {
        headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'x-capture-mode': mode },
        perMessageDeflate: false,
      });
      const events: any[] = [];
      ws.on('message', (d: Buffer) => events.push(JSON.parse(d.toString())));
      const upgraded = new Promise<{ requestId?: string; status?: number; body?: any }>((resolve, reject) => {
        ws.once('upgrade', (res) => resolve({ requestId: res.headers['x-request-id'] as string }));
        ws.once('unexpected-response', (_req, res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
        });
        ws.once('error', reject);
      });
      return { ws, events, upgraded };
    }

    it('redacted: the session summary, the request and the transcripts are stored with placeholders; a raised mode is refused before the upgrade', async () => {
      const o = await org('full');
      const s = connect(o, 'redacted');
      const { requestId } = await s.upgraded;
      await new Promise((resolve) => (s.ws.readyState === WebSocket.OPEN ? resolve(null) : s.ws.once('open', resolve)));
      s.ws.send(JSON.stringify({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: SENT }] } }));
      s.ws.send(JSON.stringify({ type: 'response.create' }));
      await waitFor(() => s.events.some((e) => e.type === 'response.done'));
      const text = s.events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
      expect(text).toContain(PII.email);
      s.ws.close();
      const r = await stored(requestId!, o);
      expect(r).toMatchObject({ status: 'completed', capture_mode: 'redacted' });
      expectNoPii(r);
      expect(r.output_text).toContain('[EMAIL_1]');
      expect(Number(r.input_tokens)).toBeGreaterThan(0);

      const refused = connect(o, 'everything');
      expect(await refused.upgraded).toMatchObject({ status: 400, body: { error: { code: 'invalid_capture_mode', param: 'X-Capture-Mode' } } });
    });
  });

  describe('X-Capture-Mode lowers the mode per request, never raises it', () => {
    it('an organization in full: redacted and metadata per request; full stays full', async () => {
      const o = await org('full');
      const full = await o.client.responses.create({ model: 'gpt-4o-mini', input: SENT }).withResponse();
      const rFull = await stored(full.response.headers.get('x-request-id'), o);
      expect(rFull.capture_mode).toBe('full');
      expect(JSON.parse(rFull.request_body!).input).toBe(SENT);
      expect(rFull.output_text).toBe(`Echo: ${SENT}`);

      const red = await lowered(o, 'redacted').responses.create({ model: 'gpt-4o-mini', input: SENT }).withResponse();
      expect(red.data.output_text).toBe(`Echo: ${SENT}`);
      expect(lastUpstream().body.input).toBe(SENT);
      const rRed = await stored(red.response.headers.get('x-request-id'), o);
      expect(rRed.capture_mode).toBe('redacted');
      expect(rRed.output_text).toBe(`Echo: ${REDACTED}`);
      // the API shows what was kept, and how
      const view = (await o.call('GET', `/v1/requests/${red.response.headers.get('x-request-id')}`)).body;
      expect(view).toMatchObject({ capture_mode: 'redacted', output_text: `Echo: ${REDACTED}` });

      const meta = await lowered(o, 'Metadata').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: SENT }] }).withResponse();
      const rMeta = await stored(meta.response.headers.get('x-request-id'), o);
      expect(rMeta).toMatchObject({ capture_mode: 'metadata', request_body: null, response_body: null, output_text: null });
      expectMetrics(rMeta);

      // on the relay too
      const emb = await lowered(o, 'metadata').embeddings.create({ model: 'text-embedding-3-small', input: SENT }).withResponse();
      const rEmb = await stored(emb.response.headers.get('x-request-id'), o);
      expect(rEmb).toMatchObject({ capture_mode: 'metadata', request_body: null, response_body: null });
    });

    it('an organization in redacted: metadata allowed, full refused (400) before any upstream call or record', async () => {
      const o = await org('redacted');
      const meta = await lowered(o, 'metadata').responses.create({ model: 'gpt-4o-mini', input: SENT }).withResponse();
      expect((await stored(meta.response.headers.get('x-request-id'), o)).capture_mode).toBe('metadata');

      fake.reset();
      const count = async () => Number((await app.dataSource.query(`SELECT count(*) AS n FROM exchanges WHERE organization_id = $1`, [o.orgId]))[0].n);
      const rows = await count();
      const calls: (() => Promise<unknown>)[] = [
        () => lowered(o, 'full').responses.create({ model: 'gpt-4o-mini', input: SENT }),
        () => lowered(o, 'full').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: SENT }], stream: true }),
        () => lowered(o, 'full').embeddings.create({ model: 'text-embedding-3-small', input: SENT }),
      ];
      for (const call of calls) {
        const err = (await Promise.resolve()
          .then(call)
          .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
        expect(err).toBeInstanceOf(OpenAI.BadRequestError);
        expect(err.error).toMatchObject({ type: 'invalid_request_error', code: 'capture_mode_not_allowed', param: 'X-Capture-Mode' });
        expect(err.message).toMatch(/redacted/);
      }
      expect(fake.requests).toHaveLength(0);
      expect(await count()).toBe(rows);
    });

    it('an organization in metadata: redacted and full refused; an unknown value is 400 invalid_capture_mode', async () => {
      const o = await org('metadata');
      for (const mode of ['redacted', 'full']) {
        const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: SENT }, { 'x-capture-mode': mode });
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'capture_mode_not_allowed', param: 'X-Capture-Mode' });
      }
      for (const bad of ['everything', '', 'full, metadata']) {
        const res = await o.call('POST', '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { 'x-capture-mode': bad });
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_capture_mode', param: 'X-Capture-Mode' });
      }
      const relayed = await o.call('POST', '/v1/embeddings', { model: 'text-embedding-3-small', input: 'hi' }, { 'x-capture-mode': 'nope' });
      expect(relayed.status).toBe(400);
      expect(relayed.body.error.code).toBe('invalid_capture_mode');
      expect(fake.requests).toHaveLength(0);
      const ok = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: SENT }, { 'x-capture-mode': 'metadata' });
      expect(ok.status).toBe(200);
    });
  });
});
