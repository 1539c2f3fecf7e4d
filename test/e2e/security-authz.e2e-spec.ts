import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';

/**
 * Object-level authorization, property-based: two organizations (with the SAME external user ids, persona names and
 * session ids, so nothing but the organization tells their data apart) run random sequences of actions over every route
 * that takes an id. A simple model says what each organization owns; the other organization's ids must behave exactly
 * like ids that do not exist, and lists and analytics only ever count the caller's own objects.
 */

type Org = 'A' | 'B';
const USERS = ['alice@example.com', 'bob@example.com'];
const NAMES = ['support', 'sales', 'triage'];
const SESSIONS = ['shared-session-1', 'shared-session-2'];
const INPUTS = ['my invoice is wrong', 'the app crashes on start'];
const FORBIDDEN = ['id', 'org_id', 'organization_id', 'user_id', 'version', 'created_at'] as const;

interface PersonaM { org: Org; id: string; name: string; content: string; version: number; deleted: boolean; createdAt: string }
interface ExchangeM { org: Org; id: string; responseId: string; sessionId: string; user: string; personaId: string | null; conversation: string }
interface ConfigM { org: Org; id: string; deleted: boolean; instructions: string | null; createdAt: string }
interface ResultM { org: Org; id: string; requestId: string; cached: boolean; key: string }

interface World {
  orgs: Record<Org, { orgId: string; token: string }>;
  personas: PersonaM[];
  exchanges: ExchangeM[];
  configs: ConfigM[];
  results: ResultM[];
  /** `${exchangeId}|${user}` → rating */
  ratings: Map<string, number>;
}

// ---- actions ---------------------------------------------------------------------------------------

const org = fc.constantFrom<Org>('A', 'B');
const user = fc.nat(USERS.length - 1);
const target = fc.nat(6); // index into the pool of all objects of a kind (both organizations); out of range → unknown id
const forbidden = fc.option(fc.constantFrom(...FORBIDDEN), { freq: 3 });

const action = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant('persona.create' as const), org, user, name: fc.nat(NAMES.length - 1), extra: forbidden }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('persona.patch' as const), org, user, target, rename: fc.option(fc.nat(NAMES.length - 1)), extra: forbidden }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('persona.delete' as const), org, user, target }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('persona.read' as const), org, user, target, what: fc.constantFrom('get', 'versions', 'analytics') }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('proxy' as const),
      org,
      user,
      endpoint: fc.constantFrom('responses', 'chat'),
      stream: fc.boolean(),
      persona: fc.option(target, { freq: 2 }),
      session: fc.option(fc.nat(SESSIONS.length - 1)),
      input: fc.nat(INPUTS.length - 1),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('exchange.read' as const), org, user, target, what: fc.constantFrom('request', 'response', 'session') }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('rate' as const), org, user, target, byResponse: fc.boolean(), rating: fc.integer({ min: 1, max: 5 }), extra: forbidden }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('rating.get' as const), org, user, target, byResponse: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('config.create' as const), org, user, extra: forbidden }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('config.patch' as const), org, user, target, extra: forbidden }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('config.delete' as const), org, user, target }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('config.get' as const), org, user, target }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('analysis.run' as const), org, user, target, config: fc.option(target), byResponse: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('results.list' as const), org, user, target }) },
);
type Action = typeof action extends fc.Arbitrary<infer T> ? T : never;

// ---- helpers ---------------------------------------------------------------------------------------

const unknownRequestId = () => `req_${randomBytes(18).toString('base64url')}`;
const unknownResponseId = () => `resp_${randomBytes(24).toString('hex')}`;

function forbiddenValue(field: (typeof FORBIDDEN)[number]): unknown {
  if (field === 'version') return 99;
  if (field === 'created_at') return '2001-01-01T00:00:00.000Z';
  return randomUUID();
}

