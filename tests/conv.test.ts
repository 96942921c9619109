// Convolution and pooling through the public API, on every device: conv + bias + ReLU is one kernel,
// a CNN training step fuses each conv weight's SGD update into the kernel computing its gradient
// (pinned on `lower()`), the compiled step equals eager over 20 steps, bad input is a clear error
// that changes nothing, and Conv2d's default initialisation follows PyTorch's bounds. Then the
// MNIST CNN example itself (compiled == eager over 20 steps, CPU).
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import type { Lowered } from '../jit/compile.ts';
import type { Graph, Node } from '../ir/graph.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';
import { run } from '../examples/mnist-cnn.ts';

const { nn, F, optim } = kiln;
type Tensor = kiln.Tensor;

const graphOf = (l: Lowered): Graph => (l.optimized as unknown as { graph: Graph }).graph;
function kernelNodes(l: Lowered): Node[][] {
  const g = graphOf(l);
  return l.kernels.map((k) => k.ops.map((o) => g.node(Number(/^%(\d+) = /.exec(o.trim())![1]))));
}

/** PyTorch's MNIST Net at a tiny size (the same layers and ops: conv, relu, conv, relu, max_pool2d, dropout, linear). */
class SmallNet extends nn.Module {
  conv1: kiln.nn.Conv2d; conv2: kiln.nn.Conv2d; fc1: kiln.nn.Linear; fc2: kiln.nn.Linear; dropout: kiln.nn.Dropout;
  constructor(device: 'cpu' | 'webgpu', p = 0.25) {
    super();
    this.conv1 = new nn.Conv2d(1, 4, 3).to(device) as kiln.nn.Conv2d;
    this.conv2 = new nn.Conv2d(4, 6, 3, { padding: 1 }).to(device) as kiln.nn.Conv2d;
    this.dropout = new nn.Dropout(p);
    this.fc1 = new nn.Linear(6 * 3 * 3, 8, { device });
    this.fc2 = new nn.Linear(8, 3, { device });
  }
  forward(x: Tensor): Tensor {
    x = F.relu(this.conv1.forward(x));
    x = F.relu(this.conv2.forward(x));
    x = this.dropout.forward(F.maxPool2d(x, 2));
    x = F.relu(this.fc1.forward(x.flatten(1)));
    return F.logSoftmax(this.fc2.forward(x), 1);
  }
}

