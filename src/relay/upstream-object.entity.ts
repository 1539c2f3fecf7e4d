import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** An upstream object made through the proxy: who made it, and with which key (object affinity and ownership). */
@Entity('upstream_objects')
@Index('ix_upstream_objects_org_created', ['organizationId', 'createdAt'])
export class UpstreamObjectEntity {
  /** OpenAI's id: `file-…`, `batch_…`, `vs_…`, `conv_…`, … */
  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  /** the user who made it with their own key (reachable by that user only); null: made with an organization key */
  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ name: 'key_id', type: 'uuid' })
  keyId: string;

  /** the route template of the call that made it */
  @Column({ type: 'text' })
  route: string;

  @Column({ name: 'exchange_id', type: 'text' })
  exchangeId: string;

  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' })
  createdAt: Date;

  /** deleted upstream through the proxy (the row stays: the id still belongs to its owner) */
  @Column({ name: 'deleted_at', type: 'timestamptz', nullable: true })
  deletedAt: Date | null;
}
