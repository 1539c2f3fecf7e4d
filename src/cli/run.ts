import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommandFactory } from 'nest-commander';
import { AdminCliModule, CLI_NAME } from './admin-cli.module';
import { AppException, isDatabaseUnavailable } from '../common/app-exception';
import { JsonLogger } from '../common/logger';
import { AppConfig, ConfigError, loadConfig } from '../config/app-config';
import { DatabaseHandle, openDatabase } from '../database/embedded-database';
import { migrate } from '../server';

function fail(message: string): void {
  process.stderr.write(`${CLI_NAME}: ${message}\n`);
  process.exitCode = 1;
}

/** The version in package.json (next to dist/ in a checkout and in the image). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as { version: string }).version;
}

function databaseLocation(config: AppConfig): string {
  if (!config.databaseUrl) return `the embedded database in ${config.dataDir}`;
  try {
    const u = new URL(config.databaseUrl);
    return `the database at ${u.hostname}:${u.port || 5432}`;
  } catch {
    return 'the database';
  }
}

/**
 * One line on stderr per failure. Our own AppException messages are written for the user; anything else may
 * carry SQL or a secret, so only its kind is shown.
 */
function report(err: unknown, config: AppConfig | undefined): void {
  const commanderCode = (err as { code?: unknown })?.code;
  if (typeof commanderCode === 'string' && commanderCode.startsWith('commander.')) {
    // commander has already written the help or the parse error
    process.exitCode = (err as { exitCode?: number }).exitCode ?? 1;
    return;
  }
  if (err instanceof AppException) return fail(err.message);
  if (err instanceof ConfigError) return fail(`configuration error: ${err.message}`);
  if (isDatabaseUnavailable(err)) return fail(`cannot reach ${config ? databaseLocation(config) : 'the database'}; nothing was changed`);
  const kind = (err as { driverError?: { code?: string } })?.driverError?.code ?? (err instanceof Error ? err.name : typeof err);
  fail(`the command failed unexpectedly (${kind}); nothing was changed`);
}

async function main(): Promise<void> {
  let config: AppConfig | undefined;
  let db: DatabaseHandle | undefined;
  try {
    config = loadConfig();
    try {
      // DATABASE_URL, else a running server's embedded database through its socket, else our own in DATA_DIR
      db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
    } catch (err) {
      if (config.databaseUrl || isDatabaseUnavailable(err)) throw err;
      return fail(`cannot open ${databaseLocation(config)}: ${(err as Error).message}`);
    }
    // a fresh database works: pending migrations first (serialised with any other process doing the same)
    const applied = await migrate(db);
    await CommandFactory.run(AdminCliModule.forRoot(config, db, new JsonLogger('silent'), applied), {
      cliName: CLI_NAME,
      version: packageVersion(),
      logger: false,
      abortOnError: false,
      errorHandler: (err) => {
        throw err;
      },
      serviceErrorHandler: (err) => report(err, config),
    });
  } catch (err) {
    report(err, config);
  } finally {
    await db?.close().catch(() => undefined);
  }
}

/** Runs one admin command (process.argv) and exits. */
export function runCli(): void {
  void main().finally(() => {
    // a library handle left open must not keep an admin command hanging once its output is written
    setTimeout(() => process.exit(), 1000).unref();
  });
}
