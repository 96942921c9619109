// The fusion rules that decide what a compiled step stores (compiler/passes/fusion.ts): a cheap value
// broadcast from smaller buffers is recomputed by each of its consumers instead of stored; a
// multi-output kernel follows its producer through a reshape; and no kernel stores a value that
// neither the step outputs nor a later kernel reads. Checked on the schedules of traced functions
// (the real pipeline) and, for results, against eager execution on every device.
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

/** The nodes of `op` in the optimized graph. */
const nodesOf = (p: Pipelined, op: string): number[] => p.graph.nodes.filter((n) => n.op === op).map((n) => n.id);

describe('fusion: what a kernel stores', () => {
  it('a mask broadcast from a small index, used by a reduction and by an elementwise op, is recomputed in both (never stored)', () => {
    const idx = kiln.tensor([[0], [2], [1]], { dtype: 'int32' });
    const x = kiln.randn([3, 4]);
    const p = pipeline((i: Tensor, v: Tensor) => {
      const mask = kiln.arange(0, 4, 1, { dtype: 'int32' }).reshape([1, 4]).eq(i);
      return [kiln.where(mask, v, 0).sum(1), kiln.where(mask, 0, v.exp())];
    }, [idx, x]);
    for (const id of nodesOf(p, 'eq')) expect(p.schedule.realized.has(id), `mask %${id} realized`).toBe(false);
    expect(p.schedule.kernels.length).toBe(2);
  });

  it('a value with several consumers whose inputs are as large as it is still stored once', () => {
    const x = kiln.randn([3, 4]), y = kiln.randn([3, 4]);
    const p = pipeline((a: Tensor, b: Tensor) => {
      const e = a.mul(b).exp();
      return [e.sum(1), e.sum(0)];
    }, [x, y]);
    const exp = nodesOf(p, 'exp');
    expect(exp).toHaveLength(1);
    expect(p.schedule.realized.has(exp[0])).toBe(true);
  });

  it('an elementwise value read through a reshape that cannot move through its broadcast loads fuses into its consumer', () => {
    // max pooling's backward shape: g [2, 3] broadcast over 2x2 windows, then viewed as [4, 6]
    const g = kiln.randn([2, 3]), m = kiln.randn([2, 2, 3, 2]), r = kiln.randn([4, 6]);
    const p = pipeline((a: Tensor, b: Tensor, c: Tensor) => a.reshape([2, 1, 3, 1]).expand([2, 2, 3, 2]).mul(b).reshape([4, 6]).mul(c.gt(0)), [g, m, r]);
    expect(p.schedule.kernels.map((k) => k.spec.name)).toHaveLength(1);
    expect(deadWrites(p)).toEqual([]);
    expect(p.schedule.kernels[0].writes).toEqual([p.graph.outputs[0].node]);
  });

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

describeEachDevice('fusion: recomputed and merged values give eager results', (device) => {
  it('a recomputed mask, a merge through a reshape and a dropped write, compiled and eager', async () => {
    const f = (i: Tensor, v: Tensor, g: Tensor): Tensor[] => {
      const mask = kiln.arange(0, 4, 1, { dtype: 'int32', device }).reshape([1, 4]).eq(i);
      const picked = kiln.where(mask, v, 0);
      const back = g.reshape([3, 1]).expand([3, 4]).mul(picked).reshape([2, 6]).mul(v.reshape([2, 6]).gt(0));
      const e = v.exp();
      return [picked.sum(1), back, e.add(1).mul(e), kiln.where(mask, 0, v)];
    };
    const args: [Tensor, Tensor, Tensor] = [kiln.tensor([[0], [3], [1]], { dtype: 'int32', device }), kiln.randn([3, 4], { device }), kiln.randn([3], { device })];
    const compiled = (await kiln.compile(f)(...args)) as unknown as Tensor[];
    const eager = f(...args);
    for (let i = 0; i < eager.length; i++) expectValues(await values(compiled[i]), await values(eager[i]), { rtol: 1e-6, atol: 1e-6 }, `output ${i}`);
  });
});
