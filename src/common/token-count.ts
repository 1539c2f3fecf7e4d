type CountTokens = (text: string) => number;
let counter: CountTokens | undefined;

/**
 * Words the encoder keeps merged. The library keeps 100,000: a process counting varied text (ids, names, other
 * languages) filled it with ~29 MB of heap, and each word evicted from the full cache walked past the deleted ones
 * (300,000 texts of fresh words: 29.6 s with it, 6.1 s with a thousand, 4–5 s with none). A thousand keeps common
 * words' speed (prose counts in the same time as with 100,000, a third faster than with none) at ~1 MB.
 */
export const MERGE_CACHE_SIZE = 1_000;

function loaded(): CountTokens {
  if (!counter) {
    const encoding = require('gpt-tokenizer/encoding/o200k_base') as { countTokens: CountTokens; setMergeCacheSize(size: number): void };
    encoding.setMergeCacheSize(MERGE_CACHE_SIZE);
    counter = encoding.countTokens;
  }
  return counter;
}

/**
 * Loads the encoder now; returns how long that took (ms). Loading takes 140–190 ms of the event loop and about 60 MB:
 * the server loads it before it listens, since loaded on first use (a call cut short, a token limit) it held up
 * every call in flight for as long. Other processes (the CLI) load it on first use, if ever.
 */
export function loadTokenCounter(): number {
  const startedAt = performance.now();
  loaded()('');
  return performance.now() - startedAt;
}

/**
 * Tokens of `text` in o200k_base (the GPT-4o / GPT-4.1 / o-series encoding). BPE's cost grows with the square of an
 * unbroken run of characters: callers count bounded slices.
 */
export function countTokens(text: string): number {
  return loaded()(text);
}

/** Tokens of the first `chars` characters of `text`, counted in slices of `slice` characters. */
export function countTokensInSlices(text: string, chars: number, slice: number): number {
  let n = 0;
  for (let i = 0; i < chars; i += slice) n += countTokens(text.slice(i, Math.min(chars, i + slice)));
  return n;
}
