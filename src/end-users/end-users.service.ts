import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { AuditActor } from '../audit/audit-actor';
import { AuditService } from '../audit/audit.service';
import { externalIdProblem } from '../auth/users.service';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import { JsonLogger } from '../common/logger';
import { ChangeFeedService } from '../database/change-feed.service';
import { toExchangeView } from '../exchanges/exchanges.service';
import { UsageDailyRepository } from '../exchanges/usage-daily/usage-daily.repository';
import { limitRef } from '../limits/limit-definitions';
import { LimitCountersService } from '../limits/limit-counters.service';
import { UsageRollupsRepository } from '../retention/usage-rollups.repository';
import { AnalysisRow, EndUserDataRepository, ErasedRows, PageCursor, RatingRow } from './end-user-data.repository';

/** Rows read per statement while exporting: memory stays bounded whatever the user's history. */
export const EXPORT_PAGE_SIZE = 200;

/** What `DELETE /v1/users/{user_id}` and `user erase` answer. */
export interface ErasureReceipt {
  object: 'user.erasure';
  /** the external id, as the caller named the user (the receipt is the only place it still appears) */
  user_id: string;
  erased: ErasedRows;
  erased_at: string;
}

/** One line of an export: an object with a `type`. */
export type ExportLine = Record<string, unknown> & { type: string };

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

const ratingLine = (r: RatingRow): ExportLine => ({
  type: 'rating',
  id: r.id,
  request_id: r.exchange_id,
  persona_id: r.persona_id,
  rating: Number(r.rating),
  comment: r.comment,
  rated_at: iso(r.rated_at),
});

const analysisLine = (r: AnalysisRow): ExportLine => ({
  type: 'analysis',
  id: r.id,
  request_id: r.exchange_id,
  response_id: r.response_id,
  config_id: r.config_id,
  analysis_type: r.analysis_type,
  status: r.status,
  error: r.error,
  primary_category: r.primary_category,
  confidence: r.confidence,
  reasoning: r.reasoning,
  categories: r.categories ?? null,
  metadata: r.metadata ?? null,
  model: r.model,
  usage: { input_tokens: Number(r.input_tokens), output_tokens: Number(r.output_tokens), total_tokens: Number(r.total_tokens) },
  cost: r.cost,
  created_at: iso(r.created_at),
});

/**
 * An end user's data (the X-User-ID value of an organization): exported as JSON lines, read in keyset pages as the
 * reader asks for them, and erased in one transaction with a receipt.
 */
