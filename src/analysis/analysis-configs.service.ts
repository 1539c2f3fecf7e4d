import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, IsNull, Repository } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { ListPage, PageQuery, toListPage } from '../common/pagination';
import { AnalysisConfigEntity } from './analysis-config.entity';
import {
  AnalysisCategoryDto,
  AnalysisConfigView,
  AnalysisDefinitionDto,
  AnalysisType,
  CreateAnalysisConfigDto,
  DEFAULT_ANALYSIS_MODEL,
  UpdateAnalysisConfigDto,
} from './analysis.dto';
import { AnalysisDefinition, DEFAULT_CATEGORIES } from './analysis-schema';

/** Categories for a type: the given ones (unique names), else the type's defaults; intent and custom need their own. */
function categoriesFor(type: AnalysisType, given: AnalysisCategoryDto[] | undefined, param: string) {
  if (!given) {
    const defaults = DEFAULT_CATEGORIES[type];
    if (!defaults) throw AppException.invalid(`categories are required for analysis_type ${type}`, param);
    return defaults.map((c) => ({ ...c }));
  }
  const seen = new Set<string>();
  for (const c of given) {
    if (seen.has(c.name)) throw AppException.invalid(`category names must be unique; '${c.name}' appears twice`, param);
    seen.add(c.name);
  }
  return given.map((c) => ({ name: c.name, description: c.description ?? null }));
}

export function toConfigView(e: AnalysisConfigEntity): AnalysisConfigView {
  return {
    id: e.id,
    name: e.name,
    analysis_type: e.analysisType as AnalysisType,
    categories: e.categories.map((c) => ({ name: c.name, description: c.description ?? null })),
    instructions: e.instructions,
    model: e.model,
    include_metadata: e.includeMetadata,
    created_at: e.createdAt.toISOString(),
    updated_at: e.updatedAt.toISOString(),
  };
}

export function definitionOf(e: AnalysisConfigEntity): AnalysisDefinition {
  return {
    analysisType: e.analysisType as AnalysisType,
    categories: e.categories.map((c) => ({ name: c.name, description: c.description ?? null })),
    instructions: e.instructions,
    model: e.model,
    includeMetadata: e.includeMetadata,
  };
}

@Injectable()
export class AnalysisConfigsService {
  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(AnalysisConfigEntity) private readonly configs: Repository<AnalysisConfigEntity>,
    private readonly audit: AuditService,
  ) {}

  /** Validates an inline or new configuration beyond what the DTO can say; `prefix` names the field in errors. */
  normalizeDefinition(dto: AnalysisDefinitionDto, prefix = ''): AnalysisDefinition {
    return {
      analysisType: dto.analysis_type,
      categories: categoriesFor(dto.analysis_type, dto.categories, `${prefix}categories`),
      instructions: dto.instructions || null,
      model: dto.model ?? DEFAULT_ANALYSIS_MODEL,
      includeMetadata: dto.include_metadata ?? false,
    };
  }

  async create(orgId: string, dto: CreateAnalysisConfigDto, actor: AuditActor): Promise<AnalysisConfigView> {
    const def = this.normalizeDefinition(dto);
    const saved = await this.dataSource.transaction(async (m) => {
      const config = await m.save(
        m.create(AnalysisConfigEntity, {
          organizationId: orgId,
          name: dto.name,
          analysisType: def.analysisType,
          categories: def.categories,
          instructions: def.instructions,
          model: def.model,
          includeMetadata: def.includeMetadata,
          deletedAt: null,
        }),
      );
      await this.audit.record(m, { orgId, actor, action: 'analysis_config.create', target: config.id, details: { analysis_type: config.analysisType } });
      return config;
    });
    return toConfigView(saved);
  }

  async list(orgId: string, { limit, after }: PageQuery): Promise<ListPage<AnalysisConfigView>> {
    const qb = this.configs
      .createQueryBuilder('c')
      .where('c.organization_id = :orgId AND c.deleted_at IS NULL', { orgId })
      .orderBy('c.created_at', 'DESC')
      .addOrderBy('c.id', 'DESC')
      .take(limit + 1);
    if (after) {
      const cursor = isUuid(after) ? await this.configs.findOneBy({ id: after, organizationId: orgId, deletedAt: IsNull() }) : null;
      if (!cursor) throw AppException.invalid(`Unknown cursor '${after}'`, 'after');
      qb.andWhere('(c.created_at, c.id) < (:at, :id)', { at: cursor.createdAt, id: cursor.id });
    }
    return toListPage((await qb.getMany()).map(toConfigView), limit);
  }

  /** A live configuration of this organization, else 404 (the same for another organization's). */
  async findLive(orgId: string, id: string): Promise<AnalysisConfigEntity> {
    const found = isUuid(id) ? await this.configs.findOneBy({ id, organizationId: orgId, deletedAt: IsNull() }) : null;
    if (!found) throw AppException.notFound('analysis configuration', id);
    return found;
  }

  async get(orgId: string, id: string): Promise<AnalysisConfigView> {
    return toConfigView(await this.findLive(orgId, id));
  }

  async update(orgId: string, id: string, dto: UpdateAnalysisConfigDto, actor: AuditActor): Promise<AnalysisConfigView> {
    const config = await this.findLive(orgId, id);
    const type = dto.analysis_type ?? (config.analysisType as AnalysisType);
    if (dto.categories !== undefined) {
      config.categories = categoriesFor(type, dto.categories, 'categories');
    } else if (dto.analysis_type !== undefined && dto.analysis_type !== config.analysisType && DEFAULT_CATEGORIES[type]) {
      // switching to sentiment/urgency without naming categories means that type's standard ones
      config.categories = categoriesFor(type, undefined, 'categories');
    }
    config.analysisType = type;
    if (dto.name !== undefined) config.name = dto.name;
    if (dto.instructions !== undefined) config.instructions = dto.instructions || null;
    if (dto.model !== undefined) config.model = dto.model;
    if (dto.include_metadata !== undefined) config.includeMetadata = dto.include_metadata;
    config.updatedAt = new Date();
    // the names of the fields asked for, never their values (instructions are content)
    const fields = Object.keys(dto).filter((f) => dto[f as keyof UpdateAnalysisConfigDto] !== undefined).sort();
    const saved = await this.dataSource.transaction(async (m) => {
      const row = await m.save(config);
      await this.audit.record(m, { orgId, actor, action: 'analysis_config.update', target: config.id, details: { fields } });
      return row;
    });
    return toConfigView(saved);
  }

  async remove(orgId: string, id: string, actor: AuditActor): Promise<void> {
    const config = await this.findLive(orgId, id);
    await this.dataSource.transaction(async (m) => {
      await m.update(AnalysisConfigEntity, { id: config.id, organizationId: orgId }, { deletedAt: new Date() });
      await this.audit.record(m, { orgId, actor, action: 'analysis_config.delete', target: config.id });
    });
  }
}
