import type { DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from './migrations';

/** The bound on one statement of the app (DB_QUERY_TIMEOUT_MS's default). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 15_000;

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
  /**
   * The bound on one statement: the server cancels one that runs longer (DB_QUERY_TIMEOUT_MS; a read too large to
   * answer in time fails with a clear error instead of running on after its request gave up), and the client gives
   * up a second later on a server that does not answer at all (the database gone mid-query).
   */
  statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS,
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
      query_timeout: statementTimeoutMs + 1000,
      keepAlive: true,
      // PostgreSQL's JIT (on by default) compiles a plan it estimates costly: an analytics read over a large table
      // spent up to 1.3 s compiling what it then ran in milliseconds. The embedded database has no JIT, and takes no
      // startup options: there the client's bound alone holds.
      ...(embedded ? {} : { options: `-c jit=off -c statement_timeout=${statementTimeoutMs}` }),
    },
  };
}
