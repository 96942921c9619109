// Multi-pass reductions (compiler/passes/split-reduce.ts): long reductions into few outputs become two
// reductions; compiled steps on WebGPU use them, with the same results as one pass.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { trace } from '../jit/trace.ts';
import { splitReductions } from '../compiler/passes/split-reduce.ts';
import { describeEachDevice } from './devices.ts';

describe('splitReductions', () => {
  it('splits a long full sum into two sums over sqrt-sized chunks', () => {
    const x = kiln.rand([512, 512]);
    const { graph } = trace((t) => t.sum(), [x]);
    const split = splitReductions(graph, { minExtent: 1 << 16, maxOutputs: 64 });
    const sums = split.nodes.filter((n) => n.op === 'sum');
    expect(sums.map((n) => n.shape)).toEqual([[1, 512, 1], [1, 1, 1]]);
  });

  it('splits a max over two of three axes and keeps short or many-output reductions', () => {
    const x = kiln.rand([4, 256, 256]);
    const g1 = splitReductions(trace((t) => t.max([1, 2]), [x]).graph, { minExtent: 1 << 16, maxOutputs: 64 });
    expect(g1.nodes.filter((n) => n.op === 'max').map((n) => n.shape)).toEqual([[4, 256, 1], [4, 1, 1]]);
    const g2 = splitReductions(trace((t) => t.sum(0), [x]).graph, { minExtent: 1 << 16, maxOutputs: 64 });
    expect(g2.nodes.filter((n) => n.op === 'sum')).toHaveLength(1);
  });

  it('leaves a reduction alone when its extent has no divisor near its square root', () => {
    const x = kiln.rand([65537]); // prime
    const g = splitReductions(trace((t) => t.sum(), [x]).graph, { minExtent: 1 << 16, maxOutputs: 64 });
    expect(g.nodes.filter((n) => n.op === 'sum')).toHaveLength(1);
  });
});

describeEachDevice('multi-pass reductions', (device) => {
  it('a compiled sum, mean and max of 2^18 elements match eager', async () => {
    kiln.manualSeed(3);
    const x = kiln.randn([512, 512], { device });
    const step = kiln.compile((t: kiln.Tensor) => [t.sum(), t.mean(), t.max(), t.abs().sum(1).max()]);
    const got = await Promise.all(((await step(x)) as kiln.Tensor[]).map((t) => t.item()));
    const want = await Promise.all([x.sum(), x.mean(), x.max(), x.abs().sum(1).max()].map((t) => t.item()));
    got.forEach((g, i) => expect(Math.abs(g - want[i])).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(want[i]))));
    const l = await step.lower(x);
    if (device === 'webgpu') expect(l.kernels.length).toBeGreaterThan(4);
  });
});
