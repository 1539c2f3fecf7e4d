import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createToken, createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { CliResult, cliEnvFor, runCli } from '../support/run-cli';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function expectSuccess(r: CliResult): void {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}

/** exit 1, one clear line on stderr, nothing on stdout */
function expectFailure(r: CliResult, message: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(r.stderr).not.toMatch(/\bat .+:\d+:\d+|SELECT|INSERT/);
}

/** Retries an assertion until it holds or the time is up (changes reach running servers through the change feed). */
async function eventually(check: () => Promise<void>, withinMs = 1000): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe.concurrent('admin CLI', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => runCli(args, env);
  const q = (sql: string, params: unknown[] = []) => app.dataSource.query(sql, params);

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url });
    env = cliEnvFor(app);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('org create, org list and org disable; an unknown org exits 1', async () => {
    const [a, b] = [`cli-org-${randomUUID()}`, `cli-org-${randomUUID()}`];
    const [json, prose, unknown] = await Promise.all([
      cli('org', 'create', a, '--json'),
      cli('org', 'create', b),
      cli('org', 'disable', randomUUID()),
    ]);
    expectSuccess(json);
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    expect(json.json).toEqual({
      id: expect.stringMatching(UUID),
      name: a,
      disabled: false,
      created_at: expect.any(String),
      settings: { capture_mode: 'full', content_retention_days: null, retention_days: null, safety_identifier: false },
    });
    expectSuccess(prose);
    const [rowB] = await q('SELECT id FROM organizations WHERE name = $1', [b]);
    expect(prose.stdout).toContain(b);
    expect(prose.stdout).toContain(rowB.id);
    expect(() => JSON.parse(prose.stdout)).toThrow();
    expectFailure(unknown, /No organization found with id/);

    const orgId = json.json.id as string;
    await createKey(app, orgId, `sk-org-${randomUUID()}`, { baseUrl: fake.url });
    const { token } = await createToken(app, orgId);
    const call = api(app, token, 'disable-user');
    expect((await call('GET', '/v1/models')).status).toBe(200);

    const [list, disabled] = await Promise.all([cli('org', 'list', '--json'), cli('org', 'disable', orgId, '--json')]);
    expectSuccess(list);
    expect(Object.keys(list.json)).toEqual(['data']);
    expect(list.json.data.map((o: { id: string }) => o.id)).toEqual(expect.arrayContaining([orgId, rowB.id]));
    expectSuccess(disabled);
    expect(disabled.json).toMatchObject({ id: orgId, name: a, disabled: true });
    await eventually(async () => expect((await call('GET', '/v1/models')).status).toBe(401));
  }, 60_000);

  it('user create and user list; an unknown org exits 1 and writes nothing', async () => {
    const org = await createOrg(app);
    const [alice, ghost] = [`alice-${randomUUID()}`, `ghost-${randomUUID()}`];
    await createUser(app, org.orgId, 'bob');
    const [json, unknown] = await Promise.all([
      cli('user', 'create', org.orgId, alice, '--name', 'Alice Example', '--json'),
      cli('user', 'create', randomUUID(), ghost),
    ]);
    expectSuccess(json);
    expect(json.json).toEqual({
      id: expect.stringMatching(UUID),
      organization_id: org.orgId,
      external_id: alice,
      name: 'Alice Example',
      created_at: expect.any(String),
    });
    const [row] = await q('SELECT id FROM users WHERE organization_id = $1 AND external_id = $2', [org.orgId, alice]);
    expect(row.id).toBe(json.json.id);
    expectFailure(unknown, /No organization found/);
    expect(await q('SELECT id FROM users WHERE external_id = $1', [ghost])).toHaveLength(0);

    const list = await cli('user', 'list', org.orgId);
    expectSuccess(list);
    for (const text of [alice, 'bob', 'Alice Example', json.json.id]) expect(list.stdout).toContain(text);
  }, 60_000);

  it('key create, list and revoke never show the key; an unknown org, user or key exits 1 and writes nothing', async () => {
    const org = await createOrg(app);
    const user = await createUser(app, org.orgId);
    const stranger = await createUser(app, (await createOrg(app)).orgId);
    const orgSecret = `sk-cli-org-${randomUUID()}`;
    const userSecret = `sk-cli-user-${randomUUID()}`;
    const badLabel = `bad-${randomUUID()}`;
    const [json, prose, unknownOrg, foreignUser] = await Promise.all([
      // '-' reads the key from stdin
      runCli(['key', 'create', org.orgId, '-', '--json'], env, { stdin: orgSecret + '\n' }),
      cli('key', 'create', org.orgId, userSecret, '--user-id', user.id, '--base-url', fake.url, '--label', 'mine'),
      cli('key', 'create', randomUUID(), 'sk-never-1111', '--label', badLabel),
      cli('key', 'create', org.orgId, 'sk-never-3333', '--user-id', stranger.id, '--label', badLabel),
    ]);
    expectSuccess(json);
    expect(json.json).toMatchObject({
      id: expect.stringMatching(UUID),
      organization_id: org.orgId,
      scope: 'organization',
      user_id: null,
      last4: orgSecret.slice(-4),
      revoked: false,
    });
    expectSuccess(prose);
    expect(prose.stdout).toContain(`…${userSecret.slice(-4)}`);
    expect(prose.stdout).not.toContain(userSecret);
    expectFailure(unknownOrg, /No organization found/);
    expectFailure(foreignUser, /No user in this organization found/);
    expect(await q('SELECT id FROM api_keys WHERE label = $1', [badLabel])).toHaveLength(0);
    const [userKey] = await q('SELECT id, base_url FROM api_keys WHERE organization_id = $1 AND user_id = $2', [org.orgId, user.id]);
    expect(userKey.base_url).toBe(fake.url);

    const [list, listProse, revoked, unknownKey] = await Promise.all([
      cli('key', 'list', org.orgId, '--json'),
      cli('key', 'list', org.orgId),
      cli('key', 'revoke', userKey.id, '--json'),
      cli('key', 'revoke', randomUUID()),
    ]);
    expectSuccess(list);
    expect(list.json.data.map((k: { id: string }) => k.id).sort()).toEqual([json.json.id, userKey.id].sort());
    expectSuccess(listProse);
    expect(listProse.stdout).toContain(`…${orgSecret.slice(-4)}`);
    for (const out of [list.stdout, listProse.stdout]) {
      for (const secret of [orgSecret, userSecret]) expect(out).not.toContain(secret.slice(0, -4));
    }
    expectSuccess(revoked);
    expect(revoked.json).toMatchObject({ id: userKey.id, scope: 'user', revoked: true });
    expectFailure(unknownKey, /No key found/);
    const [row] = await q('SELECT revoked_at FROM api_keys WHERE id = $1', [userKey.id]);
    expect(row.revoked_at).not.toBeNull();
  }, 60_000);

  it('jwt create prints the bare token, which a running server accepts; --json and --user-id', async () => {
    const org = await createOrg(app);
    const secret = `sk-jwt-${randomUUID()}`;
    await createKey(app, org.orgId, secret, { baseUrl: fake.url });
    const [bare, json, unknown] = await Promise.all([
      cli('jwt', 'create', '--org-id', org.orgId),
      cli('jwt', 'create', '--org-id', org.orgId, '--user-id', 'pinned-user', '--expires-in', '1h', '--json'),
      cli('jwt', 'create', '--org-id', randomUUID()),
    ]);
    expectSuccess(bare);
    expect(bare.stdout).toMatch(/^\S+\n$/);
    const token = bare.stdout.trim();
    expect(token).toMatch(JWT);
    const res = await api(app, token, `jwt-user-${randomUUID()}`)('GET', '/v1/models');
    expect(res.status).toBe(200);
    expect(res.headers.get('x-key-source')).toBe('organization');
    expect(fake.requests.some((r) => r.headers.authorization === `Bearer ${secret}`)).toBe(true);

    expectSuccess(json);
    expect(Object.keys(json.json).sort()).toEqual(['expires_at', 'jti', 'scope', 'token']);
    expect(json.json.scope).toBeNull();
    expect(json.json.token).toMatch(JWT);
    const expiresIn = Date.parse(json.json.expires_at) - Date.now();
    expect(expiresIn).toBeGreaterThan(50 * 60_000);
    expect(expiresIn).toBeLessThanOrEqual(3600_000);
    expect((await api(app, json.json.token, 'pinned-user')('GET', '/v1/models')).status).toBe(200);
    const mismatch = await api(app, json.json.token, 'someone-else')('GET', '/v1/models');
    expect(mismatch.status).toBe(403);
    expect(mismatch.body.error.code).toBe('user_mismatch');

    expectFailure(unknown, /No organization found/);
  }, 60_000);

  it('jwt revoke: a running server refuses the token', async () => {
    const org = await createOrg(app);
    const call = api(app, org.token, 'revoke-user');
    expect((await call('GET', '/v1/models')).status).toBe(403); // past authentication: no key configured

    const revoked = await cli('jwt', 'revoke', org.jti, '--json');
    expectSuccess(revoked);
    expect(revoked.json).toEqual({ jti: org.jti, revoked: true });
    expect(await q('SELECT jti FROM revoked_tokens WHERE jti = $1', [org.jti])).toHaveLength(1);
    await eventually(async () => {
      const res = await call('GET', '/v1/models');
      expect(res.status).toBe(401);
      expect(res.text).not.toContain(org.token);
    });
  }, 60_000);

  it('migrate is idempotent; usage errors and bad configuration exit 1 with one line', async () => {
    const [json, missingArg, strayWord, weakSecret, unreachable] = await Promise.all([
      cli('migrate', '--json'),
      cli('user', 'create', randomUUID()),
      cli('org', 'create', 'two', 'words'),
      runCli(['org', 'list'], { ...env, JWT_SECRET: 'short' }),
      runCli(['org', 'list'], { ...env, DATABASE_URL: 'postgres://admin:hunter2-secret@127.0.0.1:1/nowhere' }),
    ]);
    expectSuccess(json);
    expect(json.json).toEqual({ applied: [] });
    expectFailure(missingArg, /missing required argument 'external-id'/);
    // an unquoted name must not create an organization named after its first word
    expectFailure(strayWord, /too many arguments/);
    expect(await q('SELECT id FROM organizations WHERE name = $1', ['two'])).toHaveLength(0);
    expectFailure(weakSecret, /JWT_SECRET/);
    expectFailure(unreachable, /cannot reach the database at 127\.0\.0\.1:1/);
    expect(unreachable.stderr).not.toContain('hunter2');
  }, 60_000);

  it('org enable lifts org disable: the tokens are accepted again', async () => {
    const org = await createOrg(app);
    const call = api(app, org.token, 'enable-user');
    expect((await call('GET', '/v1/personas')).status).toBe(200);
    expectSuccess(await cli('org', 'disable', org.orgId));
    await eventually(async () => expect((await call('GET', '/v1/personas')).status).toBe(401));

    const [enabled, unknown] = await Promise.all([cli('org', 'enable', org.orgId, '--json'), cli('org', 'enable', randomUUID())]);
    expectSuccess(enabled);
    expect(enabled.json).toMatchObject({ id: org.orgId, disabled: false });
    expectFailure(unknown, /No organization found with id/);
    await eventually(async () => expect((await call('GET', '/v1/personas')).status).toBe(200));
    const [row] = await q('SELECT disabled_at FROM organizations WHERE id = $1', [org.orgId]);
    expect(row.disabled_at).toBeNull();
  }, 180_000);

  it('jwt list shows the tokens issued for an organization (jti, user, expiry, revoked), never a token', async () => {
    const org = await createOrg(app);
    const [pinned, plain] = await Promise.all([
      cli('jwt', 'create', '--org-id', org.orgId, '--user-id', 'listed-user', '--expires-in', '2h', '--json'),
      cli('jwt', 'create', '--org-id', org.orgId, '--json'),
    ]);
    expectSuccess(pinned);
    expectSuccess(plain);
    expectSuccess(await cli('jwt', 'revoke', plain.json.jti));

    const [json, prose, unknown] = await Promise.all([
      cli('jwt', 'list', org.orgId, '--json'),
      cli('jwt', 'list', org.orgId),
      cli('jwt', 'list', randomUUID()),
    ]);
    expectSuccess(json);
    const byJti = new Map(json.json.data.map((t: { jti: string }) => [t.jti, t]));
    // the factory's token, and the two above
    expect([...byJti.keys()].sort()).toEqual([org.jti, pinned.json.jti, plain.json.jti].sort());
    expect(byJti.get(pinned.json.jti)).toEqual({
      jti: pinned.json.jti,
      organization_id: org.orgId,
      user_id: 'listed-user',
      scope: null,
      issued_at: expect.any(String),
      expires_at: pinned.json.expires_at,
      expired: false,
      revoked: false,
      revoked_at: null,
    });
    expect(byJti.get(plain.json.jti)).toMatchObject({ user_id: null, revoked: true, revoked_at: expect.any(String) });
    expectSuccess(prose);
    expect(prose.stdout).toMatch(/^JTI\s+USER\s+ISSUED\s+EXPIRES\s+STATUS/);
    expect(prose.stdout).toMatch(new RegExp(`${plain.json.jti}\\s+\\(any\\).*revoked`));
    expect(prose.stdout).toMatch(new RegExp(`${pinned.json.jti}\\s+listed-user.*active`));
    for (const out of [json.stdout, prose.stdout]) {
      for (const token of [pinned.json.token, plain.json.token, org.token]) expect(out).not.toContain(token);
    }
    // what is stored is the metadata: no column holds the token
    const stored = JSON.stringify(await q('SELECT * FROM issued_tokens WHERE organization_id = $1', [org.orgId]));
    expect(stored).not.toContain(pinned.json.token.split('.')[2]);
    expectFailure(unknown, /No organization found with id/);
  }, 180_000);

  it('key create --user-id takes the external id too; user delete removes the user with their keys, not their records', async () => {
    const org = await createOrg(app);
    await createKey(app, org.orgId, `sk-org-fallback-${randomUUID()}`, { baseUrl: fake.url });
    const external = `leaver-${randomUUID()}@example.com`;
    const user = await createUser(app, org.orgId, external);
    const secret = `sk-leaver-${randomUUID()}`;
    const [byExternal, byInternal, unknownUser] = await Promise.all([
      cli('key', 'create', org.orgId, secret, '--user-id', external, '--base-url', fake.url, '--json'),
      cli('key', 'create', org.orgId, `sk-second-${randomUUID()}`, '--user-id', user.id, '--base-url', fake.url, '--json'),
      cli('key', 'create', org.orgId, 'sk-never-4444', '--user-id', 'nobody-here'),
    ]);
    expectSuccess(byExternal);
    expect(byExternal.json).toMatchObject({ scope: 'user', user_id: user.id });
    expectSuccess(byInternal);
    expect(byInternal.json).toMatchObject({ scope: 'user', user_id: user.id });
    expectFailure(unknownUser, /No user in this organization found with id 'nobody-here'/);
    expectSuccess(await cli('user', 'limits', user.id, '--rpm', '1000'));

    const call = api(app, org.token, external);
    const before = await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'hello' });
    expect(before.status).toBe(200);
    expect(before.headers.get('x-key-source')).toBe('user');
    const exchangeId = before.headers.get('x-request-id');

    const [deleted, again, otherOrg] = await Promise.all([
      cli('user', 'delete', org.orgId, external, '--json'),
      cli('user', 'delete', org.orgId, randomUUID()),
      cli('user', 'delete', (await createOrg(app)).orgId, user.id),
    ]);
    expectSuccess(deleted);
    expect(deleted.json).toMatchObject({ id: user.id, external_id: external, deleted_keys: 2 });
    expectFailure(again, /No user in this organization found/);
    expectFailure(otherOrg, /No user in this organization found/);
    expect(await q('SELECT id FROM users WHERE id = $1', [user.id])).toHaveLength(0);
    expect(await q('SELECT id FROM api_keys WHERE user_id = $1', [user.id])).toHaveLength(0);
    expect(await q('SELECT id FROM limits WHERE user_id = $1', [user.id])).toHaveLength(0);
    expect(await q('SELECT id FROM exchanges WHERE id = $1', [exchangeId])).toHaveLength(1);

    // the running server forgets the user and their keys: the same X-User-ID is a new user on the org's key
    await eventually(async () => {
      const after = await call('GET', '/v1/models');
      expect(after.status).toBe(200);
      expect(after.headers.get('x-key-source')).toBe('organization');
    });
    const [recreated] = await q('SELECT id FROM users WHERE organization_id = $1 AND external_id = $2', [org.orgId, external]);
    expect(recreated.id).not.toBe(user.id);
  }, 180_000);

  it('--version prints the version; an unknown subcommand prints that command group\'s help and exits 1', async () => {
    const version = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')).version;
    const [printed, org, user, key, jwt, root] = await Promise.all([
      cli('--version'),
      cli('org', 'frobnicate'),
      cli('user', 'remove', 'x'),
      cli('key', 'delete'),
      cli('jwt', 'show'),
      cli('frobnicate'),
    ]);
    expectSuccess(printed);
    expect(printed.stdout).toBe(`${version}\n`);
    for (const [r, group, word, sub] of [
      [org, 'org', 'frobnicate', 'enable'],
      [user, 'user', 'remove', 'delete'],
      [key, 'key', 'delete', 'revoke'],
      [jwt, 'jwt', 'show', 'list'],
    ] as const) {
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`unknown command '${word}'`);
      expect(r.stderr).toContain(`Usage: openai-proxy ${group} [options] [command]`);
      expect(r.stderr).toMatch(new RegExp(`\\n\\s+${sub} `));
    }
    expect(root.code).toBe(1);
    expect(root.stderr).toContain("unknown command 'frobnicate'");
    expect(root.stderr).toContain('Usage: openai-proxy [options] [command]');
  }, 180_000);

  it('embedded mode: a fresh DATA_DIR is migrated, the CLI works through a running server, and key rotate-master re-encrypts (one global audit event)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'proxy-cli-embedded-'));
    const newMasterKey = randomBytes(32).toString('base64');
    const embedded = { DATABASE_URL: '', DATA_DIR: dataDir, JWT_SECRET: TEST_JWT_SECRET, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY };
    let server: TestApp | undefined;
    try {
      // no server yet: the CLI opens its own embedded database, migrates it and closes it again
      const org = await runCli(['org', 'create', `embedded-${randomUUID()}`, '--json'], embedded);
      expectSuccess(org);

      // with a server running, the CLI goes through the server's database socket
      server = await createTestApp({ DATABASE_URL: '', DATA_DIR: dataDir, OPENAI_BASE_URL: fake.url });
      const secret = `sk-embedded-${randomUUID()}`;
      const [key, jwt] = await Promise.all([
        runCli(['key', 'create', org.json.id, secret, '--base-url', fake.url, '--json'], embedded),
        runCli(['jwt', 'create', '--org-id', org.json.id], embedded),
      ]);
      expectSuccess(key);
      expectSuccess(jwt);
      const token = jwt.stdout.trim();
      const before = await api(server, token, 'embedded-user')('GET', '/v1/models');
      expect(before.status).toBe(200);
      expect(fake.requests.filter((r) => r.headers.authorization === `Bearer ${secret}`)).toHaveLength(1);
      await server.close();
      server = undefined;

      // without the previous master key nothing can be read: refused, and no event (see the audit list below)
      expectFailure(await runCli(['key', 'rotate-master'], { ...embedded, ENCRYPTION_KEY: newMasterKey }), /cannot be decrypted/);
      const rotated = await runCli(['key', 'rotate-master', '--json'], {
        ...embedded,
        ENCRYPTION_KEY: newMasterKey,
        ENCRYPTION_KEY_PREVIOUS: TEST_ENCRYPTION_KEY,
      });
      expectSuccess(rotated);
      expect(rotated.json).toEqual({ rotated: 1, total: 1 });

      // the new master key alone now reads the key (the server refuses to start with a key that reads none)
      server = await createTestApp({ DATABASE_URL: '', DATA_DIR: dataDir, OPENAI_BASE_URL: fake.url, ENCRYPTION_KEY: newMasterKey });
      const after = await api(server, token, 'embedded-user')('GET', '/v1/models');
      expect(after.status).toBe(200);
      expect(fake.requests.filter((r) => r.headers.authorization === `Bearer ${secret}`)).toHaveLength(2);

      // the rotation is a global event (no organization, no target); the failed one wrote none
      const audit = await runCli(['audit', 'list', '--json'], { ...embedded, ENCRYPTION_KEY: newMasterKey });
      expectSuccess(audit);
      const actions = audit.json.data.map((e: { action: string }) => e.action);
      expect(actions[0]).toBe('key.rotate_master');
      // key create and jwt create ran side by side
      expect(actions.slice(1).sort()).toEqual(['jwt.create', 'key.create', 'org.create']);
      expect(audit.json.data[0]).toMatchObject({ organization_id: null, target_id: null, actor: `cli:${userInfo().username}`, details: { rotated: 1, total: 1 } });
      expect(audit.stdout).not.toContain(secret);
    } finally {
      await server?.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
