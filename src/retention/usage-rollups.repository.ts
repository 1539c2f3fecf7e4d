import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';

/**
 * The exchanges a retention step removes: one organization's, by id, within [from, to] of created_at (for
 * partition pruning; timestamptz text, microseconds included).
 */
export interface ExchangeSelection {
  orgId: string;
  ids: string[];
  from: string;
  to: string;
}

/** The key of a usage rollup row; NULLs are equal (the unique index is NULLS NOT DISTINCT). */
const ROLLUP_KEY = '(organization_id, day, source, user_id, persona_id, persona_version, model)';
const ADDED = [
  'requests',
  'errors',
  'input_tokens',
  'output_tokens',
  'total_tokens',
  'cached_tokens',
  'reasoning_tokens',
  'cost',
  'latency_ms_sum',
  'latency_count',
  'sessions',
  'ratings_1',
  'ratings_2',
  'ratings_3',
  'ratings_4',
  'ratings_5',
];
const ADD_ON_CONFLICT = `ON CONFLICT ${ROLLUP_KEY} DO UPDATE SET ${ADDED.map((c) => `${c} = r.${c} + excluded.${c}`).join(', ')}, updated_at = now()`;

/** the exchanges of a selection (alias e); $1 organization, $2 ids, $3/$4 the created_at bounds */
const SELECTED = `e.organization_id = $1 AND e.id = ANY($2::text[]) AND e.created_at >= $3::timestamptz AND e.created_at <= $4::timestamptz`;
const UTC_DAY_OF = (column: string) => `(${column} AT TIME ZONE 'UTC')::date`;

/**
 * The statement adding exchanges (alias e, from `from`, filtered by `where`) to the daily rollups, with their
 * ratings (alias rt, filtered by `ratingsWhere`). `sessionLeft`: the condition under which a session is not counted
 * now because some of its exchanges of the same key stay (null: none stay).
 */
function exchangeRollupSql(from: string, where: string, ratingsWhere: string, sessionLeft: string | null): string {
  return `INSERT INTO usage_rollups AS r (day, organization_id, source, user_id, persona_id, persona_version, model, ${ADDED.join(', ')})
     SELECT ${UTC_DAY_OF('e.created_at')}, e.organization_id, 'proxy', e.user_id, e.persona_id, e.persona_version, e.model,
            count(*), count(*) FILTER (WHERE e.status NOT IN ('completed', 'pending')),
            coalesce(sum(e.input_tokens), 0), coalesce(sum(e.output_tokens), 0), coalesce(sum(e.total_tokens), 0),
            coalesce(sum(e.cached_tokens), 0), coalesce(sum(e.reasoning_tokens), 0), coalesce(sum(e.cost), 0),
            coalesce(sum(e.latency_ms), 0), count(e.latency_ms),
            count(DISTINCT e.session_id)${sessionLeft ? ` FILTER (WHERE NOT ${sessionLeft})` : ''},
            coalesce(sum(g.n1), 0), coalesce(sum(g.n2), 0), coalesce(sum(g.n3), 0), coalesce(sum(g.n4), 0), coalesce(sum(g.n5), 0)
       FROM ${from} e
       LEFT JOIN (SELECT rt.exchange_id, count(*) FILTER (WHERE rt.rating = 1) AS n1, count(*) FILTER (WHERE rt.rating = 2) AS n2,
                         count(*) FILTER (WHERE rt.rating = 3) AS n3, count(*) FILTER (WHERE rt.rating = 4) AS n4,
                         count(*) FILTER (WHERE rt.rating = 5) AS n5
                    FROM ratings rt WHERE ${ratingsWhere}
                   GROUP BY rt.exchange_id) g ON g.exchange_id = e.id
      WHERE ${where}
      GROUP BY 1, 2, 4, 5, 6, 7
     ${ADD_ON_CONFLICT}`;
}

/**
 * The daily rollups (usage_rollups, analysis_rollups): what analytics reports about exchanges, analysis calls
 * and ratings that retention deleted. Rows are only ever added to, inside the transaction that deletes what they
 * count, so a total is in the rollups exactly when its rows are gone.
 */
@Injectable()
export class UsageRollupsRepository {
  /**
   * Adds the selected exchanges (with their ratings) to the rollups of their UTC day. A session is counted in a
   * rollup row when its last exchange of that row's key is deleted (deletion runs oldest first), so a session
   * deleted over several batches counts once per key.
   */
  async addExchanges(m: EntityManager, s: ExchangeSelection): Promise<void> {
    if (!s.ids.length) return;
    const sessionLeft = `EXISTS (
      SELECT 1 FROM exchanges o
       WHERE o.organization_id = e.organization_id AND o.session_id = e.session_id
         AND o.created_at >= ${UTC_DAY_OF('e.created_at')}::timestamp AT TIME ZONE 'UTC'
         AND o.created_at < (${UTC_DAY_OF('e.created_at')} + 1)::timestamp AT TIME ZONE 'UTC'
         AND o.user_id = e.user_id AND o.persona_id IS NOT DISTINCT FROM e.persona_id
         AND o.persona_version IS NOT DISTINCT FROM e.persona_version AND o.model IS NOT DISTINCT FROM e.model
         AND NOT (o.id = ANY($2::text[])))`;
    await m.query(
      exchangeRollupSql('exchanges', SELECTED, `rt.organization_id = $1 AND rt.exchange_id = ANY($2::text[])`, sessionLeft),
      [s.orgId, s.ids, s.from, s.to],
    );
    await this.addAnalysesOf(m, `a.organization_id = $1 AND a.exchange_id = ANY($2::text[])`, 'exchanges', SELECTED, [s.orgId, s.ids, s.from, s.to]);
  }

