// nn.functional (`F`): activations, linear, dropout and losses, composed from Tensor methods only
// (DESIGN principle 1: no new primitives, so autodiff and fusion cover them for free).

import { isFloat } from '../ir/dtype.ts';
import { fmt, sameShape } from '../ir/shape.ts';
import { arange, cat, checkIndexRange, full, noGrad, rand, Tensor, where } from '../runtime/index.ts';
import { checkTensor } from '../runtime/tensor.ts';

export type Reduction = 'mean' | 'sum' | 'none';

export interface LossOptions {
  /** 'mean' (default), 'sum' or 'none' */
  reduction?: Reduction;
}

export interface NLLLossOptions extends LossOptions {
  /** a manual rescaling weight per class, shape [C] */
  weight?: Tensor | null;
  /** targets equal to this are ignored (contribute 0 and are not counted by 'mean'); default -100 */
  ignoreIndex?: number;
}

export type CrossEntropyOptions = NLLLossOptions;

export interface BCELossOptions extends LossOptions {
  /** a manual rescaling weight, broadcast to the input's shape */
  weight?: Tensor | null;
}

export interface BCEWithLogitsOptions extends BCELossOptions {
  /** a weight of positive examples, broadcast to the input's shape (e.g. one per class) */
  posWeight?: Tensor | null;
}

