/** What an OpenAI answer reports it used: token counts by kind, and the units some models are priced by instead. */

import type { TokenUsage } from '../exchanges/recorder/exchange-record';

/** Images an answer made, priced per image by size and quality (dall-e-2, dall-e-3). */
export interface ImageCount {
  count: number;
  size: string | null;
  quality: string | null;
}

/**
 * The usage of one answer. `input`, `output`, `total`, `cached` and `reasoning` are the token columns of the record;
 * the optional counts split them by kind (`audioInput` is part of `input`, `cachedAudio` part of `cached`…). A count
 * the answer does not report is absent (or null for the token columns), never 0.
 */
export interface AnswerUsage extends TokenUsage {
  /** the model the answer names (a snapshot), else the one the request named */
  model: string | null;
  audioInput?: number;
  audioOutput?: number;
  imageInput?: number;
  imageOutput?: number;
  cachedAudio?: number;
  cachedImage?: number;
  images?: ImageCount;
  /** characters of text to speak (`/v1/audio/speech`) */
  characters?: number;
  /** seconds of audio transcribed, for models priced by the minute */
  audioSeconds?: number;
  webSearchCalls?: number;
  fileSearchCalls?: number;
  /** the `service_tier` the answer names (`default`, `flex`, `priority`…), else the one the request asked for */
  serviceTier?: string | null;
  /** run through the Batch API */
  batch?: boolean;
}

type Json = Record<string, any>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const count = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : null);
const text = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 ? v : null);
/** Sets the optional counts the answer reports and leaves out those it does not. */
const withCounts = (usage: AnswerUsage, counts: Partial<Record<keyof AnswerUsage, number | null>>): AnswerUsage => {
  for (const [key, value] of Object.entries(counts)) if (value !== null && value !== undefined) (usage as any)[key] = value;
  return usage;
};

function blank(model: string | null): AnswerUsage {
  return { model, input: null, output: null, total: null, cached: null, reasoning: null };
}

/** Built-in tool calls a Responses object made (its `web_search_call` and `file_search_call` output items). */
export function toolCallsOf(responseBody: unknown): { webSearchCalls: number; fileSearchCalls: number } {
  const body = unwrapEvent(responseBody);
  const calls = { webSearchCalls: 0, fileSearchCalls: 0 };
  if (!isObj(body) || !Array.isArray(body.output)) return calls;
  for (const item of body.output) {
    if (!isObj(item)) continue;
    if (item.type === 'web_search_call') calls.webSearchCalls++;
    else if (item.type === 'file_search_call') calls.fileSearchCalls++;
  }
  return calls;
}

/** A stream's final event (`response.completed`, `response.done`) stands for the response it carries. */
function unwrapEvent(body: unknown): unknown {
  return isObj(body) && typeof body.type === 'string' && isObj(body.response) ? body.response : body;
}

function serviceTierOf(body: Json, request: Json): string | null | undefined {
  if (body.service_tier !== undefined) return text(body.service_tier);
  return request.service_tier === undefined ? undefined : text(request.service_tier);
}

/** Chat Completions and legacy Completions: `prompt_tokens` / `completion_tokens`. */
function chatUsage(body: Json, request: Json): AnswerUsage | null {
  if (!isObj(body.usage)) return null;
  const u = body.usage;
  const usage: AnswerUsage = {
    model: text(body.model) ?? text(request.model),
    input: count(u.prompt_tokens),
    output: count(u.completion_tokens),
    total: count(u.total_tokens),
    cached: count(u.prompt_tokens_details?.cached_tokens),
    reasoning: count(u.completion_tokens_details?.reasoning_tokens),
  };
  const tier = serviceTierOf(body, request);
  if (tier !== undefined) usage.serviceTier = tier;
  return withCounts(usage, { audioInput: count(u.prompt_tokens_details?.audio_tokens), audioOutput: count(u.completion_tokens_details?.audio_tokens) });
}

/** Responses (and compactions, and Batch objects): `input_tokens` / `output_tokens` with their details. */
function responsesTokens(u: Json, model: string | null): AnswerUsage {
  return {
    model,
    input: count(u.input_tokens),
    output: count(u.output_tokens),
    total: count(u.total_tokens),
    cached: count(u.input_tokens_details?.cached_tokens),
    reasoning: count(u.output_tokens_details?.reasoning_tokens),
  };
}

function responsesUsage(raw: Json, request: Json): AnswerUsage | null {
  const body = unwrapEvent(raw) as Json;
  if (!isObj(body) || !isObj(body.usage)) return null;
  const usage = responsesTokens(body.usage, text(body.model) ?? text(request.model));
  const tier = serviceTierOf(body, request);
  if (tier !== undefined) usage.serviceTier = tier;
  return Object.assign(usage, toolCallsOf(body));
}

function embeddingsUsage(body: Json, request: Json): AnswerUsage | null {
  if (!isObj(body.usage)) return null;
  return {
    model: text(body.model) ?? text(request.model),
    input: count(body.usage.prompt_tokens),
    output: 0,
    total: count(body.usage.total_tokens),
    cached: null,
    reasoning: null,
  };
}

