import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { IsNull, Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { ApiKeyEntity } from './api-key.entity';
import { KeyCryptoService } from './key-crypto.service';
import { KeyResolver, ResolvedKey } from './key-resolver';

/**
 * Key resolution with the decrypted result cached per (organization, user), at most KEY_CACHE_SIZE of them (least
 * recently used dropped first); a created or revoked key drops the organization's entries in every process through
 * the change feed.
 */
@Injectable()
export class CachedKeyResolver extends KeyResolver {
  /** "orgId\nuserId" → the key that user's calls use */
  private readonly cache: Cache<ResolvedKey | null>;

  constructor(
    @InjectRepository(ApiKeyEntity) private readonly keys: Repository<ApiKeyEntity>,
    private readonly crypto: KeyCryptoService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    changes: ChangeFeedService,
  ) {
    super();
    this.cache = new Cache({ max: config.keyCacheSize });
    const dropOrganization = (orgId: string) => this.cache.deleteWhere((key) => key.startsWith(`${orgId}\n`));
    changes.on('key', dropOrganization);
    changes.on('org', dropOrganization);
  }

  async resolve(acting: { orgId: string; userId: string }): Promise<ResolvedKey> {
    const resolved = await this.cache.get(`${acting.orgId}\n${acting.userId}`, () => this.load(acting.orgId, acting.userId));
    if (!resolved) {
      throw new AppException('no_api_key', 'No upstream API key is configured for this user or organization');
    }
    return resolved;
  }

  async byId(orgId: string, keyId: string): Promise<ResolvedKey | null> {
    return this.cache.get(`${orgId}\nkey:${keyId}`, async () => {
      const key = await this.keys.findOne({ where: { id: keyId, organizationId: orgId, revokedAt: IsNull() } });
      return key ? this.decrypted(key) : null;
    });
  }

  private decrypted(key: ApiKeyEntity): ResolvedKey | null {
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
      return null;
    }
  }

  private async load(orgId: string, userId: string): Promise<ResolvedKey | null> {
    const candidates = [
      ...(await this.keys.find({ where: { organizationId: orgId, userId, revokedAt: IsNull() }, order: { createdAt: 'DESC' } })),
      ...(await this.keys.find({ where: { organizationId: orgId, userId: IsNull(), revokedAt: IsNull() }, order: { createdAt: 'DESC' } })),
    ];
    for (const key of candidates) {
      const resolved = this.decrypted(key);
      if (resolved) return resolved;
    }
    return null;
  }
}
