import { countTokens, encodeChat } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { COUNTED_CHARS, DEFAULT_OUTPUT_TOKENS, estimateCall, estimateInputTokens, estimateOutputTokens, MEDIA_TOKENS, SLICE_CHARS } from './call-estimate';

describe('call estimates', () => {
  it("covers the chat format's real prompt count (text, roles and framing)", () => {
    const messages = [
      { role: 'system', content: 'You are a terse assistant who answers in one sentence.' },
      { role: 'user', content: 'What is the capital of France, and why is it famous?' },
      { role: 'assistant', content: 'Paris; art, fashion and the Eiffel Tower.' },
      { role: 'user', content: 'And of Japan? 日本の首都はどこですか。' },
    ] as const;
    const real = encodeChat(messages, 'gpt-4o').length;
    const estimate = estimateInputTokens({ model: 'gpt-4o', messages });
    expect(estimate).toBeGreaterThanOrEqual(real);
    expect(estimate).toBeLessThan(real * 1.5);
  });

  it('counts a persona instructions and the Responses input alike', () => {
    const body = { model: 'gpt-4o-mini', input: 'Say hello' };
    expect(estimateInputTokens(body, 'Always answer in French.')).toBe(estimateInputTokens(body) + countTokens('Always answer in French.'));
    expect(estimateInputTokens('a transcript to analyse')).toBe(countTokens('a transcript to analyse'));
  });

  it('images, audio and files count a flat figure, not the bytes of their data', () => {
    const image = { type: 'input_image', image_url: `data:image/png;base64,${'A'.repeat(500_000)}` };
    const withImage = { model: 'gpt-4o', input: [{ role: 'user', content: [{ type: 'input_text', text: 'What is this?' }, image] }] };
    const without = { model: 'gpt-4o', input: [{ role: 'user', content: [{ type: 'input_text', text: 'What is this?' }] }] };
    expect(estimateInputTokens(withImage)).toBe(estimateInputTokens(without) + MEDIA_TOKENS);
  });

  it('bounds the counting: past COUNTED_CHARS characters each byte counts as a token (an upper bound)', () => {
    // one unbroken run of CJK text: tokenized whole it takes the tokenizer seconds
    const cjk = '漢字かなカナ한국어'.repeat(100_000);
    let counted = 0;
    for (let i = 0; i < COUNTED_CHARS; i += SLICE_CHARS) counted += countTokens(cjk.slice(i, i + SLICE_CHARS));
    const rest = Buffer.byteLength(cjk.slice(COUNTED_CHARS), 'utf8');
    expect(estimateInputTokens(cjk)).toBe(counted + rest);
    // the bound holds on text the tokenizer can count whole
    const english = 'The quick brown fox jumps over the lazy dog. '.repeat(2_000);
    expect(estimateInputTokens(english)).toBeGreaterThanOrEqual(countTokens(english));
  });

  it('walks deeply nested bodies without recursion', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(estimateInputTokens({ input: deep })).toBe(countTokens('input') + countTokens('leaf'));
  });

  it("output: the call's own ceiling (times n choices), else the default", () => {
    expect(estimateOutputTokens({ max_output_tokens: 50 })).toBe(50);
    expect(estimateOutputTokens({ max_completion_tokens: 70, max_tokens: 10 })).toBe(70);
    expect(estimateOutputTokens({ max_tokens: 10, n: 3 })).toBe(30);
    expect(estimateOutputTokens({ max_tokens: 'many' })).toBe(DEFAULT_OUTPUT_TOKENS);
    expect(estimateOutputTokens({})).toBe(DEFAULT_OUTPUT_TOKENS);
    expect(estimateOutputTokens('a transcript')).toBe(DEFAULT_OUTPUT_TOKENS);
    expect(estimateCall({ model: 'gpt-4o', body: { input: 'hi', max_output_tokens: 5 } })).toEqual({
      input: countTokens('input') + countTokens('hi') + countTokens('max_output_tokens'),
      output: 5,
    });
  });
});
