import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { DataSource, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { IssuedTokensService } from './issued-tokens.service';
import { OrganizationEntity } from './organization.entity';
import { RevokedTokenEntity } from './revoked-token.entity';
import { grantedScopes, parseScope, Scope } from './scopes';
import { externalIdProblem } from './users.service';

export interface TokenClaims {
  org_id: string;
  org_name?: string;
  user_id?: string;
  jti: string;
  exp: number;
  iat?: number;
  /** what the token may do: its `scope` claim, or the defaults when it has none */
  scopes: ReadonlySet<Scope>;
}

const CLOCK_SKEW_S = 60;
const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'crit'];
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

export function parseDuration(raw: string): number {
  const m = /^(\d+)\s*([smhdw]?)$/.exec(raw.trim());
  if (!m || Number(m[1]) === 0) throw AppException.invalid(`expires-in must be like 3600, 90m, 12h or 30d, got '${raw}'`, 'expires_in');
  return Number(m[1]) * UNITS[m[2] || 's'];
}

const unauthorized = (message: string, code = 'invalid_token') => new AppException('authentication', message, { code });

@Injectable()
export class TokensService {
  private readonly revoked = new Set<string>();
  /** verified tokens, so the signature is checked once per token rather than once per request */
  private readonly verified = new Map<string, TokenClaims>();
  private static readonly MAX_VERIFIED = 50_000;

  constructor(
    private readonly jwt: JwtService,
    private readonly config: AppConfig,
    private readonly dataSource: DataSource,
    @InjectRepository(RevokedTokenEntity) private readonly revokedRepo: Repository<RevokedTokenEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
    private readonly changes: ChangeFeedService,
    private readonly issued: IssuedTokensService,
    private readonly audit: AuditService,
  ) {
    changes.on('token', (jti) => this.revoked.add(jti));
  }

  /** Loads the revocation list (server start, after the change feed is followed so nothing falls between). */
  async loadRevoked(): Promise<void> {
    const rows = await this.revokedRepo.find({ select: { jti: true } });
    for (const r of rows) this.revoked.add(r.jti);
  }

  /** Issues a token; `scope` (space-separated words) is validated, and left out of the token when not given (the defaults). */
  async create(
    input: { orgId: string; orgName?: string; userId?: string; expiresIn?: string; scope?: string },
    actor: AuditActor,
  ): Promise<{ token: string; jti: string; expires_at: string; scope: string | null }> {
    if (!isUuid(input.orgId)) throw AppException.notFound('organization', input.orgId);
    const org = await this.orgs.findOneBy({ id: input.orgId });
    if (!org) throw AppException.notFound('organization', input.orgId);
    if (input.userId !== undefined && externalIdProblem(input.userId)) {
      throw AppException.invalid('user-id must be 1–256 characters without control characters', 'user_id');
    }
    const scope = input.scope === undefined ? null : parseScope(input.scope).join(' ');
    const seconds = parseDuration(input.expiresIn ?? '30d');
    const now = Math.floor(Date.now() / 1000);
    const jti = randomUUID();
    const claims: Record<string, unknown> = { org_id: org.id, org_name: input.orgName ?? org.name, jti, iat: now, exp: now + seconds };
    if (input.userId !== undefined) claims.user_id = input.userId;
    if (scope !== null) claims.scope = scope;
    if (this.config.jwtIssuer) claims.iss = this.config.jwtIssuer;
    if (this.config.jwtAudience) claims.aud = this.config.jwtAudience;
    const token = await this.jwt.signAsync(claims, { secret: this.config.jwtSecret, algorithm: 'HS256' });
    await this.dataSource.transaction(async (m) => {
      await this.issued.record({ jti, orgId: org.id, userId: input.userId, scope, issuedAt: new Date(now * 1000), expiresAt: new Date((now + seconds) * 1000) }, m);
      // whether the token is pinned to a user, never which one: the claim holds the external id
      await this.audit.record(m, { orgId: org.id, actor, action: 'jwt.create', target: jti, details: { pinned_to_user: input.userId !== undefined, expires_in_s: seconds, scope } });
    });
    return { token, jti, expires_at: new Date((now + seconds) * 1000).toISOString(), scope };
  }

