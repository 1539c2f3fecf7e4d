import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException, isUniqueViolation } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
import { ChangeFeedService } from '../database/change-feed.service';
import { ApiKeyEntity } from '../keys/api-key.entity';
import { OrganizationEntity } from './organization.entity';
import { UserEntity } from './user.entity';

export interface UserView {
  id: string;
  organization_id: string;
  external_id: string;
  name: string | null;
  created_at: string;
}

const toView = (u: UserEntity): UserView => ({
  id: u.id,
  organization_id: u.organizationId,
  external_id: u.externalId,
  name: u.name,
  created_at: u.createdAt.toISOString(),
});

/**
 * The organization's user named by `ref`: its internal id (as `user create` printed it) or its external id (the
 * X-User-ID value, what people type). An internal id wins if a user's external id happens to equal another's id.
 */
export async function findUserInOrganization(manager: EntityManager, orgId: string, ref: string): Promise<UserEntity | null> {
  const users = manager.getRepository(UserEntity);
  if (isUuid(ref)) {
    const byId = await users.findOneBy({ id: ref.toLowerCase(), organizationId: orgId });
    if (byId) return byId;
  }
  return users.findOneBy({ organizationId: orgId, externalId: ref });
}

const cacheKey = (orgId: string, externalId: string) => `${orgId}\n${externalId}`;

/** Checks an X-User-ID value; returns the reason it is refused, or null. */
export function externalIdProblem(value: string | undefined): 'missing_user_id' | 'invalid_user_id' | null {
  if (value === undefined || value === '') return 'missing_user_id';
  if (value.length > 256 || /[\x00-\x1f\x7f]/.test(value)) return 'invalid_user_id';
  return null;
}

@Injectable()
export class UsersService {
  /** "orgId\nexternalId" → internal user id; users never change id, a deleted one is dropped through the change feed */
  private readonly ids = new Cache<string>({ max: 100_000 });

  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
    private readonly changes: ChangeFeedService,
    private readonly audit: AuditService,
  ) {
    // a deleted or erased user, named by internal id (the change feed never carries an external id): the next call
    // with that X-User-ID records a new one
    changes.on('user', (ref) => this.forget(ref));
  }

  async create(orgId: string, externalId: string, name: string | undefined, actor: AuditActor): Promise<UserView> {
    const problem = externalIdProblem(externalId);
    if (problem) throw AppException.invalid('external-id must be 1–256 characters without control characters', 'external_id');
    if (!isUuid(orgId) || !(await this.orgs.existsBy({ id: orgId }))) throw AppException.notFound('organization', orgId);
    try {
      return await this.dataSource.transaction(async (m) => {
        const user = await m.save(m.create(UserEntity, { organizationId: orgId, externalId, name: name ?? null }));
        // by internal id only: the external id and the name are the user's personal data
        await this.audit.record(m, { orgId, actor, action: 'user.create', target: user.id });
        return toView(user);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppException('conflict', `User '${externalId}' already exists in this organization`);
      throw err;
    }
  }

  async list(orgId: string): Promise<UserView[]> {
    if (!isUuid(orgId) || !(await this.orgs.existsBy({ id: orgId }))) throw AppException.notFound('organization', orgId);
    return (await this.users.find({ where: { organizationId: orgId }, order: { createdAt: 'ASC' } })).map(toView);
  }

  async get(id: string): Promise<UserView> {
    const u = isUuid(id) ? await this.users.findOneBy({ id }) : null;
    if (!u) throw AppException.notFound('user', id);
    return toView(u);
  }

  /**
   * Deletes a user (by internal or external id) with their own upstream keys and limits. Their exchanges and
   * ratings stay: they are the organization's records and keep the external id. Running servers forget the
   * user and the keys within seconds; a later call with the same X-User-ID records a new user.
   */
  async delete(orgId: string, ref: string, actor: AuditActor): Promise<UserView & { deleted_keys: number }> {
    if (!isUuid(orgId) || !(await this.orgs.existsBy({ id: orgId }))) throw AppException.notFound('organization', orgId);
    return this.dataSource.transaction(async (m) => {
      const user = ref ? await findUserInOrganization(m, orgId, ref) : null;
      if (!user) throw AppException.notFound('user in this organization', ref);
      const keys = await m.countBy(ApiKeyEntity, { userId: user.id });
      // api_keys and limits rows of the user go with it (ON DELETE CASCADE)
      await m.delete(UserEntity, { id: user.id });
      await this.changes.publish(m, 'user', user.id);
      if (keys > 0) await this.changes.publish(m, 'key', orgId);
      await this.audit.record(m, { orgId, actor, action: 'user.delete', target: user.id, details: { deleted_keys: keys } });
      return { ...toView(user), deleted_keys: keys };
    });
  }

  /** Drops a user from this process's cache, by internal id (or, as older rows name them, by "orgId\nexternalId"). */
  private forget(ref: string): void {
    if (ref.includes('\n')) this.ids.delete(ref);
    else this.ids.deleteWhere((key) => this.ids.peek(key) === ref);
  }

  /** The internal id of the organization's user with this X-User-ID, recorded on first sight. */
  ensure(orgId: string, externalId: string): Promise<string> {
    return this.ids.get(cacheKey(orgId, externalId), () => this.upsert(orgId, externalId));
  }

  private async upsert(orgId: string, externalId: string): Promise<string> {
    const rows: { id: string }[] = await this.users.query(
      `INSERT INTO users (organization_id, external_id) VALUES ($1, $2)
       ON CONFLICT (organization_id, external_id) DO UPDATE SET external_id = EXCLUDED.external_id
       RETURNING id`,
      [orgId, externalId],
    );
    return rows[0].id;
  }
}
