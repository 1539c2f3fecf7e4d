/**
 * OpenAI Inference Proxy — client example.
 *
 * Shows what an application talking to the proxy does: authenticate with a JWT and an X-User-ID,
 * send Responses API and Chat Completions calls through the official `openai` SDK (streaming and not),
 * rate answers, follow sessions, see which upstream key served a call, use personas, and handle errors.
 *
 * Run with Node 24 (TypeScript is stripped natively, nothing to compile):
 *   PROXY_JWT_TOKEN=… USER_ID=user@example.com node examples/client.ts
 *
 * Environment:
 *   PROXY_BASE_URL     the proxy (default http://localhost:8000)
 *   PROXY_JWT_TOKEN    a token from `cli jwt create --org-id <org-id>` (required)
 *   USER_ID            the end user the calls act for, sent as X-User-ID (default user@example.com)
 *   PROXY_MODEL        the model to ask (default gpt-4o-mini)
 *   NO_KEY_JWT_TOKEN   optional: a token of an organization without any upstream key, to show the 403
 *
 * Exits with code 1 on anything unexpected (including an error case that did not fail the way it should).
 */
import OpenAI from 'openai';
import type {
  Response as OpenAIResponse,
  ResponseCreateParamsNonStreaming,
  ResponseCreateParamsStreaming,
} from 'openai/resources/responses/responses';

// ---------------------------------------------------------------------------------------------
// Types of the proxy's own routes (see the API contract)
// ---------------------------------------------------------------------------------------------

export interface ApiErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export interface Rating {
  request_id: string;
  response_id: string | null;
  user_id: string;
  rating: number;
  comment: string | null;
  rated_at: string;
}

export interface Persona {
  id: string;
  name: string;
  content: string;
  description: string | null;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface ListPage<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cached_tokens?: number;
  reasoning_tokens?: number;
}

export interface Exchange {
  id: string;
  response_id: string | null;
  session_id: string;
  user_id: string;
  persona_id: string | null;
  persona_version: number | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  status: string;
  usage: Usage | null;
  cost: number | null;
  latency_ms: number | null;
  key_source: 'user' | 'organization' | null;
  output_text: string | null;
  created_at: string;
}

export interface PersonaAnalytics {
  persona_id: string;
  name: string;
  period: { from: string | null; to: string | null };
  requests: number;
  users: number;
  sessions: number;
  errors: number;
  tokens: { input: number; output: number; total: number };
  cost: number | null;
  latency_ms: { avg: number | null; p50: number | null; p95: number | null };
  ratings: { count: number; average: number | null; distribution: Record<string, number> };
}

/** What the proxy adds to a proxied answer, from its response headers. */
export interface ProxyMeta {
  requestId: string;
  sessionId: string;
  keySource: string;
}

/** A failed call to one of the proxy's own routes, carrying the OpenAI-style error envelope. */
export class ProxyApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;

  constructor(status: number, body: ApiErrorBody | undefined, fallback: string) {
    super(body?.error?.message ?? fallback);
    this.name = 'ProxyApiError';
    this.status = status;
    this.type = body?.error?.type ?? 'unknown';
    this.code = body?.error?.code ?? null;
    this.param = body?.error?.param ?? null;
  }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/** Extension fields the proxy understands on top of OpenAI's request bodies. */
interface ProxyExtensions {
  persona_id?: string;
}

export interface ProxyClientOptions {
  baseUrl: string;
  token: string;
  /** X-User-ID; leave undefined only to show what the proxy says without it */
  userId: string | undefined;
  sessionId?: string;
}

/**
 * A small typed client: the OpenAI SDK for the OpenAI-compatible routes (pointed at the proxy, with the JWT
 * as its "API key"), plain fetch for the proxy's own routes. It remembers the session the proxy assigned,
 * so every later call joins the same conversation.
 */
export class ProxyClient {
  readonly baseUrl: string;
  readonly openai: OpenAI;
  /** sent as X-Session-ID when set; filled in from the first answer, or set by hand for a custom id */
  sessionId: string | undefined;
  private readonly token: string;
  private readonly userId: string | undefined;

