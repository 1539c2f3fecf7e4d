import type { DataSourceOptions } from 'typeorm';
import { ENTITIES } from './entities';
import { MIGRATIONS } from './migrations';

/** The one place the TypeORM options are built: for the app, the CLI, the TypeORM CLI and the tests. */
export function buildTypeOrmOptions(url: string, poolSize: number, applicationName = 'openai-proxy'): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities: ENTITIES,
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
      // a query that hangs (database gone mid-query) fails instead of holding a request forever
      query_timeout: 15000,
      keepAlive: true,
    },
  };
}
