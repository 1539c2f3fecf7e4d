import { Injectable } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import type { ServerResponse } from 'node:http';
import { AppException } from '../common/app-exception';
import { newSessionId } from '../common/ids';
import { BodyTooLarge, readBounded } from '../common/read-bounded';
import { JsonLogger } from '../common/logger';
import type { ProxiedRequest } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import { PersonasService } from '../personas/personas.service';
import { Captured, captureJson, ProxyEndpoint, StreamCapture, TokenUsage } from './exchange-capture';
import { ExchangeRecorder, ExchangeStatus } from './exchange-recorder.service';
import { ExchangesService } from '../exchanges/exchanges.service';
import { PricingService } from '../pricing/pricing.service';
import { lacksStreamUsage, ProxyBodyFields, readProxyBody, readSessionHeader, withoutPersona, withPersona } from './proxy-body';
import { SseFramer, SseParser } from './sse-parser';
import { UpstreamClient, UpstreamResponse } from '../upstream/upstream-client';
import { Admission, LimitsService } from '../limits/limits.service';
import { MetricsService } from '../metrics/metrics.service';
import { KeyScrubber, scrubUpstreamText, upstreamErrorAnswer, upstreamFailure } from '../upstream/upstream-errors';
import { estimateUsage } from './usage-estimate';

const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);
const BACKOFF_BASE_MS = 100;
const PATHS: Record<ProxyEndpoint, string> = { responses: '/responses', 'chat.completions': '/chat/completions' };

const UNDELIVERED = {
  message: 'The answer was not delivered: the database was unavailable to record it',
  type: 'service_unavailable',
  code: 'database_unavailable',
  param: null,
};

/** Retry-After (seconds or an HTTP date) or OpenAI's retry-after-ms, in milliseconds; null if absent. */
export function retryAfterMs(headers: IncomingHttpHeaders): number | null {
  const ms = headers['retry-after-ms'];
  if (typeof ms === 'string' && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms));
  const ra = headers['retry-after'];
  if (typeof ra !== 'string' || !ra.trim()) return null;
  if (/^\d+(\.\d+)?$/.test(ra.trim())) return Math.ceil(Number(ra) * 1000);
  const at = Date.parse(ra);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Forwards /v1/responses and /v1/chat/completions: sessions, personas, retries, streaming relay, exchange records. */
@Injectable()
export class ProxyService {
  constructor(
    readonly keys: KeyResolver,
    readonly personas: PersonasService,
    readonly upstream: UpstreamClient,
    readonly recorder: ExchangeRecorder,
    readonly exchanges: ExchangesService,
    readonly pricing: PricingService,
    readonly config: AppConfig,
    readonly logger: JsonLogger,
    readonly limits: LimitsService,
    readonly metrics: MetricsService,
  ) {
    this.afterAnswer = config.recordWrite === 'after_answer';
  }

  /** RECORD_WRITE=after_answer: answers do not wait for their records */
  readonly afterAnswer: boolean;

