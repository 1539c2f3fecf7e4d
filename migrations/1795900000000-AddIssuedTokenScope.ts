import { MigrationInterface, QueryRunner } from 'typeorm';

/** The scope a token was issued with, for `jwt list`; null for tokens with the default rights (all issued before). */
export class AddIssuedTokenScope1795900000000 implements MigrationInterface {
  name = 'AddIssuedTokenScope1795900000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "issued_tokens" ADD "scope" text`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "issued_tokens" DROP COLUMN "scope"`);
  }
}
