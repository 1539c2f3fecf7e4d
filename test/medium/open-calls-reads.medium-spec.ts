import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EndUserDataRepository } from '../../src/end-users/end-user-data.repository';
import { ExchangeEntity } from '../../src/exchanges/exchange.entity';
import { ExchangeFilter, ExchangesRepository } from '../../src/exchanges/exchanges.repository';
import { ExchangesService } from '../../src/exchanges/exchanges.service';
import { buildTypeOrmOptions } from '../../src/database/typeorm-options';
import { MediumDatabase, openMediumDatabase, RecorderBench } from './recorder-harness';

/**
 * A call in progress is a row of `open_calls` (its exchange is written whole when it ends): every reader of the
 * exchanges shows it as a pending exchange, as its pending row of `exchanges` was shown before. The rows are written
 * here with SQL, not through the recorder: these are the readers' rules, whatever the write path.
 */
let database: MediumDatabase;
let bench: RecorderBench;
let entities: DataSource;
let repo: ExchangesRepository;
let service: ExchangesService;
let endUsers: EndUserDataRepository;
beforeAll(async () => {
  database = await openMediumDatabase();
  bench = database.recorder();
  // the repository's own data source: the exchanges' entity registered, as the app registers it
  const url = (database.dataSource.options as { url: string }).url;
  entities = new DataSource(buildTypeOrmOptions(url, 4, 'openai-proxy:medium-open-calls', [ExchangeEntity]));
  await entities.initialize();
  repo = new ExchangesRepository(entities.getRepository(ExchangeEntity), bench.recorder);
  service = new ExchangesService(repo);
  endUsers = new EndUserDataRepository(entities);
});
afterAll(async () => {
  await entities?.destroy();
  await bench?.close();
  await database?.close();
});

interface Row {
  id?: string;
  userId?: string;
  externalUserId?: string;
  sessionId?: string;
  personaId?: string | null;
  model?: string | null;
  endpoint?: string;
  /** an instant as PostgreSQL reads it (to the microsecond) */
  createdAt: string;
}

const T0 = Date.now() - 3_600_000;
/** an instant `seconds` after T0, as ISO text */
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

/** A call in progress of the organization: its open call. */
async function openCall(orgId: string, r: Row): Promise<string> {
  const id = r.id ?? `req_open_${randomUUID().slice(0, 12)}`;
  await database.dataSource.query(
    `INSERT INTO open_calls (id, organization_id, user_id, external_user_id, session_id, persona_id, persona_version, endpoint, model, stream,
                             request_body, key_id, key_source, instance_id, created_at, method, route, request_content_type, capture_mode)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10::jsonb, $11, 'org', 'medium-instance', $12, 'POST', '/v1/responses', 'application/json', 'full')`,
    [
      id,
      orgId,
      r.userId ?? USER_ID,
      r.externalUserId ?? 'medium-user',
      r.sessionId ?? 'sess_open',
      r.personaId ?? null,
      r.personaId ? 3 : null,
      r.endpoint ?? 'responses',
      r.model === undefined ? 'gpt-4o-mini' : r.model,
      JSON.stringify({ model: 'gpt-4o-mini', input: `in flight ${id}` }),
      KEY_ID,
      r.createdAt,
    ],
  );
  return id;
}

/** An exchange stored in `exchanges` (ended with `status`, or an earlier version's pending row). */
async function storedExchange(orgId: string, r: Row & { status?: string }): Promise<string> {
  const id = r.id ?? `req_done_${randomUUID().slice(0, 12)}`;
  const status = r.status ?? 'completed';
  const ended = status !== 'pending';
  await database.dataSource.query(
    `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, persona_id, endpoint, model, stream, status,
                           upstream_status, response_id, request_body, output_text, input_tokens, output_tokens, total_tokens, cost, latency_ms,
                           key_id, key_source, created_at, completed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, $9, $10, $11, '{"input":"x"}'::jsonb, $12, $13::int, $13::int, $13::int, $14, $13::int, $15, 'org', $16, $17)`,
    [
      id,
      orgId,
      r.userId ?? USER_ID,
      r.externalUserId ?? 'medium-user',
      r.sessionId ?? 'sess_open',
      r.personaId ?? null,
      r.endpoint ?? 'responses',
      r.model === undefined ? 'gpt-4o-mini' : r.model,
      status,
      ended ? 200 : null,
      ended ? `resp_${id}` : null,
      ended ? 'out' : null,
      ended ? 5 : null,
      ended ? 0.001 : null,
      KEY_ID,
      r.createdAt,
      ended ? r.createdAt : null,
    ],
  );
  return id;
}

