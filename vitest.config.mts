import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.e2e-spec.ts', 'test/medium/**/*.medium-spec.ts', 'test/**/*.spec.ts', 'src/**/*.spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    // Every file boots its own servers on its own data and nothing is mocked, so the files share one module graph:
    // the app's modules (NestJS, TypeORM, …) load once per worker, not once per file (≈1.5 s CPU each). A file that
    // mocks a module or changes a global (process.env, timers) must put it back before it ends.
    isolate: false,
  },
});
