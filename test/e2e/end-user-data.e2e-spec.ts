import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { LimitCountersService } from '../../src/limits/limit-counters.service';
import { LimitsAdminService } from '../../src/limits/limits-admin.service';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createToken, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { pollRequest, proxyOrg, waitFor } from '../support/proxy-test-helpers';
import { cliEnvFor, runCli } from '../support/run-cli';

const DATABASE_URL = process.env.DATABASE_URL;
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const REDIS_PREFIX = `test-${randomUUID()}:`;

/** Every row of every table as text: pg_dump --data-only with DATABASE_URL, else each table's rows as JSON. */
async function dataDump(app: TestApp): Promise<string> {
  if (DATABASE_URL) {
    const dump = spawnSync('pg_dump', ['--data-only', DATABASE_URL], { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024 });
    expect(dump.status, dump.stderr).toBe(0);
    expect(dump.stdout).toContain('COPY public.exchanges');
    return dump.stdout;
  }
  const tables: { table_name: string }[] = await app.dataSource.query(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
  );
  let out = '';
  for (const { table_name } of tables) {
    const rows: { t: string }[] = await app.dataSource.query(`SELECT row_to_json(x)::text AS t FROM "${table_name}" x`);
    out += rows.map((r) => r.t).join('\n');
  }
  return out;
}

const occurrences = (haystack: string, needle: string) => haystack.split(needle).length - 1;