/** Checks a loss's reduction option, before anything is computed; `reduce` then applies it. */
function checkReduction(op: string, reduction: Reduction | undefined): void {
  if (reduction !== undefined && reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw new Error(`${op}: reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
  }
}

const reduce = (loss: Tensor, reduction: Reduction = 'mean'): Tensor => (reduction === 'mean' ? loss.mean() : reduction === 'sum' ? loss.sum() : loss);

function broadcastable(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 1; i <= Math.min(a.length, b.length); i++) {
    const x = a[a.length - i], y = b[b.length - i];
    if (x !== y && x !== 1 && y !== 1) return false;
  }
  return true;
}

/**
 * Elementwise losses: input and target of a floating point dtype and of the same shape, or with
 * `broadcast` broadcastable ones (mseLoss and l1Loss accept those, as PyTorch does).
 */
function checkPair(op: string, input: Tensor, target: Tensor, broadcast: boolean): void {
  checkTensor(op, 'input', input);
  checkTensor(op, 'target', target);
  if (broadcast && !broadcastable(input.shape, target.shape)) {
    throw new Error(`${op}: the size of input ${fmt(input.shape)} must match the size of target ${fmt(target.shape)}`);
  }
  if (!broadcast && !sameShape(input.shape, target.shape)) {
    throw new Error(`${op}: target size ${fmt(target.shape)} must be the same as input size ${fmt(input.shape)}`);
  }
  if (!isFloat(input.dtype) || !isFloat(target.dtype)) {
    throw new Error(`${op}: expected input and target of a floating point dtype (float32, float64), got ${input.dtype} and ${target.dtype}`);
  }
}

// ---- activations ----
export const relu = (x: Tensor): Tensor => x.relu();
export const sigmoid = (x: Tensor): Tensor => x.sigmoid();
export const tanh = (x: Tensor): Tensor => x.tanh();
export const softmax = (x: Tensor, dim: number): Tensor => x.softmax(dim);
export const logSoftmax = (x: Tensor, dim: number): Tensor => x.logSoftmax(dim);

// ---- linear ----
/** `x @ weight.T + bias`; weight is `[out, in]`, x is `[..., in]`. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  checkTensor('linear', 'input', x);
  checkTensor('linear', 'weight', weight);
  if (weight.ndim !== 2) throw new Error(`linear: expected a 2-D weight [out, in], got shape ${fmt(weight.shape)}`);
  if (x.ndim === 0 || x.shape[x.ndim - 1] !== weight.shape[1]) {
    throw new Error(`linear: input of shape ${fmt(x.shape)} does not match weight of shape ${fmt(weight.shape)} (expected the input's last dimension to be ${weight.shape[1]})`);
  }
  // Leading dims fold into the rows (as PyTorch does): one 2-D matmul instead of a batched one
  // against a broadcast weight, so the weight's gradient is one matmul too, not a batch then a sum.
  const y = x.ndim > 2 ? x.reshape([-1, x.shape[x.ndim - 1]]).matmul(weight.T).reshape([...x.shape.slice(0, -1), weight.shape[0]]) : x.matmul(weight.T);
  if (bias === undefined || bias === null) return y;
  if (bias.ndim !== 1 || bias.shape[0] !== weight.shape[0]) {
    throw new Error(`linear: expected a bias of shape [${weight.shape[0]}], got ${fmt(bias.shape)}`);
  }
  return y.add(bias);
}

// ---- dropout ----
/**
 * Inverted dropout: in training mode each element is zeroed with probability p and the rest are
 * scaled by 1 / (1 - p); identity when not training (or p = 0). Uses the seeded generator (manualSeed).
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: probability has to be between 0 and 1, but got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return x.mul(0);
  const keep = rand(x.shape, { device: x.device }).ge(p);
  return x.mul(keep.float().div(1 - p));
}

// ---- losses ----
/** Mean squared error `(input - target)²`, reduced. */
export function mseLoss(input: Tensor, target: Tensor, opts: LossOptions = {}): Tensor {
  checkPair('mseLoss', input, target, true);
  checkReduction('mseLoss', opts.reduction);
  const d = input.sub(target);
  return reduce(d.mul(d), opts.reduction);
}

/** Mean absolute error `|input - target|`, reduced. */
export function l1Loss(input: Tensor, target: Tensor, opts: LossOptions = {}): Tensor {
  checkPair('l1Loss', input, target, true);
  checkReduction('l1Loss', opts.reduction);
  return reduce(input.sub(target).abs(), opts.reduction);
}

/**
 * Negative log likelihood: `-input[n, target[n]]` for log-probabilities `input` of shape `[N, C]`
 * (or `[C]`, or `[N, C, d1, ...]` with target `[N, d1, ...]`) and int32 class indices `target`.
 * 'mean' divides by the summed weights of the non-ignored targets, as PyTorch does.
 */
export function nllLoss(input: Tensor, target: Tensor, opts: NLLLossOptions = {}): Tensor {
  return nll('nllLoss', input, target, opts);
}

function nll(op: string, input: Tensor, target: Tensor, opts: NLLLossOptions): Tensor {
  checkTensor(op, 'input', input);
  checkTensor(op, 'target', target);
  checkReduction(op, opts.reduction);
  if (input.ndim === 0) throw new Error(`${op}: expected an input of shape [N, C] or [C], got a 0-d tensor`);
  const classDim = input.ndim === 1 ? 0 : 1;
  const expected = input.shape.filter((_, i) => i !== classDim);
  if (target.dtype !== 'int32') {
    throw new Error(`${op}: expected target of dtype int32 (class indices) with shape ${fmt(expected)} for input ${fmt(input.shape)}, got dtype ${target.dtype}`);
  }
  if (!sameShape(target.shape, expected)) {
    throw new Error(`${op}: expected target of shape ${fmt(expected)} for input of shape ${fmt(input.shape)}, got target shape ${fmt(target.shape)}`);
  }
  if (!isFloat(input.dtype)) throw new Error(`${op}: expected input of a floating point dtype (float32, float64), got ${input.dtype}`);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  checkIndexRange(op, target, input.shape[classDim], classDim, ignoreIndex);
  const ignored = target.eq(ignoreIndex);
  const safeTarget = where(ignored, 0, target);
  let picked = input.gather(classDim, safeTarget.unsqueeze(classDim)).squeeze(classDim).neg();
  let w: Tensor | null = null;
  if (opts.weight) {
    const C = input.shape[classDim];
    if (opts.weight.ndim !== 1 || opts.weight.shape[0] !== C) {
      throw new Error(`${op}: expected weight of shape [${C}] (one per class), got ${fmt(opts.weight.shape)}`);
    }
    w = opts.weight.indexSelect(0, safeTarget.reshape([-1])).reshape(target.shape);
    picked = picked.mul(w);
  }
  const kept = ignored.logicalNot();
  const loss = where(ignored, 0, picked);
  const reduction = opts.reduction ?? 'mean';
  if (reduction === 'none') return loss;
  if (reduction === 'sum') return loss.sum();
  const denom = w ? where(kept, w, 0).sum() : kept.float().sum();
  return loss.sum().div(denom);
}

/**
 * Cross entropy of logits `input` (`[N, C]`, `[C]` or `[N, C, d1, ...]`) with int32 class-index
 * targets (`logSoftmax` over the class dimension, then `nllLoss`), or with float class
 * probabilities of the same shape as `input`.
 */
export function crossEntropy(input: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  checkTensor(op, 'input', input);
  checkTensor(op, 'target', target);
  checkReduction(op, opts.reduction);
  if (input.ndim === 0) throw new Error(`${op}: expected an input of shape [N, C] or [C], got a 0-d tensor`);
  const classDim = input.ndim === 1 ? 0 : 1;
  if (isFloat(target.dtype) && sameShape(target.shape, input.shape)) {
    // class probabilities
    let logp = input.logSoftmax(classDim);
    if (opts.weight) {
      const C = input.shape[classDim];
      if (opts.weight.ndim !== 1 || opts.weight.shape[0] !== C) throw new Error(`${op}: expected weight of shape [${C}] (one per class), got ${fmt(opts.weight.shape)}`);
      logp = logp.mul(opts.weight.reshape([C, ...input.shape.slice(classDim + 1).map(() => 1)]));
    }
    // 'mean' divides by the number of samples (not by the weights), as PyTorch does for probabilities.
    return reduce(logp.mul(target).sum(classDim).neg(), opts.reduction);
  }
  if (target.dtype !== 'int32') {
    const expected = input.shape.filter((_, i) => i !== classDim);
    throw new Error(`${op}: expected target of dtype int32 (class indices, shape ${fmt(expected)}) or float class probabilities of the input's shape ${fmt(input.shape)}, got dtype ${target.dtype} with shape ${fmt(target.shape)}`);
  }
  return nll(op, input.logSoftmax(classDim), target, opts);
}

/** `log(p)` clamped below at -100 (PyTorch's binary_cross_entropy), with a finite gradient at p = 0. */
function clampedLog(p: Tensor): Tensor {
  const pos = p.gt(0);
  return where(pos, where(pos, p, 1).log(), -100).clamp(-100);
}

/** Binary cross entropy of probabilities `input` in [0, 1]: `-(y log p + (1 - y) log(1 - p))`, logs clamped at -100. */
export function binaryCrossEntropy(input: Tensor, target: Tensor, opts: BCELossOptions = {}): Tensor {
  const op = 'binaryCrossEntropy';
  checkPair(op, input, target, false);
  checkReduction(op, opts.reduction);
  let loss = target.mul(clampedLog(input)).add(target.neg().add(1).mul(clampedLog(input.neg().add(1)))).neg();
  if (opts.weight) loss = loss.mul(opts.weight);
  return reduce(loss, opts.reduction);
}

/**
 * Binary cross entropy on logits, in the stable form PyTorch uses:
 * `(1 - y) x + m + log(exp(-m) + exp(-x - m))` with `m = max(-x, 0)` (the gradient is exactly
 * `sigmoid(x) - y`, also at x = 0).
 */
export function binaryCrossEntropyWithLogits(input: Tensor, target: Tensor, opts: BCEWithLogitsOptions = {}): Tensor {
  const op = 'binaryCrossEntropyWithLogits';
  checkPair(op, input, target, false);
  checkReduction(op, opts.reduction);
  // The loss does not depend on m (its partial derivative is identically 0), so m is detached.
  const m = input.neg().relu().detach();
  const softplusNeg = m.neg().exp().add(input.neg().sub(m).exp()).log().add(m); // log(1 + exp(-x))
  const oneMinusY = target.neg().add(1);
  let loss: Tensor;
  if (opts.posWeight) {
    const logWeight = opts.posWeight.sub(1).mul(target).add(1);
    loss = oneMinusY.mul(input).add(logWeight.mul(softplusNeg));
  } else {
    loss = oneMinusY.mul(input).add(softplusNeg);
  }
  if (opts.weight) loss = loss.mul(opts.weight);
  return reduce(loss, opts.reduction);
}

// ---- activations beyond the MLP (API.md "Beyond the MLP") ----
export interface GeluOptions {
  /** 'none' (default): x·Φ(x) with the exact erf; 'tanh': the tanh approximation */
  approximate?: 'none' | 'tanh';
}

/** x · Φ(x), Φ the standard normal CDF (exact through erf, or the tanh approximation). */
export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const approximate = opts.approximate ?? 'none';
  if (approximate === 'tanh') {
    const inner = x.add(x.mul(x).mul(x).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
    return x.mul(0.5).mul(inner.tanh().add(1));
  }
  if (approximate !== 'none') throw new Error(`gelu: approximate must be 'none' or 'tanh', got '${String(approximate)}'`);
  return x.mul(0.5).mul(x.mul(Math.SQRT1_2).erf().add(1));
}

/** x · sigmoid(x) (also called swish). */
export const silu = (x: Tensor): Tensor => x.mul(x.sigmoid());

/** x for x > 0, negativeSlope · x otherwise. */
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  return where(x.gt(0), x, x.mul(negativeSlope));
}

/** x for x > 0, alpha · (exp(x) − 1) otherwise (exp of min(x, 0), so the unused branch stays finite). */
export function elu(x: Tensor, alpha = 1): Tensor {
  return where(x.gt(0), x, x.minimum(0).exp().sub(1).mul(alpha));
}

/** log(1 + exp(beta·x)) / beta, and x itself where beta·x > threshold (PyTorch's defaults 1 and 20). */
export function softplus(x: Tensor, beta = 1, threshold = 20): Tensor {
  const bx = x.mul(beta);
  return where(bx.gt(threshold), x, bx.minimum(threshold).exp().log1p().div(beta));
}

// ---- normalization ----
export interface BatchNormOptions {
  /** use the batch statistics (and update the running ones, when given); default false */
  training?: boolean;
  /** weight of the new batch statistics in the running average (default 0.1; a 0-d tensor is allowed) */
  momentum?: number | Tensor;
  eps?: number;
}

const affineShape = (x: Tensor): number[] => x.shape.map((s, i) => (i === 1 ? s : 1));

function checkPerChannel(op: string, what: string, t: Tensor | null | undefined, x: Tensor): void {
  if (t === null || t === undefined) return;
  checkTensor(op, what, t);
  if (t.ndim !== 1 || t.shape[0] !== x.shape[1]) {
    throw new Error(`${op}: expected ${what} of shape [${x.shape[1]}] (one per channel of input ${fmt(x.shape)}), got ${fmt(t.shape)}`);
  }
}

/**
 * Batch normalization over every dim but the channels (dim 1) of `x` (`[N, C]` or `[N, C, ...]`).
 * Training: normalize with the batch mean and biased variance and, when running statistics are
 * given, update them in place (mean, and the unbiased variance, averaged with `momentum`); under
 * `compile` these updates are write-backs like parameter updates. Eval: use the running statistics.
 */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight?: Tensor | null, bias?: Tensor | null, opts: BatchNormOptions = {}): Tensor {
  const op = 'batchNorm';
  checkTensor(op, 'input', x);
  if (x.ndim < 2) throw new Error(`${op}: expected an input of shape [N, C] or [N, C, ...], got ${fmt(x.shape)}`);
  for (const [what, t] of [['runningMean', runningMean], ['runningVar', runningVar], ['weight', weight], ['bias', bias]] as const) checkPerChannel(op, what, t, x);
  const training = opts.training ?? false;
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  const axes = x.shape.map((_, i) => i).filter((i) => i !== 1);
  const shape = affineShape(x);
  let mean: Tensor, variance: Tensor;
  if (training) {
    const n = x.numel() / x.shape[1];
    if (n <= 1) throw new Error(`${op}: expected more than 1 value per channel when training, got input of shape ${fmt(x.shape)}`);
    mean = x.mean(axes, true);
    variance = x.var(axes, { correction: 0, keepdim: true });
    if (runningMean || runningVar) {
      noGrad(() => {
        const keep = typeof momentum === 'number' ? 1 - momentum : momentum.neg().add(1);
        if (runningMean) runningMean.copy_(runningMean.mul(keep).add(mean.reshape([-1]).mul(momentum)));
        // the running variance is the unbiased one (n / (n - 1)), as PyTorch keeps it
        if (runningVar) runningVar.copy_(runningVar.mul(keep).add(variance.reshape([-1]).mul(n / (n - 1)).mul(momentum)));
      });
    }
  } else {
    if (!runningMean || !runningVar) throw new Error(`${op}: running statistics (runningMean and runningVar) are required when not training`);
    mean = runningMean.reshape(shape);
    variance = runningVar.reshape(shape);
  }
  let y = x.sub(mean).mul(variance.add(eps).rsqrt());
  if (weight) y = y.mul(weight.reshape(shape));
  if (bias) y = y.add(bias.reshape(shape));
  return y;
}

