export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtCost(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  if (v === 0) return '$0';
  return v < 0.01 ? `$${v.toPrecision(3)}` : `$${v.toFixed(4)}`;
}

export function fmtInt(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : Math.round(v).toLocaleString('en-US');
}

export function fmtMs(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : `${Math.round(v).toLocaleString('en-US')} ms`;
}

export function fmtRating(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : v.toFixed(2).replace(/\.?0+$/, '');
}

/** yyyy-mm-dd of a Date, in UTC (the API's days are UTC days). */
export function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export function daysAgo(n: number): Date {
  return new Date(Date.now() - n * 86_400_000);
}

/** A chart's value label: integers as they are, other numbers to two decimals. */
export function fmtNum(v: number | null | undefined): string {
  if (v === null || v === undefined) return '';
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}
