/** What the recorder keeps of an upstream answer: ids, usage, output text and the final body. */

import type { TokenUsage } from '../exchanges/recorder/exchange-record';

export type ProxyEndpoint = 'responses' | 'chat.completions';

export type { TokenUsage };

export interface Captured {
  responseId: string | null;
  /** the model the upstream reports (a snapshot name), used for pricing */
  model: string | null;
  usage: TokenUsage | null;
  outputText: string | null;
  /** the final response object (parsed), or null */
  responseBody: unknown;
  /** an error the upstream reported inside a 200 answer (an `error` event, a failed response) */
  upstreamError: unknown;
  /**
   * a stream's generated text as it arrived (every choice, refusals, tool arguments): what an estimate counts (of a
   * `/v1/responses` stream whose final response has its text and usage, not read: empty)
   */
  streamedText?: string;
  /** the upstream answered with a response still queued or in progress (`background: true`) */
  unfinished?: boolean;
}

type Json = Record<string, any>;

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? Math.round(v) : null);
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export function responsesUsage(u: unknown): TokenUsage | null {
  if (!isObj(u)) return null;
  return {
    input: num(u.input_tokens),
    output: num(u.output_tokens),
    total: num(u.total_tokens),
    cached: num(u.input_tokens_details?.cached_tokens),
    reasoning: num(u.output_tokens_details?.reasoning_tokens),
  };
}

export function chatUsage(u: unknown): TokenUsage | null {
  if (!isObj(u)) return null;
  return {
    input: num(u.prompt_tokens),
    output: num(u.completion_tokens),
    total: num(u.total_tokens),
    cached: num(u.prompt_tokens_details?.cached_tokens),
    reasoning: num(u.completion_tokens_details?.reasoning_tokens),
  };
}

export function responsesOutputText(resp: unknown): string | null {
  if (!isObj(resp)) return null;
  if (Array.isArray(resp.output)) {
    let out = '';
    let found = false;
    for (const item of resp.output) {
      if (!isObj(item) || item.type !== 'message' || !Array.isArray(item.content)) continue;
      for (const part of item.content) {
        if (isObj(part) && part.type === 'output_text' && typeof part.text === 'string') {
          out += part.text;
          found = true;
        }
      }
    }
    if (found) return out;
  }
  return typeof resp.output_text === 'string' ? resp.output_text : null;
}

function chatOutputText(body: Json): string | null {
  const choice = Array.isArray(body.choices) ? body.choices.find((c: unknown) => isObj(c) && (c.index ?? 0) === 0) ?? body.choices[0] : undefined;
  const content = isObj(choice) && isObj(choice.message) ? choice.message.content : undefined;
  return typeof content === 'string' ? content : null;
}

/** From a complete (non-streamed) JSON answer. */
export function captureJson(endpoint: ProxyEndpoint, body: unknown): Captured {
  if (!isObj(body)) return { responseId: null, model: null, usage: null, outputText: null, responseBody: body, upstreamError: null };
  const responses = endpoint === 'responses';
  return {
    responseId: typeof body.id === 'string' ? body.id : null,
    model: typeof body.model === 'string' ? body.model : null,
    usage: responses ? responsesUsage(body.usage) : chatUsage(body.usage),
    outputText: responses ? responsesOutputText(body) : chatOutputText(body),
    responseBody: body,
    upstreamError: responses && body.status === 'failed' ? (body.error ?? null) : null,
    unfinished: responses && (body.status === 'queued' || body.status === 'in_progress'),
  };
}

/** Follows a relayed SSE stream; parses only the events the record needs. */
export abstract class StreamCapture {
  /** the event that ends the answer has been seen (its chunk is held until the record is committed) */
  terminal = false;
  malformed = false;
  /** how an answer the upstream itself reported as failed is recorded */
  errorStatus: 'failed' | 'upstream_error' | null = null;
  protected events = 0;
  /** the last event is the usage chunk the proxy asked for itself: it is not relayed */
  hideLast = false;

  /** @param usageUnrequested usage was asked of the upstream by the proxy, not by the client */
  constructor(protected readonly usageUnrequested = false) {}

  abstract onEvent(event: string, data: string): void;
  abstract result(): Captured;

