import { Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Client, Pool } from 'pg';
import { DataSource } from 'typeorm';
import { AppException, isDatabaseUnavailable } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { DatabaseHandle } from '../database/embedded-database';
import type { TokenUsage } from './exchange-capture';
import { asJsonString, pgBigint, pgFloat, pgInt4, pgJson, pgText } from './record-values';

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

/**
 * How far a row PostgreSQL still refused after the values were made storable falls back: its jsonb values as
 * JSON strings of their text (a number beyond numeric's range, say), then without them.
 */
type Degrade = 0 | 1 | 2;

interface InsertItem {
  kind: 'insert';
  row: PendingExchange;
  resolve: () => void;
  reject: (err: unknown) => void;
  degrade?: Degrade;
  /** held (not yet due), queued, or sent to the database */
  state: 'held' | 'queued' | 'sent';
  /** when a held row becomes due (performance.now()) */
  dueAt?: number;
  /** the call ended before its pending row was sent: the row is written whole, in one INSERT */
  outcome?: ExchangeOutcome;
  completedAt?: Date;
  /** a row written again (its earlier attempt may have committed after all): the INSERT is idempotent */
  again?: boolean;
}
interface UpdateItem {
  kind: 'update';
  row: ExchangeOutcome;
  completedAt: Date;
  resolve: () => void;
  reject: (err: unknown) => void;
  degrade?: Degrade;
}
type Item = InsertItem | UpdateItem;

/** A call whose pending row could not be written: kept until the call says how it ended, then written whole. */
interface Unwritten {
  row: PendingExchange;
  outcome?: ExchangeOutcome;
  completedAt?: Date;
  /** the answer was withheld for want of the record: stored as interrupted (with whatever usage it had) */
  withheld?: boolean;
  /** the call ended and its outcome is to be written as given (its answer went out: RECORD_WRITE=after_answer) */
  ended?: boolean;
}

interface SqlPool {
  query(query: { name?: string; text: string; values: unknown[] }): Promise<unknown>;
}

