import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { ExchangeEntity } from '../exchanges/exchange.entity';
import { INSTANT_KEY, inDatabaseOrder, OPEN_CALL_COLUMNS, OpenCallRow, openCallAsExchange } from '../exchanges/exchanges.repository';

/** Who an end user is in the stored data: their user row (if any) and every internal id their exchanges carry. */
export interface EndUserSubject {
  /** the users row of (organization, external id), if there is one */
  userId: string | null;
  /**
   * every internal id of this external id: the current user's, and those of earlier users of the same X-User-ID
   * (`user delete` keeps the exchanges, and a later call records a new user)
   */
  userIds: string[];
  /** whether any exchange carries the external id */
  hasExchanges: boolean;
}

/** Where a keyset page starts: after the row with this (created_at as PostgreSQL prints it, id). */
export interface PageCursor {
  at: string;
  id: string;
}

export interface RatingRow {
  id: string;
  exchange_id: string;
  persona_id: string | null;
  rating: number;
  comment: string | null;
  rated_at: Date;
  created_at: Date;
  cursor_at: string;
}

export interface AnalysisRow {
  id: string;
  exchange_id: string;
  response_id: string | null;
  config_id: string | null;
  analysis_type: string;
  status: string;
  error: string | null;
  primary_category: string | null;
  confidence: number | null;
  reasoning: string | null;
  categories: unknown;
  metadata: unknown;
  model: string;
  input_tokens: string;
  output_tokens: string;
  total_tokens: string;
  cost: number | null;
  created_at: Date;
  cursor_at: string;
}

export interface ObjectRow {
  id: string;
  route: string;
  exchange_id: string;
  created_at: Date;
  deleted_at: Date | null;
  cursor_at: string;
}

export interface KeyRow {
  id: string;
  label: string | null;
  base_url: string | null;
  last4: string;
  revoked_at: Date | null;
  created_at: Date;
}

export interface TokenRow {
  jti: string;
  scope: string | null;
  issued_at: Date;
  expires_at: Date;
}

/** What an erasure deleted, table by table. */
export interface ErasedRows {
  users: number;
  exchanges: number;
  ratings: number;
  analyses: number;
  analysis_claims: number;
  keys: number;
  limits: number;
  limit_counters: number;
  tokens: number;
  upstream_objects: number;
  audit_events_scrubbed: number;
  /** daily usage rollups that named the user, merged into the organization's rollups without a user */
  usage_rollups: number;
}

/** The erased rows the caller must announce to other processes. */
export interface ErasureEffects {
  rows: Omit<ErasedRows, 'limit_counters' | 'usage_rollups'>;
  keyIds: string[];
  tokenJtis: string[];
}

/**
 * The exchanges of (organization $1, external user id $2), and their calls in progress (open calls, whose exchange is
 * not written yet): the one definition every statement below shares.
 */
const USER_EXCHANGES = `SELECT x.id FROM exchanges x WHERE x.organization_id = $1 AND x.external_user_id = $2
  UNION ALL SELECT oc.id FROM open_calls oc WHERE oc.organization_id = $1 AND oc.external_user_id = $2`;

/**
 * One end user's rows across the tables that hold them, read for the export and deleted for the erasure. They live
 * here together, rather than as a method in each table's module, so that what "everything of this user" means is
 * written once, in one file a reviewer can check against the schema; each table's own repository keeps its other
 * reads and writes. Every statement is scoped to the organization.
 */
@Injectable()
export class EndUserDataRepository {
  constructor(private readonly dataSource: DataSource) {}

  /** The end user with this X-User-ID; with `lock`, their users row is locked (inside the caller's transaction). */
  async findSubject(manager: EntityManager | null, orgId: string, externalId: string, lock = false): Promise<EndUserSubject> {
    const m = manager ?? this.dataSource.manager;
    const users: { id: string }[] = await m.query(
      `SELECT id FROM users WHERE organization_id = $1 AND external_id = $2${lock ? ' FOR UPDATE' : ''}`,
      [orgId, externalId],
    );
    // a call in progress is one of their exchanges too (its open call)
    const fromExchanges: { user_id: string }[] = await m.query(
      `SELECT user_id FROM exchanges WHERE organization_id = $1 AND external_user_id = $2
       UNION SELECT user_id FROM open_calls WHERE organization_id = $1 AND external_user_id = $2`,
      [orgId, externalId],
    );
    const userId = users[0]?.id ?? null;
    const userIds = [...new Set([...(userId ? [userId] : []), ...fromExchanges.map((r) => r.user_id)])];
    return { userId, userIds, hasExchanges: fromExchanges.length > 0 };
  }

