import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { BIGINT_AS_NUMBER } from '../database/bigint-column';

/** One proxied call (or a failed attempt at one), stored under its req_ id. */
@Entity('exchanges')
@Index('ix_exchanges_org_created', ['organizationId', 'createdAt'])
@Index('ix_exchanges_org_session', ['organizationId', 'sessionId', 'createdAt'])
@Index('ix_exchanges_response', ['responseId'], { where: `response_id IS NOT NULL` })
@Index('ix_exchanges_pending', ['status'], { where: `status = 'pending'` })
@Index('ix_exchanges_queued', ['createdAt'], { where: `status = 'queued'` })
export class ExchangeEntity {
  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId: string;

  /** the X-User-ID value, kept beside the internal id so reads need no join */
  @Column({ name: 'external_user_id', type: 'text' })
  externalUserId: string;

  @Column({ name: 'session_id', type: 'text' })
  sessionId: string;

  @Column({ name: 'persona_id', type: 'uuid', nullable: true })
  personaId: string | null;

  @Column({ name: 'persona_version', type: 'integer', nullable: true })
  personaVersion: number | null;

  @Column({ type: 'text' })
  endpoint: string;

  @Column({ type: 'text', nullable: true })
  model: string | null;

  @Column({ type: 'boolean', default: false })
  stream: boolean;

  @Column({ type: 'text' })
  status: string;

  @Column({ name: 'upstream_status', type: 'integer', nullable: true })
  upstreamStatus: number | null;

  @Column({ name: 'response_id', type: 'text', nullable: true })
  responseId: string | null;

  @Column({ name: 'request_body', type: 'jsonb', nullable: true })
  requestBody: unknown;

  @Column({ name: 'response_body', type: 'jsonb', nullable: true })
  responseBody: unknown;

  @Column({ name: 'output_text', type: 'text', nullable: true })
  outputText: string | null;

  @Column({ type: 'jsonb', nullable: true })
  error: unknown;

  /** what was stored of it: full, redacted (personal data replaced) or metadata (no bodies or text) */
  @Column({ name: 'capture_mode', type: 'text', default: 'full' })
  captureMode: string;

  @Column({ name: 'input_tokens', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  inputTokens: number | null;

  @Column({ name: 'output_tokens', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  outputTokens: number | null;

  @Column({ name: 'total_tokens', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  totalTokens: number | null;

  @Column({ name: 'cached_tokens', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  cachedTokens: number | null;

  @Column({ name: 'reasoning_tokens', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  reasoningTokens: number | null;

  @Column({ type: 'double precision', nullable: true })
  cost: number | null;

  @Column({ name: 'latency_ms', type: 'integer', nullable: true })
  latencyMs: number | null;

  @Column({ name: 'time_to_first_byte_ms', type: 'integer', nullable: true })
  timeToFirstByteMs: number | null;

  @Column({ name: 'key_id', type: 'uuid', nullable: true })
  keyId: string | null;

  @Column({ name: 'key_source', type: 'text', nullable: true })
  keySource: string | null;

  /** the server process that wrote the row; a pending row of a process that is gone is marked interrupted */
  @Column({ name: 'instance_id', type: 'text', nullable: true })
  instanceId: string | null;

  /** the HTTP method and the OpenAI route template of the call, e.g. `GET /v1/files/{file_id}` */
  @Column({ type: 'text', nullable: true })
  method: string | null;

  @Column({ type: 'text', nullable: true })
  route: string | null;

  /** OpenAI's own request id (its `x-request-id` answer header) */
  @Column({ name: 'upstream_request_id', type: 'text', nullable: true })
  upstreamRequestId: string | null;

  /** the upstream object the call made or named (`file-…`, `batch_…`, `vs_…`, …) */
  @Column({ name: 'object_id', type: 'text', nullable: true })
  objectId: string | null;

  /** a body that is not stored (binary, multipart) is described by its type and size */
  @Column({ name: 'request_content_type', type: 'text', nullable: true })
  requestContentType: string | null;

  @Column({ name: 'request_bytes', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  requestBytes: number | null;

  @Column({ name: 'response_content_type', type: 'text', nullable: true })
  responseContentType: string | null;

  @Column({ name: 'response_bytes', type: 'bigint', nullable: true, transformer: BIGINT_AS_NUMBER })
  responseBytes: number | null;

  /** a stored body was longer than RECORD_BODY_MAX: what is stored is its beginning, as a JSON string */
  @Column({ name: 'body_truncated', type: 'boolean', nullable: true })
  bodyTruncated: boolean | null;

  /** the response this exchange returned was deleted upstream through the proxy (the record stays) */
  @Column({ name: 'upstream_deleted_at', type: 'timestamptz', nullable: true })
  upstreamDeletedAt: Date | null;

  /** a queued background response: the process following it upstream, and until when its lease runs */
  @Column({ name: 'follow_owner', type: 'text', nullable: true, select: false })
  followOwner: string | null;

  @Column({ name: 'follow_until', type: 'timestamptz', nullable: true, select: false })
  followUntil: Date | null;

  /** part of the key: the table is partitioned by month of created_at (migration PartitionExchanges) */
  @PrimaryColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Column({ name: 'completed_at', type: 'timestamptz', nullable: true })
  completedAt: Date | null;
}
