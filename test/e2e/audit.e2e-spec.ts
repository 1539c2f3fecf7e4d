import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createOrg, createUser, TestOrg } from '../support/factories';
import { CliResult, cliEnvFor, runCli } from '../support/run-cli';

const CLI_ACTOR = `cli:${userInfo().username}`;

interface AuditRow {
  id: string;
  organization_id: string | null;
  actor: string;
  actor_user_id: string | null;
  action: string;
  target_id: string | null;
  details: Record<string, unknown>;
  /** the whole row as PostgreSQL prints it, to search for what must never be there */
  text: string;
}

function expectSuccess(r: CliResult): void {
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}

function expectFailure(r: CliResult, message: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(message);
}

describe.concurrent('audit log', () => {
  let app: TestApp;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => runCli(args, env);
  const q = (sql: string, params: unknown[] = []) => app.dataSource.query(sql, params);

  /** The events of an organization, oldest first. */
  const eventsOf = (orgId: string): Promise<AuditRow[]> =>
    q(
      `SELECT id, organization_id, actor, actor_user_id, action, target_id, details, a::text AS text
         FROM audit_events a WHERE organization_id = $1 ORDER BY created_at, id`,
      [orgId],
    );

  const internalUserId = async (orgId: string, externalId: string): Promise<string> =>
    (await q('SELECT id FROM users WHERE organization_id = $1 AND external_id = $2', [orgId, externalId]))[0].id;

  /** The events after those of createOrg (the organization and its token, made through the services as the CLI). */
  async function eventsAfterSetup(orgId: string): Promise<AuditRow[]> {
    const rows = await eventsOf(orgId);
    expect(rows.slice(0, 2).map((r) => r.action)).toEqual(['org.create', 'jwt.create']);
    return rows.slice(2);
  }

  /** One event per action, in this order, each free of every secret. */
  function expectEvents(rows: AuditRow[], expected: Partial<AuditRow>[], secrets: string[]): void {
    expect(rows.map((r) => r.action)).toEqual(expected.map((e) => e.action));
    rows.forEach((row, i) => expect(row).toMatchObject(expected[i]));
    for (const row of rows) for (const secret of secrets) expect(row.text).not.toContain(secret);
  }

  beforeAll(async () => {
    app = await createTestApp();
    env = cliEnvFor(app);
    // failures forced inside the change's transaction, after or before its event is written
    await q(`CREATE OR REPLACE FUNCTION audit_spec_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused by the audit spec'; END $$`);
    await q('DROP TRIGGER IF EXISTS audit_spec_refuse_event ON audit_events');
    await q(`CREATE TRIGGER audit_spec_refuse_event BEFORE INSERT ON audit_events FOR EACH ROW
             WHEN (NEW.details->>'name' LIKE 'audit-refused-%') EXECUTE FUNCTION audit_spec_refuse()`);
    await q('DROP TRIGGER IF EXISTS audit_spec_refuse_persona ON personas');
    await q(`CREATE TRIGGER audit_spec_refuse_persona BEFORE UPDATE ON personas FOR EACH ROW
             WHEN (NEW.name LIKE 'audit-refused-%') EXECUTE FUNCTION audit_spec_refuse()`);
  });
  afterAll(async () => {
    if (app) {
      await q('DROP TRIGGER IF EXISTS audit_spec_refuse_event ON audit_events');
      await q('DROP TRIGGER IF EXISTS audit_spec_refuse_persona ON personas');
      await q('DROP FUNCTION IF EXISTS audit_spec_refuse()');
    }
    await app?.close();
  });

  it('CLI: org create, disable and enable each append one event; a refused name writes neither', async () => {
    const name = `audit-org-${randomUUID()}`;
    const created = await cli('org', 'create', name, '--json');
    expectSuccess(created);
    const orgId = created.json.id as string;
    expectSuccess(await cli('org', 'disable', orgId));
    expectSuccess(await cli('org', 'enable', orgId));
    expectEvents(
      await eventsOf(orgId),
      [
        { action: 'org.create', actor: CLI_ACTOR, actor_user_id: null, organization_id: orgId, target_id: orgId, details: { name } },
        { action: 'org.disable', actor: CLI_ACTOR, target_id: orgId },
        { action: 'org.enable', actor: CLI_ACTOR, target_id: orgId },
      ],
      [],
    );

    // a change that fails writes no event: a duplicate name
    expectFailure(await cli('org', 'create', name), /already exists/);
    expect(await q(`SELECT id FROM audit_events WHERE action = 'org.create' AND details->>'name' = $1`, [name])).toHaveLength(1);
    // and no change without its event: the event's insert fails, the organization is not created
    const refused = `audit-refused-${randomUUID()}`;
    expectFailure(await cli('org', 'create', refused), /failed unexpectedly/);
    expect(await q('SELECT id FROM organizations WHERE name = $1', [refused])).toHaveLength(0);
  }, 150_000);

  it('CLI: user create and delete name the user by internal id only', async () => {
    const org = await createOrg(app);
    const external = `audit-user-${randomUUID()}@example.com`;
    const personName = `Person ${randomUUID()}`;
    const created = await cli('user', 'create', org.orgId, external, '--name', personName, '--json');
    expectSuccess(created);
    const deleted = await cli('user', 'delete', org.orgId, external, '--json');
    expectSuccess(deleted);
    expectFailure(await cli('user', 'delete', org.orgId, external), /No user in this organization found/);
    expectEvents(
      await eventsAfterSetup(org.orgId),
      [
        { action: 'user.create', actor: CLI_ACTOR, target_id: created.json.id },
        { action: 'user.delete', actor: CLI_ACTOR, target_id: created.json.id, details: { deleted_keys: 0 } },
      ],
      [external, personName],
    );
  }, 150_000);

  it('CLI: key create and revoke; the key itself is never in the log', async () => {
    const org = await createOrg(app);
    const secret = `sk-audit-${randomUUID()}`;
    const created = await runCli(['key', 'create', org.orgId, '-', '--label', 'billing', '--json'], env, { stdin: secret });
    expectSuccess(created);
    const keyId = created.json.id as string;
    expectSuccess(await cli('key', 'revoke', keyId));
    expectFailure(await cli('key', 'create', org.orgId, 'sk has spaces'), /invalid characters/);
    expectEvents(
      await eventsAfterSetup(org.orgId),
      [
        { action: 'key.create', actor: CLI_ACTOR, target_id: keyId, details: { user_id: null, label: 'billing' } },
        { action: 'key.revoke', actor: CLI_ACTOR, target_id: keyId },
      ],
      [secret],
    );
  }, 150_000);

  it('CLI: jwt create and revoke name the token by jti; neither the token nor the pinned user is kept', async () => {
    const org = await createOrg(app);
    const external = `audit-pinned-${randomUUID()}`;
    const created = await cli('jwt', 'create', '--org-id', org.orgId, '--user-id', external, '--json');
    expectSuccess(created);
    const { jti, token } = created.json as { jti: string; token: string };
    expectSuccess(await cli('jwt', 'revoke', jti));
    expectEvents(
      await eventsAfterSetup(org.orgId),
      [
        { action: 'jwt.create', actor: CLI_ACTOR, target_id: jti, details: { pinned_to_user: true } },
        { action: 'jwt.revoke', actor: CLI_ACTOR, target_id: jti },
      ],
      [token, token.split('.')[2], external],
    );
  }, 150_000);

  it('CLI: limits set and removed on an organization and a user', async () => {
    const org = await createOrg(app);
    const user = await createUser(app, org.orgId);
    expectSuccess(await cli('org', 'limits', org.orgId, '--rpm', '10', '--daily-budget', '5'));
    expectSuccess(await cli('org', 'limits', org.orgId, '--rpm', 'none'));
    expectSuccess(await cli('user', 'limits', user.id, '--tpm', '1000'));
    expectFailure(await cli('org', 'limits', org.orgId, '--rpm', '-3'), /rpm/);
    expectEvents(
      await eventsAfterSetup(org.orgId),
      [
        { action: 'user.create', target_id: user.id },
        { action: 'limits.set', target_id: org.orgId, details: { subject: 'organization', set: ['rpm', 'daily_budget_usd'], removed: [] } },
        { action: 'limits.remove', target_id: org.orgId, details: { subject: 'organization', set: [], removed: ['rpm'] } },
        { action: 'limits.set', target_id: user.id, details: { subject: 'user', set: ['tpm'], removed: [] } },
      ],
      [user.external_id],
    );
  }, 150_000);

  it('HTTP: persona create, update and delete name the token and the acting user, never the content', async () => {
    const org = await createOrg(app);
    const external = `audit-http-${randomUUID()}`;
    const call = api(app, org.token, external);
    const content = `You are the audit spec persona ${randomUUID()}`;
    const newContent = `You are the changed audit spec persona ${randomUUID()}`;
    const created = await call('POST', '/v1/personas', { name: `persona-${randomUUID()}`, content });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await call('PATCH', `/v1/personas/${id}`, { content: newContent })).status).toBe(200);
    // failures: a taken name (before the event) and a refused update (after it) leave no event
    const taken = await call('POST', '/v1/personas', { name: created.body.name, content: 'x' });
    expect(taken.status).toBe(409);
    const refused = await call('PATCH', `/v1/personas/${id}`, { name: `audit-refused-${randomUUID()}` });
    expect(refused.status).toBeGreaterThanOrEqual(500);
    expect((await call('DELETE', `/v1/personas/${id}`)).status).toBe(204);
    const actor = { actor: `token:${org.jti}`, actor_user_id: await internalUserId(org.orgId, external) };
    expectEvents(
      await eventsAfterSetup(org.orgId),
      [
        { action: 'persona.create', ...actor, target_id: id, details: { version: 1 } },
        { action: 'persona.update', ...actor, target_id: id, details: { fields: ['content'], version: 2 } },
        { action: 'persona.delete', ...actor, target_id: id },
      ],
      [content, newContent, external],
    );
  });

  it('HTTP: analysis config create, update and delete, never the instructions', async () => {
    const org = await createOrg(app);
    const external = `audit-http-${randomUUID()}`;
    const call = api(app, org.token, external);
    const instructions = `Secret instructions ${randomUUID()}`;
    const created = await call('POST', '/v1/analysis/configs', { name: 'Sentiment', analysis_type: 'sentiment', instructions });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await call('PATCH', `/v1/analysis/configs/${id}`, { instructions: `${instructions} changed`, model: 'gpt-4o' })).status).toBe(200);
    expect((await call('PATCH', `/v1/analysis/configs/${id}`, { categories: [{ name: 'a' }, { name: 'a' }] })).status).toBe(400);
    expect((await call('DELETE', `/v1/analysis/configs/${id}`)).status).toBe(204);
    expect((await call('DELETE', `/v1/analysis/configs/${id}`)).status).toBe(404);
    const actor = { actor: `token:${org.jti}`, actor_user_id: await internalUserId(org.orgId, external) };
    expectEvents(
      await eventsAfterSetup(org.orgId),
      [
        { action: 'analysis_config.create', ...actor, target_id: id, details: { analysis_type: 'sentiment' } },
        { action: 'analysis_config.update', ...actor, target_id: id, details: { fields: ['instructions', 'model'] } },
        { action: 'analysis_config.delete', ...actor, target_id: id },
      ],
      [instructions],
    );
  });

  describe('GET /v1/audit', () => {
    /** An organization with `n` persona events (create + n-1 updates) and a delete. */
    async function orgWithEvents(n: number): Promise<{ org: TestOrg; call: ReturnType<typeof api>; ids: string[] }> {
      const org = await createOrg(app, { tokenScope: 'manage admin' });
      const call = api(app, org.token, 'audit-reader');
      const created = await call('POST', '/v1/personas', { name: 'p', content: 'v1' });
      for (let i = 2; i <= n; i++) await call('PATCH', `/v1/personas/${created.body.id}`, { content: `v${i}` });
      await call('DELETE', `/v1/personas/${created.body.id}`);
      const ids = (await eventsAfterSetup(org.orgId)).map((e) => e.id).reverse();
      expect(ids).toHaveLength(n + 1);
      return { org, call, ids };
    }

    it('pages newest first with limit and after, and filters by action and time', async () => {
      const { call, ids } = await orgWithEvents(4);
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await call('GET', `/v1/audit?limit=2${after ? `&after=${after}` : ''}`);
        expect(page.status).toBe(200);
        expect(page.body.object).toBe('list');
        expect(page.body.first_id).toBe(page.body.data[0].id);
        expect(page.body.last_id).toBe(page.body.data.at(-1).id);
        seen.push(...page.body.data.map((e: { id: string }) => e.id));
        if (!page.body.has_more) break;
        expect(page.body.data).toHaveLength(2);
        after = page.body.last_id;
      }
      expect(seen.slice(0, ids.length)).toEqual(ids);
      expect(seen).toHaveLength(ids.length + 2);

      const first = await call('GET', '/v1/audit?limit=100');
      expect(first.body.data[0]).toMatchObject({ object: 'audit_event', action: 'persona.delete', actor: expect.stringMatching(/^token:/) });
      expect(first.body.data.map((e: { action: string }) => e.action).slice(-3)).toEqual(['persona.create', 'jwt.create', 'org.create']);

      const deletes = await call('GET', '/v1/audit?action=persona.delete');
      expect(deletes.body.data.map((e: { id: string }) => e.id)).toEqual([ids[0]]);
      const createdAt = first.body.data.at(-1).created_at as string;
      expect((await call('GET', `/v1/audit?to=${encodeURIComponent(createdAt)}`)).body.data).toEqual([]);
      expect((await call('GET', `/v1/audit?from=${encodeURIComponent(createdAt)}`)).body.data).toHaveLength(ids.length + 2);
      expect((await call('GET', '/v1/audit?from=2999-01-01')).body).toEqual({ object: 'list', data: [], has_more: false, first_id: null, last_id: null });

      for (const bad of ['limit=0', 'limit=101', 'after=nope', `after=${randomUUID()}`, 'action=DROP', 'from=yesterday', 'from=2026-02-01&to=2026-01-01']) {
        const res = await call('GET', `/v1/audit?${bad}`);
        expect(res.status, bad).toBe(400);
        expect(res.body.error.type).toBe('invalid_request_error');
      }
    });

    it("shows only the caller's organization", async () => {
      const [a, b] = await Promise.all([orgWithEvents(2), orgWithEvents(2)]);
      const listA = await a.call('GET', '/v1/audit?limit=100');
      expect(listA.body.data.map((e: { id: string }) => e.id).slice(0, a.ids.length)).toEqual(a.ids);
      expect(listA.body.data).toHaveLength(a.ids.length + 2);
      expect(listA.body.data.every((e: { organization_id: string }) => e.organization_id === a.org.orgId)).toBe(true);
      // another organization's event is no cursor either
      const cross = await a.call('GET', `/v1/audit?after=${b.ids[0]}`);
      expect(cross.status).toBe(400);
    });
  });

  it('CLI: audit list prints the log as a table or JSON, pages with --after and exits 1 on bad input', async () => {
    const org = await createOrg(app);
    const created = await cli('user', 'create', org.orgId, `audit-list-${randomUUID()}`, '--json');
    expectSuccess(created);
    expectSuccess(await cli('org', 'limits', org.orgId, '--rpm', '7'));

    const json = await cli('audit', 'list', '--org-id', org.orgId, '--json');
    expectSuccess(json);
    const events = await eventsOf(org.orgId);
    expect(json.json.data.map((e: { id: string }) => e.id)).toEqual(events.map((e) => e.id).reverse());
    expect(json.json.data[0]).toMatchObject({ action: 'limits.set', actor: CLI_ACTOR, organization_id: org.orgId });

    const prose = await cli('audit', 'list', '--org-id', org.orgId, '--limit', '1');
    expectSuccess(prose);
    const lines = prose.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+ORGANIZATION\s+ACTOR\s+ACTION\s+TARGET\s+DETAILS$/);
    expect(lines[1]).toContain('limits.set');
    expect(lines[2]).toBe(`More: --after ${events.at(-1)!.id}`);
    const next = await cli('audit', 'list', '--org-id', org.orgId, '--after', events.at(-1)!.id, '--action', 'user.create', '--json');
    expectSuccess(next);
    expect(next.json.data.map((e: { target_id: string }) => e.target_id)).toEqual([created.json.id]);

    const none = await cli('audit', 'list', '--org-id', org.orgId, '--action', 'org.disable');
    expectSuccess(none);
    expect(none.stdout).toBe('No audit events.\n');

    const [badLimit, unknownOrg, badAction, badFrom] = await Promise.all([
      cli('audit', 'list', '--limit', '0'),
      cli('audit', 'list', '--org-id', randomUUID()),
      cli('audit', 'list', '--action', 'Key Revoke'),
      cli('audit', 'list', '--from', 'yesterday'),
    ]);
    expectFailure(badLimit, /--limit must be a whole number from 1 to 100/);
    expectFailure(unknownOrg, /No organization found with id/);
    expectFailure(badAction, /--action must look like key.revoke/);
    expectFailure(badFrom, /--from must be an ISO-8601/);
  }, 150_000);

  // key rotate-master's event (global, none when the rotation fails): cli.e2e-spec.ts, embedded mode, which has the
  // private database a rotation needs
});
