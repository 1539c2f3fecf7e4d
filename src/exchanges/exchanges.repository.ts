import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository, SelectQueryBuilder } from 'typeorm';
import { ExchangeEntity } from './exchange.entity';
import { monthlyPartitions } from './monthly-partitions';
import { OPEN_COLUMNS } from './recorder/batch-sql';
import { ExchangeRecorder } from './recorder/exchange-recorder.service';
import {
  AnalysisCountRow,
  IS_ERROR,
  PERSONA_EXCHANGES,
  JUDGED_DATE,
  JUDGED_EXCHANGES,
  PERSONA_ROLLUPS,
  PersonaLatencyRow,
  PersonaPeopleRow,
  PersonaSliceRow,
  RatingSliceRow,
  ReportPeriod,
  rolledDays,
  SpendQuery,
  SpendSince,
  UTC_DATE,
  UsageGroup,
  USAGE_KEYS,
  ROLLED_USAGE_KEYS,
  UsageReport,
  UsageReportPage,
  DAILY_USAGE_KEYS,
  wholeDays,
  USAGE_ROW_JSON,
} from './exchange-reports';

/** The fields of an exchange that hold what was sent and answered, and can be as large as the body limit. */
export const BODY_FIELDS = ['request_body', 'response_body', 'output_text', 'error'] as const;
export type BodyField = (typeof BODY_FIELDS)[number];

/**
 * A list page carries a body field only up to this size (in bytes, as stored and as JSON text), so a page of 100
 * exchanges is at most 100 × 4 × 32 KiB whatever the stored bodies weigh; larger ones are omitted and flagged.
 */
export const LIST_BODY_MAX_BYTES = 32 * 1024;

/**
 * The SQL of a body column as a list shows it: the value when small enough, else NULL. The stored size is checked
 * first: it costs nothing (a large value is not read), and a value stored larger than the bound is larger as text
 * too unless it is mostly numbers; only what passes it is rendered as text to be measured exactly.
 */
const listed = (column: string, asText: string) =>
  `CASE WHEN pg_column_size(${column}) > ${LIST_BODY_MAX_BYTES} THEN NULL ` +
  `WHEN octet_length(${asText}) > ${LIST_BODY_MAX_BYTES} THEN NULL ELSE ${column} END`;
const BODY_COLUMNS: Record<BodyField, string> = {
  request_body: listed('e.request_body', 'e.request_body::text'),
  response_body: listed('e.response_body', 'e.response_body::text'),
  output_text: listed('e.output_text', 'e.output_text'),
  error: listed('e.error', 'e.error::text'),
};
const ENTITY_FIELD: Record<BodyField, keyof ExchangeEntity> = {
  request_body: 'requestBody',
  response_body: 'responseBody',
  output_text: 'outputText',
  error: 'error',
};

/** An exchange of a list page: its body fields larger than LIST_BODY_MAX_BYTES are null and named in `omitted`. */
export interface ListedExchange {
  exchange: ExchangeEntity;
  omitted: BodyField[];
  ratings: { count: number; average: number | null };
  /** created_at to the microsecond (INSTANT_KEY), where the database gives it: to order open calls among the rows */
  instant?: string;
}

/** What a list of the organization's exchanges is filtered by. */
export interface ExchangeFilter {
  sessionId?: string;
  externalUserId?: string;
  personaId?: string;
  model?: string;
  endpoint?: string;
  status?: string;
  /** rated this (1–5) by someone */
  rating?: number;
  /** put in this primary category by an analysis */
  analysisCategory?: string;
  from?: Date;
  to?: Date;
}

/** What a rating names: the exchange, its upstream response id and the persona it ran under. */
export interface RatedExchangeRow {
  id: string;
  response_id: string | null;
  persona_id: string | null;
}

/**
 * Every read of the `exchanges` table. Rows are written by the ExchangeRecorder, some of them after the answer has
 * left; each read here waits for those (`caughtUp()`) first, so a client reading right after its answer finds
 * its exchange, whoever reads it. Reads are always within one organization.
 */
@Injectable()
export class ExchangesRepository {
  constructor(
    @InjectRepository(ExchangeEntity) private readonly exchanges: Repository<ExchangeEntity>,
    private readonly recorder: ExchangeRecorder,
  ) {}

  /**
   * The session of the newest exchange that produced this response. On the proxy's path, so it does not wait for
   * late completions: the session is known from the row's start, written before the answer.
   */
  async findSessionOfResponse(orgId: string, responseId: string): Promise<string | null> {
    const row = await this.exchanges.findOne({
      select: { sessionId: true },
      where: { organizationId: orgId, responseId },
      order: { createdAt: 'DESC' },
    });
    return row?.sessionId ?? null;
  }

  /** Who made a model answer (the first exchange that returned this response id), in any organization. */
  async ownerOfAnswer(responseId: string): Promise<{ orgId: string; userId: string; keyId: string | null; keySource: string | null } | null> {
    await this.recorder.caughtUp();
    const rows: { organization_id: string; user_id: string; key_id: string | null; key_source: string | null }[] = await this.exchanges.query(
      `SELECT organization_id, user_id, key_id, key_source FROM exchanges WHERE response_id = $1 ORDER BY created_at, id LIMIT 1`,
      [responseId],
    );
    const row = rows[0];
    return row ? { orgId: row.organization_id, userId: row.user_id, keyId: row.key_id, keySource: row.key_source } : null;
  }

  /** Notes on a response's records that it was deleted upstream (the one change made to a record after it ended). */
  async noteResponseDeleted(orgId: string, responseId: string): Promise<void> {
    await this.recorder.caughtUp();
    await this.exchanges.query(
      `UPDATE exchanges SET upstream_deleted_at = now() WHERE organization_id = $1 AND response_id = $2 AND upstream_deleted_at IS NULL`,
      [orgId, responseId],
    );
  }

  /** The exchange, or while it runs its open call as a pending exchange. */
  async findById(orgId: string, id: string): Promise<ExchangeEntity | null> {
    await this.recorder.caughtUp();
    const stored = await this.exchanges.findOneBy({ organizationId: orgId, id });
    if (stored) return stored;
    const open: OpenCallRow[] = await this.exchanges.query(
      `SELECT ${OPEN_CALL_COLUMNS}, o.request_body FROM open_calls o WHERE o.organization_id = $1 AND o.id = $2`,
      [orgId, id],
    );
    if (open[0]) return openCallAsExchange(open[0], open[0].request_body);
    // the call ended between the two reads: its exchange is written in the statement that deleted its open call
    return this.exchanges.findOneBy({ organizationId: orgId, id });
  }

  /** A response id can be stored twice (e.g. an upstream that reuses ids): the newest exchange with it. */
  async findNewestByResponseId(orgId: string, responseId: string): Promise<ExchangeEntity | null> {
    await this.recorder.caughtUp();
    return this.exchanges.findOne({ where: { responseId, organizationId: orgId }, order: { createdAt: 'DESC' } });
  }

  /**
   * The exchange a rating names by its id, without its bodies: a call in progress too (its open call, without a
   * response id yet), as a pending exchange could be rated.
   */
  async findRatedById(orgId: string, id: string): Promise<RatedExchangeRow | null> {
    await this.recorder.caughtUp();
    const stored = () =>
      this.exchanges.query('SELECT id, response_id, persona_id FROM exchanges WHERE id = $1 AND organization_id = $2', [id, orgId]) as Promise<RatedExchangeRow[]>;
    const rows = await stored();
    if (rows[0]) return rows[0];
    const open: RatedExchangeRow[] = await this.exchanges.query(
      'SELECT id, NULL::text AS response_id, persona_id FROM open_calls WHERE id = $1 AND organization_id = $2',
      [id, orgId],
    );
    // else the call ended between the two reads (its exchange written as its open call was deleted), or is unknown
    return open[0] ?? (await stored())[0] ?? null;
  }

