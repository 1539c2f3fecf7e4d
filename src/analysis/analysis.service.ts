import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { createHash } from 'node:crypto';
import { Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
import { JsonLogger } from '../common/logger';
import { ListPage, PageQuery, toListPage } from '../common/pagination';
import type { ActingContext } from '../common/request-context';
import { KeyHealth } from '../keys/key-health.service';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import { Admission, LimitsService } from '../limits/limits.service';
import { MetricsService } from '../metrics/metrics.service';
import { ExchangesRepository } from '../exchanges/exchanges.repository';
import { ExchangeEntity } from '../exchanges/exchange.entity';
import { PricingService } from '../pricing/pricing.service';
import { UpstreamClient } from '../upstream/upstream-client';
import { AnalysisClaimsRepository } from './analysis-claims.repository';
import { AnalysisConfigsService, definitionOf } from './analysis-configs.service';
import { AnalysisResultEntity } from './analysis-result.entity';
import {
  AnalysisDefinition,
  buildAnalysisInstructions,
  buildAnswerSchema,
  NonConformingAnswer,
  ParsedAnswer,
  parseAnswer,
  SCHEMA_NAME,
} from './analysis-schema';
import { AnalysisMetadata, AnalysisResultView, AnalysisType, CategoryScore, ListAnalysisResultsQueryDto, RunAnalysisDto } from './analysis.dto';
import { conversationOf, isEmptyConversation, renderConversation } from './conversation';

/** one retry after a non-conforming answer, then 502 */
const MAX_ATTEMPTS = 2;
/** a claim on a running analysis lapses this long after its last renewal (its holder died) */
const CLAIM_LEASE_MS = 30_000;
const CLAIM_RENEW_MS = 10_000;
/** how often a process waiting on another's identical analysis looks for its result */
const CLAIM_POLL_MS = 200;
/** analyses joined by identical calls; beyond it, a call runs its own (the claims still keep it from paying twice) */
const MAX_ANALYSES_IN_FLIGHT = 10_000;

interface Usage {
  input: number;
  cached: number;
  output: number;
  total: number;
}

/** What the upstream attempts of one analysis were billed, known also when the analysis fails. */
interface Spent {
  usage: Usage;
  /** the model that answered (priced), else the configured one */
  model: string;
  key: ResolvedKey | null;
  /** upstream answers received (each one billed) */
  answers: number;
}

interface Target {
  exchange: ExchangeEntity;
  configId: string | null;
  def: AnalysisDefinition;
  transcript: string;
  cacheKey: string;
}

type ResultFilters = Pick<ListAnalysisResultsQueryDto, 'request_id' | 'response_id' | 'config_id'>;

interface Outcome {
  row: AnalysisResultEntity;
  cached: boolean;
}

function toResultView(
  row: AnalysisResultEntity,
  opts: { cached: boolean; requestId?: string; responseId?: string | null; configId?: string | null },
): AnalysisResultView {
  return {
    id: row.id,
    request_id: opts.requestId ?? row.exchangeId,
    response_id: opts.responseId !== undefined ? opts.responseId : row.responseId,
    config_id: opts.configId !== undefined ? opts.configId : row.configId,
    analysis_type: row.analysisType as AnalysisType,
    // only completed analyses are shown, and they always hold a result
    primary_category: row.primaryCategory!,
    confidence: row.confidence!,
    reasoning: row.reasoning!,
    categories: row.categories as CategoryScore[],
    metadata: (row.metadata ?? null) as AnalysisMetadata | null,
    model: row.model,
    usage: { input_tokens: row.inputTokens, output_tokens: row.outputTokens, total_tokens: row.totalTokens },
    cost: opts.cached ? 0 : row.cost,
    cached: opts.cached,
    created_at: row.createdAt.toISOString(),
  };
}

/** The cache key: the normalized definition (not the configuration's name or id) and the conversation as sent. */
function cacheKeyOf(def: AnalysisDefinition, transcript: string): string {
  const normalized = JSON.stringify({
    v: 1,
    analysis_type: def.analysisType,
    categories: def.categories.map((c) => [c.name, c.description ?? null]),
    instructions: def.instructions ?? null,
    model: def.model,
    include_metadata: def.includeMetadata,
    conversation: transcript,
  });
  return createHash('sha256').update(normalized).digest('hex');
}

/** The text of the answer's output message(s); a refusal or an unfinished answer does not conform. */
function outputTextOf(response: Record<string, any>): string {
  if (response.status && response.status !== 'completed') throw new NonConformingAnswer(`the answer is ${response.status}`);
  if (typeof response.output_text === 'string') return response.output_text;
  const texts: string[] = [];
  for (const item of Array.isArray(response.output) ? response.output : []) {
    if (item?.type !== 'message' || !Array.isArray(item.content)) continue;
    for (const part of item.content) {
      if (part?.type === 'refusal') throw new NonConformingAnswer('the model refused');
      if (part?.type === 'output_text' && typeof part.text === 'string') texts.push(part.text);
    }
  }
  if (!texts.length) throw new NonConformingAnswer('the answer holds no output text');
  return texts.join('');
}

function usageOf(response: Record<string, any>): Usage {
  const u = response.usage ?? {};
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const input = n(u.input_tokens);
  const output = n(u.output_tokens);
  return { input, output, cached: n(u.input_tokens_details?.cached_tokens), total: n(u.total_tokens) || input + output };
}

@Injectable()
export class AnalysisService {
  /** analyses running in this process, by organization and cache key: identical concurrent calls share one */
  private readonly inFlight = new Cache<Outcome>({ max: MAX_ANALYSES_IN_FLIGHT });

  constructor(
    @InjectRepository(AnalysisResultEntity) private readonly results: Repository<AnalysisResultEntity>,
    private readonly configs: AnalysisConfigsService,
    private readonly claims: AnalysisClaimsRepository,
    private readonly keys: KeyResolver,
    private readonly health: KeyHealth,
    private readonly exchanges: ExchangesRepository,
    private readonly upstream: UpstreamClient,
    private readonly pricing: PricingService,
    private readonly logger: JsonLogger,
    private readonly limits: LimitsService,
    private readonly metrics: MetricsService,
  ) {}

  async run(acting: ActingContext, dto: RunAnalysisDto): Promise<AnalysisResultView> {
    const target = await this.resolveTarget(acting.orgId, dto);
    const view = (o: Outcome) =>
      toResultView(o.row, {
        cached: o.cached,
        requestId: target.exchange.id,
        responseId: target.exchange.responseId,
        configId: target.configId,
      });

    if (dto.force_refresh) return view(await this.analyse(acting, target));

    const hit = await this.findCached(acting.orgId, target.cacheKey);
    if (hit) return view({ row: hit, cached: true });

    const flightKey = `${acting.orgId}:${target.cacheKey}`;
    let mine = false;
    const running = this.inFlight.get(flightKey, () => ((mine = true), this.analyseOnce(acting, target)));
    try {
      const o = await running;
      // when someone else here pays for the call, to this caller the answer is a cache hit
      return view(mine ? o : { row: o.row, cached: true });
    } finally {
      // the stored result answers later calls; this only joins the ones made while it ran
      if (mine) this.inFlight.delete(flightKey);
    }
  }

  async listResults(orgId: string, { limit, after }: PageQuery, filters: ResultFilters): Promise<ListPage<AnalysisResultView>> {
    const qb = this.results
      .createQueryBuilder('r')
      .where('r.organization_id = :orgId', { orgId })
      .andWhere(`r.status = 'completed'`)
      .orderBy('r.created_at', 'DESC')
      .addOrderBy('r.id', 'DESC')
      .take(limit + 1);
    // an empty filter (`?config_id=`) means none, as the query DTO lets it through
    const { request_id: requestId, response_id: responseId, config_id: configId } = filters;
    if (requestId) qb.andWhere('r.exchange_id = :requestId', { requestId });
    if (responseId) qb.andWhere('r.response_id = :responseId', { responseId });
    if (configId) qb.andWhere('r.config_id = :configId', { configId });
    if (after) {
      const cursor = isUuid(after) ? await this.results.findOneBy({ id: after, organizationId: orgId }) : null;
      if (!cursor) throw AppException.invalid(`Unknown cursor '${after}'`, 'after');
      qb.andWhere('(r.created_at, r.id) < (:at, :id)', { at: cursor.createdAt, id: cursor.id });
    }
    const rows = await qb.getMany();
    return toListPage(
      rows.map((r) => toResultView(r, { cached: false })),
      limit,
    );
  }

  private async resolveTarget(orgId: string, dto: RunAnalysisDto): Promise<Target> {
    const hasRequest = dto.request_id != null;
    const hasResponse = dto.response_id != null;
    if (hasRequest === hasResponse) throw AppException.invalid('Give exactly one of request_id and response_id', 'request_id');
    const hasConfigId = dto.config_id != null;
    const hasInline = dto.config != null;
    if (hasConfigId === hasInline) throw AppException.invalid('Give exactly one of config_id and config', 'config_id');

    // validation errors first, then lookups
    const inline = hasInline ? this.configs.normalizeDefinition(dto.config!, 'config.') : null;
    const def = inline ?? definitionOf(await this.configs.findLive(orgId, dto.config_id!));

    const exchange = hasRequest
      ? await this.exchanges.findById(orgId, dto.request_id!)
      : await this.exchanges.findNewestByResponseId(orgId, dto.response_id!);
    if (!exchange) {
      throw hasRequest ? AppException.notFound('request', dto.request_id!) : AppException.notFound('response', dto.response_id!);
    }
    // an exchange recorded without its content (capture mode metadata, or bodies past their retention) has nothing
    // to analyse: a conflict with what was stored, not a malformed request
    if (exchange.captureMode === 'metadata' || (exchange.requestBody == null && exchange.outputText == null)) {
      throw new AppException('conflict', 'The exchange was recorded without its content (capture mode metadata, or its bodies are past retention): there is nothing to analyse', {
        code: 'no_content',
        param: hasRequest ? 'request_id' : 'response_id',
      });
    }
    const conversation = conversationOf(exchange.requestBody, exchange.outputText);
    if (isEmptyConversation(conversation)) {
      throw AppException.invalid('The exchange holds no conversation to analyse', hasRequest ? 'request_id' : 'response_id');
    }
    const transcript = renderConversation(conversation);
    return { exchange, configId: inline ? null : dto.config_id!, def, transcript, cacheKey: cacheKeyOf(def, transcript) };
  }

  private findCached(orgId: string, cacheKey: string): Promise<AnalysisResultEntity | null> {
    return this.results.findOne({ where: { organizationId: orgId, cacheKey, status: 'completed' }, order: { createdAt: 'DESC' } });
  }

  /**
   * One upstream call for identical analyses across processes, with no database connection held while upstream
   * works. The process that takes the claim row of (organization, cache key) calls the model, renewing its lease
   * meanwhile; the others look for its result every CLAIM_POLL_MS, and take the claim over when it ends without
   * one (the analysis failed: a failure is not cached) or when its lease lapses (its holder died).
   */
  private async analyseOnce(acting: ActingContext, target: Target): Promise<Outcome> {
    const { orgId } = acting;
    for (;;) {
      const holder = await this.claims.tryClaim(orgId, target.cacheKey, CLAIM_LEASE_MS);
      if (holder) {
        const renewal = setInterval(() => {
          this.claims.renew(orgId, target.cacheKey, holder, CLAIM_LEASE_MS).catch((err) => {
            this.logger.write('warn', 'analysis claim could not be renewed', { org_id: orgId, err });
          });
        }, CLAIM_RENEW_MS);
        renewal.unref();
        try {
          // a previous holder may have stored the result since this caller first looked
          const hit = await this.findCached(orgId, target.cacheKey);
          if (hit) return { row: hit, cached: true };
          return await this.analyse(acting, target);
        } finally {
          clearInterval(renewal);
          await this.claims.release(orgId, target.cacheKey, holder).catch((err) => {
            // the claim lapses by itself; waiters take it over then
            this.logger.write('warn', 'analysis claim could not be released', { org_id: orgId, err });
          });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
      const hit = await this.findCached(orgId, target.cacheKey);
      if (hit) return { row: hit, cached: true };
    }
  }

  /**
   * Calls the model and stores the result. Analysis calls spend the same budgets as proxied calls (a cached result
   * costs nothing and is never refused); what upstream billed is charged whether the analysis succeeds or not.
   */
  private async analyse(acting: ActingContext, target: Target): Promise<Outcome> {
    const admission = await this.limits.admit(acting, { model: target.def.model, body: target.transcript });
    const spent: Spent = { usage: { input: 0, cached: 0, output: 0, total: 0 }, model: target.def.model, key: null, answers: 0 };
    let answer: ParsedAnswer;
    try {
      answer = await this.callModel(acting, target.def, target.transcript, spent);
    } catch (err) {
      const cost = await this.charge(admission, spent);
      if (spent.answers > 0) await this.recordFailure(acting, target, spent, cost, err);
      throw err;
    }
    const cost = await this.charge(admission, spent);
    const row = this.results.create({
      ...this.rowBase(acting, target, spent, cost),
      status: 'completed',
      primaryCategory: answer.primaryCategory,
      confidence: answer.confidence,
      reasoning: answer.reasoning,
      categories: answer.categories,
      metadata: answer.metadata,
    });
    return { row: await this.results.save(row), cached: false };
  }

  /** Settles the call's budgets and metrics with what upstream billed (nothing when no answer came); the cost. */
  private async charge(admission: Admission, spent: Spent): Promise<number | null> {
    const { usage, model } = spent;
    const cost = spent.answers > 0 ? this.pricing.cost(model, { input: usage.input, cached: usage.cached, output: usage.output }) : 0;
    await this.limits.settle(admission, spent.answers > 0 ? { tokens: usage.total, cost } : null);
    if (spent.answers > 0) this.metrics.observeAnalysis({ model, inputTokens: usage.input, outputTokens: usage.output, cost });
    return cost;
  }

  /** A failed analysis that upstream billed is kept as a usage record without a result (never listed nor cached). */
  private async recordFailure(acting: ActingContext, target: Target, spent: Spent, cost: number | null, err: unknown): Promise<void> {
    try {
      await this.results.insert({
        ...this.rowBase(acting, target, spent, cost),
        status: 'failed',
        error: err instanceof Error ? err.message.slice(0, 1000) : String(err).slice(0, 1000),
        primaryCategory: null,
        confidence: null,
        reasoning: null,
      });
    } catch (writeErr) {
      this.logger.write('error', 'the usage of a failed analysis could not be recorded', { org_id: acting.orgId, usage: spent.usage, err: writeErr });
    }
  }

  private rowBase(acting: ActingContext, target: Target, spent: Spent, cost: number | null) {
    return {
      organizationId: acting.orgId,
      exchangeId: target.exchange.id,
      responseId: target.exchange.responseId,
      configId: target.configId,
      userId: acting.userId,
      personaId: target.exchange.personaId,
      cacheKey: target.cacheKey,
      analysisType: target.def.analysisType,
      model: target.def.model,
      inputTokens: spent.usage.input,
      outputTokens: spent.usage.output,
      totalTokens: spent.usage.total,
      cost,
      keyId: spent.key?.keyId ?? null,
    };
  }

  /**
   * The structured-output call; a non-conforming answer is asked again once. Every answer's usage (and the key and
   * the answering model) is added to `spent` as it arrives, so a failure still knows what was billed.
   */
  private async callModel(acting: ActingContext, def: AnalysisDefinition, transcript: string, spent: Spent): Promise<ParsedAnswer> {
    const candidates = await this.keys.candidates({ orgId: acting.orgId, userId: acting.userId }, { model: def.model });
    spent.key = candidates[0];
    const body = JSON.stringify({
      model: def.model,
      instructions: buildAnalysisInstructions(def),
      input: [{ role: 'user', content: transcript }],
      text: { format: { type: 'json_schema', name: SCHEMA_NAME, strict: true, schema: buildAnswerSchema(def) } },
      store: false,
    });
    let problem = '';
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const response = await this.postWithFailover(candidates, body, spent);
      const u = usageOf(response);
      spent.answers++;
      spent.usage.input += u.input;
      spent.usage.cached += u.cached;
      spent.usage.output += u.output;
      spent.usage.total += u.total;
      if (typeof response.model === 'string') spent.model = response.model;
      try {
        return parseAnswer(outputTextOf(response), def);
      } catch (err) {
        if (!(err instanceof NonConformingAnswer)) throw err;
        problem = err.message;
        this.logger.write('warn', 'analysis answer does not fit the schema', { org_id: acting.orgId, attempt, problem });
      }
    }
    throw new AppException('upstream_error', `The model's analysis did not fit the schema twice (${problem})`, {
      code: 'invalid_structured_output',
    });
  }

  /**
   * The call on the pool's keys in order, as the proxy does: a key the upstream rate limits (429) rests and one it
   * refuses (401) is marked invalid, and the call goes on with the next key; any other answer is the call's.
   */
  private async postWithFailover(candidates: readonly ResolvedKey[], body: string, spent: Spent): Promise<Record<string, any>> {
    for (let i = spent.key ? Math.max(0, candidates.indexOf(spent.key)) : 0; ; i++) {
      const key = candidates[i];
      spent.key = key;
      try {
        return await this.post(key, body);
      } catch (err) {
        const status = err instanceof AppException ? err.options.upstreamStatus : undefined;
        if (status !== 401 && status !== 429) throw err;
        this.health.refused(key, status, null, `${status} ${(err as AppException).message}`);
        if (i + 1 >= candidates.length) throw err;
      }
    }
  }

  private async post(key: ResolvedKey, body: string): Promise<Record<string, any>> {
    const parsed = await this.upstream.json({ key, method: 'POST', path: '/responses', body });
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new AppException('upstream_error', 'The upstream sent an unexpected body');
    }
    return parsed as Record<string, any>;
  }
}
