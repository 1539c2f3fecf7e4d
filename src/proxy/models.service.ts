import { Injectable } from '@nestjs/common';
import type { ActingContext } from '../common/request-context';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { servesModel } from '../keys/key-pool';
import { KeyResolver, KeySource, ResolvedKey } from '../keys/key-resolver';
import { UpstreamClient } from '../upstream/upstream-client';

interface ModelObject {
  id: string;
  [field: string]: unknown;
}

interface Listed {
  at: number;
  models: ModelObject[];
  refreshing?: Promise<ModelObject[]>;
}

/** a list older than MODELS_CACHE_MS is still answered with while it is refreshed, until this much older */
const STALE_FOR_MS = 10 * 60_000;
const MAX_LISTS = 10_000;

/**
 * GET /v1/models: the union of what the caller's usable keys serve. Each distinct upstream and key is asked once
 * per MODELS_CACHE_MS (a list past that is answered with while it is fetched again in the background); a key
 * naming its models contributes only the listed models that match them. When every key fails, the first
 * failure is the answer.
 */
@Injectable()
export class ModelsService {
  private readonly lists = new Map<string, Listed>();

  constructor(
    private readonly keys: KeyResolver,
    private readonly upstream: UpstreamClient,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
  ) {}

  async list(acting: ActingContext): Promise<{ body: unknown; keySource: KeySource }> {
    const first = await this.keys.resolve(acting);
    const usable = await this.keys.usable(acting);
    const results = await Promise.allSettled(usable.map((key) => this.modelsOf(key)));
    const byId = new Map<string, ModelObject>();
    let failure: unknown = null;
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        failure ??= r.reason;
        return;
      }
      for (const m of r.value) if (!byId.has(m.id) && servesModel(usable[i], m.id)) byId.set(m.id, m);
    });
    if (failure !== null && !results.some((r) => r.status === 'fulfilled')) throw failure;
    return { body: { object: 'list', data: [...byId.values()] }, keySource: first.source };
  }

  private modelsOf(key: ResolvedKey): Promise<ModelObject[]> {
    const ttl = this.config.modelsCacheMs;
    if (ttl <= 0) return this.fetch(key);
    const id = `${key.baseUrl}\n${key.keyId}`;
    const now = Date.now();
    const listed = this.lists.get(id);
    if (listed && now - listed.at < ttl) return Promise.resolve(listed.models);
    if (listed && now - listed.at < ttl + STALE_FOR_MS) {
      // answered from the list known, fetched again behind it
      listed.refreshing ??= this.fetch(key)
        .then((models) => this.remember(id, models))
        .catch((err: unknown) => {
          this.logger.write('warn', 'refreshing a model list failed; the previous one is kept', { key_id: key.keyId, err });
          return listed.models;
        })
        .finally(() => (listed.refreshing = undefined));
      return Promise.resolve(listed.models);
    }
    return this.fetch(key).then((models) => this.remember(id, models));
  }

  private remember(id: string, models: ModelObject[]): ModelObject[] {
    if (this.lists.size >= MAX_LISTS) this.lists.delete(this.lists.keys().next().value!);
    this.lists.delete(id);
    this.lists.set(id, { at: Date.now(), models });
    return models;
  }

  private async fetch(key: ResolvedKey): Promise<ModelObject[]> {
    const body = (await this.upstream.json({ key, method: 'GET', path: '/models' })) as { data?: unknown };
    const data = Array.isArray(body?.data) ? body.data : [];
    return data.filter((m): m is ModelObject => !!m && typeof m === 'object' && typeof (m as { id?: unknown }).id === 'string');
  }
}
