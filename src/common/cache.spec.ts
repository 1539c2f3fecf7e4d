import { describe, expect, it } from 'vitest';
import { Cache } from './cache';

/** A load the test resolves or rejects when it wants. */
function gate<V>() {
  let resolve!: (v: V) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<V>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('Cache', () => {
  it('keeps at most max entries, dropping the least recently used first', async () => {
    const cache = new Cache<string>({ max: 2 });
    let loads = 0;
    const get = (k: string) => cache.get(k, async () => `${k}${++loads}`);
    expect(await get('a')).toBe('a1');
    expect(await get('b')).toBe('b2');
    expect(await get('a')).toBe('a1'); // a is now the most recent
    expect(await get('c')).toBe('c3'); // b goes
    expect(cache.size).toBe(2);
    expect(await get('a')).toBe('a1');
    expect(await get('b')).toBe('b4');
  });

  it('shares one load among concurrent callers', async () => {
    const cache = new Cache<number>({ max: 10 });
    const g = gate<number>();
    let loads = 0;
    const load = () => (++loads, g.promise);
    const both = Promise.all([cache.get('k', load), cache.get('k', load)]);
    g.resolve(7);
    expect(await both).toEqual([7, 7]);
    expect(loads).toBe(1);
    expect(await cache.get('k', load)).toBe(7);
    expect(loads).toBe(1);
  });

  it('does not keep a failed load: every waiting caller sees the failure, the next call loads again', async () => {
    const cache = new Cache<number>({ max: 10 });
    const g = gate<number>();
    const first = cache.get('k', () => g.promise);
    const second = cache.get('k', async () => 99);
    g.reject(new Error('down'));
    await expect(first).rejects.toThrow('down');
    await expect(second).rejects.toThrow('down');
    expect(cache.size).toBe(0);
    expect(await cache.get('k', async () => 2)).toBe(2);
  });

  it('keeps null as a value', async () => {
    const cache = new Cache<string | null>({ max: 10 });
    let loads = 0;
    expect(await cache.get('k', async () => (++loads, null))).toBeNull();
    expect(await cache.get('k', async () => (++loads, 'x'))).toBeNull();
    expect(cache.peek('k')).toBeNull();
    expect(cache.peek('other')).toBeUndefined();
    expect(loads).toBe(1);
  });

  it('peek sees a value once loaded, not while its load runs; set stores one directly', async () => {
    const cache = new Cache<string>({ max: 10 });
    const g = gate<string>();
    const pending = cache.get('k', () => g.promise);
    expect(cache.peek('k')).toBeUndefined();
    g.resolve('v');
    await pending;
    expect(cache.peek('k')).toBe('v');
    cache.set('s', 'direct');
    expect(await cache.get('s', async () => 'loaded')).toBe('direct');
  });

  it('drops one key, or every key a predicate matches', async () => {
    const cache = new Cache<number>({ max: 10 });
    let loads = 0;
    const load = async () => ++loads;
    await cache.get('o1\nu1', load);
    await cache.get('o1\nu2', load);
    await cache.get('o2\nu1', load);
    cache.deleteWhere((k) => k.startsWith('o1\n'));
    expect(cache.size).toBe(1);
    expect(await cache.get('o2\nu1', load)).toBe(3);
    expect(await cache.get('o1\nu1', load)).toBe(4);
    cache.delete('o2\nu1');
    expect(await cache.get('o2\nu1', load)).toBe(5);
  });

  it('a load that was under way when its key was dropped answers its callers but is not kept', async () => {
    const cache = new Cache<string>({ max: 10 });
    const g = gate<string>();
    const waiting = cache.get('k', () => g.promise);
    cache.delete('k');
    const fresh = gate<string>();
    const after = cache.get('k', () => fresh.promise); // a load started after the change
    g.resolve('old');
    expect(await waiting).toBe('old');
    fresh.resolve('new');
    expect(await after).toBe('new');
    expect(await cache.get('k', async () => 'again')).toBe('new');
  });

  it('a predicate reaches loads under way: the value read before the change is not kept', async () => {
    const cache = new Cache<string>({ max: 10 });
    const g = gate<string>();
    const waiting = cache.get('o1\nu1', () => g.promise);
    cache.deleteWhere((k) => k.startsWith('o1\n'));
    g.resolve('old');
    expect(await waiting).toBe('old');
    expect(cache.peek('o1\nu1')).toBeUndefined();
    expect(await cache.get('o1\nu1', async () => 'new')).toBe('new');
  });

  it('a failed load dropped meanwhile does not drop the load that replaced it', async () => {
    const cache = new Cache<string>({ max: 10 });
    const g = gate<string>();
    const waiting = cache.get('k', () => g.promise);
    cache.delete('k');
    expect(await cache.get('k', async () => 'new')).toBe('new');
    g.reject(new Error('down'));
    await expect(waiting).rejects.toThrow('down');
    expect(cache.peek('k')).toBe('new');
  });

  it('loads an entry again once it is older than ttlMs', async () => {
    const cache = new Cache<number>({ max: 10, ttlMs: 20 });
    let loads = 0;
    expect(await cache.get('k', async () => ++loads)).toBe(1);
    expect(await cache.get('k', async () => ++loads)).toBe(1);
    await new Promise((r) => setTimeout(r, 40));
    expect(await cache.get('k', async () => ++loads)).toBe(2);
  });
});
