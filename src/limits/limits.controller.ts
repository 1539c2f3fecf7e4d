import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { RequireScope } from '../auth/require-scope.decorator';
import { ApiProtected } from '../common/api-docs';
import { Acting, ActingContext } from '../common/request-context';
import { LimitsAdminService, LimitsResponse } from './limits-admin.service';
import { LimitsResponseBody } from './limits.responses';

const view = (id: string) => ({
  id,
  limits: { rpm: 60, tpm: null, daily_budget_usd: 5, monthly_budget_usd: null },
  usage: { requests_this_minute: 12, tokens_this_minute: null, cost_today_usd: 0.4213, cost_this_month_usd: null },
  resets_at: { minute: '2026-06-05T18:31:00.000Z', day: '2026-06-06T00:00:00.000Z', month: '2026-07-01T00:00:00.000Z' },
});

@ApiTags('limits')
@ApiProtected()
@RequireScope('read')
@Controller('v1/limits')
export class LimitsController {
  constructor(private readonly limits: LimitsAdminService) {}

  @Get()
  @ApiOperation({
    summary: "The acting organization's and user's limits and current consumption",
    description:
      'Limits: requests and tokens per minute, USD budgets per UTC day and month (null = no limit). Consumption is counted for ' +
      'each limit that is set (null where none is); windows are fixed (UTC minute, day, month) and reset at `resets_at`.',
  })
  @ApiOkResponse({
    type: LimitsResponseBody,
    example: {
      object: 'limits',
      organization: view('9b2f4c1e-5d3a-4f7b-8c6d-1e2f3a4b5c6d'),
      user: { ...view('1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f'), external_id: 'alice@example.com' },
    },
  })
  get(@Acting() acting: ActingContext): Promise<LimitsResponse> {
    return this.limits.forActing(acting);
  }
}