  async userCreatedAt(userId: string): Promise<Date | null> {
    const rows: { created_at: Date }[] = await this.dataSource.query('SELECT created_at FROM users WHERE id = $1', [userId]);
    return rows[0]?.created_at ?? null;
  }

  /** A page of the user's exchanges, oldest first; their calls in progress among them, as pending exchanges. */
  async exchangesPage(orgId: string, externalId: string, after: PageCursor | null, limit: number): Promise<{ rows: ExchangeEntity[]; next: PageCursor | null }> {
    // The open calls first: a call that ends between the two reads is then in both (exported once, as its
    // exchange), never in neither. An open call's exchange keeps its (created_at, id): the cursor holds across.
    const open: (OpenCallRow & Ordered)[] = await this.dataSource.query(
      `SELECT ${OPEN_CALL_COLUMNS}, o.request_body, o.created_at::text AS cursor_at, to_char(o.created_at AT TIME ZONE 'UTC', '${INSTANT_KEY}') AS instant
         FROM open_calls o
        WHERE o.organization_id = $1 AND o.external_user_id = $2 ${after ? 'AND (o.created_at, o.id) > ($4::timestamptz, $5::text)' : ''}
        ORDER BY o.created_at, o.id LIMIT $3`,
      after ? [orgId, externalId, limit, after.at, after.id] : [orgId, externalId, limit],
    );
    const qb = this.dataSource
      .getRepository(ExchangeEntity)
      .createQueryBuilder('e')
      .addSelect('e.created_at::text', 'cursor_at')
      .addSelect(`to_char(e.created_at AT TIME ZONE 'UTC', '${INSTANT_KEY}')`, 'instant')
      .where('e.organization_id = :orgId AND e.external_user_id = :externalId', { orgId, externalId })
      .orderBy('e.created_at', 'ASC')
      .addOrderBy('e.id', 'ASC')
      .limit(limit);
    if (after) qb.andWhere('(e.created_at, e.id) > (CAST(:at AS timestamptz), :id)', after);
    const { entities, raw } = await qb.getRawAndEntities<Ordered>();
    const stored = entities.map((row, i) => ({ row, at: raw[i].cursor_at, instant: raw[i].instant }));
    const storedIds = new Set(entities.map((e) => e.id));
    const calls = open.filter((o) => !storedIds.has(o.id)).map((o) => ({ row: openCallAsExchange(o, o.request_body ?? null), at: o.cursor_at, instant: o.instant }));
    const rows = calls.length ? (await inDatabaseOrder(this.dataSource, [...stored, ...calls], (r) => ({ id: r.row.id, instant: r.instant }))).slice(0, limit) : stored;
    const last = rows.length ? { at: rows[rows.length - 1].at, id: rows[rows.length - 1].row.id } : null;
    return { rows: rows.map((r) => r.row), next: rows.length === limit ? last : null };
  }

  /** A page of the ratings the user gave, oldest first. */
  async ratingsPage(orgId: string, userIds: string[], after: PageCursor | null, limit: number): Promise<RatingRow[]> {
    return this.dataSource.query(
      `SELECT id, exchange_id, persona_id, rating, comment, rated_at, created_at, created_at::text AS cursor_at
         FROM ratings
        WHERE organization_id = $1 AND user_id = ANY($2::uuid[])
          ${after ? 'AND (created_at, id) > ($4::timestamptz, $5::uuid)' : ''}
        ORDER BY created_at, id LIMIT $3`,
      after ? [orgId, userIds, limit, after.at, after.id] : [orgId, userIds, limit],
    );
  }

