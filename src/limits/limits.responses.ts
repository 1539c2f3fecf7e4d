import { ApiProperty } from '@nestjs/swagger';
import { ApiObject } from '../common/api-docs';
import type { LimitValues } from './limit-definitions';
import type { LimitsResponse, LimitUsage, SubjectLimitsView } from './limits-admin.service';

const nullableNumber = (description: string, integer = false) => ({ type: integer ? ('integer' as const) : ('number' as const), nullable: true, description });

@ApiObject('LimitValues')
class LimitValuesResponse implements LimitValues {
  @ApiProperty(nullableNumber('requests per minute; null = no limit', true))
  rpm!: number | null;

  @ApiProperty(nullableNumber('tokens per minute; null = no limit', true))
  tpm!: number | null;

  @ApiProperty(nullableNumber('USD per UTC day; null = no limit'))
  daily_budget_usd!: number | null;

  @ApiProperty(nullableNumber('USD per UTC month; null = no limit'))
  monthly_budget_usd!: number | null;
}

@ApiObject('LimitUsage')
class LimitUsageResponse implements LimitUsage {
  @ApiProperty(nullableNumber('counted while rpm is set', true))
  requests_this_minute!: number | null;

  @ApiProperty(nullableNumber('counted while tpm is set', true))
  tokens_this_minute!: number | null;

  @ApiProperty(nullableNumber('counted while daily_budget_usd is set'))
  cost_today_usd!: number | null;

  @ApiProperty(nullableNumber('counted while monthly_budget_usd is set'))
  cost_this_month_usd!: number | null;
}

@ApiObject('LimitResets')
class LimitResetsResponse {
  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:31:00.000Z' })
  minute!: string;

  @ApiProperty({ format: 'date-time', example: '2026-06-06T00:00:00.000Z' })
  day!: string;

  @ApiProperty({ format: 'date-time', example: '2026-07-01T00:00:00.000Z' })
  month!: string;
}

@ApiObject('SubjectLimits')
class SubjectLimitsResponse implements SubjectLimitsView {
  @ApiProperty({ format: 'uuid', description: 'internal id of the organization or user' })
  id!: string;

  @ApiProperty({ type: LimitValuesResponse })
  limits!: LimitValues;

  @ApiProperty({ type: LimitUsageResponse })
  usage!: LimitUsage;

  @ApiProperty({ type: LimitResetsResponse })
  resets_at!: LimitResetsResponse;
}

@ApiObject('UserLimits')
class UserLimitsResponse extends SubjectLimitsResponse {
  @ApiProperty({ example: 'alice@example.com', description: 'the X-User-ID value' })
  external_id!: string;
}

@ApiObject('Limits')
export class LimitsResponseBody implements LimitsResponse {
  @ApiProperty({ enum: ['limits'], example: 'limits' })
  object!: 'limits';

  @ApiProperty({ type: SubjectLimitsResponse })
  organization!: SubjectLimitsView;

  @ApiProperty({ type: UserLimitsResponse })
  user!: UserLimitsResponse;
}
