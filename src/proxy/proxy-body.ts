import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import type { ProxyEndpoint } from './exchange-capture';

/** The few fields of an OpenAI request body the proxy reads; everything else passes through untouched. */
export interface ProxyBodyFields {
  body: Record<string, unknown>;
  model: string | null;
  stream: boolean;
  personaId: string | null;
  previousResponseId: string | null;
}

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function readSessionHeader(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  const v = Array.isArray(value) ? value[0] : value;
  if (!SESSION_ID.test(v)) {
    throw AppException.invalid('X-Session-ID must be 1–128 characters of letters, digits, ".", "_", ":" or "-"', 'X-Session-ID');
  }
  return v;
}

export function readProxyBody(endpoint: ProxyEndpoint, parsed: unknown, raw: Buffer | undefined): ProxyBodyFields {
  if (!raw?.length || typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw AppException.invalid('The request body must be a JSON object (Content-Type: application/json)');
  }
  const body = parsed as Record<string, unknown>;
  const { model, stream, persona_id: personaId, previous_response_id: previous } = body;
  if (model !== undefined && typeof model !== 'string') throw AppException.invalid('model must be a string', 'model');
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') throw AppException.invalid('stream must be a boolean', 'stream');
  if (personaId !== undefined && personaId !== null && !isUuid(personaId)) throw AppException.invalid('persona_id must be a UUID', 'persona_id');
  if (previous !== undefined && previous !== null && typeof previous !== 'string') {
    throw AppException.invalid('previous_response_id must be a string', 'previous_response_id');
  }
  if (personaId) {
    if (endpoint === 'responses' && body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== 'string') {
      throw AppException.invalid('instructions must be a string', 'instructions');
    }
    if (endpoint === 'chat.completions' && !Array.isArray(body.messages)) throw AppException.invalid('messages must be an array', 'messages');
  }
  return {
    body,
    model: (model as string | undefined) ?? null,
    stream: stream === true,
    personaId: (personaId as string | null | undefined) ?? null,
    previousResponseId: (previous as string | null | undefined) ?? null,
  };
}

/** The body sent upstream when a persona applies: persona_id removed, the persona's content as instructions / system message. */
export function withPersona(endpoint: ProxyEndpoint, body: Record<string, unknown>, content: string): string {
  const { persona_id: _drop, ...rest } = body;
  if (endpoint === 'responses') {
    const own = typeof rest.instructions === 'string' && rest.instructions !== '' ? rest.instructions : null;
    rest.instructions = own === null ? content : `${content}\n\n${own}`;
  } else {
    rest.messages = [{ role: 'system', content }, ...(rest.messages as unknown[])];
  }
  return JSON.stringify(rest);
}

/** The body sent upstream without a persona: the client's bytes, unless a `persona_id: null` must be dropped. */
export function withoutPersona(body: Record<string, unknown>, raw: Buffer): Buffer | string {
  if (!('persona_id' in body)) return raw;
  const { persona_id: _drop, ...rest } = body;
  return JSON.stringify(rest);
}
