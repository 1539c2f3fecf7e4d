import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';
import { cliEnvFor, runCli } from '../support/run-cli';
import { startServerProcess, type ServerProcess } from '../support/server-process';

/** Key pools from the CLI, and key health shared by server processes on one database. Needs `npm run build`. */
describe.skipIf(!process.env.DATABASE_URL)('key pools: CLI and several processes', () => {
  let app: TestApp;
  let other: ServerProcess;
  let fake: FakeUpstream;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ LOG_LEVEL: 'warn', CACHE_SYNC_INTERVAL_MS: '1000' });
    env = cliEnvFor(app);
    other = await startServerProcess({ DATABASE_URL: app.env.DATABASE_URL });
  }, 120_000);
  afterAll(async () => {
    await other?.dispose();
    await app?.close();
    await fake?.close();
  });

  const cli = async (...args: string[]) => {
    const r = await runCli([...args, '--json'], env);
    return r;
  };
  const keyOf = (r: { headers: Record<string, unknown> }) => String(r.headers.authorization).replace(/^Bearer /, '');

  it('key create takes --models, --weight, --priority and --verify; key list and key show tell the state; org fallback is audited', async () => {
    const org = await cli('org', 'create', `pools-cli-${Date.now()}`);
    expect(org.code, org.stderr).toBe(0);
    const orgId: string = org.json.id;

    const refused = await cli('key', 'create', orgId, 'sk-invalid', '--base-url', fake.url, '--verify');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refused the key/);
    expect((await cli('key', 'list', orgId)).json.data).toEqual([]);
    expect((await cli('key', 'create', orgId, 'sk-bad-weight-0001', '--weight', 'x')).code).toBe(1);

    const made = await cli('key', 'create', orgId, 'sk-cli-pool-key-0001', '--base-url', fake.url, '--models', 'gpt-*,o3*', '--weight', '3', '--priority', '2', '--verify');
    expect(made.code, made.stderr).toBe(0);
    expect(made.json).toMatchObject({ models: ['gpt-*', 'o3*'], weight: 3, priority: 2, state: 'active', last4: '0001' });
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/models', 'GET /v1/models']);

    const listed = await runCli(['key', 'list', orgId], env);
    expect(listed.stdout).toMatch(/STATE/);
    expect(listed.stdout).toMatch(/gpt-\*,o3\*\s+3\s+2\s+active/);

    const jwt = await runCli(['jwt', 'create', '--org-id', orgId], env);
    const call = api(app, jwt.stdout.trim(), 'cli-user@example.com');
    expect((await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' })).status).toBe(200);
    const shown = await cli('key', 'show', made.json.id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.json).toMatchObject({ state: 'active', rest_until: null, last_error: null, usage: { today: { calls: 1 }, month: { calls: 1 } } });
    expect(shown.json.usage.today.tokens).toBeGreaterThan(0);
    const prose = await runCli(['key', 'show', made.json.id], env);
    expect(prose.stdout).toMatch(/today:\s+1 calls, \d+ tokens/);

    const fallback = await cli('org', 'fallback', orgId, 'on');
    expect(fallback.code, fallback.stderr).toBe(0);
    expect(fallback.json).toEqual({ id: orgId, key_fallback: true });
    expect((await cli('org', 'fallback', orgId, 'maybe')).code).toBe(1);
    const audit = await cli('audit', 'list', '--org-id', orgId);
    expect(audit.json.data.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['key.create', 'org.key_fallback']));
  });

  it('a key marked invalid by one process is left by the other within a second', async () => {
    const org = await cli('org', 'create', `pools-proc-${Date.now()}`);
    const orgId: string = org.json.id;
    await cli('key', 'create', orgId, 'sk-shared-first-0001', '--base-url', fake.url, '--priority', '1');
    await cli('key', 'create', orgId, 'sk-shared-second-002', '--base-url', fake.url);
    const token = (await runCli(['jwt', 'create', '--org-id', orgId], env)).stdout.trim();
    const here = api(app, token, 'shared@example.com');
    const there = api(other, token, 'shared@example.com');
    const ask = (call: typeof here) => call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' });

    // both processes use (and have cached) the first key
    for (const call of [here, there]) expect((await ask(call)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1500));
    fake.reset();
    for (const call of [here, there]) expect((await ask(call)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-shared-first-0001', 'sk-shared-first-0001']);

    // this process is refused with it: it goes on with the second, and marks the first invalid
    fake.keyFaults.set('sk-shared-first-0001', { kind: 'status', status: 401 });
    expect((await ask(here)).status).toBe(200);
    const markedAt = Date.now();
    fake.keyFaults.clear();
    // the other process stops using it (it would still work there) within a second
    let lastFirst = markedAt;
    for (;;) {
      fake.requests.length = 0;
      expect((await ask(there)).status).toBe(200);
      if (keyOf(fake.requests[0]) !== 'sk-shared-first-0001') break;
      lastFirst = Date.now();
      if (lastFirst - markedAt > 3000) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(lastFirst - markedAt).toBeLessThan(1000);
    const shown = (await cli('key', 'list', orgId)).json.data.find((k: { last4: string }) => k.last4 === '0001');
    expect(shown).toMatchObject({ state: 'invalid', last_error: expect.stringContaining('401') });

    // a rest is shared the same way: rate limited here, the other process leaves the key too until its time
    await cli('key', 'enable', shown.id);
    await new Promise((r) => setTimeout(r, 1200));
    fake.reset();
    expect((await ask(there)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-shared-first-0001']);
    fake.keyFaults.set('sk-shared-first-0001', { kind: 'status', status: 429, retryAfter: '30' });
    expect((await ask(here)).status).toBe(200);
    fake.keyFaults.clear();
    await new Promise((r) => setTimeout(r, 1000));
    fake.reset();
    expect((await ask(there)).status).toBe(200);
    expect(fake.requests.map(keyOf)).toEqual(['sk-shared-second-002']);
    const rested = (await cli('key', 'show', shown.id)).json;
    expect(rested).toMatchObject({ state: 'active', rest_until: expect.any(String), last_error: expect.stringContaining('429') });
    expect(Date.parse(rested.rest_until) - Date.now()).toBeGreaterThan(20_000);
  });
});
