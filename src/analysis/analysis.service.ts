import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { createHash } from 'node:crypto';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ListPage, parsePageQuery, toListPage } from '../common/pagination';
import type { ActingContext } from '../common/request-context';
import { DatabaseHandle } from '../database/embedded-database';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import { LimitsService } from '../limits/limits.service';
import { MetricsService } from '../metrics/metrics.service';
import { ExchangeRecorder } from '../proxy/exchange-recorder.service';
import { ExchangeEntity } from '../proxy/exchange.entity';
import { PricingService } from '../proxy/pricing.service';
import { UpstreamClient } from '../proxy/upstream-client';
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
import { AnalysisMetadata, AnalysisResultView, AnalysisType, CategoryScore, RunAnalysisDto } from './analysis.dto';
import { conversationOf, isEmptyConversation, renderConversation } from './conversation';

/** one retry after a non-conforming answer, then 502 */
const MAX_ATTEMPTS = 2;
/** below the driver's 15 s query timeout */
const LOCK_WAIT_SLICE_MS = 5_000;
const LOCK_NOT_AVAILABLE = '55P03';

interface Usage {
  input: number;
  cached: number;
  output: number;
  total: number;
}

interface Target {
  exchange: ExchangeEntity;
  configId: string | null;
  def: AnalysisDefinition;
  transcript: string;
  cacheKey: string;
}

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
    primary_category: row.primaryCategory,
    confidence: row.confidence,
    reasoning: row.reasoning,
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
  private readonly inFlight = new Map<string, Promise<Outcome>>();

  constructor(
    @InjectRepository(AnalysisResultEntity) private readonly results: Repository<AnalysisResultEntity>,
    @InjectRepository(ExchangeEntity) private readonly exchanges: Repository<ExchangeEntity>,
    private readonly configs: AnalysisConfigsService,
    private readonly dataSource: DataSource,
    private readonly db: DatabaseHandle,
    private readonly keys: KeyResolver,
    private readonly recorder: ExchangeRecorder,
    private readonly upstream: UpstreamClient,
    private readonly pricing: PricingService,
    private readonly logger: JsonLogger,
    private readonly config: AppConfig,
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

    if (dto.force_refresh) return view(await this.analyse(acting, target, false));

    const hit = await this.findCached(this.results.manager, acting.orgId, target.cacheKey);
    if (hit) return view({ row: hit, cached: true });

    const flightKey = `${acting.orgId}:${target.cacheKey}`;
    const running = this.inFlight.get(flightKey);
    if (running) {
      // someone else here pays for the call; to this caller the answer is a cache hit
      const o = await running;
      return view({ row: o.row, cached: true });
    }
    const promise = this.analyse(acting, target, true);
    this.inFlight.set(flightKey, promise);
    try {
      return view(await promise);
    } finally {
      this.inFlight.delete(flightKey);
    }
  }

  async listResults(orgId: string, query: Record<string, unknown>): Promise<ListPage<AnalysisResultView>> {
    const { limit, after } = parsePageQuery(query);
    const qb = this.results
      .createQueryBuilder('r')
      .where('r.organization_id = :orgId', { orgId })
      .orderBy('r.created_at', 'DESC')
      .addOrderBy('r.id', 'DESC')
      .take(limit + 1);
    const filter = (name: string) => (query[name] === undefined || query[name] === '' ? undefined : String(query[name]));
    const requestId = filter('request_id');
    const responseId = filter('response_id');
    const configId = filter('config_id');
    if (requestId) qb.andWhere('r.exchange_id = :requestId', { requestId });
    if (responseId) qb.andWhere('r.response_id = :responseId', { responseId });
    if (configId) {
      if (!isUuid(configId)) throw AppException.invalid('config_id must be a UUID', 'config_id');
      qb.andWhere('r.config_id = :configId', { configId });
    }
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

    await this.recorder.caughtUp();
    const exchange = hasRequest
      ? await this.exchanges.findOneBy({ id: dto.request_id!, organizationId: orgId })
      : await this.exchanges.findOne({ where: { responseId: dto.response_id!, organizationId: orgId }, order: { createdAt: 'DESC' } });
    if (!exchange) {
      throw hasRequest ? AppException.notFound('request', dto.request_id!) : AppException.notFound('response', dto.response_id!);
    }
    const conversation = conversationOf(exchange.requestBody, exchange.outputText);
    if (isEmptyConversation(conversation)) {
      throw AppException.invalid('The exchange holds no conversation to analyse', hasRequest ? 'request_id' : 'response_id');
    }
    const transcript = renderConversation(conversation);
    return { exchange, configId: inline ? null : dto.config_id!, def, transcript, cacheKey: cacheKeyOf(def, transcript) };
  }

  private findCached(manager: EntityManager, orgId: string, cacheKey: string): Promise<AnalysisResultEntity | null> {
    return manager.findOne(AnalysisResultEntity, { where: { organizationId: orgId, cacheKey }, order: { createdAt: 'DESC' } });
  }

  /**
   * Calls the model and stores the result. With `useCache`, other processes are serialized on a transaction-scoped
   * advisory lock of (organization, cache key) and the cache is checked again under it, so identical analyses make one
   * upstream call. The embedded database is one process with one session (and its socket server runs one
   * transaction at a time), so there the in-process coalescing in run() suffices and no transaction is held open.
   */
  private async analyse(acting: ActingContext, target: Target, useCache: boolean): Promise<Outcome> {
    const work = async (manager: EntityManager): Promise<Outcome> => {
      if (useCache) {
        const hit = await this.findCached(manager, acting.orgId, target.cacheKey);
        if (hit) return { row: hit, cached: true };
      }
      // analysis calls spend the same budgets as proxied calls (a cached result costs nothing and is never refused)
      const admission = await this.limits.admit(acting, { model: target.def.model, body: target.transcript });
      const { key, answer, usage, model } = await this.callModel(acting, target.def, target.transcript).catch((err: unknown) => {
        void this.limits.settle(admission, null);
        throw err;
      });
      const cost = this.pricing.cost(model, { input: usage.input, cached: usage.cached, output: usage.output });
      await this.limits.settle(admission, { tokens: usage.total, cost });
      this.metrics.observeAnalysis({ model, inputTokens: usage.input, outputTokens: usage.output, cost });
      const row = manager.create(AnalysisResultEntity, {
        organizationId: acting.orgId,
        exchangeId: target.exchange.id,
        responseId: target.exchange.responseId,
        configId: target.configId,
        userId: acting.userId,
        personaId: target.exchange.personaId,
        cacheKey: target.cacheKey,
        analysisType: target.def.analysisType,
        primaryCategory: answer.primaryCategory,
        confidence: answer.confidence,
        reasoning: answer.reasoning,
        categories: answer.categories,
        metadata: answer.metadata,
        model: target.def.model,
        inputTokens: usage.input,
        outputTokens: usage.output,
        totalTokens: usage.total,
        cost,
        keyId: key.keyId,
      });
      return { row: await manager.save(row), cached: false };
    };

    if (!useCache || this.db.embedded) return work(this.results.manager);
    return this.dataSource.transaction(async (manager) => {
      await this.lockCacheKey(manager, `analysis:${acting.orgId}:${target.cacheKey}`);
      return work(manager);
    });
  }

  /**
   * Waits for the advisory lock in slices shorter than the driver's query timeout (the holder may be waiting on the
   * upstream for longer than one query may take). Past any plausible holder's lifetime it goes ahead unlocked: a
   * duplicate upstream call is better than a failed analysis.
   */
  private async lockCacheKey(manager: EntityManager, lockKey: string): Promise<void> {
    const deadline = Date.now() + MAX_ATTEMPTS * this.config.upstreamTimeoutMs + 10_000;
    await manager.query(`SET LOCAL lock_timeout = '${LOCK_WAIT_SLICE_MS}ms'`);
    for (;;) {
      await manager.query('SAVEPOINT analysis_lock');
      try {
        await manager.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockKey]);
        return;
      } catch (err) {
        const e = err as { code?: string; driverError?: { code?: string } };
        if ((e.code ?? e.driverError?.code) !== LOCK_NOT_AVAILABLE) throw err;
        await manager.query('ROLLBACK TO SAVEPOINT analysis_lock');
        if (Date.now() > deadline) {
          this.logger.write('warn', 'analysis lock wait gave up; calling upstream without it', { lock: lockKey });
          return;
        }
      }
    }
  }

  /** The structured-output call; a non-conforming answer is asked again once. Usage covers every attempt. */
  private async callModel(
    acting: ActingContext,
    def: AnalysisDefinition,
    transcript: string,
  ): Promise<{ key: ResolvedKey; answer: ParsedAnswer; usage: Usage; model: string }> {
    const key = await this.keys.resolve({ orgId: acting.orgId, userId: acting.userId });
    const body = JSON.stringify({
      model: def.model,
      instructions: buildAnalysisInstructions(def),
      input: [{ role: 'user', content: transcript }],
      text: { format: { type: 'json_schema', name: SCHEMA_NAME, strict: true, schema: buildAnswerSchema(def) } },
      store: false,
    });
    const usage: Usage = { input: 0, cached: 0, output: 0, total: 0 };
    let problem = '';
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const response = await this.post(key, body);
      const u = usageOf(response);
      usage.input += u.input;
      usage.cached += u.cached;
      usage.output += u.output;
      usage.total += u.total;
      try {
        const answer = parseAnswer(outputTextOf(response), def);
        const model = typeof response.model === 'string' ? response.model : def.model;
        return { key, answer, usage, model };
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

  private async post(key: ResolvedKey, body: string): Promise<Record<string, any>> {
    const parsed = await this.upstream.json({ key, method: 'POST', path: '/responses', body });
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new AppException('upstream_error', 'The upstream sent an unexpected body');
    }
    return parsed as Record<string, any>;
  }
}
