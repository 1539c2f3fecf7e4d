// Every call of the console goes to this server's public /v1 API with the pasted token and X-User-ID.
// The credentials live in this tab's sessionStorage only: never in a URL, a log or localStorage.

const TOKEN_KEY = 'console.token';
const USER_KEY = 'console.user_id';

export interface Credentials {
  token: string;
  userId: string;
}

export function loadCredentials(): Credentials | null {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const userId = sessionStorage.getItem(USER_KEY);
  return token && userId ? { token, userId } : null;
}

export function saveCredentials(c: Credentials): void {
  sessionStorage.setItem(TOKEN_KEY, c.token);
  sessionStorage.setItem(USER_KEY, c.userId);
}

export function clearCredentials(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

/** The scopes a token carries (read from its payload, unverified: only to tell the person what to expect). */
export function tokenScopes(token: string): string[] {
  try {
    const part = token.split('.')[1];
    const json = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/'))) as { scope?: unknown };
    return typeof json.scope === 'string' ? json.scope.split(/\s+/).filter(Boolean) : ['proxy', 'read', 'manage'];
  } catch {
    return [];
  }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string | null,
    readonly code: string | null,
    message: string,
  ) {
    super(message);
  }

  /** What to tell the person, in plain words. */
  get explanation(): string {
    if (this.status === 401) return `The server refused the token: ${this.message}. Paste a valid token (npm run cli -- jwt create --org-id <org-id>).`;
    if (this.code === 'insufficient_scope') {
      return `This token is not allowed to do that (${this.message}). Viewing needs the read scope; editing and running analyses need manage.`;
    }
    if (this.status === 0) return `The server could not be reached: ${this.message}`;
    return this.message;
  }
}

let onUnauthorized: (() => void) | null = null;
/** Called when the API answers 401 (expired or revoked token): the console signs out. */
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

export async function apiFetch<T>(path: string, init: { method?: string; body?: unknown; credentials?: Credentials } = {}): Promise<T> {
  const creds = init.credentials ?? loadCredentials();
  const headers: Record<string, string> = { accept: 'application/json' };
  if (creds) {
    headers.authorization = `Bearer ${creds.token}`;
    headers['x-user-id'] = creds.userId;
  }
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError(0, null, null, err instanceof Error ? err.message : String(err));
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as { error?: { message?: string; type?: string; code?: string } } | undefined)?.error;
    const err = new ApiError(res.status, e?.type ?? null, e?.code ?? null, e?.message ?? `HTTP ${res.status}`);
    if (res.status === 401 && !init.credentials) onUnauthorized?.();
    throw err;
  }
  return json as T;
}

export function qs(params: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

export function errorText(err: unknown): string {
  return err instanceof ApiError ? err.explanation : err instanceof Error ? err.message : String(err);
}

// ---- the shapes the console reads ----

export interface ListPage<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface Exchange {
  id: string;
  response_id: string | null;
  session_id: string;
  user_id: string;
  persona_id: string | null;
  persona_version: number | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  status: string;
  upstream_status: number | null;
  usage: { input_tokens: number | null; output_tokens: number | null; total_tokens: number | null; cached_tokens: number | null; reasoning_tokens: number | null };
  cost: number | null;
  latency_ms: number | null;
  time_to_first_byte_ms: number | null;
  key_source: string | null;
  method: string | null;
  route: string | null;
  upstream_request_id: string | null;
  capture_mode: string;
  request_body: unknown;
  response_body: unknown;
  output_text: string | null;
  error: unknown;
  created_at: string;
  completed_at: string | null;
  omitted_fields?: string[];
  ratings?: { count: number; average: number | null };
}

export interface Rating {
  request_id: string;
  response_id: string | null;
  user_id: string;
  rating: number;
  comment: string | null;
  rated_at: string;
}

export interface Persona {
  id: string;
  name: string;
  content: string;
  description: string | null;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface PersonaVersion {
  version: number;
  content: string;
  created_at: string;
  [k: string]: unknown;
}

export interface PersonaAnalytics {
  persona_id: string;
  name: string;
  period: { from: string; to: string };
  requests: number;
  users: number;
  sessions: number;
  errors: number;
  tokens: { input: number; output: number; total: number };
  cost: number;
  latency_ms: { avg: number | null; p50: number | null; p95: number | null };
  ratings: { count: number; average: number | null; distribution: Record<string, number> };
  analysis: Record<string, Record<string, number>>;
  by_version: { version: number | null; requests: number; average_rating: number | null; cost: number; analysis?: Record<string, Record<string, number>> }[];
  daily: { date: string; requests: number; tokens: number; cost: number; average_rating: number | null }[];
}

export interface UsageRow {
  key: string;
  source: 'proxy' | 'analysis';
  requests: number;
  tokens: { input: number; output: number; total: number };
  cost: number;
  errors: number;
}

export interface AnalysisCategory {
  name: string;
  description?: string | null;
}

export interface AnalysisConfig {
  id: string;
  name: string;
  analysis_type: string;
  categories: AnalysisCategory[];
  instructions: string | null;
  model: string;
  include_metadata: boolean;
  created_at: string;
  updated_at: string;
}

export interface AnalysisResult {
  id: string;
  request_id: string;
  response_id: string | null;
  config_id: string | null;
  analysis_type: string;
  primary_category: string;
  confidence: number;
  reasoning: string;
  categories: { name: string; score: number; reasoning?: string }[];
  metadata: { sentiment?: string; urgency?: string; topics?: string[] } | null;
  model: string;
  usage: { input_tokens: number; output_tokens: number; total_tokens: number };
  cost: number | null;
  cached: boolean;
  created_at: string;
}

export interface LimitsView {
  id: string;
  external_id?: string;
  limits: { rpm: number | null; tpm: number | null; daily_budget_usd: number | null; monthly_budget_usd: number | null };
  usage: { requests_this_minute: number | null; tokens_this_minute: number | null; cost_today_usd: number | null; cost_this_month_usd: number | null };
  resets_at: { minute: string; day: string; month: string };
}

export interface Limits {
  object: 'limits';
  organization: LimitsView;
  user: LimitsView;
}