  constructor(opts: ProxyClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.token = opts.token;
    this.userId = opts.userId;
    this.sessionId = opts.sessionId;
    this.openai = new OpenAI({
      baseURL: `${this.baseUrl}/v1`,
      apiKey: opts.token,
      defaultHeaders: opts.userId === undefined ? {} : { 'X-User-ID': opts.userId },
      // the proxy already retries the upstream; retry here only for connection failures
      maxRetries: 1,
      timeout: 120_000,
    });
  }

  private sessionHeaders(): Record<string, string> {
    return this.sessionId ? { 'X-Session-ID': this.sessionId } : {};
  }

  private remember(headers: Headers): ProxyMeta {
    const meta: ProxyMeta = {
      requestId: headers.get('x-request-id') ?? '',
      sessionId: headers.get('x-session-id') ?? '',
      keySource: headers.get('x-key-source') ?? '',
    };
    if (meta.sessionId) this.sessionId = meta.sessionId;
    return meta;
  }

  /** POST /v1/responses, non-streaming. */
  async createResponse(
    params: ResponseCreateParamsNonStreaming & ProxyExtensions,
  ): Promise<{ response: OpenAIResponse; meta: ProxyMeta }> {
    const { data, response } = await this.openai.responses
      .create(params, { headers: this.sessionHeaders() })
      .withResponse();
    return { response: data, meta: this.remember(response.headers) };
  }

