import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListByRareEndpoint1797400000000 } from '../../migrations/1797400000000-ListByRareEndpoint';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migration that indexes the routes other than the two model calls, on a database that already holds exchanges:
 * the index is on the partitioned table and on every month, holds the other routes' rows only, and the way back
 * removes it everywhere. Its own database: other test files share DATABASE_URL.
 */
describe.skipIf(!DATABASE_URL)('migration ListByRareEndpoint on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_list_endpoint');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('indexes every month’s calls of the other routes by organization and time; and back', async () => {
    const at = MIGRATIONS.indexOf(ListByRareEndpoint1797400000000);
    expect(at).toBeGreaterThan(0);
    const before = await db.open(MIGRATIONS.slice(0, at));
    await before.runMigrations({ transaction: 'each' });
    const [org] = await before.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`org-${randomUUID()}`]);
    const [user] = await before.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [org.id]);
    const endpoints = ['responses', 'chat.completions', 'embeddings', 'responses', 'files.content', 'moderations', 'chat.completions'];
    for (const [i, endpoint] of endpoints.entries()) {
      await before.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, created_at)
         VALUES ($1, $2, $3, 'alice', 's', $4, 'gpt-4o-mini', 'completed', '{}', now() - $5 * interval '1 minute')`,
        [`req_endpoint_${i}`, org.id, user.id, endpoint, i],
      );
    }
    // a build cut short before (here: a unique index of that name failing on the organization's rows) left an
    // invalid index where the migration puts one month's
    const [month] = await before.query(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'exchanges'::regclass AND c.relname <> 'exchanges_default' AND EXISTS (SELECT 1 FROM exchanges e WHERE e.tableoid = c.oid)`,
    );
    const leftover = `${month.name}_organization_id_endpoint_created_at_id_idx`;
    await expect(before.query(`CREATE UNIQUE INDEX CONCURRENTLY "${leftover}" ON "${month.name}" (organization_id)`)).rejects.toThrow(/could not create unique index/);
    expect(await before.query(`SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = $1::regclass`, [`"${leftover}"`])).toEqual([{ valid: false }]);
    // another month with rows, rebuilt by the server (its indexes packed full: the mark of a closed month done)
    const [closed] = await before.query(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'exchanges'::regclass AND c.relname NOT IN ('exchanges_default', $1) ORDER BY 1 LIMIT 1`,
      [month.name],
    );
    for (const { name } of await before.query(`SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass`, [`"${closed.name}"`]))
      await before.query(`ALTER INDEX ${name} SET (fillfactor = 100)`);
    await before.destroy();

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
    const indexes = () =>
      after.query(
        `SELECT c.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS def
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
          WHERE (c.relname = 'exchanges' OR c.relname LIKE 'exchanges\\_%') AND pg_get_indexdef(i.oid) LIKE '%(organization_id, endpoint, created_at, id)%'
          ORDER BY 1`,
      ) as Promise<{ table_name: string; index_name: string; def: string }[]>;
    const made = await indexes();
    const months: { n: number }[] = await after.query(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'exchanges'::regclass`);
    // the partitioned table's and one on each of its partitions
    expect(made).toHaveLength(months[0].n + 1);
    expect(made.find((r) => r.table_name === 'exchanges')!.index_name).toBe('ix_exchanges_org_endpoint');
    for (const r of made) expect(r.def).toMatch(/WHERE \(endpoint <> ALL \(ARRAY\['responses'::text, 'chat.completions'::text\]\)\)/);
    // every one valid, the leftover's place taken by a sound index, and the partitioned one valid: all attached
    const valid: { valid: boolean }[] = await after.query(
      `SELECT x.indisvalid AS valid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relname = ANY($1)`,
      [made.map((r) => r.index_name)],
    );
    expect(valid).toHaveLength(made.length);
    expect(valid.every((v) => v.valid)).toBe(true);
    expect(made.find((r) => r.index_name === leftover)?.def).not.toMatch(/UNIQUE/);
    // the rebuilt month's new index packed as its others are (else the server would rebuild the month again); not the rest
    const packed = made.filter((r) => /fillfactor='?100'?/.test(r.def)).map((r) => r.table_name);
    expect(packed).toEqual([closed.name]);
    // what it holds: the rows of the routes left to it, read from it alone
    await after.query('ANALYZE exchanges');
    const held = await after.transaction(async (m) => {
      await m.query('SET LOCAL enable_seqscan = off');
      await m.query('SET LOCAL enable_bitmapscan = off');
      const sql = `SELECT endpoint FROM exchanges WHERE organization_id = $1 AND endpoint NOT IN ('responses', 'chat.completions') ORDER BY endpoint`;
      const plan = JSON.stringify(await m.query(`EXPLAIN (FORMAT JSON) ${sql}`, [org.id]));
      expect(plan).toMatch(/organization_id_endpoint_created_at_id_idx/);
      return (await m.query(sql, [org.id])) as { endpoint: string }[];
    });
    expect(held.map((r) => r.endpoint)).toEqual(['embeddings', 'files.content', 'moderations']);

    await after.undoLastMigration({ transaction: 'each' });
    expect(await indexes()).toEqual([]);
    await after.destroy();
  });
});
