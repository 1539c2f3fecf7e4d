import { countTokensInSlices } from '../common/token-count';

/**
 * What a call may use, estimated before it is sent: the reservation an admission takes against token and budget
 * limits, replaced by the real usage when the call is settled.
 *
 * Input: the text of the request body (every string value and key, which stands in for the per-message framing
 * tokens) counted with the o200k tokenizer. Counting is bounded: the first COUNTED_CHARS characters are counted
 * in slices of SLICE_CHARS (the tokenizer's cost grows with the square of an unbroken run of characters, and one
 * run of CJK text or base64 would otherwise stall the event loop for seconds); beyond that each further byte of
 * text counts as one token, an upper bound (a token is at least one byte). Images, audio and files count
 * MEDIA_TOKENS each: their real count depends on what they hold and is only known when the call is settled.
 *
 * Output: the call's own ceiling (`max_output_tokens`, `max_completion_tokens` or `max_tokens`, times `n` for
 * several chat choices), or DEFAULT_OUTPUT_TOKENS when it has none.
 */
export const COUNTED_CHARS = 16_384;
export const SLICE_CHARS = 256;
export const MEDIA_TOKENS = 1_000;
export const DEFAULT_OUTPUT_TOKENS = 1_024;
const MAX_CHOICES = 128;

/** What admission is told about a call: enough to estimate it, read only when a token or budget limit applies. */
export interface CallRequest {
  model: string | null;
  /** the request body as parsed (walked for its text), or the prompt's text */
  body: unknown;
  /** text the service adds to the body before sending it (a persona's instructions) */
  instructions?: string | null;
}

export interface TokenEstimate {
  input: number;
  output: number;
}

const MEDIA_TYPES = new Set(['image_url', 'input_image', 'input_audio', 'input_file', 'file', 'image', 'audio']);

/** Counts texts against one shared budget of tokenized characters. */
class TextCounter {
  total = 0;
  private budget = COUNTED_CHARS;

  add(text: string): void {
    if (text.length === 0) return;
    const counted = Math.min(text.length, this.budget);
    this.total += countTokensInSlices(text, counted, SLICE_CHARS);
    this.budget -= counted;
    if (counted < text.length) this.total += Buffer.byteLength(text.slice(counted), 'utf8');
  }
}

/** Input tokens of a request body: its text, walked iteratively (a deeply nested body cannot exhaust the stack). */
export function estimateInputTokens(body: unknown, instructions?: string | null): number {
  const counter = new TextCounter();
  if (instructions) counter.add(instructions);
  const stack: unknown[] = [body];
  let media = 0;
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === 'string') {
      counter.add(node);
    } else if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push(node[i]);
    } else if (node !== null && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (typeof o.type === 'string' && MEDIA_TYPES.has(o.type)) {
        media++;
        continue;
      }
      for (const key of Object.keys(o)) {
        counter.add(key);
        stack.push(o[key]);
      }
    }
  }
  return counter.total + media * MEDIA_TOKENS;
}

const whole = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.ceil(v) : null);

/** The output a call may produce: its own ceiling, or the default. */
export function estimateOutputTokens(body: unknown): number {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return DEFAULT_OUTPUT_TOKENS;
  const b = body as Record<string, unknown>;
  const ceiling = whole(b.max_output_tokens) ?? whole(b.max_completion_tokens) ?? whole(b.max_tokens) ?? DEFAULT_OUTPUT_TOKENS;
  const n = whole(b.n);
  return ceiling * Math.min(MAX_CHOICES, Math.max(1, n ?? 1));
}

export function estimateCall(call: CallRequest): TokenEstimate {
  return { input: estimateInputTokens(call.body, call.instructions), output: estimateOutputTokens(call.body) };
}
