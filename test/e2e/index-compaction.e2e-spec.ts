import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { ExchangeEntity } from '../../src/exchanges/exchange.entity';
import { ExchangesRepository } from '../../src/exchanges/exchanges.repository';
import type { ExchangeRecorder } from '../../src/exchanges/recorder/exchange-recorder.service';
import { JsonLogger } from '../../src/common/logger';
import { runMigrations } from '../../src/database/migrate';
import { MIGRATIONS } from '../../src/database/migrations';
import { PARTITIONS_LOCK_CLASS } from '../../src/retention/exchange-partitions';
import { COMPACT_AFTER_MS, COMPACT_RETRY_MS, ExchangeIndexCompaction, USAGE_INDEX_SUFFIX } from '../../src/retention/index-compaction';
import { createTestApp } from '../support/create-test-app';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * Closed months' indexes rebuilt compact, on a database of its own (the rebuild waits for every transaction that
 * touches the month, and other test files share DATABASE_URL): a month written in time order under thousands of
 * users, as the proxy writes it, has half-empty index pages; once the month is a day over its indexes are rebuilt
 * smaller, still serving the parent's indexes, and marked, and the month gets the usage report's index, which the
 * report's part-days then read alone; a rebuild cut short is cleaned up and done on the next run; one process at a
 * time; never on the embedded database.
 */
