import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // WebGPU (lavapipe) and MNIST suites are heavy; keep the 2-core CI machine responsive.
    pool: 'forks',
    fileParallelism: true,
    // Every compiled step in the suite runs the IR verifier after each pass (ir/verify.ts).
    env: { KILN_VERIFY: '1' },
  },
});
