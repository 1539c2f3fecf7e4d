import { markPhase, PHASE } from '../metrics/call-phases';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { AppException } from '../common/app-exception';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import type { ProxiedRequest } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import type { ExchangeOutcome, ExchangeStatus, KeyAttempt } from '../exchanges/recorder/exchange-record';
import type { RecordHandle } from '../exchanges/recorder/record-handle';
import type { KeyHealth } from '../keys/key-health.service';
import type { ResolvedKey } from '../keys/key-resolver';
import type { Admission, LimitsService } from '../limits/limits.service';
import type { MetricsService } from '../metrics/metrics.service';
import { Captured, captureJson, ProxyEndpoint, TokenUsage } from './exchange-capture';
import type { ExchangesService } from '../exchanges/exchanges.service';
import type { CostExtras, PricingService } from '../pricing/pricing.service';
import { toolCallsOf } from '../pricing/answer-usage';
import type { ProxyBodyFields } from './proxy-body';
import { RelayedCall, StreamRelay } from './stream-relay';
import type { UpstreamClient, UpstreamResponse } from '../upstream/upstream-client';
import { KeyScrubber, scrubUpstreamText, upstreamErrorAnswer, upstreamFailure } from '../upstream/upstream-errors';
import { estimateUsage } from './usage-estimate';
import { backoff, RETRYABLE_STATUS, retryAfterMs } from '../upstream/retry';

const PATHS: Record<ProxyEndpoint, string> = { responses: '/responses', 'chat.completions': '/chat/completions' };

/** What a proxied call uses, given to it explicitly. */
export interface CallServices {
  readonly upstream: UpstreamClient;
  readonly pricing: PricingService;
  /** remembers a response id's session for a later previous_response_id */
  readonly exchanges: Pick<ExchangesService, 'rememberResponse'>;
  readonly limits: LimitsService;
  readonly metrics: MetricsService;
  readonly config: AppConfig;
  /** rests a rate-limited key, invalidates a refused one */
  readonly health: Pick<KeyHealth, 'rest' | 'refused'>;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One proxied call, from the first upstream attempt to the committed record. */
export class ProxiedCall implements RelayedCall {
  private readonly abort = new AbortController();
  private gone = false;
  private ttfb: number | null = null;
  private upstreamStartedAt: number | null = null;
  /** OpenAI's own request id for the call */
  private upstreamRequestId: string | null = null;
  /** takes the call's key out of whatever the upstream sends */
  scrubber: KeyScrubber;
  /** the key being tried: the pool's first, then the next one each time a key is left before the first byte */
  private key: ResolvedKey;
  private nextCandidate = 1;
  /** the keys left, and why */
  private readonly keyAttempts: KeyAttempt[] = [];

  constructor(
    private readonly services: CallServices,
    readonly endpoint: ProxyEndpoint,
    private readonly fields: ProxyBodyFields,
    private readonly req: ProxiedRequest,
    readonly res: ServerResponse,
    /** the pool's keys in the order they are tried (one alone: an object's own key) */
    private readonly candidates: readonly ResolvedKey[],
    private readonly sessionId: string,
    private readonly payload: Buffer | string,
    /** the call's record, open since before the upstream is called */
    readonly record: RecordHandle,
    private readonly admission: Admission,
    /** the proxy asked a chat stream for usage the client did not ask for */
    readonly usageUnrequested = false,
  ) {
    this.key = candidates[0];
    this.scrubber = new KeyScrubber(this.key.apiKey);
    res.once('close', () => {
      if (!res.writableFinished) {
        this.gone = true;
        this.abort.abort();
      }
    });
    if (res.destroyed) {
      this.gone = true;
      this.abort.abort();
    }
  }

  /** the client closed its connection before the answer was over */
  get clientGone(): boolean {
    return this.gone;
  }

