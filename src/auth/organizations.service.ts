import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException, isUniqueViolation } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
import { ChangeFeedService } from '../database/change-feed.service';
import { OrganizationEntity } from './organization.entity';

export interface OrganizationView {
  id: string;
  name: string;
  disabled: boolean;
  created_at: string;
}

export const toOrganizationView = (o: OrganizationEntity): OrganizationView => ({
  id: o.id,
  name: o.name,
  disabled: o.disabledAt !== null,
  created_at: o.createdAt.toISOString(),
});

/** Far above any real number of organizations: the bound only keeps the memory of the state cache finite. */
const MAX_CACHED_ORGANIZATIONS = 100_000;

@Injectable()
export class OrganizationsService {
  /** organization id → its state, for the auth guard (no database read per request) */
  private readonly states = new Cache<{ name: string; disabled: boolean } | null>({ max: MAX_CACHED_ORGANIZATIONS });

  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
    private readonly changes: ChangeFeedService,
    private readonly audit: AuditService,
  ) {
    changes.on('org', (id) => this.states.delete(id));
  }

  async create(name: string, actor: AuditActor): Promise<OrganizationView> {
    const clean = name?.trim();
    if (!clean) throw AppException.invalid('name must not be empty', 'name');
    if (clean.length > 200) throw AppException.invalid('name must be at most 200 characters', 'name');
    try {
      return await this.dataSource.transaction(async (m) => {
        const org = await m.save(m.create(OrganizationEntity, { name: clean, disabledAt: null }));
        await this.audit.record(m, { orgId: org.id, actor, action: 'org.create', target: org.id, details: { name: clean } });
        return toOrganizationView(org);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppException('conflict', `An organization named '${clean}' already exists`);
      throw err;
    }
  }

  async list(): Promise<OrganizationView[]> {
    return (await this.orgs.find({ order: { createdAt: 'ASC' } })).map(toOrganizationView);
  }

  async get(id: string): Promise<OrganizationView> {
    const org = isUuid(id) ? await this.orgs.findOneBy({ id }) : null;
    if (!org) throw AppException.notFound('organization', id);
    return toOrganizationView(org);
  }

  async disable(id: string, actor: AuditActor): Promise<OrganizationView> {
    if (!isUuid(id)) throw AppException.notFound('organization', id);
    return this.dataSource.transaction(async (m) => {
      const org = await m.findOneBy(OrganizationEntity, { id });
      if (!org) throw AppException.notFound('organization', id);
      if (!org.disabledAt) {
        org.disabledAt = new Date();
        await m.save(org);
      }
      await this.changes.publish(m, 'org', id);
      await this.audit.record(m, { orgId: id, actor, action: 'org.disable', target: id });
      return toOrganizationView(org);
    });
  }

  /** Lifts `disable`: the organization's tokens are accepted again (those not revoked and not expired). */
  async enable(id: string, actor: AuditActor): Promise<OrganizationView> {
    if (!isUuid(id)) throw AppException.notFound('organization', id);
    return this.dataSource.transaction(async (m) => {
      const org = await m.findOneBy(OrganizationEntity, { id });
      if (!org) throw AppException.notFound('organization', id);
      if (org.disabledAt) {
        org.disabledAt = null;
        await m.save(org);
      }
      await this.changes.publish(m, 'org', id);
      await this.audit.record(m, { orgId: id, actor, action: 'org.enable', target: id });
      return toOrganizationView(org);
    });
  }

  /** The organization's state for authentication, cached until it changes. */
  state(id: string): Promise<{ name: string; disabled: boolean } | null> {
    return this.states.get(id, () => this.orgs.findOneBy({ id }).then((o) => (o ? { name: o.name, disabled: o.disabledAt !== null } : null)));
  }
}
