import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { bodyParserError } from './http-exception.filter';
import type { ProxyRequest } from './request-context';

/** Raises a body-parsing error kept by the parser, now that the guards have accepted the caller. */
@Injectable()
export class BodyErrorInterceptor implements NestInterceptor {
  constructor(private readonly bodyLimit: number) {}

  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = ctx.switchToHttp().getRequest<ProxyRequest>();
    if (req.bodyError) throw bodyParserError(req.bodyError, this.bodyLimit);
    return next.handle();
  }
}