@Injectable()
export class EndUsersService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly data: EndUserDataRepository,
    private readonly changes: ChangeFeedService,
    private readonly audit: AuditService,
    private readonly counters: LimitCountersService,
    private readonly rollups: UsageRollupsRepository,
    private readonly usageDaily: UsageDailyRepository,
    private readonly logger: JsonLogger,
  ) {}

  /**
   * The user's data as export lines, produced page by page only as fast as they are consumed. Checks the
   * organization and the user before the first line (404 when neither a user row nor an exchange names them).
   */
  async export(orgId: string, externalId: string): Promise<AsyncIterable<ExportLine>> {
    await this.checkOrganization(orgId);
    checkExternalId(externalId);
    const subject = await this.data.findSubject(null, orgId, externalId);
    if (!subject.userId && !subject.hasExchanges) throw AppException.notFound('user', externalId);
    return this.lines(orgId, externalId, subject.userId, subject.userIds);
  }

  private async *lines(orgId: string, externalId: string, userId: string | null, userIds: string[]): AsyncGenerator<ExportLine> {
    const createdAt = userId ? await this.data.userCreatedAt(userId) : null;
    yield { type: 'user', id: userId, organization_id: orgId, external_id: externalId, created_at: iso(createdAt), exported_at: new Date().toISOString() };
    const counts = { exchanges: 0, ratings: 0, analyses: 0, objects: 0, keys: 0, tokens: 0 };

    for (let after: PageCursor | null = null, first = true; first || after; first = false) {
      const page = await this.data.exchangesPage(orgId, externalId, after, EXPORT_PAGE_SIZE);
      for (const e of page.rows) {
        counts.exchanges++;
        yield { type: 'exchange', ...toExchangeView(e) };
      }
      after = page.next;
    }
    for (let after: PageCursor | null = null, first = true; first || after; first = false) {
      const rows = await this.data.ratingsPage(orgId, userIds, after, EXPORT_PAGE_SIZE);
      for (const r of rows) {
        counts.ratings++;
        yield ratingLine(r);
      }
      after = rows.length === EXPORT_PAGE_SIZE ? { at: rows[rows.length - 1].cursor_at, id: rows[rows.length - 1].id } : null;
    }
    for (let after: PageCursor | null = null, first = true; first || after; first = false) {
      const rows = await this.data.analysesPage(orgId, externalId, after, EXPORT_PAGE_SIZE);
      for (const r of rows) {
        counts.analyses++;
        yield analysisLine(r);
      }
      after = rows.length === EXPORT_PAGE_SIZE ? { at: rows[rows.length - 1].cursor_at, id: rows[rows.length - 1].id } : null;
    }
    for (let after: PageCursor | null = null, first = true; first || after; first = false) {
      const rows = await this.data.objectsPage(orgId, externalId, userIds, after, EXPORT_PAGE_SIZE);
      for (const o of rows) {
        counts.objects++;
        yield { type: 'object', id: o.id, route: o.route, request_id: o.exchange_id, created_at: iso(o.created_at), deleted_at: iso(o.deleted_at) };
      }
      after = rows.length === EXPORT_PAGE_SIZE ? { at: rows[rows.length - 1].cursor_at, id: rows[rows.length - 1].id } : null;
    }
    for (const k of await this.data.keys(orgId, userIds)) {
      counts.keys++;
      yield { type: 'key', id: k.id, label: k.label, base_url: k.base_url, last4: k.last4, revoked_at: iso(k.revoked_at), created_at: iso(k.created_at) };
    }
    for (const t of await this.data.tokens(orgId, externalId)) {
      counts.tokens++;
      yield { type: 'token', jti: t.jti, scope: t.scope, issued_at: iso(t.issued_at), expires_at: iso(t.expires_at) };
    }
    // the last line says the export is whole (a reader that does not see it knows it was cut short)
    yield { type: 'end', counts };
  }

  /**
   * Erases the user: every row that holds their external id or anything they sent, in one transaction (nothing is
   * ever half-erased to a reader), then their Redis counters. Their usage rollups move to no user (the
   * organization's analytics totals stay). Running processes drop them from their caches through
   * the change feed. A user never seen, or already erased, gets a receipt of zeros.
   */
  async erase(orgId: string, externalId: string, actor: AuditActor): Promise<ErasureReceipt> {
    await this.checkOrganization(orgId);
    checkExternalId(externalId);
    const { erased, userIds } = await this.dataSource.transaction(async (m) => {
      const subject = await this.data.findSubject(m, orgId, externalId, true);
      const effects = await this.data.erase(m, orgId, externalId, subject);
      const limitCounters = await this.counters.deleteUserCounters(m, subject.userIds);
      // the organization's totals stay in the rollups, under no user
      let rollups = 0;
      for (const id of subject.userIds) rollups += await this.rollups.forgetUser(m, orgId, id);
      await this.usageDaily.forgetUser(m, orgId, externalId);
      const erased: ErasedRows = { ...effects.rows, limit_counters: limitCounters, usage_rollups: rollups };
      for (const id of subject.userIds) await this.changes.publish(m, 'user', id);
      if (effects.keyIds.length) await this.changes.publish(m, 'key', orgId);
      if (erased.limits) for (const id of subject.userIds) await this.changes.publish(m, 'limits', limitRef('user', id));
      for (const jti of effects.tokenJtis) await this.changes.publish(m, 'token', jti);
      const target = subject.userId ?? subject.userIds[0] ?? null;
      await this.audit.record(m, {
        orgId,
        actor,
        action: 'user.erase',
        target,
        details: { ...erased, ...(subject.userIds.length > 1 ? { user_ids: subject.userIds } : {}) },
      });
      return { erased, userIds: subject.userIds };
    });
    try {
      erased.limit_counters += await this.counters.forgetUsersInRedis(userIds);
    } catch (err) {
      // the counters expire with their window (a day or a month at most) and name the user by internal id only
      this.logger.write('warn', 'erasing limit counters from Redis failed; they expire with their window', { err });
    }
    return { object: 'user.erasure', user_id: externalId, erased, erased_at: new Date().toISOString() };
  }

  private async checkOrganization(orgId: string): Promise<void> {
    const rows: unknown[] = isUuid(orgId) ? await this.dataSource.query('SELECT 1 FROM organizations WHERE id = $1', [orgId]) : [];
    if (!rows.length) throw AppException.notFound('organization', orgId);
  }
}

function checkExternalId(externalId: string): void {
  if (externalIdProblem(externalId)) throw AppException.invalid('user_id must be 1–256 characters without control characters', 'user_id');
}
