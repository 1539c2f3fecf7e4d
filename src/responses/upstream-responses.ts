import { Injectable } from '@nestjs/common';
import { AppException } from '../common/app-exception';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import { AppConfig } from '../config/app-config';
import type { ResolvedKey } from '../keys/key-resolver';
import { retryAfterMs } from '../upstream/retry';
import { UpstreamClient, UpstreamResponse } from '../upstream/upstream-client';
import { KeyScrubber, upstreamErrorAnswer, upstreamFailure } from '../upstream/upstream-errors';

/** A response object as the upstream answered it, the call's key taken out. */
export interface UpstreamResponseObject {
  /** the JSON text, as it goes to the client and the record */
  text: string;
  body: Record<string, unknown>;
}

const ERROR_BODY_MAX = 1024 * 1024;

/**
 * Whether a failure to read a response upstream will not pass by asking again: the upstream refused the request or
 * the key (a response it does not know, a revoked key), or no key is left to ask with. Timeouts, 5xx, 429, 409 and
 * an unreachable upstream pass.
 */
export function isPermanentFailure(err: unknown): boolean {
  if (!(err instanceof AppException)) return false;
  if (err.kind === 'no_api_key' || err.options.code === 'upstream_auth_failed') return true;
  return err.kind === 'invalid_request' && err.status >= 400 && err.status < 500 && ![408, 409, 429].includes(err.status);
}

/** GET /responses/{id} upstream, with the key of the response, as a whole object or as a resumed event stream. */
@Injectable()
export class UpstreamResponses {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly config: AppConfig,
  ) {}

  /**
   * The response object now; `query` is the client's query string (with its `?`), forwarded as it is. Throws the
   * contract's error for an upstream that cannot be reached, answers an error, or sends something else than an object.
   */
  async get(key: ResolvedKey, responseId: string, query = '', signal?: AbortSignal): Promise<UpstreamResponseObject> {
    return this.readObject(key, await this.open(key, responseId, query, 'application/json', signal));
  }

  /** The response object of a successful answer (see open()). */
  async readObject(key: ResolvedKey, up: UpstreamResponse): Promise<UpstreamResponseObject> {
    const max = this.config.upstreamMaxBodyBytes;
    const tooLarge = () => new AppException('upstream_error', 'The upstream answer is larger than the configured limit (UPSTREAM_MAX_BODY)');
    if (Number(up.headers['content-length']) > max) {
      up.body.destroy();
      throw tooLarge();
    }
    let text: string;
    try {
      text = new KeyScrubber(key.apiKey).bytes(await readBounded(up.body, max)).toString('utf8');
    } catch (err) {
      throw err instanceof BodyTooLarge ? tooLarge() : upstreamFailure(err);
    }
    const body = parseObject(text);
    if (!body) throw new AppException('upstream_error', 'The upstream sent a body that is not a JSON object');
    return { text, body };
  }

  /**
   * The upstream's answer once it is a success (its body not read yet): an event stream when `accept` asks for one
   * and the upstream honours it. An error answer is read and thrown as the contract's error, the key scrubbed.
   */
  async open(key: ResolvedKey, responseId: string, query: string, accept: string, signal?: AbortSignal): Promise<UpstreamResponse> {
    let up: UpstreamResponse;
    try {
      up = await this.upstream.send({ key, method: 'GET', path: `/responses/${encodeURIComponent(responseId)}${query}`, headers: { accept }, signal });
    } catch (err) {
      throw upstreamFailure(err);
    }
    const status = up.statusCode;
    if (status >= 200 && status < 300) return up;
    if (status < 400) {
      await up.body.dump().catch(() => undefined);
      throw new AppException('upstream_error', 'The upstream answered with a redirect, which is not followed');
    }
    let text = '';
    try {
      text = (await readBounded(up.body, ERROR_BODY_MAX)).toString('utf8');
    } catch {
      // the status alone says what happened
    }
    const exc = upstreamErrorAnswer(status, text, key.apiKey);
    const wait = retryAfterMs(up.headers);
    if (wait !== null) exc.options.headers = { ...exc.options.headers, 'Retry-After': String(Math.max(1, Math.ceil(wait / 1000))) };
    throw exc;
  }
}

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