async function rate(orgId: string, exchangeId: string, rating: number): Promise<void> {
  await database.dataSource.query(`INSERT INTO ratings (organization_id, exchange_id, user_id, rating, rated_at) VALUES ($1, $2, $3, $4, now())`, [
    orgId,
    exchangeId,
    randomUUID(),
    rating,
  ]);
}

const USER_ID = randomUUID();
const KEY_ID = randomUUID();

const ids = async (filter: ExchangeFilter, limit = 20, after?: string) => (await repo.listPage(randomOrg.current, filter, limit, after)).map((r) => r.exchange.id);
/** the organization `ids` lists (each test sets its own) */
const randomOrg = { current: '' };

/** Every page of the list, `limit` rows at a time, following last_id as a client does: the ids in the order listed. */
async function walk(orgId: string, filter: ExchangeFilter, limit: number): Promise<string[]> {
  const seen: string[] = [];
  for (let after: string | undefined, pages = 0; pages < 50; pages++) {
    const rows = await repo.listPage(orgId, filter, limit, after);
    const page = rows.slice(0, limit).map((r) => r.exchange.id);
    seen.push(...page);
    if (rows.length <= limit) return seen;
    after = page[page.length - 1];
  }
  throw new Error('the pages never ended');
}

describe('a call in progress read by its id', () => {
  it('is a pending exchange: the columns known at its start, every outcome null', async () => {
    const orgId = randomUUID();
    const personaId = randomUUID();
    const id = await openCall(orgId, { createdAt: at(1), personaId, sessionId: 'sess_by_id', externalUserId: 'alice' });
    const view = await service.request(orgId, id);
    expect(view).toEqual({
      id,
      object: 'exchange',
      response_id: null,
      session_id: 'sess_by_id',
      user_id: 'alice',
      persona_id: personaId,
      persona_version: 3,
      endpoint: 'responses',
      model: 'gpt-4o-mini',
      stream: true,
      status: 'pending',
      upstream_status: null,
      usage: { input_tokens: null, output_tokens: null, total_tokens: null, cached_tokens: null, reasoning_tokens: null },
      cost: null,
      latency_ms: null,
      time_to_first_byte_ms: null,
      key_id: KEY_ID,
      key_source: 'org',
      key_attempts: null,
      method: 'POST',
      route: '/v1/responses',
      upstream_request_id: null,
      object_id: null,
      request_content_type: 'application/json',
      request_bytes: null,
      response_content_type: null,
      response_bytes: null,
      body_truncated: false,
      capture_mode: 'full',
      upstream_deleted_at: null,
      request_body: { model: 'gpt-4o-mini', input: `in flight ${id}` },
      response_body: null,
      output_text: null,
      error: null,
      created_at: at(1),
      completed_at: null,
    });
    // of this organization only
    expect(await repo.findById(randomUUID(), id)).toBeNull();
    await expect(service.request(randomUUID(), id)).rejects.toMatchObject({ kind: 'not_found' });
    // an exchange is read as before, and an earlier version's pending row too
    const done = await storedExchange(orgId, { createdAt: at(2) });
    const pending = await storedExchange(orgId, { createdAt: at(3), status: 'pending' });
    expect((await service.request(orgId, done)).status).toBe('completed');
    expect(await service.request(orgId, pending)).toMatchObject({ status: 'pending', response_id: null, completed_at: null, output_text: null });
  });

  it('can be rated by its id, as a pending exchange could (it has no response id to be named by)', async () => {
    const orgId = randomUUID();
    const personaId = randomUUID();
    const id = await openCall(orgId, { createdAt: at(1), personaId });
    expect(await repo.findRatedById(orgId, id)).toEqual({ id, response_id: null, persona_id: personaId });
    expect(await repo.findRatedById(randomUUID(), id)).toBeNull();
    expect(await repo.findRatedByResponseId(orgId, id)).toBeNull();
    // the rating knows the time of its exchange from the open call (judged_exchange()), so the lists by rating
    // find it once the call has ended
    await database.dataSource.query(`UPDATE open_calls SET persona_version = 3 WHERE id = $1`, [id]);
    await rate(orgId, id, 4);
    const [rating] = await database.dataSource.query(`SELECT exchange_created_at, persona_version FROM ratings WHERE exchange_id = $1`, [id]);
    expect(new Date(rating.exchange_created_at).toISOString()).toBe(at(1));
    expect(rating.persona_version).toBe(3);
  });
});

