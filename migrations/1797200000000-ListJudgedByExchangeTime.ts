import { MigrationInterface, QueryRunner } from 'typeorm';
import { judgedExchangeFunction } from './1797000000000-JudgementsKnowTheirExchange';

/**
 * `GET /v1/requests?analysis_category=` and `?rating=` list the exchanges someone judged so, newest first. Each
 * scanned the organization's exchanges newest first and checked every one against the judgements: its cost grew
 * with the number of newer exchanges nobody judged so (from a cold cache on ten million exchanges, one page of a
 * category read 7,035 table pages to find its 21 rows; a rarely given rating would read more). Now each has an
 * index ordered by the exchange's time (`exchange_created_at`), so a page is the newest entries of that category
 * or rating, and only its own exchanges are read. Until now a judgement carried its exchange's time only when the
 * exchange ran under a persona (persona analytics read it): the trigger now fills it for every rating and analysis
 * result, and the ones without it are filled here from their exchanges.
 */
export class ListJudgedByExchangeTime1797200000000 implements MigrationInterface {
  name = 'ListJudgedByExchangeTime1797200000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(judgedExchangeFunction(null));
    for (const table of ['ratings', 'analysis_results']) {
      await queryRunner.query(
        `UPDATE "${table}" j SET exchange_created_at = e.created_at, persona_version = e.persona_version
           FROM exchanges e
          WHERE j.exchange_created_at IS NULL AND e.id = j.exchange_id AND e.organization_id = j.organization_id`,
      );
    }
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_category"`);
    await queryRunner.query(
      `CREATE INDEX "ix_analysis_results_category" ON "analysis_results" ("organization_id", "primary_category", "exchange_created_at", "exchange_id")
         WHERE "primary_category" IS NOT NULL`,
    );
    await queryRunner.query(`CREATE INDEX "ix_ratings_rating" ON "ratings" ("organization_id", "rating", "exchange_created_at", "exchange_id")`);
    await queryRunner.query(`ANALYZE "ratings"`);
    await queryRunner.query(`ANALYZE "analysis_results"`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_ratings_rating"`);
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_category"`);
    await queryRunner.query(`CREATE INDEX "ix_analysis_results_category" ON "analysis_results" ("organization_id", "primary_category") INCLUDE ("exchange_id")`);
    await queryRunner.query(judgedExchangeFunction('NEW.persona_id IS NOT NULL'));
  }
}
