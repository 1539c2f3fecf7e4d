import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/**
 * A change that cached copies in every server process must drop (read on NOTIFY, and on a short timer as a backstop).
 * Rows are read by the transaction that wrote them (`tx`, see ChangeFeedService) and pruned by age (`created_at`).
 */
@Entity('cache_invalidations')
@Index('ix_cache_invalidations_tx', ['tx'])
@Index('ix_cache_invalidations_created', ['createdAt'])
export class CacheInvalidationEntity {
  @PrimaryGeneratedColumn('increment', { type: 'bigint' })
  id: string;

  @Column({ type: 'text' })
  kind: string;

  @Column({ type: 'text' })
  ref: string;

  /** the writing transaction's full (epoch-extended, never wrapping) id */
  @Column({ type: 'bigint', default: () => 'pg_current_xact_id()::text::bigint' })
  tx: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
