import { SetMetadata } from '@nestjs/common';

export const IS_PUBLIC = 'isPublic';
/** Opts a route out of the JWT and X-User-ID guards (health, metrics, docs). */
export const Public = () => SetMetadata(IS_PUBLIC, true);
