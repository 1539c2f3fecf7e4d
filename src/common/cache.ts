import { LRUCache } from 'lru-cache';

export interface CacheOptions {
  /** most entries kept; the least recently used goes first */
  max: number;
  /** an entry older than this is loaded again (a backstop for a missed invalidation); default never */
  ttlMs?: number;
}

// lru-cache keeps no null or undefined values: a boxed value lets "nothing there" (null) be cached too
interface Box<V> {
  value: V;
}

type Load<V> = () => Promise<V>;

/**
 * Values by key, at most `max` of them (the least recently used is dropped first), so memory stays bounded however
 * many distinct keys clients bring. Concurrent callers of one key share one load; a load that fails is not kept, so
 * the next call tries again. An entry dropped while its load runs (by key or by predicate) still answers the
 * callers already waiting, but the loaded value is not kept: the value read before a change never outlives it.
 */
export class Cache<V> {
  private readonly lru: LRUCache<string, Box<V>, Load<V>>;
  /**
   * keys whose load is under way, with that load's signal: lru-cache's iterators skip entries still loading, and a
   * predicate must reach those too, or a load that read the old data would be kept after the change
   */
  private readonly loading = new Map<string, AbortSignal>();

  constructor(options: CacheOptions) {
    this.lru = new LRUCache<string, Box<V>, Load<V>>({
      // counted by size rather than `max`, which would allocate every slot up front
      maxSize: options.max,
      sizeCalculation: () => 1,
      ttl: options.ttlMs,
      // a dropped entry's load goes on for its callers; lru-cache then leaves the cache as it is
      ignoreFetchAbort: true,
      fetchMethod: async (key, _stale, { signal, context }) => {
        this.loading.set(key, signal);
        return { value: await context() };
      },
    });
  }

  get size(): number {
    return this.lru.size;
  }

  /** The value of `key`, loaded once by `load` when it is not there (callers meanwhile share that load). */
  get(key: string, load: Load<V>): Promise<V> {
    const hit = this.lru.get(key);
    if (hit) return Promise.resolve(hit.value);
    const pending = this.lru.fetch(key, { context: load });
    const signal = this.loading.get(key);
    // lru-cache has stored or dropped the value by the time its promise settles
    if (signal) void pending.then(() => this.loaded(key, signal), () => this.loaded(key, signal));
    return pending.then((box) => box!.value);
  }

  /** The loaded value of `key`, or undefined when it is not there or still loading; counts as a use. */
  peek(key: string): V | undefined {
    return this.lru.get(key)?.value;
  }

  set(key: string, value: V): void {
    this.lru.set(key, { value });
  }

  /** Drops one entry (a load under way still answers its callers, but is not kept). */
  delete(key: string): void {
    this.lru.delete(key);
  }

  /** Drops every entry whose key matches, loaded or loading. */
  deleteWhere(matches: (key: string) => boolean): void {
    const doomed = [...this.lru.keys(), ...this.loading.keys()].filter(matches);
    for (const key of doomed) this.lru.delete(key);
  }

  private loaded(key: string, signal: AbortSignal): void {
    if (this.loading.get(key) === signal) this.loading.delete(key);
  }
}
