import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Client } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { JsonLogger } from '../common/logger';
import { DatabaseHandle } from './embedded-database';

export type ChangeKind = 'org' | 'user' | 'key' | 'token' | 'persona' | 'limits';
export type ChangeHandler = (ref: string) => void;

const CHANNEL = 'proxy_cache_invalidation';
/** Rows older than this are pruned: every following process has read them long before. */
export const CHANGE_RETENTION_S = 600;
const PRUNE_EVERY_MS = 60_000;
const PRUNE_BATCH = 5_000;

/** What a process has read up to: the database snapshot of its last poll (`xmin:xmax:xip,…`). */
interface ReadHorizon {
  /** transactions from this id on had not begun (or had no id) */
  xmax: string;
  /** transactions in progress then: their changes become visible later */
  inProgress: string[];
}

function horizonOf(snapshot: string): ReadHorizon {
  const [, xmax, xip] = snapshot.split(':');
  return { xmax, inProgress: xip ? xip.split(',') : [] };
}

/**
 * Keeps the in-memory caches of every process coherent. A change is written to `cache_invalidations` in the
 * same transaction as the data it invalidates, and announced with NOTIFY; each process reads new rows when
 * notified, and on a short timer as a backstop (a dropped listener connection, or the embedded database,
 * where NOTIFY does not cross connections).
 *
 * Which rows are new is decided by transaction, not by id or time. Ids are assigned at insert but rows become
 * visible at commit, so a lower id can appear after a higher one; a time window to re-read recent rows either
 * misses a slow commit or, once it holds more rows than one read takes, starves everything after them. Each row
 * carries the id of the transaction that wrote it; a poll reads, in one statement, the rows visible now that were
 * not visible in the previous poll's snapshot: written by a transaction that had not begun then (id ≥ its
 * xmax) or that was still in progress then (its xip list, at most one entry per open connection). Every
 * committed change is read exactly once, whatever the number of rows or the order of commits, and the read
 * is two index range scans on `tx`.
 */
@Injectable()
export class ChangeFeedService implements OnApplicationShutdown {
  private readonly handlers = new Map<ChangeKind, ChangeHandler[]>();
  private horizon?: ReadHorizon;
  private lastReadAt = 0;
  private lastPruneAt = 0;
  private timer?: NodeJS.Timeout;
  private listener?: Client;
  private polling?: Promise<void>;
  /** a poll was asked for while one ran (its snapshot may predate the commit that was announced) */
  private again = false;
  private stopped = false;
  private started = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly config: AppConfig,
    private readonly db: DatabaseHandle,
    private readonly logger: JsonLogger,
  ) {}

  on(kind: ChangeKind, handler: ChangeHandler): void {
    const list = this.handlers.get(kind) ?? [];
    list.push(handler);
    this.handlers.set(kind, list);
  }

  /** Records a change inside the caller's transaction, and applies it to this process at once. */
  async publish(manager: EntityManager, kind: ChangeKind, ref: string): Promise<void> {
    await manager.query('INSERT INTO cache_invalidations (kind, ref) VALUES ($1, $2)', [kind, ref]);
    await manager.query('SELECT pg_notify($1, $2)', [CHANNEL, kind]);
    this.dispatch(kind, ref);
  }

  /** Starts following changes (server processes only; a CLI run only publishes). */
  async follow(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // changes committed before this snapshot are already reflected in what this process will load
    const rows: { snapshot: string }[] = await this.dataSource.query('SELECT pg_current_snapshot()::text AS snapshot');
    this.horizon = horizonOf(rows[0].snapshot);
    this.lastReadAt = Date.now();
    this.lastPruneAt = Date.now() - Math.random() * PRUNE_EVERY_MS;
    this.timer = setInterval(() => this.poll(), this.config.cacheSyncIntervalMs);
    this.timer.unref();
    if (!this.db.embedded) void this.listen();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.listener?.end().catch(() => undefined);
  }

  /**
   * Deletes changes older than the retention, in batches; processes pruning at once take disjoint batches
   * (SKIP LOCKED) instead of waiting on each other. Returns the number of rows deleted.
   */
  async prune(): Promise<number> {
    let total = 0;
    for (;;) {
      const rows: { n: number }[] = await this.dataSource.query(
        `WITH gone AS (
           DELETE FROM cache_invalidations WHERE id IN (
             SELECT id FROM cache_invalidations WHERE created_at < now() - make_interval(secs => $1)
              ORDER BY created_at LIMIT ${PRUNE_BATCH} FOR UPDATE SKIP LOCKED)
           RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [CHANGE_RETENTION_S],
      );
      total += rows[0].n;
      if (rows[0].n < PRUNE_BATCH || this.stopped) return total;
    }
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    const client = new Client({ connectionString: this.db.url, application_name: 'openai-proxy-listener' });
    client.on('error', () => undefined);
    client.on('notification', () => this.poll());
    client.on('end', () => {
      if (this.listener === client) this.listener = undefined;
      if (!this.stopped) setTimeout(() => void this.listen(), 1000).unref();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
      this.poll();
    } catch {
      await client.end().catch(() => undefined);
    }
  }

  /** Reads new changes; a request during a poll runs one more right after (notifications are never dropped). */
  private poll(): void {
    if (this.stopped || !this.horizon) return;
    if (this.polling) {
      this.again = true;
      return;
    }
    this.polling = (async () => {
      do {
        this.again = false;
        await this.readChanges();
      } while (this.again && !this.stopped);
      if (Date.now() - this.lastPruneAt >= PRUNE_EVERY_MS && !this.stopped) {
        this.lastPruneAt = Date.now();
        await this.prune().catch((err) => {
          if (!this.stopped) this.logger.write('warn', 'pruning old cache invalidations failed', { err });
        });
      }
    })().finally(() => {
      this.polling = undefined;
    });
  }

  private async readChanges(): Promise<void> {
    if (!this.dataSource.isInitialized) return;
    const horizon = this.horizon!;
    try {
      // one statement: the rows and the snapshot they were read in are the same
      const rows: { snapshot: string; id: string | null; kind: ChangeKind | null; ref: string | null }[] = await this.dataSource.query(
        `SELECT s.snapshot::text AS snapshot, c.id::text AS id, c.kind, c.ref
           FROM (SELECT pg_current_snapshot() AS snapshot) s
           LEFT JOIN cache_invalidations c ON c.tx >= $1::bigint OR c.tx = ANY($2::bigint[])`,
        [horizon.xmax, horizon.inProgress],
      );
      const now = Date.now();
      if (now - this.lastReadAt > CHANGE_RETENTION_S * 1000) {
        this.logger.write('warn', 'the change feed was unreadable for longer than changes are kept; cached data may be stale', {
          seconds: Math.round((now - this.lastReadAt) / 1000),
        });
      }
      this.horizon = horizonOf(rows[0].snapshot);
      this.lastReadAt = now;
      for (const row of rows) if (row.kind !== null) this.dispatch(row.kind, row.ref!);
    } catch (err) {
      this.logger.write('debug', 'cache sync poll failed', { err });
    }
  }

  private dispatch(kind: ChangeKind, ref: string): void {
    for (const h of this.handlers.get(kind) ?? []) h(ref);
  }
}
