import type { ValueTransformer } from 'typeorm';

/** bigint columns are read as strings by the driver; counts stay within a number's exact range (see pgBigint) */
export const BIGINT_AS_NUMBER: ValueTransformer = {
  to: (v: unknown) => v,
  from: (v: unknown) => (v === null || v === undefined ? null : Number(v)),
};
