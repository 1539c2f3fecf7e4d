import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export interface AnalysisCategory {
  name: string;
  description?: string | null;
}

@Entity('analysis_configs')
@Index('ix_analysis_configs_org', ['organizationId', 'createdAt'])
export class AnalysisConfigEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ type: 'text' })
  name: string;

  @Column({ name: 'analysis_type', type: 'text' })
  analysisType: string;

  @Column({ type: 'jsonb' })
  categories: AnalysisCategory[];

  @Column({ type: 'text', nullable: true })
  instructions: string | null;

  @Column({ type: 'text' })
  model: string;

  @Column({ name: 'include_metadata', type: 'boolean', default: false })
  includeMetadata: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  @Column({ name: 'deleted_at', type: 'timestamptz', nullable: true })
  deletedAt: Date | null;
}
