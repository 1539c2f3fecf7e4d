import { AppException } from './app-exception';

/** How deep and how large a request body's JSON may be before it is parsed. */
export interface JsonBounds {
  maxDepth: number;
  /** every array element and object member counts, at any depth */
  maxElements: number;
}

/**
 * The proxied routes forward OpenAI bodies: deep JSON schemas of tools and long conversations fit well within these.
 * JSON.parse of a body at the element bound takes about as long as that of any other 10 MB body (a few tens of ms).
 */
export const FORWARDED_JSON_BOUNDS: JsonBounds = { maxDepth: 128, maxElements: 500_000 };
/** The proxy's own routes take small flat bodies; class-validator walks every element, so the bound is lower. */
export const MANAGED_JSON_BOUNDS: JsonBounds = { maxDepth: 32, maxElements: 10_000 };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;

/**
 * One linear pass over UTF-8 JSON text, before JSON.parse: refuses bodies nested deeper or holding more elements
 * than `bounds` (JSON.parse recurses per level, and every later walk of the value is as long as its element count).
 * Malformed text is left to JSON.parse; this pass only counts brackets and commas outside strings.
 */
export function refuseOversizedJson(text: Buffer, bounds: JsonBounds): void {
  let depth = 0;
  let elements = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text[i];
    if (c === QUOTE) {
      // to the closing quote, stepping over escapes (a byte loop: steady on any content, a few ns a byte)
      for (i++; i < n; i++) {
        const d = text[i];
        if (d === BACKSLASH) i++;
        else if (d === QUOTE) break;
      }
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > bounds.maxDepth) {
        throw new AppException('invalid_request', `Request body is nested deeper than ${bounds.maxDepth} levels`, { code: 'json_too_deep' });
      }
      elements++;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    } else if (c === COMMA) {
      elements++;
    } else continue;
    if (elements > bounds.maxElements) {
      throw new AppException('invalid_request', `Request body has more than ${bounds.maxElements} JSON elements`, {
        code: 'json_too_many_elements',
      });
    }
  }
}

/**
 * PostgreSQL text cannot hold U+0000: a NUL anywhere in a value the proxy's own routes store or look up is refused
 * here, naming the field, rather than failing in the database.
 */
export function refuseNulInJson(value: unknown, path = ''): void {
  if (typeof value === 'string') {
    if (value.includes('\0')) throw nulRefused(path || 'body');
    return;
  }
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) refuseNulInJson(value[i], `${path}[${i}]`);
    return;
  }
  for (const [key, v] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    if (key.includes('\0')) throw nulRefused(at);
    refuseNulInJson(v, at);
  }
}

export function nulRefused(param: string): AppException {
  return AppException.invalid(`${printable(param)} must not contain NUL (\\u0000) characters`, printable(param));
}

/** A parameter name as it may be echoed back: without control characters, and not too long. */
function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}