  /** The exchange a rating names by its response id (the newest one with it), without its bodies. */
  async findRatedByResponseId(orgId: string, responseId: string): Promise<RatedExchangeRow | null> {
    await this.recorder.caughtUp();
    const rows: RatedExchangeRow[] = await this.exchanges.query(
      `SELECT id, response_id, persona_id FROM exchanges
       WHERE organization_id = $1 AND response_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1`,
      [orgId, responseId],
    );
    return rows[0] ?? null;
  }

  /**
   * The organization's exchanges, newest first: up to `limit + 1` rows after the `after` cursor. The calls in progress
   * (open calls) are listed among them as pending exchanges when the filter can match a pending exchange.
   */
  async listPage(orgId: string, query: ExchangeFilter, limit: number, after: string | undefined): Promise<ListedExchange[]> {
    await this.recorder.caughtUp();
    if (!mayMatchOpenCall(query)) return this.storedPage(orgId, query, limit, after);
    // The open calls are read first: a call that ends between the two reads is then in both (listed once, as its
    // exchange), never in neither. Their filter is the query's own (the model's days are those of ended calls).
    const open = await this.openCallsPage(orgId, query, limit, after, 'DESC');
    const stored = await this.storedPage(orgId, query, limit, open.cursor ?? after);
    return this.withOpenCalls(stored, open.rows, limit, 'DESC');
  }

  /** The stored exchanges of a list page (rows of `exchanges`), newest first: up to `limit + 1` rows after `after`. */
  private async storedPage(orgId: string, query: ExchangeFilter, limit: number, after: After | undefined): Promise<ListedExchange[]> {
    const filter = query.model ? await this.withinModelDays(orgId, query) : query;
    if (!filter) return [];
    const judged = walkedJudgement(filter);
    // a judged page never lists open calls, so its cursor is never an open call's (listPage resolves none for it)
    if (judged) {
      if (await this.noneOfRareValue(orgId, filter)) return [];
      const rare = intersectedRareValue(filter, judged);
      return rare ? this.judgedRarePage(orgId, judged, rare, filter, limit, cursorId(after)) : this.judgedPage(orgId, judged, filter, limit, cursorId(after));
    }
    if (!filter.analysisCategory) return this.listPageWith(this.exchanges, orgId, filter, limit, after);
    // Combined with a user, a session or a persona, the category is a check on that filter's own newest-first scan:
    // walking the category's entries instead would fetch every one of its exchanges for a filter that may keep few.
    // One snapshot for the statements below. The category's exchanges are hashed in memory (see listPageWith):
    // room for a large organization's set.
    return this.exchanges.manager.transaction('REPEATABLE READ', async (m) => {
      await m.query(`SET LOCAL work_mem = '32MB'`);
      const repo = m.getRepository(ExchangeEntity);
      // Over the whole table the newest-first scan is a merge of every partition's scan: each one started, and the
      // category hashed once per partition (13 times on a year of months) before the first row. Within a span of
      // monthly partitions that follow one another the planner reads them one after another instead, newest
      // first, and stops at the page's end. So the page is read from the newest such span first, when no row of
      // the list is newer than the span (rows past the last month are in the default partition); only if the span
      // holds less than a page are the older rows (older months, a gap's or an old row's default partition) read
      // after it, all of them older than every row of the span.
      const span = await newestMonthlySpan(m);
      if (span && (await this.listPageWith(repo, orgId, filter, 0, after, { from: span.to })).length === 0) {
        const within = await this.listPageWith(repo, orgId, filter, limit, after, span);
        if (within.length > limit) return within;
        const older = await this.listPageWith(repo, orgId, filter, limit - within.length, after, { to: span.from });
        return [...within, ...older];
      }
      return this.listPageWith(repo, orgId, filter, limit, after);
    });
  }

  /**
   * The filter's time range narrowed to the UTC days the organization has stored exchanges of its model on (null: none
   * in the range), from the daily usage (MODEL_DAYS): a model none has, misspelt say, reads nothing, and one last used
   * months ago is read from its last day, where the scan from the newest row read every newer one first (on ten
   * million rows, past the bound of a read). Given as values, the days let the planner see the range it reads
   * (computed in the same statement, its unknown bounds made it read all of a model's rows and sort them).
   */
  private async withinModelDays(orgId: string, filter: ExchangeFilter): Promise<ExchangeFilter | null> {
    const rows: { first: string | null; end: string | null }[] = await this.exchanges.query(
      `SELECT min(m.day)::text AS first, (max(m.day) + 1)::text AS end FROM ${MODEL_DAYS} m`,
      [orgId, filter.model],
    );
    if (!rows[0]?.first || !rows[0].end) return null;
    const first = new Date(`${rows[0].first}T00:00:00Z`);
    const end = new Date(`${rows[0].end}T00:00:00Z`);
    const from = filter.from && filter.from > first ? filter.from : first;
    const to = filter.to && filter.to < end ? filter.to : end;
    return from < to ? { ...filter, from, to } : null;
  }

  /**
   * Whether the filter asks for a status other than `completed` or a route other than the model calls that none of
   * the organization's exchanges in its time range has: their own indexes (ListByStatus, ix_exchanges_pending,
   * ListByRareEndpoint) tell at once. A judgement's walk checks them on each exchange it fetches, so it would read
   * all of the judgement's entries to find none (rating 5 with `status=interrupted`: 216–251 ms on ten million rows,
   * warm; 2–4 s before a rating's walk). Walking the rare value's rows instead, checking the judgement on each, was
   * measured too: slower when the value is not rare enough (rating 1 with `status=failed`, 1% of the calls: 154–157
   * against the walk's 75–78 ms).
   */
  private async noneOfRareValue(orgId: string, filter: ExchangeFilter): Promise<boolean> {
    const rare = rareValuesOf(filter);
    if (!rare.length) return false;
    // $1 the organization, then the values, then the time range's bounds that are given
    const params: unknown[] = [orgId, ...rare.map(([, value]) => value)];
    let range = '';
    if (filter.from) range += ` AND e.created_at >= $${params.push(filter.from)}`;
    if (filter.to) range += ` AND e.created_at < $${params.push(filter.to)}`;
    const none = rare.map(([column], k) => `NOT EXISTS (SELECT 1 FROM exchanges e WHERE e.organization_id = $1 AND e.${column} = $${k + 2}${range})`);
    const rows: { none: boolean }[] = await this.exchanges.query(`SELECT (${none.join(' OR ')}) AS none`, params);
    return rows[0].none;
  }

