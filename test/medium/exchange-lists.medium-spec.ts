import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { DataSource, EntityManager, SelectQueryBuilder } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ExchangeEntity } from '../../src/exchanges/exchange.entity';
import { ExchangesRepository } from '../../src/exchanges/exchanges.repository';
import { buildTypeOrmOptions } from '../../src/database/typeorm-options';
import type { PendingExchange } from '../../src/exchanges/recorder/exchange-record';
import { MediumDatabase, openMediumDatabase, outcomeOf, pendingRow, RecorderBench } from './recorder-harness';

let database: MediumDatabase;
let bench: RecorderBench;
let repo: ExchangesRepository;
let entities: DataSource;
/** a database of this file's own on PostgreSQL: its partitions are the ones the migrations make, without the months other files add */
let ownDatabase: { admin: string; name: string } | undefined;
beforeAll(async () => {
  const shared = process.env.DATABASE_URL;
  if (shared) {
    ownDatabase = { admin: shared, name: `proxy_lists_${randomUUID().slice(0, 8)}` };
    await adminQuery(shared, `CREATE DATABASE ${ownDatabase.name}`);
    const url = new URL(shared);
    url.pathname = `/${ownDatabase.name}`;
    database = await openMediumDatabase({ DATABASE_URL: url.toString() });
  } else database = await openMediumDatabase();
  bench = database.recorder();
  // the repository's own data source: the exchanges' entity registered, as the app registers it
  const url = (database.dataSource.options as { url: string }).url;
  entities = new DataSource(buildTypeOrmOptions(url, 4, 'openai-proxy:medium-lists', [ExchangeEntity]));
  await entities.initialize();
  repo = new ExchangesRepository(entities.getRepository(ExchangeEntity), bench.recorder);
});
afterAll(async () => {
  await entities?.destroy();
  await bench?.close();
  await database?.close();
  if (ownDatabase) await adminQuery(ownDatabase.admin, `DROP DATABASE IF EXISTS ${ownDatabase.name} WITH (FORCE)`);
});

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function exchange(orgId: string, tag: string, createdAt: Date, over: Partial<PendingExchange> = {}): Promise<string> {
  const row = pendingRow(tag, { organizationId: orgId, createdAt, ...over });
  await bench.recorder.begin(row);
  await bench.recorder.complete(outcomeOf(row));
  return row.id;
}

/** One person's rating of an exchange of the organization. */
async function rateBy(orgId: string, exchangeId: string, rating: number): Promise<void> {
  await database.dataSource.query(
    `INSERT INTO ratings (organization_id, exchange_id, user_id, rating, rated_at) VALUES ($1, $2, $3, $4, now())`,
    [orgId, exchangeId, randomUUID(), rating],
  );
}

async function result(orgId: string, exchangeId: string, category: string, type = 'intent'): Promise<void> {
  await database.dataSource.query(
    `INSERT INTO analysis_results (organization_id, exchange_id, cache_key, analysis_type, primary_category, model)
     VALUES ($1, $2, md5(random()::text), $3, $4, 'gpt-4o-mini')`,
    [orgId, exchangeId, type, category],
  );
}

/** Rows of `exchanges` (any partition) a plan read, kept or filtered out, over all its loops; not its InitPlans (the cursor's lookup). */
function exchangeRowsRead(node: Record<string, unknown>): number {
  if (node['Parent Relationship'] === 'InitPlan') return 0;
  const own = String(node['Relation Name'] ?? '').startsWith('exchanges')
    ? ((node['Actual Rows'] as number) + ((node['Rows Removed by Filter'] as number) ?? 0)) * (node['Actual Loops'] as number)
    : 0;
  return own + ((node.Plans as Record<string, unknown>[] | undefined) ?? []).reduce((sum, child) => sum + exchangeRowsRead(child), 0);
}

/**
 * Exchanges a plan fetched one at a time (the loops of its reads of `exchanges`, any partition), whether the filter
 * then kept them or not; not its InitPlans. Exact where rows are not: EXPLAIN gives those per loop, rounded.
 */
function exchangeProbes(node: Record<string, unknown>): number {
  if (node['Parent Relationship'] === 'InitPlan') return 0;
  const own = String(node['Relation Name'] ?? '').startsWith('exchanges') ? (node['Actual Loops'] as number) : 0;
  return own + ((node.Plans as Record<string, unknown>[] | undefined) ?? []).reduce((sum, child) => sum + exchangeProbes(child), 0);
}

/**
 * Lists a page of judged exchanges (expecting `ids`), then runs its one statement again under EXPLAIN ANALYZE with the
 * settings the repository gave it: its plan, and those settings. Sequential scans are off besides: these tables are
 * small enough to be read whole, which the planner would rather do than use an index.
 */
async function judgedPagePlan(
  list: () => Promise<{ exchange: { id: string } }[]>,
  ids: string[],
  /** the settings statements expected (a page that is no judgement's walk has none) */
  settingsCount = 1,
): Promise<[Record<string, unknown>, string[]]> {
  const statements = vi.spyOn(SelectQueryBuilder.prototype, 'getQueryAndParameters');
  const queries = vi.spyOn(EntityManager.prototype, 'query');
  try {
    expect((await list()).map((r) => r.exchange.id)).toEqual(ids);
    const lists = statements.mock.results.map((r) => r.value as [string, unknown[]]).filter(([q]) => q.includes('"exchanges"'));
    expect(lists).toHaveLength(1);
    const settings = queries.mock.calls.map(([q]) => q as string).filter((q) => q.includes('set_config'));
    expect(settings).toHaveLength(settingsCount);
    const [sql, params] = lists[0];
    const plan = await database.dataSource.transaction(async (m) => {
      for (const s of settings) await m.query(s);
      await m.query(`SET LOCAL enable_seqscan = off`);
      return (await m.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params))[0]['QUERY PLAN'][0].Plan as Record<string, unknown>;
    });
    return [plan, settings];
  } finally {
    statements.mockRestore();
    queries.mockRestore();
  }
}

