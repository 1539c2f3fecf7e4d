/**
 * One counter of one window taken by an admission: refused when its value has already reached the limit;
 * otherwise `amount` is added (1 for a request, the estimated tokens or cost of a call for a reservation).
 */
export interface CounterTake {
  key: string;
  amount: number;
  limit: number;
  expiresAt: number;
}

export interface CounterAdd {
  key: string;
  amount: number;
  expiresAt: number;
}

export interface TakeOutcome {
  /** index of the first refusing counter, or -1 when admitted */
  refused: number;
  /** every counter's value before this admission (when admitted, each grew by its amount) */
  values: number[];
}

/**
 * Where the shared limit counters live (Redis or PostgreSQL). take() is atomic across every process using the
 * same store: every counter is checked under the same lock, and either every amount is added or nothing is
 * changed, so a refused call consumes no window and is never seen half-counted by another admission.
 */
export interface CounterStore {
  readonly name: 'redis' | 'postgres';
  take(items: CounterTake[], now: number): Promise<TakeOutcome>;
  /** adds signed amounts (a settlement releases a reservation with a negative amount) */
  add(items: CounterAdd[], now: number): Promise<void>;
  set(items: CounterAdd[], now: number): Promise<void>;
  get(keys: string[]): Promise<number[]>;
}
