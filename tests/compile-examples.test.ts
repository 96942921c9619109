// Compiled == eager on the programs in examples/ and on small training loops: the same
// initial parameters, N >= 20 steps run eagerly and through kiln.compile, then the parameters
// compared (rtol 1e-4, atol 1e-5 x the parameters' scale; README.md of the golden data).
// Also: opt.lr changed between compiled calls takes effect at the next call; a partial last
// batch from a DataLoader retraces once and matches eager; the first shape is not retraced.
import { expect, it } from 'vitest';
import * as kiln from '../index.ts';
import * as dataModule from '../data/index.ts';
import { BasicNNTrain } from '../examples/dose.ts';
import { dataIter, linreg, sgd, squaredLoss } from '../examples/linear-regression.ts';
import { MyModel, MyModelW2Only } from '../examples/autograd.ts';
import { mulberry32 } from '../data/random.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

const { nn, F, optim } = kiln;
type Tensor = kiln.Tensor;
type Module = kiln.nn.Module;

// `data` is part of API.md's index; fall back to the module itself if index.ts does not export it yet.
const data: typeof dataModule = ((kiln as unknown as { data?: typeof dataModule }).data ?? dataModule);

const RTOL = 1e-4;

/** Compare two lists of tensors with rtol 1e-4 and atol 1e-5 x the expected values' scale. */
async function expectSameParams(got: Tensor[], expected: Tensor[], label: string, rtol = RTOL): Promise<void> {
  expect(got.length).toBe(expected.length);
  for (let i = 0; i < got.length; i++) {
    expect(got[i].shape).toEqual(expected[i].shape);
    const e = await values(expected[i]);
    const g = await values(got[i]);
    const scale = Math.max(1, ...e.map(Math.abs));
    expectValues(g, e, { rtol, atol: 1e-5 * scale }, `${label}: parameter ${i} [${expected[i].shape}]`);
  }
}

/** A copy of `src`'s parameters and buffers loaded into `dst` (same initial parameters). */
function copyModel<M extends Module>(src: M, dst: M): M {
  dst.loadStateDict(src.stateDict());
  return dst;
}

class SmallMLP extends nn.Module {
  fc1: kiln.nn.Linear;
  fc2: kiln.nn.Linear;
  constructor(inF: number, hidden: number, out: number, device: 'cpu' | 'webgpu') {
    super();
    this.fc1 = new nn.Linear(inF, hidden, { device });
    this.fc2 = new nn.Linear(hidden, out, { device });
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(F.relu(this.fc1.forward(x.flatten(1))));
  }
}

/** 200 real MNIST test images [200, 1, 28, 28] and labels [200] (the first 200 of the test split). */
let mnistSmall: { x: Tensor; y: Tensor } | null = null;
/** One training step of the seed-002 chain models: squared error, backward, optimizer step, zeroGrad. */
function squaredErrorStep(m: { forward(x: Tensor): Tensor }, opt: kiln.optim.Optimizer, x: Tensor, t: Tensor): Tensor {
  const loss = m.forward(x).sub(t).pow(2);
  loss.backward();
  opt.step();
  opt.zeroGrad();
  return loss;
}

/** One training step of a SmallMLP: cross-entropy, backward, optimizer step, zeroGrad. */
function trainStep(m: SmallMLP, opt: kiln.optim.Optimizer, xb: Tensor, yb: Tensor): Tensor {
  const loss = F.crossEntropy(m.forward(xb), yb);
  loss.backward();
  opt.step();
  opt.zeroGrad();
  return loss;
}

function mnist200(): { x: Tensor; y: Tensor } {
  if (!mnistSmall) {
    const ds = data.mnist({ split: 'test' });
    const [images, labels] = ds.tensors;
    mnistSmall = { x: images.index([0, 200]).contiguous(), y: labels.index([0, 200]).contiguous() };
  }
  return mnistSmall;
}