  /** POST /v1/responses with stream: true; calls onText for every text delta as it arrives. */
  async streamResponse(
    params: Omit<ResponseCreateParamsStreaming, 'stream'> & ProxyExtensions,
    onText: (delta: string) => void,
  ): Promise<{ response: OpenAIResponse | undefined; meta: ProxyMeta }> {
    const { data: stream, response } = await this.openai.responses
      .create({ ...params, stream: true }, { headers: this.sessionHeaders() })
      .withResponse();
    const meta = this.remember(response.headers);
    let completed: OpenAIResponse | undefined;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') onText(event.delta);
      else if (event.type === 'response.completed') completed = event.response;
    }
    return { response: completed, meta };
  }

  /** POST /v1/chat/completions, non-streaming. */
  async chat(params: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming & ProxyExtensions) {
    const { data, response } = await this.openai.chat.completions
      .create(params, { headers: this.sessionHeaders() })
      .withResponse();
    return { completion: data, meta: this.remember(response.headers) };
  }

  /** POST /v1/chat/completions with stream: true. */
  async streamChat(
    params: Omit<OpenAI.Chat.ChatCompletionCreateParamsStreaming, 'stream'> & ProxyExtensions,
    onText: (delta: string) => void,
  ): Promise<{ meta: ProxyMeta; id: string }> {
    const { data: stream, response } = await this.openai.chat.completions
      .create({ ...params, stream: true }, { headers: this.sessionHeaders() })
      .withResponse();
    const meta = this.remember(response.headers);
    let id = '';
    for await (const chunk of stream) {
      id = chunk.id;
      const delta = chunk.choices[0]?.delta?.content;
      if (delta) onText(delta);
    }
    return { meta, id };
  }

  /** The proxy's own JSON routes. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' };
    if (this.userId !== undefined) headers['X-User-ID'] = this.userId;
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

  rateByRequestId(requestId: string, rating: number, comment?: string): Promise<Rating> {
    return this.request<Rating>('POST', `/v1/requests/${encodeURIComponent(requestId)}/rating`, { rating, comment });
  }

  rateByResponseId(responseId: string, rating: number, comment?: string): Promise<Rating> {
    return this.request<Rating>('POST', `/v1/responses/${encodeURIComponent(responseId)}/rating`, { rating, comment });
  }

  getRequest(requestId: string): Promise<Exchange> {
    return this.request<Exchange>('GET', `/v1/requests/${encodeURIComponent(requestId)}`);
  }

  /** GET /v1/responses/{id}: the stored final response object. */
  getResponse(responseId: string): Promise<OpenAIResponse> {
    return this.request<OpenAIResponse>('GET', `/v1/responses/${encodeURIComponent(responseId)}`);
  }

  getSession(sessionId: string): Promise<ListPage<Exchange>> {
    return this.request<ListPage<Exchange>>('GET', `/v1/sessions/${encodeURIComponent(sessionId)}`);
  }

  createPersona(input: { name: string; content: string; description?: string }): Promise<Persona> {
    return this.request<Persona>('POST', '/v1/personas', input);
  }

  async *listPersonas(): AsyncGenerator<Persona> {
    let after: string | null = null;
    for (;;) {
      const query: string = after ? `?limit=100&after=${encodeURIComponent(after)}` : '?limit=100';
      const page: ListPage<Persona> = await this.request<ListPage<Persona>>('GET', `/v1/personas${query}`);
      yield* page.data;
      if (!page.has_more || !page.last_id) return;
      after = page.last_id;
    }
  }

  getPersonaAnalytics(personaId: string): Promise<PersonaAnalytics> {
    return this.request<PersonaAnalytics>('GET', `/v1/analytics/personas/${encodeURIComponent(personaId)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The walkthrough
// ---------------------------------------------------------------------------------------------

const BASE_URL = process.env.PROXY_BASE_URL || 'http://localhost:8000';
const TOKEN = process.env.PROXY_JWT_TOKEN || '';
const USER_ID = process.env.USER_ID || 'user@example.com';
const MODEL = process.env.PROXY_MODEL || 'gpt-4o-mini';
const NO_KEY_TOKEN = process.env.NO_KEY_JWT_TOKEN || '';

/** An example step that did not behave as documented: stops the walkthrough with exit code 1. */
class UnexpectedOutcome extends Error {}

function describeKeySource(source: string): string {
  switch (source) {
    case 'user':
      return `the personal upstream key of ${USER_ID}`;
    case 'organization':
      return `the organization-wide key (${USER_ID} has no personal key)`;
    default:
      return 'unknown (no X-Key-Source header)';
  }
}

function outputText(response: OpenAIResponse | undefined): string {
  return response?.output_text ?? '';
}

/** Runs `call`, which must fail with `status`; prints how the error looks to the SDK or to fetch. */
async function expectError(label: string, status: number, call: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch (err) {
    if (err instanceof OpenAI.APIError && err.status === status) {
      // err.error is the body's `error` object; err.message also carries the status
      const message = (err.error as { message?: string } | undefined)?.message ?? err.message;
      console.log(`   ✅ ${label}: ${err.status} ${err.constructor.name} (type: ${err.type}, code: ${err.code ?? 'null'})`);
      console.log(`      "${message}"`);
      return;
    }
    if (err instanceof ProxyApiError && err.status === status) {
      console.log(`   ✅ ${label}: ${err.status} (type: ${err.type}, code: ${err.code ?? 'null'}, param: ${err.param ?? 'null'})`);
      console.log(`      "${err.message}"`);
      return;
    }
    throw err;
  }
  throw new UnexpectedOutcome(`${label}: expected HTTP ${status}, but the call succeeded`);
}

async function main(): Promise<void> {
  if (!TOKEN) {
    console.error('PROXY_JWT_TOKEN is not set. Create a token with:');
    console.error('  npm run -s cli -- jwt create --org-id <org-id>');
    process.exit(2);
  }

  console.log('=== OpenAI Proxy Client Example ===');
  console.log(`📍 Server: ${BASE_URL}`);
  console.log(`👤 User: ${USER_ID}`);
  console.log('');

  const client = new ProxyClient({ baseUrl: BASE_URL, token: TOKEN, userId: USER_ID });

  // 1. Non-streaming ------------------------------------------------------------------------------
  console.log('1. Non-streaming request:');
  const first = await client.createResponse({
    model: MODEL,
    input: 'What is the capital of France? Answer in one sentence.',
    max_output_tokens: 100,
  });
  console.log(`Response: ${outputText(first.response)}`);
  console.log(`Request ID: ${first.meta.requestId}`);
  console.log(`Response ID: ${first.response.id}`);
  console.log(`Tokens used: ${first.response.usage?.total_tokens ?? 'unknown'}`);
  console.log(`Session ID (assigned by the proxy): ${first.meta.sessionId}`);
  console.log(`Key source: ${first.meta.keySource}`);
  console.log('');

  // 2. Streaming ----------------------------------------------------------------------------------
  console.log('2. Streaming request:');
  process.stdout.write('Response: ');
  const streamed = await client.streamResponse(
    { model: MODEL, input: 'Count from 1 to 5, then cheer.', max_output_tokens: 100 },
    (delta) => process.stdout.write(delta),
  );
  process.stdout.write('\n');
  if (!streamed.response) throw new UnexpectedOutcome('the stream ended without a response.completed event');
  console.log(`Request ID: ${streamed.meta.requestId}`);
  console.log(`Response ID: ${streamed.response.id}`);
  console.log(`Same session: ${streamed.meta.sessionId === first.meta.sessionId ? 'yes' : 'no'} (${streamed.meta.sessionId})`);
  console.log('');

  // 3./4. Ratings ---------------------------------------------------------------------------------
  console.log('3. Rating response by request ID:');
  const byRequest = await client.rateByRequestId(first.meta.requestId, 5, 'Correct and concise');
  console.log('Rating submitted successfully');
  console.log(`Rated at: ${byRequest.rated_at}`);
  console.log('');

  console.log('4. Rating response by response ID:');
  const byResponse = await client.rateByResponseId(streamed.response.id, 4);
  console.log('Rating submitted successfully');
  console.log(`Rated at: ${byResponse.rated_at}`);
  console.log(`(rating ${byResponse.rating} stored for request ${byResponse.request_id})`);
  console.log('');

  // 5. Chat Completions ---------------------------------------------------------------------------
  console.log('5. Chat Completions (same session):');
  const chat = await client.chat({
    model: MODEL,
    messages: [{ role: 'user', content: 'Say hello in French.' }],
    max_tokens: 50,
  });
  console.log(`Response: ${chat.completion.choices[0]?.message?.content ?? ''}`);
  console.log(`Request ID: ${chat.meta.requestId}`);
  process.stdout.write('Streaming: ');
  const chatStream = await client.streamChat(
    { model: MODEL, messages: [{ role: 'user', content: 'Name three colours.' }], max_tokens: 50 },
    (delta) => process.stdout.write(delta),
  );
  process.stdout.write('\n');
  console.log(`Request ID: ${chatStream.meta.requestId}`);
  console.log('');

  // 6. Sessions -----------------------------------------------------------------------------------
  console.log('6. Session tracking:');
  const session = await client.getSession(first.meta.sessionId);
  console.log(`Session ${first.meta.sessionId} holds ${session.data.length} exchanges:`);
  for (const ex of session.data) {
    console.log(`   ${ex.id}  ${ex.endpoint.padEnd(20)} ${ex.stream ? 'stream' : 'json  '}  ${ex.status}`);
  }
  const stored = await client.getRequest(first.meta.requestId);
  console.log(
    `Stored exchange ${stored.id}: status ${stored.status}, ${stored.usage?.total_tokens ?? '?'} tokens, ` +
      `cost ${stored.cost === null ? 'unknown' : `$${stored.cost.toFixed(6)}`}, latency ${stored.latency_ms ?? '?'} ms`,
  );
  const customSession = `my-custom-session-${Date.now()}`;
  const custom = new ProxyClient({ baseUrl: BASE_URL, token: TOKEN, userId: USER_ID, sessionId: customSession });
  const inCustom = await custom.createResponse({ model: MODEL, input: 'Remember: my favourite colour is blue.' });
  console.log(`Custom session ID sent: ${customSession}`);
  console.log(`Custom session ID kept: ${inCustom.meta.sessionId === customSession ? 'yes' : `no (${inCustom.meta.sessionId})`}`);
  if (inCustom.meta.sessionId !== customSession) throw new UnexpectedOutcome('the proxy did not keep the custom session id');
  console.log('');

  // 7. Key selection ------------------------------------------------------------------------------
  console.log('7. User-scoped API keys:');
  console.log(`X-Key-Source: ${first.meta.keySource} → served with ${describeKeySource(first.meta.keySource)}`);
  console.log('   Selection order: the user\'s own key, else the organization-wide key, else 403 no_api_key.');
  console.log('');

  // 8. Personas -----------------------------------------------------------------------------------
  console.log('8. Personas:');
  const personaName = 'Technical Support (example)';
  let persona: Persona;
  try {
    persona = await client.createPersona({
      name: personaName,
      content: 'You are a patient technical support engineer. Give short, concrete, step-by-step answers.',
      description: 'Created by examples/client.ts',
    });
    console.log(`✅ Created persona: ${persona.name} (ID: ${persona.id}, version ${persona.version})`);
  } catch (err) {
    if (!(err instanceof ProxyApiError && err.status === 409)) throw err;
    let found: Persona | undefined;
    for await (const p of client.listPersonas()) if (p.name === personaName) found = p;
    if (!found) throw err;
    persona = found;
    console.log(`♻️  Reusing persona: ${persona.name} (ID: ${persona.id}, version ${persona.version})`);
  }
  const names: string[] = [];
  for await (const p of client.listPersonas()) names.push(p.name);
  console.log(`📚 Personas in this organization (${names.length}): ${names.join(', ')}`);
  const withPersona = await client.createResponse({
    model: MODEL,
    input: "How can I speed up my website's first page load?",
    persona_id: persona.id,
    max_output_tokens: 200,
  });
  console.log(`Response with persona: ${outputText(withPersona.response)}`);
  console.log(`Request ID: ${withPersona.meta.requestId}`);
  await client.rateByRequestId(withPersona.meta.requestId, 5);
  const analytics = await client.getPersonaAnalytics(persona.id);
  console.log(`📈 Persona analytics for "${analytics.name}":`);
  console.log(`   requests: ${analytics.requests}, users: ${analytics.users}, sessions: ${analytics.sessions}, errors: ${analytics.errors}`);
  console.log(`   tokens: ${analytics.tokens.total} (in ${analytics.tokens.input} / out ${analytics.tokens.output})`);
  console.log(`   cost: ${analytics.cost === null ? 'unknown' : `$${analytics.cost.toFixed(6)}`}`);
  console.log(
    `   ratings: ${analytics.ratings.count}, average ${analytics.ratings.average === null ? '-' : analytics.ratings.average.toFixed(2)}`,
  );
  console.log('');

  // 9. Errors -------------------------------------------------------------------------------------
  console.log('9. Error handling:');
  const badToken = new ProxyClient({ baseUrl: BASE_URL, token: 'not-a-valid-jwt', userId: USER_ID });
  await expectError('401 invalid token', 401, () => badToken.createResponse({ model: MODEL, input: 'Hi' }));
  const noUser = new ProxyClient({ baseUrl: BASE_URL, token: TOKEN, userId: undefined });
  await expectError('422 missing X-User-ID', 422, () => noUser.createResponse({ model: MODEL, input: 'Hi' }));
  const badSession = new ProxyClient({ baseUrl: BASE_URL, token: TOKEN, userId: USER_ID, sessionId: 'not a valid session id!' });
  await expectError('400 malformed X-Session-ID', 400, () => badSession.createResponse({ model: MODEL, input: 'Hi' }));
  await expectError('400 rating out of range', 400, () => client.rateByRequestId(first.meta.requestId, 7));
  if (NO_KEY_TOKEN) {
    const noKey = new ProxyClient({ baseUrl: BASE_URL, token: NO_KEY_TOKEN, userId: USER_ID });
    await expectError('403 no API key', 403, () => noKey.createResponse({ model: MODEL, input: 'Hi' }));
  } else {
    console.log('   ℹ️  403 no_api_key: set NO_KEY_JWT_TOKEN to a token of an organization without keys to see it.');
    console.log('      It is what a user gets when neither they nor their organization has an active upstream key.');
  }
  console.log('');

  console.log(`Session ID: ${client.sessionId}`);
  console.log('');
  console.log('=== Example Complete ===');
}

main().catch((err: unknown) => {
  if (err instanceof OpenAI.APIConnectionError) {
    console.error(`\n❌ Could not reach the proxy at ${BASE_URL}: ${err.message} Is it running?`);
  } else if (err instanceof OpenAI.APIError) {
    console.error(`\n❌ Unexpected API error: ${err.status ?? ''} ${err.message}`);
    if (err.status === 401) console.error('   Is PROXY_JWT_TOKEN a valid, unexpired token of an enabled organization?');
    if (err.status === 403) console.error(`   Does ${USER_ID} or the organization have an upstream key (cli key create)?`);
  } else if (err instanceof ProxyApiError) {
    console.error(`\n❌ Unexpected API error: ${err.status} ${err.type}: ${err.message}`);
  } else if (err instanceof UnexpectedOutcome) {
    console.error(`\n❌ ${err.message}`);
  } else {
    console.error(`\n❌ Unexpected failure: ${err instanceof Error ? err.message : String(err)}`);
    if (err instanceof TypeError && /fetch failed/.test(err.message)) console.error(`   Is the proxy running at ${BASE_URL}?`);
  }
  process.exit(1);
});
