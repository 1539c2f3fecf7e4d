import { MigrationInterface, QueryRunner } from 'typeorm';

/** Per-organization privacy settings: capture mode, retention of bodies and of exchanges, safety_identifier. */
export class AddOrganizationPrivacy1796000000000 implements MigrationInterface {
  name = 'AddOrganizationPrivacy1796000000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "organizations" ADD "capture_mode" text NOT NULL DEFAULT 'full'`);
    await queryRunner.query(`ALTER TABLE "organizations" ADD CONSTRAINT "chk_organizations_capture_mode" CHECK ("capture_mode" IN ('full', 'redacted', 'metadata'))`);
    await queryRunner.query(`ALTER TABLE "organizations" ADD "content_retention_days" integer`);
    await queryRunner.query(`ALTER TABLE "organizations" ADD "retention_days" integer`);
    await queryRunner.query(
      `ALTER TABLE "organizations" ADD CONSTRAINT "chk_organizations_retention" CHECK (("content_retention_days" IS NULL OR "content_retention_days" > 0) AND ("retention_days" IS NULL OR "retention_days" > 0))`,
    );
    await queryRunner.query(`ALTER TABLE "organizations" ADD "safety_identifier" boolean NOT NULL DEFAULT false`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "organizations" DROP COLUMN "safety_identifier"`);
    await queryRunner.query(`ALTER TABLE "organizations" DROP CONSTRAINT "chk_organizations_retention"`);
    await queryRunner.query(`ALTER TABLE "organizations" DROP COLUMN "retention_days"`);
    await queryRunner.query(`ALTER TABLE "organizations" DROP COLUMN "content_retention_days"`);
    await queryRunner.query(`ALTER TABLE "organizations" DROP CONSTRAINT "chk_organizations_capture_mode"`);
    await queryRunner.query(`ALTER TABLE "organizations" DROP COLUMN "capture_mode"`);
  }
}
