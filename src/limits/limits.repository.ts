import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { isUniqueViolation } from '../common/app-exception';
import { ChangeFeedService } from '../database/change-feed.service';
import { hasNoLimits, limitRef, LimitPatch, LimitScope, LimitValues, toLimitValues } from './limit-definitions';
import { LimitEntity } from './limit.entity';

/** The limits table: one row per organization (user_id null) and per user that has limits. */
@Injectable()
export class LimitsRepository {
  constructor(
    private readonly dataSource: DataSource,
    private readonly changes: ChangeFeedService,
  ) {}

  /** The subject's limits; every field null when none are set. */
  async valuesOf(scope: LimitScope, id: string): Promise<LimitValues> {
    return toLimitValues(await this.findRow(this.dataSource.manager, scope, id));
  }

  /** Every row with a daily or monthly budget. */
  findWithBudgets(): Promise<LimitEntity[]> {
    return this.dataSource.manager
      .createQueryBuilder(LimitEntity, 'l')
      .where('l.daily_budget_usd IS NOT NULL OR l.monthly_budget_usd IS NOT NULL')
      .getMany();
  }

  /**
   * Applies a (validated) patch to the subject's row, creating it or deleting it when no limit is left, and
   * announces the change on the feed in the same transaction, with whatever `alongside` writes (the audit event).
   * Returns the limits before and after.
   */
  async applyPatch(
    scope: LimitScope,
    id: string,
    orgId: string,
    patch: LimitPatch,
    alongside: (m: EntityManager) => Promise<void>,
  ): Promise<{ before: LimitValues; after: LimitValues }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.dataSource.transaction(async (m) => {
          const row = await this.findRow(m, scope, id, true);
          const before = toLimitValues(row);
          const after = { ...before, ...patch };
          if (hasNoLimits(after)) {
            if (row) await m.delete(LimitEntity, { id: row.id });
          } else {
            const entity = row ?? m.create(LimitEntity, { organizationId: orgId, userId: scope === 'user' ? id : null });
            entity.rpm = after.rpm;
            entity.tpm = after.tpm;
            entity.dailyBudgetUsd = after.daily_budget_usd;
            entity.monthlyBudgetUsd = after.monthly_budget_usd;
            await m.save(entity);
          }
          await this.changes.publish(m, 'limits', limitRef(scope, id));
          await alongside(m);
          return { before, after };
        });
      } catch (err) {
        // two admins creating the same subject's row at once: the second one updates it instead
        if (attempt === 0 && isUniqueViolation(err)) continue;
        throw err;
      }
    }
  }

  private findRow(m: EntityManager, scope: LimitScope, id: string, lock = false): Promise<LimitEntity | null> {
    const qb = m.createQueryBuilder(LimitEntity, 'l');
    if (scope === 'organization') qb.where('l.organization_id = :id AND l.user_id IS NULL', { id });
    else qb.where('l.user_id = :id', { id });
    if (lock) qb.setLock('pessimistic_write');
    return qb.getOne();
  }
}
