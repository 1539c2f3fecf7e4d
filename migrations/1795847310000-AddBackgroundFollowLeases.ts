import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Background responses are followed upstream until they end, by one server process at a time: the process that
 * follows a queued exchange holds a lease on its row (`follow_owner`, `follow_until`), renewed while it runs and
 * taken over by another process once it lapses. The partial index finds the queued rows without reading the others.
 */
export class AddBackgroundFollowLeases1795847310000 implements MigrationInterface {
  name = 'AddBackgroundFollowLeases1795847310000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" ADD COLUMN IF NOT EXISTS "follow_owner" text, ADD COLUMN IF NOT EXISTS "follow_until" TIMESTAMP WITH TIME ZONE`);
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS "ix_exchanges_queued" ON "exchanges" ("created_at") WHERE "status" = 'queued'`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "public"."ix_exchanges_queued"`);
    await queryRunner.query(`ALTER TABLE "exchanges" DROP COLUMN IF EXISTS "follow_until", DROP COLUMN IF EXISTS "follow_owner"`);
  }
}
