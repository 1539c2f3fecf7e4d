import type { DataSource } from 'typeorm';
import type { CounterAdd, CounterStore, CounterTake, TakeOutcome } from './counter-store';

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Counters in the `limit_counters` table. An admission is one call of `limit_counters_take` (see its migration):
 * the call's counters are locked in key order, checked, and only then taken, so concurrent admissions on any
 * number of processes see each other's amounts whole or not at all.
 */
export class PgCounterStore implements CounterStore {
  readonly name = 'postgres' as const;

  constructor(private readonly dataSource: DataSource) {}

  async take(items: CounterTake[]): Promise<TakeOutcome> {
    const rows: { r: number[] }[] = await this.dataSource.query(`SELECT limit_counters_take($1::text[], $2::float8[], $3::float8[], $4::timestamptz[]) AS r`, [
      items.map((i) => i.key),
      items.map((i) => i.amount),
      items.map((i) => i.limit),
      items.map((i) => iso(i.expiresAt)),
    ]);
    const r = rows[0].r.map(Number);
    return { refused: r[0] - 1, values: r.slice(1) };
  }

  async add(items: CounterAdd[]): Promise<void> {
    if (items.length === 0) return;
    // rows are locked in the same key order as admissions take them
    await this.dataSource.query(
      `INSERT INTO limit_counters (key, value, expires_at)
       SELECT * FROM unnest($1::text[], $2::float8[], $3::timestamptz[]) AS a(key, value, expires_at) ORDER BY a.key COLLATE "C"
       ON CONFLICT (key) DO UPDATE SET value = limit_counters.value + EXCLUDED.value`,
      [items.map((i) => i.key), items.map((i) => i.amount), items.map((i) => iso(i.expiresAt))],
    );
  }

  async set(items: CounterAdd[]): Promise<void> {
    if (items.length === 0) return;
    await this.dataSource.query(
      `INSERT INTO limit_counters (key, value, expires_at)
       SELECT * FROM unnest($1::text[], $2::float8[], $3::timestamptz[]) AS a(key, value, expires_at) ORDER BY a.key COLLATE "C"
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