  async run(): Promise<void> {
    const { config, upstream } = this.services;
    const accept = this.fields.stream ? 'text/event-stream' : 'application/json';
    for (let attempt = 0; ; attempt++) {
      if (this.clientGone) return void (await this.finish('client_aborted', { upstreamStatus: null }));
      let up: UpstreamResponse;
      try {
        this.upstreamStartedAt ??= performance.now();
        markPhase(this.req.marks, PHASE.prepare);
        up = await upstream.send({
          key: this.key,
          method: 'POST',
          path: PATHS[this.endpoint],
          body: this.payload,
          headers: { accept },
          signal: this.abort.signal,
          retry: attempt,
          requestId: this.req.requestId,
        });
      } catch (err) {
        if (this.clientGone) return void (await this.finish('client_aborted', { upstreamStatus: null }));
        const exc = upstreamFailure(err);
        // a key whose circuit is open is passed over for the next one of the pool
        if (exc.options.code === 'circuit_open' && this.failover('error', null)) {
          attempt = -1;
          continue;
        }
        if (exc.kind !== 'service_unavailable') this.services.metrics.keyEvent(this.key.keyId, 'error');
        if (exc.kind === 'upstream_error' && attempt < config.upstreamMaxRetries) {
          this.services.metrics.retry(this.endpoint);
          await this.backoff(attempt, null);
          continue;
        }
        return this.fail(exc, exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', null);
      }
      this.ttfb = performance.now() - this.req.startedAt;
      markPhase(this.req.marks, PHASE.upstream);
      const status = up.statusCode;
      const rid = up.headers['x-request-id'];
      if (typeof rid === 'string') {
        this.upstreamRequestId = rid.slice(0, 200);
        this.res.setHeader('X-Upstream-Request-ID', this.upstreamRequestId);
      }
      // No await from here until the body's listeners are attached: an undici body destroyed (a reset) before it
      // is read drops what it had buffered and never emits again. The pending row is awaited by finish() and,
      // for a stream, before its first byte is relayed.

      if ((status === 429 && this.nextCandidate < this.candidates.length) || status === 401) {
        // before the first byte: a rate-limited key rests, a refused one is invalid; the call goes on with the next key
        const { text, body } = await this.readErrorBody(up);
        const outcome = this.services.health.refused(this.key, status, retryAfterMs(up.headers), errorReason(status, body));
        if (this.failover(outcome, status)) {
          attempt = -1;
          continue;
        }
        return this.fail(upstreamErrorAnswer(status, text), 'failed', status, body);
      }
      if (RETRYABLE_STATUS.has(status)) {
        const wait = retryAfterMs(up.headers);
        if (status === 429) void this.services.health.rest(this.key, wait, errorReason(429, null));
        else this.services.metrics.keyEvent(this.key.keyId, 'error');
        const overCap = wait !== null && wait > config.retryAfterCapMs;
        if (!overCap && attempt < config.upstreamMaxRetries) {
          await up.body.dump().catch(() => undefined);
          this.services.metrics.retry(this.endpoint);
          await this.backoff(attempt, wait);
          continue;
        }
        const { text, body } = await this.readErrorBody(up);
        const exc = upstreamErrorAnswer(status, text);
        if (wait !== null) exc.options.headers = { ...exc.options.headers, 'Retry-After': String(Math.max(1, Math.ceil(wait / 1000))) };
        return this.fail(exc, 'upstream_error', status, body);
      }
      if (status >= 300 && status < 400) {
        await up.body.dump().catch(() => undefined);
        return this.fail(new AppException('upstream_error', 'The upstream answered with a redirect, which is not followed'), 'upstream_error', status);
      }
      if (status < 200 || status >= 400) {
        const { text, body } = await this.readErrorBody(up);
        return this.fail(upstreamErrorAnswer(status, text), status >= 500 ? 'upstream_error' : 'failed', status, body);
      }
      const contentType = String(up.headers['content-type'] ?? '');
      if (contentType.includes('text/event-stream')) return this.relayStream(up);
      return this.relayJson(up);
    }
  }

  /** Leaves the current key for the pool's next one (false: none left). */
  private failover(outcome: KeyAttempt['outcome'], status: number | null): boolean {
    if (this.nextCandidate >= this.candidates.length || this.gone) return false;
    this.keyAttempts.push({ key_id: this.key.keyId, outcome, status });
    this.services.metrics.keyEvent(this.key.keyId, 'failover');
    this.key = this.candidates[this.nextCandidate++];
    this.scrubber = new KeyScrubber(this.key.apiKey);
    this.res.setHeader('X-Key-Source', this.key.source);
    return true;
  }

  private backoff(attempt: number, retryAfter: number | null): Promise<void> {
    return backoff(this.abort.signal, attempt, retryAfter);
  }

  private async readErrorBody(up: UpstreamResponse): Promise<{ text: string; body: unknown }> {
    try {
      const raw = (await readBounded(up.body, Math.min(this.services.config.upstreamMaxBodyBytes, 1024 * 1024))).toString('utf8');
      // the error body is stored and answered with: an upstream quoting the key must not leak it
      const text = scrubUpstreamText(raw, this.key.apiKey);
      return { text, body: parseJson(text) ?? null };
    } catch {
      return { text: '', body: null };
    }
  }

  /** Records the failure, then throws it for the exception filter to answer (nothing has been sent yet). */
  private async fail(exc: AppException, status: ExchangeStatus, upstreamStatus: number | null, responseBody: unknown = null): Promise<never> {
    await this.finish(status, { upstreamStatus, responseBody, error: exc.toBody().error });
    // the pending row could not be written: the call is not recorded, and says so
    throw this.record.unrecorded ? AppException.databaseUnavailable() : exc;
  }

  /** Completes the record; false when it could not be written (the answer must then not be delivered as a success). */
  async finish(
    status: ExchangeStatus,
    o: { upstreamStatus: number | null; captured?: Captured | null; responseBody?: unknown; error?: unknown },
  ): Promise<boolean> {
    if (this.record.done) return true;
    const { pricing, exchanges, limits, metrics } = this.services;
    const upstreamEndedAt = performance.now();
    const captured = o.captured ?? null;
    // a background response goes on upstream when its streaming client leaves: it stays queued, for the follower
    if (status === 'client_aborted' && this.endpoint === 'responses' && this.fields.body.background === true && captured?.responseId) {
      status = 'queued';
    }
    let usage = captured?.usage ?? null;
    let responseBody: unknown = o.responseBody !== undefined ? o.responseBody : (captured?.responseBody ?? null);
    if (!usage && this.mayHaveBeenBilled(status, o.upstreamStatus)) {
      // nothing a client does (a cut or abandoned stream, no usage asked for) makes a call free: what was sent and
      // what was streamed is counted, and the record says it is an estimate
      usage = estimateUsage(this.endpoint, this.sentBody(), captured?.streamedText ?? captured?.outputText ?? '');
      responseBody = withEstimatedUsage(this.endpoint, captured?.responseBody ?? null, usage);
    }
    const cost = usage ? pricing.cost(captured?.model ?? this.fields.model, usage, costExtras(this.endpoint, captured?.responseBody)) : null;
    const responseId = captured?.responseId ?? null;
    if (responseId) exchanges.rememberResponse(this.req.acting!.orgId, responseId, this.sessionId);
    const upstreamError = o.error ?? captured?.upstreamError ?? null;
    const outcome: ExchangeOutcome = {
      id: this.req.requestId,
      status,
      upstreamStatus: o.upstreamStatus,
      responseId,
      responseBody,
      outputText: captured?.outputText ?? null,
      // an upstream error quoting the key (or a part of it) is stored without it
      error: upstreamError === null ? null : parseJson(scrubUpstreamText(JSON.stringify(upstreamError), this.key.apiKey)) ?? null,
      usage,
      cost,
      latencyMs: performance.now() - this.req.startedAt,
      timeToFirstByteMs: this.ttfb,
      upstreamRequestId: this.upstreamRequestId,
      keyAttempts: this.keyAttempts.length ? this.keyAttempts : null,
      // the key that served the call, when it is not the one the pending row names
      late: this.keyAttempts.length ? { keyId: this.key.keyId, keySource: this.key.source } : undefined,
    };
    // settled whether or not the record can be written (upstream was paid either way); never throws
    const settled = limits.settle(this.admission, { tokens: usage ? (usage.total ?? (usage.input ?? 0) + (usage.output ?? 0)) : null, cost });
    // a stream's relay phase ends at its final event (or wherever the call ended)
    markPhase(this.req.marks, PHASE.relay);
    // the handle decides how the outcome is written (before or after the answer, or kept for later)
    const committed = await this.record.finish(outcome);
    // the pending row could not be written: nothing is recorded, and the caller answers 503
    if (!committed && this.record.unrecorded) return false;
    // counted before the answer leaves, so the client's next call already sees these tokens and this cost
    await settled;
    markPhase(this.req.marks, PHASE.record);
    if (status === 'completed') metrics.keyEvent(this.key.keyId, 'served');
    metrics.observeExchange({
      route: this.endpoint,
      status,
      model: captured?.model ?? this.fields.model,
      totalMs: performance.now() - this.req.startedAt,
      upstreamMs: this.upstreamStartedAt === null ? null : upstreamEndedAt - this.upstreamStartedAt,
      ttfbMs: this.ttfb,
      inputTokens: usage?.input,
      outputTokens: usage?.output,
      cost,
    });
    return committed;
  }

  /**
   * Whether the upstream may have billed a call it reported no usage for: it answered 2xx (a stream cut short, an
   * answer without usage, a background response still running) and did not itself report the response failed, or
   * the client left after the request was sent.
   */
  private mayHaveBeenBilled(status: ExchangeStatus, upstreamStatus: number | null): boolean {
    if (upstreamStatus !== null) return upstreamStatus >= 200 && upstreamStatus < 300 && status !== 'failed';
    return status === 'client_aborted' && this.upstreamStartedAt !== null;
  }

  /** the body as sent upstream (with a persona's instructions), read again only for an estimate */
  private sentBody(): Record<string, unknown> {
    if (typeof this.payload !== 'string') return this.fields.body;
    const parsed = parseJson(this.payload);
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : this.fields.body;
  }

  private async relayJson(up: UpstreamResponse): Promise<void> {
    const max = this.services.config.upstreamMaxBodyBytes;
    const status = up.statusCode;
    const tooLarge = () => new AppException('upstream_error', 'The upstream answer is larger than the configured limit (UPSTREAM_MAX_BODY)');
    const length = Number(up.headers['content-length']);
    if (length > max) {
      up.body.destroy();
      return this.fail(tooLarge(), 'upstream_error', status);
    }
    let buf: Buffer;
    try {
      buf = await readBounded(up.body, max);
    } catch (err) {
      if (this.clientGone) return void (await this.finish('client_aborted', { upstreamStatus: status }));
      if (err instanceof BodyTooLarge) return this.fail(tooLarge(), 'upstream_error', status);
      const exc = upstreamFailure(err);
      return this.fail(exc, exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', status);
    }
    // a failed response may quote the key: neither the client nor the record gets it
    buf = this.scrubber.bytes(buf);
    const text = buf.toString('utf8');
    const parsed = parseJson(text);
    if (parsed === undefined) {
      return this.fail(new AppException('upstream_error', 'The upstream sent a body that is not valid JSON'), 'upstream_error', status);
    }
    const captured = captureJson(this.endpoint, parsed);
    markPhase(this.req.marks, PHASE.relay);
    // a background response still queued or running is not over: it is not recorded as completed
    const exStatus: ExchangeStatus = captured.upstreamError ? 'failed' : captured.unfinished ? 'queued' : 'completed';
    // read-your-writes: the record is committed before the answer leaves
    // stored as the text received; a capture that rewrites it walks the value already parsed
    const recorded = await this.finish(exStatus, { upstreamStatus: status, captured, responseBody: this.record.row.capture ? parsed : text });
    if (!recorded) throw AppException.databaseUnavailable();
    if (this.clientGone) return;
    this.res.writeHead(status, { 'content-type': 'application/json', 'content-length': buf.length });
    this.res.end(buf);
  }

  private relayStream(up: UpstreamResponse): Promise<void> {
    const { config } = this.services;
    return new StreamRelay(this, up, { maxBodyBytes: config.upstreamMaxBodyBytes, streamIdleTimeoutMs: config.streamIdleTimeoutMs }).run();
  }
}

/** Why a key was left: the upstream's status and error code or message (the key scrubbed out already). */
function errorReason(status: number, body: unknown): string {
  const error = body && typeof body === 'object' ? (body as { error?: { code?: unknown; message?: unknown } }).error : undefined;
  const detail = typeof error?.code === 'string' ? error.code : typeof error?.message === 'string' ? error.message : null;
  return detail ? `${status} ${detail}` : `${status} ${status === 429 ? 'rate limited' : status === 401 ? 'unauthorized' : 'error'}`;
}

/** What the answer says beyond tokens that changes its price: the service tier it ran on, tool calls billed per call. */
function costExtras(endpoint: ProxyEndpoint, body: unknown): CostExtras | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const tier = (body as { service_tier?: unknown }).service_tier;
  const serviceTier = typeof tier === 'string' ? tier : null;
  if (endpoint !== 'responses') return serviceTier ? { serviceTier } : undefined;
  return { serviceTier, ...toolCallsOf(body) };
}

/** The answer's body with the estimated usage (flagged `estimated`), in the endpoint's own usage shape. */
function withEstimatedUsage(endpoint: ProxyEndpoint, body: unknown, u: TokenUsage): unknown {
  const usage =
    endpoint === 'responses'
      ? { input_tokens: u.input, output_tokens: u.output, total_tokens: u.total, estimated: true }
      : { prompt_tokens: u.input, completion_tokens: u.output, total_tokens: u.total, estimated: true };
  return body && typeof body === 'object' && !Array.isArray(body) ? { ...body, usage } : { usage };
}
