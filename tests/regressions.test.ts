// Issue 13's numbered reproductions, one named test each: programs that compiled execution got wrong
// or crashed on, and the library's edges (eagerly too). Expected values are PyTorch 1.13's (run with
// /usr/bin/python3 when the issue did not already state them) or eager kiln where the claim is
// "compiled equals eager".
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, LOOSE_TOL, values } from './golden.ts';

const { optim, noGrad } = kiln;
type Tensor = kiln.Tensor;

/** fn must throw an Error whose message matches every pattern; returns the message. */
function throwsMatching(fn: () => unknown, ...patterns: RegExp[]): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(Error);
  const msg = (err as Error).message;
  for (const p of patterns) expect(msg).toMatch(p);
  expect(err).not.toBeInstanceOf(TypeError); // an internal TypeError is not a clear error
  return msg;
}

describeEachDevice('issue 13 reproductions (library edges)', (device) => {
  const t = (data: kiln.NestedData, opts: kiln.TensorOptions = {}): Tensor => kiln.tensor(data, { device, ...opts });

  it('13: a tensor saved for backward and then modified in place makes backward throw (version counters), changing nothing', async () => {
    const p = t([1, 2, 3], { requiresGrad: true });
    const b = t([4, 5, 6]);
    const y = p.mul(b);
    noGrad(() => b.add_(10));
    throwsMatching(() => y.sum().backward(), /modified by an inplace operation/, /MulBackward/, /version 1; expected version 0/);
    expect(p.grad).toBeNull();
    // add saves nothing: PyTorch allows this one.
    const z = p.add(b);
    noGrad(() => b.add_(10));
    z.sum().backward();
    expectValues(await values(p.grad), [1, 1, 1], 'exact', 'p.grad');
    // A view shares its base's counter: writing through the base invalidates a matmul saved on the view.
    const w = t([[1, 2], [3, 4]]);
    const m = p.index([0, 2]).matmul(w.index(0));
    noGrad(() => w.zero_());
    throwsMatching(() => m.backward(), /modified by an inplace operation/, /MmBackward/);
  });

  it('13: inside compile the same program is refused the same way, and the step changes nothing', async () => {
    const p = t([[1, 2], [3, 4]], { requiresGrad: true });
    const b = t([[1, 0], [0, 1]]);
    const step = kiln.compile(() => {
      const y = p.matmul(b);
      noGrad(() => b.add_(10));
      y.sum().backward();
    });
    await expect(step()).rejects.toThrow(/modified by an inplace operation/);
    expect(p.grad).toBeNull();
    expectValues(await values(b), [1, 0, 0, 1], 'exact', 'b');
  });

  it('14: Adam counts steps per parameter: one without a gradient does not advance (PyTorch state[p].step)', async () => {
    const a = t([1, 2], { requiresGrad: true });
    const b = t([3, -1], { requiresGrad: true });
    const opt = new optim.Adam([a, b], { lr: 0.1 });
    a.mul(t([2, -3])).sum().backward();
    opt.step();
    opt.zeroGrad();
    a.mul(t([1, 1])).sum().add(b.mul(t([0.5, 2])).sum()).backward();
    opt.step();
    // PyTorch 1.13: a [0.806782, 2.140022], b [2.9, -1.1], steps 2 and 1
    expectValues(await values(a), [0.806782066822052, 2.140021800994873], LOOSE_TOL, 'a');
    expectValues(await values(b), [2.9000000953674316, -1.100000023841858], LOOSE_TOL, 'b');
    expectValues(await values(opt.paramSteps[0]), [2], 'exact', 'steps of a');
    expectValues(await values(opt.paramSteps[1]), [1], 'exact', 'steps of b');
  });

  it('14: SGD with dampening takes each parameter\'s first step undamped (PyTorch)', async () => {
    const a = t([1, 2], { requiresGrad: true });
    const b = t([3, -1], { requiresGrad: true });
    const opt = new optim.SGD([a, b], { lr: 0.1, momentum: 0.9, dampening: 0.5 });
    a.mul(t([2, -3])).sum().backward();
    opt.step();
    opt.zeroGrad();
    a.mul(t([1, 1])).sum().add(b.mul(t([0.5, 2])).sum()).backward();
    opt.step();
    expectValues(await values(a), [0.5699999928474426, 2.5199999809265137], LOOSE_TOL, 'a');
    expectValues(await values(b), [2.950000047683716, -1.2000000476837158], LOOSE_TOL, 'b');
  });

  it('15: reductions with a dim on a 0-d tensor, max() with a NaN, empty reductions (PyTorch values)', async () => {
    expectValues(await values(t(3).sum(0)), [3], 'exact', 'tensor(3).sum(0)');
    expectValues(await values(t(3).mean(-1)), [3], 'exact', 'tensor(3).mean(-1)');
    expectValues(await values(t(3).softmax(0)), [1], 'exact', 'tensor(3).softmax(0)');
    expectValues(await values(t(3).logSoftmax(0)), [0], 'exact', 'tensor(3).logSoftmax(0)');
    const x = t([1, NaN, 3], { requiresGrad: true });
    x.max().backward();
    expectValues(await values(x.grad), [0, 1, 0], 'exact', 'max() gradient with a NaN');
    const e = kiln.zeros([0, 3], { device }).max(1);
    expect(e.shape).toEqual([0]);
    expect(kiln.zeros([0, 3], { device }).argmax(1).shape).toEqual([0]);
    throwsMatching(() => kiln.zeros([0, 3], { device }).max(0), /max: cannot reduce over a dimension of size 0/);
    throwsMatching(() => kiln.zeros([0], { device }).argmax(), /argmax: .*empty tensor/);
    throwsMatching(() => kiln.zeros([0], { device }).min(), /^min: /);
  });

  it('16: an in-place op on a view of a leaf that requires grad throws (outside noGrad) and changes nothing', async () => {
    const x = t([1, 2, 3], { requiresGrad: true });
    throwsMatching(() => x.index([0, 2]).mul_(2), /mul_: a view .* of a leaf tensor that requires grad/, /noGrad/);
    expectValues(await values(x), [1, 2, 3], 'exact', 'x');
    noGrad(() => x.index([0, 2]).mul_(2)); // allowed under noGrad, as PyTorch's torch.no_grad()
    expectValues(await values(x), [2, 4, 3], 'exact', 'x after the noGrad write (x[0:2] *= 2)');
  });

  it('17: non-tensor operands, bad dims and shapes, unknown dtypes and int32 overflow get clear errors naming the op', async () => {
    const x = t([1, 2, 3]);
    throwsMatching(() => x.add('a' as never), /^add: /, /the string 'a'/);
    throwsMatching(() => x.add(null as never), /^add: /, /null/);
    throwsMatching(() => x.matmul(3 as never), /^matmul: /, /Tensor/, /number/);
    throwsMatching(() => kiln.cat([x, 3 as never]), /^cat: /, /element 1 is number/);
    throwsMatching(() => x.sum('0' as never), /^sum: dim must be an integer/);
    throwsMatching(() => x.copy_([1, 2, 3] as never), /^copy_: /, /an array/);
    throwsMatching(() => x.gather(0, [0] as never), /^gather: /);
    throwsMatching(() => new kiln.nn.Linear(2, 2, { device }).loadStateDict(null as never), /^loadStateDict: /, /null/);
    throwsMatching(() => kiln.tensor([1], { dtype: 'float16' as never, device }), /^tensor: unknown dtype 'float16'/);
    throwsMatching(() => kiln.tensor([2 ** 31], { dtype: 'int32', device }), /^tensor: value 2147483648 cannot be converted to type int32 without overflow/);
    throwsMatching(() => kiln.tensor(new Float32Array([-(2 ** 32)]), { dtype: 'int32', device }), /int32 without overflow/);
    // reshape takes sizes as PyTorch does: reshape(6), reshape(3, 2)
    const y = t([[1, 2, 3], [4, 5, 6]]);
    expect(y.reshape(6).shape).toEqual([6]);
    expect(y.reshape(3, 2).shape).toEqual([3, 2]);
    throwsMatching(() => y.reshape('6' as never), /^reshape: shape must be an array of integers/);
    // view() never copies: a transposed tensor cannot be viewed flat (PyTorch names reshape)
    throwsMatching(() => y.T.view([6]), /^view: /, /reshape/);
    expectValues(await values(y.view(3, 2)), [1, 2, 3, 4, 5, 6], 'exact', 'view of a contiguous tensor');
    // errors name the op the user called
    throwsMatching(() => kiln.zeros([0], { device }).min(), /^min: /);
    throwsMatching(() => t([1], { requiresGrad: true }).zero_(), /^zero_: /);
    throwsMatching(() => y.view([4]), /^view: /);
    expectValues(await values(x), [1, 2, 3], 'exact', 'x unchanged by the failed calls');
  });

  it('18: optimizer state follows model.to() / toAsync() (created before the move)', async () => {
    const model = new kiln.nn.Linear(2, 1, { device });
    const opt = new optim.Adam(model.parameters(), { lr: 0.1 });
    model.forward(t([[1, 1]])).sum().backward();
    opt.step();
    await model.toAsync('cpu');
    expect(opt.expAvg[0].device).toBe('cpu');
    expect(opt.paramSteps[0].device).toBe('cpu');
    expect(opt.stepCount.device).toBe('cpu');
    opt.zeroGrad();
    model.forward(kiln.tensor([[1, 1]])).sum().backward();
    opt.step(); // throws if any state stayed behind
    expectValues(await values(opt.paramSteps[0]), [2], 'exact', 'steps');
  });

  it('18: data.mnist() stays in host memory when this device is the default (batches are moved by the user)', () => {
    const prev = kiln.getDefaultDevice();
    try {
      kiln.setDefaultDevice(device);
      const ds = kiln.data.mnist({ split: 'test' });
      for (const x of ds.tensors) expect(x.device).toBe('cpu');
    } finally {
      kiln.setDefaultDevice(prev);
    }
  });
});

