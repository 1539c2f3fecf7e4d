interface Entry<V> {
  group: string | undefined;
  loadedAt: number;
  value: Promise<V>;
}

export interface BoundedPromiseCacheOptions {
  /** most entries kept; the least recently used goes first */
  capacity: number;
  /** an entry older than this is loaded again (a backstop for a missed invalidation); default never */
  maxAgeMs?: number;
}

/**
 * Loaded values by key, at most `capacity` of them: the least recently used is dropped first, so memory stays
 * bounded however many distinct keys clients bring. An entry may belong to a group (an organization) dropped at once
 * when its data changes; a load that fails is not kept, so the next call tries again. Concurrent callers of one key
 * share one load.
 */
export class BoundedPromiseCache<V> {
  // a Map iterates in insertion order: an entry moved to the end on every hit makes the first one the least recent
  private readonly entries = new Map<string, Entry<V>>();
  private readonly groups = new Map<string, Set<string>>();

  constructor(private readonly options: BoundedPromiseCacheOptions) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string, load: () => Promise<V>, group?: string): Promise<V> {
    const hit = this.entries.get(key);
    if (hit && (this.options.maxAgeMs === undefined || performance.now() - hit.loadedAt <= this.options.maxAgeMs)) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.value;
    }
    this.drop(key);
    const value = load();
    const entry: Entry<V> = { group, loadedAt: performance.now(), value };
    this.entries.set(key, entry);
    if (group !== undefined) {
      let members = this.groups.get(group);
      if (!members) this.groups.set(group, (members = new Set()));
      members.add(key);
    }
    value.catch(() => this.entries.get(key) === entry && this.drop(key));
    while (this.entries.size > this.options.capacity) this.drop(this.entries.keys().next().value!);
    return value;
  }

  /** Drops one entry (a load under way still answers its callers, but is not kept). */
  drop(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    if (entry.group === undefined) return;
    const members = this.groups.get(entry.group);
    members?.delete(key);
    if (members?.size === 0) this.groups.delete(entry.group);
  }

  /** Drops every entry of the group. */
  dropGroup(group: string): void {
    const members = this.groups.get(group);
    if (!members) return;
    this.groups.delete(group);
    for (const key of members) this.entries.delete(key);
  }
}
