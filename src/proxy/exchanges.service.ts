import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository, SelectQueryBuilder } from 'typeorm';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import { checkRange, parseInstant } from '../common/dates';
import { ListPage, PageQueryDto, pageOf, toListPage } from '../common/pagination';
import { ListExchangesQueryDto } from './exchanges.dto';
import { ExchangeEntity } from '../exchanges/exchange.entity';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
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
  /**
   * In lists only: the body fields left out (null above) because they are larger than LIST_BODY_MAX_BYTES;
   * `GET /v1/requests/{id}` has them whole.
   */
  omitted_fields?: BodyField[];
}

/** The fields of an exchange that hold what was sent and answered, and can be as large as the body limit. */
export const BODY_FIELDS = ['request_body', 'response_body', 'output_text', 'error'] as const;
export type BodyField = (typeof BODY_FIELDS)[number];

/**
 * A list page carries a body field only up to this size (in bytes, as stored and as JSON text), so a page of 100
 * exchanges is at most 100 × 4 × 32 KiB whatever the stored bodies weigh; larger ones are omitted and flagged.
 */
export const LIST_BODY_MAX_BYTES = 32 * 1024;

/**
 * The SQL of a body column as a list shows it: the value when small enough, else NULL. The stored size is checked
 * first: it costs nothing (a large value is not read), and a value stored larger than the bound is larger as text
 * too unless it is mostly numbers; only what passes it is rendered as text to be measured exactly.
 */
const listed = (column: string, asText: string) =>
  `CASE WHEN pg_column_size(${column}) > ${LIST_BODY_MAX_BYTES} THEN NULL ` +
  `WHEN octet_length(${asText}) > ${LIST_BODY_MAX_BYTES} THEN NULL ELSE ${column} END`;
const BODY_COLUMNS: Record<BodyField, string> = {
  request_body: listed('e.request_body', 'e.request_body::text'),
  response_body: listed('e.response_body', 'e.response_body::text'),
  output_text: listed('e.output_text', 'e.output_text'),
  error: listed('e.error', 'e.error::text'),
};
const ENTITY_FIELD: Record<BodyField, keyof ExchangeEntity> = {
  request_body: 'requestBody',
  response_body: 'responseBody',
  output_text: 'outputText',
  error: 'error',
};

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

const SESSION_CACHE_MAX = 50_000;

/** Reads of stored exchanges, always within the acting organization (another organization's id is a plain 404). */
@Injectable()
export class ExchangesService {
  // response id → session, for requests that continue a conversation through previous_response_id
  private readonly sessionsByResponse = new Cache<string>({ max: SESSION_CACHE_MAX });

  constructor(
    @InjectRepository(ExchangeEntity) private readonly exchanges: Repository<ExchangeEntity>,
    private readonly recorder: ExchangeRecorder,
    private readonly unfinished: UnfinishedResponses,
  ) {}

  rememberResponse(orgId: string, responseId: string, sessionId: string): void {
    this.sessionsByResponse.set(`${orgId}\n${responseId}`, sessionId);
  }

  /** The session of the organization's stored exchange that produced this response, if any. */
  async sessionOfResponse(orgId: string, responseId: string): Promise<string | null> {
    const cached = this.sessionsByResponse.peek(`${orgId}\n${responseId}`);
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
  async list(orgId: string, query: ListExchangesQueryDto): Promise<ListPage<ExchangeView>> {
    const page = pageOf(query);
    const from = parseInstant(query.from, 'from');
    const to = parseInstant(query.to, 'to');
    checkRange(from, to);
    await this.recorder.caughtUp();
    const qb = this.exchanges.createQueryBuilder('e').where('e.organization_id = :orgId', { orgId });
    if (query.session_id) qb.andWhere('e.session_id = :sessionId', { sessionId: query.session_id });
    if (query.user_id) qb.andWhere('e.external_user_id = :userId', { userId: query.user_id });
    if (query.persona_id) qb.andWhere('e.persona_id = :personaId', { personaId: query.persona_id });
    if (query.model) qb.andWhere('e.model = :model', { model: query.model });
    if (from) qb.andWhere('e.created_at >= :from', { from });
    if (to) qb.andWhere('e.created_at < :to', { to });
    return this.page(qb, orgId, page.limit, page.after, 'DESC');
  }

  /** A session's exchanges, oldest first. */
  async session(orgId: string, sessionId: string, query: PageQueryDto): Promise<ListPage<ExchangeView>> {
    const page = pageOf(query);
    await this.recorder.caughtUp();
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
    // the body columns come from the database only when small enough: a large one never reaches this process
    const columns = this.exchanges.metadata.columns
      .filter((c) => !(Object.values(ENTITY_FIELD) as string[]).includes(c.propertyName))
      .map((c) => `e.${c.propertyName}`);
    qb.select(columns);
    for (const field of BODY_FIELDS) {
      qb.addSelect(BODY_COLUMNS[field], `listed_${field}`);
      qb.addSelect(`e.${field} IS NOT NULL`, `stored_${field}`);
    }
    const { entities, raw } = await qb
      .orderBy('e.created_at', dir)
      .addOrderBy('e.id', dir)
      .limit(limit + 1)
      .getRawAndEntities<Record<string, unknown>>();
    const views = entities.map((row, i) => {
      const omitted: BodyField[] = [];
      for (const field of BODY_FIELDS) {
        const value = raw[i][`listed_${field}`] ?? null;
        (row as unknown as Record<string, unknown>)[ENTITY_FIELD[field]] = value;
        if (value === null && raw[i][`stored_${field}`] === true) omitted.push(field);
      }
      return { ...toExchangeView(row), omitted_fields: omitted };
    });
    return toListPage(views, limit);
  }
}
