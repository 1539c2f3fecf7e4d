interface Entry<V> {
  group: string;
  value: Promise<V>;
}

/**
 * Loaded values by (group, key), at most `capacity` of them: the least recently used is dropped first, so memory
 * stays bounded however many distinct keys clients bring. A group (an organization) is dropped at once when its
 * data changes; a load that fails is not kept, so the next call tries again.
 */
export class BoundedPromiseCache<V> {
  // a Map iterates in insertion order: an entry moved to the end on every hit makes the first one the least recent
  private readonly entries = new Map<string, Entry<V>>();
  private readonly groups = new Map<string, Set<string>>();

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(group: string, key: string, load: () => Promise<V>): Promise<V> {
    const id = `${group}\n${key}`;
    const hit = this.entries.get(id);
    if (hit) {
      this.entries.delete(id);
      this.entries.set(id, hit);
      return hit.value;
    }
    const value = load();
    const entry = { group, value };
    this.entries.set(id, entry);
    let members = this.groups.get(group);
    if (!members) this.groups.set(group, (members = new Set()));
    members.add(id);
    value.catch(() => this.entries.get(id) === entry && this.remove(id));
    while (this.entries.size > this.capacity) this.remove(this.entries.keys().next().value!);
    return value;
  }

  /** Drops every entry of the group (loads under way still answer their callers, but are not kept). */
  dropGroup(group: string): void {
    const members = this.groups.get(group);
    if (!members) return;
    this.groups.delete(group);
    for (const id of members) this.entries.delete(id);
  }

  private remove(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.entries.delete(id);
    const members = this.groups.get(entry.group);
    members?.delete(id);
    if (members?.size === 0) this.groups.delete(entry.group);
  }
}
