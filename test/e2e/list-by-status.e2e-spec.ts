import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListByStatus1797300000000 } from '../../migrations/1797300000000-ListByStatus';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migration that indexes the statuses calls seldom end with, on a database that already holds exchanges: the
 * index is on the partitioned table and on every month, holds the failed and interrupted rows only, and the way
 * back removes it everywhere. Its own database: other test files share DATABASE_URL.
 */
describe.skipIf(!DATABASE_URL)('migration ListByStatus on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_list_status');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('indexes every month’s rare statuses by organization and time; and back', async () => {
    const at = MIGRATIONS.indexOf(ListByStatus1797300000000);
    expect(at).toBeGreaterThan(0);
    const before = await db.open(MIGRATIONS.slice(0, at));
    await before.runMigrations({ transaction: 'each' });
    const [org] = await before.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`org-${randomUUID()}`]);
    const [user] = await before.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [org.id]);
    const statuses = ['completed', 'completed', 'pending', 'upstream_error', 'interrupted', 'queued', 'client_aborted'];
    for (const [i, status] of statuses.entries()) {
      await before.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, created_at)
         VALUES ($1, $2, $3, 'alice', 's', 'responses', 'gpt-4o-mini', $4, '{}', now() - $5 * interval '1 minute')`,
        [`req_status_${i}`, org.id, user.id, status, i],
      );
    }
    await before.destroy();

    const after = await db.open(MIGRATIONS.slice(0, at + 1));
    // built month by month with CREATE INDEX CONCURRENTLY (see list-by-endpoint.e2e-spec), outside a transaction
    expect(new ListByStatus1797300000000().transaction).toBe(false);
    await after.runMigrations({ transaction: 'each' });
    const indexes = () =>
      after.query(
        `SELECT c.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS def
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
          WHERE (c.relname = 'exchanges' OR c.relname LIKE 'exchanges\\_%') AND pg_get_indexdef(i.oid) LIKE '%(organization_id, status, created_at, id)%'
          ORDER BY 1`,
      ) as Promise<{ table_name: string; index_name: string; def: string }[]>;
    const made = await indexes();
    const months: { n: number }[] = await after.query(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'exchanges'::regclass`);
    // the partitioned table's and one on each of its partitions
    expect(made).toHaveLength(months[0].n + 1);
    expect(made.find((r) => r.table_name === 'exchanges')!.index_name).toBe('ix_exchanges_org_status');
    for (const r of made) expect(r.def).toMatch(/WHERE \(status <> ALL \(ARRAY\['completed'::text, 'pending'::text\]\)\)/);
    // what it holds: the rows of the statuses left to it
    const held: { status: string }[] = await after.query(
      `SELECT status FROM exchanges WHERE organization_id = $1 AND status NOT IN ('completed', 'pending') ORDER BY status`,
      [org.id],
    );
    expect(held.map((r) => r.status)).toEqual(['client_aborted', 'interrupted', 'queued', 'upstream_error']);

    await after.undoLastMigration({ transaction: 'each' });
    expect(await indexes()).toEqual([]);
    await after.destroy();
  });
});
