import { describe, expect, it } from 'vitest';
import { AppException } from './app-exception';
import { refuseNulInJson, refuseOversizedJson } from './json-limits';

const bounds = { maxDepth: 3, maxElements: 5 };
const codeOf = (fn: () => void): string | null | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as AppException).toBody().error.code;
  }
};
const scan = (text: string) => codeOf(() => refuseOversizedJson(Buffer.from(text), bounds));

describe('refuseOversizedJson', () => {
  it('counts depth and elements outside strings only', () => {
    expect(scan('[[[1]]]')).toBeUndefined();
    expect(scan('[[[[1]]]]')).toBe('json_too_deep');
    expect(scan('{"a":{"b":{"c":1}}}')).toBeUndefined();
    expect(scan('{"a":{"b":{"c":{}}}}')).toBe('json_too_deep');
    expect(scan('[1,2,3,4]')).toBeUndefined(); // the array and three commas
    expect(scan('[1,2,3,4,5,6]')).toBe('json_too_many_elements');
    expect(scan('["[[[[[[,,,,,,{{{{"]')).toBeUndefined();
  });

  it('steps over escaped quotes and backslashes', () => {
    expect(scan('["a\\"[[[[[[", "\\\\"]')).toBeUndefined();
    // an escaped backslash ends before the quote: what follows is outside the string
    expect(scan('["\\\\", [[[[1]]]]]')).toBe('json_too_deep');
    // a string left open hides nothing from JSON.parse, which refuses it
    expect(scan('["[[[[[[')).toBeUndefined();
  });

  it('is linear on a 10 MB body', () => {
    const deep = Buffer.alloc(10_000_000, '[');
    expect(codeOf(() => refuseOversizedJson(deep, { maxDepth: 128, maxElements: 500_000 }))).toBe('json_too_deep');
    const text = Buffer.from(JSON.stringify({ input: 'a\\"b'.repeat(2_000_000) }));
    expect(codeOf(() => refuseOversizedJson(text, { maxDepth: 128, maxElements: 500_000 }))).toBeUndefined();
  });
});

describe('refuseNulInJson', () => {
  it('names the first field holding a NUL, keys included', () => {
    const param = (v: unknown) => {
      try {
        refuseNulInJson(v);
        return undefined;
      } catch (err) {
        return (err as AppException).toBody().error.param;
      }
    };
    expect(param({ a: 'x', b: ['ok', { c: 'y\u0000' }] })).toBe('b[1].c');
    expect(param({ ['k\u0000']: 1 })).toBe('k\\u0000');
    expect(param({ a: 'fine', n: 1, t: true, z: null })).toBeUndefined();
  });
});
