/**
 * Fake OpenAI-compatible upstream on plain `node:http`.
 *
 * Used by the e2e tests and the benchmark to stand in for api.openai.com. It speaks
 * the real wire format (the official `openai` SDK parses it) for:
 *   GET  /v1/models
 *   POST /v1/responses          (JSON or SSE with the full Responses event sequence; `background: true` runs
 *                               as `fake.background` says: queued, in_progress, then its end)
 *   GET  /v1/responses/{id}     (a background response now, or `?stream=true&starting_after=N` its events after N)
 *   POST /v1/responses/{id}/cancel
 *   POST /v1/chat/completions   (JSON or `data:` chunks terminated by `data: [DONE]`)
 * and, through fake-openai-api.ts, the other route families of the OpenAI API (files, batches, audio, …),
 * and can inject faults (status codes, stalls, resets, malformed bodies, ...).
 *
 * Standalone: `node dist/test/support/fake-upstream.js --port 9999 --delta-count 20
 *   --first-byte-ms 0 --event-interval-ms 0 [--burst]` prints
 *   `fake-upstream listening on http://127.0.0.1:PORT/v1`.
 * In standalone mode a small control API is available under `/__fake/` (see handleControl).
 */
import * as http from 'node:http';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createOpenAiApi, type FakeOpenAiApi } from './fake-openai-api';
import { attachFakeRealtime, FakeRealtime } from './fake-realtime';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** parsed JSON or undefined (empty or unparseable body) */
  body: any;
  rawBody: string;
  receivedAt: number;
}

export type StructuredFaultMode =
  | 'invalid-json'
  | 'wrong-category'
  | 'missing-category'
  | 'score-out-of-range'
  | 'unsorted';

export type Fault =
  | { kind: 'status'; status: number; body?: any; retryAfter?: string; contentType?: string }
  | { kind: 'stall' }
  | { kind: 'delay'; ms: number }
  | { kind: 'reset' }
  | { kind: 'reset-mid-stream'; afterEvents: number }
  | { kind: 'malformed-json' }
  | { kind: 'malformed-sse' }
  | { kind: 'redirect'; location?: string }
  | { kind: 'huge'; bytes: number }
  | { kind: 'set-cookie' }
  | { kind: 'slow-stream'; firstByteMs: number; eventIntervalMs: number }
  | { kind: 'structured'; mode: StructuredFaultMode }
  /** a 200 event stream of exactly these chunks (each written on its own), then the end of the answer */
  | { kind: 'sse'; chunks: (string | Buffer)[] };

export interface FakeUpstreamOptions {
  /** number of text delta events per stream (default 5) */
  deltaCount: number;
  /** delay before the first byte of every normal answer (default 0) */
  firstByteMs: number;
  /** delay between stream events (default 0) */
  eventIntervalMs: number;
  host?: string;
  port?: number;
  /** keep at most this many recorded requests (oldest dropped); default unlimited */
  maxRecorded?: number;
  /**
   * an unpaced stream that is not cut is written in one write instead of event by event (`--burst`): the upstream
   * at its cheapest, for the benchmark's direct system, which measures what the load generator can drive
   */
  burst?: boolean;
  /**
   * with `burst`: the first unpaced, unfaulted 200 answer to a request (method, URL and body) is kept, and every
   * identical request after it is answered with its bytes (`--replay`; kept answers are dropped on any change of
   * the options or faults). The benchmark's direct system: the cost of building twenty events per stream is the
   * simulator's, not the machine's, and with it the direct system measured the simulator instead of what the
   * load generator can drive
   */
  replay?: boolean;
}

export interface FakeUpstream {
  /** base URL including /v1, e.g. http://127.0.0.1:PORT/v1 */
  url: string;
  port: number;
  /** every request received, in order (recorded as soon as the body is read, even if a fault follows) */
  requests: RecordedRequest[];
  /** queue one-shot faults; each incoming API request takes the next queued fault */
  enqueue(...faults: Fault[]): void;
  /** a fault applied to every request until cleared (after the queue is empty) */
  setDefaultFault(fault: Fault | undefined): void;
  /** faults applied to every request made with one API key (before the queue), until deleted */
  keyFaults: Map<string, Fault>;
  /** what GET /v1/models lists (mutable; reset() restores the default list) */
  models: { id: string; object: string; created: number; owned_by: string }[];
  /** default pacing/size of streams (mutable; read at request time) */
  options: FakeUpstreamOptions;
  /** answer json_schema structured-output requests with this value instead of the generated one */
  structuredAnswer?: (schema: any, body: any) => unknown;
  /** background responses (`background: true`) by id: their state, as GET /v1/responses/{id} answers it */
  backgroundResponses: Map<string, FakeBackgroundResponse>;
  /** how the background responses made from now on run (mutable; reset() restores the default) */
  background: BackgroundScript;
  /** the other route families (files, batches, vector stores, audio, …): their stored objects and seeding */
  api: FakeOpenAiApi;
  /** the Realtime API's WebSocket, GET /v1/realtime (see fake-realtime.ts) */
  realtime: FakeRealtime;
  /** clear requests, queue, default fault, structuredAnswer, background responses and their script */
  reset(): void;
  /** closes the server AND destroys all open sockets (stalled ones too) */
  close(): Promise<void>;
}

/**
 * How a background response runs. By default it is completed when it is first asked for. Every GET of it (plain or
 * streamed) counts as a poll.
 */
export interface BackgroundScript {
  /** GETs answered `in_progress` before the response is completed (default 0) */
  pollsBeforeDone: number;
  /** or: completed once this long has passed since its creation (whatever the polls) */
  doneAfterMs?: number;
  /** how it ends (default completed, with usage) */
  outcome: 'completed' | 'failed' | 'incomplete';
  /** its first GETs are answered with this status (e.g. 500: the upstream failing for a while), counted as polls */
  failPolls?: number;
  failStatus?: number;
}

export interface FakeBackgroundResponse {
  id: string;
  status: 'queued' | 'in_progress' | 'completed' | 'failed' | 'incomplete' | 'cancelled';
  /** the response object as it is now */
  current: any;
  /** the response object once it has ended as its script says */
  final: any;
  /** its event stream, numbered from 0 (`sequence_number`), the last event ending it */
  events: any[];
  /** GET /v1/responses/{id} received (plain or streamed) */
  polls: number;
  createdAt: number;
  /** kept running whatever the script says, until set back to false */
  hold: boolean;
  script: BackgroundScript;
}

const DEFAULT_BACKGROUND: BackgroundScript = { pollsBeforeDone: 0, outcome: 'completed' };

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const DEFAULT_OPTIONS: FakeUpstreamOptions = { deltaCount: 5, firstByteMs: 0, eventIntervalMs: 0 };