/**
 * Lists a page of a judgement with a rare status or route (expecting `ids`), then runs its merge of the two indexes
 * again under EXPLAIN ANALYZE with the settings it ran with: the keys it found, and its plan.
 */
async function intersectPlan(list: () => Promise<{ exchange: { id: string } }[]>, ids: string[]): Promise<[number, Record<string, unknown>]> {
  const queries = vi.spyOn(EntityManager.prototype, 'query');
  try {
    expect((await list()).map((r) => r.exchange.id)).toEqual(ids);
    const calls = queries.mock.calls.map(([q, p]) => [q as string, p as unknown[]] as const);
    const settings = calls.filter(([q]) => q.includes('set_config'));
    expect(settings).toHaveLength(1);
    const merges = calls.filter(([q]) => q.includes('AS created_at, j.exchange_id AS id'));
    expect(merges).toHaveLength(1);
    const [sql, params] = merges[0];
    return await database.dataSource.transaction(async (m) => {
      await m.query(settings[0][0]);
      const plan = (await m.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params))[0]['QUERY PLAN'][0].Plan as Record<string, unknown>;
      return [plan['Actual Rows'] as number, plan] as [number, Record<string, unknown>];
    });
  } finally {
    queries.mockRestore();
  }
}

describe('lists of exchanges by analysis category or rating', () => {
  it('lists the exchanges put in the category, newest first, once each, of the organization only, by pages', async () => {
    const orgId = randomUUID();
    const other = randomUUID();
    const t0 = Date.now() - 3_600_000;
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await exchange(orgId, `cat${i}`, new Date(t0 + i * 60_000)));
    const foreign = await exchange(other, 'foreign', new Date(t0 + 30_000));
    await result(orgId, ids[0], 'billing');
    await result(orgId, ids[2], 'billing');
    await result(orgId, ids[2], 'billing'); // analysed twice: listed once
    await result(orgId, ids[3], 'sales');
    await result(orgId, ids[4], 'billing', 'sentiment');
    await result(orgId, ids[5], 'sales');
    await result(other, foreign, 'billing');
    await result(other, ids[1], 'billing'); // another organization's result names no exchange of this one

    const listed = async (limit: number, after?: string) =>
      (await repo.listPage(orgId, { analysisCategory: 'billing' }, limit, after)).map((r) => r.exchange.id);
    expect(await listed(10)).toEqual([ids[4], ids[2], ids[0]]);
    expect(await listed(1)).toEqual([ids[4], ids[2]]);
    expect(await listed(1, ids[2])).toEqual([ids[0]]);
    expect((await repo.listPage(orgId, { analysisCategory: 'billing', model: 'gpt-4o-mini' }, 10, undefined)).map((r) => r.exchange.id)).toEqual([
      ids[4],
      ids[2],
      ids[0],
    ]);
    expect(await repo.listPage(orgId, { analysisCategory: 'no-such-category' }, 10, undefined)).toEqual([]);

    // a row outside every monthly partition (in the default one) is listed in its place too
    const old = await exchange(orgId, 'old', new Date('2001-02-03T04:05:06.789Z'));
    await result(orgId, old, 'billing');
    expect(await listed(10)).toEqual([ids[4], ids[2], ids[0], old]);
    expect(await listed(2, ids[2])).toEqual([ids[0], old]);
    const future = await exchange(orgId, 'future', new Date('2999-01-01T00:00:00.000Z'));
    await result(orgId, future, 'billing');
    expect(await listed(1)).toEqual([future, ids[4]]);
    expect(await listed(10)).toEqual([future, ids[4], ids[2], ids[0], old]);
  });

  it('reads a page of the category alone from its index in its exchanges’ order, and only the page’s exchanges', async () => {
    const orgId = randomUUID();
    const t0 = Date.now() - 3_600_000;
    const billed: string[] = [];
    for (let i = 0; i < 120; i++) {
      const id = await exchange(orgId, `many${i}`, new Date(t0 + i * 1_000));
      if (i % 10 === 0) {
        billed.push(id);
        await result(orgId, id, 'billing');
        if (i % 20 === 0) await result(orgId, id, 'billing', 'sentiment'); // twice in the category: read once
      }
    }
    await database.dataSource.query('VACUUM ANALYZE analysis_results');
    const newestFirst = [...billed].reverse();
    const [plan, settings] = await judgedPagePlan(() => repo.listPage(orgId, { analysisCategory: 'billing' }, 3, newestFirst[1]), newestFirst.slice(2, 6));
    // no parallel worker started to read a page's entries (planned for the whole category, the read would)
    expect(settings[0]).toContain(`set_config('max_parallel_workers_per_gather', '0', true)`);
    const text = JSON.stringify(plan);
    expect(text).toContain('ix_analysis_results_category');
    expect(text).not.toContain('"Sort"');
    expect(text).not.toContain('hashed SubPlan');
    // rows of exchanges read (kept or not): the page and one more to tell has_more, each by its key — not the 35
    // newer exchanges outside the category
    expect(exchangeRowsRead(plan)).toBe(4);
    // a time range is read from the same index
    const from = new Date(t0 + 30_000);
    const to = new Date(t0 + 81_000);
    expect((await repo.listPage(orgId, { analysisCategory: 'billing', from, to }, 10, undefined)).map((r) => r.exchange.id)).toEqual(billed.slice(3, 9).reverse());
  });

  it('reads a page of one rating alone from its index in its exchanges’ order, and only the page’s exchanges', async () => {
    const orgId = randomUUID();
    const t0 = Date.now() - 3_600_000;
    const rated: string[] = [];
    const rate = (exchangeId: string, rating: number) => rateBy(orgId, exchangeId, rating);
    for (let i = 0; i < 120; i++) {
      const id = await exchange(orgId, `rated${i}`, new Date(t0 + i * 1_000));
      if (i % 10 === 0) {
        rated.push(id);
        await rate(id, 2);
        if (i % 20 === 0) await rate(id, 2); // two people gave it a 2: listed once
      } else if (i % 10 === 5) await rate(id, 5);
    }
    await database.dataSource.query('VACUUM ANALYZE ratings');
    const newestFirst = [...rated].reverse();
    const [plan] = await judgedPagePlan(() => repo.listPage(orgId, { rating: 2 }, 3, newestFirst[1]), newestFirst.slice(2, 6));
    expect(JSON.stringify(plan)).toContain('ix_ratings_rating');
    // the page and one more, each by its key — not the 35 newer exchanges without a 2
    expect(exchangeRowsRead(plan)).toBe(4);
    const from = new Date(t0 + 30_000);
    const to = new Date(t0 + 81_000);
    expect((await repo.listPage(orgId, { rating: 2, from, to }, 10, undefined)).map((r) => r.exchange.id)).toEqual(rated.slice(3, 9).reverse());
    // with a user besides, the rating is checked along the user's scan, with the same answer
    expect((await repo.listPage(orgId, { rating: 2, externalUserId: 'medium-user' }, 3, newestFirst[1])).map((r) => r.exchange.id)).toEqual(
      newestFirst.slice(2, 6),
    );
  });

  it('walks the judgement with the model, endpoint, status and a rating besides a category checked on each exchange it reads', async () => {
    const orgId = randomUUID();
    const t0 = Date.now() - 3_600_000;
    const rate = (exchangeId: string, rating: number) => rateBy(orgId, exchangeId, rating);
    // 40 rated 4, every other one of them with gpt-4o; 200 newer exchanges neither rated nor analysed
    const rated: { id: string; model: string }[] = [];
    for (let i = 0; i < 40; i++) {
      const model = i % 2 ? 'gpt-4o' : 'gpt-4o-mini';
      const id = await exchange(orgId, `walk${i}`, new Date(t0 + i * 1_000), { model, endpoint: i % 4 < 2 ? 'responses' : 'chat.completions' });
      rated.push({ id, model });
      await rate(id, 4);
      if (i % 3 === 0) await result(orgId, id, 'billing');
    }
    for (let i = 0; i < 200; i++) await exchange(orgId, `newer${i}`, new Date(t0 + 100_000 + i * 100), { model: 'gpt-4o' });
    await database.dataSource.query('VACUUM ANALYZE ratings, analysis_results');
    const newestFirst = [...rated].reverse();
    const of4o = newestFirst.filter((r) => r.model === 'gpt-4o').map((r) => r.id);

    const [plan] = await judgedPagePlan(() => repo.listPage(orgId, { rating: 4, model: 'gpt-4o' }, 3, undefined), of4o.slice(0, 4));
    const text = JSON.stringify(plan);
    expect(text).toContain('ix_ratings_rating');
    expect(text).not.toContain('"Sort"');
    // the rating's newest entries until four of gpt-4o (every other one): 7 exchanges, each by its key — not the 200
    // newer ones of the organization's newest-first scan
    expect(exchangeProbes(plan)).toBe(7);
    expect((await repo.listPage(orgId, { rating: 4, model: 'gpt-4o' }, 3, of4o[3])).map((r) => r.exchange.id)).toEqual(of4o.slice(4, 8));

    // endpoint and status are checked the same way
    const chat = newestFirst.filter((_, k) => (39 - k) % 4 >= 2).map((r) => r.id);
    expect((await repo.listPage(orgId, { rating: 4, endpoint: 'chat.completions' }, 50, undefined)).map((r) => r.exchange.id)).toEqual(chat);
    // a status or a route none of the organization's calls has: an empty page without a walk (their own indexes
    // say so at once; the walk would read all of the judgement's entries to find none)
    const lists = vi.spyOn(SelectQueryBuilder.prototype, 'getQueryAndParameters');
    try {
      expect(await repo.listPage(orgId, { rating: 4, status: 'failed' }, 10, undefined)).toEqual([]);
      expect(await repo.listPage(orgId, { rating: 4, endpoint: 'embeddings' }, 10, undefined)).toEqual([]);
      expect(await repo.listPage(orgId, { analysisCategory: 'billing', status: 'interrupted', from: new Date(t0) }, 10, undefined)).toEqual([]);
      expect(lists.mock.results.filter((r) => (r.value as [string])[0].includes('"exchanges"'))).toHaveLength(0);
    } finally {
      lists.mockRestore();
    }
    // one some call has, but no rated one: the rating's index and the status's merged in their order, no exchange
    // fetched (the walk fetched all 40 rated ones to check their status)
    const row = pendingRow('walkfailed', { organizationId: orgId, createdAt: new Date(t0 - 60_000) });
    await bench.recorder.begin(row);
    await bench.recorder.complete(outcomeOf(row, { status: 'failed', upstreamStatus: 500 }));
    const [keys, merged] = await intersectPlan(() => repo.listPage(orgId, { rating: 4, status: 'failed' }, 10, undefined), []);
    const mergedText = JSON.stringify(merged);
    expect(mergedText).toContain('Merge Join');
    expect(mergedText).toContain('ix_ratings_rating');
    // each month's part of ix_exchanges_org_status, read backwards, index only
    expect(mergedText).toContain('organization_id_status_created_at_id_idx');
    expect(mergedText).not.toContain('"Node Type":"Index Scan"');
    expect(mergedText).not.toContain('"Sort"');
    expect(keys).toBe(0);
    // rated, it is the page (and outside the time range asked, it is not)
    await rate(row.id, 4);
    expect((await repo.listPage(orgId, { rating: 4, status: 'failed' }, 10, undefined)).map((r) => r.exchange.id)).toEqual([row.id]);
    expect(await repo.listPage(orgId, { rating: 4, status: 'failed', from: new Date(t0) }, 10, undefined)).toEqual([]);

    // a category walked, the rating checked on each of its exchanges: every third one is billing, all are rated 4
    const billing = newestFirst.filter((_, k) => (39 - k) % 3 === 0).map((r) => r.id);
    const [both] = await judgedPagePlan(() => repo.listPage(orgId, { analysisCategory: 'billing', rating: 4 }, 50, undefined), billing);
    expect(JSON.stringify(both)).toContain('ix_analysis_results_category');
    expect(await repo.listPage(orgId, { analysisCategory: 'billing', rating: 5 }, 50, undefined)).toEqual([]);
    const billed4o = newestFirst.filter((r, k) => (39 - k) % 3 === 0 && r.model === 'gpt-4o').map((r) => r.id);
    expect((await repo.listPage(orgId, { analysisCategory: 'billing', rating: 4, model: 'gpt-4o' }, 50, undefined)).map((r) => r.exchange.id)).toEqual(
      billed4o,
    );
  });

  it('merges a judgement with a rare status or route: its pages, cursors and time range as the walk gave them', async () => {
    const orgId = randomUUID();
    const t0 = Date.now() - 7_200_000;
    const rate = (exchangeId: string, rating: number) => rateBy(orgId, exchangeId, rating);
    // 60 exchanges a second apart: every third one failed, every fourth one an embeddings call; every other one rated 2
    // (some twice), every fifth one put in 'sales'
    const rows: { id: string; failed: boolean; embeddings: boolean; rated: boolean; sales: boolean; at: number }[] = [];
    for (let i = 0; i < 60; i++) {
      const at = t0 + i * 1_000;
      const embeddings = i % 4 === 0;
      const row = pendingRow(`merge${i}`, { organizationId: orgId, createdAt: new Date(at), endpoint: embeddings ? 'embeddings' : 'responses' });
      await bench.recorder.begin(row);
      const failed = i % 3 === 0;
      await bench.recorder.complete(outcomeOf(row, failed ? { status: 'failed', upstreamStatus: 500 } : {}));
      const rated = i % 2 === 0;
      if (rated) await rate(row.id, 2);
      if (i % 6 === 0) await rate(row.id, 2); // two people: listed once
      const sales = i % 5 === 0;
      if (sales) await result(orgId, row.id, 'sales');
      if (i % 10 === 0) await result(orgId, row.id, 'sales'); // analysed twice: listed once
      rows.push({ id: row.id, failed, embeddings, rated, sales, at });
    }
    await database.dataSource.query('VACUUM ANALYZE ratings, analysis_results');
    const newestFirst = [...rows].reverse();
    const pages = async (filter: Parameters<typeof repo.listPage>[1], limit: number) => {
      const out: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = (await repo.listPage(orgId, filter, limit, after)).map((r) => r.exchange.id);
        out.push(...page.slice(0, limit));
        if (page.length <= limit) return out;
        after = page[limit - 1];
      }
    };
    const failedRated = newestFirst.filter((r) => r.failed && r.rated).map((r) => r.id);
    expect(failedRated).toHaveLength(10);
    expect(await pages({ rating: 2, status: 'failed' }, 3)).toEqual(failedRated);
    expect(await pages({ rating: 2, status: 'failed' }, 50)).toEqual(failedRated);
    const salesEmbeddings = newestFirst.filter((r) => r.sales && r.embeddings).map((r) => r.id);
    expect(salesEmbeddings).toHaveLength(3);
    expect(await pages({ analysisCategory: 'sales', endpoint: 'embeddings' }, 2)).toEqual(salesEmbeddings);
    // a time range: [from, to) on the exchanges' times
    const from = new Date(t0 + 12_000);
    const to = new Date(t0 + 42_000);
    expect(await pages({ rating: 2, status: 'failed', from, to }, 2)).toEqual(
      newestFirst.filter((r) => r.failed && r.rated && r.at >= from.getTime() && r.at < to.getTime()).map((r) => r.id),
    );
    // an unknown cursor: an empty page
    expect(await repo.listPage(orgId, { rating: 2, status: 'failed' }, 3, 'ex_none')).toEqual([]);
    // with a model, or both a status and a route, the walk checks each row: the same answers
    expect(await pages({ rating: 2, status: 'failed', model: 'gpt-4o-mini' }, 4)).toEqual(failedRated);
    expect(await pages({ rating: 2, status: 'failed', endpoint: 'embeddings' }, 4)).toEqual(
      newestFirst.filter((r) => r.failed && r.rated && r.embeddings).map((r) => r.id),
    );
  });

  it('checks the scan of a user, a session or a persona against the category read once from its index (no per-row lookup)', async () => {
    const orgId = randomUUID();
    await database.dataSource.query(
      `INSERT INTO analysis_results (organization_id, exchange_id, cache_key, analysis_type, primary_category, model)
       SELECT $1, 'ex_' || i, 'key_' || i, 'intent', (ARRAY['billing', 'sales', 'other'])[1 + i % 3], 'gpt-4o-mini'
         FROM generate_series(1, 3000) i`,
      [orgId],
    );
    await database.dataSource.query('ANALYZE analysis_results');
    const spy = vi.spyOn(SelectQueryBuilder.prototype, 'getQueryAndParameters');
    try {
      await repo.listPage(orgId, { analysisCategory: 'billing', externalUserId: 'medium-user' }, 20, undefined);
      const lists = spy.mock.results.map((r) => r.value as [string, unknown[]]).filter(([q]) => q.includes('analysis_results'));
      // the first found no row of the list past the months; the second read the newest months' span; the third
      // the older rows (the span held less than a page: this organization has no exchange)
      expect(lists).toHaveLength(3);
      const [sql, params] = lists[1];
      const plan = await database.dataSource.transaction(async (m) => {
        await m.query(`SET LOCAL work_mem = '32MB'`);
        await m.query(`SET LOCAL enable_seqscan = off`);
        return (await m.query(`EXPLAIN ${sql}`, params)).map((r: Record<string, string>) => Object.values(r)[0]).join('\n');
      });
      expect(plan).toContain('ix_analysis_results_category');
      expect(plan).toContain('hashed SubPlan');
      // within the monthly partitions: the default one is not read, and the months are read newest first
      expect(plan).not.toContain('exchanges_default');
      expect(plan).not.toContain('Merge Append');
    } finally {
      spy.mockRestore();
    }
  });
  it('reads a page of a combined filter from the newest months when an older month is apart from them (a gap), and the older rows after them', async () => {
    const orgId = randomUUID();
    // a month long before the others, with no partition between: a gap
    await database.dataSource.query(`CREATE TABLE exchanges_p2020_01 PARTITION OF exchanges FOR VALUES FROM ('2020-01-01T00:00:00Z') TO ('2020-02-01T00:00:00Z')`);
    const t0 = Date.now() - 3_600_000;
    const recent = [];
    for (let i = 0; i < 3; i++) recent.push(await exchange(orgId, `gap${i}`, new Date(t0 + i * 60_000)));
    const old = [await exchange(orgId, 'jan1', new Date('2020-01-10T00:00:00Z')), await exchange(orgId, 'jan2', new Date('2020-01-20T00:00:00Z'))];
    for (const id of [...recent, ...old]) await result(orgId, id, 'billing');
    const listed = async (limit: number, after?: string) =>
      (await repo.listPage(orgId, { analysisCategory: 'billing' }, limit, after)).map((r) => r.exchange.id);
    const newestFirst = [recent[2], recent[1], recent[0], old[1], old[0]];
    expect(await listed(10)).toEqual(newestFirst);
    expect(await listed(2, recent[1])).toEqual([recent[0], old[1], old[0]]);
    expect(await listed(1, recent[0])).toEqual([old[1], old[0]]);
    expect(await listed(3, old[1])).toEqual([old[0]]);

    const combined = async (limit: number, after?: string) =>
      (await repo.listPage(orgId, { analysisCategory: 'billing', externalUserId: 'medium-user' }, limit, after)).map((r) => r.exchange.id);
    expect(await combined(10)).toEqual(newestFirst);
    expect(await combined(2, recent[1])).toEqual([recent[0], old[1], old[0]]);
    expect(await combined(1, recent[0])).toEqual([old[1], old[0]]);
    expect(await combined(3, old[1])).toEqual([old[0]]);

    const spy = vi.spyOn(SelectQueryBuilder.prototype, 'getQueryAndParameters');
    try {
      expect(await combined(1)).toEqual([recent[2], recent[1]]);
      const lists = spy.mock.results.map((r) => r.value as [string, unknown[]]).filter(([q]) => q.includes('analysis_results'));
      // a whole page within the newest months: the older rows are not read
      expect(lists).toHaveLength(2);
      const [sql, params] = lists[1];
      const plan = (await database.dataSource.query(`EXPLAIN ${sql}`, params)).map((r: Record<string, string>) => Object.values(r)[0]).join('\n');
      expect(plan).not.toContain('exchanges_p2020_01');
      expect(plan).not.toContain('exchanges_default');
      expect(plan).not.toContain('Merge Append');
    } finally {
      spy.mockRestore();
    }
  });
});