type Cast = 'text' | 'uuid' | 'int' | 'int8' | 'boolean' | 'jsonb' | 'timestamptz' | 'float8';
const INSERT_FIELDS: [string, Cast][] = [
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
const UPDATE_FIELDS: [string, Cast][] = [
  ['id', 'text'],
  ['status', 'text'],
  ['upstream_status', 'int'],
  ['response_id', 'text'],
  ['response_body', 'jsonb'],
  ['output_text', 'text'],
  ['error', 'jsonb'],
  ['input_tokens', 'int8'],
  ['output_tokens', 'int8'],
  ['total_tokens', 'int8'],
  ['cached_tokens', 'int8'],
  ['reasoning_tokens', 'int8'],
  ['cost', 'float8'],
  ['latency_ms', 'int'],
  ['time_to_first_byte_ms', 'int'],
  ['completed_at', 'timestamptz'],
];
/** an inserted row: the pending fields, then the outcome's (status first; null while pending) */
const OUTCOME_FIELDS = UPDATE_FIELDS.slice(1);
const INSERT_ROW: [string, Cast][] = [...INSERT_FIELDS, ...OUTCOME_FIELDS];
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
function batchSql(inserts: number, updates: number, idempotent: boolean): string {
  const key = `${inserts}:${updates}:${idempotent}`;
  let sql = sqlCache.get(key);
  if (sql) return sql;
  let n = 0;
  const rows = (count: number, fields: [string, Cast][]) =>
    Array.from({ length: count }, () => `(${fields.map(([, cast]) => `$${++n}::${cast}`).join(', ')})`).join(', ');
  const columns = INSERT_ROW.map(([c]) => c).join(', ');
  // A row written again is idempotent: one already there (an earlier attempt that committed after its client gave
  // up on it) is not written twice; a pending one takes the outcome of a row written whole, and so does one
  // marked interrupted by a sweep before the outcome could be written. A first attempt cannot meet its own row
  // (the server cancels a write past RECORD_WRITE_TIMEOUT_MS), so it spares the speculative insertion's cost.
  const outcomeColumns = UPDATE_FIELDS.slice(1).map(([c]) => c);
  const onConflict = idempotent
    ? ` ON CONFLICT (id) DO UPDATE SET ${outcomeColumns.map((c) => `${c} = excluded.${c}`).join(', ')}
        WHERE x.status IN ('pending', 'interrupted') AND excluded.status <> 'pending'`
    : '';
  const insertSql = inserts
    ? `INSERT INTO exchanges AS x (${columns}) SELECT * FROM (VALUES ${rows(inserts, INSERT_ROW)}) AS v(${columns}) WHERE v.id IS NOT NULL${onConflict}`
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
/** first and longest wait between attempts at records the database could not take yet */
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;

/** The error stored with a call whose answer was withheld because its record could not be written. */
export const UNDELIVERED = {
  message: 'The answer was not delivered: the database was unavailable to record it',
  type: 'service_unavailable',
  code: 'database_unavailable',
  param: null,
};

const same = (v: unknown) => v;
/** every column passes through its type's sanitizer on the way to the database */
const STORABLE: Record<Cast, (v: any) => unknown> = {
  text: pgText,
  uuid: same,
  int: pgInt4,
  int8: pgBigint,
  boolean: same,
  jsonb: pgJson,
  timestamptz: same,
  float8: pgFloat,
};

function degradedJson(v: unknown, degrade: Degrade): string | null {
  if (degrade === 2 || v === null || v === undefined) return null;
  if (typeof v === 'string') return asJsonString(v);
  const text = pgJson(v);
  return text === null ? null : asJsonString(text);
}

function pushValues(params: unknown[], fields: [string, Cast][], values: unknown[], degrade: Degrade): void {
  for (let i = 0; i < fields.length; i++) {
    const cast = fields[i][1];
    params.push(cast === 'jsonb' && degrade ? degradedJson(values[i], degrade) : STORABLE[cast](values[i]));
  }
}

/** A write the database did not acknowledge in time (server-side statement_timeout, or the client's own). */
function isWriteTimeout(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  return !!e && (e.code === '57014' || /Query read timeout/i.test(e.message ?? ''));
}

/** Worth trying again later: the database was unreachable, too slow, or the process is stopping. */
function isTransient(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return (
    err instanceof AppException ||
    isDatabaseUnavailable(err) ||
    isWriteTimeout(err) ||
    code === '40001' ||
    code === '40P01' ||
    code === '55P03'
  );
}

/**
 * Writes exchange records with group commit: concurrent inserts and completions are gathered and written as
 * one multi-row statement per flush. A flush starts at once when none is running (so a lone request pays one
 * round trip), otherwise when a running flush finishes or RECORD_FLUSH_MS later. Callers await their own row.
 *
 * A call that reached the upstream always gets its row: a pending row or a completion the database could not
 * take is kept in memory and written once it can (retried with backoff while the process lives), and a
 * process clears its own pending rows that no running call owns any more (see sweep()).
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
  /** calls whose pending row could not be written, by id (see Unwritten) */
  private readonly unwritten = new Map<string, Unwritten>();
  /** completions the database could not take, written later, by id */
  private readonly later = new Map<string, { row: ExchangeOutcome; completedAt: Date }>();
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = RETRY_FIRST_MS;
  private retrying?: Promise<void>;
  private syncPool?: Pool;
  private stopped = false;
  /** false after a write or a connection found the database unreachable, until a write succeeds again */
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
  begin(row: PendingExchange, afterMs = 0, again = false): Promise<void> {
    this.open.set(row.id, row);
    this.unwritten.delete(row.id);
    let item!: InsertItem;
    const written = new Promise<void>((resolve, reject) => {
      item = { kind: 'insert', row, resolve, reject, state: 'held', again };
    });
    this.inserting.set(row.id, { item, written });
    const settled = () => {
      if (this.inserting.get(row.id)?.written === written) this.inserting.delete(row.id);
    };
    written.then(settled, () => {
      settled();
      // the upstream may be called already: the row is kept until the call ends (withheld(), completeLater(),
      // or forget() for a call that never reached the upstream)
      if (this.open.get(row.id) !== row) return;
      this.open.delete(row.id);
      this.unwritten.set(row.id, { row, outcome: item.outcome, completedAt: item.completedAt });
    });
    if (afterMs > 0 && !this.stopped) this.hold(item, afterMs);
    else this.release(item);
    return written;
  }

  /** Whether the database took the last write and no connection has been lost since (a proxied call may then overlap its pending row with the upstream call). */
  get healthy(): boolean {
    return this.reachable;
  }

  /**
   * RECORD_WRITE=after_answer, within its bound: fewer than RECORD_AFTER_ANSWER_MAX completions are waiting for
   * the database. Beyond it an answer waits for its record as with before_answer, so a database slower than the
   * traffic slows the answers instead of growing the memory held for records without bound.
   */
  get takesAfterAnswer(): boolean {
    return this.unsettled.size < this.config.recordAfterAnswerMax;
  }

  /** Drops the kept pending row of a call that never reached the upstream (its pending row could not be written). */
  forget(id: string): void {
    this.open.delete(id);
    this.unwritten.delete(id);
  }

  /**
   * The call's answer was withheld (503, or an SSE error event) because its pending row could not be written. The
   * upstream was called all the same (and may have billed it): the row is written once the database takes it,
   * as interrupted, with the outcome's usage when the call reports one.
   */
  withheld(id: string): void {
    const u = this.unwritten.get(id);
    if (!u) return;
    u.withheld = true;
    this.retrySoon();
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
   * (its failure fails the completion too, and the outcome is kept with the row for completeLater()/withheld()).
   */
  complete(row: ExchangeOutcome): Promise<void> {
    const unwritten = this.unwritten.get(row.id);
    if (unwritten) {
      unwritten.outcome = row;
      unwritten.completedAt = new Date();
      return Promise.reject(AppException.databaseUnavailable());
    }
    const inserting = this.inserting.get(row.id);
    if (inserting && inserting.item.state !== 'sent') {
      inserting.item.outcome = row;
      inserting.item.completedAt = new Date();
      if (inserting.item.state === 'held') this.release(inserting.item);
      return inserting.written;
    }
    if (inserting) {
      return inserting.written.then(
        () => this.update(row),
        (err) => {
          const u = this.unwritten.get(row.id);
          if (u) {
            u.outcome = row;
            u.completedAt = new Date();
          }
          throw err;
        },
      );
    }
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

  private update(row: ExchangeOutcome, completedAt = new Date()): Promise<void> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'update', row, completedAt, resolve, reject }));
  }

  /**
   * Completes a record whose completion failed (the database was unreachable or too slow), retrying in the
   * background with backoff until the database takes it; a row whose pending write failed too is written whole.
   */
  completeLater(row: ExchangeOutcome): void {
    const u = this.unwritten.get(row.id);
    if (u) {
      u.outcome = row;
      u.completedAt = new Date();
      u.ended = true;
    } else this.later.set(row.id, { row, completedAt: new Date() });
    this.retrySoon();
  }

  /** Records kept in memory until the database takes them (pending rows not written, completions not written). */
  get keptForLater(): number {
    return this.unwritten.size + this.later.size;
  }

  private retrySoon(): void {
    if (this.retryTimer || this.retrying || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retryKept();
    }, this.retryDelay);
    this.retryTimer.unref();
  }

  /** One attempt at every kept record that is ready; the next one is scheduled while some are left. */
  private retryKept(): Promise<void> {
    this.retrying ??= this.attemptKept().finally(() => {
      this.retrying = undefined;
      const left = [...this.unwritten.values()].some((u) => u.withheld || u.ended) || this.later.size > 0;
      if (left) this.retrySoon();
    });
    return this.retrying;
  }

  private async attemptKept(): Promise<void> {
    const attempts: Promise<boolean>[] = [];
    for (const [id, u] of this.unwritten) {
      if (!u.withheld && !u.ended) continue;
      const blank: ExchangeOutcome = {
        id,
        status: 'interrupted',
        upstreamStatus: null,
        responseId: null,
        responseBody: null,
        outputText: null,
        error: null,
        usage: null,
        cost: null,
        latencyMs: Date.now() - u.row.createdAt.getTime(),
        timeToFirstByteMs: null,
      };
      const outcome: ExchangeOutcome = u.withheld ? { ...(u.outcome ?? blank), status: 'interrupted', error: UNDELIVERED } : u.outcome!;
      const write = new Promise<void>((resolve, reject) =>
        this.enqueue({ kind: 'insert', row: u.row, resolve, reject, state: 'queued', outcome, completedAt: u.completedAt ?? new Date(), again: true }),
      );
      attempts.push(this.settleKept(write, `${id}`, () => this.unwritten.get(id) === u && this.unwritten.delete(id)));
    }
    for (const [id, l] of this.later) {
      attempts.push(this.settleKept(this.update(l.row, l.completedAt), id, () => this.later.get(id) === l && this.later.delete(id)));
    }
    if (!attempts.length) return;
    const done = await Promise.all(attempts);
    this.retryDelay = done.every(Boolean) ? RETRY_FIRST_MS : Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  /** Whether a kept record is settled: written, or refused for good (logged and dropped, never retried forever). */
  private async settleKept(write: Promise<void>, id: string, drop: () => unknown): Promise<boolean> {
    try {
      await write;
      drop();
      return true;
    } catch (err) {
      if (isTransient(err) && !this.stopped) return false;
      if (!isTransient(err)) this.logger.write('error', 'exchange record refused by the database; given up', { request_id: id, err });
      drop();
      return true;
    }
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

  /** Whether batches go to the recorder's own pools (PostgreSQL, in a server process). */
  private ownsPools(): boolean {
    return !this.db.embedded && this.instanceId !== null && !this.stopped;
  }

  /** A connection lost (the server stopped, terminated it, or the network dropped it): calls write their pending row first until a write succeeds. */
  private connectionLost(err: unknown): void {
    if (!this.stopped && isDatabaseUnavailable(err)) this.reachable = false;
  }

  /**
   * Where a batch is written. On PostgreSQL the recorder has its own small pools: pending rows commit
   * asynchronously (visible to every process at once and surviving this process being killed; a database crash
   * could lose only rows whose calls then never answered 2xx), while completions wait for the WAL flush unless
   * RECORD_SYNC_COMMIT=off, so a 2xx always has its durable record. A statement the database has not finished
   * within RECORD_WRITE_TIMEOUT_MS is cancelled by the server (so it cannot commit after it was given up on).
   */
  private pool(durable: boolean): SqlPool {
    if (this.ownsPools()) {
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
        options: `-c synchronous_commit=${sync ? 'on' : 'off'} -c statement_timeout=${timeout}`,
      });
      pool.on('error', (err) => this.connectionLost(err));
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
      // unreachable or too slow: the rows of this batch would fail alike one by one
      if (isDatabaseUnavailable(err) || isWriteTimeout(err) || batch.length === 1) {
        await this.failOrRetrySingle(batch, err);
        return;
      }
      // one bad row must not fail its neighbours: write them one by one
      for (const item of batch) if (item.kind === 'insert') item.again = true;
      await Promise.all(batch.map((item) => this.write([item])));
    }
  }

  /** A completion whose pending row is gone (an asynchronous commit lost in a database crash): write both again. */
  private async rewriteLost(item: UpdateItem): Promise<void> {
    const pending = this.open.get(item.row.id);
    if (!pending) {
      this.logger.write('error', 'exchange record to complete not found', { request_id: item.row.id });
      item.resolve();
      return;
    }
    this.logger.write('warn', 'exchange pending row was lost by the database; writing it again', { request_id: item.row.id });
    this.open.delete(item.row.id);
    try {
      await this.begin(pending, 0, true);
      await this.complete(item.row);
      item.resolve();
    } catch (err) {
      item.reject(err);
    }
  }

  private async failOrRetrySingle(batch: Item[], err: unknown): Promise<void> {
    const code = (err as { code?: string }).code ?? '';
    const item = batch[0];
    // data exceptions (22) and a value too deep for the parser (54): the values were made storable already, so
    // this is an edge such as a number beyond numeric's range; the row is kept, with less of its bodies
    if (batch.length === 1 && (code.startsWith('22') || code.startsWith('54')) && (item.degrade ?? 0) < 2) {
      item.degrade = ((item.degrade ?? 0) + 1) as Degrade;
      if (item.kind === 'insert') item.again = true;
      this.logger.write('warn', item.degrade === 1 ? 'exchange bodies not storable as jsonb; stored as text' : 'exchange bodies not storable; stored without them', {
        request_id: item.row.id,
        code,
      });
      await this.write([item]);
      return;
    }
    const unavailable = isDatabaseUnavailable(err) || isWriteTimeout(err);
    if (unavailable) this.reachable = false;
    if (!unavailable) this.logger.write('error', 'exchange record write failed', { err, rows: batch.length });
    const reason = unavailable ? AppException.databaseUnavailable() : err;
    for (const it of batch) it.reject(reason);
  }

  /** The outcome's columns (UPDATE_FIELDS after id), in order. */
  private outcomeValues(r: ExchangeOutcome, completedAt: Date): unknown[] {
    const u = r.usage;
    return [
      r.status,
      r.upstreamStatus,
      r.responseId,
      r.responseBody,
      r.outputText,
      r.error,
      u?.input,
      u?.output,
      u?.total,
      u?.cached,
      u?.reasoning,
      r.cost,
      r.latencyMs,
      r.timeToFirstByteMs,
      completedAt.toISOString(),
    ];
  }

  /** Writes a batch; returns the ids of completions that found no row to complete. */
  private async execute(batch: Item[]): Promise<Set<string>> {
    const inserts: InsertItem[] = [];
    const updates: UpdateItem[] = [];
    for (const item of batch) {
      if (item.kind === 'insert') inserts.push(item);
      else updates.push(item);
    }
    // On its own pools the recorder uses named prepared statements: Postgres then parses and plans each statement
    // shape once per connection instead of once per flush (about half its CPU time for a one-row flush). Batches
    // are padded to a few sizes (padding rows have a null id and are skipped), so the shapes stay few.
    const prepared = this.ownsPools() && this.prepare;
    const insertRows = prepared ? paddedSize(inserts.length) : inserts.length;
    const updateRows = prepared ? paddedSize(updates.length) : updates.length;
    const params: unknown[] = [];
    for (let i = 0; i < insertRows; i++) {
      const item = inserts[i];
      if (!item) {
        for (let c = 0; c < INSERT_ROW.length; c++) params.push(null);
        continue;
      }
      const r = item.row;
      const degrade = item.degrade ?? 0;
      pushValues(
        params,
        INSERT_FIELDS,
        [
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
          r.requestBody,
          r.keyId,
          r.keySource,
          this.instanceId,
          // ISO text: cheaper than the driver's Date serialization, the same instant
          r.createdAt.toISOString(),
        ],
        degrade,
      );
      if (item.outcome) pushValues(params, OUTCOME_FIELDS, this.outcomeValues(item.outcome, item.completedAt!), degrade);
      else {
        params.push('pending');
        for (let c = 2; c < UPDATE_FIELDS.length; c++) params.push(null);
      }
    }
    for (let i = 0; i < updateRows; i++) {
      const item = updates[i];
      if (!item) {
        for (let c = 0; c < UPDATE_FIELDS.length; c++) params.push(null);
        continue;
      }
      params.push(item.row.id);
      pushValues(params, OUTCOME_FIELDS, this.outcomeValues(item.row, item.completedAt), item.degrade ?? 0);
    }

    const idempotent = inserts.some((item) => item.again);
    const text = batchSql(insertRows, updateRows, idempotent);
    const query = prepared && insertRows <= MAX_PREPARED_ROWS && updateRows <= MAX_PREPARED_ROWS
      ? { name: `exchanges_${insertRows}_${updateRows}${idempotent ? '_again' : ''}`, text, values: params }
      : { text, values: params };
    // a completion (or a row written whole) waits for the WAL flush; pending rows alone do not
    const durable = updates.length > 0 || inserts.some((item) => item.outcome);
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

  /** Resolves when every queued write has been attempted, and kept records have had a last attempt. */
  async drain(): Promise<void> {
    if (this.heldTimer) clearTimeout(this.heldTimer);
    this.releaseDue(true);
    if (this.queue.length || this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (this.keptForLater) await this.retryKept();
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.instanceId) return;
    // the application's own pool loses its connections too when the database goes: noticed before a write fails
    const master = (this.dataSource.driver as unknown as { master?: { on?: (e: string, f: (err: unknown) => void) => void } }).master;
    master?.on?.('error', (err) => this.connectionLost(err));
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
   * pg_stat_activity even while its pool is idle (e.g. during a long stream). Losing it means the database went
   * away: calls then write their pending row before the upstream is called.
   */
  private async keepPresence(): Promise<void> {
    if (this.stopped) return;
    const client = new Client({ connectionString: this.db.url, application_name: this.applicationName });
    client.on('error', (err) => this.connectionLost(err));
    client.on('end', () => {
      if (this.presence === client) {
        this.presence = undefined;
        if (!this.stopped) this.reachable = false;
      }
      if (!this.stopped) setTimeout(() => void this.keepPresence(), 1000).unref();
    });
    try {
      await client.connect();
      this.presence = client;
    } catch {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * Marks pending rows no call will complete as interrupted: those of server processes that are gone, and this
   * process's own that no running call owns (its write gave up, or it committed after it was given up on).
   */
  async sweep(): Promise<number> {
    if (!this.instanceId || !this.dataSource.isInitialized) return 0;
    const error = (message: string) => JSON.stringify({ message, type: 'server_error', code: 'interrupted', param: null });
    // rows begun before this instant that no call owns now: a call begun before it is in one of these maps
    const before = new Date();
    const owned = [...this.open.keys(), ...this.inserting.keys(), ...this.unwritten.keys(), ...this.later.keys()];
    // embedded mode: a single server process uses the database, so every other instance is gone
    const alive = this.db.embedded
      ? ''
      : `AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = 'openai-proxy:' || x.instance_id)`;
    try {
      const result = (await this.dataSource.query(
        `UPDATE exchanges x SET status = 'interrupted', completed_at = now(),
                error = CASE WHEN x.instance_id = $1 THEN $3::jsonb ELSE $2::jsonb END
          WHERE x.status = 'pending'
            AND (x.instance_id IS NULL OR (x.instance_id <> $1 ${alive})
                 OR (x.instance_id = $1 AND x.created_at < $4 AND NOT (x.id = ANY($5::text[]))))`,
        [
          this.instanceId,
          error('The server process handling this exchange stopped before it finished'),
          error('The exchange ended without its outcome being recorded'),
          before.toISOString(),
          owned,
        ],
      )) as [unknown, number];
      const count = Array.isArray(result) ? Number(result[1] ?? 0) : 0;
      if (count) this.logger.write('warn', 'pending exchanges no running call will complete marked interrupted', { count });
      return count;
    } catch (err) {
      this.logger.write('warn', 'interrupted-exchange sweep failed', { err });
      return 0;
    }
  }
}
