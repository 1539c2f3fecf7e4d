import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository, SelectQueryBuilder } from 'typeorm';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { ListPage, parsePageQuery, toListPage } from '../common/pagination';
import { ExchangeEntity } from './exchange.entity';
import { ExchangeRecorder } from './exchange-recorder.service';
import { UNFINISHED_STATUSES, UnfinishedResponses } from './unfinished-responses';

/** A stored exchange as clients see it (`GET /v1/requests/{id}`). */
export interface ExchangeView {
  id: string;
  object: 'exchange';
  response_id: string | null;
  session_id: string;
  /** the X-User-ID value */
  user_id: string;
  persona_id: string | null;
  persona_version: number | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  status: string;
  upstream_status: number | null;
  usage: {
    input_tokens: number | null;
    output_tokens: number | null;
    total_tokens: number | null;
    cached_tokens: number | null;
    reasoning_tokens: number | null;
  };
  cost: number | null;
  latency_ms: number | null;
  time_to_first_byte_ms: number | null;
  key_id: string | null;
  key_source: string | null;
  request_body: unknown;
  response_body: unknown;
  output_text: string | null;
  error: unknown;
  created_at: string;
  completed_at: string | null;
}

export function toExchangeView(e: ExchangeEntity): ExchangeView {
  return {
    id: e.id,
    object: 'exchange',
    response_id: e.responseId,
    session_id: e.sessionId,
    user_id: e.externalUserId,
    persona_id: e.personaId,
    persona_version: e.personaVersion,
    endpoint: e.endpoint,
    model: e.model,
    stream: e.stream,
    status: e.status,
    upstream_status: e.upstreamStatus,
    usage: {
      input_tokens: e.inputTokens,
      output_tokens: e.outputTokens,
      total_tokens: e.totalTokens,
      cached_tokens: e.cachedTokens,
      reasoning_tokens: e.reasoningTokens,
    },
    cost: e.cost,
    latency_ms: e.latencyMs,
    time_to_first_byte_ms: e.timeToFirstByteMs,
    key_id: e.keyId,
    key_source: e.keySource,
    request_body: e.requestBody ?? null,
    response_body: e.responseBody ?? null,
    output_text: e.outputText,
    error: e.error ?? null,
    created_at: e.createdAt.toISOString(),
    completed_at: e.completedAt ? e.completedAt.toISOString() : null,
  };
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

export function parseInstant(value: unknown, param: string): Date | undefined {
  if (value === undefined || value === '') return undefined;
  const raw = String(value);
  const t = ISO_8601.test(raw) ? Date.parse(raw) : NaN;
  if (Number.isNaN(t)) throw AppException.invalid(`${param} must be an ISO-8601 date or time`, param);
  return new Date(t);
}

const SESSION_CACHE_MAX = 50_000;

/** Reads of stored exchanges, always within the acting organization (another organization's id is a plain 404). */
@Injectable()
export class ExchangesService {
  // response id → session, for requests that continue a conversation through previous_response_id
  private readonly sessionsByResponse = new Map<string, string>();

  constructor(
    @InjectRepository(ExchangeEntity) private readonly exchanges: Repository<ExchangeEntity>,
    private readonly recorder: ExchangeRecorder,
    private readonly unfinished: UnfinishedResponses,
  ) {}

  rememberResponse(orgId: string, responseId: string, sessionId: string): void {
    if (this.sessionsByResponse.size >= SESSION_CACHE_MAX) {
      // drop the oldest entries (Map keeps insertion order)
      let n = SESSION_CACHE_MAX / 10;
      for (const k of this.sessionsByResponse.keys()) {
        this.sessionsByResponse.delete(k);
        if (--n <= 0) break;
      }
    }
    this.sessionsByResponse.set(`${orgId}\n${responseId}`, sessionId);
  }

  /** The session of the organization's stored exchange that produced this response, if any. */
  async sessionOfResponse(orgId: string, responseId: string): Promise<string | null> {
    const cached = this.sessionsByResponse.get(`${orgId}\n${responseId}`);
    if (cached) return cached;
    const row = await this.exchanges.findOne({
      select: { sessionId: true },
      where: { organizationId: orgId, responseId },
      order: { createdAt: 'DESC' },
    });
    if (row) this.rememberResponse(orgId, responseId, row.sessionId);
    return row?.sessionId ?? null;
  }

  async response(orgId: string, responseId: string): Promise<unknown> {
    await this.recorder.caughtUp();
    const row = await this.exchanges
      .createQueryBuilder('e')
      .select(['e.id', 'e.responseBody', 'e.status', 'e.userId'])
      .where('e.organization_id = :orgId AND e.response_id = :responseId AND e.response_body IS NOT NULL', { orgId, responseId })
      .orderBy('e.created_at', 'DESC')
      .limit(1)
      .getOne();
    if (!row) throw AppException.notFound('response', responseId);
    if (UNFINISHED_STATUSES.has(row.status)) return this.unfinished.current(orgId, row.userId, responseId);
    return row.responseBody;
  }

  async request(orgId: string, id: string): Promise<ExchangeView> {
    await this.recorder.caughtUp();
    const row = await this.exchanges.findOneBy({ organizationId: orgId, id });
    if (!row) throw AppException.notFound('request', id);
    return toExchangeView(row);
  }

  /** Newest first, filtered. */
  async list(orgId: string, query: Record<string, unknown>): Promise<ListPage<ExchangeView>> {
    await this.recorder.caughtUp();
    const page = parsePageQuery(query);
    const from = parseInstant(query.from, 'from');
    const to = parseInstant(query.to, 'to');
    const qb = this.exchanges.createQueryBuilder('e').where('e.organization_id = :orgId', { orgId });
    const str = (name: string): string | undefined => {
      const v = query[name];
      if (v === undefined || v === '') return undefined;
      if (typeof v !== 'string') throw AppException.invalid(`${name} must be given once`, name);
      return v;
    };
    const sessionId = str('session_id');
    const userId = str('user_id');
    const personaId = str('persona_id');
    const model = str('model');
    if (sessionId) qb.andWhere('e.session_id = :sessionId', { sessionId });
    if (userId) qb.andWhere('e.external_user_id = :userId', { userId });
    if (personaId) {
      if (!isUuid(personaId)) throw AppException.invalid('persona_id must be a UUID', 'persona_id');
      qb.andWhere('e.persona_id = :personaId', { personaId });
    }
    if (model) qb.andWhere('e.model = :model', { model });
    if (from) qb.andWhere('e.created_at >= :from', { from });
    if (to) qb.andWhere('e.created_at < :to', { to });
    return this.page(qb, orgId, page.limit, page.after, 'DESC');
  }

  /** A session's exchanges, oldest first. */
  async session(orgId: string, sessionId: string, query: Record<string, unknown>): Promise<ListPage<ExchangeView>> {
    await this.recorder.caughtUp();
    const page = parsePageQuery(query);
    const qb = this.exchanges
      .createQueryBuilder('e')
      .where('e.organization_id = :orgId AND e.session_id = :sessionId', { orgId, sessionId });
    const result = await this.page(qb, orgId, page.limit, page.after, 'ASC');
    if (!result.data.length && !page.after && !(await this.exchanges.existsBy({ organizationId: orgId, sessionId }))) {
      throw AppException.notFound('session', sessionId);
    }
    return result;
  }

  private async page(
    qb: SelectQueryBuilder<ExchangeEntity>,
    orgId: string,
    limit: number,
    after: string | undefined,
    dir: 'ASC' | 'DESC',
  ): Promise<ListPage<ExchangeView>> {
    if (after) {
      // keyset cursor; an unknown cursor gives an empty page
      qb.andWhere(
        `(e.created_at, e.id) ${dir === 'DESC' ? '<' : '>'} (SELECT c.created_at, c.id FROM exchanges c WHERE c.id = :after AND c.organization_id = :cursorOrg)`,
        { after, cursorOrg: orgId },
      );
    }
    const rows = await qb
      .orderBy('e.created_at', dir)
      .addOrderBy('e.id', dir)
      .limit(limit + 1)
      .getMany();
    return toListPage(rows.map(toExchangeView), limit);
  }
}
