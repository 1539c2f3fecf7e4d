import { Injectable } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { AppException } from '../common/app-exception';
import { newSessionId } from '../common/ids';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import type { ProxiedRequest } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import type { ExchangeOutcome, ExchangeStatus, KeyAttempt } from '../exchanges/recorder/exchange-record';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import type { RecordHandle } from '../exchanges/recorder/record-handle';
import { KeyHealth } from '../keys/key-health.service';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import { Admission, LimitsService } from '../limits/limits.service';
import { MetricsService } from '../metrics/metrics.service';
import { PricingService } from '../pricing/pricing.service';
import { readSessionHeader, safetyIdentifierFor } from '../proxy/proxy-body';
import { backoff, RETRYABLE_STATUS, retryAfterMs } from '../upstream/retry';
import { UpstreamClient, UpstreamResponse } from '../upstream/upstream-client';
import { scrubUpstreamText, upstreamErrorAnswer, upstreamFailure } from '../upstream/upstream-errors';
import { usageOfAnswer } from '../pricing/answer-usage';
import { ObjectOwners } from './object-owners';
import type { RouteMatch } from './openai-routes';
import { AnswerTap, outputTextOf, RelayUsage, storableAnswer, usageOf } from './relay-answer';
import { madeIds, readRelayBody, referencedIds, RelayBody, withSafetyIdentifier } from './relay-request';
import { captureModeFor, exchangeCapture } from '../privacy/capture-mode';

/** request headers that reach the upstream (never the client's Authorization, cookies or hop-by-hop headers) */
const FORWARDED = ['openai-beta', 'idempotency-key', 'accept', 'content-type', 'x-stainless-helper-method'];
/** answer headers that reach the client */
const RETURNED = ['content-type', 'content-disposition', 'openai-processing-ms', 'openai-version', 'retry-after', 'retry-after-ms'];
/** reads whose answer carries usage billed when the object completed upstream */
const BILLED_ON_READ = new Set(['/v1/batches/{batch_id}']);
/** path parameters that are not objects */
const NOT_OBJECTS = new Set(['model', 'version']);

