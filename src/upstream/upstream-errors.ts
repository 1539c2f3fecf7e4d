import { AppException } from '../common/app-exception';
import { redact } from '../common/logger';

const MIN_ECHOED_KEY_PART = 8;

/**
 * Takes the key the call was made with out of upstream text: an upstream that refuses a key often quotes it in its
 * error message, which would otherwise reach the client, the stored exchange and the logs. Beyond the whole key,
 * any long leading part of it is removed (a quoted key may be cut short), and whatever looks like a key or a token.
 */
export function scrubUpstreamText(text: string, apiKey?: string): string {
  let out = text;
  if (apiKey && apiKey.length >= MIN_ECHOED_KEY_PART) {
    for (let len = apiKey.length; len >= MIN_ECHOED_KEY_PART && out.length > 0; len--) {
      const part = apiKey.slice(0, len);
      if (out.includes(part)) out = out.split(part).join('[redacted]');
    }
  }
  return redact(out);
}

/** a key echoed at this length or longer (from its start) is the key; a shorter or masked echo is not */
const MIN_ECHO_IN_STREAM = 16;
const REDACTED = Buffer.from('[redacted]');

/**
 * Takes the call's key out of upstream bytes (a streamed error event, a `response.failed`, a JSON answer) before they
 * reach the client or the record. One native search per buffer while the key is absent, so it runs on every relayed
 * event; the bytes are returned unchanged (the same buffer) when the key is not in them.
 */
export class KeyScrubber {
  private readonly key: Buffer;
  private readonly head: Buffer | null;

  constructor(apiKey: string) {
    this.key = Buffer.from(apiKey, 'utf8');
    this.head = this.key.length >= MIN_ECHOED_KEY_PART ? this.key.subarray(0, Math.min(this.key.length, MIN_ECHO_IN_STREAM)) : null;
  }

  bytes(buf: Buffer): Buffer {
    const head = this.head;
    if (!head) return buf;
    let at = buf.indexOf(head);
    if (at < 0) return buf;
    const parts: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      let end = at + head.length;
      while (end - at < this.key.length && end < buf.length && buf[end] === this.key[end - at]) end++;
      parts.push(buf.subarray(from, at), REDACTED);
      from = end;
      at = buf.indexOf(head, from);
    }
    parts.push(buf.subarray(from));
    return Buffer.concat(parts);
  }
}

/** Maps a failure to reach or read the upstream to the contract's 502/504. */
export function upstreamFailure(err: unknown): AppException {
  if (err instanceof AppException) return err; // e.g. an open circuit: already an answer
  const e = err as { code?: string; name?: string; message?: string };
  if (e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new AppException('upstream_timeout', 'The upstream did not answer in time');
  }
  if (e?.code === 'UND_ERR_BODY_TIMEOUT') return new AppException('upstream_timeout', 'The upstream stopped sending');
  return new AppException('upstream_error', 'The upstream could not be reached or closed the connection');
}

/** Turns an upstream error answer (4xx/5xx with OpenAI's envelope, or anything else) into ours, keeping its status and message. */
export function upstreamErrorAnswer(status: number, rawText: string, apiKey?: string): AppException {
  const text = scrubUpstreamText(rawText, apiKey);
  let message = `The upstream answered with status ${status}`;
  let type: string | undefined;
  let code: string | null | undefined;
  let param: string | null = null;
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; code?: unknown; param?: unknown } };
    if (parsed?.error && typeof parsed.error === 'object') {
      if (typeof parsed.error.message === 'string') message = parsed.error.message;
      if (typeof parsed.error.type === 'string') type = parsed.error.type;
      if (typeof parsed.error.code === 'string' || parsed.error.code === null) code = parsed.error.code as string | null;
      if (typeof parsed.error.param === 'string') param = parsed.error.param;
    }
  } catch {
    // not JSON: keep the generic message
  }
  if (status === 429) return new AppException('rate_limit', message, { code: code ?? 'upstream_rate_limited', param, upstreamStatus: status });
  if (status >= 500) return new AppException('upstream_error', message, { param, upstreamStatus: status });
  if (status === 401 || status === 403) {
    // the organization's upstream key was refused: not the caller's authentication problem
    return new AppException('upstream_error', `The upstream refused the API key: ${message}`, { status: 502, code: 'upstream_auth_failed', upstreamStatus: status });
  }
  return new AppException('invalid_request', message, { status, type: type ?? 'invalid_request_error', code: code ?? null, param, upstreamStatus: status });
}
