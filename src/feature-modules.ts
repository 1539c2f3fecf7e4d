import { AnalysisModule } from './analysis/analysis.module';
import { AnalyticsModule } from './analytics/analytics.module';
import { AuditModule } from './audit/audit.module';
import { AuthModule } from './auth/auth.module';
import { EndUsersModule } from './end-users/end-users.module';
import { ExchangesModule } from './exchanges/exchanges.module';
import { HealthModule } from './health/health.module';
import { KeysModule } from './keys/keys.module';
import { LimitsModule } from './limits/limits.module';
import { MetricsModule } from './metrics/metrics.module';
import { PersonasModule } from './personas/personas.module';
import { PricingModule } from './pricing/pricing.module';
import { ProxyModule } from './proxy/proxy.module';
import { RatingsModule } from './ratings/ratings.module';
import { RealtimeModule } from './realtime/realtime.module';
import { ResponsesModule } from './responses/responses.module';
import { RetentionModule } from './retention/retention.module';
import { UpstreamModule } from './upstream/upstream.module';

/** The feature modules, shared by the HTTP server (AppModule) and the admin CLI (AdminCliModule). */
export const FEATURE_MODULES = [
  AuditModule,
  AuthModule,
  KeysModule,
  PricingModule,
  UpstreamModule,
  ExchangesModule,
  ProxyModule,
  ResponsesModule,
  RealtimeModule,
  HealthModule,
  PersonasModule,
  RatingsModule,
  AnalyticsModule,
  AnalysisModule,
  MetricsModule,
  LimitsModule,
  EndUsersModule,
  RetentionModule,
];
