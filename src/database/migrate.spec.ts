import { describe, expect, it } from 'vitest';
import { MIGRATION_QUERY_TIMEOUT_MS, migrationOptions } from './migrate';
import { buildTypeOrmOptions } from './typeorm-options';

type WithExtra = { extra: { query_timeout: number } };

describe('the migrations’ data source', () => {
  it('holds a statement to an hour, not to the app’s 15 seconds (filling columns from ten million exchanges took 2.5 minutes)', () => {
    const migrations = migrationOptions({ url: 'postgres://postgres@127.0.0.1:5432/x', embedded: false }) as unknown as WithExtra;
    expect(migrations.extra.query_timeout).toBe(MIGRATION_QUERY_TIMEOUT_MS);
    expect(MIGRATION_QUERY_TIMEOUT_MS).toBeGreaterThanOrEqual(3_600_000);
    // the app's own connections keep their bound
    const app = buildTypeOrmOptions('postgres://postgres@127.0.0.1:5432/x', 10) as unknown as WithExtra;
    expect(app.extra.query_timeout).toBe(15_000);
  });
});
