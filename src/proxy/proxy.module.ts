import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { PersonasModule } from '../personas/personas.module';
import { PricingModule } from '../pricing/pricing.module';
import { RelayModule } from '../relay/relay.module';
import { UpstreamModule } from '../upstream/upstream.module';
import { ModelsController } from './models.controller';
import { ModelsService } from './models.service';
import { ProxyController } from './proxy.controller';
import { ProxyService } from './proxy.service';
import { ProxyDispatch } from './proxy-dispatch';

@Module({
  imports: [AuthModule, KeysModule, PersonasModule, LimitsModule, ExchangesModule, UpstreamModule, PricingModule, RelayModule],
  controllers: [ModelsController, ProxyController],
  providers: [ModelsService, ProxyService, ProxyDispatch],
  exports: [ProxyDispatch],
})
export class ProxyModule {}
