import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { USAGE_ROW_JSON } from '../../src/exchanges/exchange-reports';
import { MediumDatabase, openMediumDatabase } from './recorder-harness';

let database: MediumDatabase;
beforeAll(async () => {
  database = await openMediumDatabase();
});
afterAll(async () => {
  await database?.close();
});

interface Grouped {
  key: string | null;
  source: 'proxy' | 'analysis';
  requests: number;
  tokens: [number, number, number];
  cost: number | string;
  errors: number;
}

/** What the API answered when it made the rows itself: the numbers as read, cost by Math.round, printed by JSON.stringify. */
function asTheProcessPrintedIt(r: Grouped, decimals: number): unknown {
  const scale = 10 ** decimals;
  return JSON.parse(
    JSON.stringify({
      key: r.key,
      source: r.source,
      requests: r.requests,
      tokens: { input: Number(r.tokens[0]), output: Number(r.tokens[1]), total: Number(r.tokens[2]) },
      cost: Math.round(Number(r.cost) * scale) / scale,
      errors: r.errors,
    }),
  );
}

/** The rows as the database prints them with USAGE_ROW_JSON, in order, as one JSON array. */
async function printed(rows: Grouped[], decimals: number): Promise<string> {
  const col = (f: (r: Grouped) => unknown) => rows.map((r) => (f(r) === null ? null : String(f(r))));
  const out = await database.dataSource.query(
    `SELECT '[' || coalesce(string_agg(${USAGE_ROW_JSON('g', '$1::float8')}, ',' ORDER BY g.n), '') || ']' AS json
       FROM unnest($2::text[], $3::text[], $4::int[], $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::int[])
            WITH ORDINALITY g(key, source, requests, input_tokens, output_tokens, total_tokens, cost, errors, n)`,
    [
      10 ** decimals,
      col((r) => r.key),
      col((r) => r.source),
      col((r) => r.requests),
      col((r) => r.tokens[0]),
      col((r) => r.tokens[1]),
      col((r) => r.tokens[2]),
      col((r) => r.cost),
      col((r) => r.errors),
    ],
  );
  return out[0].json;
}

const ROWS: Grouped[] = [
  // a key JSON must escape: quotes, a backslash, control characters, a script end tag, characters outside ASCII
  { key: 'alice "a" \\ smith\n\t\u0001\u001f </script> ü 😀 \u2028', source: 'proxy', requests: 3, tokens: [300, 4, 304], cost: 0.0000472188, errors: 1 },
  { key: null, source: 'analysis', requests: 1, tokens: [1e16, 0, 1e16], cost: 0, errors: 0 },
  { key: 'exact-halves', source: 'proxy', requests: 2, tokens: [1, 2, 3], cost: 0.0000025, errors: 0 },
  { key: 'negative', source: 'proxy', requests: 1, tokens: [0, 0, 0], cost: -0.0000025, errors: 1 },
  { key: 'tiny', source: 'analysis', requests: 1, tokens: [2 ** 53 - 1, 1, 2 ** 53], cost: 1.23456789e-7, errors: 0 },
  { key: 'large', source: 'proxy', requests: 2147483647, tokens: [123456789012, 0.5, 1e21], cost: 12345.678901234567, errors: 7 },
  { key: 'tenths', source: 'proxy', requests: 10, tokens: [0, 0, 0], cost: 0.1 + 0.2, errors: 0 },
  { key: 'above the exponent bound', source: 'proxy', requests: 1, tokens: [0, 0, 0], cost: 2.5e15, errors: 0 },
  { key: 'below it', source: 'proxy', requests: 1, tokens: [0, 0, 0], cost: 0.00009999, errors: 0 },
  // a cost JSON cannot hold (a float8 column can): the object answer printed it as null
  { key: 'not a number', source: 'proxy', requests: 1, tokens: [0, 0, 0], cost: 'NaN', errors: 0 },
  { key: 'infinite cost', source: 'analysis', requests: 1, tokens: [0, 0, 0], cost: 'Infinity', errors: 0 },
  { key: 'negative infinite cost', source: 'analysis', requests: 1, tokens: [0, 0, 0], cost: '-Infinity', errors: 0 },
];

describe('usage rows printed by the database (USAGE_ROW_JSON)', () => {
  it.each([6, 2, 0, 9])('answers what the process printed, numbers and all, with %i money decimals', async (decimals) => {
    const json = await printed(ROWS, decimals);
    expect(JSON.parse(json)).toEqual(ROWS.map((r) => asTheProcessPrintedIt(r, decimals)));
  });

  it('prints the keys in the order of the API object, and no rows as an empty array', async () => {
    const [row] = JSON.parse(await printed([ROWS[0]], 6));
    expect(Object.keys(row)).toEqual(['key', 'source', 'requests', 'tokens', 'cost', 'errors']);
    expect(Object.keys(row.tokens)).toEqual(['input', 'output', 'total']);
    expect(await printed([], 6)).toBe('[]');
  });

  it('prints money in decimals, never with an exponent', async () => {
    const json = await printed([0.0000033, 1.5, 1e-7, 20, -0.00002, 123456789.0000001].map((cost) => ({ ...ROWS[2], cost })), 7);
    expect(json.match(/"cost":[^,]*/g)).toEqual(['"cost":0.0000033', '"cost":1.5', '"cost":0.0000001', '"cost":20', '"cost":-0.00002', '"cost":123456789.0000001']);
  });
});
