import { Module } from '@nestjs/common';
import { PricingService } from './pricing.service';

/** The price table: costs of proxied and analysis calls, budget reservations, and the model families metrics label by. */
@Module({
  providers: [PricingService],
  exports: [PricingService],
})
export class PricingModule {}