const MODELS = [
  { id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'system' },
  { id: 'gpt-4o', object: 'model', created: 1715367049, owned_by: 'system' },
  { id: 'gpt-4.1', object: 'model', created: 1744316542, owned_by: 'system' },
  { id: 'gpt-4.1-mini', object: 'model', created: 1744318173, owned_by: 'system' },
  { id: 'o3-mini', object: 'model', created: 1737146383, owned_by: 'system' },
  { id: 'text-embedding-3-small', object: 'model', created: 1705948997, owned_by: 'system' },
];

const SYSTEM_FINGERPRINT = 'fp_fake0000001';

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

function errorEnvelope(message: string, type: string, code: string | null, param: string | null = null) {
  return { error: { message, type, code, param } };
}

function defaultErrorBody(status: number) {
  switch (status) {
    case 400:
      return errorEnvelope('Invalid request.', 'invalid_request_error', null);
    case 401:
      return errorEnvelope('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    case 403:
      return errorEnvelope('You are not allowed to sample from this model', 'invalid_request_error', null);
    case 404:
      return errorEnvelope('The requested resource does not exist.', 'invalid_request_error', null);
    case 409:
      return errorEnvelope('The request conflicted with another request.', 'invalid_request_error', null);
    case 422:
      return errorEnvelope('Unprocessable request.', 'invalid_request_error', null);
    case 429:
      return errorEnvelope(
        'Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.',
        'requests',
        'rate_limit_exceeded',
      );
    case 503:
      return errorEnvelope('The engine is currently overloaded, please try again later.', 'server_error', null);
    default:
      if (status >= 500) {
        return errorEnvelope(
          'The server had an error while processing your request. Sorry about that!',
          'server_error',
          null,
        );
      }
      return errorEnvelope(`Request failed with status ${status}.`, 'invalid_request_error', null);
  }
}

function wordCount(text: string): number {
  const n = text.split(/\s+/).filter(Boolean).length;
  return Math.max(1, n);
}

/** text of a message content (string, or array of parts with `text`) */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    const texts: string[] = [];
    for (const p of content) {
      if (typeof p === 'string') texts.push(p);
      else if (p && typeof p === 'object' && typeof (p as any).text === 'string') texts.push((p as any).text);
    }
    return texts.join(' ');
  }
  return '';
}

function contentChars(content: unknown): number {
  if (typeof content === 'string') return content.length;
  if (Array.isArray(content)) {
    let n = 0;
    for (const p of content) {
      if (typeof p === 'string') n += p.length;
      else if (p && typeof p === 'object' && typeof (p as any).text === 'string') n += (p as any).text.length;
    }
    return n;
  }
  return 0;
}

function lastUserText(items: unknown): string {
  if (typeof items === 'string') return items;
  if (!Array.isArray(items)) return '';
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    if (it && typeof it === 'object' && (it as any).role === 'user') return contentText((it as any).content);
  }
  for (let i = items.length - 1; i >= 0; i--) {
    const it = items[i];
    if (typeof it === 'string') return it;
    if (it && typeof it === 'object' && 'content' in it) return contentText((it as any).content);
  }
  return '';
}

function inputChars(items: unknown): number {
  if (typeof items === 'string') return items.length;
  if (!Array.isArray(items)) return 0;
  let n = 0;
  for (const it of items) {
    if (typeof it === 'string') n += it.length;
    else if (it && typeof it === 'object') {
      n += contentChars((it as any).content);
      if (typeof (it as any).output === 'string') n += (it as any).output.length;
    }
  }
  return n;
}

/** split text into exactly `count` chunks (some may be empty when the text is short) */
function splitChunks(text: string, count: number): string[] {
  const n = Math.max(0, Math.floor(count));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(text.slice(Math.floor((i * text.length) / n), Math.floor(((i + 1) * text.length) / n)));
  }
  return out;
}

const LOREM = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ';

/** ASCII text (no JSON escaping needed) of exactly `len` characters */
function longText(len: number): string {
  if (len <= 0) return '';
  return LOREM.repeat(Math.ceil(len / LOREM.length)).slice(0, len);
}

// ---------------------------------------------------------------------------------------------
// structured output generation
// ---------------------------------------------------------------------------------------------

interface GenCtx {
  root: any;
  mode?: StructuredFaultMode;
  mutated: boolean;
  depth: number;
}

function lookupRef(root: any, ref: string): any {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return {};
  let cur = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur == null || typeof cur !== 'object') return {};
    cur = cur[key];
  }
  return cur ?? {};
}

function isNullSchema(s: any): boolean {
  return !!s && typeof s === 'object' && (s.type === 'null' || (Array.isArray(s.enum) && s.enum.every((v: unknown) => v === null)));
}

function resolveSchema(schema: any, root: any): any {
  let cur = schema;
  for (let i = 0; i < 32; i++) {
    if (!cur || typeof cur !== 'object') return {};
    if (typeof cur.$ref === 'string') {
      const { $ref, ...rest } = cur;
      cur = { ...lookupRef(root, $ref), ...rest };
      continue;
    }
    const branches = cur.anyOf ?? cur.oneOf;
    if (Array.isArray(branches) && branches.length > 0) {
      const pick = branches.find((b: any) => !isNullSchema(resolveSchema(b, root))) ?? branches[0];
      const { anyOf: _a, oneOf: _o, ...rest } = cur;
      cur = { ...rest, ...pick };
      continue;
    }
    if (Array.isArray(cur.allOf) && cur.allOf.length > 0) {
      const { allOf, ...rest } = cur;
      let merged: any = { ...rest };
      for (const b of allOf) {
        const rb = resolveSchema(b, root);
        merged = { ...merged, ...rb, properties: { ...(merged.properties ?? {}), ...(rb.properties ?? {}) } };
      }
      cur = merged;
      continue;
    }
    return cur;
  }
  return cur ?? {};
}

function schemaType(s: any): string | undefined {
  let t = s.type;
  if (Array.isArray(t)) t = t.find((x: unknown) => x !== 'null') ?? t[0];
  if (typeof t === 'string') return t;
  if (s.properties) return 'object';
  if (s.items) return 'array';
  if (Array.isArray(s.enum)) {
    const v = s.enum.find((x: unknown) => x !== null);
    return typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'boolean' : 'string';
  }
  return undefined;
}

function clampNumber(v: number, s: any): number {
  if (typeof s.minimum === 'number' && v < s.minimum) v = s.minimum;
  if (typeof s.exclusiveMinimum === 'number' && v <= s.exclusiveMinimum) v = s.exclusiveMinimum + 1;
  if (typeof s.maximum === 'number' && v > s.maximum) v = s.maximum;
  if (typeof s.exclusiveMaximum === 'number' && v >= s.exclusiveMaximum) v = s.exclusiveMaximum - 1;
  return v;
}

function genString(s: any, key: string): string {
  switch (s.format) {
    case 'date-time':
      return '2024-01-01T00:00:00Z';
    case 'date':
      return '2024-01-01';
    case 'time':
      return '00:00:00';
    case 'email':
      return 'user@example.com';
    case 'uri':
    case 'url':
      return 'https://example.com/';
    case 'uuid':
      return '00000000-0000-4000-8000-000000000000';
  }
  let str = /reason/i.test(key)
    ? 'Deterministic fake reasoning based on the conversation.'
    : `This is a sample ${key ? key.replace(/_/g, ' ') : 'value'}.`;
  if (typeof s.minLength === 'number' && str.length < s.minLength) str = str.padEnd(s.minLength, '.');
  if (typeof s.maxLength === 'number' && str.length > s.maxLength) str = str.slice(0, s.maxLength);
  return str;
}

