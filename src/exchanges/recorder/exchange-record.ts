/** What an exchange record holds: the row written before the upstream is called, and how the call ended. */

import type { ExchangeCapture } from '../../privacy/capture-mode';

export interface TokenUsage {
  input: number | null;
  output: number | null;
  total: number | null;
  cached: number | null;
  reasoning: number | null;
  /** counted by the proxy from what was sent and streamed (the upstream never reported usage: a cut stream) */
  estimated?: boolean;
}

/** How a stored exchange stands (`queued`: a background response the upstream has not finished). */
export const EXCHANGE_STATUSES = ['pending', 'completed', 'failed', 'upstream_error', 'upstream_timeout', 'client_aborted', 'interrupted', 'queued'] as const;
export type ExchangeStatus = (typeof EXCHANGE_STATUSES)[number];

/** The row written before the upstream is called. */
export interface PendingExchange {
  id: string;
  organizationId: string;
  userId: string;
  externalUserId: string;
  sessionId: string;
  personaId: string | null;
  personaVersion: number | null;
  endpoint: string;
  model: string | null;
  stream: boolean;
  /** the JSON text sent upstream, stored as jsonb without re-serializing it (null: not stored, see capture) */
  requestBody: string | null;
  keyId: string;
  keySource: string;
  createdAt: Date;
  /** the HTTP method and OpenAI route template (the model-call routes leave them to their endpoint) */
  method?: string;
  route?: string;
  /** a request body that is not stored (binary, multipart): its type (its size is known when the call ends) */
  requestContentType?: string | null;
  /** what of the exchange is stored when it is not everything (capture mode redacted or metadata); absent: full */
  capture?: ExchangeCapture;
}

/** A key of the pool left before the first byte, and why: rate limited (429), invalid (401), or failing (open circuit). */
export interface KeyAttempt {
  key_id: string;
  outcome: 'rate_limited' | 'invalid' | 'error';
  status: number | null;
}

/** How the exchange ended. */
export interface ExchangeOutcome {
  id: string;
  status: ExchangeStatus;
  upstreamStatus: number | null;
  responseId: string | null;
  /** JSON text (stored as is) or a value to serialize */
  responseBody: unknown;
  outputText: string | null;
  error: unknown;
  usage: TokenUsage | null;
  cost: number | null;
  latencyMs: number;
  timeToFirstByteMs: number | null;
  /** OpenAI's own request id */
  upstreamRequestId?: string | null;
  /** the upstream object made or named */
  objectId?: string | null;
  /** the size of a request body that is not stored */
  requestBytes?: number | null;
  /** an answer body that is not stored (binary, multipart): its type and size */
  responseContentType?: string | null;
  responseBytes?: number | null;
  /** a stored body was cut at RECORD_BODY_MAX */
  bodyTruncated?: boolean | null;
  /** what the pending row could not know yet (a multipart upload's model and fields, read while it streamed) */
  late?: { model?: string | null; requestBody?: string | null; keyId?: string; keySource?: string };
  /** keys of the pool left before the one that served the call */
  keyAttempts?: KeyAttempt[] | null;
}

/** The error stored with a call whose answer was withheld because its record could not be written. */
export const UNDELIVERED = {
  message: 'The answer was not delivered: the database was unavailable to record it',
  type: 'service_unavailable',
  code: 'database_unavailable',
  param: null,
};