describe('lists of exchanges by model', () => {
  it('reads a model only over the days it has exchanges on (the daily usage says which): none for a model none has', async () => {
    const orgId = randomUUID();
    const now = Date.now();
    const old: string[] = [];
    for (let i = 0; i < 3; i++) old.push(await exchange(orgId, `old${i}`, new Date(now - 3 * 86_400_000 + i * 1_000), { model: 'gpt-3.5-turbo' }));
    // 150 newer calls of another model, today
    for (let i = 0; i < 150; i++) await exchange(orgId, `new${i}`, new Date(now - 600_000 + i * 1_000));
    await database.dataSource.query('ANALYZE exchanges');
    const newestFirst = [...old].reverse();
    const [plan] = await judgedPagePlan(() => repo.listPage(orgId, { model: 'gpt-3.5-turbo' }, 10, undefined), newestFirst, 0);
    // its three exchanges — not the 150 newer ones of the other model, read first by the scan from the newest row
    expect(exchangeRowsRead(plan)).toBe(3);
    // a model none has: no list is read at all
    const statements = vi.spyOn(SelectQueryBuilder.prototype, 'getQueryAndParameters');
    try {
      expect(await repo.listPage(orgId, { model: 'gpt-3.5-turbo-typo' }, 10, undefined)).toEqual([]);
      expect(await repo.listPage(orgId, { model: 'gpt-3.5-turbo-typo', rating: 4 }, 10, undefined)).toEqual([]);
      expect(statements.mock.results.filter((r) => (r.value as [string])[0].includes('"exchanges"'))).toHaveLength(0);
    } finally {
      statements.mockRestore();
    }
    // with a cursor and with another filter, the same answers
    expect((await repo.listPage(orgId, { model: 'gpt-3.5-turbo' }, 1, newestFirst[0])).map((r) => r.exchange.id)).toEqual(newestFirst.slice(1, 3));
    expect((await repo.listPage(orgId, { model: 'gpt-3.5-turbo', externalUserId: 'medium-user' }, 10, undefined)).map((r) => r.exchange.id)).toEqual(newestFirst);
    expect(await repo.listPage(orgId, { model: 'gpt-3.5-turbo', to: new Date(now - 4 * 86_400_000) }, 10, undefined)).toEqual([]);
    expect(await repo.listPage(orgId, { model: 'gpt-4o-mini' }, 200, undefined)).toHaveLength(150);
    // a row deleted leaves its day when it was the day's last of the model
    await database.dataSource.query(`DELETE FROM exchanges WHERE id = ANY($1)`, [old]);
    expect(await repo.listPage(orgId, { model: 'gpt-3.5-turbo' }, 10, undefined)).toEqual([]);
  });
});

