/** What the recorder keeps of an upstream answer: ids, usage, output text and the final body. */

export type ProxyEndpoint = 'responses' | 'chat.completions';

export interface TokenUsage {
  input: number | null;
  output: number | null;
  total: number | null;
  cached: number | null;
  reasoning: number | null;
}

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

  static for(endpoint: ProxyEndpoint): StreamCapture {
    return endpoint === 'responses' ? new ResponsesStreamCapture() : new ChatStreamCapture();
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

class ResponsesStreamCapture extends StreamCapture {
  private responseId: string | null = null;
  private model: string | null = null;
  private text: string[] = [];
  private final: Json | null = null;
  private provisional: Json | null = null;
  private error: unknown = null;

  onEvent(event: string, data: string): void {
    const first = this.events++ === 0;
    if (!first && event && RESPONSES_SKIP.has(event)) return;
    const ev = this.parse(data);
    if (!ev) return;
    const type = event || (typeof ev.type === 'string' ? ev.type : '');
    if (type === 'response.output_text.delta') {
      if (typeof ev.delta === 'string') this.text.push(ev.delta);
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
    return {
      responseId: this.responseId,
      model: this.model,
      usage: this.final ? responsesUsage(this.final.usage) : null,
      outputText: finalText ?? (this.text.length ? this.text.join('') : null),
      responseBody: body,
      upstreamError: this.error,
    };
  }
}

class ChatStreamCapture extends StreamCapture {
  private id: string | null = null;
  private model: string | null = null;
  private created: number | null = null;
  private fingerprint: unknown = undefined;
  private text: string[] = [];
  private role = 'assistant';
  private finishReason: string | null = null;
  private usage: unknown = null;
  private error: unknown = null;
  private done = false;

  onEvent(event: string, data: string): void {
    this.events++;
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
      this.fingerprint = chunk.system_fingerprint;
    }
    if (isObj(chunk.usage)) this.usage = chunk.usage;
    if (Array.isArray(chunk.choices)) {
      for (const c of chunk.choices) {
        if (!isObj(c) || (c.index ?? 0) !== 0) continue;
        if (isObj(c.delta)) {
          if (typeof c.delta.content === 'string') this.text.push(c.delta.content);
          if (typeof c.delta.role === 'string') this.role = c.delta.role;
        }
        if (typeof c.finish_reason === 'string') this.finishReason = c.finish_reason;
      }
    }
  }

  get complete(): boolean {
    return this.error === null && (this.done || this.finishReason !== null);
  }

  result(): Captured {
    const content = this.text.join('');
    const body =
      this.id === null
        ? null
        : {
            id: this.id,
            object: 'chat.completion',
            created: this.created,
            model: this.model,
            choices: [{ index: 0, message: { role: this.role, content }, finish_reason: this.finishReason }],
            usage: this.usage ?? null,
            ...(this.fingerprint !== undefined ? { system_fingerprint: this.fingerprint } : {}),
          };
    return {
      responseId: this.id,
      model: this.model,
      usage: chatUsage(this.usage),
      outputText: this.id === null && !content ? null : content,
      responseBody: body,
      upstreamError: this.error,
    };
  }
}
