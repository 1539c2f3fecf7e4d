import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { IsNull, Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { ApiKeyEntity } from './api-key.entity';
import { KeyCryptoService } from './key-crypto.service';
import { KeyResolver, ResolvedKey } from './key-resolver';

/**
 * Key resolution with the decrypted result cached per (organization, user); a created or revoked key
 * drops the organization's entries in every process through the change feed.
 */
@Injectable()
export class CachedKeyResolver extends KeyResolver {
  private readonly cache = new Map<string, Map<string, Promise<ResolvedKey | null>>>();

  constructor(
    @InjectRepository(ApiKeyEntity) private readonly keys: Repository<ApiKeyEntity>,
    private readonly crypto: KeyCryptoService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    changes: ChangeFeedService,
  ) {
    super();
    changes.on('key', (orgId) => this.cache.delete(orgId));
    changes.on('org', (orgId) => this.cache.delete(orgId));
  }

  async resolve(acting: { orgId: string; userId: string }): Promise<ResolvedKey> {
    let forOrg = this.cache.get(acting.orgId);
    if (!forOrg) {
      forOrg = new Map();
      this.cache.set(acting.orgId, forOrg);
    }
    let pending = forOrg.get(acting.userId);
    if (!pending) {
      pending = this.load(acting.orgId, acting.userId);
      forOrg.set(acting.userId, pending);
      // a failed lookup (database down) must not stay cached
      pending.catch(() => forOrg!.get(acting.userId) === pending && forOrg!.delete(acting.userId));
    }
    const resolved = await pending;
    if (!resolved) {
      throw new AppException('no_api_key', 'No upstream API key is configured for this user or organization');
    }
    return resolved;
  }

  private async load(orgId: string, userId: string): Promise<ResolvedKey | null> {
    const candidates = [
      ...(await this.keys.find({ where: { organizationId: orgId, userId, revokedAt: IsNull() }, order: { createdAt: 'DESC' } })),
      ...(await this.keys.find({ where: { organizationId: orgId, userId: IsNull(), revokedAt: IsNull() }, order: { createdAt: 'DESC' } })),
    ];
    for (const key of candidates) {
      try {
        const { plaintext } = this.crypto.decrypt(key.encryptedKey, key);
        return {
          keyId: key.id,
          apiKey: plaintext,
          baseUrl: key.baseUrl ?? this.config.openaiBaseUrl,
          source: key.userId ? 'user' : 'organization',
        };
      } catch (err) {
        this.logger.write('error', 'stored upstream key cannot be decrypted; skipped', { key_id: key.id, err });
      }
    }
    return null;
  }
}
