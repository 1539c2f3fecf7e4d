import { Injectable } from '@nestjs/common';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import type { ResponseRecord } from './queued-responses.repository';

/**
 * The upstream key for the calls about a response made through the proxy: the key that made it while it is active
 * (the upstream shows a response only to the project that made it), else the key its user's calls resolve to now.
 */
@Injectable()
export class ResponseKeys {
  constructor(private readonly keys: KeyResolver) {}

  /** Throws 403 no_api_key when neither the key that made the response nor any key of its user is usable. */
  async of(record: Pick<ResponseRecord, 'organizationId' | 'userId' | 'keyId'>): Promise<ResolvedKey> {
    const made = record.keyId ? await this.keys.byId(record.organizationId, record.keyId) : null;
    return made ?? this.keys.resolve({ orgId: record.organizationId, userId: record.userId });
  }
}
