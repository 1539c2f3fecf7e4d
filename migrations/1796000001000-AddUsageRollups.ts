import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Retention: what analytics reports about exchanges outlives the exchanges.
 *
 * - usage_rollups: per UTC day, organization, source ('proxy': exchanges; 'analysis': analysis calls), user,
 *   persona, persona version and model, the sums analytics reports (requests, errors, tokens, cost, latency sum and
 *   count, distinct sessions of the group) and the ratings given to those exchanges, counted per value. A deleted
 *   exchange is added here in the transaction that deletes it. One row per key (NULLs equal), so concurrent
 *   deletions add to the same row.
 * - analysis_rollups: per UTC day of the exchange, organization, persona and version, the newest primary category per
 *   analysis type of the deleted exchanges (what the persona report counts).
 * - retention_marks: per organization, the instant before which bodies are already cleared, so that clearing
 *   never walks over rows it has cleared before.
 * - exchanges.content_deleted_at: when an exchange's bodies and text were cleared by retention.
 */
export class AddUsageRollups1796000001000 implements MigrationInterface {
  name = 'AddUsageRollups1796000001000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" ADD COLUMN IF NOT EXISTS "content_deleted_at" TIMESTAMP WITH TIME ZONE`);
    await queryRunner.query(
      `CREATE TABLE "usage_rollups" ("day" date NOT NULL, "organization_id" uuid NOT NULL, "source" text NOT NULL,
        "user_id" uuid, "persona_id" uuid, "persona_version" integer, "model" text,
        "requests" bigint NOT NULL DEFAULT 0, "errors" bigint NOT NULL DEFAULT 0,
        "input_tokens" bigint NOT NULL DEFAULT 0, "output_tokens" bigint NOT NULL DEFAULT 0, "total_tokens" bigint NOT NULL DEFAULT 0,
        "cached_tokens" bigint NOT NULL DEFAULT 0, "reasoning_tokens" bigint NOT NULL DEFAULT 0,
        "cost" double precision NOT NULL DEFAULT 0, "latency_ms_sum" bigint NOT NULL DEFAULT 0, "latency_count" bigint NOT NULL DEFAULT 0,
        "sessions" bigint NOT NULL DEFAULT 0,
        "ratings_1" bigint NOT NULL DEFAULT 0, "ratings_2" bigint NOT NULL DEFAULT 0, "ratings_3" bigint NOT NULL DEFAULT 0,
        "ratings_4" bigint NOT NULL DEFAULT 0, "ratings_5" bigint NOT NULL DEFAULT 0,
        "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())`,
    );
    await queryRunner.query(
      `CREATE UNIQUE INDEX "uq_usage_rollups_key" ON "usage_rollups"
        ("organization_id", "day", "source", "user_id", "persona_id", "persona_version", "model") NULLS NOT DISTINCT`,
    );
    await queryRunner.query(`CREATE INDEX "ix_usage_rollups_persona" ON "usage_rollups" ("persona_id", "day") WHERE "persona_id" IS NOT NULL`);
    await queryRunner.query(`CREATE INDEX "ix_usage_rollups_user" ON "usage_rollups" ("organization_id", "user_id") WHERE "user_id" IS NOT NULL`);
    await queryRunner.query(
      `CREATE TABLE "analysis_rollups" ("day" date NOT NULL, "organization_id" uuid NOT NULL, "persona_id" uuid NOT NULL,
        "persona_version" integer, "analysis_type" text NOT NULL, "primary_category" text NOT NULL, "count" bigint NOT NULL DEFAULT 0,
        CONSTRAINT "uq_analysis_rollups" UNIQUE NULLS NOT DISTINCT ("organization_id", "persona_id", "day", "persona_version", "analysis_type", "primary_category"))`,
    );
    await queryRunner.query(
      `CREATE TABLE "retention_marks" ("organization_id" uuid NOT NULL, "content_cleared_before" TIMESTAMP WITH TIME ZONE NOT NULL,
        CONSTRAINT "PK_retention_marks" PRIMARY KEY ("organization_id"))`,
    );
    for (const table of ['usage_rollups', 'analysis_rollups', 'retention_marks']) {
      await queryRunner.query(
        `ALTER TABLE "${table}" ADD CONSTRAINT "fk_${table}_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`,
      );
    }
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE IF EXISTS "retention_marks"`);
    await queryRunner.query(`DROP TABLE IF EXISTS "analysis_rollups"`);
    await queryRunner.query(`DROP TABLE IF EXISTS "usage_rollups"`);
    await queryRunner.query(`ALTER TABLE "exchanges" DROP COLUMN IF EXISTS "content_deleted_at"`);
  }
}
