import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Persona analytics count the ratings and the analysis results of the persona's exchanges in a period, per
 * persona version and UTC day. Joined to `exchanges` for the exchange's time and version, each of those reads
 * scanned all of the persona's exchanges in the period (100,000 index entries for a busy persona's month) to
 * keep the few that were judged. A rating and an analysis result now carry their exchange's `created_at` and
 * `persona_version` (both fixed once the exchange is recorded), filled in as they are written by a trigger that
 * looks the exchange up (every writer alike: the API, retention's tools, SQL), so those reads are index-only
 * scans of the judgements alone. Existing rows are filled from their exchanges here (one pass over the
 * judgements and their exchanges: 2.5 minutes in all on a database of ten million exchanges with 476,000
 * ratings and 569,000 results; writes of ratings and results wait meanwhile).
 */
export class JudgementsKnowTheirExchange1797000000000 implements MigrationInterface {
  name = 'JudgementsKnowTheirExchange1797000000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(judgedExchangeFunction('NEW.persona_id IS NOT NULL'));
    for (const table of ['ratings', 'analysis_results']) {
      await queryRunner.query(`ALTER TABLE "${table}" ADD COLUMN IF NOT EXISTS "exchange_created_at" timestamptz, ADD COLUMN IF NOT EXISTS "persona_version" integer`);
      await queryRunner.query(
        `UPDATE "${table}" j SET exchange_created_at = e.created_at, persona_version = e.persona_version
           FROM exchanges e
          WHERE j.persona_id IS NOT NULL AND j.exchange_created_at IS NULL AND e.id = j.exchange_id AND e.organization_id = j.organization_id`,
      );
      await queryRunner.query(`DROP TRIGGER IF EXISTS "${table}_judged_exchange" ON "${table}"`);
      await queryRunner.query(`CREATE TRIGGER "${table}_judged_exchange" BEFORE INSERT ON "${table}" FOR EACH ROW EXECUTE FUNCTION judged_exchange()`);
    }
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_persona_reads"`);
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_ratings_persona_reads"`);
    await queryRunner.query(
      `CREATE INDEX "ix_analysis_results_persona_reads" ON "analysis_results" ("organization_id", "persona_id", "exchange_created_at")
         INCLUDE ("status", "exchange_id", "analysis_type", "created_at", "id", "primary_category", "persona_version") WHERE "persona_id" IS NOT NULL`,
    );
    await queryRunner.query(
      `CREATE INDEX "ix_ratings_persona_reads" ON "ratings" ("organization_id", "persona_id", "exchange_created_at")
         INCLUDE ("persona_version", "rating") WHERE "persona_id" IS NOT NULL`,
    );
    // the planner's statistics of the new columns (every row was rewritten; autovacuum reclaims the old versions)
    await queryRunner.query(`ANALYZE "ratings"`);
    await queryRunner.query(`ANALYZE "analysis_results"`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_ratings_persona_reads"`);
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_persona_reads"`);
    for (const table of ['ratings', 'analysis_results']) {
      await queryRunner.query(`DROP TRIGGER IF EXISTS "${table}_judged_exchange" ON "${table}"`);
      await queryRunner.query(`ALTER TABLE "${table}" DROP COLUMN IF EXISTS "persona_version", DROP COLUMN IF EXISTS "exchange_created_at"`);
    }
    await queryRunner.query(`DROP FUNCTION IF EXISTS judged_exchange()`);
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "ix_analysis_results_persona_reads" ON "analysis_results" ("organization_id", "persona_id", "status")
         INCLUDE ("exchange_id", "analysis_type", "primary_category", "created_at", "id") WHERE "persona_id" IS NOT NULL`,
    );
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "ix_ratings_persona_reads" ON "ratings" ("organization_id", "persona_id") INCLUDE ("exchange_id", "rating") WHERE "persona_id" IS NOT NULL`,
    );
  }
}

/**
 * The trigger function that fills in a judgement's exchange time and version when it is written without them (only
 * when `when` holds, if given): here for persona exchanges; ListJudgedByExchangeTime makes it fill every judgement.
 */
export function judgedExchangeFunction(when: string | null): string {
  return `CREATE OR REPLACE FUNCTION judged_exchange() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF ${when ? `${when} AND ` : ''}NEW.exchange_created_at IS NULL THEN
    SELECT e.created_at, e.persona_version INTO NEW.exchange_created_at, NEW.persona_version
      FROM exchanges e
     WHERE e.id = NEW.exchange_id AND e.organization_id = NEW.organization_id
     ORDER BY e.created_at DESC
     LIMIT 1;
  END IF;
  RETURN NEW;
END
$fn$`;
}
