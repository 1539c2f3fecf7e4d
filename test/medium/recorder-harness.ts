import { expect } from 'vitest';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { JsonLogger } from '../../src/common/logger';
import { loadConfig } from '../../src/config/app-config';
import { DatabaseHandle, openDatabase } from '../../src/database/embedded-database';
import { runMigrations } from '../../src/database/migrate';
import { buildTypeOrmOptions } from '../../src/database/typeorm-options';
import type { ExchangeOutcome, PendingExchange } from '../../src/exchanges/recorder/exchange-record';
import { ExchangeRecorder } from '../../src/exchanges/recorder/exchange-recorder.service';
import { TEST_ENCRYPTION_KEY, TEST_JWT_SECRET } from '../support/create-test-app';

export interface RecorderBench {
  recorder: ExchangeRecorder;
  dataSource: DataSource;
  logs: string[];
  /** the statements the recorder sent, in order (name: a prepared statement) */
  statements: { name?: string; text: string }[];
  /** stops the recorder as the server does (its pools are let go; the database stays) */
  close(): Promise<void>;
}

export interface MediumDatabase {
  dataSource: DataSource;
  /** an exchange recorder as the server builds it, on this database */
  recorder(opts?: { ownPools?: boolean }): RecorderBench;
  close(): Promise<void>;
}

/**
 * A real database with the migrations applied (DATABASE_URL when set, otherwise a fresh embedded one), and the
 * exchange recorder built on it as the server builds it: the real service, no HTTP.
 */
export async function openMediumDatabase(env: NodeJS.ProcessEnv = {}): Promise<MediumDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'proxy-medium-'));
  const config = loadConfig({
    DATABASE_URL: process.env.DATABASE_URL,
    JWT_SECRET: TEST_JWT_SECRET,
    ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
    LOG_LEVEL: 'debug',
    ...env,
    DATA_DIR: dataDir,
  });
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir, poolSize: 8 });
  const dataSource = new DataSource(buildTypeOrmOptions(db.url, db.maxPool, `openai-proxy:medium-${randomUUID().slice(0, 8)}`));
  await dataSource.initialize();
  await runMigrations(dataSource);
  return {
    dataSource,
    /**
     * `ownPools`: the recorder writes through its own pools with prepared statements, as on PostgreSQL (on the
     * embedded database too: its socket speaks the same protocol, and every connection shares one session, which
     * is where named statements clash).
     */
    recorder(opts = {}) {
      const logs: string[] = [];
      const handle: DatabaseHandle = opts.ownPools ? { url: db.url, embedded: false, maxPool: db.maxPool, close: async () => {} } : db;
      const recorder = new ExchangeRecorder(dataSource, config, handle, new JsonLogger('debug', (line) => logs.push(line)));
      const statements: { name?: string; text: string }[] = [];
      // observed, not replaced: every statement still goes to the database
      const rec = recorder as unknown as { pool(durable: boolean): { query(q: { name?: string; text: string }): Promise<unknown> } };
      const pool = rec.pool.bind(recorder);
      rec.pool = (durable) => {
        const p = pool(durable);
        return { query: (q) => (statements.push({ name: q.name, text: q.text }), p.query(q)) };
      };
      return { recorder, dataSource, logs, statements, close: () => recorder.onApplicationShutdown() };
    },
    async close() {
      await dataSource.destroy();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function pendingRow(tag: string, over: Partial<PendingExchange> = {}): PendingExchange {
  return {
    id: `req_medium_${tag}_${randomUUID().slice(0, 8)}`,
    organizationId: randomUUID(),
    userId: randomUUID(),
    externalUserId: 'medium-user',
    sessionId: `sess_medium_${tag}`,
    personaId: null,
    personaVersion: null,
    endpoint: 'responses',
    model: 'gpt-4o-mini',
    stream: false,
    requestBody: JSON.stringify({ model: 'gpt-4o-mini', input: tag }),
    keyId: randomUUID(),
    keySource: 'org',
    createdAt: new Date(),
    ...over,
  };
}

export function outcomeOf(row: PendingExchange, over: Partial<ExchangeOutcome> = {}): ExchangeOutcome {
  return {
    id: row.id,
    status: 'completed',
    upstreamStatus: 200,
    responseId: `resp_${row.id}`,
    responseBody: JSON.stringify({ id: `resp_${row.id}`, output_text: 'out' }),
    outputText: 'out',
    error: null,
    usage: { input: 3, output: 4, total: 7, cached: null, reasoning: null },
    cost: 0.001,
    latencyMs: 5,
    timeToFirstByteMs: 2,
    ...over,
  };
}

/** The call's record: its exchange, or while it runs its open call (as `status: 'pending'`, `open: true`). */
export async function storedRow(ds: DataSource, id: string): Promise<Record<string, any> | undefined> {
  const rows = await ds.query(
    `SELECT id, status, output_text, total_tokens::int AS total_tokens, request_body, response_body, error, instance_id, false AS open FROM exchanges WHERE id = $1
     UNION ALL
     SELECT id, 'pending', NULL, NULL, request_body, NULL, NULL, instance_id, true FROM open_calls WHERE id = $1`,
    [id],
  );
  // a call is in one table or the other, never both
  expect(rows.length).toBeLessThanOrEqual(1);
  return rows[0];
}
