import { Module } from '@nestjs/common';
import { PricingService } from '../proxy/pricing.service';
import { LimitCountersService } from './limit-counters.service';
import { LimitsController } from './limits.controller';
import { LimitsService } from './limits.service';

/** Rate limits and budgets per organization and user; LimitsService is the proxy's and the analysis' entry point. */
@Module({
  controllers: [LimitsController],
  // PricingService prices reservations; its own instance, since the proxy module imports this one
  providers: [LimitCountersService, LimitsService, PricingService],
  exports: [LimitsService],
})
export class LimitsModule {}
