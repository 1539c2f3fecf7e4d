import { DataSource, type DataSourceOptions } from 'typeorm';
import type { DatabaseHandle } from './embedded-database';
import { buildTypeOrmOptions } from './typeorm-options';

// Any constant shared by every process of this project; serializes concurrent migration runs.
const MIGRATION_LOCK_ID = 7_345_112_001;

/** Applies pending migrations; safe to run repeatedly and from several processes at once. Returns the names applied. */
export async function runMigrations(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => undefined);
    await runner.release();
  }
}

/**
 * A migration may read or rewrite a large table (filling two tables' new columns from ten million exchanges took 2.5
 * minutes): its statements are not held to the app's 15-second bound on a query, only to this one.
 */
export const MIGRATION_QUERY_TIMEOUT_MS = 3_600_000;

/** The options of the migrations' own short-lived data source. */
export function migrationOptions(db: Pick<DatabaseHandle, 'url' | 'embedded'>): DataSourceOptions {
  return buildTypeOrmOptions(db.url, 3, 'openai-proxy-migrate', [], db.embedded, MIGRATION_QUERY_TIMEOUT_MS);
}

/** Applies pending migrations on a short-lived connection. */
export async function migrate(db: DatabaseHandle): Promise<string[]> {
  const ds = new DataSource(migrationOptions(db));
  await ds.initialize();
  try {
    return await runMigrations(ds);
  } finally {
    await ds.destroy();
  }
}