/** 0.9 for the first, the remaining 0.1 spread in strictly decreasing steps */
function categoryScores(n: number): number[] {
  if (n <= 0) return [];
  if (n === 1) return [0.9];
  const rest = n - 1;
  const sum = (rest * (rest + 1)) / 2;
  const out = [0.9];
  for (let i = 0; i < rest; i++) out.push(Math.round((0.1 * (rest - i)) / sum * 10000) / 10000);
  return out;
}

function genValue(schema: any, key: string, ctx: GenCtx): unknown {
  if (ctx.depth > 24) return null;
  const s = resolveSchema(schema, ctx.root);
  if ('const' in s) return s.const;
  const type = schemaType(s);
  if (Array.isArray(s.enum) && s.enum.length > 0 && type !== 'object' && type !== 'array') {
    return s.enum.find((v: unknown) => v !== null) ?? s.enum[0];
  }
  ctx.depth++;
  try {
    switch (type) {
      case 'object':
        return genObject(s, ctx);
      case 'array':
        return genArray(s, key, ctx);
      case 'number':
        return clampNumber(0.5, s);
      case 'integer':
        return Math.round(clampNumber(1, s));
      case 'boolean':
        return true;
      case 'null':
        return null;
      case 'string':
      default:
        return genString(s, key);
    }
  } finally {
    ctx.depth--;
  }
}

function genObject(s: any, ctx: GenCtx): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const props: Record<string, any> = s.properties && typeof s.properties === 'object' ? s.properties : {};
  for (const [k, ps] of Object.entries(props)) out[k] = genValue(ps, k, ctx);
  if ('primary_category' in props && 'confidence' in props && 'categories' in props) {
    const cats = out.categories;
    if (Array.isArray(cats) && cats.length > 0) {
      let best: any = cats[0];
      for (const c of cats) {
        if (c && typeof c === 'object' && typeof c.score === 'number' && c.score > (best?.score ?? -Infinity)) best = c;
      }
      if (best && typeof best === 'object') {
        if (typeof best.name === 'string') out.primary_category = best.name;
        if (typeof best.score === 'number') out.confidence = best.score;
      }
    }
  }
  return out;
}

function genArray(s: any, key: string, ctx: GenCtx): unknown[] {
  const items = resolveSchema(s.items ?? {}, ctx.root);
  const itemType = schemaType(items);
  const props: Record<string, any> | undefined =
    itemType === 'object' && items.properties && typeof items.properties === 'object' ? items.properties : undefined;
  const nameSchema = props?.name ? resolveSchema(props.name, ctx.root) : undefined;
  const names: unknown[] | undefined = Array.isArray(nameSchema?.enum)
    ? nameSchema.enum.filter((v: unknown) => v !== null)
    : undefined;

  if (props && names && names.length > 0) {
    // the conversation-analysis rule: one entry per enum value, scores descending
    const scores = categoryScores(names.length);
    const arr = names.map((name, i) => {
      const o = genObject(items, ctx);
      o.name = name;
      if ('score' in props) o.score = scores[i];
      if ('reasoning' in props) o.reasoning = `Deterministic fake reasoning for category ${String(name)}.`;
      return o;
    });
    if (ctx.mode && !ctx.mutated && arr.length > 0) {
      ctx.mutated = true;
      switch (ctx.mode) {
        case 'wrong-category':
          arr[0].name = 'not_a_real_category';
          break;
        case 'missing-category':
          arr.pop();
          break;
        case 'score-out-of-range':
          arr[0].score = 1.7;
          break;
        case 'unsorted':
          arr.reverse();
          break;
        default:
          break;
      }
    }
    return arr;
  }

  let count = itemType === 'string' ? 2 : 1;
  if (typeof s.minItems === 'number') count = Math.max(count, s.minItems);
  if (typeof s.maxItems === 'number') count = Math.min(count, s.maxItems);
  if (itemType === 'string' && !Array.isArray(items.enum) && !('const' in items) && !items.format) {
    const base = key ? key.replace(/_/g, ' ').replace(/s$/, '') : 'item';
    return Array.from({ length: count }, (_, i) => `sample ${base} ${i + 1}`);
  }
  if (Array.isArray(items.enum)) {
    const vals = items.enum.filter((v: unknown) => v !== null);
    return Array.from({ length: count }, (_, i) => vals[Math.min(i, vals.length - 1)] ?? null);
  }
  return Array.from({ length: count }, () => genValue(items, key, ctx));
}

/** the output text for a json_schema request */
export function generateStructuredText(schema: any, mode?: StructuredFaultMode): string {
  if (mode === 'invalid-json') return '{"primary_category": ';
  const ctx: GenCtx = { root: schema ?? {}, mode, mutated: false, depth: 0 };
  return JSON.stringify(genValue(schema ?? {}, '', ctx));
}

// ---------------------------------------------------------------------------------------------
// server
// ---------------------------------------------------------------------------------------------

interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  requestId: string;
  receivedAt: number;
  closed: boolean;
  firstByteMs: number;
  eventIntervalMs: number;
  deltaCount: number;
  burst: boolean;
  resetAfter?: number;
  setCookie: boolean;
  huge?: number;
  structuredMode?: StructuredFaultMode;
}

function commonHeaders(ctx: Ctx): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = {
    'x-request-id': ctx.requestId,
    'openai-processing-ms': String(Math.max(1, Date.now() - ctx.receivedAt)),
    'openai-version': '2020-10-01',
    'openai-organization': 'fake-org',
    'x-ratelimit-limit-requests': '10000',
    'x-ratelimit-remaining-requests': '9999',
    'x-ratelimit-limit-tokens': '10000000',
    'x-ratelimit-remaining-tokens': '9999000',
  };
  if (ctx.setCookie) {
    h['set-cookie'] = [
      '__cf_bm=fakeCookieValue123; path=/; expires=Fri, 01-Jan-2100 00:00:00 GMT; domain=.api.openai.com; HttpOnly; Secure; SameSite=None',
      '_cfuvid=fakeCfuvid456; path=/; domain=.api.openai.com; HttpOnly; Secure; SameSite=None',
    ];
  }
  return h;
}

function sleep(ctx: Ctx, ms: number): Promise<void> {
  if (ms <= 0 || ctx.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      ctx.res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    ctx.res.once('close', done);
  });
}

function waitDrain(ctx: Ctx): Promise<void> {
  if (ctx.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      ctx.res.off('drain', done);
      ctx.res.off('close', done);
      resolve();
    };
    ctx.res.once('drain', done);
    ctx.res.once('close', done);
  });
}

