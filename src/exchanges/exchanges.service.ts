import type { CaptureMode } from '../auth/org-privacy';
import { Injectable } from '@nestjs/common';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import { checkRange, parseInstant } from '../common/dates';
import { ListPage, PageQueryDto, pageOf, toListPage } from '../common/pagination';
import { ListExchangesQueryDto } from './exchanges.dto';
import { ExchangeEntity } from './exchange.entity';
import { BodyField, ExchangesRepository, ListedExchange } from './exchanges.repository';

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
  /** keys of the pool left before the one that served the call: `[{key_id, outcome, status}]` */
  key_attempts: unknown;
  method: string | null;
  route: string | null;
  upstream_request_id: string | null;
  object_id: string | null;
  request_content_type: string | null;
  request_bytes: number | null;
  response_content_type: string | null;
  response_bytes: number | null;
  body_truncated: boolean;
  capture_mode: CaptureMode;
  upstream_deleted_at: string | null;
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
  /** In lists only: how many ratings the exchange has and their average (null when none). */
  ratings?: { count: number; average: number | null };
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
    key_attempts: e.keyAttempts ?? null,
    method: e.method ?? null,
    route: e.route ?? null,
    upstream_request_id: e.upstreamRequestId ?? null,
    object_id: e.objectId ?? null,
    request_content_type: e.requestContentType ?? null,
    request_bytes: e.requestBytes ?? null,
    response_content_type: e.responseContentType ?? null,
    response_bytes: e.responseBytes ?? null,
    body_truncated: e.bodyTruncated === true,
    capture_mode: (e.captureMode ?? 'full') as CaptureMode,
    upstream_deleted_at: e.upstreamDeletedAt ? e.upstreamDeletedAt.toISOString() : null,
    request_body: e.requestBody ?? null,
    response_body: e.responseBody ?? null,
    output_text: e.outputText,
    error: e.error ?? null,
    created_at: e.createdAt.toISOString(),
    completed_at: e.completedAt ? e.completedAt.toISOString() : null,
  };
}

function toListedView(row: ListedExchange): ExchangeView {
  return { ...toExchangeView(row.exchange), omitted_fields: row.omitted, ratings: row.ratings };
}

/**
 * Responses whose session is remembered in memory (a conversation's next call usually follows within seconds); an
 * older one is looked up by its indexed response id. Full, the cache holds about 1 KB per entry with its keys.
 */
const SESSION_CACHE_MAX = 10_000;

/** Reads of stored exchanges, always within the acting organization (another organization's id is a plain 404). */
@Injectable()
export class ExchangesService {
  // response id → session, for requests that continue a conversation through previous_response_id
  private readonly sessionsByResponse = new Cache<string>({ max: SESSION_CACHE_MAX });

  constructor(private readonly exchanges: ExchangesRepository) {}

  rememberResponse(orgId: string, responseId: string, sessionId: string): void {
    this.sessionsByResponse.set(`${orgId}\n${responseId}`, sessionId);
  }

  /** The session of the organization's stored exchange that produced this response, if any. */
  async sessionOfResponse(orgId: string, responseId: string): Promise<string | null> {
    const cached = this.sessionsByResponse.peek(`${orgId}\n${responseId}`);
    if (cached) return cached;
    const sessionId = await this.exchanges.findSessionOfResponse(orgId, responseId);
    if (sessionId) this.rememberResponse(orgId, responseId, sessionId);
    return sessionId;
  }

  async request(orgId: string, id: string): Promise<ExchangeView> {
    const row = await this.exchanges.findById(orgId, id);
    if (!row) throw AppException.notFound('request', id);
    return toExchangeView(row);
  }

  /** Newest first, filtered. */
  async list(orgId: string, query: ListExchangesQueryDto): Promise<ListPage<ExchangeView>> {
    const page = pageOf(query);
    const from = parseInstant(query.from, 'from');
    const to = parseInstant(query.to, 'to');
    checkRange(from, to);
    const filter = {
      sessionId: query.session_id,
      externalUserId: query.user_id,
      personaId: query.persona_id,
      model: query.model,
      endpoint: query.endpoint || undefined,
      status: query.status || undefined,
      rating: query.rating ? Number(query.rating) : undefined,
      analysisCategory: query.analysis_category || undefined,
      from,
      to,
    };
    const rows = await this.exchanges.listPage(orgId, filter, page.limit, page.after);
    return toListPage(rows.map(toListedView), page.limit);
  }

  /** A session's exchanges, oldest first. */
  async session(orgId: string, sessionId: string, query: PageQueryDto): Promise<ListPage<ExchangeView>> {
    const page = pageOf(query);
    const rows = await this.exchanges.sessionPage(orgId, sessionId, page.limit, page.after);
    const result = toListPage(rows.map(toListedView), page.limit);
    if (!result.data.length && !page.after && !(await this.exchanges.sessionExists(orgId, sessionId))) {
      throw AppException.notFound('session', sessionId);
    }
    return result;
  }
}
