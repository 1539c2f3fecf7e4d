/**
 * Personal data found in text and replaced by placeholders (`[EMAIL_1]`, `[PHONE_2]`, …) before it is stored.
 *
 * What is found, and how it is told from its look-alikes:
 * - e-mail addresses: a local part, `@`, a domain with a dotted top-level name of letters;
 * - phone numbers: libphonenumber-js (`findNumbers`, full metadata, leniency "valid"): international numbers in any
 *   country's format, and national numbers of the default country (US). It knows each country's numbering plan, so a
 *   run of digits that is no valid number (an order number, a date, a timestamp) is left alone — something a pattern
 *   of our own cannot do;
 * - payment card numbers: 13 to 19 digits, plain or grouped by single spaces or dashes, with the prefix of a card
 *   network (Visa, Mastercard, American Express, Discover, Diners, JCB, UnionPay, Maestro) and a valid Luhn check digit;
 * - IBANs: a country code, two check digits and the account number, plain or in groups of four, with the length of
 *   that country and a valid ISO 7064 checksum (ibantools);
 * - IP addresses: dotted quads and IPv6 addresses that node:net's isIP accepts. A dotted quad written right after a
 *   `v` (`v1.2.3.4`) is a version; a bare `1.2.3.4` cannot be told from an address and is replaced (erring on the
 *   side of privacy); `1.2.3` and `1.2.3.4.5` are not addresses;
 * - secrets: OpenAI keys (`sk-…`, `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`), Anthropic, Stripe, GitHub, GitLab,
 *   Slack, AWS access key ids, Google API keys, JSON Web Tokens and PEM private keys.
 *
 * One Redactor serves one exchange: the same value gets the same placeholder wherever it appears in that exchange
 * (request, answer, output text, error), and different values get different numbers.
 */
import { findNumbers } from 'libphonenumber-js/max';
import { electronicFormatIBAN, getCountrySpecifications, isValidIBAN } from 'ibantools';
import { isIP } from 'node:net';
import { asJsonString, jsonDeeperThan, MAX_JSON_DEPTH } from '../exchanges/recorder/record-values';

export type PersonalDataKind = 'SECRET' | 'EMAIL' | 'IBAN' | 'CARD' | 'IP' | 'PHONE';

/** Overlapping finds are settled in this order: a key holding digits is a secret, not a card or a phone number. */
const PRIORITY: PersonalDataKind[] = ['SECRET', 'EMAIL', 'IBAN', 'CARD', 'IP', 'PHONE'];

interface Found {
  kind: PersonalDataKind;
  start: number;
  end: number;
  /** the value's canonical form: the same value written differently gets the same placeholder */
  key: string;
}

const SECRET =
  /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|(?<![A-Za-z0-9_-])(?:sk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,}|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})(?![A-Za-z0-9_-])/g;

const EMAIL = /(?<![\p{L}\p{N}.!#$%&'*+/=?^_`{|}~-])[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+(?:\.[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+)*@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+\p{L}{2,63}(?![\p{L}\p{N}-])/gu;

/** 13 to 19 digits, plain or grouped by one space or dash, not inside a longer run of digits, letters or dots */
const CARD = /(?<![\p{L}\p{N}_.,-])\d(?:[ -]?\d){12,18}(?![\p{L}\p{N}_-]|[.,]\d)/gu;

/** a country code, check digits and 11 to 30 more letters or digits, in groups separated by a space or not */
const IBAN = /(?<![\p{L}\p{N}_])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![a-z0-9_])/gu;

const IPV4 = /(?<![\p{L}\p{N}_.-])(?:\d{1,3}\.){3}\d{1,3}(?![\p{L}\p{N}_-]|\.\d)/gu;
const IPV6 = /(?<![\p{L}\p{N}_:.-])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?:%[A-Za-z0-9]+)?(?![\p{L}\p{N}_:-]|\.\d)/gu;

const IBAN_LENGTHS: Record<string, number> = Object.fromEntries(
  Object.entries(getCountrySpecifications())
    .filter(([, spec]) => typeof spec.chars === 'number' && spec.chars > 0)
    .map(([country, spec]) => [country, spec.chars as number]),
);

