import { Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';

/** Expired claims nobody asked for again are deleted this long after they expired. */
const STALE_CLAIM_S = 3600;
const PRUNE_EVERY_MS = 600_000;

/**
 * Claims on analyses being run (table analysis_claims). Every operation is one autocommitted statement: no
 * connection is held between them, in particular not while the holder waits on the upstream.
 */
@Injectable()
export class AnalysisClaimsRepository {
  private lastPruneAt = 0;

  constructor(private readonly dataSource: DataSource) {}

  /**
   * Takes the claim of (organization, cache key) for `leaseMs` when nobody holds it or its holder's lease ran out.
   * Returns the holder token, or null when another holder has it.
   */
  async tryClaim(orgId: string, cacheKey: string, leaseMs: number): Promise<string | null> {
    if (Date.now() - this.lastPruneAt > PRUNE_EVERY_MS) {
      this.lastPruneAt = Date.now();
      await this.dataSource.query(`DELETE FROM analysis_claims WHERE expires_at < now() - make_interval(secs => $1)`, [STALE_CLAIM_S]);
    }
    const holder = randomUUID();
    const rows: unknown[] = await this.dataSource.query(
      `INSERT INTO analysis_claims (organization_id, cache_key, holder, expires_at)
       VALUES ($1, $2, $3, now() + make_interval(secs => $4))
       ON CONFLICT (organization_id, cache_key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE analysis_claims.expires_at < now()
       RETURNING holder`,
      [orgId, cacheKey, holder, leaseMs / 1000],
    );
    return rows.length ? holder : null;
  }

  /** Extends the holder's lease; false when the claim is no longer its own (it lapsed and was taken over). */
  async renew(orgId: string, cacheKey: string, holder: string, leaseMs: number): Promise<boolean> {
    const [, count]: [unknown, number] = await this.dataSource.query(
      `UPDATE analysis_claims SET expires_at = now() + make_interval(secs => $4)
        WHERE organization_id = $1 AND cache_key = $2 AND holder = $3`,
      [orgId, cacheKey, holder, leaseMs / 1000],
    );
    return count > 0;
  }

  async release(orgId: string, cacheKey: string, holder: string): Promise<void> {
    await this.dataSource.query(`DELETE FROM analysis_claims WHERE organization_id = $1 AND cache_key = $2 AND holder = $3`, [
      orgId,
      cacheKey,
      holder,
    ]);
  }
}
