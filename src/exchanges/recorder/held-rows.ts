/** A pending row waiting to be written: held (not yet due), queued, or sent to the database. */
export interface Holdable {
  state: 'held' | 'queued' | 'sent';
  /** when a held row becomes due (performance.now()) */
  dueAt?: number;
}

/**
 * Pending rows held for RECORD_PENDING_AFTER_MS before they are queued (a call that ends sooner is written once,
 * whole). One timer for all: rows are held for the same time, so they fall due in the order they came.
 */
export class HeldRows<T extends Holdable> {
  /** oldest first; rows released early (their call ended) stay until the ones before them are due */
  private held: T[] = [];
  private timer?: NodeJS.Timeout;

  constructor(private readonly release: (item: T) => void) {}

  hold(item: T, afterMs: number): void {
    item.dueAt = performance.now() + afterMs;
    this.held.push(item);
    if (!this.timer) this.timer = setTimeout(() => this.releaseDue(), afterMs);
  }

  /** Queues the held rows that are due (`all`: every one, the process is stopping), and waits for the next. */
  releaseDue(all = false): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
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
    else this.timer = setTimeout(() => this.releaseDue(), Math.max(1, next.dueAt! - now));
  }
}
