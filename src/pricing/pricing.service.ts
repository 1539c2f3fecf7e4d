import { Injectable } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { ConfigError, AppConfig } from '../config/app-config';
import type { AnswerUsage } from './answer-usage';
import { ModelPrice, PriceEntry, PriceTable, readPriceTable, TOKEN_RATES, TokenRates } from './price-table';
import BUILTIN_PRICES from './prices.json';

export type { ModelPrice } from './price-table';

export interface TokenCounts {
  input: number | null | undefined;
  /** cached input tokens (part of `input`), priced at cached_input */
  cached?: number | null;
  output: number | null | undefined;
}

/** What prices a call beyond its tokens: the tier the answer names, built-in tool calls, the Batch API. */
export interface CostExtras {
  serviceTier?: string | null;
  webSearchCalls?: number;
  fileSearchCalls?: number;
  batch?: boolean;
}

const SNAPSHOT_DATE = /-\d{4}-\d{2}-\d{2}$/;
// older snapshot names: gpt-4-0613, gpt-3.5-turbo-0125
const SNAPSHOT_MMDD = /-\d{4}$/;
/** Tiers an answer may name for the standard price (`auto` is what a request asks; answers name `default`). */
const STANDARD_TIERS = new Set(['default', 'auto', 'standard']);

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

const positive = (n: number | null | undefined): number => (typeof n === 'number' && n > 0 ? n : 0);

/**
 * USD of an answer's tokens at the given rates, or null when it has tokens of a kind the rates do not price, or
 * cached tokens whose kind (text, audio, image) is not reported while their rates differ.
 */
function tokenCost(rates: TokenRates, u: AnswerUsage): number | null {
  const input = positive(u.input);
  const output = positive(u.output);
  const [audioIn, imageIn, audioOut, imageOut] = [positive(u.audioInput), positive(u.imageInput), positive(u.audioOutput), positive(u.imageOutput)];
  const cached = Math.min(input, positive(u.cached));
  if (cached > 0 && ((audioIn > 0 && u.cachedAudio === undefined) || (imageIn > 0 && u.cachedImage === undefined))) return null;
  const [cachedAudio, cachedImage] = [positive(u.cachedAudio), positive(u.cachedImage)];
  const textIn = input - audioIn - imageIn;
  const cachedText = cached - cachedAudio - cachedImage;
  const textOut = output - audioOut - imageOut;
  if (textIn < 0 || textOut < 0 || cachedText < 0 || cachedText > textIn || cachedAudio > audioIn || cachedImage > imageIn) return null;
  const parts: [number, number | undefined][] = [
    [textIn - cachedText, rates.input],
    [cachedText, rates.cached_input],
    [audioIn - cachedAudio, rates.audio_input],
    [cachedAudio, rates.cached_audio_input],
    [imageIn - cachedImage, rates.image_input],
    [cachedImage, rates.cached_image_input],
    [textOut, rates.output],
    [audioOut, rates.audio_output],
    [imageOut, rates.image_output],
  ];
  let perMillion = 0;
  for (const [tokens, rate] of parts) {
    if (tokens === 0) continue;
    if (rate === undefined) return null;
    perMillion += tokens * rate;
  }
  return perMillion / 1_000_000;
}

/**
 * Prices proxied and analysis calls from the built-in list-price table, extended or overridden by PRICES_FILE.
 * A model's own entry wins over its family's, so a dated snapshot priced unlike its family (gpt-4o-2024-05-13,
 * gpt-3.5-turbo-0613) is listed by name; other snapshots take their family's price.
 */
@Injectable()
export class PricingService {
  private readonly table: PriceTable;
  /**
   * Decimal places a cost can carry: prices are per million tokens and token counts are whole, so a price with d
   * decimals gives costs with d + 6. Money is rounded to this before it is stored, summed into a report, or shown.
   * Flex and Batch API rates (half a list price) are rounded to the same places: at most a tenth of a nano-dollar.
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
      readPriceTable(parsed, `PRICES_FILE ${config.pricesFile}`, this.table);
    }
    let decimals = 0;
    for (const p of this.table.models.values()) {
      for (const rate of [...TOKEN_RATES.map((k) => p[k]), p.per_million_characters]) if (rate !== undefined) decimals = Math.max(decimals, decimalsOf(rate) + 6);
      for (const sizes of Object.values(p.per_image ?? {})) for (const usd of Object.values(sizes)) decimals = Math.max(decimals, decimalsOf(usd));
    }
    this.moneyDecimals = Math.min(MAX_MONEY_DECIMALS, decimals);
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

  /**
   * The text-token price of a model or of one of its dated snapshots (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`);
   * null if unknown or not priced by input and output tokens (whisper-1, dall-e-3).
   */
  priceOf(model: string | null | undefined): ModelPrice | null {
    const entry = this.entryOf(model);
    if (!entry || entry.input === undefined || entry.output === undefined) return null;
    return { input: entry.input, cached_input: entry.cached_input ?? entry.input, output: entry.output };
  }

