import { InitialSchema1795488166900 } from '../../migrations/1795488166900-InitialSchema';

/** Every migration, in order (listed explicitly, never globbed). */
export const MIGRATIONS = [InitialSchema1795488166900];