/** A moderation reports no usage: its model is what prices it (moderation is free). */
function moderationUsage(body: Json, request: Json): AnswerUsage | null {
  if (!Array.isArray(body.results)) return null;
  return blank(text(body.model) ?? text(request.model));
}

/** Transcriptions and translations: tokens (`type: "tokens"`) or seconds of audio (`type: "duration"`, whisper-1). */
function transcriptionUsage(body: Json, request: Json): AnswerUsage | null {
  const usage = blank(text(request.model));
  const u = body.usage;
  if (isObj(u) && u.type === 'tokens') {
    Object.assign(usage, { input: count(u.input_tokens), output: count(u.output_tokens), total: count(u.total_tokens) });
    return withCounts(usage, { audioInput: count(u.input_token_details?.audio_tokens) });
  }
  const seconds = isObj(u) && u.type === 'duration' ? u.seconds : body.duration;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return null;
  usage.audioSeconds = seconds;
  return usage;
}

/**
 * Speech: the answer is audio, so what is known comes from the request (the characters of `input`, priced for
 * tts-1) and, for a streamed answer (`stream_format: "sse"`), from its final `speech.audio.done` event's usage (text
 * tokens in, audio tokens out: gpt-4o-mini-tts).
 */
function speechUsage(body: Json | null, request: Json): AnswerUsage | null {
  const usage = blank(text(request.model));
  if (typeof request.input === 'string') usage.characters = Array.from(request.input).length;
  if (body && isObj(body.usage)) {
    const u = body.usage;
    Object.assign(usage, { input: count(u.input_tokens), output: count(u.output_tokens), total: count(u.total_tokens) });
    withCounts(usage, { audioOutput: count(u.output_tokens) });
  }
  return usage.model === null && usage.characters === undefined ? null : usage;
}

const DALL_E = /^dall-e-[23]/;

/**
 * Images: GPT image models report tokens (text and image in, image out); DALL·E models are priced per image by
 * size and quality, taken from the answer, else the request, else DALL·E's defaults (1024x1024, standard). Without
 * `model` the API uses dall-e-2 unless a GPT image parameter is sent, which an answer with usage betrays: the model
 * is then unknown. Variations are dall-e-2 only.
 */
function imagesUsage(body: Json, request: Json, variations: boolean): AnswerUsage | null {
  const event = typeof body.type === 'string' && body.type.endsWith('.completed');
  const u = isObj(body.usage) ? body.usage : null;
  const model = text(request.model) ?? (variations || !u ? 'dall-e-2' : null);
  const usage = blank(model);
  const dallE = model !== null && DALL_E.test(model);
  const images = event ? 1 : Array.isArray(body.data) ? body.data.length : null;
  if (images !== null) {
    usage.images = {
      count: images,
      size: text(body.size) ?? text(request.size) ?? (dallE ? '1024x1024' : null),
      quality: text(body.quality) ?? text(request.quality) ?? (dallE ? 'standard' : null),
    };
  }
  if (u) {
    Object.assign(usage, { input: count(u.input_tokens), output: count(u.output_tokens), total: count(u.total_tokens), cached: count(u.input_tokens_details?.cached_tokens) });
    withCounts(usage, {
      imageInput: count(u.input_tokens_details?.image_tokens),
      // every output token of an image model is an image token unless the answer splits them
      imageOutput: count(u.output_tokens_details?.image_tokens) ?? count(u.output_tokens),
    });
  }
  return images === null && !u ? null : usage;
}

function batchUsage(body: Json): AnswerUsage | null {
  if (body.object !== 'batch' || !isObj(body.usage)) return null;
  return Object.assign(responsesTokens(body.usage, text(body.model)), { batch: true });
}

/**
 * Realtime: a `response.done` event (or the response it carries) reports the usage of that one response, split by
 * text, audio and image, cached ones too. The model is the session's (pass `{ model }` as the request); a session's
 * usage is the sum of its responses' (`addUsage`).
 */
function realtimeUsage(raw: Json, request: Json): AnswerUsage | null {
  const body = unwrapEvent(raw) as Json;
  const u = isObj(body.usage) ? body.usage : isObj(body.input_token_details) ? body : null;
  if (!u) return null;
  const inDetails = isObj(u.input_token_details) ? u.input_token_details : {};
  const cachedDetails = isObj(inDetails.cached_tokens_details) ? inDetails.cached_tokens_details : {};
  const outDetails = isObj(u.output_token_details) ? u.output_token_details : {};
  const usage: AnswerUsage = {
    model: text(request.model) ?? text(body.model),
    input: count(u.input_tokens),
    output: count(u.output_tokens),
    total: count(u.total_tokens),
    cached: count(inDetails.cached_tokens),
    reasoning: count(outDetails.reasoning_tokens),
  };
  return withCounts(usage, {
    audioInput: count(inDetails.audio_tokens),
    imageInput: count(inDetails.image_tokens),
    cachedAudio: count(cachedDetails.audio_tokens),
    cachedImage: count(cachedDetails.image_tokens),
    audioOutput: count(outDetails.audio_tokens),
  });
}