describe('the list of exchanges with calls in progress', () => {
  it('lists the open calls among the exchanges, newest first, and pages across them by the cursor, each row once', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const e1 = await storedExchange(orgId, { createdAt: at(1) });
    const o2 = await openCall(orgId, { createdAt: at(2) });
    const e3 = await storedExchange(orgId, { createdAt: at(3) });
    const o4 = await openCall(orgId, { createdAt: at(4) });
    const o5 = await openCall(orgId, { createdAt: at(5) });
    const e6 = await storedExchange(orgId, { createdAt: at(6) });
    await rate(orgId, o4, 4);
    await rate(orgId, o4, 5);
    // another organization's open call
    await openCall(randomUUID(), { createdAt: at(4.5) });
    const newestFirst = [e6, o5, o4, e3, o2, e1];

    expect(await ids({})).toEqual(newestFirst);
    const rows = await repo.listPage(orgId, {}, 20, undefined);
    expect(rows[2]).toMatchObject({ exchange: { id: o4, status: 'pending', responseId: null, completedAt: null }, omitted: [], ratings: { count: 2, average: 4.5 } });
    expect(rows[2].exchange.requestBody).toEqual({ model: 'gpt-4o-mini', input: `in flight ${o4}` });
    // limit + 1 rows: the one more tells there are more
    expect(await ids({}, 2)).toEqual([e6, o5, o4]);
    // a page after an open call, and after an exchange
    expect(await ids({}, 2, o5)).toEqual([o4, e3, o2]);
    expect(await ids({}, 2, e3)).toEqual([o2, e1]);
    for (const limit of [1, 2, 3, 5]) expect(await walk(orgId, {}, limit)).toEqual(newestFirst);
    // an unknown cursor gives an empty page
    expect(await ids({}, 2, 'req_unknown')).toEqual([]);
  });

  it('keeps the cursor of an open call whose exchange was written since (the same id and time)', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const e1 = await storedExchange(orgId, { createdAt: at(1) });
    const o2 = await openCall(orgId, { createdAt: at(2) });
    const o3 = await openCall(orgId, { createdAt: at(3) });
    expect(await ids({}, 1)).toEqual([o3, o2]);
    // the call ends: its open call is deleted and its exchange written
    await database.dataSource.query(`DELETE FROM open_calls WHERE id = $1`, [o3]);
    await storedExchange(orgId, { id: o3, createdAt: at(3) });
    expect(await ids({}, 1, o3)).toEqual([o2, e1]);
    expect((await repo.listPage(orgId, {}, 1, undefined))[0].exchange).toMatchObject({ id: o3, status: 'completed' });
  });

  it('lists a call that is in both tables (it ended between the reads) once, as its exchange', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const id = await openCall(orgId, { createdAt: at(2) });
    await storedExchange(orgId, { id, createdAt: at(2) });
    const older = await openCall(orgId, { createdAt: at(1) });
    const rows = await repo.listPage(orgId, {}, 20, undefined);
    expect(rows.map((r) => [r.exchange.id, r.exchange.status])).toEqual([
      [id, 'completed'],
      [older, 'pending'],
    ]);
  });

  it('orders an open call and an exchange of the same millisecond as the database does: microseconds, then ids', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const ms = new Date(T0).toISOString().slice(0, 23);
    // the ids differ from their fifth character (the suffix only keeps them unique across runs)
    const tag = randomUUID().slice(0, 8);
    // the exchange's id sorts after the open call's, its time before it (in the same millisecond)
    const earlier = await storedExchange(orgId, { id: `req_z_earlier_${tag}`, createdAt: `${ms}400Z` });
    const later = await openCall(orgId, { id: `req_a_later_${tag}`, createdAt: `${ms}700Z` });
    // the same microsecond: the ids decide, in the database's collation
    const sameA = await storedExchange(orgId, { id: `req_B_same_${tag}`, createdAt: `${ms}900Z` });
    const sameB = await openCall(orgId, { id: `req_b_same_${tag}`, createdAt: `${ms}900Z` });
    const expected: { id: string }[] = await database.dataSource.query(
      `SELECT id FROM (SELECT id, created_at FROM exchanges WHERE organization_id = $1 UNION ALL SELECT id, created_at FROM open_calls WHERE organization_id = $1) k
        ORDER BY created_at DESC, id DESC`,
      [orgId],
    );
    expect(expected.map((r) => r.id).slice(2)).toEqual([later, earlier]);
    expect(expected.map((r) => r.id).slice(0, 2).sort()).toEqual([sameA, sameB].sort());
    expect(await ids({})).toEqual(expected.map((r) => r.id));
    for (const limit of [1, 2, 3]) expect(await walk(orgId, {}, limit)).toEqual(expected.map((r) => r.id));
  });

  it('applies the filters on what a call is known by at its start to the open calls too', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const personaId = randomUUID();
    const aliceOpen = await openCall(orgId, { createdAt: at(5), externalUserId: 'alice', sessionId: 'sess_a', personaId });
    const bobOpen = await openCall(orgId, { createdAt: at(4), externalUserId: 'bob', sessionId: 'sess_b', endpoint: 'embeddings', model: 'text-embedding-3-small' });
    const aliceDone = await storedExchange(orgId, { createdAt: at(3), externalUserId: 'alice', sessionId: 'sess_a' });
    const bobDone = await storedExchange(orgId, { createdAt: at(2), externalUserId: 'bob', sessionId: 'sess_b' });

    expect(await ids({ externalUserId: 'alice' })).toEqual([aliceOpen, aliceDone]);
    expect(await ids({ externalUserId: 'bob' })).toEqual([bobOpen, bobDone]);
    expect(await ids({ externalUserId: 'carol' })).toEqual([]);
    expect(await ids({ sessionId: 'sess_b' })).toEqual([bobOpen, bobDone]);
    expect(await ids({ personaId })).toEqual([aliceOpen]);
    expect(await ids({ endpoint: 'embeddings' })).toEqual([bobOpen]);
    expect(await ids({ endpoint: 'responses' })).toEqual([aliceOpen, aliceDone, bobDone]);
    // the time range: [from, to)
    expect(await ids({ from: new Date(at(4)) })).toEqual([aliceOpen, bobOpen]);
    expect(await ids({ to: new Date(at(5)) })).toEqual([bobOpen, aliceDone, bobDone]);
    expect(await ids({ from: new Date(at(2.5)), to: new Date(at(4.5)) })).toEqual([bobOpen, aliceDone]);
    // with a cursor besides a filter
    expect(await ids({ externalUserId: 'alice' }, 1, aliceOpen)).toEqual([aliceDone]);
  });

  it('finds an open call of a model no ended call has (the daily usage counts ended calls only), within the time range asked', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const done = await storedExchange(orgId, { createdAt: at(1), model: 'gpt-4o-mini' });
    const fresh = await openCall(orgId, { createdAt: at(2), model: 'gpt-brand-new' });
    const mini = await openCall(orgId, { createdAt: at(3), model: 'gpt-4o-mini' });
    const usage: { n: number }[] = await database.dataSource.query(
      `SELECT (SELECT count(*) FROM usage_daily WHERE organization_id = $1 AND key = 'gpt-brand-new')
            + (SELECT count(*) FROM usage_daily_changes WHERE organization_id = $1 AND model = 'gpt-brand-new') AS n`,
      [orgId],
    );
    expect(Number(usage[0].n)).toBe(0);
    expect(await ids({ model: 'gpt-brand-new' })).toEqual([fresh]);
    expect(await ids({ model: 'gpt-brand-new', status: 'pending' })).toEqual([fresh]);
    expect(await ids({ model: 'gpt-brand-new', to: new Date(at(2)) })).toEqual([]);
    expect(await ids({ model: 'gpt-brand-new', from: new Date(at(1)), to: new Date(at(3)) })).toEqual([fresh]);
    // a model ended calls have: both, though the open call is past the last day the daily usage knows of it (a later day)
    const tomorrow = await openCall(orgId, { createdAt: new Date(T0 + 2 * 86_400_000).toISOString(), model: 'gpt-4o-mini' });
    expect(await ids({ model: 'gpt-4o-mini' })).toEqual([tomorrow, mini, done]);
    expect(await ids({ model: 'gpt-4o-mini' }, 1, mini)).toEqual([done]);
    expect(await ids({ model: 'gpt-typo' })).toEqual([]);
  });

  it('lists the open calls with the pending exchanges for status=pending, and never for another status or a judgement', async () => {
    const orgId = (randomOrg.current = randomUUID());
    const oldPending = await storedExchange(orgId, { createdAt: at(1), status: 'pending' });
    const done = await storedExchange(orgId, { createdAt: at(2) });
    const open = await openCall(orgId, { createdAt: at(3) });
    await rate(orgId, done, 5);
    await rate(orgId, open, 5);
    await database.dataSource.query(
      `INSERT INTO analysis_results (organization_id, exchange_id, cache_key, analysis_type, primary_category, model)
       VALUES ($1, $2, md5(random()::text), 'intent', 'billing', 'gpt-4o-mini'), ($1, $3, md5(random()::text), 'intent', 'billing', 'gpt-4o-mini')`,
      [orgId, done, open],
    );

    expect(await ids({ status: 'pending' })).toEqual([open, oldPending]);
    expect(await ids({ status: 'pending' }, 1, open)).toEqual([oldPending]);
    expect(await ids({ status: 'completed' })).toEqual([done]);
    expect(await ids({ status: 'interrupted' })).toEqual([]);
    expect(await ids({ rating: 5 })).toEqual([done]);
    expect(await ids({ rating: 5, status: 'pending' })).toEqual([]);
    expect(await ids({ analysisCategory: 'billing' })).toEqual([done]);
    expect(await ids({ analysisCategory: 'billing', externalUserId: 'medium-user' })).toEqual([done]);
    expect(await ids({})).toEqual([open, done, oldPending]);
  });
});

