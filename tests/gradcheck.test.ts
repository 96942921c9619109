// The gradcheck suite: every differentiable op of the public API, as the golden files exercise it
// (elementwise, reductions, matmul, shape, indexing, losses, nn: 200+ cases), plus float64-only cases
// (tests/fixtures/float64-torch.json, written by real PyTorch in float64 with gen_float64.py):
//  - [cpu] float64, eager and compiled: output and gradients against PyTorch's float64 values;
//  - [cpu] kiln.autograd.gradcheck, eager and compiled: the whole analytic Jacobian against central
//    differences in float64 (cases tagged "kink" are left to the PyTorch comparison: at a kink the
//    central difference averages the two sides, the analytic gradient follows PyTorch's convention);
//  - [cpu] gradgradcheck (second order), eager and compiled, for a handful of functions;
//  - [webgpu] float32 gradients, eager and compiled, against the CPU's float64 gradients within the
//    golden case's float32 tolerance.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { testDevices } from './devices.ts';
import { describeMismatch, evalExpr, loadGolden, type GTensor, type OpCase, type Tol } from './golden.ts';

type Tensor = kiln.Tensor;
const { autograd, F, nn } = kiln;

interface RefTensor { shape: number[]; dtype: 'float64' | 'float32' | 'int32' | 'bool'; data: number[] }
interface RefCase { file?: string; name: string; expr?: string; torch?: string; inputs?: Record<string, RefTensor>; output: RefTensor; gradOutput?: RefTensor | null; grads: Record<string, RefTensor | null> }
const ref = JSON.parse(readFileSync(new URL('./fixtures/float64-torch.json', import.meta.url), 'utf8')) as { cases: RefCase[]; extra: RefCase[] };

const FILES = ['elementwise', 'reductions', 'matmul', 'shape', 'indexing', 'losses', 'nn', 'layers', 'norm'];
/** Golden op cases with at least one input that requires grad, with PyTorch's float64 result. */
const cases = FILES.flatMap((file) => loadGolden(file).cases
  .filter((c): c is OpCase => c.kind === 'op' && Object.values(c.inputs).some((i) => i.requiresGrad))
  .map((c) => ({ file, c, torch: ref.cases.find((r) => r.file === file && r.name === c.name)! })));

/** float64 agrees with PyTorch's float64 to within a few ulps of libm differences (exp, log, tanh...). */
const F64_TOL: Tol = { rtol: 1e-9, atol: 1e-12 };

/**
 * A tensor from golden or reference data, on `device`: float values as float64 (the decimals, as
 * PyTorch read them), as float32, or as float64 holding exactly the float32 values ('float32-exact').
 */
function build(g: GTensor | RefTensor, device: 'cpu' | 'webgpu', requiresGrad: boolean, floatType: 'float64' | 'float32' | 'float32-exact' = 'float64'): Tensor {
  if (g.dtype === 'int32') return kiln.tensor(Int32Array.from(g.data), { shape: g.shape, device });
  if (g.dtype === 'bool') return kiln.tensor(Uint8Array.from(g.data), { shape: g.shape, dtype: 'bool', device });
  const data = floatType === 'float64' ? Float64Array.from(g.data) : floatType === 'float32' ? Float32Array.from(g.data) : Float64Array.from(Float32Array.from(g.data));
  return kiln.tensor(data, { shape: g.shape, device, requiresGrad });
}

function expectClose(t: Tensor | null | undefined, expected: RefTensor | GTensor, tol: Tol, label: string, dtype?: string): void {
  if (!t) throw new Error(`${label}: expected a tensor, got ${t}`);
  expect(t.shape, `${label}: shape`).toEqual(expected.shape);
  if (dtype) expect(t.dtype, `${label}: dtype`).toBe(dtype);
  const msg = describeMismatch(t.dataSync(), expected.data, tol, expected.dtype === 'int32' || expected.dtype === 'bool', expected.shape);
  if (msg) throw new Error(`${label}: ${msg}`);
}

const outDtype = (r: RefTensor): string => r.dtype;

