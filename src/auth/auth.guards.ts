import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AppException } from '../common/app-exception';
import type { ProxyRequest } from '../common/request-context';
import { IS_PUBLIC } from './public.decorator';
import { OrganizationsService } from './organizations.service';
import { TokenClaims, TokensService } from './tokens.service';
import { externalIdProblem, UsersService } from './users.service';

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
    private readonly tokens: TokensService,
    private readonly orgs: OrganizationsService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const header = req.headers.authorization;
    if (!header) throw new AppException('authentication', 'Missing bearer token in the Authorization header', { code: 'missing_token' });
    const m = /^Bearer[ ]+([A-Za-z0-9_\-.=]+)\s*$/i.exec(header);
    if (!m) throw new AppException('authentication', 'Malformed Authorization header; expected "Bearer <token>"', { code: 'invalid_token' });
    const claims = this.tokens.verify(m[1]);
    const org = await this.orgs.state(claims.org_id);
    if (!org) throw new AppException('authentication', 'Unknown organization', { code: 'invalid_organization' });
    if (org.disabled) throw new AppException('authentication', 'The organization is disabled', { code: 'organization_disabled' });
    req.claims = claims;
    return true;
  }
}

/** `X-User-ID` on every route not marked @Public(): the end user the call acts for, recorded on first sight. */
@Injectable()
export class UserIdGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly users: UsersService,
    private readonly orgs: OrganizationsService,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    if (isPublic(this.reflector, ctx)) return true;
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const claims = req.claims!;
    const raw = req.headers['x-user-id'];
    const externalId = Array.isArray(raw) ? raw[0] : raw;
    const problem = externalIdProblem(externalId);
    if (problem === 'missing_user_id') throw new AppException('missing_user_id', 'The X-User-ID header is required');
    if (problem) throw new AppException('invalid_user_id', 'X-User-ID must be at most 256 characters without control characters');
    if (claims.user_id !== undefined && claims.user_id !== externalId) {
      throw new AppException('user_mismatch', 'X-User-ID does not match the user the token was issued for');
    }
    const userId = await this.users.ensure(claims.org_id, externalId!);
    const org = await this.orgs.state(claims.org_id);
    req.acting = {
      orgId: claims.org_id,
      orgName: claims.org_name ?? org?.name ?? null,
      userId,
      externalUserId: externalId!,
      jti: claims.jti,
    };
    return true;
  }
}