describeEachDevice('compile == eager (examples)', (device) => {
  it('dose network (examples/dose.ts): 30 epochs, per-sample backward accumulating, compiled epoch', async () => {
    const inputs = kiln.tensor([0, 0.5, 1], { device });
    const labels = kiln.tensor([0, 1, 0], { device });
    const eagerModel = new BasicNNTrain().to(device) as BasicNNTrain;
    const compModel = copyModel(eagerModel, new BasicNNTrain().to(device) as BasicNNTrain);
    const eagerOpt = new optim.SGD(eagerModel.parameters(), { lr: 0.1 });
    const compOpt = new optim.SGD(compModel.parameters(), { lr: 0.1 });

    const epoch = (model: BasicNNTrain, opt: kiln.optim.SGD, xs: Tensor, ys: Tensor): Tensor => {
      let total: Tensor | null = null;
      for (let i = 0; i < 3; i++) {
        const loss = model.forward(xs.index(i)).sub(ys.index(i)).pow(2);
        loss.backward();
        total = total === null ? loss.detach() : total.add(loss.detach());
      }
      opt.step();
      opt.zeroGrad();
      return total!;
    };
    const step = kiln.compile((xs: Tensor, ys: Tensor) => epoch(compModel, compOpt, xs, ys));
    const eagerLosses: number[] = [], compLosses: number[] = [];
    for (let e = 0; e < 30; e++) {
      eagerLosses.push(await epoch(eagerModel, eagerOpt, inputs, labels).item());
      compLosses.push(await (await step(inputs, labels)).item());
    }
    expect(step.traces).toBe(1);
    expectValues(compLosses, eagerLosses, { rtol: RTOL, atol: 1e-5 }, `dose [${device}]: epoch losses`);
    await expectSameParams(compModel.parameters(), eagerModel.parameters(), `dose [${device}]`);
    // the example's conclusion: final_bias converges to about -16
    expect(await compModel.finalBias.item()).toBeCloseTo(-16, 0);
  });

  it('dose network: compiled per-sample step (grads accumulate across calls) + compiled update', async () => {
    const inputs = kiln.tensor([0, 0.5, 1], { device });
    const labels = kiln.tensor([0, 1, 0], { device });
    const eagerModel = new BasicNNTrain().to(device) as BasicNNTrain;
    const compModel = new BasicNNTrain().to(device) as BasicNNTrain;
    const eagerOpt = new optim.SGD(eagerModel.parameters(), { lr: 0.1 });
    const compOpt = new optim.SGD(compModel.parameters(), { lr: 0.1 });
    const sample = kiln.compile((x: Tensor, y: Tensor) => {
      const loss = compModel.forward(x).sub(y).pow(2);
      loss.backward();
      return loss;
    });
    const update = kiln.compile(() => {
      compOpt.step();
      compOpt.zeroGrad();
    }, { device });
    for (let e = 0; e < 20; e++) {
      for (let i = 0; i < 3; i++) {
        const x = inputs.index(i), y = labels.index(i);
        const le = eagerModel.forward(x).sub(y).pow(2);
        le.backward();
        const lc = await sample(x, y);
        expectValues([await lc.item()], [await le.item()], { rtol: RTOL, atol: 1e-5 }, `dose per-sample [${device}] epoch ${e} sample ${i}: loss`);
      }
      await expectSameParams([compModel.finalBias.grad!], [eagerModel.finalBias.grad!], `dose per-sample [${device}] epoch ${e}: accumulated grad`);
      eagerOpt.step();
      eagerOpt.zeroGrad();
      await update();
      expect(compModel.finalBias.grad).toBeNull();
    }
    await expectSameParams(compModel.parameters(), eagerModel.parameters(), `dose per-sample [${device}]`);
  });

  it('linear regression from scratch (examples/linear-regression.ts): 2 epochs of shuffled mini-batches, hand-written sgd', async () => {
    kiln.manualSeed(1);
    const n = 240, batchSize = 10, lr = 0.03;
    // the example's data pipeline (dataIter) works on CPU tensors; batches move to the device
    const features = kiln.randn([n, 2]);
    const labels = features.index(null, 0).mul(2).add(features.index(null, 1).mul(-3.4)).add(4.2).add(kiln.randn([n]).mul(0.01));
    const w0 = kiln.randn([2, 1]).mul(0.01).to(device);
    const we = w0.clone().requiresGrad_(), be = kiln.zeros([1], { device, requiresGrad: true });
    const wc = w0.clone().requiresGrad_(), bc = kiln.zeros([1], { device, requiresGrad: true });
    const body = (X: Tensor, y: Tensor, w: Tensor, b: Tensor): Tensor => {
      const l = squaredLoss(linreg(X, w, b), y).sum();
      l.backward();
      sgd([w, b], lr, batchSize);
      w.grad!.zero_();
      b.grad!.zero_();
      return l;
    };
    const step = kiln.compile((X: Tensor, y: Tensor) => body(X, y, wc, bc));
    const rngE = mulberry32(7), rngC = mulberry32(7);
    let steps = 0;
    for (let epoch = 0; epoch < 2; epoch++) {
      const itE = dataIter(batchSize, features, labels, rngE);
      const itC = dataIter(batchSize, features, labels, rngC);
      for (const [X, y] of itE) {
        const [Xc, yc] = itC.next().value as [Tensor, Tensor];
        const le = await body(X.to(device), y.to(device), we, be).item();
        const lc = await (await step(Xc.to(device), yc.to(device))).item();
        expectValues([lc], [le], { rtol: RTOL, atol: 1e-5 }, `linreg [${device}] step ${steps}: loss`);
        steps++;
      }
    }
    expect(steps).toBe(48);
    await expectSameParams([wc, bc], [we, be], `linreg [${device}]`);
    // and it is learning the true parameters (2, -3.4)
    const w = await values(wc);
    expect(w[0]).toBeGreaterThan(1);
    expect(w[1]).toBeLessThan(-1.5);
    // call 1 sees .grad null, later calls a zeroed .grad: at most 2 traces
    expect(step.traces).toBeLessThanOrEqual(2);
  });

  it('chain rule example (examples/autograd.ts MyModel): 25 SGD steps', async () => {
    const x1 = kiln.tensor([2.0], { device });
    const target = kiln.tensor([1.0], { device });
    const eagerModel = new MyModel().to(device) as MyModel;
    const compModel = new MyModel().to(device) as MyModel;
    // the seed's lr 0.01 diverges to inf/NaN (as in PyTorch); a smaller one converges
    const eagerOpt = new optim.SGD(eagerModel.parameters(), { lr: 1e-5 });
    const compOpt = new optim.SGD(compModel.parameters(), { lr: 1e-5 });
    const body = squaredErrorStep;
    const step = kiln.compile((x: Tensor, t: Tensor) => body(compModel, compOpt, x, t));
    for (let i = 0; i < 25; i++) {
      const le = await body(eagerModel, eagerOpt, x1, target).item();
      const lc = await (await step(x1, target)).item();
      expectValues([lc], [le], { rtol: RTOL, atol: 1e-5 * Math.max(1, Math.abs(le)) }, `chain [${device}] step ${i}: loss`);
    }
    expect(step.traces).toBe(1);
    await expectSameParams(compModel.parameters(), eagerModel.parameters(), `chain [${device}]`);
  });

  it('chain rule example: the seed grads 9520, 7140, 5712 from a compiled backward', async () => {
    const m = new MyModel().to(device) as MyModel;
    const step = kiln.compile((x: Tensor, t: Tensor) => {
      const loss = m.forward(x).sub(t).pow(2);
      loss.backward();
      return loss;
    });
    await step(kiln.tensor([2.0], { device }), kiln.tensor([1.0], { device }));
    expect(await values(m.w1.grad)).toEqual([9520]);
    expect(await values(m.w2.grad)).toEqual([7140]);
    expect(await values(m.w3.grad)).toEqual([5712]);
  });

  it('chain rule exercise (MyModelW2Only): 20 epochs, only w2 trains', async () => {
    const input = kiln.tensor([1.0], { device }), target = kiln.tensor([2.0], { device });
    const eagerModel = new MyModelW2Only().to(device) as MyModelW2Only;
    const compModel = new MyModelW2Only().to(device) as MyModelW2Only;
    // w1 is a plain tensor field (not a Parameter), so Module.to() does not move it
    eagerModel.w1 = eagerModel.w1.to(device);
    compModel.w1 = compModel.w1.to(device);
    const eagerOpt = new optim.SGD([eagerModel.w2], { lr: 0.01 });
    const compOpt = new optim.SGD([compModel.w2], { lr: 0.01 });
    const body = squaredErrorStep;
    const step = kiln.compile((x: Tensor, t: Tensor) => body(compModel, compOpt, x, t));
    for (let i = 0; i < 20; i++) {
      body(eagerModel, eagerOpt, input, target);
      await step(input, target);
    }
    await expectSameParams([compModel.w2, compModel.w1], [eagerModel.w2, eagerModel.w1], `w2 only [${device}]`);
    expect(await compModel.w1.item()).toBe(1);
  });

  it('MLP 784-64-10 on 200 real MNIST images: 5 epochs x 4 batches of SGD, crossEntropy', async () => {
    const { x, y } = mnist200();
    kiln.manualSeed(3);
    const eagerModel = new SmallMLP(784, 64, 10, device);
    const compModel = copyModel(eagerModel, new SmallMLP(784, 64, 10, device));
    const eagerOpt = new optim.SGD(eagerModel.parameters(), { lr: 0.1 });
    const compOpt = new optim.SGD(compModel.parameters(), { lr: 0.1 });
    const body = trainStep;
    const step = kiln.compile((xb: Tensor, yb: Tensor) => body(compModel, compOpt, xb, yb));
    // DataLoader batches CPU tensors (typed-array batching); the batches move to the device
    const ds = new data.TensorDataset(x, y);
    const le: number[] = [], lc: number[] = [];
    for (let epoch = 0; epoch < 5; epoch++) {
      for (const [xc, yc] of new data.DataLoader(ds, { batchSize: 50 })) {
        const [xb, yb] = [xc.to(device), yc.to(device)];
        le.push(await body(eagerModel, eagerOpt, xb, yb).item());
        lc.push(await (await step(xb, yb)).item());
      }
    }
    expect(le.length).toBe(20);
    expect(step.traces).toBe(1);
    expectValues(lc, le, { rtol: RTOL, atol: 1e-5 }, `mnist mlp [${device}]: losses`);
    await expectSameParams(compModel.parameters(), eagerModel.parameters(), `mnist mlp [${device}]`);
    expect(lc[lc.length - 1]).toBeLessThan(lc[0]);
  });

  for (const kind of ['Adam', 'SGD momentum 0.9 nesterov', 'SGD momentum 0.9 dampening 0.1 weightDecay 1e-3', 'AdamW'] as const) {
    it(`${kind}: 24-step trajectory of a small MLP, compiled == eager`, async () => {
      kiln.manualSeed(11);
      const X = kiln.randn([16, 8], { device });
      const Y = kiln.randn([16, 3], { device });
      const eagerModel = new SmallMLP(8, 12, 3, device);
      const compModel = copyModel(eagerModel, new SmallMLP(8, 12, 3, device));
      const mk = (m: SmallMLP): kiln.optim.Optimizer =>
        kind === 'Adam' ? new optim.Adam(m.parameters(), { lr: 0.01 })
          : kind === 'AdamW' ? new optim.AdamW(m.parameters(), { lr: 0.01, weightDecay: 0.05 })
            : kind === 'SGD momentum 0.9 nesterov' ? new optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true })
              : new optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 1e-3 });
      const eagerOpt = mk(eagerModel), compOpt = mk(compModel);
      const body = (m: SmallMLP, opt: kiln.optim.Optimizer, xb: Tensor, yb: Tensor): Tensor => {
        opt.zeroGrad();
        const loss = F.mseLoss(m.forward(xb), yb);
        loss.backward();
        opt.step();
        return loss;
      };
      const step = kiln.compile((xb: Tensor, yb: Tensor) => body(compModel, compOpt, xb, yb));
      for (let i = 0; i < 24; i++) {
        // two alternating half-batches, so the data changes between calls
        const lo = (i % 2) * 8;
        const xb = X.index([lo, lo + 8]).contiguous(), yb = Y.index([lo, lo + 8]).contiguous();
        const le = await body(eagerModel, eagerOpt, xb, yb).item();
        const lc = await (await step(xb, yb)).item();
        expectValues([lc], [le], { rtol: RTOL, atol: 1e-5 }, `${kind} [${device}] step ${i}: loss`);
      }
      await expectSameParams(compModel.parameters(), eagerModel.parameters(), `${kind} [${device}]`);
      // optimizer state was written back too: the step count advanced 24 times
      expect(await compOpt.stepCount.item()).toBe(24);
      expect(step.traces).toBeLessThanOrEqual(2);
    });
  }

  it('weight tying (one Linear used twice) and a parameter the loss never uses: 12 Adam steps, compiled == eager', async () => {
    kiln.manualSeed(13);
    class Tied extends nn.Module {
      shared: kiln.nn.Linear;
      unused: kiln.nn.Linear;
      constructor() {
        super();
        this.shared = new nn.Linear(4, 4, { device });
        this.unused = new nn.Linear(4, 2, { device });
      }
      forward(x: Tensor): Tensor {
        return this.shared.forward(this.shared.forward(x).tanh());
      }
    }
    const eagerModel = new Tied();
    const compModel = copyModel(eagerModel, new Tied());
    const eagerOpt = new optim.Adam(eagerModel.parameters(), { lr: 0.02 });
    const compOpt = new optim.Adam(compModel.parameters(), { lr: 0.02 });
    const X = kiln.randn([5, 4], { device }), Y = kiln.randn([5, 4], { device });
    const body = (m: Tied, opt: kiln.optim.Optimizer, xb: Tensor, yb: Tensor): Tensor => {
      const loss = F.mseLoss(m.forward(xb), yb);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss;
    };
    const step = kiln.compile((xb: Tensor, yb: Tensor) => body(compModel, compOpt, xb, yb));
    const unusedBefore = await values(compModel.unused.weight);
    for (let i = 0; i < 12; i++) {
      const le = await body(eagerModel, eagerOpt, X, Y).item();
      expectValues([await (await step(X, Y)).item()], [le], { rtol: RTOL, atol: 1e-5 }, `tied [${device}] step ${i}: loss`);
    }
    await expectSameParams(compModel.parameters(), eagerModel.parameters(), `tied [${device}]`);
    expect(await values(compModel.unused.weight)).toEqual(unusedBefore);
    expect(compModel.unused.weight.grad).toBeNull();
  });

  it('opt.lr = x between compiled calls takes effect at the next call (SGD and Adam)', async () => {
    for (const which of ['SGD', 'Adam'] as const) {
      kiln.manualSeed(5);
      const X = kiln.randn([6, 4], { device }), Y = kiln.randn([6, 2], { device });
      const eagerModel = new SmallMLP(4, 5, 2, device);
      const compModel = copyModel(eagerModel, new SmallMLP(4, 5, 2, device));
      const mk = (m: SmallMLP) => (which === 'SGD' ? new optim.SGD(m.parameters(), { lr: 0.1 }) : new optim.Adam(m.parameters(), { lr: 0.01 }));
      const eagerOpt = mk(eagerModel), compOpt = mk(compModel);
      const body = (m: SmallMLP, opt: kiln.optim.Optimizer, xb: Tensor, yb: Tensor): Tensor => {
        const loss = F.mseLoss(m.forward(xb), yb);
        loss.backward();
        opt.step();
        opt.zeroGrad();
        return loss;
      };
      const step = kiln.compile((xb: Tensor, yb: Tensor) => body(compModel, compOpt, xb, yb));
      const lrs = which === 'SGD' ? [0.1, 0.1, 0.02, 0.02, 0, 0.3, 0.05] : [0.01, 0.01, 0.001, 0, 0.05, 0.02, 0.02];
      for (const [i, lr] of lrs.entries()) {
        eagerOpt.lr = lr;
        compOpt.lr = lr;
        const before = await values(compModel.fc1.weight);
        body(eagerModel, eagerOpt, X, Y);
        await step(X, Y);
        await expectSameParams(compModel.parameters(), eagerModel.parameters(), `${which} lr schedule [${device}] step ${i} (lr ${lr})`);
        if (lr === 0) expectValues(await values(compModel.fc1.weight), before, 'exact', `${which} [${device}] step ${i}: lr 0 leaves the weights unchanged`);
      }
      expect(step.traces).toBe(1);
    }
  });

  it('a partial last batch from a DataLoader retraces once, matches eager, and the first shape is reused', async () => {
    kiln.manualSeed(9);
    const X = kiln.randn([22, 6]);
    const Y = kiln.randint(0, 3, [22]);
    const eagerModel = new SmallMLP(6, 7, 3, device);
    const compModel = copyModel(eagerModel, new SmallMLP(6, 7, 3, device));
    const eagerOpt = new optim.SGD(eagerModel.parameters(), { lr: 0.2, momentum: 0.5 });
    const compOpt = new optim.SGD(compModel.parameters(), { lr: 0.2, momentum: 0.5 });
    const body = trainStep;
    const step = kiln.compile((xb: Tensor, yb: Tensor) => body(compModel, compOpt, xb, yb));
    const ds = new data.TensorDataset(X, Y);
    const loader = new data.DataLoader(ds, { batchSize: 8, shuffle: true, seed: 4 });
    expect(loader.length).toBe(3);
    const traces: number[] = [];
    const shapes: number[] = [];
    for (let epoch = 0; epoch < 3; epoch++) {
      for (const [xc, yc] of loader) {
        const [xb, yb] = [xc.to(device), yc.to(device)];
        const le = await body(eagerModel, eagerOpt, xb, yb).item();
        const lc = await (await step(xb, yb)).item();
        expectValues([lc], [le], { rtol: RTOL, atol: 1e-5 }, `partial batch [${device}] epoch ${epoch} batch of ${xb.shape[0]}: loss`);
        traces.push(step.traces);
        shapes.push(xb.shape[0]);
      }
    }
    expect(shapes).toEqual([8, 8, 6, 8, 8, 6, 8, 8, 6]);
    expect(traces).toEqual([1, 1, 2, 2, 2, 2, 2, 2, 2]);
    await expectSameParams(compModel.parameters(), eagerModel.parameters(), `partial batch [${device}]`);
  });
});
