import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { ProxyRequest } from '../common/request-context';
import { AppException } from '../common/app-exception';
import { IS_PUBLIC } from './public.decorator';
import { RequestAuthenticator } from './request-authenticator';
import { REQUIRED_SCOPE } from './require-scope.decorator';
import type { Scope } from './scopes';
import { TokenClaims } from './tokens.service';

interface AuthedRequest extends ProxyRequest {
  claims?: TokenClaims;
}

function isPublic(reflector: Reflector, ctx: ExecutionContext): boolean {
  return reflector.getAllAndOverride<boolean>(IS_PUBLIC, [ctx.getHandler(), ctx.getClass()]) === true;
}

/**
 * `Authorization: Bearer <JWT>` holding the route's @RequireScope() on every route not marked @Public(). Guards run
 * before the body is read (RequestBodyInterceptor), so a refused call reads no body and writes nothing.
 */
@Injectable()
export class JwtAuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: RequestAuthenticator,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const scope = this.reflector.getAllAndOverride<Scope | undefined>(REQUIRED_SCOPE, [ctx.getHandler(), ctx.getClass()]);
    if (scope === undefined) {
      // fail closed: a route nobody gave a scope is nobody's
      throw new AppException('insufficient_scope', `${req.method} ${req.path} declares no scope, so no token may call it`);
    }
    req.claims = await this.auth.verifyToken(req.headers, scope);
    return true;
  }
}

/** `X-User-ID` on every route not marked @Public(): the end user the call acts for, recorded on first sight. */
@Injectable()
export class UserIdGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: RequestAuthenticator,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    req.acting = await this.auth.actingFor(req.claims!, req.headers);
    return true;
  }
}
