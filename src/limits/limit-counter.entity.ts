import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * A limit counter for one window (requests or tokens of a minute, cost of a day or month), used when no Redis is
 * configured or while it is unreachable. Written only with atomic upserts (see PgCounterStore).
 */
@Entity('limit_counters')
@Index('ix_limit_counters_expires', ['expiresAt'])
export class LimitCounterEntity {
  @PrimaryColumn({ type: 'text' })
  key: string;

  @Column({ type: 'double precision', default: 0 })
  value: number;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt: Date;
}
