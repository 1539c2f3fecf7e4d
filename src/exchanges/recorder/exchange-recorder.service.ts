import { BeforeApplicationShutdown, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AppException, isDatabaseUnavailable } from '../../common/app-exception';
import { JsonLogger } from '../../common/logger';
import { AppConfig } from '../../config/app-config';
import { DatabaseHandle } from '../../database/embedded-database';
import { BatchInsert, BatchUpdate, batchQuery, Degrade, missingCompletions } from './batch-sql';
import type { ExchangeOutcome, PendingExchange } from './exchange-record';
import { GroupCommit } from './group-commit';
import { HeldRows, Holdable } from './held-rows';
import { InstancePresence, SqlPool } from './instance-presence';
import { isWriteTimeout, KeptRecords } from './kept-records';
import { AfterAnswerWrites, RecordHandle, RecordWrites } from './record-handle';

interface InsertItem extends BatchInsert, Holdable {
  kind: 'insert';
  resolve: () => void;
  reject: (err: unknown) => void;
}
interface UpdateItem extends BatchUpdate {
  kind: 'update';
  resolve: () => void;
  reject: (err: unknown) => void;
}
type Item = InsertItem | UpdateItem;

const SWEEP_INTERVAL_MS = 15_000;
/**
 * How long a stopping process waits for the calls it has records open for to say how they ended. The HTTP drain is
 * over by then, so their clients are gone and they end at once (client_aborted); one that has not ended by then
 * is recorded as interrupted.
 */
export const SHUTDOWN_CALLS_WAIT_MS = 2000;

/**
 * Writes exchange records with group commit: concurrent inserts and completions are gathered and written as
 * one multi-row statement per flush. A flush starts at once when none is running (so a lone request pays one
 * round trip), otherwise when a running flush finishes or RECORD_FLUSH_MS later. Callers await their own row.
 *
 * A call's pending row is its open call (table `open_calls`, a row as small as the calls in flight); its completion
 * deletes the open call and writes the exchange whole, in one statement, so the large `exchanges` table only ever
 * takes whole rows (no update, no dead row version, no second set of index entries per call).
 *
 * A call that reached the upstream always gets its row: a pending row or a completion the database could not
 * take is kept in memory and written once it can (KeptRecords), and a process clears its own pending rows that
 * no running call owns any more (see sweep()).
 */
@Injectable()
export class ExchangeRecorder implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown, RecordWrites {
  private readonly queue: GroupCommit<Item>;
  private sweepTimer?: NodeJS.Timeout;
  private readonly presence: InstancePresence;
  /** pending rows not yet completed, kept to write again if the database lost them (crash before a WAL flush) */
  private readonly pendingRows = new Map<string, PendingExchange>();
  /** connections lost so far (see connectionLost()): a database that crashed took every connection with it */
  private losses = 0;
  /** the open calls the database took, by id: `losses` when it took them */
  private readonly openedAt = new Map<string, number>();
  private readonly kept: KeptRecords;
  private stopped = false;
  /** false after a write or a connection found the database unreachable, until a write succeeds again */
  private reachable = true;
  private readonly answered: AfterAnswerWrites;
  /** record batches are named prepared statements (until the database's connections prove not to keep them) */
  private prepare = true;
  /** pending rows queued or being written, by id */
  private readonly inserting = new Map<string, { item: InsertItem; written: Promise<void> }>();
  private readonly held = new HeldRows<InsertItem>((item) => this.release(item));
  /** RECORD_WRITE=after_answer: answers do not wait for their records */
  private readonly afterAnswer: boolean;
  /** calls with an open record whose outcome has not been given yet, by id */
  private readonly running = new Map<string, PendingExchange>();
  /** called when the last running call has given its outcome (a stopping process waits for it) */
  private allEnded?: () => void;

  constructor(
    private readonly dataSource: DataSource,
    private readonly config: AppConfig,
    private readonly db: DatabaseHandle,
    private readonly logger: JsonLogger,
  ) {
    const maxInFlight = Math.max(1, Math.min(4, Math.floor(db.maxPool / 2)));
    this.queue = new GroupCommit<Item>(
      (batch) => {
        for (const item of batch) if (item.kind === 'insert') item.state = 'sent';
        return this.write(batch);
      },
      maxInFlight,
      config.recordFlushMs,
    );
    this.presence = new InstancePresence(dataSource, config, db, logger, maxInFlight, (err) => this.connectionLost(err));
    this.kept = new KeptRecords(
      {
        stopped: () => this.stopped,
        writeWhole: (row, outcome, completedAt) =>
          new Promise<void>((resolve, reject) =>
            this.enqueue({ kind: 'insert', row, resolve, reject, state: 'queued', outcome, completedAt, again: true }),
          ),
        update: (row, completedAt) => this.update(row, completedAt),
      },
      logger,
    );
    this.afterAnswer = config.recordWrite === 'after_answer';
    this.answered = new AfterAnswerWrites(config.recordAfterAnswerMax);
  }

