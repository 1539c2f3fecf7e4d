import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Key pools: which models a key serves, its weight and priority in its pool, its health (active or invalid, resting
 * until a time, the last upstream error); whether an organization's users fall back to its keys; and, per exchange,
 * the keys tried before the one that served it.
 */
export class AddKeyPools1796400000001 implements MigrationInterface {
  name = 'AddKeyPools1796400000001';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "models" text[]`);
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "weight" integer NOT NULL DEFAULT 1`);
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "priority" integer NOT NULL DEFAULT 0`);
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "state" text NOT NULL DEFAULT 'active'`);
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "rest_until" timestamptz`);
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "last_error" text`);
    await queryRunner.query(`ALTER TABLE "api_keys" ADD "invalid_at" timestamptz`);
    await queryRunner.query(
      `ALTER TABLE "api_keys" ADD CONSTRAINT "chk_api_keys_pool" CHECK ("weight" >= 1 AND "state" IN ('active', 'invalid'))`,
    );
    await queryRunner.query(`ALTER TABLE "organizations" ADD "key_fallback" boolean NOT NULL DEFAULT false`);
    await queryRunner.query(`ALTER TABLE "exchanges" ADD "key_attempts" jsonb`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" DROP COLUMN "key_attempts"`);
    await queryRunner.query(`ALTER TABLE "organizations" DROP COLUMN "key_fallback"`);
    await queryRunner.query(`ALTER TABLE "api_keys" DROP CONSTRAINT "chk_api_keys_pool"`);
    for (const c of ['invalid_at', 'last_error', 'rest_until', 'state', 'priority', 'weight', 'models']) {
      await queryRunner.query(`ALTER TABLE "api_keys" DROP COLUMN "${c}"`);
    }
  }
}