  /**
   * A page of the exchanges of one analysis category or one rating (and a time range), newest first, read from that
   * judgement's index in the order of its exchanges' times (ix_analysis_results_category, ix_ratings_rating:
   * exchange_created_at, exchange_id): the newest entries after the cursor, each exchange once, then each one's row
   * by its key (one partition, one probe), until the page is full. Only the page's exchanges are read, whatever the
   * number of newer exchanges of the organization nobody judged so. The model, the endpoint, the status and a rating
   * besides a category are checked on each exchange fetched (checkEachRow): the walk reads the judgement's entries
   * until it has a page of them, where the organization's newest-first scan would read every newer exchange and check
   * both.
   */
  private async judgedPage(orgId: string, judged: Judged, filter: ExchangeFilter, limit: number, after: string | undefined): Promise<ListedExchange[]> {
    return this.exchanges.manager.transaction(async (m) => {
      await m.query(JUDGED_PAGE_SETTINGS);
      const qb = m
        .getRepository(ExchangeEntity)
        .createQueryBuilder('e')
        .innerJoin(
          (sub) => {
            sub
              .select('j.exchange_created_at', 'created_at')
              .addSelect('j.exchange_id', 'exchange_id')
              .distinct(true)
              .from(judged.table, 'j')
              .where(`j.organization_id = :orgId AND j.${judged.column} = :judgedValue AND j.exchange_created_at IS NOT NULL`);
            if (filter.from) sub.andWhere('j.exchange_created_at >= :from');
            if (filter.to) sub.andWhere('j.exchange_created_at < :to');
            if (after) sub.andWhere(`(j.exchange_created_at, j.exchange_id) < (${CURSOR_ROW})`);
            // the entries in the page's order: read backwards from the index, and the page stops the read
            return sub.orderBy('j.exchange_created_at', 'DESC').addOrderBy('j.exchange_id', 'DESC');
          },
          'j',
          'e.id = j.exchange_id AND e.created_at = j.created_at',
        )
        .where('e.organization_id = :orgId', { orgId, judgedValue: judged.value, from: filter.from, to: filter.to, after, cursorOrg: orgId });
      checkEachRow(qb, filter, judged.table === 'analysis_results', true);
      return this.page(qb, orgId, limit, after, 'DESC');
    });
  }

  /**
   * A page of the exchanges of one judgement (an analysis category or a rating) that also have one rare status or
   * route (those with an index of their own), and a time range: the two indexes read side by side in the page's
   * order, newest first, and merged — (exchange_created_at, exchange_id) of the judgement's, (created_at, id) of the
   * rare value's, both index-only — until the page's keys are found; then the page's rows by their keys. The walk
   * (judgedPage) fetched each of the judgement's exchanges to check its status: a rating given 95,000 times with
   * `status=failed`, which one call in a hundred has, fetched thousands for a page (69 / 106 ms p50 / p95 among such
   * reads on ten million rows). One statement cannot do both (the merge needs the nested loops off, the rows' fetch
   * needs them): two.
   */
  private async judgedRarePage(
    orgId: string,
    judged: Judged,
    [column, value]: RareValue,
    filter: ExchangeFilter,
    limit: number,
    after: string | undefined,
  ): Promise<ListedExchange[]> {
    const keys: { created_at: string; id: string }[] = await this.exchanges.manager.transaction(async (m) => {
      await m.query(INTERSECT_SETTINGS);
      const params: unknown[] = [orgId, judged.value, value];
      let judgedWhere = '';
      let rareWhere = '';
      if (filter.from) {
        const p = params.push(filter.from);
        judgedWhere += ` AND j.exchange_created_at >= $${p}`;
        rareWhere += ` AND e.created_at >= $${p}`;
      }
      if (filter.to) {
        const p = params.push(filter.to);
        judgedWhere += ` AND j.exchange_created_at < $${p}`;
        rareWhere += ` AND e.created_at < $${p}`;
      }
      if (after) {
        // an unknown cursor gives an empty page, as CURSOR_ROW does
        const cursor = `(SELECT c.created_at, c.id FROM exchanges c WHERE c.id = $${params.push(after)} AND c.organization_id = $1)`;
        judgedWhere += ` AND (j.exchange_created_at, j.exchange_id) < ${cursor}`;
        rareWhere += ` AND (e.created_at, e.id) < ${cursor}`;
      }
      // created_at as text: a Date would drop its microseconds, and the keys must match exactly
      return m.query(
        `SELECT s.created_at::text AS created_at, s.id
           FROM (SELECT DISTINCT j.exchange_created_at AS created_at, j.exchange_id AS id FROM ${judged.table} j
                  WHERE j.organization_id = $1 AND j.${judged.column} = $2 AND j.exchange_created_at IS NOT NULL${judgedWhere}
                  ORDER BY 1 DESC, 2 DESC) j
           JOIN (SELECT e.created_at, e.id FROM exchanges e
                  WHERE e.organization_id = $1 AND e.${column} = $3 AND ${RARE_INDEXED[column]}${rareWhere}
                  ORDER BY 1 DESC, 2 DESC) s ON s.created_at = j.created_at AND s.id = j.id
          ORDER BY s.created_at DESC, s.id DESC
          LIMIT $${params.push(limit + 1)}`,
        params,
      );
    });
    if (keys.length === 0) return [];
    const qb = this.exchanges
      .createQueryBuilder('e')
      .where('e.organization_id = :orgId', { orgId })
      .andWhere('(e.created_at, e.id) IN (SELECT * FROM unnest(CAST(:keyTimes AS timestamptz[]), CAST(:keyIds AS text[])))', {
        keyTimes: keys.map((k) => k.created_at),
        keyIds: keys.map((k) => k.id),
      });
    return this.page(qb, orgId, limit, undefined, 'DESC');
  }

  /** `span`: only the rows of created_at in [from, to) (either end open when left out). */
  private async listPageWith(
    exchanges: Repository<ExchangeEntity>,
    orgId: string,
    filter: ExchangeFilter,
    limit: number,
    after: After | undefined,
    span?: { from?: Date; to?: Date },
  ): Promise<ListedExchange[]> {
    const qb = exchanges.createQueryBuilder('e').where('e.organization_id = :orgId', { orgId });
    if (span?.from) qb.andWhere('e.created_at >= :spanFrom', { spanFrom: span.from });
    if (span?.to) qb.andWhere('e.created_at < :spanTo', { spanTo: span.to });
    if (filter.sessionId) qb.andWhere('e.session_id = :sessionId', { sessionId: filter.sessionId });
    if (filter.externalUserId) qb.andWhere('e.external_user_id = :userId', { userId: filter.externalUserId });
    if (filter.personaId) qb.andWhere('e.persona_id = :personaId', { personaId: filter.personaId });
    checkEachRow(qb, filter, true);
    // The category's exchanges are read once from ix_analysis_results_category (index only) and hashed; the
    // newest-first keyset scan stays the plan and checks each row against the hash. A per-row lookup of the row's
    // results (EXISTS) cost an index probe per scanned exchange, and most scanned exchanges have no result (the
    // newest ones are not analysed yet). `IS TRUE` keeps the IN a filter (a hashed subplan) rather than a join the
    // planner would answer by reading all of the organization's exchanges; exchange_id is never null, so it is
    // true exactly when the IN is.
    if (filter.analysisCategory) {
      qb.andWhere(
        `(e.id IN (SELECT a.exchange_id FROM analysis_results a WHERE a.organization_id = :orgId AND a.primary_category = :category)) IS TRUE`,
        { category: filter.analysisCategory },
      );
    }
    if (filter.from) qb.andWhere('e.created_at >= :from', { from: filter.from });
    if (filter.to) qb.andWhere('e.created_at < :to', { to: filter.to });
    return this.page(qb, orgId, limit, after, 'DESC');
  }

  /** A session's exchanges, oldest first, its calls in progress among them: up to `limit + 1` rows after the `after` cursor. */
  async sessionPage(orgId: string, sessionId: string, limit: number, after: string | undefined): Promise<ListedExchange[]> {
    await this.recorder.caughtUp();
    // open calls first, as in listPage
    const open = await this.openCallsPage(orgId, { sessionId }, limit, after, 'ASC');
    const qb = this.exchanges
      .createQueryBuilder('e')
      .where('e.organization_id = :orgId AND e.session_id = :sessionId', { orgId, sessionId });
    const stored = await this.page(qb, orgId, limit, open.cursor ?? after, 'ASC');
    return this.withOpenCalls(stored, open.rows, limit, 'ASC');
  }

