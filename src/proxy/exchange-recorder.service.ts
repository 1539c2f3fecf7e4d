import { Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Client, Pool } from 'pg';
import { DataSource } from 'typeorm';
import { AppException, isDatabaseUnavailable } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { DatabaseHandle } from '../database/embedded-database';
import type { TokenUsage } from './exchange-capture';

export type ExchangeStatus =
  | 'pending'
  | 'completed'
  | 'failed'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'client_aborted'
  | 'interrupted'
  /** a background response the upstream has not finished */
  | 'queued';

/** The row written before the upstream is called. */
export interface PendingExchange {
  id: string;
  organizationId: string;
  userId: string;
  externalUserId: string;
  sessionId: string;
  personaId: string | null;
  personaVersion: number | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  /** the JSON text sent upstream, stored as jsonb without re-serializing it */
  requestBody: string;
  keyId: string;
  keySource: string;
  createdAt: Date;
}

/** How the exchange ended. */
export interface ExchangeOutcome {
  id: string;
  status: ExchangeStatus;
  upstreamStatus: number | null;
  responseId: string | null;
  /** JSON text (stored as is) or a value to serialize */
  responseBody: unknown;
  outputText: string | null;
  error: unknown;
  usage: TokenUsage | null;
  cost: number | null;
  latencyMs: number;
  timeToFirstByteMs: number | null;
}

interface InsertItem {
  kind: 'insert';
  row: PendingExchange;
  resolve: () => void;
  reject: (err: unknown) => void;
  plainBodies?: boolean;
  /** held (not yet due), queued, or sent to the database */
  state: 'held' | 'queued' | 'sent';
  /** when a held row becomes due (performance.now()) */
  dueAt?: number;
  /** the call ended before its pending row was sent: the row is written whole, in one INSERT */
  outcome?: ExchangeOutcome;
  completedAt?: Date;
}
type Item =
  | InsertItem
  | { kind: 'update'; row: ExchangeOutcome; completedAt: Date; resolve: () => void; reject: (err: unknown) => void; plainBodies?: boolean };

interface SqlPool {
  query(query: { name?: string; text: string; values: unknown[] }): Promise<unknown>;
}

const INSERT_FIELDS: [string, string][] = [
  ['id', 'text'],
  ['organization_id', 'uuid'],
  ['user_id', 'uuid'],
  ['external_user_id', 'text'],
  ['session_id', 'text'],
  ['persona_id', 'uuid'],
  ['persona_version', 'int'],
  ['endpoint', 'text'],
  ['model', 'text'],
  ['stream', 'boolean'],
  ['request_body', 'jsonb'],
  ['key_id', 'uuid'],
  ['key_source', 'text'],
  ['instance_id', 'text'],
  ['created_at', 'timestamptz'],
];
const UPDATE_FIELDS: [string, string][] = [
  ['id', 'text'],
  ['status', 'text'],
  ['upstream_status', 'int'],
  ['response_id', 'text'],
  ['response_body', 'jsonb'],
  ['output_text', 'text'],
  ['error', 'jsonb'],
  ['input_tokens', 'int'],
  ['output_tokens', 'int'],
  ['total_tokens', 'int'],
  ['cached_tokens', 'int'],
  ['reasoning_tokens', 'int'],
  ['cost', 'float8'],
  ['latency_ms', 'int'],
  ['time_to_first_byte_ms', 'int'],
  ['completed_at', 'timestamptz'],
];
/** an inserted row: the pending fields, then the outcome's (status first; null while pending) */
const INSERT_ROW: [string, string][] = [...INSERT_FIELDS, ...UPDATE_FIELDS.slice(1)];
// Postgres allows 65535 parameters per statement
const MAX_BATCH = 1000;
/** the largest padded batch written with a prepared statement (larger ones are planned each time) */
const MAX_PREPARED_ROWS = 64;

/** 0, 1, 2, 4, … up to MAX_PREPARED_ROWS; beyond that the size itself */
function paddedSize(n: number): number {
  if (n <= 1 || n > MAX_PREPARED_ROWS) return n;
  return 2 ** Math.ceil(Math.log2(n));
}

