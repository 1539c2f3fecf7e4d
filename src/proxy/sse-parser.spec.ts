import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SseFramer, SseParser } from './sse-parser';

type Ev = { event: string; data: string };

/** Events parsed from the whole stream at once: what any chunking must give. */
function parseAll(bytes: Buffer): Ev[] {
  const out: Ev[] = [];
  const p = new SseParser((event, data) => out.push({ event, data }));
  p.push(bytes);
  return out;
}

const EOLS = ['\n', '\r', '\r\n'];
const line = fc.oneof(
  fc.stringMatching(/^[a-z0-9 {}":,é]{0,12}$/).map((v) => `data: ${v}`),
  fc.stringMatching(/^[a-z.]{1,10}$/).map((v) => `event: ${v}`),
  fc.constantFrom(': comment', 'id: 3', 'retry: 10', 'unknown: field', 'noColon', 'data'),
);
const stream = fc
  .array(fc.tuple(fc.array(fc.tuple(line, fc.constantFrom(...EOLS)), { maxLength: 4 }), fc.constantFrom(...EOLS)), { maxLength: 8 })
  .chain((events) => {
    const text = events.map(([lines, end]) => lines.map(([l, eol]) => l + eol).join('') + end).join('');
    const bytes = Buffer.from(text, 'utf8');
    return fc.tuple(fc.constant(bytes), fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, bytes.length - 1) }), { maxLength: 10 }));
  });

describe('SseFramer', () => {
  it('cuts any chunking at event ends only: bytes unchanged, the same events, at most one event per cut', () => {
    fc.assert(
      fc.property(stream, ([bytes, cuts]) => {
        const points = [0, ...cuts.filter((c) => c < bytes.length).sort((a, b) => a - b), bytes.length];
        const framer = new SseFramer();
        const events: Ev[] = [];
        const parser = new SseParser((event, data) => events.push({ event, data }));
        const relayed: Buffer[] = [];
        for (let i = 0; i + 1 < points.length; i++) {
          const region = framer.push(bytes.subarray(points[i], points[i + 1]));
          if (!region) continue;
          let from = 0;
          for (const end of framer.ends) {
            const before = events.length;
            parser.push(region.subarray(from, end));
            expect(events.length - before).toBeLessThanOrEqual(1);
            from = end;
          }
          expect(from).toBe(region.length);
          relayed.push(region);
        }
        relayed.push(framer.rest());
        expect(Buffer.concat(relayed).equals(bytes)).toBe(true);
        expect(events).toEqual(parseAll(bytes));
      }),
      { numRuns: 500 },
    );
  });

  it('holds an event until its blank line, whatever ends its lines', () => {
    for (const eol of EOLS) {
      const framer = new SseFramer();
      expect(framer.push(Buffer.from(`data: a${eol}`))).toBeNull();
      const region = framer.push(Buffer.from(`${eol}data: b`));
      expect(region!.toString()).toBe(`data: a${eol}${eol}`);
      expect(framer.rest().toString()).toBe('data: b');
    }
  });
});
