import { Injectable } from '@nestjs/common';
import { KeyResolver } from '../keys/key-resolver';
import { UpstreamClient } from '../upstream/upstream-client';

/** Record statuses of a response the upstream has not finished (`background: true`): its stored object is not final. */
export const UNFINISHED_STATUSES: ReadonlySet<string> = new Set(['queued']);

/**
 * A response still running upstream is read from upstream, never from its stored (queued) object, which would tell
 * the client it is queued for ever. The key is the one the call that made it resolves to (its user's own key, else
 * the organization's), as the upstream only shows a response to the project that made it.
 */
@Injectable()
export class UnfinishedResponses {
  constructor(
    private readonly keys: KeyResolver,
    private readonly upstream: UpstreamClient,
  ) {}

  async current(orgId: string, userId: string, responseId: string): Promise<unknown> {
    const key = await this.keys.resolve({ orgId, userId });
    return this.upstream.json({ key, method: 'GET', path: `/responses/${encodeURIComponent(responseId)}` });
  }
}
