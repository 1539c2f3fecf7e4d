import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { SpendQuery, SpendSince as Spend } from '../exchanges/exchange-reports';

export type { Spend, SpendQuery };

/** The recorded costs of analyses (analysis_results) budgets are seeded from; proxied calls' are the ExchangesRepository's. */
@Injectable()
export class RecordedSpendRepository {
  constructor(private readonly dataSource: DataSource) {}

  async costOfAnalysisResults(q: SpendQuery): Promise<Spend> {
    const rows: { day: number | null; month: number | null }[] = await this.dataSource.query(
      `SELECT sum(cost) FILTER (WHERE created_at >= $3) AS day, sum(cost) AS month FROM analysis_results
        WHERE organization_id = $1 AND ($4::uuid IS NULL OR user_id = $4) AND created_at >= $2 AND cost IS NOT NULL`,
      [q.orgId, new Date(q.monthStart).toISOString(), new Date(q.dayStart).toISOString(), q.userId],
    );
    return { day: Number(rows[0]?.day ?? 0), month: Number(rows[0]?.month ?? 0) };
  }
}