  async revoke(jti: string, actor: AuditActor): Promise<{ jti: string; revoked: true }> {
    const clean = jti?.trim();
    if (!clean || clean.length > 200) throw AppException.invalid('jti must be 1–200 characters', 'jti');
    await this.dataSource.transaction(async (m) => {
      await m.query('INSERT INTO revoked_tokens (jti) VALUES ($1) ON CONFLICT (jti) DO NOTHING', [clean]);
      await this.changes.publish(m, 'token', clean);
      const issued: { organization_id: string }[] = await m.query('SELECT organization_id FROM issued_tokens WHERE jti = $1', [clean]);
      await this.audit.record(m, { orgId: issued[0]?.organization_id ?? null, actor, action: 'jwt.revoke', target: clean });
    });
    return { jti: clean, revoked: true };
  }

  /** Verifies a bearer token: HS256 only, signature, exp/jti required, iss/aud when configured, revocation. */
  verify(token: string): TokenClaims {
    let claims = this.verified.get(token);
    if (!claims) {
      claims = this.verifyUncached(token);
      if (this.verified.size >= TokensService.MAX_VERIFIED) this.verified.clear();
      this.verified.set(token, claims);
    }
    if (claims.exp + CLOCK_SKEW_S < Date.now() / 1000) {
      this.verified.delete(token);
      throw unauthorized('The token has expired', 'token_expired');
    }
    if (this.revoked.has(claims.jti)) throw unauthorized('The token has been revoked', 'token_revoked');
    return claims;
  }

  private verifyUncached(token: string): TokenClaims {
    const parts = token.split('.');
    if (parts.length !== 3) throw unauthorized('Malformed token');
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      throw unauthorized('Malformed token');
    }
    if (!header || typeof header !== 'object' || header.alg !== 'HS256') throw unauthorized('Token algorithm not allowed');
    if (FORBIDDEN_HEADERS.some((h) => h in header)) throw unauthorized('Token header not allowed');
    let payload: Record<string, unknown>;
    try {
      payload = this.jwt.verify(token, {
        secret: this.config.jwtSecret,
        algorithms: ['HS256'],
        clockTolerance: CLOCK_SKEW_S,
        issuer: this.config.jwtIssuer,
        audience: this.config.jwtAudience,
      });
    } catch (err) {
      const name = (err as Error).name;
      if (name === 'TokenExpiredError') throw unauthorized('The token has expired', 'token_expired');
      throw unauthorized('Invalid token');
    }
    const now = Date.now() / 1000;
    if (typeof payload.exp !== 'number') throw unauthorized('The token has no exp claim');
    if (typeof payload.jti !== 'string' || !payload.jti || payload.jti.length > 200) throw unauthorized('The token has no jti claim');
    if (!isUuid(payload.org_id)) throw unauthorized('The token has no valid org_id claim');
    if (payload.iat !== undefined && (typeof payload.iat !== 'number' || payload.iat > now + CLOCK_SKEW_S)) {
      throw unauthorized('The token was issued in the future');
    }
    if (payload.user_id !== undefined && typeof payload.user_id !== 'string') throw unauthorized('Invalid user_id claim');
    if (payload.org_name !== undefined && typeof payload.org_name !== 'string') throw unauthorized('Invalid org_name claim');
    if (payload.scope !== undefined && typeof payload.scope !== 'string') throw unauthorized('Invalid scope claim');
    return {
      org_id: payload.org_id.toLowerCase(),
      org_name: payload.org_name as string | undefined,
      user_id: payload.user_id as string | undefined,
      jti: payload.jti,
      exp: payload.exp,
      iat: payload.iat as number | undefined,
      scopes: grantedScopes(payload.scope as string | undefined),
    };
  }
}