export interface NormOptions {
  eps?: number;
}

/** Normalizes over the last `normalizedShape.length` dims (biased variance), then `weight`/`bias` of that shape. */
export function layerNorm(x: Tensor, normalizedShape: number | readonly number[], weight?: Tensor | null, bias?: Tensor | null, opts: NormOptions = {}): Tensor {
  const op = 'layerNorm';
  checkTensor(op, 'input', x);
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
  const k = ns.length;
  if (k === 0 || k > x.ndim || !sameShape(x.shape.slice(x.ndim - k), ns)) {
    throw new Error(`${op}: normalizedShape ${fmt(ns)} must match the last dims of the input ${fmt(x.shape)}`);
  }
  for (const [what, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && !sameShape(t.shape, ns)) throw new Error(`${op}: expected ${what} of shape ${fmt(ns)}, got ${fmt(t.shape)}`);
  }
  const axes = ns.map((_, i) => x.ndim - k + i);
  const mean = x.mean(axes, true);
  const variance = x.var(axes, { correction: 0, keepdim: true });
  let y = x.sub(mean).mul(variance.add(opts.eps ?? 1e-5).rsqrt());
  if (weight) y = y.mul(weight);
  if (bias) y = y.add(bias);
  return y;
}

/** Normalizes each of `numGroups` groups of channels (dim 1) over its channels and spatial dims. */
export function groupNorm(x: Tensor, numGroups: number, weight?: Tensor | null, bias?: Tensor | null, opts: NormOptions = {}): Tensor {
  const op = 'groupNorm';
  checkTensor(op, 'input', x);
  if (x.ndim < 2) throw new Error(`${op}: expected an input of shape [N, C, ...], got ${fmt(x.shape)}`);
  const [N, C] = x.shape;
  if (!Number.isInteger(numGroups) || numGroups <= 0 || C % numGroups !== 0) {
    throw new Error(`${op}: expected the number of channels ${C} (input ${fmt(x.shape)}) to be divisible by numGroups ${numGroups}`);
  }
  checkPerChannel(op, 'weight', weight, x);
  checkPerChannel(op, 'bias', bias, x);
  const g = x.reshape([N, numGroups, -1]);
  const mean = g.mean(2, true);
  const variance = g.var(2, { correction: 0, keepdim: true });
  let y = g.sub(mean).mul(variance.add(opts.eps ?? 1e-5).rsqrt()).reshape(x.shape);
  const shape = affineShape(x);
  if (weight) y = y.mul(weight.reshape(shape));
  if (bias) y = y.add(bias.reshape(shape));
  return y;
}

