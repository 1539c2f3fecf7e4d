import { Injectable } from '@nestjs/common';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { OrganizationsService, OrganizationView } from '../auth/organizations.service';
import { UsersService } from '../auth/users.service';
import { AppException } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ExchangesRepository } from '../exchanges/exchanges.repository';
import { PricingService } from '../pricing/pricing.service';
import type { CounterAdd } from './counter-store';
import { LimitCountersService } from './limit-counters.service';
import { counterAdd, counterKey, LimitDefinition, LimitPatch, LimitScope, LimitSubjects, LimitValues, toLimitValues } from './limit-definitions';
import { windowAt } from './limit-windows';
import { LimitsRepository } from './limits.repository';
import { LimitsService } from './limits.service';
import { RecordedSpendRepository, Spend, SpendQuery } from './recorded-spend.repository';

export interface LimitUsage {
  requests_this_minute: number | null;
  tokens_this_minute: number | null;
  cost_today_usd: number | null;
  cost_this_month_usd: number | null;
}

export interface SubjectLimitsView {
  id: string;
  limits: LimitValues;
  /** consumption of the current windows, counted for each limit that is set (null where none is) */
  usage: LimitUsage;
  resets_at: { minute: string; day: string; month: string };
}

export interface LimitsResponse {
  object: 'limits';
  organization: SubjectLimitsView;
  user: SubjectLimitsView & { external_id: string };
}

export interface OrgLimitsView extends OrganizationView {
  limits: LimitValues;
  usage: LimitUsage;
  resets_at: SubjectLimitsView['resets_at'];
}

export type UserLimitsView = SubjectLimitsView & { organization_id: string; external_id: string };

const MAX_RPM = 1_000_000_000;
const MAX_USD = 1_000_000_000;

/**
 * Setting and showing limits: the CLI's `org limits` / `user limits` / `org show` and `GET /v1/limits`.
 *
 * A budget set where there was none starts from what the current day and month have already spent, as recorded;
 * so do all budget counters after the counters moved between Redis and PostgreSQL. Windows are computed with the
 * clock of LimitsService, so what is shown and seeded is what admission counts.
 */
@Injectable()
export class LimitsAdminService {
  constructor(
    private readonly limits: LimitsService,
    private readonly rows: LimitsRepository,
    private readonly spend: RecordedSpendRepository,
    private readonly exchanges: ExchangesRepository,
    private readonly orgs: OrganizationsService,
    private readonly users: UsersService,
    private readonly counters: LimitCountersService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    private readonly pricing: PricingService,
    private readonly audit: AuditService,
  ) {
    counters.onSwitch(() => void this.reseedAllBudgets());
  }

  /** Sets or removes limits of an organization (`org limits`). */
  async setOrganizationLimits(orgId: string, patch: LimitPatch, actor: AuditActor): Promise<OrgLimitsView> {
    const org = await this.orgs.get(orgId);
    await this.applyPatch('organization', org.id, org.id, patch, actor);
    return this.organizationView(org);
  }

  /** Sets or removes limits of a user, by internal id (`user limits`). */
  async setUserLimits(userId: string, patch: LimitPatch, actor: AuditActor): Promise<UserLimitsView> {
    const user = await this.users.get(userId);
    await this.applyPatch('user', user.id, user.organization_id, patch, actor);
    const view = await this.subjectView('user', user.id, await this.rows.valuesOf('user', user.id));
    return { ...view, organization_id: user.organization_id, external_id: user.external_id };
  }

  /** The organization with its limits and current consumption (`org show`). */
  async showOrganization(orgId: string): Promise<OrgLimitsView> {
    return this.organizationView(await this.orgs.get(orgId));
  }

  /** `GET /v1/limits`: the acting organization's and user's limits and consumption. */
  async forActing(acting: LimitSubjects & { externalUserId: string }): Promise<LimitsResponse> {
    const [org, user] = await this.limits.definitionsOf(acting);
    const [orgView, userView] = await Promise.all([
      this.subjectView('organization', acting.orgId, org ?? toLimitValues(null)),
      this.subjectView('user', acting.userId, user ?? toLimitValues(null)),
    ]);
    return { object: 'limits', organization: orgView, user: { ...userView, external_id: acting.externalUserId } };
  }

  private async organizationView(org: OrganizationView): Promise<OrgLimitsView> {
    const { limits, usage, resets_at } = await this.subjectView('organization', org.id, await this.rows.valuesOf('organization', org.id));
    return { ...org, limits, usage, resets_at };
  }

