import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { ProxyRequest } from '../common/request-context';
import { IS_PUBLIC } from './public.decorator';
import { RequestAuthenticator } from './request-authenticator';
import { TokenClaims } from './tokens.service';

interface AuthedRequest extends ProxyRequest {
  claims?: TokenClaims;
}

function isPublic(reflector: Reflector, ctx: ExecutionContext): boolean {
  return reflector.getAllAndOverride<boolean>(IS_PUBLIC, [ctx.getHandler(), ctx.getClass()]) === true;
}

/** `Authorization: Bearer <JWT>` on every route not marked @Public(). */
@Injectable()
export class JwtAuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly auth: RequestAuthenticator,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    req.claims = await this.auth.verifyToken(req.headers);
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
