import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, TestApp } from '../support/create-test-app';
import { createUser } from '../support/factories';
import { FakeUpstream, startFakeUpstream } from '../support/fake-upstream';
import { proxyOrg, waitFor } from '../support/proxy-test-helpers';
import { CliResult, cliEnvFor, runCli } from '../support/run-cli';

const BODY = { model: 'gpt-4o-mini', input: 'Say hello to the limits CLI test' };

async function org(app: TestApp, fake: FakeUpstream) {
  const o = await proxyOrg(app, fake.url, `sk-limits-cli-${randomUUID()}`);
  const user = await createUser(app, o.orgId, o.userId);
  return { ...o, internalUserId: user.id };
}

/** `org limits`, `user limits`, `org show` through the built CLI (dist/src/cli.js), against a running server's database. */
describe.concurrent('limits CLI', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => runCli(args, env);
  const expectSuccess = (r: CliResult) => {
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  };
  const expectFailure = (r: CliResult, message: RegExp) => {
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  };
  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn' });
    env = cliEnvFor(app);
  });
  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  it('org limits / user limits / org show: set, show with consumption, remove with 0 or none', async () => {
    const o = await org(app, fake);
    const [set, user] = await Promise.all([
      cli('org', 'limits', o.orgId, '--rpm', '60', '--daily-budget', '5', '--tpm', '1000', '--json'),
      cli('user', 'limits', o.internalUserId, '--monthly-budget', '12.50', '--json'),
    ]);
    expectSuccess(set);
    expectSuccess(user);
    expect(set.json).toMatchObject({ id: o.orgId, name: o.name, limits: { rpm: 60, tpm: 1000, daily_budget_usd: 5, monthly_budget_usd: null } });

    expect(user.json).toMatchObject({ id: o.internalUserId, external_id: o.userId, limits: { monthly_budget_usd: 12.5, rpm: null } });

    // the server learns of the change through the change feed
    await waitFor(async () => (await o.call('POST', '/v1/responses', BODY)).headers.get('x-ratelimit-limit-requests') === '60', 5000, 'the new limit');
    const [show, prose] = await Promise.all([cli('org', 'show', o.orgId, '--json'), cli('org', 'show', o.orgId)]);
    expectSuccess(show);
    expect(show.json).toMatchObject({ id: o.orgId, name: o.name, limits: { rpm: 60, daily_budget_usd: 5 } });
    expect(show.json.usage.requests_this_minute).toBeGreaterThanOrEqual(0);
    expect(show.json.usage.cost_today_usd).toBeGreaterThan(0);
    expectSuccess(prose);
    expect(prose.stdout).toMatch(/requests per minute:\s+60 \(\d+ used this minute\)/);
    expect(prose.stdout).toMatch(/monthly budget:\s+none/);

    const removed = await cli('org', 'limits', o.orgId, '--rpm', '0', '--tpm', 'none', '--json');
    expect(removed.json.limits).toEqual({ rpm: null, tpm: null, daily_budget_usd: 5, monthly_budget_usd: null });
    const all = await cli('org', 'limits', o.orgId, '--daily-budget', 'none', '--json');
    expect(all.json.limits).toEqual({ rpm: null, tpm: null, daily_budget_usd: null, monthly_budget_usd: null });
    expect(await app.dataSource.query('SELECT id FROM limits WHERE organization_id = $1 AND user_id IS NULL', [o.orgId])).toEqual([]);
  });

  it('validation errors exit 1 with a message and change nothing', async () => {
    const o = await org(app, fake);
    const [rpm, tpm, budget, unknownOrg, unknownUser] = await Promise.all([
      cli('org', 'limits', o.orgId, '--rpm', 'lots'),
      cli('org', 'limits', o.orgId, '--rpm', '10', '--tpm', '1.5', '--json'),
      cli('user', 'limits', o.internalUserId, '--daily-budget=-3'),
      cli('org', 'show', 'not-an-id'),
      cli('user', 'limits', randomUUID(), '--monthly-budget', '5'),
    ]);
    expectFailure(rpm, /--rpm must be a whole number/);
    expectFailure(tpm, /--tpm must be a whole number/);
    expectFailure(budget, /--daily-budget must be an amount in USD/);
    expectFailure(unknownOrg, /No organization found with id 'not-an-id'/);
    expectFailure(unknownUser, /No user found with id/);
    expect(await app.dataSource.query('SELECT id FROM limits WHERE organization_id = $1', [o.orgId])).toEqual([]);
  });
});
