import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { PersonasModule } from '../personas/personas.module';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import { ExchangesController } from './exchanges.controller';
import { ExchangesService } from './exchanges.service';
import { ModelsController } from './models.controller';
import { ModelsService } from './models.service';
import { PricingService } from './pricing.service';
import { ProxyController } from './proxy.controller';
import { ProxyService } from './proxy.service';
import { ProxyDispatch } from './proxy-dispatch';
import { CircuitBreakers } from './circuit-breakers';
import { UpstreamClient } from './upstream-client';
import { UnfinishedResponses } from './unfinished-responses';

@Module({
  imports: [AuthModule, KeysModule, PersonasModule, LimitsModule],
  controllers: [ModelsController, ProxyController, ExchangesController],
  providers: [CircuitBreakers, UpstreamClient, ModelsService, ProxyService, ProxyDispatch, ExchangeRecorder, ExchangesService, PricingService, UnfinishedResponses],
  exports: [UpstreamClient, PricingService, ExchangeRecorder, ExchangesService],
})
export class ProxyModule {}
