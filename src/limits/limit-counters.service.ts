import { Injectable, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Redis } from 'ioredis';
import { DataSource, EntityManager } from 'typeorm';
import { JsonLogger } from '../common/logger';
import { AppConfig } from '../config/app-config';
import type { CounterAdd, CounterStore, CounterTake, TakeOutcome } from './counter-store';
import { userCounterPrefix } from './limit-definitions';
import { PgCounterStore } from './pg-counter-store';
import { RedisCounterStore } from './redis-counter-store';

/** One item per key, amounts summed (a settlement releases and adds on the same counters in one round trip). */
function mergeByKey(items: CounterAdd[]): CounterAdd[] {
  const byKey = new Map<string, CounterAdd>();
  for (const i of items) {
    const prev = byKey.get(i.key);
    byKey.set(i.key, prev ? { ...prev, amount: prev.amount + i.amount } : i);
  }
  return [...byKey.values()].filter((i) => i.amount !== 0);
}

/** A LIKE pattern matching every string that starts with `prefix`. */
const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
/** A Redis MATCH pattern matching `text` literally. */
const globEscaped = (text: string) => text.replace(/[\\*?[\]]/g, (c) => `\\${c}`);

const PURGE_INTERVAL_MS = 10 * 60_000;
const REDIS_READY_WAIT_MS = 2000;

/**
 * The shared limit counters: Redis when REDIS_URL is set and reachable, PostgreSQL otherwise.
 *
 * When Redis goes away, every call switches to PostgreSQL at once (no queueing, no waiting for a reconnect) and the
 * service keeps enforcing limits there; ioredis reconnects in the background and the counters move back to Redis
 * when it is ready again. Counts do not follow a switch: the minute windows (RPM/TPM) start afresh in the other
 * store, so during the minute of a switch up to one extra window's worth of requests or tokens can be admitted;
 * budget counters are recomputed from the recorded costs of the day and month (onSwitch) so they stay right.
 */
@Injectable()
export class LimitCountersService implements OnModuleInit, OnApplicationShutdown {
  private readonly pg: PgCounterStore;
  private readonly redisStore?: RedisCounterStore;
  private readonly redis?: Redis;
  /** true once Redis failed, until it is ready again */
  private degraded = false;
  private purgeTimer?: NodeJS.Timeout;
  private readonly switchHandlers: ((store: CounterStore) => void)[] = [];

  constructor(
    dataSource: DataSource,
    private readonly config: AppConfig,
    private readonly logger: JsonLogger,
  ) {
    this.pg = new PgCounterStore(dataSource);
    if (config.redisUrl) {
      this.redis = new Redis(config.redisUrl, {
        // a call never waits for Redis to come back: it fails at once and is counted in PostgreSQL instead
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: 1000,
        connectTimeout: 2000,
        retryStrategy: (times) => Math.min(200 * times, 2000),
        lazyConnect: true,
      });
      this.redis.on('error', () => this.markDegraded('error'));
      this.redis.on('close', () => this.markDegraded('closed'));
      this.redis.on('ready', () => {
        if (!this.degraded) return;
        this.degraded = false;
        this.logger.write('info', 'limit counters back on Redis', {});
        this.emitSwitch(this.redisStore!);
      });
      this.redisStore = new RedisCounterStore(this.redis);
    }
  }

  async onModuleInit(): Promise<void> {
    this.purgeTimer = setInterval(() => void this.pg.purgeExpired().catch(() => undefined), PURGE_INTERVAL_MS);
    this.purgeTimer.unref();
    if (!this.redis) return;
    const ready = new Promise<void>((resolve) => {
      const done = () => resolve();
      this.redis!.once('ready', done);
      setTimeout(done, REDIS_READY_WAIT_MS).unref();
    });
    this.redis.connect().catch(() => undefined);
    await ready;
    if (this.redis.status !== 'ready') {
      this.degraded = true;
      this.logger.write('warn', 'Redis is not reachable; limit counters use PostgreSQL until it is', {});
    }
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    if (this.redis) {
      this.redis.removeAllListeners('close');
      this.redis.removeAllListeners('ready');
      this.redis.disconnect();
    }
  }

  /** The store that answers right now (for tests and `GET /v1/limits`). */
  get current(): 'redis' | 'postgres' {
    return this.redis && this.redis.status === 'ready' ? 'redis' : 'postgres';
  }

  /** Called after the counters moved to another store (budget counters are recomputed there). */
  onSwitch(handler: (store: CounterStore) => void): void {
    this.switchHandlers.push(handler);
  }

  /** Checks and takes the counters of an admission; says in which store they were taken. */
  take(items: CounterTake[], now: number): Promise<TakeOutcome & { store: CounterStore['name'] }> {
    return this.run(async (s) => ({ ...(await s.take(items, now)), store: s.name }));
  }

  /**
   * Settles what admissions reserved: `releases` (negative amounts) only in the store the reservation was taken
   * in, `additions` wherever the counters are now. After a switch the reservation stays behind in the other store,
   * where its window expires, and the store that took over was rebuilt without it.
   */
  settle(additions: CounterAdd[], releases: CounterAdd[], reservedIn: CounterStore['name'], now: number): Promise<void> {
    return this.run((s) => s.add(mergeByKey(s.name === reservedIn ? [...additions, ...releases] : additions), now));
  }

  set(items: CounterAdd[], now: number): Promise<void> {
    return this.run((s) => s.set(items, now));
  }

  get(keys: string[]): Promise<number[]> {
    return this.run((s) => s.get(keys));
  }

  /**
   * Deletes the PostgreSQL counters of these users inside the caller's transaction (an erasure). Returns how many
   * there were. The Redis ones go with forgetUsersInRedis once that transaction has committed.
   */
  async deleteUserCounters(manager: EntityManager, userIds: string[]): Promise<number> {
    if (!userIds.length) return 0;
    const prefixes = userIds.map((id) => likePrefix(userCounterPrefix(this.config.redisKeyPrefix, id)));
    // TypeORM answers a DELETE with [rows, count]
    const [, count] = (await manager.query(`DELETE FROM limit_counters WHERE key LIKE ANY($1::text[])`, [prefixes])) as [unknown[], number];
    return count;
  }

  /** Deletes these users' counters from Redis (when it is configured); returns how many keys went. */
  async forgetUsersInRedis(userIds: string[]): Promise<number> {
    if (!this.redis || this.redis.status !== 'ready') return 0;
    let deleted = 0;
    for (const id of userIds) {
      const match = `${globEscaped(userCounterPrefix(this.config.redisKeyPrefix, id))}*`;
      let cursor = '0';
      do {
        const [next, keys] = await this.redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
        cursor = next;
        if (keys.length) deleted += await this.redis.del(...keys);
      } while (cursor !== '0');
    }
    return deleted;
  }

  private async run<T>(op: (store: CounterStore) => Promise<T>): Promise<T> {
    if (this.redisStore && this.redis!.status === 'ready') {
      try {
        return await op(this.redisStore);
      } catch (err) {
        // a script error (not a connection problem) would fail the same way in a moment: still answer from PostgreSQL
        this.logger.write('warn', 'Redis limit counter call failed; using PostgreSQL', { err });
        this.markDegraded('command failed');
      }
    }
    return op(this.pg);
  }

  private markDegraded(reason: string): void {
    if (this.degraded || !this.redis) return;
    this.degraded = true;
    this.logger.write('warn', 'Redis is unreachable; limit counters use PostgreSQL until it is back', { reason });
    this.emitSwitch(this.pg);
  }

  private emitSwitch(store: CounterStore): void {
    for (const h of this.switchHandlers) h(store);
  }
}
