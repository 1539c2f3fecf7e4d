import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream, StructuredFaultMode } from '../support/fake-upstream';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';

const INTENT_CATEGORIES = [
  { name: 'technical_support', description: 'Bugs, crashes, error messages' },
  { name: 'billing_inquiry', description: 'Invoices, charges, refunds' },
  { name: 'feature_request', description: 'Asks for something new' },
  { name: 'account_management', description: 'Login, profile, settings' },
  { name: 'general_inquiry' },
];

const RESULT_KEYS = [
  'analysis_type',
  'cached',
  'categories',
  'confidence',
  'config_id',
  'cost',
  'created_at',
  'id',
  'metadata',
  'model',
  'primary_category',
  'reasoning',
  'request_id',
  'response_id',
  'usage',
];

// gpt-4o-mini list prices, USD per million tokens
const GPT_4O_MINI = { input: 0.15, output: 0.6 };

interface Exchange {
  id: string;
  responseId: string;
}

describe('conversation analysis', () => {
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
  afterEach(() => fake.reset());

  /** An organization with an org-wide key pointing at the fake upstream and one user. */
  async function setupOrg() {
    const org = await createOrg(app);
    const apiKey = `sk-analysis-${randomBytes(8).toString('hex')}`;
    await createKey(app, org.orgId, apiKey, { baseUrl: fake.url });
    const externalId = `user-${randomUUID()}`;
    const user = await createUser(app, org.orgId, externalId);
    const call = api(app, org.token, externalId);
    /** the analysis calls (structured output) this organization's key made upstream */
    const upstreamCalls = () =>
      fake.requests.filter(
        (r) => r.headers.authorization === `Bearer ${apiKey}` && r.body?.text?.format?.type === 'json_schema',
      );
    return { ...org, apiKey, userId: user.id, externalId, call, upstreamCalls };
  }

  const DEFAULT_EXCHANGE = {
    model: 'gpt-4o-mini',
    instructions: 'You are the support assistant of ACME.',
    input: 'My app keeps crashing with error 0x80004005 whenever I open settings!',
  };

  /** An exchange made through the proxy (POST /v1/responses or /v1/chat/completions) against the fake upstream. */
  async function proxyExchange(
    org: { call: ReturnType<typeof api> },
    requestBody: Record<string, unknown> = DEFAULT_EXCHANGE,
    path = '/v1/responses',
  ): Promise<Exchange> {
    const res = await org.call('POST', path, requestBody);
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id')!;
    expect(id).toMatch(/^req_/);
    return { id, responseId: res.body.id };
  }

  /** An exchange row written directly (for an organization without an upstream key, which the proxy would refuse). */
  async function insertExchange(org: { orgId: string; userId: string; externalId: string }): Promise<Exchange> {
    const id = `req_${randomBytes(18).toString('base64url').slice(0, 24)}`;
    const responseId = `resp_${randomBytes(24).toString('hex')}`;
    await app.dataSource.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, status,
         upstream_status, response_id, request_body, output_text, created_at, completed_at)
       VALUES ($1, $2, $3, $4, $5, 'responses', 'gpt-4o-mini', false, 'completed', 200, $6, $7, 'Hello!', now(), now())`,
      [id, org.orgId, org.userId, org.externalId, `session_${randomBytes(18).toString('base64url').slice(0, 24)}`, responseId, JSON.stringify(DEFAULT_EXCHANGE)],
    );
    return { id, responseId };
  }

  async function createIntentConfig(call: ReturnType<typeof api>, extra: Record<string, unknown> = {}) {
    const res = await call('POST', '/v1/analysis/configs', {
      name: 'Customer Support Intent Classifier',
      analysis_type: 'intent',
      categories: INTENT_CATEGORIES,
      instructions: 'Focus on what the customer wants.',
      include_metadata: true,
      ...extra,
    });
    expect(res.status).toBe(201);
    return res.body;
  }

  function expectConforming(body: any, names: string[]) {
    expect(Object.keys(body).sort()).toEqual(RESULT_KEYS);
    expect(body.categories.map((c: any) => c.name).sort()).toEqual([...names].sort());
    for (const c of body.categories) {
      expect(Object.keys(c).sort()).toEqual(['name', 'reasoning', 'score']);
      expect(c.score).toBeGreaterThanOrEqual(0);
      expect(c.score).toBeLessThanOrEqual(1);
    }
    const scores = body.categories.map((c: any) => c.score);
    expect(scores).toEqual([...scores].sort((a: number, b: number) => b - a));
    expect(body.primary_category).toBe(body.categories[0].name);
    expect(body.confidence).toBe(body.categories[0].score);
    expect(Object.keys(body.usage).sort()).toEqual(['input_tokens', 'output_tokens', 'total_tokens']);
  }

  it('runs the five seed flows: intent config, analysis, cached repeat, inline sentiment, urgency by response id', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);

    const config = await createIntentConfig(org.call);
    expect(Object.keys(config).sort()).toEqual(
      ['analysis_type', 'categories', 'created_at', 'id', 'include_metadata', 'instructions', 'model', 'name', 'updated_at'],
    );
    expect(config).toMatchObject({
      name: 'Customer Support Intent Classifier',
      analysis_type: 'intent',
      model: 'gpt-4o-mini',
      include_metadata: true,
      instructions: 'Focus on what the customer wants.',
    });
    expect(config.categories[4]).toEqual({ name: 'general_inquiry', description: null });

    const first = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id });
    expect(first.status).toBe(200);
    expectConforming(first.body, INTENT_CATEGORIES.map((c) => c.name));
    expect(first.body).toMatchObject({
      request_id: ex.id,
      response_id: ex.responseId,
      config_id: config.id,
      analysis_type: 'intent',
      model: 'gpt-4o-mini',
      cached: false,
    });
    expect(Object.keys(first.body.metadata).sort()).toEqual(['sentiment', 'topics', 'urgency']);
    expect(['positive', 'neutral', 'negative', 'frustrated']).toContain(first.body.metadata.sentiment);
    expect(['low', 'medium', 'high', 'critical']).toContain(first.body.metadata.urgency);
    expect(Array.isArray(first.body.metadata.topics)).toBe(true);
    const u = first.body.usage;
    expect(u.input_tokens).toBeGreaterThan(0);
    expect(u.total_tokens).toBe(u.input_tokens + u.output_tokens);
    expect(first.body.cost).toBeCloseTo((u.input_tokens * GPT_4O_MINI.input + u.output_tokens * GPT_4O_MINI.output) / 1e6, 12);
    expect(first.body.cost).toBeGreaterThan(0);
    expect(org.upstreamCalls()).toHaveLength(1);

    const again = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: first.body.id, cached: true, cost: 0, usage: first.body.usage, categories: first.body.categories });
    expect(org.upstreamCalls()).toHaveLength(1);

    const sentiment = await org.call('POST', '/v1/analysis', { request_id: ex.id, config: { analysis_type: 'sentiment' } });
    expect(sentiment.status).toBe(200);
    expectConforming(sentiment.body, ['positive', 'neutral', 'negative', 'frustrated']);
    expect(sentiment.body).toMatchObject({ config_id: null, analysis_type: 'sentiment', metadata: null, cached: false });

    const urgencyConfig = await org.call('POST', '/v1/analysis/configs', { name: 'Urgency', analysis_type: 'urgency' });
    expect(urgencyConfig.status).toBe(201);
    expect(urgencyConfig.body.categories.map((c: any) => c.name)).toEqual(['low', 'medium', 'high', 'critical']);
    const urgency = await org.call('POST', '/v1/analysis', { response_id: ex.responseId, config_id: urgencyConfig.body.id });
    expect(urgency.status).toBe(200);
    expectConforming(urgency.body, ['low', 'medium', 'high', 'critical']);
    expect(urgency.body).toMatchObject({ request_id: ex.id, response_id: ex.responseId, analysis_type: 'urgency', cached: false });
    expect(org.upstreamCalls()).toHaveLength(3);

    // every stored result is listed, newest first; the cache hit stored nothing
    const history = await org.call('GET', `/v1/analysis/results?request_id=${ex.id}`);
    expect(history.status).toBe(200);
    expect(history.body).toMatchObject({ object: 'list', has_more: false });
    expect(history.body.data.map((r: any) => r.id)).toEqual([urgency.body.id, sentiment.body.id, first.body.id]);
    expect(history.body.data[2]).toEqual({ ...first.body, cached: false });
    const byConfig = await org.call('GET', `/v1/analysis/results?config_id=${config.id}`);
    expect(byConfig.body.data.map((r: any) => r.id)).toEqual([first.body.id]);
    const byResponse = await org.call('GET', `/v1/analysis/results?response_id=${ex.responseId}&limit=1`);
    expect(byResponse.body).toMatchObject({ has_more: true, first_id: urgency.body.id });
    const next = await org.call('GET', `/v1/analysis/results?response_id=${ex.responseId}&limit=1&after=${urgency.body.id}`);
    expect(next.body.data.map((r: any) => r.id)).toEqual([sentiment.body.id]);
  });

  it('sends a strict schema with the category names as enum and the conversation word for word', async () => {
    const org = await setupOrg();
    const instructions = 'Du bist der Support-Assistent.\n\n  Sei "höflich" & präzise <b>.';
    const userText = 'Mein Konto ist gesperrt!!\nFehler: {"code": 42}\t— bitte schnell 🙏';
    const earlier = 'Hello there, second line\nthird line';
    // the fake upstream answers "Echo: <last user text>"
    const output = `Echo: ${userText}`;
    const ex = await proxyExchange(org, {
      model: 'gpt-4o',
      instructions,
      input: [
        { role: 'user', content: earlier },
        { role: 'assistant', content: [{ type: 'output_text', text: 'An earlier answer.' }] },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: userText }] },
      ],
    });
    const config = await createIntentConfig(org.call, { include_metadata: false, instructions: 'Prefer account_management for locks.' });
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id });
    expect(res.status).toBe(200);
    expect(res.body.metadata).toBeNull();

    const calls = org.upstreamCalls();
    expect(calls).toHaveLength(1);
    const sent = calls[0].body;
    expect(sent.model).toBe('gpt-4o-mini');
    expect(sent.store).toBe(false);
    expect(sent.stream).toBeUndefined();
    expect(sent.text.format).toMatchObject({ type: 'json_schema', name: 'conversation_analysis', strict: true });
    const schema = sent.text.format.schema;
    const names = INTENT_CATEGORIES.map((c) => c.name);
    expect(schema).toMatchObject({ type: 'object', additionalProperties: false });
    expect([...schema.required].sort()).toEqual(['categories', 'confidence', 'primary_category', 'reasoning']);
    expect(Object.keys(schema.properties).sort()).toEqual(['categories', 'confidence', 'primary_category', 'reasoning']);
    expect(schema.properties.primary_category).toMatchObject({ type: 'string', enum: names });
    expect(schema.properties.confidence).toMatchObject({ type: 'number' });
    const item = schema.properties.categories.items;
    expect(item).toMatchObject({ type: 'object', additionalProperties: false });
    expect([...item.required].sort()).toEqual(['name', 'reasoning', 'score']);
    expect(item.properties.name).toMatchObject({ type: 'string', enum: names });
    expect(item.properties.score).toMatchObject({ type: 'number' });

    // the analyst's instructions carry the configuration; the conversation travels in input, verbatim
    expect(sent.instructions).toContain('Prefer account_management for locks.');
    expect(sent.instructions).toContain('technical_support: Bugs, crashes, error messages');
    const conversation = JSON.stringify(sent.input);
    for (const text of [instructions, userText, earlier, 'An earlier answer.', output]) {
      expect(conversation).toContain(JSON.stringify(text).slice(1, -1));
    }

    // with include_metadata the schema gains a strict metadata object
    const withMeta = await org.call('POST', '/v1/analysis', {
      request_id: ex.id,
      config: { analysis_type: 'custom', categories: [{ name: 'a' }, { name: 'b c' }], include_metadata: true },
    });
    expect(withMeta.status).toBe(200);
    const metaSchema = org.upstreamCalls()[1].body.text.format.schema;
    expect(metaSchema.required).toContain('metadata');
    expect(metaSchema.properties.metadata).toMatchObject({
      type: 'object',
      additionalProperties: false,
      properties: {
        sentiment: { type: 'string', enum: ['positive', 'neutral', 'negative', 'frustrated'] },
        urgency: { type: 'string', enum: ['low', 'medium', 'high', 'critical'] },
        topics: { type: 'array', items: { type: 'string' } },
      },
    });
  });

  it('takes a chat exchange apart: system messages as instructions, the other messages and the output as the conversation', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(
      org,
      {
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'You answer billing questions for ACME only.' },
          { role: 'user', content: 'Why was I charged twice in May?' },
        ],
      },
      '/v1/chat/completions',
    );
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config: { analysis_type: 'urgency' } });
    expect(res.status).toBe(200);
    const input = JSON.stringify(org.upstreamCalls()[0].body.input);
    expect(input).toContain('You answer billing questions for ACME only.');
    expect(input).toContain('Why was I charged twice in May?');
    expect(input).toContain('Echo: Why was I charged twice in May?');
    expect(input).not.toContain('"role":"system"');
  });

  const FAULTS: StructuredFaultMode[] = ['invalid-json', 'wrong-category', 'missing-category', 'score-out-of-range'];

  it.each(FAULTS)('retries once after a %s answer and stores the good one', async (mode) => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const config = await createIntentConfig(org.call);
    fake.enqueue({ kind: 'structured', mode });
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id });
    expect(res.status).toBe(200);
    expectConforming(res.body, INTENT_CATEGORIES.map((c) => c.name));
    expect(org.upstreamCalls()).toHaveLength(2);
    const history = await org.call('GET', `/v1/analysis/results?request_id=${ex.id}`);
    expect(history.body.data.map((r: any) => r.id)).toEqual([res.body.id]);
    // both calls were paid for: the stored usage is twice that of a single good call
    const single = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id, force_refresh: true });
    expect(res.body.usage.input_tokens).toBe(2 * single.body.usage.input_tokens);
    expect(res.body.cost).toBeGreaterThan(single.body.cost);
  });

  it.each(FAULTS)('answers 502 after two %s answers and stores no result and caches nothing', async (mode) => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const config = await createIntentConfig(org.call);
    fake.enqueue({ kind: 'structured', mode }, { kind: 'structured', mode });
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id });
    expect(res.status).toBe(502);
    expect(res.body.error).toMatchObject({ type: 'upstream_error' });
    expect(org.upstreamCalls()).toHaveLength(2);
    // only the usage record of the billed attempts, without a result
    const rows = await app.dataSource.query(
      'SELECT status, primary_category, categories FROM analysis_results WHERE organization_id = $1',
      [org.orgId],
    );
    expect(rows).toEqual([{ status: 'failed', primary_category: null, categories: null }]);
    expect((await org.call('GET', `/v1/analysis/results?request_id=${ex.id}`)).body.data).toEqual([]);

    const retry = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id });
    expect(retry.status).toBe(200);
    expect(retry.body.cached).toBe(false);
    expect(org.upstreamCalls()).toHaveLength(3);
  });

  it('charges a failed analysis what upstream billed for each attempt: budget, usage analytics and metrics', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    await app.app.get(LimitsAdminService).setUserLimits(org.userId, { daily_budget_usd: 1000 }, cliActor());
    const spentBefore = (await org.call('GET', '/v1/limits')).body.user.usage.cost_today_usd as number;
    const day = new Date().toISOString().slice(0, 10);
    const period = `from=${day}&to=${new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)}`;
    const analysisUsage = async () =>
      ((await org.call('GET', `/v1/analytics/usage?${period}&group_by=day`)).body.data as any[]).find((r) => r.source === 'analysis');
    expect(await analysisUsage()).toBeUndefined();

    const body = { request_id: ex.id, config: { analysis_type: 'sentiment' } };
    fake.enqueue({ kind: 'structured', mode: 'wrong-category' }, { kind: 'structured', mode: 'wrong-category' });
    const failed = await org.call('POST', '/v1/analysis', body);
    expect(failed.status).toBe(502);
    expect(org.upstreamCalls()).toHaveLength(2);
    const [row] = await app.dataSource.query(
      `SELECT input_tokens::float8 AS input_tokens, output_tokens::float8 AS output_tokens, total_tokens::float8 AS total_tokens, cost, model, error FROM analysis_results WHERE organization_id = $1`,
      [org.orgId],
    );
    expect(row.error).toContain('did not fit the schema twice');
    // what a good answer to the same request costs in input: each of the two attempts paid it
    const good = await org.call('POST', '/v1/analysis', body);
    expect(good.status).toBe(200);
    expect(good.body.cached).toBe(false);
    expect(row.input_tokens).toBe(2 * good.body.usage.input_tokens);
    expect(row.output_tokens).toBeGreaterThan(0);
    expect(row.total_tokens).toBe(row.input_tokens + row.output_tokens);
    expect(row.cost).toBeCloseTo((row.input_tokens * GPT_4O_MINI.input + row.output_tokens * GPT_4O_MINI.output) / 1e6, 12);

    // the budget counts both analyses
    const spentAfter = (await org.call('GET', '/v1/limits')).body.user.usage.cost_today_usd as number;
    expect(spentAfter - spentBefore).toBeCloseTo(row.cost + good.body.cost, 12);
    // usage analytics: two analysis calls, one of them an error, with both calls' tokens and cost
    const usage = await analysisUsage();
    expect(usage).toMatchObject({ requests: 2, errors: 1 });
    expect(usage.tokens.input).toBe(row.input_tokens + good.body.usage.input_tokens);
    expect(usage.cost).toBeCloseTo(row.cost + good.body.cost, 12);
    // a budget seeded from the records (set after the calls) counts the failed one too
    await app.app.get(LimitsAdminService).setUserLimits(org.userId, { daily_budget_usd: null }, cliActor());
    await app.app.get(LimitsAdminService).setUserLimits(org.userId, { daily_budget_usd: 1000 }, cliActor());
    const reseeded = (await org.call('GET', '/v1/limits')).body.user.usage.cost_today_usd as number;
    expect(reseeded).toBeCloseTo(spentAfter, 12);
  });

  it('charges what the first attempt billed when the retry fails upstream', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    fake.enqueue({ kind: 'structured', mode: 'invalid-json' }, { kind: 'status', status: 500 });
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config: { analysis_type: 'urgency' } });
    expect(res.status).toBe(502);
    expect(org.upstreamCalls()).toHaveLength(2);
    const rows = await app.dataSource.query(`SELECT status, input_tokens::float8 AS input_tokens, cost FROM analysis_results WHERE organization_id = $1`, [org.orgId]);
    expect(rows).toHaveLength(1);
    expect(rows[0].status).toBe('failed');
    expect(rows[0].input_tokens).toBeGreaterThan(0);
    expect(rows[0].cost).toBeGreaterThan(0);

    // an attempt that got no answer was not billed and leaves no record
    fake.enqueue({ kind: 'status', status: 500 });
    expect((await org.call('POST', '/v1/analysis', { request_id: ex.id, config: { analysis_type: 'sentiment' } })).status).toBe(502);
    const after = await app.dataSource.query(`SELECT count(*)::int AS n FROM analysis_results WHERE organization_id = $1`, [org.orgId]);
    expect(after[0].n).toBe(1);
  });

  it('accepts an answer that is only out of order and returns it sorted, without a retry', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    fake.enqueue({ kind: 'structured', mode: 'unsorted' });
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config: { analysis_type: 'intent', categories: INTENT_CATEGORIES } });
    expect(res.status).toBe(200);
    expectConforming(res.body, INTENT_CATEGORIES.map((c) => c.name));
    expect(org.upstreamCalls()).toHaveLength(1);
  });

  it('refuses an answer whose primary_category is not the top-scoring category', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    fake.structuredAnswer = () => ({
      reasoning: 'r',
      categories: [
        { name: 'a', score: 0.8, reasoning: 'x' },
        { name: 'b', score: 0.2, reasoning: 'y' },
      ],
      primary_category: 'b',
      confidence: 0.2,
    });
    const res = await org.call('POST', '/v1/analysis', { request_id: ex.id, config: { analysis_type: 'custom', categories: [{ name: 'a' }, { name: 'b' }] } });
    expect(res.status).toBe(502);
    expect(org.upstreamCalls()).toHaveLength(2);
  });

  it('maps upstream errors like the proxy does', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const body = { request_id: ex.id, config: { analysis_type: 'sentiment' } };
    fake.enqueue({ kind: 'status', status: 400, body: { error: { message: 'Bad schema, sorry', type: 'invalid_request_error', code: null, param: 'text' } } });
    const bad = await org.call('POST', '/v1/analysis', body);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ message: 'Bad schema, sorry', type: 'invalid_request_error' });

    fake.enqueue({ kind: 'malformed-json' });
    const garbled = await org.call('POST', '/v1/analysis', body);
    expect(garbled.status).toBe(502);
    expect(garbled.body.error.type).toBe('upstream_error');

    const noKey = await createOrg(app);
    const other = api(app, noKey.token, 'someone');
    const user = await createUser(app, noKey.orgId, 'someone');
    const ex2 = await insertExchange({ orgId: noKey.orgId, userId: user.id, externalId: 'someone' });
    const refused = await other('POST', '/v1/analysis', { request_id: ex2.id, config: { analysis_type: 'sentiment' } });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('no_api_key');
  });

  it('force_refresh skips the cache and stores a new result that later hits return', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const config = await createIntentConfig(org.call);
    const body = { request_id: ex.id, config_id: config.id };
    const first = await org.call('POST', '/v1/analysis', body);
    const forced = await org.call('POST', '/v1/analysis', { ...body, force_refresh: true });
    expect(forced.status).toBe(200);
    expect(forced.body.cached).toBe(false);
    expect(forced.body.cost).toBeGreaterThan(0);
    expect(forced.body.id).not.toBe(first.body.id);
    expect(org.upstreamCalls()).toHaveLength(2);
    const hit = await org.call('POST', '/v1/analysis', body);
    expect(hit.body).toMatchObject({ id: forced.body.id, cached: true, cost: 0 });
    expect(org.upstreamCalls()).toHaveLength(2);
    const history = await org.call('GET', `/v1/analysis/results?request_id=${ex.id}`);
    expect(history.body.data.map((r: any) => r.id)).toEqual([forced.body.id, first.body.id]);
  });

  it('keys the cache on the normalized configuration and the conversation, not on the name or the exchange id', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const config = await createIntentConfig(org.call);
    const body = { request_id: ex.id, config_id: config.id };
    const first = await org.call('POST', '/v1/analysis', body);
    expect(first.body.cached).toBe(false);

    // renaming keeps the cache
    const renamed = await org.call('PATCH', `/v1/analysis/configs/${config.id}`, { name: 'Renamed' });
    expect(renamed.status).toBe(200);
    expect(renamed.body.name).toBe('Renamed');
    expect((await org.call('POST', '/v1/analysis', body)).body).toMatchObject({ id: first.body.id, cached: true });

    // a twin configuration under another name shares the result, reported under its own id
    const twin = await createIntentConfig(org.call, { name: 'Twin' });
    const viaTwin = await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: twin.id });
    expect(viaTwin.body).toMatchObject({ id: first.body.id, cached: true, config_id: twin.id });

    // the same conversation in another exchange hits too
    const copy = await proxyExchange(org);
    const viaCopy = await org.call('POST', '/v1/analysis', { request_id: copy.id, config_id: config.id });
    expect(viaCopy.body).toMatchObject({ cached: true, request_id: copy.id, response_id: copy.responseId });
    expect(org.upstreamCalls()).toHaveLength(1);

    // editing what the analysis is changes the key; the old result stays as history
    const edited = await org.call('PATCH', `/v1/analysis/configs/${config.id}`, { instructions: 'Billing wins ties.' });
    expect(edited.body.instructions).toBe('Billing wins ties.');
    const afterEdit = await org.call('POST', '/v1/analysis', body);
    expect(afterEdit.body.cached).toBe(false);
    expect(afterEdit.body.id).not.toBe(first.body.id);
    await org.call('PATCH', `/v1/analysis/configs/${config.id}`, { categories: INTENT_CATEGORIES.slice(0, 3) });
    const afterCategories = await org.call('POST', '/v1/analysis', body);
    expect(afterCategories.body.cached).toBe(false);
    expect(afterCategories.body.categories).toHaveLength(3);
    expect(org.upstreamCalls()).toHaveLength(3);
    const history = await org.call('GET', `/v1/analysis/results?config_id=${config.id}`);
    expect(history.body.data).toHaveLength(3);

    // a different conversation misses
    const different = await proxyExchange(org, { ...DEFAULT_EXCHANGE, input: 'Another question entirely.' });
    const miss = await org.call('POST', '/v1/analysis', { request_id: different.id, config_id: config.id });
    expect(miss.body.cached).toBe(false);
    expect(org.upstreamCalls()).toHaveLength(4);
  });

  it('makes one upstream call for five identical analyses at once', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const config = await createIntentConfig(org.call);
    fake.enqueue({ kind: 'delay', ms: 300 });
    const results = await Promise.all(
      Array.from({ length: 5 }, () => org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: config.id })),
    );
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect(results.filter((r) => r.body.cached === false)).toHaveLength(1);
    expect(results.filter((r) => r.body.cached === true).every((r) => r.body.cost === 0)).toBe(true);
    expect(org.upstreamCalls()).toHaveLength(1);
    const rows = await app.dataSource.query('SELECT count(*)::int AS n FROM analysis_results WHERE organization_id = $1', [org.orgId]);
    expect(rows[0].n).toBe(1);
  });

  it.skipIf(!process.env.DATABASE_URL)('makes one upstream call for identical analyses in two server processes', async () => {
    const second = await createTestApp({ ...app.env, DATA_DIR: undefined });
    try {
      const org = await setupOrg();
      const ex = await proxyExchange(org);
      const config = await createIntentConfig(org.call);
      const there = api(second, org.token, org.externalId);
      fake.enqueue({ kind: 'delay', ms: 400 });
      const body = { request_id: ex.id, config_id: config.id };
      const results = await Promise.all([
        org.call('POST', '/v1/analysis', body),
        there('POST', '/v1/analysis', body),
        org.call('POST', '/v1/analysis', body),
        there('POST', '/v1/analysis', body),
      ]);
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
      expect(org.upstreamCalls()).toHaveLength(1);
    } finally {
      await second.close();
    }
  });

  it("never shows or shares another organization's exchanges, configurations or cache", async () => {
    const a = await setupOrg();
    const b = await setupOrg();
    const exA = await proxyExchange(a);
    const configA = await createIntentConfig(a.call);
    expect((await a.call('POST', '/v1/analysis', { request_id: exA.id, config_id: configA.id })).status).toBe(200);

    const configB = await createIntentConfig(b.call);
    const foreign = await b.call('POST', '/v1/analysis', { request_id: exA.id, config_id: configB.id });
    const unknown = await b.call('POST', '/v1/analysis', { request_id: 'req_doesnotexist000000000000', config_id: configB.id });
    expect(foreign.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(foreign.body.error.type).toBe('not_found_error');
    expect(foreign.body.error.message.replace(exA.id, 'X')).toBe(unknown.body.error.message.replace('req_doesnotexist000000000000', 'X'));
    expect((await b.call('POST', '/v1/analysis', { response_id: exA.responseId, config_id: configB.id })).status).toBe(404);
    expect((await b.call('GET', `/v1/analysis/configs/${configA.id}`)).status).toBe(404);
    expect((await b.call('PATCH', `/v1/analysis/configs/${configA.id}`, { name: 'x' })).status).toBe(404);
    expect((await b.call('DELETE', `/v1/analysis/configs/${configA.id}`)).status).toBe(404);
    const exB = await proxyExchange(b);
    expect((await b.call('POST', '/v1/analysis', { request_id: exB.id, config_id: configA.id })).status).toBe(404);

    // identical configuration and conversation in org B: a fresh upstream call with B's key
    const resB = await b.call('POST', '/v1/analysis', { request_id: exB.id, config_id: configB.id });
    expect(resB.status).toBe(200);
    expect(resB.body.cached).toBe(false);
    expect(b.upstreamCalls()).toHaveLength(1);
    expect(a.upstreamCalls()).toHaveLength(1);

    const listB = await b.call('GET', '/v1/analysis/results');
    expect(listB.body.data.map((r: any) => r.id)).toEqual([resB.body.id]);
    const configsB = await b.call('GET', '/v1/analysis/configs');
    expect(configsB.body.data.map((c: any) => c.id)).toEqual([configB.id]);
  });

  it('manages configurations: defaults, replacement categories, list, get, patch, soft delete', async () => {
    const org = await setupOrg();
    const sentiment = await org.call('POST', '/v1/analysis/configs', { name: 'Mood', analysis_type: 'sentiment' });
    expect(sentiment.status).toBe(201);
    expect(sentiment.body).toMatchObject({ model: 'gpt-4o-mini', include_metadata: false, instructions: null });
    expect(sentiment.body.categories.map((c: any) => c.name)).toEqual(['positive', 'neutral', 'negative', 'frustrated']);
    const own = await org.call('POST', '/v1/analysis/configs', {
      name: 'Mood 2',
      analysis_type: 'sentiment',
      categories: [{ name: 'happy' }, { name: 'sad', description: 'down' }],
      model: 'gpt-4o',
    });
    expect(own.body.categories).toEqual([
      { name: 'happy', description: null },
      { name: 'sad', description: 'down' },
    ]);
    expect(own.body.model).toBe('gpt-4o');

    const list = await org.call('GET', '/v1/analysis/configs');
    expect(list.body).toMatchObject({ object: 'list', has_more: false, first_id: own.body.id, last_id: sentiment.body.id });
    const page = await org.call('GET', '/v1/analysis/configs?limit=1');
    expect(page.body).toMatchObject({ has_more: true, data: [{ id: own.body.id }] });
    expect((await org.call('GET', `/v1/analysis/configs/${sentiment.body.id}`)).body).toEqual(sentiment.body);

    const patched = await org.call('PATCH', `/v1/analysis/configs/${sentiment.body.id}`, { analysis_type: 'urgency', include_metadata: true });
    expect(patched.status).toBe(200);
    expect(patched.body.categories.map((c: any) => c.name)).toEqual(['low', 'medium', 'high', 'critical']);
    expect(patched.body.include_metadata).toBe(true);
    expect(new Date(patched.body.updated_at).getTime()).toBeGreaterThanOrEqual(new Date(sentiment.body.updated_at).getTime());
    const nulled = await org.call('PATCH', `/v1/analysis/configs/${sentiment.body.id}`, { name: null });
    expect(nulled.status).toBe(400);
    expect(nulled.body.error.param).toBe('name');

    const del = await org.call('DELETE', `/v1/analysis/configs/${sentiment.body.id}`);
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    expect((await org.call('GET', `/v1/analysis/configs/${sentiment.body.id}`)).status).toBe(404);
    expect((await org.call('DELETE', `/v1/analysis/configs/${sentiment.body.id}`)).status).toBe(404);
    expect((await org.call('GET', '/v1/analysis/configs')).body.data.map((c: any) => c.id)).toEqual([own.body.id]);
    const ex = await proxyExchange(org);
    expect((await org.call('POST', '/v1/analysis', { request_id: ex.id, config_id: sentiment.body.id })).status).toBe(404);
    expect((await org.call('GET', '/v1/analysis/configs/not-a-uuid')).status).toBe(404);
  });

  it('answers validation errors with 400 and the offending param', async () => {
    const org = await setupOrg();
    const ex = await proxyExchange(org);
    const config = await createIntentConfig(org.call);
    const run = (body: unknown) => org.call('POST', '/v1/analysis', body);
    const create = (body: Record<string, unknown>) => org.call('POST', '/v1/analysis/configs', { name: 'n', ...body });
    const many = Array.from({ length: 51 }, (_, i) => ({ name: `c${i}` }));
    const cases: Array<[Promise<{ status: number; body: any }>, string]> = [
      [run({ request_id: ex.id, response_id: ex.responseId, config_id: config.id }), 'request_id'],
      [run({ config_id: config.id }), 'request_id'],
      [run({ request_id: null, config_id: config.id }), 'request_id'],
      [run({ request_id: ex.id, config_id: null, config: null }), 'config_id'],
      [run({ request_id: ex.id, config_id: config.id, config: { analysis_type: 'sentiment' } }), 'config_id'],
      [run({ request_id: ex.id }), 'config_id'],
      [run({ request_id: ex.id, config: { analysis_type: 'mood' } }), 'config.analysis_type'],
      [run({ request_id: ex.id, config: { analysis_type: 'intent' } }), 'config.categories'],
      [run({ request_id: ex.id, config: { analysis_type: 'custom', categories: [{ name: 'a' }, { name: 'a' }] } }), 'config.categories'],
      [run({ request_id: ex.id, config_id: config.id, force_refresh: 'yes' }), 'force_refresh'],
      [run({ request_id: ex.id, config_id: config.id, extra: 1 }), 'extra'],
      [create({ analysis_type: 'mood', categories: [{ name: 'a' }] }), 'analysis_type'],
      [create({ analysis_type: 'intent' }), 'categories'],
      [create({ analysis_type: 'custom' }), 'categories'],
      [create({ analysis_type: 'intent', categories: [] }), 'categories'],
      [create({ analysis_type: 'intent', categories: [{ name: 'x' }, { name: 'y' }, { name: 'x' }] }), 'categories'],
      [create({ analysis_type: 'intent', categories: many }), 'categories'],
      [create({ analysis_type: 'intent', categories: [{ name: 'bad"name' }] }), 'categories[0].name'],
      [create({ analysis_type: 'intent', categories: [{ name: '' }] }), 'categories[0].name'],
      [create({ analysis_type: 'intent', categories: [{ name: 'ok', colour: 'red' }] }), 'categories[0].colour'],
      [create({ analysis_type: 'sentiment', instructions: 'x'.repeat(10_001) }), 'instructions'],
      [create({ analysis_type: 'sentiment', name: '' }), 'name'],
      [create({ analysis_type: 'sentiment', name: 'x'.repeat(201) }), 'name'],
      [create({ analysis_type: 'sentiment', include_metadata: 'true' }), 'include_metadata'],
      [org.call('PATCH', `/v1/analysis/configs/${config.id}`, { categories: [{ name: 'q' }, { name: 'q' }] }), 'categories'],
      [org.call('GET', '/v1/analysis/results?limit=0'), 'limit'],
      [org.call('GET', '/v1/analysis/results?config_id=nope'), 'config_id'],
    ];
    for (const [pending, param] of cases) {
      const res = await pending;
      expect({ param, status: res.status }).toEqual({ param, status: 400 });
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    }
    expect((await run({ request_id: ex.id, config_id: randomUUID() })).status).toBe(404);
    expect(org.upstreamCalls()).toHaveLength(0);
  });
  it('validates the query of the analysis lists like every list, and documents its parameters', async () => {
    const org = await setupOrg();
    const cases: Array<[string, string, string]> = [
      ['/v1/analysis/results?request_id=%00', 'request_id', 'request_id must not contain NUL (\\u0000) characters'],
      ['/v1/analysis/results?response_id=a&response_id=b', 'response_id', 'response_id must be a string'],
      ['/v1/analysis/results?config_id=nope', 'config_id', 'config_id must be a UUID'],
      ['/v1/analysis/results?colour=red', 'colour', "Unknown field 'colour'"],
      ['/v1/analysis/results?limit=101', 'limit', 'limit must be an integer between 1 and 100'],
      ['/v1/analysis/configs?limit=x', 'limit', 'limit must be an integer between 1 and 100'],
      ['/v1/analysis/configs?after=nope', 'after', "Unknown cursor 'nope'"],
    ];
    for (const [path, param, message] of cases) {
      const res = await org.call('GET', path);
      expect({ path, status: res.status, error: res.body.error }).toMatchObject({ path, status: 400, error: { type: 'invalid_request_error', param, message } });
    }
    // an empty parameter means "not given"
    expect((await org.call('GET', '/v1/analysis/results?request_id=&response_id=&config_id=&after=')).status).toBe(200);
    expect((await org.call('GET', '/v1/analysis/configs?after=')).status).toBe(200);

    const doc: any = await (await fetch(`${app.url}/docs-json`)).json();
    const params = (path: string) => Object.fromEntries(doc.paths[path].get.parameters.map((p: any) => [p.name, { in: p.in, ...p.schema }]));
    expect(params('/v1/analysis/results')).toMatchObject({
      request_id: { in: 'query', type: 'string' },
      response_id: { in: 'query', type: 'string' },
      config_id: { in: 'query', type: 'string', format: 'uuid' },
      limit: { in: 'query', type: 'integer', minimum: 1, maximum: 100 },
      after: { in: 'query', type: 'string' },
    });
    expect(params('/v1/analysis/configs')).toMatchObject({ limit: { in: 'query', type: 'integer', minimum: 1, maximum: 100 }, after: { in: 'query', type: 'string' } });
  });

  it('documents the analysis routes with examples in the OpenAPI document', async () => {
    const doc: any = await (await fetch(`${app.url}/docs-json`)).json();
    for (const path of ['/v1/analysis', '/v1/analysis/results', '/v1/analysis/configs', '/v1/analysis/configs/{id}']) {
      expect(doc.paths[path], path).toBeDefined();
    }
    const run = doc.paths['/v1/analysis'].post;
    expect(run.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/AnalysisResult' });
    expect(run.responses['200'].content['application/json'].example).toMatchObject({ primary_category: 'technical_support', cached: false });
    expect(Object.keys(run.requestBody.content['application/json'].examples)).toEqual(['saved', 'inline']);
    expect(doc.paths['/v1/analysis/configs/{id}'].delete.responses['204']).toBeDefined();
  });
});
