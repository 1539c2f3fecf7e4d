import { Client, Pool } from 'pg';
import { DataSource } from 'typeorm';
import { JsonLogger } from '../../common/logger';
import { AppConfig } from '../../config/app-config';
import { OPEN_COLUMNS } from './batch-sql';
import { DatabaseHandle } from '../../database/embedded-database';

/** The rows an UPDATE touched, as TypeORM's query() reports them ([rows, count]). */
function updated(result: unknown): number {
  return Array.isArray(result) ? Number(result[1] ?? 0) : 0;
}

export interface SqlPool {
  query(query: { name?: string; text: string; values: unknown[] }): Promise<unknown>;
}

/**
 * This server process as the database sees it: its connections carry the application name
 * `openai-proxy:<instance id>` (startServer names them so), one of them is held open so other processes see it
 * alive, and the rows of processes that are gone are swept. Also the recorder's own pools, under the same name.
 */
export class InstancePresence {
  /** the server process writing rows; null outside a server (the CLI) */
  readonly instanceId: string | null;
  readonly applicationName: string | undefined;
  private presence?: Client;
  private ownPool?: Pool;
  private syncPool?: Pool;
  private stopped = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly config: AppConfig,
    private readonly db: DatabaseHandle,
    private readonly logger: JsonLogger,
    private readonly maxInFlight: number,
    /** a connection was lost, or the held one ended: the database may be gone */
    private readonly lost: (err?: unknown) => void,
  ) {
    this.applicationName = (dataSource.options as { applicationName?: string }).applicationName;
    const m = /^openai-proxy:(.+)$/.exec(this.applicationName ?? '');
    this.instanceId = m ? m[1] : null;
  }

  /** Watches this process's connections to the database, and holds one open under its name. */
  async start(): Promise<void> {
    // the application's own pool loses its connections too when the database goes: noticed before a write fails
    const master = (this.dataSource.driver as unknown as { master?: { on?: (e: string, f: (err: unknown) => void) => void } }).master;
    master?.on?.('error', (err) => this.lost(err));
    if (!this.db.embedded) await this.keep();
  }

  /**
   * One connection held open under this process's application name, so other processes see it alive in
   * pg_stat_activity even while its pool is idle (e.g. during a long stream). Losing it means the database went
   * away: calls then write their pending row before the upstream is called.
   */
  private async keep(): Promise<void> {
    if (this.stopped) return;
    const client = new Client({ connectionString: this.db.url, application_name: this.applicationName });
    client.on('error', (err) => this.lost(err));
    client.on('end', () => {
      if (this.presence === client) {
        this.presence = undefined;
        if (!this.stopped) this.lost();
      }
      if (!this.stopped) setTimeout(() => void this.keep(), 1000).unref();
    });
    try {
      await client.connect();
      this.presence = client;
    } catch {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * Where a batch is written: the application's pool, or (`own`: PostgreSQL, in a server process) the recorder's
   * own small pools under this process's name. On those, pending rows commit asynchronously (visible to
   * every process at once and surviving this process being killed; a database crash could lose only rows whose
   * calls then never answered 2xx), while completions wait for the WAL flush unless RECORD_SYNC_COMMIT=off, so a
   * 2xx always has its durable record. A statement the database has not finished within RECORD_WRITE_TIMEOUT_MS
   * is cancelled by the server (so it cannot commit after it was given up on).
   */
  pool(durable: boolean, own: boolean): SqlPool {
    if (!own) {
      const master = (this.dataSource.driver as unknown as { master?: SqlPool }).master;
      return master && typeof master.query === 'function' ? master : { query: (q) => this.dataSource.query(q.text, q.values) };
    }
    const sync = durable && this.config.recordSyncCommit;
    const existing = sync ? this.syncPool : this.ownPool;
    if (existing) return existing;
    const timeout = this.config.recordWriteTimeoutMs;
    const pool = new Pool({
      connectionString: this.db.url,
      application_name: this.applicationName,
      max: Math.max(2, Math.min(this.maxInFlight + 1, this.db.maxPool)),
      connectionTimeoutMillis: Math.min(3000, timeout),
      idleTimeoutMillis: 30_000,
      // the server's statement_timeout cancels first; this one covers a server that no longer answers at all
      query_timeout: timeout + 1000,
      keepAlive: true,
      // the batches are prepared statements: their generic plan prunes the partitions at run time, while the
      // planner, which costs a generic plan over every partition, would otherwise plan a small batch at each run.
      // A completion finds its open call by its key: a generic plan made while open_calls held a few rows would
      // read the whole table instead (a hash join), for as long as the connection lives, and the table grows with
      // the rows its deletes leave until vacuum takes them (PostgreSQL's CPU per stream rose 1.4x within a minute)
      options: `-c synchronous_commit=${sync ? 'on' : 'off'} -c statement_timeout=${timeout} -c plan_cache_mode=force_generic_plan -c enable_seqscan=off`,
    });
    pool.on('error', (err) => this.lost(err));
    if (sync) this.syncPool = pool;
    else this.ownPool = pool;
    return pool;
  }

  /**
   * Records the open calls no call will complete as interrupted exchanges (written whole, the open call deleted),
   * and marks pending rows of `exchanges` (written by earlier versions) alike: those of server processes that are
   * gone, and this process's own that no running call owns (`owned`: the ids of calls begun before it was taken).
   */
  async sweep(owned: () => string[]): Promise<number> {
    if (!this.instanceId || !this.dataSource.isInitialized) return 0;
    const error = (message: string) => JSON.stringify({ message, type: 'server_error', code: 'interrupted', param: null });
    // rows begun before this instant that no call owns now: a call begun before it is among the owned
    const before = new Date();
    const ids = owned();
    // embedded mode: a single server process uses the database, so every other instance is gone
    const alive = this.db.embedded
      ? ''
      : `AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = 'openai-proxy:' || x.instance_id)`;
    const orphan = `(x.instance_id IS NULL OR (x.instance_id <> $1 ${alive})
                 OR (x.instance_id = $1 AND x.created_at < $4 AND NOT (x.id = ANY($5::text[]))))`;
    const errorOf = `CASE WHEN x.instance_id = $1 THEN $3::jsonb ELSE $2::jsonb END`;
    const params = [
      this.instanceId,
      error('The server process handling this exchange stopped before it finished'),
      error('The exchange ended without its outcome being recorded'),
      before.toISOString(),
      ids,
    ];
    const columns = OPEN_COLUMNS.join(', ');
    try {
      const closed = (await this.dataSource.query(
        `WITH closed AS (DELETE FROM open_calls x WHERE ${orphan} RETURNING x.*, ${errorOf} AS error)
         INSERT INTO exchanges (${columns}, status, completed_at, error)
         SELECT ${columns}, 'interrupted', now(), error FROM closed
         ON CONFLICT (id, created_at) DO NOTHING RETURNING 1`,
        params,
      )) as unknown[];
      const marked = (await this.dataSource.query(
        `UPDATE exchanges x SET status = 'interrupted', completed_at = now(), error = ${errorOf}
          WHERE x.status = 'pending' AND ${orphan}`,
        params,
      )) as [unknown, number];
      const count = closed.length + updated(marked);
      if (count) this.logger.write('warn', 'pending exchanges no running call will complete marked interrupted', { count });
      return count;
    } catch (err) {
      this.logger.write('warn', 'interrupted-exchange sweep failed', { err });
      return 0;
    }
  }

  /** The process is stopping: a lost connection is no longer news, and the held one is not made again. */
  stop(): void {
    this.stopped = true;
  }

  /** Lets the held connection and the pools go (after the recorder's last writes). */
  async end(): Promise<void> {
    this.stopped = true;
    const presence = this.presence;
    this.presence = undefined;
    await presence?.end().catch(() => undefined);
    const pools = [this.ownPool, this.syncPool];
    this.ownPool = undefined;
    this.syncPool = undefined;
    await Promise.all(pools.map((p) => p?.end().catch(() => undefined)));
  }
}
