// The ONNX interop check: exports kiln models with kiln.onnx.export, runs them in ONNX Runtime
// (onnxruntime-node, kept out of kiln's dependencies) and compares with kiln's eager outputs, at the
// traced batch size and at another one (the batch dimension is symbolic). Prints each case's max
// relative error (max |ort - kiln| / max |kiln|) and 'N passed, N failed'; exits 1 on a failure.
//   cd interop && npm ci && ../node_modules/.bin/tsx onnx-check.ts     (or npm run interop at the root)

import * as ort from 'onnxruntime-node';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';
import { NeuralNetwork } from '../examples/mnist-mlp.ts';
import { GPT } from '../examples/char-gpt.ts';
import { Net } from '../examples/mnist-cnn.ts';
// (scatterAdd and strided pads appear in backward graphs only: this check dispatches them directly)
import { dispatch } from '../runtime/dispatch.ts';

const { nn } = kiln;
/** float32 agreement between two engines that sum in different orders */
const TOLERANCE = 1e-5;
const TOLERANCE_F64 = 1e-12;

interface Case {
  name: string;
  model: kiln.nn.Module | ((...xs: Tensor[]) => Tensor | Record<string, Tensor>);
  /** inputs at the export's batch size and at another one */
  inputs: (batch: number) => Tensor[];
  batches: [number, number];
  opts?: kiln.onnx.ExportOptions;
  /** outputs that cannot equal kiln's (random numbers): a property of ONNX Runtime's values instead */
  property?: (got: Float32Array, inputs: Tensor[]) => Promise<string | null>;
}

// ---- a small CNN written with slices (im2col) and a reshape max-pool: the conv/pool primitives are on
// the conv branch; when they reach main, a CNN on nn.Conv2d / nn.MaxPool2d replaces this one
class SliceCNN extends nn.Module {
  weight: Tensor; bias: Tensor; fc: kiln.nn.Linear;
  constructor(readonly cin: number, readonly cout: number, readonly k: number, side: number, classes: number) {
    super();
    this.weight = new nn.Parameter(kiln.randn([cout, cin, k, k]).mul(0.3));
    this.bias = new nn.Parameter(kiln.randn([cout]).mul(0.1));
    const pooled = Math.floor((side - k + 1) / 2);
    this.fc = new nn.Linear(cout * pooled * pooled, classes);
  }
  forward(x: Tensor): Tensor {
    const [B, C, H, W] = x.shape, k = this.k, Ho = H - k + 1, Wo = W - k + 1;
    const shifts: Tensor[] = [];
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) shifts.push(x.index(null, null, [i, i + Ho], [j, j + Wo]));
    const cols = kiln.stack(shifts, 2).reshape([B, C * k * k, Ho * Wo]).permute([0, 2, 1]);
    const conv = cols.matmul(this.weight.reshape([this.cout, C * k * k]).T).add(this.bias).relu(); // [B, Ho*Wo, O]
    const maps = conv.permute([0, 2, 1]).reshape([B, this.cout, Ho / 2, 2, Wo / 2, 2]).max([3, 5]);
    return this.fc.forward(maps.reshape([B, -1]));
  }
}

/** Element-wise ops, comparisons, casts, reductions, argmax, cat (pad), strided slices, gather. */
function assorted(x: Tensor, idx: Tensor): Record<string, Tensor> {
  const a = x.abs().add(0.5);
  const smooth = a.log().add(a.sqrt()).add(x.sin().mul(x.cos())).add(x.sigmoid()).sub(x.neg().exp().mul(0.1))
    .add(kiln.tensor(2).pow(x.sign())).add(a.pow(1.5)).add(x.maximum(x.mul(0.3))).add(x.minimum(x.tanh())).add(x.erf());
  const cmp = x.gt(0).int().add(x.lt(0.2).int()).add(x.le(-0.3).int()).add(x.ge(0.1).int()).add(x.eq(0).int()).add(x.ne(1).int());
  const counts = cmp.sum(1, true).add(x.int().relu());
  const strided = kiln.cat([x.index(null, [0, null, 2]), x.index(null, [1, null, 3]).mul(2)], 1);
  return {
    smooth,
    counts,
    argmax: x.argmax(1),
    max: x.max(1),
    strided,
    gathered: x.gather(1, idx),
    clamped: x.clamp(-0.5, 0.5).div(x.shape[1]),
    logProbs: x.logSoftmax(1),
    overBatch: x.softmax(0),
  };
}