/** out = expr(inputs); out.backward(gradOutput) inside one function, returning [out, ...grads of gradNames]. */
function program(expr: string, names: string[], gradNames: string[], withGradOut: boolean) {
  return (...args: Tensor[]): Tensor[] => {
    const ins = args.slice(0, names.length);
    const out = evalExpr(expr, names, ins) as Tensor;
    out.backward(withGradOut ? args[names.length] : undefined);
    return [out, ...gradNames.map((n) => ins[names.indexOf(n)].grad ?? kiln.zerosLike(ins[names.indexOf(n)]))];
  };
}

/** Runs a case eagerly or compiled on the CPU in float64 and compares with PyTorch float64. */
async function againstTorch(expr: string, inputs: Record<string, GTensor | RefTensor>, gradOutput: GTensor | RefTensor | null | undefined, torch: RefCase, compiled: boolean, label: string): Promise<void> {
  const names = Object.keys(inputs);
  const gradNames = Object.keys(torch.grads).filter((n) => torch.grads[n] !== null);
  const xs = names.map((n) => build(inputs[n], 'cpu', n in torch.grads));
  const gout = gradOutput ? [build(gradOutput, 'cpu', false, torch.output.dtype === 'float32' ? 'float32' : 'float64')] : [];
  const run = program(expr, names, gradNames, gout.length > 0);
  const res = compiled ? await kiln.compile(run)(...xs, ...gout) : run(...xs, ...gout);
  expectClose(res[0], torch.output, F64_TOL, `${label}: output`, outDtype(torch.output));
  gradNames.forEach((n, k) => {
    expectClose(res[1 + k], torch.grads[n]!, F64_TOL, `${label}: ${n}.grad`, 'float64');
    expectClose(xs[names.indexOf(n)].grad, torch.grads[n]!, F64_TOL, `${label}: ${n}.grad (on the tensor)`, 'float64');
  });
}

/** The case as a function of its inputs, for gradcheck (inputs that require grad in float64). */
function checkArgs(expr: string, inputs: Record<string, GTensor | RefTensor>, differentiable: (name: string) => boolean): [(...xs: Tensor[]) => Tensor, Tensor[]] {
  const names = Object.keys(inputs);
  const xs = names.map((n) => build(inputs[n], 'cpu', differentiable(n)));
  return [(...a: Tensor[]) => evalExpr(expr, names, a) as Tensor, xs];
}

describe('float64 against PyTorch float64 [cpu]', () => {
  it('the fixture covers every golden case with gradients', () => {
    expect(cases.length).toBeGreaterThan(200);
    for (const { file, c, torch } of cases) expect(torch, `${file}: ${c.name}`).toBeDefined();
  });
  for (const { file, c, torch } of cases) {
    it(`${file}: ${c.name} (eager and compiled)`, async () => {
      const label = `${file}: ${c.name} (${c.expr})`;
      await againstTorch(c.expr, c.inputs, c.gradOutput, torch, false, `${label} eager`);
      await againstTorch(c.expr, c.inputs, c.gradOutput, torch, true, `${label} compiled`);
    });
  }
  for (const e of ref.extra) {
    it(`float64 only: ${e.name} (eager and compiled)`, async () => {
      await againstTorch(e.expr!, e.inputs!, e.gradOutput, e, false, `${e.name} eager`);
      await againstTorch(e.expr!, e.inputs!, e.gradOutput, e, true, `${e.name} compiled`);
    });
  }
});

