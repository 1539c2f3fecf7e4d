import { ADMIN_SEGMENTS, OPENAI_ROUTES } from './openai-route-list';

/** One route of the OpenAI API. */
export interface OpenAIRoute {
  method: string;
  /** e.g. `/v1/files/{file_id}/content` */
  template: string;
  /** the record's endpoint: the template's fixed segments joined with dots, e.g. `files.content` */
  endpoint: string;
  /** a repeat of this call is safe whatever its body (model calls, reads, deletes) */
  repeatable: boolean;
  /** served by a handler of its own, not the generic relay */
  own: boolean;
  segments: readonly (string | { param: string })[];
}

export interface RouteMatch {
  route: OpenAIRoute;
  /** path parameters, decoded */
  params: Record<string, string>;
}

/**
 * Calls that make or score model output and change nothing upstream: a repeat after a failure before the first
 * byte costs at most the first attempt's tokens, as with /v1/responses.
 */
const MODEL_CALLS = new Set([
  'POST /v1/completions',
  'POST /v1/embeddings',
  'POST /v1/moderations',
  'POST /v1/responses/input_tokens',
  'POST /v1/responses/compact',
  'POST /v1/images/generations',
  'POST /v1/audio/speech',
  'POST /v1/vector_stores/{vector_store_id}/search',
]);

/** Routes with handlers of their own (the model-call hot path, the stored response, the model list). */
const OWN = new Set(['POST /v1/responses', 'POST /v1/chat/completions', 'GET /v1/responses/{response_id}', 'GET /v1/models']);

/** Model calls the SDK lists outside its resources, or that predate it. */
const EXTRA = ['POST /v1/embeddings'];

function compile(spec: string): OpenAIRoute {
  const [method, template] = spec.split(' ');
  const segments = template
    .split('/')
    .slice(1)
    .map((s) => (s.startsWith('{') ? { param: s.slice(1, -1) } : s));
  const fixed = segments.filter((s): s is string => typeof s === 'string').slice(1);
  return {
    method,
    template,
    endpoint: fixed.join('.'),
    repeatable: method === 'GET' || method === 'DELETE' || MODEL_CALLS.has(spec),
    own: OWN.has(spec),
    segments,
  };
}

const ROUTES = [...new Set([...OPENAI_ROUTES, ...EXTRA])].map(compile);
/** by method, then by segment count: a request is compared with a handful of templates */
const INDEX = new Map<string, OpenAIRoute[]>();
for (const route of ROUTES) {
  const key = `${route.method} ${route.segments.length}`;
  const list = INDEX.get(key) ?? [];
  list.push(route);
  INDEX.set(key, list);
}
// a fixed segment wins over a parameter in the same place (`/v1/videos/characters` before `/v1/videos/{video_id}`)
for (const list of INDEX.values()) list.sort((a, b) => specificity(b) - specificity(a));

function specificity(route: OpenAIRoute): number {
  let n = 0;
  for (const s of route.segments) n = n * 2 + (typeof s === 'string' ? 1 : 0);
  return n;
}

/** The OpenAI route of `method path` (path without the query), or null. */
export function matchOpenAIRoute(method: string, path: string): RouteMatch | null {
  if (!path.startsWith('/v1/')) return null;
  const parts = path.slice(1).split('/');
  const candidates = INDEX.get(`${method} ${parts.length}`);
  if (!candidates) return null;
  outer: for (const route of candidates) {
    const params: Record<string, string> = {};
    for (let i = 0; i < parts.length; i++) {
      const seg = route.segments[i];
      if (typeof seg === 'string') {
        if (seg !== parts[i]) continue outer;
      } else {
        if (!parts[i]) continue outer;
        let value: string;
        try {
          value = decodeURIComponent(parts[i]);
        } catch {
          continue outer;
        }
        params[seg.param] = value;
      }
    }
    return { route, params };
  }
  return null;
}

/** Whether some method serves this path (an OpenAI route called with another method: 405, not 404). */
export function isOpenAIPath(path: string): boolean {
  if (!path.startsWith('/v1/')) return false;
  const parts = path.slice(1).split('/');
  for (const route of ROUTES) {
    if (route.segments.length !== parts.length) continue;
    if (route.segments.every((s, i) => (typeof s === 'string' ? s === parts[i] : parts[i] !== ''))) return true;
  }
  return false;
}

/** A path of OpenAI's administration API (organization admin keys only; never relayed). */
export function isAdminPath(path: string): boolean {
  const second = path.split('/')[2];
  return path.startsWith('/v1/') && second !== undefined && ADMIN_SEGMENTS.has(second);
}

/** Every route, for the documentation. */
export function openAIRoutes(): readonly OpenAIRoute[] {
  return ROUTES;
}
