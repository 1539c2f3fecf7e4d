import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Persona analytics count the ratings and the newest analysis results of the persona's exchanges. Read through
 * the (organization, persona) indexes they fetched each row from the table: a persona's year was about 1,100
 * scattered pages of analysis_results and 700 of ratings, most of them not in shared buffers. With the columns
 * those reads use in the index they are index-only scans of a few dozen pages. On a database of ten million
 * exchanges (572 thousand results, 474 thousand ratings) both build in a few seconds; neither table is partitioned.
 */
export class CoverPersonaJudgements1796900000100 implements MigrationInterface {
  name = 'CoverPersonaJudgements1796900000100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "ix_analysis_results_persona_reads" ON "analysis_results" ("organization_id", "persona_id", "status")
         INCLUDE ("exchange_id", "analysis_type", "primary_category", "created_at", "id") WHERE "persona_id" IS NOT NULL`,
    );
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "ix_ratings_persona_reads" ON "ratings" ("organization_id", "persona_id") INCLUDE ("exchange_id", "rating") WHERE "persona_id" IS NOT NULL`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_ratings_persona_reads"`);
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_persona_reads"`);
  }
}
