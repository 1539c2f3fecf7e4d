import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PartitionExchanges1796000001100 } from '../../migrations/1796000001100-PartitionExchanges';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migration that partitions `exchanges`, on a database that already holds exchanges: every row survives
 * as it was, in the partition of its month, with the indexes the table had, and ratings still find their
 * exchanges. Its own database: the conversion locks the whole table, and other test files share DATABASE_URL.
 */
describe.skipIf(!DATABASE_URL)('migration PartitionExchanges on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;
  const open = (migrations: unknown[]) => db.open(migrations);

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_partition');
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('keeps every row, spreads them over monthly partitions, and the way back keeps them too', async () => {
    const at = MIGRATIONS.indexOf(PartitionExchanges1796000001100);
    expect(at).toBeGreaterThan(0);
    const before = await open(MIGRATIONS.slice(0, at));
    await before.runMigrations({ transaction: 'each' });
    const [org] = await before.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`org-${randomUUID()}`]);
    const [user] = await before.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [org.id]);
    const times = ['2025-11-03T10:00:00Z', '2025-11-30T23:59:59.999Z', '2026-01-15T00:00:00Z', new Date().toISOString()];
    const ids: string[] = [];
    for (const [i, t] of times.entries()) {
      const id = `req_${randomBytes(12).toString('hex')}`;
      ids.push(id);
      await before.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, output_text,
                                input_tokens, cost, created_at)
         VALUES ($1, $2, $3, 'alice', 's', 'responses', 'gpt-4o-mini', $4, $5, $6, $7, 0.5, $8)`,
        [id, org.id, user.id, i === 3 ? 'pending' : 'completed', JSON.stringify({ input: `hello ${i}` }), `answer ${i}`, 10 * i, t],
      );
    }
    await before.query(`INSERT INTO ratings (organization_id, exchange_id, user_id, rating, rated_at) VALUES ($1, $2, $3, 4, now())`, [org.id, ids[0], user.id]);
    const rowsBefore = await before.query(`SELECT * FROM exchanges ORDER BY id`);
    const indexesBefore: { name: string }[] = await before.query(
      `SELECT indexname AS name FROM pg_indexes WHERE tablename = 'exchanges' AND indexname NOT LIKE 'PK_%' ORDER BY 1`,
    );
    await before.destroy();

    // up to this migration only, so that the way back below undoes this one
    const after = await open(MIGRATIONS.slice(0, at + 1));
    await after.runMigrations({ transaction: 'each' });
    expect((await after.query(`SELECT relkind FROM pg_class WHERE oid = 'exchanges'::regclass`))[0].relkind).toBe('p');
    expect(await after.query(`SELECT * FROM exchanges ORDER BY id`)).toEqual(rowsBefore);
    const placed: { id: string; part: string }[] = await after.query(`SELECT id, tableoid::regclass::text AS part FROM exchanges ORDER BY created_at`);
    const month = (d: Date) => `exchanges_p${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
    expect(placed.map((p) => p.part)).toEqual(times.map((t) => month(new Date(t))));
    // months between and ahead exist, so new rows never land in the default partition
    const parts: { name: string }[] = await after.query(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'exchanges'::regclass ORDER BY 1`,
    );
    const names = parts.map((p) => p.name);
    expect(names).toContain('exchanges_p2025_12');
    expect(names).toContain('exchanges_default');
    const ahead = new Date();
    ahead.setUTCDate(1);
    ahead.setUTCMonth(ahead.getUTCMonth() + 2);
    expect(names).toContain(month(ahead));
    const indexesAfter: { name: string }[] = await after.query(
      `SELECT indexname AS name FROM pg_indexes WHERE tablename = 'exchanges' AND indexname NOT LIKE 'PK_%' ORDER BY 1`,
    );
    expect(indexesAfter).toEqual(indexesBefore);
    const key = await after.query(`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'exchanges'::regclass AND contype = 'p'`);
    expect(key[0].def).toBe('PRIMARY KEY (id, created_at)');
    const rated = await after.query(`SELECT e.id FROM ratings r JOIN exchanges e ON e.id = r.exchange_id`);
    expect(rated).toEqual([{ id: ids[0] }]);

    // the recorder's writes: an idempotent insert meets its row by (id, created_at); a completion finds it by id
    await after.query(
      `INSERT INTO exchanges AS x (id, organization_id, user_id, external_user_id, session_id, endpoint, status, created_at)
       VALUES ($1, $2, $3, 'alice', 's', 'responses', 'completed', $4)
       ON CONFLICT (id, created_at) DO UPDATE SET status = excluded.status WHERE x.status IN ('pending', 'interrupted')`,
      [ids[3], org.id, user.id, times[3]],
    );
    expect((await after.query(`SELECT count(*)::int AS n, min(status) AS status FROM exchanges WHERE id = $1`, [ids[3]]))[0]).toEqual({ n: 1, status: 'completed' });
    const updated = await after.query(`UPDATE exchanges e SET output_text = v.t FROM (VALUES ($1::text, 'done')) v(id, t) WHERE e.id = v.id RETURNING e.id`, [ids[1]]);
    expect(updated[0]).toEqual([{ id: ids[1] }]);

    // and back
    await after.undoLastMigration({ transaction: 'each' });
    expect((await after.query(`SELECT relkind FROM pg_class WHERE oid = 'exchanges'::regclass`))[0].relkind).toBe('r');
    expect((await after.query(`SELECT count(*)::int AS n FROM exchanges`))[0].n).toBe(times.length);
    expect(await after.query(`SELECT conname FROM pg_constraint WHERE conname = 'fk_ratings_exchange'`)).toHaveLength(1);
    await after.destroy();
  });
});