  /**
   * The price-table entry a model is priced by, in lower case: its own name, or its family's for a dated snapshot
   * priced with its family; null if unknown.
   */
  tableEntryOf(model: string | null | undefined): string | null {
    if (!model) return null;
    const name = model.toLowerCase();
    if (this.table.models.has(name)) return name;
    for (const re of [SNAPSHOT_DATE, SNAPSHOT_MMDD]) {
      if (re.test(name)) {
        const family = name.replace(re, '');
        if (this.table.models.has(family)) return family;
      }
    }
    return null;
  }

  private entryOf(model: string | null | undefined): PriceEntry | null {
    const name = this.tableEntryOf(model);
    return name === null ? null : this.table.models.get(name)!;
  }

  /**
   * Cost in USD of a call's tokens, or null when the model has no known price or no token counts are known.
   * `extras` prices what the answer names beyond its tokens: its service tier, built-in tool calls, the Batch API.
   */
  cost(model: string | null | undefined, tokens: TokenCounts, extras?: CostExtras): number | null {
    if (tokens.input == null && tokens.output == null) return null;
    return this.costOfAnswer({ model: model ?? null, input: tokens.input ?? null, output: tokens.output ?? null, total: null, cached: tokens.cached ?? null, reasoning: null, ...extras });
  }

  /**
   * Cost in USD of what an answer reports: its tokens of each kind at the rates of the tier it names, images,
   * characters or minutes for the models priced so, built-in tool calls, and the Batch API's share. Null, never a
   * guess, when the model or its tier is unknown or any part the answer reports has no price in the table.
   */
  costOfAnswer(usage: AnswerUsage): number | null {
    const entry = this.entryOf(usage.model);
    if (!entry) return null;
    if (entry.free) return 0;
    const tierName = usage.serviceTier?.toLowerCase();
    const tier = tierName === undefined || STANDARD_TIERS.has(tierName) ? null : entry.tiers?.[tierName];
    if (tier === undefined) return null;
    // a Batch API job has its own price: one that names another tier is not priced
    if (tier && usage.batch) return null;
    const byUnit = entry.per_image !== undefined || entry.per_minute !== undefined || entry.per_million_characters !== undefined;
    if ((tier || usage.batch) && byUnit) return null;
    let usd = 0;
    if (entry.per_image) {
      const images = usage.images;
      const price = images && entry.per_image[images.quality?.toLowerCase() ?? '']?.[images.size?.toLowerCase() ?? ''];
      if (!images || price === undefined) return null;
      usd += images.count * price;
    }
    if (entry.per_minute !== undefined) {
      if (usage.audioSeconds === undefined) return null;
      usd += (usage.audioSeconds / 60) * entry.per_minute;
    }
    if (entry.per_million_characters !== undefined) {
      if (usage.characters === undefined) return null;
      usd += (usage.characters * entry.per_million_characters) / 1_000_000;
    }
    const tokensReported = usage.input != null || usage.output != null;
    if (tokensReported) {
      const tokens = tokenCost(tier ?? entry, usage);
      if (tokens === null) return null;
      usd += tokens;
    } else if (!byUnit) {
      return null;
    }
    if (usage.batch) {
      if (this.table.batchFactor === null) return null;
      usd *= this.table.batchFactor;
    }
    for (const [tool, calls] of [
      ['web_search', usage.webSearchCalls],
      ['file_search', usage.fileSearchCalls],
    ] as const) {
      if (!calls) continue;
      const per1k = this.table.toolCallsPer1k.get(tool);
      if (per1k === undefined) return null;
      usd += (calls * per1k) / 1000;
    }
    return this.roundUsd(usd);
  }
}
