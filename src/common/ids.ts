import { randomBytes, randomUUID } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

// random bytes are drawn in blocks: one system call serves many ids on the hot path
const POOL_SIZE = 24 * 256;
let pool = randomBytes(POOL_SIZE);
let offset = 0;

/** 24 url-safe random characters (144 bits). */
export function randomToken24(): string {
  if (offset + 24 > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    offset = 0;
  }
  let out = '';
  for (let i = 0; i < 24; i++) out += ALPHABET[pool[offset + i] & 63];
  offset += 24;
  return out;
}

export const newRequestId = (): string => `req_${randomToken24()}`;
export const newSessionId = (): string => `session_${randomToken24()}`;
export const newUuid = (): string => randomUUID();

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (v: unknown): v is string => typeof v === 'string' && UUID_RE.test(v);
