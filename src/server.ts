import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import { TokensService } from './auth/tokens.service';
import { configureApp } from './app.setup';
import { DrainOutcome, HttpDrain } from './common/http-drain';
import { JsonLogger, LogSink } from './common/logger';
import { AppConfig } from './config/app-config';
import { ChangeFeedService } from './database/change-feed.service';
import { DatabaseHandle, startEmbeddedDatabase } from './database/embedded-database';
import { migrate } from './database/migrate';
import { KeysService } from './keys/keys.service';

export interface RunningServer {
  app: INestApplication;
  /** e.g. http://127.0.0.1:8000 */
  url: string;
  port: number;
  instanceId: string;
  db: DatabaseHandle;
  logger: JsonLogger;
  /**
   * Stops accepting calls, lets those in flight finish for at most SHUTDOWN_TIMEOUT_MS (every answer meanwhile
   * says `Connection: close`), cuts what is left, then closes the app and the database.
   */
  close(): Promise<void>;
}

/** How long the app and the database may take to close once the HTTP drain is over (records of cut calls, pool). */
export const SHUTDOWN_CLEANUP_MS = 5000;

export async function openServerDatabase(config: AppConfig): Promise<DatabaseHandle> {
  if (config.databaseUrl) return { url: config.databaseUrl, embedded: false, maxPool: config.dbPoolSize, close: async () => {} };
  return startEmbeddedDatabase(config.dataDir, config.dbPoolSize);
}

function databaseSummary(config: AppConfig): Record<string, string> {
  if (!config.databaseUrl) return { database: 'embedded', data_dir: config.dataDir };
  try {
    const u = new URL(config.databaseUrl);
    return { database: 'postgresql', database_at: `${u.hostname}:${u.port || 5432}${u.pathname}` };
  } catch {
    return { database: 'postgresql' };
  }
}

/** The one start-up line: where to go, what it runs on, where the secrets came from. Never a secret itself. */
function startupSummary(config: AppConfig, port: number, facts: Record<string, unknown>): Record<string, unknown> {
  const host = ['0.0.0.0', '::', ''].includes(config.host) ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  const secrets = !config.devSecrets
    ? 'from the environment'
    : config.devSecrets.generated
      ? `generated now into ${config.devSecrets.file} (development only)`
      : `development secrets from ${config.devSecrets.file}`;
  return {
    port,
    url,
    docs: `${url}/docs`,
    ...databaseSummary(config),
    secrets,
    log_level: config.logLevel,
    shutdown_timeout_ms: config.shutdownTimeoutMs,
    ...facts,
  };
}

/** Builds, migrates and starts the HTTP server: used by main.ts and by the tests alike. */
export async function startServer(
  config: AppConfig,
  /** `startup`: facts of the process's start, added to the `server listening` line */
  opts: { logSink?: LogSink; startup?: Record<string, unknown> } = {},
): Promise<RunningServer> {
  const logger = new JsonLogger(config.logLevel, opts.logSink);
  const db = await openServerDatabase(config);
  try {
    await migrate(db);
    const instanceId = randomBytes(6).toString('hex');
    const app = await NestFactory.create<NestExpressApplication>(
      AppModule.forRoot(config, db, logger, `openai-proxy:${instanceId}`),
      { bodyParser: false, logger, abortOnError: false },
    );
    configureApp(app, config, logger);
    await app.get(KeysService).assertMasterKeyReadsStoredKeys();
    await app.get(ChangeFeedService).follow();
    await app.get(TokensService).loadRevoked();
    await app.listen(config.port, config.host);
    const httpServer = app.getHttpServer() as Server;
    const drain = new HttpDrain(httpServer);
    const port = (httpServer.address() as AddressInfo).port;
    logger.write('info', 'server listening', startupSummary(config, port, opts.startup ?? {}));
    let closing: Promise<void> | undefined;
    return {
      app,
      url: `http://127.0.0.1:${port}`,
      port,
      instanceId,
      db,
      logger,
      close() {
        closing ??= (async () => {
          const outcome: DrainOutcome = await drain.drain(config.shutdownTimeoutMs);
          if (outcome.forced > 0) {
            logger.write('warn', 'shutdown: calls still running at SHUTDOWN_TIMEOUT_MS were cut', {
              cut: outcome.forced,
              timeout_ms: config.shutdownTimeoutMs,
            });
          }
          await app.close();
          await db.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
