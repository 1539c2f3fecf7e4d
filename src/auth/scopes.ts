import { AppException } from '../common/app-exception';

/**
 * What a token may do. `proxy`: model calls, the relayed OpenAI API, realtime, the caller's own ratings. `read`: stored
 * exchanges, sessions, analytics, analysis results, personas and analysis configs, limits. `manage`: write personas and
 * analysis configs, run analyses. `admin`: end users' export and erasure, the audit log, organization settings.
 */
export const SCOPES = ['proxy', 'read', 'manage', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** The rights of a token without a `scope` claim: those every token had before scopes existed, never `admin`. */
export const DEFAULT_SCOPES: readonly Scope[] = ['proxy', 'read', 'manage'];

const isScope = (word: string): word is Scope => (SCOPES as readonly string[]).includes(word);
const words = (raw: string) => raw.split(' ').filter((w) => w !== '');

/** The scope a token is issued with (`jwt create --scope`): known words only, at least one, each once, in the canonical order. */
export function parseScope(raw: string): Scope[] {
  const list = words(raw);
  const unknown = list.filter((w) => !isScope(w));
  if (unknown.length) {
    throw AppException.invalid(`Unknown scope ${unknown.map((w) => `'${w}'`).join(', ')}; scopes are ${SCOPES.join(', ')} (space-separated)`, 'scope');
  }
  if (!list.length) throw AppException.invalid(`scope must name at least one of ${SCOPES.join(', ')}`, 'scope');
  return SCOPES.filter((s) => list.includes(s));
}

/**
 * The rights a presented token's `scope` claim grants: none given, the defaults. A word this server does not know
 * (a token signed by another issuer, or for a later version) grants nothing; the token keeps its other words.
 */
export function grantedScopes(claim: string | undefined): ReadonlySet<Scope> {
  if (claim === undefined) return new Set(DEFAULT_SCOPES);
  return new Set(words(claim).filter(isScope));
}

/** 403 insufficient_scope unless the token holds `needed`. */
export function requireScope(granted: ReadonlySet<Scope>, needed: Scope): void {
  if (!granted.has(needed)) {
    throw new AppException('insufficient_scope', `This call needs the '${needed}' scope; the token has ${granted.size ? [...granted].map((s) => `'${s}'`).join(', ') : 'none'}`);
  }
}