  /** the stream ended (cleanly) with a complete answer */
  abstract get complete(): boolean;

  protected parse(data: string): Json | undefined {
    try {
      const v = JSON.parse(data);
      if (isObj(v)) return v;
    } catch {
      // falls through
    }
    this.malformed = true;
    return undefined;
  }

  static for(endpoint: ProxyEndpoint, usageUnrequested = false): StreamCapture {
    return endpoint === 'responses' ? new ResponsesStreamCapture() : new ChatStreamCapture(usageUnrequested);
  }
}

const RESPONSES_FINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);
// events whose data the record never needs: skipped without parsing (they repeat the text several times)
const RESPONSES_SKIP = new Set([
  'response.in_progress',
  'response.output_item.added',
  'response.output_item.done',
  'response.content_part.added',
  'response.content_part.done',
  'response.output_text.done',
]);

/** deltas kept unparsed up to this many characters; past it they are parsed (the record needs only their text) */
const RAW_DELTA_CHARS = 64 * 1024;

class ResponsesStreamCapture extends StreamCapture {
  private responseId: string | null = null;
  private model: string | null = null;
  private text: string[] = [];
  /** every streamed delta (text, refusals, tool arguments, reasoning summaries), for an estimate of a cut stream */
  private generated: string[] = [];
  /**
   * delta events not parsed yet: a stream that ends with its final response never needs them (that response holds
   * the text and the usage), so they are parsed only when it does not
   */
  private rawDeltas: string[] = [];
  private rawChars = 0;
  private final: Json | null = null;
  private provisional: Json | null = null;
  private error: unknown = null;

  onEvent(event: string, data: string): void {
    const first = this.events++ === 0;
    if (!first && event) {
      if (RESPONSES_SKIP.has(event)) return;
      if (event.endsWith('.delta')) {
        this.rawDeltas.push(event, data);
        this.rawChars += data.length;
        if (this.rawChars > RAW_DELTA_CHARS) this.parseDeltas();
        return;
      }
    }
    const ev = this.parse(data);
    if (!ev) return;
    const type = event || (typeof ev.type === 'string' ? ev.type : '');
    if (type.endsWith('.delta')) {
      this.parseDeltas();
      this.delta(type, ev);
    } else if (type === 'response.created' || type === 'response.in_progress') {
      if (isObj(ev.response)) this.seen(ev.response);
    } else if (RESPONSES_FINAL.has(type)) {
      if (isObj(ev.response)) {
        this.seen(ev.response);
        this.final = ev.response;
        if (type === 'response.failed') {
          this.error = ev.response.error ?? { message: 'The response failed' };
          this.errorStatus = 'failed';
        }
      }
      this.terminal = true;
    } else if (type === 'error') {
      this.error = isObj(ev.error) ? ev.error : ev;
      this.errorStatus = 'upstream_error';
      this.terminal = true;
    }
  }

  private delta(type: string, ev: Json): void {
    if (typeof ev.delta !== 'string') return;
    if (type === 'response.output_text.delta') this.text.push(ev.delta);
    this.generated.push(ev.delta);
  }

  /** parses the deltas kept raw, in order (a malformed one marks the stream malformed: the relay stops a stream still going) */
  private parseDeltas(): void {
    const raw = this.rawDeltas;
    if (!raw.length) return;
    this.rawDeltas = [];
    this.rawChars = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const ev = this.parse(raw[i + 1]);
      if (ev) this.delta(raw[i], ev);
    }
  }

  private seen(resp: Json): void {
    if (typeof resp.id === 'string') this.responseId = resp.id;
    if (typeof resp.model === 'string') this.model = resp.model;
    if (!this.final) this.provisional = resp;
  }

  get complete(): boolean {
    return this.final !== null && this.error === null;
  }

  result(): Captured {
    const body = this.final ?? this.provisional;
    const finalText = this.final ? responsesOutputText(this.final) : null;
    // the deltas count only when the final response lacks what they give: its text, or usage (for an estimate)
    if (finalText === null || !isObj(this.final?.usage)) this.parseDeltas();
    return {
      responseId: this.responseId,
      model: this.model,
      usage: this.final ? responsesUsage(this.final.usage) : null,
      outputText: finalText ?? (this.text.length ? this.text.join('') : null),
      responseBody: body,
      upstreamError: this.error,
      streamedText: this.generated.join(''),
    };
  }
}

