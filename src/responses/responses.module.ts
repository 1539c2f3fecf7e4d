import { Module } from '@nestjs/common';
import { ExchangesModule } from '../exchanges/exchanges.module';
import { KeysModule } from '../keys/keys.module';
import { LimitsModule } from '../limits/limits.module';
import { MetricsService } from '../metrics/metrics.service';
import { PricingModule } from '../pricing/pricing.module';
import { UpstreamModule } from '../upstream/upstream.module';
import { BackgroundFollower } from './background-follower.service';
import { QueuedResponsesRepository } from './queued-responses.repository';
import { ResponseCompletion } from './response-completion';
import { ResponseKeys } from './response-keys';
import { ResponsesController } from './responses.controller';
import { ResponsesService } from './responses.service';
import { UpstreamResponses } from './upstream-responses';

/** Responses made through the proxy: retrieving them, and following background responses upstream until they end. */
@Module({
  imports: [ExchangesModule, KeysModule, LimitsModule, PricingModule, UpstreamModule],
  controllers: [ResponsesController],
  providers: [QueuedResponsesRepository, ResponseKeys, UpstreamResponses, ResponseCompletion, ResponsesService, BackgroundFollower],
})
export class ResponsesModule {
  constructor(metrics: MetricsService, follower: BackgroundFollower, completion: ResponseCompletion) {
    // the gauge is read at scrape time only
    completion.countWith(metrics.registerBackgroundResponses(() => follower.following));
  }
}