// ---- embeddings, padding, one-hot ----
/**
 * Rows of `weight` (`[numEmbeddings, dim]`) picked by the int32 `indices`: shape `[...indices.shape, dim]`
 * (PyTorch's `C[X]`). An index out of range is an error (checked where the indices are known: on the CPU,
 * uploaded from the host, and inside `compile` on every call for argument and captured indices).
 */
export function embedding(indices: Tensor, weight: Tensor): Tensor {
  const op = 'embedding';
  checkTensor(op, 'indices', indices);
  checkTensor(op, 'weight', weight);
  if (weight.ndim !== 2) throw new Error(`${op}: expected a 2-D weight [numEmbeddings, embeddingDim], got ${fmt(weight.shape)}`);
  if (indices.dtype !== 'int32') throw new Error(`${op}: expected int32 indices, got ${indices.dtype} (shape ${fmt(indices.shape)})`);
  const n = weight.shape[0];
  checkIndexRange(op, indices, n, 0, undefined, (bad) => `${op}: index ${bad} is out of range for a weight of shape ${fmt(weight.shape)} (valid indices 0..${n - 1}; indices of shape ${fmt(indices.shape)})`);
  return weight.index(indices);
}

export interface PadOptions {
  /** 'constant' only */
  mode?: 'constant';
  /** the fill value (default 0) */
  value?: number;
}

