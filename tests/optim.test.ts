// optim: option validation, opt.lr, skipping params whose grad is null, in-place updates of the
// same Parameter objects, eagerly created state, and small updates derived by hand
// (PyTorch's trajectories are covered by golden-optim.test.ts).
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';

const { nn, optim } = kiln;
type Tensor = kiln.Tensor;

const vals = (t: Tensor | null): number[] => Array.from(t!.dataSync(), Number);
const param = (data: number[]): Tensor => new nn.Parameter(kiln.tensor(data));

function expectClose(got: number[], want: number[], tol = 1e-6): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    if (Math.abs(g - want[i]) > tol + tol * Math.abs(want[i])) throw new Error(`element ${i}: got ${g}, expected ${want[i]} (got [${got}], expected [${want}])`);
  });
}

/** loss = sum(p * g): the gradient of p is exactly g. */
function linearStep(opt: kiln.optim.Optimizer, ps: Tensor[], gs: number[][]): void {
  opt.zeroGrad();
  ps.map((p, i) => p.mul(kiln.tensor(gs[i])).sum()).reduce((a, b) => a.add(b)).backward();
  opt.step();
}

describe('option validation', () => {
  it('a negative learning rate is a clear error', () => {
    for (const make of [
      () => new optim.SGD([param([1])], { lr: -0.1 }),
      () => new optim.Adam([param([1])], { lr: -0.1 }),
      () => new optim.AdamW([param([1])], { lr: -0.1 }),
    ]) expect(make).toThrow(/(SGD|Adam|AdamW): invalid learning rate: -0\.1/);
  });

  it('other bad options', () => {
    const ps = () => [param([1])];
    expect(() => new optim.SGD(ps(), { lr: 0.1, momentum: -1 })).toThrow(/SGD: invalid momentum/);
    expect(() => new optim.SGD(ps(), { lr: 0.1, weightDecay: -1 })).toThrow(/SGD: invalid weightDecay/);
    expect(() => new optim.SGD(ps(), { lr: 0.1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => new optim.SGD(ps(), { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => new optim.Adam(ps(), { betas: [1, 0.999] })).toThrow(/Adam: invalid beta parameter at index 0/);
    expect(() => new optim.Adam(ps(), { betas: [0.9, -0.1] })).toThrow(/Adam: invalid beta parameter at index 1/);
    expect(() => new optim.AdamW(ps(), { eps: -1 })).toThrow(/AdamW: invalid epsilon/);
    expect(() => new optim.SGD(ps(), { lr: 0.1, weight_decay: 0.1 } as kiln.optim.SGDOptions)).toThrow(/SGD: unknown option 'weight_decay'/);
    expect(() => new optim.SGD([], { lr: 0.1 })).toThrow(/empty parameter list/);
    const x = kiln.tensor([1], { requiresGrad: true });
    expect(() => new optim.SGD([x.mul(2)], { lr: 0.1 })).toThrow(/non-leaf/);
  });
});

describe('opt.lr', () => {
  it('reads the learning rate; setting it changes the next step; a bad value is rejected', () => {
    const p = param([1]);
    const opt = new optim.SGD([p], { lr: 0.1 });
    expect(opt.lr).toBe(0.1);
    linearStep(opt, [p], [[1]]);
    expectClose(vals(p), [0.9]);
    opt.lr = 0.01;
    expect(opt.lr).toBe(0.01);
    linearStep(opt, [p], [[1]]);
    expectClose(vals(p), [0.89]);
    expect(() => { opt.lr = -1; }).toThrow(/invalid learning rate/);
    expect(opt.lr).toBe(0.01);
  });

  it('Adam reads the new lr too', () => {
    const p = param([1]);
    const opt = new optim.Adam([p], { lr: 0.1 });
    opt.lr = 0.2;
    linearStep(opt, [p], [[3]]);
    expectClose(vals(p), [0.8], 1e-5); // the first Adam step moves by lr * sign(g)
  });
});

describe('updates', () => {
  it('params whose grad is null are skipped (even with momentum and weight decay)', () => {
    for (const make of [
      (ps: Tensor[]) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, weightDecay: 0.1 }),
      (ps: Tensor[]) => new optim.Adam(ps, { lr: 0.1, weightDecay: 0.1 }),
      (ps: Tensor[]) => new optim.AdamW(ps, { lr: 0.1 }),
    ]) {
      const a = param([1, 2]);
      const b = param([3]);
      const opt = make([a, b]);
      opt.zeroGrad();
      a.mul(a).sum().backward();
      expect(b.grad).toBeNull();
      opt.step();
      expect(vals(b)).toEqual([3]);
      expect(vals(a)).not.toEqual([1, 2]);
    }
  });

  it('updates the same Parameter objects in place; they stay leaves that require grad', () => {
    kiln.manualSeed(0);
    const model = new nn.Sequential(new nn.Linear(3, 2), new nn.ReLU(), new nn.Linear(2, 1));
    const ps = model.parameters();
    const before = ps.map(vals);
    const opt = new optim.Adam(model.parameters(), { lr: 0.01 });
    for (let i = 0; i < 3; i++) {
      opt.zeroGrad();
      kiln.F.mseLoss(model.forward(kiln.ones([4, 3])), kiln.zeros([4, 1])).backward();
      opt.step();
    }
    const after = model.parameters();
    after.forEach((p, i) => {
      expect(p).toBe(ps[i]);
      expect(p.isLeaf).toBe(true);
      expect(p.requiresGrad).toBe(true);
    });
    expect((model.at(0) as InstanceType<typeof nn.Linear>).weight).toBe(ps[0]);
    expect(after.map(vals)).not.toEqual(before);
  });

  it('zeroGrad sets grads to null', () => {
    const p = param([1]);
    const opt = new optim.SGD([p], { lr: 0.1 });
    p.mul(2).sum().backward();
    expect(p.grad).not.toBeNull();
    opt.zeroGrad();
    expect(p.grad).toBeNull();
  });

  it('state is created eagerly and updated in place', () => {
    const p = param([1, 2]);
    const sgd = new optim.SGD([p], { lr: 0.1, momentum: 0.9 });
    const buf = sgd.momentumBuffers[0]!;
    expect(vals(buf)).toEqual([0, 0]);
    expect(vals(sgd.stepCount)).toEqual([0]);
    expect(sgd.stepCount.shape).toEqual([]);
    linearStep(sgd, [p], [[1, 2]]);
    linearStep(sgd, [p], [[1, 2]]);
    expect(sgd.momentumBuffers[0]).toBe(buf);
    expectClose(vals(buf), [1.9, 3.8]);
    expect(vals(sgd.stepCount)).toEqual([2]);
    expect(new optim.SGD([p], { lr: 0.1 }).momentumBuffers).toEqual([null]);

    const adam = new optim.Adam([p]);
    const [m, v] = [adam.expAvg[0], adam.expAvgSq[0]];
    expect(vals(m)).toEqual([0, 0]);
    linearStep(adam, [p], [[1, 2]]);
    expect(adam.expAvg[0]).toBe(m);
    expectClose(vals(m), [0.1, 0.2]);
    expectClose(vals(v), [0.001, 0.004]);
  });

  it('step(closure) evaluates the closure with grad enabled and returns its loss', () => {
    const p = param([2]);
    const opt = new optim.SGD([p], { lr: 0.25 });
    const loss = kiln.noGrad(() => opt.step(() => {
      opt.zeroGrad();
      const l = p.mul(p).sum();
      l.backward();
      return l;
    }));
    expect(vals(loss!)).toEqual([4]);
    expect(vals(p)).toEqual([1]); // 2 - 0.25 * 4
  });
});

describe('hand-derived trajectories (gradient 1 at every step)', () => {
  const run = (make: (ps: Tensor[]) => kiln.optim.Optimizer, steps: number): number => {
    const p = param([1]);
    const opt = make([p]);
    for (let i = 0; i < steps; i++) linearStep(opt, [p], [[1]]);
    return vals(p)[0];
  };

  it('SGD', () => {
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1 }), 2)).toBeCloseTo(0.8, 6);
    // weight decay: g = 1 + 0.5 p -> 1 - 0.1 * 1.5 = 0.85
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1, weightDecay: 0.5 }), 1)).toBeCloseTo(0.85, 6);
  });

  it('SGD momentum: the first buffer is the gradient itself (no dampening on step 1)', () => {
    // buf1 = 1 -> 0.9; buf2 = 0.9 + 0.5 = 1.4 -> 0.76
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, dampening: 0.5 }), 1)).toBeCloseTo(0.9, 6);
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, dampening: 0.5 }), 2)).toBeCloseTo(0.76, 6);
    // buf2 = 0.9 + 1 = 1.9 -> 0.9 - 0.19 = 0.71
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9 }), 2)).toBeCloseTo(0.71, 6);
  });

  it('SGD nesterov: g + momentum * buf', () => {
    // step 1: buf = 1, d = 1 + 0.9 = 1.9 -> 0.81; step 2: buf = 1.9, d = 1 + 1.71 = 2.71 -> 0.539
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true }), 1)).toBeCloseTo(0.81, 6);
    expect(run((ps) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true }), 2)).toBeCloseTo(0.539, 6);
  });

  it('Adam and AdamW: bias correction makes each step lr * g / (|g| + eps) for a constant gradient', () => {
    expect(run((ps) => new optim.Adam(ps, { lr: 0.1 }), 3)).toBeCloseTo(0.7, 5);
    // AdamW: p <- p * (1 - 0.1 * 0.1) then -0.1: 0.99 - 0.1 = 0.89
    expect(run((ps) => new optim.AdamW(ps, { lr: 0.1, weightDecay: 0.1 }), 1)).toBeCloseTo(0.89, 5);
    // AdamW's default weight decay is 0.01
    expect(run((ps) => new optim.AdamW(ps, { lr: 0.1 }), 1)).toBeCloseTo(0.999 - 0.1, 5);
  });
});

