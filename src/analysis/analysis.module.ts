import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { PricingModule } from '../pricing/pricing.module';
import { UpstreamModule } from '../upstream/upstream.module';
import { AnalysisClaimEntity } from './analysis-claim.entity';
import { AnalysisConfigEntity } from './analysis-config.entity';
import { AnalysisResultEntity } from './analysis-result.entity';
import { AnalysisClaimsRepository } from './analysis-claims.repository';
import { AnalysisConfigsController } from './analysis-configs.controller';
import { AnalysisConfigsService } from './analysis-configs.service';
import { AnalysisController } from './analysis.controller';
import { AnalysisService } from './analysis.service';

@Module({
  imports: [
    TypeOrmModule.forFeature([AnalysisConfigEntity, AnalysisResultEntity, AnalysisClaimEntity]),
    KeysModule,
    ExchangesModule,
    UpstreamModule,
    PricingModule,
    LimitsModule,
    AuditModule,
  ],
  controllers: [AnalysisConfigsController, AnalysisController],
  providers: [AnalysisConfigsService, AnalysisClaimsRepository, AnalysisService],
  exports: [AnalysisService],
})
export class AnalysisModule {}
