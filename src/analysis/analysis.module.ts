import { Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { ProxyModule } from '../proxy/proxy.module';
import { AnalysisClaimsRepository } from './analysis-claims.repository';
import { AnalysisConfigsController } from './analysis-configs.controller';
import { AnalysisConfigsService } from './analysis-configs.service';
import { AnalysisController } from './analysis.controller';
import { AnalysisService } from './analysis.service';

@Module({
  imports: [KeysModule, ProxyModule, LimitsModule],
  controllers: [AnalysisConfigsController, AnalysisController],
  providers: [AnalysisConfigsService, AnalysisClaimsRepository, AnalysisService],
  exports: [AnalysisService],
})
export class AnalysisModule {}