describe('lists of exchanges by status', () => {
  it('reads a page of a status calls seldom end with from its own index, and only the page’s rows', async () => {
    const orgId = randomUUID();
    const t0 = Date.now() - 3_600_000;
    const failed: string[] = [];
    const interrupted: string[] = [];
    for (let i = 0; i < 60; i++) {
      const row = pendingRow(`status${i}`, { organizationId: orgId, createdAt: new Date(t0 + i * 1_000) });
      await bench.recorder.begin(row);
      const status = i % 10 === 0 ? 'upstream_error' : i === 55 ? 'interrupted' : 'completed';
      await bench.recorder.complete(outcomeOf(row, { status, upstreamStatus: status === 'completed' ? 200 : 500 }));
      if (status === 'upstream_error') failed.push(row.id);
      if (status === 'interrupted') interrupted.push(row.id);
    }
    // 150 newer calls that succeeded
    for (let i = 0; i < 150; i++) await exchange(orgId, `ok${i}`, new Date(t0 + 100_000 + i * 100));
    await database.dataSource.query('ANALYZE exchanges');
    const newestFirst = [...failed].reverse();
    const [plan] = await judgedPagePlan(() => repo.listPage(orgId, { status: 'upstream_error' }, 3, newestFirst[0]), newestFirst.slice(1, 5), 0);
    const text = JSON.stringify(plan);
    expect(text).toMatch(/organization_id_status_created_at_id_idx/);
    expect(text).not.toContain('"Sort"');
    // the page and one more — not the 150 newer calls that succeeded, nor the older ones
    expect(exchangeRowsRead(plan)).toBe(4);
    expect((await repo.listPage(orgId, { status: 'interrupted' }, 10, undefined)).map((r) => r.exchange.id)).toEqual(interrupted);
    expect(await repo.listPage(orgId, { status: 'client_aborted' }, 10, undefined)).toEqual([]);
    // the statuses it leaves out are read as before: the newest completed ones first
    expect((await repo.listPage(orgId, { status: 'completed' }, 1, undefined)).map((r) => r.exchange.id)).toHaveLength(2);
  });
});

