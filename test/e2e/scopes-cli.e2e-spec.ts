import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createOrg } from '../support/factories';
import { CliResult, cliEnvFor, runCli } from '../support/run-cli';

function expectSuccess(r: CliResult): void {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}

function expectFailure(r: CliResult, message: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
}

describe('CLI: jwt create --scope, jwt list', () => {
  let app: TestApp;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => runCli(args, env);
  const q = (sql: string, params: unknown[] = []) => app.dataSource.query(sql, params);

  beforeAll(async () => {
    app = await createTestApp();
    env = cliEnvFor(app);
  });
  afterAll(async () => {
    await app?.close();
  });

  it('jwt create --scope issues a token with those rights only; the bare token alone without --json', async () => {
    const org = await createOrg(app);
    const [json, bare] = await Promise.all([
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', ' manage  read ', '--json'),
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', 'proxy'),
    ]);
    expectSuccess(json);
    expect(Object.keys(json.json).sort()).toEqual(['expires_at', 'jti', 'scope', 'token']);
    expect(json.json.scope).toBe('read manage');
    const call = api(app, json.json.token, 'scoped-user');
    expect((await call('GET', '/v1/personas')).status).toBe(200);
    const refused = await call('GET', '/v1/models');
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ type: 'permission_error', code: 'insufficient_scope' });
    expect(refused.body.error.message).toContain("'proxy'");

    expectSuccess(bare);
    expect(bare.stdout).toMatch(/^\S+\n$/);
    const proxyOnly = api(app, bare.stdout.trim(), 'scoped-user');
    expect((await proxyOnly('GET', '/v1/personas')).status).toBe(403);
    // past the scope check: the organization has no upstream key
    expect((await proxyOnly('GET', '/v1/models')).body.error.code).toBe('no_api_key');
  }, 60_000);

  it('an unknown scope word or an empty scope exits 1 with one clear line, and issues nothing', async () => {
    const org = await createOrg(app);
    const [unknown, empty, upper] = await Promise.all([
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', 'read write'),
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', ''),
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', 'ADMIN', '--json'),
    ]);
    expectFailure(unknown, /Unknown scope 'write'; scopes are proxy, read, manage, admin/);
    expectFailure(empty, /scope must name at least one of proxy, read, manage, admin/);
    expectFailure(upper, /Unknown scope 'ADMIN'/);
    // only the factory's token
    expect(await q('SELECT jti FROM issued_tokens WHERE organization_id = $1', [org.orgId])).toEqual([{ jti: org.jti }]);
  }, 60_000);

  it('jwt list shows each token’s scope (the default spelled out), never a token', async () => {
    const org = await createOrg(app);
    const [admin, reader] = await Promise.all([
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', 'admin', '--json'),
      cli('jwt', 'create', '--org-id', org.orgId, '--scope', 'read', '--user-id', 'reader', '--json'),
    ]);
    expectSuccess(admin);
    expectSuccess(reader);
    const [json, prose] = await Promise.all([cli('jwt', 'list', org.orgId, '--json'), cli('jwt', 'list', org.orgId)]);
    expectSuccess(json);
    const scopes = Object.fromEntries(json.json.data.map((t: { jti: string; scope: string | null }) => [t.jti, t.scope]));
    expect(scopes).toEqual({ [org.jti]: null, [admin.json.jti]: 'admin', [reader.json.jti]: 'read' });
    expect(await q('SELECT jti, scope FROM issued_tokens WHERE organization_id = $1 ORDER BY jti', [org.orgId])).toEqual(
      [
        { jti: org.jti, scope: null },
        { jti: admin.json.jti, scope: 'admin' },
        { jti: reader.json.jti, scope: 'read' },
      ].sort((a, b) => a.jti.localeCompare(b.jti)),
    );

    expectSuccess(prose);
    expect(prose.stdout).toMatch(/^JTI\s+USER\s+ISSUED\s+EXPIRES\s+STATUS\s+SCOPE\n/);
    expect(prose.stdout).toMatch(new RegExp(`${org.jti}\\s+\\(any\\).*active\\s+proxy read manage \\(default\\)\\n`));
    expect(prose.stdout).toMatch(new RegExp(`${admin.json.jti}\\s+\\(any\\).*active\\s+admin\\n`));
    expect(prose.stdout).toMatch(new RegExp(`${reader.json.jti}\\s+reader.*active\\s+read\\n`));
    for (const token of [org.token, admin.json.token, reader.json.token]) {
      expect(json.stdout).not.toContain(token);
      expect(prose.stdout).not.toContain(token);
    }
  }, 60_000);
});