  async forward(endpoint: ProxyEndpoint, req: ProxiedRequest, res: ServerResponse): Promise<void> {
    const acting = req.acting!;
    const fields = readProxyBody(endpoint, req.body, req.rawBody);
    const sessionHeader = readSessionHeader(req.headers['x-session-id']);
    const persona = fields.personaId ? await this.personas.resolveForRequest(acting.orgId, fields.personaId) : null;
    const key = await this.keys.resolve(acting);
    const sessionId =
      sessionHeader ??
      (fields.previousResponseId ? await this.exchanges.sessionOfResponse(acting.orgId, fields.previousResponseId) : null) ??
      newSessionId();
    res.setHeader('X-Session-ID', sessionId);
    res.setHeader('X-Key-Source', key.source);
    // a chat stream is asked for its usage even when the client did not (budgets and token limits count it)
    const askUsage = lacksStreamUsage(endpoint, fields);
    const payload = persona
      ? withPersona(endpoint, fields.body, persona.content, askUsage)
      : withoutPersona(fields.body, req.rawBody!, askUsage);

    // rate limits and budgets, before anything is recorded or sent upstream (429 with Retry-After)
    const admission = await this.limits.admit(acting, { model: fields.model, body: fields.body, instructions: persona?.content });
    if (admission.headers) for (const [name, value] of Object.entries(admission.headers)) res.setHeader(name, value);

    // The pending row (a process killed mid-call leaves a trace) is written while the upstream is called (for a
    // non-streaming call, once it has run RECORD_PENDING_AFTER_MS); the answer waits for it. With the database
    // known to be unreachable, the row is written first: 503 before the upstream is called.
    const pending = {
      id: req.requestId,
      organizationId: acting.orgId,
      userId: acting.userId,
      externalUserId: acting.externalUserId,
      sessionId,
      personaId: persona?.id ?? null,
      personaVersion: persona?.version ?? null,
      endpoint,
      model: fields.model,
      stream: fields.stream,
      requestBody: typeof payload === 'string' ? payload : payload === req.rawBody && req.rawText !== undefined ? req.rawText : payload.toString('utf8'),
      keyId: key.keyId,
      keySource: key.source,
      createdAt: new Date(),
    };
    let written: Promise<void>;
    if (this.recorder.healthy) {
      // a non-streaming call that ends within RECORD_PENDING_AFTER_MS is written once, whole; a stream needs its
      // pending row before its first byte, so it is written at once
      written = this.recorder.begin(pending, fields.stream ? 0 : this.config.recordPendingAfterMs);
      written.catch(() => undefined);
    } else {
      try {
        await this.recorder.begin(pending);
      } catch (err) {
        this.recorder.forget(req.requestId);
        void this.limits.settle(admission, null);
        throw err;
      }
      written = Promise.resolve();
    }
    const call = new ProxiedCall(this, endpoint, fields, req, res, key, sessionId, payload, written, admission, askUsage);
    try {
      await call.run();
    } catch (err) {
      if (!call.recorded) {
        await call.finish('upstream_error', { upstreamStatus: null, error: { message: 'The proxy failed while handling the call', type: 'server_error' } });
      }
      throw err;
    }
  }
}

/** One proxied call, from the first upstream attempt to the committed record. */
class ProxiedCall {
  private readonly abort = new AbortController();
  private clientGone = false;
  private ttfb: number | null = null;
  private upstreamStartedAt: number | null = null;
  recorded = false;
  /** the pending row was written (undefined: not known yet) */
  private pendingWritten?: boolean;
  /** takes the call's key out of whatever the upstream sends */
  private readonly scrubber: KeyScrubber;

  constructor(
    private readonly svc: ProxyService,
    private readonly endpoint: ProxyEndpoint,
    private readonly fields: ProxyBodyFields,
    private readonly req: ProxiedRequest,
    private readonly res: ServerResponse,
    private readonly key: ResolvedKey,
    private readonly sessionId: string,
    private readonly payload: Buffer | string,
    /** the pending row's write */
    private readonly written: Promise<void>,
    private readonly admission: Admission,
    /** the proxy asked a chat stream for usage the client did not ask for */
    private readonly usageUnrequested = false,
  ) {
    this.scrubber = new KeyScrubber(key.apiKey);
    res.once('close', () => {
      if (!res.writableFinished) {
        this.clientGone = true;
        this.abort.abort();
      }
    });
    if (res.destroyed) {
      this.clientGone = true;
      this.abort.abort();
    }
  }