describeEachDevice('optim on a device', (device) => {
  const data = async (x: Tensor | null): Promise<number[]> => Array.from(await x!.data(), Number);

  it('state created before model.to(device) follows the parameters', async () => {
    const model = new nn.Linear(2, 1);
    kiln.noGrad(() => {
      model.weight.copy_(kiln.tensor([[1, 2]]));
      model.bias!.copy_(kiln.tensor([0]));
    });
    const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
    model.to(device);
    for (let i = 0; i < 2; i++) {
      opt.zeroGrad();
      model.forward(kiln.tensor([[1, 1]], { device })).sum().backward(); // grads: w [1, 1], b [1]
      opt.step();
    }
    expect(opt.stepCount.device).toBe(device);
    expect(opt.momentumBuffers[0]!.device).toBe(device);
    // buf: 1 then 1.9; w: 1 - 0.1 - 0.19
    expectClose(await data(model.weight), [0.71, 1.71]);
    expectClose(await data(model.bias), [-0.29]);
  });

  it('Adam on the device', async () => {
    const p = new nn.Parameter(kiln.tensor([1, -1], { device }));
    const opt = new optim.Adam([p], { lr: 0.1 });
    for (let i = 0; i < 2; i++) {
      opt.zeroGrad();
      p.mul(kiln.tensor([2, -3], { device })).sum().backward();
      opt.step();
    }
    expectClose(await data(p), [0.8, -0.8], 1e-5);
  });
});