/**
 * Constant padding, PyTorch's order: `pads = [left, right]` for the last dim, then `[top, bottom]`
 * for the one before, and so on. Negative pads crop.
 */
export function pad(x: Tensor, pads: readonly number[], opts: PadOptions = {}): Tensor {
  const op = 'pad';
  checkTensor(op, 'input', x);
  if ((opts.mode ?? 'constant') !== 'constant') throw new Error(`${op}: only mode 'constant' is supported, got '${String(opts.mode)}'`);
  if (pads.length % 2 !== 0 || pads.length / 2 > x.ndim || pads.some((p) => !Number.isInteger(p))) {
    throw new Error(`${op}: pads ${fmt(pads)} must be integer pairs for at most ${x.ndim} dims (input ${fmt(x.shape)})`);
  }
  const before = x.shape.map(() => 0), after = x.shape.map(() => 0);
  for (let i = 0; i < pads.length / 2; i++) {
    before[x.ndim - 1 - i] = pads[2 * i];
    after[x.ndim - 1 - i] = pads[2 * i + 1];
  }
  x.shape.forEach((s, d) => {
    if (s + before[d] + after[d] < 0) throw new Error(`${op}: pads ${fmt(pads)} leave a negative size in dim ${d} of input ${fmt(x.shape)}`);
  });
  // Crop first (negative pads), then place the rest inside a tensor of the fill value.
  const cropped = before.some((b) => b < 0) || after.some((a) => a < 0)
    ? x.index(...x.shape.map((s, d): [number, number] => [Math.max(0, -before[d]), s - Math.max(0, -after[d])]))
    : x;
  const value = opts.value ?? 0;
  let y = cropped;
  for (let d = 0; d < x.ndim; d++) {
    const b = Math.max(0, before[d]), a = Math.max(0, after[d]);
    if (b === 0 && a === 0) continue;
    const fill = (n: number): Tensor[] => (n === 0 ? [] : [full(y.shape.map((s, i) => (i === d ? n : s)), value, { dtype: x.dtype, device: x.device })]);
    y = cat([...fill(b), y, ...fill(a)], d);
  }
  return y;
}

