import { applyDecorators, type Type } from '@nestjs/common';
import { ApiBearerAuth, ApiProperty, ApiResponse, ApiSchema, ApiSecurity, type ApiResponseOptions } from '@nestjs/swagger';
import type { ListPage } from './pagination';

export const BEARER = 'bearer';
export const USER_HEADER = 'X-User-ID';

class ErrorObject {
  @ApiProperty({ example: 'Invalid token' })
  message!: string;

  @ApiProperty({ example: 'invalid_request_error', description: 'authentication_error, permission_error, not_found_error, conflict_error, rate_limit_error, upstream_error, …' })
  type!: string;

  @ApiProperty({ type: String, nullable: true, example: null })
  code!: string | null;

  @ApiProperty({ type: String, nullable: true, example: null, description: 'the field or header at fault, when there is one' })
  param!: string | null;
}

/** The OpenAI error envelope every error answer carries. */
@ApiSchema({ name: 'ErrorEnvelope' })
export class ErrorEnvelope {
  @ApiProperty({ type: ErrorObject })
  error!: ErrorObject;
}

/** An error answer in the OpenAI envelope, typed, with an example of its body. */
export function apiError(status: number, description: string, type: string, code: string | null, message: string, param: string | null = null): ApiResponseOptions {
  return { status, description, type: ErrorEnvelope, example: { error: { message, type, code, param } } };
}

/** Marks a controller as protected in the OpenAPI document: bearer JWT + X-User-ID, and the common error answers. */
export function ApiProtected(): MethodDecorator & ClassDecorator {
  return applyDecorators(
    ApiBearerAuth(BEARER),
    ApiSecurity(USER_HEADER),
    ApiResponse(apiError(401, 'Missing, invalid, expired or revoked token', 'authentication_error', 'invalid_token', 'Invalid token')),
    ApiResponse(apiError(422, 'X-User-ID missing or invalid', 'invalid_request_error', 'missing_user_id', 'The X-User-ID header is required')),
    ApiResponse(apiError(503, 'Database unavailable', 'service_unavailable', 'database_unavailable', 'The database is unavailable; try again shortly')),
  );
}

/**
 * Names a response schema and, for OpenAI objects, allows fields beyond the ones described: OpenAI adds fields
 * often, and a generated client that dropped or refused them would break on the next upstream release.
 */
export function ApiObject(name: string, opts: { open?: boolean; description?: string } = {}): ClassDecorator {
  const options: NonNullable<Parameters<typeof ApiSchema>[0]> & { additionalProperties?: boolean } = { name, description: opts.description };
  // ApiSchema spreads every option but the name into the schema; its type only admits name and description
  if (opts.open) options.additionalProperties = true;
  return ApiSchema(options);
}

/** The schema of a list page (`object`, `data`, `has_more`, `first_id`, `last_id`) holding `item`s, named `<name>`. */
export function ListOf<T>(item: Type<T>, name: string): Type<ListPage<T>> {
  @ApiSchema({ name })
  class List implements ListPage<T> {
    @ApiProperty({ enum: ['list'], example: 'list' })
    object!: 'list';

    @ApiProperty({ type: () => [item] })
    data!: T[];

    @ApiProperty({ description: 'true when a next page exists: ask for it with `after` = last_id' })
    has_more!: boolean;

    @ApiProperty({ type: String, nullable: true, description: 'id of the first item; null on an empty page' })
    first_id!: string | null;

    @ApiProperty({ type: String, nullable: true, description: 'id of the last item: the `after` cursor of the next page' })
    last_id!: string | null;
  }
  return List;
}
