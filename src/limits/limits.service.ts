import { Injectable, Optional } from '@nestjs/common';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { MetricsService } from '../metrics/metrics.service';
import { PricingService } from '../proxy/pricing.service';
import { CallRequest, estimateCall } from './call-estimate';
import type { CounterAdd, CounterStore, CounterTake } from './counter-store';
import { LimitCountersService } from './limit-counters.service';
import { counterAdd, counterKey, hasNoLimits, LimitDefinition, LimitKind, LimitMetric, limitRef, LimitScope, LimitSubjects } from './limit-definitions';
import { counterExpiry, resetDuration, retryAfterSeconds, windowAt, WindowKind } from './limit-windows';
import { LimitsRepository } from './limits.repository';

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

interface CheckMeta {
  def: LimitDefinition;
  kind: LimitKind;
  window: WindowKind;
  limit: number;
}

const MAX_CACHED_DEFINITIONS = 200_000;

const KIND_TEXT: Record<LimitKind, string> = {
  requests: 'requests per minute',
  tokens: 'tokens per minute',
  daily_budget: 'daily budget',
  monthly_budget: 'monthly budget',
};

const unlimited = (subjects: LimitSubjects): Admission => ({ headers: null, subjects, at: 0, reservation: null, settled: false });
const usd = (n: number) => `$${n.toFixed(n < 1 ? 4 : 2)}`;

/**
 * Request, token and spending limits per organization and per user, enforced on each call; they are set and shown
 * by LimitsAdminService.
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
  /** "o:<org id>" / "u:<user id>" → the definition, null when none is set, or the pending load */
  private readonly definitions = new Cache<LimitDefinition | null>({ max: MAX_CACHED_DEFINITIONS });
  /** the clock the windows are computed with, here and in LimitsAdminService (tests move it to cross a window boundary) */
  clock: () => number = Date.now;

  constructor(
    private readonly rows: LimitsRepository,
    private readonly counters: LimitCountersService,
    changes: ChangeFeedService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    private readonly pricing: PricingService,
    @Optional() private readonly metrics?: MetricsService,
  ) {
    changes.on('limits', (key) => this.definitions.delete(key));
  }

  // ---------------------------------------------------------------- hot path

  /**
   * Checks every limit of the organization and the user before an upstream call, and counts the call: one request,
   * and the estimate of `call` against token and budget limits (estimated only when such a limit applies).
   * Throws 429 `rate_limit_exceeded` / `budget_exceeded` with Retry-After; the admission must be settled.
   */
  admit(subjects: LimitSubjects, call?: CallRequest): Promise<Admission> {
    const org = this.definitions.peek(limitRef('organization', subjects.orgId));
    const user = this.definitions.peek(limitRef('user', subjects.userId));
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
      if (!reservation && this.definitions.peek(limitRef('organization', subjects.orgId)) === null && this.definitions.peek(limitRef('user', subjects.userId)) === null) {
        return;
      }
      const tokens = usage?.tokens && usage.tokens > 0 && Number.isFinite(usage.tokens) ? usage.tokens : 0;
      const cost = usage?.cost && usage.cost > 0 && Number.isFinite(usage.cost) ? usage.cost : 0;
      if (!tokens && !cost && !reservation) return;
      const now = this.clock();
      const at = admission.at || now;
      const additions: CounterAdd[] = [];
      // limits set while the call ran count it too
      for (const def of await this.definitionsOf(subjects)) {
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
    const defs = await this.definitionsOf(subjects);
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
    const take = (def: LimitDefinition, metric: LimitMetric, window: WindowKind, kind: LimitKind, limit: number | null, amount: number) => {
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

  private key(def: LimitDefinition, metric: LimitMetric, window: WindowKind, now: number): string {
    return counterKey(this.config.redisKeyPrefix, def, metric, window, now);
  }

  private addItem(def: LimitDefinition, metric: LimitMetric, window: WindowKind, amount: number, now: number): CounterAdd {
    return counterAdd(this.config.redisKeyPrefix, def, metric, window, amount, now);
  }

  // ---------------------------------------------------------------- definitions cache

  /** The organization's and the user's limits (null where none are set), from the cache. */
  definitionsOf(subjects: LimitSubjects): Promise<[LimitDefinition | null, LimitDefinition | null]> {
    return Promise.all([this.definition('organization', subjects.orgId), this.definition('user', subjects.userId)]);
  }

  private definition(scope: LimitScope, id: string): LimitDefinition | null | Promise<LimitDefinition | null> {
    const k = limitRef(scope, id);
    // the plain value when loaded, so the hot path skips a promise
    const cached = this.definitions.peek(k);
    if (cached !== undefined) return cached;
    return this.definitions.get(k, () => this.loadDefinition(scope, id));
  }

  private async loadDefinition(scope: LimitScope, id: string): Promise<LimitDefinition | null> {
    const values = await this.rows.valuesOf(scope, id);
    return hasNoLimits(values) ? null : { scope, id, ...values };
  }
}
