import { Injectable, Optional } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { toOrganizationView, OrganizationView } from '../auth/organizations.service';
import { OrganizationEntity } from '../auth/organization.entity';
import { UserEntity } from '../auth/user.entity';
import { AppException, isUniqueViolation } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { MetricsService } from '../metrics/metrics.service';
import { PricingService } from '../proxy/pricing.service';
import { CallRequest, estimateCall } from './call-estimate';
import type { CounterAdd, CounterStore, CounterTake } from './counter-store';
import { LimitCountersService } from './limit-counters.service';
import { counterExpiry, resetDuration, retryAfterSeconds, windowAt, WindowKind } from './limit-windows';
import { LimitEntity } from './limit.entity';

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

/** What a finished call used: its tokens and its recorded cost (null where unknown). */
export interface CallUsage {
  tokens?: number | null;
  cost?: number | null;
}

/**
 * An admitted call: the X-RateLimit-* headers to set on the response (null when no rate limit applies) and what
 * it reserved against token and budget limits. Every admission is settled once, with what the call really used
 * (null when it used nothing: it failed before upstream, or upstream billed nothing).
 */
export interface Admission {
  readonly headers: Record<string, string> | null;
  readonly subjects: LimitSubjects;
  /** when the call was admitted: its usage counts in the windows of that moment (0: no limit applied) */
  readonly at: number;
  readonly reservation: Reservation | null;
  settled: boolean;
}

interface Reservation {
  store: CounterStore['name'];
  /** the estimated tokens and cost taken from each counter */
  items: CounterAdd[];
}

interface Definition extends LimitValues {
  scope: LimitScope;
  id: string;
}

type Metric = 'rpm' | 'tpm' | 'day' | 'month';

interface CheckMeta {
  def: Definition;
  kind: LimitKind;
  window: WindowKind;
  limit: number;
}

const MAX_CACHED_DEFINITIONS = 200_000;
const MAX_RPM = 1_000_000_000;
const MAX_USD = 1_000_000_000;

const KIND_TEXT: Record<LimitKind, string> = {
  requests: 'requests per minute',
  tokens: 'tokens per minute',
  daily_budget: 'daily budget',
  monthly_budget: 'monthly budget',
};

const ref = (scope: LimitScope, id: string) => (scope === 'organization' ? `o:${id}` : `u:${id}`);
const toValues = (e: LimitEntity | null): LimitValues => ({
  rpm: e?.rpm ?? null,
  tpm: e?.tpm ?? null,
  daily_budget_usd: e?.dailyBudgetUsd ?? null,
  monthly_budget_usd: e?.monthlyBudgetUsd ?? null,
});
const isEmpty = (v: LimitValues) => v.rpm === null && v.tpm === null && v.daily_budget_usd === null && v.monthly_budget_usd === null;
const unlimited = (subjects: LimitSubjects): Admission => ({ headers: null, subjects, at: 0, reservation: null, settled: false });
const usd = (n: number) => `$${n.toFixed(n < 1 ? 4 : 2)}`;

/**
 * Request, token and spending limits per organization and per user.
 *
 * Hot path: `admit()` before the upstream call and `settle()` once the call is recorded. Definitions are cached in
 * memory (loaded once per organization/user, dropped through the change feed when the CLI changes them), so a call
 * of an organization and user without limits costs two Map lookups and no round trip. With limits, admission is one
 * atomic round trip to the counter store (Redis, or PostgreSQL).
 *
 * Admission takes every counter of the call at once (one Redis script, or one PostgreSQL function call): each is
 * checked, and only when none has reached its limit is the call counted, one request in the rpm windows and an
 * estimate of its tokens and cost (see call-estimate.ts) in the tpm and budget windows. A refused call takes
 * nothing, and no admission ever sees another's counts half-applied. Settlement replaces the estimate by what the
 * call really used. Requests per minute are therefore exact; tokens and costs can pass a limit only by the last
 * admitted call and by what the estimates of the calls then in flight fell short of their real usage (see
 * docs/limits-and-metrics.md), not by the number of calls in flight. A call whose cost is unknown counts nothing.
 */
