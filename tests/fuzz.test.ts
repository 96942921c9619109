// The differential fuzzer's fixed-seed budget (tests/fuzz/, README.md, "Reliability"): random programs over
// the public API run eagerly, compiled and compiled unfused must leave the same returns, values,
// grads and optimizer state. A failure prints its shrunk program, ready to paste into a test.
// Longer runs: `npm run fuzz -- --seconds N --device cpu|webgpu`.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { describeFailure, fuzz } from './fuzz/fuzz.ts';
import { compare, generate, print, run } from './fuzz/program.ts';

/**
 * Programs per chunk and chunks per device: the CPU runs 1,200 programs (about 35 s of CPU time), WebGPU
 * 30 (on Mesa lavapipe, a CPU, each new program compiles its shaders: about 2 s a program).
 */
const BUDGET = { cpu: { chunks: 4, size: 300 }, webgpu: { chunks: 1, size: 30 } } as const;

describeEachDevice('fuzz: compiled equals eager on fixed seeds', (device) => {
  const { chunks, size } = BUDGET[device];
  for (let c = 0; c < chunks; c++) {
    const firstSeed = 1 + c * size;
    it(`seeds ${firstSeed}..${firstSeed + size - 1}: no mismatches, no crashes`, async () => {
      const stats = await fuzz({ device, firstSeed, count: size });
      const report = stats.failures.map(describeFailure).join('\n\n');
      expect(stats.mismatches + stats.crashes, report).toBe(0);
      // The generator makes valid programs: few are refused eagerly (an in-place write to a saved tensor).
      expect(stats.invalid).toBeLessThan(size * 0.05);
    });
  }
});

describe('fuzz: the tool itself', () => {
  it('generates the same program from the same seed and prints it as code over kiln', () => {
    const a = print(generate(42)), b = print(generate(42));
    expect(a).toBe(b);
    expect(a).toMatch(/const step = \(/);
    expect(a).toMatch(/kiln\.tensor\(new (Float32|Int32)Array/);
    expect(print(generate(43))).not.toBe(a);
  });

  it('compare() reports a differing value, and run() observes returns, values and grads', async () => {
    let p = generate(7);
    for (let s = 8; !p.stmts.some((x) => x.op === 'backward'); s++) p = generate(s);
    const eager = await run(p, 'eager', 'cpu');
    expect(compare(p, eager, eager)).toBeNull();
    expect(eager.grads.some((g) => g !== null)).toBe(true);
    const changed = { ...eager, values: eager.values.map((v, i) => (i === 0 ? v.map((x) => x + 1) : v)) };
    expect(compare(p, eager, changed)).toMatch(/^value of /);
    expect(kiln.Tensor).toBeDefined();
  });
});
