import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { MetricsService } from '../metrics/metrics.service';
import type { ResolvedKey } from './key-resolver';

/** The proxy itself, as the audit log names it when it invalidates a key the upstream refused. */
export const SYSTEM_ACTOR: AuditActor = { name: 'system', userId: null };

/** a key marked invalid here is left out locally until the change feed has reloaded it from the database */
const LOCAL_INVALID_MS = 10_000;
/** a rest no longer than one already known (within this) is not written again */
const REST_SLACK_MS = 250;
const MAX_ERROR = 500;

/**
 * The health of upstream keys as calls find it: a 429 rests a key until its Retry-After (capped by KEY_REST_MAX_MS),
 * a 401 marks it invalid. Both are written to the key's row (so they survive a restart) and published through the
 * change feed (so every process reloads the key within a second); this process applies them at once.
 */
@Injectable()
export class KeyHealth {
  private readonly resting = new Map<string, number>();
  private readonly invalid = new Map<string, number>();
  private readonly settledHandlers: ((orgId: string) => void)[] = [];

  constructor(
    private readonly dataSource: DataSource,
    private readonly changes: ChangeFeedService,
    private readonly audit: AuditService,
    private readonly config: AppConfig,
    private readonly metrics: MetricsService,
    private readonly logger: JsonLogger,
  ) {}

  /**
   * Called once a rest or invalidation is committed. The change feed has already told this process (inside the
   * transaction); what was loaded again before the commit is dropped once more, and the local marks end.
   */
  onSettled(handler: (orgId: string) => void): void {
    this.settledHandlers.push(handler);
  }

  private settled(orgId: string, keyId: string, marks: Map<string, number>, mark: number): void {
    if (marks.get(keyId) === mark) marks.delete(keyId);
    for (const h of this.settledHandlers) h(orgId);
  }

  /** Until when this process knows the key rests (epoch ms), beyond what its cached row says; null if not. */
  restUntil(keyId: string): number | null {
    const until = this.resting.get(keyId);
    if (until === undefined) return null;
    if (until <= Date.now()) {
      this.resting.delete(keyId);
      return null;
    }
    return until;
  }

  /** Whether this process has just marked the key invalid (its cached row may not say so yet). */
  isInvalid(keyId: string): boolean {
    const at = this.invalid.get(keyId);
    if (at === undefined) return false;
    if (Date.now() - at > LOCAL_INVALID_MS) {
      this.invalid.delete(keyId);
      return false;
    }
    return true;
  }

  /**
   * A key the upstream refused a call with, before any byte reached the client: a 401 marks it invalid, a 429 rests
   * it (for `retryAfterMs`, else KEY_REST_DEFAULT_MS). Returns what the exchange's key attempt says of it.
   */
  refused(key: ResolvedKey, status: number, retryAfterMs: number | null, error: string): 'invalid' | 'rate_limited' {
    if (status === 401) {
      void this.invalidate(key, error);
      return 'invalid';
    }
    void this.rest(key, retryAfterMs, error);
    return 'rate_limited';
  }

  /** Rests a key the upstream rate limited, for `retryAfterMs` (or KEY_REST_DEFAULT_MS), at most KEY_REST_MAX_MS. */
  rest(key: ResolvedKey, retryAfterMs: number | null, error: string): Promise<void> {
    const ms = Math.min(retryAfterMs ?? this.config.keyRestDefaultMs, this.config.keyRestMaxMs);
    this.metrics.keyEvent(key.keyId, 'rate_limited');
    if (ms <= 0 || !key.orgId) return Promise.resolve();
    const until = Date.now() + ms;
    const known = Math.max(this.restUntil(key.keyId) ?? 0, key.restUntil ?? 0);
    if (known >= until - REST_SLACK_MS) return Promise.resolve();
    this.resting.set(key.keyId, until);
    const orgId = key.orgId;
    let committed = false;
    return this.dataSource
      .transaction(async (m) => {
        await m.query(
          `UPDATE api_keys SET rest_until = GREATEST(COALESCE(rest_until, to_timestamp(0)), $2::timestamptz), last_error = $3
            WHERE id = $1 AND revoked_at IS NULL`,
          [key.keyId, new Date(until).toISOString(), clip(error)],
        );
        await this.changes.publish(m, 'key', orgId);
        committed = true;
      })
      .then(() => {
        if (committed) this.settled(orgId, key.keyId, this.resting, until);
      })
      .catch((err: unknown) => this.logger.write('warn', 'could not record a resting upstream key', { key_id: key.keyId, err }));
  }

  /** Marks a key the upstream refused (401) invalid: not used again until `key enable`; audited, counted. */
  invalidate(key: ResolvedKey, error: string): Promise<void> {
    const mark = Date.now();
    this.invalid.set(key.keyId, mark);
    this.metrics.keyEvent(key.keyId, 'invalid');
    if (!key.orgId) return Promise.resolve();
    const orgId = key.orgId;
    let committed = false;
    return this.dataSource
      .transaction(async (m) => {
        const rows: { id: string }[] = await m.query(
          `UPDATE api_keys SET state = 'invalid', invalid_at = now(), last_error = $2
            WHERE id = $1 AND state = 'active' AND revoked_at IS NULL RETURNING id`,
          [key.keyId, clip(error)],
        );
        committed = true;
        if (!rows.length) return;
        await this.changes.publish(m, 'key', orgId);
        await this.audit.record(m, { orgId, actor: SYSTEM_ACTOR, action: 'key.invalidate', target: key.keyId, details: { upstream_status: 401 } });
        this.logger.write('warn', 'upstream key refused by the upstream: marked invalid', { key_id: key.keyId, org_id: orgId });
      })
      .then(() => {
        if (committed) this.settled(orgId, key.keyId, this.invalid, mark);
      })
      .catch((err: unknown) => this.logger.write('warn', 'could not record an invalid upstream key', { key_id: key.keyId, err }));
  }
}

function clip(s: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f]+/g, ' ');
  return clean.length > MAX_ERROR ? `${clean.slice(0, MAX_ERROR - 1)}…` : clean;
}
