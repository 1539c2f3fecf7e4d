import { Injectable } from '@nestjs/common';
import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import { AppException } from '../common/app-exception';
import type { ActingContext } from '../common/request-context';
import { DEFAULT_PRIVACY } from './org-privacy';
import { OrganizationsService } from './organizations.service';
import { requireScope, Scope } from './scopes';
import { TokenClaims, TokensService } from './tokens.service';
import { externalIdProblem, UsersService } from './users.service';

/** The checks every protected call passes: the bearer JWT and its scope, then the X-User-ID it acts for. */
@Injectable()
export class RequestAuthenticator {
  constructor(
    private readonly tokens: TokensService,
    private readonly orgs: OrganizationsService,
    private readonly users: UsersService,
  ) {}

  /**
   * `Authorization: Bearer <JWT>`: a valid token of an existing, enabled organization (401 otherwise) that holds
   * `scope` (403 insufficient_scope otherwise). Checked before X-User-ID, so a refused call records no user.
   */
  async verifyToken(headers: IncomingHttpHeaders, scope: Scope): Promise<TokenClaims> {
    const header = headers.authorization;
    if (!header) throw new AppException('authentication', 'Missing bearer token in the Authorization header', { code: 'missing_token' });
    const m = /^Bearer[ ]+([A-Za-z0-9_\-.=]+)\s*$/i.exec(header);
    if (!m) throw new AppException('authentication', 'Malformed Authorization header; expected "Bearer <token>"', { code: 'invalid_token' });
    if (/^sk-/.test(m[1])) {
      throw new AppException(
        'authentication',
        'This looks like an OpenAI API key, but the proxy takes its own JWT as the bearer token. Make one with ' +
          '`npm run -s cli -- jwt create --org-id <org-id>`; the OpenAI key belongs in the proxy: ' +
          '`npm run -s cli -- key create <org-id> <sk-…>`',
        { code: 'openai_key_as_token' },
      );
    }
    const claims = this.tokens.verify(m[1]);
    const org = await this.orgs.state(claims.org_id);
    if (!org) throw new AppException('authentication', 'Unknown organization', { code: 'invalid_organization' });
    if (org.disabled) throw new AppException('authentication', 'The organization is disabled', { code: 'organization_disabled' });
    requireScope(claims.scopes, scope);
    return claims;
  }

  /** `X-User-ID`: the end user the call acts for, recorded on first sight. */
  async actingFor(claims: TokenClaims, headers: IncomingHttpHeaders): Promise<ActingContext> {
    const raw = headers['x-user-id'];
    const externalId = headerText(Array.isArray(raw) ? raw[0] : raw);
    const problem = externalIdProblem(externalId);
    if (problem === 'missing_user_id') throw new AppException('missing_user_id', 'The X-User-ID header is required');
    if (problem) throw new AppException('invalid_user_id', 'X-User-ID must be at most 256 characters without control characters');
    if (claims.user_id !== undefined && claims.user_id !== externalId) {
      throw new AppException('user_mismatch', 'X-User-ID does not match the user the token was issued for');
    }
    const userId = await this.users.ensure(claims.org_id, externalId!);
    const org = await this.orgs.state(claims.org_id);
    return {
      orgId: claims.org_id,
      orgName: claims.org_name ?? org?.name ?? null,
      privacy: org?.privacy ?? DEFAULT_PRIVACY,
      userId,
      externalUserId: externalId!,
      jti: claims.jti,
    };
  }
}

/**
 * Node reads header bytes as Latin-1: a value sent as UTF-8 (`José`) arrives as `JosÃ©`. Bytes that form valid UTF-8
 * are read as UTF-8; anything else stays as Latin-1 (a client that did send Latin-1 keeps its `José`).
 */
export function headerText(value: string | undefined): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (value === undefined || !/[\u0080-\u00ff]/.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : value;
}
