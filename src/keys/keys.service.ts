import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { DataSource, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException, isDatabaseUnavailable } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { ChangeFeedService } from '../database/change-feed.service';
import { OrganizationEntity } from '../auth/organization.entity';
import { findUserInOrganization } from '../auth/users.service';
import { ApiKeyEntity } from './api-key.entity';
import { KeyCryptoService, KeyDecryptionError } from './key-crypto.service';

export interface KeyView {
  id: string;
  organization_id: string;
  scope: 'user' | 'organization';
  user_id: string | null;
  label: string | null;
  base_url: string | null;
  last4: string;
  revoked: boolean;
  created_at: string;
}

export interface CreateKeyInput {
  orgId: string;
  apiKey: string;
  /** the user's internal id or their external id (X-User-ID) */
  userId?: string;
  label?: string;
  baseUrl?: string;
}

function toView(k: ApiKeyEntity): KeyView {
  return {
    id: k.id,
    organization_id: k.organizationId,
    scope: k.userId ? 'user' : 'organization',
    user_id: k.userId,
    label: k.label,
    base_url: k.baseUrl,
    last4: k.last4,
    revoked: k.revokedAt !== null,
    created_at: k.createdAt.toISOString(),
  };
}

@Injectable()
export class KeysService {
  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(ApiKeyEntity) private readonly keys: Repository<ApiKeyEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
    private readonly crypto: KeyCryptoService,
    private readonly changes: ChangeFeedService,
    private readonly audit: AuditService,
  ) {}

  async create(input: CreateKeyInput, actor: AuditActor): Promise<KeyView> {
    const apiKey = input.apiKey?.trim();
    if (!apiKey) throw AppException.invalid('api-key must not be empty', 'api_key');
    if (apiKey.length > 4096 || /[\s\x00-\x1f]/.test(apiKey)) throw AppException.invalid('api-key has invalid characters', 'api_key');
    let baseUrl: string | null = null;
    if (input.baseUrl !== undefined) {
      try {
        const u = new URL(input.baseUrl);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
        baseUrl = input.baseUrl.replace(/\/+$/, '');
      } catch {
        throw AppException.invalid(`base-url must be an http(s) URL, got '${input.baseUrl}'`, 'base_url');
      }
    }
    if (!isUuid(input.orgId) || !(await this.orgs.existsBy({ id: input.orgId }))) {
      throw AppException.notFound('organization', input.orgId);
    }
    let userId: string | null = null;
    if (input.userId !== undefined) {
      const user = input.userId ? await findUserInOrganization(this.dataSource.manager, input.orgId, input.userId) : null;
      if (!user) throw AppException.notFound('user in this organization', input.userId);
      userId = user.id;
    }
    const id = randomUUID();
    const owner = { id, organizationId: input.orgId, userId };
    const entity = this.keys.create({
      ...owner,
      label: input.label ?? null,
      baseUrl,
      last4: apiKey.slice(-4),
      encryptedKey: this.crypto.encrypt(apiKey, owner),
      revokedAt: null,
    });
    const saved = await this.dataSource.transaction(async (m) => {
      const row = await m.save(entity);
      await this.changes.publish(m, 'key', input.orgId);
      await this.audit.record(m, { orgId: input.orgId, actor, action: 'key.create', target: id, details: { user_id: userId, label: entity.label } });
      return row;
    });
    return toView(saved);
  }

  async list(orgId: string): Promise<KeyView[]> {
    if (!isUuid(orgId) || !(await this.orgs.existsBy({ id: orgId }))) throw AppException.notFound('organization', orgId);
    const rows = await this.keys.find({ where: { organizationId: orgId }, order: { createdAt: 'ASC' } });
    return rows.map(toView);
  }

  async revoke(keyId: string, actor: AuditActor): Promise<KeyView> {
    if (!isUuid(keyId)) throw AppException.notFound('key', keyId);
    return this.dataSource.transaction(async (m) => {
      const key = await m.findOne(ApiKeyEntity, { where: { id: keyId }, lock: { mode: 'pessimistic_write' } });
      if (!key) throw AppException.notFound('key', keyId);
      if (!key.revokedAt) {
        key.revokedAt = new Date();
        await m.save(key);
      }
      await this.changes.publish(m, 'key', key.organizationId);
      await this.audit.record(m, { orgId: key.organizationId, actor, action: 'key.revoke', target: key.id });
      return toView(key);
    });
  }

  /** Re-encrypts every stored key under the current master key (reading with the previous one); all or nothing. */
  async rotateMaster(actor: AuditActor): Promise<{ rotated: number; total: number }> {
    return this.dataSource.transaction(async (m) => {
      const rows = await m.find(ApiKeyEntity, { lock: { mode: 'pessimistic_write' } });
      let rotated = 0;
      const orgs = new Set<string>();
      for (const key of rows) {
        let plaintext: string;
        let current: boolean;
        try {
          ({ plaintext, current } = this.crypto.decrypt(key.encryptedKey, key));
        } catch (err) {
          if (err instanceof KeyDecryptionError) {
            throw AppException.invalid(
              `key ${key.id} cannot be decrypted with ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS; nothing was changed`,
            );
          }
          throw err;
        }
        if (current) continue;
        key.encryptedKey = this.crypto.encrypt(plaintext, key);
        await m.update(ApiKeyEntity, { id: key.id }, { encryptedKey: key.encryptedKey });
        orgs.add(key.organizationId);
        rotated++;
      }
      for (const org of orgs) await this.changes.publish(m, 'key', org);
      await this.audit.record(m, { orgId: null, actor, action: 'key.rotate_master', target: null, details: { rotated, total: rows.length } });
      return { rotated, total: rows.length };
    });
  }

  /**
   * Refuses to run with a master key that decrypts none of the stored keys (a wrong ENCRYPTION_KEY would
   * otherwise fail every request one by one). Returns quietly when there are no keys yet.
   */
  async assertMasterKeyReadsStoredKeys(): Promise<void> {
    const sample = await this.keys.find({ order: { createdAt: 'DESC' }, take: 20 }).catch((err: unknown) => {
      if (isDatabaseUnavailable(err)) return [];
      throw err;
    });
    if (!sample.length) return;
    for (const key of sample) {
      try {
        this.crypto.decrypt(key.encryptedKey, key);
        return;
      } catch {
        // try the next one
      }
    }
    throw new Error(
      'ENCRYPTION_KEY cannot decrypt the stored API keys: wrong master key? (during a rotation, give the old one as ENCRYPTION_KEY_PREVIOUS)',
    );
  }
}
