import { Body, Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { ListPage, pageOf } from '../common/pagination';
import { Acting, ActingContext } from '../common/request-context';
import { AnalysisResultView, ListAnalysisResultsQueryDto, RESULT_EXAMPLE, RunAnalysisDto } from './analysis.dto';
import { AnalysisService } from './analysis.service';
import { AnalysisResultList, AnalysisResultResponse } from './analysis.responses';

@ApiTags('analysis')
@ApiProtected()
@Controller('v1/analysis')
export class AnalysisController {
  constructor(private readonly analysis: AnalysisService) {}

  @RequireScope('manage')
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
      saved: {
        summary: 'a saved configuration',
        description: 'request_id must name one of your exchanges (the X-Request-ID of a proxied call) and config_id one of your configurations.',
        value: { request_id: 'req_Yk3vQm9Xo2LrT8sWcA1bZp4N', config_id: '550e8400-e29b-41d4-a716-446655440000' },
      },
      inline: {
        summary: 'an inline configuration',
        description: 'response_id must name the upstream response id of one of your exchanges.',
        value: { response_id: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b', config: { analysis_type: 'sentiment' }, force_refresh: true },
      },
    },
  })
  @ApiOkResponse({ type: AnalysisResultResponse, example: RESULT_EXAMPLE })
  @ApiResponse(apiError(400, 'Validation error; `param` names the field', 'invalid_request_error', null, 'Give exactly one of request_id and response_id', 'request_id'))
  @ApiResponse(apiError(404, 'Unknown exchange or configuration (or one of another organization)', 'not_found_error', 'not_found', "No request found with id 'req_…'"))
  @ApiResponse(
    apiError(502, 'Upstream unreachable, or its answer did not fit the schema twice', 'upstream_error', 'invalid_structured_output', "The model's analysis did not fit the schema twice (unknown category)"),
  )
  run(@Acting() acting: ActingContext, @Body() dto: RunAnalysisDto): Promise<AnalysisResultView> {
    return this.analysis.run(acting, dto);
  }

  @RequireScope('read')
  @Get('results')
  @ApiOperation({ summary: 'Stored analysis results, newest first' })
  @ApiOkResponse({ type: AnalysisResultList, example: { object: 'list', data: [RESULT_EXAMPLE], has_more: false, first_id: RESULT_EXAMPLE.id, last_id: RESULT_EXAMPLE.id } })
  results(@Acting() acting: ActingContext, @Query() query: ListAnalysisResultsQueryDto): Promise<ListPage<AnalysisResultView>> {
    return this.analysis.listResults(acting.orgId, pageOf(query), query);
  }
}
