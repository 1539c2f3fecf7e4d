import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';

/** Who a request acts for, set by the auth guards. */
export interface ActingContext {
  orgId: string;
  orgName: string | null;
  /** internal user id (UUID) */
  userId: string;
  /** the X-User-ID value */
  externalUserId: string;
  jti: string;
}

export interface ProxyRequest extends Request {
  acting?: ActingContext;
  requestId: string;
  rawBody?: Buffer;
  bodyError?: { type?: string; status?: number; message?: string };
  startedAt: number;
}

/** The acting organization and user of the request. */
export const Acting = createParamDecorator((_data: unknown, ctx: ExecutionContext): ActingContext => {
  const req = ctx.switchToHttp().getRequest<ProxyRequest>();
  if (!req.acting) throw new Error('Acting context missing: route is not behind the auth guards');
  return req.acting;
});