  /** the server process writing rows; null outside a server (the CLI) */
  get instanceId(): string | null {
    return this.presence.instanceId;
  }

  /**
   * Opens the record of a call about to reach the upstream. With the database reachable, the pending row is
   * written while the upstream is called (a non-streaming call that ends within RECORD_PENDING_AFTER_MS is written
   * once, whole; a stream needs its pending row before its first byte, so it is written at once). With the
   * database known to be unreachable, the row is written first: rejects with 503 before the upstream is called.
   */
  open(row: PendingExchange): RecordHandle | Promise<RecordHandle> {
    // a capture mode other than full rewrites what is stored, once, before it is queued (the outcome in the handle)
    if (row.capture) row = row.capture.pending(row);
    this.running.set(row.id, row);
    if (this.reachable) {
      const written = this.begin(row, row.stream ? 0 : this.config.recordPendingAfterMs);
      written.catch(() => undefined);
      return new RecordHandle(this, this.logger, row, written, this.afterAnswer);
    }
    return this.begin(row).then(
      () => new RecordHandle(this, this.logger, row, Promise.resolve(), this.afterAnswer),
      (err) => {
        // the call never reaches the upstream: nothing to keep for it
        this.ended(row.id);
        this.forget(row.id);
        this.kept.unwritten.delete(row.id);
        throw err;
      },
    );
  }