  /** A page of the analyses of the user's exchanges (completed and failed), oldest first. */
  async analysesPage(orgId: string, externalId: string, after: PageCursor | null, limit: number): Promise<AnalysisRow[]> {
    return this.dataSource.query(
      `SELECT r.id, r.exchange_id, r.response_id, r.config_id, r.analysis_type, r.status, r.error, r.primary_category, r.confidence,
              r.reasoning, r.categories, r.metadata, r.model, r.input_tokens, r.output_tokens, r.total_tokens, r.cost, r.created_at,
              r.created_at::text AS cursor_at
         FROM analysis_results r
        WHERE r.organization_id = $1 AND r.exchange_id IN (${USER_EXCHANGES})
          ${after ? 'AND (r.created_at, r.id) > ($4::timestamptz, $5::uuid)' : ''}
        ORDER BY r.created_at, r.id LIMIT $3`,
      after ? [orgId, externalId, limit, after.at, after.id] : [orgId, externalId, limit],
    );
  }

  /**
   * A page of the upstream objects (files, stored responses, vector stores, …) the user made through the proxy,
   * oldest first: what to delete upstream before an erasure, which forgets only the proxy's record of them.
   */
  async objectsPage(orgId: string, externalId: string, userIds: string[], after: PageCursor | null, limit: number): Promise<ObjectRow[]> {
    return this.dataSource.query(
      `SELECT o.id, o.route, o.exchange_id, o.created_at, o.deleted_at, o.created_at::text AS cursor_at
         FROM upstream_objects o
        WHERE o.organization_id = $1 AND (o.user_id = ANY($3::uuid[]) OR o.exchange_id IN (${USER_EXCHANGES}))
          ${after ? 'AND (o.created_at, o.id) > ($5::timestamptz, $6)' : ''}
        ORDER BY o.created_at, o.id LIMIT $4`,
      after ? [orgId, externalId, userIds, limit, after.at, after.id] : [orgId, externalId, userIds, limit],
    );
  }

  /** The user's own upstream keys (never the key itself). */
  keys(orgId: string, userIds: string[]): Promise<KeyRow[]> {
    return this.dataSource.query(
      `SELECT id, label, base_url, last4, revoked_at, created_at FROM api_keys WHERE organization_id = $1 AND user_id = ANY($2::uuid[]) ORDER BY created_at, id`,
      [orgId, userIds],
    );
  }

  /** Tokens issued pinned to the user (never the token itself). */
  tokens(orgId: string, externalId: string): Promise<TokenRow[]> {
    return this.dataSource.query(
      `SELECT jti, scope, issued_at, expires_at FROM issued_tokens WHERE organization_id = $1 AND user_id = $2 ORDER BY issued_at, jti`,
      [orgId, externalId],
    );
  }

