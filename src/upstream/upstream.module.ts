import { Module } from '@nestjs/common';
import { CircuitBreakers } from './circuit-breakers';
import { UpstreamClient } from './upstream-client';

/** The one client to the upstream API (pooled connections, retries, a circuit per key), for the proxy and the analysis alike. */
@Module({
  providers: [CircuitBreakers, UpstreamClient],
  exports: [UpstreamClient, CircuitBreakers],
})
export class UpstreamModule {}
