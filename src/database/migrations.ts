import { InitialSchema1795488166900 } from '../../migrations/1795488166900-InitialSchema';
import { AddAnalyticsIndexes1795490000000 } from '../../migrations/1795490000000-AddAnalyticsIndexes';
import { AddLimits1795500000000 } from '../../migrations/1795500000000-AddLimits';
import { DropPersonaCreatedIndex1795510000000 } from '../../migrations/1795510000000-DropPersonaCreatedIndex';
import { AddIssuedTokens1795777956120 } from '../../migrations/1795777956120-AddIssuedTokens';

/** Every migration, in order (listed explicitly, never globbed). */
export const MIGRATIONS = [InitialSchema1795488166900, AddAnalyticsIndexes1795490000000, AddLimits1795500000000, DropPersonaCreatedIndex1795510000000, AddIssuedTokens1795777956120];
