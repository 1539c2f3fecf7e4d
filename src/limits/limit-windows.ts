/** The fixed UTC windows limits are counted in. A counter key names its window start, so a new window starts at 0. */
export type WindowKind = 'minute' | 'day' | 'month';

export interface Window {
  start: number;
  end: number;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

export function windowAt(kind: WindowKind, now: number): Window {
  if (kind === 'minute') {
    const start = Math.floor(now / MINUTE) * MINUTE;
    return { start, end: start + MINUTE };
  }
  if (kind === 'day') {
    const start = Math.floor(now / DAY) * DAY;
    return { start, end: start + DAY };
  }
  const d = new Date(now);
  return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/** How long a counter is kept after its window ended (only so late readers and clock skew between processes see it). */
export function counterExpiry(kind: WindowKind, w: Window): number {
  return w.end + (kind === 'minute' ? MINUTE : 3_600_000);
}

/** Retry-After: whole seconds, at least 1. */
export function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}

/** OpenAI's reset format (a Go-style duration: "20ms", "1.5s", "6m0s"). */
export function resetDuration(ms: number): string {
  const clamped = Math.max(0, Math.ceil(ms));
  if (clamped < 1000) return `${clamped}ms`;
  if (clamped < 60_000) return `${Number((clamped / 1000).toFixed(3))}s`;
  const m = Math.floor(clamped / 60_000);
  const s = Number(((clamped % 60_000) / 1000).toFixed(3));
  return `${m}m${s}s`;
}
