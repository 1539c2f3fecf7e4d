import { ApiProperty } from '@nestjs/swagger';
import { ApiObject } from '../common/api-docs';
import type { ErasedRows } from './end-user-data.repository';
import type { ErasureReceipt } from './end-users.service';

@ApiObject('ErasedRows')
export class ErasedRowsResponse implements ErasedRows {
  @ApiProperty({ description: 'user records (several when the same X-User-ID was deleted and seen again)' })
  users!: number;

  @ApiProperty({ description: 'exchanges the user made, with their request and response bodies' })
  exchanges!: number;

  @ApiProperty({ description: "ratings the user gave, and ratings of the user's exchanges" })
  ratings!: number;

  @ApiProperty({ description: "analyses of the user's exchanges (their cached results included)" })
  analyses!: number;

  @ApiProperty({ description: 'claims on analyses being run of their exchanges' })
  analysis_claims!: number;

  @ApiProperty({ description: "the user's own upstream keys" })
  keys!: number;

  @ApiProperty({ description: "the user's limits" })
  limits!: number;

  @ApiProperty({ description: "the user's limit counters (PostgreSQL and Redis)" })
  limit_counters!: number;

  @ApiProperty({ description: 'tokens issued pinned to the user: revoked, and their record deleted' })
  tokens!: number;

  @ApiProperty({ description: 'upstream objects (files, responses, …) the user made through the proxy: the record of them' })
  upstream_objects!: number;

  @ApiProperty({ description: 'audit events that held the external id: it was replaced by the internal id' })
  audit_events_scrubbed!: number;

  @ApiProperty({ description: "daily usage rollups of the user's deleted exchanges: merged into the organization's, without a user" })
  usage_rollups!: number;
}

@ApiObject('UserErasure')
export class ErasureReceiptResponse implements ErasureReceipt {
  @ApiProperty({ enum: ['user.erasure'] })
  object!: 'user.erasure';

  @ApiProperty({ description: 'the external id the erasure was asked for' })
  user_id!: string;

  @ApiProperty({ type: ErasedRowsResponse })
  erased!: ErasedRowsResponse;

  @ApiProperty({ format: 'date-time' })
  erased_at!: string;
}
