/**
 * Values made storable by PostgreSQL before an exchange record is written. A record is written after the
 * upstream was called (and billed), so a value PostgreSQL refuses must not cost the whole row: every column
 * goes through one of these on its way to the database.
 */

/**
 * Deepest JSON nesting stored as JSON. PostgreSQL parses jsonb recursively: 100,000 levels exceed its stack
 * (`stack depth limit exceeded`), and the embedded database's WebAssembly build dies outright somewhere past
 * 10,000. No OpenAI body comes near this depth; a deeper one is stored as a JSON string holding its text.
 */
export const MAX_JSON_DEPTH = 1000;

const INT4_MAX = 2_147_483_647;

/** text columns: PostgreSQL cannot store NUL, which becomes U+FFFD (lone surrogates are replaced by the UTF-8 encoder) */
export function pgText(s: string | null | undefined): string | null {
  if (s === null || s === undefined) return null;
  return s.indexOf('\u0000') === -1 ? s : s.replace(/\u0000/g, '\uFFFD');
}

/** whole numbers of an int4 column, clamped (a latency or status beyond it is nonsense, not a reason to lose the row) */
export function pgInt4(v: number | null | undefined): number | null {
  if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  return Math.max(-INT4_MAX, Math.min(INT4_MAX, Math.round(v)));
}

/** token counts (bigint columns): whole, within the range a JavaScript number holds exactly */
export function pgBigint(v: number | null | undefined): number | null {
  if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  return Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, Math.round(v)));
}

export function pgFloat(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

// an escaped backslash (kept as it is, so the escape after it is read right), \u0000, or a UTF-16 surrogate escape
const JSON_ESCAPES = /\\(?:\\|u(?:0000|[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|[dD][c-fC-F][0-9a-fA-F]{2}))/g;

// what may need fixing: a quick test before the full pass (escaped non-ASCII text is common, these are not)
const SUSPECT_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;

/** \u0000 and unpaired surrogate escapes, which jsonb refuses, become \ufffd; a surrogate pair is kept */
function fixEscapes(json: string): string {
  if (json.indexOf('\\u') === -1 || !SUSPECT_ESCAPE.test(json)) return json;
  return json.replace(JSON_ESCAPES, (m) => {
    if (m === '\\\\') return m;
    if (m.length === 12) return m; // a high surrogate followed by its low one
    return '\\ufffd';
  });
}

/** Occurrences of `ch`, counted up to `limit + 1` (indexOf runs far faster than a loop over the characters). */
function countUpTo(s: string, ch: string, limit: number): number {
  let n = 0;
  for (let i = s.indexOf(ch); i !== -1 && n <= limit; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

/** Whether the JSON text nests deeper than `max` (brackets inside strings do not count). */
export function jsonDeeperThan(json: string, max: number): boolean {
  // every level takes two characters at least, and one opening bracket: most bodies are ruled out without a scan
  if (json.length <= 2 * max || countUpTo(json, '[', max) + countUpTo(json, '{', max) <= max) return false;
  let depth = 0;
  const n = json.length;
  for (let i = 0; i < n; i++) {
    const c = json.charCodeAt(i);
    if (c === 34) {
      // skip the string: to the next quote not escaped by an odd number of backslashes
      for (;;) {
        const q = json.indexOf('"', i + 1);
        if (q === -1) return false;
        let b = q - 1;
        while (json.charCodeAt(b) === 92) b--;
        i = q;
        if ((q - 1 - b) % 2 === 0) break;
      }
    } else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) depth--;
  }
  return false;
}

/** A JSON string holding `text`, storable as jsonb whatever `text` holds. */
export function asJsonString(text: string): string {
  return fixEscapes(JSON.stringify(text));
}

/**
 * jsonb values: JSON text is stored as it is when PostgreSQL can take it; a value is serialized first. A text
 * nested deeper than MAX_JSON_DEPTH is stored as a JSON string of itself; a value that cannot be serialized
 * (too deep for JSON.stringify, a cycle) as a string saying so.
 */
export function pgJson(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  let text: string;
  if (typeof v === 'string') text = v;
  else {
    try {
      text = JSON.stringify(v);
    } catch {
      return JSON.stringify('[value not storable: it could not be serialized as JSON]');
    }
    if (text === undefined) return null;
  }
  if (jsonDeeperThan(text, MAX_JSON_DEPTH)) return asJsonString(text);
  return fixEscapes(text);
}
