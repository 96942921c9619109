// The API beyond the MLP (API.md "Beyond the MLP") that the golden files do not pin: bad input
// (clear errors naming the op and shapes, nothing changed), generators and sampling, topk,
// split/chunk views, to(dtype), C.index(X), the top-level function forms, containers, parameter
// groups and OneCycleLR's momentum. Values are exact or derived by hand, never from kiln itself.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';

const { nn, F, optim } = kiln;
type Tensor = kiln.Tensor;
const vals = (t: Tensor): number[] => Array.from(t.dataSync(), Number);

describe('bad input: a clear error, nothing changed', () => {
  it('BatchNorm in training mode with one value per channel', () => {
    const bn = new nn.BatchNorm1d(3);
    expect(() => bn.forward(kiln.randn([1, 3]))).toThrow(/batchNorm: expected more than 1 value per channel when training, got input of shape \[1, 3\]/);
    expect(vals(bn.runningMean!)).toEqual([0, 0, 0]);
    expect(vals(bn.runningVar!)).toEqual([1, 1, 1]);
    expect(bn.numBatchesTracked!.itemSync()).toBe(0);
    const bn2 = new nn.BatchNorm2d(2);
    expect(() => bn2.forward(kiln.randn([1, 2, 1, 1]))).toThrow(/more than 1 value per channel.*\[1, 2, 1, 1\]/);
    expect(() => bn2.forward(kiln.randn([2, 3, 2, 2]))).toThrow(/BatchNorm2d: expected input with 2 channels \(dim 1\), got shape \[2, 3, 2, 2\]/);
    expect(() => bn2.forward(kiln.randn([2, 2]))).toThrow(/BatchNorm2d: expected 4D input, got 2D input of shape \[2, 2\]/);
    expect(bn2.numBatchesTracked!.itemSync()).toBe(0);
    // eval mode with one sample is fine (running statistics)
    bn.eval();
    expect(vals(kiln.noGrad(() => bn.forward(kiln.tensor([[1, 2, 3]]))))[2]).toBeCloseTo(3 / Math.sqrt(1 + 1e-5), 5);
  });

  it('embedding index out of range (CPU)', () => {
    const w = kiln.randn([10, 4]);
    expect(() => F.embedding(kiln.tensor([[0, 12]], { dtype: 'int32' }), w)).toThrow(/embedding: index 12 is out of range for a weight of shape \[10, 4\] \(valid indices 0\.\.9; indices of shape \[1, 2\]\)/);
    expect(() => F.embedding(kiln.tensor([-1], { dtype: 'int32' }), w)).toThrow(/embedding: index -1 is out of range/);
    expect(() => F.embedding(kiln.tensor([1.5]), w)).toThrow(/embedding: expected int32 indices, got float32/);
    const emb = new nn.Embedding(5, 2);
    const before = vals(emb.weight);
    expect(() => emb.forward(kiln.tensor([5], { dtype: 'int32' }))).toThrow(/embedding: index 5 is out of range for a weight of shape \[5, 2\]/);
    expect(vals(emb.weight)).toEqual(before);
    expect(emb.weight.grad).toBeNull();
  });

  it('embedding and oneHot check argument indices inside compile on every call, before anything runs', async () => {
    const emb = new nn.Embedding(5, 2);
    const before = vals(emb.weight);
    const step = kiln.compile((i: kiln.Tensor) => emb.forward(i).sum().add(F.oneHot(i, 5).sum()));
    expect(await (await step(kiln.tensor([0, 4], { dtype: 'int32' }))).item()).toBeTypeOf('number');
    await expect(step(kiln.tensor([1, 5], { dtype: 'int32' }))).rejects.toThrow(/embedding: index 5 is out of range for a weight of shape \[5, 2\]/);
    expect(vals(emb.weight)).toEqual(before);
  });

  it('shape and option errors name the op and the shapes', () => {
    const x = kiln.randn([2, 3]);
    expect(() => F.layerNorm(x, [4])).toThrow(/layerNorm: normalizedShape \[4\] must match the last dims of the input \[2, 3\]/);
    expect(() => F.groupNorm(kiln.randn([2, 3, 2]), 2)).toThrow(/groupNorm: expected the number of channels 3 \(input \[2, 3, 2\]\) to be divisible by numGroups 2/);
    expect(() => x.maskedFill(kiln.tensor([1, 0, 1]), 0)).toThrow(/maskedFill: expected a bool mask tensor, got float32/);
    expect(() => x.maskedFill(kiln.tensor([[true], [false], [true]]), 0)).toThrow(/maskedFill/);
    expect(() => x.split([1, 1], 1)).toThrow(/split: sizes \[1, 1\] must be non-negative integers summing to 3/);
    expect(() => x.repeat([2])).toThrow(/repeat: number of repeat dims 1 can not be smaller than number of tensor dims 2/);
    expect(() => x.topk(4)).toThrow(/topk: k \(4\) is out of range for dimension 1 of size 3/);
    expect(() => kiln.tensor([1]).tril()).toThrow(/tril: expected a tensor with at least 2 dimensions, got shape \[1\]/);
    expect(() => F.pad(x, [1])).toThrow(/pad: pads \[1\] must be integer pairs/);
    expect(() => F.oneHot(kiln.tensor([0, 3], { dtype: 'int32' }), 3)).toThrow(/oneHot: class index 3 is out of range for numClasses 3/);
    expect(() => F.scaledDotProductAttention(kiln.randn([2, 4]), kiln.randn([3, 5]), kiln.randn([3, 4]))).toThrow(/scaledDotProductAttention: query \[2, 4\], key \[3, 5\] and value \[3, 4\] do not fit/);
    expect(() => x.index(kiln.tensor([0.5]))).toThrow(/index: tensors used as indices must be int32, got float32/);
    expect(() => kiln.multinomial(kiln.tensor([0.5, 0.5]), 3)).toThrow(/multinomial: cannot sample 3 > 2 categories \(shape \[2\]\) without replacement/);
  });
});

