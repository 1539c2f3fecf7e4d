import { defineConfig } from 'vitest/config';

// `npm run test:browser`: the console in Debian's Chromium (kept out of `npm test`, which stays short)
export default defineConfig({
  test: {
    include: ['test/browser/**/*.browser-spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