const sqlCache = new Map<string, string>();

/** The statement writing `inserts` pending rows and `updates` completions (rows with a null id are padding). */
function batchSql(inserts: number, updates: number): string {
  const key = `${inserts}:${updates}`;
  let sql = sqlCache.get(key);
  if (sql) return sql;
  let n = 0;
  const rows = (count: number, fields: [string, string][]) =>
    Array.from({ length: count }, () => `(${fields.map(([, cast]) => `$${++n}::${cast}`).join(', ')})`).join(', ');
  const columns = INSERT_ROW.map(([c]) => c).join(', ');
  const insertSql = inserts
    ? `INSERT INTO exchanges (${columns}) SELECT * FROM (VALUES ${rows(inserts, INSERT_ROW)}) AS v(${columns}) WHERE v.id IS NOT NULL`
    : '';
  const updateSql = updates
    ? `UPDATE exchanges e SET ${UPDATE_FIELDS.slice(1)
        .map(([c]) => `${c} = v.${c}`)
        .join(', ')} FROM (VALUES ${rows(updates, UPDATE_FIELDS)}) AS v(${UPDATE_FIELDS.map(([c]) => c).join(', ')}) WHERE e.id = v.id RETURNING e.id`
    : '';
  // both kinds in one statement: one round trip per flush (a row's insert and its completion never share a flush)
  sql = insertSql && updateSql ? `WITH ins AS (${insertSql}) ${updateSql}` : insertSql || updateSql;
  if (sqlCache.size < 1000) sqlCache.set(key, sql);
  return sql;
}
const SWEEP_INTERVAL_MS = 15_000;
const RETRY_LATER_FOR_MS = 10 * 60_000;

const jsonText = (v: unknown): string | null => (v === null || v === undefined ? null : typeof v === 'string' ? v : JSON.stringify(v));
const int = (v: number | null | undefined): number | null => (v === null || v === undefined ? null : Math.round(v));

/**
 * Writes exchange records with group commit: concurrent inserts and completions are gathered and written as
 * one multi-row statement per flush. A flush starts at once when none is running (so a lone request pays one
 * round trip), otherwise when a running flush finishes or RECORD_FLUSH_MS later. Callers await their own row.
 */
