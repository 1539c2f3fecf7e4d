import { Client } from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/app-config';
import { createTestApp, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { parseSse, proxyOrg, waitFor } from '../support/proxy-test-helpers';
import { ExchangeRecorder } from '../../src/exchanges/recorder/exchange-recorder.service';

describe('RECORD_WRITE=after_answer: answers first, records a moment later, reads still see them', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ RECORD_WRITE: 'after_answer' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  it('RECORD_WRITE takes before_answer (the default) or after_answer, nothing else', () => {
    const base = { DATABASE_URL: 'postgres://x@127.0.0.1/db', JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY };
    expect(loadConfig(base).recordWrite).toBe('before_answer');
    expect(loadConfig({ ...base, RECORD_WRITE: 'after_answer' }).recordWrite).toBe('after_answer');
    expect(() => loadConfig({ ...base, RECORD_WRITE: 'later' })).toThrow(ConfigError);
  });

  it('a JSON answer, a stream and a rating by response id right after them all find complete records', async () => {
    const o = await proxyOrg(app, fake.url);
    const { data, response } = await o.client.responses.create({ model: 'gpt-4o-mini', input: 'quick' }).withResponse();
    const rec = await o.call('GET', `/v1/requests/${response.headers.get('x-request-id')}`);
    expect(rec.status).toBe(200);
    expect(rec.body).toMatchObject({ status: 'completed', response_id: data.id, output_text: 'Echo: quick' });
    expect(rec.body.usage.total_tokens).toBeGreaterThan(0);

    const res = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'streamed', stream: true });
    const completed = parseSse(res.text).find((e) => e.event === 'response.completed')!;
    const responseId = JSON.parse(completed.data).response.id;
    const rated = await o.call('POST', `/v1/responses/${responseId}/rating`, { rating: 4 });
    expect(rated.status).toBe(201);
    expect(rated.body.request_id).toBe(res.headers.get('x-request-id'));
  });

  it('fifty concurrent calls: every answer has its completed record', async () => {
    const o = await proxyOrg(app, fake.url);
    const ids = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const r = await o.call('POST', i % 2 ? '/v1/chat/completions' : '/v1/responses', i % 2
          ? { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `n${i}` }], stream: i % 4 === 1 }
          : { model: 'gpt-4o-mini', input: `n${i}` });
        expect(r.status).toBe(200);
        return r.headers.get('x-request-id')!;
      }),
    );
    const list = await o.call('GET', '/v1/requests?limit=100');
    const byId = new Map(list.body.data.map((e: { id: string; status: string }) => [e.id, e.status]));
    expect(ids.map((id) => byId.get(id))).toEqual(ids.map(() => 'completed'));
  });

  it.skipIf(!process.env.DATABASE_URL)('the answer does not wait for the database; a read right after it waits for the record', async () => {
    const o = await proxyOrg(app, fake.url);
    // hold every write to exchanges (SHARE blocks INSERT/UPDATE, not SELECT)
    const blocker = new Client({ connectionString: app.db.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE exchanges IN SHARE MODE');
      const answer = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'held' });
      expect(answer.status).toBe(200);
      const id = answer.headers.get('x-request-id')!;
      const direct = await app.dataSource.query('SELECT status FROM exchanges WHERE id = $1', [id]);
      expect(direct).toHaveLength(0); // answered, not yet recorded
      const read = o.call('GET', `/v1/requests/${id}`);
      let settled = false;
      void read.then(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(settled).toBe(false); // the read waits for the record instead of answering 404
      await blocker.query('COMMIT');
      const rec = await read;
      expect(rec.status).toBe(200);
      expect(rec.body.status).toBe('completed');
    } finally {
      await blocker.end();
    }
  });
});

describe.skipIf(!process.env.DATABASE_URL)('RECORD_WRITE=after_answer under a database slower than the traffic', () => {
  let app: TestApp;
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    // the write timeout is out of the way: this is about a slow database, not an unreachable one
    app = await createTestApp({ RECORD_WRITE: 'after_answer', RECORD_AFTER_ANSWER_MAX: '4', RECORD_WRITE_TIMEOUT_MS: '60000' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('past RECORD_AFTER_ANSWER_MAX completions waiting for the database, answers wait for their records; none is lost', async () => {
    const o = await proxyOrg(app, fake.url);
    const recorder = app.app.get(ExchangeRecorder);
    const blocker = new Client({ connectionString: app.db.url });
    await blocker.connect();
    const answers: { status: number; id: string }[] = [];
    let calls: Promise<void>[] = [];
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE exchanges IN SHARE MODE');
      calls = Array.from({ length: 12 }, async (_, i) => {
        const r = await o.call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: `slow db ${i}` });
        answers.push({ status: r.status, id: r.headers.get('x-request-id')! });
      });
      await waitFor(() => answers.length >= 4 && fake.requests.length === 12, 10000, 'the first answers');
      await new Promise((r) => setTimeout(r, 500));
      // the bound holds: four answered ahead of their records, the other eight wait for theirs
      expect(answers).toHaveLength(4);
      expect(recorder.takesAfterAnswer).toBe(false);
      expect(fake.requests.length).toBe(12);
    } finally {
      await blocker.query('COMMIT').catch(() => undefined);
      await blocker.end();
    }
    await Promise.all(calls);
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    const list = await o.call('GET', '/v1/requests?limit=100');
    const byId = new Map(list.body.data.map((e: { id: string; status: string }) => [e.id, e.status]));
    expect(answers.map((a) => byId.get(a.id))).toEqual(answers.map(() => 'completed'));
    expect(recorder.takesAfterAnswer).toBe(true);
  });
});
