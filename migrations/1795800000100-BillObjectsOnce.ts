import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A batch is billed when it completes, and only a later read of it reports its usage: that usage is recorded as
 * spend once, by the first read that sees it (`billed_at`), however many reads follow.
 */
export class BillObjectsOnce1795800000100 implements MigrationInterface {
  name = 'BillObjectsOnce1795800000100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "upstream_objects" ADD "billed_at" TIMESTAMP WITH TIME ZONE`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "upstream_objects" DROP COLUMN "billed_at"`);
  }
}
