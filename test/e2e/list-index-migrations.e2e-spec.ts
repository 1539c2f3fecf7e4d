import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListByRareEndpoint1797400000000 } from '../../migrations/1797400000000-ListByRareEndpoint';
import { ListByStatus1797300000000 } from '../../migrations/1797300000000-ListByStatus';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migrations that index `exchanges` by a value calls seldom have (a status, a route), on a database that already
 * holds exchanges: the index is on the partitioned table and on every month, built month by month without holding
 * up writes, holds those rows only, and the way back removes it everywhere. Their own database: other test files
 * share DATABASE_URL.
 */
describe.skipIf(!DATABASE_URL)('migrations that index exchanges by a rare value, on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_list_index');
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** The database as it was before `migration`, with an organization's exchanges of these statuses and routes. */
  async function before(migration: unknown, rows: { status?: string; endpoint?: string }[]): Promise<{ ds: DataSource; at: number; orgId: string }> {
    const at = MIGRATIONS.indexOf(migration as (typeof MIGRATIONS)[number]);
    expect(at).toBeGreaterThan(0);
    const ds = await db.open(MIGRATIONS.slice(0, at));
    await ds.runMigrations({ transaction: 'each' });
    const [org] = await ds.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`org-${randomUUID()}`]);
    const [user] = await ds.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [org.id]);
    for (const [i, r] of rows.entries()) {
      await ds.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, created_at)
         VALUES ($1, $2, $3, 'alice', 's', $4, 'gpt-4o-mini', $5, '{}', now() - $6 * interval '1 minute')`,
        [`req_index_${randomUUID()}`, org.id, user.id, r.endpoint ?? 'responses', r.status ?? 'completed', i],
      );
    }
    return { ds, at, orgId: org.id };
  }

  /** The indexes on `exchanges` and its partitions with these columns, partitioned table first. */
  const indexesOn = (ds: DataSource, columns: string) =>
    ds.query(
      `SELECT c.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS def, x.indisvalid AS valid
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
        WHERE (c.relname = 'exchanges' OR c.relname LIKE 'exchanges\\_%') AND pg_get_indexdef(i.oid) LIKE $1
        ORDER BY 1`,
      [`%(${columns})%`],
    ) as Promise<{ table_name: string; index_name: string; def: string; valid: boolean }[]>;

  /** One index on the partitioned table and a valid one on each of its partitions, each with that predicate. */
  async function expectOnEveryMonth(ds: DataSource, columns: string, name: string, where: RegExp) {
    const made = await indexesOn(ds, columns);
    const partitions: { n: number }[] = await ds.query(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'exchanges'::regclass`);
    expect(made).toHaveLength(partitions[0].n + 1);
    expect(made.find((r) => r.table_name === 'exchanges')!.index_name).toBe(name);
    for (const r of made) expect(r.def).toMatch(where);
    // all valid: the partitioned one is once every partition's is attached
    expect(made.filter((r) => !r.valid)).toEqual([]);
    return made;
  }

  it('ListByStatus indexes every month’s rare statuses by organization and time; and back', async () => {
    const statuses = ['completed', 'completed', 'pending', 'upstream_error', 'interrupted', 'queued', 'client_aborted'];
    const { ds: old, at, orgId } = await before(ListByStatus1797300000000, statuses.map((status) => ({ status })));
    await old.destroy();

    const after = await db.open(MIGRATIONS.slice(0, at + 1));
    // built month by month with CREATE INDEX CONCURRENTLY (as the next test shows), outside a transaction
    expect(new ListByStatus1797300000000().transaction).toBe(false);
    await after.runMigrations({ transaction: 'each' });
    await expectOnEveryMonth(after, 'organization_id, status, created_at, id', 'ix_exchanges_org_status', /WHERE \(status <> ALL \(ARRAY\['completed'::text, 'pending'::text\]\)\)/);
    // what it holds: the rows of the statuses left to it
    const held: { status: string }[] = await after.query(
      `SELECT status FROM exchanges WHERE organization_id = $1 AND status NOT IN ('completed', 'pending') ORDER BY status`,
      [orgId],
    );
    expect(held.map((r) => r.status)).toEqual(['client_aborted', 'interrupted', 'queued', 'upstream_error']);

    await after.undoLastMigration({ transaction: 'each' });
    expect(await indexesOn(after, 'organization_id, status, created_at, id')).toEqual([]);
    await after.destroy();
  });

  it('ListByRareEndpoint indexes every month’s calls of the other routes, month by month and concurrently; and back', async () => {
    const endpoints = ['responses', 'chat.completions', 'embeddings', 'responses', 'files.content', 'moderations', 'chat.completions'];
    const { ds: old, at, orgId } = await before(ListByRareEndpoint1797400000000, endpoints.map((endpoint) => ({ endpoint })));
    // a build cut short before (here: a unique index of that name failing on the organization's rows) left an
    // invalid index where the migration puts one month's
    const [month] = await old.query(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'exchanges'::regclass AND c.relname <> 'exchanges_default' AND EXISTS (SELECT 1 FROM exchanges e WHERE e.tableoid = c.oid)`,
    );
    const leftover = `${month.name}_organization_id_endpoint_created_at_id_idx`;
    await expect(old.query(`CREATE UNIQUE INDEX CONCURRENTLY "${leftover}" ON "${month.name}" (organization_id)`)).rejects.toThrow(/could not create unique index/);
    expect(await old.query(`SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = $1::regclass`, [`"${leftover}"`])).toEqual([{ valid: false }]);
    // another month, rebuilt by the server (its indexes packed full: the mark of a closed month done)
    const [closed] = await old.query(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'exchanges'::regclass AND c.relname NOT IN ('exchanges_default', $1) ORDER BY 1 LIMIT 1`,
      [month.name],
    );
    for (const { name } of await old.query(`SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass`, [`"${closed.name}"`]))
      await old.query(`ALTER INDEX ${name} SET (fillfactor = 100)`);
    await old.destroy();

    const after = await db.open(MIGRATIONS.slice(0, at + 1));
    // each month's index is built concurrently, outside a transaction: the proxy's writes go on meanwhile
    const statements: string[] = [];
    const log = after.createQueryRunner();
    const run = log.query.bind(log);
    log.query = ((sql: string, params?: unknown[]) => (statements.push(sql), run(sql, params))) as typeof log.query;
    expect(new ListByRareEndpoint1797400000000().transaction).toBe(false);
    await new ListByRareEndpoint1797400000000().up(log);
    await log.release();
    const built = statements.filter((q) => /CREATE INDEX/.test(q));
    const partitions: { n: number }[] = await after.query(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'exchanges'::regclass`);
    expect(built.filter((q) => q.includes('CONCURRENTLY'))).toHaveLength(partitions[0].n);
    expect(built.filter((q) => !q.includes('CONCURRENTLY'))).toEqual([expect.stringContaining('ON ONLY "exchanges"')]);
    // run again, as after a failure part way: the months done are passed over, and the migration is recorded
    await after.runMigrations({ transaction: 'each' });
    const made = await expectOnEveryMonth(
      after,
      'organization_id, endpoint, created_at, id',
      'ix_exchanges_org_endpoint',
      /WHERE \(endpoint <> ALL \(ARRAY\['responses'::text, 'chat.completions'::text\]\)\)/,
    );
    // the leftover's place taken by a sound index
    expect(made.find((r) => r.index_name === leftover)?.def).not.toMatch(/UNIQUE/);
    // the rebuilt month's new index packed as its others are (else the server would rebuild the month again); not the rest
    expect(made.filter((r) => /fillfactor='?100'?/.test(r.def)).map((r) => r.table_name)).toEqual([closed.name]);
    // what it holds: the rows of the routes left to it, read from it alone
    await after.query('ANALYZE exchanges');
    const held = await after.transaction(async (m) => {
      await m.query('SET LOCAL enable_seqscan = off');
      await m.query('SET LOCAL enable_bitmapscan = off');
      const sql = `SELECT endpoint FROM exchanges WHERE organization_id = $1 AND endpoint NOT IN ('responses', 'chat.completions') ORDER BY endpoint`;
      expect(JSON.stringify(await m.query(`EXPLAIN (FORMAT JSON) ${sql}`, [orgId]))).toMatch(/organization_id_endpoint_created_at_id_idx/);
      return (await m.query(sql, [orgId])) as { endpoint: string }[];
    });
    expect(held.map((r) => r.endpoint)).toEqual(['embeddings', 'files.content', 'moderations']);

    await after.undoLastMigration({ transaction: 'each' });
    expect(await indexesOn(after, 'organization_id, endpoint, created_at, id')).toEqual([]);
    await after.destroy();
  });
});
