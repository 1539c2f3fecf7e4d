import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { ListPage, PageQueryDto } from '../common/pagination';
import { Acting, ActingContext } from '../common/request-context';
import { ListExchangesQueryDto } from './exchanges.dto';
import { LIST_BODY_MAX_BYTES } from './exchanges.repository';
import { ExchangesService, ExchangeView } from './exchanges.service';
import { ExchangeList, ExchangeResponse } from './exchanges.responses';

const EXCHANGE_EXAMPLE = {
  id: 'req_Xw3v0mQ2bq9Hn1sYtZcA4eLk',
  object: 'exchange',
  response_id: 'resp_67ccd2bed1ec8190b14f964abc054267',
  session_id: 'session_Jr8Kq2Lm4Np6Qs8Tu0Vw2Xy4',
  user_id: 'user@example.com',
  persona_id: null,
  persona_version: null,
  endpoint: 'responses',
  model: 'gpt-4o-mini',
  stream: false,
  status: 'completed',
  upstream_status: 200,
  usage: { input_tokens: 9, output_tokens: 2, total_tokens: 11, cached_tokens: 0, reasoning_tokens: 0 },
  cost: 0.00000255,
  latency_ms: 412,
  time_to_first_byte_ms: 405,
  key_id: '0b6f3c52-8a3e-4f4e-9d0c-1f3b5a7c9e21',
  key_source: 'organization',
  request_body: { model: 'gpt-4o-mini', input: 'Say hello' },
  response_body: { id: 'resp_67ccd2bed1ec8190b14f964abc054267', object: 'response', status: 'completed' },
  output_text: 'Hello!',
  error: null,
  created_at: '2026-06-05T18:30:00.000Z',
  completed_at: '2026-06-05T18:30:00.412Z',
};
const LIST_EXAMPLE = { object: 'list', data: [{ ...EXCHANGE_EXAMPLE, omitted_fields: [] }], has_more: false, first_id: EXCHANGE_EXAMPLE.id, last_id: EXCHANGE_EXAMPLE.id };
const LIST_BODIES =
  `In a list, a body field (request_body, response_body, output_text, error) larger than ${LIST_BODY_MAX_BYTES / 1024} KiB (as stored or as JSON text) ` +
  'is null and named in the exchange\'s omitted_fields; GET /v1/requests/{request_id} has it whole.';
const NOT_FOUND = apiError(404, 'Unknown id, or one of another organization', 'not_found_error', 'not_found', "No request found with id 'req_…'");

@ApiTags('exchanges')
@ApiProtected()
@RequireScope('read')
@Controller('v1')
export class ExchangesController {
  constructor(private readonly exchanges: ExchangesService) {}

  @Get('requests')
  @ApiOperation({ summary: 'Stored exchanges of the organization, newest first' })
  @ApiOkResponse({ description: LIST_BODIES, type: ExchangeList, example: LIST_EXAMPLE })
  list(@Acting() acting: ActingContext, @Query() query: ListExchangesQueryDto): Promise<ListPage<ExchangeView>> {
    return this.exchanges.list(acting.orgId, query);
  }

  @Get('requests/:request_id')
  @ApiOperation({ summary: 'One stored exchange by its req_ id (the X-Request-ID it answered with)' })
  @ApiParam({ name: 'request_id', example: EXCHANGE_EXAMPLE.id })
  @ApiOkResponse({ type: ExchangeResponse, example: EXCHANGE_EXAMPLE })
  @ApiResponse(NOT_FOUND)
  request(@Acting() acting: ActingContext, @Param('request_id') requestId: string): Promise<ExchangeView> {
    return this.exchanges.request(acting.orgId, requestId);
  }

  @Get('sessions/:session_id')
  @ApiOperation({ summary: 'A session’s exchanges, oldest first' })
  @ApiParam({ name: 'session_id', example: EXCHANGE_EXAMPLE.session_id })
  @ApiOkResponse({ description: LIST_BODIES, type: ExchangeList, example: LIST_EXAMPLE })
  @ApiResponse(NOT_FOUND)
  session(
    @Acting() acting: ActingContext,
    @Param('session_id') sessionId: string,
    @Query() query: PageQueryDto,
  ): Promise<ListPage<ExchangeView>> {
    return this.exchanges.session(acting.orgId, sessionId, query);
  }
}