  async run(): Promise<void> {
    const { config, upstream } = this.svc;
    const accept = this.fields.stream ? 'text/event-stream' : 'application/json';
    for (let attempt = 0; ; attempt++) {
      if (this.clientGone) return void (await this.finish('client_aborted', { upstreamStatus: null }));
      let up: UpstreamResponse;
      try {
        this.upstreamStartedAt ??= performance.now();
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
        if (exc.kind === 'upstream_error' && attempt < config.upstreamMaxRetries) {
          this.svc.metrics.retry(this.endpoint);
          await this.backoff(attempt, null);
          continue;
        }
        return this.fail(exc, exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', null);
      }
      this.ttfb = performance.now() - this.req.startedAt;
      const status = up.statusCode;
      // No await from here until the body's listeners are attached: an undici body destroyed (a reset) before it
      // is read drops what it had buffered and never emits again. The pending row is awaited by finish() and,
      // for a stream, before its first byte is relayed.

      if (RETRYABLE_STATUS.has(status)) {
        const wait = retryAfterMs(up.headers);
        const overCap = wait !== null && wait > config.retryAfterCapMs;
        if (!overCap && attempt < config.upstreamMaxRetries) {
          await up.body.dump().catch(() => undefined);
          this.svc.metrics.retry(this.endpoint);
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

  /** Whether the pending row is in the database (awaits its write; a failed write means the call is not recorded). */
  private async pendingRow(): Promise<boolean> {
    if (this.pendingWritten === undefined) {
      this.pendingWritten = await this.written.then(
        () => true,
        () => false,
      );
      if (!this.pendingWritten) {
        // the answer is withheld, but the upstream was called: the recorder writes the row once it can
        this.recorded = true;
        this.svc.recorder.withheld(this.req.requestId);
      }
    }
    return this.pendingWritten;
  }

  /** Full-jitter exponential backoff, or the upstream's Retry-After when it gave one (within the cap). */
  private backoff(attempt: number, retryAfter: number | null): Promise<void> {
    const ms = retryAfter ?? Math.random() * BACKOFF_BASE_MS * 2 ** attempt;
    const signal = this.abort.signal;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private async readErrorBody(up: UpstreamResponse): Promise<{ text: string; body: unknown }> {
    try {
      const raw = (await readBounded(up.body, Math.min(this.svc.config.upstreamMaxBodyBytes, 1024 * 1024))).toString('utf8');
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
    throw this.pendingWritten === false ? AppException.databaseUnavailable() : exc;
  }

  /** Completes the record; false when it could not be written (the answer must then not be delivered as a success). */
  async finish(
    status: ExchangeStatus,
    o: { upstreamStatus: number | null; captured?: Captured | null; responseBody?: unknown; error?: unknown },
  ): Promise<boolean> {
    if (this.recorded) return true;
    // past RECORD_AFTER_ANSWER_MAX completions waiting for the database, the answer waits for its record
    const afterAnswer = this.svc.afterAnswer && this.svc.recorder.takesAfterAnswer;
    this.recorded = true;
    const { pricing, exchanges, recorder, logger, limits, metrics } = this.svc;
    const upstreamEndedAt = performance.now();
    const captured = o.captured ?? null;
    let usage = captured?.usage ?? null;
    let responseBody: unknown = o.responseBody !== undefined ? o.responseBody : (captured?.responseBody ?? null);
    if (!usage && this.mayHaveBeenBilled(status, o.upstreamStatus)) {
      // nothing a client does (a cut or abandoned stream, no usage asked for) makes a call free: what was sent and
      // what was streamed is counted, and the record says it is an estimate
      usage = estimateUsage(this.endpoint, this.sentBody(), captured?.streamedText ?? captured?.outputText ?? '');
      responseBody = withEstimatedUsage(this.endpoint, captured?.responseBody ?? null, usage);
    }
    const cost = usage ? pricing.cost(captured?.model ?? this.fields.model, usage) : null;
    const responseId = captured?.responseId ?? null;
    if (responseId) exchanges.rememberResponse(this.req.acting!.orgId, responseId, this.sessionId);
    const upstreamError = o.error ?? captured?.upstreamError ?? null;
    const outcome = {
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
    };
    // settled whether or not the record can be written (upstream was paid either way); never throws
    const settled = limits.settle(this.admission, { tokens: usage ? (usage.total ?? (usage.input ?? 0) + (usage.output ?? 0)) : null, cost });
    let committed = true;
    if (afterAnswer) {
      recorder.completeAfterAnswer(outcome);
    } else {
      // a pending row still waiting to be written takes the outcome with it (one INSERT); otherwise the
      // completion follows the pending row's write
      const completion = recorder.complete(outcome);
      completion.catch(() => undefined);
      // the pending row could not be written: nothing is recorded, and the caller answers 503
      if (!(await this.pendingRow())) return false;
      try {
        await completion;
      } catch (err) {
        // no unrecorded success: the caller withholds the answer (503, or an SSE error event), and the record is
        // completed as interrupted once the database is back
        committed = false;
        logger.write('error', 'exchange record could not be completed; answer withheld', { request_id: this.req.requestId, err });
        recorder.completeLater({ ...outcome, status: 'interrupted', error: UNDELIVERED });
      }
    }
    // counted before the answer leaves, so the client's next call already sees these tokens and this cost
    await settled;
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
    const max = this.svc.config.upstreamMaxBodyBytes;
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
    // a background response still queued or running is not over: it is not recorded as completed
    const exStatus: ExchangeStatus = captured.upstreamError ? 'failed' : captured.unfinished ? 'queued' : 'completed';
    // read-your-writes: the record is committed before the answer leaves
    const recorded = await this.finish(exStatus, { upstreamStatus: status, captured, responseBody: text });
    if (!recorded) throw AppException.databaseUnavailable();
    if (this.clientGone) return;
    this.res.writeHead(status, { 'content-type': 'application/json', 'content-length': buf.length });
    this.res.end(buf);
  }

  /**
   * Relays the upstream's events to the client as they complete, byte for byte, parsing SSE on the side. Headers go
   * out once the first event has been checked (a malformed stream is still a clean 502) and the pending row is
   * written. The chunk that completes the final event is held until the record is committed. The upstream read
   * pauses while the client's socket is full. An event is relayed once whole: the call's key is taken out of it
   * first, and the usage chunk the proxy asked for on its own account is left out.
   */
  private relayStream(up: UpstreamResponse): Promise<void> {
    const { res } = this;
    const body = up.body;
    const status = up.statusCode;
    const max = this.svc.config.upstreamMaxBodyBytes;
    const capture = StreamCapture.for(this.endpoint, this.usageUnrequested);
    const parser = new SseParser((event, data) => capture.onEvent(event, data));
    const framer = new SseFramer();
    const scrubber = this.scrubber;
    const hiding = this.usageUnrequested;
    /** whole events, parsed and ready for the client */
    const take = (region: Buffer): Buffer => {
      if (!hiding) {
        const out = scrubber.bytes(region);
        parser.push(out);
        return out;
      }
      // event by event, so the one the client did not ask for can be left out
      const kept: Buffer[] = [];
      let from = 0;
      for (const end of framer.ends) {
        const event = scrubber.bytes(region.subarray(from, end));
        from = end;
        capture.hideLast = false;
        parser.push(event);
        if (!capture.hideLast) kept.push(event);
      }
      return kept.length === 1 ? kept[0] : Buffer.concat(kept);
    };

    return new Promise<void>((resolve, reject) => {
      let started = false;
      let pre: Buffer[] = [];
      let bytes = 0;
      let settled = false;
      // while holding (the pending row or the final event is being written), what the upstream sends is kept in
      // order and handled after; the body keeps flowing, since a destroyed body drops what it buffered
      let holding = false;
      let held: Buffer[] = [];
      let heldBytes = 0;
      let ended = false;
      let heldError: unknown;

      const settle = (err?: unknown) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      };
      const resume = () => body.resume();
      // the upstream read pauses while the client's socket is full; a client that takes nothing for
      // STREAM_IDLE_TIMEOUT_MS is cut off, which aborts the upstream call too (recorded as client_aborted)
      const waitForDrain = () => {
        body.pause();
        const stalled = setTimeout(() => res.destroy(), this.svc.config.streamIdleTimeoutMs);
        const done = () => {
          clearTimeout(stalled);
          res.off('drain', onDrain);
          res.off('close', done);
        };
        const onDrain = () => {
          done();
          resume();
        };
        res.once('drain', onDrain);
        res.once('close', done);
      };
      // only whole events have been relayed, so the error event is read as one
      const errorEvent = (exc: AppException) => `event: error\ndata: ${JSON.stringify(exc.toBody())}\n\n`;

      const stop = async (exStatus: ExchangeStatus, exc: AppException): Promise<void> => {
        if (settled || holding) return;
        holding = true;
        body.removeAllListeners('data');
        body.destroy();
        const captured = capture.result();
        if (this.clientGone) {
          await this.finish('client_aborted', { upstreamStatus: status, captured });
          return settle();
        }
        await this.finish(exStatus, { upstreamStatus: status, captured, error: exc.toBody().error });
        if (!started) return settle(this.pendingWritten === false ? AppException.databaseUnavailable() : exc);
        res.end(errorEvent(exc));
        settle();
      };

      const completeWith = (out: Buffer[]): void => {
        holding = true;
        body.pause();
        const captured = capture.result();
        const exStatus: ExchangeStatus = capture.errorStatus ?? 'completed';
        void this.finish(exStatus, { upstreamStatus: status, captured, error: captured.upstreamError ?? null }).then((recorded) => {
          holding = false;
          if (this.clientGone) return settle();
          if (!recorded) {
            body.destroy();
            const exc = AppException.databaseUnavailable();
            if (!started) return settle(exc);
            res.end(errorEvent(exc));
            return settle();
          }
          if (!started) {
            started = true;
            res.writeHead(200, SSE_HEADERS);
          }
          for (const b of out) res.write(b);
          // what followed the final event in its chunk, then what came after it
          if (framer.held) res.write(scrubber.bytes(framer.rest()));
          for (const b of held) res.write(scrubber.bytes(b));
          held = [];
          // the answer is complete and recorded: an upstream that failed after it does not matter
          if (ended || heldError !== undefined || body.destroyed) {
            res.end();
            settle();
          } else body.resume();
        });
      };

      const onData = (chunk: Buffer) => {
        // settled: the answer is over (a 503 may have been sent instead); what still arrives is dropped
        if (settled) return;
        if (holding) {
          held.push(chunk);
          heldBytes += chunk.length;
          // over the limit anyway (the replay stops the stream): no need to keep reading
          if (heldBytes > max) body.pause();
          return;
        }
        if (this.recorded) {
          // bytes after the final event (normally none): relayed as they are
          if (!res.write(scrubber.bytes(chunk))) waitForDrain();
          return;
        }
        bytes += chunk.length;
        if (bytes > max) {
          void stop('upstream_error', new AppException('upstream_error', 'The upstream answer is larger than the configured limit (UPSTREAM_MAX_BODY)'));
          return;
        }
        const region = framer.push(chunk);
        if (!region) return;
        let out = take(region);
        if (capture.malformed) {
          void stop('upstream_error', new AppException('upstream_error', 'The upstream sent malformed server-sent events'));
          return;
        }
        if (!started) {
          if (parser.events === 0) {
            if (out.length) pre.push(out);
            return;
          }
          if (pre.length) {
            pre.push(chunk);
            out = Buffer.concat(pre);
            pre = [];
          }
          if (capture.terminal) return completeWith([out]);
          started = true;
          res.writeHead(200, SSE_HEADERS);
        }
        if (capture.terminal) return completeWith([out]);
        if (out.length && !res.write(out)) waitForDrain();
      };

      const onEnd = () => {
        ended = true;
        if (settled || holding) return;
        if (this.recorded) {
          res.end();
          return settle();
        }
        // an event the upstream did not end with a blank line is not dispatched, but its bytes are relayed
        if (capture.complete) return completeWith(framer.held ? [...pre, scrubber.bytes(framer.rest())] : pre);
        void stop('upstream_error', new AppException('upstream_error', started ? 'The upstream stream ended before the answer was complete' : 'The upstream sent an empty or incomplete event stream'));
      };

      const onError = (err: unknown) => {
        if (settled) return;
        if (this.clientGone) {
          holding = true;
          void this.finish('client_aborted', { upstreamStatus: status, captured: capture.result() }).then(() => settle());
          return;
        }
        if (holding) {
          heldError = err;
          return;
        }
        const exc = upstreamFailure(err);
        void stop(exc.kind === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error', exc);
      };

      body.on('data', onData);
      body.once('end', onEnd);
      body.once('error', onError);

      // nothing reaches the client before the pending row is written (if it cannot be, the answer is a 503)
      if (!this.svc.afterAnswer && this.pendingWritten === undefined) {
        holding = true;
        void this.pendingRow().then((ok) => {
          holding = false;
          if (settled || this.clientGone) return;
          if (!ok) {
            body.removeAllListeners('data');
            body.destroy();
            return settle(AppException.databaseUnavailable());
          }
          const queued = held;
          held = [];
          for (const chunk of queued) onData(chunk);
          if (heldError !== undefined && !holding) {
            const err = heldError;
            heldError = undefined;
            onError(err);
          } else if (ended && !holding) onEnd();
        });
      }
    });
  }
}

/** The answer's body with the estimated usage (flagged `estimated`), in the endpoint's own usage shape. */
function withEstimatedUsage(endpoint: ProxyEndpoint, body: unknown, u: TokenUsage): unknown {
  const usage =
    endpoint === 'responses'
      ? { input_tokens: u.input, output_tokens: u.output, total_tokens: u.total, estimated: true }
      : { prompt_tokens: u.input, completion_tokens: u.output, total_tokens: u.total, estimated: true };
  return body && typeof body === 'object' && !Array.isArray(body) ? { ...body, usage } : { usage };
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };
