import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsString, Matches, MaxLength } from 'class-validator';
import { IsInstant } from '../common/dates';
import { OptionalParam, PageQueryDto } from '../common/pagination';
import type { AuditDetail } from './audit-event.entity';

export const ACTION_PATTERN = /^[a-z_]+(?:\.[a-z_]+)+$/;

export interface AuditEventView {
  id: string;
  object: 'audit_event';
  created_at: string;
  organization_id: string | null;
  actor: string;
  actor_user_id: string | null;
  action: string;
  target_id: string | null;
  details: Record<string, AuditDetail>;
}

export interface AuditQuery {
  /** null: every organization's events and the global ones (CLI only) */
  orgId: string | null;
  limit: number;
  after?: string;
  action?: string;
  from?: Date;
  to?: Date;
}

/** `GET /v1/audit`: a page of the organization's events, newest first. */
export class ListAuditQueryDto extends PageQueryDto {
  @ApiPropertyOptional({ description: 'only this action (`key.revoke`, `persona.update`, …)', example: 'key.revoke' })
  @OptionalParam()
  @IsString()
  @MaxLength(100)
  @Matches(ACTION_PATTERN, { message: 'action must look like key.revoke' })
  action?: string;

  @ApiPropertyOptional({ description: 'ISO-8601, inclusive; a time without a zone is UTC', example: '2026-06-01T00:00:00Z' })
  @OptionalParam()
  @IsInstant()
  from?: string;

  @ApiPropertyOptional({ description: 'ISO-8601, exclusive; a time without a zone is UTC', example: '2026-07-01T00:00:00Z' })
  @OptionalParam()
  @IsInstant()
  to?: string;
}

export const AUDIT_EVENT_EXAMPLE: AuditEventView = {
  id: '5a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b',
  object: 'audit_event',
  created_at: '2026-06-05T18:30:00.000Z',
  organization_id: '9b2f4c1e-5d3a-4f7b-8c6d-1e2f3a4b5c6d',
  actor: 'token:0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a',
  actor_user_id: '1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
  action: 'persona.update',
  target_id: '6f1c2a9e-3b7d-4e8f-9a0b-1c2d3e4f5a6b',
  details: { fields: ['content'], version: 2 },
};
