import type { IncomingMessage, ServerResponse } from 'node:http';
import { newRequestId } from './ids';
import { JsonLogger } from './logger';
import type { RequestState } from './request-context';

// load balancers and Prometheus call these every few seconds: an answered probe is logged at debug only
const PROBE_PATHS = new Set(['/health', '/metrics']);

/** An unread request body is discarded for at most this long after the answer, then the connection is closed. */
const DISCARD_MAX_MS = 5_000;

/**
 * How much of a body the answer did not need is read and thrown away (so a client still sending gets the answer,
 * not a reset): a body up to twice the limit, at least 1 MB.
 */
export function unreadBodyDiscardBound(bodyLimit: number): number {
  return Math.max(2 * bodyLimit, 1024 * 1024);
}

const errorCodes = new WeakMap<ServerResponse, { type: string; code: string | null }>();

/** Notes the error an answer carries, for the request's log line. */
export function noteAnswerError(res: ServerResponse, error: { type: string; code: string | null }): void {
  errorCodes.set(res, error);
}

/**
 * Every request: its id (X-Request-ID) and start time, at info level one log line when it is answered, and a bound
 * on what is read of a body the answer did not need (`discardBytes`).
 */
export function startRequest(
  req: RequestState & IncomingMessage,
  res: ServerResponse,
  logger: JsonLogger,
  path: string,
  discardBytes: number,
): void {
  req.startedAt = performance.now();
  req.requestId = newRequestId();
  res.setHeader('X-Request-ID', req.requestId);
  res.once('finish', () => {
    if (!req.complete) discardUnreadBody(req, discardBytes);
  });
  if (logger.enabled('info')) {
    res.on('finish', () => {
      const error = res.statusCode >= 400 ? errorCodes.get(res) : undefined;
      logger.write(PROBE_PATHS.has(path) && res.statusCode < 400 ? 'debug' : 'info', 'request', {
        request_id: req.requestId,
        method: req.method,
        path,
        status: res.statusCode,
        duration_ms: Math.round((performance.now() - req.startedAt) * 100) / 100,
        org_id: req.acting?.orgId,
        ...(res.statusCode >= 400 ? { error_type: error?.type ?? null, error_code: error?.code ?? null } : {}),
      });
    });
  }
}

/**
 * A request answered before its body was read (401 without reading it, 413 at the limit): the rest is read and
 * thrown away so the client, still sending, gets the answer rather than a connection reset, but only up to
 * `maxBytes` and DISCARD_MAX_MS; past either the connection is closed.
 */
function discardUnreadBody(req: IncomingMessage, maxBytes: number): void {
  let read = 0;
  const stop = () => {
    clearTimeout(timer);
    req.off('data', onData);
  };
  const onData = (chunk: Buffer) => {
    read += chunk.length;
    if (read > maxBytes) {
      stop();
      req.socket.destroy();
    }
  };
  const timer = setTimeout(() => {
    stop();
    req.socket.destroy();
  }, DISCARD_MAX_MS);
  timer.unref();
  req.on('data', onData);
  req.once('end', stop);
  req.once('close', stop);
  req.resume();
}