describe('a session with a call in progress', () => {
  it('lists its open calls among its exchanges, oldest first, by pages; exists while its only call is in flight', async () => {
    const orgId = randomUUID();
    const session = `sess_${randomUUID()}`;
    const e1 = await storedExchange(orgId, { createdAt: at(1), sessionId: session });
    const o2 = await openCall(orgId, { createdAt: at(2), sessionId: session });
    const e3 = await storedExchange(orgId, { createdAt: at(3), sessionId: session });
    const o4 = await openCall(orgId, { createdAt: at(4), sessionId: session });
    await openCall(orgId, { createdAt: at(2.5), sessionId: 'sess_other' });
    const sessionIds = async (limit: number, after?: string) => (await repo.sessionPage(orgId, session, limit, after)).map((r) => r.exchange.id);
    expect(await sessionIds(20)).toEqual([e1, o2, e3, o4]);
    expect(await sessionIds(1)).toEqual([e1, o2]);
    expect(await sessionIds(1, o2)).toEqual([e3, o4]);
    expect(await sessionIds(2, e3)).toEqual([o4]);
    const page = await service.session(orgId, session, { limit: '3' });
    expect(page.data.map((r) => [r.id, r.status])).toEqual([
      [e1, 'completed'],
      [o2, 'pending'],
      [e3, 'completed'],
    ]);
    expect(page).toMatchObject({ has_more: true, last_id: e3 });

    const inFlight = `sess_${randomUUID()}`;
    const only = await openCall(orgId, { createdAt: at(5), sessionId: inFlight });
    expect(await repo.sessionExists(orgId, inFlight)).toBe(true);
    expect(await repo.sessionExists(randomUUID(), inFlight)).toBe(false);
    expect((await service.session(orgId, inFlight, {})).data.map((r) => [r.id, r.status])).toEqual([[only, 'pending']]);
    // nothing after its last row: an empty page of a session that exists, not a 404
    expect((await service.session(orgId, inFlight, { after: only })).data).toEqual([]);
    await expect(service.session(orgId, `sess_${randomUUID()}`, {})).rejects.toMatchObject({ kind: 'not_found' });
  });
});

