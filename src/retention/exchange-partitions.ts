import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { JsonLogger } from '../common/logger';
import { ExchangePartition, monthlyPartitions } from '../exchanges/monthly-partitions';
import { UsageDailyRepository } from '../exchanges/usage-daily/usage-daily.repository';
import { RETENTION_LOCK_CLASS } from './retention.repository';
import { UsageRollupsRepository } from './usage-rollups.repository';

const DAY_MS = 86_400_000;
/** months of partitions kept ready ahead of the current one, so rows never land in the default partition */
export const MONTHS_AHEAD = 2;
/** advisory lock class of partition upkeep: key 0 creating months, 1 dropping them or rebuilding their indexes */
export const PARTITIONS_LOCK_CLASS = 7_345_114;
const DETACH_ATTEMPTS = 6;

export type { ExchangePartition } from '../exchanges/monthly-partitions';

/** The first instant of the UTC month of `at`, `plus` months later. */
export function monthStart(at: Date, plus = 0): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + plus, 1));
}

export function partitionName(from: Date): string {
  return `exchanges_p${from.getUTCFullYear()}_${String(from.getUTCMonth() + 1).padStart(2, '0')}`;
}

/**
 * The monthly partitions of `exchanges` (migration PartitionExchanges): created ahead of time, and dropped whole
 * once every organization with rows in one is done with it. Dropping a month is a catalog change, not millions of
 * row deletions; what analytics reports about its rows goes to the daily rollups in the same transaction.
 * Does nothing on a database whose `exchanges` is not partitioned.
 */
@Injectable()
export class ExchangePartitions {
  private ensuredMonth?: number;

  constructor(
    private readonly dataSource: DataSource,
    private readonly rollups: UsageRollupsRepository,
    private readonly usageDaily: UsageDailyRepository,
    private readonly logger: JsonLogger,
  ) {}

  async isPartitioned(): Promise<boolean> {
    const rows: { kind: string }[] = await this.dataSource.query(
      `SELECT relkind AS kind FROM pg_class WHERE oid = to_regclass('exchanges')`,
    );
    return rows[0]?.kind === 'p';
  }

  /** The attached monthly partitions, oldest first (the default partition is not one of them). */
  list(m: EntityManager = this.dataSource.manager): Promise<ExchangePartition[]> {
    return monthlyPartitions(m);
  }

  /** Makes sure the months from the one of `from` to the one of `to` have their partitions. */
  async ensureRange(from: Date, to: Date): Promise<number> {
    if (!(await this.isPartitioned())) return 0;
    let created = 0;
    await this.dataSource.transaction(async (m) => {
      // one process at a time; the others find the partitions made
      const got: { ok: boolean }[] = await m.query(`SELECT pg_try_advisory_xact_lock($1, 0) AS ok`, [PARTITIONS_LOCK_CLASS]);
      if (!got[0]?.ok) return;
      await m.query(`SELECT set_config('lock_timeout', '2s', true)`);
      // on the transaction's connection: the embedded database serves one connection at a time
      const existing = new Set((await this.list(m)).map((p) => p.name));
      for (let start = monthStart(from); start <= monthStart(to); start = monthStart(start, 1)) {
        const name = partitionName(start);
        if (existing.has(name)) continue;
        await m.query(
          `CREATE TABLE "${name}" PARTITION OF exchanges FOR VALUES FROM ('${start.toISOString()}') TO ('${monthStart(start, 1).toISOString()}')`,
        );
        created++;
      }
    });
    return created;
  }

  /** The current month and the next MONTHS_AHEAD have partitions (checked once a month per process). */
  async ensureAhead(now: Date): Promise<void> {
    const month = monthStart(now).getTime();
    if (this.ensuredMonth === month) return;
    try {
      await this.ensureRange(now, monthStart(now, MONTHS_AHEAD));
      this.ensuredMonth = month;
    } catch (err) {
      // rows of that month already in the default partition, or a lock not granted: the next run tries again
      this.logger.write('warn', 'exchange partitions could not be created ahead', { err });
    }
  }

