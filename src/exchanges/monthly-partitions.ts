import type { EntityManager } from 'typeorm';

/** One monthly partition of `exchanges`: [from, to) of created_at. */
export interface ExchangePartition {
  name: string;
  from: Date;
  to: Date;
}

/**
 * The attached monthly partitions of `exchanges`, oldest first (the default partition, or one bounded by MINVALUE
 * or MAXVALUE, is not one of them); none when the table is not partitioned.
 */
export async function monthlyPartitions(m: Pick<EntityManager, 'query'>): Promise<ExchangePartition[]> {
  const rows: { name: string; bound: string }[] = await m.query(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass('exchanges')`,
  );
  const parts: ExchangePartition[] = [];
  for (const r of rows) {
    const b = /FROM \('([^']+)'\) TO \('([^']+)'\)/.exec(r.bound);
    if (b) parts.push({ name: r.name, from: new Date(b[1]), to: new Date(b[2]) });
  }
  return parts.sort((a, b) => a.from.getTime() - b.from.getTime());
}