  /** Whether the session has an exchange or a call in progress. */
  async sessionExists(orgId: string, sessionId: string): Promise<boolean> {
    await this.recorder.caughtUp();
    // the open calls first: a call that ends meanwhile is found as its exchange
    const open: unknown[] = await this.exchanges.query(`SELECT 1 FROM open_calls WHERE organization_id = $1 AND session_id = $2 LIMIT 1`, [orgId, sessionId]);
    return open.length > 0 || this.exchanges.existsBy({ organizationId: orgId, sessionId });
  }

  /**
   * A page of the organization's open calls (calls in progress) that match the filter, as pending exchanges, in the
   * list's order after the `after` cursor: up to `limit + 1`, from the (organization_id, created_at) index of a table
   * that holds only the calls in flight. `cursor`: the open call `after` names, by value (the exchanges' own cursor
   * looks for it among the exchanges); undefined when it is no open call.
   */
  private async openCallsPage(
    orgId: string,
    filter: ExchangeFilter,
    limit: number,
    after: string | undefined,
    dir: 'ASC' | 'DESC',
  ): Promise<{ rows: OpenListed[]; cursor?: OpenCursor }> {
    const params: unknown[] = [orgId];
    const where = ['o.organization_id = $1'];
    const equal: [keyof ExchangeFilter, string][] = [
      ['sessionId', 'session_id'],
      ['externalUserId', 'external_user_id'],
      ['personaId', 'persona_id'],
      ['model', 'model'],
      ['endpoint', 'endpoint'],
    ];
    // as listPageWith reads them: an empty value filters nothing
    for (const [field, column] of equal) if (filter[field]) where.push(`o.${column} = $${params.push(filter[field])}`);
    if (filter.from) where.push(`o.created_at >= $${params.push(filter.from)}`);
    if (filter.to) where.push(`o.created_at < $${params.push(filter.to)}`);
    let cursor: OpenCursor | undefined;
    if (after) {
      const found: { at: string }[] = await this.exchanges.query(`SELECT created_at::text AS at FROM open_calls WHERE organization_id = $1 AND id = $2`, [
        orgId,
        after,
      ]);
      if (found[0]) cursor = { id: after, at: found[0].at };
      const op = dir === 'DESC' ? '<' : '>';
      where.push(
        cursor
          ? `(o.created_at, o.id) ${op} ($${params.push(cursor.at)}::timestamptz, $${params.push(after)}::text)`
          : `(o.created_at, o.id) ${op} (SELECT c.created_at, c.id FROM exchanges c WHERE c.id = $${params.push(after)} AND c.organization_id = $1)`,
      );
    }
    const rows: (OpenCallRow & ListedBodyRow)[] = await this.exchanges.query(
      `SELECT ${OPEN_CALL_COLUMNS}, ${listed('o.request_body', 'o.request_body::text')} AS listed_request_body,
              o.request_body IS NOT NULL AS stored_request_body,
              to_char(o.created_at AT TIME ZONE 'UTC', '${INSTANT_KEY}') AS instant,
              (SELECT count(*) FROM ratings r WHERE r.exchange_id = o.id)::int AS ratings_count,
              (SELECT avg(r.rating) FROM ratings r WHERE r.exchange_id = o.id)::float8 AS ratings_average
         FROM open_calls o
        WHERE ${where.join(' AND ')}
        ORDER BY o.created_at ${dir}, o.id ${dir}
        LIMIT $${params.push(limit + 1)}`,
      params,
    );
    return {
      rows: rows.map((row) => ({
        exchange: openCallAsExchange(row, row.listed_request_body ?? null),
        omitted: row.listed_request_body == null && row.stored_request_body ? ['request_body'] : [],
        ratings: ratingsOf(row),
        instant: row.instant,
      })),
      cursor,
    };
  }

  /**
   * The page of `limit + 1` rows of both in the list's order: the stored exchanges' page and the open calls' page
   * merged in the database's order of (created_at, id). A call found in both (it ended between the reads) is listed
   * as its exchange.
   */
  private async withOpenCalls(stored: ListedExchange[], open: OpenListed[], limit: number, dir: 'ASC' | 'DESC'): Promise<ListedExchange[]> {
    const storedIds = new Set(stored.map((r) => r.exchange.id));
    const calls = open.filter((r) => !storedIds.has(r.exchange.id));
    if (!calls.length) return stored;
    const rows = await inDatabaseOrder(this.exchanges, [...stored, ...calls], (r) => ({ id: r.exchange.id, instant: r.instant! }), dir);
    return rows.slice(0, limit + 1);
  }


