import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { PricingService } from '../proxy/pricing.service';
import { LimitCountersService } from './limit-counters.service';
import { LimitsAdminService } from './limits-admin.service';
import { LimitsController } from './limits.controller';
import { LimitsRepository } from './limits.repository';
import { LimitsService } from './limits.service';
import { RecordedSpendRepository } from './recorded-spend.repository';

/**
 * Rate limits and budgets per organization and user: LimitsService is the proxy's and the analysis' entry point,
 * LimitsAdminService the CLI's and GET /v1/limits'.
 */
@Module({
  imports: [AuthModule],
  controllers: [LimitsController],
  // PricingService prices reservations; its own instance, since the proxy module imports this one
  providers: [LimitCountersService, LimitsRepository, RecordedSpendRepository, LimitsService, LimitsAdminService, PricingService],
  exports: [LimitsService, LimitsAdminService],
})
export class LimitsModule {}
