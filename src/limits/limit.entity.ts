import { Column, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/** The limits of an organization (user_id null) or of one user; a null column means "no limit of that kind". */
@Entity('limits')
@Index('uq_limits_organization', ['organizationId'], { unique: true, where: 'user_id IS NULL' })
@Index('uq_limits_user', ['userId'], { unique: true, where: 'user_id IS NOT NULL' })
export class LimitEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ type: 'integer', nullable: true })
  rpm: number | null;

  @Column({ type: 'integer', nullable: true })
  tpm: number | null;

  @Column({ name: 'daily_budget_usd', type: 'double precision', nullable: true })
  dailyBudgetUsd: number | null;

  @Column({ name: 'monthly_budget_usd', type: 'double precision', nullable: true })
  monthlyBudgetUsd: number | null;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