/** The state a reproduction builds fresh for each run, and the step it runs on it. */
interface Repro { tensors: Record<string, Tensor>; step: (...args: Tensor[]) => unknown; args?: Tensor[] }

async function flat(v: unknown): Promise<number[][]> {
  if (v instanceof kiln.Tensor) return [await values(v)];
  if (Array.isArray(v)) return (await Promise.all(v.map(flat))).flat();
  return [];
}

/** Runs `make()`'s step `calls` times eagerly and compiled (fused and not); returns, tensors and grads must agree. */
async function compiledEqualsEager(make: () => Repro, calls = 1): Promise<{ eager: Record<string, number[]>; returns: number[][] }> {
  const runs: { state: Record<string, number[]>; returns: number[][] }[] = [];
  for (const mode of ['eager', 'compiled', 'unfused'] as const) {
    const r = make();
    const fn = mode === 'eager' ? r.step : kiln.compile(r.step, { fuse: mode === 'compiled' });
    let returns: number[][] = [];
    for (let c = 0; c < calls; c++) returns = await flat(await fn(...(r.args ?? [])));
    const state: Record<string, number[]> = {};
    for (const [k, t] of Object.entries(r.tensors)) {
      state[k] = await values(t);
      if (t.grad) state[`${k}.grad`] = await values(t.grad);
    }
    runs.push({ state, returns });
  }
  const [eager, ...others] = runs;
  for (const o of others) {
    expect(Object.keys(o.state)).toEqual(Object.keys(eager.state));
    for (const k of Object.keys(eager.state)) expectValues(o.state[k], eager.state[k], LOOSE_TOL, k);
    expect(o.returns.length).toBe(eager.returns.length);
    o.returns.forEach((r, i) => expectValues(r, eager.returns[i], LOOSE_TOL, `return ${i}`));
  }
  return { eager: eager.state, returns: eager.returns };
}

