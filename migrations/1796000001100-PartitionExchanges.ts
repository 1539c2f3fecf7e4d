import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `exchanges` becomes a table partitioned by month of created_at, so that retention drops a month whole instead
 * of deleting its rows one by one (see src/retention/exchange-partitions.ts).
 *
 * Monthly, not weekly: retention periods are days to years, so a month is a fine enough unit to drop, and the
 * partitions stay few (three dozen for three years). That matters because a row is often found by its id alone
 * (the recorder completes a row by id, a rating names an exchange by id): such a lookup cannot be pruned and
 * probes every partition's primary key index.
 *
 * The primary key becomes (id, created_at) — a partitioned table's unique keys must hold the partition key;
 * ids stay unique as they are random. The foreign key from ratings to exchanges goes (it could only reference
 * the whole key): whatever deletes exchanges deletes their ratings and analysis results itself.
 *
 * The table is converted with its data in the migration's transaction: the rows are copied into the partitions
 * (months of the existing rows up to two months ahead, and a default partition for anything outside), then the
 * indexes the old table had are built again on the new one. Writes wait for the copy (about 10 s per million rows).
 */
export class PartitionExchanges1796000001100 implements MigrationInterface {
  name = 'PartitionExchanges1796000001100';

  public async up(queryRunner: QueryRunner): Promise<void> {
    const kind: { relkind: string }[] = await queryRunner.query(`SELECT relkind FROM pg_class WHERE oid = 'exchanges'::regclass`);
    if (kind[0]?.relkind === 'p') return;
    const indexes = await secondaryIndexes(queryRunner, 'exchanges');
    await dropReferences(queryRunner);
    await queryRunner.query(`ALTER TABLE "exchanges" RENAME TO "exchanges_unpartitioned"`);
    await queryRunner.query(
      `CREATE TABLE "exchanges" (LIKE "exchanges_unpartitioned" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)
       PARTITION BY RANGE ("created_at")`,
    );
    const span: { first: Date | null }[] = await queryRunner.query(`SELECT min("created_at") AS first FROM "exchanges_unpartitioned"`);
    const now = new Date();
    const first = span[0]?.first ? new Date(span[0].first) : now;
    for (let m = month(first); m <= month(now, 2); m = month(m, 1)) {
      await queryRunner.query(
        `CREATE TABLE "${partitionName(m)}" PARTITION OF "exchanges" FOR VALUES FROM ('${m.toISOString()}') TO ('${month(m, 1).toISOString()}')`,
      );
    }
    await queryRunner.query(`CREATE TABLE "exchanges_default" PARTITION OF "exchanges" DEFAULT`);
    await queryRunner.query(`INSERT INTO "exchanges" SELECT * FROM "exchanges_unpartitioned"`);
    await queryRunner.query(`DROP TABLE "exchanges_unpartitioned"`);
    await queryRunner.query(`ALTER TABLE "exchanges" ADD CONSTRAINT "PK_exchanges" PRIMARY KEY ("id", "created_at")`);
    for (const def of indexes) await queryRunner.query(def);
  }

  public async down(queryRunner: QueryRunner): Promise<void> {
    const kind: { relkind: string }[] = await queryRunner.query(`SELECT relkind FROM pg_class WHERE oid = 'exchanges'::regclass`);
    if (kind[0]?.relkind !== 'p') return;
    const indexes = await secondaryIndexes(queryRunner, 'exchanges');
    await queryRunner.query(`ALTER TABLE "exchanges" RENAME TO "exchanges_partitioned"`);
    await queryRunner.query(
      `CREATE TABLE "exchanges" (LIKE "exchanges_partitioned" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)`,
    );
    await queryRunner.query(`INSERT INTO "exchanges" SELECT * FROM "exchanges_partitioned"`);
    await queryRunner.query(`DROP TABLE "exchanges_partitioned"`);
    await queryRunner.query(`ALTER TABLE "exchanges" ADD CONSTRAINT "PK_17ccd29473f939c68de98c2cea3" PRIMARY KEY ("id")`);
    for (const def of indexes) await queryRunner.query(def);
    await queryRunner.query(`DELETE FROM "ratings" r WHERE NOT EXISTS (SELECT 1 FROM "exchanges" e WHERE e."id" = r."exchange_id")`);
    await queryRunner.query(
      `ALTER TABLE "ratings" ADD CONSTRAINT "fk_ratings_exchange" FOREIGN KEY ("exchange_id") REFERENCES "exchanges"("id") ON DELETE CASCADE`,
    );
  }
}

function month(at: Date, plus = 0): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + plus, 1));
}

/** the same names as src/retention/exchange-partitions.ts, which creates the months after these */
function partitionName(from: Date): string {
  return `exchanges_p${from.getUTCFullYear()}_${String(from.getUTCMonth() + 1).padStart(2, '0')}`;
}

/**
 * The CREATE INDEX statements of a table's indexes other than its primary key (whatever earlier migrations made),
 * to build them again on the table that replaces it. A unique index other than the key could not hold on the
 * partitioned table without created_at: the migration refuses rather than drop a guarantee silently.
 */
async function secondaryIndexes(queryRunner: QueryRunner, table: string): Promise<string[]> {
  const rows: { def: string; unique: boolean; primary: boolean }[] = await queryRunner.query(
    `SELECT pg_get_indexdef(i.indexrelid) AS def, i.indisunique AS unique, i.indisprimary AS primary
       FROM pg_index i WHERE i.indrelid = $1::regclass ORDER BY i.indexrelid`,
    [table],
  );
  const unique = rows.filter((r) => r.unique && !r.primary);
  if (unique.length) throw new Error(`exchanges has unique indexes other than its key; partitioning would drop them: ${unique.map((r) => r.def).join('; ')}`);
  return rows.filter((r) => !r.primary).map((r) => r.def);
}

/** Foreign keys that reference exchanges(id) (ratings') go: a partitioned table can only be referenced by its whole key. */
async function dropReferences(queryRunner: QueryRunner): Promise<void> {
  const refs: { name: string; owner: string }[] = await queryRunner.query(
    `SELECT conname AS name, conrelid::regclass::text AS owner FROM pg_constraint WHERE confrelid = 'exchanges'::regclass AND contype = 'f'`,
  );
  for (const ref of refs) await queryRunner.query(`ALTER TABLE ${ref.owner} DROP CONSTRAINT "${ref.name}"`);
}
