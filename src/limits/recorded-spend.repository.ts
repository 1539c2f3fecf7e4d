import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** Whose recorded cost to sum, from the start of the month, with the part since the start of the day. */
export interface SpendQuery {
  orgId: string;
  /** internal user id; null for the whole organization */
  userId: string | null;
  monthStart: number;
  dayStart: number;
}

export interface Spend {
  day: number;
  month: number;
}

/** The recorded costs budgets are seeded from: proxied calls (exchanges) and analyses (analysis_results). */
@Injectable()
export class RecordedSpendRepository {
  constructor(private readonly dataSource: DataSource) {}

  costOfExchanges(q: SpendQuery): Promise<Spend> {
    return this.sumCost('exchanges', q);
  }

  costOfAnalysisResults(q: SpendQuery): Promise<Spend> {
    return this.sumCost('analysis_results', q);
  }

  private async sumCost(table: 'exchanges' | 'analysis_results', q: SpendQuery): Promise<Spend> {
    const rows: { day: number | null; month: number | null }[] = await this.dataSource.query(
      `SELECT sum(cost) FILTER (WHERE created_at >= $3) AS day, sum(cost) AS month FROM ${table}
        WHERE organization_id = $1 AND ($4::uuid IS NULL OR user_id = $4) AND created_at >= $2 AND cost IS NOT NULL`,
      [q.orgId, new Date(q.monthStart).toISOString(), new Date(q.dayStart).toISOString(), q.userId],
    );
    return { day: Number(rows[0]?.day ?? 0), month: Number(rows[0]?.month ?? 0) };
  }
}
