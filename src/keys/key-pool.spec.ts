import { describe, expect, it } from 'vitest';
import { modelPattern, orderPool, servesModel } from './key-pool';
import type { ResolvedKey } from './key-resolver';

const key = (keyId: string, o: Partial<ResolvedKey> = {}): ResolvedKey => ({ keyId, apiKey: `sk-${keyId}`, baseUrl: 'http://x/v1', source: 'organization', ...o });

describe('key pools', () => {
  it('model patterns: * any run, ? one character, the rest literal', () => {
    expect(modelPattern('gpt-*').test('gpt-4o-mini')).toBe(true);
    expect(modelPattern('gpt-*').test('chatgpt-4o')).toBe(false);
    expect(modelPattern('o3?').test('o3x')).toBe(true);
    expect(modelPattern('o3?').test('o3-mini')).toBe(false);
    expect(modelPattern('gpt-4.1').test('gpt-441')).toBe(false);
    expect(servesModel({ models: null }, 'anything')).toBe(true);
    expect(servesModel({ models: ['llama-*'] }, null)).toBe(true);
    expect(servesModel({ models: ['llama-*', 'qwen*'] }, 'qwen2')).toBe(true);
  });

  it('orders by priority, then weighted rendezvous per session; resting keys last, soonest free first', () => {
    const now = 1_000_000;
    const keys = [key('a'), key('b', { priority: 1 }), key('c', { restUntil: now + 50 }), key('d', { restUntil: now + 10, priority: 9 }), key('e')];
    const order = orderPool(keys, 'session-1', now).map((k) => k.keyId);
    expect(order[0]).toBe('b');
    expect(order.slice(1, 3).sort()).toEqual(['a', 'e']);
    expect(order.slice(3)).toEqual(['d', 'c']);
    // the same session, the same order
    expect(orderPool(keys, 'session-1', now).map((k) => k.keyId)).toEqual(order);
    // a key past its rest is back in the healthy part
    expect(orderPool(keys, 'session-1', now + 100)[0].keyId).toBe('d');
  });

  it('with levels, the user pool comes before the organization pool whatever the priorities', () => {
    const keys = [key('org', { priority: 5 }), key('mine', { source: 'user' })];
    expect(orderPool(keys, 's', 0, true).map((k) => k.keyId)).toEqual(['mine', 'org']);
    expect(orderPool(keys, 's', 0, false).map((k) => k.keyId)).toEqual(['org', 'mine']);
  });

  it('a key leaving the pool moves only its own sessions', () => {
    const all = [key('k1'), key('k2'), key('k3'), key('k4')];
    const without = all.filter((k) => k.keyId !== 'k2');
    for (let i = 0; i < 500; i++) {
      const before = orderPool(all, `s${i}`, 0)[0].keyId;
      const after = orderPool(without, `s${i}`, 0)[0].keyId;
      if (before !== 'k2') expect(after).toBe(before);
    }
  });
});
