import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module';
import { AuthModule } from '../auth/auth.module';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { PricingModule } from '../pricing/pricing.module';
import { LimitCounterEntity } from './limit-counter.entity';
import { LimitEntity } from './limit.entity';
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
  // PricingService prices reservations; ExchangesRepository reads the recorded spend of proxied calls a new budget starts from
  imports: [TypeOrmModule.forFeature([LimitEntity, LimitCounterEntity]), AuthModule, PricingModule, ExchangesModule, AuditModule],
  controllers: [LimitsController],
  providers: [LimitCountersService, LimitsRepository, RecordedSpendRepository, LimitsService, LimitsAdminService],
  exports: [LimitsService, LimitsAdminService, LimitCountersService],
})
export class LimitsModule {}
