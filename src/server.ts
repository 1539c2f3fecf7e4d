import 'reflect-metadata';
import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { AppModule } from './app.module';
import { TokensService } from './auth/tokens.service';
import { configureApp } from './app.setup';
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
  close(): Promise<void>;
}

export async function openServerDatabase(config: AppConfig): Promise<DatabaseHandle> {
  if (config.databaseUrl) return { url: config.databaseUrl, embedded: false, maxPool: config.dbPoolSize, close: async () => {} };
  return startEmbeddedDatabase(config.dataDir, config.dbPoolSize);
}

/** Builds, migrates and starts the HTTP server: used by main.ts and by the tests alike. */
export async function startServer(config: AppConfig, opts: { logSink?: LogSink } = {}): Promise<RunningServer> {
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
    const port = (app.getHttpServer().address() as AddressInfo).port;
    logger.write('info', 'server listening', { port, embedded_database: db.embedded });
    let closed = false;
    return {
      app,
      url: `http://127.0.0.1:${port}`,
      port,
      instanceId,
      db,
      async close() {
        if (closed) return;
        closed = true;
        await app.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
