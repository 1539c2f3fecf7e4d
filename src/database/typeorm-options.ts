import type { DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from './migrations';

/**
 * The one place the TypeORM options are built: for the app, the CLI, the TypeORM CLI and the tests. The entities
 * are not listed here: the app and the CLI load those their modules register, the TypeORM CLI finds them by name.
 */
export function buildTypeOrmOptions(
  url: string,
  poolSize: number,
  applicationName = 'openai-proxy',
  entities: NonNullable<DataSourceOptions['entities']> = [],
  embedded = false,
  /** the client's bound on one query: a query that hangs (database gone mid-query) fails instead of holding a request forever */
  queryTimeoutMs = 15_000,
): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    migrationsRun: false,
    synchronize: false,
    uuidExtension: 'pgcrypto',
    applicationName,
    logging: false,
    extra: {
      max: poolSize,
      connectionTimeoutMillis: 3000,
      idleTimeoutMillis: 30000,
      query_timeout: queryTimeoutMs,
      keepAlive: true,
      // PostgreSQL's JIT (on by default) compiles a plan it estimates costly: an analytics read over a large table
      // spent up to 1.3 s compiling what it then ran in milliseconds. The embedded database has no JIT.
      ...(embedded ? {} : { options: '-c jit=off' }),
    },
  };
}
