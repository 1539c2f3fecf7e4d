import { BeforeApplicationShutdown, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { JsonLogger } from '../../common/logger';
import { ExchangeRecorder } from '../recorder/exchange-recorder.service';
import { UsageDailyRepository } from './usage-daily.repository';

/** how often a server process merges the appended usage changes (any one process at a time does it) */
export const USAGE_MERGE_INTERVAL_MS = 5_000;

/**
 * Keeps usage_daily_changes small: server processes merge it into usage_daily every few seconds, so a read of a
 * day adds a handful of appended rows at most. The CLI does not.
 */
@Injectable()
export class UsageDailyMerger implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;
  private stopped = false;

  constructor(
    private readonly repo: UsageDailyRepository,
    private readonly recorder: ExchangeRecorder,
    private readonly logger: JsonLogger,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.recorder.instanceId) return;
    this.schedule(USAGE_MERGE_INTERVAL_MS);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.repo
        .mergeAll()
        .catch((err) => this.logger.write('warn', 'merging daily usage failed', { err }))
        .finally(() => {
          this.running = undefined;
          this.schedule(USAGE_MERGE_INTERVAL_MS);
        });
    }, ms);
    this.timer.unref();
  }
}
