import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * cache_invalidations rows carry the id of the transaction that wrote them, so a process reads exactly the
 * changes committed since its last snapshot (no time window to re-read, no LIMIT to starve); `created_at` is
 * indexed for pruning. Rows older than the feed's retention are dropped first: no process reads them again, and
 * the column's default rewrites the table.
 */
export class OrderCacheInvalidationsByTransaction1795520100000 implements MigrationInterface {
  name = 'OrderCacheInvalidationsByTransaction1795520100000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DELETE FROM "cache_invalidations" WHERE "created_at" < now() - interval '10 minutes'`);
    await queryRunner.query(
      `ALTER TABLE "cache_invalidations" ADD "tx" bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint`,
    );
    await queryRunner.query(`CREATE INDEX "ix_cache_invalidations_tx" ON "cache_invalidations" ("tx")`);
    await queryRunner.query(`CREATE INDEX "ix_cache_invalidations_created" ON "cache_invalidations" ("created_at")`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX "public"."ix_cache_invalidations_created"`);
    await queryRunner.query(`DROP INDEX "public"."ix_cache_invalidations_tx"`);
    await queryRunner.query(`ALTER TABLE "cache_invalidations" DROP COLUMN "tx"`);
  }
}
