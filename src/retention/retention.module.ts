import { Module } from '@nestjs/common';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { ExchangePartitions } from './exchange-partitions';
import { RetentionMetrics } from './retention.metrics';
import { RetentionRepository } from './retention.repository';
import { RetentionService } from './retention.service';
import { UsageRollupsRepository } from './usage-rollups.repository';

/**
 * Retention per organization: bodies cleared after its content retention, exchanges deleted after its retention
 * (their analytics totals kept in daily rollups), old months of `exchanges` dropped whole. The job runs in server
 * processes only.
 */
@Module({
  imports: [ExchangesModule],
  providers: [UsageRollupsRepository, RetentionRepository, ExchangePartitions, RetentionMetrics, RetentionService],
  exports: [UsageRollupsRepository, RetentionService, ExchangePartitions],
})
export class RetentionModule {}