  /**
   * Requests, errors, tokens and cost of the persona's exchanges per (version, UTC day) slice of the period: the
   * stored ones, and the rolled-up ones retention deleted (a slice may come twice, once of each; callers sum).
   */
  async personaSlices(orgId: string, personaId: string, period: ReportPeriod): Promise<PersonaSliceRow[]> {
    await this.recorder.caughtUp();
    return this.exchanges.query(
      `SELECT version, to_char(day, 'YYYY-MM-DD') AS day, requests, errors, input_tokens, output_tokens, total_tokens, cost
         FROM (SELECT e.persona_version AS version, ${UTC_DATE} AS day,
                      count(*)::int AS requests,
                      (count(*) FILTER (WHERE e.${IS_ERROR}))::int AS errors,
                      coalesce(sum(e.input_tokens), 0)::float8 AS input_tokens,
                      coalesce(sum(e.output_tokens), 0)::float8 AS output_tokens,
                      coalesce(sum(e.total_tokens), 0)::float8 AS total_tokens,
                      coalesce(sum(e.cost), 0)::float8 AS cost
                 FROM exchanges e
                WHERE ${PERSONA_EXCHANGES}
                GROUP BY 1, 2
               UNION ALL
               SELECT r.persona_version, r.day, sum(r.requests)::int, sum(r.errors)::int, sum(r.input_tokens)::float8,
                      sum(r.output_tokens)::float8, sum(r.total_tokens)::float8, sum(r.cost)::float8
                 FROM usage_rollups r
                WHERE ${PERSONA_ROLLUPS}
                GROUP BY 1, 2) slices`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString(), ...rolledDays(period)],
    );
  }

  /**
   * Distinct users and sessions of the persona's exchanges, hashed in one pass (count(DISTINCT …) would sort both
   * columns). Rolled-up users are told apart by id; rolled-up sessions are counted per rollup key (day, user, model,
   * version), so a session that spans several keys counts once per key once it is deleted.
   */
  async personaPeople(orgId: string, personaId: string, period: ReportPeriod): Promise<PersonaPeopleRow> {
    await this.recorder.caughtUp();
    const rows: PersonaPeopleRow[] = await this.exchanges.query(
      `WITH live AS (
              SELECT GROUPING(e.user_id) = 0 AS per_user, e.user_id
                FROM exchanges e
               WHERE ${PERSONA_EXCHANGES}
               GROUP BY GROUPING SETS ((e.user_id), (e.session_id))),
            rolled AS (SELECT r.user_id, r.sessions FROM usage_rollups r WHERE ${PERSONA_ROLLUPS})
       SELECT (SELECT count(*) FROM (SELECT user_id FROM live WHERE per_user UNION SELECT user_id FROM rolled WHERE user_id IS NOT NULL) u)::int AS users,
              ((SELECT count(*) FROM live WHERE NOT per_user) + (SELECT coalesce(sum(sessions), 0) FROM rolled))::int AS sessions`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString(), ...rolledDays(period)],
    );
    return rows[0];
  }

  /**
   * Average and percentiles of latency_ms; percentile_cont interpolates linearly (numpy's default), nulls are
   * skipped. The average includes rolled-up exchanges (their sum and count are kept); percentiles cannot be rolled
   * up and are those of the stored exchanges.
   */
  async personaLatency(orgId: string, personaId: string, period: ReportPeriod): Promise<PersonaLatencyRow> {
    await this.recorder.caughtUp();
    const rows: PersonaLatencyRow[] = await this.exchanges.query(
      `WITH live AS (
              SELECT coalesce(sum(e.latency_ms), 0)::numeric AS total, count(e.latency_ms)::numeric AS n,
                     percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY e.latency_ms) AS pct
                FROM exchanges e
               WHERE ${PERSONA_EXCHANGES}),
            rolled AS (
              SELECT coalesce(sum(r.latency_ms_sum), 0)::numeric AS total, coalesce(sum(r.latency_count), 0)::numeric AS n
                FROM usage_rollups r WHERE ${PERSONA_ROLLUPS})
       SELECT CASE WHEN live.n + rolled.n > 0 THEN ((live.total + rolled.total) / (live.n + rolled.n))::float8 END AS avg, live.pct
         FROM live, rolled`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString(), ...rolledDays(period)],
    );
    return rows[0];
  }

  /**
   * Ratings of the persona's exchanges made in the period (a rating belongs to the period of the exchange it
   * rates, not to the moment it was given), counted per (version, day of the exchange, value); with the ratings
   * of rolled-up exchanges. A rating carries its exchange's persona (r.persona_id): only the persona's ratings are
   * read, not the organization's.
   */
  async personaRatings(orgId: string, personaId: string, period: ReportPeriod): Promise<RatingSliceRow[]> {
    await this.recorder.caughtUp();
    return this.exchanges.query(
      `SELECT version, to_char(day, 'YYYY-MM-DD') AS day, rating, count
         FROM (SELECT r.persona_version AS version, ${JUDGED_DATE('r')} AS day, r.rating::int AS rating, count(*)::int AS count
                 FROM ratings r
                WHERE ${JUDGED_EXCHANGES('r')}
                GROUP BY 1, 2, 3
               UNION ALL
               SELECT r.persona_version, r.day, v.rating, sum(v.count)::int
                 FROM usage_rollups r
                 CROSS JOIN LATERAL (VALUES (1, r.ratings_1), (2, r.ratings_2), (3, r.ratings_3), (4, r.ratings_4), (5, r.ratings_5)) v(rating, count)
                WHERE ${PERSONA_ROLLUPS} AND v.count > 0
                GROUP BY 1, 2, 3) rated`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString(), ...rolledDays(period)],
    );
  }

  /**
   * Primary categories per persona version and analysis type over the persona's exchanges in the period. An
   * exchange analysed several times with one type (force_refresh, a changed config) counts once, with its newest
   * result; rolled-up exchanges count with the newest result they had, under their version. A result carries its
   * exchange's persona (a.persona_id): only the persona's results are read.
   */
  async personaAnalysis(orgId: string, personaId: string, period: ReportPeriod): Promise<AnalysisCountRow[]> {
    await this.recorder.caughtUp();
    return this.exchanges.query(
      `SELECT version, rolled, analysis_type, primary_category, sum(count)::int AS count
         FROM (SELECT latest.version, false AS rolled, latest.analysis_type, latest.primary_category, count(*) AS count
                 FROM (SELECT DISTINCT ON (a.exchange_id, a.analysis_type) a.persona_version AS version, a.analysis_type, a.primary_category
                         FROM analysis_results a
                        WHERE ${JUDGED_EXCHANGES('a')} AND a.status = 'completed'
                        ORDER BY a.exchange_id, a.analysis_type, a.created_at DESC, a.id DESC) latest
                GROUP BY 1, 2, 3, 4
               UNION ALL
               SELECT r.persona_version, true, r.analysis_type, r.primary_category, r.count
                 FROM analysis_rollups r
                WHERE r.persona_id = $1 AND r.organization_id = $2 AND r.day >= $5::date AND r.day < $6::date) counted
        GROUP BY version, rolled, analysis_type, primary_category
        ORDER BY analysis_type, primary_category`,
      [personaId, orgId, period.from.toISOString(), period.to.toISOString(), ...rolledDays(period)],
    );
  }

  /**
   * Proxied traffic (exchanges) and analysis calls (stored analysis results) of the organization, per group key;
   * with what retention deleted of both (the daily rollups; a rolled-up user is named by their current X-User-ID,
   * an erased one is null). Whole UTC days of stored rows are read from the daily usage kept as they are written
   * (usage_daily, with its changes not merged yet), only the part-days at the ends of the period from the rows: a
   * part-day's own rows added, or its day whole less the day's other rows, whichever span is shorter (wholeDays).
   */
  async usageByGroup(
    orgId: string,
    period: ReportPeriod,
    group: UsageGroup,
    page: UsageReportPage = { limit: null, order: 'key' },
    /** the price table's money decimals (PricingService.moneyDecimals): costs are rounded to them */
    moneyDecimals: number,
  ): Promise<UsageReport> {
    await this.recorder.caughtUp();
    const key = USAGE_KEYS[group];
    const userJoin = group === 'user' ? 'LEFT JOIN users u ON u.id = a.user_id' : '';
    const rolledKey = ROLLED_USAGE_KEYS[group];
    const rolledJoin = group === 'user' ? 'LEFT JOIN users ru ON ru.id = r.user_id' : '';
    const daily = DAILY_USAGE_KEYS[group];
    const { days, edges, signs } = wholeDays(period);
    const sums = 'requests, errors, input_tokens, output_tokens, total_tokens, cost';
    const dailyRows =
      `SELECT day, source, key, ${sums} FROM usage_daily WHERE organization_id = $1 AND dimension = '${daily.dimension}' AND day >= $6::date AND day < $7::date
       UNION ALL
       SELECT day, source, ${daily.changesKey}, ${sums} FROM usage_daily_changes WHERE organization_id = $1 AND day >= $6::date AND day < $7::date`;
    // the part-days: [$2, $3) counted with signs[0] and [$4, $5) with signs[1] (constants, -1 or 1)
    const edge = (column: string, lo: number) => `${column} >= $${lo}::timestamptz AND ${column} < $${lo + 1}::timestamptz`;
    const edgeOf = (alias: string) => `((${edge(`${alias}.created_at`, 2)}) OR (${edge(`${alias}.created_at`, 4)}))`;
    const analysisSign = signs[0] === signs[1] ? String(signs[0]) : `CASE WHEN ${edge('a.created_at', 2)} THEN ${signs[0]} ELSE ${signs[1]} END`;
    // The part-days' exchanges, each end its own range: in a closed month, an index-only scan of the month's usage
    // index, which holds the columns summed (ExchangeIndexCompaction); one condition with OR would be a bitmap
    // scan, which reads the table's pages whatever the index holds.
    const edgeColumns = 'created_at, external_user_id, model, persona_id, status, input_tokens, output_tokens, total_tokens, cost';
    const edgeExchanges = `
           (SELECT ${signs[0]} AS sign, ${edgeColumns} FROM exchanges WHERE organization_id = $1 AND ${edge('created_at', 2)}
            UNION ALL
            SELECT ${signs[1]} AS sign, ${edgeColumns} FROM exchanges WHERE organization_id = $1 AND ${edge('created_at', 4)}) e`;
    // Sums of counts run in int8 and of tokens in float8 (exact below 2^53): the bigint columns' own sum() keeps a
    // numeric state per group, several times slower over the tens of thousands of daily rows of a large period.
    // The rows come back as the JSON text of the answer's rows (USAGE_ROW_JSON), sent on as they are: the driver
    // would make a string per column of each of tens of thousands of rows, and the process would parse and print them.
    const grouped = `
       SELECT key, source, sum(requests)::int AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
              sum(total_tokens) AS total_tokens, sum(cost) AS cost, sum(errors)::int AS errors
         FROM (
         SELECT ${key.proxy} AS key, 'proxy' AS source, sum(e.sign)::int AS requests,
                coalesce(sum(e.sign * e.input_tokens::float8), 0) AS input_tokens,
                coalesce(sum(e.sign * e.output_tokens::float8), 0) AS output_tokens,
                coalesce(sum(e.sign * e.total_tokens::float8), 0) AS total_tokens,
                coalesce(sum(e.sign * e.cost), 0)::float8 AS cost,
                coalesce(sum(e.sign) FILTER (WHERE e.${IS_ERROR}), 0)::int AS errors
           FROM ${edgeExchanges}
          GROUP BY 1
         UNION ALL
         SELECT a.key, 'analysis' AS source, sum(a.sign)::int AS requests,
                coalesce(sum(a.sign * a.input_tokens::float8), 0) AS input_tokens,
                coalesce(sum(a.sign * a.output_tokens::float8), 0) AS output_tokens,
                coalesce(sum(a.sign * a.total_tokens::float8), 0) AS total_tokens,
                coalesce(sum(a.sign * a.cost), 0)::float8 AS cost,
                coalesce(sum(a.sign) FILTER (WHERE a.status = 'failed'), 0)::int AS errors
           FROM (SELECT ${key.analysis} AS key, ${analysisSign} AS sign, a.input_tokens, a.output_tokens, a.total_tokens, a.cost, a.status
                   FROM analysis_results a ${userJoin}
                  WHERE a.organization_id = $1 AND ${edgeOf('a')}) a
          GROUP BY 1
         UNION ALL
         SELECT ${daily.key} AS key, d.source, d.requests::int, d.input_tokens::float8, d.output_tokens::float8, d.total_tokens::float8, d.cost,
                d.errors::int
           FROM (${dailyRows}) d
         UNION ALL
         SELECT ${rolledKey} AS key, r.source, sum(r.requests)::int, sum(r.input_tokens)::float8, sum(r.output_tokens)::float8,
                sum(r.total_tokens)::float8, sum(r.cost)::float8, sum(r.errors)::int
           FROM usage_rollups r ${rolledJoin}
          WHERE r.organization_id = $1 AND r.day >= $8::date AND r.day < $9::date
          GROUP BY 1, 2
       ) usage
       GROUP BY key, source
      HAVING sum(requests) > 0`;
    const params: unknown[] = [orgId, ...edges, ...days, ...rolledDays(period), 10 ** moneyDecimals];
    const row = (alias: string) => USAGE_ROW_JSON(alias, '$10::float8');
    type Read = { rows: string | null; first_key: string | null; last_key: string | null; has_more: boolean; cursor_found: boolean };
    const report = (r: Read | undefined): UsageReport => ({
      json: `[${r?.rows ?? ''}]`,
      firstKey: r?.first_key ?? null,
      lastKey: r?.last_key ?? null,
      hasMore: r?.has_more ?? false,
      cursorFound: r?.cursor_found ?? true,
    });
    if (page.limit === null && page.after === undefined && page.order === 'key') {
      // first and last keys in the order (a null key last) without a second sort
      const rows = await this.readUsage<Read>(
        `SELECT string_agg(${row('g')}, ',' ORDER BY g.key COLLATE "C" ASC NULLS LAST, g.source DESC) AS rows,
                min(g.key COLLATE "C") AS first_key,
                CASE WHEN bool_or(g.key IS NULL) THEN NULL ELSE max(g.key COLLATE "C") END AS last_key,
                false AS has_more, true AS cursor_found
           FROM (${grouped}) g`,
        params,
      );
      return report(rows[0]);
    }
    // A page: the keys' totals (both sources' cost), those after the cursor's key, the first limit + 1 of them in
    // the order (a top-N sort, not a sort of every key; the one more says whether there are more), then their rows.
    // Only the page's rows are turned into JSON, however many keys the period has.
    const order = page.order === 'cost' ? `total DESC, key COLLATE "C" ASC NULLS LAST` : `key COLLATE "C" ASC NULLS LAST`;
    const after =
      page.order === 'cost'
        ? `$11::text IS NULL OR total < (SELECT t FROM cur) OR (total = (SELECT t FROM cur) AND (key IS NULL OR key COLLATE "C" > $11::text))`
        : `$11::text IS NULL OR key IS NULL OR key COLLATE "C" > $11::text`;
    params.push(page.after ?? null, page.limit);
    const rows = await this.readUsage<Read>(
      `WITH grouped AS MATERIALIZED (${grouped}),
            totals AS (SELECT key, coalesce(sum(cost), 0) AS total FROM grouped GROUP BY key),
            cur AS (SELECT total AS t FROM totals WHERE key = $11::text),
            page AS (SELECT key, row_number() OVER (ORDER BY ${order}) AS n
                       FROM (SELECT key, total FROM totals WHERE ${after} ORDER BY ${order} LIMIT $12::int + 1) k),
            shown AS (SELECT * FROM page WHERE $12::int IS NULL OR n <= $12::int),
            picked AS (SELECT p.n, g.* FROM shown p JOIN grouped g ON g.key = p.key
                       UNION ALL
                       SELECT p.n, g.* FROM shown p JOIN grouped g ON p.key IS NULL AND g.key IS NULL)
       SELECT (SELECT string_agg(${row('r')}, ',' ORDER BY r.n, r.source DESC) FROM picked r) AS rows,
              (SELECT key FROM shown ORDER BY n LIMIT 1) AS first_key,
              (SELECT key FROM shown ORDER BY n DESC LIMIT 1) AS last_key,
              coalesce((SELECT max(n) FROM page) > $12::int, false) AS has_more,
              ($11::text IS NULL OR EXISTS (SELECT 1 FROM cur)) AS cursor_found`,
      params,
    );
    return report(rows[0]);
  }

  /**
   * One usage read, without parallel workers: its parts are small index scans and aggregates, which workers only
   * slow (their start, and a sorted merge of their partial groups in place of one hash aggregate). Its groups (one
   * per user and source over a year: tens of thousands) are hashed in memory rather than sorted on disk.
   */
  private async readUsage<T = { rows: string | null }>(sql: string, params: unknown[]): Promise<T[]> {
    return this.exchanges.manager.transaction(async (m) => {
      await m.query(`SET LOCAL max_parallel_workers_per_gather = 0`);
      await m.query(`SET LOCAL work_mem = '32MB'`);
      return m.query(sql, params);
    });
  }

  /** The recorded cost of the organization's (or one of its users') proxied calls this month, and the part of it today (deleted calls from the rollups). */
  async costSince(q: SpendQuery): Promise<SpendSince> {
    await this.recorder.caughtUp();
    const rows: { day: number | null; month: number | null }[] = await this.exchanges.query(
      `SELECT sum(cost) FILTER (WHERE created_at >= $3) AS day, sum(cost) AS month FROM (
         SELECT created_at, cost FROM exchanges
          WHERE organization_id = $1 AND ($4::uuid IS NULL OR user_id = $4) AND created_at >= $2 AND cost IS NOT NULL
         UNION ALL
         SELECT day::timestamp AT TIME ZONE 'UTC', cost FROM usage_rollups
          WHERE organization_id = $1 AND source = 'proxy' AND ($4::uuid IS NULL OR user_id = $4)
            AND day >= ($2::timestamptz AT TIME ZONE 'UTC')::date) spent`,
      [q.orgId, new Date(q.monthStart).toISOString(), new Date(q.dayStart).toISOString(), q.userId],
    );
    return { day: Number(rows[0]?.day ?? 0), month: Number(rows[0]?.month ?? 0) };
  }

  private async page(
    qb: SelectQueryBuilder<ExchangeEntity>,
    orgId: string,
    limit: number,
    after: After | undefined,
    dir: 'ASC' | 'DESC',
  ): Promise<ListedExchange[]> {
    if (typeof after === 'string') {
      // keyset cursor; an unknown cursor gives an empty page
      qb.andWhere(`(e.created_at, e.id) ${dir === 'DESC' ? '<' : '>'} (${CURSOR_ROW})`, { after, cursorOrg: orgId });
    } else if (after) {
      // an open call's: by value (it is no exchange, or was none when the open calls were read)
      qb.andWhere(`(e.created_at, e.id) ${dir === 'DESC' ? '<' : '>'} (CAST(:afterAt AS timestamptz), CAST(:after AS text))`, { after: after.id, afterAt: after.at });
    }
    // the body columns come from the database only when small enough: a large one never reaches this process
    const columns = this.exchanges.metadata.columns
      .filter((c) => !(Object.values(ENTITY_FIELD) as string[]).includes(c.propertyName))
      .map((c) => `e.${c.propertyName}`);
    qb.select(columns);
    for (const field of BODY_FIELDS) {
      qb.addSelect(BODY_COLUMNS[field], `listed_${field}`);
      qb.addSelect(`e.${field} IS NOT NULL`, `stored_${field}`);
    }
    qb.addSelect('(SELECT count(*) FROM ratings r WHERE r.exchange_id = e.id)::int', 'ratings_count');
    qb.addSelect('(SELECT avg(r.rating) FROM ratings r WHERE r.exchange_id = e.id)::float8', 'ratings_average');
    qb.addSelect(`to_char(e.created_at AT TIME ZONE 'UTC', '${INSTANT_KEY}')`, 'instant');
    const { entities, raw } = await qb
      .orderBy('e.created_at', dir)
      .addOrderBy('e.id', dir)
      .limit(limit + 1)
      .getRawAndEntities<Record<string, unknown>>();
    return entities.map((row, i) => {
      const omitted: BodyField[] = [];
      for (const field of BODY_FIELDS) {
        const value = raw[i][`listed_${field}`] ?? null;
        (row as unknown as Record<string, unknown>)[ENTITY_FIELD[field]] = value;
        if (value === null && raw[i][`stored_${field}`] === true) omitted.push(field);
      }
      return { exchange: row, omitted, ratings: ratingsOf(raw[i] as RatingsRow), instant: raw[i].instant as string };
    });
  }
}

