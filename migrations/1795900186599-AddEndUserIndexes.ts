import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An end user's exchanges and ratings, found without scanning the organization: the export reads them in keyset
 * pages by (created_at, id), the erasure deletes them. The exchanges index also serves `GET /v1/requests?user_id=`.
 */
export class AddEndUserIndexes1795900186599 implements MigrationInterface {
  name = 'AddEndUserIndexes1795900186599';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS "ix_exchanges_org_external_user" ON "exchanges" ("organization_id", "external_user_id", "created_at", "id")`);
    await queryRunner.query(`CREATE INDEX IF NOT EXISTS "ix_ratings_user" ON "ratings" ("user_id")`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_ratings_user"`);
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_exchanges_org_external_user"`);
  }
}
