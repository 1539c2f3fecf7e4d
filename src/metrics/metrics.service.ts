import { CALL_PHASES, PhaseSums } from './call-phases';
import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DataSource } from 'typeorm';
import { PricingService } from '../pricing/pricing.service';
import { EXCHANGE_STATUSES } from '../exchanges/recorder/exchange-record';

/** What the proxy reports about one proxied call once it is over. */
export interface ExchangeObservation {
  /** the proxied endpoint: 'responses' | 'chat.completions' (anything else is reported as 'other') */
  route: string;
  /** the exchange status ('completed', 'failed', 'client_aborted', …) or the HTTP status answered */
  status: string | number;
  /** the model asked for or answered (reported as its price-table family, or 'other') */
  model?: string | null;
  totalMs?: number | null;
  /** from sending the request upstream to the end of its answer */
  upstreamMs?: number | null;
  ttfbMs?: number | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
  cost?: number | null;
}

/** How a background response's record was closed, with what it used beyond what its creation had counted. */
export interface BackgroundResponseClosed {
  /** completed, failed, incomplete, cancelled (as the upstream said), or interrupted (no longer followed) */
  outcome: string;
  model?: string | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
  cost?: number | null;
}

export interface CircuitStates {
  closed: number;
  open: number;
  half_open: number;
}

const ROUTES = new Set(['responses', 'chat.completions', 'models']);
/** a stored exchange's statuses, and the calls refused before any was stored */
const STATUS_LABELS = new Set<string>([...EXCHANGE_STATUSES, 'rate_limited', 'rejected']);
const BACKGROUND_OUTCOMES = new Set(['completed', 'failed', 'incomplete', 'cancelled', 'interrupted']);
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const MAX_MODEL_MEMO = 1000;
/**
 * Longer model names are 'other' without being looked up or remembered: the memo's keys are what clients send,
 * so its size in bytes, not only in entries, must be bounded (1,000 names of 9 MB would be 9 GB).
 */
export const MAX_MODEL_NAME_LENGTH = 256;
/** upstream keys given a label value of their own (an id prefix); the rest share 'other' */
const MAX_KEY_LABELS = 200;
export type KeyEvent = 'served' | 'rate_limited' | 'invalid' | 'error' | 'failover';
const HTTP_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);

interface PgPoolLike {
  totalCount?: number;
  idleCount?: number;
  waitingCount?: number;
}

/** the routes phase sums are kept for: index = 2 × route + streamed */
export const PHASE_ROUTES = ['responses', 'responses:stream', 'chat.completions', 'chat.completions:stream'] as const;

/** The index in PHASE_ROUTES of a proxied call's route. */
export function phaseRoute(endpoint: 'responses' | 'chat.completions', stream: boolean): number {
  return (endpoint === 'responses' ? 0 : 2) + (stream ? 1 : 0);
}

