import { describe, expect, it } from 'vitest';
import { usageObjectAt } from './stream-relay';

const hasUsageObject = (region: Buffer) => usageObjectAt(region, 0) >= 0;

describe('hasUsageObject', () => {
  const region = (...data: string[]) => Buffer.from(data.map((d) => `data: ${d}\n\n`).join(''));

  it('finds the usage chunk of a chat stream, however the JSON is spaced', () => {
    expect(hasUsageObject(region('{"choices":[],"usage":{"prompt_tokens":1}}'))).toBe(true);
    expect(hasUsageObject(region('{"choices": [], "usage" : \t{"prompt_tokens": 1}}'))).toBe(true);
    expect(hasUsageObject(region('{"choices":[{"delta":{"content":"a"}}],"usage":null}', '{"choices":[],"usage":{"total_tokens":3}}'))).toBe(true);
  });

  it('passes over chunks whose usage is null, and "usage" quoted inside a string', () => {
    expect(hasUsageObject(region('{"choices":[{"delta":{"content":"x"}}],"usage":null}'))).toBe(false);
    expect(hasUsageObject(region('{"choices":[{"delta":{"content":"say \\"usage\\": {1}"}}],"usage":null}'))).toBe(false);
    expect(hasUsageObject(region('[DONE]'))).toBe(false);
    expect(hasUsageObject(Buffer.from('data: {"usage"'))).toBe(false);
  });
});

describe('usageObjectAt', () => {
  it('gives where each usage object starts, from a position on', () => {
    const r = Buffer.from('data: {"usage":null}\n\ndata: {"usage":{"a":1}}\n\ndata: {"usage": {"b":2}}\n\n');
    const first = usageObjectAt(r, 0);
    expect(r.subarray(first, first + 9).toString()).toBe('"usage":{');
    const second = usageObjectAt(r, first + 1);
    expect(r.subarray(second, second + 10).toString()).toBe('"usage": {');
    expect(usageObjectAt(r, second + 1)).toBe(-1);
  });
});
