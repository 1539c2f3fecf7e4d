import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';
import type { CaptureMode } from './org-privacy';

@Entity('organizations')
export class OrganizationEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Index('uq_organizations_name', { unique: true })
  @Column({ type: 'text' })
  name: string;

  @Column({ name: 'disabled_at', type: 'timestamptz', nullable: true })
  disabledAt: Date | null;

  @Column({ name: 'capture_mode', type: 'text', default: 'full' })
  captureMode: CaptureMode;

  @Column({ name: 'content_retention_days', type: 'integer', nullable: true })
  contentRetentionDays: number | null;

  @Column({ name: 'retention_days', type: 'integer', nullable: true })
  retentionDays: number | null;

  @Column({ name: 'safety_identifier', type: 'boolean', default: false })
  safetyIdentifier: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
