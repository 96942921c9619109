// Issue 2's bar: examples/mnist-mlp.ts trained eagerly for one epoch on the real MNIST files (batch 64,
// SGD lr 0.1) reaches at least 95% test accuracy. About 20 s on the CPU, so CPU only: the compiled and
// WebGPU paths are checked against eager on smaller runs elsewhere.
import { expect, it } from 'vitest';
import { run } from '../examples/mnist-mlp.ts';

it('the MNIST MLP reaches >= 95% test accuracy after one eager epoch', async () => {
  const result = await run({ epochs: 1, log: false });
  expect(result.accuracy).toBeGreaterThanOrEqual(0.95);
  expect(result.losses[0]).toBeGreaterThan(2); // starts near ln(10)
  expect(result.losses.at(-1)!).toBeLessThan(0.5);
}, 600_000);
