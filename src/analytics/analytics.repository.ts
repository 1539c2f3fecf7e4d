import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** The analytics' own reads; the aggregates over exchanges are the ExchangesRepository's. */
@Injectable()
export class AnalyticsRepository {
  constructor(private readonly dataSource: DataSource) {}

  async findPersonaName(orgId: string, personaId: string): Promise<string | undefined> {
    // deleted personas are included: their history stays reportable
    const rows: { name: string }[] = await this.dataSource.query(`SELECT name FROM personas WHERE id = $1 AND organization_id = $2`, [
      personaId,
      orgId,
    ]);
    return rows[0]?.name;
  }
}
