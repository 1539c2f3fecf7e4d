import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import { BIGINT_AS_NUMBER } from '../database/bigint-column';

export type AnalysisStatus = 'completed' | 'failed';

/**
 * One analysis of one exchange; also the cache (by organization and cache_key) and the usage record of the analysis call.
 * An analysis whose answers did not fit the schema is stored as `failed` (no result, never a cache hit, never listed):
 * its upstream attempts were billed, and budgets and usage analytics count them like any other call.
 */
@Entity('analysis_results')
@Index('ix_analysis_results_cache', ['organizationId', 'cacheKey', 'createdAt'])
@Index('ix_analysis_results_exchange', ['organizationId', 'exchangeId', 'createdAt'])
@Index('ix_analysis_results_persona', ['personaId', 'createdAt'])
@Index('ix_analysis_results_response', ['organizationId', 'responseId', 'createdAt'], { where: `response_id IS NOT NULL` })
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

  @Column({ type: 'text', default: 'completed' })
  status: AnalysisStatus;

  /** why a failed analysis failed */
  @Column({ type: 'text', nullable: true })
  error: string | null;

  // the result: null when the analysis failed
  @Column({ name: 'primary_category', type: 'text', nullable: true })
  primaryCategory: string | null;

  @Column({ type: 'double precision', nullable: true })
  confidence: number | null;

  @Column({ type: 'text', nullable: true })
  reasoning: string | null;

  @Column({ type: 'jsonb', nullable: true })
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