describe("an end user's data with a call in progress", () => {
  it('exports their open calls among their exchanges, oldest first, by pages', async () => {
    const orgId = randomUUID();
    const externalId = `user-${randomUUID()}`;
    const e1 = await storedExchange(orgId, { createdAt: at(1), externalUserId: externalId });
    const o2 = await openCall(orgId, { createdAt: at(2), externalUserId: externalId });
    const e3 = await storedExchange(orgId, { createdAt: at(3), externalUserId: externalId });
    const o4 = await openCall(orgId, { createdAt: at(4), externalUserId: externalId });
    await openCall(orgId, { createdAt: at(2.5), externalUserId: 'someone-else' });
    for (const limit of [1, 2, 3, 4, 10]) {
      const seen: [string, string][] = [];
      for (let after = null, first = true; first || after; first = false) {
        const page = await endUsers.exchangesPage(orgId, externalId, after, limit);
        expect(page.rows.length).toBeLessThanOrEqual(limit);
        seen.push(...page.rows.map((r): [string, string] => [r.id, r.status]));
        after = page.next;
      }
      expect(seen, `pages of ${limit}`).toEqual([
        [e1, 'completed'],
        [o2, 'pending'],
        [e3, 'completed'],
        [o4, 'pending'],
      ]);
    }
    const subject = await endUsers.findSubject(null, orgId, externalId);
    expect(subject).toMatchObject({ hasExchanges: true, userIds: [USER_ID] });
  });

  it('is found by an export and erased with their exchanges, counted with them, with the ratings of it', async () => {
    const orgId = randomUUID();
    const externalId = `user-${randomUUID()}`;
    const userId = randomUUID();
    const done = await storedExchange(orgId, { createdAt: at(1), externalUserId: externalId, userId });
    const open = await openCall(orgId, { createdAt: at(2), externalUserId: externalId, userId });
    const onlyOpen = `user-${randomUUID()}`;
    const onlyOpenUser = randomUUID();
    const alone = await openCall(orgId, { createdAt: at(3), externalUserId: onlyOpen, userId: onlyOpenUser });
    const kept = await openCall(orgId, { createdAt: at(4), externalUserId: 'someone-else' });
    await rate(orgId, open, 3);

    // a user whose only record is a call in progress is a user
    expect(await endUsers.findSubject(null, orgId, onlyOpen)).toEqual({ userId: null, userIds: [onlyOpenUser], hasExchanges: true });

    const effects = await entities.transaction(async (m) => endUsers.erase(m, orgId, externalId, await endUsers.findSubject(m, orgId, externalId, true)));
    expect(effects.rows).toMatchObject({ exchanges: 2, ratings: 1 });
    const left: { id: string }[] = await database.dataSource.query(
      `SELECT id FROM open_calls WHERE organization_id = $1 UNION ALL SELECT id FROM exchanges WHERE organization_id = $1 UNION ALL SELECT exchange_id FROM ratings WHERE organization_id = $1`,
      [orgId],
    );
    expect(left.map((r) => r.id).sort()).toEqual([alone, kept].sort());
    expect(await repo.findById(orgId, open)).toBeNull();
    expect(await repo.findById(orgId, done)).toBeNull();

    const alsoErased = await entities.transaction(async (m) => endUsers.erase(m, orgId, onlyOpen, await endUsers.findSubject(m, orgId, onlyOpen, true)));
    expect(alsoErased.rows.exchanges).toBe(1);
    expect(await repo.findById(orgId, alone)).toBeNull();
    expect((await repo.findById(orgId, kept))?.status).toBe('pending');
  });
});
