import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** One rating per exchange per user; rating again replaces it. */
@Entity('ratings')
@Index('uq_ratings_exchange_user', ['exchangeId', 'userId'], { unique: true })
@Index('ix_ratings_org_persona', ['organizationId', 'personaId', 'ratedAt'])
export class RatingEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ name: 'exchange_id', type: 'text' })
  exchangeId: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId: string;

  @Column({ name: 'persona_id', type: 'uuid', nullable: true })
  personaId: string | null;

  @Column({ type: 'smallint' })
  rating: number;

  @Column({ type: 'text', nullable: true })
  comment: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Column({ name: 'rated_at', type: 'timestamptz' })
  ratedAt: Date;
}
