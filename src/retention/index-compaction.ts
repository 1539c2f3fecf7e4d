import { Injectable } from '@nestjs/common';
import { Client } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import { JsonLogger } from '../common/logger';
import { DatabaseHandle } from '../database/embedded-database';
import { monthlyPartitions } from '../exchanges/monthly-partitions';
import { PARTITIONS_LOCK_CLASS } from './exchange-partitions';

/** How long after its month ends a partition is compacted: late completions and the sweep of its calls are done by then. */
export const COMPACT_AFTER_MS = 86_400_000;
/** After a failed run (no room on the disk, a role that does not own the table), how long until the next try. */
export const COMPACT_RETRY_MS = 3_600_000;

/** The index a closed month gets for the usage report's part-days (the columns it sums, beside the key it reads by). */
export const USAGE_INDEX_SUFFIX = '_usage_reads';
const USAGE_INDEX_COLUMNS = `(organization_id, created_at) INCLUDE (status, model, external_user_id, persona_id, input_tokens, output_tokens, total_tokens, cost)`;

/** what REINDEX CONCURRENTLY names its copies (…_ccnew before its swap, …_ccold after it), left invalid when cut short */
const REBUILD_LEFTOVER = '_cc(new|old)[0-9]*$';

/**
 * The partitions among `$1` (names) still to compact: one with a valid index not marked as compacted (fillfactor
 * 100), without its usage index, or with an invalid copy an interrupted rebuild left behind (REBUILD_LEFTOVER; an
 * interrupted CREATE INDEX CONCURRENTLY leaves the usage index invalid). Newest first: recent months are the most read.
 */
const DUE_PARTITIONS_SQL = `
  SELECT t.relname AS name
    FROM pg_inherits h
    JOIN pg_class t ON t.oid = h.inhrelid
   WHERE h.inhparent = to_regclass('exchanges') AND t.relname = ANY($1::text[])
     AND (NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                       WHERE x.indrelid = t.oid AND x.indisvalid AND i.relname = t.relname || '${USAGE_INDEX_SUFFIX}')
          OR EXISTS (SELECT 1 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                      WHERE x.indrelid = t.oid
                        AND CASE WHEN x.indisvalid THEN NOT coalesce('fillfactor=100' = ANY(i.reloptions), false)
                                 ELSE i.relname ~ '${REBUILD_LEFTOVER}' OR i.relname = t.relname || '${USAGE_INDEX_SUFFIX}' END))
   ORDER BY t.relname DESC`;

/**
 * The monthly partitions of months that ended COMPACT_AFTER_MS before `now` whose indexes are still to rebuild, newest
 * first. On any connection (`bench:scale` waits on it for the server's work).
 */
export async function partitionsDue(m: Pick<EntityManager, 'query'>, now: Date): Promise<string[]> {
  const closed = (await monthlyPartitions(m)).filter((p) => p.to.getTime() <= now.getTime() - COMPACT_AFTER_MS);
  if (closed.length === 0) return [];
  const rows: { name: string }[] = await m.query(DUE_PARTITIONS_SQL, [closed.map((p) => p.name)]);
  return rows.map((r) => r.name);
}

/**
 * Rebuilds the indexes of a month's partition of `exchanges` once the month is over, and gives it an index for the
 * usage report. While a month is written, its indexes take rows in time order under hundreds of keys at once
 * (personas, users, sessions), and B-tree pages split half full with each key's pages scattered over the file: the
 * indexes of a closed month were a third smaller rebuilt (the persona index, which persona analytics reads, 43%
 * smaller, each persona's entries together). Nothing but retention and erasure writes to a closed month, so once
 * rebuilt its indexes are marked fillfactor 100 (which is also the mark that the month is done).
 *
 * The usage report reads the part-days at the ends of its period from the rows, by (organization, time); a closed
 * month gets (organization_id, created_at) INCLUDE the columns it sums, so those reads are index-only instead of a
 * table page per row. Only closed months: on the month being written such an index would cost every write, and a
 * stream's completion most (it changes the included columns, so PostgreSQL cannot clear the pending row's entry
 * early), while that month's pages are the ones in memory anyway.
 *
 * `REINDEX TABLE CONCURRENTLY` and `CREATE INDEX CONCURRENTLY` take no lock the proxy's writes wait for; they run on
 * a connection of their own, without the pool's query timeout, one month after another, in one process at a time and
 * never beside the dropping of a month (the advisory lock ExchangePartitions.dropExpired takes). Work cut short (the
 * process stopping, a cancelled statement) leaves invalid indexes: they are dropped and the month done again on the
 * next run. Not done on the embedded database, which serves one connection at a time (the work would hold the
 * proxy's writes up) and holds small data.
 */
