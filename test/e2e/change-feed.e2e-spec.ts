import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { TokensService } from '../../src/auth/tokens.service';
import { CHANGE_RETENTION_S, ChangeFeedService } from '../../src/database/change-feed.service';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createOrg, type TestOrg } from '../support/factories';

/** The contract: a revoked token, key or disabled organization takes effect in every running server within this. */
const CONTRACT_MS = 5_000;

/**
 * Asks `server` until the organization's token is refused (a revoked token or a disabled organization); the time
 * it took, or null when it was not within `ms`.
 */
async function refusedWithin(server: TestApp, org: TestOrg, ms: number): Promise<number | null> {
  const start = Date.now();
  for (;;) {
    const res = await api(server, org.token, 'victim@example.com')('GET', '/v1/personas');
    if (res.status === 401 || res.status === 403) return Date.now() - start;
    expect(res.status).toBe(200);
    if (Date.now() - start > ms) return null;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Two server instances on one PostgreSQL, each with its own caches: a change made through one must reach the
 * other through the change feed (cache_invalidations, NOTIFY and the poll at its production interval).
 */
describe.skipIf(!process.env.DATABASE_URL)('change feed between servers', () => {
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    const env = { LOG_LEVEL: 'warn', CACHE_SYNC_INTERVAL_MS: '1000' };
    [a, b] = await Promise.all([createTestApp(env), createTestApp(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it('a token revoked and an organization disabled amid a flood of persona writes are refused by the other server within 5 s', async () => {
    const tenant = await createOrg(a);
    const flooder = api(a, tenant.token, 'flooder@example.com');
    const personas: string[] = [];
    for (let w = 0; w < 6; w++) {
      const created = await flooder('POST', '/v1/personas', { name: `flood-${w}`, content: 'v0' });
      expect(created.status).toBe(201);
      personas.push(created.body.id);
    }
    const victim = await createOrg(a);
    const disabled = await createOrg(a);
    for (const org of [victim, disabled]) {
      expect((await api(b, org.token, 'victim@example.com')('GET', '/v1/personas')).status).toBe(200);
    }

    // a tenant writing personas as fast as it can, on both servers, for the whole test
    let flooding = true;
    let writes = 0;
    const until = async (n: number) => {
      while (writes < n) await new Promise((r) => setTimeout(r, 20));
    };
    const writers = personas.map(async (id, w) => {
      const call = api(w % 2 ? b : a, tenant.token, 'flooder@example.com');
      for (let i = 1; flooding; i++) {
        const res = await call('PATCH', `/v1/personas/${id}`, { content: `v${i}` });
        expect(res.status).toBe(200);
        writes++;
      }
    });
    await until(100);
    // and what thousands more persona writes leave in the feed (one row each, as PersonasService publishes them),
    // written in bulk to make more of them within the test's time than the API can
    for (let batch = 0; batch < 6; batch++) {
      await a.dataSource.query(
        `WITH flood AS (INSERT INTO cache_invalidations (kind, ref) SELECT 'persona', ($1::text[])[1 + i % $2] FROM generate_series(1, 1000) i)
         SELECT pg_notify('proxy_cache_invalidation', 'persona')`,
        [personas, personas.length],
      );
    }
    await a.app.get(TokensService).revoke(victim.jti, cliActor());
    await a.app.get(OrganizationsService).disable(disabled.orgId, cliActor());
    const took = await Promise.all([refusedWithin(b, victim, CONTRACT_MS), refusedWithin(b, disabled, CONTRACT_MS)]);
    const writesAtRevocation = writes;
    // the flood goes on after the revocation too
    await until(writesAtRevocation + 20);
    flooding = false;
    await Promise.all(writers);
    expect(took.includes(null), `refused after ${JSON.stringify(took)} ms (${writes} persona writes through the API besides 6,000 published changes)`).toBe(false);
  });

  it('a change whose transaction commits after later ones is still applied', async () => {
    const victim = await createOrg(a);
    const witness = await createOrg(a);
    for (const org of [victim, witness]) {
      expect((await api(b, org.token, 'victim@example.com')('GET', '/v1/personas')).status).toBe(200);
    }
    // the victim's revocation takes its id first and commits last
    const slow = new Client({ connectionString: process.env.DATABASE_URL });
    await slow.connect();
    try {
      await slow.query('BEGIN');
      await slow.query('INSERT INTO revoked_tokens (jti) VALUES ($1)', [victim.jti]);
      await slow.query(`INSERT INTO cache_invalidations (kind, ref) VALUES ('token', $1)`, [victim.jti]);
      await slow.query(`SELECT pg_notify('proxy_cache_invalidation', 'token')`);
      // a later change commits and the other server reads past it
      await a.app.get(TokensService).revoke(witness.jti, cliActor());
      expect(await refusedWithin(b, witness, CONTRACT_MS)).not.toBeNull();
      expect((await api(b, victim.token, 'victim@example.com')('GET', '/v1/personas')).status).toBe(200);
      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    expect(await refusedWithin(b, victim, CONTRACT_MS)).not.toBeNull();
  });

  it('prunes changes older than the retention, with several servers pruning at once', async () => {
    const recent = `recent-${randomUUID()}`;
    await a.dataSource.query(
      `INSERT INTO cache_invalidations (kind, ref, created_at)
       SELECT 'persona', 'old-' || i, now() - make_interval(secs => $1) FROM generate_series(1, 12000) i`,
      [CHANGE_RETENTION_S + 60],
    );
    await a.dataSource.query(`INSERT INTO cache_invalidations (kind, ref) VALUES ('persona', $1)`, [recent]);
    const [byA, byB] = await Promise.all([a.app.get(ChangeFeedService).prune(), b.app.get(ChangeFeedService).prune()]);
    expect(byA + byB).toBeGreaterThanOrEqual(12000);
    const [left] = await a.dataSource.query(
      `SELECT count(*) FILTER (WHERE created_at < now() - make_interval(secs => $1))::int AS old,
              count(*) FILTER (WHERE ref = $2)::int AS recent
         FROM cache_invalidations`,
      [CHANGE_RETENTION_S, recent],
    );
    expect(left).toEqual({ old: 0, recent: 1 });
  });
});

describe('change feed of one server', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await createTestApp({ LOG_LEVEL: 'warn' });
  });
  afterAll(async () => {
    await app?.close();
  });

  it('prunes changes older than the retention and keeps the recent ones', async () => {
    await app.dataSource.query(
      `INSERT INTO cache_invalidations (kind, ref, created_at)
       SELECT 'persona', 'old-' || i, now() - make_interval(secs => $1) FROM generate_series(1, 50) i`,
      [CHANGE_RETENTION_S + 60],
    );
    const recent = `recent-${randomUUID()}`;
    await app.dataSource.query(`INSERT INTO cache_invalidations (kind, ref) VALUES ('persona', $1)`, [recent]);
    expect(await app.app.get(ChangeFeedService).prune()).toBeGreaterThanOrEqual(50);
    const [left] = await app.dataSource.query(
      `SELECT count(*) FILTER (WHERE ref LIKE 'old-%')::int AS old, count(*) FILTER (WHERE ref = $1)::int AS recent
         FROM cache_invalidations`,
      [recent],
    );
    expect(left).toEqual({ old: 0, recent: 1 });
  });

  it('a token revoked in this server is refused at once', async () => {
    const victim = await createOrg(app);
    expect((await api(app, victim.token, 'victim@example.com')('GET', '/v1/personas')).status).toBe(200);
    await app.app.get(TokensService).revoke(victim.jti, cliActor());
    expect((await api(app, victim.token, 'victim@example.com')('GET', '/v1/personas')).status).toBe(401);
  });
});
