import { Controller, Get, Param, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected, apiError } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { PERSONA_ANALYTICS_EXAMPLE, PersonaAnalyticsDto, USAGE_EXAMPLE } from './analytics.dto';
import { PeriodQueryDto, UsageQueryDto } from './analytics-query';
import { AnalyticsService } from './analytics.service';
import { PersonaAnalyticsResponse, UsageListResponse } from './analytics.responses';

const ApiBadPeriod = () =>
  ApiResponse(apiError(400, 'from/to not ISO-8601, from later than to, or an unknown group_by', 'invalid_request_error', null, 'from must not be later than to', 'from'));

@ApiTags('analytics')
@ApiProtected()
@RequireScope('read')
@Controller('v1/analytics')
export class AnalyticsController {
  constructor(private readonly analytics: AnalyticsService) {}

  @Get('personas/:id')
  @ApiOperation({
    summary: "A persona's traffic, cost, latency, ratings and analysis results over a period",
    description:
      'Counts every exchange made with the persona (failed ones too; `errors` are those neither completed nor pending). ' +
      'Ratings and analysis results belong to the period of the exchange they are about. Latency percentiles are ' +
      'interpolated (percentile_cont). Days are UTC. A deleted persona still answers. Exchanges deleted by the ' +
      "organization's retention are counted from daily rollups (a rolled-up day counts when its start is in the " +
      'period); latency percentiles cover the stored exchanges only.',
  })
  @ApiOkResponse({ type: PersonaAnalyticsResponse, example: PERSONA_ANALYTICS_EXAMPLE })
  @ApiBadPeriod()
  @ApiResponse(apiError(404, 'Unknown persona, or one of another organization', 'not_found_error', 'not_found', "No persona found with id '…'"))
  persona(@Acting() acting: ActingContext, @Param('id') id: string, @Query() query: PeriodQueryDto): Promise<PersonaAnalyticsDto> {
    return this.analytics.personaReport(acting, id, query);
  }

  @Get('usage')
  @ApiOperation({
    summary: "The organization's usage per user, model, persona or UTC day",
    description:
      'One row per group key and source: `proxy` (proxied exchanges) and `analysis` (conversation-analysis calls, ' +
      'one per stored result). `user` keys are X-User-ID values; `persona` keys are persona ids (null: no persona). ' +
      "Exchanges and analyses deleted by the organization's retention are counted from daily rollups (a rolled-up " +
      'day counts when its start is in the period; an erased user\'s key is null).',
  })
  @ApiOkResponse({ type: UsageListResponse, example: USAGE_EXAMPLE })
  @ApiBadPeriod()
  async usage(@Acting() acting: ActingContext, @Query() query: UsageQueryDto, @Res({ passthrough: true }) res: Response): Promise<string> {
    // a UsageListDto already printed as JSON (AnalyticsService.usage): sent as it is
    const json = await this.analytics.usage(acting, query);
    res.type('application/json');
    return json;
  }
}
