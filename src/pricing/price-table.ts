import { ConfigError } from '../config/app-config';

/** USD per million text tokens. */
export interface ModelPrice {
  input: number;
  cached_input: number;
  output: number;
}

/** USD per million tokens of each kind a model is priced by; a kind the table leaves out is unknown for that model. */
export interface TokenRates {
  input?: number;
  cached_input?: number;
  output?: number;
  audio_input?: number;
  cached_audio_input?: number;
  audio_output?: number;
  image_input?: number;
  cached_image_input?: number;
  image_output?: number;
}

/** One model's prices: tokens by kind, the units some models are priced by instead, and its processing tiers. */
export interface PriceEntry extends TokenRates {
  /** USD per minute of audio (whisper-1) */
  per_minute?: number;
  /** USD per million characters of text (tts-1) */
  per_million_characters?: number;
  /** USD per image by quality, then size (dall-e-3: `hd` → `1024x1792` → 0.12) */
  per_image?: Record<string, Record<string, number>>;
  /** costs nothing whatever the answer reports (moderation) */
  free?: boolean;
  /** rates of the tiers other than the standard one, by the `service_tier` an answer names (`flex`, `priority`) */
  tiers?: Record<string, TokenRates>;
}

export interface PriceTable {
  models: Map<string, PriceEntry>;
  /** share of the price a Batch API job pays (0.5), or null when unknown */
  batchFactor: number | null;
  /** USD per 1,000 calls of a built-in tool, by tool (`web_search`, `file_search`) */
  toolCallsPer1k: Map<string, number>;
}

export const TOKEN_RATES: readonly (keyof TokenRates)[] = [
  'input',
  'cached_input',
  'output',
  'audio_input',
  'cached_audio_input',
  'audio_output',
  'image_input',
  'cached_image_input',
  'image_output',
];

/** Cached tokens are priced as uncached ones where a model has no cache discount. */
const CACHED_OF: [keyof TokenRates, keyof TokenRates][] = [
  ['cached_input', 'input'],
  ['cached_audio_input', 'audio_input'],
  ['cached_image_input', 'image_input'],
];

const isPrice = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function readRates(raw: Record<string, unknown>, where: string): TokenRates {
  const rates: TokenRates = {};
  for (const key of TOKEN_RATES) {
    if (raw[key] === undefined) continue;
    if (!isPrice(raw[key])) throw new ConfigError(`${where}: "${key}" must be a price in USD per million tokens`);
    rates[key] = raw[key];
  }
  for (const [cached, uncached] of CACHED_OF) if (rates[cached] === undefined && rates[uncached] !== undefined) rates[cached] = rates[uncached];
  return rates;
}

const ENTRY_KEYS = new Set<string>([...TOKEN_RATES, 'per_minute', 'per_million_characters', 'per_image', 'free', 'tiers']);

function readEntry(raw: unknown, where: string): PriceEntry {
  if (!isObject(raw)) throw new ConfigError(`${where}: expected an object of prices`);
  for (const key of Object.keys(raw)) if (!ENTRY_KEYS.has(key)) throw new ConfigError(`${where}: unknown price "${key}"`);
  const entry: PriceEntry = readRates(raw, where);
  for (const key of ['per_minute', 'per_million_characters'] as const) {
    if (raw[key] === undefined) continue;
    if (!isPrice(raw[key])) throw new ConfigError(`${where}: "${key}" must be a price in USD`);
    entry[key] = raw[key];
  }
  if (raw.per_image !== undefined) {
    if (!isObject(raw.per_image)) throw new ConfigError(`${where}: "per_image" must map qualities to sizes to USD`);
    entry.per_image = {};
    for (const [quality, sizes] of Object.entries(raw.per_image)) {
      if (!isObject(sizes) || !Object.values(sizes).every(isPrice)) throw new ConfigError(`${where}: "per_image.${quality}" must map sizes to USD`);
      entry.per_image[quality.toLowerCase()] = Object.fromEntries(Object.entries(sizes).map(([size, usd]) => [size.toLowerCase(), usd as number]));
    }
  }
  if (raw.free !== undefined) {
    if (typeof raw.free !== 'boolean') throw new ConfigError(`${where}: "free" must be true or false`);
    entry.free = raw.free;
  }
  if (raw.tiers !== undefined) {
    if (!isObject(raw.tiers)) throw new ConfigError(`${where}: "tiers" must map service tiers to prices`);
    entry.tiers = {};
    for (const [tier, rates] of Object.entries(raw.tiers)) {
      if (!isObject(rates)) throw new ConfigError(`${where}: tier "${tier}" must be an object of prices`);
      entry.tiers[tier.toLowerCase()] = readRates(rates, `${where} tier "${tier}"`);
    }
  }
  const priced = TOKEN_RATES.some((k) => entry[k] !== undefined) || entry.per_minute !== undefined || entry.per_million_characters !== undefined;
  if (!priced && !entry.per_image && !entry.free) {
    throw new ConfigError(`${where}: needs a price (e.g. "input" and "output" in USD per million tokens) or "free": true`);
  }
  return entry;
}

/**
 * Reads a price table: model → prices, plus `$`-keys for the table itself: `$source` (where and when the prices
 * were taken, not read), `$batch_factor` and `$tool_calls_per_1k`. Read into `into`, so a PRICES_FILE extends and
 * overrides the built-in table.
 */
export function readPriceTable(raw: unknown, source: string, into?: PriceTable): PriceTable {
  if (!isObject(raw)) throw new ConfigError(`${source}: expected an object of model → prices`);
  const table: PriceTable = into ?? { models: new Map(), batchFactor: null, toolCallsPer1k: new Map() };
  for (const [key, value] of Object.entries(raw)) {
    if (key === '$source') continue;
    if (key === '$batch_factor') {
      if (!isPrice(value) || value > 1) throw new ConfigError(`${source}: "$batch_factor" must be a share of the price between 0 and 1`);
      table.batchFactor = value;
    } else if (key === '$tool_calls_per_1k') {
      if (!isObject(value) || !Object.values(value).every(isPrice)) throw new ConfigError(`${source}: "$tool_calls_per_1k" must map tools to USD per 1,000 calls`);
      for (const [tool, usd] of Object.entries(value)) table.toolCallsPer1k.set(tool, usd as number);
    } else if (key.startsWith('$')) {
      throw new ConfigError(`${source}: unknown table setting "${key}"`);
    } else {
      table.models.set(key.toLowerCase(), readEntry(value, `${source}: model "${key}"`));
    }
  }
  return table;
}
