import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Period, UsageGroup } from './analytics-query';

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
  analysis_type: string;
  primary_category: string;
  count: number;
}

export interface UsageRow {
  key: string | null;
  source: 'proxy' | 'analysis';
  requests: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost: number;
  errors: number;
}

const UTC_DAY = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')`;
// the UTC date of an exchange as a date (cheaper to group by than text; formatted after grouping)
const DAY = `(e.created_at AT TIME ZONE 'UTC')::date`;

// An exchange that did not complete and is not still running counts as an error.
const IS_ERROR = `status NOT IN ('completed', 'pending')`;

// The persona's exchanges in the period. $1 persona, $2 organization, $3/$4 the period. Served by the covering
// index ix_exchanges_persona_analytics (migration AddAnalyticsIndexes) as an index-only scan.
const PERSONA_EXCHANGES = `e.persona_id = $1 AND e.organization_id = $2 AND e.created_at >= $3::timestamptz AND e.created_at < $4::timestamptz`;

// Group keys of the usage report, per source; only these fixed expressions are ever put into the SQL.
const USAGE_KEYS: Record<UsageGroup, { proxy: string; analysis: string }> = {
  user: { proxy: 'e.external_user_id', analysis: 'u.external_id' },
  model: { proxy: 'e.model', analysis: 'a.model' },
  persona: { proxy: 'e.persona_id::text', analysis: 'a.persona_id::text' },
  day: { proxy: UTC_DAY('e.created_at'), analysis: UTC_DAY('a.created_at') },
};

/**
 * The analytics read model: aggregate queries only, the database does the counting (no exchange row is loaded
 * into the process). Money and token sums come back as float8 so the driver returns numbers.
 */
@Injectable()
export class AnalyticsRepository {
  constructor(private readonly dataSource: DataSource) {}

  async findPersonaName(orgId: string, personaId: string): Promise<string | undefined> {
    // deleted personas are included: their history stays reportable
    const rows: { name: string }[] = await this.dataSource.query(`SELECT name FROM personas WHERE id = $1 AND organization_id = $2`, [
      personaId,
      orgId,
    ]);
    return rows[0]?.name;
  }

