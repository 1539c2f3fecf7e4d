import { applyDecorators } from '@nestjs/common';
import { ApiBearerAuth, ApiResponse, ApiSecurity } from '@nestjs/swagger';

export const BEARER = 'bearer';
export const USER_HEADER = 'X-User-ID';

const envelope = (type: string, code: string | null, message: string) => ({
  schema: { example: { error: { message, type, code, param: null } } },
});

/** Marks a controller as protected in the OpenAPI document: bearer JWT + X-User-ID, and the common error answers. */
export function ApiProtected(): MethodDecorator & ClassDecorator {
  return applyDecorators(
    ApiBearerAuth(BEARER),
    ApiSecurity(USER_HEADER),
    ApiResponse({ status: 401, description: 'Missing, invalid, expired or revoked token', ...envelope('authentication_error', 'invalid_token', 'Invalid token') }),
    ApiResponse({ status: 422, description: 'X-User-ID missing or invalid', ...envelope('invalid_request_error', 'missing_user_id', 'The X-User-ID header is required') }),
    ApiResponse({ status: 503, description: 'Database unavailable', ...envelope('service_unavailable', 'database_unavailable', 'The database is unavailable; try again shortly') }),
  );
}
