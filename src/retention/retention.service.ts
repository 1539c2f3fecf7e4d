import { BeforeApplicationShutdown, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import { ExchangePartitions } from './exchange-partitions';
import { ExchangeIndexCompaction } from './index-compaction';
import { RetentionMetrics } from './retention.metrics';
import { OrgRetention, RetentionRepository } from './retention.repository';

const DAY_MS = 86_400_000;

/** What one run of the retention job did. */
export interface RetentionRun {
  bodiesCleared: number;
  exchangesDeleted: number;
  partitionsDropped: number;
  /** organizations skipped because another process was working on them */
  busy: number;
}

/**
 * The retention job: per organization, clears bodies and text of exchanges older than its content retention and
 * deletes exchanges older than its retention (adding them to the daily rollups first), in small batches, each its
 * own short transaction. Whole partitions of `exchanges` that every organization is done with are dropped at
 * once instead. Server processes run it every RETENTION_INTERVAL_MS (the CLI does not); any number of them may
 * run it at once (see RetentionRepository). Beside it, not waited for by the job (a month's rebuild takes seconds to
 * minutes), the indexes of months that are over are rebuilt compact (ExchangeIndexCompaction).
 */
@Injectable()
export class RetentionService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private compacting?: Promise<unknown>;
  private stopped = false;

  constructor(
    private readonly repo: RetentionRepository,
    private readonly partitions: ExchangePartitions,
    private readonly compaction: ExchangeIndexCompaction,
    private readonly metrics: RetentionMetrics,
    private readonly recorder: ExchangeRecorder,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.recorder.instanceId || this.config.retentionIntervalMs === 0) return;
    this.schedule(0);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.compaction.stop();
    await Promise.all([this.running, this.compacting]);
  }

  /**
   * One run over every organization with a retention, as of `now`. Each organization's work goes until nothing
   * is left or `maxBatches` batches were done (the next run goes on), so one large backlog never starves the rest.
   */
  async runOnce(now: Date = new Date(), maxBatches = 200): Promise<RetentionRun> {
    const started = process.hrtime.bigint();
    const run: RetentionRun = { bodiesCleared: 0, exchangesDeleted: 0, partitionsDropped: 0, busy: 0 };
    await this.partitions.ensureAhead(now);
    const orgs = await this.repo.organizationsWithRetention();
    run.partitionsDropped = await this.partitions.dropExpired(now);
    for (const org of orgs) {
      if (this.stopped) break;
      try {
        await this.runFor(org, now, maxBatches, run);
      } catch (err) {
        // a lock not granted in time (a row the proxy is writing), most likely: the next run goes on from there
        this.logger.write('warn', 'retention of an organization stopped', { orgId: org.orgId, err });
      }
    }
    this.metrics.ran(Number(process.hrtime.bigint() - started) / 1e9, run.partitionsDropped);
    return run;
  }

  private async runFor(org: OrgRetention, now: Date, maxBatches: number, run: RetentionRun): Promise<void> {
    const batch = this.config.retentionBatch;
    if (org.days !== null) {
      const cutoff = new Date(now.getTime() - org.days * DAY_MS);
      for (let i = 0; i < maxBatches && !this.stopped; i++) {
        const n = await this.repo.deleteBatch(org.orgId, cutoff, batch);
        if (n === null) run.busy++;
        if (!n) break;
        run.exchangesDeleted += n;
        this.metrics.exchangesDeleted(n);
        if (n < batch) break;
      }
    }
    if (org.contentDays !== null) {
      const cutoff = new Date(now.getTime() - org.contentDays * DAY_MS);
      for (let i = 0; i < maxBatches && !this.stopped; i++) {
        const n = await this.repo.clearContentBatch(org.orgId, cutoff, batch);
        if (n === null) run.busy++;
        if (!n) break;
        run.bodiesCleared += n;
        this.metrics.bodiesCleared(n);
        if (n < batch) break;
      }
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.compacting ??= this.compaction
        .compactDue(new Date())
        .then((n) => this.metrics.partitionsCompacted(n))
        .catch((err) =>
          this.stopped
            ? this.logger.write('info', 'exchange partition indexes: compaction stopped with the process (done on the next start)', { err })
            : this.logger.write('warn', 'exchange partition indexes could not be compacted', { err }),
        )
        .finally(() => (this.compacting = undefined));
      this.running = this.runOnce()
        .then((run) => {
          if (run.bodiesCleared || run.exchangesDeleted || run.partitionsDropped) this.logger.write('info', 'retention', { ...run });
        })
        .catch((err) => this.logger.write('warn', 'retention run failed', { err }))
        .finally(() => {
          this.running = undefined;
          this.schedule(this.config.retentionIntervalMs);
        });
    }, ms);
    this.timer.unref();
  }
}
