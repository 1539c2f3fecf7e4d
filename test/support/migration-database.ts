import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { buildTypeOrmOptions } from '../../src/database/typeorm-options';

/**
 * A database of its own on the server of DATABASE_URL, for a test of a migration on existing data (a migration may
 * lock whole tables, and other test files share DATABASE_URL): `open(migrations)` gives a data source that knows
 * those migrations (run them with runMigrations, undo the last with undoLastMigration); `drop()` removes it all.
 */
export async function migrationDatabase(databaseUrl: string, prefix: string): Promise<{ open: (migrations: unknown[]) => Promise<DataSource>; drop: () => Promise<void> }> {
  const admin = new DataSource({ type: 'postgres', url: databaseUrl });
  await admin.initialize();
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(databaseUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  return {
    open: async (migrations) => {
      const ds = new DataSource({ ...buildTypeOrmOptions(url, 2, prefix), migrations: migrations as never });
      await ds.initialize();
      return ds;
    },
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await admin.destroy();
    },
  };
}
