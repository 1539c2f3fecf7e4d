import { ApiProperty } from '@nestjs/swagger';
import { ApiObject } from '../common/api-docs';
import type { PersonaAnalyticsDto, RatingDistribution, TokenTotals, UsageListDto, UsageRowDto } from './analytics.dto';

const integer = (example: number, description?: string) => ({ type: 'integer' as const, example, description });
const nullableNumber = (example: number, description?: string) => ({ type: Number, nullable: true, example, description });

@ApiObject('TokenTotals')
class TokenTotalsResponse implements TokenTotals {
  @ApiProperty(integer(480000))
  input!: number;

  @ApiProperty(integer(210000))
  output!: number;

  @ApiProperty(integer(690000))
  total!: number;
}

@ApiObject('AnalyticsPeriod')
class PeriodResponse {
  @ApiProperty({ format: 'date-time', example: '2026-05-06T18:30:00.000Z', description: 'inclusive' })
  from!: string;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z', description: 'exclusive' })
  to!: string;
}

@ApiObject('LatencySummary')
class LatencyResponse {
  @ApiProperty(nullableNumber(812.4, 'null without exchanges'))
  avg!: number | null;

  @ApiProperty(nullableNumber(640))
  p50!: number | null;

  @ApiProperty(nullableNumber(2110))
  p95!: number | null;
}

@ApiObject('RatingDistribution')
class RatingDistributionResponse implements RatingDistribution {
  @ApiProperty(integer(6))
  '1'!: number;

  @ApiProperty(integer(10))
  '2'!: number;

  @ApiProperty(integer(24))
  '3'!: number;

  @ApiProperty(integer(70))
  '4'!: number;

  @ApiProperty(integer(130))
  '5'!: number;
}

@ApiObject('RatingSummary')
class RatingSummaryResponse {
  @ApiProperty(integer(240))
  count!: number;

  @ApiProperty(nullableNumber(4.2, 'null without ratings'))
  average!: number | null;

  @ApiProperty({ type: RatingDistributionResponse })
  distribution!: RatingDistribution;
}

@ApiObject('VersionAnalytics')
class VersionAnalyticsResponse {
  @ApiProperty({ type: 'integer', nullable: true, example: 1 })
  version!: number | null;

  @ApiProperty(integer(700))
  requests!: number;

  @ApiProperty(nullableNumber(4.0))
  average_rating!: number | null;

  @ApiProperty({ example: 0.11, description: 'USD' })
  cost!: number;

  @ApiProperty({
    type: 'object',
    additionalProperties: { type: 'object', additionalProperties: { type: 'integer' } },
    example: { intent: { technical_support: 60, billing: 25 } },
    description: 'analysis_type → primary_category → number of analysed exchanges of this version',
  })
  analysis!: Record<string, Record<string, number>>;
}

@ApiObject('DailyAnalytics')
class DailyAnalyticsResponse {
  @ApiProperty({ format: 'date', example: '2026-06-05', description: 'UTC day' })
  date!: string;

  @ApiProperty(integer(40))
  requests!: number;

  @ApiProperty(integer(23000))
  tokens!: number;

  @ApiProperty({ example: 0.0066, description: 'USD' })
  cost!: number;

  @ApiProperty(nullableNumber(4.3))
  average_rating!: number | null;
}

@ApiObject('PersonaAnalytics')
export class PersonaAnalyticsResponse implements PersonaAnalyticsDto {
  @ApiProperty({ format: 'uuid' })
  persona_id!: string;

  @ApiProperty({ example: 'Support agent' })
  name!: string;

  @ApiProperty({ type: PeriodResponse })
  period!: PeriodResponse;

  @ApiProperty(integer(1200, 'every exchange made with the persona, failed ones too'))
  requests!: number;

  @ApiProperty(integer(85))
  users!: number;

  @ApiProperty(integer(310))
  sessions!: number;

  @ApiProperty(integer(12, 'exchanges neither completed nor pending'))
  errors!: number;

  @ApiProperty({ type: TokenTotalsResponse })
  tokens!: TokenTotals;

  @ApiProperty({ example: 0.198, description: 'USD' })
  cost!: number;

  @ApiProperty({ type: LatencyResponse })
  latency_ms!: LatencyResponse;

  @ApiProperty({ type: RatingSummaryResponse })
  ratings!: RatingSummaryResponse;

  @ApiProperty({
    type: 'object',
    additionalProperties: { type: 'object', additionalProperties: { type: 'integer' } },
    example: { intent: { technical_support: 90, billing: 40 } },
    description: 'analysis_type → primary_category → number of analysed exchanges',
  })
  analysis!: Record<string, Record<string, number>>;

  @ApiProperty({ type: [VersionAnalyticsResponse] })
  by_version!: VersionAnalyticsResponse[];

  @ApiProperty({ type: [DailyAnalyticsResponse] })
  daily!: DailyAnalyticsResponse[];
}

@ApiObject('UsageRow')
class UsageRowResponse implements UsageRowDto {
  @ApiProperty({ type: String, nullable: true, example: '2026-06-05', description: 'the user, model, persona id or UTC day; null: no persona' })
  key!: string | null;

  @ApiProperty({ enum: ['proxy', 'analysis'], example: 'proxy' })
  source!: 'proxy' | 'analysis';

  @ApiProperty(integer(420))
  requests!: number;

  @ApiProperty({ type: TokenTotalsResponse })
  tokens!: TokenTotals;

  @ApiProperty({ example: 0.066, description: 'USD' })
  cost!: number;

  @ApiProperty(integer(3))
  errors!: number;
}

@ApiObject('UsageList')
export class UsageListResponse implements UsageListDto {
  @ApiProperty({ enum: ['list'], example: 'list' })
  object!: 'list';

  @ApiProperty({ type: [UsageRowResponse] })
  data!: UsageRowDto[];

  @ApiProperty({ example: false, description: 'more keys follow: only a page asked for with `limit` or `after` can have more' })
  has_more!: boolean;

  @ApiProperty({ type: String, nullable: true, example: '2026-06-05', description: "the first row's key" })
  first_id!: string | null;

  @ApiProperty({ type: String, nullable: true, example: '2026-06-05', description: "the last row's key: `after` for the next page" })
  last_id!: string | null;
}
