/** Half-open reporting period [from, to). */
export interface ReportPeriod {
  from: Date;
  to: Date;
}

/** Requests, errors, tokens and cost of one (persona version, UTC day) slice of the period. */
export interface PersonaSliceRow {
  version: number | null;
  day: string;
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost: number;
}

export interface PersonaPeopleRow {
  users: number;
  sessions: number;
}

export interface PersonaLatencyRow {
  avg: number | null;
  /** [p50, p95], or null without any latency */
  pct: (number | null)[] | null;
}

/** Ratings with one value given to exchanges of one (persona version, UTC day) slice. */
export interface RatingSliceRow {
  version: number | null;
  day: string;
  rating: number;
  count: number;
}

export interface AnalysisCountRow {
  /** the persona version of the analysed exchanges (rolled-up ones keep theirs) */
  version: number | null;
  /** counted from the rollups of exchanges retention deleted */
  rolled: boolean;
  analysis_type: string;
  primary_category: string;
  count: number;
}

/** Which keys of the usage report to read: the keys after `after` in `order`, at most `limit` of them. */
export interface UsageReportPage {
  /** at most this many keys; null: all of them */
  limit: number | null;
  /** only the keys ranked after this one */
  after?: string;
  order: 'key' | 'cost';
}

export interface UsageReport {
  /**
   * the rows of the page's keys, in its order (a key's proxy row before its analysis row), as the JSON text of the
   * API's `data` array (see USAGE_ROW_JSON)
   */
  json: string;
  /** the first and the last row's key */
  firstKey: string | null;
  lastKey: string | null;
  /** more keys follow the page's */
  hasMore: boolean;
  /** false: the cursor key is not among the report's keys */
  cursorFound: boolean;
}

/** Whose recorded cost to sum, from the start of the month, with the part since the start of the day. */
export interface SpendQuery {
  orgId: string;
  /** internal user id; null for the whole organization */
  userId: string | null;
  monthStart: number;
  dayStart: number;
}

/** Recorded cost in USD since the start of the day and of the month. */
export interface SpendSince {
  day: number;
  month: number;
}

// The report queries are aggregates only, the database does the counting (no exchange row is loaded into the
// process). Money and token sums come back as float8 so the driver returns numbers.

const UTC_DAY = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')`;
/** the UTC date of an exchange as a date (cheaper to group by than text; formatted after grouping) */
export const UTC_DATE = `(e.created_at AT TIME ZONE 'UTC')::date`;

/** An exchange that did not complete and is not still running counts as an error. */
export const IS_ERROR = `status NOT IN ('completed', 'pending')`;

/**
 * The persona's exchanges in the period. $1 persona, $2 organization, $3/$4 the period. Served by the covering
 * index ix_exchanges_persona_analytics (migration AddAnalyticsIndexes) as an index-only scan.
 */
export const PERSONA_EXCHANGES = `e.persona_id = $1 AND e.organization_id = $2 AND e.created_at >= $3::timestamptz AND e.created_at < $4::timestamptz`;

/**
 * The persona's judgements (ratings, alias r, or analysis results, alias a) of its exchanges in the period, by
 * the exchange's time they carry (migration JudgementsKnowTheirExchange): $1 persona, $2 organization, $3/$4 the
 * period. Served by the judgements' (organization, persona, exchange time) covering indexes, exchanges unread.
 */
export const JUDGED_EXCHANGES = (alias: string) =>
  `${alias}.organization_id = $2 AND ${alias}.persona_id = $1 AND ${alias}.exchange_created_at >= $3::timestamptz AND ${alias}.exchange_created_at < $4::timestamptz`;
/** the UTC date of a judged exchange */
export const JUDGED_DATE = (alias: string) => `(${alias}.exchange_created_at AT TIME ZONE 'UTC')::date`;

/** Group keys of the usage report, per source; only these fixed expressions are ever put into the SQL. */
export const USAGE_KEYS = {
  user: { proxy: 'e.external_user_id', analysis: 'u.external_id' },
  model: { proxy: 'e.model', analysis: 'a.model' },
  persona: { proxy: 'e.persona_id::text', analysis: 'a.persona_id::text' },
  day: { proxy: UTC_DAY('e.created_at'), analysis: UTC_DAY('a.created_at') },
} as const satisfies Record<string, { proxy: string; analysis: string }>;
export type UsageGroup = keyof typeof USAGE_KEYS;
/** The same keys over the daily rollups (alias r; users joined as ru). */
export const ROLLED_USAGE_KEYS: Record<UsageGroup, string> = {
  user: 'ru.external_id',
  model: 'r.model',
  persona: 'r.persona_id::text',
  day: `to_char(r.day, 'YYYY-MM-DD')`,
};

/**
 * The same keys over the daily usage of stored rows (usage_daily and its changes not merged yet, alias d): the
 * dimension whose rows are read, its column in the changes, and the key made of a row. A day's total is the sum of
 * its 'model' rows; a user's rows are keyed by their X-User-ID (migration DailyUsageNamesUsers), as the answer is.
 */
