import { BeforeApplicationShutdown, Injectable } from '@nestjs/common';
import { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { RequestAuthenticator } from '../auth/request-authenticator';
import { AppException } from '../common/app-exception';
import { AppExceptionFilter } from '../common/http-exception.filter';
import { newRequestId, newSessionId } from '../common/ids';
import { JsonLogger } from '../common/logger';
import type { ActingContext } from '../common/request-context';
import { AppConfig } from '../config/app-config';
import type { ExchangeOutcome, ExchangeStatus, KeyAttempt } from '../exchanges/recorder/exchange-record';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import type { RecordHandle } from '../exchanges/recorder/record-handle';
import { KeyHealth } from '../keys/key-health.service';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import { Admission, LimitsService } from '../limits/limits.service';
import { MetricsService } from '../metrics/metrics.service';
import { PricingService } from '../pricing/pricing.service';
import { readSessionHeader } from '../proxy/proxy-body';
import { CircuitBreakers } from '../upstream/circuit-breakers';
import { KeyScrubber } from '../upstream/upstream-errors';
import { actingHeaders, readHandshake, REALTIME_PATH, RealtimeHandshake, websocketProblem } from './realtime-handshake';
import { RealtimeSession, SessionEnd } from './realtime-session';
import { RealtimeTally } from './realtime-tally';
import { ConnectAbandoned, connectUpstream, OpenUpstream, UpstreamRefusal } from './realtime-upstream';
import { captureModeFor, exchangeCapture } from '../privacy/capture-mode';

/** The largest message relayed either way (Realtime's own limit on an event is 15 MiB). */
export const MAX_FRAME_BYTES = 32 * 1024 * 1024;
/** While sessions are open, how often the gateway looks whether the HTTP server has stopped listening (a shutdown). */
const SHUTDOWN_WATCH_MS = 250;
const SHUTDOWN_REASON = 'The server is shutting down';

/** One Realtime call, from its upgrade request to its record. */
interface RealtimeCall {
  requestId: string;
  startedAt: number;
  abort: AbortController;
  handshake: RealtimeHandshake;
  acting?: ActingContext;
  key?: ResolvedKey;
  admission?: Admission;
  record?: RecordHandle;
  tally: RealtimeTally;
  upstreamStartedAt: number | null;
  ttfb: number | null;
  /** OpenAI's request id of the session's upgrade (or of its refusal) */
  upstreamRequestId: string | null;
  session?: RealtimeSession;
  /** the keys the upgrade was refused with before the one that serves it (429: rested, 401: invalid) */
  keyAttempts: KeyAttempt[];
}

type Outcome = Pick<ExchangeOutcome, 'status' | 'upstreamStatus' | 'error'> & { responseBody?: unknown };

/**
 * `GET /v1/realtime`: the Realtime API's WebSocket, relayed with the resolved key. The upgrade request is served like
 * a proxied call (the JWT, X-User-ID, the key, the limits, a record opened before the upstream is called); the
 * upstream's socket is opened before the client's upgrade is answered, so whatever refuses the session (the proxy or
 * the upstream) answers an HTTP error in the contract's envelope. Then frames are relayed both ways (RealtimeSession)
 * and the session is recorded once it ends: one exchange, with the usage of every `response.done` summed.
 *
 * A browser cannot send headers: its token is taken from the `openai-insecure-api-key.<token>` subprotocol the SDK
 * sends, and the user from the token's pinned user (see actingHeaders()).
 */
@Injectable()
export class RealtimeGateway implements BeforeApplicationShutdown {
  private readonly wss: WebSocketServer;
  /** what the 101 answer of an upgrade carries (ids, rate-limit headers) and the subprotocol it selects */
  private readonly answers = new WeakMap<IncomingMessage, { headers: string[]; protocol: string | null }>();
  /** calls under way, each until its record is completed */
  private readonly calls = new Map<RealtimeCall, Promise<void>>();
  private filter?: AppExceptionFilter;
  private server?: Server;
  private watch?: NodeJS.Timeout;
  private stopping = false;

  constructor(
    private readonly auth: RequestAuthenticator,
    private readonly keys: KeyResolver,
    private readonly limits: LimitsService,
    private readonly recorder: ExchangeRecorder,
    private readonly pricing: PricingService,
    private readonly circuits: CircuitBreakers,
    private readonly metrics: MetricsService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    private readonly health: KeyHealth,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_BYTES,
      handleProtocols: (_offered, req) => this.answers.get(req)?.protocol ?? false,
    });
    this.wss.on('headers', (headers, req) => {
      const answer = this.answers.get(req);
      if (answer) headers.push(...answer.headers);
    });
  }

  /**
   * Takes the HTTP server's upgrade requests for /v1/realtime; any other upgrade is served as a plain request (Node
   * 24.9 and later: shouldUpgradeCallback), or answered 404 (earlier, where every upgrade comes here).
   */
  attach(server: Server, filter: AppExceptionFilter): void {
    this.server = server;
    this.filter = filter;
    (server as Server & { shouldUpgradeCallback: (req: IncomingMessage) => boolean }).shouldUpgradeCallback = (req) => pathOf(req.url) === REALTIME_PATH;
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.upgrade(req, socket, head));
  }

  /** The session relaying under this request id (X-Request-ID of its upgrade), if it is still open. */
  sessionOf(requestId: string): RealtimeSession | undefined {
    for (const call of this.calls.keys()) if (call.requestId === requestId) return call.session;
    return undefined;
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const handshake = readHandshake(req);
    const call: RealtimeCall = {
      requestId: newRequestId(),
      startedAt: performance.now(),
      abort: new AbortController(),
      handshake,
      tally: new RealtimeTally(handshake.model),
      upstreamStartedAt: null,
      ttfb: null,
      upstreamRequestId: null,
      keyAttempts: [],
    };
    // a reset before the answer is told by 'close'
    socket.on('error', () => undefined);
    if (pathOf(req.url) !== REALTIME_PATH) return this.refuse(call, req, socket, new AppException('not_found', 'Unknown route'));
    const served = this.serve(call, req, socket, head)
      .catch((err: unknown) => {
        this.logger.write('error', 'realtime call failed', { request_id: call.requestId, err });
        socket.destroy();
      })
      .finally(() => this.calls.delete(call));
    this.calls.set(call, served);
    // a stopped server no longer accepts connections, but waits for these sockets to close: they are closed (stop())
    this.watch ??= setInterval(() => {
      if (this.server && !this.server.listening) this.stop();
      if (!this.calls.size) {
        clearInterval(this.watch);
        this.watch = undefined;
      }
    }, SHUTDOWN_WATCH_MS).unref();
  }

  /** One call, from its upgrade request to its record. */
  private async serve(call: RealtimeCall, req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const gone = () => call.abort.abort();
    socket.once('close', gone);
    let upstream: OpenUpstream;
    try {
      upstream = await this.open(call, req);
    } catch (err) {
      socket.off('close', gone);
      this.refuse(call, req, socket, err);
      return;
    }
    socket.off('close', gone);
    await this.relay(call, upstream, req, socket, head);
  }

  /**
   * Everything before the client's upgrade is answered: authentication, key, limits, the record, the upstream's
   * socket. Throws the answer for the client; a failure after the record is opened is recorded first.
   */
  private async open(call: RealtimeCall, req: IncomingMessage): Promise<OpenUpstream> {
    if (this.stopping) throw shuttingDown();
    const handshake = call.handshake;
    const claims = await this.auth.verifyToken(handshake.authHeaders, 'proxy');
    const acting = (call.acting = await this.auth.actingFor(claims, actingHeaders(handshake, claims)));
    // what is stored of the session (X-Capture-Mode may lower the organization's mode)
    const capture = exchangeCapture(captureModeFor(acting, req.headers));
    const problem = websocketProblem(req);
    if (problem) throw problem;
    const sessionId = readSessionHeader(req.headers['x-session-id']) ?? newSessionId();
    const candidates = await this.keys.candidates(acting, { model: handshake.model, sessionId });
    let key = (call.key = candidates[0]);
    const admission = (call.admission = await this.limits.admit(acting, { model: handshake.model, body: null, instructions: undefined }));
    try {
      const opened = this.recorder.open({
        id: call.requestId,
        organizationId: acting.orgId,
        userId: acting.userId,
        externalUserId: acting.externalUserId,
        sessionId,
        personaId: null,
        personaVersion: null,
        endpoint: 'realtime',
        model: handshake.model,
        stream: true,
        requestBody: JSON.stringify({ model: handshake.model, ...handshake.params }),
        keyId: key.keyId,
        keySource: key.source,
        createdAt: new Date(),
        method: 'GET',
        route: REALTIME_PATH,
        capture,
      });
      call.record = opened instanceof Promise ? await opened : opened;
    } catch (err) {
      void this.limits.settle(admission, null);
      throw err;
    }

    let upstream: OpenUpstream;
    try {
      call.upstreamStartedAt = performance.now();
      for (let next = 1; ; next++) {
        if (this.stopping) throw shuttingDown();
        const report = this.circuits.enter(key);
        try {
          upstream = await connectUpstream({
            key,
            search: handshake.search,
            beta: handshake.beta,
            timeoutMs: this.config.upstreamTimeoutMs,
            maxPayload: MAX_FRAME_BYTES,
            signal: call.abort.signal,
            report,
          });
          break;
        } catch (err) {
          // as on every model call: a 429 rests the key, a 401 invalidates it, and the upgrade goes on with the next
          // key of the pool (nothing has reached the client yet)
          const status = err instanceof UpstreamRefusal ? err.upstreamStatus : null;
          if (status !== 429 && status !== 401) throw err;
          const outcome = this.health.refused(key, status, null, `${status} ${(err as UpstreamRefusal).answer.message}`);
          if (next >= candidates.length || call.abort.signal.aborted) throw err;
          call.keyAttempts.push({ key_id: key.keyId, outcome, status });
          key = call.key = candidates[next];
        }
      }
    } catch (err) {
      if (err instanceof UpstreamRefusal) {
        const status: ExchangeStatus =
          err.answer.kind === 'upstream_timeout' ? 'upstream_timeout' : err.upstreamStatus !== null && err.upstreamStatus < 500 ? 'failed' : 'upstream_error';
        call.upstreamRequestId = err.requestId;
        await this.finish(call, { status, upstreamStatus: err.upstreamStatus, error: err.answer.toBody().error, responseBody: err.body });
        if (err.requestId) err.answer.options.headers = { ...err.answer.options.headers, 'X-Upstream-Request-ID': err.requestId };
        throw this.answerable(call, err.answer);
      }
      if (this.stopping) {
        await this.finish(call, interrupted());
        throw shuttingDown();
      }
      if (err instanceof ConnectAbandoned) {
        await this.finish(call, { status: 'client_aborted', upstreamStatus: null, error: null });
        throw err;
      }
      // an open circuit (503)
      await this.finish(call, { status: 'upstream_error', upstreamStatus: null, error: err instanceof AppException ? err.toBody().error : null });
      throw err instanceof AppException ? this.answerable(call, err) : err;
    }

    // nothing reaches the client before the pending row is known to be written
    const written = !call.record.awaitsPendingRow || (await call.record.pendingRow());
    const refusal = !written ? AppException.databaseUnavailable() : this.stopping ? shuttingDown() : call.abort.signal.aborted ? new ConnectAbandoned() : null;
    if (refusal) {
      upstream.ws.close(1001, refusal instanceof AppException ? refusal.message : 'The client went away');
      await this.finish(call, refusal instanceof ConnectAbandoned ? { status: 'client_aborted', upstreamStatus: 101, error: null } : interrupted(101));
      throw refusal;
    }
    return upstream;
  }

  /** Answers the client's upgrade and relays the session until both sides are closed, then records it. */
  private async relay(call: RealtimeCall, upstream: OpenUpstream, req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    call.upstreamRequestId = upstream.requestId;
    const headers = [`X-Request-ID: ${call.requestId}`, `X-Key-Source: ${call.key!.source}`, `X-Session-ID: ${call.record!.row.sessionId}`];
    if (upstream.requestId) headers.push(`X-Upstream-Request-ID: ${upstream.requestId}`);
    for (const [name, value] of Object.entries(call.admission!.headers ?? {})) headers.push(`${name}: ${value}`);
    this.answers.set(req, { headers, protocol: call.handshake.protocol });

    const scrubber = new KeyScrubber(call.key!.apiKey);
    let client: WebSocket | undefined;
    this.wss.handleUpgrade(req, socket, head, (ws) => (client = ws));
    if (!client) {
      // the socket closed while the upstream was being opened
      upstream.ws.close(1001, 'The client went away');
      await this.finish(call, { status: 'client_aborted', upstreamStatus: 101, error: null });
      return;
    }
    this.metrics.observeHttp('GET', REALTIME_PATH, 101, (performance.now() - call.startedAt) / 1000);
    this.logRequest(call, 101);

    const session = (call.session = new RealtimeSession(client, upstream, {
      scrub: (data) => scrubber.bytes(data),
      observe: (data, isBinary) => {
        call.ttfb ??= performance.now() - call.startedAt;
        if (!isBinary) call.tally.observe(data);
      },
    }));
    session.start();
    if (this.stopping) session.shutdown(SHUTDOWN_REASON);
    const end = await session.ended;
    await this.finish(call, sessionOutcome(end), { end, session });
  }

  /** Completes the record (summed usage, cost), settles the limits and counts the session. Never throws. */
  private async finish(call: RealtimeCall, o: Outcome, relayed?: { end: SessionEnd; session: RealtimeSession }): Promise<void> {
    const record = call.record!;
    const admission = call.admission!;
    const usage = call.tally.usage();
    const model = call.handshake.model ?? call.tally.model;
    const cost = usage ? this.pricing.costOfAnswer(usage) : null;
    const endedAt = performance.now();
    const outcome: ExchangeOutcome = {
      id: call.requestId,
      status: o.status,
      upstreamStatus: o.upstreamStatus,
      responseId: null,
      responseBody: o.responseBody !== undefined ? o.responseBody : relayed ? this.summary(call, relayed) : null,
      outputText: call.tally.outputText(),
      error: o.error,
      usage,
      cost,
      latencyMs: endedAt - call.startedAt,
      timeToFirstByteMs: call.ttfb,
      upstreamRequestId: call.upstreamRequestId,
      // the upstream's session (`sess_…`)
      objectId: call.tally.sessionId,
      // the key that served the session, when the pool failed over to it
      keyAttempts: call.keyAttempts.length ? call.keyAttempts : null,
      late: call.keyAttempts.length && call.key ? { keyId: call.key.keyId, keySource: call.key.source } : undefined,
    };
    try {
      const settled = this.limits.settle(admission, usage || cost ? { tokens: usage?.total ?? null, cost } : null);
      // a record whose pending row could not be written is completed by the recorder once it can (withheld)
      if (!record.done) await record.finish(outcome);
      await settled;
    } catch (err) {
      this.logger.write('error', 'realtime session could not be recorded', { request_id: call.requestId, err });
    }
    this.metrics.observeExchange({
      route: 'realtime',
      status: o.status,
      model,
      totalMs: endedAt - call.startedAt,
      upstreamMs: call.upstreamStartedAt === null ? null : endedAt - call.upstreamStartedAt,
      ttfbMs: call.ttfb,
      inputTokens: usage?.input,
      outputTokens: usage?.output,
      cost,
    });
    if (relayed) {
      const { end, session } = relayed;
      this.logger.write('info', 'realtime session ended', {
        request_id: call.requestId,
        org_id: call.acting?.orgId,
        status: o.status,
        closed_by: end.by,
        close_code: end.code,
        duration_ms: Math.round(endedAt - call.startedAt),
        responses: call.tally.responses,
        frames_to_upstream: session.toward.upstream.frames,
        frames_to_client: session.toward.client.frames,
      });
    }
  }

  /** What a session's record keeps of it as its response body. */
  private summary(call: RealtimeCall, { end, session }: { end: SessionEnd; session: RealtimeSession }) {
    const flow = (side: 'client' | 'upstream') => ({ frames: session.toward[side].frames, bytes: session.toward[side].bytes });
    return {
      object: 'realtime.session',
      id: call.tally.sessionId,
      model: call.tally.model,
      responses: call.tally.responses,
      closed_by: end.by,
      close_code: end.code,
      close_reason: end.reason || null,
      to_upstream: flow('upstream'),
      to_client: flow('client'),
    };
  }

  /** The error answered for a refused upgrade (the key never appears in it). */
  private answerable(call: RealtimeCall, err: AppException): AppException {
    return call.record?.unrecorded ? AppException.databaseUnavailable() : err;
  }

  /** Answers a refused upgrade with an HTTP error in the contract's envelope, on the socket, then closes it. */
  private refuse(call: RealtimeCall, req: IncomingMessage, socket: Socket, err: unknown): void {
    if (err instanceof ConnectAbandoned || socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    const res = new ServerResponse(req);
    res.assignSocket(socket);
    res.shouldKeepAlive = false;
    res.setHeader('X-Request-ID', call.requestId);
    res.once('finish', () => {
      res.detachSocket(socket);
      socket.destroySoon();
    });
    this.filter!.answer(err, REALTIME_PATH, res);
    this.metrics.observeHttp('GET', REALTIME_PATH, res.statusCode, (performance.now() - call.startedAt) / 1000);
    const error = this.filter!.toAppException(err).toBody().error;
    this.logRequest(call, res.statusCode, { error_type: error.type, error_code: error.code });
  }

  private logRequest(call: RealtimeCall, status: number, fields: Record<string, unknown> = {}): void {
    if (!this.logger.enabled('info')) return;
    this.logger.write('info', 'request', {
      request_id: call.requestId,
      method: 'GET',
      path: REALTIME_PATH,
      status,
      duration_ms: Math.round((performance.now() - call.startedAt) * 100) / 100,
      org_id: call.acting?.orgId,
      ...fields,
    });
  }

  /** Refuses new sessions and closes the open ones with 1001; calls still opening are answered 503. */
  private stop(): void {
    this.stopping = true;
    for (const call of this.calls.keys()) {
      if (call.session) call.session.shutdown(SHUTDOWN_REASON);
      else call.abort.abort();
    }
  }

  /** Closes the open sessions and waits for their records. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stop();
    while (this.calls.size) await Promise.allSettled([...this.calls.values()]);
    clearInterval(this.watch);
  }
}

function sessionOutcome(end: SessionEnd): Outcome {
  if (end.by === 'proxy') return interrupted(101);
  if (end.by === 'client') {
    if (end.code === 1006) return { status: 'client_aborted', upstreamStatus: 101, error: null };
    // the client broke the protocol or sent a message over the limit: the proxy closed it
    if (end.error) return { status: 'failed', upstreamStatus: 101, error: { message: end.error, type: 'invalid_request_error', code: `websocket_close_${end.code}`, param: null } };
    return { status: 'completed', upstreamStatus: 101, error: null };
  }
  if (end.code === 1000 || end.code === 1001 || end.code === 1005) return { status: 'completed', upstreamStatus: 101, error: null };
  return {
    status: 'upstream_error',
    upstreamStatus: 101,
    error: {
      message: end.reason || end.error || (end.code === 1006 ? 'The upstream connection was lost' : `The upstream closed the session with code ${end.code}`),
      type: 'upstream_error',
      code: `websocket_close_${end.code}`,
      param: null,
    },
  };
}

function interrupted(upstreamStatus: number | null = null): Outcome {
  return { status: 'interrupted', upstreamStatus, error: { message: SHUTDOWN_REASON, type: 'service_unavailable', code: 'shutting_down', param: null } };
}

function shuttingDown(): AppException {
  return new AppException('service_unavailable', SHUTDOWN_REASON, { code: 'shutting_down', headers: { 'Retry-After': '1' } });
}

function pathOf(url: string | undefined): string {
  const q = url?.indexOf('?') ?? -1;
  return q < 0 ? (url ?? '/') : url!.slice(0, q);
}
