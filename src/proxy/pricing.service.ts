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

/** Prices proxied and analysis calls from the built-in list-price table, extended or overridden by PRICES_FILE. */
@Injectable()
export class PricingService {
  private readonly table: Map<string, ModelPrice>;

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
  }

  /** The price of a model or of one of its dated snapshots (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`); null if unknown. */
  priceOf(model: string | null | undefined): ModelPrice | null {
    if (!model) return null;
    const name = model.toLowerCase();
    const exact = this.table.get(name);
    if (exact) return exact;
    for (const re of [SNAPSHOT_DATE, SNAPSHOT_MMDD]) {
      if (re.test(name)) {
        const family = this.table.get(name.replace(re, ''));
        if (family) return family;
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
    return Math.round(usd * 1e12) / 1e12;
  }
}