describe("end users' data: export and erasure", () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let redis: Redis;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ REDIS_URL, REDIS_KEY_PREFIX: REDIS_PREFIX });
    redis = new Redis(REDIS_URL, { lazyConnect: true });
    await redis.connect();
  });
  afterAll(async () => {
    redis?.disconnect();
    await app?.close();
    await fake?.close();
  });

  /**
   * An end user with history: their own upstream key and limits, a token pinned to them, a call through the official
   * SDK (and a streamed one) carrying a unique phrase, a rating with a comment, an analysis of their exchange.
   */
  async function userWithHistory(orgId: string, tag: string) {
    const externalId = `${tag}-${randomUUID()}@example.test`;
    const phrase = `${tag}-phrase-${randomBytes(12).toString('hex')}`;
    const user = await createUser(app, orgId, externalId);
    const key = (await createKey(app, orgId, `sk-${tag}-${randomBytes(8).toString('hex')}`, { userId: externalId, baseUrl: fake.url, label: `key of ${externalId}` })) as { id: string };
    await app.app.get(LimitsAdminService).setUserLimits(user.id, { rpm: 1000, tpm: 10_000_000 }, cliActor());
    const pinned = await createToken(app, orgId, { userId: externalId });
    const client = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: pinned.token, defaultHeaders: { 'X-User-ID': externalId }, maxRetries: 0 });
    const call = api(app, pinned.token, externalId);

    const { data: answer, response } = await client.responses.create({ model: 'gpt-4o-mini', input: `Please remember ${phrase}` }).withResponse();
    const requestId = response.headers.get('x-request-id')!;
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: `Again: ${phrase}` }] });
    for await (const _chunk of stream) void _chunk;
    await pollRequest(call, requestId, (row) => row.status === 'completed');

    const file = await client.files.create({ file: await toFile(Buffer.from(`notes: ${phrase}`), `${tag}-notes.txt`), purpose: 'user_data' });

    const rating = await call('POST', `/v1/requests/${requestId}/rating`, { rating: 2, comment: `About ${phrase}` });
    expect(rating.status).toBe(201);
    const analysis = await call('POST', '/v1/analysis', { request_id: requestId, config: { analysis_type: 'sentiment' } });
    expect(analysis.status, analysis.text).toBe(200);
    return { externalId, phrase, userId: user.id, keyId: key.id, fileId: file.id, jti: pinned.jti, token: pinned.token, requestId, responseId: answer.id, call };
  }

  async function waitForExchanges(orgId: string, externalId: string, n: number) {
    for (let i = 0; i < 100; i++) {
      const rows: { n: number }[] = await app.dataSource.query(
        `SELECT count(*)::int AS n FROM exchanges WHERE organization_id = $1 AND external_user_id = $2 AND status = 'completed'`,
        [orgId, externalId],
      );
      if (rows[0].n >= n) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the exchanges of ${externalId} were not recorded`);
  }

  it('exports every exchange, rating and analysis as JSON lines, erases all of it with a receipt, and leaves others alone', async () => {
    // the counters are in Redis (the erasure must reach them there too)
    expect(app.app.get(LimitCountersService).current).toBe('redis');
    const org = await createOrg(app);
    const admin = await createToken(app, org.orgId, { scope: 'admin' });
    const asAdmin = api(app, admin.token, 'operator');
    const a = await userWithHistory(org.orgId, 'erase-me');
    const b = await userWithHistory(org.orgId, 'keep-me');
    await waitForExchanges(org.orgId, a.externalId, 3);
    await waitForExchanges(org.orgId, b.externalId, 3);
    expect((await redis.keys(`${REDIS_PREFIX}limit:u:${a.userId}:*`)).length).toBeGreaterThan(0);
    // an analysis the user ran of another user's exchange: it stays, no longer linked to them
    const ofOther = await a.call('POST', '/v1/analysis', { request_id: b.requestId, config: { analysis_type: 'urgency' } });
    expect(ofOther.status, ofOther.text).toBe(200);
    // what a running analysis, older versions of the change feed and of the audit log may hold
    const [{ cache_key: cacheKey }] = await app.dataSource.query('SELECT cache_key FROM analysis_results WHERE exchange_id = $1', [a.requestId]);
    await app.dataSource.query(`INSERT INTO analysis_claims (organization_id, cache_key, holder, expires_at) VALUES ($1, $2, $3, now() + interval '1 minute')`, [
      org.orgId,
      cacheKey,
      randomUUID(),
    ]);
    await app.dataSource.query(`INSERT INTO cache_invalidations (kind, ref) VALUES ('user', $1)`, [`${org.orgId}\n${a.externalId}`]);
    await app.dataSource.query(`INSERT INTO audit_events (organization_id, actor, action, target_id, details) VALUES ($1, 'cli:someone', 'user.note', $2, $3)`, [
      org.orgId,
      a.externalId,
      JSON.stringify({ users: [a.externalId, 'someone-else'], nested: { who: a.externalId } }),
    ]);
    // daily rollups of deleted exchanges: the user's, the organization's without a user, another user's
    await app.dataSource.query(
      `INSERT INTO usage_rollups (day, organization_id, source, user_id, model, requests, cost)
       VALUES ('2026-01-01', $1, 'proxy', $2, 'gpt-4o-mini', 3, 0.5), ('2026-01-01', $1, 'proxy', NULL, 'gpt-4o-mini', 2, 0.25),
              ('2026-01-02', $1, 'proxy', $2, 'gpt-4o-mini', 1, 0.125), ('2026-01-01', $1, 'proxy', $3, 'gpt-4o-mini', 7, 1)`,
      [org.orgId, a.userId, b.userId],
    );
    // a counter left in PostgreSQL while Redis was away
    await app.dataSource.query(`INSERT INTO limit_counters (key, value, expires_at) VALUES ($1, 1, now() + interval '1 hour')`, [
      `${REDIS_PREFIX}limit:u:${a.userId}:rpm:0`,
    ]);

    // export: JSON lines, user first, end last
    const res = await fetch(`${app.url}/v1/users/${encodeURIComponent(a.externalId)}/export`, {
      headers: { authorization: `Bearer ${admin.token}`, 'x-user-id': 'operator' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const text = await res.text();
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l));
    const ofType = (t: string) => lines.filter((l) => l.type === t);
    expect(lines[0]).toMatchObject({ type: 'user', id: a.userId, organization_id: org.orgId, external_id: a.externalId });
    expect(lines.at(-1)).toEqual({ type: 'end', counts: { exchanges: 3, ratings: 1, analyses: 1, objects: 1, keys: 1, tokens: 1 } });
    const exchanges = ofType('exchange');
    expect(exchanges.map((e) => e.endpoint).sort()).toEqual(['chat.completions', 'files', 'responses']);
    expect(exchanges.every((e) => e.user_id === a.externalId)).toBe(true);
    expect(exchanges.filter((e) => JSON.stringify(e.request_body).includes(a.phrase))).toHaveLength(2);
    expect(ofType('object')).toEqual([expect.objectContaining({ id: a.fileId, route: '/v1/files' })]);
    expect(exchanges.find((e) => e.id === a.requestId)).toMatchObject({ response_id: a.responseId, status: 'completed' });
    expect(ofType('rating')).toEqual([expect.objectContaining({ request_id: a.requestId, rating: 2, comment: `About ${a.phrase}` })]);
    expect(ofType('analysis')).toEqual([expect.objectContaining({ request_id: a.requestId, analysis_type: 'sentiment', status: 'completed' })]);
    expect(ofType('key')).toEqual([expect.objectContaining({ id: a.keyId, last4: expect.any(String) })]);
    expect(ofType('token')).toEqual([expect.objectContaining({ jti: a.jti })]);
    expect(text).not.toContain(b.phrase);
    expect(text).not.toContain('sk-erase-me');

    // unknown users, and tokens without admin
    const unknown = await asAdmin('GET', `/v1/users/${encodeURIComponent(`nobody-${randomUUID()}`)}/export`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
    for (const scope of [undefined, 'proxy read manage']) {
      const weak = await createToken(app, org.orgId, { scope });
      const call = api(app, weak.token, 'operator');
      for (const [method, path] of [
        ['GET', `/v1/users/${encodeURIComponent(a.externalId)}/export`],
        ['DELETE', `/v1/users/${encodeURIComponent(a.externalId)}`],
      ]) {
        const refused = await call(method, path);
        expect(refused.status, `${scope}: ${method}`).toBe(403);
        expect(refused.body.error).toMatchObject({ type: 'permission_error', code: 'insufficient_scope' });
      }
    }

    // erase
    const erased = await asAdmin('DELETE', `/v1/users/${encodeURIComponent(a.externalId)}`);
    expect(erased.status, erased.text).toBe(200);
    expect(erased.body).toEqual({
      object: 'user.erasure',
      user_id: a.externalId,
      erased: {
        users: 1,
        exchanges: 3,
        ratings: 1,
        analyses: 1,
        analysis_claims: 1,
        keys: 1,
        limits: 1,
        limit_counters: expect.any(Number),
        tokens: 1,
        upstream_objects: 1,
        audit_events_scrubbed: 1,
        usage_rollups: 2,
      },
      erased_at: expect.any(String),
    });
    expect(erased.body.erased.limit_counters).toBeGreaterThanOrEqual(2);

    // nothing of the user is left in any table, nor in Redis
    const dump = await dataDump(app);
    expect(occurrences(dump, a.externalId), 'the external id in the dump').toBe(0);
    expect(occurrences(dump, a.phrase), 'the phrase in the dump').toBe(0);
    expect(await redis.keys(`${REDIS_PREFIX}limit:u:${a.userId}:*`)).toEqual([]);
    expect(await app.dataSource.query('SELECT key FROM limit_counters WHERE key LIKE $1', [`%${a.userId}%`])).toEqual([]);
    // the other user's data is whole
    expect(occurrences(dump, b.externalId)).toBeGreaterThan(0);
    expect(occurrences(dump, b.phrase)).toBeGreaterThan(0);
    const kept = await api(app, b.token, b.externalId)('GET', `/v1/requests?user_id=${encodeURIComponent(b.externalId)}`);
    expect(kept.body.data).toHaveLength(3);
    expect((await app.dataSource.query('SELECT count(*)::int AS n FROM upstream_objects WHERE id = $1', [b.fileId]))[0].n).toBe(1);
    expect((await app.dataSource.query('SELECT count(*)::int AS n FROM ratings WHERE user_id = $1', [b.userId]))[0].n).toBe(1);
    expect((await app.dataSource.query('SELECT count(*)::int AS n FROM api_keys WHERE id = $1 AND revoked_at IS NULL', [b.keyId]))[0].n).toBe(1);
    expect((await redis.keys(`${REDIS_PREFIX}limit:u:${b.userId}:*`)).length).toBeGreaterThan(0);

    const rollups = await app.dataSource.query(
      `SELECT day::text AS day, user_id, requests::int AS requests, cost FROM usage_rollups WHERE organization_id = $1 ORDER BY day, user_id NULLS FIRST`,
      [org.orgId],
    );
    expect(rollups).toEqual([
      { day: '2026-01-01', user_id: null, requests: 5, cost: 0.75 },
      { day: '2026-01-01', user_id: b.userId, requests: 7, cost: 1 },
      { day: '2026-01-02', user_id: null, requests: 1, cost: 0.125 },
    ]);
    const analysesOfB: { user_id: string | null }[] = await app.dataSource.query('SELECT user_id FROM analysis_results WHERE exchange_id = $1 ORDER BY created_at', [b.requestId]);
    expect(analysesOfB).toEqual([{ user_id: b.userId }, { user_id: null }]);
    const scrubbed = await app.dataSource.query(`SELECT target_id, details FROM audit_events WHERE organization_id = $1 AND action = 'user.note'`, [org.orgId]);
    expect(scrubbed).toEqual([{ target_id: a.userId, details: { users: [a.userId, 'someone-else'], nested: { who: a.userId } } }]);

    // the audit log names the user by internal id, with the counts
    const audit = await asAdmin('GET', '/v1/audit?action=user.erase');
    expect(audit.body.data).toEqual([expect.objectContaining({ action: 'user.erase', target_id: a.userId, details: expect.objectContaining({ exchanges: 3, keys: 1 }) })]);

    // the token pinned to the user is revoked; the same X-User-ID later is a new user
    expect((await a.call('GET', '/v1/models')).status).toBe(401);
    const again = await api(app, org.token, a.externalId)('GET', '/v1/limits');
    expect(again.status).toBe(200);
    const fresh: { id: string }[] = await app.dataSource.query('SELECT id FROM users WHERE organization_id = $1 AND external_id = $2', [org.orgId, a.externalId]);
    expect(fresh).toHaveLength(1);
    expect(fresh[0].id).not.toBe(a.userId);

    // erasing twice, or a user never seen: a receipt of zeros
    for (const who of [a.externalId, `never-${randomUUID()}`]) {
      if (who === a.externalId) await asAdmin('DELETE', `/v1/users/${encodeURIComponent(who)}`);
      const twice = await asAdmin('DELETE', `/v1/users/${encodeURIComponent(who)}`);
      expect(twice.status).toBe(200);
      expect(Object.values(twice.body.erased).every((n) => n === 0), JSON.stringify(twice.body)).toBe(true);
    }
  }, 60_000);

  it('exports a long history page by page (keyset on created_at and id, ties included), and erases earlier users of the same X-User-ID', async () => {
    const org = await createOrg(app);
    const admin = await createToken(app, org.orgId, { scope: 'admin' });
    // characters a path must carry encoded
    const externalId = `paged/${randomUUID()} %2F?#é`;
    const first = await createUser(app, org.orgId, externalId);
    // more than two pages, many rows sharing one timestamp; the first user was deleted (its exchanges stay) and the
    // same X-User-ID came back as a new user
    await app.dataSource.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, stream, status, request_body, created_at)
       SELECT 'req_' || $4 || lpad(i::text, 6, '0'), $1, $2, $3, 'session_paged', 'responses', 'gpt-4o-mini', false, 'completed',
              jsonb_build_object('input', 'row ' || i), timestamptz '2026-01-01T00:00:00Z' + ((i / 50) * interval '1 microsecond')
         FROM generate_series(1, 450) AS i`,
      [org.orgId, first.id, externalId, randomBytes(6).toString('hex')],
    );
    await app.dataSource.query('DELETE FROM users WHERE id = $1', [first.id]);
    const second = await createUser(app, org.orgId, externalId);

    const res = await fetch(`${app.url}/v1/users/${encodeURIComponent(externalId)}/export`, { headers: { authorization: `Bearer ${admin.token}`, 'x-user-id': 'operator' } });
    const lines = (await res.text()).trimEnd().split('\n').map((l) => JSON.parse(l));
    const ids = lines.filter((l) => l.type === 'exchange').map((l) => l.id);
    expect(ids).toHaveLength(450);
    expect(new Set(ids).size).toBe(450);
    expect(ids).toEqual([...ids].sort());
    expect(lines[0]).toMatchObject({ type: 'user', id: second.id });

    const erased = await api(app, admin.token, 'operator')('DELETE', `/v1/users/${encodeURIComponent(externalId)}`);
    expect(erased.body.erased).toMatchObject({ users: 1, exchanges: 450 });
    const event: { target_id: string; details: Record<string, unknown> }[] = await app.dataSource.query(
      `SELECT target_id, details FROM audit_events WHERE organization_id = $1 AND action = 'user.erase'`,
      [org.orgId],
    );
    expect(event).toEqual([{ target_id: second.id, details: expect.objectContaining({ exchanges: 450, user_ids: expect.arrayContaining([first.id, second.id]) }) }]);
  }, 60_000);

  it('a call in flight when its user is erased is not recorded when it ends (its open call goes with the erasure)', async () => {
    const o = await proxyOrg(app, fake.url);
    const admin = await createToken(app, o.orgId, { scope: 'admin' });
    const phrase = `in-flight-${randomBytes(8).toString('hex')}`;
    fake.enqueue({ kind: 'slow-stream', firstByteMs: 0, eventIntervalMs: 40 });
    const res = await fetch(`${app.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.token}`, 'x-user-id': o.userId, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: phrase, stream: true }),
    });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-request-id')!;
    const reader = res.body!.getReader();
    await reader.read();
    expect(await app.dataSource.query('SELECT id FROM open_calls WHERE id = $1', [id])).toHaveLength(1);

    const erased = await api(app, admin.token, 'operator')('DELETE', `/v1/users/${encodeURIComponent(o.userId)}`);
    expect(erased.status, erased.text).toBe(200);
    expect(erased.body.erased.exchanges).toBe(1);
    // the stream goes on to its end; its record is not written again
    while (!(await reader.read()).done);
    await waitFor(() => app.logs.some((l) => l.includes('its outcome is not recorded') && l.includes(id)), 5000, 'the completion');
    expect(await app.dataSource.query('SELECT id FROM exchanges WHERE id = $1 UNION ALL SELECT id FROM open_calls WHERE id = $1', [id])).toEqual([]);
    const kept: unknown[] = await app.dataSource.query(`SELECT 1 FROM exchanges WHERE request_body::text LIKE '%' || $1 || '%'`, [phrase]);
    expect(kept).toEqual([]);
  });

  it('another server process forgets the erased user through the change feed (the next call records a new user)', async () => {
    const second = await createTestApp({ DATABASE_URL: process.env.DATABASE_URL ?? app.db.url, LOG_LEVEL: 'warn', DB_POOL_SIZE: '2' });
    try {
      const org = await createOrg(app);
      const admin = await createToken(app, org.orgId, { scope: 'admin' });
      const externalId = `cached-${randomUUID()}`;
      const viaSecond = api(second, org.token, externalId);
      expect((await viaSecond('GET', '/v1/limits')).status).toBe(200);
      const before: { id: string }[] = await app.dataSource.query('SELECT id FROM users WHERE organization_id = $1 AND external_id = $2', [org.orgId, externalId]);
      expect(before).toHaveLength(1);

      const erased = await api(app, admin.token, 'operator')('DELETE', `/v1/users/${encodeURIComponent(externalId)}`);
      expect(erased.body.erased.users).toBe(1);
      const cached: unknown[] = await app.dataSource.query(`SELECT 1 FROM cache_invalidations WHERE ref LIKE '%' || $1 || '%'`, [externalId]);
      expect(cached, 'the change feed never carries the external id').toEqual([]);

      let after: { id: string }[] = [];
      for (let i = 0; i < 80 && !after.length; i++) {
        await new Promise((r) => setTimeout(r, 100));
        expect((await viaSecond('GET', '/v1/limits')).status).toBe(200);
        after = await app.dataSource.query('SELECT id FROM users WHERE organization_id = $1 AND external_id = $2', [org.orgId, externalId]);
      }
      expect(after).toHaveLength(1);
      expect(after[0].id).not.toBe(before[0].id);
    } finally {
      await second.close();
    }
  }, 60_000);

  it('the CLI exports to a file and erases with a receipt', async () => {
    const org = await createOrg(app);
    const c = await userWithHistory(org.orgId, 'cli-user');
    await waitForExchanges(org.orgId, c.externalId, 3);
    const dir = mkdtempSync(join(tmpdir(), 'export-'));
    try {
      const out = join(dir, 'user.jsonl');
      const exported = await runCli(['user', 'export', org.orgId, c.externalId, '--out', out], cliEnvFor(app));
      expect(exported.code, exported.stderr).toBe(0);
      const lines = readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      expect(lines[0]).toMatchObject({ type: 'user', external_id: c.externalId });
      expect(lines.filter((l) => l.type === 'exchange')).toHaveLength(3);
      expect(lines.at(-1)).toMatchObject({ type: 'end', counts: { exchanges: 3, ratings: 1, analyses: 1, objects: 1 } });

      const erased = await runCli(['user', 'erase', org.orgId, c.externalId, '--json'], cliEnvFor(app));
      expect(erased.code, erased.stderr).toBe(0);
      expect(erased.json).toMatchObject({ object: 'user.erasure', user_id: c.externalId, erased: { users: 1, exchanges: 3, ratings: 1, analyses: 1, keys: 1, upstream_objects: 1 } });
      const events: { actor: string; target_id: string }[] = await app.dataSource.query(
        `SELECT actor, target_id FROM audit_events WHERE organization_id = $1 AND action = 'user.erase'`,
        [org.orgId],
      );
      expect(events).toEqual([{ actor: expect.stringMatching(/^cli:/), target_id: c.userId }]);
      expect((await dataDump(app)).includes(c.phrase)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
