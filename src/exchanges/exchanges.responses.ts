import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ApiObject, ListOf } from '../common/api-docs';
import { BODY_FIELDS, type BodyField } from './exchanges.repository';
import type { ExchangeView } from './exchanges.service';

const nullable = (type: 'string' | 'integer' | 'number', description?: string, example?: unknown) => ({ type, nullable: true, description, example });
const json = (description: string) => ({ type: 'object' as const, additionalProperties: true, nullable: true, description });

@ApiObject('ExchangeUsage')
class ExchangeUsageResponse {
  @ApiProperty(nullable('integer', undefined, 9))
  input_tokens!: number | null;

  @ApiProperty(nullable('integer', undefined, 2))
  output_tokens!: number | null;

  @ApiProperty(nullable('integer', undefined, 11))
  total_tokens!: number | null;

  @ApiProperty(nullable('integer', undefined, 0))
  cached_tokens!: number | null;

  @ApiProperty(nullable('integer', undefined, 0))
  reasoning_tokens!: number | null;
}

@ApiObject('ExchangeRatings')
class ExchangeRatingsResponse {
  @ApiProperty({ type: 'integer', example: 1 })
  count!: number;

  @ApiProperty(nullable('number', 'null when the exchange has no rating', 5))
  average!: number | null;
}

@ApiObject('Exchange', { description: 'A proxied call as stored under its req_ id' })
export class ExchangeResponse implements ExchangeView {
  @ApiProperty({ example: 'req_Xw3v0mQ2bq9Hn1sYtZcA4eLk', description: 'the X-Request-ID the call answered with' })
  id!: string;

  @ApiProperty({ enum: ['exchange'], example: 'exchange' })
  object!: 'exchange';

  @ApiProperty(nullable('string', 'the upstream response or completion id', 'resp_67ccd2bed1ec8190b14f964abc054267'))
  response_id!: string | null;

  @ApiProperty({ example: 'session_Jr8Kq2Lm4Np6Qs8Tu0Vw2Xy4' })
  session_id!: string;

  @ApiProperty({ example: 'user@example.com', description: 'the X-User-ID value' })
  user_id!: string;

  @ApiProperty({ type: String, format: 'uuid', nullable: true, example: null })
  persona_id!: string | null;

  @ApiProperty(nullable('integer', undefined, null))
  persona_version!: number | null;

  @ApiProperty({ example: 'responses', description: 'responses or chat.completions' })
  endpoint!: string;

  @ApiProperty(nullable('string', 'the model the client asked for', 'gpt-4o-mini'))
  model!: string | null;

  @ApiProperty({ example: false })
  stream!: boolean;

  @ApiProperty({
    example: 'completed',
    description: 'completed, failed, client_aborted, upstream_error, upstream_timeout, interrupted or pending',
  })
  status!: string;

  @ApiProperty(nullable('integer', undefined, 200))
  upstream_status!: number | null;

  @ApiProperty({ type: ExchangeUsageResponse })
  usage!: ExchangeUsageResponse;

  @ApiProperty(nullable('number', 'USD; null when the model has no known price', 0.00000255))
  cost!: number | null;

  @ApiProperty(nullable('integer', undefined, 412))
  latency_ms!: number | null;

  @ApiProperty(nullable('integer', undefined, 405))
  time_to_first_byte_ms!: number | null;

  @ApiProperty({ type: String, format: 'uuid', nullable: true, description: 'the upstream key used (never the key itself)' })
  key_id!: string | null;

  @ApiProperty(nullable('string', 'user or organization', 'organization'))
  key_source!: string | null;

  @ApiProperty({
    nullable: true,
    description: 'keys of the pool left before the one that served the call, and why (rate_limited, invalid, error)',
    example: [{ key_id: '0b6f3c52-8a3e-4f4e-9d0c-1f3b5a7c9e21', outcome: 'rate_limited', status: 429 }],
  })
  key_attempts!: unknown;

  @ApiProperty(nullable('string', 'the HTTP method', 'POST'))
  method!: string | null;

  @ApiProperty(nullable('string', 'the OpenAI route template', '/v1/files/{file_id}'))
  route!: string | null;

  @ApiProperty(nullable('string', 'OpenAI’s own request id (its x-request-id)', 'req_0f5ac1e9b2d84c3f9e1a7b6c5d4e3f21'))
  upstream_request_id!: string | null;

  @ApiProperty(nullable('string', 'the upstream object the call made or named', 'file-AbC123'))
  object_id!: string | null;

  @ApiProperty(nullable('string', 'a request body that is not stored (binary, multipart): its content type', 'multipart/form-data'))
  request_content_type!: string | null;

  @ApiProperty(nullable('integer', 'that body’s size in bytes', 48213))
  request_bytes!: number | null;

  @ApiProperty(nullable('string', 'an answer body that is not stored (binary, audio): its content type', 'audio/mpeg'))
  response_content_type!: string | null;

  @ApiProperty(nullable('integer', 'that body’s size in bytes', 96000))
  response_bytes!: number | null;

  @ApiProperty({ type: Boolean, description: 'a stored body was longer than RECORD_BODY_MAX: its beginning is stored, as a JSON string', example: false })
  body_truncated!: boolean;

  @ApiProperty({
    enum: ['full', 'redacted', 'metadata'],
    description: 'what was stored of this exchange: bodies as sent, bodies with personal data replaced by placeholders, or no bodies or text',
    example: 'full',
  })
  capture_mode!: 'full' | 'redacted' | 'metadata';

  @ApiProperty({ type: String, format: 'date-time', nullable: true, description: 'the response this exchange returned was deleted upstream (DELETE /v1/responses/{id}); the record stays', example: null })
  upstream_deleted_at!: string | null;

  @ApiProperty(json('the JSON body sent upstream'))
  request_body!: unknown;

  @ApiProperty(json('the final response body (for a stream, the completed response or what arrived)'))
  response_body!: unknown;

  @ApiProperty(nullable('string', undefined, 'Hello!'))
  output_text!: string | null;

  @ApiProperty(json('the error the call ended with, in the shape of the OpenAI error object'))
  error!: unknown;

  @ApiProperty({ format: 'date-time', example: '2026-06-05T18:30:00.000Z' })
  created_at!: string;

  @ApiProperty({ type: String, format: 'date-time', nullable: true, example: '2026-06-05T18:30:00.412Z' })
  completed_at!: string | null;

  @ApiPropertyOptional({
    enum: BODY_FIELDS,
    isArray: true,
    description: 'in lists only: the body fields left out (null above) for their size; GET /v1/requests/{request_id} has them whole',
  })
  omitted_fields?: BodyField[];

  @ApiPropertyOptional({ type: ExchangeRatingsResponse, description: 'in lists only: the ratings the exchange has (every user\'s), their count and average' })
  ratings?: ExchangeRatingsResponse;
}

export const ExchangeList = ListOf(ExchangeResponse, 'ExchangeList');
