import { Injectable } from '@nestjs/common';
import type { PersonaSliceRow, RatingSliceRow } from '../exchanges/exchange-reports';
import { ExchangesRepository } from '../exchanges/exchanges.repository';
import { PricingService } from '../pricing/pricing.service';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import type { ActingContext } from '../common/request-context';
import { parsePeriod, PeriodQueryDto, UsageQueryDto, usageGroupOf, usagePageOf } from './analytics-query';
import { AnalyticsRepository } from './analytics.repository';
import type { PersonaAnalyticsDto, RatingDistribution } from './analytics.dto';

@Injectable()
export class AnalyticsService {
  constructor(
    private readonly repo: AnalyticsRepository,
    private readonly exchanges: ExchangesRepository,
    private readonly pricing: PricingService,
  ) {}

  async personaReport(acting: ActingContext, personaId: string, query: PeriodQueryDto): Promise<PersonaAnalyticsDto> {
    const period = parsePeriod(query);
    const name = isUuid(personaId) ? await this.repo.findPersonaName(acting.orgId, personaId) : undefined;
    if (name === undefined) throw AppException.notFound('persona', personaId);

    // independent aggregates: on separate pool connections they run side by side
    const [slices, people, latency, ratings, analysis] = await Promise.all([
      this.exchanges.personaSlices(acting.orgId, personaId, period),
      this.exchanges.personaPeople(acting.orgId, personaId, period),
      this.exchanges.personaLatency(acting.orgId, personaId, period),
      this.exchanges.personaRatings(acting.orgId, personaId, period),
      this.exchanges.personaAnalysis(acting.orgId, personaId, period),
    ]);

    const totals = sumSlices(slices);
    const distribution: RatingDistribution = { '1': 0, '2': 0, '3': 0, '4': 0, '5': 0 };
    for (const r of ratings) {
      const k = String(r.rating) as keyof RatingDistribution;
      if (k in distribution) distribution[k] += r.count;
    }
    const allRatings = ratingStats(ratings);

    const analysisByType: PersonaAnalyticsDto['analysis'] = {};
    const analysisByVersion = new Map<number | null, PersonaAnalyticsDto['analysis']>();
    for (const a of analysis) {
      const all = (analysisByType[a.analysis_type] ??= {});
      all[a.primary_category] = (all[a.primary_category] ?? 0) + a.count;
      // stored and rolled-up exchanges of one version add up
      if (!analysisByVersion.has(a.version)) analysisByVersion.set(a.version, {});
      const byType = (analysisByVersion.get(a.version)![a.analysis_type] ??= {});
      byType[a.primary_category] = (byType[a.primary_category] ?? 0) + a.count;
    }

    const [p50, p95] = latency.pct ?? [null, null];
    return {
      persona_id: personaId,
      name,
      period: { from: period.from.toISOString(), to: period.to.toISOString() },
      requests: totals.requests,
      users: people.users,
      sessions: people.sessions,
      errors: totals.errors,
      tokens: { input: totals.input_tokens, output: totals.output_tokens, total: totals.total_tokens },
      cost: this.pricing.roundUsd(totals.cost),
      latency_ms: { avg: latency.avg, p50: p50 ?? null, p95: p95 ?? null },
      ratings: { count: allRatings.count, average: allRatings.average, distribution },
      analysis: analysisByType,
      by_version: groupBy(slices, (s) => s.version)
        .sort((a, b) => (a.key ?? Infinity) - (b.key ?? Infinity))
        .map(({ key, rows }) => {
          const sum = sumSlices(rows);
          const rated = ratingStats(ratings.filter((r) => r.version === key));
          return {
            version: key,
            requests: sum.requests,
            average_rating: rated.average,
            cost: this.pricing.roundUsd(sum.cost),
            analysis: analysisByVersion.get(key) ?? {},
          };
        }),
      daily: groupBy(slices, (s) => s.day)
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
        .map(({ key, rows }) => {
          const sum = sumSlices(rows);
          const rated = ratingStats(ratings.filter((r) => r.day === key));
          return { date: key, requests: sum.requests, tokens: sum.total_tokens, cost: this.pricing.roundUsd(sum.cost), average_rating: rated.average };
        }),
    };
  }

  /**
   * The usage report as the JSON text of a UsageListDto: its rows come as the database printed them (a busy
   * organization's users over a month are tens of thousands of rows, which the process would otherwise parse and
   * print again).
   */
  async usage(acting: ActingContext, query: UsageQueryDto): Promise<string> {
    const period = parsePeriod(query);
    const group = usageGroupOf(query);
    const page = usagePageOf(query);
    const report = await this.exchanges.usageByGroup(acting.orgId, period, group, page, this.pricing.moneyDecimals);
    if (!report.cursorFound) throw AppException.invalid(`No row of this report has the key '${page.after}' to page after`, 'after');
    return `{"object":"list","data":${report.json},"has_more":${report.hasMore},"first_id":${JSON.stringify(report.firstKey)},"last_id":${JSON.stringify(report.lastKey)}}`;
  }
}

function sumSlices(rows: PersonaSliceRow[]): Omit<PersonaSliceRow, 'version' | 'day'> {
  const sum = { requests: 0, errors: 0, input_tokens: 0, output_tokens: 0, total_tokens: 0, cost: 0 };
  for (const r of rows) {
    sum.requests += r.requests;
    sum.errors += r.errors;
    sum.input_tokens += r.input_tokens;
    sum.output_tokens += r.output_tokens;
    sum.total_tokens += r.total_tokens;
    sum.cost += r.cost;
  }
  return sum;
}

function ratingStats(rows: RatingSliceRow[]): { count: number; average: number | null } {
  let count = 0;
  let sum = 0;
  for (const r of rows) {
    count += r.count;
    sum += r.count * r.rating;
  }
  return { count, average: count > 0 ? sum / count : null };
}

function groupBy<T, K>(rows: T[], keyOf: (row: T) => K): { key: K; rows: T[] }[] {
  const groups = new Map<K, T[]>();
  for (const row of rows) {
    const key = keyOf(row);
    const list = groups.get(key);
    if (list) list.push(row);
    else groups.set(key, [row]);
  }
  return [...groups].map(([key, list]) => ({ key, rows: list }));
}
