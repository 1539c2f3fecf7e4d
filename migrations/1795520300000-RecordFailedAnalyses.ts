import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An analysis whose answers did not fit the schema was billed by upstream but left no row, so budgets and usage
 * analytics never saw it. It is now stored with status `failed`, its usage and no result.
 */
export class RecordFailedAnalyses1795520300000 implements MigrationInterface {
  name = 'RecordFailedAnalyses1795520300000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "analysis_results" ADD "status" text NOT NULL DEFAULT 'completed'`);
    await queryRunner.query(`ALTER TABLE "analysis_results" ADD "error" text`);
    for (const column of ['primary_category', 'confidence', 'reasoning', 'categories']) {
      await queryRunner.query(`ALTER TABLE "analysis_results" ALTER COLUMN "${column}" DROP NOT NULL`);
    }
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DELETE FROM "analysis_results" WHERE "status" <> 'completed'`);
    for (const column of ['primary_category', 'confidence', 'reasoning', 'categories']) {
      await queryRunner.query(`ALTER TABLE "analysis_results" ALTER COLUMN "${column}" SET NOT NULL`);
    }
    await queryRunner.query(`ALTER TABLE "analysis_results" DROP COLUMN "error"`);
    await queryRunner.query(`ALTER TABLE "analysis_results" DROP COLUMN "status"`);
  }
}
