import { describe, expect, it } from 'vitest';
import { AppException } from '../common/app-exception';
import { CachedKeyResolver } from './cached-key-resolver';

/** A key row as the repository gives it. */
const row = (state: 'active' | 'invalid') => ({
  id: 'key-1',
  organizationId: 'org-1',
  userId: null,
  encryptedKey: 'sealed',
  baseUrl: 'http://upstream/v1',
  models: null,
  weight: 1,
  priority: 0,
  state,
  restUntil: null,
});

describe('cached key resolver', () => {
  it("keys dropped while a call waited for their load are loaded again: a load that read them before a 401's invalidation committed is not used", async () => {
    let state: 'active' | 'invalid' = 'active';
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let loads = 0;
    const keys = {
      find: async ({ where }: { where: { userId?: unknown } }) => {
        // the user's own pool: none
        if (typeof where.userId === 'string') return [];
        loads++;
        // the first load reads the row before the invalidation commits, and answers after it
        const read = row(state);
        if (loads === 1) await gate;
        return [read];
      },
    };
    const orgs = { findOne: async () => ({ id: 'org-1', keyFallback: false }) };
    const crypto = { decrypt: () => ({ plaintext: 'sk-secret' }) };
    const settled: ((orgId: string) => void)[] = [];
    const health = { onSettled: (h: (orgId: string) => void) => settled.push(h), restUntil: () => null, isInvalid: () => false };
    const changes = { on: () => undefined };
    const resolver = new CachedKeyResolver(
      keys as never,
      orgs as never,
      crypto as never,
      { keyCacheSize: 100, openaiBaseUrl: 'http://default/v1' } as never,
      { write: () => undefined } as never,
      health as never,
      changes as never,
    );

    const waiting = resolver.candidates({ orgId: 'org-1', userId: 'user-1' });
    await new Promise((r) => setImmediate(r));
    // the invalidation commits while the load is under way: the caches of the organization are dropped
    state = 'invalid';
    for (const h of settled) h('org-1');
    release();
    const err = await waiting.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppException);
    expect((err as AppException).toBody().error.code).toBe('no_api_key');
    expect(loads).toBe(2);
  });
});