describe('gradcheck: analytic Jacobians against central differences in float64 [cpu]', () => {
  for (const { file, c } of cases.filter(({ c }) => !c.tags.includes('kink'))) {
    it(`${file}: ${c.name}`, async () => {
      const [fn, xs] = checkArgs(c.expr, c.inputs, (n) => !!c.inputs[n].requiresGrad);
      expect(await autograd.gradcheck(fn, xs)).toBe(true);
      expect(await autograd.gradcheck(fn, xs, { compile: kiln.compile })).toBe(true);
    });
  }
  // The large matmuls are checked against PyTorch above (their Jacobians have ~10^6 entries), and so are
  // the cases that round through float32 on purpose (a difference of 1e-6 drowns in float32 rounding).
  const checkable = (e: RefCase) => Object.values(e.inputs!).reduce((n, t) => n + t.data.length, 0) <= 200 && !/^(cast|mixed)\//.test(e.name);
  for (const e of ref.extra.filter(checkable)) {
    it(`float64 only: ${e.name}`, async () => {
      const [fn, xs] = checkArgs(e.expr!, e.inputs!, (n) => n in e.grads);
      expect(await autograd.gradcheck(fn, xs)).toBe(true);
      expect(await autograd.gradcheck(fn, xs, { compile: kiln.compile })).toBe(true);
    });
  }

  it('layers: nn.Linear / Sequential converted with double(), with respect to the input, eager and compiled', async () => {
    kiln.manualSeed(3);
    const model = new nn.Sequential(new nn.Linear(3, 4), new nn.Tanh(), new nn.Linear(4, 2), new nn.LogSoftmax(1)).double();
    for (const p of model.parameters()) expect(p.dtype).toBe('float64');
    const x = kiln.randn([2, 3], { dtype: 'float64', requiresGrad: true });
    expect(await autograd.gradcheck((a) => model.forward(a), [x])).toBe(true);
    expect(await autograd.gradcheck((a) => model.forward(a), [x], { compile: kiln.compile })).toBe(true);
    // and with respect to the weights, through the functional form
    const [w, b] = [model.parameters()[0].detach().requiresGrad_(), model.parameters()[1].detach().requiresGrad_()];
    expect(await autograd.gradcheck((a, ww, bb) => F.linear(a, ww, bb).sigmoid(), [x, w, b], { compile: kiln.compile })).toBe(true);
  });

  it('every module of nn, in float64, eager and compiled', { timeout: 30_000 }, async () => {
    kiln.manualSeed(5);
    const x = kiln.randn([2, 3, 2], { dtype: 'float64', requiresGrad: true });
    const y = kiln.randn([2, 3, 2], { dtype: 'float64' });
    const p = kiln.rand([2, 3, 2], { dtype: 'float64' }).mul(0.8).add(0.1);
    // each module built once, so every evaluation sees the same weights
    const modules: [string, kiln.nn.Module, (m: kiln.nn.Module, a: Tensor) => Tensor][] = [
      ['Linear', new nn.Linear(2, 3).double(), (m, a) => m.forward(a)],
      ['Identity', new nn.Identity(), (m, a) => m.forward(a)],
      ['ReLU', new nn.ReLU(), (m, a) => m.forward(a)],
      ['Sigmoid', new nn.Sigmoid(), (m, a) => m.forward(a)],
      ['Tanh', new nn.Tanh(), (m, a) => m.forward(a)],
      ['Softmax', new nn.Softmax(1), (m, a) => m.forward(a)],
      ['LogSoftmax', new nn.LogSoftmax(-1), (m, a) => m.forward(a)],
      ['Flatten', new nn.Flatten(), (m, a) => m.forward(a).exp()],
      ['Dropout (eval)', new nn.Dropout(0.5).eval(), (m, a) => m.forward(a)],
      ['GELU', new nn.GELU(), (m, a) => m.forward(a)],
      ['SiLU', new nn.SiLU(), (m, a) => m.forward(a)],
      ['LeakyReLU', new nn.LeakyReLU(0.1), (m, a) => m.forward(a)],
      ['ELU', new nn.ELU(), (m, a) => m.forward(a)],
      ['Softplus', new nn.Softplus(), (m, a) => m.forward(a)],
      ['LayerNorm', new nn.LayerNorm(2).double(), (m, a) => m.forward(a)],
      ['GroupNorm', new nn.GroupNorm(1, 3).double(), (m, a) => m.forward(a)],
      ['BatchNorm1d (training)', new nn.BatchNorm1d(3).double(), (m, a) => m.forward(a)],
      ['BatchNorm1d (eval)', new nn.BatchNorm1d(3).double().eval(), (m, a) => m.forward(a)],
      ['MSELoss', new nn.MSELoss(), (m, a) => m.forward(a, y)],
      ['L1Loss', new nn.L1Loss({ reduction: 'sum' }), (m, a) => m.forward(a, y)],
      ['NLLLoss', new nn.NLLLoss(), (m, a) => m.forward(a.reshape([6, 2]), kiln.tensor([0, 1, 1, 0, 1, 0], { dtype: 'int32' }))],
      ['CrossEntropyLoss', new nn.CrossEntropyLoss(), (m, a) => m.forward(a, kiln.tensor([[0, 1], [2, 0]], { dtype: 'int32' }))],
      ['BCELoss', new nn.BCELoss(), (m, a) => m.forward(a.sigmoid(), p)],
      ['BCEWithLogitsLoss', new nn.BCEWithLogitsLoss(), (m, a) => m.forward(a, p)],
    ];
    const emb = new nn.Embedding(5, 2).double();
    modules.push(['Embedding (then tanh, as a function of x)', emb, (m, a) => (m as InstanceType<typeof nn.Embedding>).forward(kiln.tensor([[4, 0, 4]], { dtype: 'int32' })).mul(a.index(0))]);
    for (const [name, m, apply] of modules) {
      expect(await autograd.gradcheck((a) => apply(m, a), [x]), name).toBe(true);
      expect(await autograd.gradcheck((a) => apply(m, a), [x], { compile: kiln.compile }), name).toBe(true);
    }
  });

  it('a wrong gradient is caught, with the entries named (eager and compiled)', async () => {
    // |x| with a gradient that ignores a detached term: d/dx (|x| + 0.01 x) is not what autograd sees
    const x = kiln.tensor([0.5, -0.7, 0.9], { dtype: 'float64', requiresGrad: true });
    const wrong = (a: Tensor) => a.abs().add(a.detach().mul(0.01));
    await expect(autograd.gradcheck(wrong, [x])).rejects.toThrow(/gradcheck \(eager\): 3 Jacobian entries differ.*d output\[0\] \/ d input 0\[0\]: analytic 1, numerical 1\.01/);
    await expect(autograd.gradcheck(wrong, [x], { compile: kiln.compile })).rejects.toThrow(/gradcheck \(compiled\): 3 Jacobian entries differ/);
    expect(await autograd.gradcheck(wrong, [x], { raiseException: false })).toBe(false);
  });

  it('bad input is a clear error', async () => {
    const x32 = kiln.tensor([1, 2], { requiresGrad: true });
    await expect(autograd.gradcheck((a) => a.exp(), [x32])).rejects.toThrow(/gradcheck: input 0 requires grad but is float32; central differences need float64/);
    await expect(autograd.gradcheck((a) => a.exp(), [kiln.tensor([1], { dtype: 'float64' })])).rejects.toThrow(/gradcheck: no input requires grad/);
    const x = kiln.tensor([1, 2], { dtype: 'float64', requiresGrad: true });
    await expect(autograd.gradcheck((a) => a.gt(1), [x])).rejects.toThrow(/output is bool; a Jacobian needs a floating point output/);
    await expect(autograd.gradcheck(null as unknown as (a: Tensor) => Tensor, [x])).rejects.toThrow(/gradcheck: expected a function, got null/);
    await expect(autograd.gradcheck((a) => a.exp(), [x], { eps: 0 })).rejects.toThrow('gradcheck: eps must be a positive number, got 0');
    const asyncFn = (async (a: Tensor) => a.exp()) as unknown as (a: Tensor) => Tensor;
    await expect(autograd.gradcheck(asyncFn, [x])).rejects.toThrow(/must return a Tensor, not a Promise/);
  });
});

