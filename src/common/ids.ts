import { randomBytes, randomUUID } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** 24 url-safe random characters (144 bits). */
export function randomToken24(): string {
  const bytes = randomBytes(24);
  let out = '';
  for (let i = 0; i < 24; i++) out += ALPHABET[bytes[i] & 63];
  return out;
}

export const newRequestId = (): string => `req_${randomToken24()}`;
export const newSessionId = (): string => `session_${randomToken24()}`;
export const newUuid = (): string => randomUUID();

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (v: unknown): v is string => typeof v === 'string' && UUID_RE.test(v);
