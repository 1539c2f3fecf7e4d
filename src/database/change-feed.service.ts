import { Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Client } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { JsonLogger } from '../common/logger';
import { DatabaseHandle } from './embedded-database';

export type ChangeKind = 'org' | 'user' | 'key' | 'token' | 'persona' | 'limits';
export type ChangeHandler = (ref: string) => void;

const CHANNEL = 'proxy_cache_invalidation';
// a change's transaction is expected to commit within this long after it wrote its row
const RECHECK_WINDOW_S = 30;

/**
 * Keeps the in-memory caches of every process coherent. A change is written to `cache_invalidations` in the
 * same transaction as the data it invalidates, and announced with NOTIFY; each process reads new rows when
 * notified, and on a short timer as a backstop (a dropped listener connection, or the embedded database,
 * where NOTIFY does not cross connections).
 */
@Injectable()
export class ChangeFeedService implements OnModuleInit, OnApplicationShutdown {
  private readonly handlers = new Map<ChangeKind, ChangeHandler[]>();
  private lastId = 0n;
  /** ids applied recently (re-read within the recheck window) */
  private readonly applied = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private listener?: Client;
  private polling = false;
  private polls = 0;
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
    const rows: { max: string | null }[] = await this.dataSource.query('SELECT max(id)::text AS max FROM cache_invalidations');
    this.lastId = BigInt(rows[0]?.max ?? 0);
    // changes committed before this point are already reflected in what this process will load
    const recent: { id: string }[] = await this.dataSource.query(
      `SELECT id::text AS id FROM cache_invalidations WHERE created_at > now() - interval '${RECHECK_WINDOW_S} seconds'`,
    );
    for (const r of recent) this.applied.set(r.id, Date.now());
    this.timer = setInterval(() => void this.poll(), this.config.cacheSyncIntervalMs);
    this.timer.unref();
    if (!this.db.embedded) void this.listen();
  }

  onModuleInit(): void {}

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.listener?.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    const client = new Client({ connectionString: this.db.url, application_name: 'openai-proxy-listener' });
    client.on('error', () => undefined);
    client.on('notification', () => void this.poll());
    client.on('end', () => {
      if (this.listener === client) this.listener = undefined;
      if (!this.stopped) setTimeout(() => void this.listen(), 1000).unref();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
      void this.poll();
    } catch {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * Reads changes not yet applied. Ids are assigned at insert but become visible at commit, so a lower id can
   * appear after a higher one: recent rows are re-read and de-duplicated rather than trusting `id > last`.
   */
  private async poll(): Promise<void> {
    if (this.polling || this.stopped || !this.dataSource.isInitialized) return;
    this.polling = true;
    try {
      const rows: { id: string; kind: ChangeKind; ref: string }[] = await this.dataSource.query(
        `SELECT id::text AS id, kind, ref FROM cache_invalidations
         WHERE id > $1 OR created_at > now() - interval '${RECHECK_WINDOW_S} seconds'
         ORDER BY id LIMIT 5000`,
        [this.lastId.toString()],
      );
      const now = Date.now();
      for (const row of rows) {
        const id = BigInt(row.id);
        if (id > this.lastId) this.lastId = id;
        if (this.applied.has(row.id)) continue;
        this.applied.set(row.id, now);
        this.dispatch(row.kind, row.ref);
      }
      if (++this.polls % 3600 === 0) {
        await this.dataSource.query(`DELETE FROM cache_invalidations WHERE created_at < now() - interval '1 day'`);
      }
      for (const [id, at] of this.applied) {
        if (now - at > 2 * RECHECK_WINDOW_S * 1000) this.applied.delete(id);
      }
    } catch (err) {
      this.logger.write('debug', 'cache sync poll failed', { err });
    } finally {
      this.polling = false;
    }
  }

  private dispatch(kind: ChangeKind, ref: string): void {
    for (const h of this.handlers.get(kind) ?? []) h(ref);
  }
}