describe('gradgradcheck: second derivatives against central differences in float64 [cpu]', () => {
  const t = (data: number[], shape: number[]) => kiln.tensor(Float64Array.from(data), { shape, requiresGrad: true });
  const x = () => t([0.3, -0.8, 1.1, 0.45, -0.2, 0.7], [2, 3]);
  const y = () => t([0.9, 0.1, -0.6, 0.25, 0.5, -1.3], [2, 3]);
  const w = () => t([0.2, -0.4, 0.6, 0.1, -0.3, 0.8], [3, 2]);
  const second: [string, (...a: Tensor[]) => Tensor, () => Tensor[]][] = [
    ['x * x * y', (a, b) => a.mul(a).mul(b), () => [x(), y()]],
    ['div and pow', (a, b) => a.div(b.abs().add(1)).pow(3), () => [x(), y()]],
    ['tanh, sigmoid, exp, log', (a) => a.tanh().add(a.sigmoid()).mul(a.exp()).add(a.mul(a).add(1).log()), () => [x()]],
    ['sin, cos, sqrt, rsqrt', (a) => a.sin().mul(a.cos()).add(a.mul(a).add(1).sqrt()).add(a.abs().add(1).rsqrt()), () => [x()]],
    ['matmul then softmax', (a, b) => a.matmul(b).softmax(1), () => [x(), w()]],
    ['logsumexp and logSoftmax', (a) => a.logsumexp(1).add(a.logSoftmax(0).sum(1)), () => [x()]],
    ['mean, sum with dims, broadcasting', (a, b) => a.sub(b.mean(0, true)).square().sum(1), () => [x(), y()]],
    ['mseLoss', (a, b) => F.mseLoss(a.tanh(), b), () => [x(), y()]],
    ['crossEntropy', (a) => F.crossEntropy(a, kiln.tensor([2, 0], { dtype: 'int32' })), () => [x()]],
    ['cat, index, gather', (a, b) => kiln.cat([a.index(null, [0, 2]), b], 1).gather(1, kiln.tensor([[0, 4], [3, 1]], { dtype: 'int32' })).exp(), () => [x(), y()]],
  ];
  for (const [name, fn, inputs] of second) {
    it(`${name} (eager and compiled)`, async () => {
      expect(await autograd.gradgradcheck(fn, inputs())).toBe(true);
      expect(await autograd.gradgradcheck(fn, inputs(), { compile: kiln.compile })).toBe(true);
    });
  }
});

