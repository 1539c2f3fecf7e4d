import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * ix_exchanges_persona_created (persona_id, created_at) duplicated the keys of the partial
 * ix_exchanges_persona_analytics, which serves every query by persona (`persona_id = $1` implies its
 * `persona_id IS NOT NULL`), while it also indexed every exchange without a persona: one more index entry
 * per record insert and per completion on the proxy's hot path.
 */
export class DropPersonaCreatedIndex1795510000000 implements MigrationInterface {
  name = 'DropPersonaCreatedIndex1795510000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "public"."ix_exchanges_persona_created"`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS "ix_exchanges_persona_created" ON "exchanges" ("persona_id", "created_at")`);
  }
}