@Injectable()
export class ExchangeRecorder implements OnApplicationBootstrap, OnApplicationShutdown {
  /** the server process writing rows; null outside a server (the CLI) */
  readonly instanceId: string | null;
  private readonly applicationName: string | undefined;
  private queue: Item[] = [];
  private inFlight = 0;
  private readonly maxInFlight: number;
  private immediate?: NodeJS.Immediate;
  private timer?: NodeJS.Timeout;
  private idle: (() => void)[] = [];
  private sweepTimer?: NodeJS.Timeout;
  private presence?: Client;
  private ownPool?: Pool;
  /** pending rows not yet completed, kept to write again if the database lost them (crash before a WAL flush) */
  private readonly open = new Map<string, PendingExchange>();
  private syncPool?: Pool;
  private stopped = false;
  /** false after a write found the database unreachable, until a write succeeds again */
  private reachable = true;
  /** completions written after their answer left (RECORD_WRITE=after_answer), until committed */
  private readonly unsettled = new Set<Promise<void>>();
  /** record batches are named prepared statements (until the database's connections prove not to keep them) */
  private prepare = true;
  /** pending rows queued or being written, by id */
  private readonly inserting = new Map<string, { item: InsertItem; written: Promise<void> }>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly config: AppConfig,
    private readonly db: DatabaseHandle,
    private readonly logger: JsonLogger,
  ) {
    // startServer names every connection of the process `openai-proxy:<instance id>`; liveness is judged by that name
    this.applicationName = (dataSource.options as { applicationName?: string }).applicationName;
    const m = /^openai-proxy:(.+)$/.exec(this.applicationName ?? '');
    this.instanceId = m ? m[1] : null;
    this.maxInFlight = Math.max(1, Math.min(4, Math.floor(db.maxPool / 2)));
  }

  /**
   * Writes the pending row; rejects with 503 when the database cannot be reached. With `afterMs`, the row waits
   * that long first: a call completed sooner is written once, whole (`complete()`), and a call still running then
   * gets its pending row as usual.
   */
  begin(row: PendingExchange, afterMs = 0): Promise<void> {
    this.open.set(row.id, row);
    let item!: InsertItem;
    const written = new Promise<void>((resolve, reject) => {
      item = { kind: 'insert', row, resolve, reject, state: 'held' };
    });
    this.inserting.set(row.id, { item, written });
    const settled = () => {
      if (this.inserting.get(row.id)?.written === written) this.inserting.delete(row.id);
    };
    written.then(settled, settled);
    if (afterMs > 0 && !this.stopped) this.hold(item, afterMs);
    else this.release(item);
    return written;
  }

  /** Whether the last write reached the database (a proxied call may then overlap its pending row with the upstream call). */
  get healthy(): boolean {
    return this.reachable;
  }

  /** Drops the kept pending row of a call that will not be recorded (its pending row could not be written). */
  forget(id: string): void {
    this.open.delete(id);
  }

  /**
   * Completes the row after its answer has left: retried until the database takes it; reads through
   * `caughtUp()` wait for it, so a client reading its exchange right after the answer finds it.
   */
  completeAfterAnswer(row: ExchangeOutcome): void {
    const p = this.complete(row).catch(() => this.completeLater(row));
    this.unsettled.add(p);
    void p.finally(() => this.unsettled.delete(p));
  }

  /** Resolves when every completion written after its answer (at the time of the call) is committed or given up. */
  caughtUp(): Promise<void> | void {
    if (!this.unsettled.size) return;
    return Promise.allSettled([...this.unsettled]).then(() => undefined);
  }

  /**
   * Completes the row; resolves once it is committed. A pending row still waiting in the queue takes the outcome
   * and is written whole (one INSERT instead of an INSERT and an UPDATE); one being written is waited for first
   * (its failure fails the completion too).
   */
  complete(row: ExchangeOutcome): Promise<void> {
    const inserting = this.inserting.get(row.id);
    if (inserting && inserting.item.state !== 'sent') {
      inserting.item.outcome = row;
      inserting.item.completedAt = new Date();
      if (inserting.item.state === 'held') this.release(inserting.item);
      return inserting.written;
    }
    if (inserting) return inserting.written.then(() => this.update(row));
    return this.update(row);
  }

  /** Pending rows not yet due, oldest first (all held for the same time, so due in this order). */
  private held: InsertItem[] = [];
  private heldTimer?: NodeJS.Timeout;

  private hold(item: InsertItem, afterMs: number): void {
    item.dueAt = performance.now() + afterMs;
    this.held.push(item);
    if (!this.heldTimer) this.heldTimer = setTimeout(() => this.releaseDue(), afterMs);
  }

  private release(item: InsertItem): void {
    item.state = 'queued';
    this.enqueue(item);
  }

  /** Queues the held rows that are due (released ones are skipped), and waits for the next. */
  private releaseDue(all = false): void {
    this.heldTimer = undefined;
    const now = performance.now();
    let i = 0;
    for (; i < this.held.length; i++) {
      const item = this.held[i];
      if (item.state !== 'held') continue;
      if (!all && item.dueAt! > now) break;
      this.release(item);
    }
    this.held = i ? this.held.slice(i) : this.held;
    const next = this.held.find((item) => item.state === 'held');
    if (!next) this.held = [];
    else this.heldTimer = setTimeout(() => this.releaseDue(), Math.max(1, next.dueAt! - now));
  }

  private update(row: ExchangeOutcome): Promise<void> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'update', row, completedAt: new Date(), resolve, reject }));
  }

  /**
   * Completes a record whose completion failed (the database was unreachable), retrying in the background until
   * the database is back; given up after RETRY_LATER_FOR_MS (the row then stays pending and is marked interrupted
   * when this process is gone).
   */
  completeLater(row: ExchangeOutcome): void {
    const deadline = Date.now() + RETRY_LATER_FOR_MS;
    const attempt = () => {
      if (this.stopped || Date.now() > deadline) return;
      this.complete(row).catch(() => setTimeout(attempt, 1000).unref());
    };
    setTimeout(attempt, 500).unref();
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  private enqueue(item: Item): void {
    if (this.stopped && !this.dataSource.isInitialized) {
      item.reject(AppException.databaseUnavailable());
      return;
    }
    this.queue.push(item);
    this.schedule();
  }

  private schedule(): void {
    if (!this.queue.length || this.immediate) return;
    if (this.inFlight === 0) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.flush();
      });
    } else if (!this.timer && this.inFlight < this.maxInFlight) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.config.recordFlushMs);
    }
  }

  private flush(): void {
    if (!this.queue.length) return;
    const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
    this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
    for (const item of batch) if (item.kind === 'insert') item.state = 'sent';
    this.inFlight++;
    void this.write(batch).finally(() => {
      this.inFlight--;
      if (this.queue.length) {
        if (this.timer) {
          clearTimeout(this.timer);
          this.timer = undefined;
        }
        if (!this.immediate) {
          this.immediate = setImmediate(() => {
            this.immediate = undefined;
            this.flush();
          });
        }
      } else if (this.inFlight === 0) {
        for (const done of this.idle.splice(0)) done();
      }
    });
    this.schedule();
  }

  /**
   * Where a batch is written. On PostgreSQL the recorder has its own small pools: pending rows commit
   * asynchronously (visible to every process at once and surviving this process being killed; a database crash
   * could lose only rows whose calls then never answered 2xx), while completions wait for the WAL flush unless
   * RECORD_SYNC_COMMIT=off, so a 2xx always has its durable record.
   */
  /** Whether batches go to the recorder's own pools (PostgreSQL, in a server process). */
  private ownsPools(): boolean {
    return !this.db.embedded && this.instanceId !== null && !this.stopped;
  }

  private pool(durable: boolean): SqlPool {
    if (this.ownsPools()) {
      const sync = durable && this.config.recordSyncCommit;
      const existing = sync ? this.syncPool : this.ownPool;
      if (existing) return existing;
      const pool = new Pool({
        connectionString: this.db.url,
        application_name: this.applicationName,
        max: Math.max(2, Math.min(this.maxInFlight + 1, this.db.maxPool)),
        connectionTimeoutMillis: 3000,
        idleTimeoutMillis: 30_000,
        query_timeout: 15_000,
        keepAlive: true,
        options: `-c synchronous_commit=${sync ? 'on' : 'off'}`,
      });
      pool.on('error', () => undefined);
      if (sync) this.syncPool = pool;
      else this.ownPool = pool;
      return pool;
    }
    const master = (this.dataSource.driver as unknown as { master?: SqlPool }).master;
    return master && typeof master.query === 'function' ? master : { query: (q) => this.dataSource.query(q.text, q.values) };
  }

  private async write(batch: Item[]): Promise<void> {
    try {
      const missing = await this.execute(batch);
      this.reachable = true;
      for (const item of batch) {
        if (item.kind === 'update' && missing.has(item.row.id)) {
          void this.rewriteLost(item);
          continue;
        }
        if (item.kind === 'update' || item.outcome) this.open.delete(item.row.id);
        item.resolve();
      }
    } catch (err) {
      if (isDatabaseUnavailable(err) || batch.length === 1) {
        await this.failOrRetrySingle(batch, err);
        return;
      }
      // one bad row must not fail its neighbours: write them one by one
      await Promise.all(batch.map((item) => this.write([item])));
    }
  }

  /** A completion whose pending row is gone (an asynchronous commit lost in a database crash): write both again. */
  private async rewriteLost(item: Extract<Item, { kind: 'update' }>): Promise<void> {
    const pending = this.open.get(item.row.id);
    if (!pending) {
      this.logger.write('error', 'exchange record to complete not found', { request_id: item.row.id });
      item.resolve();
      return;
    }
    this.logger.write('warn', 'exchange pending row was lost by the database; writing it again', { request_id: item.row.id });
    this.open.delete(item.row.id);
    try {
      await this.begin(pending);
      await this.complete(item.row);
      item.resolve();
    } catch (err) {
      item.reject(err);
    }
  }

  private async failOrRetrySingle(batch: Item[], err: unknown): Promise<void> {
    const code = (err as { code?: string }).code ?? '';
    const item = batch[0];
    if (batch.length === 1 && code.startsWith('22') && !item.plainBodies) {
      // a body Postgres' jsonb refuses (\u0000, a lone surrogate): keep the record without the bodies
      item.plainBodies = true;
      this.logger.write('warn', 'exchange body not storable as jsonb; stored without it', { request_id: item.row.id });
      await this.write([item]);
      return;
    }
    const unavailable = isDatabaseUnavailable(err);
    if (unavailable) this.reachable = false;
    if (!unavailable) this.logger.write('error', 'exchange record write failed', { err, rows: batch.length });
    const reason = unavailable ? AppException.databaseUnavailable() : err;
    for (const it of batch) it.reject(reason);
  }

  /** The outcome's columns (UPDATE_FIELDS after id), in order. */
  private pushOutcome(params: unknown[], r: ExchangeOutcome, completedAt: Date, plainBodies?: boolean): void {
    const u = r.usage;
    params.push(
      r.status,
      r.upstreamStatus,
      r.responseId,
      plainBodies ? null : jsonText(r.responseBody),
      plainBodies && r.outputText ? r.outputText.replace(/\u0000/g, '') : r.outputText,
      jsonText(r.error),
      int(u?.input),
      int(u?.output),
      int(u?.total),
      int(u?.cached),
      int(u?.reasoning),
      r.cost,
      int(r.latencyMs),
      int(r.timeToFirstByteMs),
      completedAt.toISOString(),
    );
  }

  /** Writes a batch; returns the ids of completions that found no row to complete. */
  private async execute(batch: Item[]): Promise<Set<string>> {
    const inserts: Item[] = [];
    const updates: Item[] = [];
    for (const item of batch) (item.kind === 'insert' ? inserts : updates).push(item);
    // On its own pools the recorder uses named prepared statements: Postgres then parses and plans each statement
    // shape once per connection instead of once per flush (about half its CPU time for a one-row flush). Batches
    // are padded to a few sizes (padding rows have a null id and are skipped), so the shapes stay few.
    const prepared = this.ownsPools() && this.prepare;
    const insertRows = prepared ? paddedSize(inserts.length) : inserts.length;
    const updateRows = prepared ? paddedSize(updates.length) : updates.length;
    const params: unknown[] = [];
    for (let i = 0; i < insertRows; i++) {
      const item = inserts[i] as InsertItem | undefined;
      if (!item) {
        for (let c = 0; c < INSERT_ROW.length; c++) params.push(null);
        continue;
      }
      const r = item.row;
      params.push(
        r.id,
        r.organizationId,
        r.userId,
        r.externalUserId,
        r.sessionId,
        r.personaId,
        r.personaVersion,
        r.endpoint,
        r.model,
        r.stream,
        item.plainBodies ? null : r.requestBody,
        r.keyId,
        r.keySource,
        this.instanceId,
        // ISO text: cheaper than the driver's Date serialization, the same instant
        r.createdAt.toISOString(),
      );
      if (item.outcome) this.pushOutcome(params, item.outcome, item.completedAt!, item.plainBodies);
      else {
        params.push('pending');
        for (let c = 2; c < UPDATE_FIELDS.length; c++) params.push(null);
      }
    }
    for (let i = 0; i < updateRows; i++) {
      const item = updates[i] as Extract<Item, { kind: 'update' }> | undefined;
      if (!item) {
        for (let c = 0; c < UPDATE_FIELDS.length; c++) params.push(null);
        continue;
      }
      params.push(item.row.id);
      this.pushOutcome(params, item.row, item.completedAt, item.plainBodies);
    }

    const text = batchSql(insertRows, updateRows);
    const query = prepared && insertRows <= MAX_PREPARED_ROWS && updateRows <= MAX_PREPARED_ROWS
      ? { name: `exchanges_${insertRows}_${updateRows}`, text, values: params }
      : { text, values: params };
    // a completion (or a row written whole) waits for the WAL flush; pending rows alone do not
    const durable = updates.length > 0 || inserts.some((item) => (item as InsertItem).outcome);
    let res: unknown;
    try {
      res = await this.pool(durable).query(query);
    } catch (err) {
      const code = (err as { code?: string }).code;
      // connections that share server sessions (a pooler in transaction mode without prepared statement
      // support, an embedded database's socket) lose or clash on named statements: write unprepared from then on
      if (!query.name || (code !== '42P05' && code !== '26000')) throw err;
      this.prepare = false;
      this.logger.write('warn', 'prepared statements unavailable on this connection; exchange records are written unprepared', { code });
      return this.execute(batch);
    }
    const missing = new Set<string>();
    if (updates.length) {
      const rows = (Array.isArray(res) ? res : (res as { rows: { id: string }[] }).rows) as { id: string }[];
      const found = new Set(rows.map((r) => r.id));
      for (const item of updates) if (!found.has(item.row.id)) missing.add(item.row.id);
    }
    return missing;
  }

  /** Resolves when every queued write has been attempted. */
  async drain(): Promise<void> {
    if (this.heldTimer) clearTimeout(this.heldTimer);
    this.releaseDue(true);
    if (!this.queue.length && this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.instanceId) return;
    if (!this.db.embedded) await this.keepPresence();
    await this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.drain();
    const presence = this.presence;
    this.presence = undefined;
    await presence?.end().catch(() => undefined);
    const pools = [this.ownPool, this.syncPool];
    this.ownPool = undefined;
    this.syncPool = undefined;
    await Promise.all(pools.map((p) => p?.end().catch(() => undefined)));
  }

  /**
   * One connection held open under this process's application name, so other processes see it alive in
   * pg_stat_activity even while its pool is idle (e.g. during a long stream).
   */
  private async keepPresence(): Promise<void> {
    if (this.stopped) return;
    const client = new Client({ connectionString: this.db.url, application_name: this.applicationName });
    client.on('error', () => undefined);
    client.on('end', () => {
      if (this.presence === client) this.presence = undefined;
      if (!this.stopped) setTimeout(() => void this.keepPresence(), 1000).unref();
    });
    try {
      await client.connect();
      this.presence = client;
    } catch {
      await client.end().catch(() => undefined);
    }
  }

  /** Marks the pending rows of server processes that are gone as interrupted. */
  async sweep(): Promise<number> {
    if (!this.instanceId || !this.dataSource.isInitialized) return 0;
    const error = JSON.stringify({
      message: 'The server process handling this exchange stopped before it finished',
      type: 'server_error',
      code: 'interrupted',
      param: null,
    });
    // embedded mode: a single server process uses the database, so every other instance is gone
    const alive = this.db.embedded
      ? ''
      : `AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = 'openai-proxy:' || x.instance_id)`;
    try {
      const result = (await this.dataSource.query(
        `UPDATE exchanges x SET status = 'interrupted', completed_at = now(), error = $2::jsonb
          WHERE x.status = 'pending' AND (x.instance_id IS NULL OR (x.instance_id <> $1 ${alive}))`,
        [this.instanceId, error],
      )) as [unknown, number];
      const count = Array.isArray(result) ? Number(result[1] ?? 0) : 0;
      if (count) this.logger.write('warn', 'pending exchanges of stopped server processes marked interrupted', { count });
      return count;
    } catch (err) {
      this.logger.write('warn', 'interrupted-exchange sweep failed', { err });
      return 0;
    }
  }
}
