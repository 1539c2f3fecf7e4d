type CountTokens = (text: string) => number;
let counter: CountTokens | undefined;

/**
 * Tokens of `text` in o200k_base (the GPT-4o / GPT-4.1 / o-series encoding). The encoder loads on first use (about a
 * quarter of a second), so processes that never estimate never pay it. BPE's cost grows with the square of an
 * unbroken run of characters: callers count bounded slices.
 */
export function countTokens(text: string): number {
  counter ??= (require('gpt-tokenizer/encoding/o200k_base') as { countTokens: CountTokens }).countTokens;
  return counter(text);
}

/** Tokens of the first `chars` characters of `text`, counted in slices of `slice` characters. */
export function countTokensInSlices(text: string, chars: number, slice: number): number {
  let n = 0;
  for (let i = 0; i < chars; i += slice) n += countTokens(text.slice(i, Math.min(chars, i + slice)));
  return n;
}
