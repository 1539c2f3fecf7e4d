import { AppException } from '../common/app-exception';

/** Half-open reporting period [from, to). */
export interface Period {
  from: Date;
  to: Date;
}

export const DEFAULT_PERIOD_DAYS = 30;

export const USAGE_GROUPS = ['user', 'model', 'persona', 'day'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

// Date, or date-time with optional seconds/fraction and an optional zone; a value without a zone is read as UTC.
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

function parseInstant(raw: unknown, param: string): Date | undefined {
  if (raw === undefined || raw === '') return undefined;
  const invalid = () => AppException.invalid(`${param} must be an ISO-8601 date or date-time (e.g. 2026-06-05T18:30:00Z)`, param);
  if (typeof raw !== 'string') throw invalid();
  const m = ISO_8601.exec(raw.trim());
  if (!m) throw invalid();
  const [, y, mo, d, h = '00', mi = '00', s = '00', zone] = m;
  // Date.parse rolls 2026-02-30 over into March; check the calendar fields ourselves.
  const fields = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)));
  if (
    fields.getUTCFullYear() !== Number(y) ||
    fields.getUTCMonth() !== Number(mo) - 1 ||
    fields.getUTCDate() !== Number(d) ||
    fields.getUTCHours() !== Number(h) ||
    fields.getUTCMinutes() !== Number(mi) ||
    fields.getUTCSeconds() !== Number(s)
  ) {
    throw invalid();
  }
  let text = raw.trim().replace(' ', 'T');
  if (!m[4]) text += 'T00:00:00';
  if (!zone) text += 'Z';
  else if (/^[+-]\d{2}$/.test(zone)) text += ':00';
  else if (/^[+-]\d{4}$/.test(zone)) text = text.slice(0, -2) + ':' + text.slice(-2);
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw invalid();
  return date;
}

/**
 * `?from=&to=` (ISO-8601). Without `to`: now; without `from`: 30 days before `to`. `from` is inclusive and `to`
 * exclusive, so consecutive periods never count an exchange twice.
 */
export function parsePeriod(query: Record<string, unknown>, now = new Date()): Period {
  const from = parseInstant(query.from, 'from');
  const to = parseInstant(query.to, 'to') ?? now;
  const start = from ?? new Date(to.getTime() - DEFAULT_PERIOD_DAYS * 86_400_000);
  if (start.getTime() > to.getTime()) throw AppException.invalid('from must not be later than to', 'from');
  return { from: start, to };
}

/** `?group_by=` (default `day`). */
export function parseUsageGroup(query: Record<string, unknown>): UsageGroup {
  const raw = query.group_by;
  if (raw === undefined || raw === '') return 'day';
  if (typeof raw !== 'string' || !(USAGE_GROUPS as readonly string[]).includes(raw)) {
    throw AppException.invalid(`group_by must be one of ${USAGE_GROUPS.join(', ')}`, 'group_by');
  }
  return raw as UsageGroup;
}
