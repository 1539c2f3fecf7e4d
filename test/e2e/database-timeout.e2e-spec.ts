import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from 'pg';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createOrg } from '../support/factories';
import { migrationDatabase } from '../support/migration-database';

const DATABASE_URL = process.env.DATABASE_URL;

/*
 * A statement of the app that runs past DB_QUERY_TIMEOUT_MS is cancelled by the database itself (its connections
 * carry the bound as statement_timeout) and answered 503 `database_timeout`: not a 500, and not a statement that
 * runs on after its request gave up. On a database of its own: the test holds a lock that others would wait for.
 * The embedded database takes no startup options (the client's own bound holds there).
 */
describe.skipIf(!DATABASE_URL)('a statement past DB_QUERY_TIMEOUT_MS', () => {
  let db: Awaited<ReturnType<typeof migrationDatabase>>;
  let app: TestApp;
  let url: string;

  beforeAll(async () => {
    db = await migrationDatabase(DATABASE_URL!, 'proxy_timeout');
    url = ((await db.open([])).options as { url: string }).url;
    app = await createTestApp({ DATABASE_URL: url, DB_QUERY_TIMEOUT_MS: '1000' });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('is cancelled by the database and answered 503 database_timeout; the next read is answered', async () => {
    const org = await createOrg(app);
    const call = api(app, org.token, 'reader@example.com');
    const created = await call('POST', '/v1/personas', { name: 'Support', content: 'Be brief.' });
    expect(created.status, created.text).toBe(201);
    const path = `/v1/analytics/personas/${created.body.id}`;
    expect((await call('GET', path)).status).toBe(200);

    // the report's first read waits for a lock held past the bound
    const locker = new Client({ connectionString: url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE personas IN ACCESS EXCLUSIVE MODE');
      const r = await call('GET', path);
      expect(r.status, r.text).toBe(503);
      expect(r.body.error).toMatchObject({ type: 'service_unavailable', code: 'database_timeout' });
      expect(r.body.error.message).toMatch(/did not finish this request in time/);
      expect(r.headers.get('retry-after')).toBe('5');
      // the server cancelled it (the client's own bound, a second later, is answered database_unavailable): no
      // statement of the app waits for the lock any more
      const waiting = await locker.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`,
      );
      expect(waiting.rows[0].n).toBe(0);
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    expect((await call('GET', path)).status).toBe(200);
  });
});
