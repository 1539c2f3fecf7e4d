import { describe, expect, it } from 'vitest';
import { BoundedPromiseCache } from './bounded-promise-cache';

describe('BoundedPromiseCache', () => {
  it('keeps at most its capacity, dropping the least recently used first', async () => {
    const cache = new BoundedPromiseCache<string>({ capacity: 2 });
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

  it('shares one load among concurrent callers, forgets a failed load, drops a group at once', async () => {
    const cache = new BoundedPromiseCache<number>({ capacity: 10 });
    let loads = 0;
    const load = async () => ++loads;
    const [x, y] = await Promise.all([cache.get('o1\nu1', load, 'o1'), cache.get('o1\nu1', load, 'o1')]);
    expect([x, y, loads]).toEqual([1, 1, 1]);
    await expect(cache.get('o1\nu2', () => Promise.reject(new Error('down')), 'o1')).rejects.toThrow('down');
    expect(await cache.get('o1\nu2', load, 'o1')).toBe(2);
    expect(await cache.get('o2\nu1', load, 'o2')).toBe(3);
    cache.dropGroup('o1');
    expect(cache.size).toBe(1);
    expect(await cache.get('o1\nu1', load, 'o1')).toBe(4);
    expect(await cache.get('o2\nu1', load, 'o2')).toBe(3);
  });

  it('loads an entry again once it is older than maxAgeMs', async () => {
    const cache = new BoundedPromiseCache<number>({ capacity: 10, maxAgeMs: 20 });
    let loads = 0;
    expect(await cache.get('k', async () => ++loads)).toBe(1);
    expect(await cache.get('k', async () => ++loads)).toBe(1);
    await new Promise((r) => setTimeout(r, 40));
    expect(await cache.get('k', async () => ++loads)).toBe(2);
  });
});
