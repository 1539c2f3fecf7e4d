import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { countTokens, countTokensInSlices } from './token-count';

describe('token count', () => {
  it('counts o200k tokens, in bounded slices', () => {
    expect(countTokens('hello world')).toBe(2);
    expect(countTokensInSlices('hello world', 11, 256)).toBe(2);
    expect(countTokensInSlices('hello world', 5, 256)).toBe(countTokens('hello'));
  });

  it('keeps few merged words: counting 100,000 distinct words leaves the heap within a few MB (the library kept 29 MB)', () => {
    // in a process of its own, whose heap can be collected and measured
    const script = `
      const { countTokens } = require(${JSON.stringify(join(process.cwd(), 'dist/src/common/token-count.js'))});
      countTokens('x'); gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 100000; i++) countTokens(' user-' + i.toString(36) + 'q' + (i * 7919).toString(36));
      gc();
      process.stdout.write(String((process.memoryUsage().heapUsed - before) / 1e6));`;
    const run = spawnSync(join(process.cwd(), 'node_modules/.bin/node'), ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(Number(run.stdout)).toBeLessThan(8);
  });
});
