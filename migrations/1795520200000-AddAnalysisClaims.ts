import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Identical analyses in several processes are coalesced through a claim row with a lease instead of an advisory
 * lock held in an open transaction across the upstream call (which kept one pooled connection per running analysis).
 */
export class AddAnalysisClaims1795520200000 implements MigrationInterface {
  name = 'AddAnalysisClaims1795520200000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "analysis_claims" ("organization_id" uuid NOT NULL, "cache_key" text NOT NULL, "holder" uuid NOT NULL, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_analysis_claims" PRIMARY KEY ("organization_id", "cache_key"))`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "analysis_claims"`);
  }
}
