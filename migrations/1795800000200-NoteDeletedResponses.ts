import { MigrationInterface, QueryRunner } from 'typeorm';

/** A response deleted upstream through the proxy keeps its record, with the moment of the deletion noted on it. */
export class NoteDeletedResponses1795800000200 implements MigrationInterface {
  name = 'NoteDeletedResponses1795800000200';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" ADD "upstream_deleted_at" TIMESTAMP WITH TIME ZONE`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE "exchanges" DROP COLUMN "upstream_deleted_at"`);
  }
}
