import { Global, MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { PricingModule } from '../pricing/pricing.module';
import { MetricsController } from './metrics.controller';
import { MetricsMiddleware } from './metrics.middleware';
import { MetricsService } from './metrics.service';

/** Prometheus metrics; global so the proxy, the limits and the analysis can report without importing it. */
@Global()
@Module({
  imports: [PricingModule],
  controllers: [MetricsController],
  providers: [MetricsService],
  exports: [MetricsService],
})
export class MetricsModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(MetricsMiddleware).forRoutes('*path');
  }
}
