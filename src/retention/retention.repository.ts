import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { UsageRollupsRepository } from './usage-rollups.repository';

/** An organization whose exchanges do not live forever. */
export interface OrgRetention {
  orgId: string;
  /** bodies and text are cleared after this many days; null: kept */
  contentDays: number | null;
  /** whole exchanges are deleted after this many days; null: kept */
  days: number | null;
}

/** advisory lock class of retention work: one process at a time works on one organization */
export const RETENTION_LOCK_CLASS = 7_345_113;
/** a retention statement never waits long for a lock the proxy holds: it gives way and tries again next run */
const LOCK_TIMEOUT = '2s';
const STATEMENT_TIMEOUT = '60s';

/**
 * The retention job's statements over exchanges and what hangs off them (ratings, analysis results and the
 * analysis claims of their cache keys). Each batch is one short transaction, under a transaction-level advisory
 * lock on its organization: several processes can run the job at once, and a batch another process is working on
 * is simply skipped.
 */
@Injectable()
export class RetentionRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly rollups: UsageRollupsRepository,
  ) {}

  async organizationsWithRetention(): Promise<OrgRetention[]> {
    const rows: { id: string; content_retention_days: number | null; retention_days: number | null }[] = await this.dataSource.query(
      `SELECT id, content_retention_days, retention_days FROM organizations
        WHERE content_retention_days IS NOT NULL OR retention_days IS NOT NULL ORDER BY id`,
    );
    return rows.map((r) => ({ orgId: r.id, contentDays: r.content_retention_days, days: r.retention_days }));
  }

  /**
   * Clears the bodies and text of up to `batch` exchanges made before `cutoff`, oldest first, and marks them
   * (content_deleted_at). The organization's mark (retention_marks) remembers how far clearing got, so no run
   * walks over cleared rows again. Returns the rows cleared, or null when another process holds the organization.
   */
  async clearContentBatch(orgId: string, cutoff: Date, batch: number): Promise<number | null> {
    return this.locked(orgId, async (m) => {
      const marks: { before: Date }[] = await m.query(`SELECT content_cleared_before AS before FROM retention_marks WHERE organization_id = $1`, [orgId]);
      const from = marks[0]?.before ?? new Date(0);
      if (from >= cutoff) return 0;
      const rows: { created_at: Date }[] = await m.query(
        `WITH batch AS (
           SELECT id, created_at FROM exchanges
            WHERE organization_id = $1 AND created_at >= $2 AND created_at < $3 AND content_deleted_at IS NULL
            ORDER BY created_at LIMIT $4 FOR UPDATE),
         cleared AS (
           UPDATE exchanges e SET request_body = NULL, response_body = NULL, output_text = NULL, error = NULL, content_deleted_at = now()
             FROM batch WHERE e.id = batch.id AND e.created_at = batch.created_at AND e.organization_id = $1
           RETURNING e.created_at)
         SELECT created_at FROM cleared`,
        [orgId, from.toISOString(), cutoff.toISOString(), batch],
      );
      // a full batch may have left rows of its last instant: the mark stays at that instant (they are >= it)
      const reached = rows.length < batch ? cutoff : new Date(Math.max(...rows.map((r) => new Date(r.created_at).getTime())));
      await m.query(
        `INSERT INTO retention_marks (organization_id, content_cleared_before) VALUES ($1, $2)
         ON CONFLICT (organization_id) DO UPDATE SET content_cleared_before = GREATEST(retention_marks.content_cleared_before, excluded.content_cleared_before)`,
        [orgId, reached.toISOString()],
      );
      return rows.length;
    });
  }

  /**
   * Deletes up to `batch` exchanges made before `cutoff`, oldest first, with their ratings, analysis results and
   * the expired analysis claims of those results' cache keys, after adding them to the daily rollups in the same
   * transaction. Returns the exchanges deleted, or null when another process holds the organization.
   */
  async deleteBatch(orgId: string, cutoff: Date, batch: number): Promise<number | null> {
    return this.locked(orgId, async (m) => {
      // the bounds as text: a timestamptz has microseconds, a JS Date only milliseconds
      const found: { ids: string[] | null; lo: string | null; hi: string | null }[] = await m.query(
        `WITH batch AS (
           SELECT id, created_at FROM exchanges WHERE organization_id = $1 AND created_at < $2 ORDER BY created_at LIMIT $3 FOR UPDATE)
         SELECT array_agg(id) AS ids, min(created_at)::text AS lo, max(created_at)::text AS hi FROM batch`,
        [orgId, cutoff.toISOString(), batch],
      );
      const { ids, lo, hi } = found[0] ?? { ids: null, lo: null, hi: null };
      if (!ids?.length || lo === null || hi === null) return 0;
      const selection = { orgId, ids, from: lo, to: hi };
      await this.rollups.addExchanges(m, selection);
      await m.query(
        `DELETE FROM analysis_claims c WHERE c.organization_id = $1 AND c.expires_at < now()
            AND c.cache_key IN (SELECT cache_key FROM analysis_results WHERE organization_id = $1 AND exchange_id = ANY($2::text[]))`,
        [orgId, selection.ids],
      );
      await m.query(`DELETE FROM analysis_results WHERE organization_id = $1 AND exchange_id = ANY($2::text[])`, [orgId, selection.ids]);
      await m.query(`DELETE FROM ratings WHERE organization_id = $1 AND exchange_id = ANY($2::text[])`, [orgId, selection.ids]);
      await m.query(
        `DELETE FROM exchanges WHERE organization_id = $1 AND id = ANY($2::text[]) AND created_at >= $3 AND created_at <= $4`,
        [orgId, selection.ids, selection.from, selection.to],
      );
      return ids.length;
    });
  }

  /** Runs `work` in a transaction holding the organization's retention lock; null when another process holds it. */
  private async locked<T>(orgId: string, work: (m: EntityManager) => Promise<T>): Promise<T | null> {
    return this.dataSource.transaction(async (m) => {
      await m.query(`SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`, [LOCK_TIMEOUT, STATEMENT_TIMEOUT]);
      const got: { ok: boolean }[] = await m.query(`SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS ok`, [RETENTION_LOCK_CLASS, orgId]);
      if (!got[0]?.ok) return null;
      return work(m);
    });
  }
}
