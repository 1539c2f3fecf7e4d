import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { IsNull, Repository } from 'typeorm';
import { Cache } from '../common/cache';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { ApiKeyEntity } from '../keys/api-key.entity';
import { KeyCryptoService } from '../keys/key-crypto.service';
import { KeyResolver, ResolvedKey } from '../keys/key-resolver';
import type { ResponseRecord } from './queued-responses.repository';

/**
 * The upstream key for the calls about a response made through the proxy: the key that made it while it is active
 * (the upstream shows a response only to the project that made it), else the key its user's calls resolve to now.
 * Keys by id are cached decrypted, at most KEY_CACHE_SIZE of them; a created or revoked key drops its
 * organization's entries in every process through the change feed.
 */
@Injectable()
export class ResponseKeys {
  /** "orgId\nkeyId" → the active key, or null when it is revoked, gone or unreadable */
  private readonly byId: Cache<ResolvedKey | null>;

  constructor(
    @InjectRepository(ApiKeyEntity) private readonly keys: Repository<ApiKeyEntity>,
    private readonly crypto: KeyCryptoService,
    private readonly resolver: KeyResolver,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    changes: ChangeFeedService,
  ) {
    this.byId = new Cache({ max: config.keyCacheSize });
    const dropOrganization = (orgId: string) => this.byId.deleteWhere((key) => key.startsWith(`${orgId}\n`));
    changes.on('key', dropOrganization);
    changes.on('org', dropOrganization);
  }

  /** Throws 403 no_api_key when neither the key that made the response nor any key of its user is usable. */
  async of(record: Pick<ResponseRecord, 'organizationId' | 'userId' | 'keyId'>): Promise<ResolvedKey> {
    const { organizationId: orgId, keyId } = record;
    if (keyId) {
      const key = await this.byId.get(`${orgId}\n${keyId}`, () => this.load(orgId, keyId));
      if (key) return key;
    }
    return this.resolver.resolve({ orgId, userId: record.userId });
  }

  private async load(orgId: string, keyId: string): Promise<ResolvedKey | null> {
    const key = await this.keys.findOneBy({ id: keyId, organizationId: orgId, revokedAt: IsNull() });
    if (!key) return null;
    try {
      const { plaintext } = this.crypto.decrypt(key.encryptedKey, key);
      return { keyId: key.id, apiKey: plaintext, baseUrl: key.baseUrl ?? this.config.openaiBaseUrl, source: key.userId ? 'user' : 'organization' };
    } catch (err) {
      this.logger.write('error', 'stored upstream key cannot be decrypted; skipped', { key_id: key.id, err });
      return null;
    }
  }
}
