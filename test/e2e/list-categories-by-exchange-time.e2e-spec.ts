import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListCategoriesByExchangeTime1797200000000 } from '../../migrations/1797200000000-ListCategoriesByExchangeTime';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migration that orders the category index by the exchange's time, on a database that already holds analysis
 * results of exchanges with and without a persona: every result gets its exchange's time (those without a persona
 * had none), results written from then on get it from the trigger, ratings keep it for persona exchanges only, and
 * the way back restores the index and the trigger it replaced. Its own database: other test files share
 * DATABASE_URL, and this one changes a trigger function every table of judgements uses.
 */
describe.skipIf(!DATABASE_URL)('migration ListCategoriesByExchangeTime on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_list_categories');
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('gives every analysis result its exchange’s time, from then on too, and the index in that order; and back', async () => {
    const at = MIGRATIONS.indexOf(ListCategoriesByExchangeTime1797200000000);
    expect(at).toBeGreaterThan(0);
    const before = await db.open(MIGRATIONS.slice(0, at));
    await before.runMigrations({ transaction: 'each' });
    const [org] = await before.query(`INSERT INTO organizations (name) VALUES ($1) RETURNING id`, [`org-${randomUUID()}`]);
    const [user] = await before.query(`INSERT INTO users (organization_id, external_id) VALUES ($1, 'alice') RETURNING id`, [org.id]);
    const [persona] = await before.query(`INSERT INTO personas (organization_id, name, content) VALUES ($1, 'p', 'Be brief.') RETURNING id`, [org.id]);
    const exchange = async (ds: typeof before, createdAt: string, personaId: string | null = null) => {
      const id = `req_${randomBytes(12).toString('hex')}`;
      await ds.query(
        `INSERT INTO exchanges (id, organization_id, user_id, external_user_id, session_id, endpoint, model, status, request_body, persona_id, persona_version, created_at)
         VALUES ($1, $2, $3, 'alice', 's', 'responses', 'gpt-4o-mini', 'completed', '{}', $4, $5, $6)`,
        [id, org.id, user.id, personaId, personaId ? 1 : null, createdAt],
      );
      return id;
    };
    const plain = await exchange(before, '2026-03-01T10:00:00Z');
    const withPersona = await exchange(before, '2026-03-02T10:00:00Z', persona.id);
    const result = (ds: typeof before, exchangeId: string, personaId: string | null = null) =>
      ds.query(
        `INSERT INTO analysis_results (organization_id, exchange_id, persona_id, cache_key, analysis_type, primary_category, model)
         VALUES ($1, $2, $3, md5(random()::text), 'intent', 'billing', 'gpt-4o-mini')`,
        [org.id, exchangeId, personaId],
      );
    await result(before, plain);
    await result(before, withPersona, persona.id);
    const times = (ds: typeof before, table: string) =>
      ds.query(`SELECT exchange_id, exchange_created_at IS NOT NULL AS timed FROM ${table} WHERE organization_id = $1 ORDER BY exchange_created_at NULLS FIRST`, [org.id]);
    // before: only the persona exchange's result knows its exchange's time
    expect(await times(before, 'analysis_results')).toEqual([
      { exchange_id: plain, timed: false },
      { exchange_id: withPersona, timed: true },
    ]);
    await before.destroy();

    const after = await db.open(MIGRATIONS.slice(0, at + 1));
    await after.runMigrations({ transaction: 'each' });
    expect(await after.query(`SELECT exchange_id, exchange_created_at FROM analysis_results WHERE organization_id = $1 ORDER BY exchange_created_at`, [org.id])).toEqual([
      { exchange_id: plain, exchange_created_at: new Date('2026-03-01T10:00:00Z') },
      { exchange_id: withPersona, exchange_created_at: new Date('2026-03-02T10:00:00Z') },
    ]);
    const indexDef = async () =>
      (await after.query(`SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_analysis_results_category'`))[0].indexdef as string;
    expect(await indexDef()).toContain('(organization_id, primary_category, exchange_created_at, exchange_id) WHERE (primary_category IS NOT NULL)');

    // written from now on: a result of an exchange without a persona knows its time; a rating of one does not
    const later = await exchange(after, '2026-03-03T10:00:00Z');
    await result(after, later);
    await after.query(`INSERT INTO ratings (organization_id, exchange_id, user_id, rating, rated_at) VALUES ($1, $2, $3, 4, now())`, [org.id, later, user.id]);
    expect((await times(after, 'analysis_results')).find((r: { exchange_id: string }) => r.exchange_id === later)).toEqual({ exchange_id: later, timed: true });
    expect(await times(after, 'ratings')).toEqual([{ exchange_id: later, timed: false }]);

    // and back: the index as it was, and a result without a persona no longer timed by the trigger
    await after.undoLastMigration({ transaction: 'each' });
    expect(await indexDef()).toContain('(organization_id, primary_category) INCLUDE (exchange_id)');
    const last = await exchange(after, '2026-03-04T10:00:00Z');
    await result(after, last);
    expect((await times(after, 'analysis_results')).find((r: { exchange_id: string }) => r.exchange_id === last)).toEqual({ exchange_id: last, timed: false });
    await after.destroy();
  });
});
