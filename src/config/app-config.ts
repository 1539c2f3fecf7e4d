import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_STATEMENT_TIMEOUT_MS } from '../database/typeorm-options';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** Validated runtime configuration; built once by loadConfig() and injected everywhere as AppConfig. */
export class AppConfig {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  dataDir: string;
  jwtSecret: string;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
  encryptionKey: Buffer;
  encryptionKeyPrevious: Buffer | undefined;
  openaiBaseUrl: string;
  upstreamTimeoutMs: number;
  streamIdleTimeoutMs: number;
  upstreamMaxRetries: number;
  retryAfterCapMs: number;
  upstreamMaxBodyBytes: number;
  logLevel: LogLevel;
  bodyLimitBytes: number;
  /** a relayed upload (multipart or binary body: files, uploads, audio, images) may be this large; streamed, never held */
  uploadLimitBytes: number;
  /** relayed JSON bodies are stored up to this size; a longer one is stored cut, flagged body_truncated */
  recordBodyMaxBytes: number;
  /** a request's headers must arrive within this (then 408) */
  headersTimeoutMs: number;
  /** a request, headers and body, must arrive within this (then 408) */
  requestTimeoutMs: number;
  dbPoolSize: number;
  /** the bound on one database statement of the app: the database cancels one that runs longer (then 503) */
  dbQueryTimeoutMs: number;
  pricesFile: string | undefined;
  cacheSyncIntervalMs: number;
  recordFlushMs: number;
  /** a non-streaming call's pending row is written once the call has run this long (one whole row if it ends first) */
  recordPendingAfterMs: number;
  circuitFailureThreshold: number;
  circuitCooldownMs: number;
  /** resolved upstream keys kept in memory (entries per (organization, user) and per organization); the least recently used go first */
  keyCacheSize: number;
  /** the longest a rate-limited key rests (its Retry-After is capped to this) */
  keyRestMaxMs: number;
  /** how long a rate-limited key rests when the upstream gave no Retry-After */
  keyRestDefaultMs: number;
  /** GET /v1/models: how long an upstream's model list is answered with before it is fetched again (0: every time) */
  modelsCacheMs: number;
  /** completed exchange records wait for the WAL flush (durable across a database crash) */
  recordSyncCommit: boolean;
  /**
   * before_answer: a proxied answer leaves once its record is committed (no 2xx without a record, read-your-writes
   * everywhere); after_answer: the answer leaves first and the record is committed a moment later
   */
  recordWrite: 'before_answer' | 'after_answer';
  /** RECORD_WRITE=after_answer: completions waiting for the database beyond which answers wait for their records */
  recordAfterAnswerMax: number;
  /** a record write the database has not finished in this time is cancelled and counts as the database being unreachable */
  recordWriteTimeoutMs: number;
  /** shared limit counters; unset → counters live in PostgreSQL */
  redisUrl: string | undefined;
  /** prefix of every Redis key this deployment writes (several deployments may share one Redis) */
  redisKeyPrefix: string;
  /** on SIGTERM, how long calls in flight may take to finish before their connections are cut */
  shutdownTimeoutMs: number;
  /** a background response is asked for upstream this long after it was last seen running, doubling up to backgroundPollMaxMs */
  backgroundPollMs: number;
  backgroundPollMaxMs: number;
  /** a background response still running this long after its creation is no longer followed: its record is closed as interrupted */
  backgroundFollowMaxMs: number;
  /** a process's claim on the background responses it follows, renewed while it runs; another process takes them over once it lapses */
  backgroundLeaseMs: number;
  /** background responses one process follows at once; 0: this process follows none */
  backgroundFollowConcurrency: number;
  /** how often a server process runs the retention job (clearing and deleting expired exchanges), at most a minute; 0: this process runs none */
  retentionIntervalMs: number;
  /** exchanges cleared or deleted per retention transaction: small batches keep each lock short */
  retentionBatch: number;
  /** development secrets read from (or generated into) DATA_DIR, when the environment did not give both */
  devSecrets: { file: string; generated: boolean } | undefined;
}

export class ConfigError extends Error {}

const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

function int(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3 };

