import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsString } from 'class-validator';
import { checkRange, IsInstant, parseInstant } from '../common/dates';
import type { UsageReportPage } from '../exchanges/exchange-reports';
import { CursorParam, DEFAULT_PAGE_LIMIT, LimitParam, MAX_PAGE_LIMIT, OptionalParam } from '../common/pagination';

/** Half-open reporting period [from, to). */
export interface Period {
  from: Date;
  to: Date;
}

export const DEFAULT_PERIOD_DAYS = 30;

export const USAGE_GROUPS = ['user', 'model', 'persona', 'day'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];
export const USAGE_ORDERS = ['key', 'cost'] as const;
export type UsageOrder = (typeof USAGE_ORDERS)[number];

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

  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    maximum: MAX_PAGE_LIMIT,
    description: `1–${MAX_PAGE_LIMIT}: at most this many keys (each with its proxy and analysis rows) and \`has_more\`; without it every row of the period (20 keys when \`after\` is given)`,
  })
  @LimitParam()
  limit?: string;

  @ApiPropertyOptional({ description: 'cursor: the `last_id` (a key) of the previous page' })
  @CursorParam()
  after?: string;

  @ApiPropertyOptional({
    enum: USAGE_ORDERS,
    default: 'key',
    description: '`key`: keys in ascending order (null last); `cost`: keys by their cost (proxied and analysis together), highest first',
  })
  @OptionalParam()
  @IsString()
  @IsIn(USAGE_ORDERS, { message: `order must be one of ${USAGE_ORDERS.join(', ')}` })
  order?: UsageOrder;
}

/** The page `?limit=&after=&order=` ask for: every row without `limit` or `after`; 20 keys with `after` alone. */
export function usagePageOf(query: UsageQueryDto): UsageReportPage {
  const after = query.after === undefined || query.after === '' ? undefined : query.after;
  const limit = query.limit !== undefined ? Number(query.limit) : after !== undefined ? DEFAULT_PAGE_LIMIT : null;
  return { limit, after, order: query.order || 'key' };
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