interface ToolCallParts {
  /** the fields other than the streamed `arguments` (id, type, function name…) */
  fields: Json;
  name: string[];
  args: string[];
}

/** One choice of a streamed chat completion, gathered from its deltas. */
class ChoiceParts {
  role: unknown = undefined;
  content: string[] | null = null;
  refusal: string[] | null = null;
  refusalSeen = false;
  readonly toolCalls = new Map<number, ToolCallParts>();
  functionCall: ToolCallParts | null = null;
  /** other message fields (annotations, audio…): strings and arrays joined, anything else replaced */
  readonly other: Json = {};
  logprobs: { content: unknown[] | null; refusal: unknown[] | null } | null = null;
  finishReason: unknown = null;

  constructor(readonly index: number) {}

  add(c: Json): void {
    const d = c.delta;
    if (isObj(d)) {
      for (const k of Object.keys(d)) {
        const v = d[k];
        if (k === 'role') {
          if (v !== null && v !== undefined) this.role = v;
        } else if (k === 'content') {
          if (typeof v === 'string') (this.content ??= []).push(v);
        } else if (k === 'refusal') {
          this.refusalSeen = true;
          if (typeof v === 'string') (this.refusal ??= []).push(v);
        } else if (k === 'tool_calls') {
          if (Array.isArray(v)) for (let i = 0; i < v.length; i++) if (isObj(v[i])) this.toolCall(v[i], i);
        } else if (k === 'function_call') {
          if (isObj(v)) this.functionCall = mergeCall(this.functionCall, v);
        } else joinInto(this.other, k, v);
      }
    }
    if (isObj(c.logprobs)) {
      const lp = (this.logprobs ??= { content: null, refusal: null });
      // a few entries per chunk, pushed (a concat per chunk would copy the whole list each time)
      if (Array.isArray(c.logprobs.content)) for (const x of c.logprobs.content) (lp.content ??= []).push(x);
      if (Array.isArray(c.logprobs.refusal)) for (const x of c.logprobs.refusal) (lp.refusal ??= []).push(x);
    }
    if (c.finish_reason !== null && c.finish_reason !== undefined) this.finishReason = c.finish_reason;
  }

  private toolCall(tc: Json, position: number): void {
    const index = typeof tc.index === 'number' ? tc.index : position;
    const fn = isObj(tc.function) ? tc.function : null;
    let parts = this.toolCalls.get(index);
    if (!parts) {
      parts = { fields: {}, name: [], args: [] };
      this.toolCalls.set(index, parts);
    }
    for (const k of Object.keys(tc)) if (k !== 'index' && k !== 'function' && tc[k] !== null && tc[k] !== undefined) parts.fields[k] = tc[k];
    if (fn) {
      if (typeof fn.name === 'string') parts.name.push(fn.name);
      if (typeof fn.arguments === 'string') parts.args.push(fn.arguments);
    }
  }

  /** the streamed text a tokenizer can count (content, refusal, tool names and arguments) */
  text(out: string[]): void {
    if (this.content) out.push(...this.content);
    if (this.refusal) out.push(...this.refusal);
    for (const tc of this.toolCalls.values()) out.push(...tc.name, ...tc.args);
    if (this.functionCall) out.push(...this.functionCall.name, ...this.functionCall.args);
  }

  toJson(): Json {
    const message: Json = { role: this.role ?? 'assistant', content: this.content ? this.content.join('') : null };
    if (this.refusalSeen) message.refusal = this.refusal ? this.refusal.join('') : null;
    Object.assign(message, this.other);
    if (this.toolCalls.size) {
      message.tool_calls = [...this.toolCalls.entries()].sort(([a], [b]) => a - b).map(([, tc]) => callJson(tc));
    }
    if (this.functionCall) message.function_call = { name: this.functionCall.name.join(''), arguments: this.functionCall.args.join('') };
    return { index: this.index, message, logprobs: this.logprobs, finish_reason: this.finishReason };
  }
}