describeEachDevice('issue 13 reproductions (compiled equals eager)', (device) => {
  const t = (data: kiln.NestedData, opts: kiln.TensorOptions = {}): Tensor => kiln.tensor(data, { device, ...opts });

  it('1: a gradient equal to a tensor the step updates keeps the pre-update value (a.grad = b before opt.step())', async () => {
    const make = () => {
      const a = t([1, 2], { requiresGrad: true }), b = t([3, 4], { requiresGrad: true });
      const opt = new optim.SGD([a, b], { lr: 0.5 });
      return { tensors: { a, b }, step: () => { a.mul(b).sum().backward(); opt.step(); } };
    };
    expect((await compiledEqualsEager(make, 1)).eager['a.grad']).toEqual([3, 4]);
    await compiledEqualsEager(make, 3); // over 3 steps the parameters agree too
  });

  it('2: a buffer copied from a parameter before the step keeps the pre-step value', async () => {
    const { eager } = await compiledEqualsEager(() => {
      const p = t([1, 2, 3], { requiresGrad: true }), b = t([0, 0, 0]);
      const opt = new optim.SGD([p], { lr: 0.5 });
      return { tensors: { p, b }, step: () => { noGrad(() => b.copy_(p)); p.sum().backward(); opt.step(); } };
    });
    expect(eager.b).toEqual([1, 2, 3]);
  });

  it('3: max() over a tensor with size-1 dims: the gradient goes to the maximum, no NaN', async () => {
    const { eager } = await compiledEqualsEager(() => {
      const x = t([0.3, 0.7, 0.1], { requiresGrad: true });
      return { tensors: { x }, step: () => { x.sin().unsqueeze(1).max().backward(); } };
    });
    expectValues(eager['x.grad'], [0, Math.cos(0.7), 0], LOOSE_TOL, 'x.grad');
  });

  it('4: an argument updated in place inside compile is updated for the caller', async () => {
    const { eager } = await compiledEqualsEager(() => {
      const a = t([1, 2, 3]);
      return { tensors: { a }, args: [a], step: (x: Tensor) => { noGrad(() => x.add_(10)); return x; } };
    });
    expect(eager.a).toEqual([11, 12, 13]);
    // through a view of the argument, and for a non-contiguous argument
    await compiledEqualsEager(() => {
      const a = t([[1, 2], [3, 4]]);
      return { tensors: { a }, args: [a.T], step: (x: Tensor) => { noGrad(() => x.index(0).mul_(10)); return x.sum(); } };
    });
  });

  it('5: views and aliases see later in-place writes to their base (reshape, unsqueeze after opt.step(), detach)', async () => {
    const { returns } = await compiledEqualsEager(() => {
      const b = t([1, 2, 3]);
      return { tensors: { b }, step: () => { const w = b.reshape([3, 1]); noGrad(() => b.zero_()); return w; } };
    });
    expect(returns[0]).toEqual([0, 0, 0]);
    await compiledEqualsEager(() => {
      const p = t([1, 2, 3], { requiresGrad: true });
      const opt = new optim.SGD([p], { lr: 0.5 });
      return { tensors: { p }, step: () => { p.mul(p).sum().backward(); opt.step(); return p.unsqueeze(1); } };
    }, 2);
    const r3 = await compiledEqualsEager(() => {
      const b = t([1, 2, 3]);
      return { tensors: { b }, step: () => { noGrad(() => b.add_(10)); return b.detach().mul(1); } };
    });
    expect(r3.returns[0]).toEqual([11, 12, 13]);
  });

  it('6: out-of-range class indices and index values are refused in compiled steps and on every device, changing nothing', async () => {
    const lin = new kiln.nn.Linear(3, 4, { device });
    const opt = new optim.SGD(lin.parameters(), { lr: 0.1 });
    const step = kiln.compile((x: Tensor, y: Tensor) => {
      const l = kiln.F.crossEntropy(lin.forward(x), y);
      l.backward();
      opt.step();
      return l;
    });
    const x = kiln.ones([2, 3], { device });
    await step(x, t([1, 2], { dtype: 'int32' }));
    const w = await values(lin.weight);
    await expect(step(x, t([1, 9], { dtype: 'int32' }))).rejects.toThrow(/^crossEntropy: index 9 is out of bounds for dimension 1 with size 4$/);
    expectValues(await values(lin.weight), w, 'exact', 'weight after the refused step');
    throwsMatching(() => kiln.F.crossEntropy(lin.forward(x), t([1, 9], { dtype: 'int32' })), /crossEntropy: index 9 is out of bounds/);
    // ignoreIndex (-100) is allowed
    expect(Number.isFinite(await kiln.F.crossEntropy(lin.forward(x), t([1, -100], { dtype: 'int32' })).item())).toBe(true);
    const sel = kiln.compile((v: Tensor, i: Tensor) => v.indexSelect(0, i));
    await expect(sel(t([1, 2, 3]), t([10], { dtype: 'int32' }))).rejects.toThrow(/^indexSelect: index 10 is out of bounds for dimension 0 with size 3$/);
    throwsMatching(() => t([1, 2, 3]).indexSelect(0, t([10], { dtype: 'int32' })), /indexSelect: index 10 is out of bounds/);
    throwsMatching(() => t([[1, 2], [3, 4]]).gather(1, t([[0], [-1]], { dtype: 'int32' })), /gather: index -1 is out of bounds/);
  });

  it('11: a step without arguments runs where its captured tensors live; a device mismatch is a clear error', async () => {
    const p = t([1, 2, 3]);
    const s = kiln.compile(() => p.exp().sum());
    expect(await (await s()).item()).toBeCloseTo(Math.exp(1) + Math.exp(2) + Math.exp(3), 4);
    expect((await s()).device).toBe(device);
    expect(s.traces).toBe(1);
    const other = device === 'cpu' ? null : 'cpu';
    if (other) {
      // compiled for one device, model moved, called with inputs on the old one
      const lin = new kiln.nn.Linear(2, 1, { device: other });
      const f = kiln.compile((x: Tensor) => lin.forward(x));
      await f(kiln.ones([1, 2], { device: other }));
      lin.to(device);
      await expect(f(kiln.ones([1, 2], { device: other }))).rejects.toThrow(new RegExp(`runs on '${other}' .* but uses weight, which is on '${device}'`));
    }
  });

  it('7: a compiled batched matmul called with a larger batch computes every batch (per-spec dispatch grid)', async () => {
    const prev = process.env.KILN_AUTOTUNE;
    process.env.KILN_AUTOTUNE = '0'; // the cold path of the issue: no tuned variant
    try {
      kiln.manualSeed(1);
      const w = kiln.randn([32, 9], { device });
      const step = kiln.compile((x: Tensor) => w.matmul(x));
      const wc = await w.toAsync('cpu');
      for (const batch of [2, 3]) {
        const x = kiln.randn([batch, 9, 676], { device });
        const want = await values(wc.matmul(await x.toAsync('cpu')));
        expectValues(await values(await step(x)), want, LOOSE_TOL, `batch of ${batch}`);
      }
    } finally {
      if (prev === undefined) delete process.env.KILN_AUTOTUNE;
      else process.env.KILN_AUTOTUNE = prev;
    }
  });

  it('19: loops that never read a value are held back (compiled steps settle by themselves; eager loops await webgpu.settle())', async () => {
    const { nn, F } = kiln;
    if (device === 'webgpu') await kiln.webgpu.init(); // as a user would: kiln.webgpu's calls (poolStats) answer once it is loaded
    const model = new nn.Sequential(new nn.Linear(16, 32, { device }), new nn.ReLU(), new nn.Linear(32, 4, { device }));
    const opt = new optim.SGD(model.parameters(), { lr: 0.05 });
    const x = kiln.randn([8, 16], { device });
    const y = t([0, 1, 2, 3, 0, 1, 2, 3], { dtype: 'int32' });
    const body = (): Tensor => { opt.zeroGrad(); const l = F.crossEntropy(model.forward(x), y); l.backward(); opt.step(); return l; };
    const step = kiln.compile(body);
    let loss: Tensor | null = null;
    for (let i = 0; i < 150; i++) loss = await step();
    for (let i = 0; i < 150; i++) { loss = body(); await kiln.webgpu.settle(); }
    expect(Number.isFinite(await loss!.item())).toBe(true);
    if (device === 'webgpu') {
      // dead tensors' buffers went back to the pool and were handed out again (without settling: never)
      expect(kiln.webgpu.poolStats()!.reused).toBeGreaterThan(0);
    }
  });

  it('8: reductions over only size-1 extents compile (softmax(0) of [1, 2]; p.sum() of a [1] parameter)', async () => {
    const { returns } = await compiledEqualsEager(() => {
      const x = kiln.ones([1, 2], { device });
      return { tensors: { x }, step: () => x.softmax(0) };
    });
    expect(returns[0]).toEqual([1, 1]);
    await compiledEqualsEager(() => {
      const p = t([1.5], { requiresGrad: true });
      return { tensors: { p }, step: () => { const l = p.sum().mul(-2); l.backward(); return l; } };
    });
  });

  it('9: in-place updates of reduction results (sum(0), max(dim), logsumexp, matmul with a 1-D operand)', async () => {
    const make = (f: (x: Tensor) => Tensor) => () => {
      const x = t([[1, 2, 3], [4, 5, 6]]);
      return { tensors: { x }, step: () => { const s = f(x); noGrad(() => s.add_(1)); return s; } };
    };
    expect((await compiledEqualsEager(make((x) => x.sum(0)))).returns[0]).toEqual([6, 8, 10]);
    await compiledEqualsEager(make((x) => x.max(1)));
    await compiledEqualsEager(make((x) => x.logsumexp(0)));
    await compiledEqualsEager(make((x) => x.matmul(t([1, 0, -1]))));
  });

  it('10: in-place writes into views of captured tensors and arguments are writes into their base', async () => {
    const { eager } = await compiledEqualsEager(() => {
      const w = t([[1, 2], [3, 4]]);
      return { tensors: { w }, step: () => { noGrad(() => w.index(0).zero_()); return w.sum(); } };
    });
    expect(eager.w).toEqual([0, 0, 3, 4]);
    const r = await compiledEqualsEager(() => {
      const x = t([[1, 2, 3], [4, 5, 6]]), y = t([[7, 8], [9, 10]]);
      return { tensors: { x, y }, args: [y], step: (yy: Tensor) => { noGrad(() => x.index(null, [0, 2]).copy_(yy)); return x.mul(2); } };
    });
    expect(r.eager.x).toEqual([7, 8, 3, 9, 10, 6]);
    // strided slices, written twice, read through another view in between
    await compiledEqualsEager(() => {
      const x = t([[1, 2, 3, 4], [5, 6, 7, 8]]);
      return { tensors: { x }, step: () => {
        const v = x.index(null, [null, null, 2]);
        noGrad(() => v.mul_(-1));
        const seen = x.sum(1);
        noGrad(() => x.index(1).add_(100));
        return [seen, v, x];
      } };
    });
    // an argument that shares memory with a captured tensor written in place: a clear error, nothing changed
    const x = t([[1, 2], [3, 4]]);
    const step = kiln.compile((row: Tensor) => { noGrad(() => x.mul_(2)); return row.sum(); });
    await expect(step(x.index(0))).rejects.toThrow(/argument 0 shares memory with .*clone\(\)/);
    expectValues(await values(x), [1, 2, 3, 4], 'exact', 'x');
  });
});

