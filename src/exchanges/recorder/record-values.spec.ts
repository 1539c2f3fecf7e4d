import { describe, expect, it } from 'vitest';
import { jsonDeeperThan, MAX_JSON_DEPTH, pgBigint, pgInt4, pgJson, pgText } from './record-values';

describe('record values made storable by PostgreSQL', () => {
  it('text: NUL becomes U+FFFD, the rest is kept', () => {
    expect(pgText('a\u0000b\u0000')).toBe('a\uFFFDb\uFFFD');
    expect(pgText('plain')).toBe('plain');
    expect(pgText(null)).toBeNull();
  });

  it('jsonb: \\u0000 and unpaired surrogate escapes become \\ufffd; pairs and escaped backslashes are kept', () => {
    const text = String.raw`{"a":"\u0000","b":"\\u0000","c":"\ud83d\ude00","d":"\ud800x","e":"\udc00","f":"\\\u0000","g":"\u00e9"}`;
    const fixed = pgJson(text)!;
    expect(JSON.parse(fixed)).toEqual({ a: '\uFFFD', b: '\\u0000', c: '\u{1F600}', d: '\uFFFDx', e: '\uFFFD', f: '\\\uFFFD', g: 'é' });
    expect(pgJson({ a: 'x\u0000\ud800' })).toBe(String.raw`{"a":"x\ufffd\ufffd"}`);
    expect(pgJson('{"ok":true}')).toBe('{"ok":true}');
  });

  it('nesting: counted outside strings; an over-deep text is stored as a JSON string of itself', () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    expect(jsonDeeperThan(deep(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(jsonDeeperThan(deep(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
    expect(jsonDeeperThan(JSON.stringify({ a: '['.repeat(5000), b: '\\"[{'.repeat(3000) }), MAX_JSON_DEPTH)).toBe(false);
    expect(jsonDeeperThan(JSON.stringify(Array.from({ length: 3000 }, () => [{}])), MAX_JSON_DEPTH)).toBe(false);
    expect(JSON.parse(pgJson(deep(100_000))!)).toBe(deep(100_000));
    // a value JSON.stringify cannot serialize (too deep for its stack) is replaced by a note
    let v: unknown[] = [];
    for (let i = 0; i < 100_000; i++) v = [v];
    expect(JSON.parse(pgJson(v)!)).toMatch(/not storable/);
  });

  it('numbers: int4 columns clamped, token counts whole and exact, nonsense is null', () => {
    expect(pgInt4(3e9)).toBe(2_147_483_647);
    expect(pgBigint(7_000_000_000.4)).toBe(7_000_000_000);
    expect(pgBigint(1e30)).toBe(Number.MAX_SAFE_INTEGER);
    expect(pgBigint(Number.NaN)).toBeNull();
    expect(pgInt4(Number.POSITIVE_INFINITY)).toBeNull();
  });
});
