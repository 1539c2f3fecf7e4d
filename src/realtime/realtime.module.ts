import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { PricingModule } from '../pricing/pricing.module';
import { UpstreamModule } from '../upstream/upstream.module';
import { RealtimeGateway } from './realtime-gateway';

/** `GET /v1/realtime`: the Realtime API's WebSocket relayed with the resolved key (attached to the HTTP server by configureApp). */
@Module({
  imports: [AuthModule, KeysModule, LimitsModule, ExchangesModule, UpstreamModule, PricingModule],
  providers: [RealtimeGateway],
  exports: [RealtimeGateway],
})
export class RealtimeModule {}
