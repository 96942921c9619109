// Max pooling against real PyTorch on its edge cases (tests/fixtures/pool-torch.json, written by
// gen_pool.py): ties (the gradient goes to the first maximum of a window), a NaN in a window (it
// propagates, and takes the gradient), infinities, cropped odd sizes, non-square, overlapping and
// padded windows; eagerly, compiled and compiled without fusion, with and without a gradient, on every
// device. Then the kernels of a compiled training step: one argmax reads the windows, a gather takes
// the values, a scatter is the gradient, and no window-sized mask is ever written.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { runPipeline } from '../compiler/pipeline.ts';
import type { PoolOptions } from '../nn/conv.ts';
import { jsSource } from '../compiler/codegen/js.ts';
import { numel } from '../ir/shape.ts';
import { trace } from '../jit/trace.ts';
import { describeEachDevice } from './devices.ts';
import { TOL, expectValues, values } from './golden.ts';

type Tensor = kiln.Tensor;
const { F } = kiln;

interface Ref { shape: number[]; data: (number | 'NaN' | 'Infinity' | '-Infinity')[] }
interface PoolCase { name: string; kernel: number | number[]; opts: PoolOptions; x: Ref; gradOutput: Ref; output: Ref; grad: Ref }

const ref = JSON.parse(readFileSync(new URL('./fixtures/pool-torch.json', import.meta.url), 'utf8')) as { cases: PoolCase[] };
const numbers = (r: Ref): number[] => r.data.map(Number);
const toTensor = (r: Ref, device: kiln.DeviceName, requiresGrad = false): Tensor =>
  kiln.tensor(Float32Array.from(numbers(r)), { shape: r.shape, device, requiresGrad });

async function expectRef(t: Tensor | null, r: Ref, label: string): Promise<void> {
  expect(t, label).not.toBeNull();
  expect(t!.shape, `${label}: shape`).toEqual(r.shape);
  // outputs are copies; a gradient sums where windows overlap (the golden tolerance)
  expectValues(await values(t), numbers(r), TOL, label);
}

describeEachDevice('maxPool2d against PyTorch', (device) => {
  it('the fixture has 7 cases', () => expect(ref.cases).toHaveLength(7));

  for (const c of ref.cases) {
    describe(c.name, () => {
      const body = (x: Tensor, g: Tensor): Tensor[] => {
        const out = F.maxPool2d(x, c.kernel, c.opts);
        out.backward(g);
        return [out, x.grad!];
      };

      it('eager: output and gradient', async () => {
        const x = toTensor(c.x, device, true);
        const [out, grad] = body(x, toTensor(c.gradOutput, device));
        await expectRef(out, c.output, 'output');
        await expectRef(grad, c.grad, 'x.grad');
      });

      for (const fuse of [true, false]) {
        it(`compiled${fuse ? '' : ' (fuse: false)'}: output and gradient`, async () => {
          const x = toTensor(c.x, device, true);
          const [out, grad] = (await kiln.compile(body, { fuse })(x, toTensor(c.gradOutput, device))) as unknown as Tensor[];
          await expectRef(out, c.output, 'output');
          await expectRef(grad, c.grad, 'x.grad');
          await expectRef(x.grad, c.grad, 'x.grad written back');
        });
      }

      it('without a gradient (eager and compiled): the same output', async () => {
        const x = toTensor(c.x, device);
        await expectRef(kiln.noGrad(() => F.maxPool2d(x, c.kernel, c.opts)), c.output, 'eager, noGrad');
        await expectRef(F.maxPool2d(x, c.kernel, c.opts), c.output, 'eager, input without requiresGrad');
        const step = kiln.compile((a: Tensor) => F.maxPool2d(a, c.kernel, c.opts));
        await expectRef((await step(x)) as Tensor, c.output, 'compiled');
      });
    });
  }
});

describe('maxPool2d in a compiled training step', () => {
  it('ReLU -> maxPool2d(2) with its gradient: an argmax, a gather and a scatter; no window-sized mask is stored', () => {
    const shape = [2, 3, 8, 12];
    const size = numel(shape);
    const step = (x: Tensor, g: Tensor): Tensor[] => {
      const out = F.maxPool2d(x.relu(), 2);
      out.backward(g);
      return [out, x.grad!];
    };
    const x = kiln.randn(shape, { requiresGrad: true }), g = kiln.randn([2, 3, 4, 6]);
    const p = runPipeline(trace(step, [x, g]).graph, { fuse: true, maxArgs: Infinity, splitReductions: false, verify: true });
    const kinds = p.schedule.kernels.map((k) => (k.spec.kernel.kind === 'reduce' ? k.spec.kernel.op : k.spec.kernel.kind));
    expect(kinds.filter((k) => k === 'argmax')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'gather')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'scatterAdd')).toHaveLength(1);
    // window-sized buffers: the ReLU output, the scattered gradient and ReLU's backward (x.grad)
    const written = p.schedule.kernels.flatMap((k) => k.writes.filter((w) => numel(p.graph.node(w).shape) === size).map(() => k.spec.kernel.kind));
    expect(written).toEqual(['map', 'scatterAdd', 'map']);
  });

  it('the reduction over a 2 x 2 window is unrolled on the CPU, each copy with its window indices as constants', () => {
    // without a gradient, pooling is the window's maximum
    const p = runPipeline(trace((x: Tensor) => F.maxPool2d(x, 2), [kiln.randn([2, 3, 8, 12])]).graph, { fuse: true, maxArgs: Infinity, splitReductions: false, verify: true });
    const max = p.schedule.kernels.find((k) => k.spec.kernel.kind === 'reduce' && k.spec.kernel.op === 'max')!;
    const src = jsSource(max.spec);
    for (const window of ['0, i5 = 0', '0, i5 = 1', '1, i5 = 0', '1, i5 = 1']) expect(src).toContain(`const i3 = ${window};`);
    expect(src).not.toMatch(/for \(let i[35] /);
  });
});
