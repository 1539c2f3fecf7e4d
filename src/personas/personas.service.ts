import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, IsNull, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException, isUniqueViolation } from '../common/app-exception';
import { Cache } from '../common/cache';
import { isUuid } from '../common/ids';
import { ListPage, PageQuery, toListPage } from '../common/pagination';
import { ChangeFeedService } from '../database/change-feed.service';
import { PersonaVersionEntity } from './persona-version.entity';
import { PersonaEntity } from './persona.entity';
import { CreatePersonaDto, PersonaVersionView, PersonaView, ResolvedPersona, UpdatePersonaDto } from './personas.dto';

interface CachedPersona extends ResolvedPersona {
  orgId: string;
}

/** Bounds the memory of the persona cache: ids come from clients, unknown ones are cached (as null) too. */
const MAX_CACHED_PERSONAS = 10_000;
/** A backstop only: the change feed drops entries at once; this bounds the damage of a missed notification. */
const MAX_CACHE_AGE_MS = 60_000;

function toView(p: PersonaEntity): PersonaView {
  return {
    id: p.id,
    name: p.name,
    content: p.content,
    description: p.description,
    version: p.version,
    created_at: p.createdAt.toISOString(),
    updated_at: p.updatedAt.toISOString(),
  };
}

function toVersionView(v: PersonaVersionEntity): PersonaVersionView {
  return { id: v.id, version: v.version, content: v.content, created_at: v.createdAt.toISOString() };
}

const isLiveNameTaken = (err: unknown) => isUniqueViolation(err, 'uq_personas_org_live_name');

