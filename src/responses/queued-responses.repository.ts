import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { ExchangeStatus, TokenUsage } from '../exchanges/recorder/exchange-record';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import { asJsonString, pgBigint, pgFloat, pgInt4, pgJson, pgText } from '../exchanges/recorder/record-values';

/** The record of a response made through the proxy, as following it and answering for it need it. */
export interface ResponseRecord {
  /** the exchange's req_ id */
  id: string;
  organizationId: string;
  /** internal user id */
  userId: string;
  /** null only for a queued answer that named no id (it cannot be followed) */
  responseId: string | null;
  status: string;
  keyId: string | null;
  keySource: string | null;
  model: string | null;
  createdAt: Date;
  /** the stored response object (read for an answer only) */
  responseBody?: unknown;
  /** what the record stores (full, redacted, metadata): a completion stores the ended response likewise */
  captureMode: string;
}

/** How a response that ended upstream is recorded. */
export interface EndedResponse {
  status: ExchangeStatus;
  /** the response object as JSON text (null: not stored, capture mode metadata) */
  responseBody: string | null;
  outputText: string | null;
  error: unknown;
  /** 'estimate': the upstream reported none, and the estimate recorded at the start stays */
  usage: TokenUsage | null | 'estimate';
  cost: number | null;
  latencyMs: number;
  completedAt: Date;
}

/** What the record held before it was completed: what the call had counted toward the limits and metrics. */
export interface CountedBefore {
  cost: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  totalTokens: number | null;
}

/**
 * A record whose response the upstream had not finished when last seen: queued (being followed), or a background
 * response whose following was given up (interrupted) or whose stream its client left (client_aborted: the
 * upstream goes on), its stored object still queued or in progress, which a client's retrieve may still complete.
 */
const UNFINISHED = `(x.status = 'queued' OR (x.status IN ('interrupted', 'client_aborted') AND x.response_body->>'background' = 'true'
  AND x.response_body->>'status' IN ('queued', 'in_progress')))`;

const RECORD_COLUMNS = `x.id, x.organization_id, x.user_id, x.response_id, x.status, x.key_id, x.key_source, x.model, x.created_at, x.capture_mode`;

interface RecordRow {
  id: string;
  organization_id: string;
  user_id: string;
  response_id: string | null;
  status: string;
  key_id: string | null;
  key_source: string | null;
  model: string | null;
  created_at: Date | string;
  capture_mode: string;
  response_body?: unknown;
}

function toRecord(r: RecordRow): ResponseRecord {
  const record: ResponseRecord = {
    id: r.id,
    organizationId: r.organization_id,
    userId: r.user_id,
    responseId: r.response_id,
    status: r.status,
    keyId: r.key_id,
    keySource: r.key_source,
    model: r.model,
    createdAt: new Date(r.created_at),
    captureMode: r.capture_mode ?? 'full',
  };
  if ('response_body' in r) record.responseBody = r.response_body;
  return record;
}

/** Whether a record read with its body is of a response the upstream had not finished when last seen (as UNFINISHED). */
export function isUnfinished(r: ResponseRecord): boolean {
  if (r.status === 'queued') return true;
  if (r.status !== 'interrupted' && r.status !== 'client_aborted') return false;
  const body = r.responseBody as { background?: unknown; status?: unknown } | null | undefined;
  return !!body && typeof body === 'object' && body.background === true && (body.status === 'queued' || body.status === 'in_progress');
}

/** A value PostgreSQL refused although it was made storable (e.g. a number beyond numeric's range): SQLSTATE 22 or 54. */
const isDataError = (err: unknown) => /^(22|54)/.test(String((err as { code?: unknown }).code ?? ''));

/**
 * The exchange records of background responses: finding one by its response id, the leases by which one server
 * process at a time follows a queued response, and the completion of a response that ended. Every write is one
 * autocommitted statement; a completion applies only to a record still unfinished, so a response is completed once
 * however many processes (followers, clients' retrieves) see it end.
 */
