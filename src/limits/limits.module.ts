import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { OrganizationEntity } from '../auth/organization.entity';
import { UserEntity } from '../auth/user.entity';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { PricingModule } from '../pricing/pricing.module';
import { LimitCounterEntity } from './limit-counter.entity';
import { LimitEntity } from './limit.entity';
import { LimitCountersService } from './limit-counters.service';
import { LimitsController } from './limits.controller';
import { LimitsService } from './limits.service';

/** Rate limits and budgets per organization and user; LimitsService is the proxy's and the analysis' entry point. */
@Module({
  // PricingService prices reservations; ExchangesRepository reads the recorded spend a new budget starts from
  imports: [TypeOrmModule.forFeature([LimitEntity, LimitCounterEntity, OrganizationEntity, UserEntity]), PricingModule, ExchangesModule],
  controllers: [LimitsController],
  providers: [LimitCountersService, LimitsService],
  exports: [LimitsService],
})
export class LimitsModule {}
