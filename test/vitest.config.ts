import { defineConfig } from 'vitest/config';

// End-to-end tests start real registries and child processes: generous timeouts,
// and files run one or two at a time on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
  },
});
