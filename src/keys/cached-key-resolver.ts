import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { IsNull, Repository } from 'typeorm';
import { OrganizationEntity } from '../auth/organization.entity';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ChangeFeedService } from '../database/change-feed.service';
import { ApiKeyEntity } from './api-key.entity';
import { KeyCryptoService } from './key-crypto.service';
import { KeyHealth } from './key-health.service';
import { orderPool, servesModel } from './key-pool';
import { KeyResolver, PoolQuery, ResolvedKey } from './key-resolver';

/** The keys a user's calls may use, as loaded: their own, the organization's, and whether to fall back to those. */
interface Pools {
  user: ResolvedKey[];
  organization: ResolvedKey[];
  fallback: boolean;
}

/** An organization's own keys, and whether its users fall back to them. */
interface OrganizationPool {
  keys: ResolvedKey[];
  fallback: boolean;
}

/**
 * Key resolution with the decrypted keys cached: a user's own keys per (organization, user), the organization's
 * keys once per organization, at most KEY_CACHE_SIZE entries each (least recently used dropped first); a created,
 * revoked, rested or invalidated key, and an organization change, drop the organization's entries in every process
 * through the change feed. Choosing among the cached keys reads nothing: no database round trip per call.
 */
@Injectable()
export class CachedKeyResolver extends KeyResolver {
  /** "orgId\nuserId" → that user's own keys */
  private readonly users: Cache<ResolvedKey[]>;
  /** "orgId\n" → the organization's keys */
  private readonly organizations: Cache<OrganizationPool>;
  private readonly single: Cache<ResolvedKey | null>;
  /** organizations' keys dropped so far (a change, or a key's rest or invalidation committed) */
  private drops = 0;

  constructor(
    @InjectRepository(ApiKeyEntity) private readonly keys: Repository<ApiKeyEntity>,
    @InjectRepository(OrganizationEntity) private readonly orgs: Repository<OrganizationEntity>,
    private readonly crypto: KeyCryptoService,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
    private readonly health: KeyHealth,
    changes: ChangeFeedService,
  ) {
    super();
    this.users = new Cache({ max: config.keyCacheSize });
    this.organizations = new Cache({ max: config.keyCacheSize });
    this.single = new Cache({ max: config.keyCacheSize });
    const dropOrganization = (orgId: string) => {
      this.drops++;
      const mine = (key: string) => key.startsWith(`${orgId}\n`);
      this.users.deleteWhere(mine);
      this.organizations.delete(`${orgId}\n`);
      this.single.deleteWhere(mine);
    };
    changes.on('key', dropOrganization);
    changes.on('org', dropOrganization);
    health.onSettled(dropOrganization);
  }

  async candidates(acting: { orgId: string; userId: string }, query: PoolQuery = {}): Promise<ResolvedKey[]> {
    const pools = await this.pools(acting.orgId, acting.userId);
    const now = Date.now();
    const user = this.usableOf(pools.user, now);
    const keys = user.length ? (pools.fallback ? [...user, ...this.usableOf(pools.organization, now)] : user) : this.usableOf(pools.organization, now);
    if (!keys.length) {
      const refused = pools.user.length + pools.organization.length > 0;
      throw new AppException(
        'no_api_key',
        refused
          ? 'Every upstream API key of this user or organization was refused by the upstream (invalid); enable or replace one'
          : 'No upstream API key is configured for this user or organization',
      );
    }
    const serving = query.model == null ? keys : keys.filter((k) => servesModel(k, query.model));
    if (!serving.length) {
      throw new AppException('not_found', `The model '${query.model}' is not served by any upstream key of this user or organization`, {
        type: 'invalid_request_error',
        code: 'model_not_found',
        param: 'model',
      });
    }
    if (serving.length === 1) return serving;
    // with fallback, the user's pool is tried before the organization's
    return orderPool(serving, query.sessionId, now, user.length > 0 && pools.fallback);
  }

  async usable(acting: { orgId: string; userId: string }): Promise<ResolvedKey[]> {
    const pools = await this.pools(acting.orgId, acting.userId);
    const now = Date.now();
    const user = this.usableOf(pools.user, now);
    return user.length ? (pools.fallback ? [...user, ...this.usableOf(pools.organization, now)] : user) : this.usableOf(pools.organization, now);
  }

  /**
   * The cached keys (loaded values are taken without waiting). Keys dropped while this call waited for their load
   * are loaded again: the load may have read them before the change committed (a key invalidated by a 401 whose
   * transaction was still open), and this process's own mark of the change ends once it commits (KeyHealth).
   */
  private async pools(orgId: string, userId: string): Promise<Pools> {
    const userKey = `${orgId}\n${userId}`;
    const orgKey = `${orgId}\n`;
    for (let attempt = 0; ; attempt++) {
      const drops = this.drops;
      const user = this.users.peek(userKey) ?? (await this.users.get(userKey, () => this.loadUser(orgId, userId)));
      const org = this.organizations.peek(orgKey) ?? (await this.organizations.get(orgKey, () => this.loadOrganization(orgId)));
      if (drops === this.drops || attempt === 2) return { user, organization: org.keys, fallback: org.fallback };
    }
  }

  /** Active keys (not invalid), with what this process knows of their rest beyond the cached row. */
  private usableOf(keys: ResolvedKey[], now: number): ResolvedKey[] {
    let out: ResolvedKey[] | null = null;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const rest = this.health.restUntil(k.keyId);
      const drop = k.state === 'invalid' || this.health.isInvalid(k.keyId);
      const rested = rest !== null && rest > (k.restUntil ?? 0) && rest > now;
      if (!drop && !rested && !out) continue;
      out ??= keys.slice(0, i);
      if (drop) continue;
      out.push(rested ? { ...k, restUntil: rest } : k);
    }
    return out ?? keys;
  }

  async byId(orgId: string, keyId: string): Promise<ResolvedKey | null> {
    return this.single.get(`${orgId}\nkey:${keyId}`, async () => {
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
        orgId: key.organizationId,
        models: key.models?.length ? key.models : null,
        weight: key.weight ?? 1,
        priority: key.priority ?? 0,
        state: key.state ?? 'active',
        restUntil: key.restUntil ? key.restUntil.getTime() : null,
      };
    } catch (err) {
      this.logger.write('error', 'stored upstream key cannot be decrypted; skipped', { key_id: key.id, err });
      return null;
    }
  }

  private decryptAll(rows: ApiKeyEntity[]): ResolvedKey[] {
    const out: ResolvedKey[] = [];
    for (const row of rows) {
      const k = this.decrypted(row);
      if (k) out.push(k);
    }
    return out;
  }

  private async loadUser(orgId: string, userId: string): Promise<ResolvedKey[]> {
    return this.decryptAll(await this.keys.find({ where: { organizationId: orgId, userId, revokedAt: IsNull() }, order: { createdAt: 'DESC' } }));
  }

  private async loadOrganization(orgId: string): Promise<OrganizationPool> {
    const [keys, org] = await Promise.all([
      this.keys.find({ where: { organizationId: orgId, userId: IsNull(), revokedAt: IsNull() }, order: { createdAt: 'DESC' } }),
      this.orgs.findOne({ where: { id: orgId }, select: { id: true, keyFallback: true } }),
    ]);
    return { keys: this.decryptAll(keys), fallback: org?.keyFallback === true };
  }
}
