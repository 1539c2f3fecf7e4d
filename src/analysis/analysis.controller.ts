import { Body, Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ApiProtected } from '../common/api-docs';
import { ListPage } from '../common/pagination';
import { Acting, ActingContext } from '../common/request-context';
import { AnalysisResultView, RESULT_EXAMPLE, RunAnalysisDto } from './analysis.dto';
import { AnalysisService } from './analysis.service';

@ApiTags('analysis')
@ApiProtected()
@Controller('v1/analysis')
export class AnalysisController {
  constructor(private readonly analysis: AnalysisService) {}

  @Post()
  @HttpCode(200)
  @ApiOperation({
    summary: 'Analyse a stored exchange with a saved or inline configuration',
    description:
      'The model is called with a strict JSON schema through the same key resolution as proxied traffic. Identical analyses ' +
      '(same organization, normalized configuration and conversation) are answered from the cache with `cached: true` and `cost: 0` ' +
      'unless `force_refresh` is set.',
  })
  @ApiBody({
    type: RunAnalysisDto,
    examples: {
      saved: { value: { request_id: 'req_Yk3vQm9Xo2LrT8sWcA1bZp4N', config_id: '550e8400-e29b-41d4-a716-446655440000' } },
      inline: { value: { response_id: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b', config: { analysis_type: 'sentiment' }, force_refresh: true } },
    },
  })
  @ApiOkResponse({ schema: { example: RESULT_EXAMPLE } })
  @ApiResponse({
    status: 400,
    description: 'Validation error; `param` names the field',
    schema: { example: { error: { message: 'Give exactly one of request_id and response_id', type: 'invalid_request_error', code: null, param: 'request_id' } } },
  })
  @ApiResponse({
    status: 404,
    description: 'Unknown exchange or configuration (or one of another organization)',
    schema: { example: { error: { message: "No request found with id 'req_…'", type: 'not_found_error', code: 'not_found', param: null } } },
  })
  @ApiResponse({
    status: 502,
    description: 'Upstream unreachable, or its answer did not fit the schema twice',
    schema: { example: { error: { message: "The model's analysis did not fit the schema twice (unknown category)", type: 'upstream_error', code: 'invalid_structured_output', param: null } } },
  })
  run(@Acting() acting: ActingContext, @Body() dto: RunAnalysisDto): Promise<AnalysisResultView> {
    return this.analysis.run(acting, dto);
  }

  @Get('results')
  @ApiOperation({ summary: 'Stored analysis results, newest first' })
  @ApiQuery({ name: 'request_id', required: false })
  @ApiQuery({ name: 'response_id', required: false })
  @ApiQuery({ name: 'config_id', required: false })
  @ApiQuery({ name: 'limit', required: false, example: 20 })
  @ApiQuery({ name: 'after', required: false, description: 'id of the last result of the previous page' })
  @ApiOkResponse({ schema: { example: { object: 'list', data: [RESULT_EXAMPLE], has_more: false, first_id: RESULT_EXAMPLE.id, last_id: RESULT_EXAMPLE.id } } })
  results(@Acting() acting: ActingContext, @Query() query: Record<string, unknown>): Promise<ListPage<AnalysisResultView>> {
    return this.analysis.listResults(acting.orgId, query);
  }
}
