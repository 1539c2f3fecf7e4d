import type { ActingContext } from '../common/request-context';

export type KeySource = 'user' | 'organization';

export interface ResolvedKey {
  keyId: string;
  apiKey: string;
  /** the key's own upstream, else OPENAI_BASE_URL */
  baseUrl: string;
  source: KeySource;
}

/** Picks the upstream key for a call: the user's own active key, else the organization's, else 403 no_api_key. */
export abstract class KeyResolver {
  abstract resolve(acting: Pick<ActingContext, 'orgId' | 'userId'>): Promise<ResolvedKey>;
  /** One key of the organization by id, while it is active (not revoked); null otherwise. */
  abstract byId(orgId: string, keyId: string): Promise<ResolvedKey | null>;
}