function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** The prefix (IIN range) and length of a card network. */
function cardNetwork(d: string): boolean {
  const n = d.length;
  const p2 = Number(d.slice(0, 2));
  const p3 = Number(d.slice(0, 3));
  const p4 = Number(d.slice(0, 4));
  const p6 = Number(d.slice(0, 6));
  if (d[0] === '4') return n === 13 || n === 16 || n === 19; // Visa
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n === 16; // Mastercard
  if (p2 === 34 || p2 === 37) return n === 15; // American Express
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) return n >= 16 && n <= 19; // Discover
  if (p2 === 36 || (p3 >= 300 && p3 <= 305) || p2 === 38 || p2 === 39) return n >= 14 && n <= 19; // Diners Club
  if (p4 >= 3528 && p4 <= 3589) return n >= 16 && n <= 19; // JCB
  if (p2 === 62 || p2 === 81) return n >= 16 && n <= 19; // UnionPay
  if (p2 === 50 || (p2 >= 56 && p2 <= 58) || p2 === 63 || p2 === 67) return n >= 12 && n <= 19; // Maestro
  return false;
}

/** Groups of a card number: all plain, or separated alike (one kind of separator, groups of 4, or Amex's 4-6-5). */
function consistentGrouping(s: string): boolean {
  const hasSpace = s.includes(' ');
  const hasDash = s.includes('-');
  if (!hasSpace && !hasDash) return true;
  if (hasSpace && hasDash) return false;
  const groups = s.split(hasSpace ? ' ' : '-').map((g) => g.length);
  const body = groups.slice(0, -1);
  if (body.every((g) => g === 4) && groups[groups.length - 1] >= 1 && groups[groups.length - 1] <= 4) return true;
  return groups.length === 3 && groups[0] === 4 && groups[1] === 6 && (groups[2] === 5 || groups[2] === 4);
}

function findCards(text: string, out: Found[]): void {
  for (const m of text.matchAll(CARD)) {
    const raw = m[0];
    const digits = raw.replace(/[ -]/g, '');
    if (digits.length < 13 || digits.length > 19) continue;
    if (!consistentGrouping(raw) || !cardNetwork(digits) || !luhnValid(digits)) continue;
    out.push({ kind: 'CARD', start: m.index, end: m.index + raw.length, key: digits });
  }
}

function findIbans(text: string, out: Found[]): void {
  for (const m of text.matchAll(IBAN)) {
    const raw = m[0];
    const length = IBAN_LENGTHS[raw.slice(0, 2)];
    if (!length) continue;
    // the match may run on into the next word: the country's length of letters and digits is the IBAN
    let taken = 0;
    let end = 0;
    while (end < raw.length && taken < length) {
      if (raw[end] !== ' ') taken++;
      end++;
    }
    if (taken !== length) continue;
    const candidate = raw.slice(0, end);
    const compact = electronicFormatIBAN(candidate) ?? '';
    if (!isValidIBAN(compact)) continue;
    // what follows must not continue the number (`DE89… 00X` is not this IBAN followed by a word)
    const next = text[m.index + end];
    if (next !== undefined && /[A-Z0-9]/.test(next)) continue;
    out.push({ kind: 'IBAN', start: m.index, end: m.index + end, key: compact });
  }
}

function findIps(text: string, out: Found[]): void {
  if (text.includes('.')) {
    for (const m of text.matchAll(IPV4)) {
      // `v1.2.3.4`: a version
      const before = text[m.index - 1];
      if (before === 'v' || before === 'V') continue;
      if (isIP(m[0]) === 4) out.push({ kind: 'IP', start: m.index, end: m.index + m[0].length, key: m[0] });
    }
  }
  if (text.includes(':')) {
    for (const m of text.matchAll(IPV6)) {
      const raw = m[0];
      const address = raw.split('%')[0];
      // a time (12:30:45) is no address; `a::b` in code has no digit; `::` alone is nothing to hide
      if (!/\d/.test(address) || address.replace(/[:.]/g, '').length < 2) continue;
      if (isIP(address) === 6) out.push({ kind: 'IP', start: m.index, end: m.index + raw.length, key: address.toLowerCase() });
    }
  }
}

function findPhones(text: string, out: Found[]): void {
  for (const m of findNumbers(text, { defaultCountry: 'US', v2: true })) {
    let start = m.startsAt;
    let end = m.endsAt;
    // a number written in parentheses, `(+44 20 7946 0958)`: the parentheses are the text's, not the number's
    const span = text.slice(start, end);
    if (span.startsWith('(') && !span.includes(')')) start++;
    if (span.endsWith(')') && !span.includes('(')) end--;
    out.push({ kind: 'PHONE', start, end, key: m.number.number });
  }
}