/** The primitives no public composite reaches in a forward: scatterAdd, a strided pad; a bool input. */
function internals(x: Tensor, idx: Tensor, keep: Tensor): Record<string, Tensor> {
  const [B, N] = x.shape;
  return {
    scattered: dispatch('scatterAdd', [idx, x.index(null, [0, 3])], { axis: 1, shape: [B, N] }),
    spread: dispatch('pad', [x], { starts: [0, 1], steps: [1, 2], shape: [B, 2 * N + 1] }),
    kept: kiln.where(keep, x, x.expand([2, B, N]).sum(0).mul(-1)),
  };
}

const cases: Case[] = [
  (() => {
    kiln.manualSeed(1);
    const model = new NeuralNetwork();
    return { name: 'MNIST MLP (784-512-512-10)', model, inputs: (b) => [kiln.randn([b, 1, 28, 28])], batches: [4, 9] } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(2);
    // examples/char-gpt.ts: embeddings, LayerNorm, causal scaled-dot-product attention, GELU (erf), residuals;
    // its N(0, 0.02) init gives near-constant logits, so the weights are redrawn wider for a sharper check
    const model = new GPT({ vocabSize: 24, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16 });
    kiln.noGrad(() => { for (const p of model.parameters()) p.copy_(kiln.randn(p.shape).mul(0.5)); });
    return { name: 'char transformer (examples/char-gpt.ts GPT: 2 layers, 2 heads, width 16, T=8)', model, inputs: (b) => [kiln.randint(0, 24, [b, 8])], batches: [3, 5] } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(6);
    // buffers: BatchNorm1d's running statistics (after a few training-mode batches) become initializers;
    // eval mode: no batch statistics, Dropout off
    const model = new nn.Sequential(new nn.Linear(6, 5), new nn.BatchNorm1d(5), new nn.ReLU(), new nn.Dropout(0.3), new nn.Linear(5, 3));
    for (let i = 0; i < 3; i++) model.forward(kiln.randn([8, 6]).mul(2).add(1));
    return { name: 'MLP with BatchNorm1d and Dropout, in eval mode (running statistics as initializers)', model, inputs: (b) => [kiln.randn([b, 6])], batches: [4, 1] } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(8);
    return { name: 'MNIST CNN (examples/mnist-cnn.ts Net: Conv2d 32, Conv2d 64, max pool, Dropout, Linear, log-softmax)', model: new Net(), inputs: (b) => [kiln.randn([b, 1, 28, 28])], batches: [2, 3] } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(9);
    // grouped, strided, padded and dilated convolutions, 1-d and 2-d, average pooling
    const model = new nn.Sequential(
      new nn.Conv2d(4, 6, 3, { stride: 2, padding: 1, groups: 2 }), new nn.ReLU(),
      new nn.Conv2d(6, 6, 3, { padding: 2, dilation: 2, bias: false }), new nn.AvgPool2d(2), new nn.Flatten(), new nn.Linear(6 * 4 * 4, 5));
    return { name: 'convolutions: groups, stride, padding, dilation, no bias; AvgPool2d', model, inputs: (b) => [kiln.randn([b, 4, 16, 16])], batches: [2, 5] } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(5);
    const model = new SliceCNN(2, 4, 3, 10, 10);
    return { name: 'small CNN from slices (3x3 conv as im2col, ReLU, 2x2 max pool, Linear)', model, inputs: (b) => [kiln.randn([b, 2, 10, 10])], batches: [3, 7] } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(3);
    return {
      name: 'assorted primitives (elementwise, compare, cast, reduce, argmax, cat, strided slice, gather, softmax over the batch)',
      model: assorted,
      inputs: (b) => [kiln.randn([b, 7]), kiln.randint(0, 7, [b, 3])],
      batches: [5, 2],
    } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(4);
    return {
      name: 'scatterAdd, strided pad, bool input, expand',
      model: internals,
      inputs: (b) => [kiln.randn([b, 5]), kiln.randint(0, 5, [b, 3]), kiln.rand([b, 5]).gt(0.5)],
      batches: [3, 6],
    } satisfies Case;
  })(),
  (() => {
    kiln.manualSeed(7);
    const w = kiln.randn([4, 3], { dtype: 'float64' });
    return {
      name: 'float64 (DOUBLE): matmul, softmax, exp, comparisons, relu',
      model: (x: Tensor) => ({ y: x.matmul(w).softmax(-1).add(x.exp().sum(1, true)), r: x.relu().mul(x.gt(0.1).double()) }),
      inputs: (b) => [kiln.randn([b, 4], { dtype: 'float64' })],
      batches: [3, 5],
    } satisfies Case;
  })(),
  {
    // kiln's counter-based random stream has no ONNX form: RandomUniformLike draws ONNX Runtime's own numbers
    name: 'random -> RandomUniformLike (shape and range only)',
    model: (x: Tensor) => x.add(kiln.rand(x.shape)),
    inputs: (b) => [kiln.arange(b * 4).reshape([b, 4])],
    batches: [2, 3],
    property: async (got, [x]) => {
      const base = await x.data();
      const u = Array.from(got, (v, i) => v - base[i]);
      if (got.length !== base.length) return `random: ${got.length} values for ${base.length}`;
      return u.every((v) => v >= 0 && v < 1) && new Set(u).size > 1 ? null : `random: values outside [0, 1) or all equal: ${u.join(', ')}`;
    },
  },
];

