import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { DataSource, EntityManager, Repository } from 'typeorm';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { ListPage, toListPage } from '../common/pagination';
import type { AuditActor } from './audit-actor';
import { AuditDetail, AuditEventEntity } from './audit-event.entity';
import { AuditEventView, AuditQuery } from './audit.dto';

export interface AuditEventInput {
  /** null for a change of no one organization */
  orgId: string | null;
  actor: AuditActor;
  action: string;
  /** the internal id (or jti) of what changed; never an external user id */
  target: string | null;
  details?: Record<string, AuditDetail>;
}

// PostgreSQL refuses NUL in text and jsonb
const pgSafe = (s: string) => s.replace(/\u0000/g, '\uFFFD');

function cleanDetails(details: Record<string, AuditDetail> | undefined): Record<string, AuditDetail> {
  const out: Record<string, AuditDetail> = {};
  for (const [k, v] of Object.entries(details ?? {})) {
    if (v === undefined) continue;
    out[k] = typeof v === 'string' ? pgSafe(v) : Array.isArray(v) ? v.map(pgSafe) : v;
  }
  return out;
}

const toView = (e: AuditEventEntity): AuditEventView => ({
  id: e.id,
  object: 'audit_event',
  created_at: e.createdAt.toISOString(),
  organization_id: e.organizationId,
  actor: e.actor,
  actor_user_id: e.actorUserId,
  action: e.action,
  target_id: e.targetId,
  details: e.details,
});

/** The audit log: appended by the services that make administrative changes, read by `GET /v1/audit` and `audit list`. */
@Injectable()
export class AuditService {
  constructor(
    private readonly dataSource: DataSource,
    @InjectRepository(AuditEventEntity) private readonly events: Repository<AuditEventEntity>,
  ) {}

  /**
   * Appends an event. Give the manager of the change's transaction, so that the event is written if and only if
   * the change is; null writes it alone (for a change that is one statement itself made atomic elsewhere).
   */
  async record(manager: EntityManager | null, event: AuditEventInput): Promise<void> {
    await (manager ?? this.dataSource.manager).insert(AuditEventEntity, {
      organizationId: event.orgId,
      actor: pgSafe(event.actor.name),
      actorUserId: event.actor.userId,
      action: event.action,
      targetId: event.target === null ? null : pgSafe(event.target),
      details: cleanDetails(event.details),
    });
  }

  /** A page of events, newest first; `after` is the last id of the previous page (of the same organization). */
  async list(query: AuditQuery): Promise<ListPage<AuditEventView>> {
    if (query.orgId !== null && !(isUuid(query.orgId) && (await this.organizationExists(query.orgId)))) {
      throw AppException.notFound('organization', query.orgId);
    }
    if (query.from && query.to && query.from.getTime() > query.to.getTime()) throw AppException.invalid('from must not be later than to', 'from');
    const qb = this.events
      .createQueryBuilder('e')
      .orderBy('e.created_at', 'DESC')
      .addOrderBy('e.id', 'DESC')
      .take(query.limit + 1);
    if (query.orgId !== null) qb.andWhere('e.organization_id = :orgId', { orgId: query.orgId });
    if (query.action) qb.andWhere('e.action = :action', { action: query.action });
    if (query.from) qb.andWhere('e.created_at >= :from', { from: query.from });
    if (query.to) qb.andWhere('e.created_at < :to', { to: query.to });
    if (query.after !== undefined) {
      const known = isUuid(query.after) && (await this.events.existsBy(query.orgId === null ? { id: query.after } : { id: query.after, organizationId: query.orgId }));
      if (!known) throw AppException.invalid(`No audit event found with id '${query.after}' to page after`, 'after');
      // compared in SQL: a JavaScript Date would cut the stored microseconds
      qb.andWhere('(e.created_at, e.id) < (SELECT c.created_at, c.id FROM audit_events c WHERE c.id = :after)', { after: query.after });
    }
    return toListPage((await qb.getMany()).map(toView), query.limit);
  }

  private async organizationExists(id: string): Promise<boolean> {
    const rows: unknown[] = await this.dataSource.query('SELECT 1 FROM organizations WHERE id = $1', [id]);
    return rows.length > 0;
  }
}
