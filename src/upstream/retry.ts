import type { IncomingHttpHeaders } from 'node:http';

/** Upstream answers worth another attempt (before the first byte, where a repeat is safe). */
export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);
const BACKOFF_BASE_MS = 100;

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

/** Full-jitter exponential backoff, or the upstream's Retry-After when it gave one; ends early when `signal` aborts. */
export function backoff(signal: AbortSignal, attempt: number, retryAfter: number | null): Promise<void> {
  const ms = retryAfter ?? Math.random() * BACKOFF_BASE_MS * 2 ** attempt;
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
