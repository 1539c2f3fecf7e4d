import { Transform, TransformCallback } from 'node:stream';
import { createParser, EventSourceMessage } from 'eventsource-parser';

/** What a relayed answer's usage field says, in the record's shape. */
export interface RelayUsage {
  input: number | null;
  output: number | null;
  total: number | null;
  cached: number | null;
  reasoning: number | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);

/** The usage an OpenAI answer reports (Responses, Chat/Completions, embeddings, images, audio shapes), or null. */
export function usageOf(answer: unknown): RelayUsage | null {
  if (!answer || typeof answer !== 'object') return null;
  const u = (answer as { usage?: unknown }).usage;
  if (!u || typeof u !== 'object') return null;
  const o = u as Record<string, any>;
  const input = num(o.input_tokens) ?? num(o.prompt_tokens);
  const output = num(o.output_tokens) ?? num(o.completion_tokens);
  const total = num(o.total_tokens) ?? (input !== null || output !== null ? (input ?? 0) + (output ?? 0) : null);
  if (input === null && output === null && total === null) return null;
  const cached = num(o.input_tokens_details?.cached_tokens) ?? num(o.prompt_tokens_details?.cached_tokens);
  const reasoning = num(o.output_tokens_details?.reasoning_tokens) ?? num(o.completion_tokens_details?.reasoning_tokens);
  return { input, output, total, cached, reasoning };
}

/**
 * What the record keeps of an answer: embedding vectors are not stored (their count and dimensions are), nor
 * base64 images and audio (their sizes are).
 */
export function storableAnswer(answer: unknown): unknown {
  if (!answer || typeof answer !== 'object' || Array.isArray(answer)) return answer;
  const a = answer as Record<string, unknown>;
  if (a.object === 'list' && Array.isArray(a.data) && a.data.length && (a.data[0] as { object?: unknown })?.object === 'embedding') {
    const first = (a.data[0] as { embedding?: unknown }).embedding;
    const dimensions = Array.isArray(first) ? first.length : typeof first === 'string' ? Math.floor((first.length * 3) / 4 / 4) : null;
    return { ...a, data: undefined, embeddings: { count: a.data.length, dimensions } };
  }
  if (Array.isArray(a.data) && a.data.some((d) => d && typeof d === 'object' && typeof (d as { b64_json?: unknown }).b64_json === 'string')) {
    return {
      ...a,
      data: a.data.map((d) =>
        d && typeof d === 'object' && typeof (d as { b64_json?: unknown }).b64_json === 'string'
          ? { ...(d as object), b64_json: undefined, b64_json_bytes: ((d as { b64_json: string }).b64_json.length * 3) >> 2 }
          : d,
      ),
    };
  }
  return answer;
}

/** The text a legacy completion or a chat completion answered (first choice). */
export function outputTextOf(answer: unknown): string | null {
  const choice = (answer as { choices?: { text?: unknown; message?: { content?: unknown } }[] } | null)?.choices?.[0];
  if (typeof choice?.text === 'string') return choice.text;
  if (typeof choice?.message?.content === 'string') return choice.message.content;
  return null;
}

/**
 * Watches an answer streaming through to the client: counts its bytes, keeps its beginning (up to `keep` bytes),
 * and for server-sent events the usage and text the events report (legacy completions stream `choices[].text` and
 * a last chunk with `usage`).
 */
export class AnswerTap extends Transform {
  bytes = 0;
  private readonly head: Buffer[] = [];
  private headBytes = 0;
  truncated = false;
  usage: RelayUsage | null = null;
  /** the last event that reported usage (a stream's final chunk or completed response), for pricing */
  usageEvent: unknown = null;
  model: string | null = null;
  objectId: string | null = null;
  private text = '';
  private readonly parser: ReturnType<typeof createParser> | null;

  constructor(
    private readonly keep: number,
    sse: boolean,
  ) {
    super();
    this.parser = sse ? createParser({ onEvent: (e) => this.onEvent(e) }) : null;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.headBytes < this.keep) {
      const part = chunk.length + this.headBytes > this.keep ? chunk.subarray(0, this.keep - this.headBytes) : chunk;
      this.head.push(part);
      this.headBytes += part.length;
      if (part.length < chunk.length) this.truncated = true;
    } else this.truncated = true;
    if (this.parser) this.parser.feed(chunk.toString('utf8'));
    done(null, chunk);
  }

  private onEvent(e: EventSourceMessage): void {
    if (e.data === '[DONE]') return;
    let data: any;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    const body = data?.response && typeof data.response === 'object' ? data.response : data;
    if (typeof body?.model === 'string') this.model = body.model;
    if (typeof body?.id === 'string') this.objectId ??= body.id;
    const usage = usageOf(body);
    if (usage) {
      this.usage = usage;
      this.usageEvent = data;
    }
    const piece = typeof body?.choices?.[0]?.text === 'string' ? body.choices[0].text : typeof data?.delta === 'string' ? data.delta : null;
    if (piece && this.text.length < this.keep) this.text += piece;
  }

  /** the streamed text, if the events carried any */
  get outputText(): string | null {
    return this.text || null;
  }

  /** the answer's beginning, as text */
  headText(): string {
    return Buffer.concat(this.head).toString('utf8');
  }
}
