import { Injectable } from '@nestjs/common';
import type { ActingContext } from '../common/request-context';
import { KeyResolver, KeySource } from '../keys/key-resolver';
import { UpstreamClient } from '../upstream/upstream-client';

@Injectable()
export class ModelsService {
  constructor(
    private readonly keys: KeyResolver,
    private readonly upstream: UpstreamClient,
  ) {}

  /** GET /models forwarded with the resolved key. */
  async list(acting: ActingContext): Promise<{ body: unknown; keySource: KeySource }> {
    const key = await this.keys.resolve(acting);
    return { body: await this.upstream.json({ key, method: 'GET', path: '/models' }), keySource: key.source };
  }
}
