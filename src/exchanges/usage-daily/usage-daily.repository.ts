import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';

/** advisory lock class of the merge of usage_daily_changes: one merger at a time, across processes */
const MERGE_LOCK_CLASS = 7_345_115;
const SUMS = ['requests', 'errors', 'input_tokens', 'output_tokens', 'total_tokens', 'cost'];
const KEY = 'organization_id, dimension, day, source, key';

/**
 * The daily usage of stored rows (usage_daily, migration KeepDailyUsage): written by triggers on `exchanges` and
 * `analysis_results` as changes appended to usage_daily_changes (one row per day, user, model and persona), merged
 * here into one row per key of each dimension (a user is keyed by their X-User-ID: migration DailyUsageNamesUsers).
 * Readers add usage_daily and the changes not merged yet, so a merge never changes an answer.
 */
@Injectable()
export class UsageDailyRepository {
  constructor(private readonly dataSource: DataSource) {}

  /**
   * Merges up to `limit` appended changes into usage_daily, in one transaction; a row whose stored rows are all
   * gone (requests back to 0) is removed. Returns the changes merged, or null when another process is merging.
   */
  async merge(limit = 50_000): Promise<number | null> {
    return this.dataSource.transaction(async (m) => {
      const got: { ok: boolean }[] = await m.query(`SELECT pg_try_advisory_xact_lock($1, 0) AS ok`, [MERGE_LOCK_CLASS]);
      if (!got[0]?.ok) return null;
      return this.mergeIn(m, limit);
    });
  }

  /**
   * Merges what was appended until now, in batches, then vacuums the changes table: readers scan it whole, and the
   * merged rows it still holds as dead tuples would slow them until autovacuum came by. Returns the changes merged.
   */
  async mergeAll(batch = 50_000): Promise<number> {
    let total = 0;
    for (let n = batch; n === batch; ) {
      const merged = await this.merge(batch);
      if (merged === null) break;
      total += merged;
      n = merged;
    }
    if (total > 0) await this.dataSource.query(`VACUUM usage_daily_changes`);
    return total;
  }

  /**
   * The days of a dropped partition of `exchanges` (a whole UTC month: no stored exchange of those days is left)
   * hold no proxied usage any more. Run in the transaction that drops it.
   */
  async forgetProxyDays(m: EntityManager, from: Date, to: Date): Promise<void> {
    await m.query(`SELECT pg_advisory_xact_lock($1, 0)`, [MERGE_LOCK_CLASS]);
    for (const table of ['usage_daily', 'usage_daily_changes']) {
      await m.query(`DELETE FROM ${table} WHERE source = 'proxy' AND day >= $1::date AND day < $2::date`, [day(from), day(to)]);
    }
  }

  /**
   * An erased user's rows: once their exchanges and analysis results are deleted (and results about others'
   * exchanges moved to no user), what is appended is merged, their totals are zero, and their rows go: nothing
   * here names them any more. Run in the erasure's transaction, after those deletions.
   */
  async forgetUser(m: EntityManager, orgId: string, externalId: string): Promise<void> {
    await m.query(`SELECT pg_advisory_xact_lock($1, 0)`, [MERGE_LOCK_CLASS]);
    while ((await this.mergeIn(m, 50_000)) === 50_000);
    await m.query(`DELETE FROM usage_daily WHERE organization_id = $1 AND dimension = 'user' AND key = $2`, [orgId, externalId]);
  }

  /** One merge of up to `limit` changes, in the caller's transaction (which holds the merge lock). */
  private async mergeIn(m: EntityManager, limit: number): Promise<number> {
    const rows: { moved: number; emptied: { organization_id: string; dimension: string; day: string; source: string; key: string | null }[] | null }[] =
      await m.query(
        `WITH moved AS (
           DELETE FROM usage_daily_changes WHERE ctid = ANY(ARRAY(SELECT ctid FROM usage_daily_changes LIMIT $1))
           RETURNING organization_id, day, source, external_user_id, model, persona_id, ${SUMS.join(', ')}),
         merged AS (
           INSERT INTO usage_daily AS u (${KEY}, ${SUMS.join(', ')})
           SELECT c.organization_id, d.dimension, c.day, c.source, d.key, ${SUMS.map((col) => `sum(c.${col})`).join(', ')}
             FROM moved c
            CROSS JOIN LATERAL (VALUES ('user', c.external_user_id), ('model', c.model), ('persona', c.persona_id::text)) d(dimension, key)
            WHERE c.organization_id IN (SELECT id FROM organizations)
            GROUP BY 1, 2, 3, 4, 5
           ON CONFLICT (${KEY}) DO UPDATE SET ${SUMS.map((col) => `${col} = u.${col} + excluded.${col}`).join(', ')}
           RETURNING u.organization_id, u.dimension, u.day, u.source, u.key, u.requests)
         SELECT (SELECT count(*) FROM moved)::int AS moved,
                (SELECT json_agg(json_build_object('organization_id', organization_id, 'dimension', dimension, 'day', day, 'source', source, 'key', key))
                   FROM merged WHERE requests = 0) AS emptied`,
        [limit],
      );
    const emptied = rows[0]?.emptied ?? [];
    if (emptied.length) {
      await m.query(
        `DELETE FROM usage_daily u USING json_to_recordset($1::json) AS x(organization_id uuid, dimension text, day date, source text, key text)
          WHERE u.organization_id = x.organization_id AND u.dimension = x.dimension AND u.day = x.day AND u.source = x.source
            AND u.key IS NOT DISTINCT FROM x.key AND u.requests = 0`,
        [JSON.stringify(emptied)],
      );
    }
    return rows[0]?.moved ?? 0;
  }
}

const day = (at: Date) => at.toISOString().slice(0, 10);