/** `name@example.com.txt` is a file named after an address: the extension is not part of it */
const FILE_EXTENSION = /\.(?:txt|pdf|csv|tsv|jsonl?|xml|html?|md|log|docx?|xlsx?|pptx?|odt|rtf|png|jpe?g|gif|webp|svg|zip|gz|tar|mp3|mp4|wav|m4a|ogg|webm|eml|msg|vcf)$/i;

function findEmails(text: string, out: Found[]): void {
  for (const m of text.matchAll(EMAIL)) {
    let value = m[0];
    const ext = FILE_EXTENSION.exec(value);
    // only when what is left still has a dotted domain
    if (ext && value.slice(value.indexOf('@'), ext.index).includes('.')) value = value.slice(0, ext.index);
    out.push({ kind: 'EMAIL', start: m.index, end: m.index + value.length, key: value.toLowerCase() });
  }
}

/** digits enough for a phone number (7), a card (12) or an IBAN */
function digitCount(text: string, atLeast: number): boolean {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57 && ++n >= atLeast) return true;
  }
  return false;
}

/** Every piece of personal data in the text, without overlaps, in order. */
export function findPersonalData(text: string): Found[] {
  const found: Found[] = [];
  if (text.length < 7) return found;
  for (const m of text.matchAll(SECRET)) found.push({ kind: 'SECRET', start: m.index, end: m.index + m[0].length, key: m[0] });
  if (text.includes('@')) findEmails(text, found);
  findIps(text, found);
  if (digitCount(text, 7)) {
    findIbans(text, found);
    findCards(text, found);
    findPhones(text, found);
  }
  if (found.length < 2) return found;
  // higher priority first, then the longer; a find overlapping one already taken is dropped
  found.sort((a, b) => PRIORITY.indexOf(a.kind) - PRIORITY.indexOf(b.kind) || b.end - b.start - (a.end - a.start) || a.start - b.start);
  const taken: Found[] = [];
  // the characters already taken (finds are short: checking their span is linear in the text overall)
  const used = new Uint8Array(text.length);
  for (const f of found) {
    let free = true;
    for (let i = f.start; i < f.end && free; i++) if (used[i]) free = false;
    if (!free) continue;
    used.fill(1, f.start, f.end);
    taken.push(f);
  }
  return taken.sort((a, b) => a.start - b.start);
}

type Json = Record<string, unknown>;

/** Replaces personal data by placeholders, the same value by the same placeholder, for the life of one exchange. */
export class Redactor {
  private readonly placeholders = new Map<string, string>();
  private readonly counts = new Map<PersonalDataKind, number>();

  /** The text with its personal data replaced. */
  text(text: string): string {
    const found = findPersonalData(text);
    if (!found.length) return text;
    let out = '';
    let at = 0;
    for (const f of found) {
      out += text.slice(at, f.start) + this.placeholder(f.kind, f.key);
      at = f.end;
    }
    return out + text.slice(at);
  }

  /** A JSON value with its strings redacted (keys, numbers and the shape untouched); unchanged parts are shared. */
  value(v: unknown): unknown {
    if (typeof v === 'string') return this.text(v);
    if (Array.isArray(v)) {
      let copy: unknown[] | null = null;
      for (let i = 0; i < v.length; i++) {
        const r = this.value(v[i]);
        if (r !== v[i]) (copy ??= v.slice())[i] = r;
      }
      return copy ?? v;
    }
    if (v !== null && typeof v === 'object') {
      let copy: Json | null = null;
      for (const k of Object.keys(v)) {
        const before = (v as Json)[k];
        const r = this.value(before);
        if (r !== before) (copy ??= { ...(v as Json) })[k] = r;
      }
      return copy ?? v;
    }
    return v;
  }

  /**
   * JSON text with its strings redacted, as JSON text. Text nested too deep to be stored as JSON (see
   * MAX_JSON_DEPTH) or that is no JSON at all is stored as a JSON string of itself: it is redacted as text.
   */
  jsonText(json: string): string {
    if (jsonDeeperThan(json, MAX_JSON_DEPTH)) return asJsonString(this.text(json));
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      return asJsonString(this.text(json));
    }
    const redacted = this.value(parsed);
    return redacted === parsed ? json : JSON.stringify(redacted);
  }

  private placeholder(kind: PersonalDataKind, key: string): string {
    const id = `${kind}\u0000${key}`;
    let p = this.placeholders.get(id);
    if (!p) {
      const n = (this.counts.get(kind) ?? 0) + 1;
      this.counts.set(kind, n);
      p = `[${kind}_${n}]`;
      this.placeholders.set(id, p);
    }
    return p;
  }
}
