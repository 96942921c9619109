// Fusion rules of compiler/passes/fusion.ts beyond fusion.test.ts: no kernel writes a value that
// neither the step outputs nor another kernel reads (a multi-output kernel drops the writes of
// intermediates it computes where they are used: Adadelta's delta, dropout's uniform numbers), and an
// argmax's elementwise consumer runs in its epilogue (max pooling's gather index). Checked on the
// schedules of traced functions (the real pipeline) and, for results, against eager execution on
// every device.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import type { Graph } from '../ir/graph.ts';
import { runPipeline, type Pipelined } from '../compiler/pipeline.ts';
import { trace } from '../jit/trace.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

type Tensor = kiln.Tensor;
const { nn, optim, F } = kiln;

function pipeline(fn: (...a: Tensor[]) => unknown, args: Tensor[]): Pipelined {
  return runPipeline(trace(fn, args).graph, { fuse: true, maxArgs: Infinity, splitReductions: false, verify: true });
}

/** Writes that neither the step outputs nor any other kernel binds (none should be left). */
function deadWrites(p: Pipelined): string[] {
  const g: Graph = p.graph;
  const outputs = new Set(g.outputs.flatMap((o) => (o.node === null ? [] : [o.node])));
  return p.schedule.kernels.flatMap((k) => k.writes
    .filter((w) => !outputs.has(w) && !p.schedule.kernels.some((o) => o !== k && o.args.includes(w)))
    .map((w) => `${k.spec.name} writes %${w}`));
}

describe('fusion: what a kernel stores', () => {
  it('a multi-output kernel stops storing an intermediate that only it reads (x -> e = exp(x) -> (e + 1) * e)', () => {
    const p = pipeline((a: Tensor) => a.exp().add(1).mul(a.exp()), [kiln.randn([5])]);
    expect(p.schedule.kernels).toHaveLength(1);
    expect(p.schedule.kernels[0].writes).toEqual([p.graph.outputs[0].node]);
  });

  it('training steps store nothing unread: an Adadelta CNN step (no Δ buffer) and an Adam MLP step', () => {
    kiln.manualSeed(3);
    const cnn = new nn.Sequential(new nn.Conv2d(1, 2, 3), new nn.ReLU(), new nn.MaxPool2d(2), new nn.Dropout(0.25), new nn.Flatten(), new nn.Linear(2 * 3 * 3, 4));
    const ada = new optim.Adadelta(cnn.parameters());
    const x = kiln.randn([2, 1, 8, 8]), y = kiln.tensor([1, 3], { dtype: 'int32' });
    const step = (xb: Tensor, yb: Tensor) => { ada.zeroGrad(); const loss = F.crossEntropy(cnn.forward(xb), yb); loss.backward(); ada.step(); return loss; };
    expect(deadWrites(pipeline(step, [x, y]))).toEqual([]);

    const mlp = new nn.Sequential(new nn.Linear(6, 8), new nn.ReLU(), new nn.Linear(8, 3));
    const adam = new optim.Adam(mlp.parameters(), { lr: 0.01 });
    const mlpStep = (xb: Tensor, yb: Tensor) => { adam.zeroGrad(); const loss = F.crossEntropy(mlp.forward(xb), yb); loss.backward(); adam.step(); return loss; };
    expect(deadWrites(pipeline(mlpStep, [kiln.randn([4, 6]), kiln.tensor([0, 1, 2, 1], { dtype: 'int32' })]))).toEqual([]);
  });
});

describe('fusion: argmax epilogues', () => {
  it("an argmax's only elementwise consumer (an int index and a float value) runs in its kernel", () => {
    const p = pipeline((a: Tensor) => [a.argmax(1).mul(3).add(1), a.argmax(0).float().mul(0.5)], [kiln.randn([4, 6])]);
    expect(p.schedule.kernels).toHaveLength(2);
    for (const k of p.schedule.kernels) expect(k.spec.kernel.kind === 'reduce' && k.spec.kernel.op).toBe('argmax');
  });
});

describeEachDevice('fusion: argmax epilogues and dropped writes give eager results', (device) => {
  it('argmax with an int and a float epilogue: ties, NaN and -Infinity, short and long rows (both WGSL strategies)', async () => {
    const f = (x: Tensor): Tensor[] => [x.argmax(1).mul(3).add(1), x.argmax(0).float().mul(0.5).add(x.sum(0))];
    for (const [r, c] of [[5, 300], [300, 5]]) {
      const data = Float32Array.from({ length: r * c }, (_, i) => (i % 97 === 5 ? NaN : i % 89 === 3 ? -Infinity : Math.round(Math.sin(i * 0.7) * 3)));
      const x = kiln.tensor(data, { shape: [r, c], device });
      const compiled = (await kiln.compile(f)(x)) as unknown as Tensor[];
      const eager = f(x);
      for (let i = 0; i < eager.length; i++) expectValues(await values(compiled[i]), await values(eager[i]), { rtol: 1e-6, atol: 1e-6 }, `[${r}, ${c}] output ${i}`);
    }
  });


  it('dropped writes: (e + 1) * e and Adam-style state updates, compiled and eager', async () => {
    const f = (v: Tensor, m: Tensor, g: Tensor): Tensor[] => {
      const e = v.exp();
      const m2 = m.mul(0.9).add(g.mul(0.1));
      const step = m2.mul(m2).add(1e-3).sqrt();
      return [e.add(1).mul(e), v.sub(m2.div(step))];
    };
    const args: [Tensor, Tensor, Tensor] = [kiln.randn([3, 4], { device }), kiln.randn([3, 4], { device }), kiln.randn([3, 4], { device })];
    const compiled = (await kiln.compile(f)(...args)) as unknown as Tensor[];
    const eager = f(...args);
    for (let i = 0; i < eager.length; i++) expectValues(await values(compiled[i]), await values(eager[i]), { rtol: 1e-6, atol: 1e-6 }, `output ${i}`);
  });
});
