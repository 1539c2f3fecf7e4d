/**
 * OpenAI Inference Proxy — conversation analysis example.
 *
 * Creates a reusable analysis configuration, classifies the intent of a stored conversation, shows the
 * cache at work, then runs sentiment (inline configuration) and urgency (by response id) analyses.
 *
 * Run with Node 24 (TypeScript is stripped natively, nothing to compile):
 *   PROXY_JWT_TOKEN=… node examples/analysis-client.ts
 *
 * Environment:
 *   PROXY_BASE_URL      the proxy (default http://localhost:8000)
 *   PROXY_JWT_TOKEN     a token from `cli jwt create --org-id <org-id>` (required)
 *   USER_ID             sent as X-User-ID (default user@example.com)
 *   SAMPLE_REQUEST_ID   a stored exchange (req_…) to analyse; when unset the example makes one itself
 *   SAMPLE_RESPONSE_ID  its response id (resp_…); when unset, taken from the exchange
 *   PROXY_MODEL         the model for the sample conversation (default gpt-4o-mini)
 *   ANALYSIS_MODEL      the model that analyses (default gpt-4o-mini)
 *
 * Exits with code 1 on anything unexpected.
 */
import OpenAI from 'openai';

// ---------------------------------------------------------------------------------------------
// Types (see §7 of the API contract)
// ---------------------------------------------------------------------------------------------

export type AnalysisType = 'intent' | 'sentiment' | 'urgency' | 'custom';

export interface AnalysisCategory {
  name: string;
  description?: string;
}

export interface AnalysisConfigInput {
  name?: string;
  analysis_type: AnalysisType;
  categories?: AnalysisCategory[];
  instructions?: string;
  model?: string;
  include_metadata?: boolean;
}

export interface AnalysisConfig extends AnalysisConfigInput {
  id: string;
  name: string;
  created_at: string;
}

/** Exactly one of request_id/response_id and exactly one of config_id/config. */
export type AnalysisRequest = ({ request_id: string } | { response_id: string }) &
  ({ config_id: string } | { config: AnalysisConfigInput }) & { force_refresh?: boolean };

export interface AnalysisResult {
  id: string;
  request_id: string;
  response_id: string | null;
  config_id: string | null;
  analysis_type: AnalysisType;
  primary_category: string;
  confidence: number;
  reasoning: string;
  categories: { name: string; score: number; reasoning?: string }[];
  metadata: Record<string, unknown> | null;
  model: string;
  usage: { input_tokens: number; output_tokens: number; total_tokens: number } | null;
  cost: number | null;
  cached: boolean;
  created_at: string;
}

export interface ListPage<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

interface ApiErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export class ProxyApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;

  constructor(status: number, body: ApiErrorBody | undefined, fallback: string) {
    super(body?.error?.message ?? fallback);
    this.name = 'ProxyApiError';
    this.status = status;
    this.type = body?.error?.type ?? 'unknown';
    this.code = body?.error?.code ?? null;
  }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

export class AnalysisClient {
  readonly baseUrl: string;
  private readonly token: string;
  private readonly userId: string;

