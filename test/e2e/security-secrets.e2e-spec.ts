import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { cliActor } from '../../src/audit/audit-actor';
import { KeysService } from '../../src/keys/keys.service';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { cliEnvFor, CliResult, runCli } from '../support/run-cli';

const DATABASE_URL = process.env.DATABASE_URL;

/** Every table's rows as text (works in both database modes; pg_dump covers the rest with DATABASE_URL). */
async function dumpTables(ds: DataSource): Promise<string> {
  const tables: { table_name: string }[] = await ds.query(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
  );
  let out = '';
  for (const { table_name } of tables) {
    const rows: { t: string }[] = await ds.query(`SELECT row_to_json(x)::text AS t FROM "${table_name}" x`);
    out += rows.map((r) => r.t).join('\n');
  }
  return out;
}

describe('secrets: a canary upstream key never leaves the proxy', () => {
  let fake: FakeUpstream;
  let app: TestApp;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'debug', UPSTREAM_MAX_RETRIES: '1', MODELS_CACHE_MS: '0' });
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('the canary appears in no answer, header, log line, CLI output or stored row (only in the upstream Authorization)', async () => {
    const canary = `sk-canary-${randomBytes(16).toString('hex')}`;
    const org = await createOrg(app);
    const env = cliEnvFor(app);
    const cli: CliResult[] = [];
    const created = await runCli(['key', 'create', org.orgId, canary, '--base-url', fake.url, '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    cli.push(created, await runCli(['key', 'list', org.orgId, '--json'], env), await runCli(['key', 'list', org.orgId], env));
    expect(cli[1].json.data[0].last4).toBe(canary.slice(-4));

    const userId = `canary-user-${randomUUID()}@example.com`;
    const call = api(app, org.token, userId);
    const seen: string[] = [];
    const record = async (res: Awaited<ReturnType<typeof call>>) => {
      seen.push(String(res.status), res.text, JSON.stringify([...res.headers.entries()]));
      return res;
    };
    // wait until the change feed has delivered the CLI's new key to the server
    for (let i = 0; i < 50 && (await call('GET', '/v1/models')).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));

    const ids: string[] = [];
    const proxied = async (path: string, body: unknown) => {
      const res = await record(await call('POST', path, body));
      ids.push(res.headers.get('x-request-id')!);
      return res;
    };
    const ok = await proxied('/v1/responses', { model: 'gpt-4o-mini', input: 'hello canary' });
    expect(ok.status).toBe(200);
    expect((await proxied('/v1/responses', { model: 'gpt-4o-mini', input: 'stream me', stream: true })).status).toBe(200);
    expect((await proxied('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })).status).toBe(200);
    await record(await call('GET', '/v1/models'));

    // an upstream 401 that echoes the key, on every route that calls upstream
    const echo = () => ({
      kind: 'status' as const,
      status: 401,
      body: { error: { message: `Incorrect API key provided: ${canary}. You can find your API key at https://platform.openai.com/account/api-keys.`, type: 'invalid_request_error', code: 'invalid_api_key' } },
    });
    // a refused key is marked invalid (its last error stored, scrubbed); enabled again for the next route
    const keyId: string = created.json.id;
    const revive = async () => {
      const keys = app.app.get(KeysService);
      for (let i = 0; i < 100 && (await keys.list(org.orgId)).find((k) => k.id === keyId)?.state !== 'invalid'; i++) await new Promise((r) => setTimeout(r, 20));
      await keys.enable(keyId, cliActor());
    };
    fake.enqueue(echo());
    const refused = await proxied('/v1/responses', { model: 'gpt-4o-mini', input: 'refused' });
    expect(refused.status).toBe(502);
    expect(refused.body.error.code).toBe('upstream_auth_failed');
    await revive();
    fake.enqueue(echo());
    expect((await proxied('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })).status).toBe(502);
    await revive();
    fake.enqueue(echo());
    expect((await record(await call('GET', '/v1/models'))).status).toBe(502);
    // a 5xx that echoes it too (retried once, then passed on)
    const echo5xx = { kind: 'status' as const, status: 500, body: { error: { message: `upstream trouble with key ${canary}`, type: 'server_error', code: null } } };
    fake.enqueue(echo5xx, echo5xx);
    expect((await proxied('/v1/responses', { model: 'gpt-4o-mini', input: '5xx' })).status).toBe(502);

    // ratings, analysis (an echoing 401 there as well), and every stored exchange read back
    await record(await call('POST', `/v1/requests/${ids[0]}/rating`, { rating: 5, comment: 'fine' }));
    const analysed = await record(await call('POST', '/v1/analysis', { request_id: ids[0], config: { analysis_type: 'sentiment' } }));
    expect(analysed.status).toBe(200);
    fake.enqueue(echo());
    const analysisRefused = await record(await call('POST', '/v1/analysis', { request_id: ids[0], config: { analysis_type: 'urgency' } }));
    expect(analysisRefused.status).toBe(502);
    for (const id of ids) expect((await record(await call('GET', `/v1/requests/${id}`))).status).toBe(200);
    await record(await call('GET', '/v1/requests?limit=100'));
    await record(await call('GET', `/v1/sessions/${ok.headers.get('x-session-id')}`));
    await record(await call('GET', `/v1/analysis/results?request_id=${ids[0]}`));
    await record(await call('GET', '/v1/analytics/usage?group_by=user'));

    // the canary did go upstream (so the checks below are about something real)
    expect(fake.requests.some((r) => r.headers.authorization === `Bearer ${canary}`)).toBe(true);
    expect(fake.requests.filter((r) => r.headers.authorization === `Bearer ${canary}`).length).toBeGreaterThanOrEqual(10);

    const stored = await dumpTables(app.dataSource);
    const haystacks: [string, string][] = [
      ['HTTP answers', seen.join('\n')],
      ['log lines', app.logs.join('\n')],
      ['CLI output', cli.map((r) => r.stdout + r.stderr).join('\n')],
      ['stored rows', stored],
    ];
    expect(app.logs.length).toBeGreaterThan(10); // debug logging was on
    for (const [what, text] of haystacks) {
      expect(text.includes(canary), `the canary in ${what}`).toBe(false);
      expect(text.includes(canary.slice(0, -4)), `the canary minus its last 4 characters in ${what}`).toBe(false);
      expect(text.includes(canary.slice(10, -4)), `the canary's random middle in ${what}`).toBe(false);
    }
    expect(app.logs.join('\n').includes(org.token), 'the JWT in a log line').toBe(false);
    expect(app.logs.join('\n').includes(org.token.split('.')[2]), "the JWT's signature in a log line").toBe(false);

    if (DATABASE_URL) {
      const dump = spawnSync('pg_dump', [DATABASE_URL], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
      expect(dump.status, dump.stderr).toBe(0);
      expect(dump.stdout).toContain('api_keys');
      expect(dump.stdout.includes(canary.slice(0, -4)), 'the canary in pg_dump').toBe(false);
      expect(dump.stdout.includes(canary.slice(10, -4)), "the canary's middle in pg_dump").toBe(false);
    }
  }, 60_000);
});

describe('master key rotation under load', () => {
  const masterA = randomBytes(32).toString('hex');
  const masterB = randomBytes(32).toString('base64');
  let fake: FakeUpstream;
  let dbUrl: string | undefined;
  let dataDir: string;
  let admin: DataSource | undefined;
  let dbName: string | undefined;

  beforeAll(async () => {
    fake = await startFakeUpstream({ maxRecorded: 2000 });
    dataDir = mkdtempSync(join(tmpdir(), 'proxy-rotation-'));
    if (DATABASE_URL) {
      // a database of its own: the rotation re-encrypts EVERY stored key, and other test files share DATABASE_URL
      admin = new DataSource({ type: 'postgres', url: DATABASE_URL });
      await admin.initialize();
      dbName = `proxy_rotation_${randomBytes(6).toString('hex')}`;
      await admin.query(`CREATE DATABASE ${dbName}`);
      const u = new URL(DATABASE_URL);
      u.pathname = `/${dbName}`;
      dbUrl = u.toString();
    }
  });
  afterAll(async () => {
    await fake?.close();
    if (admin && dbName) {
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
      await admin.destroy();
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  const serverEnv = (master: string, previous?: string): NodeJS.ProcessEnv => ({
    DATABASE_URL: dbUrl ?? '',
    DATA_DIR: dataDir,
    JWT_SECRET: TEST_JWT_SECRET,
    ENCRYPTION_KEY: master,
    ENCRYPTION_KEY_PREVIOUS: previous,
    OPENAI_BASE_URL: fake.url,
    LOG_LEVEL: 'warn',
  });

  it('the CLI re-encrypts under B while a server on B (+ previous A) serves steady traffic: zero failures; B alone then reads every key', async () => {
    // keys stored under A: organization keys and a user key
    let server: TestApp | undefined = await createTestApp(serverEnv(masterA));
    const tenants: { token: string; user: string; secret: string }[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const org = await createOrg(server);
        const orgSecret = `sk-rotation-org-${i}-${randomUUID()}`;
        await createKey(server, org.orgId, orgSecret, { baseUrl: fake.url });
        tenants.push({ token: org.token, user: `plain-${i}@example.com`, secret: orgSecret });
        const u = await createUser(server, org.orgId, `own-key-${i}@example.com`);
        const userSecret = `sk-rotation-user-${i}-${randomUUID()}`;
        await createKey(server, org.orgId, userSecret, { baseUrl: fake.url, userId: (u as { id: string }).id });
        tenants.push({ token: org.token, user: `own-key-${i}@example.com`, secret: userSecret });
      }
      const before: { id: string; encrypted_key: Buffer }[] = await server.dataSource.query('SELECT id, encrypted_key FROM api_keys');
      await server.close();
      server = undefined;

      server = await createTestApp(serverEnv(masterB, masterA));
      const running = server;
      const statuses: number[] = [];
      let stop = false;
      const client = async (n: number) => {
        for (let i = 0; !stop; i++) {
          const t = tenants[(n + i) % tenants.length];
          const marker = `load ${n}.${i}`;
          const res = await api(running, t.token, t.user)('POST', '/v1/responses', { model: 'gpt-4o-mini', input: marker });
          statuses.push(res.status);
          // served with the tenant's own key, decrypted correctly
          const sent = fake.requests.findLast((r) => r.body?.input === marker);
          if (res.status === 200 && sent?.headers.authorization !== `Bearer ${t.secret}`) statuses.push(-1);
        }
      };
      const clients = [0, 1, 2, 3, 4].map(client);
      await new Promise((r) => setTimeout(r, 400));
      const countBefore = statuses.length;
      const rotated = await runCli(['key', 'rotate-master', '--json'], { ...cliEnvFor(running), ENCRYPTION_KEY: masterB, ENCRYPTION_KEY_PREVIOUS: masterA });
      expect(rotated.code, rotated.stderr).toBe(0);
      expect(rotated.json).toEqual({ rotated: tenants.length, total: tenants.length });
      const countAtRotation = statuses.length;
      await new Promise((r) => setTimeout(r, 600));
      stop = true;
      await Promise.all(clients);
      // traffic ran before, during and after the rotation, and none of it failed
      expect(countBefore).toBeGreaterThan(5);
      expect(statuses.length - countAtRotation).toBeGreaterThan(5);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);

      const after: { id: string; encrypted_key: Buffer }[] = await running.dataSource.query('SELECT id, encrypted_key FROM api_keys');
      for (const row of after) expect(row.encrypted_key.equals(before.find((b) => b.id === row.id)!.encrypted_key)).toBe(false);
      await server.close();
      server = undefined;

      // B alone: every stored key (organization and user level) still serves
      server = await createTestApp(serverEnv(masterB));
      for (const t of tenants) {
        const res = await api(server, t.token, t.user)('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'after' });
        expect(res.status).toBe(200);
        expect(fake.requests[fake.requests.length - 1].headers.authorization).toBe(`Bearer ${t.secret}`);
      }
    } finally {
      await server?.close();
    }
  }, 90_000);
});
