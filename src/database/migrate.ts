import { DataSource } from 'typeorm';
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

/** Applies pending migrations on a short-lived connection. */
export async function migrate(db: DatabaseHandle): Promise<string[]> {
  const ds = new DataSource(buildTypeOrmOptions(db.url, 3, 'openai-proxy-migrate'));
  await ds.initialize();
  try {
    return await runMigrations(ds);
  } finally {
    await ds.destroy();
  }
}