@Injectable()
export class LimitsService {
  /** "o:<org id>" / "u:<user id>" → the definition, null when none is set */
  private readonly definitions = new Cache<Definition | null>({ max: MAX_CACHED_DEFINITIONS });
  /** the clock the windows are computed with (tests move it to cross a window boundary) */
  clock: () => number = Date.now;

  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(LimitEntity) private readonly limits: Repository<LimitEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
    private readonly counters: LimitCountersService,
    private readonly changes: ChangeFeedService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    private readonly pricing: PricingService,
    @Optional() private readonly metrics?: MetricsService,
  ) {
    changes.on('limits', (key) => this.definitions.delete(key));
    counters.onSwitch(() => void this.reseedAllBudgets());
  }

  // ---------------------------------------------------------------- hot path

  /**
   * Checks every limit of the organization and the user before an upstream call, and counts the call: one request,
   * and the estimate of `call` against token and budget limits (estimated only when such a limit applies).
   * Throws 429 `rate_limit_exceeded` / `budget_exceeded` with Retry-After; the admission must be settled.
   */
  admit(subjects: LimitSubjects, call?: CallRequest): Promise<Admission> {
    const org = this.definitions.peek(ref('organization', subjects.orgId));
    const user = this.definitions.peek(ref('user', subjects.userId));
    if (org === null && user === null) return Promise.resolve(unlimited(subjects));
    return this.admitWithLimits(subjects, call);
  }

  /**
   * Releases what the admission reserved and counts what the call really used: its tokens (TPM windows) and
   * recorded cost (budgets), in the windows it was admitted in. Once per admission; later calls do nothing.
   * Never throws: a counter that cannot be written is logged, the call itself already happened.
   */
  async settle(admission: Admission, usage: CallUsage | null): Promise<void> {
    if (admission.settled) return;
    admission.settled = true;
    const { subjects, reservation } = admission;
    try {
      if (!reservation && this.definitions.peek(ref('organization', subjects.orgId)) === null && this.definitions.peek(ref('user', subjects.userId)) === null) {
        return;
      }
      const tokens = usage?.tokens && usage.tokens > 0 && Number.isFinite(usage.tokens) ? usage.tokens : 0;
      const cost = usage?.cost && usage.cost > 0 && Number.isFinite(usage.cost) ? usage.cost : 0;
      if (!tokens && !cost && !reservation) return;
      const now = this.clock();
      const at = admission.at || now;
      const additions: CounterAdd[] = [];
      // limits set while the call ran count it too
      for (const def of await this.definitionsFor(subjects)) {
        if (!def) continue;
        if (def.tpm !== null && tokens) additions.push(this.addItem(def, 'tpm', 'minute', tokens, at));
        if (def.daily_budget_usd !== null && cost) additions.push(this.addItem(def, 'day', 'day', cost, at));
        if (def.monthly_budget_usd !== null && cost) additions.push(this.addItem(def, 'month', 'month', cost, at));
      }
      const releases = reservation ? reservation.items.map((i) => ({ ...i, amount: -i.amount })) : [];
      if (additions.length || releases.length) await this.counters.settle(additions, releases, reservation?.store ?? this.counters.current, now);
    } catch (err) {
      this.logger.write('warn', 'limit counters could not be updated after a call', { err, org_id: subjects.orgId });
    }
  }

  private async admitWithLimits(subjects: LimitSubjects, call: CallRequest | undefined): Promise<Admission> {
    const defs = await this.definitionsFor(subjects);
    const now = this.clock();
    let tokens = 0;
    let cost = 0;
    if (call && defs.some((d) => d && (d.tpm !== null || d.daily_budget_usd !== null || d.monthly_budget_usd !== null))) {
      const estimate = estimateCall(call);
      tokens = estimate.input + estimate.output;
      cost = this.pricing.cost(call.model, estimate) ?? 0;
    }
    const items: CounterTake[] = [];
    const meta: CheckMeta[] = [];
    const take = (def: Definition, metric: Metric, window: WindowKind, kind: LimitKind, limit: number | null, amount: number) => {
      if (limit === null) return;
      items.push({ key: this.key(def, metric, window, now), amount, limit, expiresAt: counterExpiry(window, windowAt(window, now)) });
      meta.push({ def, kind, window, limit });
    };
    // budgets first: when several limits are reached, the one that lasts longest is the one reported
    for (const def of defs) if (def) take(def, 'month', 'month', 'monthly_budget', def.monthly_budget_usd, cost);
    for (const def of defs) if (def) take(def, 'day', 'day', 'daily_budget', def.daily_budget_usd, cost);
    for (const def of defs) if (def) take(def, 'tpm', 'minute', 'tokens', def.tpm, tokens);
    for (const def of defs) if (def) take(def, 'rpm', 'minute', 'requests', def.rpm, 1);
    if (items.length === 0) return unlimited(subjects);

    const outcome = await this.counters.take(items, now);
    if (outcome.refused >= 0) throw this.refusal(meta[outcome.refused], now);
    const after = outcome.values.map((v, i) => v + items[i].amount);
    const reserved = items.filter((item, i) => meta[i].kind !== 'requests' && item.amount > 0).map(({ key, amount, expiresAt }) => ({ key, amount, expiresAt }));
    return {
      headers: this.rateLimitHeaders(meta, after, now),
      subjects,
      at: now,
      reservation: reserved.length ? { store: outcome.store, items: reserved } : null,
      settled: false,
    };
  }

  private refusal(meta: CheckMeta, now: number): AppException {
    this.metrics?.limitRefusal(meta.kind, meta.def.scope);
    const w = windowAt(meta.window, now);
    const wait = w.end - now;
    const headers: Record<string, string> = { 'Retry-After': retryAfterSeconds(wait) };
    const who = meta.def.scope === 'organization' ? "the organization's" : "the user's";
    if (meta.kind === 'requests' || meta.kind === 'tokens') {
      const suffix = meta.kind === 'requests' ? 'Requests' : 'Tokens';
      headers[`X-RateLimit-Limit-${suffix}`] = String(meta.limit);
      headers[`X-RateLimit-Remaining-${suffix}`] = '0';
      headers[`X-RateLimit-Reset-${suffix}`] = resetDuration(wait);
      return new AppException(
        'rate_limit',
        `Rate limit reached: ${who} limit of ${meta.limit} ${KIND_TEXT[meta.kind]}. Try again in ${retryAfterSeconds(wait)}s.`,
        { code: 'rate_limit_exceeded', headers },
      );
    }
    return new AppException(
      'rate_limit',
      `Budget exceeded: ${who} ${KIND_TEXT[meta.kind]} of ${usd(meta.limit)} is spent; it resets at ${new Date(w.end).toISOString()}.`,
      { code: 'budget_exceeded', headers },
    );
  }

  /** OpenAI's X-RateLimit-* headers for the limit closest to being reached (organization or user), this call counted. */
  private rateLimitHeaders(meta: CheckMeta[], after: number[], now: number): Record<string, string> | null {
    let headers: Record<string, string> | null = null;
    const reset = resetDuration(windowAt('minute', now).end - now);
    const remaining = { requests: Infinity, tokens: Infinity };
    meta.forEach((m, i) => {
      if (m.kind !== 'requests' && m.kind !== 'tokens') return;
      const left = Math.max(0, Math.floor(m.limit - after[i]));
      if (left >= remaining[m.kind]) return;
      remaining[m.kind] = left;
      const suffix = m.kind === 'requests' ? 'Requests' : 'Tokens';
      headers ??= {};
      headers[`X-RateLimit-Limit-${suffix}`] = String(m.limit);
      headers[`X-RateLimit-Remaining-${suffix}`] = String(left);
      headers[`X-RateLimit-Reset-${suffix}`] = reset;
    });
    return headers;
  }

  private key(def: Definition, metric: Metric, window: WindowKind, now: number): string {
    return `${this.config.redisKeyPrefix}limit:${def.scope === 'organization' ? 'o' : 'u'}:${def.id}:${metric}:${windowAt(window, now).start}`;
  }

  private addItem(def: Definition, metric: Metric, window: WindowKind, amount: number, now: number): CounterAdd {
    return { key: this.key(def, metric, window, now), amount, expiresAt: counterExpiry(window, windowAt(window, now)) };
  }

  // ---------------------------------------------------------------- definitions cache

  private definitionsFor(subjects: LimitSubjects): Promise<[Definition | null, Definition | null]> {
    return Promise.all([this.definition('organization', subjects.orgId), this.definition('user', subjects.userId)]);
  }

  private definition(scope: LimitScope, id: string): Definition | null | Promise<Definition | null> {
    const k = ref(scope, id);
    // the plain value when loaded, so the hot path skips a promise
    const cached = this.definitions.peek(k);
    if (cached !== undefined) return cached;
    return this.definitions.get(k, () => this.loadDefinition(scope, id));
  }

  private async loadDefinition(scope: LimitScope, id: string): Promise<Definition | null> {
    const row =
      scope === 'organization'
        ? await this.limits.createQueryBuilder('l').where('l.organization_id = :id AND l.user_id IS NULL', { id }).getOne()
        : await this.limits.findOneBy({ userId: id });
    if (!row) return null;
    const values = toValues(row);
    return isEmpty(values) ? null : { scope, id, ...values };
  }

  // ---------------------------------------------------------------- administration (CLI) and GET /v1/limits

  /** Sets or removes limits of an organization (`org limits`). */
  async setOrganizationLimits(orgId: string, patch: LimitPatch): Promise<OrgLimitsView> {
    const org = isUuid(orgId) ? await this.orgs.findOneBy({ id: orgId }) : null;
    if (!org) throw AppException.notFound('organization', orgId);
    await this.applyPatch('organization', orgId, orgId, patch);
    return this.organizationView(org);
  }

  /** Sets or removes limits of a user, by internal id (`user limits`). */
  async setUserLimits(userId: string, patch: LimitPatch): Promise<SubjectLimitsView & { organization_id: string; external_id: string }> {
    const user = isUuid(userId) ? await this.users.findOneBy({ id: userId }) : null;
    if (!user) throw AppException.notFound('user', userId);
    await this.applyPatch('user', user.id, user.organizationId, patch);
    const view = await this.subjectView('user', user.id, await this.storedValues('user', user.id));
    return { ...view, organization_id: user.organizationId, external_id: user.externalId };
  }

  /** The organization with its limits and current consumption (`org show`). */
  async showOrganization(orgId: string): Promise<OrgLimitsView> {
    const org = isUuid(orgId) ? await this.orgs.findOneBy({ id: orgId }) : null;
    if (!org) throw AppException.notFound('organization', orgId);
    return this.organizationView(org);
  }

  /** `GET /v1/limits`: the acting organization's and user's limits and consumption. */
  async forActing(acting: LimitSubjects & { externalUserId: string }): Promise<LimitsResponse> {
    const [org, user] = await this.definitionsFor(acting);
    const [orgView, userView] = await Promise.all([
      this.subjectView('organization', acting.orgId, org ?? toValues(null)),
      this.subjectView('user', acting.userId, user ?? toValues(null)),
    ]);
    return { object: 'limits', organization: orgView, user: { ...userView, external_id: acting.externalUserId } };
  }

  private async organizationView(org: OrganizationEntity): Promise<OrgLimitsView> {
    const { limits, usage, resets_at } = await this.subjectView('organization', org.id, await this.storedValues('organization', org.id));
    return { ...toOrganizationView(org), limits, usage, resets_at };
  }

  private async storedValues(scope: LimitScope, id: string): Promise<LimitValues> {
    return toValues(await this.loadRow(this.limits.manager, scope, id));
  }

  private loadRow(m: EntityManager, scope: LimitScope, id: string, lock = false): Promise<LimitEntity | null> {
    const qb = m.createQueryBuilder(LimitEntity, 'l');
    if (scope === 'organization') qb.where('l.organization_id = :id AND l.user_id IS NULL', { id });
    else qb.where('l.user_id = :id', { id });
    if (lock) qb.setLock('pessimistic_write');
    return qb.getOne();
  }

  private async subjectView(scope: LimitScope, id: string, stored: LimitValues): Promise<SubjectLimitsView> {
    const now = this.clock();
    const limits: LimitValues = {
      rpm: stored.rpm,
      tpm: stored.tpm,
      daily_budget_usd: stored.daily_budget_usd,
      monthly_budget_usd: stored.monthly_budget_usd,
    };
    const def: Definition = { scope, id, ...limits };
    const wanted: [keyof LimitUsage, string | null][] = [
      ['requests_this_minute', limits.rpm !== null ? this.key(def, 'rpm', 'minute', now) : null],
      ['tokens_this_minute', limits.tpm !== null ? this.key(def, 'tpm', 'minute', now) : null],
      ['cost_today_usd', limits.daily_budget_usd !== null ? this.key(def, 'day', 'day', now) : null],
      ['cost_this_month_usd', limits.monthly_budget_usd !== null ? this.key(def, 'month', 'month', now) : null],
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

  private async applyPatch(scope: LimitScope, id: string, orgId: string, patch: LimitPatch): Promise<void> {
    const clean = validatePatch(patch);
    if (Object.keys(clean).length === 0) return;
    let before: LimitValues | undefined;
    let after: LimitValues | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.dataSource.transaction(async (m) => {
          const row = await this.loadRow(m, scope, id, true);
          before = toValues(row);
          after = { ...before, ...clean };
          if (isEmpty(after)) {
            if (row) await m.delete(LimitEntity, { id: row.id });
          } else {
            const entity = row ?? m.create(LimitEntity, { organizationId: orgId, userId: scope === 'user' ? id : null });
            entity.rpm = after.rpm;
            entity.tpm = after.tpm;
            entity.dailyBudgetUsd = after.daily_budget_usd;
            entity.monthlyBudgetUsd = after.monthly_budget_usd;
            await m.save(entity);
          }
          await this.changes.publish(m, 'limits', ref(scope, id));
        });
        break;
      } catch (err) {
        // two admins creating the same subject's row at once: the second one updates it instead
        if (attempt === 0 && isUniqueViolation(err)) continue;
        throw err;
      }
    }
    const budgetAdded =
      (after!.daily_budget_usd !== null && before!.daily_budget_usd === null) ||
      (after!.monthly_budget_usd !== null && before!.monthly_budget_usd === null);
    // a new budget starts from what the window has already spent, as recorded
    if (budgetAdded) await this.seedBudget({ scope, id, ...after! }, orgId);
  }

  /** Sets a subject's budget counters of the current day and month to the recorded cost of its calls. */
  private async seedBudget(def: Definition, orgId: string): Promise<void> {
    const now = this.clock();
    const day = windowAt('day', now);
    const month = windowAt('month', now);
    const byUser = def.scope === 'user';
    const rows: { day: number | null; month: number | null }[] = await this.dataSource.query(
      `SELECT sum(cost) FILTER (WHERE created_at >= $3) AS day, sum(cost) AS month FROM (
         SELECT cost, created_at FROM exchanges
          WHERE organization_id = $1 AND ($4::uuid IS NULL OR user_id = $4) AND created_at >= $2 AND cost IS NOT NULL
         UNION ALL
         SELECT cost, created_at FROM analysis_results
          WHERE organization_id = $1 AND ($4::uuid IS NULL OR user_id = $4) AND created_at >= $2 AND cost IS NOT NULL
       ) spent`,
      [orgId, new Date(month.start).toISOString(), new Date(day.start).toISOString(), byUser ? def.id : null],
    );
    const items: CounterAdd[] = [];
    if (def.daily_budget_usd !== null) items.push(this.addItem(def, 'day', 'day', Number(rows[0]?.day ?? 0), now));
    if (def.monthly_budget_usd !== null) items.push(this.addItem(def, 'month', 'month', Number(rows[0]?.month ?? 0), now));
    await this.counters.set(items, now);
  }

  /** After the counters moved between Redis and PostgreSQL: budget counters are rebuilt there from the records. */
  private async reseedAllBudgets(): Promise<void> {
    try {
      const rows = await this.limits
        .createQueryBuilder('l')
        .where('l.daily_budget_usd IS NOT NULL OR l.monthly_budget_usd IS NOT NULL')
        .getMany();
      for (const row of rows) {
        const scope: LimitScope = row.userId ? 'user' : 'organization';
        await this.seedBudget({ scope, id: row.userId ?? row.organizationId, ...toValues(row) }, row.organizationId);
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