/** A JSON object body's fields. */
function jsonFields(body: RelayBody): Record<string, unknown> | null {
  return body.kind === 'json' && body.parsed && typeof body.parsed === 'object' && !Array.isArray(body.parsed) ? (body.parsed as Record<string, unknown>) : null;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The generic relay: every OpenAI route without a handler of its own, with the same authentication, key
 * resolution (object affinity first), limits, circuit breaker and durable record as the model-call routes.
 * JSON bodies are read whole (BODY_LIMIT); uploads and downloads stream through.
 */
@Injectable()
export class RelayService {
  constructor(
    private readonly owners: ObjectOwners,
    private readonly upstream: UpstreamClient,
    private readonly recorder: ExchangeRecorder,
    private readonly limits: LimitsService,
    private readonly pricing: PricingService,
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
    private readonly keys: KeyResolver,
    private readonly health: KeyHealth,
  ) {}

  async relay(match: RouteMatch, req: ProxiedRequest, res: ServerResponse): Promise<void> {
    const acting = req.acting!;
    const { route, params } = match;
    // what is stored of the call (X-Capture-Mode may lower the organization's mode; refused before the body is read)
    const capture = exchangeCapture(captureModeFor(acting, req.headers));
    const body = withSafetyIdentifier(
      await readRelayBody(req, route.method, { json: this.config.bodyLimitBytes, upload: this.config.uploadLimitBytes }),
      route,
      safetyIdentifierFor(acting, this.config.jwtSecret),
    );
    const json = body.kind === 'json' ? body.parsed : null;
    const fields = json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : null;

    // the objects the call names: its key is the one that made them, and only their owners may name them
    const pathIds = Object.entries(params)
      .filter(([name]) => !NOT_OBJECTS.has(name))
      .map(([, v]) => v);
    const model = typeof fields?.model === 'string' ? fields.model : null;
    // otherwise the caller's pool, by the model the call names
    const conversation = params.conversation_id ?? (typeof fields?.conversation === 'string' ? fields.conversation : null);
    const sessionId = readSessionHeader(req.headers['x-session-id']) ?? conversation ?? newSessionId();
    const { key, owned } = await this.owners.keyFor(acting, [...pathIds, ...referencedIds(fields)], { model, sessionId });
    // a call naming an object keeps to the key that made it; any other may go on with the next key of the pool
    const candidates = owned && owned.keyId === key.keyId ? [key] : await this.keys.candidates(acting, { model, sessionId });
    res.setHeader('X-Session-ID', sessionId);
    res.setHeader('X-Key-Source', key.source);

    const modelCall = route.repeatable && route.method === 'POST';
    const admission = await this.limits.admit(acting, modelCall ? { model, body: fields ?? {}, instructions: null } : undefined);
    if (admission.headers) for (const [name, value] of Object.entries(admission.headers)) res.setHeader(name, value);

    const max = this.config.recordBodyMaxBytes;
    const requestTruncated = body.kind === 'json' && body.raw.length > max;
    const opened = this.recorder.open({
      id: req.requestId,
      organizationId: acting.orgId,
      userId: acting.userId,
      externalUserId: acting.externalUserId,
      sessionId,
      personaId: null,
      personaVersion: null,
      endpoint: route.endpoint,
      model,
      stream: fields?.stream === true,
      requestBody: body.kind === 'json' ? (requestTruncated ? JSON.stringify(body.raw.subarray(0, max).toString('utf8')) : body.text) : 'null',
      keyId: key.keyId,
      keySource: key.source,
      createdAt: new Date(),
      method: route.method,
      route: route.template,
      requestContentType: body.kind === 'stream' ? body.contentType || null : null,
      capture,
    });
    let record: RecordHandle;
    try {
      record = opened instanceof Promise ? await opened : opened;
    } catch (err) {
      void this.limits.settle(admission, null);
      if (body.kind === 'stream') body.stream.resume();
      throw err;
    }
    const call = new RelayedCall(this, match, req, res, candidates, body, record, admission, requestTruncated);
    try {
      await call.run();
    } catch (err) {
      if (!record.done) await call.finish('upstream_error', { upstreamStatus: null, error: { message: 'The proxy failed while handling the call', type: 'server_error' } });
      throw err;
    }
  }

  /** @internal what a relayed call uses */
  get services() {
    return {
      owners: this.owners,
      upstream: this.upstream,
      limits: this.limits,
      pricing: this.pricing,
      metrics: this.metrics,
      config: this.config,
      health: this.health,
    };
  }
}

/** One relayed call, from the first upstream attempt to the committed record. */
class RelayedCall {
  private readonly abort = new AbortController();
  private gone = false;
  private ttfb: number | null = null;
  private upstreamRequestId: string | null = null;
  /** the key being tried, and the keys of the pool left before it (with why) */
  private key: ResolvedKey;
  private nextCandidate = 1;
  private readonly keyAttempts: KeyAttempt[] = [];

  constructor(
    private readonly relay: RelayService,
    private readonly match: RouteMatch,
    private readonly req: ProxiedRequest,
    private readonly res: ServerResponse,
    private readonly candidates: readonly ResolvedKey[],
    private readonly body: RelayBody,
    private readonly record: RecordHandle,
    private readonly admission: Admission,
    private readonly requestTruncated: boolean,
  ) {
    this.key = candidates[0];
    res.once('close', () => {
      if (!res.writableFinished) {
        this.gone = true;
        this.abort.abort();
      }
    });
  }

  /** Leaves the current key for the pool's next one, when a repeat is safe (false: none left, or not safe). */
  private failover(outcome: KeyAttempt['outcome'], status: number | null): boolean {
    if (!this.retryable || this.nextCandidate >= this.candidates.length || this.gone) return false;
    this.keyAttempts.push({ key_id: this.key.keyId, outcome, status });
    this.relay.services.metrics.keyEvent(this.key.keyId, 'failover');
    this.key = this.candidates[this.nextCandidate++];
    this.res.setHeader('X-Key-Source', this.key.source);
    return true;
  }

  /** A repeat is safe: a repeatable route or an Idempotency-Key, and a body held whole (a stream is sent once). */
  private get retryable(): boolean {
    if (this.body.kind === 'stream') return false;
    return this.match.route.repeatable || typeof this.req.headers['idempotency-key'] === 'string';
  }

  private upstreamHeaders(): Record<string, string> {
    const h: Record<string, string> = {};
    for (const name of FORWARDED) {
      const v = this.req.headers[name];
      if (typeof v === 'string') h[name] = v;
    }
    h.accept ??= '*/*';
    if (this.body.kind === 'stream' && this.body.length !== null) h['content-length'] = String(this.body.length);
    if (this.body.kind === 'json') h['content-type'] = 'application/json';
    return h;
  }

  async run(): Promise<void> {
    const { upstream, config, metrics } = this.relay.services;
    const { route } = this.match;
    // the path under the key's base URL (which ends in /v1), with the client's query string as it came
    const path = this.req.url!.slice(3);
    for (let attempt = 0; ; attempt++) {
      if (this.gone) return void (await this.finish('client_aborted', { upstreamStatus: null }));
      let up: UpstreamResponse;
      try {
        up = await upstream.send({
          key: this.key,
          method: route.method,
          path,
          body: this.body.kind === 'json' ? this.body.raw : this.body.kind === 'stream' ? (this.body.stream as never) : undefined,
          headers: this.upstreamHeaders(),
          signal: this.abort.signal,
          retry: attempt,
          requestId: this.req.requestId,
        });
      } catch (err) {
        if (this.gone) return void (await this.finish('client_aborted', { upstreamStatus: null }));
        if (err instanceof BodyTooLarge || (this.body.kind === 'stream' && this.body.counter.bytes > config.uploadLimitBytes)) {
          return this.fail(new AppException('body_too_large', `The upload is larger than the configured limit (UPLOAD_LIMIT, ${config.uploadLimitBytes} bytes)`), 'failed', null);
        }
        const exc = upstreamFailure(err);
        if (exc.options.code === 'circuit_open' && this.failover('error', null)) {
          attempt = -1;
          continue;
        }
        if (exc.kind === 'upstream_error' && this.retryable && attempt < config.upstreamMaxRetries) {
          metrics.retry(route.endpoint);
          await this.backoff(attempt, null);
          continue;
        }
        return this.fail(exc, exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', null);
      }
      this.ttfb = performance.now() - this.req.startedAt;
      const status = up.statusCode;
      const rid = up.headers['x-request-id'];
      this.upstreamRequestId = typeof rid === 'string' ? rid.slice(0, 200) : null;
      if (this.upstreamRequestId) this.res.setHeader('X-Upstream-Request-ID', this.upstreamRequestId);

      if (status === 401 || status === 429) {
        // a refused key is invalid, a rate-limited one rests; a call safe to repeat goes on with the next key
        const health = this.relay.services.health;
        const canMove = this.retryable && this.nextCandidate < this.candidates.length;
        if (status === 401 || canMove) {
          const text = await this.readErrorText(up);
          const outcome = health.refused(this.key, status, retryAfterMs(up.headers), `${status} ${status === 401 ? 'unauthorized' : 'rate limited'}`);
          if (this.failover(outcome, status)) {
            attempt = -1;
            continue;
          }
          return this.fail(upstreamErrorAnswer(status, text), 'failed', status, parseJson(text) ?? null);
        }
        void health.rest(this.key, retryAfterMs(up.headers), '429 rate limited');
      }
      if (RETRYABLE_STATUS.has(status) && this.retryable) {
        const wait = retryAfterMs(up.headers);
        if (!(wait !== null && wait > config.retryAfterCapMs) && attempt < config.upstreamMaxRetries) {
          await up.body.dump().catch(() => undefined);
          metrics.retry(route.endpoint);
          await this.backoff(attempt, wait);
          continue;
        }
      }
      if (status >= 300 && status < 400) {
        await up.body.dump().catch(() => undefined);
        return this.fail(new AppException('upstream_error', 'The upstream answered with a redirect, which is not followed'), 'upstream_error', status);
      }
      if (status >= 400) {
        const text = await this.readErrorText(up);
        const exc = upstreamErrorAnswer(status, text);
        const wait = retryAfterMs(up.headers);
        if (wait !== null) exc.options.headers = { ...exc.options.headers, 'Retry-After': String(Math.max(1, Math.ceil(wait / 1000))) };
        return this.fail(exc, status >= 500 || status === 429 ? 'upstream_error' : 'failed', status, parseJson(text) ?? null);
      }
      const type = String(up.headers['content-type'] ?? '');
      const length = Number(up.headers['content-length']);
      if (/^application\/(?:[a-z0-9.+-]+\+)?json\b/i.test(type) && !(length > config.upstreamMaxBodyBytes)) return this.answerJson(up);
      return this.answerStream(up, type);
    }
  }

  private backoff(attempt: number, retryAfter: number | null): Promise<void> {
    return backoff(this.abort.signal, attempt, retryAfter);
  }

  private async readErrorText(up: UpstreamResponse): Promise<string> {
    try {
      const raw = (await readBounded(up.body, 1024 * 1024)).toString('utf8');
      return scrubUpstreamText(raw, this.key.apiKey);
    } catch {
      return '';
    }
  }

  private answerHeaders(up: UpstreamResponse): Record<string, string> {
    const h: Record<string, string> = {};
    for (const name of RETURNED) {
      const v = up.headers[name];
      if (typeof v === 'string') h[name] = v;
    }
    return h;
  }

  /** A JSON answer: read whole (UPSTREAM_MAX_BODY), recorded, then answered (read-your-writes). */
  private async answerJson(up: UpstreamResponse): Promise<void> {
    const { config } = this.relay.services;
    let buf: Buffer;
    try {
      buf = await readBounded(up.body, config.upstreamMaxBodyBytes);
    } catch (err) {
      if (this.gone) return void (await this.finish('client_aborted', { upstreamStatus: up.statusCode }));
      if (err instanceof BodyTooLarge) return this.fail(new AppException('upstream_error', 'The upstream answer is larger than the configured limit (UPSTREAM_MAX_BODY)'), 'upstream_error', up.statusCode);
      const exc = upstreamFailure(err);
      return this.fail(exc, exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', up.statusCode);
    }
    const text = scrubUpstreamText(buf.toString('utf8'), this.key.apiKey);
    const parsed = parseJson(text);
    const stored = parsed === undefined ? text : storableAnswer(parsed);
    const storedText = stored === parsed ? text : JSON.stringify(stored);
    const truncated = Buffer.byteLength(storedText) > config.recordBodyMaxBytes;
    await this.remember(parsed);
    const recorded = await this.finish('completed', {
      upstreamStatus: up.statusCode,
      responseBody: truncated ? JSON.stringify(storedText.slice(0, config.recordBodyMaxBytes)) : parsed === undefined ? JSON.stringify(text) : storedText,
      truncated,
      answer: parsed,
      usage: usageOf(parsed),
      model: typeof (parsed as { model?: unknown })?.model === 'string' ? (parsed as { model: string }).model : null,
      outputText: outputTextOf(parsed),
      answerId: typeof (parsed as { id?: unknown })?.id === 'string' ? (parsed as { id: string }).id : null,
    });
    if (!recorded) throw AppException.databaseUnavailable();
    if (this.gone) return;
    const out = Buffer.from(text);
    this.res.writeHead(up.statusCode, { ...this.answerHeaders(up), 'content-type': up.headers['content-type'] as string, 'content-length': out.length });
    this.res.end(out);
  }

  /** Server-sent events, binary downloads and anything large: streamed through, recorded when over. */
  private async answerStream(up: UpstreamResponse, type: string): Promise<void> {
    const { config } = this.relay.services;
    // nothing reaches the client before the call's pending row is known to be written
    if (this.record.awaitsPendingRow && !(await this.record.pendingRow())) {
      up.body.destroy();
      throw AppException.databaseUnavailable();
    }
    const sse = type.includes('text/event-stream');
    const tap = new AnswerTap(config.recordBodyMaxBytes, sse);
    const headers: Record<string, string> = this.answerHeaders(up);
    if (typeof up.headers['content-length'] === 'string') headers['content-length'] = up.headers['content-length'];
    if (sse) headers['cache-control'] = 'no-cache';
    this.res.writeHead(up.statusCode, headers);
    this.res.flushHeaders();
    let status: ExchangeStatus = 'completed';
    let error: unknown = null;
    try {
      await pipeline(up.body, tap, this.res);
    } catch (err) {
      status = this.gone ? 'client_aborted' : 'upstream_error';
      if (!this.gone) {
        const exc = upstreamFailure(err);
        error = exc.toBody().error;
        this.res.destroy();
      }
    }
    const json = !sse && /json/i.test(type) ? parseJson(tap.headText()) : undefined;
    await this.finish(status, {
      upstreamStatus: up.statusCode,
      responseBody: sse || json !== undefined ? (json !== undefined && !tap.truncated ? JSON.stringify(storableAnswer(json)) : JSON.stringify(tap.headText())) : null,
      truncated: (sse || json !== undefined) && tap.truncated,
      responseContentType: sse ? null : type || null,
      responseBytes: tap.bytes,
      answer: tap.usageEvent ?? json,
      usage: tap.usage,
      model: tap.model,
      outputText: tap.outputText,
      answerId: tap.objectId,
      error,
    });
  }

  /** Objects the call made are remembered with their owner before the answer leaves (then no one else can reach them). */
  private async remember(answer: unknown): Promise<void> {
    const { route } = this.match;
    if (route.method !== 'POST' || !answer) return;
    const ids = madeIds(answer);
    if (!ids.length) return;
    const acting = this.req.acting!;
    const owner = { orgId: acting.orgId, userId: this.key.source === 'user' ? acting.userId : null, keyId: this.key.keyId };
    await this.relay.services.owners.remember(ids, owner, route.template, this.req.requestId);
  }

  private async fail(exc: AppException, status: ExchangeStatus, upstreamStatus: number | null, responseBody: unknown = null): Promise<never> {
    if (this.body.kind === 'stream') this.body.stream.resume();
    await this.finish(status, { upstreamStatus, responseBody: responseBody === null ? null : JSON.stringify(responseBody), error: exc.toBody().error });
    throw this.record.unrecorded ? AppException.databaseUnavailable() : exc;
  }

  async finish(
    status: ExchangeStatus,
    o: {
      upstreamStatus: number | null;
      responseBody?: string | null;
      truncated?: boolean;
      responseContentType?: string | null;
      responseBytes?: number | null;
      usage?: RelayUsage | null;
      /** the parsed answer (or a stream's event that reported usage), priced by what it says it used */
      answer?: unknown;
      model?: string | null;
      outputText?: string | null;
      answerId?: string | null;
      error?: unknown;
    },
  ): Promise<boolean> {
    if (this.record.done) return true;
    const { pricing, limits, metrics, owners } = this.relay.services;
    const { route, params } = this.match;
    const form = this.body.kind === 'stream' && this.body.form ? await this.body.form.summary() : null;
    const model = o.model ?? this.record.row.model ?? form?.model ?? null;
    // what the answer used, priced by route (embeddings, images, audio, tiers, tool calls, batch discount)
    const priced = o.answer !== undefined && o.answer !== null ? usageOfAnswer(route.template, jsonFields(this.body) ?? (form ? { ...form.body, model } : { model }), o.answer) : null;
    const usage: RelayUsage | null = priced ?? o.usage ?? null;
    // a read reports what an earlier call already paid for, except a batch: its usage is known only to reads
    // once it completed, and is spend once (the first read that sees it, of a batch made through the proxy)
    const billed =
      usage !== null &&
      (route.method !== 'GET' || (BILLED_ON_READ.has(route.template) && priced !== null && !!params.batch_id && (await owners.billOnce(params.batch_id).catch(() => false))));
    const cost = !billed ? null : priced ? pricing.costOfAnswer(priced) : pricing.cost(model, usage);
    const firstParam = Object.entries(params).find(([name]) => !NOT_OBJECTS.has(name))?.[1] ?? null;
    const objectId = firstParam ?? (route.method === 'POST' ? (o.answerId ?? null) : null);
    if (route.method === 'DELETE' && status === 'completed' && firstParam && Object.keys(params).length === 1) {
      await owners.deleted(this.req.acting!.orgId, firstParam).catch(() => undefined);
    }
    const outcome: ExchangeOutcome = {
      id: this.req.requestId,
      status,
      upstreamStatus: o.upstreamStatus,
      responseId: null,
      responseBody: o.responseBody ?? null,
      outputText: o.outputText ?? null,
      error: o.error ?? null,
      usage: usage ? { ...usage } : null,
      cost,
      latencyMs: performance.now() - this.req.startedAt,
      timeToFirstByteMs: this.ttfb,
      upstreamRequestId: this.upstreamRequestId,
      objectId: objectId?.slice(0, 256) ?? null,
      requestBytes: this.body.kind === 'stream' ? this.body.counter.bytes : this.body.kind === 'json' ? this.body.raw.length : null,
      responseContentType: o.responseContentType ?? null,
      responseBytes: o.responseBytes ?? null,
      bodyTruncated: o.truncated || this.requestTruncated ? true : null,
      late: form ? { model: form.model, requestBody: JSON.stringify(form.body) } : model !== this.record.row.model ? { model } : undefined,
      keyAttempts: this.keyAttempts.length ? this.keyAttempts : null,
    };
    // the key that served the call, when it is not the one the pending row names
    if (this.keyAttempts.length) outcome.late = { ...outcome.late, keyId: this.key.keyId, keySource: this.key.source };
    const settled = limits.settle(this.admission, billed && usage ? { tokens: usage.total ?? (usage.input ?? 0) + (usage.output ?? 0), cost } : null);
    const committed = await this.record.finish(outcome);
    if (!committed && this.record.unrecorded) return false;
    await settled;
    metrics.observeExchange({
      route: route.endpoint,
      status,
      model,
      totalMs: performance.now() - this.req.startedAt,
      upstreamMs: null,
      ttfbMs: this.ttfb,
      inputTokens: usage?.input,
      outputTokens: usage?.output,
      cost,
    });
    return committed;
  }
}

