import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AppConfig } from '../config/app-config';
import { PricingService } from './pricing.service';

const pricing = (pricesFile?: string) => new PricingService(Object.assign(new AppConfig(), { pricesFile }));

describe('PricingService', () => {
  it('prices known models per million tokens, cached input at its own rate and excluded from normal input', () => {
    const p = pricing();
    expect(p.cost('gpt-4o-mini', { input: 1_000_000, output: 1_000_000 })).toBeCloseTo(0.75, 10);
    // 1000 input of which 400 cached, 200 output on gpt-4o: 600*2.5 + 400*1.25 + 200*10 per million
    expect(p.cost('gpt-4o', { input: 1000, cached: 400, output: 200 })).toBeCloseTo((600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6, 12);
  });

  it('matches dated snapshots to their family, never a mere prefix; unknown models are null', () => {
    const p = pricing();
    expect(p.priceOf('gpt-4o-mini-2024-07-18')).toEqual(p.priceOf('gpt-4o-mini'));
    expect(p.priceOf('gpt-4o-2024-08-06')).toEqual(p.priceOf('gpt-4o'));
    expect(p.priceOf('gpt-3.5-turbo-0125')).toEqual(p.priceOf('gpt-3.5-turbo'));
    expect(p.priceOf('gpt-4o-mini')).not.toEqual(p.priceOf('gpt-4o'));
    expect(p.priceOf('gpt-4o-something-new')).toBeNull();
    expect(p.cost('my-local-llama', { input: 10, output: 10 })).toBeNull();
    expect(p.cost(null, { input: 10, output: 10 })).toBeNull();
  });

  // OpenAI's published list prices (USD per 1M tokens: input, cached input or null when the model has no cache
  // discount, output) of dated snapshots and older names, checked against openai.com/api/pricing
  const KNOWN: [string, number, number | null, number][] = [
    ['gpt-4o-2024-05-13', 5, null, 15],
    ['gpt-4o-2024-08-06', 2.5, 1.25, 10],
    ['gpt-4o-2024-11-20', 2.5, 1.25, 10],
    ['gpt-4o-mini-2024-07-18', 0.15, 0.075, 0.6],
    ['chatgpt-4o-latest', 5, null, 15],
    ['gpt-4-turbo-2024-04-09', 10, null, 30],
    ['gpt-4-turbo-preview', 10, null, 30],
    ['gpt-4-0125-preview', 10, null, 30],
    ['gpt-4-1106-preview', 10, null, 30],
    ['gpt-4-1106-vision-preview', 10, null, 30],
    ['gpt-4-0613', 30, null, 60],
    ['gpt-4-0314', 30, null, 60],
    ['gpt-4-32k-0613', 60, null, 120],
    ['gpt-3.5-turbo-0125', 0.5, null, 1.5],
    ['gpt-3.5-turbo-1106', 1, null, 2],
    ['gpt-3.5-turbo-0613', 1.5, null, 2],
    ['gpt-3.5-turbo-0301', 1.5, null, 2],
    ['gpt-3.5-turbo-16k-0613', 3, null, 4],
    ['gpt-3.5-turbo-instruct', 1.5, null, 2],
    ['davinci-002', 2, null, 2],
    ['babbage-002', 0.4, null, 0.4],
    ['o1-2024-12-17', 15, 7.5, 60],
    ['o1-preview-2024-09-12', 15, 7.5, 60],
    ['o1-mini-2024-09-12', 1.1, 0.55, 4.4],
    ['o3-mini-2025-01-31', 1.1, 0.55, 4.4],
    ['o3-2025-04-16', 2, 0.5, 8],
    ['o4-mini-2025-04-16', 1.1, 0.275, 4.4],
    ['gpt-4.1-2025-04-14', 2, 0.5, 8],
    ['gpt-4.1-mini-2025-04-14', 0.4, 0.1, 1.6],
    ['gpt-4.1-nano-2025-04-14', 0.1, 0.025, 0.4],
    ['gpt-4.5-preview-2025-02-27', 75, 37.5, 150],
    ['gpt-5-2025-08-07', 1.25, 0.125, 10],
    ['gpt-5-mini-2025-08-07', 0.25, 0.025, 2],
    ['gpt-5-nano-2025-08-07', 0.05, 0.005, 0.4],
  ];

  it.each(KNOWN)('prices %s at its published list price', (model, input, cached, output) => {
    expect(pricing().priceOf(model)).toEqual({ input, cached_input: cached ?? input, output });
  });

  it('rounds costs to the precision the table carries, so figures print without float noise', () => {
    const p = pricing();
    // the built-in table's finest price has 3 decimals (per million tokens): costs carry 9
    expect(p.moneyDecimals).toBe(9);
    // 0.0000513 + 0.0000513 + … : sums of float costs drift (0.00010259999999999999); rounded they do not
    const drift = [0.1, 0.2].reduce((a, b) => a + b, 0);
    expect(String(drift)).toBe('0.30000000000000004');
    expect(String(p.roundUsd(drift))).toBe('0.3');
    for (let input = 0; input < 400; input += 7) {
      for (let output = 0; output < 400; output += 13) {
        const cost = p.cost('gpt-4o-mini', { input, cached: Math.floor(input / 3), output })!;
        expect(cost.toString().replace(/^0\.0*/, '').length).toBeLessThanOrEqual(9);
        expect(cost).toBe(Number(cost.toFixed(9)));
      }
    }
    expect(p.formatUsd(0.000000255)).toBe('0.000000255');
    expect(p.formatUsd(0.00010259999999999999)).toBe('0.0001026');
    expect(p.formatUsd(12)).toBe('12');
  });

  it('PRICES_FILE extends and overrides the table', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'prices-')), 'prices.json');
    writeFileSync(file, JSON.stringify({ 'my-local-llama': { input: 1, output: 2 }, 'gpt-4o': { input: 1, cached_input: 0.5, output: 1 } }));
    const p = pricing(file);
    expect(p.cost('my-local-llama', { input: 1_000_000, output: 1_000_000 })).toBe(3);
    expect(p.cost('gpt-4o', { input: 1_000_000, output: 0 })).toBe(1);
    expect(p.cost('gpt-4.1', { input: 1_000_000, output: 0 })).toBe(2);
  });
});
