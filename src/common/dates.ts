import { registerDecorator, ValidationOptions } from 'class-validator';
import { AppException } from './app-exception';

/**
 * The one reading of a date or time a client sends (`from`, `to`, …): ISO-8601, strictly.
 *
 * - `YYYY-MM-DD` (midnight) or `YYYY-MM-DDTHH:MM[:SS[.fraction]]` with an optional zone (`Z`, `±HH`, `±HHMM`, `±HH:MM`);
 * - without a zone the time is UTC (never the server's local time);
 * - a real calendar date and clock time (no 2026-02-30, no 24:00, no 23:60), years 0001–9999, offsets up to ±14:00;
 * - a fraction beyond milliseconds is cut to milliseconds.
 */
const INSTANT = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?)?$/;

export const INSTANT_FORMAT =
  'an ISO-8601 date or date-time (e.g. 2026-06-05 or 2026-06-05T18:30:00Z; without a zone it is UTC)';

/** The instant `raw` names, or null when it is not a valid ISO-8601 date or date-time. */
export function readInstant(raw: string): Date | null {
  const m = INSTANT.exec(raw);
  if (!m) return null;
  const [, ys, mos, ds, hs = '0', mis = '0', ss = '0', frac = '', , sign, ohs = '0', omis = '0'] = m;
  const [y, mo, d, h, mi, s, oh, om] = [ys, mos, ds, hs, mis, ss, ohs, omis].map(Number);
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return null;
  if (h > 23 || mi > 59 || s > 59 || oh > 14 || om > 59 || (oh === 14 && om > 0)) return null;
  const ms = frac ? Number(frac.slice(0, 3).padEnd(3, '0')) : 0;
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, keeps years below 100 as they are
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, ms);
  const offsetMin = sign ? (sign === '-' ? -1 : 1) * (oh * 60 + om) : 0;
  return new Date(date.getTime() - offsetMin * 60_000);
}

function daysInMonth(y: number, mo: number): number {
  if (mo === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(mo) ? 30 : 31;
}

function invalidMessage(param: string, raw: unknown): string {
  // an unencoded '+' in a query string arrives as a space: say so, it is the usual cause
  const hint = typeof raw === 'string' && raw.includes(' ') ? " (a '+' in a query string must be sent as %2B)" : '';
  return `${param} must be ${INSTANT_FORMAT}${hint}`;
}

/** Reads an optional date parameter; anything but a valid ISO-8601 string is a 400 naming `param`. */
export function parseInstant(raw: unknown, param: string): Date | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  const date = typeof raw === 'string' ? readInstant(raw) : null;
  if (!date) throw AppException.invalid(invalidMessage(param, raw), param);
  return date;
}

/** `from` later than `to` is a 400 (an empty range, from = to, is not). */
export function checkRange(from: Date | undefined, to: Date | undefined): void {
  if (from && to && from.getTime() > to.getTime()) throw AppException.invalid('from must not be later than to', 'from');
}

/** class-validator: an optional query or body field holding an ISO-8601 date or date-time as `parseInstant` reads it. */
export function IsInstant(options?: ValidationOptions): PropertyDecorator {
  return (target: object, propertyName: string | symbol) =>
    registerDecorator({
      name: 'isInstant',
      target: target.constructor,
      propertyName: String(propertyName),
      options,
      validator: {
        validate: (value: unknown) => typeof value === 'string' && readInstant(value) !== null,
        defaultMessage: (args) => invalidMessage(args?.property ?? 'value', args?.value),
      },
    });
}
