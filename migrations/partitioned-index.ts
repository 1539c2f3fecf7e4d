import { QueryRunner } from 'typeorm';

/**
 * Builds an index of the partitioned `exchanges` table without holding up its writes: the partitioned index is
 * made on the parent alone (invalid until every partition has its own), then each partition's with
 * `CREATE INDEX CONCURRENTLY` and attached. A plain `CREATE INDEX` on the parent holds every partition against
 * writes while it reads them all: on ten million exchanges whose pages were not in memory, a minute of calls whose
 * records could not be written. For a migration with `transaction = false`; run again after a failure, it drops
 * a partition's index left invalid by a cut-short build and builds it again, and skips those already attached.
 * A month whose indexes are all packed full (fillfactor 100: a closed month the server has rebuilt, see
 * ExchangeIndexCompaction) gets its new index packed too: built from sorted rows it is as compact as a rebuild
 * makes it, and unmarked it would have the server rebuild the whole month again.
 */
export async function createExchangesIndex(q: QueryRunner, name: string, columns: string[], where: string): Promise<void> {
  const cols = columns.map((c) => `"${c}"`).join(', ');
  await q.query(`CREATE INDEX IF NOT EXISTS "${name}" ON ONLY "exchanges" (${cols}) WHERE ${where}`);
  const partitions: { partition: string }[] = await q.query(
    `SELECT c.relname AS partition FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'exchanges'::regclass ORDER BY 1`,
  );
  for (const { partition } of partitions) {
    // the partition's index already attached to this one (made with the partition, or by an earlier run)
    const attached: unknown[] = await q.query(
      `SELECT 1 FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
        WHERE i.inhparent = $1::regclass AND x.indrelid = $2::regclass`,
      [`"${name}"`, `"${partition}"`],
    );
    if (attached.length) continue;
    const child = `${partition}_${columns.join('_')}_idx`.slice(0, 63);
    const left: { valid: boolean }[] = await q.query(
      `SELECT x.indisvalid AS valid FROM pg_class c JOIN pg_index x ON x.indexrelid = c.oid WHERE c.relname = $1 AND c.relkind = 'i'`,
      [child],
    );
    if (left.length && !left[0].valid) await q.query(`DROP INDEX CONCURRENTLY IF EXISTS "${child}"`);
    const [{ packed }]: { packed: boolean }[] = await q.query(
      `SELECT coalesce(bool_and(coalesce('fillfactor=100' = ANY(i.reloptions), false)), false) AS packed
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass AND x.indisvalid`,
      [`"${partition}"`],
    );
    const options = packed ? ' WITH (fillfactor = 100)' : '';
    await q.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS "${child}" ON "${partition}" (${cols})${options} WHERE ${where}`);
    await q.query(`ALTER INDEX "${name}" ATTACH PARTITION "${child}"`);
  }
}
