import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsString } from 'class-validator';
import { checkRange, IsInstant, parseInstant } from '../common/dates';
import { OptionalParam } from '../common/pagination';

/** Half-open reporting period [from, to). */
export interface Period {
  from: Date;
  to: Date;
}

export const DEFAULT_PERIOD_DAYS = 30;

export const USAGE_GROUPS = ['user', 'model', 'persona', 'day'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

/** `?from=&to=` of the analytics routes. */
export class PeriodQueryDto {
  @ApiPropertyOptional({ description: 'ISO-8601, inclusive; default 30 days before `to`; a time without a zone is UTC', example: '2026-05-06T00:00:00Z' })
  @OptionalParam()
  @IsInstant()
  from?: string;

  @ApiPropertyOptional({ description: 'ISO-8601, exclusive; default now; a time without a zone is UTC', example: '2026-06-05T00:00:00Z' })
  @OptionalParam()
  @IsInstant()
  to?: string;
}

export class UsageQueryDto extends PeriodQueryDto {
  @ApiPropertyOptional({ enum: USAGE_GROUPS, default: 'day' })
  @OptionalParam()
  @IsString()
  @IsIn(USAGE_GROUPS, { message: `group_by must be one of ${USAGE_GROUPS.join(', ')}` })
  group_by?: UsageGroup;
}

/**
 * The period of `?from=&to=`. Without `to`: now; without `from`: 30 days before `to`. `from` is inclusive and `to`
 * exclusive, so consecutive periods never count an exchange twice.
 */
export function parsePeriod(query: PeriodQueryDto, now = new Date()): Period {
  const from = parseInstant(query.from, 'from');
  const to = parseInstant(query.to, 'to') ?? now;
  const start = from ?? new Date(to.getTime() - DEFAULT_PERIOD_DAYS * 86_400_000);
  checkRange(start, to);
  return { from: start, to };
}

/** `?group_by=` (default `day`). */
export function usageGroupOf(query: UsageQueryDto): UsageGroup {
  return query.group_by || 'day';
}
