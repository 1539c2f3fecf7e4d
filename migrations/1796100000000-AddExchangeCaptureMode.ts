import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The capture mode an exchange was recorded with (full, redacted, metadata): what a background response completed
 * later stores, and what a reader learns about a row without bodies. Rows recorded before were stored in full.
 */
export class AddExchangeCaptureMode1796100000000 implements MigrationInterface {
  name = 'AddExchangeCaptureMode1796100000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" ADD "capture_mode" text NOT NULL DEFAULT 'full'`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" DROP COLUMN "capture_mode"`);
  }
}