for (const device of await testDevices()) {
  if (device !== 'webgpu') continue;
  describe('float32 gradients against the CPU\'s float64 gradients [webgpu]', () => {
    for (const { file, c } of cases) {
      it(`${file}: ${c.name} (eager and compiled)`, async () => {
        const names = Object.keys(c.inputs);
        const gradNames = Object.keys(c.grads).filter((n) => c.grads[n] !== null);
        const run = program(c.expr, names, gradNames, c.gradOutput !== null);
        // the CPU in float64 (checked against PyTorch above) from the same float32 inputs, then WebGPU in
        // float32, eagerly and compiled
        const cpu = run(...names.map((n) => build(c.inputs[n], 'cpu', !!c.inputs[n].requiresGrad, 'float32-exact')), ...(c.gradOutput ? [build(c.gradOutput, 'cpu', false, 'float32-exact')] : []));
        const gpuArgs = () => [...names.map((n) => build(c.inputs[n], device, !!c.inputs[n].requiresGrad, 'float32')), ...(c.gradOutput ? [build(c.gradOutput, device, false, 'float32')] : [])];
        // (constants an expression creates, `kiln.ones(...)`, go to the default device)
        kiln.setDefaultDevice(device);
        let results: [string, Tensor[]][];
        try {
          results = [['eager', run(...gpuArgs())], ['compiled', await kiln.compile(run)(...gpuArgs())]];
        } finally {
          kiln.setDefaultDevice('cpu');
        }
        for (const [how, res] of results) {
          for (let k = 0; k < res.length; k++) {
            const expected: RefTensor = { shape: cpu[k].shape, dtype: 'float64', data: Array.from(cpu[k].dataSync(), Number) };
            const got = await res[k].toAsync('cpu');
            if (k > 0) expect(got.dtype).toBe('float32');
            expectClose(got, expected, c.tol, `${file}: ${c.name} (${c.expr}) [webgpu ${how}]: ${k === 0 ? 'output' : `${gradNames[k - 1]}.grad`}`);
          }
        }
      });
    }
  });
}
