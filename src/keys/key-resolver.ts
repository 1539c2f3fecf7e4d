import type { ActingContext } from '../common/request-context';
import type { KeyState } from './api-key.entity';

export type KeySource = 'user' | 'organization';

export interface ResolvedKey {
  keyId: string;
  apiKey: string;
  /** the key's own upstream, else OPENAI_BASE_URL */
  baseUrl: string;
  source: KeySource;
  /** the organization it belongs to */
  orgId?: string;
  /** glob patterns of the models it serves; null: every model */
  models?: readonly string[] | null;
  weight?: number;
  priority?: number;
  state?: KeyState;
  /** epoch ms until which it rests (rate limited upstream); null or past: not resting */
  restUntil?: number | null;
}

/** What a call's key is chosen for: its model (null: any key) and its session (calls of one session stay on one key). */
export interface PoolQuery {
  model?: string | null;
  sessionId?: string | null;
}

/**
 * Picks the upstream keys for a call. The user's own usable keys form the pool, else the organization's (and the
 * organization's after the user's when it turned fallback on); keys that do not serve the model are left out.
 * No key at all: 403 no_api_key; keys, but none serving the model: 404 model_not_found.
 */
export abstract class KeyResolver {
  /** The pool's keys in the order they are tried: healthy ones by priority, then weight and session; resting ones last. */
  abstract candidates(acting: Pick<ActingContext, 'orgId' | 'userId'>, query?: PoolQuery): Promise<ResolvedKey[]>;
  /** The first of the candidates. */
  async resolve(acting: Pick<ActingContext, 'orgId' | 'userId'>, query?: PoolQuery): Promise<ResolvedKey> {
    return (await this.candidates(acting, query))[0];
  }
  /** Every usable key (active, any model) of the caller's pool, in no particular order. */
  abstract usable(acting: Pick<ActingContext, 'orgId' | 'userId'>): Promise<ResolvedKey[]>;
  /** One key of the organization by id, while it is active (not revoked); null otherwise. */
  abstract byId(orgId: string, keyId: string): Promise<ResolvedKey | null>;
}
