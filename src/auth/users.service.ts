import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { AppException, isUniqueViolation } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
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

/** Checks an X-User-ID value; returns the reason it is refused, or null. */
export function externalIdProblem(value: string | undefined): 'missing_user_id' | 'invalid_user_id' | null {
  if (value === undefined || value === '') return 'missing_user_id';
  if (value.length > 256 || /[\x00-\x1f\x7f]/.test(value)) return 'invalid_user_id';
  return null;
}

@Injectable()
export class UsersService {
  /** "orgId\nexternalId" → internal user id; users never change id, so entries need no invalidation */
  private readonly ids = new Cache<string>({ max: 100_000 });

  constructor(
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
  ) {}

  async create(orgId: string, externalId: string, name?: string): Promise<UserView> {
    const problem = externalIdProblem(externalId);
    if (problem) throw AppException.invalid('external-id must be 1–256 characters without control characters', 'external_id');
    if (!isUuid(orgId) || !(await this.orgs.existsBy({ id: orgId }))) throw AppException.notFound('organization', orgId);
    try {
      return toView(await this.users.save(this.users.create({ organizationId: orgId, externalId, name: name ?? null })));
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

  /** The internal id of the organization's user with this X-User-ID, recorded on first sight. */
  ensure(orgId: string, externalId: string): Promise<string> {
    return this.ids.get(`${orgId}\n${externalId}`, () => this.upsert(orgId, externalId));
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
