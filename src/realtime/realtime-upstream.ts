import type { ClientRequest, IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { AppException } from '../common/app-exception';
import type { ResolvedKey } from '../keys/key-resolver';
import type { CallOutcome } from '../upstream/circuit-breakers';
import { scrubUpstreamText, upstreamErrorAnswer } from '../upstream/upstream-errors';

/** Most of an upstream's refusal (its error body) read to answer with. */
const MAX_REFUSAL_BYTES = 64 * 1024;

/** A message relayed as it came: its bytes, and whether it was a binary frame. */
export type Frame = [data: Buffer, isBinary: boolean];

/** An upstream Realtime socket, open, paused until the client's side is ready. */
export interface OpenUpstream {
  ws: WebSocket;
  /** OpenAI's request id for the session (x-request-id of the 101 answer) */
  requestId: string | null;
  /** messages the upstream sent before the relay took over (its `session.created`) */
  early: Frame[];
  /** the upstream closed before the relay took over */
  earlyClose: { code: number; reason: Buffer } | null;
  /** stops keeping messages in `early` (the relay passes them on from then on) */
  stopKeeping(): void;
}

/** The upstream refused the session or could not be reached: the answer for the client, and what the record says. */
export class UpstreamRefusal extends Error {
  constructor(
    readonly answer: AppException,
    /** the upstream's HTTP status; null when it never answered */
    readonly upstreamStatus: number | null,
    readonly body: unknown = null,
    /** OpenAI's request id of the refusal */
    readonly requestId: string | null = null,
  ) {
    super(answer.message);
  }
}

/** The client went away while the upstream was being reached. */
export class ConnectAbandoned extends Error {}

export interface UpstreamTarget {
  key: ResolvedKey;
  /** the query as the client sent it (`?model=…`), or '' */
  search: string;
  beta: string | null;
  timeoutMs: number;
  maxPayload: number;
  signal: AbortSignal;
  /** the circuit's report for this key (see CircuitBreakers.enter) */
  report: (outcome: CallOutcome) => void;
}

/** `<base URL>/realtime<query>` on ws: or wss: (from http: or https:). */
export function realtimeUrl(baseUrl: string, search: string): string {
  const u = new URL(baseUrl);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/realtime`;
  u.search = '';
  u.hash = '';
  return u.toString() + search;
}

/**
 * Opens the upstream's Realtime socket with the resolved key (and nothing of the client's credentials). Resolves once
 * it is open, paused, with what it sent meanwhile kept; rejects with UpstreamRefusal (its HTTP answer, a timeout, a
 * network failure) or ConnectAbandoned. Redirects are not followed: the key goes to the key's own upstream only.
 */
export function connectUpstream(t: UpstreamTarget): Promise<OpenUpstream> {
  return new Promise((resolve, reject) => {
    if (t.signal.aborted) return reject(new ConnectAbandoned());
    const headers: Record<string, string> = { authorization: `Bearer ${t.key.apiKey}` };
    if (t.beta) headers['openai-beta'] = t.beta;
    const ws = new WebSocket(realtimeUrl(t.key.baseUrl, t.search), {
      headers,
      perMessageDeflate: false,
      followRedirects: false,
      maxPayload: t.maxPayload,
    });
    let requestId: string | null = null;
    const early: Frame[] = [];
    const keep = (data: Buffer, isBinary: boolean) => early.push([data, isBinary]);
    let settled = false;
    const settle = (outcome: CallOutcome, err?: Error) => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      t.signal.removeEventListener('abort', abandon);
      t.report(outcome);
      if (err) {
        ws.removeListener('message', keep);
        ws.terminate();
        reject(err);
      }
      return true;
    };
    const abandon = () => settle('neutral', new ConnectAbandoned());
    const timer = setTimeout(
      () => settle('failed', new UpstreamRefusal(new AppException('upstream_timeout', 'The upstream did not open the Realtime session in time'), null)),
      t.timeoutMs,
    );
    t.signal.addEventListener('abort', abandon, { once: true });

    ws.on('upgrade', (res: IncomingMessage) => (requestId = requestIdOf(res)));
    ws.on('unexpected-response', (req: ClientRequest, res: IncomingMessage) => {
      readRefusal(res).then((text) => {
        req.destroy();
        const status = res.statusCode ?? 502;
        const answer =
          status >= 300 && status < 400
            ? new AppException('upstream_error', 'The upstream answered with a redirect, which is not followed')
            : status < 400
              ? new AppException('upstream_error', `The upstream answered the WebSocket upgrade with status ${status}`)
              : upstreamErrorAnswer(status, text, t.key.apiKey);
        // the error body is stored: an upstream quoting the key must not leak it
        settle(status >= 500 ? 'failed' : 'ok', new UpstreamRefusal(answer, status, parseJson(scrubUpstreamText(text, t.key.apiKey)), requestIdOf(res)));
      });
    });
    ws.on('error', () => {
      // before open: the connection failed (refused, reset, a bad handshake answer); after: the relay's business
      settle('failed', new UpstreamRefusal(new AppException('upstream_error', 'The upstream could not be reached or closed the connection'), null));
    });
    ws.on('message', keep);
    const keepClose = (code: number, reason: Buffer) => {
      if (settled) result.earlyClose ??= { code, reason };
    };
    ws.once('close', keepClose);
    const result: OpenUpstream = {
      ws,
      requestId,
      early,
      earlyClose: null,
      stopKeeping: () => {
        ws.off('message', keep);
        ws.off('close', keepClose);
      },
    };
    ws.once('open', () => {
      if (!settle('ok')) return;
      // nothing is read until the relay can pass it on
      ws.pause();
      result.requestId = requestId;
      resolve(result);
    });
  });
}

/** OpenAI's request id (x-request-id), as a header value can carry it */
function requestIdOf(res: IncomingMessage): string | null {
  const id = res.headers['x-request-id'];
  return typeof id === 'string' && id ? id.replace(/[^\x21-\x7e]/g, '').slice(0, 200) || null : null;
}

/** The start of an error answer's body, as text (what is left is not read). */
function readRefusal(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => resolve(Buffer.concat(chunks).toString('utf8'));
    res.on('data', (chunk: Buffer) => {
      if (size >= MAX_REFUSAL_BYTES) return;
      chunks.push(chunk.subarray(0, MAX_REFUSAL_BYTES - size));
      size += chunk.length;
      if (size >= MAX_REFUSAL_BYTES) done();
    });
    res.once('end', done);
    res.once('error', done);
    res.once('close', done);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