  /**
   * Drops the partitions that ended before `now` and whose every organization deletes exchanges of that age
   * (an organization without a retention keeps its rows, and with them the partition; its rows of organizations
   * with a retention are deleted in batches instead). Returns the partitions dropped.
   */
  async dropExpired(now: Date): Promise<number> {
    if (!(await this.isPartitioned())) return 0;
    let dropped = 0;
    for (const part of await this.list()) {
      if (part.to > now) break;
      try {
        if (await this.dropIfExpired(part, now)) dropped++;
      } catch (err) {
        // a lock not granted in time, most likely: the next run tries again
        this.logger.write('warn', 'exchange partition could not be dropped', { partition: part.name, err });
      }
    }
    return dropped;
  }

  private async dropIfExpired(part: ExchangePartition, now: Date): Promise<boolean> {
    return this.dataSource.transaction(async (m) => {
      const got: { ok: boolean }[] = await m.query(`SELECT pg_try_advisory_xact_lock($1, 1) AS ok`, [PARTITIONS_LOCK_CLASS]);
      if (!got[0]?.ok) return false;
      // No table lock while the month is counted: a write that only knows an id (the recorder completing a row)
      // locks every partition, and must never wait for this. Nothing writes to a month that ended but what
      // retention does itself, which the organizations' locks below keep out.
      await m.query(`SELECT set_config('statement_timeout', '600s', true)`);
      // the organizations with rows in it, found by skipping through the (organization_id, created_at) index
      const orgs: { id: string; days: number | null; live: boolean }[] = await m.query(
        `WITH RECURSIVE o(id) AS (
           (SELECT organization_id FROM "${part.name}" ORDER BY organization_id LIMIT 1)
           UNION ALL
           SELECT (SELECT organization_id FROM "${part.name}" WHERE organization_id > o.id ORDER BY organization_id LIMIT 1) FROM o WHERE o.id IS NOT NULL)
         SELECT o.id, g.retention_days AS days, g.id IS NOT NULL AS live FROM o LEFT JOIN organizations g ON g.id = o.id WHERE o.id IS NOT NULL`,
      );
      // an organization that no longer exists has no claim on its rows
      const keep = orgs.some((o) => o.live && (o.days === null || part.to.getTime() > now.getTime() - o.days * DAY_MS));
      if (keep) return false;
      // no batch of the retention job may be at work on these organizations' rows meanwhile
      for (const o of orgs) {
        const free: { ok: boolean }[] = await m.query(`SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS ok`, [RETENTION_LOCK_CLASS, o.id]);
        if (!free[0]?.ok) return false;
      }
      const whole = { table: part.name, from: part.from, to: part.to };
      await this.rollups.addPartition(m, whole);
      await m.query(
        `DELETE FROM analysis_claims c WHERE c.expires_at < now()
            AND (c.organization_id, c.cache_key) IN (SELECT a.organization_id, a.cache_key FROM analysis_results a JOIN "${part.name}" e ON e.id = a.exchange_id)`,
      );
      await m.query(`DELETE FROM analysis_results a USING "${part.name}" e WHERE a.exchange_id = e.id AND a.organization_id = e.organization_id`);
      await m.query(`DELETE FROM ratings r USING "${part.name}" e WHERE r.exchange_id = e.id AND r.organization_id = e.organization_id`);
      // a short wait at most for the parent's lock, so the proxy's writes never queue behind it for long; tried a
      // few times (a savepoint keeps the rollup) before the month is left for the next run
      await m.query(`SELECT set_config('lock_timeout', '500ms', true)`);
      for (let attempt = 1; ; attempt++) {
        await m.query(`SAVEPOINT detach_month`);
        try {
          await m.query(`ALTER TABLE exchanges DETACH PARTITION "${part.name}"`);
          break;
        } catch (err) {
          await m.query(`ROLLBACK TO SAVEPOINT detach_month`);
          if ((err as { driverError?: { code?: string } }).driverError?.code !== '55P03' || attempt >= DETACH_ATTEMPTS) throw err;
          await new Promise((r) => setTimeout(r, 250 * attempt));
        }
      }
      await m.query(`DROP TABLE "${part.name}"`);
      // dropping a table fires no DELETE trigger: the month's days are taken out of the stored daily usage here
      await this.usageDaily.forgetProxyDays(m, part.from, part.to);
      this.logger.write('info', 'exchange partition dropped', { partition: part.name });
      return true;
    });
  }
}
