import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListJudgedByExchangeTime1797200000000 } from '../../migrations/1797200000000-ListJudgedByExchangeTime';
import { MIGRATIONS } from '../../src/database/migrations';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * The migration that indexes categories and ratings by their exchange's time, on a database that already holds
 * ratings and analysis results of exchanges with and without a persona: every one gets its exchange's time (those
 * without a persona had none), those written from then on get it from the trigger, and the way back restores the
 * category index and the trigger it replaced. Its own database: other test files share DATABASE_URL, and this one
 * changes a trigger function every table of judgements uses.
 */
describe.skipIf(!DATABASE_URL)('migration ListJudgedByExchangeTime on existing data', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_list_judged');
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('gives every rating and analysis result its exchange’s time, from then on too, and indexes them in that order; and back', async () => {
    const at = MIGRATIONS.indexOf(ListJudgedByExchangeTime1797200000000);
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
    const rate = (ds: typeof before, exchangeId: string, personaId: string | null = null) =>
      ds.query(`INSERT INTO ratings (organization_id, exchange_id, user_id, persona_id, rating, rated_at) VALUES ($1, $2, $3, $4, 4, now())`, [
        org.id,
        exchangeId,
        user.id,
        personaId,
      ]);
    await rate(before, plain);
    await rate(before, withPersona, persona.id);
    const times = (ds: typeof before, table: string) =>
      ds.query(`SELECT exchange_id, exchange_created_at IS NOT NULL AS timed FROM ${table} WHERE organization_id = $1 ORDER BY exchange_created_at NULLS FIRST`, [org.id]);
    // before: only the persona exchange's judgements know its exchange's time
    for (const table of ['analysis_results', 'ratings']) {
      expect(await times(before, table)).toEqual([
        { exchange_id: plain, timed: false },
        { exchange_id: withPersona, timed: true },
      ]);
    }
    await before.destroy();

    const after = await db.open(MIGRATIONS.slice(0, at + 1));
    await after.runMigrations({ transaction: 'each' });
    for (const table of ['analysis_results', 'ratings']) {
      expect(await after.query(`SELECT exchange_id, exchange_created_at FROM ${table} WHERE organization_id = $1 ORDER BY exchange_created_at`, [org.id])).toEqual([
        { exchange_id: plain, exchange_created_at: new Date('2026-03-01T10:00:00Z') },
        { exchange_id: withPersona, exchange_created_at: new Date('2026-03-02T10:00:00Z') },
      ]);
    }
    const indexDef = async (name: string) => ((await after.query(`SELECT indexdef FROM pg_indexes WHERE indexname = $1`, [name]))[0]?.indexdef as string) ?? null;
    expect(await indexDef('ix_analysis_results_category')).toContain('(organization_id, primary_category, exchange_created_at, exchange_id) WHERE (primary_category IS NOT NULL)');
    expect(await indexDef('ix_ratings_rating')).toContain('(organization_id, rating, exchange_created_at, exchange_id)');

    // written from now on: a judgement of an exchange without a persona knows its exchange's time
    const later = await exchange(after, '2026-03-03T10:00:00Z');
    await result(after, later);
    await rate(after, later);
    for (const table of ['analysis_results', 'ratings']) {
      expect((await times(after, table)).find((r: { exchange_id: string }) => r.exchange_id === later)).toEqual({ exchange_id: later, timed: true });
    }

    // and back: the indexes as they were, and a result without a persona no longer timed by the trigger
    await after.undoLastMigration({ transaction: 'each' });
    expect(await indexDef('ix_analysis_results_category')).toContain('(organization_id, primary_category) INCLUDE (exchange_id)');
    expect(await indexDef('ix_ratings_rating')).toBeNull();
    const last = await exchange(after, '2026-03-04T10:00:00Z');
    await result(after, last);
    expect((await times(after, 'analysis_results')).find((r: { exchange_id: string }) => r.exchange_id === last)).toEqual({ exchange_id: last, timed: false });
    await after.destroy();
  });
});