  /**
   * Deletes everything of the user inside the caller's transaction, the users row last. Analyses of their exchanges
   * go with the claims on their cache keys; analyses they ran on other users' exchanges stay, unlinked from them.
   * Tokens pinned to them are revoked and forgotten (the token's record held the external id). Audit events keep
   * their place in the log, with any value equal to the external id replaced by the internal id.
   */
  async erase(m: EntityManager, orgId: string, externalId: string, subject: EndUserSubject): Promise<ErasureEffects> {
    const ids = subject.userIds;
    const count = (rows: unknown[]) => rows.length;

    const analyses: { cache_key: string }[] = await deleted(
      m,
      `DELETE FROM analysis_results WHERE organization_id = $1 AND exchange_id IN (${USER_EXCHANGES}) RETURNING cache_key`,
      [orgId, externalId],
    );
    const cacheKeys = [...new Set(analyses.map((a) => a.cache_key))];
    const claims = cacheKeys.length
      ? await deleted(m, `DELETE FROM analysis_claims WHERE organization_id = $1 AND cache_key = ANY($2::text[]) RETURNING 1`, [orgId, cacheKeys])
      : [];
    await m.query(`UPDATE analysis_results SET user_id = NULL WHERE organization_id = $1 AND user_id = ANY($2::uuid[])`, [orgId, ids]);

    const ratings = await deleted(
      m,
      `DELETE FROM ratings WHERE organization_id = $1 AND (user_id = ANY($3::uuid[]) OR exchange_id IN (${USER_EXCHANGES})) RETURNING 1`,
      [orgId, externalId, ids],
    );
    const objects = await deleted(
      m,
      `DELETE FROM upstream_objects WHERE organization_id = $1 AND (user_id = ANY($3::uuid[]) OR exchange_id IN (${USER_EXCHANGES})) RETURNING 1`,
      [orgId, externalId, ids],
    );
    // Their calls in progress, counted with the exchanges (each is one, not written yet). A call still running does
    // not write its exchange when it ends: its open call is gone while no connection was lost (ExchangeRecorder).
    const openCalls = await deleted(m, `DELETE FROM open_calls WHERE organization_id = $1 AND external_user_id = $2 RETURNING 1`, [orgId, externalId]);
    const exchanges = await deleted(m, `DELETE FROM exchanges WHERE organization_id = $1 AND external_user_id = $2 RETURNING 1`, [orgId, externalId]);

    const keys: { id: string }[] = await deleted(m, `DELETE FROM api_keys WHERE organization_id = $1 AND user_id = ANY($2::uuid[]) RETURNING id`, [orgId, ids]);
    const keyIds = keys.map((k) => k.id);
    // a key's label is the operator's words about that user
    if (keyIds.length) {
      await m.query(`UPDATE audit_events SET details = details - 'label' WHERE action = 'key.create' AND target_id = ANY($1::text[])`, [keyIds]);
    }
    const limits = await deleted(m, `DELETE FROM limits WHERE organization_id = $1 AND user_id = ANY($2::uuid[]) RETURNING 1`, [orgId, ids]);

    const tokens: { jti: string }[] = await deleted(m, `DELETE FROM issued_tokens WHERE organization_id = $1 AND user_id = $2 RETURNING jti`, [orgId, externalId]);
    const tokenJtis = tokens.map((t) => t.jti);
    if (tokenJtis.length) await m.query(`INSERT INTO revoked_tokens (jti) SELECT unnest($1::text[]) ON CONFLICT (jti) DO NOTHING`, [tokenJtis]);

    // older cache invalidations named a deleted user by "orgId\nexternalId"
    await m.query(`DELETE FROM cache_invalidations WHERE kind = 'user' AND ref = $1`, [`${orgId}\n${externalId}`]);
    const scrubbed = await this.scrubAuditEvents(m, orgId, externalId, subject.userId ?? ids[0] ?? null);

    const users = await deleted(m, `DELETE FROM users WHERE organization_id = $1 AND (external_id = $2 OR id = ANY($3::uuid[])) RETURNING 1`, [orgId, externalId, ids]);
    return {
      rows: {
        users: count(users),
        exchanges: count(exchanges) + count(openCalls),
        ratings: count(ratings),
        analyses: analyses.length,
        analysis_claims: count(claims),
        keys: keyIds.length,
        limits: count(limits),
        tokens: tokenJtis.length,
        upstream_objects: count(objects),
        audit_events_scrubbed: scrubbed,
      },
      keyIds,
      tokenJtis,
    };
  }

  /** Replaces the external id wherever an audit event of the organization holds it (target or any detail value). */
  private async scrubAuditEvents(m: EntityManager, orgId: string, externalId: string, internalId: string | null): Promise<number> {
    const replacement = internalId ?? '[erased user]';
    const rows: { id: string; target_id: string | null; details: Record<string, unknown> }[] = await m.query(
      `SELECT id, target_id, details FROM audit_events
        WHERE organization_id = $1 AND (target_id = $2 OR jsonb_path_exists(details, '$.** ? (@ == $v)', jsonb_build_object('v', $2::text)))
        FOR UPDATE`,
      [orgId, externalId],
    );
    for (const row of rows) {
      const details = replaceString(row.details, externalId, replacement);
      await m.query(`UPDATE audit_events SET target_id = $2, details = $3::jsonb WHERE id = $1`, [
        row.id,
        row.target_id === externalId ? replacement : row.target_id,
        JSON.stringify(details),
      ]);
    }
    return rows.length;
  }
}

/** A row of an export page with its place in the order: created_at as PostgreSQL prints it (the cursor), and as INSTANT_KEY. */
interface Ordered {
  cursor_at: string;
  instant: string;
}

/** Runs a DELETE … RETURNING and gives its rows (TypeORM answers a DELETE with [rows, count]). */
async function deleted<T = unknown>(m: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  const [rows] = (await m.query(sql, params)) as [T[], number];
  return rows;
}

function replaceString(value: unknown, from: string, to: string): unknown {
  if (value === from) return to;
  if (Array.isArray(value)) return value.map((v) => replaceString(v, from, to));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceString(v, from, to)]));
  return value;
}
