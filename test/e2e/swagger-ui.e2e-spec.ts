import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createKey, createOrg } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';

// Debian's Chromium (apt-get install chromium; .ci/run installs it). Without it the test is skipped on a
// developer machine, but fails under CI, where a silently skipped browser test would hide a broken /docs.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Fills both security schemes of the Authorize dialog: the bearer JWT and the X-User-ID api key. */
async function authorize(page: Page, token: string, userId: string): Promise<void> {
  await page.locator('.scheme-container button.authorize').click();
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.waitFor();
  const bearer = dialog.locator('.auth-container').filter({ hasText: 'bearer' }).first();
  await bearer.locator('input').fill(token);
  await bearer.locator('button.authorize').click();
  const user = dialog.locator('.auth-container').filter({ hasText: 'X-User-ID' }).first();
  await user.locator('input').fill(userId);
  await user.locator('button.authorize').click();
  expect(await dialog.locator('button', { hasText: 'Logout' }).count()).toBe(2);
  await dialog.locator('button.btn-done').first().click();
  await dialog.waitFor({ state: 'detached' });
}

const MISSING = `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)`;
const TITLE = haveChromium ? 'Swagger UI in a browser' : `Swagger UI in a browser (skipped: ${MISSING})`;
if (!haveChromium && !process.env.CI) console.warn(`Swagger UI browser tests skipped: ${MISSING}`);

describe.skipIf(!haveChromium && !process.env.CI)(TITLE, () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let browser: Browser;

  beforeAll(async () => {
    if (!haveChromium) throw new Error(MISSING);
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await fake?.close();
  });

  it('authorizes with a token and X-User-ID, then creates a persona with "Try it out"', async () => {
    const org = await createOrg(app);
    const userId = 'swagger-user@example.com';
    const personaName = `Swagger persona ${Date.now()}`;

    const context = await browser.newContext();
    const page = await context.newPage();
    const externalRequests: string[] = [];
    page.on('request', (req) => {
      if (!req.url().startsWith(app.url) && !req.url().startsWith('data:')) externalRequests.push(req.url());
    });

    await page.goto(`${app.url}/docs`);
    await page.locator('.swagger-ui .info .title').waitFor();
    expect(await page.locator('.swagger-ui .info .title').textContent()).toContain('OpenAI inference proxy');

    await authorize(page, org.token, userId);

    // POST /v1/personas → Try it out → Execute
    const op = page.locator('.opblock.opblock-post', { has: page.locator('[data-path="/v1/personas"]') }).first();
    await op.locator('.opblock-summary').first().click();
    await op.locator('button.try-out__btn').click();
    const body = op.locator('textarea.body-param__text');
    await body.fill(
      JSON.stringify({ name: personaName, content: 'You answer like a pirate.', description: 'made in the Swagger UI' }, null, 2),
    );
    await op.locator('button.execute').click();

    const answer = op.locator('.live-responses-table tr.response');
    await answer.waitFor();
    expect((await answer.locator('td.response-col_status').textContent())?.trim()).toBe('201');
    const shown = await answer.locator('td.response-col_description').textContent();
    expect(shown).toContain(personaName);
    expect(shown).toContain('"version": 1');

    // the persona really exists, in the organization of the token
    const list = await api(app, org.token, userId)('GET', '/v1/personas');
    expect(list.status).toBe(200);
    expect(list.body.data.map((p: { name: string }) => p.name)).toContain(personaName);
    // the UI is served by the app itself (works offline, no CDN)
    expect(externalRequests).toEqual([]);

    await context.close();
  });

  it('runs the default example of POST /v1/responses as shown', async () => {
    const org = await createOrg(app);
    await createKey(app, org.orgId, 'sk-swagger-org-key-4444', { baseUrl: fake.url });
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${app.url}/docs`);
    await page.locator('.swagger-ui .info .title').waitFor();
    await authorize(page, org.token, 'swagger-user@example.com');

    const op = page.locator('.opblock.opblock-post', { has: page.locator('[data-path="/v1/responses"]') }).first();
    await op.locator('.opblock-summary').first().click();
    await op.locator('button.try-out__btn').click();
    expect(await op.locator('textarea.body-param__text').inputValue()).not.toContain('persona_id');
    await op.locator('button.execute').click();

    const answer = op.locator('.live-responses-table tr.response');
    await answer.waitFor();
    expect((await answer.locator('td.response-col_status').textContent())?.trim()).toBe('200');
    expect(await answer.locator('td.response-col_description').textContent()).toContain('"object": "response"');
    expect(fake.requests.filter((r) => r.path === '/v1/responses')).toHaveLength(1);

    await context.close();
  });
});
