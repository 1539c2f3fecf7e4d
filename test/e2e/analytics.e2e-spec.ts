import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageDailyRepository } from '../../src/exchanges/usage-daily/usage-daily.repository';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser, TestOrg } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';

/*
 * Known data set, every figure below computed by hand.
 *
 * Built through the API: personas (P gets version 2 by a PATCH of its content), exchanges through the proxy
 * (POST /v1/responses with persona_id, against the fake upstream), ratings, analyses. The fake upstream answers
 * "Echo: <input>" (2 output tokens for a one-word input) and counts ceil((instructions + input characters) / 4)
 * input tokens; the persona content is the instructions. So an input of `'a'.repeat(4·T − content length)`
 * costs exactly T input tokens. Prices per 1M tokens: gpt-4o-mini 0.15 in / 0.6 out, gpt-4o 2.5 / 10.
 *
 * Organization A, personas P (v1 "You are a support agent." 24 chars, v2 "You are a kind support agent" 28 chars) and
 * Q ("You sell things." 16 chars). Period [2026-03-09, 2026-03-11).
 *
 *  ex  persona v user  session model        outcome         in/out/total  cost (1e-6 $)  latency created_at (UTC)
 *  E1  P       1 alice s1      gpt-4o-mini  completed       100/2/102      16.2          100     03-09 23:59:59   (just before midnight)
 *  E2  P       1 alice s1      gpt-4o-mini  completed       200/2/202      31.2          200     03-09 23:00:00
 *  E3  P       1 bob   s2      gpt-4o-mini  upstream 400    -              -             300     03-10 00:00:00   (midnight)
 *  E4  P       2 bob   s3      gpt-4o       completed       300/2/302      770           400     03-10 00:00:01
 *  E5  P       2 carol s4      gpt-4o       completed       400/2/402      1020          1000    03-10 12:00:00
 *  E6  P       2 carol s4      gpt-4o       pending         -              -             -       03-10 13:00:00
 *  E7  P       1 alice s0      gpt-4o-mini  completed       10/2/12        2.7           5       03-08 23:59:59.999 (before the period)
 *  E8  P       2 alice s5      gpt-4o-mini  completed       10/2/12        2.7           5       03-11 00:00:00   (= to: excluded)
 *  E9  Q       1 bob   s6      gpt-4o       completed       1000/2/1002    2520          50      03-10 06:00:00
 *  E10 -       - alice s7      gpt-4o-mini  upstream 400    -              -             70      03-09 10:00:00
 *
 * Ratings: E1 alice 5, E1 bob 4, E2 alice 3, E4 bob 1, E5 carol 5, E7 alice 2 (outside).
 * Analyses (type → primary category, by, model, created_at):
 *  A1 E1 intent billing            alice gpt-4o-mini 03-10 01:00  (replaced by A2, a force_refresh)
 *  A2 E1 intent technical_support  alice gpt-4o-mini 03-10 02:00
 *  A3 E2 intent billing            alice gpt-4o-mini 03-10 03:00
 *  A4 E4 intent billing            bob   gpt-4o      03-10 04:00
 *  A5 E4 sentiment frustrated      bob   gpt-4o      03-10 05:00
 *  A6 E5 sentiment positive        carol gpt-4o-mini 03-11 00:00  (exchange in the period, call not)
 *  A7 E7 intent sales              alice gpt-4o-mini 03-09 12:00  (call in the period, exchange not)
 *  A8 E9 intent sales              bob   gpt-4o      03-10 06:30
 * The analysis calls' tokens come from the analysis prompt, so usage rows of source `analysis` are checked against
 * the usage and cost each POST /v1/analysis answered with.
 * Organization B has a persona and traffic in the same period, which A must never see.
 */

const FROM = '2026-03-09T00:00:00.000Z';
const TO = '2026-03-11T00:00:00.000Z';
const PERIOD = `from=${FROM}&to=${TO}`;
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const INTENTS = [
  { name: 'billing', description: 'Invoices and payments' },
  { name: 'technical_support', description: 'Something does not work' },
  { name: 'sales', description: 'Wants to buy' },
];
const µ = (v: number) => v / 1e6;

