import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Token counts come from the upstream and are not ours to bound: a count above 2,147,483,647 made the record's
 * write fail after the call was made and billed. bigint holds any count a JavaScript number holds exactly.
 * The change rewrites both tables under an exclusive lock (run it in a quiet moment on a large table).
 */
export class WidenTokenCounters1795520000000 implements MigrationInterface {
  name = 'WidenTokenCounters1795520000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(
      `ALTER TABLE "exchanges" ALTER COLUMN "input_tokens" TYPE bigint, ALTER COLUMN "output_tokens" TYPE bigint, ALTER COLUMN "total_tokens" TYPE bigint, ALTER COLUMN "cached_tokens" TYPE bigint, ALTER COLUMN "reasoning_tokens" TYPE bigint`,
    );
    await queryRunner.query(
      `ALTER TABLE "analysis_results" ALTER COLUMN "input_tokens" TYPE bigint, ALTER COLUMN "output_tokens" TYPE bigint, ALTER COLUMN "total_tokens" TYPE bigint`,
    );
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    // counts above int4 cannot go back: they are capped
    const cap = (c: string) => `ALTER COLUMN "${c}" TYPE integer USING least("${c}", 2147483647)::integer`;
    await queryRunner.query(`ALTER TABLE "analysis_results" ${['input_tokens', 'output_tokens', 'total_tokens'].map(cap).join(', ')}`);
    await queryRunner.query(
      `ALTER TABLE "exchanges" ${['input_tokens', 'output_tokens', 'total_tokens', 'cached_tokens', 'reasoning_tokens'].map(cap).join(', ')}`,
    );
  }
}