describe('lists of exchanges by endpoint', () => {
  it('reads a page of a route other than the two model calls from its own index, and only the page’s rows; none for a route none took', async () => {
    const orgId = randomUUID();
    const t0 = Date.now() - 3_600_000;
    const embeddings: string[] = [];
    for (let i = 0; i < 8; i++) embeddings.push(await exchange(orgId, `emb${i}`, new Date(t0 + i * 1_000), { endpoint: 'embeddings' }));
    // 150 newer model calls, of both kinds
    for (let i = 0; i < 150; i++) await exchange(orgId, `call${i}`, new Date(t0 + 100_000 + i * 100), { endpoint: i % 3 === 0 ? 'chat.completions' : 'responses' });
    await database.dataSource.query('ANALYZE exchanges');
    const newestFirst = [...embeddings].reverse();
    const [plan] = await judgedPagePlan(() => repo.listPage(orgId, { endpoint: 'embeddings' }, 3, newestFirst[0]), newestFirst.slice(1, 5), 0);
    const text = JSON.stringify(plan);
    expect(text).toMatch(/organization_id_endpoint_created_at_id_idx/);
    expect(text).not.toContain('"Sort"');
    // the page and one more — not the 150 newer model calls, nor the older embeddings
    expect(exchangeRowsRead(plan)).toBe(4);
    // a route none took, and a misspelt one: the index has none of them (the scan read every row of the organization)
    for (const endpoint of ['audio.speech', 'embedding']) {
      const [none] = await judgedPagePlan(() => repo.listPage(orgId, { endpoint }, 10, undefined), [], 0);
      expect(JSON.stringify(none)).toMatch(/organization_id_endpoint_created_at_id_idx/);
      expect(exchangeRowsRead(none)).toBe(0);
    }
    // the two it leaves out are read as before, newest first
    expect((await repo.listPage(orgId, { endpoint: 'chat.completions' }, 2, undefined)).map((r) => r.exchange.id)).toHaveLength(3);
    expect(await repo.listPage(orgId, { endpoint: 'responses' }, 200, undefined)).toHaveLength(100);
  });
});