function mergeCall(parts: ToolCallParts | null, v: Json): ToolCallParts {
  const p = parts ?? { fields: {}, name: [], args: [] };
  if (typeof v.name === 'string') p.name.push(v.name);
  if (typeof v.arguments === 'string') p.args.push(v.arguments);
  return p;
}

function callJson(tc: ToolCallParts): Json {
  const out: Json = { ...tc.fields };
  if (tc.name.length || tc.args.length) out.function = { name: tc.name.join(''), arguments: tc.args.join('') };
  return out;
}

function joinInto(target: Json, key: string, v: unknown): void {
  const prev = target[key];
  if (typeof v === 'string' && typeof prev === 'string') target[key] = prev + v;
  else if (Array.isArray(v) && Array.isArray(prev)) for (const x of v) prev.push(x);
  else if (v !== null || !(key in target)) target[key] = v;
}

// chunk fields that are not part of the completion object (`obfuscation` pads chunks against length analysis)
const CHUNK_ONLY = new Set(['choices', 'object', 'usage', 'obfuscation', 'id', 'created', 'model']);

/**
 * Rebuilds a streamed chat completion as the non-streamed answer would have been: every choice by index, its text,
 * refusal, tool calls (arguments joined by index), logprobs and finish reason, the completion's other fields and usage.
 */
class ChatStreamCapture extends StreamCapture {
  private id: string | null = null;
  private model: string | null = null;
  private created: number | null = null;
  private readonly top: Json = {};
  private readonly choices = new Map<number, ChoiceParts>();
  private usage: unknown = null;
  private error: unknown = null;
  private done = false;

  onEvent(event: string, data: string): void {
    this.events++;
    this.hideLast = false;
    if (data === '[DONE]') {
      this.done = true;
      this.terminal = true;
      return;
    }
    const chunk = this.parse(data);
    if (!chunk) return;
    if (event === 'error' || (isObj(chunk.error) && !Array.isArray(chunk.choices))) {
      this.error = isObj(chunk.error) ? chunk.error : chunk;
      this.errorStatus = 'upstream_error';
      this.terminal = true;
      return;
    }
    if (this.id === null && typeof chunk.id === 'string') {
      this.id = chunk.id;
      this.model = typeof chunk.model === 'string' ? chunk.model : null;
      this.created = num(chunk.created);
    }
    for (const k of Object.keys(chunk)) if (!CHUNK_ONLY.has(k) && chunk[k] !== null && chunk[k] !== undefined) this.top[k] = chunk[k];
    if (isObj(chunk.usage)) {
      this.usage = chunk.usage;
      // the usage chunk the proxy asked for on its own account: the client did not ask to see it
      if (this.usageUnrequested && Array.isArray(chunk.choices) && chunk.choices.length === 0) this.hideLast = true;
    }
    if (Array.isArray(chunk.choices)) {
      for (let i = 0; i < chunk.choices.length; i++) {
        const c = chunk.choices[i];
        if (!isObj(c)) continue;
        const index = typeof c.index === 'number' ? c.index : i;
        let choice = this.choices.get(index);
        if (!choice) {
          choice = new ChoiceParts(index);
          this.choices.set(index, choice);
        }
        choice.add(c);
      }
    }
  }

  get complete(): boolean {
    if (this.error !== null) return false;
    if (this.done) return true;
    if (!this.choices.size) return false;
    for (const c of this.choices.values()) if (c.finishReason === null) return false;
    return true;
  }

  result(): Captured {
    const choices = [...this.choices.entries()].sort(([a], [b]) => a - b).map(([, c]) => c.toJson());
    const body =
      this.id === null
        ? null
        : { id: this.id, object: 'chat.completion', created: this.created, model: this.model, choices, usage: this.usage ?? null, ...this.top };
    const first = this.choices.get(0);
    const content = first?.content ? first.content.join('') : '';
    const streamed: string[] = [];
    for (const c of this.choices.values()) c.text(streamed);
    return {
      responseId: this.id,
      model: this.model,
      usage: chatUsage(this.usage),
      outputText: this.id === null && !content ? null : content,
      responseBody: body,
      upstreamError: this.error,
      streamedText: streamed.join(''),
    };
  }
}
