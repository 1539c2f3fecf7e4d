import type { OrgPrivacy } from '../auth/org-privacy';
import type { PhaseMarks } from '../metrics/call-phases';
import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { Request } from 'express';
import type { IncomingMessage } from 'node:http';

/** Who a request acts for, set by the auth guards. */
export interface ActingContext {
  orgId: string;
  orgName: string | null;
  /** internal user id (UUID) */
  userId: string;
  /** the X-User-ID value */
  externalUserId: string;
  jti: string;
  /** the organization's privacy settings (from the cached organization state) */
  privacy: OrgPrivacy;
}

/** What the app keeps on a request (set by configureApp's middleware or the proxy dispatch, and the auth guards). */
export interface RequestState {
  acting?: ActingContext;
  requestId: string;
  rawBody?: Buffer;
  startedAt: number;
  /** a proxied call's phase ends (see call-phases.ts); set by the proxy dispatch */
  marks?: PhaseMarks;
  /** which phase sums the call adds to (PHASE_ROUTES), once its body is read */
  phaseRoute?: number;
}

export interface ProxyRequest extends Request, RequestState {}

/** A proxied call's request: an Express request, or a bare node:http one taken by the proxy dispatch. */
export type ProxiedRequest = IncomingMessage & RequestState & { body?: unknown; /** rawBody decoded, when already done */ rawText?: string };

/** The acting organization and user of the request. */
export const Acting = createParamDecorator((_data: unknown, ctx: ExecutionContext): ActingContext => {
  const req = ctx.switchToHttp().getRequest<ProxyRequest>();
  if (!req.acting) throw new Error('Acting context missing: route is not behind the auth guards');
  return req.acting;
});
