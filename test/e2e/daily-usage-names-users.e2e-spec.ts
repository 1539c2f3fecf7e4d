import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { DailyUsageNamesUsers1797100000000 } from '../../migrations/1797100000000-DailyUsageNamesUsers';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migration that keys the daily usage's users by X-User-ID, on a database that already holds daily usage:
 * merged rows and changes not merged yet are re-keyed with the same sums, a user id no longer known counts under
 * no user, the triggers write X-User-IDs from then on, and the way back restores the internal ids. Its own
 * database: the migration locks the daily usage tables, and other test files share DATABASE_URL.
 */
describe.skipIf(!DATABASE_URL)('migration DailyUsageNamesUsers on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;
  const open = (migrations: unknown[]) => db.open(migrations);

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_daily_users');
  });

  afterAll(async () => {
    await db?.drop();
  });

  const userRows = (ds: DataSource) =>
    ds.query(
      `SELECT day::text AS day, source, key, requests::int, errors::int, input_tokens::int, cost FROM usage_daily WHERE dimension = 'user' ORDER BY key NULLS LAST, day, source`,
    );

  it('re-keys merged and unmerged usage by X-User-ID with the same sums, and the way back restores the ids', async () => {
    const at = MIGRATIONS.indexOf(DailyUsageNamesUsers1797100000000);
    expect(at).toBeGreaterThan(0);
    const before = await open(MIGRATIONS.slice(0, at));
    await before.runMigrations({ transaction: 'each' });
    const [org] = await before.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`org-${randomUUID()}`]);
    const [alice] = await before.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [org.id]);
    const [bob] = await before.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'bob') RETURNING id`, [org.id]);
    const exchange = (user: { id: string }, external: string, at: string, status = 'completed', tokens = 10) =>
      before.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, input_tokens, cost, created_at)
         VALUES ($1, $2, $3, $4, 's', 'responses', 'gpt-4o-mini', $5, '{}', $6, 0.25, $7)`,
        [`req_${randomBytes(12).toString('hex')}`, org.id, user.id, external, status, tokens, at],
      );
    await exchange(alice, 'alice', '2026-03-01T10:00:00Z');
    await exchange(alice, 'alice', '2026-03-01T11:00:00Z', 'upstream_error', 5);
    await exchange(bob, 'bob', '2026-03-01T12:00:00Z');
    // merged as the server merged then (user rows keyed by the internal id), and a user id no longer known
    await before.query(
      `INSERT INTO usage_daily (organization_id, dimension, day, source, key, requests, errors, input_tokens, output_tokens, total_tokens, cost)
       SELECT organization_id, 'user', day, source, user_id::text, sum(requests), sum(errors), sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(cost)
         FROM usage_daily_changes GROUP BY 1, 3, 4, 5`,
    );
    await before.query(`DELETE FROM usage_daily_changes`);
    await before.query(
      `INSERT INTO usage_daily (organization_id, dimension, day, source, key, requests, errors, input_tokens, output_tokens, total_tokens, cost)
       VALUES ($1, 'user', '2026-03-01', 'proxy', $2, 2, 0, 4, 0, 4, 0.5)`,
      [org.id, randomUUID()],
    );
    // not merged yet
    await exchange(alice, 'alice', '2026-03-02T10:00:00Z');
    const [exchangeId] = (await before.query(`SELECT id FROM exchanges WHERE external_user_id = 'bob'`)).map((r: { id: string }) => r.id);
    await before.query(
      `INSERT INTO analysis_results (organization_id, exchange_id, user_id, cache_key, analysis_type, model, input_tokens, output_tokens, total_tokens, cost, created_at)
       VALUES ($1, $2, $3, 'k', 'intent', 'gpt-4o-mini', 40, 5, 45, 0.01, '2026-03-02T12:00:00Z')`,
      [org.id, exchangeId, bob.id],
    );
    const byIdBefore = await userRows(before);
    await before.destroy();

    const after = await open(MIGRATIONS.slice(0, at + 1));
    await after.runMigrations({ transaction: 'each' });
    const named = (rows: { key: string | null }[], to: (k: string | null) => string | null) => rows.map((r) => ({ ...r, key: to(r.key) }));
    const name = (k: string | null) => (k === alice.id ? 'alice' : k === bob.id ? 'bob' : null);
    // as userRows orders them: key (none last), day, source
    const sortKey = (r: { key: string | null; day: string; source: string }) => `${r.key === null ? 1 : 0} ${r.key} ${r.day} ${r.source}`;
    const byName = (rows: any[]) => [...rows].sort((x, y) => (sortKey(x) < sortKey(y) ? -1 : sortKey(x) > sortKey(y) ? 1 : 0));
    expect(await userRows(after)).toEqual(byName(named(byIdBefore, name)));
    expect(await after.query(`SELECT day::text AS day, source, external_user_id FROM usage_daily_changes ORDER BY day, source`)).toEqual([
      { day: '2026-03-02', source: 'analysis', external_user_id: 'bob' },
      { day: '2026-03-02', source: 'proxy', external_user_id: 'alice' },
    ]);
    // written from now on: an exchange's X-User-ID, an analysis result's user's, none for a result of no user
    await after.query(
      `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, created_at)
       VALUES ($1, $2, $3, 'bob', 's', 'responses', 'gpt-4o-mini', 'pending', '{}', '2026-03-03T10:00:00Z')`,
      [`req_${randomBytes(12).toString('hex')}`, org.id, bob.id],
    );
    await after.query(`UPDATE analysis_results SET user_id = NULL WHERE organization_id = $1`, [org.id]);
    expect(await after.query(`SELECT day::text AS day, source, external_user_id, requests::int FROM usage_daily_changes ORDER BY day, source, requests, external_user_id`)).toEqual([
      { day: '2026-03-02', source: 'analysis', external_user_id: 'bob', requests: -1 },
      { day: '2026-03-02', source: 'analysis', external_user_id: 'bob', requests: 1 },
      { day: '2026-03-02', source: 'analysis', external_user_id: null, requests: 1 },
      { day: '2026-03-02', source: 'proxy', external_user_id: 'alice', requests: 1 },
      { day: '2026-03-03', source: 'proxy', external_user_id: 'bob', requests: 1 },
    ]);
    await after.query(`DELETE FROM usage_daily_changes`);

    // and back: the merged rows of known users under their ids again (the unknown one stays under no user)
    await after.undoLastMigration({ transaction: 'each' });
    const back = await userRows(after);
    const known = (rows: { key: string | null }[]) => rows.filter((r) => r.key !== null);
    expect(byName(known(named(back, name)))).toEqual(byName(known(named(byIdBefore, name))));
    expect(await after.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'usage_daily_changes' AND column_name LIKE '%user_id'`)).toEqual([
      { column_name: 'user_id' },
    ]);
    await after.destroy();
  });
});
