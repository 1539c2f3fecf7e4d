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

  it('PRICES_FILE extends and overrides the table', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'prices-')), 'prices.json');
    writeFileSync(file, JSON.stringify({ 'my-local-llama': { input: 1, output: 2 }, 'gpt-4o': { input: 1, cached_input: 0.5, output: 1 } }));
    const p = pricing(file);
    expect(p.cost('my-local-llama', { input: 1_000_000, output: 1_000_000 })).toBe(3);
    expect(p.cost('gpt-4o', { input: 1_000_000, output: 0 })).toBe(1);
    expect(p.cost('gpt-4.1', { input: 1_000_000, output: 0 })).toBe(2);
  });
});
