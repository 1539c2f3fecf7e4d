/**
 * What of an exchange is stored: everything (`full`), everything with its personal data replaced by placeholders
 * (`redacted`), or no bodies and no text at all (`metadata`: status, error type and code, usage, cost, latency,
 * model and ids). Set per organization; a request may lower it with `X-Capture-Mode`, never raise it. What the
 * upstream receives and what the client gets never change: only what is written to the database.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { AppException } from '../common/app-exception';
import type { ActingContext } from '../common/request-context';
import type { ExchangeOutcome, PendingExchange } from '../exchanges/recorder/exchange-record';
import { Redactor } from './redaction';

import { CAPTURE_MODES, type CaptureMode, isCaptureMode } from '../auth/org-privacy';

export { CAPTURE_MODES, type CaptureMode, isCaptureMode };

/** the request header lowering the organization's capture mode (read by the proxy, never forwarded upstream) */
export const CAPTURE_MODE_HEADER = 'x-capture-mode';

/** how much each mode stores: a request may only ask for as much as its organization's, or less */
const RANK: Record<CaptureMode, number> = { metadata: 0, redacted: 1, full: 2 };

/** The organization's capture mode, from the acting context (its cached organization state). */
const organizationMode = (acting: ActingContext): CaptureMode => acting.privacy.capture;

/**
 * The capture mode of one call: its organization's, or lower when the request asks so with `X-Capture-Mode`.
 * An unknown value, or one above the organization's, is refused (400) before anything is recorded or sent.
 */
export function captureModeFor(acting: ActingContext, headers: IncomingHttpHeaders): CaptureMode {
  const org = organizationMode(acting);
  const raw = headers[CAPTURE_MODE_HEADER];
  if (raw === undefined) return org;
  const asked = (Array.isArray(raw) ? raw.join(',') : raw).trim().toLowerCase();
  if (!isCaptureMode(asked)) {
    throw new AppException('invalid_request', `X-Capture-Mode must be one of ${CAPTURE_MODES.join(', ')}`, { code: 'invalid_capture_mode', param: 'X-Capture-Mode' });
  }
  if (RANK[asked] > RANK[org]) {
    throw new AppException(
      'invalid_request',
      `X-Capture-Mode can only lower what is stored: this organization's capture mode is '${org}', so '${asked}' is not allowed (use ${CAPTURE_MODES.filter((m) => RANK[m] <= RANK[org]).join(' or ')})`,
      { code: 'capture_mode_not_allowed', param: 'X-Capture-Mode' },
    );
  }
  return asked;
}

/** The call's capture: nothing to do for `full` (the hot path does no extra work), else what rewrites its record. */
export function exchangeCapture(mode: CaptureMode): ExchangeCapture | undefined {
  return mode === 'full' ? undefined : new ExchangeCapture(mode);
}

/** An error kept in metadata mode: its type, code and parameter, without the message (which may quote content). */
export function errorWithoutText(error: unknown): unknown {
  if (error === null || error === undefined) return null;
  const e = typeof error === 'object' && !Array.isArray(error) ? (error as Record<string, unknown>) : {};
  const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 200) : null);
  return { message: null, type: str(e.type), code: str(e.code) ?? (typeof e.code === 'number' ? String(e.code) : null), param: str(e.param) };
}

/** Captures of background responses still running upstream, by exchange id, for the completion of their record. */
const unfinished = new Map<string, ExchangeCapture>();
/** a bound on what is kept (a response completed by another process is never taken back here) */
const UNFINISHED_MAX = 10_000;

/**
 * The capture of a record completed later (a background response the upstream finishes after the call ended): the
 * one its call used when this process made it, so its placeholders go on where the request's stopped; else a new
 * one (another process, a restart: the ended response's placeholders are then numbered on their own).
 */
export function storedLater(exchangeId: string, mode: string): ExchangeCapture | undefined {
  if (mode !== 'redacted' && mode !== 'metadata') return undefined;
  return unfinished.get(exchangeId) ?? new ExchangeCapture(mode);
}

/**
 * What one exchange's record keeps, applied once to each value on its way to the database: the pending row when the
 * record opens, the outcome when it ends. One Redactor serves the whole exchange, so a value has the same placeholder
 * in the request, the answer, the output text and the error.
 */
export class ExchangeCapture {
  private redactor?: Redactor;

  constructor(readonly mode: Exclude<CaptureMode, 'full'>) {}

  private get r(): Redactor {
    return (this.redactor ??= new Redactor());
  }

  /** A JSON column's value: JSON text, or a value to serialize. */
  json(v: unknown): unknown {
    if (v === null || v === undefined) return null;
    if (this.mode === 'metadata') return null;
    return typeof v === 'string' ? this.r.jsonText(v) : this.r.value(v);
  }

  text(s: string | null | undefined): string | null {
    if (s === null || s === undefined || this.mode === 'metadata') return null;
    return this.r.text(s);
  }

  error(e: unknown): unknown {
    if (e === null || e === undefined) return null;
    return this.mode === 'metadata' ? errorWithoutText(e) : this.r.value(e);
  }

  pending(row: PendingExchange): PendingExchange {
    return { ...row, requestBody: this.json(row.requestBody) as string | null, capture: this };
  }

  /** The call ended with its response still running upstream (queued): kept for the completion of its record. */
  keepFor(exchangeId: string): void {
    if (this.mode !== 'redacted') return;
    if (unfinished.size >= UNFINISHED_MAX) unfinished.delete(unfinished.keys().next().value!);
    unfinished.set(exchangeId, this);
  }

  /** The record is complete: nothing more is stored with this capture. */
  ended(exchangeId: string): void {
    unfinished.delete(exchangeId);
  }

  outcome(o: ExchangeOutcome): ExchangeOutcome {
    if (o.status === 'queued') this.keepFor(o.id);
    const out: ExchangeOutcome = { ...o, responseBody: this.json(o.responseBody), outputText: this.text(o.outputText), error: this.error(o.error) };
    if (o.late && o.late.requestBody !== undefined) out.late = { ...o.late, requestBody: this.json(o.late.requestBody) as string | null };
    return out;
  }
}
