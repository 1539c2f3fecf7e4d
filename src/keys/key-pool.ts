import type { ResolvedKey } from './key-resolver';

/** `gpt-*`, `o3*`, `llama-3.?-70b`: `*` any run of characters, `?` one character; the rest literal. */
export function modelPattern(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

const compiled = new Map<string, RegExp>();

/** Whether a key serves `model` (a key naming no models serves every model; a call naming none is served by any key). */
export function servesModel(key: Pick<ResolvedKey, 'models'>, model: string | null | undefined): boolean {
  if (!key.models || model == null) return true;
  for (const glob of key.models) {
    let re = compiled.get(glob);
    if (!re) {
      re = modelPattern(glob);
      if (compiled.size < 10_000) compiled.set(glob, re);
    }
    if (re.test(model)) return true;
  }
  return false;
}

/** A 32-bit hash of a string (FNV-1a, then murmur3's finalizer so that near-identical inputs spread). */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Weighted rendezvous hashing: each key scores weight / -ln(u), u uniform in (0,1) drawn from (session, key). The
 * highest score wins with probability weight / Σweights over sessions, and one session always gets the same key
 * while the set of keys is the same; a key leaving moves only its own sessions. No shared state is needed.
 */
export function rendezvousScore(sessionId: string, key: Pick<ResolvedKey, 'keyId' | 'weight'>): number {
  const u = (hash32(`${sessionId}\n${key.keyId}`) + 0.5) / 4294967296;
  return (key.weight ?? 1) / -Math.log(u);
}

/**
 * The order in which a pool's keys are tried: keys not resting, highest priority first, at equal priority by
 * weighted rendezvous score for the session; then resting keys, the one free soonest first. `levels` splits the
 * keys into pools tried one after the other (the user's, then the organization's); resting keys of every level
 * come after all healthy ones.
 */
export function orderPool(keys: readonly ResolvedKey[], sessionId: string | null | undefined, now: number, levels = false): ResolvedKey[] {
  if (keys.length <= 1) return keys.slice();
  const session = sessionId ?? `${Math.random()}`;
  const healthy: { key: ResolvedKey; level: number; score: number }[] = [];
  const resting: ResolvedKey[] = [];
  for (const key of keys) {
    if (key.restUntil != null && key.restUntil > now) resting.push(key);
    else healthy.push({ key, level: levels && key.source !== 'user' ? 1 : 0, score: rendezvousScore(session, key) });
  }
  healthy.sort((a, b) => a.level - b.level || (b.key.priority ?? 0) - (a.key.priority ?? 0) || b.score - a.score);
  resting.sort((a, b) => a.restUntil! - b.restUntil!);
  return [...healthy.map((h) => h.key), ...resting];
}
