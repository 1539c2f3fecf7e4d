import { AppException } from '../common/app-exception';

/**
 * What the proxy stores of an organization's exchanges. `full`: bodies and text as sent; `redacted`: bodies and text
 * with personal data replaced by placeholders before they are written; `metadata`: no bodies or text at all.
 * Ordered from most to least kept: a request may lower its organization's mode, never raise it.
 */
export const CAPTURE_MODES = ['full', 'redacted', 'metadata'] as const;
export type CaptureMode = (typeof CAPTURE_MODES)[number];

/** An organization's privacy settings, as the hot path and the retention job read them. */
export interface OrgPrivacy {
  capture: CaptureMode;
  /** OpenAI's `safety_identifier` added to model calls that lack one */
  safetyIdentifier: boolean;
  /** bodies and text are cleared after this many days; null keeps them */
  contentRetentionDays: number | null;
  /** whole exchanges are deleted after this many days; null keeps them */
  retentionDays: number | null;
}

export const DEFAULT_PRIVACY: OrgPrivacy = { capture: 'full', safetyIdentifier: false, contentRetentionDays: null, retentionDays: null };

export const isCaptureMode = (value: unknown): value is CaptureMode => (CAPTURE_MODES as readonly unknown[]).includes(value);

export function parseCaptureMode(raw: string | undefined, param = 'capture_mode'): CaptureMode {
  if (!isCaptureMode(raw)) throw AppException.invalid(`${param} must be one of ${CAPTURE_MODES.join(', ')}`, param);
  return raw;
}

/** The longest retention a setting takes: 100 years. */
export const MAX_RETENTION_DAYS = 36_500;

/** A retention in days (a whole number from 1 to 36,500), or `off` / null for "keep". */
export function parseRetentionDays(raw: string | number | null | undefined, param: string): number | null {
  if (raw === null || raw === undefined || raw === 'off') return null;
  const n = typeof raw === 'number' ? raw : /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_RETENTION_DAYS) {
    throw AppException.invalid(`${param} must be a whole number of days from 1 to ${MAX_RETENTION_DAYS}, or off`, param);
  }
  return n;
}

/** Bodies cannot outlive the exchange that holds them: content retention at most the exchange retention. */
export function checkRetention(contentDays: number | null, days: number | null): void {
  if (days !== null && contentDays !== null && contentDays > days) {
    throw AppException.invalid(`content retention (${contentDays} days) cannot be longer than exchange retention (${days} days)`, 'content_retention_days');
  }
}
