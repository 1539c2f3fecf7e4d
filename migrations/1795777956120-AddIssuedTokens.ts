import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What `jwt create` issued, so that `jwt list` can show an organization's tokens: the metadata only, never the
 * token (a token is a bearer credential; its jti is enough to revoke it). Tokens issued before this migration
 * are not listed.
 */
export class AddIssuedTokens1795777956120 implements MigrationInterface {
  name = 'AddIssuedTokens1795777956120';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `CREATE TABLE "issued_tokens" ("jti" text NOT NULL, "organization_id" uuid NOT NULL, "user_id" text, "issued_at" TIMESTAMP WITH TIME ZONE NOT NULL, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_issued_tokens" PRIMARY KEY ("jti"))`,
    );
    await queryRunner.query(`CREATE INDEX "ix_issued_tokens_org_issued" ON "issued_tokens" ("organization_id", "issued_at")`);
    await queryRunner.query(
      `ALTER TABLE "issued_tokens" ADD CONSTRAINT "fk_issued_tokens_organization" FOREIGN KEY ("organization_id") REFERENCES "organizations"("id") ON DELETE CASCADE`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "issued_tokens"`);
  }
}
