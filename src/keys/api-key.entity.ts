import { Column, CreateDateColumn, Entity, Index, PrimaryColumn } from 'typeorm';

/** An upstream API key: organization-wide (user_id null) or for one user. The secret is stored encrypted only. */
@Entity('api_keys')
@Index('ix_api_keys_org_user', ['organizationId', 'userId'])
export class ApiKeyEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @Column({ name: 'user_id', type: 'uuid', nullable: true })
  userId: string | null;

  @Column({ type: 'text', nullable: true })
  label: string | null;

  @Column({ name: 'base_url', type: 'text', nullable: true })
  baseUrl: string | null;

  @Column({ type: 'text' })
  last4: string;

  /** version byte | 12-byte nonce | 16-byte GCM tag | ciphertext */
  @Column({ name: 'encrypted_key', type: 'bytea' })
  encryptedKey: Buffer;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
