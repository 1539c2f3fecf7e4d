import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createToken } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';
import { proxyOrg, type ProxyTestOrg, waitFor } from '../support/proxy-test-helpers';

// Debian's Chromium (apt-get install chromium; .ci/run installs it)
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const SHOTS = resolve(__dirname, '../../docs/console');
const DIST = resolve(__dirname, '../../dist/console/index.html');

/** The console's own number formats (console/src/format.ts), to compare what a page shows with what the API says. */
const fmtInt = (v: number) => Math.round(v).toLocaleString('en-US');
const fmtRating = (v: number | null) => (v === null ? '—' : v.toFixed(2).replace(/\.?0+$/, ''));

describe('the console in a browser', () => {
  let fake: FakeUpstream;
  let app: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let o: ProxyTestOrg;
  let other: OpenAI;
  const otherUser = 'bob@example.com';
  let personaId: string;
  let readToken: string;
  const pageErrors: string[] = [];
  const ids: { first?: string; second?: string; bob?: string } = {};

  const shot = (name: string, p: Page = page) => p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium)`);
    if (!existsSync(DIST)) throw new Error('dist/console is missing: run npm run build');
    mkdirSync(SHOTS, { recursive: true });
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url });
    // readable names in the screenshots: the organization's SDK client acts for alice
    const made = await proxyOrg(app, fake.url);
    const alice = 'alice@example.com';
    o = {
      ...made,
      userId: alice,
      client: new OpenAI({ baseURL: `${app.url}/v1`, apiKey: made.token, defaultHeaders: { 'X-User-ID': alice }, maxRetries: 0 }),
      call: api(app, made.token, alice),
    };
    other = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: o.token, defaultHeaders: { 'X-User-ID': otherUser }, maxRetries: 0 });
    readToken = (await createToken(app, o.orgId, { scope: 'read' })).token;
    const persona = await o.call('POST', '/v1/personas', {
      name: 'Support agent',
      description: 'Answers customers of the photo app',
      content: 'You are the support agent of a photo-sharing app.\nBe brief.',
    });
    expect(persona.status).toBe(201);
    personaId = persona.body.id;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // anything the Content-Security-Policy blocks (an inline script, an outside origin) is reported here
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) pageErrors.push(m.text());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await fake?.close();
  });

  async function signIn(p: Page, token: string, userId: string): Promise<void> {
    await p.goto(`${app.url}/console`);
    await p.getByLabel('Token').fill(token);
    await p.getByLabel('User ID').fill(userId);
    await p.getByRole('button', { name: 'Sign in' }).click();
  }

  it('tells a wrong token apart with a clear message', async () => {
    await page.goto(`${app.url}/console`);
    await shot('sign-in');
    await signIn(page, 'not-a-token', o.userId);
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(await alert.innerText()).toContain('The server refused the token');
    // still on the form; nothing kept
    expect(await page.getByLabel('Token').isVisible()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem('console.token'))).toBeNull();
  });

  it('signs in with a token and shows what to do when there is nothing yet', async () => {
    await signIn(page, o.token, o.userId);
    await page.getByRole('heading', { name: 'Exchanges' }).waitFor();
    const curl = page.getByTestId('first-exchange-curl');
    await curl.waitFor();
    expect(await curl.innerText()).toContain(`${app.url}/v1/responses`);
    // the token stays in the tab's session storage, never in the address
    expect(await page.evaluate(() => sessionStorage.getItem('console.token'))).toBe(o.token);
    expect(page.url()).not.toContain(o.token);
    await shot('empty');
  });

  it('shows an exchange made through the official SDK without a reload', async () => {
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    const first = await o.client.responses.create(
      { model: 'gpt-4o-mini', input: 'My photos do not upload, error 0x80070005', persona_id: personaId } as never,
      { headers: { 'X-Session-ID': 'session-console-test' } },
    );
    const firstId = (await o.client.responses
      .create({ model: 'gpt-4o-mini', input: 'Still failing after a restart', persona_id: personaId } as never, { headers: { 'X-Session-ID': 'session-console-test' } })
      .withResponse()).response.headers.get('x-request-id')!;
    ids.second = firstId;
    const bob = await other.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'user', content: 'Which albums do I have?' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'list_albums', arguments: '{"owner":"bob"}' } }] },
          { role: 'tool', tool_call_id: 'call_1', content: '["Holidays 2026","Cats"]' },
          { role: 'user', content: 'How do I share an album?' },
        ],
      })
      .withResponse();
    ids.bob = bob.response.headers.get('x-request-id')!;
    expect(first.output_text).toContain('Echo:');
    const list = await o.call('GET', '/v1/requests?limit=10');
    ids.first = list.body.data.find((r: { id: string }) => r.id !== ids.second && r.id !== ids.bob).id;

    await page.locator(`tr[data-row="${ids.bob}"]`).waitFor({ timeout: 10_000 });
    await page.locator(`tr[data-row="${ids.first}"]`).waitFor();
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);
    // newest first
    const order = await page.locator('tr[data-row]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-row')));
    expect(order).toEqual([ids.bob, ids.second, ids.first]);
    const row = await page.locator(`tr[data-row="${ids.bob}"]`).innerText();
    expect(row).toContain(otherUser);
    expect(row).toContain('gpt-4o-mini');
    expect(row.toLowerCase()).toContain('completed');
  });

  it('filters by user and by rating, in the URL', async () => {
    expect((await o.call('POST', `/v1/requests/${ids.second}/rating`, { rating: 2 })).status).toBe(201);
    await page.getByLabel('User', { exact: true }).fill(otherUser);
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await waitFor(async () => (await page.locator('tr[data-row]').count()) === 1);
    expect(await page.locator('tr[data-row]').getAttribute('data-row')).toBe(ids.bob);
    expect(new URL(page.url()).searchParams.get('user_id')).toBe(otherUser);

    // a shared link opens the same view
    await page.goto(`${app.url}/console/requests?rating=2`);
    await waitFor(async () => (await page.locator('tr[data-row]').count()) === 1 && (await page.locator(`tr[data-row="${ids.second}"]`).count()) === 1);
    expect(await page.locator(`tr[data-row="${ids.second}"]`).innerText()).toContain('★ 2');
    await page.getByRole('button', { name: 'Clear' }).click();
    await waitFor(async () => (await page.locator('tr[data-row]').count()) === 3);
    await shot('exchanges');
  });

  it('opens an exchange from the keyboard, shows the chat, and rates it into the API', async () => {
    await page.locator('tr[data-row]').first().focus();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    await page.waitForURL(`**/console/requests/${ids.first}`);
    const chat = page.getByTestId('chat');
    await chat.waitFor();
    const text = await chat.innerText();
    expect(text).toContain('You are the support agent of a photo-sharing app.');
    expect(text).toContain('My photos do not upload, error 0x80070005');
    expect(text).toContain('Echo:');
    expect(await page.locator('[data-role="user"]').count()).toBe(1);
    expect(await page.locator('[data-role="assistant"]').count()).toBe(1);
    const details = await page.getByRole('table', { name: 'Details' }).innerText();
    expect(details).toContain('organization'); // key source
    expect(details).toContain('session-console-test');

    // the stars are labels of visually hidden radio inputs: a click on the fourth star
    const star = await page.getByRole('radio', { name: '4 stars' }).getAttribute('id');
    await page.locator(`label[for="${star}"]`).click();
    await page.getByPlaceholder('Comment (optional)').fill('Helpful, a bit short');
    await page.getByRole('button', { name: 'Save rating' }).click();
    await page.getByTestId('rating-saved').waitFor();
    const rating = await o.call('GET', `/v1/requests/${ids.first}/rating`);
    expect(rating.status).toBe(200);
    expect(rating.body).toMatchObject({ rating: 4, comment: 'Helpful, a bit short', user_id: o.userId });
    await shot('exchange');

    // the raw JSON tab holds the stored exchange as the API gives it
    await page.getByRole('tab', { name: 'Raw JSON' }).click();
    const raw = JSON.parse(await page.getByTestId('raw-json').innerText());
    expect(raw.id).toBe(ids.first);
    expect(raw.request_body.input).toBe('My photos do not upload, error 0x80070005');
  });

  it('runs an analysis with an inline configuration and shows the result', async () => {
    await page.getByRole('tab', { name: 'Analysis' }).click();
    await page.getByText('Inline config').click();
    await page.getByLabel('Inline configuration (JSON)').fill(JSON.stringify({ analysis_type: 'intent', categories: [{ name: 'bug_report' }, { name: 'how_to' }] }));
    await page.getByRole('button', { name: 'Run analysis' }).click();
    await page.getByTestId('analysis-result').first().waitFor();
    const results = await o.call('GET', `/v1/analysis/results?request_id=${ids.first}`);
    expect(results.body.data).toHaveLength(1);
    expect(await page.getByTestId('analysis-result').first().innerText()).toContain(results.body.data[0].primary_category);
    await shot('exchange-analysis');
  });

  it('opens the exchange’s session: every turn in order with its rating, totals at the top', async () => {
    await page.getByRole('tab', { name: 'Conversation' }).click();
    await page.getByRole('link', { name: 'session-console-test' }).click();
    await page.waitForURL('**/console/sessions/session-console-test');
    await page.getByTestId('turn').nth(1).waitFor();
    const turns = await page.getByTestId('turn').allInnerTexts();
    expect(turns).toHaveLength(2);
    expect(turns[0]).toContain('My photos do not upload');
    expect(turns[0]).toContain('★ 4');
    expect(turns[0]).toContain('persona v1');
    expect(turns[1]).toContain('Still failing after a restart');
    expect(turns[1]).toContain('★ 2');
    expect(await page.locator('[data-stat="Turns"]').innerText()).toBe('2');
    expect(await page.locator('[data-stat="Average rating"]').innerText()).toBe('3');
    await shot('session');
  });

  it('opens a deep link to an exchange and renders its tool calls', async () => {
    await page.goto(`${app.url}/console/requests/${ids.bob}`);
    const chat = page.getByTestId('chat');
    await chat.waitFor();
    const roles = await chat.locator('[data-role]').evaluateAll((els) => els.map((e) => e.getAttribute('data-role')));
    expect(roles).toEqual(['user', 'assistant', 'tool', 'user', 'assistant']);
    const text = await chat.innerText();
    expect(text.toLowerCase()).toContain('tool call: list_albums');
    expect(text).toContain('{"owner":"bob"}');
    expect(text).toContain('["Holidays 2026","Cats"]');
    expect(text).toContain('How do I share an album?');
    await shot('exchange-tools');
  });

  it('shows a persona’s analytics as charts whose numbers are the API’s', async () => {
    // a second version, to compare
    const patched = await o.call('PATCH', `/v1/personas/${personaId}`, { content: 'You are the support agent of a photo-sharing app.\nBe brief and kind.' });
    expect(patched.body.version).toBe(2);
    const thanks = await o.client.responses.create({ model: 'gpt-4o-mini', input: 'Thanks!', persona_id: personaId } as never).withResponse();
    const intent = { analysis_type: 'intent', categories: [{ name: 'bug_report' }, { name: 'how_to' }] };
    expect((await o.call('POST', '/v1/analysis', { request_id: thanks.response.headers.get('x-request-id'), config: intent })).status).toBe(200);
    const analytics = (await o.call('GET', `/v1/analytics/personas/${personaId}`)).body;
    expect(analytics.requests).toBe(3);

    await page.goto(`${app.url}/console/personas`);
    await page.getByRole('table', { name: 'Personas' }).getByText('Support agent').click();
    await page.waitForURL(`**/console/personas/${personaId}`);
    await page.getByTestId('persona-stats').waitFor();
    const stat = (label: string) => page.locator(`[data-stat="${label}"]`).innerText();
    expect(await stat('Requests')).toBe(fmtInt(analytics.requests));
    expect(await stat('Users')).toBe(fmtInt(analytics.users));
    expect(await stat('Sessions')).toBe(fmtInt(analytics.sessions));
    expect(await stat('Tokens')).toBe(fmtInt(analytics.tokens.total));
    expect(await stat('Ratings')).toBe(fmtInt(analytics.ratings.count));
    expect(await stat('Average rating')).toBe(fmtRating(analytics.ratings.average));
    expect(await stat('Latency p50')).toBe(`${fmtInt(analytics.latency_ms.p50)} ms`);

    // the value labels the bar charts draw
    const labels = async (testId: string) => {
      const chart = page.getByTestId(testId);
      await chart.locator('svg').first().waitFor();
      return chart.locator('.recharts-label-list text').allTextContents();
    };
    const distribution = await labels('chart-rating-distribution');
    expect(distribution).toEqual(['1', '2', '3', '4', '5'].map((k) => String(analytics.ratings.distribution[k])));
    const perVersion = await labels('chart-version-requests');
    expect(perVersion).toEqual(analytics.by_version.map((v: { requests: number }) => String(v.requests)));
    const ratingPerVersion = await labels('chart-version-rating');
    // a version nobody rated draws no bar and no label
    const averages = (analytics.by_version as { average_rating: number | null }[]).filter((v) => v.average_rating !== null);
    expect(averages.length).toBeLessThan(analytics.by_version.length);
    expect(ratingPerVersion.filter(Boolean)).toEqual(averages.map((v) => (Number.isInteger(v.average_rating) ? String(v.average_rating) : v.average_rating!.toFixed(2))));
    // the analysis categories of each version (the first exchange, of v1, was analysed above; "Thanks!" is of v2)
    expect(analytics.by_version.filter((v: { analysis: object }) => Object.keys(v.analysis).length)).toHaveLength(2);
    for (const [type, categories] of Object.entries(analytics.analysis as Record<string, Record<string, number>>)) {
      const shown = await labels(`chart-analysis-${type}`);
      const expected: string[] = [];
      for (const v of analytics.by_version as { analysis: Record<string, Record<string, number>> }[]) {
        if (v.analysis[type]) for (const c of Object.keys(categories)) expected.push(String(v.analysis[type][c] ?? 0));
      }
      expect(shown.slice().sort()).toEqual(expected.sort());
    }
    expect(Object.keys(analytics.analysis)).toEqual(['intent']);
    const daily = await labels('chart-daily-requests');
    expect(daily).toEqual(analytics.daily.map((d: { requests: number }) => String(d.requests)));
    await shot('persona-analytics');

    await page.getByRole('tab', { name: 'Versions' }).click();
    const diff = page.getByTestId('persona-diff');
    await diff.locator('.diff-add').waitFor();
    expect(await diff.locator('.diff-del').innerText()).toContain('- Be brief.');
    expect(await diff.locator('.diff-add').innerText()).toContain('+ Be brief and kind.');
    await shot('persona-versions');
  });

  it('creates a persona and edits it into a new version', async () => {
    await page.goto(`${app.url}/console/personas`);
    await page.getByRole('button', { name: 'New persona' }).click();
    const form = page.getByRole('form', { name: 'New persona' });
    await form.locator('input[name="name"]').fill('Billing agent');
    await form.locator('textarea[name="content"]').fill('You answer billing questions.');
    await form.getByRole('button', { name: 'Create' }).click();
    await page.waitForURL(/\/console\/personas\/[0-9a-f-]{36}$/);
    const id = page.url().split('/').pop()!;
    expect((await o.call('GET', `/v1/personas/${id}`)).body).toMatchObject({ name: 'Billing agent', version: 1 });
    await page.getByRole('tab', { name: 'Editor' }).click();
    await page.getByLabel('Content').fill('You answer billing questions, politely.');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved: version 2.').waitFor();
    expect((await o.call('GET', `/v1/personas/${id}`)).body).toMatchObject({ version: 2, content: 'You answer billing questions, politely.' });
    await shot('persona-editor');
  });

  it('shows usage by day, model, user and persona, and the limits', async () => {
    await page.goto(`${app.url}/console/usage`);
    await page.getByRole('table', { name: 'Usage' }).waitFor();
    const proxied = (await o.call('GET', `/v1/analytics/usage?group_by=day&from=${new Date(Date.now() - 30 * 86_400_000).toISOString()}`)).body.data;
    const requests = proxied.filter((r: { source: string }) => r.source === 'proxy').reduce((s: number, r: { requests: number }) => s + r.requests, 0);
    expect(await page.locator('[data-stat="Proxied requests"]').innerText()).toBe(fmtInt(requests));
    expect(await page.getByRole('table', { name: 'Top users by cost' }).innerText()).toContain(otherUser);
    await page.getByText('Limits and budgets').waitFor();
    await page.getByText('By model').click();
    await waitFor(async () => (await page.getByRole('table', { name: 'Usage' }).innerText()).includes('gpt-4o-mini'));
    await shot('usage');
  });

  it('creates an analysis configuration and shows results with their category distribution', async () => {
    await page.goto(`${app.url}/console/analysis`);
    await page.getByRole('button', { name: 'New configuration' }).click();
    const form = page.getByRole('form', { name: 'New analysis configuration' });
    await form.locator('input[name="name"]').fill('Support intent');
    await form.locator('textarea[name="categories"]').fill('bug_report: something is broken\nhow_to: asks how to do something');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('table', { name: 'Analysis configurations' }).getByText('Support intent').waitFor();
    const configs = (await o.call('GET', '/v1/analysis/configs')).body.data;
    expect(configs.map((c: { name: string }) => c.name)).toEqual(['Support intent']);
    expect(configs[0].categories.map((c: { name: string }) => c.name)).toEqual(['bug_report', 'how_to']);
    const configId = configs[0].id as string;

    // run it from an exchange's Analysis tab, as a saved configuration
    await page.goto(`${app.url}/console/requests/${ids.second}`);
    await page.getByRole('tab', { name: 'Analysis' }).click();
    await page.getByPlaceholder('Pick one').click();
    await page.getByRole('option', { name: 'Support intent (intent)' }).click();
    await page.getByRole('button', { name: 'Run analysis' }).click();
    await page.getByTestId('analysis-result').first().waitFor();
    const saved = (await o.call('GET', `/v1/analysis/results?config_id=${configId}`)).body.data;
    expect(saved).toHaveLength(1);
    expect(saved[0].request_id).toBe(ids.second);

    // the results with their category distribution: the bars count the API's results
    await page.goto(`${app.url}/console/analysis`);
    await page.getByRole('table', { name: 'Analysis results' }).waitFor();
    const all = (await o.call('GET', '/v1/analysis/results?limit=100')).body.data as { primary_category: string }[];
    expect(all).toHaveLength(3);
    const counts = new Map<string, number>();
    for (const r of all) counts.set(r.primary_category, (counts.get(r.primary_category) ?? 0) + 1);
    const chart = page.getByTestId('chart-category-distribution');
    await chart.locator('.recharts-label-list text').first().waitFor();
    const shown = await chart.locator('.recharts-label-list text').allTextContents();
    expect(shown.map(Number).sort()).toEqual([...counts.values()].sort());
    expect(await chart.locator('.recharts-cartesian-axis-tick-value').allTextContents()).toEqual(expect.arrayContaining([...counts.keys()]));
    expect(await page.getByRole('table', { name: 'Analysis results' }).locator('tr[data-row]').count()).toBe(3);
    await shot('analysis');
  });

  it('is usable in a narrow window', async () => {
    // the same tab (the sign-in lives in the tab's session storage), made narrow
    const narrow = page;
    await narrow.setViewportSize({ width: 420, height: 860 });
    await narrow.goto(`${app.url}/console/requests`);
    await narrow.locator('tr[data-row]').first().waitFor();
    // the filters fold away behind a button
    expect(await narrow.getByRole('button', { name: 'Apply filters' }).isVisible()).toBe(false);
    await narrow.getByRole('button', { name: 'Filters', exact: true }).click();
    await narrow.getByRole('button', { name: 'Apply filters' }).waitFor();
    await narrow.getByRole('button', { name: 'Filters', exact: true }).click();
    await narrow.getByRole('button', { name: 'Menu' }).click();
    await narrow.getByRole('link', { name: 'Personas' }).click();
    await narrow.waitForURL('**/console/personas');
    await narrow.goto(`${app.url}/console/requests`);
    await narrow.locator('tr[data-row]').first().waitFor();
    await shot('narrow', narrow);
    await narrow.setViewportSize({ width: 1280, height: 860 });
  });

  it('refuses editing to a read-only token, clearly', async () => {
    const ro = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const p = await ro.newPage();
    await signIn(p, readToken, o.userId);
    await p.getByRole('heading', { name: 'Exchanges' }).waitFor();
    expect(await p.getByText('read-only', { exact: true }).isVisible()).toBe(true);
    await p.goto(`${app.url}/console/personas/${personaId}?tab=editor`);
    await p.getByLabel('Content').fill('Overwritten by a reader');
    await p.getByRole('button', { name: 'Save' }).click();
    const alert = p.getByRole('alert');
    await alert.waitFor();
    expect(await alert.innerText()).toContain('not allowed');
    expect(await alert.innerText()).toContain('manage');
    expect((await o.call('GET', `/v1/personas/${personaId}`)).body.version).toBe(2);
    await shot('read-only', p);
    await ro.close();
  });

  it('logged no page errors and nothing the Content-Security-Policy refused', () => {
    expect(pageErrors).toEqual([]);
  });
});

