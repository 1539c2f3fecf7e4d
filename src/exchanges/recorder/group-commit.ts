import { MAX_BATCH } from './batch-sql';

/**
 * When queued records are written: all that are queued go in one batch. A flush starts at once when none is
 * running (so a lone request pays one round trip), otherwise when a running flush finishes or `flushMs` later,
 * with at most `maxInFlight` flushes running.
 */
export class GroupCommit<T> {
  private queue: T[] = [];
  private inFlight = 0;
  private immediate?: NodeJS.Immediate;
  private timer?: NodeJS.Timeout;
  private idle: (() => void)[] = [];

  constructor(
    /** writes a batch; never rejects (each item settles on its own) */
    private readonly write: (batch: T[]) => Promise<void>,
    private readonly maxInFlight: number,
    private readonly flushMs: number,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  push(item: T): void {
    this.queue.push(item);
    this.schedule();
  }

  /** Resolves when every queued record has been attempted. */
  async idleNow(): Promise<void> {
    if (this.queue.length || this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
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
      }, this.flushMs);
    }
  }

  private flush(): void {
    if (!this.queue.length) return;
    const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
    this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
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
}
