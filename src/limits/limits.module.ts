import { Module } from '@nestjs/common';
import { LimitCountersService } from './limit-counters.service';
import { LimitsController } from './limits.controller';
import { LimitsService } from './limits.service';

/** Rate limits and budgets per organization and user; LimitsService is the proxy's and the analysis' entry point. */
@Module({
  controllers: [LimitsController],
  providers: [LimitCountersService, LimitsService],
  exports: [LimitsService],
})
export class LimitsModule {}