/** flush whatever was written, then close the socket without completing the HTTP message */
function abortAfterFlush(ctx: Ctx): void {
  const socket = ctx.res.socket ?? ctx.req.socket;
  if (!socket || socket.destroyed) return;
  socket.end(() => socket.destroy());
  setTimeout(() => socket.destroy(), 2000).unref();
}

function resetSocket(ctx: Ctx): void {
  const socket: any = ctx.req.socket;
  try {
    if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
    else socket.destroy();
  } catch {
    socket.destroy();
  }
}

function sendRaw(ctx: Ctx, status: number, contentType: string | undefined, body: string | Buffer, extra: Record<string, string> = {}): void {
  if (ctx.closed) return;
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  const headers: Record<string, string | string[] | number> = { ...commonHeaders(ctx), ...extra, 'content-length': buf.length };
  if (contentType) headers['content-type'] = contentType;
  ctx.res.writeHead(status, headers);
  if (ctx.resetAfter !== undefined) {
    ctx.res.write(buf.subarray(0, Math.floor(buf.length / 2)));
    abortAfterFlush(ctx);
    return;
  }
  ctx.res.end(buf);
}

function sendJson(ctx: Ctx, status: number, obj: unknown, extra: Record<string, string> = {}): void {
  sendRaw(ctx, status, 'application/json', JSON.stringify(obj), extra);
}

async function sendJsonPaced(ctx: Ctx, status: number, obj: unknown): Promise<void> {
  await sleep(ctx, ctx.firstByteMs);
  sendJson(ctx, status, obj);
}

async function sendSse(ctx: Ctx, chunks: string[]): Promise<void> {
  await sleep(ctx, ctx.firstByteMs);
  if (ctx.closed) return;
  const { res } = ctx;
  res.writeHead(200, {
    ...commonHeaders(ctx),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
  });
  const limit = ctx.resetAfter;
  if (ctx.burst && limit === undefined && ctx.eventIntervalMs <= 0) {
    if (!ctx.closed) res.end(chunks.join(''));
    return;
  }
  for (let i = 0; i < chunks.length; i++) {
    if (limit !== undefined && i >= limit) break;
    if (i > 0 && ctx.eventIntervalMs > 0) await sleep(ctx, ctx.eventIntervalMs);
    if (ctx.closed) return;
    if (!res.write(chunks[i])) await waitDrain(ctx);
  }
  if (ctx.closed) return;
  if (limit !== undefined) {
    if (limit === 0) res.flushHeaders();
    abortAfterFlush(ctx);
    return;
  }
  res.end();
}