describe('constants JSON cannot spell stay distinct (kernel caches, CSE)', () => {
  it('NaN, Infinity, -Infinity, 0 and -0 fills, eagerly and compiled', async () => {
    const fills = [NaN, Infinity, -Infinity, 0, -0];
    const eager = fills.map((v) => kiln.full([2], v).dataSync()[0]);
    fills.forEach((v, i) => expect(Object.is(eager[i], v)).toBe(true));
    const step = kiln.compile((x: Tensor) => fills.map((v) => x.mul(0).add(kiln.full([2], v))));
    const out = (await step(kiln.ones([2]))) as unknown as Tensor[];
    expect(out.map((t) => t.dataSync()[0])).toEqual([NaN, Infinity, -Infinity, 0, 0]);
    // a -Infinity mask after NaN and Infinity constants were used (the causal softmax)
    kiln.tensor([1, NaN]).maximum(Infinity);
    const att = kiln.tensor([[1, 2], [3, 4]]).maskedFill(kiln.ones([2, 2]).triu(1).eq(1), -Infinity).softmax(-1);
    expect(vals(att)[1]).toBe(0);
    expect(vals(att)[0]).toBe(1);
  });
});

describe('tensor methods', () => {
  it('C.index(X) is C[X]: rows picked by an int tensor, shape [...X.shape, ...C.shape.slice(1)], then more indices', () => {
    const C = kiln.tensor([[0, 1], [10, 11], [20, 21]]);
    const X = kiln.tensor([[2, 0], [1, 1]], { dtype: 'int32' });
    const e = C.index(X);
    expect(e.shape).toEqual([2, 2, 2]);
    expect(vals(e)).toEqual([20, 21, 0, 1, 10, 11, 10, 11]);
    expect(vals(C.index(X, 1))).toEqual([21, 1, 11, 11]); // C[X, 1]
  });

  it('erf: odd, saturating, NaN through, and its gradient 2/sqrt(pi) exp(-x^2) (exact at 0)', () => {
    const x = kiln.tensor([0, 0.5, -0.5, 6, -6, NaN], { requiresGrad: true });
    const y = x.erf();
    const v = vals(y);
    expect(v[0]).toBe(0);
    expect(v[1]).toBeCloseTo(0.5204998778, 6); // erf(0.5), from tables
    expect(v[2]).toBe(-v[1]);
    expect([v[3], v[4]]).toEqual([1, -1]);
    expect(Number.isNaN(v[5])).toBe(true);
    y.sum().backward();
    const g = vals(x.grad!);
    expect(g[0]).toBeCloseTo(2 / Math.sqrt(Math.PI), 6);
    expect(g[1]).toBeCloseTo((2 / Math.sqrt(Math.PI)) * Math.exp(-0.25), 6);
    expect(x.erf().gradFn).toBe('ErfBackward');
  });

  it('split and chunk give views; to(dtype) casts; viewAs reshapes', () => {
    const x = kiln.arange(0, 10, 1, { dtype: 'float32' });
    const parts = x.split(4);
    expect(parts.map((p) => p.shape[0])).toEqual([4, 4, 2]);
    expect(parts[1]._storage).toBe(x._storage); // a view: no copy
    expect(x.chunk(3).map((p) => vals(p))).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(x.chunk(4).map((p) => p.shape[0])).toEqual([3, 3, 3, 1]);
    const i = kiln.tensor([1.7, -2.2]).to('int32');
    expect(i.dtype).toBe('int32');
    expect(vals(i)).toEqual([1, -2]);
    expect(x.viewAs(kiln.zeros([2, 5])).shape).toEqual([2, 5]);
  });

  it('topk: values and indices, largest first, ties to the lower index', () => {
    const x = kiln.tensor([[1, 5, 3, 5], [0, -1, 2, 2]]);
    const [v, ix] = x.topk(3);
    expect(vals(v)).toEqual([5, 5, 3, 2, 2, 0]);
    expect(vals(ix)).toEqual([1, 3, 2, 2, 3, 0]);
    const r = x.topk(1, 0, false);
    expect(vals(r.values)).toEqual([0, -1, 2, 2]);
    expect(vals(r.indices)).toEqual([1, 1, 1, 1]);
    // gradients flow to the selected elements
    const y = kiln.tensor([3, 1, 2], { requiresGrad: true });
    y.topk(2).values.sum().backward();
    expect(vals(y.grad!)).toEqual([1, 0, 1]);
  });

  it('the top-level function forms equal the methods', () => {
    const x = kiln.tensor([[0.5, -1, 2], [3, 0.25, -0.5]]);
    for (const f of ['exp', 'tanh', 'sin', 'cos', 'abs', 'relu', 'sigmoid', 'erf', 'log1p'] as const) {
      const a = f === 'log1p' ? x.abs() : x;
      expect(vals(kiln[f](a))).toEqual(vals(a[f]()));
    }
    expect(vals(kiln.sqrt(x.abs()))).toEqual(vals(x.abs().sqrt()));
    expect(vals(kiln.log(x.abs()))).toEqual(vals(x.abs().log()));
    expect(vals(kiln.sum(x, 1))).toEqual(vals(x.sum(1)));
    expect(vals(kiln.mean(x))).toEqual(vals(x.mean()));
    expect(kiln.flatten(x).shape).toEqual([6]);
    expect(vals(kiln.matmul(x, x.T))).toEqual(vals(x.matmul(x.T)));
    expect(vals(kiln.var(x, 1))).toEqual(vals(x.var(1)));
    expect(vals(kiln.cumsum(x, 1))).toEqual(vals(x.cumsum(1)));
    expect(vals(kiln.cumsum(kiln.tensor([1, 2, 3], { dtype: 'int32' }), 0))).toEqual([1, 3, 6]);
  });
});