/**
 * The Prometheus metrics (prom-client, a registry per application so several servers can share one process).
 * Every label value comes from a fixed set (routes, statuses, limit kinds, price-table models or 'other'): no user id,
 * key, or free text ever becomes a label. Hot-path methods only bump pre-resolved children (no label hashing).
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;
  private readonly proxied: Counter<'route' | 'status' | 'model'>;
  private readonly duration: Histogram<'route'>;
  private readonly upstreamDuration: Histogram<'route'>;
  private readonly overhead: Histogram<'route'>;
  private readonly ttfb: Histogram<'route'>;
  private readonly tokens: Counter<'model' | 'type' | 'source'>;
  private readonly cost: Counter<'model' | 'source'>;
  private readonly retries: Counter<'route'>;
  private readonly refusals: Counter<'kind' | 'scope'>;
  private readonly keyEvents: Counter<'key' | 'event'>;
  /** key id prefixes given their own label value so far (bounded: later keys are 'other') */
  private readonly keyLabels = new Set<string>();

  private readonly modelMemo = new Map<string, string>();
  private readonly children = new Map<object, Map<string, unknown>>();
  private recordQueueDepth?: () => number;
  /** phase durations of the proxied calls (see call-phases.ts), by route and whether streamed */
  readonly phases = new PhaseSums(PHASE_ROUTES);
  private circuitStates?: () => CircuitStates;

  constructor(
    dataSource: DataSource,
    private readonly pricing: PricingService,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    this.httpRequests = new Counter({
      name: 'openai_proxy_http_requests_total',
      help: 'HTTP requests answered, by method, route template and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'openai_proxy_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (until the last byte), by method and route template',
      labelNames: ['method', 'route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.keyEvents = new Counter({
      name: 'openai_proxy_upstream_key_events_total',
      help: `Upstream key events by key (the first 8 characters of its id; 'other' beyond ${MAX_KEY_LABELS} keys) and event (served, rate_limited, invalid, error, failover)`,
      labelNames: ['key', 'event'],
      registers,
    });
    this.proxied = new Counter({
      name: 'openai_proxy_proxied_requests_total',
      help: 'Proxied calls by endpoint, outcome and model',
      labelNames: ['route', 'status', 'model'],
      registers,
    });
    this.duration = new Histogram({
      name: 'openai_proxy_request_duration_seconds',
      help: 'Total latency of a proxied call as the client sees it',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: 'openai_proxy_upstream_duration_seconds',
      help: 'Time spent in the upstream call of a proxied request',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.overhead = new Histogram({
      name: 'openai_proxy_overhead_seconds',
      help: 'Latency the proxy adds to a call: total minus upstream time',
      labelNames: ['route'],
      buckets: OVERHEAD_BUCKETS,
      registers,
    });
    this.ttfb = new Histogram({
      name: 'openai_proxy_time_to_first_byte_seconds',
      help: 'Time from receiving a proxied call to the first byte of the upstream answer',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.tokens = new Counter({
      name: 'openai_proxy_tokens_total',
      help: 'Tokens used, by model, type (input/output) and source (proxy/analysis)',
      labelNames: ['model', 'type', 'source'],
      registers,
    });
    this.cost = new Counter({
      name: 'openai_proxy_cost_usd_total',
      help: 'Recorded cost in USD, by model and source (proxy/analysis)',
      labelNames: ['model', 'source'],
      registers,
    });
    this.retries = new Counter({
      name: 'openai_proxy_upstream_retries_total',
      help: 'Upstream attempts retried, by endpoint',
      labelNames: ['route'],
      registers,
    });
    this.refusals = new Counter({
      name: 'openai_proxy_limit_refusals_total',
      help: 'Calls refused by a local limit, by kind (requests/tokens/daily_budget/monthly_budget) and scope (organization/user)',
      labelNames: ['kind', 'scope'],
      registers,
    });

    const self = this;
    const phaseSeries = (values: Float64Array) =>
      function (this: Counter<string>) {
        this.reset();
        PHASE_ROUTES.forEach((name, r) => {
          const [route, stream] = name.split(':');
          CALL_PHASES.forEach((phase, i) => {
            const v = values[r * CALL_PHASES.length + i];
            if (v > 0) this.inc({ route, stream: stream ? 'true' : 'false', phase }, v);
          });
        });
      };
    new Counter({
      name: 'openai_proxy_call_phase_seconds_total',
      help: 'Time proxied calls spent in each phase (auth, body, prepare, upstream, relay, record, answer), by route and whether streamed',
      labelNames: ['route', 'stream', 'phase'],
      registers,
      collect: phaseSeries(this.phases.seconds),
    });
    new Counter({
      name: 'openai_proxy_call_phases_total',
      help: 'Proxied calls that reached each phase (the phase seconds divided by this is its mean)',
      labelNames: ['route', 'stream', 'phase'],
      registers,
      collect: phaseSeries(this.phases.calls),
    });
    new Gauge({
      name: 'openai_proxy_record_queue_depth',
      help: 'Exchange records waiting for the group-commit writer',
      registers,
      collect() {
        this.set(self.recordQueueDepth ? self.recordQueueDepth() : 0);
      },
    });
    new Gauge({
      name: 'openai_proxy_circuit_breakers',
      help: 'Upstream circuit breakers by state',
      labelNames: ['state'],
      registers,
      collect() {
        const s = self.circuitStates?.() ?? { closed: 0, open: 0, half_open: 0 };
        this.set({ state: 'closed' }, s.closed);
        this.set({ state: 'open' }, s.open);
        this.set({ state: 'half_open' }, s.half_open);
      },
    });
    new Gauge({
      name: 'openai_proxy_db_pool_connections',
      help: 'Database pool connections by state (total, idle, waiting = callers queued for a connection)',
      labelNames: ['state'],
      registers,
      collect() {
        const pool = (dataSource.isInitialized ? (dataSource.driver as unknown as { master?: PgPoolLike }).master : undefined) ?? {};
        this.set({ state: 'total' }, pool.totalCount ?? 0);
        this.set({ state: 'idle' }, pool.idleCount ?? 0);
        this.set({ state: 'waiting' }, pool.waitingCount ?? 0);
      },
    });
  }

  // ---------------------------------------------------------------- hot path

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    const m = HTTP_METHODS.has(method) ? method : 'OTHER';
    this.cached(this.httpRequests, `${m} ${route} ${status}`, () => ({ method: m, route, status: String(status) })).inc();
    this.cached(this.httpDuration, `${m} ${route}`, () => ({ method: m, route })).observe(seconds);
  }

  observeExchange(o: ExchangeObservation): void {
    const route = ROUTES.has(o.route) ? o.route : 'other';
    const status = this.statusLabel(o.status);
    const model = this.modelLabel(o.model);
    this.cached(this.proxied, `${route} ${status} ${model}`, () => ({ route, status, model })).inc();
    if (o.totalMs != null) this.cached(this.duration, route, () => ({ route })).observe(o.totalMs / 1000);
    if (o.upstreamMs != null) this.cached(this.upstreamDuration, route, () => ({ route })).observe(o.upstreamMs / 1000);
    if (o.totalMs != null && o.upstreamMs != null) {
      this.cached(this.overhead, route, () => ({ route })).observe(Math.max(0, o.totalMs - o.upstreamMs) / 1000);
    }
    if (o.ttfbMs != null) this.cached(this.ttfb, route, () => ({ route })).observe(o.ttfbMs / 1000);
    this.usage(model, 'proxy', o.inputTokens, o.outputTokens, o.cost);
  }

  /** An analysis call's usage (its tokens and cost count toward the same totals, with source="analysis"). */
  observeAnalysis(o: { model?: string | null; inputTokens?: number | null; outputTokens?: number | null; cost?: number | null }): void {
    this.usage(this.modelLabel(o.model), 'analysis', o.inputTokens, o.outputTokens, o.cost);
  }

  retry(route: string): void {
    const r = ROUTES.has(route) ? route : 'other';
    this.cached(this.retries, r, () => ({ route: r })).inc();
  }

  /** What happened with one upstream key of a pool: it served a call, was rate limited, refused (invalid), failed, or was left for another. */
  keyEvent(keyId: string, event: KeyEvent): void {
    let key = keyId.slice(0, 8);
    if (!this.keyLabels.has(key)) {
      if (this.keyLabels.size >= MAX_KEY_LABELS) key = 'other';
      else this.keyLabels.add(key);
    }
    this.cached(this.keyEvents, `${key} ${event}`, () => ({ key, event })).inc();
  }

  limitRefusal(kind: 'requests' | 'tokens' | 'daily_budget' | 'monthly_budget', scope: 'organization' | 'user'): void {
    this.cached(this.refusals, `${kind} ${scope}`, () => ({ kind, scope })).inc();
  }

  /** The exchange recorder registers its queue length; read at scrape time only. */
  registerRecordQueueDepth(read: () => number): void {
    this.recordQueueDepth = read;
  }

  /** The upstream client registers how many circuits are in each state; read at scrape time only. */
  registerCircuitStates(read: () => CircuitStates): void {
    this.circuitStates = read;
  }

  /**
   * The background-response follower registers how many responses this process follows (read at scrape time); the
   * function returned counts each record closed, by outcome, and adds what the response used beyond its creation's
   * estimate to the token and cost totals.
   */
  registerBackgroundResponses(following: () => number): (closed: BackgroundResponseClosed) => void {
    const registers = [this.registry];
    new Gauge({
      name: 'openai_proxy_background_responses_followed',
      help: 'Background responses this process follows upstream until they end',
      registers,
      collect() {
        this.set(following());
      },
    });
    const closed = new Counter({
      name: 'openai_proxy_background_responses_closed_total',
      help: 'Background responses whose record was closed, by outcome (completed, failed, incomplete, cancelled, interrupted)',
      labelNames: ['outcome'],
      registers,
    });
    return (c) => {
      const outcome = BACKGROUND_OUTCOMES.has(c.outcome) ? c.outcome : 'other';
      this.cached(closed, outcome, () => ({ outcome })).inc();
      this.usage(this.modelLabel(c.model), 'proxy', c.inputTokens, c.outputTokens, c.cost);
    };
  }

  /** A model name as a label: its price-table family (dated snapshots folded in), or 'other'. */
  modelLabel(model: string | null | undefined): string {
    if (!model) return 'none';
    if (model.length > MAX_MODEL_NAME_LENGTH) return 'other';
    const memo = this.modelMemo.get(model);
    if (memo) return memo;
    const label = this.pricing.tableEntryOf(model) ?? 'other';
    // the memo is keyed by what clients send, so it is bounded; the labels themselves always are
    if (this.modelMemo.size < MAX_MODEL_MEMO) this.modelMemo.set(model, label);
    return label;
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private usage(model: string, source: string, input?: number | null, output?: number | null, cost?: number | null): void {
    if (input && input > 0) this.cached(this.tokens, `${model} input ${source}`, () => ({ model, type: 'input', source })).inc(input);
    if (output && output > 0) this.cached(this.tokens, `${model} output ${source}`, () => ({ model, type: 'output', source })).inc(output);
    if (cost && cost > 0 && Number.isFinite(cost)) this.cached(this.cost, `${model} ${source}`, () => ({ model, source })).inc(cost);
  }

  private statusLabel(status: string | number): string {
    if (typeof status === 'number') return status >= 100 && status < 600 ? String(Math.trunc(status)) : 'other';
    return STATUS_LABELS.has(status) || /^[1-5]\d\d$/.test(status) ? status : 'other';
  }

  /** The metric's child for these labels, resolved once (prom-client would hash the labels on every call). */
  private cached<T>(metric: { labels(labels: Record<string, string>): T }, key: string, labels: () => Record<string, string>): T {
    let byKey = this.children.get(metric);
    if (!byKey) {
      byKey = new Map();
      this.children.set(metric, byKey);
    }
    let child = byKey.get(key) as T | undefined;
    if (child === undefined) {
      child = metric.labels(labels());
      byKey.set(key, child);
    }
    return child;
  }
}
