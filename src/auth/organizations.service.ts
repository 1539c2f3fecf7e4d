import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import type { AuditDetail } from '../audit/audit-event.entity';
import { AuditService } from '../audit/audit.service';
import { AppException, isUniqueViolation } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
import { ChangeFeedService } from '../database/change-feed.service';
import { OrganizationEntity } from './organization.entity';
import type { UpdateSettingsDto } from './settings.dto';
import type { SettingsResponse } from './settings.responses';
import { CaptureMode, checkRetention, OrgPrivacy } from './org-privacy';

/** An organization's privacy settings as the API and the CLI show them. */
export interface PrivacySettingsView {
  capture_mode: CaptureMode;
  content_retention_days: number | null;
  retention_days: number | null;
  safety_identifier: boolean;
}

export interface OrganizationView {
  id: string;
  name: string;
  disabled: boolean;
  created_at: string;
  settings: PrivacySettingsView;
}

/** What the authentication path keeps of an organization, cached until it changes. */
export interface OrganizationState {
  name: string;
  disabled: boolean;
  privacy: OrgPrivacy;
}

export const privacyOf = (o: OrganizationEntity): OrgPrivacy => ({
  capture: o.captureMode,
  safetyIdentifier: o.safetyIdentifier,
  contentRetentionDays: o.contentRetentionDays,
  retentionDays: o.retentionDays,
});

export const toSettingsView = (o: OrganizationEntity): PrivacySettingsView => ({
  capture_mode: o.captureMode,
  content_retention_days: o.contentRetentionDays,
  retention_days: o.retentionDays,
  safety_identifier: o.safetyIdentifier,
});

export const toOrganizationView = (o: OrganizationEntity): OrganizationView => ({
  id: o.id,
  name: o.name,
  disabled: o.disabledAt !== null,
  created_at: o.createdAt.toISOString(),
  settings: toSettingsView(o),
});

/** A change of privacy settings; fields left out keep their value. */
export interface PrivacyChange {
  captureMode?: CaptureMode;
  /** null: keep bodies */
  contentRetentionDays?: number | null;
  /** null: keep exchanges */
  retentionDays?: number | null;
  safetyIdentifier?: boolean;
}

/** Far above any real number of organizations: the bound only keeps the memory of the state cache finite. */
const MAX_CACHED_ORGANIZATIONS = 100_000;

@Injectable()
export class OrganizationsService {
  /** organization id → its state, for the auth guard (no database read per request) */
  private readonly states = new Cache<OrganizationState | null>({ max: MAX_CACHED_ORGANIZATIONS });

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

  /** `GET /v1/settings` */
  async settings(id: string): Promise<SettingsResponse> {
    const org = isUuid(id) ? await this.orgs.findOneBy({ id }) : null;
    if (!org) throw AppException.notFound('organization', id);
    return { object: 'organization.settings', organization_id: org.id, ...toSettingsView(org) };
  }

  /** `PATCH /v1/settings` */
  async updateSettings(id: string, body: UpdateSettingsDto, actor: AuditActor): Promise<SettingsResponse> {
    const org = await this.changePrivacy(
      id,
      {
        captureMode: body.capture_mode,
        contentRetentionDays: body.content_retention_days,
        retentionDays: body.retention_days,
        safetyIdentifier: body.safety_identifier,
      },
      actor,
    );
    return { object: 'organization.settings', organization_id: org.id, ...org.settings };
  }

  /** The organization's state for authentication and the hot path, cached until it changes. */
  state(id: string): Promise<OrganizationState | null> {
    return this.states.get(id, () =>
      this.orgs.findOneBy({ id }).then((o) => (o ? { name: o.name, disabled: o.disabledAt !== null, privacy: privacyOf(o) } : null)),
    );
  }

  /**
   * Changes privacy settings in one transaction with one audit event per setting changed (`org.capture`,
   * `org.retention`, `org.safety_id`); every process drops its cached state through the change feed.
   */
  async changePrivacy(id: string, change: PrivacyChange, actor: AuditActor): Promise<OrganizationView> {
    if (!isUuid(id)) throw AppException.notFound('organization', id);
    return this.dataSource.transaction(async (m) => {
      const org = await m.findOne(OrganizationEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!org) throw AppException.notFound('organization', id);
      const before = toSettingsView(org);
      if (change.captureMode !== undefined) org.captureMode = change.captureMode;
      if (change.contentRetentionDays !== undefined) org.contentRetentionDays = change.contentRetentionDays;
      if (change.retentionDays !== undefined) org.retentionDays = change.retentionDays;
      if (change.safetyIdentifier !== undefined) org.safetyIdentifier = change.safetyIdentifier;
      checkRetention(org.contentRetentionDays, org.retentionDays);
      const after = toSettingsView(org);
      await m.save(org);
      await this.changes.publish(m, 'org', id);
      const audit = (action: string, details: Record<string, AuditDetail>) => this.audit.record(m, { orgId: id, actor, action, target: id, details });
      if (change.captureMode !== undefined) {
        await audit('org.capture', { from: before.capture_mode, to: after.capture_mode });
      }
      if (change.contentRetentionDays !== undefined || change.retentionDays !== undefined) {
        await audit('org.retention', {
          content_days_from: before.content_retention_days,
          content_days: after.content_retention_days,
          days_from: before.retention_days,
          days: after.retention_days,
        });
      }
      if (change.safetyIdentifier !== undefined) {
        await audit('org.safety_id', { from: before.safety_identifier, to: after.safety_identifier });
      }
      return toOrganizationView(org);
    });
  }
}