describeEachDevice('classes the differential fuzzer found (tests/fuzz)', (device) => {
  const t = (data: kiln.NestedData, opts: kiln.TensorOptions = {}): Tensor => kiln.tensor(data, { device, ...opts });

  it('fuzz class "contiguous inplace": contiguous() of a contiguous tensor is the tensor itself, also while tracing', async () => {
    const { eager } = await compiledEqualsEager(() => {
      const x = t([[1, 2], [3, 4]]);
      return { tensors: { x }, args: [x], step: (a: Tensor) => { const c = a.contiguous(); noGrad(() => c.add_(c)); return a.T.contiguous(); } };
    });
    expect(eager.x).toEqual([2, 4, 6, 8]);
    // a reshape that must copy eagerly (of a transposed tensor) is no view while tracing either
    await compiledEqualsEager(() => {
      const x = t([[1, 2], [3, 4]]);
      return { tensors: { x }, step: () => { const r = x.T.reshape([4]); noGrad(() => r.zero_()); return [r, x]; } };
    });
  });

  it('fuzz class "detach inplace reshape|index": a detach() of a traced view aliases the same memory', async () => {
    const { eager } = await compiledEqualsEager(() => {
      const p = t([1], { requiresGrad: true }), q = t([2], { requiresGrad: true });
      return { tensors: { p, q }, step: () => { const v = p.reshape([1]).detach(); noGrad(() => v.sub_(q)); } };
    });
    expect(eager.p).toEqual([-1]);
    await compiledEqualsEager(() => {
      const p = t([1, 1], { requiresGrad: true });
      const opt = new optim.SGD([p], { lr: 0.1 });
      return { tensors: { p }, step: () => { const v = p.index([1, 2]); const d = v.detach(); v.sum().backward(); opt.step(); return d; } };
    });
  });

  it('fuzz class "inplace.copy_ transpose": copy_ from an overlapping view of the same memory raises (PyTorch), eagerly and compiled', async () => {
    const x = t([[1, 2], [3, 4]]);
    throwsMatching(() => x.copy_(x.T), /^copy_: unsupported operation: some elements of the input tensor and the written-to tensor refer to a single memory location/);
    expectValues(await values(x), [1, 2, 3, 4], 'exact', 'x');
    const step = kiln.compile((a: Tensor) => { noGrad(() => a.copy_(a.T)); });
    await expect(step(x)).rejects.toThrow(/single memory location/);
    expectValues(await values(x), [1, 2, 3, 4], 'exact', 'x after the compiled attempt');
    // disjoint views of one tensor copy fine
    await compiledEqualsEager(() => {
      const y = t([[1, 2], [3, 4]]);
      return { tensors: { y }, args: [y], step: (a: Tensor) => { noGrad(() => a.index(0).copy_(a.index(1))); } };
    });
  });
});

describe('issue 13 reproduction 12 [cpu]', () => {
  it('12: a fused chain of 5,000 elementwise ops compiles (iterative walks) and equals eager bit for bit', async () => {
    const x = kiln.tensor([1, 2, 3]);
    const chain = (a: Tensor): Tensor => {
      let y = a;
      for (let i = 0; i < 5000; i++) y = i % 2 ? y.mul(1.0001) : y.add(0.001);
      return y;
    };
    const step = kiln.compile(chain);
    expectValues(await values(await step(x)), await values(chain(x)), 'exact', 'chain');
    expect((await step.lower(x)).kernels.length).toBe(1);
  });
});