describeEachDevice('conv', (device) => {
  const data = () => {
    kiln.manualSeed(5);
    return { x: kiln.randn([2, 1, 8, 8], { device }), y: kiln.tensor(Int32Array.from([0, 2]), { shape: [2], dtype: 'int32', device }) };
  };

  it('conv2d + bias + ReLU (no grad) is ONE conv kernel with the bias and the ReLU in its epilogue', async () => {
    kiln.manualSeed(1);
    const conv = new nn.Conv2d(3, 4, 3, { padding: 1 }).to(device) as kiln.nn.Conv2d;
    const step = kiln.compile((x: Tensor) => F.relu(conv.forward(x)));
    const x = kiln.randn([2, 3, 5, 5], { device });
    const l = await kiln.noGrad(() => step.lower(x));
    expect(l.kernels.map((k) => k.name)).toHaveLength(1);
    const ops = kernelNodes(l)[0].map((n) => n.op);
    expect(ops).toEqual(expect.arrayContaining(['conv', 'add', 'relu']));
    const got = await values(await kiln.noGrad(() => step(x)));
    expectValues(got, await values(kiln.noGrad(() => F.relu(conv.forward(x)))), { rtol: 1e-5, atol: 1e-6 }, 'conv+bias+relu');
  });

  it('a CNN + SGD step: each conv weight update is fused into the conv computing its gradient, each bias update into its sum', async () => {
    kiln.manualSeed(2);
    const model = new SmallNet(device, 0);
    const opt = new optim.SGD(model.parameters(), { lr: 0.05 });
    // zeroGrad after the step (as the fusion suite's MLP step): the gradients are not kept, so each is
    // consumed by its update alone (with zeroGrad first, .grad must be written back and stays a buffer)
    const step = kiln.compile((x: Tensor, y: Tensor) => {
      const loss = F.nllLoss(model.forward(x), y);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss;
    });
    const { x, y } = data();
    const l = await step.lower(x, y);
    const g = graphOf(l);
    const nodesOf = kernelNodes(l);
    const kernelWriting = (t: Tensor): Node[] => {
      const o = g.outputs.find((w) => w.kind === 'write' && w.ref === t)!;
      const ks = nodesOf.filter((ns) => ns.some((n) => n.id === o.node));
      expect(ks).toHaveLength(1);
      return ks[0];
    };
    for (const conv of [model.conv1, model.conv2]) {
      const ops = kernelWriting(conv.weight).map((n) => n.op);
      expect(ops, `the kernel writing a conv weight: ${ops.join(' ')}`).toContain('conv');
      expect(ops).toContain('sub');
      const bops = kernelWriting(conv.bias!).map((n) => n.op);
      expect(bops, `the kernel writing a conv bias: ${bops.join(' ')}`).toContain('sum');
    }
    // and in the forward, each conv carries its bias and ReLU
    const convKernels = nodesOf.filter((ns) => ns.some((n) => n.op === 'conv' && n.phase === 'forward'));
    expect(convKernels).toHaveLength(2);
    for (const ns of convKernels) expect(ns.map((n) => n.op)).toEqual(expect.arrayContaining(['add', 'relu']));
  });

  it('compiled == eager for 20 training steps of the small CNN (dropout and max pooling included)', async () => {
    kiln.manualSeed(3);
    const a = new SmallNet(device), b = new SmallNet(device);
    b.loadStateDict(a.stateDict());
    const optA = new optim.SGD(a.parameters(), { lr: 0.05, momentum: 0.9 }), optB = new optim.SGD(b.parameters(), { lr: 0.05, momentum: 0.9 });
    const body = (m: SmallNet, o: kiln.optim.Optimizer) => (x: Tensor, y: Tensor) => {
      o.zeroGrad();
      const loss = F.nllLoss(m.forward(x), y);
      loss.backward();
      o.step();
      return loss;
    };
    const compiled = kiln.compile(body(a, optA));
    const eager = body(b, optB);
    kiln.manualSeed(4);
    const batches = Array.from({ length: 20 }, () => ({ x: kiln.randn([2, 1, 8, 8], { device }), y: kiln.randint(0, 3, [2], { device }) }));
    for (const [i, { x, y }] of batches.entries()) {
      kiln.manualSeed(100 + i); // the same dropout masks in both
      const lc = await (await compiled(x, y)).item();
      kiln.manualSeed(100 + i);
      const le = await eager(x, y).item();
      expectValues([lc], [le], { rtol: 1e-4, atol: 1e-5 }, `loss at step ${i}`);
    }
    for (const [i, p] of a.parameters().entries()) expectValues(await values(p), await values(b.parameters()[i]), { rtol: 1e-4, atol: 1e-5 }, `parameter ${i} after 20 steps`);
    expect(compiled.traces).toBeLessThanOrEqual(2);
  }, 600_000); // 20 eager steps on a software WebGPU adapter are slow on a busy machine

  it('bad input is a clear error naming the op and the shapes, and changes nothing', async () => {
    kiln.manualSeed(6);
    const conv = new nn.Conv2d(3, 4, 3).to(device) as kiln.nn.Conv2d;
    const before = await values(conv.weight);
    const x2 = kiln.randn([1, 2, 5, 5], { device, requiresGrad: true });
    expect(() => conv.forward(x2)).toThrow('conv2d: input [1, 2, 5, 5] has 2 channels but weight [4, 3, 3, 3] expects 3');
    expect(() => conv.forward(kiln.randn([1, 3, 2, 2], { device }))).toThrow('conv2d: kernel [3, 3] is larger than the padded input [2, 2]');
    expect(() => F.conv2d(kiln.randn([1, 4, 5, 5], { device }), kiln.randn([6, 2, 3, 3], { device }), null, { groups: 3 })).toThrow("conv2d: groups 3 does not divide the input's 4 channels");
    expect(() => new nn.Conv2d(4, 6, 3, { groups: 4 })).toThrow('Conv2d: outChannels (6) must be divisible by groups (4)');
    expect(() => F.maxPool2d(kiln.randn([1, 1, 2, 2], { device }), 3)).toThrow('maxPool2d: kernel [3, 3] is larger than the padded input [2, 2]');
    expect(() => F.maxPool2d(kiln.randn([1, 1, 6, 6], { device }), 2, { padding: 2 })).toThrow('maxPool2d: padding [2, 2] should be at most half of the kernel size [2, 2]');
    expect(() => F.conv1d(kiln.randn([1, 2, 5], { device }), kiln.randn([1, 3, 3], { device }))).toThrow('conv1d: input [1, 2, 5] has 2 channels but weight [1, 3, 3] expects 3');
    expect(x2.grad).toBeNull();
    expect(await values(conv.weight)).toEqual(before);
  });

  it('a compiled step with a conv stays on its device and reads back nothing but what it returns', async () => {
    const { x } = data();
    const w = kiln.randn([2, 1, 3, 3], { device });
    const step = kiln.compile((t: Tensor) => F.conv2d(t, w, null, { stride: 2 }).sum());
    const out = await step(x);
    expect(out.device).toBe(device);
    expectValues([await out.item()], [await F.conv2d(x, w, null, { stride: 2 }).sum().item()], { rtol: 1e-5, atol: 1e-5 }, 'sum of a strided conv');
  });
});

