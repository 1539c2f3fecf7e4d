import { createHmac } from 'node:crypto';
import { AppException } from '../common/app-exception';
import { isUuid } from '../common/ids';
import type { ActingContext } from '../common/request-context';
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
/** OpenAI's longest model names (fine-tuned snapshots, `ft:…:org:suffix:id`) stay far below this */
export const MAX_MODEL_LENGTH = 256;
/** upstream response ids are a prefix and some 50 characters */
export const MAX_RESPONSE_ID_LENGTH = 256;
const CONTROL = /[\u0000-\u001f\u007f]/;

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
  if (typeof model === 'string' && (model.length > MAX_MODEL_LENGTH || CONTROL.test(model))) {
    throw AppException.invalid(`model must be a model name: at most ${MAX_MODEL_LENGTH} characters, no control characters`, 'model');
  }
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') throw AppException.invalid('stream must be a boolean', 'stream');
  if (personaId !== undefined && personaId !== null && !isUuid(personaId)) throw AppException.invalid('persona_id must be a UUID', 'persona_id');
  if (previous !== undefined && previous !== null && typeof previous !== 'string') {
    throw AppException.invalid('previous_response_id must be a string', 'previous_response_id');
  }
  if (typeof previous === 'string' && (previous.length > MAX_RESPONSE_ID_LENGTH || CONTROL.test(previous))) {
    throw AppException.invalid(`previous_response_id must be a response id: at most ${MAX_RESPONSE_ID_LENGTH} characters, no control characters`, 'previous_response_id');
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

/** A chat stream whose client did not ask for usage: the proxy asks for it (budgets and token limits need it). */
export function lacksStreamUsage(endpoint: ProxyEndpoint, fields: ProxyBodyFields): boolean {
  if (endpoint !== 'chat.completions' || !fields.stream) return false;
  const options = fields.body.stream_options as { include_usage?: unknown } | null | undefined;
  return !(options && typeof options === 'object' && options.include_usage === true);
}

const INCLUDE_USAGE = '"stream_options":{"include_usage":true}';

function streamOptionsWithUsage(options: unknown): Record<string, unknown> {
  const own = options && typeof options === 'object' && !Array.isArray(options) ? options : {};
  return { ...own, include_usage: true };
}

/**
 * The key safety identifiers are made with: derived from the server's JWT secret (never the secret itself), so the
 * same secret gives the same identifiers on every process and after every restart.
 */
const safetyKeys = new Map<string, Buffer>();
function safetyKeyOf(secret: string): Buffer {
  let key = safetyKeys.get(secret);
  if (!key) {
    key = createHmac('sha256', secret).update('openai-proxy safety_identifier v1').digest();
    safetyKeys.set(secret, key);
  }
  return key;
}

/**
 * OpenAI's `safety_identifier` for an end user: a keyed hash (HMAC-SHA256) of the organization and the X-User-ID,
 * 32 hex characters. Stable for one user, different in each organization, and without the key it says nothing of
 * who the user is.
 */
export function safetyIdentifierOf(secret: string, orgId: string, externalUserId: string): string {
  // a JSON pair: no two (organization, user) pairs give the same input
  return createHmac('sha256', safetyKeyOf(secret)).update(JSON.stringify([orgId, externalUserId])).digest('hex').slice(0, 32);
}

/** The safety identifier a call adds: when its organization has them on, else null (the body goes as it came). */
export function safetyIdentifierFor(acting: Pick<ActingContext, 'orgId' | 'externalUserId' | 'privacy'>, secret: string): string | null {
  return acting.privacy.safetyIdentifier ? safetyIdentifierOf(secret, acting.orgId, acting.externalUserId) : null;
}

/** Whether a safety identifier is to be added to this body: one is given and the client sent none (not even null). */
export const addsSafetyIdentifier = (body: Record<string, unknown>, safetyId: string | null): safetyId is string =>
  safetyId !== null && !('safety_identifier' in body);

/**
 * The client's bytes with members inserted after the opening brace (each given as `"name":value`), the rest kept as
 * sent. `empty`: the object has no members of its own (no comma after the inserted ones).
 */
export function withLeadingMembers(raw: Buffer, members: string[], empty: boolean): Buffer {
  const brace = raw.indexOf(0x7b);
  const inserted = Buffer.from(members.join(',') + (empty ? '' : ','));
  return Buffer.concat([raw.subarray(0, brace + 1), inserted, raw.subarray(brace + 1)]);
}

/** The body sent upstream when a persona applies: persona_id removed, the persona's content as instructions / system message. */
export function withPersona(endpoint: ProxyEndpoint, body: Record<string, unknown>, content: string, askUsage = false, safetyId: string | null = null): string {
  const { persona_id: _drop, ...rest } = body;
  if (endpoint === 'responses') {
    const own = typeof rest.instructions === 'string' && rest.instructions !== '' ? rest.instructions : null;
    rest.instructions = own === null ? content : `${content}\n\n${own}`;
  } else {
    rest.messages = [{ role: 'system', content }, ...(rest.messages as unknown[])];
  }
  if (askUsage) rest.stream_options = streamOptionsWithUsage(rest.stream_options);
  if (addsSafetyIdentifier(body, safetyId)) rest.safety_identifier = safetyId;
  return JSON.stringify(rest);
}

/**
 * The body sent upstream without a persona: the client's bytes, unless a `persona_id: null` must be dropped. With
 * `askUsage`, `stream_options.include_usage: true`: without `stream_options` the member is inserted after the
 * opening brace, the client's bytes otherwise kept; a `stream_options` that says otherwise is rewritten.
 */
export function withoutPersona(body: Record<string, unknown>, raw: Buffer, askUsage = false, safetyId: string | null = null): Buffer | string {
  const addSafety = addsSafetyIdentifier(body, safetyId);
  if (!('persona_id' in body)) {
    if (!askUsage && !addSafety) return raw;
    if (!askUsage || body.stream_options === undefined) {
      const members = [...(askUsage ? [INCLUDE_USAGE] : []), ...(addSafety ? [safetyMember(safetyId)] : [])];
      return withLeadingMembers(raw, members, Object.keys(body).length === 0);
    }
  }
  const { persona_id: _drop, ...rest } = body;
  if (askUsage) rest.stream_options = streamOptionsWithUsage(rest.stream_options);
  if (addSafety) rest.safety_identifier = safetyId;
  return JSON.stringify(rest);
}

const safetyMember = (safetyId: string) => `"safety_identifier":${JSON.stringify(safetyId)}`;
