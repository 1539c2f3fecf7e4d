import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** A detail value: ids, labels, counts, flags and lists of field names; never a secret or content. */
export type AuditDetail = string | number | boolean | null | string[];

/** One administrative change: who did what to which id. Never a secret or content (see AuditService.record). */
@Entity('audit_events')
@Index('ix_audit_events_org_created', ['organizationId', 'createdAt', 'id'])
@Index('ix_audit_events_created', ['createdAt', 'id'])
export class AuditEventEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  /** clock_timestamp(): events of one transaction keep the order they were written in */
  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'clock_timestamp()' })
  createdAt: Date;

  /** null for a change of no one organization (`key rotate-master`) */
  @Column({ name: 'organization_id', type: 'uuid', nullable: true })
  organizationId: string | null;

  /** `cli:<os user>` or `token:<jti>` */
  @Column({ type: 'text' })
  actor: string;

  /** the internal id of the user an HTTP call acted as */
  @Column({ name: 'actor_user_id', type: 'uuid', nullable: true })
  actorUserId: string | null;

  /** `<object>.<verb>`: `key.revoke`, `org.disable`, … */
  @Column({ type: 'text' })
  action: string;

  /** the internal id (or jti) of what was changed */
  @Column({ name: 'target_id', type: 'text', nullable: true })
  targetId: string | null;

  @Column({ type: 'jsonb', default: () => `'{}'` })
  details: Record<string, AuditDetail>;
}
