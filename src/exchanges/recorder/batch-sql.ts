/**
 * The statements that write exchange records: which columns, in which order, with which casts; one multi-row
 * statement per batch, padded to a few shapes so prepared statements stay few. Pure: no connection, no state.
 */
import type { ExchangeOutcome, PendingExchange } from './exchange-record';
import { asJsonString, pgBigint, pgFloat, pgInt4, pgJson, pgText } from './record-values';

/**
 * How far a row PostgreSQL still refused after the values were made storable falls back: its jsonb values as
 * JSON strings of their text (a number beyond numeric's range, say), then without them.
 */
export type Degrade = 0 | 1 | 2;

/** An open call (a call's record while it runs), or a row written whole when its call ended before its open call was sent. */
export interface BatchInsert {
  row: PendingExchange;
  outcome?: ExchangeOutcome;
  completedAt?: Date;
  degrade?: Degrade;
  /** a row written again (its earlier attempt may have committed after all): the INSERT is idempotent */
  again?: boolean;
}

/** A completion: the call's open call is deleted and its exchange written whole. */
export interface BatchUpdate {
  row: ExchangeOutcome;
  completedAt: Date;
  degrade?: Degrade;
}

export interface BatchQuery {
  name?: string;
  text: string;
  values: unknown[];
}

type Cast = 'text' | 'uuid' | 'int' | 'int8' | 'boolean' | 'jsonb' | 'timestamptz' | 'float8';
const INSERT_FIELDS: [string, Cast][] = [
  ['id', 'text'],
  ['organization_id', 'uuid'],
  ['user_id', 'uuid'],
  ['external_user_id', 'text'],
  ['session_id', 'text'],
  ['persona_id', 'uuid'],
  ['persona_version', 'int'],
  ['endpoint', 'text'],
  ['model', 'text'],
  ['stream', 'boolean'],
  ['request_body', 'jsonb'],
  ['key_id', 'uuid'],
  ['key_source', 'text'],
  ['instance_id', 'text'],
  ['created_at', 'timestamptz'],
  ['method', 'text'],
  ['route', 'text'],
  ['request_content_type', 'text'],
  ['capture_mode', 'text'],
];
const UPDATE_FIELDS: [string, Cast][] = [
  ['id', 'text'],
  ['status', 'text'],
  ['upstream_status', 'int'],
  ['response_id', 'text'],
  ['response_body', 'jsonb'],
  ['output_text', 'text'],
  ['error', 'jsonb'],
  ['input_tokens', 'int8'],
  ['output_tokens', 'int8'],
  ['total_tokens', 'int8'],
  ['cached_tokens', 'int8'],
  ['reasoning_tokens', 'int8'],
  ['cost', 'float8'],
  ['latency_ms', 'int'],
  ['time_to_first_byte_ms', 'int'],
  ['completed_at', 'timestamptz'],
  ['upstream_request_id', 'text'],
  ['object_id', 'text'],
  ['request_bytes', 'int8'],
  ['response_content_type', 'text'],
  ['response_bytes', 'int8'],
  ['body_truncated', 'boolean'],
  ['key_attempts', 'jsonb'],
];
/** an inserted row: the pending fields, then the outcome's (status first; null while pending) */
const OUTCOME_FIELDS = UPDATE_FIELDS.slice(1);
const INSERT_ROW: [string, Cast][] = [...INSERT_FIELDS, ...OUTCOME_FIELDS];
/**
 * Pending fields an outcome may fill in when they were not known before the upstream call (the model and the
 * fields of a multipart upload, read while it streams through): a completion sets them only when it has them.
 */
const LATE_FIELDS: [string, Cast][] = [
  ['model', 'text'],
  ['request_body', 'jsonb'],
  ['key_id', 'uuid'],
  ['key_source', 'text'],
];
/** a completion's row: its outcome, then the late fields it has (null: keep the open call's) */
const COMPLETION_ROW: [string, Cast][] = [...UPDATE_FIELDS, ...LATE_FIELDS.map(([c, cast]): [string, Cast] => [`late_${c}`, cast])];
// Postgres allows 65535 parameters per statement
export const MAX_BATCH = 1000;
/** the largest padded batch written with a prepared statement (larger ones are planned each time) */
const MAX_PREPARED_ROWS = 64;

/** 0, 1, 2, 4, … up to MAX_PREPARED_ROWS; beyond that the size itself */
export function paddedSize(n: number): number {
  if (n <= 1 || n > MAX_PREPARED_ROWS) return n;
  return 2 ** Math.ceil(Math.log2(n));
}

const sqlCache = new Map<string, string>();

/** The columns of an open call: those of a pending row (migration OpenCalls). */
export const OPEN_COLUMNS = INSERT_FIELDS.map(([c]) => c);

