import { Column, CreateDateColumn, Entity, Index, PrimaryColumn } from 'typeorm';

export type KeyState = 'active' | 'invalid';

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

  /** glob patterns of the models the key serves (`gpt-*`); null: every model */
  @Column({ type: 'text', array: true, nullable: true })
  models: string[] | null;

  /** its share of calls among keys of equal priority */
  @Column({ type: 'integer', default: 1 })
  weight: number;

  /** higher first */
  @Column({ type: 'integer', default: 0 })
  priority: number;

  /** invalid: refused upstream (401), not used again until enabled */
  @Column({ type: 'text', default: 'active' })
  state: KeyState;

  /** rate limited upstream: tried after every other key of its pool until then */
  @Column({ name: 'rest_until', type: 'timestamptz', nullable: true })
  restUntil: Date | null;

  /** the last upstream error that rested or invalidated it (scrubbed of the key) */
  @Column({ name: 'last_error', type: 'text', nullable: true })
  lastError: string | null;

  @Column({ name: 'invalid_at', type: 'timestamptz', nullable: true })
  invalidAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
