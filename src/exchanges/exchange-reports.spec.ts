import { describe, expect, it } from 'vitest';
import { parseUsageRows } from './exchange-reports';

describe('parseUsageRows', () => {
  it('gives back the numbers PostgreSQL printed, a null key and both sources', () => {
    expect(
      parseUsageRows('[["alice \\"a\\" smith", true, 3, 300, 4, 304, 4.7218800000000005e-05, 1], [null, false, 1, 1e+16, 0, 1e+16, 0, 0]]'),
    ).toEqual([
      { key: 'alice "a" smith', source: 'proxy', requests: 3, input_tokens: 300, output_tokens: 4, total_tokens: 304, cost: 0.000047218800000000005, errors: 1 },
      { key: null, source: 'analysis', requests: 1, input_tokens: 1e16, output_tokens: 0, total_tokens: 1e16, cost: 0, errors: 0 },
    ]);
  });

  it('reads a number that is not finite as the driver did, and no rows as an empty list', () => {
    expect(parseUsageRows('[["k", true, 1, "Infinity", 0, 0, "NaN", 0]]')[0]).toMatchObject({ input_tokens: Infinity, cost: NaN });
    expect(parseUsageRows(null)).toEqual([]);
  });
});
