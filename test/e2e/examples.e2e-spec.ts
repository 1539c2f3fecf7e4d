import { execFile, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/create-test-app';
import { api, createKey, createOrg, createUser } from '../support/factories';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream';

const ROOT = resolve(__dirname, '../..');
const NODE = resolve(ROOT, 'node_modules/.bin/node');

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The first Python 3 that can import httpx: the one on PATH (a user's), else Debian's (`python3-httpx`,
 * which CI installs).
 */
const PYTHON = ['python3', '/usr/bin/python3'].find((python) => spawnSync(python, ['-c', 'import httpx'], { stdio: 'ignore' }).status === 0);

/** Runs an example the way a user does (`node examples/x.ts`, Node 24 strips the types; `python3 examples/x.py`). */
function runExample(file: string, env: Record<string, string>): Promise<RunResult> {
  const base = { ...process.env };
  for (const name of ['PROXY_BASE_URL', 'PROXY_JWT_TOKEN', 'USER_ID', 'SAMPLE_REQUEST_ID', 'SAMPLE_RESPONSE_ID', 'NO_KEY_JWT_TOKEN', 'PROXY_MODEL']) {
    delete base[name];
  }
  const program = file.endsWith('.py') ? PYTHON! : NODE;
  return new Promise((done) => {
    execFile(program, [resolve(ROOT, file)], { cwd: ROOT, env: { ...base, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const ISO = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/;

describe('examples', () => {
  let fake: FakeUpstream;
  let app: TestApp;

  beforeAll(async () => {
    fake = await startFakeUpstream();
    app = await createTestApp({ OPENAI_BASE_URL: fake.url, LOG_LEVEL: 'warn' });
  });

  afterAll(async () => {
    await app?.close();
    await fake?.close();
  });

  beforeEach(() => fake.reset());

  /** An organization whose user has a personal key, plus an org-wide key, as the README's set-up makes. */
  async function setUp() {
    const org = await createOrg(app);
    const externalId = `example-user-${Date.now()}@example.com`;
    const user = await createUser(app, org.orgId, externalId);
    await createKey(app, org.orgId, 'sk-example-user-key-1111', { userId: user.id, baseUrl: fake.url });
    await createKey(app, org.orgId, 'sk-example-org-key-2222', { baseUrl: fake.url });
    return { org, externalId, env: { PROXY_BASE_URL: app.url, PROXY_JWT_TOKEN: org.token, USER_ID: externalId } };
  }

  it('client.ts walks through every feature and prints what the README shows', { timeout: 90_000 }, async () => {
    const { org, externalId, env } = await setUp();
    const noKeys = await createOrg(app);

    const run = await runExample('examples/client.ts', { ...env, NO_KEY_JWT_TOKEN: noKeys.token });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = run.stdout;

    expect(out).toContain('=== OpenAI Proxy Client Example ===');
    // 1. non-streaming, answered by the stand-in (it echoes the prompt)
    expect(out).toContain('1. Non-streaming request:\nResponse: Echo: What is the capital of France? Answer in one sentence.\n');
    const requestId = /1\. Non-streaming request:[\s\S]*?Request ID: (req_[A-Za-z0-9_-]{24})\n/.exec(out)?.[1];
    expect(requestId).toBeDefined();
    expect(out).toMatch(/Response ID: resp_[0-9a-f]+\nTokens used: \d+\n/);
    // 2. streaming: the deltas put together
    expect(out).toContain('2. Streaming request:\nResponse: Echo: Count from 1 to 5, then cheer.\n');
    expect(out).toContain('Same session: yes');
    // 3./4. ratings
    expect(out).toMatch(new RegExp(`3\\. Rating response by request ID:\\nRating submitted successfully\\nRated at: ${ISO.source}\\n`));
    expect(out).toMatch(new RegExp(`4\\. Rating response by response ID:\\nRating submitted successfully\\nRated at: ${ISO.source}\\n`));
    // 5. chat completions, both ways
    expect(out).toContain('5. Chat Completions (same session):\nResponse: Echo: Say hello in French.\n');
    expect(out).toContain('Streaming: Echo: Name three colours.\n');
    // 6. sessions: the default session holds the calls made so far, the custom id is kept
    const sessionId = /Session ID \(assigned by the proxy\): (session_\S+)/.exec(out)?.[1];
    expect(sessionId).toMatch(/^session_[A-Za-z0-9_-]{24}$/);
    expect(out).toContain(`Session ${sessionId} holds 4 exchanges:`);
    expect(out).toContain('Custom session ID kept: yes');
    // 7. key selection: this user has a personal key
    expect(out).toContain(`X-Key-Source: user → served with the personal upstream key of ${externalId}`);
    // 8. personas
    expect(out).toMatch(/✅ Created persona: Technical Support \(example\) \(ID: [0-9a-f-]{36}, version 1\)/);
    expect(out).toContain("Response with persona: Echo: How can I speed up my website's first page load?");
    expect(out).toMatch(/📈 Persona analytics for "Technical Support \(example\)":\n {3}requests: 1, users: 1, sessions: 1, errors: 0\n/);
    expect(out).toMatch(/ratings: 1, average 5\.00/);
    // 9. errors, each the way the proxy answers it
    expect(out).toMatch(/✅ 401 invalid token: 401 AuthenticationError \(type: authentication_error/);
    expect(out).toMatch(/✅ 422 missing X-User-ID: 422 UnprocessableEntityError \(type: invalid_request_error, code: missing_user_id\)/);
    expect(out).toMatch(/✅ 400 malformed X-Session-ID: 400 BadRequestError \(type: invalid_request_error/);
    expect(out).toMatch(/✅ 400 rating out of range: 400 \(type: invalid_request_error, code: \S+, param: rating\)/);
    expect(out).toMatch(/✅ 403 no API key: 403 PermissionDeniedError \(type: permission_error, code: no_api_key\)/);
    expect(out).toContain(`Session ID: ${sessionId}\n\n=== Example Complete ===`);

    // what the example did is really stored: the rating by request id, the persona's instructions upstream
    const rating = await api(app, org.token, externalId)('GET', `/v1/requests/${requestId}/rating`);
    expect(rating.status).toBe(200);
    expect(rating.body).toMatchObject({ request_id: requestId, rating: 5, comment: 'Correct and concise', user_id: externalId });
    const withPersona = fake.requests.find((r) => r.path === '/v1/responses' && typeof r.body?.instructions === 'string');
    expect(withPersona?.body.instructions).toContain('You are a patient technical support engineer.');
    expect(withPersona?.body).not.toHaveProperty('persona_id');
    expect(withPersona?.headers.authorization).toBe('Bearer sk-example-user-key-1111');
  });

  it('client.ts explains the 403 when no key-less token is given, and reuses its persona on a second run', { timeout: 120_000 }, async () => {
    const { env } = await setUp();
    const first = await runExample('examples/client.ts', env);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('ℹ️  403 no_api_key: set NO_KEY_JWT_TOKEN');
    const second = await runExample('examples/client.ts', env);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/♻️ {2}Reusing persona: Technical Support \(example\)/);
  });

  it('analysis-client.ts makes a conversation, analyses it, and the second run comes from the cache', { timeout: 90_000 }, async () => {
    const { env } = await setUp();

    const run = await runExample('examples/analysis-client.ts', env);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = run.stdout;

    expect(out).toContain('🚀 OpenAI Inference Proxy - Analysis Feature Demo');
    expect(out).toMatch(/✅ Request ID: req_[A-Za-z0-9_-]{24}\n✅ Response ID: resp_[0-9a-f]+\n/);
    expect(out).toMatch(/✅ Created config: Customer Support Intent Classifier \(ID: [0-9a-f-]{36}\)/);
    expect(out).toContain('Intent Analysis Results\n📊 Analysis Type: intent\n');
    expect(out).toMatch(/🎯 Primary Category: (technical_support|billing_inquiry|feature_request|account_management|general_inquiry)\n💯 Confidence: 90\.00%\n💭 Reasoning: .+\n/);
    // one bar per category, the strongest first (the stand-in scores 0.9 for the first)
    expect(out).toMatch(/📈 All Categories:\n {3}\w+ +█{18} +90\.00%\n/);
    const bars = out.slice(out.indexOf('📈 All Categories:')).split('\n\n')[0].split('\n').filter((l) => /\d+\.\d{2}%$/.test(l));
    expect(bars).toHaveLength(5);
    expect(out).toMatch(/📋 Metadata: \{[\s\S]*"sentiment"/);
    expect(out).toMatch(/💰 Cost: (\$\d+\.\d{6}|unknown \(no price for this model\))\n🔄 Cached: No\n🤖 Model: gpt-4o-mini/);
    expect(out).toContain('3️⃣ Running same analysis again (should be cached)...\n✅ Result was cached: True\n   Same result: yes');
    expect(out).toContain('Sentiment Analysis Results\n📊 Analysis Type: sentiment\n');
    expect(out).toMatch(/🎯 Primary Category: (positive|neutral|negative|frustrated)\n/);
    expect(out).toContain('Urgency Analysis Results\n📊 Analysis Type: urgency\n');
    expect(out).toMatch(/🎯 Primary Category: (low|medium|high|critical)\n/);
    expect(out).toContain('✅ All analyses completed successfully!');

    // upstream: the sample conversation, then three analyses; the cached run made no call
    const structured = fake.requests.filter((r) => r.body?.text?.format?.type === 'json_schema');
    expect(structured).toHaveLength(3);
  });

  it('analysis-client.ts analyses SAMPLE_REQUEST_ID and reuses the saved configuration', { timeout: 90_000 }, async () => {
    const { org, externalId, env } = await setUp();
    const made = await api(app, org.token, externalId)('POST', '/v1/responses', {
      model: 'gpt-4o-mini',
      input: 'I was charged twice for my subscription this month.',
    });
    expect(made.status).toBe(200);
    const requestId = made.headers.get('x-request-id')!;

    const first = await runExample('examples/analysis-client.ts', { ...env, SAMPLE_REQUEST_ID: requestId });
    expect(first.code).toBe(0);
    expect(first.stdout).not.toContain('0️⃣');
    expect(first.stdout).toContain('✅ Result was cached: True');
    expect(first.stdout).toContain('Urgency Analysis Results');

    // second run: the configuration exists, and every analysis of this conversation is now cached
    const second = await runExample('examples/analysis-client.ts', { ...env, SAMPLE_REQUEST_ID: requestId });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/✅ Reusing existing config: Customer Support Intent Classifier/);
    expect(second.stdout).not.toContain('🔄 Cached: No');

    const results = await api(app, org.token, externalId)('GET', `/v1/analysis/results?request_id=${requestId}`);
    expect(results.status).toBe(200);
    expect(new Set(results.body.data.map((r: { analysis_type: string }) => r.analysis_type))).toEqual(
      new Set(['intent', 'sentiment', 'urgency']),
    );
  });

  const ISO_TIME = '\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d+)?Z';

  if (!PYTHON) console.warn('examples: the Python client tests are skipped: no python3 that can import httpx (apt-get install python3-httpx)');
  describe.skipIf(!PYTHON)('Python clients (examples/*.py)', () => {
    it('client.py prints what the seed README shows, and the ratings are stored', { timeout: 90_000 }, async () => {
      const { org, externalId, env } = await setUp();
      const run = await runExample('examples/client.py', env);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const out = run.stdout;
      const m = new RegExp(
        [
          '^=== OpenAI Proxy Client Example ===\\n\\n',
          '1\\. Non-streaming request:\\nResponse: Echo: What is the capital of France\\? Answer in one sentence\\.\\n',
          'Request ID: (req_[A-Za-z0-9_-]{24})\\nResponse ID: resp_[0-9a-f]+\\nTokens used: \\d+\\n\\n',
          '2\\. Streaming request:\\nResponse: Echo: Count from 1 to 5, then cheer\\.\\n',
          'Request ID: (req_[A-Za-z0-9_-]{24})\\nResponse ID: (resp_[0-9a-f]+)\\n\\n',
          `3\\. Rating response by request ID:\\nRating submitted successfully\\nRated at: ${ISO_TIME}\\n\\n`,
          `4\\. Rating response by response ID:\\nRating submitted successfully\\nRated at: ${ISO_TIME}\\n\\n`,
          'Session ID: (session_[A-Za-z0-9_-]{24})\\n\\n=== Example Complete ===\\n$',
        ].join(''),
      ).exec(out);
      expect(m, out).not.toBeNull();
      const [, requestId, streamRequestId, streamResponseId, sessionId] = m!;

      const call = api(app, org.token, externalId);
      expect((await call('GET', `/v1/requests/${requestId}/rating`)).body).toMatchObject({ rating: 5, comment: 'Correct and concise' });
      expect((await call('GET', `/v1/responses/${streamResponseId}/rating`)).body).toMatchObject({ request_id: streamRequestId, rating: 4 });
      // both calls joined the session the proxy assigned to the first
      const session = await call('GET', `/v1/sessions/${sessionId}`);
      expect(session.body.data.map((e: { id: string }) => e.id)).toEqual([requestId, streamRequestId]);
      // the user's personal key served them
      expect(fake.requests.filter((r) => r.path === '/v1/responses').every((r) => r.headers.authorization === 'Bearer sk-example-user-key-1111')).toBe(true);
    });

    it('analysis_client.py makes a conversation, analyses it, the second analysis is cached', { timeout: 90_000 }, async () => {
      const { env } = await setUp();
      const run = await runExample('examples/analysis_client.py', env);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const out = run.stdout;
      expect(out).toMatch(/^🚀 OpenAI Inference Proxy - Analysis Feature Demo\n📍 Server: http:\/\/127\.0\.0\.1:\d+\n\n/);
      expect(out).toMatch(/✅ Request ID: req_[A-Za-z0-9_-]{24}\n✅ Response ID: resp_[0-9a-f]+\n/);
      expect(out).toMatch(/1️⃣ Creating Intent Classification Configuration\.\.\.\n✅ Created config: Customer Support Intent Classifier \(ID: [0-9a-f-]{36}\)\n/);
      expect(out).toContain('2️⃣ Analyzing conversation with saved config...\nIntent Analysis Results\n📊 Analysis Type: intent\n');
      expect(out).toMatch(/🎯 Primary Category: \w+\n💯 Confidence: 90\.00%\n💭 Reasoning: .+\n\n📈 All Categories:\n {3}\w+ +█{18} +90\.00%\n/);
      const bars = out.slice(out.indexOf('📈 All Categories:')).split('\n\n')[0].split('\n').filter((l) => /\d+\.\d{2}%$/.test(l));
      expect(bars).toHaveLength(5);
      expect(out).toMatch(/📋 Metadata: \{\n {2}"sentiment"/);
      expect(out).toMatch(/💰 Cost: (\$\d+\.\d{6}|unknown \(no price for this model\))\n🔄 Cached: No\n🤖 Model: gpt-4o-mini\n/);
      expect(out).toContain('3️⃣ Running same analysis again (should be cached)...\n✅ Result was cached: True\n');
      expect(out).toContain('4️⃣ Analyzing sentiment with inline configuration...\nSentiment Analysis Results\n📊 Analysis Type: sentiment\n');
      expect(out).toContain('5️⃣ Analyzing urgency using response ID...\nUrgency Analysis Results\n📊 Analysis Type: urgency\n');
      expect(out).toMatch(/✅ All analyses completed successfully!\n$/);
      expect(fake.requests.filter((r) => r.body?.text?.format?.type === 'json_schema')).toHaveLength(3);
    });

    it('analysis_client.py takes SAMPLE_REQUEST_ID and SAMPLE_RESPONSE_ID and reuses the saved configuration', { timeout: 90_000 }, async () => {
      const { org, externalId, env } = await setUp();
      const made = await api(app, org.token, externalId)('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'I was charged twice this month.' });
      expect(made.status).toBe(200);
      const ids = { SAMPLE_REQUEST_ID: made.headers.get('x-request-id')!, SAMPLE_RESPONSE_ID: made.body.id as string };
      const first = await runExample('examples/analysis_client.py', { ...env, ...ids });
      expect(first.code).toBe(0);
      expect(first.stdout).not.toContain('0️⃣');
      const second = await runExample('examples/analysis_client.py', { ...env, ...ids });
      expect(second.code).toBe(0);
      expect(second.stdout).toMatch(/✅ Reusing existing config: Customer Support Intent Classifier/);
      expect(second.stdout).not.toContain('🔄 Cached: No');
    });

    it('a refused token: exit 1 with the reason on stderr', { timeout: 60_000 }, async () => {
      const env = { PROXY_BASE_URL: app.url, PROXY_JWT_TOKEN: 'not-a-jwt', USER_ID: 'x@example.com' };
      const client = await runExample('examples/client.py', env);
      expect(client.code).toBe(1);
      expect(client.stderr).toContain('❌ Unexpected API error: 401 authentication_error');
      expect(client.stderr).toContain('Is PROXY_JWT_TOKEN a valid, unexpired token');
      expect(client.stdout).not.toContain('=== Example Complete ===');
      const analysis = await runExample('examples/analysis_client.py', env);
      expect(analysis.code).toBe(1);
      expect(analysis.stderr).toMatch(/❌ API error 401 authentication_error/);
    });
  });

  it('an example exits non-zero with a clear message when the token is refused', { timeout: 60_000 }, async () => {
    const client = await runExample('examples/client.ts', { PROXY_BASE_URL: app.url, PROXY_JWT_TOKEN: 'not-a-jwt', USER_ID: 'x@example.com' });
    expect(client.code).toBe(1);
    expect(client.stderr).toContain('❌ Unexpected API error: 401');
    expect(client.stdout).not.toContain('=== Example Complete ===');

    const analysis = await runExample('examples/analysis-client.ts', { PROXY_BASE_URL: app.url, PROXY_JWT_TOKEN: 'not-a-jwt' });
    expect(analysis.code).toBe(1);
    expect(analysis.stderr).toMatch(/❌ API error/);
  });
});
