import type { Redis } from 'ioredis';
import type { CounterAdd, CounterStore, CounterTake, TakeOutcome } from './counter-store';

// Runs atomically in Redis: every counter is checked first, and the amounts are added only if none has reached its
// limit. KEYS = counters; ARGV = the amounts, then the limits, then the TTLs in ms.
// Values go back as Redis' own strings (Lua's tostring would cut fractional costs to 14 digits).
const TAKE = `
local n = #KEYS
local values = {}
local refused = 0
for i = 1, n do
  local v = redis.call('GET', KEYS[i]) or '0'
  values[i] = v
  if refused == 0 and tonumber(v) >= tonumber(ARGV[n + i]) then refused = i end
end
if refused == 0 then
  for i = 1, n do
    if tonumber(ARGV[i]) ~= 0 then
      redis.call('INCRBYFLOAT', KEYS[i], ARGV[i])
      if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2 * n + i]) end
    end
  end
end
local out = { tostring(refused) }
for i = 1, n do out[i + 1] = values[i] end
return out
`;

// KEYS = counters; ARGV = amounts then TTLs in ms.
const ADD = `
local n = #KEYS
for i = 1, n do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[i])
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[n + i]) end
end
return n
`;

type ScriptRedis = Redis & {
  limitsTake(numKeys: number, ...args: (string | number)[]): Promise<string[]>;
  limitsAdd(numKeys: number, ...args: (string | number)[]): Promise<number>;
};

const ttl = (expiresAt: number, now: number) => Math.max(1000, Math.ceil(expiresAt - now));

/**
 * Counters in Redis, shared by every process with the same REDIS_URL and REDIS_KEY_PREFIX. Scripts are sent once
 * and then run by SHA (ioredis defineCommand). Keys of one call must live on one node (no Redis Cluster).
 */
export class RedisCounterStore implements CounterStore {
  readonly name = 'redis' as const;
  private readonly redis: ScriptRedis;

  constructor(redis: Redis) {
    redis.defineCommand('limitsTake', { lua: TAKE });
    redis.defineCommand('limitsAdd', { lua: ADD });
    this.redis = redis as ScriptRedis;
  }

  async take(items: CounterTake[], now: number): Promise<TakeOutcome> {
    const out = await this.redis.limitsTake(
      items.length,
      ...items.map((i) => i.key),
      ...items.map((i) => String(i.amount)),
      ...items.map((i) => String(i.limit)),
      ...items.map((i) => ttl(i.expiresAt, now)),
    );
    return { refused: Number(out[0]) - 1, values: out.slice(1).map(Number) };
  }

  async add(items: CounterAdd[], now: number): Promise<void> {
    if (items.length === 0) return;
    await this.redis.limitsAdd(
      items.length,
      ...items.map((i) => i.key),
      ...items.map((i) => String(i.amount)),
      ...items.map((i) => ttl(i.expiresAt, now)),
    );
  }

  async set(items: CounterAdd[], now: number): Promise<void> {
    if (items.length === 0) return;
    const multi = this.redis.multi();
    for (const i of items) multi.set(i.key, String(i.amount), 'PX', ttl(i.expiresAt, now));
    const results = await multi.exec();
    const failed = results?.find(([err]) => err);
    if (failed) throw failed[0];
  }

  async get(keys: string[]): Promise<number[]> {
    if (keys.length === 0) return [];
    const values = await this.redis.mget(...keys);
    return values.map((v) => (v === null ? 0 : Number(v)));
  }
}
