import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { IssuedTokenEntity } from './issued-token.entity';
import { OrganizationEntity } from './organization.entity';

export interface IssuedTokenView {
  jti: string;
  organization_id: string;
  /** the external user id the token pins, or null for a token of the whole organization */
  user_id: string | null;
  /** the token's scope claim (space-separated), or null for a token with the default rights (proxy read manage) */
  scope: string | null;
  issued_at: string;
  expires_at: string;
  expired: boolean;
  revoked: boolean;
  revoked_at: string | null;
}

/** The record of issued tokens (issued_tokens): what `jwt list` shows. */
@Injectable()
export class IssuedTokensService {
  constructor(
    @InjectRepository(IssuedTokenEntity) private readonly issued: Repository<IssuedTokenEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
  ) {}

  async record(token: { jti: string; orgId: string; userId?: string; scope: string | null; issuedAt: Date; expiresAt: Date }, manager?: EntityManager): Promise<void> {
    const repo = manager ? manager.getRepository(IssuedTokenEntity) : this.issued;
    await repo.insert({
      jti: token.jti,
      organizationId: token.orgId,
      userId: token.userId ?? null,
      scope: token.scope,
      issuedAt: token.issuedAt,
      expiresAt: token.expiresAt,
    });
  }

  /** The organization's issued tokens, oldest first, each with its state now. */
  async list(orgId: string): Promise<IssuedTokenView[]> {
    if (!isUuid(orgId) || !(await this.orgs.existsBy({ id: orgId }))) throw AppException.notFound('organization', orgId);
    const rows: { jti: string; user_id: string | null; scope: string | null; issued_at: Date; expires_at: Date; revoked_at: Date | null }[] = await this.issued.query(
      `SELECT t.jti, t.user_id, t.scope, t.issued_at, t.expires_at, r.revoked_at
         FROM issued_tokens t LEFT JOIN revoked_tokens r ON r.jti = t.jti
        WHERE t.organization_id = $1
        ORDER BY t.issued_at, t.jti`,
      [orgId],
    );
    const now = Date.now();
    return rows.map((r) => ({
      jti: r.jti,
      organization_id: orgId,
      user_id: r.user_id,
      scope: r.scope,
      issued_at: new Date(r.issued_at).toISOString(),
      expires_at: new Date(r.expires_at).toISOString(),
      expired: new Date(r.expires_at).getTime() <= now,
      revoked: r.revoked_at !== null,
      revoked_at: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString(),
    }));
  }
}