interface ProxiedSpec {
  persona?: string;
  contentLength?: number;
  user: string;
  session: string;
  model: string;
  inputTokens?: number;
  /** the upstream refuses the call with a 400 */
  fail?: boolean;
  latency: number;
  at: string;
}

interface AnalysisCall {
  user: string;
  model: string;
  persona: string | null;
  day: string;
  inPeriod: boolean;
  input: number;
  output: number;
  total: number;
  cost: number;
}

/** Numbers rounded to 10 decimals: money is summed as float8, so 0.001 + 0.002 is not exactly 0.003. */
function rounded(value: unknown): unknown {
  if (typeof value === 'number') return Math.round(value * 1e10) / 1e10;
  if (Array.isArray(value)) return value.map(rounded);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rounded(v)]));
  return value;
}

describe('analytics', () => {
  let app: TestApp;
  let fake: FakeUpstream;
  let orgA: TestOrg;
  let orgB: TestOrg;
  const users: Record<string, string> = {};
  const ex: Record<string, string> = {};
  const analysisCalls: AnalysisCall[] = [];
  let personaP: string;
  let personaQ: string;
  let personaB: string;

  const asUser = (org: TestOrg, user = ALICE) => api(app, org.token, user);

  /**
   * One exchange through the proxy. created_at and latency_ms are then set on the stored row: the clock and the
   * upstream's speed cannot be controlled through the API, and the data set needs exact values on both sides of
   * a UTC midnight and hand-computable percentiles.
   */
  async function proxied(org: TestOrg, e: ProxiedSpec): Promise<string> {
    const input = 'a'.repeat(4 * (e.inputTokens ?? 25) - (e.contentLength ?? 0));
    if (e.fail) fake.enqueue({ kind: 'status', status: 400, body: { error: { message: 'bad request', type: 'invalid_request_error', code: null, param: null } } });
    const body: Record<string, unknown> = { model: e.model, input };
    if (e.persona) body.persona_id = e.persona;
    const res = await asUser(org, e.user)('POST', '/v1/responses', body, { 'x-session-id': e.session });
    expect(res.status, res.text).toBe(e.fail ? 400 : 200);
    const id = res.headers.get('x-request-id')!;
    await settled(id);
    await app.dataSource.query(`UPDATE exchanges SET created_at = $2, latency_ms = $3 WHERE id = $1`, [id, e.at, e.latency]);
    return id;
  }

  /** Waits until the recorder has written the exchange's final state (so it cannot overwrite the UPDATE after). */
  async function settled(id: string): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const rows = await app.dataSource.query(`SELECT status FROM exchanges WHERE id = $1`, [id]);
      if (rows.length && rows[0].status !== 'pending') return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`exchange ${id} was not stored`);
  }

  /*
   * An exchange still in flight (status pending) is written with SQL: holding a proxied call open in a test while
   * the analytics are read would race the recorder.
   */
  async function insertPending(orgId: string, e: { persona: string; version: number; user: string; session: string; model: string; at: string }): Promise<void> {
    await app.dataSource.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version, endpoint, model, status, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'responses', $8, 'pending', $9)`,
      [`req_${randomBytes(18).toString('base64url').slice(0, 24)}`, orgId, users[`${orgId}:${e.user}`], e.user, e.session, e.persona, e.version, e.model, e.at],
    );
  }

  /** One analysis through POST /v1/analysis; the fake upstream picks `category`; created_at set afterwards (clock). */
  async function analyse(
    org: TestOrg,
    a: { exchange: string; user: string; type: 'intent' | 'sentiment'; category: string; model: string; at: string; persona: string | null; refresh?: boolean },
  ): Promise<void> {
    const names = a.type === 'intent' ? INTENTS.map((c) => c.name) : ['positive', 'neutral', 'negative', 'frustrated'];
    fake.structuredAnswer = () => ({
      reasoning: 'because',
      categories: [a.category, ...names.filter((n) => n !== a.category)].map((name, i) => ({ name, score: i === 0 ? 0.9 : 0.05, reasoning: 'r' })),
      primary_category: a.category,
      confidence: 0.9,
    });
    const config = a.type === 'intent' ? { analysis_type: 'intent', categories: INTENTS, model: a.model } : { analysis_type: 'sentiment', model: a.model };
    const res = await asUser(org, a.user)('POST', '/v1/analysis', { request_id: a.exchange, config, force_refresh: a.refresh ?? false });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ primary_category: a.category, cached: false });
    fake.structuredAnswer = undefined;
    await app.dataSource.query(`UPDATE analysis_results SET created_at = $2 WHERE id = $1`, [res.body.id, a.at]);
    if (org === orgA) {
      analysisCalls.push({
        user: a.user,
        model: a.model,
        persona: a.persona,
        day: a.at.slice(0, 10),
        inPeriod: a.at >= FROM && a.at < TO,
        input: res.body.usage.input_tokens,
        output: res.body.usage.output_tokens,
        total: res.body.usage.total_tokens,
        cost: res.body.cost ?? 0,
      });
    }
  }

  async function rate(org: TestOrg, exchangeId: string, user: string, rating: number): Promise<void> {
    const res = await asUser(org, user)('POST', `/v1/requests/${exchangeId}/rating`, { rating });
    expect(res.status, res.text).toBe(201);
  }

  async function persona(org: TestOrg, name: string, content: string): Promise<string> {
    const res = await asUser(org)('POST', '/v1/personas', { name, content });
    expect(res.status, res.text).toBe(201);
    return res.body.id;
  }

  async function setupOrg(): Promise<TestOrg> {
    const org = await createOrg(app);
    await createKey(app, org.orgId, `sk-test-${randomBytes(6).toString('hex')}`, { baseUrl: fake.url });
    for (const name of [ALICE, BOB, CAROL]) users[`${org.orgId}:${name}`] = (await createUser(app, org.orgId, name)).id;
    return org;
  }

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp();
    orgA = await setupOrg();
    orgB = await setupOrg();

    const mini = 'gpt-4o-mini';
    personaP = await persona(orgA, 'Support agent', 'You are a support agent.');
    personaQ = await persona(orgA, 'Sales', 'You sell things.');
    const P1 = { persona: personaP, contentLength: 24 };
    ex.E1 = await proxied(orgA, { ...P1, user: ALICE, session: 's1', model: mini, inputTokens: 100, latency: 100, at: '2026-03-09T23:59:59Z' });
    ex.E2 = await proxied(orgA, { ...P1, user: ALICE, session: 's1', model: mini, inputTokens: 200, latency: 200, at: '2026-03-09T23:00:00Z' });
    ex.E3 = await proxied(orgA, { ...P1, user: BOB, session: 's2', model: mini, fail: true, latency: 300, at: '2026-03-10T00:00:00Z' });
    ex.E7 = await proxied(orgA, { ...P1, user: ALICE, session: 's0', model: mini, inputTokens: 10, latency: 5, at: '2026-03-08T23:59:59.999Z' });
    const v2 = await asUser(orgA)('PATCH', `/v1/personas/${personaP}`, { content: 'You are a kind support agent' });
    expect(v2.body.version, v2.text).toBe(2);
    const P2 = { persona: personaP, contentLength: 28 };
    ex.E4 = await proxied(orgA, { ...P2, user: BOB, session: 's3', model: 'gpt-4o', inputTokens: 300, latency: 400, at: '2026-03-10T00:00:01Z' });
    ex.E5 = await proxied(orgA, { ...P2, user: CAROL, session: 's4', model: 'gpt-4o', inputTokens: 400, latency: 1000, at: '2026-03-10T12:00:00Z' });
    await insertPending(orgA.orgId, { persona: personaP, version: 2, user: CAROL, session: 's4', model: 'gpt-4o', at: '2026-03-10T13:00:00Z' });
    ex.E8 = await proxied(orgA, { ...P2, user: ALICE, session: 's5', model: mini, inputTokens: 10, latency: 5, at: '2026-03-11T00:00:00Z' });
    ex.E9 = await proxied(orgA, { persona: personaQ, contentLength: 16, user: BOB, session: 's6', model: 'gpt-4o', inputTokens: 1000, latency: 50, at: '2026-03-10T06:00:00Z' });
    ex.E10 = await proxied(orgA, { user: ALICE, session: 's7', model: mini, fail: true, latency: 70, at: '2026-03-09T10:00:00Z' });
    // organization B: same period, same model, its own persona
    personaB = await persona(orgB, 'Support agent', 'Other org!!!');
    ex.B1 = await proxied(orgB, { persona: personaB, contentLength: 12, user: ALICE, session: 's1', model: 'gpt-4o', inputTokens: 7, latency: 7, at: '2026-03-10T00:00:00Z' });

    await rate(orgA, ex.E1, ALICE, 5);
    await rate(orgA, ex.E1, BOB, 4);
    await rate(orgA, ex.E2, ALICE, 3);
    await rate(orgA, ex.E4, BOB, 1);
    await rate(orgA, ex.E5, CAROL, 5);
    await rate(orgA, ex.E7, ALICE, 2);
    await rate(orgB, ex.B1, ALICE, 1);

    const P = personaP;
    await analyse(orgA, { exchange: ex.E1, user: ALICE, type: 'intent', category: 'billing', model: mini, at: '2026-03-10T01:00:00Z', persona: P });
    await analyse(orgA, { exchange: ex.E1, user: ALICE, type: 'intent', category: 'technical_support', model: mini, at: '2026-03-10T02:00:00Z', persona: P, refresh: true });
    await analyse(orgA, { exchange: ex.E2, user: ALICE, type: 'intent', category: 'billing', model: mini, at: '2026-03-10T03:00:00Z', persona: P });
    await analyse(orgA, { exchange: ex.E4, user: BOB, type: 'intent', category: 'billing', model: 'gpt-4o', at: '2026-03-10T04:00:00Z', persona: P });
    await analyse(orgA, { exchange: ex.E4, user: BOB, type: 'sentiment', category: 'frustrated', model: 'gpt-4o', at: '2026-03-10T05:00:00Z', persona: P });
    await analyse(orgA, { exchange: ex.E5, user: CAROL, type: 'sentiment', category: 'positive', model: mini, at: '2026-03-11T00:00:00Z', persona: P });
    await analyse(orgA, { exchange: ex.E7, user: ALICE, type: 'intent', category: 'sales', model: mini, at: '2026-03-09T12:00:00Z', persona: P });
    await analyse(orgA, { exchange: ex.E9, user: BOB, type: 'intent', category: 'sales', model: 'gpt-4o', at: '2026-03-10T06:30:00Z', persona: personaQ });
    await analyse(orgB, { exchange: ex.B1, user: ALICE, type: 'intent', category: 'billing', model: 'gpt-4o', at: '2026-03-10T01:00:00Z', persona: personaB });
  });

  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  describe('GET /v1/analytics/personas/{id}', () => {
    it('reports every figure of the known data set', async () => {
      const res = await asUser(orgA)('GET', `/v1/analytics/personas/${personaP}?${PERIOD}`);
      expect(res.status, res.text).toBe(200);
      expect(rounded(res.body)).toEqual({
        persona_id: personaP,
        name: 'Support agent',
        period: { from: FROM, to: TO },
        requests: 6, // E1–E6: the failed E3 and the running E6 count as requests
        users: 3,
        sessions: 4,
        errors: 1, // E3; the pending E6 is not an error
        tokens: { input: 1000, output: 8, total: 1008 },
        cost: rounded(µ(16.2 + 31.2 + 770 + 1020)),
        // latencies 100, 200, 300, 400, 1000 (E6 has none); percentile_cont interpolates:
        // p50 at rank 0.5·4 = 2 → 300; p95 at rank 0.95·4 = 3.8 → 400 + 0.8·(1000 − 400) = 880
        latency_ms: { avg: 400, p50: 300, p95: 880 },
        // 5, 4, 3, 1, 5 (E7's 2 is outside the period)
        ratings: { count: 5, average: 3.6, distribution: { '1': 1, '2': 0, '3': 1, '4': 1, '5': 2 } },
        // E1 counts once with its newest intent (A2); A6 counts (its exchange is in the period), A7 does not
        analysis: { intent: { billing: 2, technical_support: 1 }, sentiment: { frustrated: 1, positive: 1 } },
        by_version: [
          // the analyses of each version's exchanges: E1 (newest intent A2) and E2; E4 (intent and sentiment) and E5
          { version: 1, requests: 3, average_rating: 4, cost: rounded(µ(16.2 + 31.2)), analysis: { intent: { billing: 1, technical_support: 1 } } }, // E1–E3
          { version: 2, requests: 3, average_rating: 3, cost: rounded(µ(770 + 1020)), analysis: { intent: { billing: 1 }, sentiment: { frustrated: 1, positive: 1 } } }, // E4–E6
        ],
        daily: [
          { date: '2026-03-09', requests: 2, tokens: 304, cost: rounded(µ(16.2 + 31.2)), average_rating: 4 }, // E1, E2
          { date: '2026-03-10', requests: 4, tokens: 704, cost: rounded(µ(770 + 1020)), average_rating: 3 }, // E3–E6
        ],
      });
    });

    it('answers an empty period with zeros, nulls and empty collections', async () => {
      const res = await asUser(orgA)('GET', `/v1/analytics/personas/${personaP}?from=2020-01-01&to=2020-02-01`);
      expect(res.status, res.text).toBe(200);
      expect(res.body).toEqual({
        persona_id: personaP,
        name: 'Support agent',
        period: { from: '2020-01-01T00:00:00.000Z', to: '2020-02-01T00:00:00.000Z' },
        requests: 0,
        users: 0,
        sessions: 0,
        errors: 0,
        tokens: { input: 0, output: 0, total: 0 },
        cost: 0,
        latency_ms: { avg: null, p50: null, p95: null },
        ratings: { count: 0, average: null, distribution: { '1': 0, '2': 0, '3': 0, '4': 0, '5': 0 } },
        analysis: {},
        by_version: [],
        daily: [],
      });
    });

    it('defaults to the last 30 days and reads time zone offsets', async () => {
      const before = Date.now();
      const res = await asUser(orgA)('GET', `/v1/analytics/personas/${personaP}`);
      const after = Date.now();
      expect(res.status, res.text).toBe(200);
      const { from, to } = res.body.period;
      expect(Date.parse(to)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(to)).toBeLessThanOrEqual(after);
      expect(Date.parse(to) - Date.parse(from)).toBe(30 * 86_400_000);

      // 01:00+01:00 is midnight UTC: E3 (00:00:00Z) is the first exchange in, E2 (23:00 the day before) is out
      const offset = await asUser(orgA)('GET', `/v1/analytics/personas/${personaP}?from=2026-03-10T01:00:00%2B01:00&to=${TO}`);
      expect(offset.status, offset.text).toBe(200);
      expect(offset.body.period.from).toBe('2026-03-10T00:00:00.000Z');
      expect(offset.body.requests).toBe(4);
      expect(offset.body.daily.map((d: any) => d.date)).toEqual(['2026-03-10']);
    });

    it("answers 404 for another organization's persona, an unknown id and a non-UUID, with the same error", async () => {
      const other = await asUser(orgA)('GET', `/v1/analytics/personas/${personaB}?${PERIOD}`);
      const unknownId = randomUUID();
      const unknown = await asUser(orgA)('GET', `/v1/analytics/personas/${unknownId}?${PERIOD}`);
      const junk = await asUser(orgA)('GET', `/v1/analytics/personas/not-a-uuid`);
      for (const res of [other, unknown, junk]) expect(res.status).toBe(404);
      expect(other.body.error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
      expect(JSON.stringify(other.body).replace(personaB, 'ID')).toBe(JSON.stringify(unknown.body).replace(unknownId, 'ID'));

      // and B's own view of it works (so the 404 above is about the organization, not the persona)
      const own = await asUser(orgB)('GET', `/v1/analytics/personas/${personaB}?${PERIOD}`);
      expect(own.status).toBe(200);
      expect(rounded(own.body)).toMatchObject({ requests: 1, cost: rounded(µ(37.5)), ratings: { count: 1 }, analysis: { intent: { billing: 1 } } });
    });

    it('still reports a deleted persona under its name', async () => {
      const org = await setupOrg();
      const id = await persona(org, 'Retired', 'Old persona.');
      await proxied(org, { persona: id, contentLength: 12, user: BOB, session: 'r1', model: 'gpt-4o-mini', inputTokens: 100, latency: 10, at: '2026-03-10T08:00:00Z' });
      expect((await asUser(org)('DELETE', `/v1/personas/${id}`)).status).toBe(204);
      expect((await asUser(org)('GET', `/v1/personas/${id}`)).status).toBe(404);

      const res = await asUser(org)('GET', `/v1/analytics/personas/${id}?${PERIOD}`);
      expect(res.status, res.text).toBe(200);
      expect(rounded(res.body)).toMatchObject({ persona_id: id, name: 'Retired', requests: 1, cost: rounded(µ(16.2)), tokens: { input: 100, output: 2, total: 102 } });
    });

    it.each([
      ['from=yesterday', 'from'],
      ['from=2026-02-30', 'from'],
      ['to=2026-13-01T00:00:00Z', 'to'],
      ['to=1700000000', 'to'],
      ['from=2026-03-10&from=2026-03-11', 'from'],
      ['from=2026-03-11T00:00:00Z&to=2026-03-10T00:00:00Z', 'from'],
    ])('rejects %s with 400 naming %s', async (query, param) => {
      const res = await asUser(orgA)('GET', `/v1/analytics/personas/${personaP}?${query}`);
      expect(res.status, res.text).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    });
  });

  describe('GET /v1/analytics/usage', () => {
    const usage = async (groupBy?: string) => {
      const res = await asUser(orgA)('GET', `/v1/analytics/usage?${PERIOD}${groupBy ? `&group_by=${groupBy}` : ''}`);
      expect(res.status, res.text).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      const data = res.body.data as any[];
      // the whole list: every key, its first and last row's keys (a null key last)
      expect(res.body).toEqual({ object: 'list', data, has_more: false, first_id: data[0]?.key ?? null, last_id: data.at(-1)?.key ?? null });
      return rounded(data) as any[];
    };
    const row = (key: string | null, source: 'proxy' | 'analysis', requests: number, tokens: number[], cost: number, errors = 0) => ({
      key,
      source,
      requests,
      tokens: { input: tokens[0], output: tokens[1], total: tokens[2] },
      cost,
      errors,
    });

    /** The analysis row for the calls in the period that `match`, summed from what POST /v1/analysis reported. */
    const analysisRow = (key: string | null, match: (c: AnalysisCall) => boolean) => {
      const calls = analysisCalls.filter((c) => c.inPeriod && match(c));
      const sum = (f: (c: AnalysisCall) => number) => calls.reduce((acc, c) => acc + f(c), 0);
      expect(calls.length).toBeGreaterThan(0);
      return rounded(row(key, 'analysis', calls.length, [sum((c) => c.input), sum((c) => c.output), sum((c) => c.total)], sum((c) => c.cost)));
    };

    it('groups by user (X-User-ID) with proxied and analysis traffic apart', async () => {
      expect(await usage('user')).toEqual([
        rounded(row(ALICE, 'proxy', 3, [300, 4, 304], µ(16.2 + 31.2), 1)), // E1, E2, E10 (failed)
        analysisRow(ALICE, (c) => c.user === ALICE), // A1, A2, A3, A7
        rounded(row(BOB, 'proxy', 3, [1300, 4, 1304], µ(770 + 2520), 1)), // E3 (failed), E4, E9
        analysisRow(BOB, (c) => c.user === BOB), // A4, A5, A8
        rounded(row(CAROL, 'proxy', 2, [400, 2, 402], µ(1020), 0)), // E5, E6 (pending); A6 is outside the period
      ]);
      expect(analysisCalls.filter((c) => c.inPeriod)).toHaveLength(7);
    });

    it('groups by model', async () => {
      expect(await usage('model')).toEqual([
        rounded(row('gpt-4o', 'proxy', 4, [1700, 6, 1706], µ(770 + 1020 + 2520), 0)), // E4, E5, E6, E9
        analysisRow('gpt-4o', (c) => c.model === 'gpt-4o'), // A4, A5, A8
        rounded(row('gpt-4o-mini', 'proxy', 4, [300, 4, 304], µ(16.2 + 31.2), 2)), // E1, E2, E3, E10
        analysisRow('gpt-4o-mini', (c) => c.model === 'gpt-4o-mini'), // A1, A2, A3, A7
      ]);
    });

    it('groups by persona, with a null key for traffic without one', async () => {
      const p = [rounded(row(personaP, 'proxy', 6, [1000, 8, 1008], µ(16.2 + 31.2 + 770 + 1020), 1)), analysisRow(personaP, (c) => c.persona === personaP)];
      const q = [rounded(row(personaQ, 'proxy', 1, [1000, 2, 1002], µ(2520), 0)), analysisRow(personaQ, (c) => c.persona === personaQ)];
      expect(await usage('persona')).toEqual([...(personaP < personaQ ? [...p, ...q] : [...q, ...p]), row(null, 'proxy', 1, [0, 0, 0], 0, 1)]);
    });

    it('groups by UTC day, which is the default', async () => {
      const expected = [
        rounded(row('2026-03-09', 'proxy', 3, [300, 4, 304], µ(16.2 + 31.2), 1)), // E1, E2, E10
        analysisRow('2026-03-09', (c) => c.day === '2026-03-09'), // A7
        rounded(row('2026-03-10', 'proxy', 5, [1700, 6, 1706], µ(770 + 1020 + 2520), 1)), // E3, E4, E5, E6, E9
        analysisRow('2026-03-10', (c) => c.day === '2026-03-10'), // A1–A5, A8
      ];
      expect(await usage('day')).toEqual(expected);
      expect(await usage()).toEqual(expected);
    });

    it('counts part-days at both ends of a period from the rows and the whole days between from the daily usage, merged or not', async () => {
      // 03-09 is a whole day of the period; 03-08 12:00 to midnight and 03-10 until 12:00:00.5 are parts of days
      const proxied = async (groupBy: string) => {
        const res = await asUser(orgA)('GET', `/v1/analytics/usage?from=2026-03-08T12:00:00Z&to=2026-03-10T12:00:00.500Z&group_by=${groupBy}`);
        expect(res.status, res.text).toBe(200);
        return (rounded(res.body.data) as any[]).filter((r) => r.source === 'proxy');
      };
      const expected = [
        rounded(row('gpt-4o', 'proxy', 3, [1700, 6, 1706], µ(770 + 1020 + 2520), 0)), // E4, E5 (12:00:00), E9; not E6 (13:00)
        rounded(row('gpt-4o-mini', 'proxy', 5, [310, 6, 316], µ(16.2 + 31.2 + 2.7), 2)), // E7 (03-08 23:59:59.999), E1, E2, E10; E3
      ];
      expect(await proxied('model')).toEqual(expected);
      const answers = async () => Promise.all(['user', 'model', 'persona', 'day'].map(async (g) => [await proxied(g), await usage(g)]));
      const before = await answers();
      await app.app.get(UsageDailyRepository).mergeAll();
      const changes = await app.dataSource.query(`SELECT count(*)::int AS n FROM usage_daily_changes WHERE organization_id = $1`, [orgA.orgId]);
      expect(changes[0].n).toBe(0);
      expect(await answers()).toEqual(before);
    });

    it.runIf(process.env.DATABASE_URL)("reads on connections with PostgreSQL's JIT off (it compiled plans for longer than they ran)", async () => {
      const rows = await app.dataSource.query(`SHOW jit`);
      expect(rows[0].jit).toBe('off');
    });

    it('answers an empty period with an empty list', async () => {
      const res = await asUser(orgA)('GET', '/v1/analytics/usage?from=2020-01-01&to=2020-01-02&group_by=model');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ object: 'list', data: [], has_more: false, first_id: null, last_id: null });
    });

    describe('pages: ?limit=, ?after= and ?order=', () => {
      const get = async (q: string) => {
        const res = await asUser(orgA)('GET', `/v1/analytics/usage?${PERIOD}&${q}`);
        expect(res.status, res.text).toBe(200);
        return res.body as { data: any[]; has_more: boolean; first_id: string | null; last_id: string | null };
      };
      /** the keys of the whole report ranked by their cost, both sources together, highest first (ties by key) */
      const byCost = (rows: any[]) => {
        const totals = new Map<string | null, number>();
        for (const r of rows) totals.set(r.key, (totals.get(r.key) ?? 0) + r.cost);
        return [...totals].sort((a, b) => b[1] - a[1] || (a[0] === null ? 1 : b[0] === null ? -1 : a[0] < b[0] ? -1 : 1)).map(([k]) => k);
      };
      const keysOf = (rows: any[]) => [...new Set(rows.map((r) => r.key))];

      it('answers the keys of highest cost first, each with its proxy and analysis rows, and pages after the last', async () => {
        const all = await get('group_by=user');
        expect(all.has_more).toBe(false);
        const ranked = byCost(all.data);
        expect(ranked).toHaveLength(3);
        expect(ranked[0]).toBe(BOB); // E4 and E9 cost far more than anything else
        const first = await get('group_by=user&order=cost&limit=2');
        expect(keysOf(first.data)).toEqual(ranked.slice(0, 2));
        expect(first.data).toEqual(all.data.filter((r) => ranked.slice(0, 2).includes(r.key)).sort((a, b) => ranked.indexOf(a.key) - ranked.indexOf(b.key)));
        expect(first).toMatchObject({ has_more: true, first_id: ranked[0], last_id: ranked[1] });
        const next = await get(`group_by=user&order=cost&limit=2&after=${encodeURIComponent(first.last_id!)}`);
        expect(keysOf(next.data)).toEqual(ranked.slice(2));
        expect(next).toMatchObject({ has_more: false, first_id: ranked[2], last_id: ranked[2] });
        // without a limit: every row, in that order
        const ordered = await get('group_by=user&order=cost');
        expect(keysOf(ordered.data)).toEqual(ranked);
        expect(ordered.has_more).toBe(false);
      });

      it('pages in key order, a null key last', async () => {
        const all = (await get('group_by=persona')).data;
        const keys = keysOf(all);
        expect(keys[keys.length - 1]).toBeNull();
        const first = await get('group_by=persona&limit=2');
        expect(first.data).toEqual(all.filter((r) => r.key !== null));
        expect(first).toMatchObject({ has_more: true, first_id: keys[0], last_id: keys[1] });
        const last = await get(`group_by=persona&limit=2&after=${first.last_id}`);
        expect(last.data).toEqual(all.filter((r) => r.key === null));
        expect(last).toMatchObject({ has_more: false, first_id: null, last_id: null });
        // with after alone, a page of the list's default size
        expect((await get(`group_by=model&after=gpt-4o`)).data).toEqual((await get('group_by=model')).data.filter((r) => r.key === 'gpt-4o-mini'));
      });

      it('rejects a bad limit or order and a cursor that is not a key of the report with 400', async () => {
        for (const [q, param] of [
          ['limit=0', 'limit'],
          ['limit=101', 'limit'],
          ['limit=2.5', 'limit'],
          ['order=size', 'order'],
          ['after=nobody@example.com', 'after'],
          ['order=cost&after=nobody@example.com', 'after'],
        ]) {
          const res = await asUser(orgA)('GET', `/v1/analytics/usage?${PERIOD}&group_by=user&${q}`);
          expect(res.status, q).toBe(400);
          expect(res.body.error, q).toMatchObject({ type: 'invalid_request_error', param });
        }
      });
    });

    it('rejects an unknown group_by and a bad period with 400', async () => {
      const bad = await asUser(orgA)('GET', `/v1/analytics/usage?${PERIOD}&group_by=week`);
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'group_by' });
      const period = await asUser(orgA)('GET', '/v1/analytics/usage?to=soon');
      expect(period.status).toBe(400);
      expect(period.body.error.param).toBe('to');
    });
  });

  it('needs a token like every /v1 route', async () => {
    const res = await api(app, undefined, 'alice@example.com')('GET', `/v1/analytics/usage`);
    expect(res.status).toBe(401);
  });
});
