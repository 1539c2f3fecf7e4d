import { describe, expect, it } from 'vitest';
import { parseUsageRows } from './exchange-reports';

describe('parseUsageRows', () => {
  it('gives back the numbers PostgreSQL printed, a null key and both sources', () => {
    expect(
      parseUsageRows([
        { key: 'alice smith', n: 'p 3 300 4 304 4.7218800000000005e-05 1' },
        { key: null, n: 'a 1 1e+16 0 1e+16 0 0' },
      ]),
    ).toEqual([
      { key: 'alice smith', source: 'proxy', requests: 3, input_tokens: 300, output_tokens: 4, total_tokens: 304, cost: 0.000047218800000000005, errors: 1 },
      { key: null, source: 'analysis', requests: 1, input_tokens: 1e16, output_tokens: 0, total_tokens: 1e16, cost: 0, errors: 0 },
    ]);
  });

  it('refuses a row of another shape', () => {
    expect(() => parseUsageRows([{ key: 'k', n: 'p 1 2 3' }])).toThrow(/unexpected usage row/);
  });
});
