import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `GET /v1/analysis/results?response_id=` finds an organization's results by the response they analysed; without
 * an index it read every result of the organization. Partial: results of exchanges without a response id (failed
 * calls) are never looked up so.
 */
export class IndexAnalysisResultResponses1796700000100 implements MigrationInterface {
  name = 'IndexAnalysisResultResponses1796700000100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "ix_analysis_results_response" ON "analysis_results" ("organization_id", "response_id", "created_at") WHERE "response_id" IS NOT NULL`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_analysis_results_response"`);
  }
}