describe('usage reports', () => {
  it('read an end that cuts a day the shorter way: the part of the day in the period, or the whole day less the rest; the same answer', async () => {
    const orgId = randomUUID();
    const [user] = await database.dataSource.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [orgId]).catch(async () => {
      await database.dataSource.query(`INSERT INTO organizations (id, name) VALUES ($1, $2)`, [orgId, `org-${orgId}`]);
      return database.dataSource.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [orgId]);
    });
    const rows = async (times: string[], model = 'gpt-4o-mini', status = 'completed') => {
      for (const at of times) {
        await database.dataSource.query(
          `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body,
                                  input_tokens, output_tokens, total_tokens, cost, created_at)
           VALUES ($1, $2, $3, 'alice', 's', 'responses', $4, $5, '{}', 3, 4, 7, 0.001, $6)`,
          [`req_usage_${randomUUID()}`, orgId, user.id, model, status, at],
        );
      }
    };
    const analysis = async (at: string) =>
      database.dataSource.query(
        `INSERT INTO analysis_results (organization_id, exchange_id, cache_key, analysis_type, primary_category, model, user_id,
                                       input_tokens, output_tokens, total_tokens, cost, status, created_at)
         VALUES ($1, 'req_x', md5(random()::text), 'intent', 'billing', 'gpt-4o-mini', $2, 10, 2, 12, 0.0001, 'completed', $3)`,
        [orgId, user.id, at],
      );
    const spread = (day: string, fromHour: number, toHour: number, n: number) =>
      Array.from({ length: n }, (_, i) => new Date(Date.parse(`${day}T00:00:00Z`) + (fromHour + ((toHour - fromHour) * i) / n) * 3_600_000).toISOString());
    // the day the period starts in: one call before its start (00:30), fifty after (02:00–20:00)
    await rows(['2026-03-07T00:30:00Z']);
    await rows(spread('2026-03-07', 2, 20, 50));
    await rows(['2026-03-07T21:00:00Z'], 'gpt-4o', 'upstream_error');
    // whole days
    await rows(['2026-03-08T12:00:00Z', '2026-03-09T23:30:00Z']);
    // the day it ends in: fifty before its end (00:00–18:00), one after (20:00)
    await rows(spread('2026-03-10', 0, 18, 50));
    await rows(['2026-03-10T20:00:00Z']);
    await analysis('2026-03-07T00:10:00Z');
    await analysis('2026-03-07T05:00:00Z');
    await analysis('2026-03-10T22:00:00Z');
    await database.dataSource.query('ANALYZE exchanges');

    /** the report, and the rows of `exchanges` its statement read (under EXPLAIN ANALYZE) */
    const report = async (from: string, to: string, group: 'model' | 'day' | 'user' = 'model') => {
      const reads: [string, unknown[]][] = [];
      const read = repo as unknown as { readUsage(sql: string, params: unknown[]): Promise<unknown[]> };
      const readUsage = read.readUsage;
      read.readUsage = function (sql: string, params: unknown[]) {
        reads.push([sql, params]);
        return readUsage.call(this, sql, params);
      };
      try {
        const r = await repo.usageByGroup(orgId, { from: new Date(from), to: new Date(to) }, group, { limit: null, order: 'key' }, 6);
        expect(reads).toHaveLength(1);
        const plan = await database.dataSource.transaction(async (m) => {
          // these tables are small enough to be read whole, which the planner would rather do than use an index
          await m.query(`SET LOCAL max_parallel_workers_per_gather = 0`);
          await m.query(`SET LOCAL enable_seqscan = off`);
          return (await m.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${reads[0][0]}`, reads[0][1]))[0]['QUERY PLAN'][0].Plan as Record<string, unknown>;
        });
        return { rows: JSON.parse(r.json) as { key: string; source: string; requests: number; errors: number; tokens: { total: number } }[], read: exchangeRowsRead(plan) };
      } finally {
        read.readUsage = readUsage;
      }
    };
    /** what the period holds, counted from the rows themselves */
    const counted = async (from: string, to: string) => {
      const [e] = await database.dataSource.query(
        `SELECT count(*)::int AS n, coalesce(sum(total_tokens), 0)::int AS tokens, (count(*) FILTER (WHERE status <> 'completed'))::int AS errors
           FROM exchanges WHERE organization_id = $1 AND created_at >= $2 AND created_at < $3`,
        [orgId, from, to],
      );
      const [a] = await database.dataSource.query(`SELECT count(*)::int AS n FROM analysis_results WHERE organization_id = $1 AND created_at >= $2 AND created_at < $3`, [orgId, from, to]);
      return { requests: e.n, tokens: e.tokens, errors: e.errors, analyses: a.n };
    };
    const totals = (rows: { source: string; requests: number; errors: number; tokens: { total: number } }[]) => ({
      requests: rows.filter((r) => r.source === 'proxy').reduce((n, r) => n + r.requests, 0),
      tokens: rows.filter((r) => r.source === 'proxy').reduce((n, r) => n + r.tokens.total, 0),
      errors: rows.filter((r) => r.source === 'proxy').reduce((n, r) => n + r.errors, 0),
      analyses: rows.filter((r) => r.source === 'analysis').reduce((n, r) => n + r.requests, 0),
    });

    // from 01:00 (23 hours of its day) to 19:00 (19 hours of its): each end's day whole, less the hour before the
    // start and the five after the end — the two calls there, not the hundred inside the period
    const long = await report('2026-03-07T01:00:00Z', '2026-03-10T19:00:00Z');
    expect(totals(long.rows)).toEqual(await counted('2026-03-07T01:00:00Z', '2026-03-10T19:00:00Z'));
    expect(totals(long.rows)).toMatchObject({ requests: 103, errors: 1, analyses: 1 });
    expect(long.read).toBe(2);
    // a model whose only call lies in the period's first day: counted once, with its error
    expect(long.rows.find((r) => r.key === 'gpt-4o')).toMatchObject({ requests: 1, errors: 1 });
    // by day: the first and last days hold what the period holds of them
    const byDay = (await report('2026-03-07T01:00:00Z', '2026-03-10T19:00:00Z', 'day')).rows.filter((r) => r.source === 'proxy');
    expect(byDay.map((r) => [r.key, r.requests])).toEqual([['2026-03-07', 51], ['2026-03-08', 1], ['2026-03-09', 1], ['2026-03-10', 50]]);
    // ends that take less than half of their days: those parts read (the call of 20:00–24:00, the 17 of 00:00–06:00)
    const short = await report('2026-03-07T20:00:00Z', '2026-03-10T06:00:00Z');
    expect(totals(short.rows)).toEqual(await counted('2026-03-07T20:00:00Z', '2026-03-10T06:00:00Z'));
    expect(short.read).toBe(1 + 17);
    // a period within one day, and one across a midnight with no whole day: read from the rows
    for (const [from, to] of [
      ['2026-03-07T01:00:00Z', '2026-03-07T23:00:00Z'],
      ['2026-03-09T12:00:00Z', '2026-03-10T12:00:00Z'],
    ]) expect(totals((await report(from, to)).rows)).toEqual(await counted(from, to));
    // a user's key whose calls all lie outside the period on those days: no row for it
    await rows(['2026-03-10T23:00:00Z'], 'o3-mini');
    expect((await report('2026-03-07T01:00:00Z', '2026-03-10T19:00:00Z')).rows.map((r) => r.key)).not.toContain('o3-mini');
  });
});

describe('persona analytics', () => {
  it('count the persona’s ratings and analysis results from their indexes alone (no table reads, no exchange read)', async () => {
    const orgId = randomUUID();
    const personaId = randomUUID();
    await database.dataSource.query(
      `INSERT INTO analysis_results (organization_id, exchange_id, persona_id, cache_key, analysis_type, primary_category, model)
       SELECT $1, 'ex_' || i, $2, 'key_' || i, 'intent', 'billing', 'gpt-4o-mini' FROM generate_series(1, 2000) i`,
      [orgId, personaId],
    );
    await database.dataSource.query(
      `INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, rated_at)
       SELECT $1, 'ex_' || i, gen_random_uuid(), $2, 1 + i % 5, now() FROM generate_series(1, 2000) i`,
      [orgId, personaId],
    );
    await database.dataSource.query('VACUUM ANALYZE analysis_results');
    await database.dataSource.query('VACUUM ANALYZE ratings');
    const source = entities.getRepository(ExchangeEntity);
    const spy = vi.spyOn(source, 'query');
    try {
      const period = { from: new Date(Date.now() - 365 * 86_400_000), to: new Date() };
      const reads = new ExchangesRepository(source, bench.recorder);
      await reads.personaRatings(orgId, personaId, period);
      await reads.personaAnalysis(orgId, personaId, period);
      const plans = [];
      for (const [sql, params] of spy.mock.calls as [string, unknown[]][]) {
        plans.push(
          await database.dataSource.transaction(async (m) => {
            await m.query(`SET LOCAL enable_seqscan = off`);
            await m.query(`SET LOCAL enable_bitmapscan = off`);
            // as on a persona with exchanges: its rows hashed, not probed one by one
            await m.query(`SET LOCAL enable_nestloop = off`);
            return (await m.query(`EXPLAIN ${sql}`, params)).map((r: Record<string, string>) => Object.values(r)[0]).join('\n');
          }),
        );
      }
      expect(plans).toHaveLength(2);
      expect(plans[0]).toContain('Index Only Scan using ix_ratings_persona_reads');
      expect(plans[1]).toContain('Index Only Scan using ix_analysis_results_persona_reads');
      // the judgements carry their exchange's time and version: the persona's exchanges are not read
      for (const plan of plans) expect(plan).not.toMatch(/on exchanges|exchanges_p\d|exchanges_default/);
    } finally {
      spy.mockRestore();
    }
  });
});
