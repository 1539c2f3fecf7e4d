import { countTokensInSlices } from '../common/token-count';
import type { ProxyEndpoint, TokenUsage } from './exchange-capture';

/** text counted exactly; beyond it the count is extrapolated (BPE is quadratic in a long run without spaces) */
const EXACT_CHARS = 32 * 1024;
const PIECE_CHARS = 2048;
/** what the chat format adds per message (role and separators), per OpenAI's counting guide */
const PER_MESSAGE = 4;
/** an inlined image or file (a data: URL) is billed by its size in tiles or pages, not by its base64 text */
const PER_INLINE_DATA = 1000;
const MAX_NODES = 200_000;

/** Tokens of a text, counted on at most EXACT_CHARS characters (in pieces), the rest at the same rate. */
export function estimateTokens(text: string): number {
  if (!text) return 0;
  const exact = Math.min(text.length, EXACT_CHARS);
  const n = countTokensInSlices(text, exact, PIECE_CHARS);
  return exact === text.length ? n : Math.ceil((n * text.length) / exact);
}

/** The prompt's text (every string under the fields a model reads) and how many messages or items it holds. */
function promptParts(endpoint: ProxyEndpoint, body: Record<string, unknown>): { text: string; items: number; inline: number } {
  const roots = endpoint === 'responses' ? [body.instructions, body.input] : [body.messages, body.prompt];
  const parts: string[] = [];
  let inline = 0;
  const stack: unknown[] = [...roots];
  let nodes = 0;
  while (stack.length && nodes++ < MAX_NODES) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (v.startsWith('data:') && v.length > 256) inline++;
      else parts.push(v);
    } else if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
    } else if (v && typeof v === 'object') {
      for (const x of Object.values(v)) stack.push(x);
    }
  }
  // tool definitions and output schemas are part of the prompt the model is billed for
  for (const k of ['tools', 'functions', 'response_format', 'text']) if (body[k] !== undefined && body[k] !== null) parts.push(JSON.stringify(body[k]));
  const list = endpoint === 'responses' ? body.input : body.messages;
  return { text: parts.join('\n'), items: Array.isArray(list) ? list.length : 1, inline };
}

/** Usage for a call the upstream never reported it for: the prompt's tokens and those of the text that was streamed. */
export function estimateUsage(endpoint: ProxyEndpoint, body: Record<string, unknown>, streamedText: string): TokenUsage {
  const prompt = promptParts(endpoint, body);
  const input = estimateTokens(prompt.text) + prompt.items * PER_MESSAGE + prompt.inline * PER_INLINE_DATA;
  const output = estimateTokens(streamedText);
  return { input, output, total: input + output, cached: null, reasoning: null, estimated: true };
}
