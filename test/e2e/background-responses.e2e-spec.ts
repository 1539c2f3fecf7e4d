import OpenAI from 'openai';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { KeysService } from '../../src/keys/keys.service';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { PricingService } from '../../src/pricing/pricing.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createUser } from '../support/factories';
import { FakeBackgroundResponse, FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg, ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

/** A follower that asks often: the lifecycles of these tests take a few hundred milliseconds. */
const FOLLOWING = { BACKGROUND_POLL_MS: '50', BACKGROUND_POLL_MAX_MS: '200', BACKGROUND_LEASE_MS: '1000' };
/** A server process that follows no background response (another does, or none). */
const NOT_FOLLOWING = { BACKGROUND_FOLLOW_CONCURRENCY: '0' };

/** Creates a background response with the official SDK: its id and the req_ id of its record. */
async function createBackground(client: OpenAI, input = 'tell me a long story about the sea') {
  const { data, response } = await client.responses.create({ model: 'gpt-4o-mini', input, background: true }).withResponse();
  return { id: data.id, requestId: response.headers.get('x-request-id')!, created: data };
}

const record = async (o: ProxyTestOrg, requestId: string) => (await o.call('GET', `/v1/requests/${requestId}`)).body;
const background = (fake: FakeUpstream, id: string): FakeBackgroundResponse => fake.backgroundResponses.get(id)!;
/** the upstream calls about one response */
const upstreamCalls = (fake: FakeUpstream, id: string) => fake.requests.filter((r) => r.path.startsWith(`/v1/responses/${id}`));
const metric = async (app: TestApp, line: string) => {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found ? Number(found.slice(line.length).trim()) : 0;
};

describe('background responses', () => {
  let fake: FakeUpstream;

  beforeAll(async () => {
    fake = await startFakeUpstream();
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  describe('followed until they end', () => {
    let app: TestApp;
    let o: ProxyTestOrg;

    beforeAll(async () => {
      app = await createTestApp(FOLLOWING);
      o = await proxyOrg(app, fake.url);
    });
    afterAll(async () => {
      await app?.close();
    });

    it('a queued response is completed by the follower with usage and cost, without any client retrieve', async () => {
      await app.app.get(LimitsAdminService).setOrganizationLimits(o.orgId, { daily_budget_usd: 100 }, cliActor());
      fake.background = { pollsBeforeDone: 2, outcome: 'completed' };
      const made = await createBackground(o.client);
      expect(made.created.status).toBe('queued');
      const queued = await record(o, made.requestId);
      expect(queued).toMatchObject({ status: 'queued', response_id: made.id });

      const done = await pollRequest(o.call, made.requestId, (r) => r.status !== 'queued');
      const final = background(fake, made.id).final;
      expect(done).toMatchObject({ status: 'completed', output_text: 'Echo: tell me a long story about the sea', error: null });
      expect(done.response_body).toMatchObject({ id: made.id, status: 'completed', usage: final.usage });
      expect(done.usage).toEqual({
        input_tokens: final.usage.input_tokens,
        output_tokens: final.usage.output_tokens,
        total_tokens: final.usage.total_tokens,
        cached_tokens: 0,
        reasoning_tokens: 0,
      });
      const cost = app.app.get(PricingService).cost('gpt-4o-mini', { input: final.usage.input_tokens, cached: 0, output: final.usage.output_tokens });
      expect(cost).toBeGreaterThan(0);
      expect(done.cost).toBe(cost);
      expect(done.latency_ms).toBeGreaterThanOrEqual(0);
      expect(Date.parse(done.completed_at)).toBeGreaterThanOrEqual(Date.parse(done.created_at));
      // asked for until it ended, no more: in_progress twice, then completed
      expect(background(fake, made.id).polls).toBe(3);
      expect(upstreamCalls(fake, made.id).every((r) => r.method === 'GET' && r.headers.authorization === 'Bearer sk-test-proxy-0001')).toBe(true);
      // the budget counts what the response cost, not the estimate counted when it was created
      const limits = await o.call('GET', '/v1/limits');
      expect(limits.body.organization.usage.cost_today_usd).toBeCloseTo(cost!, 12);
      expect(await metric(app, 'openai_proxy_background_responses_closed_total{outcome="completed"}')).toBeGreaterThanOrEqual(1);
      expect(await (await fetch(`${app.url}/metrics`)).text()).toMatch(/^openai_proxy_background_responses_followed \d+$/m);
    });

    it('an upstream failing for a while is asked again; a failed response is recorded failed with its error', async () => {
      fake.background = { pollsBeforeDone: 0, outcome: 'completed', failPolls: 2, failStatus: 500 };
      const flaky = await createBackground(o.client);
      const done = await pollRequest(o.call, flaky.requestId, (r) => r.status !== 'queued');
      expect(done.status).toBe('completed');
      expect(background(fake, flaky.id).polls).toBe(3);

      fake.background = { pollsBeforeDone: 1, outcome: 'failed' };
      const failing = await createBackground(o.client);
      const failed = await pollRequest(o.call, failing.requestId, (r) => r.status !== 'queued');
      expect(failed).toMatchObject({ status: 'failed', error: { code: 'server_error', message: 'The model failed to generate a response.' } });
      expect(failed.response_body).toMatchObject({ id: failing.id, status: 'failed' });
    });

    it('a response cancelled upstream is recorded as stopped by its client', async () => {
      fake.background = { pollsBeforeDone: 1_000_000, outcome: 'completed' };
      const made = await createBackground(o.client);
      await waitFor(() => background(fake, made.id).polls > 0, 8000, 'the follower asking for the response');
      const cancelled = await o.client.responses.cancel(made.id);
      expect(cancelled.status).toBe('cancelled');
      const done = await pollRequest(o.call, made.requestId, (r) => r.status !== 'queued');
      expect(done).toMatchObject({ status: 'client_aborted', error: null });
      expect(done.response_body).toMatchObject({ id: made.id, status: 'cancelled' });
    });

    it('a response the upstream no longer knows is closed as interrupted with the upstream error, not left queued', async () => {
      fake.background = { pollsBeforeDone: 1_000_000, outcome: 'completed' };
      const made = await createBackground(o.client);
      fake.backgroundResponses.delete(made.id);
      const done = await pollRequest(o.call, made.requestId, (r) => r.status !== 'queued');
      expect(done.status).toBe('interrupted');
      expect(done.error).toMatchObject({ type: 'upstream_error', code: 'background_follow_failed' });
      expect(done.error.message).toContain(`Response with id '${made.id}' not found.`);
      // the estimate counted when it was created stays: it may have been billed
      expect(done.usage.input_tokens).toBeGreaterThan(0);
      expect(await metric(app, 'openai_proxy_background_responses_closed_total{outcome="interrupted"}')).toBeGreaterThanOrEqual(1);
    });

    it('a response still running BACKGROUND_FOLLOW_MAX_MS (24 h) after its creation is closed as interrupted', async () => {
      fake.background = { pollsBeforeDone: 1_000_000, outcome: 'completed' };
      const made = await createBackground(o.client);
      await waitFor(() => background(fake, made.id).polls > 0, 8000, 'the follower asking for the response');
      // a response made 25 hours ago, whose follower is gone
      await app.dataSource.query(
        `UPDATE exchanges SET created_at = created_at - interval '25 hours', follow_owner = NULL, follow_until = NULL WHERE id = $1`,
        [made.requestId],
      );
      const done = await pollRequest(o.call, made.requestId, (r) => r.status !== 'queued');
      expect(done.status).toBe('interrupted');
      expect(done.error).toMatchObject({ code: 'background_follow_timeout' });
      expect(done.error.message).toContain('BACKGROUND_FOLLOW_MAX_MS (86400000 ms)');
    });
  });

  describe('read by clients', () => {
    // no follower here: what completes a record is the client's retrieve
    let app: TestApp;
    let o: ProxyTestOrg;

    beforeAll(async () => {
      app = await createTestApp(NOT_FOLLOWING);
      o = await proxyOrg(app, fake.url);
    });
    afterAll(async () => {
      await app?.close();
    });

    it('responses.retrieve while running comes from upstream (query forwarded); once ended, it completes the record, then comes from it', async () => {
      fake.background = { pollsBeforeDone: 1, outcome: 'completed' };
      const made = await createBackground(o.client);
      const running = await o.client.responses.retrieve(made.id, { include: ['message.output_text.logprobs'] });
      expect(running.status).toBe('in_progress');
      const asked = upstreamCalls(fake, made.id);
      expect(asked).toHaveLength(1);
      expect(decodeURIComponent(asked[0].path)).toBe(`/v1/responses/${made.id}?include[]=message.output_text.logprobs`);
      expect((await record(o, made.requestId)).status).toBe('queued');

      const ended = await o.client.responses.retrieve(made.id);
      expect(ended.status).toBe('completed');
      expect(ended.output_text).toBe('Echo: tell me a long story about the sea');
      const rec = await record(o, made.requestId);
      expect(rec).toMatchObject({ status: 'completed', output_text: ended.output_text });
      expect(rec.usage.total_tokens).toBe(ended.usage!.total_tokens);
      expect(rec.cost).toBeGreaterThan(0);

      const calls = fake.requests.length;
      const again = await o.client.responses.retrieve(made.id);
      expect(again).toEqual(ended);
      expect(fake.requests.length).toBe(calls);
    });

    it('responses.retrieve(id, {stream: true, starting_after}) resumes the stream upstream and completes the record with its last event', async () => {
      fake.background = { pollsBeforeDone: 1_000_000, outcome: 'completed' };
      const made = await createBackground(o.client);
      const all = background(fake, made.id).events;
      const stream = await o.client.responses.retrieve(made.id, { stream: true, starting_after: 3 });
      const events: any[] = [];
      for await (const ev of stream) events.push(ev);
      expect(events.map((e) => e.sequence_number)).toEqual(all.slice(4).map((e) => e.sequence_number));
      expect(events.at(-1)).toMatchObject({ type: 'response.completed', response: { id: made.id, status: 'completed' } });
      const asked = upstreamCalls(fake, made.id);
      expect(asked).toHaveLength(1);
      const query = new URLSearchParams(asked[0].path.split('?')[1]);
      expect([query.get('stream'), query.get('starting_after')]).toEqual(['true', '3']);
      // committed before the last event left
      const rec = await record(o, made.requestId);
      expect(rec).toMatchObject({ status: 'completed', output_text: 'Echo: tell me a long story about the sea' });
      expect(rec.usage.output_tokens).toBe(events.at(-1).response.usage.output_tokens);
    });

    it('a background stream its client left goes on upstream: resumed after the last event seen, it completes the record', async () => {
      fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 50 });
      const { data: stream, response } = await o.client.responses
        .create({ model: 'gpt-4o-mini', input: 'tell me a long story about the sea', background: true, stream: true })
        .withResponse();
      const seen: any[] = [];
      for await (const ev of stream) {
        seen.push(ev);
        if (ev.sequence_number >= 3) break;
      }
      const id = seen[0].response.id;
      // the response goes on upstream: its record stays queued, for the follower (or a resumed stream) to complete
      const left = await pollRequest(o.call, response.headers.get('x-request-id')!, (r) => r.status !== 'pending');
      expect(left).toMatchObject({ status: 'queued', response_id: id });

      const rest: any[] = [];
      for await (const ev of await o.client.responses.retrieve(id, { stream: true, starting_after: 3 })) rest.push(ev);
      expect([...seen, ...rest].map((e) => e.sequence_number)).toEqual(background(fake, id).events.map((e) => e.sequence_number));
      const rec = await record(o, left.id);
      expect(rec).toMatchObject({ status: 'completed', output_text: 'Echo: tell me a long story about the sea' });
      expect(rec.usage.output_tokens).toBe(rest.at(-1).response.usage.output_tokens);
    });

    it('a bad stream or starting_after is a 400; a response made with a user’s own key is that user’s only, read with that key while it is active', async () => {
      const made = await createBackground(o.client);
      for (const query of ['stream=yes', 'stream=true&starting_after=-1', 'starting_after=2']) {
        const res = await o.call('GET', `/v1/responses/${made.id}?${query}`);
        expect(res.status, query).toBe(400);
        expect(res.body.error.type).toBe('invalid_request_error');
      }

      const owner = `owner-${randomUUID()}@example.com`;
      await createUser(app, o.orgId, owner);
      const ownKey = (await createKey(app, o.orgId, 'sk-own-key-of-the-owner', { userId: owner, baseUrl: fake.url })) as { id: string };
      const ownerClient = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: o.token, defaultHeaders: { 'X-User-ID': owner }, maxRetries: 0 });
      const own = await createBackground(ownerClient);
      expect((await o.call('GET', `/v1/requests/${own.requestId}`)).body.key_source).toBe('user');

      const unknown = await o.call('GET', '/v1/responses/resp_unknown00000000000000000');
      const stranger = await o.call('GET', `/v1/responses/${own.id}`);
      expect(stranger.status).toBe(404);
      expect(stranger.body).toEqual(JSON.parse(JSON.stringify(unknown.body).replace('resp_unknown00000000000000000', own.id)));
      await expect(o.client.responses.retrieve(own.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      const other = await proxyOrg(app, fake.url);
      await expect(other.client.responses.retrieve(own.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(other.client.responses.retrieve(made.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      expect(upstreamCalls(fake, own.id)).toHaveLength(0);

      // one made with the organization's key is every user's of the organization
      expect((await ownerClient.responses.retrieve(made.id)).id).toBe(made.id);

      fake.background = { pollsBeforeDone: 1_000_000, outcome: 'completed' };
      const running = await createBackground(ownerClient);
      expect((await ownerClient.responses.retrieve(running.id)).status).toBe('in_progress');
      expect(upstreamCalls(fake, running.id).at(-1)!.headers.authorization).toBe('Bearer sk-own-key-of-the-owner');
      // that key revoked: the key the owner's calls resolve to now (the organization's)
      await app.app.get(KeysService).revoke(ownKey.id, cliActor());
      expect((await ownerClient.responses.retrieve(running.id)).status).toBe('in_progress');
      expect(upstreamCalls(fake, running.id).at(-1)!.headers.authorization).toBe('Bearer sk-test-proxy-0001');
    });
  });

  describe('across processes', () => {
    it('a response followed when its process stopped is completed by the next process on the database', async () => {
      const first = await createTestApp(FOLLOWING);
      let second: TestApp | undefined;
      try {
        const o = await proxyOrg(first, fake.url);
        fake.background = { pollsBeforeDone: 1_000_000, outcome: 'completed' };
        const made = await createBackground(o.client);
        await waitFor(() => background(fake, made.id).polls > 0, 8000, 'the first process following the response');
        await first.close();

        second = await createTestApp(FOLLOWING);
        const [row] = await second.dataSource.query('SELECT status, follow_owner FROM exchanges WHERE id = $1', [made.requestId]);
        // still running, and given up by the stopped process
        expect(row.status).toBe('queued');
        expect(row.follow_owner).not.toBe(first.instanceId);
        background(fake, made.id).script.pollsBeforeDone = 0;
        const rec = await pollRequest(api(second, o.token, o.userId), made.requestId, (r) => r.status !== 'queued');
        expect(rec).toMatchObject({ status: 'completed', output_text: 'Echo: tell me a long story about the sea' });
        expect(rec.cost).toBeGreaterThan(0);
      } finally {
        await first.close();
        await second?.close();
      }
    });

    it('the responses of a process that died are taken over once its lease lapses', async () => {
      const maker = await createTestApp(NOT_FOLLOWING);
      let follower: TestApp | undefined;
      try {
        const o = await proxyOrg(maker, fake.url);
        fake.background = { pollsBeforeDone: 0, outcome: 'completed' };
        const made = await createBackground(o.client);
        // an UPDATE … RETURNING answers [rows, count]
        const [[lease]] = await maker.dataSource.query(
          `UPDATE exchanges SET follow_owner = 'a-process-that-died', follow_until = now() + interval '1500 milliseconds'
            WHERE id = $1 AND follow_owner IS NULL RETURNING follow_until`,
          [made.requestId],
        );
        follower = await createTestApp(FOLLOWING);
        const rec = await pollRequest(o.call, made.requestId, (r) => r.status !== 'queued');
        expect(rec.status).toBe('completed');
        expect(upstreamCalls(fake, made.id)[0].receivedAt).toBeGreaterThanOrEqual(new Date(lease.follow_until).getTime());
      } finally {
        await follower?.close();
        await maker.close();
      }
    });

    it('two processes on one database follow each response once', async () => {
      const a = await createTestApp(FOLLOWING);
      const b = await createTestApp(FOLLOWING);
      try {
        const o = await proxyOrg(a, fake.url);
        const viaB = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: o.token, defaultHeaders: { 'X-User-ID': o.userId }, maxRetries: 0 });
        fake.background = { pollsBeforeDone: 3, outcome: 'completed' };
        const made = await Promise.all(Array.from({ length: 8 }, (_, i) => createBackground(i % 2 ? viaB : o.client, `story ${i}`)));
        for (const m of made) await pollRequest(o.call, m.requestId, (r) => r.status !== 'queued', 15_000);
        // a second follower of one response would ask for it again after it ended
        await new Promise((r) => setTimeout(r, 600));
        expect(made.map((m) => background(fake, m.id).polls)).toEqual(made.map(() => 4));
        const closed = (await metric(a, 'openai_proxy_background_responses_closed_total{outcome="completed"}')) + (await metric(b, 'openai_proxy_background_responses_closed_total{outcome="completed"}'));
        expect(closed).toBeGreaterThanOrEqual(made.length);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
});