@Injectable()
export class ExchangeIndexCompaction {
  /** the server process of the connection rebuilding, cancelled when this process stops */
  private backendPid?: number;
  private stopped = false;
  /** no run before this time (ms): a run failed */
  private retryAt = 0;

  constructor(
    private readonly dataSource: DataSource,
    private readonly db: DatabaseHandle,
    private readonly logger: JsonLogger,
  ) {}

  /** The partitions still to rebuild as of `now` (partitionsDue). */
  due(now: Date): Promise<string[]> {
    return partitionsDue(this.dataSource.manager, now);
  }

  /**
   * Rebuilds the indexes of every partition due; returns how many were rebuilt (0 when another process is at it).
   * A run that fails is not tried again for COMPACT_RETRY_MS (a month's rebuild is heavy work to repeat every run).
   */
  async compactDue(now: Date): Promise<number> {
    if (this.db.embedded || this.stopped || now.getTime() < this.retryAt) return 0;
    try {
      return await this.compactDueNow(now);
    } catch (err) {
      if (!this.stopped) this.retryAt = now.getTime() + COMPACT_RETRY_MS;
      throw err;
    }
  }

  private async compactDueNow(now: Date): Promise<number> {
    const due = await this.due(now);
    if (due.length === 0) return 0;
    const client = new Client({ connectionString: this.db.url, application_name: 'openai-proxy-index-compaction' });
    client.on('error', () => undefined);
    await client.connect();
    let done = 0;
    try {
      this.backendPid = (await client.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
      // the lock that dropping a month takes too: one process rebuilds at a time, and never a month being dropped
      // (a rebuild and a drop of one month deadlock; the drop waits for the next run of the job instead)
      const got = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1, 1) AS ok`, [PARTITIONS_LOCK_CLASS]);
      if (!got.rows[0]?.ok) return 0;
      await client.query(`SET statement_timeout = 0`);
      // another process may have rebuilt some while this one waited for nothing: ask again under the lock
      for (const name of await this.due(now)) {
        if (this.stopped) break;
        await this.compact(client, name);
        done++;
      }
    } finally {
      this.backendPid = undefined;
      // the session's advisory lock goes with it
      await client.end().catch(() => undefined);
    }
    return done;
  }

  /** Stops between months, and cancels a rebuild at work (its invalid copies are dropped on the next run). */
  async stop(): Promise<void> {
    this.stopped = true;
    const pid = this.backendPid;
    if (pid) await this.dataSource.query(`SELECT pg_cancel_backend($1)`, [pid]).catch(() => undefined);
  }

  private async compact(client: Client, partition: string): Promise<void> {
    const started = performance.now();
    const usageIndex = `${partition}${USAGE_INDEX_SUFFIX}`;
    const indexes = async () =>
      (
        await client.query<{ name: string; valid: boolean; bytes: string }>(
          `SELECT i.relname AS name, x.indisvalid AS valid, pg_relation_size(i.oid)::text AS bytes
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indrelid = to_regclass($1)`,
          [partition],
        )
      ).rows;
    const leftover = new RegExp(REBUILD_LEFTOVER);
    const left = (await indexes()).filter((i) => !i.valid && (leftover.test(i.name) || i.name === usageIndex));
    for (const i of left) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${client.escapeIdentifier(i.name)}`);
    const before = (await indexes()).reduce((n, i) => n + Number(i.bytes), 0);
    await client.query(`REINDEX TABLE CONCURRENTLY ${client.escapeIdentifier(partition)}`);
    await client.query(
      `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${client.escapeIdentifier(usageIndex)} ON ${client.escapeIdentifier(partition)} ${USAGE_INDEX_COLUMNS} WITH (fillfactor = 100)`,
    );
    const rebuilt = await indexes();
    for (const i of rebuilt.filter((r) => r.valid)) await client.query(`ALTER INDEX ${client.escapeIdentifier(i.name)} SET (fillfactor = 100)`);
    this.logger.write('info', 'exchange partition indexes compacted', {
      partition,
      bytes_before: before,
      bytes_after: rebuilt.reduce((n, i) => n + Number(i.bytes), 0),
      usage_index_bytes: Number(rebuilt.find((i) => i.name === usageIndex)?.bytes ?? 0),
      leftovers_dropped: left.length,
      ms: Math.round(performance.now() - started),
    });
  }
}
