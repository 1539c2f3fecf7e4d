import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { loadConfig } from '../../src/config/app-config';
import { RunningServer, startServer } from '../../src/server';

export const TEST_JWT_SECRET = 'test-jwt-secret-0123456789abcdef-0123456789';
export const TEST_ENCRYPTION_KEY = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';

export interface TestApp extends RunningServer {
  /** every log line the server wrote */
  logs: string[];
  dataSource: DataSource;
  /** the environment the server was started with (to start a second process on the same database) */
  env: NodeJS.ProcessEnv;
  dataDir: string;
}

/**
 * Starts the real server (same startServer() and configureApp() as production) on a free port, against
 * DATABASE_URL when set, otherwise an embedded database in a fresh temporary DATA_DIR.
 */
export async function createTestApp(overrides: NodeJS.ProcessEnv = {}): Promise<TestApp> {
  const dataDir = overrides.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'proxy-test-'));
  const env: NodeJS.ProcessEnv = {
    DATABASE_URL: process.env.DATABASE_URL,
    JWT_SECRET: TEST_JWT_SECRET,
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
    LOG_LEVEL: 'debug',
    CACHE_SYNC_INTERVAL_MS: '200',
    // tests drive one key through many injected upstream faults; the circuit breaker has its own test
    CIRCUIT_FAILURE_THRESHOLD: '1000',
    ...overrides,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
  };
  const logs: string[] = [];
  const server = await startServer(loadConfig(env), { logSink: (line) => logs.push(line) });
  const close = server.close.bind(server);
  return Object.assign(server, {
    logs,
    env,
    dataDir,
    dataSource: server.app.get(DataSource),
    async close() {
      await close();
      if (!overrides.DATA_DIR) rmSync(dataDir, { recursive: true, force: true });
    },
  });
}