export function parseSize(name: string, raw: string): number {
  const m = /^(\d+)\s*(b|kb|k|mb|m|gb)?$/i.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} must be a size like 10mb or 1048576, got "${raw}"`);
  return Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toLowerCase()];
}

/** A 32-byte key given as 64 hex characters or as base64. */
export function parseMasterKey(name: string, raw: string): Buffer {
  const value = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) {
    const buf = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (buf.length === 32) return buf;
  }
  throw new ConfigError(`${name} must be 32 bytes given as 64 hex characters or as base64`);
}

function url(name: string, raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
    return raw.replace(/\/+$/, '');
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL, got "${raw}"`);
  }
}

interface DevSecrets {
  jwt_secret: string;
  encryption_key: string;
}

/** Development secrets for the embedded mode: generated once, kept in DATA_DIR so data stays readable across restarts. */
function devSecrets(dataDir: string): DevSecrets & { file: string; generated: boolean } {
  const file = join(dataDir, 'secrets.json');
  const read = () => ({ ...(JSON.parse(readFileSync(file, 'utf8')) as DevSecrets), file, generated: false });
  if (existsSync(file)) return read();
  mkdirSync(dataDir, { recursive: true });
  const secrets: DevSecrets = {
    jwt_secret: randomBytes(48).toString('base64url'),
    encryption_key: randomBytes(32).toString('hex'),
  };
  try {
    writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return read();
  }
  return { ...secrets, file, generated: true };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const c = new AppConfig();
  c.port = int(env, 'PORT', 8000, 0, 65535);
  c.host = env.HOST || '0.0.0.0';
  c.databaseUrl = env.DATABASE_URL?.trim() || undefined;
  if (c.databaseUrl && !/^postgres(ql)?:\/\//.test(c.databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  c.dataDir = resolve(env.DATA_DIR || './data');

  let jwtSecret = env.JWT_SECRET;
  let encryptionKey = env.ENCRYPTION_KEY;
  if (!c.databaseUrl && (!jwtSecret || !encryptionKey)) {
    const dev = devSecrets(c.dataDir);
    c.devSecrets = { file: dev.file, generated: dev.generated };
    jwtSecret ||= dev.jwt_secret;
    encryptionKey ||= dev.encryption_key;
  }
  if (!jwtSecret) throw new ConfigError('JWT_SECRET is required when DATABASE_URL is set (at least 32 bytes)');
  if (Buffer.byteLength(jwtSecret, 'utf8') < 32) throw new ConfigError('JWT_SECRET is too weak: it must be at least 32 bytes');
  if (!encryptionKey) throw new ConfigError('ENCRYPTION_KEY is required when DATABASE_URL is set (32 bytes as hex or base64)');
  c.jwtSecret = jwtSecret;
  c.encryptionKey = parseMasterKey('ENCRYPTION_KEY', encryptionKey);
  c.encryptionKeyPrevious = env.ENCRYPTION_KEY_PREVIOUS
    ? parseMasterKey('ENCRYPTION_KEY_PREVIOUS', env.ENCRYPTION_KEY_PREVIOUS)
    : undefined;
  c.jwtIssuer = env.JWT_ISSUER || undefined;
  c.jwtAudience = env.JWT_AUDIENCE || undefined;

  c.openaiBaseUrl = url('OPENAI_BASE_URL', env.OPENAI_BASE_URL || 'https://api.openai.com/v1');
  c.upstreamTimeoutMs = int(env, 'UPSTREAM_TIMEOUT_MS', 60_000, 1);
  c.streamIdleTimeoutMs = int(env, 'STREAM_IDLE_TIMEOUT_MS', 120_000, 1);
  c.upstreamMaxRetries = int(env, 'UPSTREAM_MAX_RETRIES', 2, 0, 10);
  c.retryAfterCapMs = int(env, 'RETRY_AFTER_CAP_MS', 10_000, 0);
  c.upstreamMaxBodyBytes = env.UPSTREAM_MAX_BODY ? parseSize('UPSTREAM_MAX_BODY', env.UPSTREAM_MAX_BODY) : 50 * 1024 ** 2;

  const level = (env.LOG_LEVEL || 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  c.logLevel = level;
  c.bodyLimitBytes = env.BODY_LIMIT ? parseSize('BODY_LIMIT', env.BODY_LIMIT) : 10 * 1024 ** 2;
  c.uploadLimitBytes = env.UPLOAD_LIMIT ? parseSize('UPLOAD_LIMIT', env.UPLOAD_LIMIT) : 1024 ** 3;
  c.recordBodyMaxBytes = env.RECORD_BODY_MAX ? parseSize('RECORD_BODY_MAX', env.RECORD_BODY_MAX) : 1024 ** 2;
  c.headersTimeoutMs = int(env, 'HEADERS_TIMEOUT_MS', 10_000, 100, 600_000);
  c.requestTimeoutMs = int(env, 'REQUEST_TIMEOUT_MS', 60_000, 100, 3_600_000);
  if (c.headersTimeoutMs > c.requestTimeoutMs) throw new ConfigError('HEADERS_TIMEOUT_MS must not be greater than REQUEST_TIMEOUT_MS');
  c.dbPoolSize = int(env, 'DB_POOL_SIZE', 10, 1, 1000);
  c.dbQueryTimeoutMs = int(env, 'DB_QUERY_TIMEOUT_MS', DEFAULT_STATEMENT_TIMEOUT_MS, 100, 3_600_000);
  c.pricesFile = env.PRICES_FILE || undefined;
  c.cacheSyncIntervalMs = int(env, 'CACHE_SYNC_INTERVAL_MS', 1000, 50);
  c.recordFlushMs = int(env, 'RECORD_FLUSH_MS', 2, 0, 1000);
  c.recordPendingAfterMs = int(env, 'RECORD_PENDING_AFTER_MS', 20, 0, 60_000);
  c.circuitFailureThreshold = int(env, 'CIRCUIT_FAILURE_THRESHOLD', 10, 1, 100_000);
  c.circuitCooldownMs = int(env, 'CIRCUIT_COOLDOWN_MS', 30_000, 100);
  c.keyCacheSize = int(env, 'KEY_CACHE_SIZE', 50_000, 1);
  c.keyRestMaxMs = int(env, 'KEY_REST_MAX_MS', 300_000, 0);
  c.keyRestDefaultMs = int(env, 'KEY_REST_DEFAULT_MS', 10_000, 0);
  c.modelsCacheMs = int(env, 'MODELS_CACHE_MS', 60_000, 0);
  const sync = (env.RECORD_SYNC_COMMIT || 'on').toLowerCase();
  if (!['on', 'off', 'true', 'false', '1', '0'].includes(sync)) throw new ConfigError('RECORD_SYNC_COMMIT must be on or off');
  c.recordSyncCommit = ['on', 'true', '1'].includes(sync);
  const write = (env.RECORD_WRITE || 'before_answer').toLowerCase();
  if (write !== 'before_answer' && write !== 'after_answer') throw new ConfigError('RECORD_WRITE must be before_answer or after_answer');
  c.recordWrite = write;
  c.recordAfterAnswerMax = int(env, 'RECORD_AFTER_ANSWER_MAX', 1000, 1, 1_000_000);
  c.recordWriteTimeoutMs = int(env, 'RECORD_WRITE_TIMEOUT_MS', 5000, 100, 600_000);
  c.redisUrl = env.REDIS_URL?.trim() || undefined;
  if (c.redisUrl && !/^rediss?:\/\//.test(c.redisUrl)) throw new ConfigError('REDIS_URL must be a redis:// or rediss:// URL');
  c.redisKeyPrefix = env.REDIS_KEY_PREFIX ?? 'openai-proxy:';
  c.shutdownTimeoutMs = int(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 0, 3_600_000);
  c.backgroundPollMs = int(env, 'BACKGROUND_POLL_MS', 2000, 10, 3_600_000);
  c.backgroundPollMaxMs = int(env, 'BACKGROUND_POLL_MAX_MS', 30_000, 10, 3_600_000);
  if (c.backgroundPollMaxMs < c.backgroundPollMs) throw new ConfigError('BACKGROUND_POLL_MAX_MS must not be less than BACKGROUND_POLL_MS');
  c.backgroundFollowMaxMs = int(env, 'BACKGROUND_FOLLOW_MAX_MS', 86_400_000, 1000);
  c.backgroundLeaseMs = int(env, 'BACKGROUND_LEASE_MS', 60_000, 300, 3_600_000);
  c.backgroundFollowConcurrency = int(env, 'BACKGROUND_FOLLOW_CONCURRENCY', 200, 0, 100_000);
  c.retentionIntervalMs = int(env, 'RETENTION_INTERVAL_MS', 60_000, 0, 60_000);
  if (c.retentionIntervalMs > 0 && c.retentionIntervalMs < 100) throw new ConfigError('RETENTION_INTERVAL_MS must be 0 (off) or between 100 and 60000');
  c.retentionBatch = int(env, 'RETENTION_BATCH', 500, 1, 10_000);
  return c;
}
