import { defineConfig } from 'vitest/config';
import type { Reporter } from 'vitest/reporters';

/** Ends the run with the plain `N passed, N failed` line that CI reads in any language. */
const countLine: Reporter = {
  onTestRunEnd(modules) {
    const count = (state: 'passed' | 'failed' | 'skipped') => modules.reduce((n, m) => n + [...m.children.allTests(state)].length, 0);
    console.log(`\ntests: ${count('passed')} passed, ${count('failed')} failed, ${count('skipped')} skipped`);
  },
};

// End-to-end tests start real registries and child processes: generous timeouts,
// and files run one or two at a time on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000, // a safety net only: CI is a loaded 2-core machine, and tests wait for events, not clocks
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
    reporters: ['default', countLine],
  },
});
