import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Indexes for the analytics reports.
 * - exchanges: persona analytics reads a persona's exchanges in a period, several times per report. Covering the
 *   columns it aggregates lets a 100,000-exchange persona be read by index-only scans (~36 MB of index per 100k
 *   rows, ~30 ms a pass) instead of fetching the wide rows (bodies, output text) from the heap (~350 ms a pass in
 *   EXPLAIN ANALYZE on 100k generated rows). Partial, so traffic without a persona pays nothing on write.
 * - analysis_results: usage analytics reads an organization's analysis calls in a period.
 */
export class AddAnalyticsIndexes1795490000000 implements MigrationInterface {
  name = 'AddAnalyticsIndexes1795490000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "ix_exchanges_persona_analytics" ON "exchanges" ("persona_id", "created_at")
       INCLUDE ("organization_id", "id", "user_id", "session_id", "status", "persona_version", "input_tokens", "output_tokens", "total_tokens", "cost", "latency_ms")
       WHERE "persona_id" IS NOT NULL`,
    );
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS "ix_analysis_results_org_created" ON "analysis_results" ("organization_id", "created_at")`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "public"."ix_analysis_results_org_created"`);
    await queryRunner.query(`DROP INDEX IF EXISTS "public"."ix_exchanges_persona_analytics"`);
  }
}