/**
 * The statement writing `opens` open calls (a call's record while it runs), `wholes` exchanges written whole and
 * `completions` completions (an open call deleted and its exchange written whole, in one go). Rows with a null id
 * are padding.
 */
export function batchSql(opens: number, wholes: number, completions: number, idempotent: boolean): string {
  const key = `${opens}:${wholes}:${completions}:${idempotent}`;
  let sql = sqlCache.get(key);
  if (sql) return sql;
  let n = 0;
  const rows = (count: number, fields: [string, Cast][]) =>
    Array.from({ length: count }, () => `(${fields.map(([, cast]) => `$${++n}::${cast}`).join(', ')})`).join(', ');
  const columns = INSERT_ROW.map(([c]) => c).join(', ');
  const ctes: string[] = [];
  // an open call written again (its earlier attempt may have committed after all) is not written twice
  const open = opens
    ? `INSERT INTO open_calls (${OPEN_COLUMNS.join(', ')}) SELECT * FROM (VALUES ${rows(opens, INSERT_FIELDS)}) AS o(${OPEN_COLUMNS.join(', ')}) WHERE o.id IS NOT NULL${idempotent ? ' ON CONFLICT (id) DO NOTHING' : ''}`
    : '';
  if (open) ctes.push(`opened AS (${open})`);
  const sources: string[] = [];
  if (wholes) sources.push(`SELECT * FROM (VALUES ${rows(wholes, INSERT_ROW)}) AS w(${columns}) WHERE w.id IS NOT NULL`);
  if (completions) {
    // the open call gives the pending columns (an outcome may fill in those learned late), the completion the rest
    ctes.push(`outcome AS (SELECT * FROM (VALUES ${rows(completions, COMPLETION_ROW)}) AS v(${COMPLETION_ROW.map(([c]) => c).join(', ')}) WHERE v.id IS NOT NULL)`);
    ctes.push(`closed AS (DELETE FROM open_calls o USING outcome v WHERE o.id = v.id RETURNING o.*)`);
    const late = new Set(LATE_FIELDS.map(([c]) => c));
    const picked = INSERT_ROW.map(([c], i) =>
      i < INSERT_FIELDS.length ? (late.has(c) ? `COALESCE(v.late_${c}, d.${c})` : `d.${c}`) : `v.${c}`,
    );
    sources.push(`SELECT ${picked.join(', ')} FROM closed d JOIN outcome v ON v.id = d.id`);
  }
  // A row written again is idempotent: one already there (an earlier attempt that committed after its client gave
  // up on it) is not written twice; a pending one (written by an earlier version) takes the outcome of a row
  // written whole, and so does one marked interrupted by a sweep before the outcome could be written. A first
  // attempt cannot meet its own row (the server cancels a write past RECORD_WRITE_TIMEOUT_MS; a completion's row
  // comes from its open call, deleted by the same statement), so it spares the speculative insertion's cost. The
  // key is (id, created_at), the table being partitioned by created_at: a row written again carries the
  // created_at of its first attempt.
  const outcomeColumns = UPDATE_FIELDS.slice(1).map(([c]) => c);
  const onConflict = idempotent
    ? ` ON CONFLICT (id, created_at) DO UPDATE SET ${outcomeColumns.map((c) => `${c} = excluded.${c}`).join(', ')}
        WHERE x.status IN ('pending', 'interrupted') AND excluded.status <> 'pending'`
    : '';
  const head = ctes.length ? `WITH ${ctes.join(', ')} ` : '';
  if (sources.length) {
    sql = `${head}INSERT INTO exchanges AS x (${columns}) ${sources.join(' UNION ALL ')}${onConflict} RETURNING x.id`;
  } else sql = open;
  if (sqlCache.size < 1000) sqlCache.set(key, sql);
  return sql;
}

const same = (v: unknown) => v;
/** every column passes through its type's sanitizer on the way to the database */
const STORABLE: Record<Cast, (v: any) => unknown> = {
  text: pgText,
  uuid: same,
  int: pgInt4,
  int8: pgBigint,
  boolean: same,
  jsonb: pgJson,
  timestamptz: same,
  float8: pgFloat,
};

function degradedJson(v: unknown, degrade: Degrade): string | null {
  if (degrade === 2 || v === null || v === undefined) return null;
  if (typeof v === 'string') return asJsonString(v);
  const text = pgJson(v);
  return text === null ? null : asJsonString(text);
}

function pushValues(params: unknown[], fields: [string, Cast][], values: unknown[], degrade: Degrade): void {
  for (let i = 0; i < fields.length; i++) {
    const cast = fields[i][1];
    params.push(cast === 'jsonb' && degrade ? degradedJson(values[i], degrade) : STORABLE[cast](values[i]));
  }
}

