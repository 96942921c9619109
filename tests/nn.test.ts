// nn: Module discovery and naming, modes, state dicts, Parameter, layers, Dropout and the losses on
// tiny cases with values derived by hand (PyTorch's numerics are covered by the golden suites).
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';

const { nn, F } = kiln;
type Tensor = kiln.Tensor;

const vals = (t: Tensor | null): number[] => Array.from(t!.dataSync(), Number);
const t = (data: kiln.NestedData, opts: kiln.TensorOptions = {}): Tensor => kiln.tensor(data, opts);
const i32 = (data: number[]): Tensor => kiln.tensor(Int32Array.from(data));

function expectClose(got: number[], want: number[], tol = 1e-6): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    if (Math.abs(g - want[i]) > tol + tol * Math.abs(want[i])) {
      throw new Error(`element ${i}: got ${g}, expected ${want[i]} (got [${got}], expected [${want}])`);
    }
  });
}

class Net extends nn.Module {
  declare fc1: InstanceType<typeof nn.Linear>;
  declare act: InstanceType<typeof nn.ReLU>;
  declare fc2: InstanceType<typeof nn.Linear>;
  declare scale: Tensor;
  declare cache: Tensor | null;
  declare note: string;
  constructor() {
    super();
    this.fc1 = new nn.Linear(4, 3);
    this.act = new nn.ReLU();
    this.fc2 = new nn.Linear(3, 2);
    this.scale = new nn.Parameter(kiln.ones([2]));
    this.cache = kiln.zeros([2]); // a plain tensor: not a parameter
    this.note = 'ignored';
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.act.forward(this.fc1.forward(x))).mul(this.scale);
  }
}

describe('Parameter', () => {
  it('is a leaf Tensor sharing the storage of its data, instanceof Tensor and nn.Parameter', () => {
    const data = t([1, 2, 3]);
    const p = new nn.Parameter(data);
    expect(p instanceof kiln.Tensor).toBe(true);
    expect(p instanceof nn.Parameter).toBe(true);
    expect(data instanceof nn.Parameter).toBe(false);
    expect(nn.isParameter(p)).toBe(true);
    expect(p.isLeaf).toBe(true);
    expect(p.requiresGrad).toBe(true);
    kiln.noGrad(() => data.add_(10));
    expect(vals(p)).toEqual([11, 12, 13]);
  });

  it('takes { requiresGrad: false } and detaches a tensor with history', () => {
    const p = new nn.Parameter(t([1.5]), { requiresGrad: false });
    expect(p.requiresGrad).toBe(false);
    const x = t([2], { requiresGrad: true });
    const q = new nn.Parameter(x.mul(3));
    expect(q.isLeaf).toBe(true);
    expect(q.gradFn).toBeNull();
    expect(vals(q)).toEqual([6]);
  });

  it('rejects non-tensors and int32 tensors that would require grad', () => {
    expect(() => new nn.Parameter([1, 2] as unknown as Tensor)).toThrow(/Parameter.*Tensor/);
    expect(() => new nn.Parameter(i32([1, 2]))).toThrow(/float32/);
    expect(new nn.Parameter(i32([1, 2]), { requiresGrad: false }).dtype).toBe('int32');
  });
});

