import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

@Entity('revoked_tokens')
export class RevokedTokenEntity {
  @PrimaryColumn({ type: 'text' })
  jti: string;

  @CreateDateColumn({ name: 'revoked_at', type: 'timestamptz' })
  revokedAt: Date;
}