describe('generators and sampling', () => {
  it('a Generator is its own reproducible stream, independent of manualSeed', () => {
    const a = kiln.randn([5], { generator: new kiln.Generator().manualSeed(1) });
    kiln.manualSeed(99);
    kiln.rand([3]);
    const b = kiln.randn([5], { generator: new kiln.Generator().manualSeed(1) });
    expect(vals(a)).toEqual(vals(b));
    const g = new kiln.Generator().manualSeed(1);
    expect(g.initialSeed()).toBe(1);
    expect(vals(kiln.rand([4], { generator: g }))).not.toEqual(vals(kiln.rand([4], { generator: g })));
    const n = kiln.normal(3, 0.5, [4000], { generator: new kiln.Generator().manualSeed(2) });
    expect(n.mean().itemSync()).toBeCloseTo(3, 1);
    expect(n.std().itemSync()).toBeCloseTo(0.5, 1);
  });

  it('multinomial with replacement follows the probabilities and never picks a zero-probability category', () => {
    const probs = kiln.tensor([[0.2, 0, 0.8], [0, 1, 0]]);
    const s = kiln.multinomial(probs, 4000, { replacement: true, generator: new kiln.Generator().manualSeed(3) });
    expect(s.shape).toEqual([2, 4000]);
    expect(s.dtype).toBe('int32');
    const row0 = vals(s.index(0)), row1 = vals(s.index(1));
    expect(row0.includes(1)).toBe(false);
    expect(row0.filter((v) => v === 2).length / 4000).toBeGreaterThan(0.77);
    expect(row0.filter((v) => v === 2).length / 4000).toBeLessThan(0.83);
    expect(new Set(row1)).toEqual(new Set([1]));
    // unnormalised weights work the same
    const w = kiln.multinomial(kiln.tensor([2, 0, 8]), 1000, { replacement: true, generator: new kiln.Generator().manualSeed(3) });
    expect(w.shape).toEqual([1000]);
    expect(vals(w).includes(1)).toBe(false);
  });

  it('multinomial without replacement: distinct categories per row, seeded; compiled draws what eager draws', async () => {
    const p = kiln.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]]);
    const a = kiln.multinomial(p, 4, { generator: new kiln.Generator().manualSeed(5) });
    const b = kiln.multinomial(p, 4, { generator: new kiln.Generator().manualSeed(5) });
    expect(vals(a)).toEqual(vals(b));
    for (const r of [0, 1]) expect(new Set(vals(a.index(r))).size).toBe(4);
    // inside compile too: each call draws a fresh seed from the generator, the same ones eager draws
    const q = kiln.tensor([0.3, 0.3, 0.4]);
    const g1 = new kiln.Generator().manualSeed(8), g2 = new kiln.Generator().manualSeed(8);
    const step = kiln.compile((t: Tensor) => kiln.multinomial(t, 16, { replacement: true, generator: g1 }));
    const compiled = [vals(await step(q)), vals(await step(q))];
    const eager = [0, 1].map(() => vals(kiln.multinomial(q, 16, { replacement: true, generator: g2 })));
    expect(compiled).toEqual(eager);
    expect(compiled[0]).not.toEqual(compiled[1]);
  });
});

