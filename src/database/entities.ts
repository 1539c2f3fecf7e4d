import { AnalysisClaimEntity } from '../analysis/analysis-claim.entity';
import { AnalysisConfigEntity } from '../analysis/analysis-config.entity';
import { AnalysisResultEntity } from '../analysis/analysis-result.entity';
import { IssuedTokenEntity } from '../auth/issued-token.entity';
import { OrganizationEntity } from '../auth/organization.entity';
import { RevokedTokenEntity } from '../auth/revoked-token.entity';
import { UserEntity } from '../auth/user.entity';
import { ApiKeyEntity } from '../keys/api-key.entity';
import { LimitCounterEntity } from '../limits/limit-counter.entity';
import { LimitEntity } from '../limits/limit.entity';
import { PersonaVersionEntity } from '../personas/persona-version.entity';
import { PersonaEntity } from '../personas/persona.entity';
import { ExchangeEntity } from '../exchanges/exchange.entity';
import { RatingEntity } from '../ratings/rating.entity';
import { CacheInvalidationEntity } from './cache-invalidation.entity';

export const ENTITIES = [
  OrganizationEntity,
  UserEntity,
  RevokedTokenEntity,
  IssuedTokenEntity,
  ApiKeyEntity,
  CacheInvalidationEntity,
  ExchangeEntity,
  PersonaEntity,
  PersonaVersionEntity,
  RatingEntity,
  AnalysisConfigEntity,
  AnalysisResultEntity,
  LimitEntity,
  LimitCounterEntity,
  AnalysisClaimEntity,
];