/** Route templates with `{…}` parameters, whatever they are named. */
const ROUTES: Record<string, (body: Json | null, request: Json) => AnswerUsage | null> = {
  '/v1/chat/completions': (b, r) => (b ? chatUsage(b, r) : null),
  '/v1/completions': (b, r) => (b ? chatUsage(b, r) : null),
  '/v1/responses': (b, r) => (b ? responsesUsage(b, r) : null),
  '/v1/responses/compact': (b, r) => (b ? responsesUsage(b, r) : null),
  // a background response ends here: retrieved, or cancelled
  '/v1/responses/{}': (b, r) => (b ? responsesUsage(b, r) : null),
  '/v1/responses/{}/cancel': (b, r) => (b ? responsesUsage(b, r) : null),
  '/v1/embeddings': (b, r) => (b ? embeddingsUsage(b, r) : null),
  '/v1/moderations': (b, r) => (b ? moderationUsage(b, r) : null),
  '/v1/audio/transcriptions': (b, r) => (b ? transcriptionUsage(b, r) : null),
  '/v1/audio/translations': (b, r) => (b ? transcriptionUsage(b, r) : null),
  '/v1/audio/speech': (b, r) => speechUsage(b, r),
  '/v1/images/generations': (b, r) => (b ? imagesUsage(b, r, false) : null),
  '/v1/images/edits': (b, r) => (b ? imagesUsage(b, r, false) : null),
  '/v1/images/variations': (b, r) => (b ? imagesUsage(b, r, true) : null),
  '/v1/batches/{}': (b) => (b ? batchUsage(b) : null),
  '/v1/batches/{}/cancel': (b) => (b ? batchUsage(b) : null),
  '/v1/realtime': (b, r) => (b ? realtimeUsage(b, r) : null),
};

/**
 * The usage an answer reports, for pricing and the record's token columns; null when the route runs no model or
 * the answer reports nothing to price (an error, a queued background response, a transcript asked for as text).
 *
 * `route` is the OpenAI route template (`/v1/batches/{batch_id}`). `request` is the parsed JSON body; for a
 * multipart request (transcriptions, translations, image edits and variations) pass the form fields that are known
 * (`{ model, size, quality, n }`), for realtime the session's `{ model }`. `response` is the parsed JSON answer (a
 * stream's final event will do: `response.completed`, `response.done`, `speech.audio.done`,
 * `image_generation.completed`), or null for a binary answer (speech).
 */
export function usageOfAnswer(route: string, request: unknown, response: unknown): AnswerUsage | null {
  const extract = ROUTES[route.replace(/\{[^}]*\}/g, '{}').replace(/\/+$/, '')];
  if (!extract) return null;
  return extract(isObj(response) ? response : null, isObj(request) ? request : {});
}

const ADDED = ['audioInput', 'audioOutput', 'imageInput', 'imageOutput', 'cachedAudio', 'cachedImage', 'characters', 'audioSeconds', 'webSearchCalls', 'fileSearchCalls'] as const;

const sum = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : a + b);
/** The one value both name; null when they name different ones (a sum over two models prices as neither). */
const same = <T>(a: T | null | undefined, b: T | null | undefined): T | null | undefined => (a === undefined || a === null ? b : b === undefined || b === null || a === b ? a : null);

/** Two usages summed (a realtime session's responses): counts added, a count one of them lacks taken from the other. */
export function addUsage(a: AnswerUsage, b: AnswerUsage): AnswerUsage {
  const usage: AnswerUsage = {
    model: same(a.model, b.model) ?? null,
    input: sum(a.input, b.input),
    output: sum(a.output, b.output),
    total: sum(a.total, b.total),
    cached: sum(a.cached, b.cached),
    reasoning: sum(a.reasoning, b.reasoning),
  };
  if (a.estimated || b.estimated) usage.estimated = true;
  for (const key of ADDED) {
    if (a[key] !== undefined || b[key] !== undefined) usage[key] = (a[key] ?? 0) + (b[key] ?? 0);
  }
  if (a.images || b.images) {
    const [x, y] = [a.images, b.images];
    usage.images = x && y ? { count: x.count + y.count, size: same(x.size, y.size) ?? null, quality: same(x.quality, y.quality) ?? null } : (x ?? y)!;
  }
  if (a.serviceTier !== undefined || b.serviceTier !== undefined) {
    // answers of two tiers name both (`default+flex`), a tier no price matches
    const [x, y] = [a.serviceTier ?? null, b.serviceTier ?? null];
    usage.serviceTier = x === null || y === null || x === y ? (x ?? y) : `${x}+${y}`;
  }
  if (a.batch !== undefined || b.batch !== undefined) usage.batch = Boolean(a.batch || b.batch);
  return usage;
}
