import type { CounterAdd } from './counter-store';
import { counterExpiry, windowAt, WindowKind } from './limit-windows';
import type { LimitEntity } from './limit.entity';

export type LimitScope = 'organization' | 'user';
export type LimitKind = 'requests' | 'tokens' | 'daily_budget' | 'monthly_budget';

/** What limits a call is counted against: the organization and the user it acts for. */
export interface LimitSubjects {
  orgId: string;
  /** internal user id */
  userId: string;
}

export interface LimitValues {
  rpm: number | null;
  tpm: number | null;
  daily_budget_usd: number | null;
  monthly_budget_usd: number | null;
}

/** A change of limits: a number sets it, null removes it, a missing field keeps it. */
export type LimitPatch = Partial<LimitValues>;

/** The limits set on one organization or user. */
export interface LimitDefinition extends LimitValues {
  scope: LimitScope;
  id: string;
}

/** What a counter counts: requests or tokens per minute, cost per day or month. */
export type LimitMetric = 'rpm' | 'tpm' | 'day' | 'month';

/** The subject's name in the change feed and the definitions cache. */
export const limitRef = (scope: LimitScope, id: string) => (scope === 'organization' ? `o:${id}` : `u:${id}`);

export const toLimitValues = (e: LimitEntity | null): LimitValues => ({
  rpm: e?.rpm ?? null,
  tpm: e?.tpm ?? null,
  daily_budget_usd: e?.dailyBudgetUsd ?? null,
  monthly_budget_usd: e?.monthlyBudgetUsd ?? null,
});

export const hasNoLimits = (v: LimitValues) => v.rpm === null && v.tpm === null && v.daily_budget_usd === null && v.monthly_budget_usd === null;

/** The counter of one limit in the window containing `now`; admission, settlement, views and seeding must agree on it. */
export function counterKey(prefix: string, def: LimitDefinition, metric: LimitMetric, window: WindowKind, now: number): string {
  return `${prefix}limit:${def.scope === 'organization' ? 'o' : 'u'}:${def.id}:${metric}:${windowAt(window, now).start}`;
}

/** What every counter key of one user starts with (an erasure deletes them all, whatever their window). */
export const userCounterPrefix = (prefix: string, userId: string) => `${prefix}limit:u:${userId}:`;

export function counterAdd(prefix: string, def: LimitDefinition, metric: LimitMetric, window: WindowKind, amount: number, now: number): CounterAdd {
  return { key: counterKey(prefix, def, metric, window, now), amount, expiresAt: counterExpiry(window, windowAt(window, now)) };
}