  /**
   * Writes the pending row; rejects with 503 when the database cannot be reached. With `afterMs`, the row waits
   * that long first: a call completed sooner is written once, whole (`complete()`), and a call still running then
   * gets its pending row as usual.
   */
  begin(row: PendingExchange, afterMs = 0, again = false): Promise<void> {
    this.pendingRows.set(row.id, row);
    this.kept.unwritten.delete(row.id);
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
      // or dropped by open() for a call that never reached the upstream)
      if (this.pendingRows.get(row.id) !== row) return;
      this.forget(row.id);
      this.kept.unwritten.set(row.id, { row, outcome: item.outcome, completedAt: item.completedAt });
    });
    if (afterMs > 0 && !this.stopped) this.held.hold(item, afterMs);
    else this.release(item);
    return written;
  }

  /** Whether the database took the last write and no connection has been lost since (a proxied call may then overlap its pending row with the upstream call). */
  get healthy(): boolean {
    return this.reachable;
  }

  /** RECORD_WRITE=after_answer, within its bound (see AfterAnswerWrites.open) */
  get takesAfterAnswer(): boolean {
    return this.answered.open;
  }

  /** The call's answer was withheld for want of its pending row (see KeptRecords.withheld()). */
  withheld(id: string): void {
    this.ended(id);
    this.kept.withheld(id);
  }

  /**
   * Completes the row after its answer has left: retried until the database takes it; reads through
   * `caughtUp()` wait for it, so a client reading its exchange right after the answer finds it.
   */
  completeAfterAnswer(row: ExchangeOutcome): void {
    this.answered.track(this.complete(row).catch(() => this.completeLater(row)));
  }

  /** Resolves when every completion written after its answer (at the time of the call) is committed or given up. */
  caughtUp(): Promise<void> | void {
    return this.answered.caughtUp();
  }

  /**
   * Completes the row; resolves once it is committed. A pending row still waiting in the queue takes the outcome
   * and is written whole (one INSERT instead of an open call and a completion); one being written is waited for first
   * (its failure fails the completion too, and the outcome is kept with the row for completeLater()/withheld()).
   */
  complete(row: ExchangeOutcome): Promise<void> {
    this.ended(row.id);
    if (this.kept.keepOutcome(row.id, row)) return Promise.reject(AppException.databaseUnavailable());
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
          this.kept.keepOutcome(row.id, row);
          throw err;
        },
      );
    }
    return this.update(row);
  }

  /** Completes a record whose completion failed, in the background (see KeptRecords.completeLater()). */
  completeLater(row: ExchangeOutcome): void {
    this.kept.completeLater(row);
  }

  /** Records kept in memory until the database takes them (pending rows not written, completions not written). */
  get keptForLater(): number {
    return this.kept.size;
  }

  get queueDepth(): number {
    return this.queue.depth;
  }

  /** The call gave its outcome (or has none to give). */
  private ended(id: string): void {
    if (this.running.delete(id) && !this.running.size) this.allEnded?.();
  }

  private release(item: InsertItem): void {
    item.state = 'queued';
    this.enqueue(item);
  }

  private update(row: ExchangeOutcome, completedAt = new Date()): Promise<void> {
    // the open call is kept in memory until its completion is written (to be written whole if the database lost it)
    if (!this.pendingRows.has(row.id)) {
      this.logger.write('error', 'exchange record to complete not found', { request_id: row.id });
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.enqueue({ kind: 'update', row, completedAt, resolve, reject }));
  }

  private enqueue(item: Item): void {
    if (this.stopped && !this.dataSource.isInitialized) {
      item.reject(AppException.databaseUnavailable());
      return;
    }
    this.queue.push(item);
  }
  /** Whether batches go to the recorder's own pools (PostgreSQL, in a server process). */
  private ownsPools(): boolean {
    return !this.db.embedded && this.instanceId !== null && !this.stopped;
  }

  /** A connection lost (the server stopped, terminated it, or the network dropped it; no error: the held one ended): calls write their pending row first until a write succeeds. */
  private connectionLost(err?: unknown): void {
    if (!this.stopped && (err === undefined || isDatabaseUnavailable(err))) {
      this.reachable = false;
      this.losses++;
    }
  }

  /** The call's pending row is no longer kept (written with its outcome, or given up). */
  private forget(id: string): void {
    this.pendingRows.delete(id);
    this.openedAt.delete(id);
  }

  /** Where a batch is written (see InstancePresence.pool()). */
  private pool(durable: boolean): SqlPool {
    return this.presence.pool(durable, this.ownsPools());
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
        if (item.kind === 'update' || item.outcome) this.forget(item.row.id);
        else this.openedAt.set(item.row.id, this.losses);
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

  /**
   * A completion whose open call is gone. With a connection lost since the database took it, the database may have
   * lost it (an asynchronous commit lost in a crash; or another process, not seeing this one, swept it as
   * interrupted): the exchange is written whole, idempotently (over a row a sweep marked interrupted). With none
   * lost, it was deleted on purpose — the end user's erasure while the call ran (this process's own sweep passes
   * over its running calls) — and nothing is written: an erased user's call is not recorded again when it ends.
   */
  private async rewriteLost(item: UpdateItem): Promise<void> {
    const pending = this.pendingRows.get(item.row.id);
    if (!pending) {
      this.logger.write('error', 'exchange record to complete not found', { request_id: item.row.id });
      item.resolve();
      return;
    }
    if (this.openedAt.get(item.row.id) === this.losses) {
      this.forget(item.row.id);
      this.logger.write('warn', 'exchange open call deleted while the call ran (its user erased): its outcome is not recorded', { request_id: item.row.id });
      item.resolve();
      return;
    }
    // kept until the row is written (write() lets it go), so a completion retried later still has it
    this.logger.write('warn', 'exchange open call was lost by the database; writing the exchange whole', { request_id: item.row.id });
    this.enqueue({
      kind: 'insert',
      row: pending,
      outcome: item.row,
      completedAt: item.completedAt,
      state: 'queued',
      again: true,
      degrade: item.degrade,
      resolve: item.resolve,
      reject: item.reject,
    });
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

  /** Writes a batch; returns the ids of completions that found no row to complete. */
  private async execute(batch: Item[]): Promise<Set<string>> {
    const inserts: InsertItem[] = [];
    const updates: UpdateItem[] = [];
    for (const item of batch) {
      if (item.kind === 'insert') inserts.push(item);
      else updates.push(item);
    }
    // on its own pools the recorder uses named prepared statements (see batchQuery())
    const query = batchQuery(inserts, updates, this.instanceId, this.ownsPools() && this.prepare);
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
    return missingCompletions(res, updates);
  }

  /** Resolves when every queued write has been attempted, and kept records have had a last attempt. */
  async drain(): Promise<void> {
    this.held.releaseDue(true);
    await this.queue.idleNow();
    this.kept.cancelTimer();
    if (this.keptForLater) await this.kept.retry();
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.instanceId) return;
    await this.presence.start();
    await this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  /**
   * Before the database goes: the calls still running give their outcome. Once the HTTP drain is over their
   * clients are gone (a client that left just before the signal has closed its socket, so the drain did not wait
   * for its call), so they end at once; one still running after SHUTDOWN_CALLS_WAIT_MS is recorded as interrupted.
   */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.running.size) {
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.allEnded = resolve)),
        new Promise<void>((resolve) => (bound = setTimeout(resolve, SHUTDOWN_CALLS_WAIT_MS))),
      ]);
      clearTimeout(bound);
      this.allEnded = undefined;
    }
    const error = { message: 'The server process stopped before the exchange finished', type: 'server_error', code: 'interrupted', param: null };
    const left = [...this.running.values()];
    if (left.length) this.logger.write('warn', 'shutdown: calls still running recorded as interrupted', { count: left.length });
    await Promise.allSettled(
      left.map((row) =>
        this.complete({
          id: row.id,
          status: 'interrupted',
          upstreamStatus: null,
          responseId: null,
          responseBody: null,
          outputText: null,
          error,
          usage: null,
          cost: null,
          latencyMs: Date.now() - row.createdAt.getTime(),
          timeToFirstByteMs: null,
        }),
      ),
    );
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.presence.stop();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.drain();
    await this.presence.end();
  }

  /**
   * Marks pending rows no call will complete as interrupted: those of server processes that are gone, and this
   * process's own that no running call owns (its write gave up, or it committed after it was given up on).
   */
  sweep(): Promise<number> {
    return this.presence.sweep(() => [
      ...this.pendingRows.keys(),
      ...this.inserting.keys(),
      ...this.kept.unwritten.keys(),
      ...this.kept.later.keys(),
    ]);
  }
}
