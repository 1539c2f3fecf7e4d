import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * An analysis being run: the one process that holds the row for an (organization, cache key) calls the model, and
 * identical analyses elsewhere wait for its result. The lease is renewed while the call runs; a row whose lease ran
 * out (its holder died) may be taken over.
 */
@Entity('analysis_claims')
export class AnalysisClaimEntity {
  @PrimaryColumn({ name: 'organization_id', type: 'uuid' })
  organizationId: string;

  @PrimaryColumn({ name: 'cache_key', type: 'text' })
  cacheKey: string;

  /** a token of the claim, so only its holder renews or releases it */
  @Column({ type: 'uuid' })
  holder: string;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt: Date;
}
