import { Module } from '@nestjs/common';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { ExchangePartitions } from './exchange-partitions';
import { ExchangeIndexCompaction } from './index-compaction';
import { RetentionMetrics } from './retention.metrics';
import { RetentionRepository } from './retention.repository';
import { RetentionService } from './retention.service';
import { UsageRollupsRepository } from './usage-rollups.repository';

/**
 * Retention per organization: bodies cleared after its content retention, exchanges deleted after its retention
 * (their analytics totals kept in daily rollups), old months of `exchanges` dropped whole, closed months' indexes
 * rebuilt compact. The job runs in server processes only.
 */
@Module({
  imports: [ExchangesModule],
  providers: [UsageRollupsRepository, RetentionRepository, ExchangePartitions, ExchangeIndexCompaction, RetentionMetrics, RetentionService],
  exports: [UsageRollupsRepository, RetentionService, ExchangePartitions, ExchangeIndexCompaction],
})
export class RetentionModule {}
