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

/** A pending row, or a row written whole when its call ended before the pending row was sent. */
export interface BatchInsert {
  row: PendingExchange;
  outcome?: ExchangeOutcome;
  completedAt?: Date;
  degrade?: Degrade;
  /** a row written again (its earlier attempt may have committed after all): the INSERT is idempotent */
  again?: boolean;
}

export interface BatchUpdate {
  row: ExchangeOutcome;
  /** the pending row's created_at: with its id, the row's key (the partition it is in) */
  createdAt: Date;
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
const UPDATE_ROW: [string, Cast][] = [...UPDATE_FIELDS, ...LATE_FIELDS, ['created_at', 'timestamptz']];
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

/** The statement writing `inserts` pending rows and `updates` completions (rows with a null id are padding). */
export function batchSql(inserts: number, updates: number, idempotent: boolean): string {
  const key = `${inserts}:${updates}:${idempotent}`;
  let sql = sqlCache.get(key);
  if (sql) return sql;
  let n = 0;
  const rows = (count: number, fields: [string, Cast][]) =>
    Array.from({ length: count }, () => `(${fields.map(([, cast]) => `$${++n}::${cast}`).join(', ')})`).join(', ');
  const columns = INSERT_ROW.map(([c]) => c).join(', ');
  // A row written again is idempotent: one already there (an earlier attempt that committed after its client gave
  // up on it) is not written twice; a pending one takes the outcome of a row written whole, and so does one
  // marked interrupted by a sweep before the outcome could be written. A first attempt cannot meet its own row
  // (the server cancels a write past RECORD_WRITE_TIMEOUT_MS), so it spares the speculative insertion's cost.
  // The key is (id, created_at), the table being partitioned by created_at: a row written again carries the
  // created_at of its first attempt.
  const outcomeColumns = UPDATE_FIELDS.slice(1).map(([c]) => c);
  const onConflict = idempotent
    ? ` ON CONFLICT (id, created_at) DO UPDATE SET ${outcomeColumns.map((c) => `${c} = excluded.${c}`).join(', ')}
        WHERE x.status IN ('pending', 'interrupted') AND excluded.status <> 'pending'`
    : '';
  const insertSql = inserts
    ? `INSERT INTO exchanges AS x (${columns}) SELECT * FROM (VALUES ${rows(inserts, INSERT_ROW)}) AS v(${columns}) WHERE v.id IS NOT NULL${onConflict}`
    : '';
  const updateSql = updates
    ? `UPDATE exchanges e SET ${[
        ...UPDATE_FIELDS.slice(1).map(([c]) => `${c} = v.${c}`),
        ...LATE_FIELDS.map(([c]) => `${c} = COALESCE(v.${c}, e.${c})`),
      ].join(', ')} FROM (VALUES ${rows(updates, UPDATE_ROW)}) AS v(${UPDATE_ROW.map(([c]) => c).join(', ')})
        WHERE e.id = v.id AND e.created_at = v.created_at RETURNING e.id`
    : '';
  // A completion finds its row by the whole key (id, created_at): the partition is known, so the other months'
  // indexes are not probed (with the id alone, every partition's would be, at every completion).
  // both kinds in one statement: one round trip per flush (a row's insert and its completion never share a flush)
  sql = insertSql && updateSql ? `WITH ins AS (${insertSql}) ${updateSql}` : insertSql || updateSql;
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

/**
 * The one statement writing a batch, with its parameters. `prepared`: a named statement, the batch padded to a
 * few sizes (padding rows have a null id and are skipped), so Postgres parses and plans each shape once per
 * connection instead of once per flush (about half its CPU time for a one-row flush).
 */
export function batchQuery(inserts: BatchInsert[], updates: BatchUpdate[], instanceId: string | null, prepared: boolean): BatchQuery {
  const insertRows = prepared ? paddedSize(inserts.length) : inserts.length;
  const updateRows = prepared ? paddedSize(updates.length) : updates.length;
  const params: unknown[] = [];
  for (let i = 0; i < insertRows; i++) {
    const item = inserts[i];
    if (!item) {
      for (let c = 0; c < INSERT_ROW.length; c++) params.push(null);
      continue;
    }
    // a row written whole carries what its outcome learned late
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
    const degrade = item.degrade ?? 0;
    pushValues(
      params,
      INSERT_FIELDS,
      [
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
      ],
      degrade,
    );
    if (item.outcome) pushValues(params, OUTCOME_FIELDS, outcomeValues(item.outcome, item.completedAt!), degrade);
    else {
      params.push('pending');
      for (let c = 2; c < UPDATE_FIELDS.length; c++) params.push(null);
    }
  }
  for (let i = 0; i < updateRows; i++) {
    const item = updates[i];
    if (!item) {
      for (let c = 0; c < UPDATE_ROW.length; c++) params.push(null);
      continue;
    }
    params.push(item.row.id);
    pushValues(params, OUTCOME_FIELDS, outcomeValues(item.row, item.completedAt), item.degrade ?? 0);
    const late = item.row.late;
    pushValues(params, LATE_FIELDS, [late?.model ?? null, late?.requestBody ?? null, late?.keyId ?? null, late?.keySource ?? null], item.degrade ?? 0);
    params.push(item.createdAt.toISOString());
  }
  const idempotent = inserts.some((item) => item.again);
  const text = batchSql(insertRows, updateRows, idempotent);
  return prepared && insertRows <= MAX_PREPARED_ROWS && updateRows <= MAX_PREPARED_ROWS
    ? { name: `exchanges_${insertRows}_${updateRows}${idempotent ? '_again' : ''}`, text, values: params }
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
