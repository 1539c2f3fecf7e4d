import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppException } from './app-exception';
import { checkRange, parseInstant, readInstant } from './dates';

const iso = (raw: string) => readInstant(raw)?.toISOString() ?? null;

describe('readInstant: strict ISO-8601, UTC without a zone', () => {
  it.each([
    ['2026-06-05', '2026-06-05T00:00:00.000Z'],
    ['2026-06-05T18:30', '2026-06-05T18:30:00.000Z'],
    ['2026-06-05T18:30:15', '2026-06-05T18:30:15.000Z'],
    ['2026-06-05T18:30:15.1234567Z', '2026-06-05T18:30:15.123Z'],
    ['2026-06-05T18:30:00+02:00', '2026-06-05T16:30:00.000Z'],
    ['2026-06-05T18:30:00-0530', '2026-06-06T00:00:00.000Z'],
    ['2026-06-05T01:00:00+14', '2026-06-04T11:00:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29', '2000-02-29T00:00:00.000Z'],
    ['0001-01-01', '0001-01-01T00:00:00.000Z'],
    ['0099-12-31T23:59:59Z', '0099-12-31T23:59:59.000Z'],
    ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
  ])('%s is %s', (raw, expected) => {
    expect(iso(raw)).toBe(expected);
  });

  it.each([
    '2026-02-30', '2025-02-29', '1900-02-29', '2026-04-31', '2026-13-01', '2026-00-10', '2026-06-00',
    '0000-01-01', '2026-06-05T24:00:00Z', '2026-06-05T23:60', '2026-06-05T23:59:60Z', '2026-06-05T10:00:00+15:00',
    '2026-06-05T10:00:00+14:30', '2026-06-05 10:00:00', '2026-06-05T10:00:00 02:00', '2026-6-5', '20260605',
    '1700000000', 'yesterday', '', ' 2026-06-05', '2026-06-05T10', '+002026-06-05', '2026-06-05T10:00:00.Z',
  ])('%j is refused', (raw) => {
    expect(readInstant(raw)).toBeNull();
  });

  it('reads back every instant of years 0001–9999 as written by toISOString, whatever the zone suffix', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }), (d) => {
        const text = d.toISOString();
        expect(readInstant(text)?.getTime()).toBe(d.getTime());
        expect(readInstant(text.replace('Z', '+00:00'))?.getTime()).toBe(d.getTime());
        expect(readInstant(text.slice(0, -1))?.getTime()).toBe(d.getTime());
      }),
    );
  });

  it('parseInstant and checkRange answer 400 naming the parameter', () => {
    expect(parseInstant(undefined, 'from')).toBeUndefined();
    expect(parseInstant('', 'from')).toBeUndefined();
    for (const bad of ['2026-02-30', ['2026-06-05', '2026-06-06'], 5]) {
      try {
        parseInstant(bad, 'to');
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(AppException);
        expect((err as AppException).toBody().error).toMatchObject({ type: 'invalid_request_error', param: 'to' });
      }
    }
    expect(() => parseInstant('2026-06-05T10:00:00 02:00', 'from')).toThrow(/%2B/);
    expect(() => checkRange(new Date(2), new Date(1))).toThrow(/from must not be later than to/);
    expect(() => checkRange(new Date(1), new Date(1))).not.toThrow();
  });
});
