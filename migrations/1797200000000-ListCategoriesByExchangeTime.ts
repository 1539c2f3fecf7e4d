import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `GET /v1/requests?analysis_category=` lists the exchanges of one primary category, newest first. It scanned the
 * organization's exchanges newest first and checked each against the category's ids: from a cold cache on ten
 * million exchanges, one page read 7,035 table pages to find its 21 rows. Now the category's index is ordered by
 * the exchange's time (`exchange_created_at`), so a page is the category's newest entries, and only its own
 * exchanges are read. Until now an analysis result carried its exchange's time only when the exchange ran under a
 * persona (persona analytics read it): the trigger now fills it for every result, and the results without it are
 * filled here from their exchanges. Ratings keep it for persona exchanges only (nothing else reads it).
 */
export class ListCategoriesByExchangeTime1797200000000 implements MigrationInterface {
  name = 'ListCategoriesByExchangeTime1797200000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(judgedExchange(`(NEW.persona_id IS NOT NULL OR TG_TABLE_NAME = 'analysis_results')`));
    await queryRunner.query(
      `UPDATE analysis_results a SET exchange_created_at = e.created_at, persona_version = e.persona_version
         FROM exchanges e
        WHERE a.exchange_created_at IS NULL AND e.id = a.exchange_id AND e.organization_id = a.organization_id`,
    );
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_category"`);
    await queryRunner.query(
      `CREATE INDEX "ix_analysis_results_category" ON "analysis_results" ("organization_id", "primary_category", "exchange_created_at", "exchange_id")
         WHERE "primary_category" IS NOT NULL`,
    );
    await queryRunner.query(`ANALYZE "analysis_results"`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_category"`);
    await queryRunner.query(`CREATE INDEX "ix_analysis_results_category" ON "analysis_results" ("organization_id", "primary_category") INCLUDE ("exchange_id")`);
    await queryRunner.query(judgedExchange(`NEW.persona_id IS NOT NULL`));
  }
}

/** The trigger function of JudgementsKnowTheirExchange, filling in the exchange's time and version when `when` holds. */
function judgedExchange(when: string): string {
  return `CREATE OR REPLACE FUNCTION judged_exchange() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF ${when} AND NEW.exchange_created_at IS NULL THEN
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