describe.skipIf(!DATABASE_URL)('closed months: indexes rebuilt compact', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;
  let ds: DataSource;
  let url: string;
  const logs: string[] = [];
  const compaction = (embedded = false) =>
    new ExchangeIndexCompaction(ds, { url, embedded, maxPool: 2, close: async () => {} }, new JsonLogger('debug', (line) => logs.push(line)));
  const MARCH = 'exchanges_p2025_03';
  const MARCH_END = new Date('2025-04-01T00:00:00Z');

  /** the month's indexes: name, size, valid, marked, and the parent index each one serves */
  const indexesOf = (partition: string) =>
    ds.query(
      `SELECT i.relname AS name, pg_relation_size(i.oid)::int8::float8 AS bytes, x.indisvalid AS valid, i.relfilenode::text AS file,
              coalesce('fillfactor=100' = ANY(i.reloptions), false) AS marked, p.relname AS parent
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         LEFT JOIN pg_inherits h ON h.inhrelid = i.oid LEFT JOIN pg_class p ON p.oid = h.inhparent
        WHERE x.indrelid = to_regclass($1) ORDER BY i.relname`,
      [partition],
    ) as Promise<{ name: string; bytes: number; valid: boolean; file: string; marked: boolean; parent: string | null }[]>;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_compaction');
    ds = await db.open(MIGRATIONS);
    await runMigrations(ds);
    url = (ds.options as { url: string }).url;
    const [org] = await ds.query(`INSERT INTO organizations (name) VALUES ('compaction') RETURNING id`);
    const [user] = await ds.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'u') RETURNING id`, [org.id]);
    await ds.query(`CREATE TABLE ${MARCH} PARTITION OF exchanges FOR VALUES FROM ('2025-03-01T00:00:00Z') TO ('2025-04-01T00:00:00Z')`);
    // a month as the proxy writes it: in time order, 3,000 users and their sessions interleaved
    await ds.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, input_tokens, cost, created_at)
       SELECT 'req_' || i, $1, $2, 'user-' || ((i * 7919) % 3000), 'session-' || ((i * 7919) % 3000) || '-' || (i / 18000), 'responses', 'gpt-4o-mini',
              'completed', '{}', 10, 0.001, '2025-03-01T00:00:00Z'::timestamptz + i * interval '60 seconds'
         FROM generate_series(1, 40000) i`,
      [org.id, user.id],
    );
  });

  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  it('a month is due a day after it ends; the open month and the months ahead never are', async () => {
    const c = compaction();
    expect(await c.due(new Date(MARCH_END.getTime() + COMPACT_AFTER_MS - 60_000))).not.toContain(MARCH);
    const due = await c.due(new Date(MARCH_END.getTime() + COMPACT_AFTER_MS));
    expect(due).toContain(MARCH);
    // the partitions made for the current month and the ones ahead
    expect(await c.due(new Date())).toEqual([MARCH]);
  });

  it('rebuilds the month smaller, still serving the parent indexes, marks it, and is done with it', async () => {
    const before = await indexesOf(MARCH);
    expect(before.every((i) => i.valid && !i.marked && i.parent)).toBe(true);
    const now = new Date();
    const others = await Promise.all((await ds.query(`SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = 'exchanges'::regclass`)).map((p: { name: string }) => p.name).filter((n: string) => n !== MARCH).map(async (n: string) => [n, await indexesOf(n)]));

    expect(await compaction().compactDue(now)).toBe(1);

    const all = await indexesOf(MARCH);
    const usage = all.find((i) => i.name === MARCH + USAGE_INDEX_SUFFIX);
    expect(usage).toMatchObject({ valid: true, marked: true, parent: null });
    const after = all.filter((i) => i !== usage);
    expect(after.map((i) => [i.name, i.parent, i.valid, i.marked])).toEqual(before.map((i) => [i.name, i.parent, true, true]));
    // rebuilt: new files, and the indexes written under thousands of keys at once take far less room
    for (const [b, a] of before.map((b, k) => [b, after[k]] as const)) expect(a.file).not.toBe(b.file);
    const size = (list: { name: string; bytes: number }[], part: string) => list.find((i) => i.name.includes(part))!.bytes;
    expect(size(after, 'external_user')).toBeLessThan(0.8 * size(before, 'external_user'));
    const total = (list: { bytes: number }[]) => list.reduce((n, i) => n + i.bytes, 0);
    expect(total(after)).toBeLessThan(total(before));
    // the other partitions untouched
    for (const [name, list] of others) expect(await indexesOf(name as string)).toEqual(list);
    expect(logs.some((l) => l.includes('exchange partition indexes compacted') && l.includes(MARCH))).toBe(true);

    // the usage report's part-days in that month are read from the month's usage index alone
    await ds.query(`VACUUM ANALYZE ${MARCH}`);
    const [org] = await ds.query(`SELECT id FROM organizations LIMIT 1`);
    const period = { from: new Date('2025-03-10T12:00:00Z'), to: new Date('2025-03-20T06:00:00Z') };
    const repo = new ExchangesRepository(ds.getRepository(ExchangeEntity), { caughtUp: async () => {} } as unknown as ExchangeRecorder);
    // the statement the report runs, as it runs it
    const reads: [string, unknown[]][] = [];
    const read = repo as unknown as { readUsage(sql: string, params: unknown[]): Promise<unknown[]> };
    const readUsage = read.readUsage.bind(repo);
    read.readUsage = (sql, params) => {
      reads.push([sql, params]);
      return readUsage(sql, params);
    };
    const report = await repo.usageByGroup(org.id, period, 'user', { limit: null, order: 'key' }, 6);
    expect(reads).toHaveLength(1);
    const [sql, params] = reads[0];
    const usagePlan = await ds.transaction(async (m) => {
      await m.query(`SET LOCAL max_parallel_workers_per_gather = 0`);
      return (await m.query(`EXPLAIN ${sql}`, params)).map((r: Record<string, string>) => Object.values(r)[0]).join('\n');
    });
    expect(usagePlan.match(new RegExp(`Index Only Scan using ${MARCH}${USAGE_INDEX_SUFFIX}`, 'g'))).toHaveLength(2);
    expect(usagePlan).not.toContain('Bitmap Heap Scan on exchanges');
    // and the answer counts every call of the period
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM exchanges WHERE created_at >= $1 AND created_at < $2`, [period.from, period.to]);
    const rows = JSON.parse(report.json) as { requests: number }[];
    expect(rows.reduce((t, r) => t + r.requests, 0)).toBe(n);
    expect(n).toBeGreaterThan(10_000);

    // reads still use them
    const plan = (await ds.query(`EXPLAIN SELECT id FROM exchanges WHERE organization_id = (SELECT id FROM organizations LIMIT 1) AND external_user_id = 'user-7' AND created_at < '2025-04-01'`))
      .map((r: Record<string, string>) => Object.values(r)[0])
      .join('\n');
    expect(plan).toContain(MARCH);
    expect(plan).toMatch(/external_user/);
    // done: nothing is due any more
    expect(await compaction().due(now)).toEqual([]);
    expect(await compaction().compactDue(now)).toBe(0);
  });

  it('a rebuild cut short (the process stopping) leaves nothing half-done: the next run drops its copies and rebuilds', async () => {
    const APRIL = 'exchanges_p2025_04';
    await ds.query(`CREATE TABLE ${APRIL} PARTITION OF exchanges FOR VALUES FROM ('2025-04-01T00:00:00Z') TO ('2025-05-01T00:00:00Z')`);
    await ds.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, created_at)
       SELECT 'apr_' || i, (SELECT id FROM organizations LIMIT 1), (SELECT id FROM users LIMIT 1), 'user-' || (i % 300), 's', 'responses', 'gpt-4o-mini', 'completed', '{}',
              '2025-04-01T00:00:00Z'::timestamptz + i * interval '10 minutes'
         FROM generate_series(1, 2000) i`,
    );
    const before = await indexesOf(APRIL);
    // a transaction writing to the month: the rebuild waits for it before it can swap its copies in
    const writer = new Client({ connectionString: url });
    await writer.connect();
    try {
      await writer.query(`BEGIN`);
      await writer.query(`UPDATE ${APRIL} SET model = model WHERE id = 'apr_1'`);
      const first = compaction();
      const running = first.compactDue(new Date());
      const outcome = running.then(
        () => 'finished',
        (err: Error) => err.message,
      );
      // wait until it is at work and waiting for the writer
      const deadline = Date.now() + 20_000;
      for (;;) {
        const waiting = await ds.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = 'openai-proxy-index-compaction' AND wait_event_type = 'Lock' AND query LIKE 'REINDEX%'`,
        );
        if (waiting.length) break;
        if (Date.now() > deadline) throw new Error('the rebuild never waited for the writer');
        await new Promise((r) => setTimeout(r, 50));
      }
      // another process meanwhile: the month is someone else's, and no month is dropped while it works (the lock
      // ExchangePartitions takes to drop one)
      expect(await compaction().compactDue(new Date())).toBe(0);
      expect(await ds.transaction(async (m) => (await m.query(`SELECT pg_try_advisory_xact_lock($1, 1) AS ok`, [PARTITIONS_LOCK_CLASS]))[0].ok)).toBe(false);
      await first.stop();
      expect(await outcome).toMatch(/cancel/i);
      const cut = await indexesOf(APRIL);
      expect(cut.some((i) => !i.valid && /_ccnew\d*$/.test(i.name))).toBe(true);
      expect(await compaction().due(new Date())).toContain(APRIL);
    } finally {
      await writer.query(`ROLLBACK`).catch(() => undefined);
      await writer.end();
    }

    expect(await compaction().compactDue(new Date())).toBe(1);
    const after = (await indexesOf(APRIL)).filter((i) => i.name !== APRIL + USAGE_INDEX_SUFFIX);
    expect(after.map((i) => [i.name, i.parent, i.valid, i.marked])).toEqual(before.map((i) => [i.name, i.parent, true, true]));
    expect((await indexesOf(APRIL)).find((i) => i.name === APRIL + USAGE_INDEX_SUFFIX)).toMatchObject({ valid: true, marked: true });
    expect(logs.some((l) => l.includes(APRIL) && /"leftovers_dropped":[1-9]/.test(l))).toBe(true);
    expect(await compaction().due(new Date())).toEqual([]);
  });

  it('an index an operator left invalid is not taken for a leftover, nor makes the month due again', async () => {
    // a failed CREATE INDEX CONCURRENTLY leaves an invalid index
    await ds.query(`CREATE UNIQUE INDEX CONCURRENTLY ops_unique_model ON exchanges_p2025_03 (model)`).catch(() => undefined);
    const ops = (await indexesOf(MARCH)).find((i) => i.name === 'ops_unique_model');
    expect(ops?.valid).toBe(false);
    expect(await compaction().due(new Date())).toEqual([]);
    await ds.query(`DROP INDEX ops_unique_model`);
  });

  it('does nothing on the embedded database, and waits after a run that failed', async () => {
    await ds.query(`CREATE TABLE exchanges_p2025_05 PARTITION OF exchanges FOR VALUES FROM ('2025-05-01T00:00:00Z') TO ('2025-06-01T00:00:00Z')`);
    expect(await compaction(true).compactDue(new Date())).toBe(0);
    expect((await indexesOf('exchanges_p2025_05')).some((i) => i.marked)).toBe(false);
    // a run that fails is not tried again on every run of the job, but after COMPACT_RETRY_MS
    const failing = new ExchangeIndexCompaction(ds, { url: 'postgres://postgres@127.0.0.1:1/none', embedded: false, maxPool: 2, close: async () => {} }, new JsonLogger('debug', () => {}));
    const now = new Date();
    await expect(failing.compactDue(now)).rejects.toThrow();
    expect(await failing.compactDue(new Date(now.getTime() + COMPACT_RETRY_MS - 1000))).toBe(0);
    await expect(failing.compactDue(new Date(now.getTime() + COMPACT_RETRY_MS))).rejects.toThrow();
    expect(await compaction().compactDue(new Date())).toBe(1);
  });

  it('a server does it on its own, beside its retention job, after the lock another process held, and counts the months in /metrics', async () => {
    await ds.query(`CREATE TABLE exchanges_p2025_06 PARTITION OF exchanges FOR VALUES FROM ('2025-06-01T00:00:00Z') TO ('2025-07-01T00:00:00Z')`);
    // a month with rows of an organization that keeps them (its retention job drops a month no one keeps)
    await ds.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, created_at)
       SELECT 'jun_' || i, (SELECT id FROM organizations LIMIT 1), (SELECT id FROM users LIMIT 1), 'user-' || i, 's', 'responses', 'gpt-4o-mini',
              'completed', '{}', '2025-06-01T00:00:00Z'::timestamptz + i * interval '1 hour'
         FROM generate_series(1, 100) i`,
    );
    expect(await compaction().due(new Date())).toEqual(['exchanges_p2025_06']);
    // another process holds the partitions' lock (dropping a month, say; the server's own retention run may too at
    // boot): the compaction waits for the next run of the job, here every 200 ms (a minute by default)
    const holder = new Client({ connectionString: url });
    await holder.connect();
    await holder.query(`SELECT pg_advisory_lock($1, 1)`, [PARTITIONS_LOCK_CLASS]);
    const app = await createTestApp({ DATABASE_URL: url, RETENTION_INTERVAL_MS: '200' });
    try {
      const done = /openai_proxy_retention_partitions_compacted_total 1\b/;
      await new Promise((r) => setTimeout(r, 1_000));
      let metrics = await fetch(`${app.url}/metrics`).then((r) => r.text());
      expect(metrics).not.toMatch(done);
      expect(await compaction().due(new Date())).toEqual(['exchanges_p2025_06']);
      await holder.end();
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
        metrics = await fetch(`${app.url}/metrics`).then((r) => r.text());
        if (done.test(metrics)) break;
      }
      expect(metrics).toMatch(done);
      expect(await compaction().due(new Date())).toEqual([]);
      expect(app.logs.some((l) => l.includes('exchange partition indexes compacted') && l.includes('exchanges_p2025_06'))).toBe(true);
    } finally {
      await holder.end().catch(() => undefined);
      await app.close();
    }
  });
});
