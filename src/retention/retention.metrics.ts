import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';

/**
 * The retention job's work in /metrics: what it cleared, deleted and dropped, when it last ran and for how long;
 * and the closed months whose indexes this process rebuilt.
 */
@Injectable()
export class RetentionMetrics {
  private readonly cleared: Counter;
  private readonly deleted: Counter;
  private readonly dropped: Counter;
  private readonly compacted: Counter;
  private readonly lastRun: Gauge;
  private readonly duration: Histogram;

  constructor(metrics: MetricsService) {
    const registers = [metrics.registry];
    this.cleared = new Counter({
      name: 'openai_proxy_retention_bodies_cleared_total',
      help: 'Exchanges whose bodies and text the retention job cleared (content retention)',
      registers,
    });
    this.deleted = new Counter({
      name: 'openai_proxy_retention_exchanges_deleted_total',
      help: 'Exchanges the retention job deleted in batches, with their ratings and analyses (after adding them to the daily rollups)',
      registers,
    });
    this.dropped = new Counter({
      name: 'openai_proxy_retention_partitions_dropped_total',
      help: 'Partitions of the exchanges table the retention job dropped whole',
      registers,
    });
    this.compacted = new Counter({
      name: 'openai_proxy_retention_partitions_compacted_total',
      help: 'Closed monthly partitions of the exchanges table whose indexes this process rebuilt compact',
      registers,
    });
    this.lastRun = new Gauge({
      name: 'openai_proxy_retention_last_run_timestamp_seconds',
      help: 'When this process last finished a retention run (Unix time)',
      registers,
    });
    this.duration = new Histogram({
      name: 'openai_proxy_retention_run_duration_seconds',
      help: 'Duration of a retention run',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers,
    });
  }

  bodiesCleared(n: number): void {
    this.cleared.inc(n);
  }

  exchangesDeleted(n: number): void {
    this.deleted.inc(n);
  }

  partitionsCompacted(n: number): void {
    this.compacted.inc(n);
  }

  ran(seconds: number, partitionsDropped: number): void {
    if (partitionsDropped) this.dropped.inc(partitionsDropped);
    this.duration.observe(seconds);
    this.lastRun.set(Date.now() / 1000);
  }
}
