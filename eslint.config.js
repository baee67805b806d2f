// Lint: @eslint/js recommended + typescript-eslint recommended, without type-aware rules (no
// type checker run, so the whole tree lints in seconds; tsc already checks the types).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Tests and benchmarks read the CLI's --json output and bench reports as loose JSON; src/ stays typed.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