describe('Module discovery', () => {
  it('namedParameters: own parameters first, then children in assignment order, with dotted names', () => {
    const net = new Net();
    expect(net.namedParameters().map(([n, p]) => [n, p.shape])).toEqual([
      ['scale', [2]],
      ['fc1.weight', [3, 4]],
      ['fc1.bias', [3]],
      ['fc2.weight', [2, 3]],
      ['fc2.bias', [2]],
    ]);
    expect(net.parameters()).toEqual(net.namedParameters().map(([, p]) => p));
    expect(net.parameters()[1]).toBe(net.fc1.weight);
  });

  it('children, namedChildren and modules', () => {
    const net = new Net();
    expect(net.namedChildren().map(([n]) => n)).toEqual(['fc1', 'act', 'fc2']);
    expect(net.children()).toEqual([net.fc1, net.act, net.fc2]);
    expect(net.modules()).toEqual([net, net.fc1, net.act, net.fc2]);
    expect(net.namedModules().map(([n]) => n)).toEqual(['', 'fc1', 'act', 'fc2']);
  });

  it('a parameter or module shared twice is listed once', () => {
    class Tied extends nn.Module {
      declare a: InstanceType<typeof nn.Linear>;
      declare b: InstanceType<typeof nn.Linear>;
      constructor() {
        super();
        this.a = new nn.Linear(2, 2);
        this.b = this.a;
      }
    }
    const m = new Tied();
    expect(m.namedParameters().map(([n]) => n)).toEqual(['a.weight', 'a.bias']);
    expect(m.children().length).toBe(1);
  });

  it('Sequential names its children 0, 1, ... and runs them in order', () => {
    const seq = new nn.Sequential(new nn.Linear(2, 3), new nn.ReLU(), new nn.Linear(3, 1));
    expect(seq.namedParameters().map(([n]) => n)).toEqual(['0.weight', '0.bias', '2.weight', '2.bias']);
    expect(seq.namedChildren().map(([n]) => n)).toEqual(['0', '1', '2']);
    expect(seq.length).toBe(3);
    const l0 = seq.at(0) as InstanceType<typeof nn.Linear>;
    const l2 = seq.at(-1) as InstanceType<typeof nn.Linear>;
    const x = t([[1, -2], [0.5, 3]]);
    const want = F.linear(F.relu(F.linear(x, l0.weight, l0.bias)), l2.weight, l2.bias);
    expectClose(vals(seq.forward(x)), vals(want));
    expectClose(vals(seq.call(x)), vals(want));
    class Outer extends nn.Module {
      declare body: InstanceType<typeof nn.Sequential>;
      constructor() { super(); this.body = seq; }
    }
    expect(new Outer().namedParameters()[0][0]).toBe('body.0.weight');
  });

  it('train() and eval() set training recursively', () => {
    const net = new nn.Sequential(new nn.Linear(2, 2), new nn.Sequential(new nn.Dropout(0.5), new nn.ReLU()));
    expect(net.modules().every((m) => m.training)).toBe(true);
    expect(net.eval()).toBe(net);
    expect(net.modules().map((m) => m.training)).toEqual([false, false, false, false, false]);
    net.train();
    expect(net.modules().every((m) => m.training)).toBe(true);
    net.train(false);
    expect(net.modules().some((m) => m.training)).toBe(false);
  });

  it('zeroGrad sets every grad to null; to("cpu") keeps the same parameter objects', () => {
    const net = new Net();
    net.forward(kiln.ones([1, 4])).sum().backward();
    expect(net.fc1.weight.grad).not.toBeNull();
    net.zeroGrad();
    expect(net.parameters().every((p) => p.grad === null)).toBe(true);
    const before = net.parameters();
    expect(net.to('cpu')).toBe(net);
    expect(net.parameters()).toEqual(before);
    net.parameters().forEach((p, i) => expect(p).toBe(before[i]));
  });

  it('registerParameter, addModule and registerBuffer', () => {
    const m = new nn.Module();
    m.addModule('lin', new nn.Linear(2, 2));
    m.registerParameter('alpha', new nn.Parameter(kiln.ones([1])));
    m.registerBuffer('runningMean', kiln.zeros([2]));
    expect(m.namedParameters().map(([n]) => n)).toEqual(['alpha', 'lin.weight', 'lin.bias']);
    expect(m.namedBuffers().map(([n]) => n)).toEqual(['runningMean']);
    expect(Object.keys(m.stateDict())).toEqual(['alpha', 'runningMean', 'lin.weight', 'lin.bias']);
    expect(() => m.registerParameter('beta', kiln.ones([1]))).toThrow(/nn\.Parameter/);
  });

  it('a Module without forward says so; toString prints the tree', () => {
    expect(() => new nn.Module().forward()).toThrow(/forward/);
    const s = String(new Net());
    expect(s).toContain('Net(');
    expect(s).toContain('(fc1): Linear(inFeatures=4, outFeatures=3, bias=true)');
    expect(s).toContain('(act): ReLU()');
  });
});