describe('containers and parameter groups', () => {
  it('ModuleDict registers its modules by key', () => {
    const d = new nn.ModuleDict({ enc: new nn.Linear(2, 3), act: new nn.GELU() });
    expect(d.keys()).toEqual(['enc', 'act']);
    expect(d.get('act')).toBeInstanceOf(nn.GELU);
    expect(d.namedParameters().map(([n]) => n)).toEqual(['enc.weight', 'enc.bias']);
    expect(() => d.get('dec')).toThrow(/ModuleDict: no module named 'dec'/);
    expect(() => d.set('forward', new nn.ReLU())).toThrow(/would shadow/);
  });

  it('per-group options and learning rates; opt.lr is group 0; compiled steps read every group lr', async () => {
    const a = new nn.Parameter(kiln.tensor([1, 1])), b = new nn.Parameter(kiln.tensor([1]));
    const opt = new optim.SGD([{ params: [a] }, { params: [b], lr: 0.5 }], { lr: 0.1 });
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([0.1, 0.5]);
    const step = kiln.compile(() => {
      opt.zeroGrad();
      a.sum().add(b.sum()).backward();
      opt.step();
    });
    await step();
    expect(vals(a)[0]).toBeCloseTo(0.9, 6);
    expect(vals(b)[0]).toBeCloseTo(0.5, 6);
    opt.paramGroups[1].lr = 0.25;
    opt.lr = 0.2;
    await step();
    expect(vals(a)[0]).toBeCloseTo(0.7, 6);
    expect(vals(b)[0]).toBeCloseTo(0.25, 6);
    expect(() => new optim.SGD([a, { params: [b] }] as never, { lr: 0.1 })).toThrow(/not a mix/);
    expect(() => new optim.SGD([{ params: [a] }, { params: [a] }], { lr: 0.1 })).toThrow(/more than one parameter group/);
    expect(() => new optim.Adam([{ params: [a], betas: [0.9, 2] as [number, number] }])).toThrow(/beta parameter at index 1/);
  });

  it('stateDict / loadStateDict carry every parameter group (PyTorch layout) and continue the same trajectory', () => {
    const make = () => {
      const a = new nn.Parameter(kiln.tensor([[1, 2], [3, 4]])), b = new nn.Parameter(kiln.tensor([0.5]));
      const opt = new optim.AdamW([{ params: [a], weightDecay: 0.1 }, { params: [b], weightDecay: 0, lr: 0.05 }], { lr: 0.1 });
      const step = () => { opt.zeroGrad(); a.mul(a).sum().add(b.mul(3).sum()).backward(); opt.step(); };
      return { a, b, opt, step };
    };
    const x = make();
    x.step();
    const sd = x.opt.stateDict();
    expect(sd.paramGroups.map((g) => [g.lr, g.weightDecay, g.params])).toEqual([[0.1, 0.1, [0]], [0.05, 0, [1]]]);
    expect(Object.keys(sd.state['1'])).toEqual(['step', 'expAvg', 'expAvgSq']);
    const y = make();
    kiln.noGrad(() => { y.a.copy_(x.a); y.b.copy_(x.b); });
    y.opt.paramGroups[1].lr = 1;
    y.opt.loadStateDict(sd);
    expect(y.opt.paramGroups[1].lr).toBe(0.05);
    x.step(); y.step();
    expect(vals(y.a)).toEqual(vals(x.a));
    expect(vals(y.b)).toEqual(vals(x.b));
    // a dict whose groups hold other parameters changes nothing
    const z = make();
    const wrong = { ...sd, paramGroups: [{ ...sd.paramGroups[0], params: [1] }, { ...sd.paramGroups[1], params: [0] }] };
    expect(() => z.opt.loadStateDict(wrong)).toThrow(/paramGroups\[0\]\.params is \[1\]; this optimizer's group 0 holds parameters \[0\]/);
    expect(z.opt.stepCount.itemSync()).toBe(0);
    expect(Object.keys(new optim.RMSprop([z.a], { momentum: 0.9, centered: true }).stateDict().paramGroups[0]).sort()).toEqual(['alpha', 'centered', 'eps', 'lr', 'maximize', 'momentum', 'params', 'weightDecay']);
  });

  it('OneCycleLR cycles SGD momentum inversely to the lr; without momentum it says how to fix it', () => {
    const p = new nn.Parameter(kiln.zeros([1]));
    const opt = new optim.SGD([p], { lr: 0.1, momentum: 0.9 });
    const s = new optim.lrScheduler.OneCycleLR(opt, { maxLr: 1, totalSteps: 10 });
    expect(opt.lr).toBeCloseTo(1 / 25, 12);
    expect(opt.paramGroups[0].momentum).toBeCloseTo(0.95, 12);
    for (let i = 0; i < 2; i++) { opt.step(); s.step(); }
    // step 2 is the peak of the warm-up (pctStart 0.3 of 10 steps ends at step 2)
    expect(opt.lr).toBeCloseTo(1, 12);
    expect(opt.paramGroups[0].momentum).toBeCloseTo(0.85, 12);
    expect(() => new optim.lrScheduler.OneCycleLR(new optim.SGD([p], { lr: 0.1 }), { maxLr: 1, totalSteps: 10 })).toThrow(/cycleMomentum: false/);
  });

  it('a compiled step under OneCycleLR (lr and momentum / beta1 change every step) equals eager without retracing each step', async () => {
    for (const make of [(ps: Tensor[]) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9 }), (ps: Tensor[]) => new optim.Adam(ps, { lr: 0.1 })]) {
      const run = async (compiled: boolean): Promise<{ p: number[]; traces: number }> => {
        const p = new nn.Parameter(kiln.tensor([1, -2, 3]));
        const opt = make([p]);
        const sched = new optim.lrScheduler.OneCycleLR(opt, { maxLr: 0.5, totalSteps: 12 });
        const body = () => { opt.zeroGrad(); p.mul(p).sum().backward(); opt.step(); };
        const step = kiln.compile(body);
        for (let i = 0; i < 12; i++) {
          if (compiled) await step(); else body();
          sched.step();
        }
        return { p: vals(p), traces: step.traces };
      };
      const eager = await run(false), compiled = await run(true);
      // rtol 1e-4 for trajectories longer than 5 steps (golden/README.md)
      compiled.p.forEach((v, i) => expect(Math.abs(v - eager.p[i])).toBeLessThanOrEqual(1e-4 * Math.abs(eager.p[i]) + 1e-5));
      expect(compiled.traces).toBeLessThanOrEqual(2);
    }
  });
});