  /** Requests, errors, tokens and cost per (version, UTC day) slice; the service rolls them up into totals, by_version and daily. */
  async personaSlices(orgId: string, personaId: string, period: Period): Promise<PersonaSliceRow[]> {
    return this.dataSource.query(
      `SELECT version, to_char(day, 'YYYY-MM-DD') AS day, requests, errors, input_tokens, output_tokens, total_tokens, cost
         FROM (SELECT e.persona_version AS version, ${DAY} AS day,
                      count(*)::int AS requests,
                      (count(*) FILTER (WHERE e.${IS_ERROR}))::int AS errors,
                      coalesce(sum(e.input_tokens), 0)::float8 AS input_tokens,
                      coalesce(sum(e.output_tokens), 0)::float8 AS output_tokens,
                      coalesce(sum(e.total_tokens), 0)::float8 AS total_tokens,
                      coalesce(sum(e.cost), 0)::float8 AS cost
                 FROM exchanges e
                WHERE ${PERSONA_EXCHANGES}
                GROUP BY 1, 2) slices`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString()],
    );
  }

  /** Distinct users and sessions, hashed in one pass (count(DISTINCT …) would sort both columns). */
  async personaPeople(orgId: string, personaId: string, period: Period): Promise<PersonaPeopleRow> {
    const rows: PersonaPeopleRow[] = await this.dataSource.query(
      `SELECT (count(*) FILTER (WHERE per_user))::int AS users, (count(*) FILTER (WHERE NOT per_user))::int AS sessions
         FROM (SELECT GROUPING(e.user_id) = 0 AS per_user
                 FROM exchanges e
                WHERE ${PERSONA_EXCHANGES}
                GROUP BY GROUPING SETS ((e.user_id), (e.session_id))) distinct_values`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString()],
    );
    return rows[0];
  }

  /** Average and percentiles of latency_ms; percentile_cont interpolates linearly (numpy's default), nulls are skipped. */
  async personaLatency(orgId: string, personaId: string, period: Period): Promise<PersonaLatencyRow> {
    const rows: PersonaLatencyRow[] = await this.dataSource.query(
      `SELECT avg(e.latency_ms)::float8 AS avg,
              percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY e.latency_ms) AS pct
         FROM exchanges e
        WHERE ${PERSONA_EXCHANGES}`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString()],
    );
    return rows[0];
  }

  /**
   * Ratings of the persona's exchanges made in the period (a rating belongs to the period of the exchange it
   * rates, not to the moment it was given), counted per (version, day of the exchange, value).
   */
  async personaRatings(orgId: string, personaId: string, period: Period): Promise<RatingSliceRow[]> {
    return this.dataSource.query(
      `SELECT version, to_char(day, 'YYYY-MM-DD') AS day, rating, count
         FROM (SELECT e.persona_version AS version, ${DAY} AS day, r.rating::int AS rating, count(*)::int AS count
                 FROM ratings r
                 JOIN exchanges e ON e.id = r.exchange_id
                WHERE ${PERSONA_EXCHANGES} AND r.organization_id = $2
                GROUP BY 1, 2, 3) rated`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString()],
    );
  }

  /**
   * Primary categories per analysis type over the persona's exchanges in the period. An exchange analysed several
   * times with one type (force_refresh, a changed config) counts once, with its newest result.
   */
  async personaAnalysis(orgId: string, personaId: string, period: Period): Promise<AnalysisCountRow[]> {
    return this.dataSource.query(
      `SELECT latest.analysis_type, latest.primary_category, count(*)::int AS count
         FROM (SELECT DISTINCT ON (a.exchange_id, a.analysis_type) a.analysis_type, a.primary_category
                 FROM analysis_results a
                 JOIN exchanges e ON e.id = a.exchange_id
                WHERE ${PERSONA_EXCHANGES} AND a.organization_id = $2 AND a.status = 'completed'
                ORDER BY a.exchange_id, a.analysis_type, a.created_at DESC, a.id DESC) latest
        GROUP BY latest.analysis_type, latest.primary_category
        ORDER BY latest.analysis_type, latest.primary_category`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString()],
    );
  }

  /** Proxied traffic (exchanges) and analysis calls (stored analysis results) of the organization, per group key. */
  async usage(orgId: string, period: Period, group: UsageGroup): Promise<UsageRow[]> {
    const key = USAGE_KEYS[group];
    const userJoin = group === 'user' ? 'LEFT JOIN users u ON u.id = a.user_id' : '';
    return this.dataSource.query(
      `SELECT * FROM (
         SELECT ${key.proxy} AS key, 'proxy' AS source, count(*)::int AS requests,
                coalesce(sum(e.input_tokens), 0)::float8 AS input_tokens,
                coalesce(sum(e.output_tokens), 0)::float8 AS output_tokens,
                coalesce(sum(e.total_tokens), 0)::float8 AS total_tokens,
                coalesce(sum(e.cost), 0)::float8 AS cost,
                (count(*) FILTER (WHERE e.${IS_ERROR}))::int AS errors
           FROM exchanges e
          WHERE e.organization_id = $1 AND e.created_at >= $2::timestamptz AND e.created_at < $3::timestamptz
          GROUP BY 1
         UNION ALL
         SELECT ${key.analysis} AS key, 'analysis' AS source, count(*)::int AS requests,
                coalesce(sum(a.input_tokens), 0)::float8 AS input_tokens,
                coalesce(sum(a.output_tokens), 0)::float8 AS output_tokens,
                coalesce(sum(a.total_tokens), 0)::float8 AS total_tokens,
                coalesce(sum(a.cost), 0)::float8 AS cost,
                (count(*) FILTER (WHERE a.status = 'failed'))::int AS errors
           FROM analysis_results a ${userJoin}
          WHERE a.organization_id = $1 AND a.created_at >= $2::timestamptz AND a.created_at < $3::timestamptz
          GROUP BY 1
       ) usage
       ORDER BY key COLLATE "C" ASC NULLS LAST, source DESC`,
      [orgId, period.from.toISOString(), period.to.toISOString()],
    );
  }
}
