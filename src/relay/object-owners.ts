import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { Cache } from '../common/cache';
import type { ActingContext } from '../common/request-context';
import { ExchangesRepository } from '../exchanges/exchanges.repository';
import { KeyResolver, PoolQuery, ResolvedKey } from '../keys/key-resolver';
import { UpstreamObjectEntity } from './upstream-object.entity';

/** Who made an upstream object through the proxy, and with which key. */
export interface ObjectOwner {
  orgId: string;
  /** made with this user's own key (theirs alone); null: made with an organization key (every user of it) */
  userId: string | null;
  keyId: string | null;
}

/** Ids of model answers the exchanges table already remembers (their record names the key and user). */
const ANSWER_ID = /^(resp_|chatcmpl-)/;

/**
 * Object affinity and ownership: an object made through the proxy is reached again with the key that made it, and
 * only by the users entitled to it; anyone else gets 404 before any upstream call. An id the proxy has never seen
 * is the caller's business (normal key resolution).
 */
@Injectable()
export class ObjectOwners {
  /** owners never change, so a known one is kept (an id never seen is asked again: it may be made any moment) */
  private readonly known = new Cache<ObjectOwner | null>({ max: 100_000 });

  constructor(
    @InjectRepository(UpstreamObjectEntity) private readonly objects: Repository<UpstreamObjectEntity>,
    private readonly exchanges: ExchangesRepository,
    private readonly keys: KeyResolver,
  ) {}

  async ownerOf(id: string): Promise<ObjectOwner | null> {
    const cached = this.known.peek(id);
    if (cached) return cached;
    const owner = await this.load(id);
    if (owner) this.known.set(id, owner);
    return owner;
  }

  private async load(id: string): Promise<ObjectOwner | null> {
    const row = await this.objects.findOne({ where: { id }, select: { organizationId: true, userId: true, keyId: true } });
    if (row) return { orgId: row.organizationId, userId: row.userId, keyId: row.keyId };
    if (!ANSWER_ID.test(id)) return null;
    const answer = await this.exchanges.ownerOfAnswer(id);
    return answer ? { orgId: answer.orgId, userId: answer.keySource === 'user' ? answer.userId : null, keyId: answer.keyId } : null;
  }

  /**
   * The key for a call naming `ids` (path parameters first, then body references): the key that made the first
   * of them the proxy knows, else the caller's own resolution. 404 for an object the caller is not entitled to.
   */
  async keyFor(acting: ActingContext, ids: readonly string[], pool?: PoolQuery): Promise<{ key: ResolvedKey; owned: ObjectOwner | null }> {
    let owned: ObjectOwner | null = null;
    for (const id of ids) {
      const owner = await this.ownerOf(id);
      if (!owner) continue;
      if (owner.orgId !== acting.orgId || (owner.userId !== null && owner.userId !== acting.userId)) {
        throw AppException.notFound('object', id);
      }
      owned ??= owner;
    }
    // the key that made it, while it is active; a revoked one gives way to the caller's own resolution
    const key = (owned?.keyId ? await this.keys.byId(acting.orgId, owned.keyId) : null) ?? (await this.keys.resolve(acting, pool));
    return { key, owned };
  }

  /** Remembers objects made by a call (idempotent: an id keeps its first owner). */
  async remember(ids: readonly string[], owner: { orgId: string; userId: string | null; keyId: string }, route: string, exchangeId: string): Promise<void> {
    const fresh = ids.filter((id) => !this.known.peek(id));
    if (!fresh.length) return;
    await this.objects
      .createQueryBuilder()
      .insert()
      .values(fresh.map((id) => ({ id, organizationId: owner.orgId, userId: owner.userId, keyId: owner.keyId, route, exchangeId })))
      .orIgnore()
      .execute();
  }

  /** Claims the one recording of an object's spend: true for the first caller only (false for an unknown object). */
  async billOnce(id: string): Promise<boolean> {
    const result = await this.objects
      .createQueryBuilder()
      .update()
      .set({ billedAt: () => 'now()' })
      .where('id = :id AND billed_at IS NULL', { id })
      .execute();
    return (result.affected ?? 0) > 0;
  }

  /** Notes an object deleted upstream (it stays its owner's; a response's records say so). */
  async deleted(orgId: string, id: string): Promise<void> {
    if (ANSWER_ID.test(id)) await this.exchanges.noteResponseDeleted(orgId, id);
    else await this.objects.update({ id }, { deletedAt: new Date() });
  }
}