/**
 * The UTC days the organization $1 has stored exchanges of the model $2 on, from the daily usage the triggers on
 * `exchanges` keep exact as rows are written and deleted (usage_daily, and the changes not merged yet: a day whose
 * requests add up to more than none). A few thousand index entries a year per model, whatever the number of
 * exchanges.
 */
const MODEL_DAYS = `(SELECT u.day FROM (
    SELECT day, requests FROM usage_daily WHERE organization_id = $1 AND dimension = 'model' AND source = 'proxy' AND key = $2
    UNION ALL
    SELECT day, requests FROM usage_daily_changes WHERE organization_id = $1 AND source = 'proxy' AND model = $2) u
  GROUP BY u.day HAVING sum(u.requests) > 0)`;

/**
 * The columns of an open call (migration OpenCalls): a call in progress, with what is known of it before the upstream
 * is called (the columns of a pending exchange). Its body is read apart: whole for one call, bounded in a list.
 */
export const OPEN_CALL_COLUMNS = OPEN_COLUMNS.filter((c) => c !== 'request_body')
  .map((c) => `o.${c}`)
  .join(', ');

export interface OpenCallRow {
  id: string;
  organization_id: string;
  user_id: string;
  external_user_id: string;
  session_id: string;
  persona_id: string | null;
  persona_version: number | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  request_body?: unknown;
  key_id: string | null;
  key_source: string | null;
  instance_id: string | null;
  created_at: Date;
  method: string | null;
  route: string | null;
  request_content_type: string | null;
  capture_mode: string;
}

