import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { DataSource, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException, isDatabaseUnavailable } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { AppConfig } from '../config/app-config';
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
  /** glob patterns of the models it serves; null: every model */
  models: string[] | null;
  weight: number;
  priority: number;
  /** active, invalid (refused upstream: not used until enabled), or revoked */
  state: 'active' | 'invalid' | 'revoked';
  /** rate limited upstream: tried after the rest of its pool until then */
  rest_until: string | null;
  last_error: string | null;
  invalid_at: string | null;
  created_at: string;
}

/** What a key did: calls, tokens and cost, today and this month (UTC). */
export interface KeyUsage {
  calls: number;
  tokens: number;
  cost: number;
}

export interface KeyDetails extends KeyView {
  usage: { today: KeyUsage; month: KeyUsage };
}

export interface CreateKeyInput {
  orgId: string;
  apiKey: string;
  /** the user's internal id or their external id (X-User-ID) */
  userId?: string;
  label?: string;
  baseUrl?: string;
  /** glob patterns (`gpt-*`), or one comma-separated string of them */
  models?: string[] | string;
  weight?: number;
  priority?: number;
  /** check the key upstream (GET {base}/models) before storing it */
  verify?: boolean;
}

const MAX_PATTERNS = 100;

/** `"gpt-*,o3*"` → `['gpt-*', 'o3*']`; null for none. */
export function parseModelPatterns(input: string[] | string | undefined): string[] | null {
  if (input === undefined) return null;
  const list = (Array.isArray(input) ? input : input.split(',')).map((p) => p.trim()).filter(Boolean);
  if (!list.length) throw AppException.invalid('models must name at least one pattern, e.g. "gpt-*,o3*"', 'models');
  if (list.length > MAX_PATTERNS) throw AppException.invalid(`models takes at most ${MAX_PATTERNS} patterns`, 'models');
  for (const p of list) {
    if (p.length > 200 || !/^[A-Za-z0-9._:/@*?+-]+$/.test(p)) {
      throw AppException.invalid(`model pattern '${p.slice(0, 200)}' may hold letters, digits, . _ : / @ + - and the wildcards * and ?`, 'models');
    }
  }
  return [...new Set(list)];
}

