import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { PricingModule } from '../pricing/pricing.module';
import { UpstreamModule } from '../upstream/upstream.module';
import { ObjectOwners } from './object-owners';
import { RelayService } from './relay.service';
import { UpstreamObjectEntity } from './upstream-object.entity';

/** Every OpenAI route without a handler of its own, and who owns the upstream objects made through the proxy. */
@Module({
  imports: [TypeOrmModule.forFeature([UpstreamObjectEntity]), KeysModule, ExchangesModule, UpstreamModule, LimitsModule, PricingModule],
  providers: [ObjectOwners, RelayService],
  exports: [ObjectOwners, RelayService],
})
export class RelayModule {}
