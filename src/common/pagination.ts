import { applyDecorators } from '@nestjs/common';
import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsString, Matches, MaxLength, ValidateIf } from 'class-validator';

export interface ListPage<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface PageQuery {
  limit: number;
  after?: string;
}

export const DEFAULT_PAGE_LIMIT = 20;
export const MAX_PAGE_LIMIT = 100;
const LIMIT_MESSAGE = `limit must be an integer between 1 and ${MAX_PAGE_LIMIT}`;
// PostgreSQL refuses NUL in text: a query parameter holding one must be a 400, not a failed query
export const NO_NUL = /^[^\u0000]*$/;

/** A query parameter that may be left out or sent empty (`?after=`), as before the DTOs: both mean "not given". */
export const OptionalParam = (): PropertyDecorator =>
  ValidateIf((_o: object, value: unknown) => value !== undefined && value !== '');

/** `?limit=` of a list: an integer 1–100 when given (a bad value is a 400 naming it). */
export const LimitParam = (): PropertyDecorator =>
  applyDecorators(
    ValidateIf((_o: object, value: unknown) => value !== undefined),
    Matches(/^0*(?:[1-9]\d?|100)$/, { message: LIMIT_MESSAGE }),
  );

/** `?after=` of a list: a cursor of at most 256 characters, without NUL. */
export const CursorParam = (): PropertyDecorator =>
  applyDecorators(OptionalParam(), IsString(), MaxLength(256), Matches(NO_NUL, { message: 'after must not contain NUL characters' }));

/** `?limit=&after=` of every list route, validated like a body (a bad value is a 400 naming it). */
export class PageQueryDto {
  @ApiPropertyOptional({ type: 'integer', minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT, description: `1–${MAX_PAGE_LIMIT}, default ${DEFAULT_PAGE_LIMIT}` })
  @LimitParam()
  limit?: string;

  @ApiPropertyOptional({ description: 'cursor: the last id of the previous page' })
  @CursorParam()
  after?: string;
}

/** The page a validated `PageQueryDto` asks for. */
export function pageOf(query: PageQueryDto): PageQuery {
  return {
    limit: query.limit === undefined ? DEFAULT_PAGE_LIMIT : Number(query.limit),
    after: query.after === undefined || query.after === '' ? undefined : query.after,
  };
}

/** Builds a list page from `limit + 1` fetched rows. */
export function toListPage<T extends { id: string }>(rows: T[], limit: number): ListPage<T> {
  const has_more = rows.length > limit;
  const data = has_more ? rows.slice(0, limit) : rows;
  return {
    object: 'list',
    data,
    has_more,
    first_id: data.length ? data[0].id : null,
    last_id: data.length ? data[data.length - 1].id : null,
  };
}
