import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { BIGINT_AS_NUMBER } from '../database/bigint-column';

/** One analysis of one exchange; also the cache (by organization and cache_key) and the usage record of the analysis call. */
@Entity('analysis_results')
@Index('ix_analysis_results_cache', ['organizationId', 'cacheKey', 'createdAt'])
@Index('ix_analysis_results_exchange', ['organizationId', 'exchangeId', 'createdAt'])
@Index('ix_analysis_results_persona', ['personaId', 'createdAt'])
export class AnalysisResultEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ name: 'exchange_id', type: 'text' })
  exchangeId: string;

  @Column({ name: 'response_id', type: 'text', nullable: true })
  responseId: string | null;

  @Column({ name: 'config_id', type: 'uuid', nullable: true })
  configId: string | null;

  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ name: 'persona_id', type: 'uuid', nullable: true })
  personaId: string | null;

  @Column({ name: 'cache_key', type: 'text' })
  cacheKey: string;

  @Column({ name: 'analysis_type', type: 'text' })
  analysisType: string;

  @Column({ name: 'primary_category', type: 'text' })
  primaryCategory: string;

  @Column({ type: 'double precision' })
  confidence: number;

  @Column({ type: 'text' })
  reasoning: string;

  @Column({ type: 'jsonb' })
  categories: unknown;

  @Column({ type: 'jsonb', nullable: true })
  metadata: unknown;

  @Column({ type: 'text' })
  model: string;

  @Column({ name: 'input_tokens', type: 'bigint', default: 0, transformer: BIGINT_AS_NUMBER })
  inputTokens: number;

  @Column({ name: 'output_tokens', type: 'bigint', default: 0, transformer: BIGINT_AS_NUMBER })
  outputTokens: number;

  @Column({ name: 'total_tokens', type: 'bigint', default: 0, transformer: BIGINT_AS_NUMBER })
  totalTokens: number;

  @Column({ type: 'double precision', nullable: true })
  cost: number | null;

  @Column({ name: 'key_id', type: 'uuid', nullable: true })
  keyId: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