  private async subjectView(scope: LimitScope, id: string, stored: LimitValues): Promise<SubjectLimitsView> {
    const now = this.limits.clock();
    const limits: LimitValues = {
      rpm: stored.rpm,
      tpm: stored.tpm,
      daily_budget_usd: stored.daily_budget_usd,
      monthly_budget_usd: stored.monthly_budget_usd,
    };
    const def: LimitDefinition = { scope, id, ...limits };
    const prefix = this.config.redisKeyPrefix;
    const wanted: [keyof LimitUsage, string | null][] = [
      ['requests_this_minute', limits.rpm !== null ? counterKey(prefix, def, 'rpm', 'minute', now) : null],
      ['tokens_this_minute', limits.tpm !== null ? counterKey(prefix, def, 'tpm', 'minute', now) : null],
      ['cost_today_usd', limits.daily_budget_usd !== null ? counterKey(prefix, def, 'day', 'day', now) : null],
      ['cost_this_month_usd', limits.monthly_budget_usd !== null ? counterKey(prefix, def, 'month', 'month', now) : null],
    ];
    const keys = wanted.filter(([, k]) => k !== null).map(([, k]) => k!);
    const values = await this.counters.get(keys);
    const usage: LimitUsage = { requests_this_minute: null, tokens_this_minute: null, cost_today_usd: null, cost_this_month_usd: null };
    let i = 0;
    for (const [field, k] of wanted) if (k !== null) usage[field] = field.startsWith('cost_') ? this.pricing.roundUsd(values[i++]) : values[i++];
    return {
      id,
      limits,
      usage,
      resets_at: {
        minute: new Date(windowAt('minute', now).end).toISOString(),
        day: new Date(windowAt('day', now).end).toISOString(),
        month: new Date(windowAt('month', now).end).toISOString(),
      },
    };
  }

  private async applyPatch(scope: LimitScope, id: string, orgId: string, patch: LimitPatch, actor: AuditActor): Promise<void> {
    const clean = validatePatch(patch);
    if (Object.keys(clean).length === 0) return;
    const fields = Object.keys(clean) as (keyof LimitPatch)[];
    const set = fields.filter((f) => clean[f] !== null);
    const removed = fields.filter((f) => clean[f] === null);
    const { before, after } = await this.rows.applyPatch(scope, id, orgId, clean, (m) =>
      this.audit.record(m, { orgId, actor, action: set.length ? 'limits.set' : 'limits.remove', target: id, details: { subject: scope, set, removed } }),
    );
    const budgetAdded =
      (after.daily_budget_usd !== null && before.daily_budget_usd === null) ||
      (after.monthly_budget_usd !== null && before.monthly_budget_usd === null);
    // a new budget starts from what the window has already spent, as recorded
    if (budgetAdded) await this.seedBudget({ scope, id, ...after }, orgId);
  }

  /** Sets a subject's budget counters of the current day and month to the recorded cost of its calls. */
  private async seedBudget(def: LimitDefinition, orgId: string): Promise<void> {
    const now = this.limits.clock();
    const spent = await this.recordedSpend({
      orgId,
      userId: def.scope === 'user' ? def.id : null,
      monthStart: windowAt('month', now).start,
      dayStart: windowAt('day', now).start,
    });
    const prefix = this.config.redisKeyPrefix;
    const items: CounterAdd[] = [];
    if (def.daily_budget_usd !== null) items.push(counterAdd(prefix, def, 'day', 'day', spent.day, now));
    if (def.monthly_budget_usd !== null) items.push(counterAdd(prefix, def, 'month', 'month', spent.month, now));
    await this.counters.set(items, now);
  }

  /** What the subject's proxied calls and analyses cost this month and today, as recorded. */
  private async recordedSpend(q: SpendQuery): Promise<Spend> {
    const [calls, analyses] = await Promise.all([this.exchanges.costSince(q), this.spend.costOfAnalysisResults(q)]);
    return { day: calls.day + analyses.day, month: calls.month + analyses.month };
  }

  /** After the counters moved between Redis and PostgreSQL: budget counters are rebuilt there from the records. */
  private async reseedAllBudgets(): Promise<void> {
    try {
      for (const row of await this.rows.findWithBudgets()) {
        const scope: LimitScope = row.userId ? 'user' : 'organization';
        await this.seedBudget({ scope, id: row.userId ?? row.organizationId, ...toLimitValues(row) }, row.organizationId);
      }
    } catch (err) {
      this.logger.write('warn', 'budget counters could not be rebuilt after a counter store switch', { err });
    }
  }
}

/** Checks a patch: whole numbers ≥ 1 for rpm/tpm, positive amounts for budgets, null to remove. */
export function validatePatch(patch: LimitPatch): LimitPatch {
  const out: LimitPatch = {};
  for (const field of ['rpm', 'tpm'] as const) {
    const v = patch[field];
    if (v === undefined) continue;
    if (v !== null && (!Number.isInteger(v) || v < 1 || v > MAX_RPM)) {
      throw AppException.invalid(`${field} must be a whole number between 1 and ${MAX_RPM} (or 0/none to remove it)`, field);
    }
    out[field] = v;
  }
  for (const field of ['daily_budget_usd', 'monthly_budget_usd'] as const) {
    const v = patch[field];
    if (v === undefined) continue;
    if (v !== null && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_USD)) {
      throw AppException.invalid(`${field} must be an amount in USD above 0 (or 0/none to remove it)`, field);
    }
    out[field] = v;
  }
  return out;
}
