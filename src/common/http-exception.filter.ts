import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { ServerResponse } from 'node:http';
import { AppException, isDatabaseUnavailable, isStatementTimeout } from './app-exception';
import { JsonLogger } from './logger';
import { noteAnswerError } from './request-start';

/** Turns errors thrown by Express body parsing (kept on the request until the guards have run) into API errors. */
export function bodyParserError(err: { type?: string; status?: number; message?: string }, limit: number): AppException {
  if (err.type === 'entity.too.large' || err.status === 413) {
    return new AppException('body_too_large', `Request body is larger than the limit of ${limit} bytes`);
  }
  if (err.type === 'encoding.unsupported' || err.type === 'charset.unsupported') {
    return AppException.invalid('Unsupported request body encoding');
  }
  return AppException.invalid('Request body is not valid JSON');
}

/** The one place that maps errors to HTTP: every error leaves in the OpenAI error envelope. */
@Catch()
export class AppExceptionFilter implements ExceptionFilter {
  constructor(
    private readonly logger: JsonLogger,
    private readonly bodyLimit: number,
  ) {}

  toAppException(exception: unknown): AppException {
    if (exception instanceof AppException) return exception;
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      if (status === 404) {
        // Express says "Cannot GET /path": the route is named in the answer
        const named = /^Cannot (\S+) (.+)$/.exec(exception.message);
        return new AppException('not_found', named ? `Unknown route: ${named[1]} ${named[2]}` : 'Unknown route', { code: 'unknown_route' });
      }
      if (status === 413) return bodyParserError({ status }, this.bodyLimit);
      if (status === 405) return new AppException('invalid_request', 'Method not allowed', { status: 405 });
      if (status === 400) return AppException.invalid(exception.message);
      if (status === 401) return new AppException('authentication', exception.message);
      if (status === 403) return new AppException('no_api_key', exception.message, { code: null });
      if (status < 500) return new AppException('invalid_request', exception.message, { status });
    }
    const e = exception as { type?: string; status?: number };
    if (e && typeof e.type === 'string' && (e.type.startsWith('entity.') || e.type.endsWith('.unsupported'))) {
      return bodyParserError(e, this.bodyLimit);
    }
    if (isStatementTimeout(exception)) return AppException.databaseTimeout();
    // the client's own bound, a second past the server's: a database that did not answer at all
    if (isDatabaseUnavailable(exception) || /^Query read timeout$/.test((exception as Error)?.message ?? '')) return AppException.databaseUnavailable();
    return new AppException('internal', 'The server had an error while processing your request');
  }

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    this.answer(exception, ctx.getRequest<Request>().path, ctx.getResponse<Response>());
  }

  /** Answers with the error in the OpenAI envelope (or ends a response already under way). */
  answer(exception: unknown, path: string, res: ServerResponse): void {
    const err = this.toAppException(exception);
    if (err.kind === 'internal') {
      this.logger.write('error', 'unhandled error', { request_id: res.getHeader('x-request-id'), path, err: exception });
    }
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    const headers = err.options.headers;
    if (headers) for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    const envelope = err.toBody();
    noteAnswerError(res, envelope.error);
    const body = JSON.stringify(envelope);
    res.statusCode = err.status;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  }
}
