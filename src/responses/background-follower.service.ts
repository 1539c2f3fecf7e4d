import { BeforeApplicationShutdown, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { AppException } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import { ExchangeRecorder } from '../exchanges/recorder/exchange-recorder.service';
import { QueuedResponsesRepository, ResponseRecord } from './queued-responses.repository';
import { followError, hasEnded, ResponseCompletion } from './response-completion';
import { ResponseKeys } from './response-keys';
import { isPermanentFailure, UpstreamResponses } from './upstream-responses';

/** Queued records taken at once by one scan, so that several processes share what is waiting. */
const CLAIM_BATCH = 32;
/** Leases are renewed this many times per lease, so one late renewal does not lose them. */
const RENEWALS_PER_LEASE = 3;

/** One response this process follows. */
interface Follow {
  record: ResponseRecord;
  /** the wait before the next poll, doubled while the response runs or the upstream fails */
  interval: number;
  timer?: NodeJS.Timeout;
  /** the poll under way */
  polling?: Promise<void>;
  abort?: AbortController;
  dropped: boolean;
}

/**
 * Follows every queued background response upstream until it ends, then completes its record (ResponseCompletion).
 * The state lives in the database: the queued records themselves. A server process claims the ones nobody follows
 * with a lease on the row (BACKGROUND_LEASE_MS), renews it while it follows them, and gives it up when it stops; the
 * rows of a process that died are taken over by another once their lease lapses. So a response is followed by one
 * process at a time, across restarts and however many processes share the database.
 *
 * Each response is asked for BACKGROUND_POLL_MS after it was last seen running, the wait doubling up to
 * BACKGROUND_POLL_MAX_MS (and likewise while the upstream fails, with its Retry-After when it gives one); one
 * still running BACKGROUND_FOLLOW_MAX_MS after its creation, or one the upstream refuses to show (an unknown
 * response, a revoked key, no key left), is closed as interrupted, with why. A client reading it later still
 * gets it from upstream (GET /v1/responses/{id}), which completes the record then.
 */
@Injectable()
export class BackgroundFollower implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly follows = new Map<string, Follow>();
  private owner: string | null = null;
  private stopped = false;
  private scanTimer?: NodeJS.Timeout;
  private renewTimer?: NodeJS.Timeout;
  private scanning?: Promise<void>;
  /** when the leases were last renewed (all of them or none: one statement) */
  private renewedAt = 0;

  constructor(
    private readonly records: QueuedResponsesRepository,
    private readonly completion: ResponseCompletion,
    private readonly keys: ResponseKeys,
    private readonly upstream: UpstreamResponses,
    private readonly recorder: ExchangeRecorder,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
  ) {}

  /** Responses this process follows now. */
  get following(): number {
    return this.follows.size;
  }

  /** Server processes only (the CLI follows nothing), and only those allowed to follow any. */
  onApplicationBootstrap(): void {
    const instanceId = this.recorder.instanceId;
    if (!instanceId || this.config.backgroundFollowConcurrency === 0) return;
    this.owner = instanceId;
    this.renewedAt = Date.now();
    this.scheduleScan(0);
    this.renewTimer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.config.backgroundLeaseMs / RENEWALS_PER_LEASE)));
    this.renewTimer.unref();
  }

  /** Stops following, and gives the leases up so that another process takes the responses over at once. */
  async beforeApplicationShutdown(): Promise<void> {
    if (!this.owner || this.stopped) return;
    this.stopped = true;
    clearTimeout(this.scanTimer);
    clearInterval(this.renewTimer);
    await this.scanning;
    const follows = [...this.follows.values()];
    for (const f of follows) this.drop(f);
    await Promise.all(follows.map((f) => f.polling));
    try {
      await this.records.release(this.owner, follows.map((f) => f.record.id));
    } catch (err) {
      // the leases lapse on their own
      this.logger.write('warn', 'background response leases could not be given up', { err });
    }
  }

  private scheduleScan(ms: number): void {
    if (this.stopped) return;
    this.scanTimer = setTimeout(() => {
      this.scanning = this.scan().finally(() => {
        this.scanning = undefined;
        this.scheduleScan(this.config.backgroundPollMs);
      });
    }, ms);
    this.scanTimer.unref();
  }

  /** Claims queued records nobody follows, as many as this process has room for. */
  private async scan(): Promise<void> {
    const room = this.config.backgroundFollowConcurrency - this.follows.size;
    if (room <= 0 || this.stopped) return;
    let claimed: ResponseRecord[];
    try {
      claimed = await this.records.claim(this.owner!, this.config.backgroundLeaseMs, Math.min(room, CLAIM_BATCH));
    } catch (err) {
      this.logger.write('warn', 'queued background responses could not be claimed', { err });
      return;
    }
    for (const record of claimed) {
      // claimed again after its lease lapsed here (renewals failing): followed afresh
      const stale = this.follows.get(record.id);
      if (stale) this.drop(stale);
      const f: Follow = { record, interval: this.config.backgroundPollMs, dropped: false };
      this.follows.set(record.id, f);
      // first asked for BACKGROUND_POLL_MS after its creation (at once when taken over later); one claimed while
      // stopping is given up with the others
      if (!this.stopped) this.schedule(f, Math.max(0, record.createdAt.getTime() + this.config.backgroundPollMs - Date.now()));
    }
  }

  /** Extends the leases of the responses followed; those no longer held (ended elsewhere, or taken over) are let go. */
  private async renew(): Promise<void> {
    if (this.stopped) return;
    const ids = [...this.follows.keys()];
    try {
      const held = await this.records.renew(this.owner!, ids, this.config.backgroundLeaseMs);
      this.renewedAt = Date.now();
      for (const id of ids) {
        const f = this.follows.get(id);
        if (f && !held.has(id)) this.drop(f);
      }
    } catch (err) {
      this.logger.write('warn', 'background response leases could not be renewed', { err, following: ids.length });
      // past its lease another process may follow them: this one stops rather than follow them twice
      if (Date.now() - this.renewedAt >= this.config.backgroundLeaseMs) for (const f of [...this.follows.values()]) this.drop(f);
    }
  }

  private drop(f: Follow): void {
    f.dropped = true;
    clearTimeout(f.timer);
    f.abort?.abort();
    if (this.follows.get(f.record.id) === f) this.follows.delete(f.record.id);
  }

  private schedule(f: Follow, ms: number): void {
    if (f.dropped) return;
    f.timer = setTimeout(() => {
      f.polling = this.poll(f).finally(() => {
        f.polling = undefined;
        f.abort = undefined;
      });
    }, ms);
    f.timer.unref();
  }

  /** The next wait: the current one, doubled for the time after (up to BACKGROUND_POLL_MAX_MS). */
  private backoff(f: Follow, retryAfterMs?: number): number {
    const wait = Math.max(f.interval, retryAfterMs ?? 0);
    f.interval = Math.min(this.config.backgroundPollMaxMs, f.interval * 2);
    return Math.min(wait, this.config.backgroundPollMaxMs);
  }

  private async poll(f: Follow): Promise<void> {
    if (f.dropped) return;
    const { record } = f;
    const age = Date.now() - record.createdAt.getTime();
    try {
      if (record.responseId === null) {
        await this.close(f, followError('background_follow_failed', 'The upstream answered the background request without a response id: it cannot be followed'));
        return;
      }
      if (age > this.config.backgroundFollowMaxMs) {
        const limit = `BACKGROUND_FOLLOW_MAX_MS (${this.config.backgroundFollowMaxMs} ms)`;
        await this.close(f, followError('background_follow_timeout', `The background response was still running after ${limit}; it is no longer followed`));
        return;
      }
      f.abort = new AbortController();
      const key = await this.keys.of(record);
      const answer = await this.upstream.get(key, record.responseId, '', f.abort.signal);
      if (f.dropped) return;
      if (hasEnded(answer.body)) {
        await this.completion.finish(record, answer);
        this.drop(f);
        return;
      }
      this.schedule(f, this.backoff(f));
    } catch (err) {
      if (f.dropped) return;
      if (isPermanentFailure(err)) {
        const message = err instanceof AppException ? err.message : 'The upstream refused to show the response';
        await this.close(f, followError('background_follow_failed', `The background response can no longer be followed: ${message}`)).catch((e: unknown) =>
          this.retryLater(f, e),
        );
        return;
      }
      this.retryLater(f, err);
    }
  }

  /** Closes the record as interrupted and stops following it; a failure to write is retried like a poll. */
  private async close(f: Follow, error: ReturnType<typeof followError>): Promise<void> {
    await this.completion.interrupt(f.record, error);
    this.drop(f);
  }

  private retryLater(f: Follow, err: unknown): void {
    const retryAfter = err instanceof AppException ? Number(err.options.headers?.['Retry-After']) * 1000 : NaN;
    const wait = this.backoff(f, Number.isFinite(retryAfter) ? retryAfter : undefined);
    this.logger.write('warn', 'background response could not be followed; trying again', {
      request_id: f.record.id,
      response_id: f.record.responseId,
      retry_in_ms: wait,
      err,
    });
    this.schedule(f, wait);
  }
}
