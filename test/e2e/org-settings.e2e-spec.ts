import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliActor } from '../../src/audit/audit-actor';
import { OrganizationsService } from '../../src/auth/organizations.service';
import { RequestAuthenticator } from '../../src/auth/request-authenticator';
import { createTestApp, TestApp } from '../support/create-test-app';
import { api, createOrg, createToken } from '../support/factories';
import { cliEnvFor, runCli } from '../support/run-cli';

describe.concurrent('organization privacy settings', () => {
  let app: TestApp;
  const q = (sql: string, params: unknown[] = []) => app.dataSource.query(sql, params);
  const actions = async (orgId: string) =>
    q(
      `SELECT action, actor, details FROM audit_events
        WHERE organization_id = $1 AND action IN ('org.capture', 'org.retention', 'org.safety_id') ORDER BY created_at, id`,
      [orgId],
    );

  beforeAll(async () => {
    app = await createTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  async function adminOrg() {
    const org = await createOrg(app);
    const admin = await createToken(app, org.orgId, { scope: 'admin' });
    return { ...org, call: api(app, admin.token, 'ops@example.com'), adminJti: admin.jti };
  }

  it('GET /v1/settings starts from full capture, no retention, no safety_identifier', async () => {
    const org = await adminOrg();
    const res = await org.call('GET', '/v1/settings');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      object: 'organization.settings',
      organization_id: org.orgId,
      capture_mode: 'full',
      content_retention_days: null,
      retention_days: null,
      safety_identifier: false,
    });
  });

  it('PATCH changes only what it names, audits each setting it changed, and the next call acts with it', async () => {
    const org = await adminOrg();
    const res = await org.call('PATCH', '/v1/settings', { capture_mode: 'redacted', retention_days: 90 });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ capture_mode: 'redacted', content_retention_days: null, retention_days: 90, safety_identifier: false });
    const again = await org.call('PATCH', '/v1/settings', { safety_identifier: true, content_retention_days: 30 });
    expect(again.body).toMatchObject({ capture_mode: 'redacted', content_retention_days: 30, retention_days: 90, safety_identifier: true });
    const cleared = await org.call('PATCH', '/v1/settings', { content_retention_days: null });
    expect(cleared.body).toMatchObject({ content_retention_days: null, retention_days: 90 });

    expect(await actions(org.orgId)).toEqual([
      { action: 'org.capture', actor: `token:${org.adminJti}`, details: { from: 'full', to: 'redacted' } },
      { action: 'org.retention', actor: `token:${org.adminJti}`, details: { content_days_from: null, content_days: null, days_from: null, days: 90 } },
      { action: 'org.retention', actor: `token:${org.adminJti}`, details: { content_days_from: null, content_days: 30, days_from: 90, days: 90 } },
      { action: 'org.safety_id', actor: `token:${org.adminJti}`, details: { from: false, to: true } },
      { action: 'org.retention', actor: `token:${org.adminJti}`, details: { content_days_from: 30, content_days: null, days_from: 90, days: 90 } },
    ]);

    // the acting context of the next authenticated call carries the new settings (the cached state was dropped)
    const auth = app.app.get(RequestAuthenticator);
    const claims = await auth.verifyToken({ authorization: `Bearer ${org.token}` }, 'proxy');
    const acting = await auth.actingFor(claims, { 'x-user-id': 'alice' });
    expect(acting.privacy).toEqual({ capture: 'redacted', safetyIdentifier: true, contentRetentionDays: null, retentionDays: 90 });
  });

  it('refuses bad values with a 400 naming the field, and changes nothing', async () => {
    const org = await adminOrg();
    const cases: [unknown, string][] = [
      [{ capture_mode: 'everything' }, 'capture_mode'],
      [{ capture_mode: null }, 'capture_mode'],
      [{ retention_days: 0 }, 'retention_days'],
      [{ retention_days: 1.5 }, 'retention_days'],
      [{ content_retention_days: '30' }, 'content_retention_days'],
      [{ retention_days: 36_501 }, 'retention_days'],
      [{ safety_identifier: 'yes' }, 'safety_identifier'],
      [{ content_retention_days: 60, retention_days: 30 }, 'content_retention_days'],
      [{ colour: 'blue' }, 'colour'],
    ];
    for (const [body, field] of cases) {
      const res = await org.call('PATCH', '/v1/settings', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.type).toBe('invalid_request_error');
      expect(`${res.body.error.param} ${res.body.error.message}`, JSON.stringify(body)).toContain(field);
    }
    expect((await org.call('GET', '/v1/settings')).body).toMatchObject({ capture_mode: 'full', content_retention_days: null, retention_days: null });
    expect(await actions(org.orgId)).toEqual([]);
  });

  it('needs the admin scope; another organization is never touched', async () => {
    const org = await adminOrg();
    const other = await adminOrg();
    const plain = api(app, org.token, 'ops@example.com'); // default scopes: no admin
    expect((await plain('GET', '/v1/settings')).body.error.code).toBe('insufficient_scope');
    expect((await plain('PATCH', '/v1/settings', { capture_mode: 'full' })).status).toBe(403);
    await org.call('PATCH', '/v1/settings', { capture_mode: 'metadata' });
    expect((await other.call('GET', '/v1/settings')).body.capture_mode).toBe('full');
  });

  it('the service refuses an unknown organization with a 404', async () => {
    const orgs = app.app.get(OrganizationsService);
    await expect(orgs.changePrivacy('6c1f8b1e-0000-4000-8000-000000000000', { captureMode: 'metadata' }, cliActor())).rejects.toMatchObject({
      kind: 'not_found',
    });
  });

  it('CLI: org capture, org retention, org safety-id, org show', async () => {
    const org = await createOrg(app);
    const env = cliEnvFor(app);
    const capture = await runCli(['org', 'capture', org.orgId, 'metadata', '--json'], env);
    expect(capture.code).toBe(0);
    expect(JSON.parse(capture.stdout).settings).toMatchObject({ capture_mode: 'metadata' });
    const bad = await runCli(['org', 'retention', org.orgId, '--content-days', '30', '--days', '10'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('cannot be longer than exchange retention');
    const retention = await runCli(['org', 'retention', org.orgId, '--content-days', '7', '--days', 'off'], env);
    expect(retention.code).toBe(0);
    expect(retention.stdout).toMatch(/bodies kept:\s+7 days/);
    expect(retention.stdout).toMatch(/exchanges kept:\s+kept/);
    const safety = await runCli(['org', 'safety-id', org.orgId, 'on'], env);
    expect(safety.code).toBe(0);
    expect(safety.stdout).toMatch(/safety_identifier:\s+on/);
    const show = await runCli(['org', 'show', org.orgId], env);
    expect(show.stdout).toMatch(/capture:\s+metadata/);
    expect((await actions(org.orgId)).map((e: { action: string; actor: string }) => `${e.action} ${e.actor.slice(0, 4)}`)).toEqual([
      'org.capture cli:',
      'org.retention cli:',
      'org.safety_id cli:',
    ]);
  });
});