interface RatingsRow {
  ratings_count?: number | string | null;
  ratings_average?: number | null;
}

interface ListedBodyRow extends RatingsRow {
  listed_request_body?: unknown;
  stored_request_body: boolean;
  instant: string;
}

/** A listed open call, with its instant (INSTANT_KEY) to order it among the exchanges. */
type OpenListed = ListedExchange & { instant: string };

/** An open call named by a list's cursor: its id and its created_at as PostgreSQL prints it (to the microsecond). */
interface OpenCursor {
  id: string;
  at: string;
}

/** A list's cursor: an exchange's id, or an open call's by value. */
type After = string | OpenCursor;

const cursorId = (after: After | undefined): string | undefined => (typeof after === 'string' || after === undefined ? after : after.id);

/**
 * A call in progress as an exchange: pending, with every column of its outcome null, as its pending row of
 * `exchanges` was before open calls.
 */
export function openCallAsExchange(row: OpenCallRow, requestBody: unknown): ExchangeEntity {
  return Object.assign(new ExchangeEntity(), {
    id: row.id,
    organizationId: row.organization_id,
    userId: row.user_id,
    externalUserId: row.external_user_id,
    sessionId: row.session_id,
    personaId: row.persona_id,
    personaVersion: row.persona_version,
    endpoint: row.endpoint,
    model: row.model,
    stream: row.stream,
    status: 'pending',
    upstreamStatus: null,
    responseId: null,
    requestBody,
    responseBody: null,
    outputText: null,
    error: null,
    captureMode: row.capture_mode,
    inputTokens: null,
    outputTokens: null,
    totalTokens: null,
    cachedTokens: null,
    reasoningTokens: null,
    cost: null,
    latencyMs: null,
    timeToFirstByteMs: null,
    keyId: row.key_id,
    keySource: row.key_source,
    keyAttempts: null,
    instanceId: row.instance_id,
    method: row.method,
    route: row.route,
    upstreamRequestId: null,
    objectId: null,
    requestContentType: row.request_content_type,
    requestBytes: null,
    responseContentType: null,
    responseBytes: null,
    bodyTruncated: null,
    upstreamDeletedAt: null,
    createdAt: row.created_at,
    completedAt: null,
  } satisfies Omit<ExchangeEntity, 'followOwner' | 'followUntil'>);
}

/**
 * Whether a list's filter can match a pending exchange, and so a call in progress: no status but pending, and no
 * filter on what only an ended call has (a rating, an analysis category: a pending exchange is neither rated by
 * its response nor analysed). The other filters are on columns an open call has.
 */
function mayMatchOpenCall(filter: ExchangeFilter): boolean {
  return (!filter.status || filter.status === 'pending') && !filter.rating && !filter.analysisCategory;
}

/** A row's ratings as a list shows them: how many, and their average to two decimals. */
function ratingsOf(row: RatingsRow): { count: number; average: number | null } {
  const average = row.ratings_average ?? null;
  return { count: Number(row.ratings_count ?? 0), average: average === null ? null : Math.round(average * 100) / 100 };
}

/** An instant as digits to the microsecond in UTC (to_char's pattern): they sort as the instants do. */
export const INSTANT_KEY = 'YYYYMMDDHH24MISSUS';

/**
 * Rows in the order of their (created_at, id) as PostgreSQL compares them: by instant to the microsecond (INSTANT_KEY
 * digits sort as the instants do), and the ids of one instant in the database's collation (asked only then).
 */
