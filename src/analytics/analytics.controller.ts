import { applyDecorators, Controller, Get, Param, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ApiProtected } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { PERSONA_ANALYTICS_EXAMPLE, PersonaAnalyticsDto, USAGE_EXAMPLE, UsageListDto } from './analytics.dto';
import { AnalyticsService } from './analytics.service';

const ApiPeriodQuery = () =>
  applyDecorators(
    ApiQuery({ name: 'from', required: false, description: 'ISO-8601, inclusive; default 30 days before `to`', example: '2026-05-06T00:00:00Z' }),
    ApiQuery({ name: 'to', required: false, description: 'ISO-8601, exclusive; default now', example: '2026-06-05T00:00:00Z' }),
  );

const ApiBadPeriod = () =>
  ApiResponse({
  status: 400,
  description: 'from/to not ISO-8601, from later than to, or an unknown group_by',
  schema: { example: { error: { message: 'from must not be later than to', type: 'invalid_request_error', code: null, param: 'from' } } },
});

@ApiTags('analytics')
@ApiProtected()
@Controller('v1/analytics')
export class AnalyticsController {
  constructor(private readonly analytics: AnalyticsService) {}

  @Get('personas/:id')
  @ApiOperation({
    summary: "A persona's traffic, cost, latency, ratings and analysis results over a period",
    description:
      'Counts every exchange made with the persona (failed ones too; `errors` are those neither completed nor pending). ' +
      'Ratings and analysis results belong to the period of the exchange they are about. Latency percentiles are ' +
      'interpolated (percentile_cont). Days are UTC. A deleted persona still answers.',
  })
  @ApiPeriodQuery()
  @ApiOkResponse({ schema: { example: PERSONA_ANALYTICS_EXAMPLE } })
  @ApiBadPeriod()
  @ApiResponse({ status: 404, description: 'Unknown persona, or one of another organization' })
  persona(@Acting() acting: ActingContext, @Param('id') id: string, @Query() query: Record<string, unknown>): Promise<PersonaAnalyticsDto> {
    return this.analytics.personaReport(acting, id, query);
  }

  @Get('usage')
  @ApiOperation({
    summary: "The organization's usage per user, model, persona or UTC day",
    description:
      'One row per group key and source: `proxy` (proxied exchanges) and `analysis` (conversation-analysis calls, ' +
      'one per stored result). `user` keys are X-User-ID values; `persona` keys are persona ids (null: no persona).',
  })
  @ApiPeriodQuery()
  @ApiQuery({ name: 'group_by', required: false, enum: ['user', 'model', 'persona', 'day'], description: 'default day' })
  @ApiOkResponse({ schema: { example: USAGE_EXAMPLE } })
  @ApiBadPeriod()
  usage(@Acting() acting: ActingContext, @Query() query: Record<string, unknown>): Promise<UsageListDto> {
    return this.analytics.usage(acting, query);
  }
}