describe('Optimizer.stateDict / loadStateDict', () => {
  it('round trip continues the same trajectory; a mismatched dict throws and changes nothing', () => {
    const make = () => {
      const p = param([1, 2]);
      return { p, opt: new optim.Adam([p], { lr: 0.1 }) };
    };
    const a = make();
    linearStep(a.opt, [a.p], [[1, -1]]);
    const sd = a.opt.stateDict();
    // PyTorch's layout (torch.optim.Adam.state_dict()), in kiln's spelling
    expect(Object.keys(sd.state)).toEqual(['0']);
    expect(Object.keys(sd.state[0])).toEqual(['step', 'expAvg', 'expAvgSq']);
    expect(vals(sd.state[0].step!)).toEqual([1]);
    expect(sd.paramGroups).toEqual([{ lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false, maximize: false, params: [0] }]);
    const b = make();
    kiln.noGrad(() => b.p.copy_(a.p));
    b.opt.lr = 0.5;
    b.opt.loadStateDict(sd);
    expect(b.opt.lr).toBe(0.1);
    linearStep(a.opt, [a.p], [[2, 3]]);
    linearStep(b.opt, [b.p], [[2, 3]]);
    expect(vals(b.p)).toEqual(vals(a.p));
    const c = new optim.Adam([param([1, 2, 3])]);
    const before = vals(c.expAvg[0]);
    expect(() => c.loadStateDict(sd)).toThrow(/size mismatch for state\.0\.expAvg.*\[2\].*\[3\]/);
    expect(vals(c.expAvg[0])).toEqual(before);
    expect(() => new optim.SGD([param([1, 2])], { lr: 0.1 }).loadStateDict(sd)).toThrow(/unexpected state\.0\.expAvg/);
    expect(() => new optim.Adam([param([1, 2])], { lr: 0.1, eps: 1e-6 }).loadStateDict(sd)).toThrow(/paramGroups\[0\]\.eps is 1e-8/);
    const amsgrad = { ...sd, paramGroups: [{ ...sd.paramGroups[0], amsgrad: true }] };
    expect(() => b.opt.loadStateDict(amsgrad)).toThrow(/amsgrad/);
  });

  it('SGD keeps PyTorch\'s momentumBuffer; without momentum there is no state', () => {
    const p = param([1, 2]);
    const opt = new optim.SGD([p], { lr: 0.1, momentum: 0.9 });
    linearStep(opt, [p], [[1, -1]]);
    const sd = opt.stateDict();
    expect(Object.keys(sd.state[0])).toEqual(['momentumBuffer']);
    expect(sd.paramGroups[0]).toEqual({ lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, params: [0] });
    const q = param([1, 2]);
    const other = new optim.SGD([q], { lr: 0.1, momentum: 0.9 });
    kiln.noGrad(() => q.copy_(p));
    other.loadStateDict(sd);
    linearStep(opt, [p], [[2, 3]]);
    linearStep(other, [q], [[2, 3]]);
    expect(vals(q)).toEqual(vals(p));
    expect(new optim.SGD([param([1])], { lr: 0.1 }).stateDict().state).toEqual({});
    // each parameter keeps its own step (PyTorch's state[p]['step']): differing steps load as they are
    const adam = new optim.Adam([param([1]), param([2])]);
    const two = adam.stateDict();
    two.state[1].step = kiln.tensor(5);
    adam.loadStateDict(two);
    expect(adam.paramSteps.map(vals)).toEqual([[0], [5]]);
    expect(vals(adam.stepCount)).toEqual([5]);
  });
});
