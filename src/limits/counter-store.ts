/** A counter of one window, checked before a call: refused when its value is already at or over the limit. */
export interface CounterRead {
  key: string;
  limit: number;
}

/** A counter of one window that admission increments by one: refused when the increment would pass the limit. */
export interface CounterIncrement {
  key: string;
  limit: number;
  expiresAt: number;
}

export interface CounterAdd {
  key: string;
  amount: number;
  expiresAt: number;
}

export interface AdmitOutcome {
  /** index of the first refusing counter (reads first, then increments), or -1 when admitted */
  refused: number;
  /** the reads' current values, then the increments' values after this call (undefined after a refusal where not reached) */
  values: number[];
}

/**
 * Where the shared limit counters live (Redis or PostgreSQL). admit() is atomic across every process using the
 * same store: either every increment is applied and no counter passes its limit, or nothing is changed.
 */
export interface CounterStore {
  readonly name: 'redis' | 'postgres';
  admit(reads: CounterRead[], increments: CounterIncrement[], now: number): Promise<AdmitOutcome>;
  add(items: CounterAdd[], now: number): Promise<void>;
  set(items: CounterAdd[], now: number): Promise<void>;
  get(keys: string[]): Promise<number[]>;
}