function intIn(name: string, v: number | undefined, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw AppException.invalid(`${name} must be an integer from ${min} to ${max}`, name);
  return v;
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
    models: k.models ?? null,
    weight: k.weight,
    priority: k.priority,
    state: k.revokedAt !== null ? 'revoked' : k.state,
    rest_until: k.restUntil && k.restUntil.getTime() > Date.now() ? k.restUntil.toISOString() : null,
    last_error: k.lastError,
    invalid_at: k.invalidAt ? k.invalidAt.toISOString() : null,
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
    private readonly config: AppConfig,
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
    const models = parseModelPatterns(input.models);
    const weight = intIn('weight', input.weight, 1, 1_000_000, 1);
    const priority = intIn('priority', input.priority, -1_000_000, 1_000_000, 0);
    if (!isUuid(input.orgId) || !(await this.orgs.existsBy({ id: input.orgId }))) {
      throw AppException.notFound('organization', input.orgId);
    }
    let userId: string | null = null;
    if (input.userId !== undefined) {
      const user = input.userId ? await findUserInOrganization(this.dataSource.manager, input.orgId, input.userId) : null;
      if (!user) throw AppException.notFound('user in this organization', input.userId);
      userId = user.id;
    }
    if (input.verify) await this.verifyUpstream(apiKey, baseUrl ?? this.config.openaiBaseUrl);
    const id = randomUUID();
    const owner = { id, organizationId: input.orgId, userId };
    const entity = this.keys.create({
      ...owner,
      label: input.label ?? null,
      baseUrl,
      last4: apiKey.slice(-4),
      encryptedKey: this.crypto.encrypt(apiKey, owner),
      revokedAt: null,
      models,
      weight,
      priority,
      state: 'active',
      restUntil: null,
      lastError: null,
      invalidAt: null,
    });
    const saved = await this.dataSource.transaction(async (m) => {
      const row = await m.save(entity);
      await this.changes.publish(m, 'key', input.orgId);
      await this.audit.record(m, { orgId: input.orgId, actor, action: 'key.create', target: id, details: { user_id: userId, label: entity.label, models: models?.join(',') ?? null, weight, priority, verified: input.verify === true } });
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

  /** Puts a key the upstream refused (invalid) back into its pool, and ends its rest. */
  async enable(keyId: string, actor: AuditActor): Promise<KeyView> {
    if (!isUuid(keyId)) throw AppException.notFound('key', keyId);
    return this.dataSource.transaction(async (m) => {
      const key = await m.findOne(ApiKeyEntity, { where: { id: keyId }, lock: { mode: 'pessimistic_write' } });
      if (!key) throw AppException.notFound('key', keyId);
      if (key.revokedAt) throw AppException.invalid(`key ${keyId} is revoked; store it again with key create`);
      const from = key.state;
      key.state = 'active';
      key.invalidAt = null;
      key.restUntil = null;
      await m.save(key);
      await this.changes.publish(m, 'key', key.organizationId);
      await this.audit.record(m, { orgId: key.organizationId, actor, action: 'key.enable', target: key.id, details: { from } });
      return toView(key);
    });
  }

  /** A key with its state and what it did today and this month (from the exchanges it served). */
  async show(keyId: string): Promise<KeyDetails> {
    if (!isUuid(keyId)) throw AppException.notFound('key', keyId);
    const key = await this.keys.findOne({ where: { id: keyId } });
    if (!key) throw AppException.notFound('key', keyId);
    const now = new Date();
    const day = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
    const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const rows: { calls_day: string; tokens_day: string | null; cost_day: number | null; calls: string; tokens: string | null; cost: number | null }[] =
      await this.dataSource.query(
        `SELECT count(*) FILTER (WHERE created_at >= $3) AS calls_day,
                sum(total_tokens) FILTER (WHERE created_at >= $3) AS tokens_day,
                sum(cost) FILTER (WHERE created_at >= $3) AS cost_day,
                count(*) AS calls, sum(total_tokens) AS tokens, sum(cost) AS cost
           FROM exchanges WHERE organization_id = $1 AND key_id = $2 AND created_at >= $4`,
        [key.organizationId, key.id, day.toISOString(), month.toISOString()],
      );
    const r = rows[0];
    return {
      ...toView(key),
      usage: {
        today: { calls: Number(r?.calls_day ?? 0), tokens: Number(r?.tokens_day ?? 0), cost: Number(r?.cost_day ?? 0) },
        month: { calls: Number(r?.calls ?? 0), tokens: Number(r?.tokens ?? 0), cost: Number(r?.cost ?? 0) },
      },
    };
  }

  /** Whether a user's calls go on to the organization's keys when their own pool cannot serve them (off by default). */
  async setFallback(orgId: string, on: boolean, actor: AuditActor): Promise<{ id: string; key_fallback: boolean }> {
    if (!isUuid(orgId)) throw AppException.notFound('organization', orgId);
    return this.dataSource.transaction(async (m) => {
      const org = await m.findOne(OrganizationEntity, { where: { id: orgId }, lock: { mode: 'pessimistic_write' } });
      if (!org) throw AppException.notFound('organization', orgId);
      const from = org.keyFallback;
      await m.update(OrganizationEntity, { id: orgId }, { keyFallback: on });
      await this.changes.publish(m, 'org', orgId);
      await this.audit.record(m, { orgId, actor, action: 'org.key_fallback', target: orgId, details: { from, to: on } });
      return { id: orgId, key_fallback: on };
    });
  }

  /** Asks the upstream for its model list with the key: refused, unreachable or not an OpenAI-compatible answer → 400. */
  private async verifyUpstream(apiKey: string, baseUrl: string): Promise<void> {
    let status: number;
    let body: unknown;
    try {
      const res = await fetch(`${baseUrl}/models`, {
        headers: { authorization: `Bearer ${apiKey}`, accept: 'application/json' },
        redirect: 'manual',
        signal: AbortSignal.timeout(Math.min(this.config.upstreamTimeoutMs, 30_000)),
      });
      status = res.status;
      body = await res.json().catch(() => undefined);
    } catch {
      throw AppException.invalid(`the key could not be verified: ${new URL(baseUrl).host} could not be reached; nothing was stored`, 'api_key');
    }
    if (status !== 200 || !body || !Array.isArray((body as { data?: unknown }).data)) {
      throw AppException.invalid(`the upstream refused the key (GET /models answered ${status}); nothing was stored`, 'api_key');
    }
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