/** `[..., numClasses]` int32 with a 1 at each index of the int32 `indices`. */
export function oneHot(indices: Tensor, numClasses: number): Tensor {
  const op = 'oneHot';
  checkTensor(op, 'indices', indices);
  if (indices.dtype !== 'int32') throw new Error(`${op}: expected int32 class indices, got ${indices.dtype}`);
  if (!Number.isInteger(numClasses) || numClasses <= 0) throw new Error(`${op}: numClasses must be a positive integer, got ${String(numClasses)}`);
  checkIndexRange(op, indices, numClasses, indices.ndim, undefined, (bad) => `${op}: class index ${bad} is out of range for numClasses ${numClasses} (indices of shape ${fmt(indices.shape)})`);
  const classes = arange(numClasses, undefined, 1, { device: indices.device });
  return indices.unsqueeze(-1).eq(classes).int();
}

// ---- attention ----
export interface AttentionOptions {
  /** bool (true = may attend) or float (added to the scores), broadcast to [..., L, S] */
  attnMask?: Tensor | null;
  /** mask out the upper triangle (query i attends to keys 0..i) */
  isCausal?: boolean;
  /** default 1 / sqrt(E) */
  scale?: number;
}

/** softmax(q kᵀ · scale + mask) v for q `[..., L, E]`, k `[..., S, E]`, v `[..., S, Ev]`. */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = 'scaledDotProductAttention';
  for (const [what, t] of [['query', q], ['key', k], ['value', v]] as const) {
    checkTensor(op, what, t);
    if (t.ndim < 2) throw new Error(`${op}: expected ${what} with at least 2 dims, got ${fmt(t.shape)}`);
  }
  const E = q.shape[q.ndim - 1], L = q.shape[q.ndim - 2], S = k.shape[k.ndim - 2];
  if (k.shape[k.ndim - 1] !== E || v.shape[v.ndim - 2] !== S) {
    throw new Error(`${op}: query ${fmt(q.shape)}, key ${fmt(k.shape)} and value ${fmt(v.shape)} do not fit ([..., L, E], [..., S, E], [..., S, Ev])`);
  }
  if (opts.isCausal && opts.attnMask) throw new Error(`${op}: pass either attnMask or isCausal, not both`);
  let scores = q.matmul(k.transpose(-2, -1)).mul(opts.scale ?? 1 / Math.sqrt(E));
  if (opts.isCausal) {
    const upper = noGrad(() => full([L, S], 1, { device: q.device }).triu(1).ne(0));
    scores = scores.maskedFill(upper, -Infinity);
  } else if (opts.attnMask) {
    const m = opts.attnMask;
    scores = m.dtype === 'bool' ? where(m, scores, -Infinity) : scores.add(m);
  }
  return scores.softmax(-1).matmul(v);
}

export * from './conv.ts';
