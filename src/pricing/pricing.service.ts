import { Injectable } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { ConfigError, AppConfig } from '../config/app-config';
import BUILTIN_PRICES from './prices.json';

/** USD per million tokens. */
export interface ModelPrice {
  input: number;
  cached_input: number;
  output: number;
}

export interface TokenCounts {
  input: number | null | undefined;
  /** cached input tokens (part of `input`), priced at cached_input */
  cached?: number | null;
  output: number | null | undefined;
}

const SNAPSHOT_DATE = /-\d{4}-\d{2}-\d{2}$/;
// older snapshot names: gpt-4-0613, gpt-3.5-turbo-0125
const SNAPSHOT_MMDD = /-\d{4}$/;

function readPriceTable(raw: unknown, source: string): Map<string, ModelPrice> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${source}: expected an object of model → prices`);
  const table = new Map<string, ModelPrice>();
  for (const [model, p] of Object.entries(raw as Record<string, unknown>)) {
    const e = p as Partial<ModelPrice>;
    const ok = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
    if (!e || !ok(e.input) || !ok(e.output) || (e.cached_input !== undefined && !ok(e.cached_input))) {
      throw new ConfigError(`${source}: model "${model}" needs numeric "input" and "output" (and optional "cached_input") in USD per million tokens`);
    }
    table.set(model.toLowerCase(), { input: e.input!, output: e.output!, cached_input: e.cached_input ?? e.input! });
  }
  return table;
}

/** Decimal places of a price as written (0.075 → 3, 1e-7 → 7). */
function decimalsOf(n: number): number {
  const [mantissa, exponent] = n.toString().split('e');
  const fraction = mantissa.split('.')[1]?.length ?? 0;
  return Math.max(0, fraction - Number(exponent ?? 0));
}

const MAX_MONEY_DECIMALS = 12;

/** A USD amount as text without float noise or exponent: 0.000000255 → "0.000000255", 1.5 → "1.5". */
export function formatUsd(usd: number, decimals: number): string {
  const text = usd.toFixed(decimals);
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

/**
 * Prices proxied and analysis calls from the built-in list-price table, extended or overridden by PRICES_FILE.
 * A model's own entry wins over its family's, so a dated snapshot priced unlike its family (gpt-4o-2024-05-13,
 * gpt-3.5-turbo-0613) is listed by name; other snapshots take their family's price.
 */
@Injectable()
export class PricingService {
  private readonly table: Map<string, ModelPrice>;
  /**
   * Decimal places a cost can carry: prices are per million tokens and token counts are whole, so a price with d
   * decimals gives costs with d + 6. Money is rounded to this before it is stored, summed into a report, or shown.
   */
  readonly moneyDecimals: number;

  constructor(config: AppConfig) {
    this.table = readPriceTable(BUILTIN_PRICES, 'built-in price table');
    if (config.pricesFile) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(config.pricesFile, 'utf8'));
      } catch (err) {
        throw new ConfigError(`PRICES_FILE ${config.pricesFile} cannot be read as JSON: ${(err as Error).message}`);
      }
      for (const [model, price] of readPriceTable(parsed, `PRICES_FILE ${config.pricesFile}`)) this.table.set(model, price);
    }
    let decimals = 0;
    for (const p of this.table.values()) decimals = Math.max(decimals, decimalsOf(p.input), decimalsOf(p.cached_input), decimalsOf(p.output));
    this.moneyDecimals = Math.min(MAX_MONEY_DECIMALS, decimals + 6);
  }

  /** A USD amount (a cost, or a sum of costs) rounded to the precision the price table carries. */
  roundUsd(usd: number): number {
    const scale = 10 ** this.moneyDecimals;
    return Math.round(usd * scale) / scale;
  }

  /** A USD amount as text at the table's precision, for people to read. */
  formatUsd(usd: number): string {
    return formatUsd(this.roundUsd(usd), this.moneyDecimals);
  }

  /** The price of a model or of one of its dated snapshots (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`); null if unknown. */
  priceOf(model: string | null | undefined): ModelPrice | null {
    const entry = this.tableEntryOf(model);
    return entry === null ? null : this.table.get(entry)!;
  }

  /**
   * The price-table entry a model is priced by, in lower case: its own name, or its family's for a dated snapshot
   * priced with its family; null if unknown.
   */
  tableEntryOf(model: string | null | undefined): string | null {
    if (!model) return null;
    const name = model.toLowerCase();
    if (this.table.has(name)) return name;
    for (const re of [SNAPSHOT_DATE, SNAPSHOT_MMDD]) {
      if (re.test(name)) {
        const family = name.replace(re, '');
        if (this.table.has(family)) return family;
      }
    }
    return null;
  }

  /** Cost in USD, or null when the model has no known price or no token counts are known. */
  cost(model: string | null | undefined, tokens: TokenCounts): number | null {
    const price = this.priceOf(model);
    if (!price) return null;
    if (tokens.input == null && tokens.output == null) return null;
    const input = Math.max(0, tokens.input ?? 0);
    const cached = Math.min(input, Math.max(0, tokens.cached ?? 0));
    const output = Math.max(0, tokens.output ?? 0);
    const usd = ((input - cached) * price.input + cached * price.cached_input + output * price.output) / 1_000_000;
    return this.roundUsd(usd);
  }
}
