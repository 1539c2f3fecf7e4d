import { MigrationInterface, QueryRunner } from 'typeorm';

const COVERED = `"status", "model", "external_user_id", "persona_id", "input_tokens", "output_tokens", "total_tokens", "cost"`;

/**
 * The usage report reads whole days from the daily usage and only the part-days at the ends of its period from
 * `exchanges`, by (organization, time). Through (organization_id, created_at) alone each of those rows was fetched
 * from the table: a busy organization's two part-days were about 1,400 table pages scattered among the other
 * organizations' rows (120 of the 136 ms of a 90-day report by day with a cold cache, on ten million exchanges).
 * With the columns the report sums in the index they are index-only scans of a few dozen pages. The index is the
 * same one, wider (lists of requests by time read it as before).
 *
 * Built on every monthly partition in the migration's transaction (writes to `exchanges` wait meanwhile). A month
 * whose indexes were rebuilt compact already (ExchangeIndexCompaction: all marked fillfactor 100) has its new index
 * marked too: it is built compact, and the month is not rebuilt again for it.
 */
export class CoverUsageEdges1797200000000 implements MigrationInterface {
  name = 'CoverUsageEdges1797200000000';

  public async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_exchanges_org_created"`);
    await queryRunner.query(`CREATE INDEX "ix_exchanges_org_created" ON "exchanges" ("organization_id", "created_at") INCLUDE (${COVERED})`);
    // the partitions whose every other index carries the compaction's mark
    const marked: { name: string }[] = await queryRunner.query(
      `SELECT i.relname AS name
         FROM pg_inherits hi JOIN pg_class i ON i.oid = hi.inhrelid JOIN pg_index x ON x.indexrelid = i.oid
        WHERE hi.inhparent = to_regclass('ix_exchanges_org_created')
          AND NOT EXISTS (SELECT 1 FROM pg_index o JOIN pg_class oi ON oi.oid = o.indexrelid
                           WHERE o.indrelid = x.indrelid AND o.indexrelid <> x.indexrelid
                             AND NOT coalesce('fillfactor=100' = ANY(oi.reloptions), false))
          AND EXISTS (SELECT 1 FROM pg_index o WHERE o.indrelid = x.indrelid AND o.indexrelid <> x.indexrelid)`,
    );
    for (const m of marked) await queryRunner.query(`ALTER INDEX "${m.name.replace(/"/g, '""')}" SET (fillfactor = 100)`);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS "ix_exchanges_org_created"`);
    await queryRunner.query(`CREATE INDEX "ix_exchanges_org_created" ON "exchanges" ("organization_id", "created_at")`);
  }
}
