import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import type { Readable } from 'node:stream';
import { AppConfig } from '../config/app-config';
import { MetricsService } from '../metrics/metrics.service';
import { CircuitBreakers } from './circuit-breakers';
import { AppException } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import { upstreamErrorAnswer, upstreamFailure } from './upstream-errors';
import type { ResolvedKey } from '../keys/key-resolver';

export interface UpstreamRequest {
  key: ResolvedKey;
  method: string;
  /** path under the key's base URL, e.g. `/responses` */
  path: string;
  /** a JSON body (sent as application/json unless `headers` name a type), or a stream sent once as it arrives */
  body?: Buffer | string | Readable;
  /** extra request headers (never the client's Authorization or cookies) */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** time to the response headers; default UPSTREAM_TIMEOUT_MS */
  headersTimeoutMs?: number;
  /** longest silence while reading the body; default STREAM_IDLE_TIMEOUT_MS */
  bodyTimeoutMs?: number;
  /** for the log: how many times this call was retried before this attempt, and the request it serves */
  retry?: number;
  requestId?: string;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Readable & { text(): Promise<string>; dump(): Promise<void> };
}

/** The system or undici code of a failure to reach the upstream (ECONNREFUSED, UND_ERR_SOCKET, …), else its name. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown }; errors?: { code?: unknown }[] } | null;
  for (const code of [e?.code, e?.cause?.code, e?.errors?.[0]?.code]) if (typeof code === 'string' && code) return code;
  return typeof e?.name === 'string' ? e.name : 'unknown';
}

/** One keep-alive connection pool per upstream origin (undici); redirects are never followed. */
@Injectable()
export class UpstreamClient implements OnApplicationShutdown {
  private readonly pools = new Map<string, { pool: Pool; basePath: string; host: string }>();

  constructor(
    private readonly config: AppConfig,
    private readonly circuits: CircuitBreakers,
    metrics: MetricsService,
    private readonly logger: JsonLogger,
  ) {
    metrics.registerCircuitStates(() => circuits.states());
  }

  private poolFor(baseUrl: string): { pool: Pool; basePath: string; host: string } {
    let entry = this.pools.get(baseUrl);
    if (!entry) {
      const u = new URL(baseUrl);
      entry = {
        pool: new Pool(u.origin, {
          connections: 256,
          pipelining: 1,
          keepAliveTimeout: 30_000,
          keepAliveMaxTimeout: 600_000,
          connect: { timeout: Math.min(this.config.upstreamTimeoutMs, 10_000) },
        }),
        basePath: u.pathname.replace(/\/+$/, ''),
        host: u.host,
      };
      this.pools.set(baseUrl, entry);
    }
    return entry;
  }

  async send(req: UpstreamRequest): Promise<UpstreamResponse> {
    const { pool, basePath, host } = this.poolFor(req.key.baseUrl);
    const headers: Record<string, string> = {
      authorization: `Bearer ${req.key.apiKey}`,
      accept: 'application/json, text/event-stream',
      ...req.headers,
    };
    if (req.body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    const report = this.circuits.enter(req.key);
    let res;
    try {
      res = await pool.request({
        method: req.method,
        path: basePath + req.path,
        headers,
        body: req.body,
        signal: req.signal,
        headersTimeout: req.headersTimeoutMs ?? this.config.upstreamTimeoutMs,
        bodyTimeout: req.bodyTimeoutMs ?? this.config.streamIdleTimeoutMs,
      });
    } catch (err) {
      // a call the client abandoned says nothing about the upstream's health, either way
      const aborted = req.signal?.aborted === true;
      report(aborted ? 'neutral' : 'failed');
      // the cause, where the answer can only say 502/504: which upstream, what failed, which attempt (never the key)
      if (!aborted) this.logger.write('warn', 'upstream call failed', { ...this.where(req, host), code: errorCode(err) });
      throw err;
    }
    report(res.statusCode < 500 ? 'ok' : 'failed');
    if (res.statusCode >= 500) this.logger.write('warn', 'upstream answered with an error', { ...this.where(req, host), upstream_status: res.statusCode });
    return { statusCode: res.statusCode, headers: res.headers, body: res.body as UpstreamResponse['body'] };
  }

  private where(req: UpstreamRequest, host: string): Record<string, unknown> {
    return { request_id: req.requestId, host, method: req.method, path: req.path, retry: req.retry ?? 0 };
  }

  /**
   * A whole JSON call for the proxy's own use (model list, analysis): the parsed answer, or the contract's error
   * for a failure to reach the upstream, a redirect, an error answer (key scrubbed) or a body that is not JSON.
   */
  async json(req: UpstreamRequest): Promise<unknown> {
    const max = this.config.upstreamMaxBodyBytes;
    const tooLarge = () => new AppException('upstream_error', 'The upstream answer is larger than the configured limit (UPSTREAM_MAX_BODY)');
    let statusCode: number;
    let text: string;
    try {
      const res = await this.send(req);
      statusCode = res.statusCode;
      if (Number(res.headers['content-length']) > max) {
        res.body.destroy();
        throw tooLarge();
      }
      text = (await readBounded(res.body, max)).toString('utf8');
    } catch (err) {
      if (err instanceof BodyTooLarge) throw tooLarge();
      throw upstreamFailure(err);
    }
    if (statusCode >= 300 && statusCode < 400) {
      throw new AppException('upstream_error', 'The upstream answered with a redirect, which is not followed');
    }
    if (statusCode >= 400) throw upstreamErrorAnswer(statusCode, text, req.key.apiKey);
    try {
      return JSON.parse(text);
    } catch {
      throw new AppException('upstream_error', 'The upstream sent a body that is not valid JSON');
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.pools.values()].map((e) => e.pool.close().catch(() => undefined)));
    this.pools.clear();
  }
}
