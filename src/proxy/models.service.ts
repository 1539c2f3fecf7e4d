import { Injectable } from '@nestjs/common';
import type { ActingContext } from '../common/request-context';
import { KeyResolver, KeySource } from '../keys/key-resolver';
import { UpstreamClient } from './upstream-client';
import { upstreamErrorAnswer, upstreamFailure } from './upstream-errors';
import { AppException } from '../common/app-exception';

@Injectable()
export class ModelsService {
  constructor(
    private readonly keys: KeyResolver,
    private readonly upstream: UpstreamClient,
  ) {}

  /** GET /models forwarded with the resolved key. */
  async list(acting: ActingContext): Promise<{ body: unknown; keySource: KeySource }> {
    const key = await this.keys.resolve(acting);
    let res;
    try {
      res = await this.upstream.send({ key, method: 'GET', path: '/models' });
    } catch (err) {
      throw upstreamFailure(err);
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw upstreamFailure(err);
    }
    if (res.statusCode >= 300 && res.statusCode < 400) {
      throw new AppException('upstream_error', 'The upstream answered with a redirect, which is not followed');
    }
    if (res.statusCode >= 400) throw upstreamErrorAnswer(res.statusCode, text, key.apiKey);
    try {
      return { body: JSON.parse(text), keySource: key.source };
    } catch {
      throw new AppException('upstream_error', 'The upstream sent a body that is not valid JSON');
    }
  }
}