  /**
   * Adds every exchange of a whole partition (a month that is dropped next), with its ratings and analyses. Every
   * day of the partition is complete, so each session counts once per key.
   */
  async addPartition(m: EntityManager, p: { table: string; from: Date; to: Date }): Promise<void> {
    const table = `"${p.table.replace(/"/g, '')}"`;
    // rows of an organization that no longer exists are dropped without a rollup to keep them for
    const live = 'e.organization_id IN (SELECT id FROM organizations)';
    await m.query(exchangeRollupSql(table, live, `rt.exchange_id IN (SELECT id FROM ${table})`, null), []);
    await this.addAnalysesOf(
      m,
      `a.exchange_id IN (SELECT id FROM ${table}) AND a.organization_id IN (SELECT id FROM organizations)`,
      table,
      `a.organization_id = e.organization_id AND ${live}`,
      [],
    );
  }

  /**
   * The analysis results of some exchanges: their calls (tokens, cost, failures) on the UTC day of the analysis,
   * and the newest completed category per type on the day of the exchange (as the persona report counts them).
   */
  private async addAnalysesOf(m: EntityManager, resultsWhere: string, exchanges: string, exchangesWhere: string, params: unknown[]): Promise<void> {
    await m.query(
      `INSERT INTO usage_rollups AS r (day, organization_id, source, user_id, persona_id, persona_version, model, ${ADDED.join(', ')})
       SELECT ${UTC_DAY_OF('a.created_at')}, a.organization_id, 'analysis', a.user_id, a.persona_id, NULL, a.model,
              count(*), count(*) FILTER (WHERE a.status = 'failed'),
              coalesce(sum(a.input_tokens), 0), coalesce(sum(a.output_tokens), 0), coalesce(sum(a.total_tokens), 0),
              0, 0, coalesce(sum(a.cost), 0), 0, 0, 0, 0, 0, 0, 0, 0
         FROM analysis_results a
        WHERE ${resultsWhere}
        GROUP BY 1, 2, 4, 5, 7
       ${ADD_ON_CONFLICT}`,
      params.slice(0, resultsWhere.includes('$2') ? 2 : 0),
    );
    await m.query(
      `INSERT INTO analysis_rollups AS r (day, organization_id, persona_id, persona_version, analysis_type, primary_category, count)
       SELECT day, organization_id, persona_id, persona_version, analysis_type, primary_category, count(*)
         FROM (SELECT DISTINCT ON (a.exchange_id, a.analysis_type) ${UTC_DAY_OF('e.created_at')} AS day, e.organization_id,
                      e.persona_id, e.persona_version, a.analysis_type, a.primary_category
                 FROM analysis_results a
                 JOIN ${exchanges} e ON e.id = a.exchange_id
                WHERE ${exchangesWhere} AND e.persona_id IS NOT NULL AND ${resultsWhere} AND a.status = 'completed'
                ORDER BY a.exchange_id, a.analysis_type, a.created_at DESC, a.id DESC) latest
        GROUP BY 1, 2, 3, 4, 5, 6
       ON CONFLICT (organization_id, persona_id, day, persona_version, analysis_type, primary_category) DO UPDATE SET count = r.count + excluded.count`,
      params,
    );
  }

  /**
   * An erased end user leaves the rollups: their rows are merged into the rows without a user (user_id NULL), so
   * the organization's totals stay and nothing names the user. Run in the erasure's transaction.
   */
  async forgetUser(m: EntityManager, orgId: string, userId: string): Promise<number> {
    const rows: { n: number }[] = await m.query(
      `WITH gone AS (DELETE FROM usage_rollups WHERE organization_id = $1 AND user_id = $2 RETURNING *),
            merged AS (
              INSERT INTO usage_rollups AS r (day, organization_id, source, user_id, persona_id, persona_version, model, ${ADDED.join(', ')})
              SELECT day, organization_id, source, NULL, persona_id, persona_version, model, ${ADDED.map((c) => `sum(${c})`).join(', ')}
                FROM gone GROUP BY day, organization_id, source, persona_id, persona_version, model
              ${ADD_ON_CONFLICT}
              RETURNING 1)
       SELECT (SELECT count(*) FROM gone)::int AS n`,
      [orgId, userId],
    );
    return rows[0]?.n ?? 0;
  }
}
