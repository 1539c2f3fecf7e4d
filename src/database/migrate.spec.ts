import { describe, expect, it } from 'vitest';
import { MIGRATION_QUERY_TIMEOUT_MS, migrationOptions } from './migrate';
import { buildTypeOrmOptions } from './typeorm-options';

type WithExtra = { extra: { query_timeout: number; options?: string } };

describe('the migrations’ data source', () => {
  it('holds a statement to an hour, not to the app’s 15 seconds (filling columns from ten million exchanges took 2.5 minutes)', () => {
    const migrations = migrationOptions({ url: 'postgres://postgres@127.0.0.1:5432/x', embedded: false }) as unknown as WithExtra;
    expect(migrations.extra.options).toContain(`-c statement_timeout=${MIGRATION_QUERY_TIMEOUT_MS}`);
    expect(migrations.extra.query_timeout).toBe(MIGRATION_QUERY_TIMEOUT_MS + 1000);
    expect(MIGRATION_QUERY_TIMEOUT_MS).toBeGreaterThanOrEqual(3_600_000);
    // the app's own connections keep their bound: the server cancels a statement after 15 s, the client gives up
    // on a server that does not answer a second later
    const app = buildTypeOrmOptions('postgres://postgres@127.0.0.1:5432/x', 10) as unknown as WithExtra;
    expect(app.extra.options).toBe('-c jit=off -c statement_timeout=15000');
    expect(app.extra.query_timeout).toBe(16_000);
    // the embedded database takes no startup options: the client's bound alone
    const embedded = buildTypeOrmOptions('postgres://postgres@127.0.0.1:5432/x', 10, 'x', [], true, 2000) as unknown as WithExtra;
    expect(embedded.extra.options).toBeUndefined();
    expect(embedded.extra.query_timeout).toBe(3000);
  });
});