const flat = (r: Tensor | Record<string, Tensor>): [string, Tensor][] => (r instanceof kiln.Tensor ? [['output', r]] : Object.entries(r));

async function check(c: Case): Promise<string[]> {
  const failures: string[] = [];
  const bytes = await kiln.onnx.export(c.model, c.inputs(c.batches[0]), { dynamicBatch: true, ...c.opts });
  const session = await ort.InferenceSession.create(bytes);
  // the export traced the forward in eval mode (and restored the module's modes): compare with eval mode
  if (c.model instanceof nn.Module) c.model.eval();
  for (const batch of c.batches) {
    const xs = c.inputs(batch);
    const feeds: Record<string, ort.Tensor> = {};
    for (const [i, x] of xs.entries()) feeds[session.inputNames[i]] = new ort.Tensor(x.dtype === 'bool' ? 'bool' : x.dtype, await x.data(), x.shape);
    const got = await session.run(feeds);
    if (c.property) {
      const out = got[session.outputNames[0]];
      const problem = await c.property(out.data as Float32Array, xs);
      console.log(`  batch ${batch} [${out.dims}] ${problem ?? 'ok'}`);
      if (problem) failures.push(problem);
      continue;
    }
    const expected = kiln.noGrad(() => flat(c.model instanceof nn.Module ? (c.model.forward(...xs) as Tensor) : c.model(...xs)));
    for (const [name, want] of expected) {
      const out = got[name];
      if (!out) { failures.push(`${name}: missing from ONNX Runtime's outputs (${Object.keys(got).join(', ')})`); continue; }
      const a = out.data as ArrayLike<number | boolean>, b = await want.data();
      if (out.dims.join() !== want.shape.join()) { failures.push(`${name}: shape [${out.dims}] vs kiln's [${want.shape}]`); continue; }
      let maxDiff = 0, scale = 0;
      for (let i = 0; i < b.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(Number(a[i]) - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      const rel = maxDiff / (scale || 1);
      const exact = want.dtype === 'int32' || want.dtype === 'bool';
      const tolerance = want.dtype === 'float64' ? TOLERANCE_F64 : TOLERANCE;
      const ok = exact ? maxDiff === 0 : rel <= tolerance;
      console.log(`  batch ${batch} ${name.padEnd(10)} ${want.dtype}[${want.shape}]  max relative error ${rel.toExponential(2)}${exact ? ' (exact)' : ''}${ok ? '' : '  FAIL'}`);
      if (!ok) failures.push(`${name} at batch ${batch}: max relative error ${rel} over ${exact ? 0 : tolerance}`);
    }
  }
  console.log(`  (${(bytes.length / 1024).toFixed(1)} KiB model)`);
  return failures;
}

let passed = 0, failed = 0;
for (const c of cases) {
  console.log(c.name);
  let failures: string[];
  try {
    failures = await check(c);
  } catch (e) {
    failures = [e instanceof Error ? e.stack ?? e.message : String(e)];
  }
  if (failures.length === 0) passed++;
  else { failed++; for (const f of failures) console.log(`  FAILED: ${f}`); }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
