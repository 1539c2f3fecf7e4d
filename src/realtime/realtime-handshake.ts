import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { AppException } from '../common/app-exception';
import type { TokenClaims } from '../auth/tokens.service';

export const REALTIME_PATH = '/v1/realtime';

/** A browser's WebSocket cannot send headers: the SDK passes its key as this subprotocol, and the proxy takes its JWT so. */
const TOKEN_PROTOCOL = 'openai-insecure-api-key.';
/** The caller's own OpenAI routing, meaningless with the proxy's key: never forwarded. */
const ROUTING_PROTOCOLS = ['openai-organization.', 'openai-project.'];
/** The beta interface asked for by subprotocol (`openai-beta.realtime-v1`), forwarded as the OpenAI-Beta header. */
const BETA_PROTOCOL = 'openai-beta.';
/** Query parameters that carry credentials (Azure's `api-key`, a bearer token): neither forwarded nor recorded. */
const CREDENTIAL_PARAMS = new Set(['api-key', 'api_key', 'key', 'access_token', 'token', 'authorization']);

// RFC 7230 token characters: what a subprotocol name may hold
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const WEBSOCKET_KEY = /^[+/0-9A-Za-z]{22}==$/;
/** A close reason is at most 123 bytes (the 125 of a control frame less the code). */
const MAX_REASON_BYTES = 123;

/** What the proxy reads from a Realtime upgrade request. */
export interface RealtimeHandshake {
  /** the query forwarded upstream, as sent less credentials (`?model=gpt-realtime`), or '' */
  search: string;
  /** the query's parameters as recorded (credentials removed) */
  params: Record<string, string>;
  model: string | null;
  /** the token came as the `openai-insecure-api-key.` subprotocol (a browser), not as the Authorization header */
  tokenInProtocol: boolean;
  /** the headers authenticated: the request's own, with the subprotocol's token as Authorization when it has none */
  authHeaders: IncomingHttpHeaders;
  /** OpenAI-Beta for the upstream: the header, else the `openai-beta.` subprotocol's */
  beta: string | null;
  /** the subprotocol answered to the client: `realtime` when offered, else the first that carries no credential */
  protocol: string | null;
}

/**
 * Reads the upgrade request. Its problems (not a WebSocket upgrade, a malformed subprotocol list) are thrown only by
 * `websocketProblem()`, after authentication: a request without a token is 401 whatever else is wrong with it.
 */
export function readHandshake(req: IncomingMessage): RealtimeHandshake {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const raw = q < 0 ? '' : url.slice(q + 1);
  const query = new URLSearchParams(raw);
  let removed = false;
  for (const name of [...query.keys()]) {
    if (CREDENTIAL_PARAMS.has(name.toLowerCase())) {
      query.delete(name);
      removed = true;
    }
  }
  const params: Record<string, string> = {};
  for (const [name, value] of query) params[name] ??= value;
  // as sent, unless a credential had to be taken out
  const search = !removed ? (raw ? `?${raw}` : '') : query.size ? `?${query.toString()}` : '';

  const offered = offeredProtocols(req.headers) ?? [];
  const token = offered.find((p) => p.startsWith(TOKEN_PROTOCOL))?.slice(TOKEN_PROTOCOL.length);
  const tokenInProtocol = !req.headers.authorization && !!token;
  const authHeaders = tokenInProtocol ? { ...req.headers, authorization: `Bearer ${token}` } : req.headers;

  const betaHeader = req.headers['openai-beta'];
  const betaProtocol = offered.find((p) => p.startsWith(BETA_PROTOCOL))?.slice(BETA_PROTOCOL.length);
  const beta = (Array.isArray(betaHeader) ? betaHeader.join(', ') : betaHeader) ?? (betaProtocol ? betaProtocol.replace(/-(v\d+)$/, '=$1') : null);

  const answerable = offered.filter((p) => !isPrivateProtocol(p));
  const protocol = answerable.includes('realtime') ? 'realtime' : (answerable[0] ?? null);
  return { search, params, model: params.model ?? null, tokenInProtocol, authHeaders, beta, protocol };
}

/**
 * The headers the acting user is read from. A browser sends no X-User-ID: a token it passed as a subprotocol acts for
 * the user the token is pinned to (a token without one still needs the header, which a browser cannot send).
 */
export function actingHeaders(handshake: RealtimeHandshake, claims: TokenClaims): IncomingHttpHeaders {
  const h = handshake.authHeaders;
  if (!handshake.tokenInProtocol || h['x-user-id'] !== undefined || claims.user_id === undefined) return h;
  return { ...h, 'x-user-id': claims.user_id };
}

/** What makes the request something other than a WebSocket opening handshake, as the contract's error. */
export function websocketProblem(req: IncomingMessage): AppException | null {
  if (req.method !== 'GET') {
    return new AppException('invalid_request', 'A Realtime session is opened with a GET WebSocket upgrade', { status: 405 });
  }
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
    return AppException.invalid('GET /v1/realtime expects a WebSocket upgrade (Upgrade: websocket)');
  }
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !WEBSOCKET_KEY.test(key)) return AppException.invalid('Missing or invalid Sec-WebSocket-Key header');
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') {
    return new AppException('invalid_request', 'Unsupported WebSocket version; this server speaks version 13', {
      status: 426,
      headers: { 'Sec-WebSocket-Version': '13, 8' },
    });
  }
  if (offeredProtocols(req.headers) === null) return AppException.invalid('Invalid Sec-WebSocket-Protocol header', 'Sec-WebSocket-Protocol');
  return null;
}

/** The subprotocols offered, in order; null when the header is malformed (an empty or repeated name, a bad character). */
function offeredProtocols(headers: IncomingHttpHeaders): string[] | null {
  const raw = headers['sec-websocket-protocol'];
  if (raw === undefined) return [];
  const names = raw.split(',').map((p) => p.trim());
  if (names.some((p) => !TOKEN.test(p)) || new Set(names).size !== names.length) return null;
  return names;
}

function isPrivateProtocol(p: string): boolean {
  return p.startsWith(TOKEN_PROTOCOL) || p.startsWith(BETA_PROTOCOL) || ROUTING_PROTOCOLS.some((r) => p.startsWith(r));
}

/** Close codes a peer may send: 1005, 1006 and 1015 are only ever reported locally, 1004 is reserved. */
export function sendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** A close reason within the protocol's 123 bytes, cut at a character boundary. */
export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= MAX_REASON_BYTES) return text;
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > MAX_REASON_BYTES) break;
    out += ch;
  }
  return out;
}