/** a scripted event stream: each chunk written on its own (a separate read for the proxy), then the end */
async function sendSseScript(ctx: Ctx, chunks: (string | Buffer)[]): Promise<void> {
  if (ctx.closed) return;
  ctx.res.writeHead(200, { ...commonHeaders(ctx), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  for (const c of chunks) {
    if (ctx.closed) return;
    if (!ctx.res.write(c)) await waitDrain(ctx);
    await sleep(ctx, 2);
  }
  if (!ctx.closed) ctx.res.end();
}

function sseEvent(ev: { type: string }): string {
  return `event: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`;
}

// ---- Responses API -----------------------------------------------------------------------------

interface ResponseIds {
  id: string;
  msgId: string;
  createdAt: number;
}

function buildResponse(body: any, ids: ResponseIds, text: string | null, inputTokens: number): any {
  const completed = text !== null;
  const outputTokens = completed ? wordCount(text) : 0;
  const textCfg = body.text && typeof body.text === 'object' ? body.text : {};
  return {
    id: ids.id,
    object: 'response',
    created_at: ids.createdAt,
    status: completed ? 'completed' : 'in_progress',
    background: body.background ?? false,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    max_tool_calls: body.max_tool_calls ?? null,
    model: body.model,
    output: completed ? [messageItem(ids.msgId, text, 'completed')] : [],
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
    safety_identifier: body.safety_identifier ?? null,
    service_tier: 'default',
    store: body.store ?? true,
    temperature: body.temperature ?? 1,
    text: { format: textCfg.format ?? { type: 'text' }, verbosity: textCfg.verbosity ?? 'medium' },
    tool_choice: body.tool_choice ?? 'auto',
    tools: Array.isArray(body.tools) ? body.tools : [],
    top_logprobs: body.top_logprobs ?? 0,
    top_p: body.top_p ?? 1,
    truncation: body.truncation ?? 'disabled',
    usage: completed
      ? {
          input_tokens: inputTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: outputTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: inputTokens + outputTokens,
        }
      : null,
    user: body.user ?? null,
    metadata: body.metadata ?? {},
  };
}

function messageItem(msgId: string, text: string, status: 'in_progress' | 'completed'): any {
  return {
    id: msgId,
    type: 'message',
    status,
    content: status === 'completed' ? [outputTextPart(text)] : [],
    role: 'assistant',
  };
}

function outputTextPart(text: string): any {
  return { type: 'output_text', annotations: [], logprobs: [], text };
}

function responsesText(body: any, fake: FakeUpstream, ctx: Ctx): string {
  const format = body.text?.format;
  if (format && format.type === 'json_schema') {
    const schema = format.schema ?? {};
    if (ctx.structuredMode) return generateStructuredText(schema, ctx.structuredMode);
    if (fake.structuredAnswer) {
      const v = fake.structuredAnswer(schema, body);
      return typeof v === 'string' ? v : JSON.stringify(v);
    }
    return generateStructuredText(schema);
  }
  const echo = `Echo: ${lastUserText(body.input)}`;
  if (format && format.type === 'json_object') return JSON.stringify({ text: echo });
  return echo;
}

async function handleResponses(ctx: Ctx, body: any, fake: FakeUpstream): Promise<void> {
  const ids: ResponseIds = { id: `resp_${hex(24)}`, msgId: `msg_${hex(24)}`, createdAt: nowSec() };
  const instructions = typeof body.instructions === 'string' ? body.instructions : '';
  const inputTokens = Math.ceil((instructions.length + inputChars(body.input)) / 4);
  let text = responsesText(body, fake, ctx);

  if (ctx.huge !== undefined) {
    // the full text appears 5 times in a stream (deltas, text.done, part.done, item.done, completed)
    if (body.stream === true) text = longText(Math.floor(ctx.huge / 5));
    else {
      const overhead = JSON.stringify(buildResponse(body, ids, '', inputTokens)).length;
      text = longText(ctx.huge - overhead);
    }
  }

  const final = buildResponse(body, ids, text, inputTokens);
  const initial = buildResponse(body, ids, null, inputTokens);
  const events = responseEvents(ids, initial, final, text, ctx.deltaCount);
  if (body.background === true) {
    const bg = startBackground(fake, ids, initial, final, events);
    if (body.stream !== true) {
      // answered at once, queued; it runs as the fake's background script says
      await sendJsonPaced(ctx, 200, bg.current);
      return;
    }
  }
  if (body.stream !== true) {
    await sendJsonPaced(ctx, 200, final);
    return;
  }
  await sendSse(ctx, events.map(sseEvent));
}

/** The Responses event stream of an answer, numbered from 0. */
function responseEvents(ids: ResponseIds, initial: any, final: any, text: string, deltaCount: number): any[] {
  const events: any[] = [];
  events.push({ type: 'response.created', response: initial });
  events.push({ type: 'response.in_progress', response: initial });
  events.push({ type: 'response.output_item.added', output_index: 0, item: messageItem(ids.msgId, '', 'in_progress') });
  events.push({
    type: 'response.content_part.added',
    item_id: ids.msgId,
    output_index: 0,
    content_index: 0,
    part: outputTextPart(''),
  });
  for (const delta of splitChunks(text, deltaCount)) {
    events.push({
      type: 'response.output_text.delta',
      item_id: ids.msgId,
      output_index: 0,
      content_index: 0,
      delta,
      logprobs: [],
    });
  }
  events.push({
    type: 'response.output_text.done',
    item_id: ids.msgId,
    output_index: 0,
    content_index: 0,
    text,
    logprobs: [],
  });
  events.push({
    type: 'response.content_part.done',
    item_id: ids.msgId,
    output_index: 0,
    content_index: 0,
    part: outputTextPart(text),
  });
  events.push({ type: 'response.output_item.done', output_index: 0, item: messageItem(ids.msgId, text, 'completed') });
  events.push({ type: 'response.completed', response: final });
  return events.map((ev, i) => ({ type: ev.type, sequence_number: i, ...ev }));
}

// ---- Background responses ------------------------------------------------------------------------

function startBackground(fake: FakeUpstream, ids: ResponseIds, initial: any, completed: any, events: any[]): FakeBackgroundResponse {
  const script = { ...fake.background };
  let final = completed;
  if (script.outcome === 'failed') {
    final = { ...initial, status: 'failed', error: { code: 'server_error', message: 'The model failed to generate a response.' } };
  } else if (script.outcome === 'incomplete') {
    final = { ...completed, status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  }
  const last = events[events.length - 1];
  events[events.length - 1] = { ...last, type: `response.${final.status}`, response: final };
  const bg: FakeBackgroundResponse = {
    id: ids.id,
    status: 'queued',
    current: { ...initial, status: 'queued' },
    final,
    events,
    polls: 0,
    createdAt: Date.now(),
    hold: false,
    script,
  };
  fake.backgroundResponses.set(ids.id, bg);
  return bg;
}

const BACKGROUND_ENDED = new Set(['completed', 'failed', 'incomplete', 'cancelled']);

/** A poll moves the response on: queued → in_progress → its end, as its script says. */
function advanceBackground(bg: FakeBackgroundResponse): void {
  bg.polls++;
  if (BACKGROUND_ENDED.has(bg.status)) return;
  const { pollsBeforeDone, doneAfterMs } = bg.script;
  const due = doneAfterMs !== undefined ? Date.now() - bg.createdAt >= doneAfterMs : bg.polls > pollsBeforeDone;
  if (due && !bg.hold) endBackground(bg);
  else {
    bg.status = 'in_progress';
    bg.current = { ...bg.current, status: 'in_progress' };
  }
}

function endBackground(bg: FakeBackgroundResponse): void {
  bg.status = bg.final.status;
  bg.current = bg.final;
}

/** GET /v1/responses/{id}: the object as it is now, or with `stream=true` its events after `starting_after`. */
async function answerBackground(ctx: Ctx, bg: FakeBackgroundResponse, query: URLSearchParams): Promise<void> {
  const failing = bg.polls < (bg.script.failPolls ?? 0);
  if (failing) {
    bg.polls++;
    const status = bg.script.failStatus ?? 500;
    sendJson(ctx, status, defaultErrorBody(status));
    return;
  }
  if (query.get('stream') !== 'true') {
    advanceBackground(bg);
    await sendJsonPaced(ctx, 200, bg.current);
    return;
  }
  bg.polls++;
  const after = Number(query.get('starting_after') ?? -1);
  const events = bg.events.filter((ev) => ev.sequence_number > after);
  // the stream runs the response to its end (a cancelled one sends what it had)
  if (!BACKGROUND_ENDED.has(bg.status)) {
    bg.status = 'in_progress';
    bg.current = { ...bg.current, status: 'in_progress' };
  }
  await sendSse(ctx, events.map(sseEvent));
  if (!ctx.closed && !BACKGROUND_ENDED.has(bg.status)) endBackground(bg);
}

/** POST /v1/responses/{id}/cancel: a background response still running is cancelled; an ended one cannot be. */
function cancelBackground(ctx: Ctx, bg: FakeBackgroundResponse): void {
  if (bg.status === 'cancelled' || !BACKGROUND_ENDED.has(bg.status)) {
    bg.status = 'cancelled';
    bg.current = { ...bg.current, status: 'cancelled' };
    bg.final = bg.current;
    sendJson(ctx, 200, bg.current);
    return;
  }
  sendJson(ctx, 400, errorEnvelope(`Cannot cancel a response with status '${bg.status}'.`, 'invalid_request_error', null));
}

// ---- Chat Completions ---------------------------------------------------------------------------

function chatText(body: any, fake: FakeUpstream, ctx: Ctx): string {
  const rf = body.response_format;
  if (rf && rf.type === 'json_schema') {
    const schema = rf.json_schema?.schema ?? {};
    if (ctx.structuredMode) return generateStructuredText(schema, ctx.structuredMode);
    if (fake.structuredAnswer) {
      const v = fake.structuredAnswer(schema, body);
      return typeof v === 'string' ? v : JSON.stringify(v);
    }
    return generateStructuredText(schema);
  }
  const echo = `Echo: ${lastUserText(body.messages)}`;
  if (rf && rf.type === 'json_object') return JSON.stringify({ text: echo });
  return echo;
}

function chatUsage(promptTokens: number, text: string) {
  const completion = wordCount(text);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    total_tokens: promptTokens + completion,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

/** One choice of a chat answer: text, a refusal, or tool calls. */
interface ChoicePlan {
  content: string | null;
  refusal: string | null;
  toolCalls: { id: string; name: string; args: string }[];
  finish: string;
}

const REFUSAL = "I'm sorry, but I can't help with that.";

/**
 * What a chat call answers, choice by choice: `n` choices (the second and later ones marked), a refusal when the
 * user's text says REFUSE, calls to the first two function tools (parallel tool calls) when tools are given.
 */
function chatPlan(body: any, text: string): ChoicePlan[] {
  const n = Number.isInteger(body.n) && body.n > 1 ? Math.min(body.n, 8) : 1;
  const fns = Array.isArray(body.tools) && body.tool_choice !== 'none'
    ? body.tools.filter((t: any) => t?.type === 'function' && typeof t.function?.name === 'string').slice(0, 2)
    : [];
  const refuse = text.includes('REFUSE');
  return Array.from({ length: n }, (_, i) => {
    const t = i === 0 ? text : `${text} (${i + 1})`;
    if (refuse) return { content: null, refusal: REFUSAL, toolCalls: [], finish: 'stop' };
    if (fns.length) {
      return {
        content: null,
        refusal: null,
        toolCalls: fns.map((f: any, k: number) => ({ id: `call_${hex(12)}`, name: f.function.name, args: JSON.stringify({ text: t, call: k }) })),
        finish: 'tool_calls',
      };
    }
    return { content: t, refusal: null, toolCalls: [], finish: 'stop' };
  });
}

function planText(c: ChoicePlan): string {
  return c.content ?? c.refusal ?? c.toolCalls.map((tc) => tc.args).join(' ');
}

function planUsage(promptTokens: number, plan: ChoicePlan[]) {
  const usage = chatUsage(promptTokens, '');
  const completion = plan.reduce((n, c) => n + wordCount(planText(c)), 0);
  return { ...usage, completion_tokens: completion, total_tokens: promptTokens + completion };
}

/** a logprobs entry per streamed piece (when the request asks for logprobs) */
function logprob(piece: string): any {
  return { token: piece, logprob: -0.25, bytes: [...Buffer.from(piece, 'utf8')], top_logprobs: [] };
}

function chatCompletion(body: any, id: string, created: number, text: string, promptTokens: number, deltaCount = 5): any {
  const plan = chatPlan(body, text);
  const withLogprobs = body.logprobs === true;
  return {
    id,
    object: 'chat.completion',
    created,
    model: body.model,
    choices: plan.map((c, index) => {
      const message: any = { role: 'assistant', content: c.content, refusal: c.refusal, annotations: [] };
      if (c.toolCalls.length) {
        message.tool_calls = c.toolCalls.map((tc) => ({ id: tc.id, type: 'function', function: { name: tc.name, arguments: tc.args } }));
      }
      const logprobs = !withLogprobs
        ? null
        : {
            content: c.content === null ? null : splitChunks(c.content, deltaCount).map(logprob),
            refusal: c.refusal === null ? null : splitChunks(c.refusal, deltaCount).map(logprob),
          };
      return { index, message, logprobs, finish_reason: c.finish };
    }),
    usage: planUsage(promptTokens, plan),
    service_tier: 'default',
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
}

async function handleChat(ctx: Ctx, body: any, fake: FakeUpstream): Promise<void> {
  const id = `chatcmpl-${hex(12)}`;
  const created = nowSec();
  const promptTokens = Math.ceil(inputChars(body.messages) / 4);
  let text = chatText(body, fake, ctx);
  if (ctx.huge !== undefined) {
    if (body.stream === true) text = longText(ctx.huge);
    else {
      const overhead = JSON.stringify(chatCompletion(body, id, created, '', promptTokens)).length;
      text = longText(ctx.huge - overhead);
    }
  }

  if (body.stream !== true) {
    await sendJsonPaced(ctx, 200, chatCompletion(body, id, created, text, promptTokens, ctx.deltaCount));
    return;
  }

  const includeUsage = body.stream_options?.include_usage === true;
  const withLogprobs = body.logprobs === true;
  const base = {
    id,
    object: 'chat.completion.chunk',
    created,
    model: body.model,
    service_tier: 'default',
    system_fingerprint: SYSTEM_FINGERPRINT,
  };
  const chunk = (choices: any[], usage?: any) =>
    includeUsage ? { ...base, choices, usage: usage ?? null } : { ...base, choices };
  const chunks: any[] = [];
  const plan = chatPlan(body, text);
  plan.forEach((c, index) => {
    const lp = (field: 'content' | 'refusal', piece: string) =>
      withLogprobs ? { content: field === 'content' ? [logprob(piece)] : null, refusal: field === 'refusal' ? [logprob(piece)] : null } : null;
    const first: any = { role: 'assistant', content: c.content === null ? null : '', refusal: null, annotations: [] };
    if (c.toolCalls.length) {
      const tc = c.toolCalls[0];
      first.tool_calls = [{ index: 0, id: tc.id, type: 'function', function: { name: tc.name, arguments: '' } }];
    }
    chunks.push(chunk([{ index, delta: first, logprobs: null, finish_reason: null }]));
    if (c.content !== null) {
      for (const piece of splitChunks(c.content, ctx.deltaCount)) {
        chunks.push(chunk([{ index, delta: { content: piece }, logprobs: lp('content', piece), finish_reason: null }]));
      }
    }
    if (c.refusal !== null) {
      for (const piece of splitChunks(c.refusal, ctx.deltaCount)) {
        chunks.push(chunk([{ index, delta: { refusal: piece }, logprobs: lp('refusal', piece), finish_reason: null }]));
      }
    }
    c.toolCalls.forEach((tc, k) => {
      if (k > 0) {
        const opening = { index: k, id: tc.id, type: 'function', function: { name: tc.name, arguments: '' } };
        chunks.push(chunk([{ index, delta: { tool_calls: [opening] }, logprobs: null, finish_reason: null }]));
      }
      for (const piece of splitChunks(tc.args, 3)) {
        chunks.push(chunk([{ index, delta: { tool_calls: [{ index: k, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }]));
      }
    });
    chunks.push(chunk([{ index, delta: {}, logprobs: null, finish_reason: c.finish }]));
  });
  if (includeUsage) chunks.push(chunk([], planUsage(promptTokens, plan)));
  const lines = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`);
  lines.push('data: [DONE]\n\n');
  await sendSse(ctx, lines);
}

// ---- request dispatch ---------------------------------------------------------------------------

type Route = 'responses' | 'chat' | 'models' | 'model' | 'response' | 'cancel';

function matchRoute(method: string, pathname: string): Route | undefined {
  const p = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
  if (method === 'POST' && p === '/v1/responses') return 'responses';
  if (method === 'POST' && p === '/v1/chat/completions') return 'chat';
  if (method === 'GET' && p === '/v1/models') return 'models';
  if (method === 'GET' && p.startsWith('/v1/models/')) return 'model';
  if (method === 'POST' && /^\/v1\/responses\/[^/]+\/cancel$/.test(p)) return 'cancel';
  if (method === 'GET' && /^\/v1\/responses\/[^/]+$/.test(p)) return 'response';
  return undefined;
}

const MALFORMED_JSON_BODY =
  '{"id": "resp_malformed", "object": "response", "output": [{"type": "message", "content": [<<this is not json>>';

const MALFORMED_SSE_BODY =
  'this line is not server-sent events\n' +
  '{{{ neither is this one\n' +
  'data: <<<not json at all>>>\n\n' +
  'event\x00garbage\n' +
  'data: {"type": "response.created", "response": \n\n';

export async function startFakeUpstream(opts: Partial<FakeUpstreamOptions> = {}): Promise<FakeUpstream> {
  const options: FakeUpstreamOptions = { ...DEFAULT_OPTIONS, ...opts };
  const queue: Fault[] = [];
  let defaultFault: Fault | undefined;
  const sockets = new Set<Socket>();
  let closing: Promise<void> | undefined;

  const server = http.createServer({ keepAlive: true, noDelay: true });
  server.keepAliveTimeout = 30_000;
  server.headersTimeout = 35_000;
  server.requestTimeout = 0;

  const fake: FakeUpstream = {
    url: '',
    port: 0,
    requests: [],
    options,
    structuredAnswer: undefined,
    backgroundResponses: new Map(),
    background: { ...DEFAULT_BACKGROUND },
    realtime: attachFakeRealtime(server),
    keyFaults: new Map(),
    models: [...MODELS],
    enqueue(...faults: Fault[]) {
      queue.push(...faults);
    },
    setDefaultFault(fault: Fault | undefined) {
      defaultFault = fault;
    },
    reset() {
      fake.requests.length = 0;
      queue.length = 0;
      defaultFault = undefined;
      fake.structuredAnswer = undefined;
      fake.backgroundResponses.clear();
      fake.background = { ...DEFAULT_BACKGROUND };
      fake.realtime.reset();
      fake.keyFaults.clear();
      fake.models = [...MODELS];
    },
    close() {
      if (!closing) {
        closing = new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const s of sockets) s.destroy();
          sockets.clear();
          server.closeAllConnections?.();
        });
      }
      return closing;
    },
    api: undefined as unknown as FakeOpenAiApi,
  };
  fake.api = createOpenAiApi({ requests: fake.requests, nextFault: (apiKey?: string) => (apiKey !== undefined ? fake.keyFaults.get(apiKey) : undefined) ?? (queue.length > 0 ? queue.shift() : defaultFault), options });

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch(() => {
      try {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify(defaultErrorBody(500)));
        } else res.destroy();
      } catch {
        /* ignore */
      }
    });
  });

  /** answers kept for `replay`, by method, URL and body */
  const replayed = new Map<string, { status: number; headers: http.OutgoingHttpHeaders; body: Buffer }>();

  function replayable(): boolean {
    return options.replay === true && options.burst === true && options.firstByteMs <= 0 && options.eventIntervalMs <= 0 && !defaultFault && queue.length === 0 && fake.keyFaults.size === 0;
  }

  /** records the answer written to res; a whole 200 is kept for the requests identical to this one */
  function keepAnswer(res: http.ServerResponse, key: string): void {
    let headers: http.OutgoingHttpHeaders = {};
    const parts: Buffer[] = [];
    const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => http.ServerResponse;
    const write = res.write.bind(res) as (...a: unknown[]) => boolean;
    const end = res.end.bind(res) as (...a: unknown[]) => http.ServerResponse;
    const take = (chunk: unknown): void => {
      if (typeof chunk === 'string') parts.push(Buffer.from(chunk));
      else if (chunk instanceof Uint8Array) parts.push(Buffer.from(chunk));
    };
    res.writeHead = ((status: number, ...rest: unknown[]) => {
      const h = rest.find((r) => typeof r === 'object' && r !== null);
      if (h) headers = { ...(h as http.OutgoingHttpHeaders) };
      return writeHead(status, ...rest);
    }) as typeof res.writeHead;
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      take(chunk);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (typeof chunk !== 'function') take(chunk);
      if (res.statusCode === 200 && replayed.size < 1000) replayed.set(key, { status: 200, headers, body: Buffer.concat(parts) });
      return end(chunk, ...rest);
    }) as typeof res.end;
  }

  function readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const receivedAt = Date.now();
    const method = (req.method ?? 'GET').toUpperCase();
    const rawUrl = req.url ?? '/';
    const pathname = rawUrl.split('?')[0];
    // before the body is read: uploads stream through
    if (fake.api.handles(method, pathname)) return fake.api.handle(req, res, receivedAt);
    const rawBody = await readBody(req);

    const ctx: Ctx = {
      req,
      res,
      requestId: `req_${hex(16)}`,
      receivedAt,
      closed: false,
      firstByteMs: options.firstByteMs,
      eventIntervalMs: options.eventIntervalMs,
      deltaCount: options.deltaCount,
      burst: options.burst === true,
      setCookie: false,
    };
    res.once('close', () => {
      ctx.closed = true;
    });

    if (pathname.startsWith('/__fake/')) {
      replayed.clear();
      handleControl(ctx, method, pathname, rawBody);
      return;
    }
    const replayKey = replayable() ? `${method} ${rawUrl}\n${rawBody}` : undefined;
    if (replayKey !== undefined) {
      const kept = replayed.get(replayKey);
      if (kept) {
        res.writeHead(kept.status, kept.headers);
        res.end(kept.body);
        return;
      }
      keepAnswer(res, replayKey);
    }

    let body: any;
    let parseError = false;
    if (rawBody.length > 0) {
      try {
        body = JSON.parse(rawBody);
      } catch {
        parseError = true;
      }
    }
    fake.requests.push({ method, path: rawUrl, headers: { ...req.headers }, body, rawBody, receivedAt });
    const max = options.maxRecorded;
    if (typeof max === 'number' && max >= 0) {
      while (fake.requests.length > max) fake.requests.shift();
    }

    const route = matchRoute(method, pathname);
    if (!route) {
      sendJson(ctx, 404, errorEnvelope(`Invalid URL (${method} ${pathname})`, 'invalid_request_error', null));
      return;
    }

    // faults: queued one-shot, else default, else none
    const bearer = /^Bearer\s+(\S+)/i.exec(String(req.headers.authorization ?? ''))?.[1];
    const keyFault = bearer !== undefined ? fake.keyFaults.get(bearer) : undefined;
    const fault: Fault | undefined =
      keyFault ?? (route === 'model' || route === 'response' || route === 'cancel' ? undefined : queue.length > 0 ? queue.shift() : defaultFault);
    if (fault) {
      switch (fault.kind) {
        case 'status': {
          const extra: Record<string, string> = {};
          if (fault.retryAfter !== undefined) extra['retry-after'] = fault.retryAfter;
          const b = fault.body === undefined ? defaultErrorBody(fault.status) : fault.body;
          if (typeof b === 'string') sendRaw(ctx, fault.status, fault.contentType ?? 'text/plain; charset=utf-8', b, extra);
          else sendJson(ctx, fault.status, b, extra);
          return;
        }
        case 'stall':
          return; // never answer; close() destroys the socket
        case 'reset':
          resetSocket(ctx);
          return;
        case 'malformed-json':
          sendRaw(ctx, 200, 'application/json', MALFORMED_JSON_BODY);
          return;
        case 'malformed-sse':
          sendRaw(ctx, 200, 'text/event-stream; charset=utf-8', MALFORMED_SSE_BODY);
          return;
        case 'sse':
          await sendSseScript(ctx, fault.chunks);
          return;
        case 'redirect':
          sendJson(ctx, 302, errorEnvelope('Found', 'invalid_request_error', null), {
            location: fault.location ?? `${fake.url}/redirected`,
          });
          return;
        case 'delay':
          await sleep(ctx, fault.ms);
          if (ctx.closed) return;
          break;
        case 'slow-stream':
          ctx.firstByteMs = fault.firstByteMs;
          ctx.eventIntervalMs = fault.eventIntervalMs;
          break;
        case 'set-cookie':
          ctx.setCookie = true;
          break;
        case 'huge':
          ctx.huge = Math.max(0, fault.bytes);
          break;
        case 'structured':
          ctx.structuredMode = fault.mode;
          break;
        case 'reset-mid-stream':
          ctx.resetAfter = Math.max(0, Math.floor(fault.afterEvents));
          break;
      }
    }

    // auth
    const auth = req.headers.authorization;
    const m = typeof auth === 'string' ? /^Bearer\s+(\S.*)$/i.exec(auth.trim()) : null;
    if (!m) {
      sendJson(
        ctx,
        401,
        errorEnvelope(
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
          'invalid_request_error',
          'invalid_api_key',
        ),
      );
      return;
    }
    const key = m[1].trim();
    if (key === 'sk-invalid') {
      sendJson(
        ctx,
        401,
        errorEnvelope(
          `Incorrect API key provided: ${key.slice(0, 6)}****. You can find your API key at https://platform.openai.com/account/api-keys.`,
          'invalid_request_error',
          'invalid_api_key',
        ),
      );
      return;
    }

    if (route === 'models') {
      await sendJsonPaced(ctx, 200, { object: 'list', data: fake.models });
      return;
    }
    if (route === 'response' || route === 'cancel') {
      const id = decodeURIComponent(pathname.split('/')[3]);
      const bg = fake.backgroundResponses.get(id);
      if (!bg) sendJson(ctx, 404, errorEnvelope(`Response with id '${id}' not found.`, 'invalid_request_error', null, 'response_id'));
      else if (route === 'cancel') cancelBackground(ctx, bg);
      else await answerBackground(ctx, bg, new URLSearchParams(rawUrl.split('?')[1] ?? ''));
      return;
    }
    if (route === 'model') {
      const id = decodeURIComponent(pathname.slice('/v1/models/'.length));
      const model = MODELS.find((x) => x.id === id);
      if (model) await sendJsonPaced(ctx, 200, model);
      else
        sendJson(
          ctx,
          404,
          errorEnvelope(`The model '${id}' does not exist`, 'invalid_request_error', 'model_not_found', 'model'),
        );
      return;
    }

    if (parseError || (rawBody.length > 0 && (body === null || typeof body !== 'object' || Array.isArray(body)))) {
      sendJson(
        ctx,
        400,
        errorEnvelope(
          'We could not parse the JSON body of your request. (HINT: This likely means you aren\'t using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)',
          'invalid_request_error',
          null,
        ),
      );
      return;
    }
    const b: any = body ?? {};
    if (typeof b.model !== 'string' || b.model.length === 0) {
      sendJson(
        ctx,
        400,
        errorEnvelope("Missing required parameter: 'model'.", 'invalid_request_error', 'missing_required_parameter', 'model'),
      );
      return;
    }
    if (b.model === 'fail-400') {
      sendJson(
        ctx,
        400,
        errorEnvelope('The model `fail-400` does not exist', 'invalid_request_error', 'model_not_found', 'model'),
      );
      return;
    }

    if (route === 'responses') {
      await handleResponses(ctx, b, fake);
      return;
    }
    if (!Array.isArray(b.messages)) {
      sendJson(
        ctx,
        400,
        errorEnvelope("Missing required parameter: 'messages'.", 'invalid_request_error', 'missing_required_parameter', 'messages'),
      );
      return;
    }
    await handleChat(ctx, b, fake);
  }

  /**
   * Control API (not recorded, not under /v1), mainly for the standalone server:
   *   POST /__fake/faults          body: Fault | Fault[]   -> enqueue
   *   PUT  /__fake/default-fault   body: Fault | null      -> setDefaultFault
   *   POST /__fake/reset                                   -> reset()
   *   GET  /__fake/requests                                -> { count, requests }
   *   PATCH /__fake/options        body: Partial<FakeUpstreamOptions>
   */
  function handleControl(ctx: Ctx, method: string, pathname: string, rawBody: string): void {
    let body: any;
    try {
      body = rawBody ? JSON.parse(rawBody) : undefined;
    } catch {
      sendJson(ctx, 400, errorEnvelope('invalid JSON', 'invalid_request_error', null));
      return;
    }
    if (method === 'POST' && pathname === '/__fake/faults') {
      const list: Fault[] = Array.isArray(body) ? body : body ? [body] : [];
      fake.enqueue(...list);
      sendJson(ctx, 200, { queued: queue.length });
    } else if (method === 'PUT' && pathname === '/__fake/default-fault') {
      fake.setDefaultFault(body ?? undefined);
      sendJson(ctx, 200, { defaultFault: defaultFault ?? null });
    } else if (method === 'POST' && pathname === '/__fake/reset') {
      fake.reset();
      sendJson(ctx, 200, { ok: true });
    } else if (method === 'GET' && pathname === '/__fake/requests') {
      sendJson(ctx, 200, { count: fake.requests.length, requests: fake.requests });
    } else if (method === 'PATCH' && pathname === '/__fake/options') {
      for (const k of ['deltaCount', 'firstByteMs', 'eventIntervalMs', 'maxRecorded'] as const) {
        if (body && typeof body[k] === 'number') options[k] = body[k];
      }
      sendJson(ctx, 200, { options });
    } else {
      sendJson(ctx, 404, errorEnvelope(`Invalid URL (${method} ${pathname})`, 'invalid_request_error', null));
    }
  }

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  fake.port = port;
  fake.url = `http://${urlHost}:${port}/v1`;
  return fake;
}

// ---------------------------------------------------------------------------------------------
// standalone
// ---------------------------------------------------------------------------------------------

function parseArgs(argv: string[]): Partial<FakeUpstreamOptions> {
  const out: Partial<FakeUpstreamOptions> = {};
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => value ?? argv[++i];
    const num = (name: string) => {
      const v = Number(next());
      if (!Number.isFinite(v)) throw new Error(`invalid value for ${name}`);
      return v;
    };
    switch (arg) {
      case '--port':
        out.port = num(arg);
        break;
      case '--host':
        out.host = next();
        break;
      case '--delta-count':
        out.deltaCount = num(arg);
        break;
      case '--first-byte-ms':
        out.firstByteMs = num(arg);
        break;
      case '--event-interval-ms':
        out.eventIntervalMs = num(arg);
        break;
      case '--max-recorded':
        out.maxRecorded = num(arg);
        break;
      case '--burst':
        out.burst = true;
        break;
      case '--replay':
        out.replay = true;
        break;
      default:
        throw new Error(`unknown argument: ${arg}`);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const fake = await startFakeUpstream({ maxRecorded: 1000, ...opts });
  process.stdout.write(`fake-upstream listening on ${fake.url}\n`);
  const stop = () => {
    void fake.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (typeof require !== 'undefined' && typeof module !== 'undefined' && require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`fake-upstream: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
