export interface TokenTotals {
  input: number;
  output: number;
  total: number;
}

export type RatingDistribution = Record<'1' | '2' | '3' | '4' | '5', number>;

export interface PersonaAnalyticsDto {
  persona_id: string;
  name: string;
  period: { from: string; to: string };
  requests: number;
  users: number;
  sessions: number;
  errors: number;
  tokens: TokenTotals;
  cost: number;
  latency_ms: { avg: number | null; p50: number | null; p95: number | null };
  ratings: { count: number; average: number | null; distribution: RatingDistribution };
  /** analysis_type → primary_category → number of analysed exchanges */
  analysis: Record<string, Record<string, number>>;
  by_version: {
    version: number | null;
    requests: number;
    average_rating: number | null;
    cost: number;
    /** analysis_type → primary_category → number of analysed exchanges of this version */
    analysis: Record<string, Record<string, number>>;
  }[];
  daily: { date: string; requests: number; tokens: number; cost: number; average_rating: number | null }[];
}

export interface UsageRowDto {
  key: string | null;
  source: 'proxy' | 'analysis';
  requests: number;
  tokens: TokenTotals;
  cost: number;
  errors: number;
}

export interface UsageListDto {
  object: 'list';
  data: UsageRowDto[];
  /** more keys follow (only a page asked for with `limit` or `after` can have more) */
  has_more: boolean;
  /** the first and the last row's key: `last_id` is the cursor of the next page */
  first_id: string | null;
  last_id: string | null;
}

export const PERSONA_ANALYTICS_EXAMPLE: PersonaAnalyticsDto = {
  persona_id: '3f1c2a9e-8a47-4d7e-9b55-0c1f2e3d4a5b',
  name: 'Support agent',
  period: { from: '2026-05-06T18:30:00.000Z', to: '2026-06-05T18:30:00.000Z' },
  requests: 1200,
  users: 85,
  sessions: 310,
  errors: 12,
  tokens: { input: 480000, output: 210000, total: 690000 },
  cost: 0.198,
  latency_ms: { avg: 812.4, p50: 640, p95: 2110 },
  ratings: { count: 240, average: 4.2, distribution: { '1': 6, '2': 10, '3': 24, '4': 70, '5': 130 } },
  analysis: { intent: { technical_support: 90, billing: 40 }, sentiment: { positive: 70, frustrated: 12 } },
  by_version: [
    { version: 1, requests: 700, average_rating: 4.0, cost: 0.11, analysis: { intent: { technical_support: 60, billing: 25 } } },
    { version: 2, requests: 500, average_rating: 4.5, cost: 0.088, analysis: { intent: { technical_support: 30, billing: 15 } } },
  ],
  daily: [{ date: '2026-06-05', requests: 40, tokens: 23000, cost: 0.0066, average_rating: 4.3 }],
};

export const USAGE_EXAMPLE: UsageListDto = {
  object: 'list',
  data: [
    { key: '2026-06-05', source: 'proxy', requests: 420, tokens: { input: 160000, output: 70000, total: 230000 }, cost: 0.066, errors: 3 },
    { key: '2026-06-05', source: 'analysis', requests: 35, tokens: { input: 14000, output: 1400, total: 15400 }, cost: 0.0029, errors: 0 },
  ],
  has_more: false,
  first_id: '2026-06-05',
  last_id: '2026-06-05',
};