/** The outcome's columns (UPDATE_FIELDS after id), in order. */
function outcomeValues(r: ExchangeOutcome, completedAt: Date): unknown[] {
  const u = r.usage;
  return [
    r.status,
    r.upstreamStatus,
    r.responseId,
    r.responseBody,
    r.outputText,
    r.error,
    u?.input,
    u?.output,
    u?.total,
    u?.cached,
    u?.reasoning,
    r.cost,
    r.latencyMs,
    r.timeToFirstByteMs,
    completedAt.toISOString(),
    r.upstreamRequestId ?? null,
    r.objectId ?? null,
    r.requestBytes ?? null,
    r.responseContentType ?? null,
    r.responseBytes ?? null,
    r.bodyTruncated ?? null,
    r.keyAttempts ?? null,
  ];
}

/** The pending columns of a row (INSERT_FIELDS), with what its outcome learned late when it is written whole. */
function pendingValues(item: BatchInsert, instanceId: string | null): unknown[] {
  const late = item.outcome?.late;
  const r = late
    ? {
        ...item.row,
        model: late.model ?? item.row.model,
        requestBody: late.requestBody ?? item.row.requestBody,
        keyId: late.keyId ?? item.row.keyId,
        keySource: late.keySource ?? item.row.keySource,
      }
    : item.row;
  return [
    r.id,
    r.organizationId,
    r.userId,
    r.externalUserId,
    r.sessionId,
    r.personaId,
    r.personaVersion,
    r.endpoint,
    r.model,
    r.stream,
    r.requestBody,
    r.keyId,
    r.keySource,
    instanceId,
    // ISO text: cheaper than the driver's Date serialization, the same instant
    r.createdAt.toISOString(),
    r.method ?? null,
    r.route ?? null,
    r.requestContentType ?? null,
    r.capture?.mode ?? 'full',
  ];
}

function pushNulls(params: unknown[], count: number): void {
  for (let c = 0; c < count; c++) params.push(null);
}

/**
 * The one statement writing a batch, with its parameters: open calls (inserts without an outcome), rows written
 * whole (inserts with one) and completions. `prepared`: a named statement, each part padded to a few sizes
 * (padding rows have a null id and are skipped), so Postgres parses and plans each shape once per connection
 * instead of once per flush (about half its CPU time for a one-row flush).
 */
export function batchQuery(inserts: BatchInsert[], updates: BatchUpdate[], instanceId: string | null, prepared: boolean): BatchQuery {
  const opens: BatchInsert[] = [];
  const wholes: BatchInsert[] = [];
  for (const item of inserts) (item.outcome ? wholes : opens).push(item);
  const size = (n: number) => (prepared ? paddedSize(n) : n);
  const openRows = size(opens.length);
  const wholeRows = size(wholes.length);
  const completionRows = size(updates.length);
  const params: unknown[] = [];
  for (let i = 0; i < openRows; i++) {
    const item = opens[i];
    if (item) pushValues(params, INSERT_FIELDS, pendingValues(item, instanceId), item.degrade ?? 0);
    else pushNulls(params, INSERT_FIELDS.length);
  }
  for (let i = 0; i < wholeRows; i++) {
    const item = wholes[i];
    if (!item) {
      pushNulls(params, INSERT_ROW.length);
      continue;
    }
    const degrade = item.degrade ?? 0;
    pushValues(params, INSERT_FIELDS, pendingValues(item, instanceId), degrade);
    pushValues(params, OUTCOME_FIELDS, outcomeValues(item.outcome!, item.completedAt!), degrade);
  }
  for (let i = 0; i < completionRows; i++) {
    const item = updates[i];
    if (!item) {
      pushNulls(params, COMPLETION_ROW.length);
      continue;
    }
    params.push(item.row.id);
    pushValues(params, OUTCOME_FIELDS, outcomeValues(item.row, item.completedAt), item.degrade ?? 0);
    const late = item.row.late;
    pushValues(params, LATE_FIELDS, [late?.model ?? null, late?.requestBody ?? null, late?.keyId ?? null, late?.keySource ?? null], item.degrade ?? 0);
  }
  const idempotent = inserts.some((item) => item.again);
  const text = batchSql(openRows, wholeRows, completionRows, idempotent);
  return prepared && Math.max(openRows, wholeRows, completionRows) <= MAX_PREPARED_ROWS
    ? { name: `records_${openRows}_${wholeRows}_${completionRows}${idempotent ? '_again' : ''}`, text, values: params }
    : { text, values: params };
}

/** The ids of completions the statement found no row for (its RETURNING ids, from pg or the embedded driver). */
export function missingCompletions(result: unknown, updates: BatchUpdate[]): Set<string> {
  const missing = new Set<string>();
  if (!updates.length) return missing;
  const rows = (Array.isArray(result) ? result : (result as { rows: { id: string }[] }).rows) as { id: string }[];
  const found = new Set(rows.map((r) => r.id));
  for (const item of updates) if (!found.has(item.row.id)) missing.add(item.row.id);
  return missing;
}