describe('stateDict / loadStateDict', () => {
  it('round trip: detached copies in namedParameters order, loaded in place', () => {
    kiln.manualSeed(1);
    const a = new Net();
    kiln.manualSeed(2);
    const b = new Net();
    const sd = a.stateDict();
    expect(Object.keys(sd)).toEqual(['scale', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    expect(sd['fc1.weight']).not.toBe(a.fc1.weight);
    expect(sd['fc1.weight'].requiresGrad).toBe(false);
    // a copy: changing the model afterwards does not change the dict
    const w0 = vals(a.fc1.weight);
    kiln.noGrad(() => a.fc1.weight.add_(1));
    expect(vals(sd['fc1.weight'])).toEqual(w0);

    const paramsBefore = b.parameters();
    const res = b.loadStateDict(sd);
    expect(res).toEqual({ missingKeys: [], unexpectedKeys: [] });
    b.parameters().forEach((p, i) => expect(p).toBe(paramsBefore[i]));
    expect(vals(b.fc1.weight)).toEqual(w0);
    expect(b.fc1.weight.requiresGrad).toBe(true);
    expect(b.fc1.weight.isLeaf).toBe(true);
    kiln.noGrad(() => a.fc1.weight.copy_(sd['fc1.weight']));
    const x = kiln.randn([3, 4]);
    expect(vals(b.forward(x))).toEqual(vals(a.forward(x)));
  });

  it('missing, unexpected and mis-shaped keys throw naming them, and nothing changes', () => {
    const net = new Net();
    const before = net.parameters().map(vals);
    const check = (dict: Record<string, Tensor>, res: RegExp[]) => {
      let err: Error | null = null;
      try { net.loadStateDict(dict); } catch (e) { err = e as Error; }
      expect(err, 'loadStateDict should throw').not.toBeNull();
      for (const r of res) expect(err!.message).toMatch(r);
      expect(net.parameters().map(vals)).toEqual(before);
    };
    const good = () => {
      const sd = new Net().stateDict();
      for (const k of Object.keys(sd)) sd[k] = kiln.fullLike(sd[k], 7);
      return sd;
    };
    const missing = good();
    delete missing['fc2.bias'];
    check(missing, [/Missing key/, /fc2\.bias/]);
    check({ ...good(), 'fc3.weight': kiln.ones([1]) }, [/Unexpected key/, /fc3\.weight/]);
    check({ ...good(), 'fc1.weight': kiln.ones([4, 3]) }, [/size mismatch/, /fc1\.weight/, /\[4, 3\]/, /\[3, 4\]/]);
    // non-strict loading reports the keys and loads the rest
    const res = net.loadStateDict(missing, { strict: false });
    expect(res.missingKeys).toEqual(['fc2.bias']);
    expect(vals(net.fc1.bias)).toEqual([7, 7, 7]);
    expect(vals(net.fc2.bias)).toEqual(before[4]);
  });

  it('buffers are saved and loaded but are not parameters', () => {
    const loss = new nn.CrossEntropyLoss({ weight: t([1, 2]) });
    expect(loss.parameters()).toEqual([]);
    expect(Object.keys(loss.stateDict())).toEqual(['weight']);
    loss.loadStateDict({ weight: t([3, 4]) });
    expect(vals(loss.weight)).toEqual([3, 4]);
  });
});

describe('layers', () => {
  it('Linear: shapes and PyTorch default init bounds ±1/sqrt(in)', () => {
    kiln.manualSeed(0);
    const lin = new nn.Linear(16, 5);
    expect(lin.weight.shape).toEqual([5, 16]);
    expect(lin.bias!.shape).toEqual([5]);
    expect(nn.isParameter(lin.weight) && nn.isParameter(lin.bias)).toBe(true);
    const bound = 1 / Math.sqrt(16);
    const w = vals(lin.weight), b = vals(lin.bias);
    expect(w.every((v) => Math.abs(v) <= bound)).toBe(true);
    expect(b.every((v) => Math.abs(v) <= bound)).toBe(true);
    expect(Math.max(...w) - Math.min(...w)).toBeGreaterThan(bound); // spread over the interval
    expect(new Set(w).size).toBe(w.length);
    kiln.manualSeed(0);
    expect(vals(new nn.Linear(16, 5).weight)).toEqual(w);
  });

  it('Linear: forward is x W^T + b; bias: false has no bias', () => {
    const lin = new nn.Linear(2, 2);
    kiln.noGrad(() => {
      lin.weight.copy_(t([[1, 2], [3, 4]]));
      lin.bias!.copy_(t([10, 20]));
    });
    expect(vals(lin.forward(t([[1, 1], [2, 0]])))).toEqual([13, 27, 12, 26]);
    const nb = new nn.Linear(3, 2, { bias: false });
    expect(nb.bias).toBeNull();
    expect(nb.namedParameters().map(([n]) => n)).toEqual(['weight']);
    expect(nb.forward(kiln.ones([4, 3])).shape).toEqual([4, 2]);
    expect(() => lin.forward(kiln.ones([1, 3]))).toThrow(/linear/);
  });

  it('activations, Softmax, LogSoftmax, Flatten', () => {
    const x = t([[-1, 0, 2]]);
    expect(vals(new nn.ReLU().forward(x))).toEqual([0, 0, 2]);
    expectClose(vals(new nn.Sigmoid().forward(x)), [1 / (1 + Math.E), 0.5, 1 / (1 + Math.exp(-2))]);
    expectClose(vals(new nn.Tanh().forward(x)), [Math.tanh(-1), 0, Math.tanh(2)]);
    const z = Math.exp(-1) + 1 + Math.exp(2);
    expectClose(vals(new nn.Softmax(1).forward(x)), [Math.exp(-1) / z, 1 / z, Math.exp(2) / z]);
    expectClose(vals(new nn.LogSoftmax(-1).forward(x)), [-1 - Math.log(z), -Math.log(z), 2 - Math.log(z)]);
    expect(new nn.Flatten().forward(kiln.ones([2, 3, 4])).shape).toEqual([2, 12]);
    expect(new nn.Flatten(0, 1).forward(kiln.ones([2, 3, 4])).shape).toEqual([6, 4]);
  });

  it('Dropout: zero or x/(1-p) in training, reproducible with manualSeed, identity in eval', () => {
    const x = kiln.ones([10000]);
    const drop = new nn.Dropout(0.3);
    kiln.manualSeed(42);
    const y = vals(drop.forward(x));
    const scaled = Math.fround(1 / 0.7);
    expect(y.every((v) => v === 0 || Math.abs(v - scaled) < 1e-6)).toBe(true);
    const zeros = y.filter((v) => v === 0).length / y.length;
    expect(zeros).toBeGreaterThan(0.27);
    expect(zeros).toBeLessThan(0.33);
    kiln.manualSeed(42);
    expect(vals(drop.forward(x))).toEqual(y);
    drop.eval();
    expect(drop.forward(x)).toBe(x);
    expect(F.dropout(x, 0.5, false)).toBe(x);
    expect(vals(F.dropout(t([1, 2]), 1))).toEqual([0, 0]);
    expect(() => new nn.Dropout(1.5)).toThrow(/between 0 and 1/);
  });

  it('Dropout: the gradient is the mask scaled by 1/(1-p)', () => {
    kiln.manualSeed(3);
    const x = t([1, 2, 3, 4, 5, 6, 7, 8], { requiresGrad: true });
    const y = F.dropout(x, 0.5);
    y.sum().backward();
    const yv = vals(y), g = vals(x.grad);
    yv.forEach((v, i) => expect(g[i]).toBe(v === 0 ? 0 : 2));
  });
});

describe('losses (hand-derived values)', () => {
  it('mseLoss / MSELoss', () => {
    const a = t([1, 2, 3], { requiresGrad: true });
    const b = t([1, 0, 5]);
    expectClose(vals(F.mseLoss(a, b)), [8 / 3]);
    expect(vals(F.mseLoss(a, b, { reduction: 'sum' }))).toEqual([8]);
    expect(vals(F.mseLoss(a, b, { reduction: 'none' }))).toEqual([0, 4, 4]);
    new nn.MSELoss().forward(a, b).backward();
    expectClose(vals(a.grad), [0, 4 / 3, -4 / 3]);
    expect(() => F.mseLoss(a, kiln.ones([4]))).toThrow(/mseLoss.*\[3\].*\[4\]/);
  });

  it('l1Loss / L1Loss', () => {
    const a = t([1, 2, 3]);
    const b = t([1, 0, 5]);
    expectClose(vals(F.l1Loss(a, b)), [4 / 3]);
    expect(vals(new nn.L1Loss({ reduction: 'sum' }).forward(a, b))).toEqual([4]);
    expect(vals(F.l1Loss(a, b, { reduction: 'none' }))).toEqual([0, 2, 2]);
  });

  it('nllLoss: picks -input[n, t[n]]; weights; ignoreIndex', () => {
    const x = t([[-1, -2, -3], [-4, -5, -6]]);
    const y = i32([2, 0]);
    expect(vals(F.nllLoss(x, y))).toEqual([3.5]);
    expect(vals(F.nllLoss(x, y, { reduction: 'sum' }))).toEqual([7]);
    expect(vals(F.nllLoss(x, y, { reduction: 'none' }))).toEqual([3, 4]);
    const w = t([1, 2, 3]);
    expect(vals(F.nllLoss(x, y, { weight: w, reduction: 'none' }))).toEqual([9, 4]);
    expect(vals(F.nllLoss(x, y, { weight: w }))).toEqual([13 / 4]);
    expect(vals(new nn.NLLLoss({ weight: w }).forward(x, y))).toEqual([13 / 4]);
    const yi = i32([2, -100]);
    expect(vals(F.nllLoss(x, yi))).toEqual([3]);
    expectClose(vals(F.nllLoss(x, yi, { reduction: 'none' })), [3, 0]);
    expect(vals(F.nllLoss(x, i32([1, 1]), { ignoreIndex: 1, reduction: 'sum' }))).toEqual([0]);
    expect(() => F.nllLoss(x, i32([0, 1, 2]))).toThrow(/nllLoss.*\[2\].*\[3\]/);
    expect(() => F.nllLoss(x, t([0, 1]))).toThrow(/nllLoss.*int32/);
  });

  it('crossEntropy / CrossEntropyLoss: equal logits give ln C; gradient is (softmax - onehot)/N', () => {
    const x = t([[1, 1, 1], [2, 2, 2]], { requiresGrad: true });
    const y = i32([0, 2]);
    expectClose(vals(F.crossEntropy(x, y)), [Math.log(3)]);
    expectClose(vals(F.crossEntropy(x, y, { reduction: 'none' })), [Math.log(3), Math.log(3)]);
    new nn.CrossEntropyLoss().forward(x, y).backward();
    expectClose(vals(x.grad), [(1 / 3 - 1) / 2, 1 / 6, 1 / 6, 1 / 6, 1 / 6, (1 / 3 - 1) / 2]);
    // unbatched input [C] with a 0-d target
    expectClose(vals(F.crossEntropy(t([0, 0]), kiln.tensor(1, { dtype: 'int32' }))), [Math.log(2)]);
    // class probabilities of the input's shape
    expectClose(vals(F.crossEntropy(t([[1, 1]]), t([[0.25, 0.75]]))), [Math.log(2)]);
    // float targets with the class-index shape: a clear error naming the op and int32
    expect(() => F.crossEntropy(x, t([0, 2]))).toThrow(/crossEntropy.*int32/);
  });

  it('binaryCrossEntropy / BCELoss: -(y ln p + (1-y) ln(1-p)), logs clamped at -100', () => {
    const p = t([0.5, 0.8], { requiresGrad: true });
    const y = t([1, 0]);
    expectClose(vals(F.binaryCrossEntropy(p, y, { reduction: 'none' })), [Math.log(2), Math.log(5)], 1e-6);
    expectClose(vals(new nn.BCELoss().forward(p, y)), [Math.log(10) / 2], 1e-6);
    F.binaryCrossEntropy(p, y, { reduction: 'sum' }).backward();
    expectClose(vals(p.grad), [-2, 5], 1e-5); // d/dp = -y/p + (1-y)/(1-p)
    const q = t([0, 1], { requiresGrad: true });
    expectClose(vals(F.binaryCrossEntropy(q, t([1, 1]), { reduction: 'none' })), [100, 0]);
    F.binaryCrossEntropy(q, t([1, 1])).backward();
    expect(vals(q.grad).every(Number.isFinite)).toBe(true);
    expect(() => F.binaryCrossEntropy(p, t([1, 0, 1]))).toThrow(/binaryCrossEntropy.*\[3\].*\[2\]/);
  });

  it('binaryCrossEntropyWithLogits / BCEWithLogitsLoss: stable, gradient sigmoid(x) - y', () => {
    const x = t([0, 0, 100, -100], { requiresGrad: true });
    const y = t([1, 0, 0, 1]);
    expectClose(vals(F.binaryCrossEntropyWithLogits(x, y, { reduction: 'none' })), [Math.log(2), Math.log(2), 100, 100], 1e-6);
    new nn.BCEWithLogitsLoss({ reduction: 'sum' }).forward(x, y).backward();
    expectClose(vals(x.grad), [-0.5, 0.5, 1, -1]);
    expectClose(vals(F.binaryCrossEntropyWithLogits(t([0]), t([1]), { posWeight: t([3]) })), [3 * Math.log(2)]);
    expectClose(vals(F.binaryCrossEntropyWithLogits(t([0, 0]), t([1, 0]), { weight: t([2, 0]), reduction: 'sum' })), [2 * Math.log(2)]);
  });

  it('an unknown reduction is an error naming the op', () => {
    expect(() => F.mseLoss(t([1]), t([1]), { reduction: 'avg' as kiln.nn.Reduction })).toThrow(/mseLoss.*reduction/);
    expect(() => new nn.CrossEntropyLoss({ reduction: 'avg' as kiln.nn.Reduction })).toThrow(/CrossEntropyLoss.*reduction/);
  });
});

describe('nn.init', () => {
  it('kaimingUniform_ with a = sqrt(5) has bound 1/sqrt(fanIn); constant_ and zeros_', () => {
    const w = kiln.zeros([3, 25]);
    nn.init.kaimingUniform_(w, { a: Math.sqrt(5) });
    expect(vals(w).every((v) => Math.abs(v) <= 0.2 + 1e-7)).toBe(true);
    expect(vals(w).some((v) => v !== 0)).toBe(true);
    nn.init.constant_(w, 2);
    expect(vals(w).every((v) => v === 2)).toBe(true);
    const p = new nn.Parameter(kiln.ones([2, 2]));
    nn.init.zeros_(p);
    expect(vals(p)).toEqual([0, 0, 0, 0]);
    expect(p.isLeaf && p.requiresGrad).toBe(true);
  });
});

describeEachDevice('nn on a device', (device) => {
  const data = async (x: Tensor | null): Promise<number[]> => Array.from(await x!.data(), Number);

  it('Linear({ device }) and Module.to(device) move parameters in place (the same objects)', async () => {
    const lin = new nn.Linear(3, 2, { device });
    expect(lin.weight.device).toBe(device);
    kiln.manualSeed(5);
    const net = new Net();
    const before = net.parameters();
    const values = await Promise.all(before.map(data));
    expect(net.to(device)).toBe(net);
    net.parameters().forEach((p, i) => {
      expect(p).toBe(before[i]);
      expect(p.device).toBe(device);
      expect(p.isLeaf && p.requiresGrad).toBe(true);
    });
    expect(await Promise.all(net.parameters().map(data))).toEqual(values);
    const x = kiln.ones([2, 4], { device });
    net.forward(x).sum().backward();
    expect(net.fc1.weight.grad!.device).toBe(device);
    await net.toAsync('cpu');
    expect(net.parameters().every((p) => p.device === 'cpu' && p.grad!.device === 'cpu')).toBe(true);
    expect(await Promise.all(net.parameters().map(data))).toEqual(values);
  });

  it('losses and Dropout on the device', async () => {
    const x = kiln.tensor([[1, 1, 1], [2, 2, 2]], { device, requiresGrad: true });
    const y = kiln.tensor(Int32Array.from([0, 2]), { device });
    const loss = F.crossEntropy(x, y);
    expectClose(await data(loss), [Math.log(3)]);
    loss.backward();
    expectClose(await data(x.grad), [(1 / 3 - 1) / 2, 1 / 6, 1 / 6, 1 / 6, 1 / 6, (1 / 3 - 1) / 2]);
    expectClose(await data(F.binaryCrossEntropyWithLogits(kiln.tensor([0, 100], { device }), kiln.tensor([1, 0], { device }), { reduction: 'none' })), [Math.log(2), 100]);
    kiln.manualSeed(7);
    const d = await data(F.dropout(kiln.ones([64], { device }), 0.5));
    expect(d.every((v) => v === 0 || v === 2)).toBe(true);
    expect(d.some((v) => v === 0) && d.some((v) => v === 2)).toBe(true);
  });
});