@Injectable()
export class QueuedResponsesRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly recorder: ExchangeRecorder,
  ) {}

  /**
   * The organization's newest exchange that stored a response object with this id, with that object (or that made
   * it without storing it: capture mode redacted or metadata).
   */
  async findByResponseId(orgId: string, responseId: string): Promise<ResponseRecord | null> {
    // a record completed after its answer left is read as completed
    await this.recorder.caughtUp();
    const rows: RecordRow[] = await this.dataSource.query(
      `SELECT ${RECORD_COLUMNS}, x.response_body FROM exchanges x
        WHERE x.organization_id = $1 AND x.response_id = $2 AND (x.response_body IS NOT NULL OR x.capture_mode <> 'full')
          AND x.upstream_deleted_at IS NULL
        ORDER BY x.created_at DESC LIMIT 1`,
      [orgId, responseId],
    );
    return rows.length ? toRecord(rows[0]) : null;
  }

  /**
   * Takes up to `limit` queued records nobody follows (never claimed, or their lease lapsed), oldest first, for
   * `leaseMs`. Rows another process is claiming at this moment are skipped, not waited for.
   */
  async claim(owner: string, leaseMs: number, limit: number): Promise<ResponseRecord[]> {
    const rows: RecordRow[] = await this.query(
      `UPDATE exchanges x SET follow_owner = $1, follow_until = now() + make_interval(secs => $2)
        WHERE x.id IN (SELECT q.id FROM exchanges q
                        WHERE q.status = 'queued' AND (q.follow_until IS NULL OR q.follow_until < now())
                        ORDER BY q.created_at LIMIT $3
                        FOR UPDATE SKIP LOCKED)
        RETURNING ${RECORD_COLUMNS}`,
      [owner, leaseMs / 1000, limit],
    );
    return rows.map(toRecord);
  }

  /** Extends the owner's leases on these records; returns the ids it still holds (the others ended, or were taken over). */
  async renew(owner: string, ids: string[], leaseMs: number): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const rows: { id: string }[] = await this.query(
      `UPDATE exchanges x SET follow_until = now() + make_interval(secs => $3)
        WHERE x.id = ANY($2::text[]) AND x.follow_owner = $1 AND x.status = 'queued'
        RETURNING x.id`,
      [owner, ids, leaseMs / 1000],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** Gives up the owner's leases on these records, so another process takes them over at once. */
  async release(owner: string, ids: string[]): Promise<void> {
    if (!ids.length) return;
    await this.query(
      `UPDATE exchanges x SET follow_owner = NULL, follow_until = NULL WHERE x.id = ANY($2::text[]) AND x.follow_owner = $1 AND x.status = 'queued'`,
      [owner, ids],
    );
  }

  /**
   * Completes the record of a response that ended upstream, if it is still unfinished. Returns what it had counted
   * before (the estimate made when the response was created), or null when it was completed already.
   */
  async complete(id: string, ended: EndedResponse): Promise<CountedBefore | null> {
    const keep = ended.usage === 'estimate';
    const u = ended.usage === 'estimate' ? null : ended.usage;
    const params = (body: string | null) => [
      id,
      ended.status,
      body,
      pgText(ended.outputText),
      pgJson(ended.error),
      keep,
      pgBigint(u?.input),
      pgBigint(u?.output),
      pgBigint(u?.total),
      pgBigint(u?.cached),
      pgBigint(u?.reasoning),
      pgFloat(ended.cost),
      pgInt4(ended.latencyMs),
      ended.completedAt.toISOString(),
    ];
    const sql = `WITH before AS (
        SELECT x.id, x.cost, x.input_tokens, x.output_tokens, x.total_tokens FROM exchanges x
         WHERE x.id = $1 AND ${UNFINISHED} FOR UPDATE)
      UPDATE exchanges e SET status = $2, response_body = $3::jsonb, output_text = $4, error = $5::jsonb,
             input_tokens = CASE WHEN $6 THEN e.input_tokens ELSE $7::int8 END,
             output_tokens = CASE WHEN $6 THEN e.output_tokens ELSE $8::int8 END,
             total_tokens = CASE WHEN $6 THEN e.total_tokens ELSE $9::int8 END,
             cached_tokens = CASE WHEN $6 THEN e.cached_tokens ELSE $10::int8 END,
             reasoning_tokens = CASE WHEN $6 THEN e.reasoning_tokens ELSE $11::int8 END,
             cost = CASE WHEN $6 THEN e.cost ELSE $12::float8 END,
             latency_ms = $13, completed_at = $14, follow_owner = NULL, follow_until = NULL
        FROM before WHERE e.id = before.id
      RETURNING before.cost, before.input_tokens, before.output_tokens, before.total_tokens`;
    let rows: { cost: number | null; input_tokens: string | null; output_tokens: string | null; total_tokens: string | null }[];
    const body = pgJson(ended.responseBody);
    try {
      rows = await this.query(sql, params(body));
    } catch (err) {
      // the response is still recorded as ended, with its object kept as text
      if (!isDataError(err)) throw err;
      rows = await this.query(sql, params(body === null ? null : asJsonString(body)));
    }
    if (!rows.length) return null;
    const n = (v: string | number | null) => (v === null ? null : Number(v));
    return { cost: n(rows[0].cost), inputTokens: n(rows[0].input_tokens), outputTokens: n(rows[0].output_tokens), totalTokens: n(rows[0].total_tokens) };
  }

  /** Closes a queued record that can no longer be followed as interrupted; false when it was no longer queued. */
  async interrupt(id: string, error: unknown, latencyMs: number, completedAt: Date): Promise<boolean> {
    const rows: unknown[] = await this.query(
      `UPDATE exchanges x SET status = 'interrupted', error = $2::jsonb, latency_ms = $3, completed_at = $4, follow_owner = NULL, follow_until = NULL
        WHERE x.id = $1 AND x.status = 'queued' RETURNING x.id`,
      [id, pgJson(error), pgInt4(latencyMs), completedAt.toISOString()],
    );
    return rows.length > 0;
  }

  /** The rows of an UPDATE … RETURNING (the driver answers [rows, count] for it). */
  private async query<T>(sql: string, params: unknown[]): Promise<T[]> {
    const result: unknown = await this.dataSource.query(sql, params);
    return (Array.isArray(result) && Array.isArray(result[0]) ? result[0] : result) as T[];
  }
}