@Injectable()
export class PersonasService {
  private readonly cache = new Cache<CachedPersona | null>({ max: MAX_CACHED_PERSONAS, ttlMs: MAX_CACHE_AGE_MS });

  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(PersonaEntity) private readonly personas: Repository<PersonaEntity>,
    @InjectRepository(PersonaVersionEntity) private readonly versions: Repository<PersonaVersionEntity>,
    private readonly changes: ChangeFeedService,
    private readonly audit: AuditService,
  ) {
    changes.on('persona', (id) => this.cache.delete(id));
  }

  /**
   * The persona a proxied request asks for, from memory: no database read per request. Every change is
   * published on the change feed, which drops the entry in every process.
   */
  async resolveForRequest(orgId: string, personaId: string): Promise<ResolvedPersona> {
    if (!isUuid(personaId)) throw AppException.notFound('persona', personaId);
    const id = personaId.toLowerCase();
    const persona = await this.cache.get(id, () => this.loadForCache(id));
    if (!persona || persona.orgId !== orgId) throw AppException.notFound('persona', personaId);
    return { id: persona.id, version: persona.version, content: persona.content };
  }

  async create(orgId: string, dto: CreatePersonaDto, actor: AuditActor): Promise<PersonaView> {
    const saved = await this.write(null, async (m) => {
      const persona = await m.save(
        m.create(PersonaEntity, {
          organizationId: orgId,
          name: dto.name,
          content: dto.content,
          description: dto.description ?? null,
          version: 1,
          deletedAt: null,
        }),
      );
      await m.insert(PersonaVersionEntity, { personaId: persona.id, version: 1, content: persona.content });
      await this.changes.publish(m, 'persona', persona.id);
      await this.audit.record(m, { orgId, actor, action: 'persona.create', target: persona.id, details: { version: 1 } });
      return persona;
    }, dto.name);
    return toView(saved);
  }

  /** Live personas of the organization, oldest first, so `after` pages stay stable while new ones are added. */
  async list(orgId: string, page: PageQuery): Promise<ListPage<PersonaView>> {
    const qb = this.personas
      .createQueryBuilder('p')
      .where('p.organizationId = :orgId', { orgId })
      .andWhere('p.deletedAt IS NULL')
      .orderBy('p.createdAt', 'ASC')
      .addOrderBy('p.id', 'ASC')
      .take(page.limit + 1);
    if (page.after !== undefined) {
      // a deleted persona still works as a cursor: a client paging while someone deletes must not get a 400
      if (!isUuid(page.after) || !(await this.personas.existsBy({ id: page.after, organizationId: orgId }))) {
        throw AppException.invalid(`No persona found with id '${page.after}' to page after`, 'after');
      }
      qb.andWhere('(p.created_at, p.id) > (SELECT c.created_at, c.id FROM personas c WHERE c.id = :after)', { after: page.after });
    }
    const rows = await qb.getMany();
    return toListPage(rows.map(toView), page.limit);
  }

  async get(orgId: string, id: string): Promise<PersonaView> {
    return toView(await this.findLive(this.dataSource.manager, orgId, id));
  }

  /** A change of `content` makes a new version; `name` and `description` are edited in place. */
  async update(orgId: string, id: string, dto: UpdatePersonaDto, actor: AuditActor): Promise<PersonaView> {
    const updated = await this.write(id, async (m) => {
      // the row lock serialises concurrent edits, so two content changes can never claim the same version
      const persona = await this.findLive(m, orgId, id, true);
      const changes: Partial<PersonaEntity> = {};
      if (dto.name !== undefined && dto.name !== persona.name) changes.name = dto.name;
      if (dto.description !== undefined && (dto.description ?? null) !== persona.description) changes.description = dto.description ?? null;
      if (dto.content !== undefined && dto.content !== persona.content) {
        changes.content = dto.content;
        changes.version = persona.version + 1;
        await m.insert(PersonaVersionEntity, { personaId: persona.id, version: changes.version, content: dto.content });
      }
      // the names of the changed fields, never their values (a persona's text is content)
      const fields = Object.keys(changes).filter((f) => f !== 'version');
      await this.audit.record(m, { orgId, actor, action: 'persona.update', target: persona.id, details: { fields, version: changes.version ?? persona.version } });
      if (!fields.length) return persona;
      await m.update(PersonaEntity, { id: persona.id }, { ...changes, updatedAt: () => 'now()' });
      await this.changes.publish(m, 'persona', persona.id);
      return m.findOneByOrFail(PersonaEntity, { id: persona.id });
    }, dto.name);
    return toView(updated);
  }

  /** Soft delete: the persona disappears from the API, its versions stay for analytics, its name is free again. */
  async remove(orgId: string, id: string, actor: AuditActor): Promise<void> {
    await this.write(id, async (m) => {
      const persona = await this.findLive(m, orgId, id, true);
      await m.update(PersonaEntity, { id: persona.id }, { deletedAt: () => 'now()' });
      await this.changes.publish(m, 'persona', persona.id);
      await this.audit.record(m, { orgId, actor, action: 'persona.delete', target: persona.id });
    });
  }

  /** The versions, oldest first, each with its full content; paged by version id like every list. */
  async listVersions(orgId: string, id: string, page: PageQuery): Promise<ListPage<PersonaVersionView>> {
    const persona = await this.findLive(this.dataSource.manager, orgId, id);
    const qb = this.versions
      .createQueryBuilder('v')
      .where('v.personaId = :personaId', { personaId: persona.id })
      .orderBy('v.version', 'ASC')
      .take(page.limit + 1);
    if (page.after !== undefined) {
      const cursor = isUuid(page.after) ? await this.versions.findOne({ select: { version: true }, where: { id: page.after, personaId: persona.id } }) : null;
      if (!cursor) throw AppException.invalid(`No version of this persona found with id '${page.after}' to page after`, 'after');
      qb.andWhere('v.version > :after', { after: cursor.version });
    }
    const rows = await qb.getMany();
    return toListPage(rows.map(toVersionView), page.limit);
  }

  private async findLive(m: EntityManager, orgId: string, id: string, lock = false): Promise<PersonaEntity> {
    if (!isUuid(id)) throw AppException.notFound('persona', id);
    const persona = await m.findOne(PersonaEntity, {
      where: { id, organizationId: orgId, deletedAt: IsNull() },
      ...(lock ? { lock: { mode: 'pessimistic_write' as const } } : {}),
    });
    if (!persona) throw AppException.notFound('persona', id);
    return persona;
  }

  /**
   * Runs a change in one transaction. The change feed already dropped this process's entry when the change
   * was published, but before the commit: a request in between could have cached the old row again, so the
   * entry is dropped once more after the commit.
   */
  private async write<T extends { id: string } | void>(
    id: string | null,
    work: (m: EntityManager) => Promise<T>,
    name?: string,
  ): Promise<T> {
    try {
      const result = await this.dataSource.transaction(work);
      const changed = id ?? (result as { id: string } | undefined)?.id;
      if (changed) this.cache.delete(changed);
      return result;
    } catch (err) {
      if (name !== undefined && isLiveNameTaken(err)) {
        throw new AppException('conflict', `A persona named '${name}' already exists in this organization`, { param: 'name' });
      }
      throw err;
    }
  }

  private async loadForCache(id: string): Promise<CachedPersona | null> {
    const p = await this.personas.findOne({
      where: { id, deletedAt: IsNull() },
      select: { id: true, organizationId: true, version: true, content: true },
    });
    return p ? { id: p.id, orgId: p.organizationId, version: p.version, content: p.content } : null;
  }
}