  constructor(baseUrl: string, token: string, userId: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
    this.userId = userId;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.token}`,
      'X-User-ID': this.userId,
      Accept: 'application/json',
    };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) throw new ProxyApiError(res.status, json as ApiErrorBody | undefined, `${method} ${path}: HTTP ${res.status}`);
    return json as T;
  }

  createConfig(config: AnalysisConfigInput & { name: string }): Promise<AnalysisConfig> {
    return this.request<AnalysisConfig>('POST', '/v1/analysis/configs', config);
  }

  async *listConfigs(): AsyncGenerator<AnalysisConfig> {
    let after: string | null = null;
    for (;;) {
      const query: string = after ? `?limit=100&after=${encodeURIComponent(after)}` : '?limit=100';
      const page: ListPage<AnalysisConfig> = await this.request<ListPage<AnalysisConfig>>('GET', `/v1/analysis/configs${query}`);
      yield* page.data;
      if (!page.has_more || !page.last_id) return;
      after = page.last_id;
    }
  }

  analyze(req: AnalysisRequest): Promise<AnalysisResult> {
    return this.request<AnalysisResult>('POST', '/v1/analysis', req);
  }

  getRequest(requestId: string): Promise<{ id: string; response_id: string | null }> {
    return this.request('GET', `/v1/requests/${encodeURIComponent(requestId)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

const BAR_WIDTH = 20;

function percent(score: number): string {
  return `${(score * 100).toFixed(2)}%`;
}

export function printResult(title: string, r: AnalysisResult): void {
  console.log(title);
  console.log(`📊 Analysis Type: ${r.analysis_type}`);
  console.log(`🎯 Primary Category: ${r.primary_category}`);
  console.log(`💯 Confidence: ${percent(r.confidence)}`);
  console.log(`💭 Reasoning: ${r.reasoning}`);
  console.log('');
  console.log('📈 All Categories:');
  const width = Math.max(18, ...r.categories.map((c) => c.name.length));
  for (const [i, c] of r.categories.entries()) {
    const bar = '█'.repeat(Math.round(Math.min(1, Math.max(0, c.score)) * BAR_WIDTH));
    console.log(`   ${c.name.padEnd(width)}  ${bar.padEnd(BAR_WIDTH)} ${percent(c.score).padStart(7)}`);
    if (i === 0 && c.reasoning) console.log(`   └─ ${c.reasoning}`);
  }
  if (r.metadata && Object.keys(r.metadata).length > 0) {
    console.log('');
    console.log(`📋 Metadata: ${JSON.stringify(r.metadata, null, 2)}`);
  }
  console.log('');
  console.log(`💰 Cost: ${r.cost === null ? 'unknown (no price for this model)' : `$${r.cost.toFixed(6)}`}`);
  console.log(`🔄 Cached: ${r.cached ? 'Yes' : 'No'}`);
  console.log(`🤖 Model: ${r.model}`);
}

// ---------------------------------------------------------------------------------------------
// The walkthrough
// ---------------------------------------------------------------------------------------------

const BASE_URL = process.env.PROXY_BASE_URL || 'http://localhost:8000';
const TOKEN = process.env.PROXY_JWT_TOKEN || '';
const USER_ID = process.env.USER_ID || 'user@example.com';
const MODEL = process.env.PROXY_MODEL || 'gpt-4o-mini';
const ANALYSIS_MODEL = process.env.ANALYSIS_MODEL || 'gpt-4o-mini';

const INTENT_CONFIG = {
  name: 'Customer Support Intent Classifier',
  analysis_type: 'intent',
  categories: [
    { name: 'technical_support', description: 'Problems using the product: errors, crashes, things not working' },
    { name: 'billing_inquiry', description: 'Invoices, charges, refunds, payment methods' },
    { name: 'feature_request', description: 'Asking for something the product does not do yet' },
    { name: 'account_management', description: 'Log-in, passwords, profile and account settings' },
    { name: 'general_inquiry', description: 'Anything else' },
  ],
  instructions: 'Classify what the customer needs from the support team.',
  model: ANALYSIS_MODEL,
  include_metadata: true,
} satisfies AnalysisConfigInput & { name: string };

/** Finds the configuration by name, or creates it: a configuration is meant to be made once and reused. */
async function ensureConfig(client: AnalysisClient): Promise<{ config: AnalysisConfig; created: boolean }> {
  for await (const c of client.listConfigs()) if (c.name === INTENT_CONFIG.name) return { config: c, created: false };
  try {
    return { config: await client.createConfig(INTENT_CONFIG), created: true };
  } catch (err) {
    if (err instanceof ProxyApiError && err.status === 409) {
      for await (const c of client.listConfigs()) if (c.name === INTENT_CONFIG.name) return { config: c, created: false };
    }
    throw err;
  }
}

/** A support conversation to analyse, made through the proxy (what your application does anyway). */
async function makeSampleConversation(): Promise<{ requestId: string; responseId: string }> {
  const openai = new OpenAI({
    baseURL: `${BASE_URL.replace(/\/+$/, '')}/v1`,
    apiKey: TOKEN,
    defaultHeaders: { 'X-User-ID': USER_ID },
    maxRetries: 1,
  });
  const { data, response } = await openai.responses
    .create({
      model: MODEL,
      instructions: 'You are the support assistant of a photo-sharing app.',
      input:
        'The app crashes every time I try to upload a photo, and now it shows "Error 0x80070005" on start. ' +
        'I have a client presentation in two hours and all my pictures are in there. Please help!',
      max_output_tokens: 300,
    })
    .withResponse();
  return { requestId: response.headers.get('x-request-id') ?? '', responseId: data.id };
}

async function main(): Promise<void> {
  if (!TOKEN) {
    console.error('PROXY_JWT_TOKEN is not set. Create a token with:');
    console.error('  npm run -s cli -- jwt create --org-id <org-id>');
    process.exit(2);
  }
  const client = new AnalysisClient(BASE_URL, TOKEN, USER_ID);

  console.log('🚀 OpenAI Inference Proxy - Analysis Feature Demo');
  console.log(`📍 Server: ${BASE_URL}`);
  console.log('');

  let requestId = process.env.SAMPLE_REQUEST_ID || '';
  let responseId = process.env.SAMPLE_RESPONSE_ID || '';
  if (!requestId && !responseId) {
    console.log('0️⃣ No SAMPLE_REQUEST_ID given: making a sample support conversation through the proxy...');
    ({ requestId, responseId } = await makeSampleConversation());
    console.log(`✅ Request ID: ${requestId}`);
    console.log(`✅ Response ID: ${responseId}`);
    console.log('');
  } else if (requestId && !responseId) {
    responseId = (await client.getRequest(requestId)).response_id ?? '';
  }
  // the analyses below address the conversation by request id, except the last one (by response id)
  const byRequest = requestId ? { request_id: requestId } : { response_id: responseId };

  console.log('1️⃣ Creating Intent Classification Configuration...');
  const { config, created } = await ensureConfig(client);
  console.log(`✅ ${created ? 'Created' : 'Reusing existing'} config: ${config.name} (ID: ${config.id})`);
  console.log('');

  console.log('2️⃣ Analyzing conversation with saved config...');
  const intent = await client.analyze({ ...byRequest, config_id: config.id });
  printResult('Intent Analysis Results', intent);
  console.log('');

  console.log('3️⃣ Running same analysis again (should be cached)...');
  const again = await client.analyze({ ...byRequest, config_id: config.id });
  console.log(`✅ Result was cached: ${again.cached ? 'True' : 'False'}`);
  console.log(`   Same result: ${again.id === intent.id ? 'yes' : 'no'} (${again.id}), cost $${(again.cost ?? 0).toFixed(6)}`);
  if (!again.cached) throw new Error('the second identical analysis was not served from the cache');
  console.log('');

  console.log('4️⃣ Analyzing sentiment with inline configuration...');
  const sentiment = await client.analyze({
    ...byRequest,
    config: { analysis_type: 'sentiment', model: ANALYSIS_MODEL, include_metadata: false },
  });
  printResult('Sentiment Analysis Results', sentiment);
  console.log('');

  console.log('5️⃣ Analyzing urgency using response ID...');
  if (responseId) {
    const urgency = await client.analyze({
      response_id: responseId,
      config: {
        analysis_type: 'urgency',
        instructions: 'Deadlines and blocked work raise the urgency.',
        model: ANALYSIS_MODEL,
      },
    });
    printResult('Urgency Analysis Results', urgency);
  } else {
    console.log('ℹ️  The exchange has no response id (it failed upstream); skipped.');
  }
  console.log('');

  console.log('✅ All analyses completed successfully!');
}

main().catch((err: unknown) => {
  if (err instanceof ProxyApiError) {
    console.error(`\n❌ API error ${err.status} ${err.type}${err.code ? ` (${err.code})` : ''}: ${err.message}`);
    if (err.status === 404) console.error('   Does SAMPLE_REQUEST_ID / SAMPLE_RESPONSE_ID belong to this organization?');
  } else if (err instanceof OpenAI.APIConnectionError) {
    console.error(`\n❌ Could not reach the proxy at ${BASE_URL}: ${err.message}`);
  } else if (err instanceof OpenAI.APIError) {
    console.error(`\n❌ API error while making the sample conversation: ${err.status} ${err.message}`);
  } else {
    console.error(`\n❌ Unexpected failure: ${err instanceof Error ? err.message : String(err)}`);
    if (err instanceof TypeError && /fetch failed/.test(err.message)) console.error(`   Is the proxy running at ${BASE_URL}?`);
  }
  process.exit(1);
});
