import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A token `jwt create` issued: its claims that matter to an operator, never the token itself. */
@Entity('issued_tokens')
@Index('ix_issued_tokens_org_issued', ['organizationId', 'issuedAt'])
export class IssuedTokenEntity {
  @PrimaryColumn({ type: 'text' })
  jti: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  /** the external user id the token pins (its user_id claim), if any */
  @Column({ name: 'user_id', type: 'text', nullable: true })
  userId: string | null;

  /** its scope claim, or null for the default rights */
  @Column({ name: 'scope', type: 'text', nullable: true })
  scope: string | null;

  @Column({ name: 'issued_at', type: 'timestamptz' })
  issuedAt: Date;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt: Date;
}
