import { AppException } from './app-exception';

export interface ListPage<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface PageQuery {
  limit: number;
  after?: string;
}

/** Reads `?limit=` (1–100, default 20) and `?after=`; anything else is a 400. */
export function parsePageQuery(query: Record<string, unknown>): PageQuery {
  let limit = 20;
  if (query.limit !== undefined) {
    const raw = String(query.limit);
    if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 100) {
      throw AppException.invalid('limit must be an integer between 1 and 100', 'limit');
    }
    limit = Number(raw);
  }
  const after = query.after === undefined || query.after === '' ? undefined : String(query.after);
  return { limit, after };
}

/** Builds a list page from `limit + 1` fetched rows. */
export function toListPage<T extends { id: string }>(rows: T[], limit: number): ListPage<T> {
  const has_more = rows.length > limit;
  const data = has_more ? rows.slice(0, limit) : rows;
  return {
    object: 'list',
    data,
    has_more,
    first_id: data.length ? data[0].id : null,
    last_id: data.length ? data[data.length - 1].id : null,
  };
}