describe('object-level authorization (property-based, two organizations)', () => {
  let fake: FakeUpstream;
  let app: TestApp;

  beforeAll(async () => {
    fake = await startFakeUpstream({ maxRecorded: 50 });
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  const call = (w: World, o: Org, u: number) => api(app, w.orgs[o].token, USERS[u]);

  /** The answer for another organization's id must be the answer for an id that does not exist (the id itself aside). */
  async function expectHidden(res: { status: number; body: any }, id: string, unknown: () => Promise<{ status: number; body: any }>, unknownId: string) {
    const ref = await unknown();
    expect(ref.status).toBe(404);
    expect(res.status).toBe(404);
    const norm = (body: any, x: string) => JSON.parse(JSON.stringify(body).split(x).join('<id>'));
    expect(norm(res.body, id)).toEqual(norm(ref.body, unknownId));
    expect(JSON.stringify(res.body)).not.toMatch(/another organization|forbidden|not allowed|belongs/i);
  }

  /** A body field the client may not set: refused with 400, or ignored (the caller checks the stored object). */
  function checkForbidden(res: { status: number; body: any }, field: string | null): boolean {
    if (field === null) return false;
    if (res.status === 400) {
      expect(res.body.error.type).toBe('invalid_request_error');
      return true;
    }
    return false;
  }

  async function step(w: World, a: Action): Promise<void> {
    const c = call(w, a.org, a.user);
    switch (a.t) {
      case 'persona.create': {
        const name = NAMES[a.name];
        const content = `persona ${randomUUID()}`;
        const body: Record<string, unknown> = { name, content };
        if (a.extra) body[a.extra] = forbiddenValue(a.extra);
        const res = await c('POST', '/v1/personas', body);
        if (checkForbidden(res, a.extra)) return;
        // a name only collides with a live persona of the SAME organization
        const taken = w.personas.some((p) => p.org === a.org && !p.deleted && p.name === name);
        if (taken) {
          expect(res.status, JSON.stringify(res.body)).toBe(409);
          return;
        }
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        expect(res.body).toMatchObject({ name, content, version: 1 });
        if (a.extra) {
          expect(res.body.id).not.toBe(body[a.extra]);
          expect(res.body.created_at).not.toBe('2001-01-01T00:00:00.000Z');
        }
        w.personas.push({ org: a.org, id: res.body.id, name, content, version: 1, deleted: false, createdAt: res.body.created_at });
        return;
      }
      case 'persona.patch': {
        const p = w.personas[a.target];
        const id = p?.id ?? randomUUID();
        const content = `changed ${randomUUID()}`;
        const body: Record<string, unknown> = { content };
        const rename = a.rename === null ? undefined : NAMES[a.rename];
        if (rename !== undefined) body.name = rename;
        if (a.extra) body[a.extra] = forbiddenValue(a.extra);
        const res = await c('PATCH', `/v1/personas/${id}`, body);
        if (!p || p.org !== a.org || p.deleted) {
          if (a.extra && res.status === 400) return; // validation may come first; nothing changed either way
          const u = randomUUID();
          return expectHidden(res, id, () => c('PATCH', `/v1/personas/${u}`, body), u);
        }
        if (checkForbidden(res, a.extra)) return;
        if (rename !== undefined && rename !== p.name && w.personas.some((q) => q.org === a.org && !q.deleted && q.name === rename)) {
          expect(res.status).toBe(409);
          return;
        }
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        p.version += 1;
        p.content = content;
        if (rename !== undefined) p.name = rename;
        expect(res.body).toMatchObject({ id: p.id, name: p.name, content, version: p.version, created_at: p.createdAt });
        return;
      }
      case 'persona.delete': {
        const p = w.personas[a.target];
        const id = p?.id ?? randomUUID();
        const res = await c('DELETE', `/v1/personas/${id}`);
        if (!p || p.org !== a.org || p.deleted) {
          const u = randomUUID();
          return expectHidden(res, id, () => c('DELETE', `/v1/personas/${u}`), u);
        }
        expect(res.status).toBe(204);
        p.deleted = true;
        return;
      }
      case 'persona.read': {
        const p = w.personas[a.target];
        const id = p?.id ?? randomUUID();
        const path = (x: string) => (a.what === 'get' ? `/v1/personas/${x}` : a.what === 'versions' ? `/v1/personas/${x}/versions` : `/v1/analytics/personas/${x}`);
        const res = await c('GET', path(id));
        // analytics still answers for the organization's own deleted personas
        const visible = p && p.org === a.org && (!p.deleted || a.what === 'analytics');
        if (!visible) {
          const u = randomUUID();
          return expectHidden(res, id, () => c('GET', path(u)), u);
        }
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        if (a.what === 'get') expect(res.body).toMatchObject({ id, name: p.name, content: p.content, version: p.version });
        if (a.what === 'versions') expect(res.body.data.map((v: any) => v.version).sort()).toEqual(Array.from({ length: p.version }, (_, i) => i + 1));
        if (a.what === 'analytics') checkPersonaAnalytics(w, p, res.body);
        return;
      }
      case 'proxy': {
        const p = a.persona === null ? undefined : (w.personas[a.persona] ?? null);
        const personaId = p === undefined ? undefined : (p?.id ?? randomUUID());
        const input = INPUTS[a.input];
        const body: Record<string, unknown> =
          a.endpoint === 'responses' ? { model: 'gpt-4o-mini', input, stream: a.stream } : { model: 'gpt-4o-mini', messages: [{ role: 'user', content: input }], stream: a.stream };
        if (personaId) body.persona_id = personaId;
        const headers: Record<string, string> = a.session === null ? {} : { 'x-session-id': SESSIONS[a.session] };
        const path = a.endpoint === 'responses' ? '/v1/responses' : '/v1/chat/completions';
        const before = fake.requests.length;
        const res = await c('POST', path, body, headers);
        if (personaId && (!p || p.org !== a.org || p.deleted)) {
          // another organization's persona is as unknown as a made-up one, and nothing is sent upstream
          expect(fake.requests.length).toBe(before);
          const u = randomUUID();
          return expectHidden(res, personaId, () => c('POST', path, { ...body, persona_id: u }, headers), u);
        }
        expect(res.status, res.text.slice(0, 300)).toBe(200);
        const requestId = res.headers.get('x-request-id')!;
        const sessionId = res.headers.get('x-session-id')!;
        if (a.session !== null) expect(sessionId).toBe(SESSIONS[a.session]);
        const rec = await c('GET', `/v1/requests/${requestId}`);
        expect(rec.status).toBe(200);
        expect(rec.body).toMatchObject({ id: requestId, user_id: USERS[a.user], session_id: sessionId, persona_id: personaId ?? null });
        w.exchanges.push({
          org: a.org,
          id: requestId,
          responseId: rec.body.response_id,
          sessionId,
          user: USERS[a.user],
          personaId: personaId ?? null,
          conversation: JSON.stringify([p?.content ?? null, input]),
        });
        return;
      }
      case 'exchange.read': {
        const e = w.exchanges[a.target];
        if (a.what === 'session') {
          // session ids are shared by both organizations on purpose: each sees only its own exchanges
          const sid = e?.sessionId ?? `unknown-${randomUUID()}`;
          const res = await c('GET', `/v1/sessions/${sid}`);
          const mine = w.exchanges.filter((x) => x.org === a.org && x.sessionId === sid).map((x) => x.id);
          if (!mine.length) {
            const u = `unknown-${randomUUID()}`;
            return expectHidden(res, sid, () => c('GET', `/v1/sessions/${u}`), u);
          }
          expect(res.status).toBe(200);
          expect(res.body.data.map((x: any) => x.id)).toEqual(mine);
          return;
        }
        const id = a.what === 'request' ? (e?.id ?? unknownRequestId()) : (e?.responseId ?? unknownResponseId());
        const path = (x: string) => (a.what === 'request' ? `/v1/requests/${x}` : `/v1/responses/${x}`);
        const res = await c('GET', path(id));
        if (!e || e.org !== a.org) {
          const u = a.what === 'request' ? unknownRequestId() : unknownResponseId();
          return expectHidden(res, id, () => c('GET', path(u)), u);
        }
        expect(res.status).toBe(200);
        expect(res.body.id).toBe(id);
        return;
      }
      case 'rate': {
        const e = w.exchanges[a.target];
        const id = a.byResponse ? (e?.responseId ?? unknownResponseId()) : (e?.id ?? unknownRequestId());
        const path = (x: string) => (a.byResponse ? `/v1/responses/${x}/rating` : `/v1/requests/${x}/rating`);
        const body: Record<string, unknown> = { rating: a.rating };
        if (a.extra) body[a.extra] = forbiddenValue(a.extra);
        const res = await c('POST', path(id), body);
        if (!e || e.org !== a.org) {
          if (a.extra && res.status === 400) return;
          const u = a.byResponse ? unknownResponseId() : unknownRequestId();
          return expectHidden(res, id, () => c('POST', path(u), body), u);
        }
        if (checkForbidden(res, a.extra)) return;
        const k = `${e.id}|${USERS[a.user]}`;
        expect(res.status, JSON.stringify(res.body)).toBe(w.ratings.has(k) ? 200 : 201);
        expect(res.body).toMatchObject({ request_id: e.id, user_id: USERS[a.user], rating: a.rating });
        if (a.extra === 'created_at') expect(res.body.rated_at).not.toBe('2001-01-01T00:00:00.000Z');
        w.ratings.set(k, a.rating);
        return;
      }
      case 'rating.get': {
        const e = w.exchanges[a.target];
        const id = a.byResponse ? (e?.responseId ?? unknownResponseId()) : (e?.id ?? unknownRequestId());
        const path = (x: string) => (a.byResponse ? `/v1/responses/${x}/rating` : `/v1/requests/${x}/rating`);
        const res = await c('GET', path(id));
        if (!e || e.org !== a.org) {
          const u = a.byResponse ? unknownResponseId() : unknownRequestId();
          return expectHidden(res, id, () => c('GET', path(u)), u);
        }
        const mine = w.ratings.get(`${e.id}|${USERS[a.user]}`);
        if (mine === undefined) expect(res.status).toBe(404);
        else expect(res.body).toMatchObject({ request_id: e.id, rating: mine, user_id: USERS[a.user] });
        return;
      }
      case 'config.create': {
        const body: Record<string, unknown> = {
          name: `config ${randomUUID()}`,
          analysis_type: 'intent',
          categories: [{ name: 'billing' }, { name: 'bug' }],
          instructions: 'same for everyone',
        };
        if (a.extra) body[a.extra] = forbiddenValue(a.extra);
        const res = await c('POST', '/v1/analysis/configs', body);
        if (checkForbidden(res, a.extra)) return;
        expect(res.status, JSON.stringify(res.body)).toBe(201);
        if (a.extra) {
          expect(res.body.id).not.toBe(body[a.extra]);
          expect(res.body.created_at).not.toBe('2001-01-01T00:00:00.000Z');
        }
        w.configs.push({ org: a.org, id: res.body.id, deleted: false, instructions: 'same for everyone', createdAt: res.body.created_at });
        return;
      }
      case 'config.patch':
      case 'config.delete':
      case 'config.get': {
        const cfg = w.configs[a.target];
        const id = cfg?.id ?? randomUUID();
        const instructions = `patched ${randomUUID()}`;
        const body: Record<string, unknown> | undefined = a.t === 'config.patch' ? { instructions } : undefined;
        if (body && a.t === 'config.patch' && a.extra) body[a.extra] = forbiddenValue(a.extra);
        const method = a.t === 'config.patch' ? 'PATCH' : a.t === 'config.delete' ? 'DELETE' : 'GET';
        const res = await c(method, `/v1/analysis/configs/${id}`, body);
        if (!cfg || cfg.org !== a.org || cfg.deleted) {
          if (a.t === 'config.patch' && a.extra && res.status === 400) return;
          const u = randomUUID();
          return expectHidden(res, id, () => c(method, `/v1/analysis/configs/${u}`, body), u);
        }
        if (a.t === 'config.patch' && checkForbidden(res, a.extra)) return;
        if (a.t === 'config.delete') {
          expect(res.status).toBe(204);
          cfg.deleted = true;
          return;
        }
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        if (a.t === 'config.patch') cfg.instructions = instructions;
        expect(res.body).toMatchObject({ id, instructions: cfg.instructions, created_at: cfg.createdAt });
        return;
      }
      case 'analysis.run': {
        const e = w.exchanges[a.target];
        const cfg = a.config === null ? undefined : (w.configs[a.config] ?? null);
        const exId = a.byResponse ? (e?.responseId ?? unknownResponseId()) : (e?.id ?? unknownRequestId());
        const cfgId = cfg === undefined ? undefined : (cfg?.id ?? randomUUID());
        const bodyFor = (x: string, y?: string) => ({
          ...(a.byResponse ? { response_id: x } : { request_id: x }),
          ...(y === undefined ? { config: { analysis_type: 'sentiment' } } : { config_id: y }),
        });
        const res = await c('POST', '/v1/analysis', bodyFor(exId, cfgId));
        const exchangeHidden = !e || e.org !== a.org;
        const configHidden = cfg !== undefined && (!cfg || cfg.org !== a.org || cfg.deleted);
        if (exchangeHidden) {
          const u = a.byResponse ? unknownResponseId() : unknownRequestId();
          return expectHidden(res, exId, () => c('POST', '/v1/analysis', bodyFor(u, cfgId)), u);
        }
        if (configHidden) {
          const u = randomUUID();
          return expectHidden(res, cfgId!, () => c('POST', '/v1/analysis', bodyFor(exId, u)), u);
        }
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body.request_id).toBe(e.id);
        // the cache is per organization: a cached answer needs an earlier result of this organization for the same analysis
        const key = JSON.stringify([cfg ? cfg.instructions : 'inline-sentiment', e.conversation]);
        if (res.body.cached) {
          expect(w.results.some((r) => r.org === a.org && r.key === key), 'a cached analysis without an earlier one in this organization').toBe(true);
        }
        w.results.push({ org: a.org, id: res.body.id, requestId: e.id, cached: res.body.cached, key });
        return;
      }
      case 'results.list': {
        const e = w.exchanges[a.target];
        const rid = e?.id ?? unknownRequestId();
        const res = await c('GET', `/v1/analysis/results?request_id=${rid}&limit=100`);
        if (!e || e.org !== a.org) {
          // an empty list or the 404 of an unknown id; never the other organization's results
          if (res.status === 404) {
            const u = unknownRequestId();
            return expectHidden(res, rid, () => c('GET', `/v1/analysis/results?request_id=${u}&limit=100`), u);
          }
          expect(res.status).toBe(200);
          expect(res.body.data).toEqual([]);
          return;
        }
        expect(res.status).toBe(200);
        const ids: string[] = res.body.data.map((r: any) => r.id);
        for (const r of res.body.data) expect(r.request_id).toBe(rid);
        const known = new Set(w.results.filter((r) => r.org === a.org).map((r) => r.id));
        for (const id of ids) expect(known.has(id)).toBe(true);
        return;
      }
    }
  }

  function checkPersonaAnalytics(w: World, p: PersonaM, body: any): void {
    const ex = w.exchanges.filter((e) => e.org === p.org && e.personaId === p.id);
    expect(body.requests).toBe(ex.length);
    expect(body.users).toBe(new Set(ex.map((e) => e.user)).size);
    expect(body.sessions).toBe(new Set(ex.map((e) => e.sessionId)).size);
    const ratings = ex.flatMap((e) => USERS.map((u) => w.ratings.get(`${e.id}|${u}`)).filter((r) => r !== undefined));
    expect(body.ratings.count).toBe(ratings.length);
  }

  /** After every sequence: every list and count of each organization holds exactly its own objects. */
  async function checkLists(w: World): Promise<void> {
    for (const o of ['A', 'B'] as Org[]) {
      const c = call(w, o, 0);
      const mineEx = w.exchanges.filter((e) => e.org === o);
      const requests = await c('GET', '/v1/requests?limit=100');
      expect(requests.status).toBe(200);
      expect(new Set(requests.body.data.map((r: any) => r.id))).toEqual(new Set(mineEx.map((e) => e.id)));
      for (const u of USERS) {
        const byUser = await c('GET', `/v1/requests?limit=100&user_id=${encodeURIComponent(u)}`);
        expect(new Set(byUser.body.data.map((r: any) => r.id))).toEqual(new Set(mineEx.filter((e) => e.user === u).map((e) => e.id)));
      }
      for (const s of SESSIONS) {
        const bySession = await c('GET', `/v1/requests?limit=100&session_id=${s}`);
        expect(new Set(bySession.body.data.map((r: any) => r.id))).toEqual(new Set(mineEx.filter((e) => e.sessionId === s).map((e) => e.id)));
      }
      for (const p of w.personas) {
        const byPersona = await c('GET', `/v1/requests?limit=100&persona_id=${p.id}`);
        const expected = mineEx.filter((e) => e.personaId === p.id).map((e) => e.id);
        if (byPersona.status === 200) expect(new Set(byPersona.body.data.map((r: any) => r.id))).toEqual(new Set(expected));
        else expect(p.org === o ? 'own persona filter refused' : byPersona.status).toBe(404);
      }

      const personas = await c('GET', '/v1/personas?limit=100');
      expect(new Set(personas.body.data.map((p: any) => p.id))).toEqual(new Set(w.personas.filter((p) => p.org === o && !p.deleted).map((p) => p.id)));

      const configs = await c('GET', '/v1/analysis/configs?limit=100');
      expect(new Set(configs.body.data.map((x: any) => x.id))).toEqual(new Set(w.configs.filter((x) => x.org === o && !x.deleted).map((x) => x.id)));

      const results = await c('GET', '/v1/analysis/results?limit=100');
      const mineResults = w.results.filter((r) => r.org === o);
      const listed = new Set<string>(results.body.data.map((r: any) => r.id));
      for (const id of listed) expect(mineResults.some((r) => r.id === id)).toBe(true);
      for (const r of mineResults.filter((x) => !x.cached)) expect(listed.has(r.id)).toBe(true);

      const usage = await c('GET', '/v1/analytics/usage?group_by=user');
      expect(usage.status).toBe(200);
      const proxyRows = usage.body.data.filter((r: any) => r.source === 'proxy');
      expect(proxyRows.reduce((n: number, r: any) => n + r.requests, 0)).toBe(mineEx.length);
      for (const r of proxyRows) expect(r.requests).toBe(mineEx.filter((e) => e.user === r.key).length);
      const analysisRows = usage.body.data.filter((r: any) => r.source === 'analysis');
      const analysed = analysisRows.reduce((n: number, r: any) => n + r.requests, 0);
      expect(analysed).toBeLessThanOrEqual(mineResults.length);
      expect(analysed).toBeGreaterThanOrEqual(mineResults.filter((r) => !r.cached).length);

      for (const p of w.personas.filter((x) => x.org === o)) {
        const report = await c('GET', `/v1/analytics/personas/${p.id}`);
        expect(report.status).toBe(200);
        checkPersonaAnalytics(w, p, report.body);
      }
    }
  }

  it('an organization never reads, changes or counts another organization’s objects; their ids answer like unknown ids', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 6, maxLength: 16 }), async (actions) => {
        const [a, b] = await Promise.all([createOrg(app), createOrg(app)]);
        await Promise.all([createKey(app, a.orgId, 'sk-authz-a-0001', { baseUrl: fake.url }), createKey(app, b.orgId, 'sk-authz-b-0002', { baseUrl: fake.url })]);
        const w: World = { orgs: { A: a, B: b }, personas: [], exchanges: [], configs: [], results: [], ratings: new Map() };
        // both organizations always own something, so cross-organization targets exist in every sequence
        const seed: Action[] = (['A', 'B'] as Org[]).flatMap((o) => [
          { t: 'persona.create', org: o, user: 0, name: 0, extra: null },
          { t: 'proxy', org: o, user: 0, endpoint: 'responses', stream: false, persona: 0, session: 0, input: 0 },
          { t: 'config.create', org: o, user: 0, extra: null },
        ]) as Action[];
        // fix the seeded proxy calls to use their own organization's persona (indices 0 for A, 1 for B)
        (seed[4] as any).persona = 1;
        for (const act of [...seed, ...actions]) await step(w, act);
        await checkLists(w);
      }),
      { numRuns: 35, endOnFailure: true },
    );
  }, 120_000);

  it('with every object created, a full sweep of the other organization’s ids over every route answers like unknown ids', async () => {
    const [a, b] = await Promise.all([createOrg(app), createOrg(app)]);
    await Promise.all([createKey(app, a.orgId, 'sk-authz-a-0003', { baseUrl: fake.url }), createKey(app, b.orgId, 'sk-authz-b-0004', { baseUrl: fake.url })]);
    const w: World = { orgs: { A: a, B: b }, personas: [], exchanges: [], configs: [], results: [], ratings: new Map() };
    const setup: Action[] = [
      { t: 'persona.create', org: 'B', user: 0, name: 0, extra: null },
      { t: 'proxy', org: 'B', user: 0, endpoint: 'responses', stream: true, persona: 0, session: 0, input: 0 },
      { t: 'config.create', org: 'B', user: 0, extra: null },
      { t: 'rate', org: 'B', user: 0, target: 0, byResponse: false, rating: 4, extra: null },
      { t: 'analysis.run', org: 'B', user: 0, target: 0, config: 0, byResponse: false },
      // the same conversation analysed the same way in both organizations: the cache is never shared
      { t: 'proxy', org: 'B', user: 0, endpoint: 'responses', stream: false, persona: null, session: null, input: 1 },
      { t: 'analysis.run', org: 'B', user: 0, target: 1, config: null, byResponse: false },
      { t: 'proxy', org: 'A', user: 0, endpoint: 'responses', stream: false, persona: null, session: null, input: 1 },
      { t: 'analysis.run', org: 'A', user: 0, target: 2, config: null, byResponse: false },
    ] as Action[];
    for (const s of setup) await step(w, s);
    const sweep: Action[] = [
      { t: 'persona.read', org: 'A', user: 0, target: 0, what: 'get' },
      { t: 'persona.read', org: 'A', user: 0, target: 0, what: 'versions' },
      { t: 'persona.read', org: 'A', user: 0, target: 0, what: 'analytics' },
      { t: 'persona.patch', org: 'A', user: 0, target: 0, rename: null, extra: null },
      { t: 'persona.delete', org: 'A', user: 0, target: 0 },
      { t: 'proxy', org: 'A', user: 0, endpoint: 'chat', stream: false, persona: 0, session: null, input: 0 },
      { t: 'exchange.read', org: 'A', user: 0, target: 0, what: 'request' },
      { t: 'exchange.read', org: 'A', user: 0, target: 0, what: 'response' },
      { t: 'exchange.read', org: 'A', user: 0, target: 0, what: 'session' },
      { t: 'rate', org: 'A', user: 0, target: 0, byResponse: false, rating: 1, extra: null },
      { t: 'rate', org: 'A', user: 0, target: 0, byResponse: true, rating: 1, extra: null },
      { t: 'rating.get', org: 'A', user: 0, target: 0, byResponse: false },
      { t: 'rating.get', org: 'A', user: 0, target: 0, byResponse: true },
      { t: 'config.get', org: 'A', user: 0, target: 0 },
      { t: 'config.patch', org: 'A', user: 0, target: 0, extra: null },
      { t: 'config.delete', org: 'A', user: 0, target: 0 },
      { t: 'analysis.run', org: 'A', user: 0, target: 0, config: null, byResponse: false },
      { t: 'analysis.run', org: 'A', user: 0, target: 0, config: null, byResponse: true },
      { t: 'results.list', org: 'A', user: 0, target: 0 },
    ] as Action[];
    for (const s of sweep) await step(w, s);
    // B's objects are untouched by all of that
    for (const s of [
      { t: 'persona.read', org: 'B', user: 0, target: 0, what: 'get' },
      { t: 'config.get', org: 'B', user: 0, target: 0 },
      { t: 'rating.get', org: 'B', user: 0, target: 0, byResponse: false },
    ] as Action[])
      await step(w, s);
    await checkLists(w);
  });
});
