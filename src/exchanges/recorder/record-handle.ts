import { JsonLogger } from '../../common/logger';
import { ExchangeOutcome, PendingExchange, UNDELIVERED } from './exchange-record';

/** The recorder's side of one call's record (see ExchangeRecorder.open()). */
export interface RecordWrites {
  /** RECORD_WRITE=after_answer and within RECORD_AFTER_ANSWER_MAX */
  readonly takesAfterAnswer: boolean;
  complete(row: ExchangeOutcome): Promise<void>;
  completeAfterAnswer(row: ExchangeOutcome): void;
  completeLater(row: ExchangeOutcome): void;
  withheld(id: string): void;
}

/**
 * One call's record, from its pending row to its outcome. The call says what happened; the handle decides how it
 * is written: before the answer leaves (read-your-writes), or after it (RECORD_WRITE=after_answer, within its
 * bound), and what becomes of a record the database could not take (kept in memory and written once it can).
 */
export class RecordHandle {
  /** the pending row was written (undefined: not known yet) */
  private pendingWritten?: boolean;
  private closed = false;

  constructor(
    private readonly writes: RecordWrites,
    private readonly logger: JsonLogger,
    readonly row: PendingExchange,
    /** the pending row's write */
    readonly written: Promise<void>,
    /** RECORD_WRITE=after_answer: answers do not wait for their records */
    private readonly afterAnswer: boolean,
  ) {}

  /** The outcome is being written, or there is nothing more to write (the pending row could not be). */
  get done(): boolean {
    return this.closed;
  }

  /** The pending row could not be written: the call is not recorded, and says so (503). */
  get unrecorded(): boolean {
    return this.pendingWritten === false;
  }

  /** Nothing may reach the client before the pending row is known to be written. */
  get awaitsPendingRow(): boolean {
    return !this.afterAnswer && this.pendingWritten === undefined;
  }

  /** Whether the pending row is in the database (awaits its write; a failed write means the call is not recorded). */
  async pendingRow(): Promise<boolean> {
    if (this.pendingWritten === undefined) {
      this.pendingWritten = await this.written.then(
        () => true,
        () => false,
      );
      if (!this.pendingWritten) {
        // the answer is withheld, but the upstream was called: the recorder writes the row once it can
        this.closed = true;
        this.writes.withheld(this.row.id);
      }
    }
    return this.pendingWritten;
  }

  /**
   * Writes how the call ended; false when it could not be written (the answer must then not be delivered as a
   * success; `unrecorded` tells whether the pending row was missing too).
   */
  async finish(outcome: ExchangeOutcome): Promise<boolean> {
    this.closed = true;
    if (this.row.capture) outcome = this.row.capture.outcome(outcome);
    // past RECORD_AFTER_ANSWER_MAX completions waiting for the database, the answer waits for its record
    if (this.afterAnswer && this.writes.takesAfterAnswer) {
      this.writes.completeAfterAnswer(outcome);
      return true;
    }
    // a pending row still waiting to be written takes the outcome with it (one INSERT); otherwise the
    // completion follows the pending row's write
    const completion = this.writes.complete(outcome);
    completion.catch(() => undefined);
    // the pending row could not be written: nothing is recorded, and the caller answers 503
    if (!(await this.pendingRow())) return false;
    try {
      await completion;
      return true;
    } catch (err) {
      // no unrecorded success: the caller withholds the answer (503, or an SSE error event), and the record is
      // completed as interrupted once the database is back
      this.logger.write('error', 'exchange record could not be completed; answer withheld', { request_id: outcome.id, err });
      this.writes.completeLater({ ...outcome, status: 'interrupted', error: UNDELIVERED });
      return false;
    }
  }
}

/** Completions written after their answer left (RECORD_WRITE=after_answer), until committed. */
export class AfterAnswerWrites {
  private readonly unsettled = new Set<Promise<void>>();

  constructor(private readonly max: number) {}

  /**
   * Fewer than RECORD_AFTER_ANSWER_MAX completions are waiting for the database. Beyond it an answer waits for its
   * record as with before_answer, so a database slower than the traffic slows the answers instead of growing the
   * memory held for records without bound.
   */
  get open(): boolean {
    return this.unsettled.size < this.max;
  }

  track(p: Promise<void>): void {
    this.unsettled.add(p);
    void p.finally(() => this.unsettled.delete(p));
  }

  caughtUp(): Promise<void> | void {
    if (!this.unsettled.size) return;
    return Promise.allSettled([...this.unsettled]).then(() => undefined);
  }
}
