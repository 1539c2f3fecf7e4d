import { ApiProperty } from '@nestjs/swagger';
import { ApiObject, ListOf } from '../common/api-docs';
import type { AuditDetail } from './audit-event.entity';
import type { AuditEventView } from './audit.dto';

@ApiObject('AuditEvent')
export class AuditEventResponse implements AuditEventView {
  @ApiProperty({ format: 'uuid' })
  id!: string;

  @ApiProperty({ enum: ['audit_event'] })
  object!: 'audit_event';

  @ApiProperty({ format: 'date-time' })
  created_at!: string;

  @ApiProperty({ type: String, format: 'uuid', nullable: true, description: 'null for a change of no one organization' })
  organization_id!: string | null;

  @ApiProperty({ description: '`cli:<os user>` for the admin CLI, `token:<jti>` for an HTTP call', example: 'token:0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a' })
  actor!: string;

  @ApiProperty({ type: String, format: 'uuid', nullable: true, description: 'the internal id of the user an HTTP call acted as' })
  actor_user_id!: string | null;

  @ApiProperty({ example: 'persona.update' })
  action!: string;

  @ApiProperty({ type: String, nullable: true, description: 'the internal id (or jti) of what changed' })
  target_id!: string | null;

  @ApiProperty({ type: 'object', additionalProperties: true, description: 'ids, labels, counts and changed field names; never a secret or content' })
  details!: Record<string, AuditDetail>;
}

export class AuditEventList extends ListOf(AuditEventResponse, 'AuditEventList') {}
