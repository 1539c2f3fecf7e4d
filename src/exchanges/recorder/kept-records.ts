import { AppException, isDatabaseUnavailable } from '../../common/app-exception';
import { JsonLogger } from '../../common/logger';
import { ExchangeOutcome, PendingExchange, UNDELIVERED } from './exchange-record';

/** first and longest wait between attempts at records the database could not take yet */
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;

/** A call whose pending row could not be written: kept until the call says how it ended, then written whole. */
export interface Unwritten {
  row: PendingExchange;
  outcome?: ExchangeOutcome;
  completedAt?: Date;
  /** the answer was withheld for want of the record: stored as interrupted (with whatever usage it had) */
  withheld?: boolean;
  /** the call ended and its outcome is to be written as given (its answer went out: RECORD_WRITE=after_answer) */
  ended?: boolean;
}

/** How kept records reach the database: through the recorder's queue. */
export interface KeptWrites {
  stopped(): boolean;
  /** the whole row again, idempotently (its pending row may have committed after all) */
  writeWhole(row: PendingExchange, outcome: ExchangeOutcome, completedAt: Date): Promise<void>;
  update(row: ExchangeOutcome, completedAt: Date): Promise<void>;
}

/** A write the database did not acknowledge in time (server-side statement_timeout, or the client's own). */
export function isWriteTimeout(err: unknown): boolean {
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
 * Records the database could not take, kept in memory and written once it can (retried with backoff while the
 * process lives): calls whose pending row was not written, and completions that were not.
 */
export class KeptRecords {
  /** calls whose pending row could not be written, by id (see Unwritten) */
  readonly unwritten = new Map<string, Unwritten>();
  /** completions the database could not take, written later, by id */
  readonly later = new Map<string, { row: ExchangeOutcome; completedAt: Date }>();
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = RETRY_FIRST_MS;
  private retrying?: Promise<void>;

  constructor(
    private readonly writes: KeptWrites,
    private readonly logger: JsonLogger,
  ) {}

  get size(): number {
    return this.unwritten.size + this.later.size;
  }

  /** The outcome of a call whose pending row was not written: kept with the row. */
  keepOutcome(id: string, outcome: ExchangeOutcome): boolean {
    const u = this.unwritten.get(id);
    if (!u) return false;
    u.outcome = outcome;
    u.completedAt = new Date();
    return true;
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

  /** Stops waiting between attempts (the process is stopping): the next attempt is the last. */
  cancelTimer(): void {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
  }

  private retrySoon(): void {
    if (this.retryTimer || this.retrying || this.writes.stopped()) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retry();
    }, this.retryDelay);
    this.retryTimer.unref();
  }

  /** One attempt at every kept record that is ready; the next one is scheduled while some are left. */
  retry(): Promise<void> {
    this.retrying ??= this.attempt().finally(() => {
      this.retrying = undefined;
      const left = [...this.unwritten.values()].some((u) => u.withheld || u.ended) || this.later.size > 0;
      if (left) this.retrySoon();
    });
    return this.retrying;
  }

  private async attempt(): Promise<void> {
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
      const write = this.writes.writeWhole(u.row, outcome, u.completedAt ?? new Date());
      attempts.push(this.settle(write, `${id}`, () => this.unwritten.get(id) === u && this.unwritten.delete(id)));
    }
    for (const [id, l] of this.later) {
      attempts.push(this.settle(this.writes.update(l.row, l.completedAt), id, () => this.later.get(id) === l && this.later.delete(id)));
    }
    if (!attempts.length) return;
    const done = await Promise.all(attempts);
    this.retryDelay = done.every(Boolean) ? RETRY_FIRST_MS : Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  /** Whether a kept record is settled: written, or refused for good (logged and dropped, never retried forever). */
  private async settle(write: Promise<void>, id: string, drop: () => unknown): Promise<boolean> {
    try {
      await write;
      drop();
      return true;
    } catch (err) {
      if (isTransient(err) && !this.writes.stopped()) return false;
      if (!isTransient(err)) this.logger.write('error', 'exchange record refused by the database; given up', { request_id: id, err });
      drop();
      return true;
    }
  }
}
