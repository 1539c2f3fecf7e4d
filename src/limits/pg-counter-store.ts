import type { DataSource } from 'typeorm';
import type { AdmitOutcome, CounterAdd, CounterIncrement, CounterRead, CounterStore } from './counter-store';

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Counters in the `limit_counters` table. Admission is one statement: the reads are checked and, only when none is
 * at its limit, the increments are applied with INSERT … ON CONFLICT DO UPDATE … RETURNING (row locks serialize
 * concurrent callers, so every caller sees a distinct value). An increment that passed its limit is undone
 * right after, so the counter never admits more than the limit in a window.
 */
export class PgCounterStore implements CounterStore {
  readonly name = 'postgres' as const;

  constructor(private readonly dataSource: DataSource) {}

  async admit(reads: CounterRead[], increments: CounterIncrement[]): Promise<AdmitOutcome> {
    const values: number[] = new Array(reads.length + increments.length);
    const readKeys = reads.map((r) => r.key);
    let rows: { key: string; value: number; k: string }[];
    if (increments.length === 0) {
      rows = await this.dataSource.query(`SELECT key, value, 'r' AS k FROM limit_counters WHERE key = ANY($1::text[])`, [readKeys]);
    } else {
      // keys are always locked in the same order (organization, then user), so concurrent admissions cannot deadlock
      rows = await this.dataSource.query(
        `WITH over AS (
           SELECT count(*) > 0 AS hit FROM limit_counters c
           JOIN unnest($1::text[], $2::float8[]) AS r(key, lim) ON c.key = r.key WHERE c.value >= r.lim),
         inc AS (
           INSERT INTO limit_counters (key, value, expires_at)
           SELECT key, 1, expires_at FROM unnest($3::text[], $4::timestamptz[]) AS i(key, expires_at)
           WHERE NOT (SELECT hit FROM over)
           ON CONFLICT (key) DO UPDATE SET value = limit_counters.value + 1
           RETURNING key, value)
         SELECT key, value, 'i' AS k FROM inc
         UNION ALL
         SELECT key, value, 'r' AS k FROM limit_counters WHERE key = ANY($1::text[])`,
        [readKeys, reads.map((r) => r.limit), increments.map((i) => i.key), increments.map((i) => iso(i.expiresAt))],
      );
    }
    const readValues = new Map<string, number>();
    const incValues = new Map<string, number>();
    for (const row of rows) (row.k === 'i' ? incValues : readValues).set(row.key, Number(row.value));
    let refused = -1;
    reads.forEach((r, i) => {
      values[i] = readValues.get(r.key) ?? 0;
      if (refused < 0 && values[i] >= r.limit) refused = i;
    });
    if (refused >= 0 || increments.length === 0) return { refused, values };
    increments.forEach((inc, j) => {
      values[reads.length + j] = incValues.get(inc.key) ?? 0;
      if (refused < 0 && values[reads.length + j] > inc.limit) refused = reads.length + j;
    });
    if (refused >= 0) {
      await this.dataSource.query(`UPDATE limit_counters SET value = value - 1 WHERE key = ANY($1::text[])`, [
        increments.map((i) => i.key),
      ]);
    }
    return { refused, values };
  }

  async add(items: CounterAdd[]): Promise<void> {
    if (items.length === 0) return;
    await this.dataSource.query(
      `INSERT INTO limit_counters (key, value, expires_at)
       SELECT * FROM unnest($1::text[], $2::float8[], $3::timestamptz[])
       ON CONFLICT (key) DO UPDATE SET value = limit_counters.value + EXCLUDED.value`,
      [items.map((i) => i.key), items.map((i) => i.amount), items.map((i) => iso(i.expiresAt))],
    );
  }

  async set(items: CounterAdd[]): Promise<void> {
    if (items.length === 0) return;
    await this.dataSource.query(
      `INSERT INTO limit_counters (key, value, expires_at)
       SELECT * FROM unnest($1::text[], $2::float8[], $3::timestamptz[])
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
      [items.map((i) => i.key), items.map((i) => i.amount), items.map((i) => iso(i.expiresAt))],
    );
  }

  async get(keys: string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const rows: { key: string; value: number }[] = await this.dataSource.query(
      `SELECT key, value FROM limit_counters WHERE key = ANY($1::text[])`,
      [keys],
    );
    const byKey = new Map(rows.map((r) => [r.key, Number(r.value)]));
    return keys.map((k) => byKey.get(k) ?? 0);
  }

  /** Drops counters of windows that ended a while ago. */
  async purgeExpired(): Promise<void> {
    await this.dataSource.query(`DELETE FROM limit_counters WHERE expires_at < now()`);
  }
}