export async function inDatabaseOrder<T>(
  db: { query(sql: string, params: unknown[]): Promise<unknown> },
  rows: T[],
  keyOf: (row: T) => { id: string; instant: string },
  dir: 'ASC' | 'DESC' = 'ASC',
): Promise<T[]> {
  const seen = new Set<string>();
  const shared = new Set<string>();
  for (const r of rows) {
    const { instant } = keyOf(r);
    (seen.has(instant) ? shared : seen).add(instant);
  }
  const rank = new Map<string, number>();
  if (shared.size) {
    const ids = rows.map(keyOf).filter((k) => shared.has(k.instant)).map((k) => k.id);
    const ranked = (await db.query(`SELECT id FROM unnest($1::text[]) AS k(id) ORDER BY id`, [ids])) as { id: string }[];
    ranked.forEach((r, i) => rank.set(r.id, i));
  }
  const sign = dir === 'DESC' ? -1 : 1;
  return [...rows].sort((a, b) => {
    const ka = keyOf(a);
    const kb = keyOf(b);
    if (ka.instant !== kb.instant) return (ka.instant < kb.instant ? -1 : 1) * sign;
    return ((rank.get(ka.id) ?? 0) - (rank.get(kb.id) ?? 0)) * sign;
  });
}

/** The keyset cursor's (created_at, id): the exchange `:after` of the organization `:cursorOrg` (none: an empty page). */
const CURSOR_ROW = 'SELECT c.created_at, c.id FROM exchanges c WHERE c.id = :after AND c.organization_id = :cursorOrg';

/**
 * How a page of judged exchanges is read, whatever the planner estimates: a nested loop over the judgement's
 * entries in order, each exchange fetched by its key, which the page's end stops. The planner cannot tell how many
 * entries a page takes: it estimates the join of entries and exchanges (on id and time) at one row, so for a rating
 * given 95,000 times it hashed the entries and read all of the organization's two million exchanges (6.5 s instead
 * of 3 ms), and planned for all of the entries, the read of the index would start a parallel worker (~10 ms). With a
 * model, an endpoint or a status checked besides, an organization it knows few exchanges of made it loop over the
 * organization's exchanges instead, each one against the entries, and sort them: no sort, then, which leaves the
 * entries' own order as the only way to the page's.
 */
const JUDGED_PAGE_SETTINGS = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
  set_config('enable_material', 'off', true), set_config('enable_sort', 'off', true), set_config('enable_incremental_sort', 'off', true),
  set_config('max_parallel_workers_per_gather', '0', true)`;

/**
 * How the keys of a judgement's exchanges with a rare status or route are found (judgedRarePage): the two indexes
 * merged in their order, whatever the planner estimates (it takes the judgement's entries for few and would loop over
 * them), without sorts (the indexes give the order) and without parallel workers.
 */
const INTERSECT_SETTINGS = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_nestloop', 'off', true),
  set_config('enable_sort', 'off', true), set_config('enable_incremental_sort', 'off', true), set_config('max_parallel_workers_per_gather', '0', true)`;

/** The routes nearly every call takes: every other one is indexed by organization and time (ListByRareEndpoint). */
const MODEL_CALL_ENDPOINTS = ['responses', 'chat.completions'];

/**
 * The columns whose rare values have an index of their own, with its predicate: the statuses but `completed` and
 * `pending` (ListByStatus), the routes but the model calls (ListByRareEndpoint).
 */
const RARE_INDEXED = {
  status: `e.status NOT IN ('completed', 'pending')`,
  endpoint: `e.endpoint NOT IN (${MODEL_CALL_ENDPOINTS.map((v) => `'${v}'`).join(', ')})`,
} as const;
type RareValue = [keyof typeof RARE_INDEXED, string];

/** The filter's status and route that few calls have, each with an index that tells at once (`pending`: its own). */
function rareValuesOf(filter: ExchangeFilter): RareValue[] {
  const rare: RareValue[] = [];
  if (filter.status && filter.status !== 'completed') rare.push(['status', filter.status]);
  if (filter.endpoint && !MODEL_CALL_ENDPOINTS.includes(filter.endpoint)) rare.push(['endpoint', filter.endpoint]);
  return rare;
}

/**
 * The rare status or route a judgement's page is read together with (judgedRarePage): when it is the one filter
 * besides the judgement and a time range, and not `pending` (whose index RARE_INDEXED does not name). Anything else
 * checked on each row (a model, a second judgement, both a status and a route, a status or route of the many) leaves
 * the page to the judgement's walk.
 */
function intersectedRareValue(filter: ExchangeFilter, judged: Judged): RareValue | null {
  if (filter.model || (judged.table === 'analysis_results' && filter.rating) || (filter.status && filter.endpoint)) return null;
  const [rare] = rareValuesOf(filter);
  return rare && !(rare[0] === 'status' && rare[1] === 'pending') ? rare : null;
}

/** A judgement a list is filtered by: its table, its column and the value asked for. */
interface Judged {
  table: 'analysis_results' | 'ratings';
  column: 'primary_category' | 'rating';
  value: string | number;
}

/**
 * The judgement a page is walked along: an analysis category or a rating, with a time range and the filters without
 * an index of their own (model, endpoint, status; a rating besides a category is checked too); else null — with a
 * user, a session or a persona, that filter's own index gives the narrower scan.
 */
function walkedJudgement(filter: ExchangeFilter): Judged | null {
  // what judgedPage applies; any other filter (user, session, persona) takes the other way, which applies them all
  const { analysisCategory, rating, from, to, model, endpoint, status, ...others } = filter;
  // as listPageWith reads them: an empty value filters nothing
  if (Object.values(others).some((v) => !!v)) return null;
  if (analysisCategory) return { table: 'analysis_results', column: 'primary_category', value: analysisCategory };
  if (rating) return { table: 'ratings', column: 'rating', value: rating };
  return null;
}

/**
 * The filters checked on each exchange a page reads: model, endpoint, status, and (`withRating`) a rating, by a probe
 * of the unique (exchange, user) index of ratings per row. `onlyChecked`, for a judgement's walk: checks no index
 * can serve (`IS TRUE`) — given one in the page's order (the rare statuses' own), the planner would loop over its
 * exchanges instead and read the judgement's entries again for each one.
 */
function checkEachRow(qb: SelectQueryBuilder<ExchangeEntity>, filter: ExchangeFilter, withRating: boolean, onlyChecked = false): void {
  const check = (condition: string) => (onlyChecked ? `(${condition}) IS TRUE` : condition);
  if (filter.model) qb.andWhere(check('e.model = :model'), { model: filter.model });
  if (filter.endpoint) qb.andWhere(check('e.endpoint = :endpoint'), { endpoint: filter.endpoint });
  if (filter.status) qb.andWhere(check('e.status = :status'), { status: filter.status });
  if (withRating && filter.rating) {
    qb.andWhere('EXISTS (SELECT 1 FROM ratings r WHERE r.organization_id = e.organization_id AND r.exchange_id = e.id AND r.rating = :rating)', { rating: filter.rating });
  }
}

/**
 * [from, to) of created_at covered by the newest monthly partitions of `exchanges` that follow one another without
 * a gap; null on a table that is not partitioned.
 */
async function newestMonthlySpan(m: EntityManager): Promise<{ from: Date; to: Date } | null> {
  const parts = await monthlyPartitions(m);
  if (parts.length === 0) return null;
  let first = parts.length - 1;
  while (first > 0 && parts[first - 1].to.getTime() === parts[first].from.getTime()) first--;
  return { from: parts[first].from, to: parts[parts.length - 1].to };
}
