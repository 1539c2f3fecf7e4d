/** Every error the API can answer with: HTTP status, OpenAI error `type`, and the default `code`. */
export const ERRORS = {
  invalid_request: { status: 400, type: 'invalid_request_error', code: null },
  authentication: { status: 401, type: 'authentication_error', code: 'invalid_token' },
  no_api_key: { status: 403, type: 'permission_error', code: 'no_api_key' },
  user_mismatch: { status: 403, type: 'permission_error', code: 'user_mismatch' },
  insufficient_scope: { status: 403, type: 'permission_error', code: 'insufficient_scope' },
  not_found: { status: 404, type: 'not_found_error', code: 'not_found' },
  conflict: { status: 409, type: 'conflict_error', code: 'conflict' },
  request_timeout: { status: 408, type: 'invalid_request_error', code: 'request_timeout' },
  body_too_large: { status: 413, type: 'invalid_request_error', code: 'body_too_large' },
  headers_too_large: { status: 431, type: 'invalid_request_error', code: 'headers_too_large' },
  missing_user_id: { status: 422, type: 'invalid_request_error', code: 'missing_user_id' },
  invalid_user_id: { status: 422, type: 'invalid_request_error', code: 'invalid_user_id' },
  rate_limit: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  internal: { status: 500, type: 'server_error', code: 'internal_error' },
  upstream_error: { status: 502, type: 'upstream_error', code: 'upstream_error' },
  service_unavailable: { status: 503, type: 'service_unavailable', code: 'service_unavailable' },
  upstream_timeout: { status: 504, type: 'upstream_timeout', code: 'upstream_timeout' },
} as const;

export type ErrorKind = keyof typeof ERRORS;

export interface AppExceptionOptions {
  /** the offending field, for validation errors */
  param?: string | null;
  /** overrides the kind's default `code` */
  code?: string | null;
  /** overrides the kind's status (e.g. an upstream 4xx passed through) */
  status?: number;
  /** overrides the kind's `type` */
  type?: string;
  headers?: Record<string, string>;
  /** the status the upstream answered with, when this error is its answer */
  upstreamStatus?: number;
}

export class AppException extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly options: AppExceptionOptions = {},
  ) {
    super(message);
    this.name = 'AppException';
  }

  get status(): number {
    return this.options.status ?? ERRORS[this.kind].status;
  }

  toBody(): { error: { message: string; type: string; code: string | null; param: string | null } } {
    const def = ERRORS[this.kind];
    return {
      error: {
        message: this.message,
        type: this.options.type ?? def.type,
        code: this.options.code !== undefined ? this.options.code : def.code,
        param: this.options.param ?? null,
      },
    };
  }

  static notFound(what: string, id: string): AppException {
    return new AppException('not_found', `No ${what} found with id '${id}'`);
  }

  static invalid(message: string, param: string | null = null): AppException {
    return new AppException('invalid_request', message, { param });
  }

  /** A statement the database cancelled after DB_QUERY_TIMEOUT_MS (a read too large to answer in time). */
  static databaseTimeout(): AppException {
    return new AppException(
      'service_unavailable',
      'The database did not finish this request in time and cancelled it; ask for less (a shorter period, a smaller page, fewer filters that match little) or try again later',
      { code: 'database_timeout', headers: { 'Retry-After': '5' } },
    );
  }

  static databaseUnavailable(): AppException {
    return new AppException('service_unavailable', 'The database is unavailable; try again shortly', {
      code: 'database_unavailable',
      headers: { 'Retry-After': '2' },
    });
  }
}

const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '53300']);

/** A unique-constraint violation (of `constraint` when given; a driver that names none counts as a match). */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const driver = (err as { driverError?: { code?: string; constraint?: string } })?.driverError;
  if (driver?.code !== '23505') return false;
  return constraint === undefined || driver.constraint === undefined || driver.constraint === constraint;
}

/** A statement the server cancelled for running past its statement_timeout (SQLSTATE 57014), as the driver or TypeORM reports it. */
export function isStatementTimeout(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: string; driverError?: unknown };
  if (e.code === '57014') return true;
  return !!e.driverError && e.driverError !== err && isStatementTimeout(e.driverError);
}

/** True for errors that mean the database cannot be reached (as opposed to a bad query). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: string; message?: string; driverError?: unknown; cause?: unknown };
  if (e.code && (CONNECTION_ERROR_CODES.has(e.code) || e.code.startsWith('08'))) return true;
  const msg = e.message ?? '';
  if (
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended|server closed the connection|terminating connection|not queryable|Cannot use a pool after calling end/i.test(
      msg,
    )
  ) {
    return true;
  }
  if (e.driverError && e.driverError !== err) return isDatabaseUnavailable(e.driverError);
  if (e.cause && e.cause !== err) return isDatabaseUnavailable(e.cause);
  return false;
}