describe('a convolution whose gemm applies its epilogue (CPU)', () => {
  it('bias and ReLU written by the gemm as it places each image: the same bits as eager, NaN kept', async () => {
    // 8 output channels of 4 x 8 positions: whole row blocks and panels, so the gemm writes the output
    kiln.manualSeed(3);
    const conv = new nn.Conv2d(3, 8, 3);
    const x = kiln.randn([2, 3, 6, 10]);
    const xs = x.dataSync();
    xs[5] = NaN; // image 0, channel 0: a NaN reaches a few outputs of every output channel
    const xz = kiln.tensor(xs, { shape: [2, 3, 6, 10] });
    const step = kiln.compile((t: Tensor) => F.relu(conv.forward(t)));
    const l = await kiln.noGrad(() => step.lower(xz));
    expect(l.kernels).toHaveLength(1);
    expect(l.kernels[0].source).toContain('relu: true');
    const got = new Uint32Array((await kiln.noGrad(() => step(xz))).dataSync().buffer);
    const want = new Uint32Array(kiln.noGrad(() => F.relu(conv.forward(xz))).dataSync().buffer);
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(Array.from(got).some((b) => b === 0x7fc00000 || (b & 0x7f800000) === 0x7f800000), 'a NaN came through').toBe(true);
  });
});

describe('examples/mnist-cnn.ts', () => {
  it("PyTorch's MNIST Net with Adadelta: 20 compiled steps give the same losses, test loss and accuracy as eager (CPU)", async () => {
    const o = { limit: 160, testLimit: 100, batchSize: 8, logInterval: 1, log: false };
    const eager = await run(o);
    const compiled = await run({ ...o, compile: true });
    expect(eager.losses).toHaveLength(20);
    expectValues(compiled.losses, eager.losses, { rtol: 1e-4, atol: 1e-5 }, 'losses of 20 steps');
    expectValues([compiled.testLoss, compiled.accuracy], [eager.testLoss, eager.accuracy], { rtol: 1e-4, atol: 1e-5 }, 'test loss and accuracy');
    expect(eager.losses.slice(-5).reduce((a, b) => a + b) / 5).toBeLessThan(eager.losses[0]);
  });
});

describe('Conv2d / Conv1d modules', () => {
  it("initialise weight and bias uniformly within ±1/sqrt(fanIn) (PyTorch's default) and print like PyTorch", async () => {
    kiln.manualSeed(0);
    const m = new nn.Conv2d(4, 8, [3, 5], { groups: 2, bias: true });
    expect(m.weight.shape).toEqual([8, 2, 3, 5]);
    const bound = 1 / Math.sqrt(2 * 3 * 5);
    for (const t of [m.weight, m.bias!]) {
      const v = await values(t);
      expect(Math.max(...v.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...v.map(Math.abs))).toBeGreaterThan(bound * 0.8);
    }
    expect(String(new nn.Conv1d(2, 3, 4, { bias: false }))).toContain('Conv1d(2, 3, kernelSize=[4], bias=false)');
    expect(m.parameters()).toHaveLength(2);
    expect(new nn.Conv2d(1, 1, 3, { bias: false }).parameters()).toHaveLength(1);
  });
});