export const DAILY_USAGE_KEYS: Record<UsageGroup, { dimension: 'user' | 'model' | 'persona'; changesKey: string; key: string }> = {
  user: { dimension: 'user', changesKey: 'external_user_id', key: 'd.key' },
  model: { dimension: 'model', changesKey: 'model', key: 'd.key' },
  persona: { dimension: 'persona', changesKey: 'persona_id::text', key: 'd.key' },
  day: { dimension: 'model', changesKey: 'model', key: `to_char(d.day, 'YYYY-MM-DD')` },
};

/**
 * How a period is read: whole UTC days [days[0], days[1]) from the daily usage, and at each end of the period the
 * stored rows of a range of time: [edges[0], edges[1]) counted with signs[0], [edges[2], edges[3]) with signs[1].
 * An end that cuts a day is read the cheaper of two exact ways, by the shorter span of time (the fewer rows): the
 * part of the day inside the period, added (+1); or the whole day from the daily usage, less the rest of the day
 * (-1). So a period ending now counts its last day whole and takes off what was stored after now, which is nothing:
 * it reads no rows of that day. A period within one day has no whole day: it is read whole from the stored rows.
 */
export function wholeDays(period: ReportPeriod): { days: [string, string]; edges: [string, string, string, string]; signs: [1 | -1, 1 | -1] } {
  const DAY = 86_400_000;
  const from = period.from.getTime();
  const to = period.to.getTime();
  const first = Math.ceil(from / DAY) * DAY;
  const last = Math.floor(to / DAY) * DAY;
  const iso = (ms: number) => new Date(ms).toISOString();
  const day = (ms: number) => iso(ms).slice(0, 10);
  if (first >= last) return { days: [day(first), day(first)], edges: [iso(from), iso(to), iso(to), iso(to)], signs: [1, 1] };
  // the day before the first whole one, whole, less its hours before the period
  const startWhole = first - from > DAY / 2;
  // the day after the last whole one, whole, less its hours after the period
  const endWhole = to - last > DAY / 2;
  return {
    days: [day(startWhole ? first - DAY : first), day(endWhole ? last + DAY : last)],
    edges: [startWhole ? iso(first - DAY) : iso(from), startWhole ? iso(from) : iso(first), endWhole ? iso(to) : iso(last), endWhole ? iso(last + DAY) : iso(to)],
    signs: [startWhole ? -1 : 1, endWhole ? -1 : 1],
  };
}

/**
 * The rolled-up days (usage_rollups, analysis_rollups: exchanges deleted by retention) a period counts: a day
 * whose start lies in [from, to), so consecutive periods never count a day twice. $5/$6 in the persona queries.
 */
export function rolledDays(period: ReportPeriod): [string, string] {
  const ceilDay = (d: Date) => new Date(Math.ceil(d.getTime() / 86_400_000) * 86_400_000).toISOString().slice(0, 10);
  return [ceilDay(period.from), ceilDay(period.to)];
}

/** The persona's rolled-up exchanges in the period (alias r). $1 persona, $2 organization, $5/$6 rolledDays. */
export const PERSONA_ROLLUPS = `r.source = 'proxy' AND r.persona_id = $1 AND r.organization_id = $2 AND r.day >= $5::date AND r.day < $6::date`;

/**
 * A usage row as the JSON text the API answers (`{"key", "source", "requests", "tokens": {"input", "output",
 * "total"}, "cost", "errors"}`), made by the database with its grouped columns (alias a) so that the process sends
 * the rows on as they come instead of parsing and printing again some thousands of them (every user of a busy
 * organization's month). The key is escaped by to_json. Token sums (of bigint columns, always finite) are printed
 * as PostgreSQL prints a float8: its shortest exact form, which JSON reads as the very value. `cost` is rounded to
 * the money decimals as the process rounds money, Math.round(x·scale) / scale (floor(x·scale + 0.5) / scale in
 * float8; $scale is 10^decimals), and printed in decimals, never with an exponent (0.0000033, not 3.3e-06: a
 * float8's own text where it has none, which is the common case and the cheapest); one that is not finite, which
 * JSON cannot hold, is null, as the object answer printed it.
 */
export function USAGE_ROW_JSON(a: string, scale: string): string {
  const c = `(floor(${a}.cost * ${scale} + 0.5) / ${scale})`;
  const cost = `CASE WHEN ${c} = 0 OR (abs(${c}) >= 1e-4 AND abs(${c}) < 1e15) THEN ${c}::text WHEN ${c} - ${c} = 0 THEN trim_scale(${c}::numeric)::text ELSE 'null' END`;
  return (
    `'{"key":' || coalesce(to_json(${a}.key)::text, 'null') || ',"source":"' || ${a}.source || '","requests":' || ${a}.requests` +
    ` || ',"tokens":{"input":' || ${a}.input_tokens || ',"output":' || ${a}.output_tokens || ',"total":' || ${a}.total_tokens` +
    ` || '},"cost":' || ${cost} || ',"errors":' || ${a}.errors || '}'`
  );
}
