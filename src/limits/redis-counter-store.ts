import type { Redis } from 'ioredis';
import type { AdmitOutcome, CounterAdd, CounterIncrement, CounterRead, CounterStore } from './counter-store';

// Runs atomically in Redis: check every counter first, then apply the increments only if all pass.
// KEYS = reads then increments; ARGV = number of reads, the limits (one per key), the increments' TTLs in ms.
// Values go back as strings (Redis would truncate Lua numbers to integers, and costs are fractional).
const ADMIT = `
local nr = tonumber(ARGV[1])
local n = #KEYS
local values = {}
local refused = 0
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  values[i] = v
  local lim = tonumber(ARGV[1 + i])
  if refused == 0 then
    if i <= nr then
      if v >= lim then refused = i end
    elseif v + 1 > lim then
      refused = i
    end
  end
end
if refused == 0 then
  for i = nr + 1, n do
    values[i] = redis.call('INCR', KEYS[i])
    if values[i] == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1 + n + i - nr]) end
  end
end
local out = { tostring(refused) }
for i = 1, n do out[i + 1] = tostring(values[i]) end
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
  limitsAdmit(numKeys: number, ...args: (string | number)[]): Promise<string[]>;
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
    redis.defineCommand('limitsAdmit', { lua: ADMIT });
    redis.defineCommand('limitsAdd', { lua: ADD });
    this.redis = redis as ScriptRedis;
  }

  async admit(reads: CounterRead[], increments: CounterIncrement[], now: number): Promise<AdmitOutcome> {
    const keys = [...reads.map((r) => r.key), ...increments.map((i) => i.key)];
    const args = [
      reads.length,
      ...reads.map((r) => r.limit),
      ...increments.map((i) => i.limit),
      ...increments.map((i) => ttl(i.expiresAt, now)),
    ];
    const out = await this.redis.limitsAdmit(keys.length, ...keys, ...args);
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
