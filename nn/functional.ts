// nn.functional (`F`): activations, linear, dropout and losses, composed from Tensor methods only
// (DESIGN principle 1: no new primitives, so autodiff and fusion cover them for free).

import { checkIndexRange, rand, Tensor, where } from '../runtime/index.ts';

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

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

function checkTensor(op: string, what: string, t: unknown): asserts t is Tensor {
  if (!(t instanceof Tensor)) throw new Error(`${op}: expected ${what} to be a Tensor, got ${t === null ? 'null' : typeof t}`);
}

function reduce(op: string, loss: Tensor, reduction: Reduction | undefined): Tensor {
  switch (reduction ?? 'mean') {
    case 'mean': return loss.mean();
    case 'sum': return loss.sum();
    case 'none': return loss;
    default: throw new Error(`${op}: reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
  }
}

function checkReduction(op: string, reduction: Reduction | undefined): void {
  if (reduction !== undefined && reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none') {
    throw new Error(`${op}: reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
  }
}

function broadcastable(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 1; i <= Math.min(a.length, b.length); i++) {
    const x = a[a.length - i], y = b[b.length - i];
    if (x !== y && x !== 1 && y !== 1) return false;
  }
  return true;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Elementwise losses: input and target of the same shape (broadcastable ones are accepted, as PyTorch does). */
function checkPair(op: string, input: Tensor, target: Tensor): void {
  checkTensor(op, 'input', input);
  checkTensor(op, 'target', target);
  if (!broadcastable(input.shape, target.shape)) {
    throw new Error(`${op}: the size of input ${fmt(input.shape)} must match the size of target ${fmt(target.shape)}`);
  }
  if (input.dtype !== 'float32' || target.dtype !== 'float32') {
    throw new Error(`${op}: expected input and target of dtype float32, got ${input.dtype} and ${target.dtype}`);
  }
}

function checkSameShape(op: string, input: Tensor, target: Tensor): void {
  checkTensor(op, 'input', input);
  checkTensor(op, 'target', target);
  if (!sameShape(input.shape, target.shape)) {
    throw new Error(`${op}: target size ${fmt(target.shape)} must be the same as input size ${fmt(input.shape)}`);
  }
  if (input.dtype !== 'float32' || target.dtype !== 'float32') {
    throw new Error(`${op}: expected input and target of dtype float32, got ${input.dtype} and ${target.dtype}`);
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
  const y = x.matmul(weight.T);
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
  checkPair('mseLoss', input, target);
  checkReduction('mseLoss', opts.reduction);
  const d = input.sub(target);
  return reduce('mseLoss', d.mul(d), opts.reduction);
}

/** Mean absolute error `|input - target|`, reduced. */
export function l1Loss(input: Tensor, target: Tensor, opts: LossOptions = {}): Tensor {
  checkPair('l1Loss', input, target);
  checkReduction('l1Loss', opts.reduction);
  return reduce('l1Loss', input.sub(target).abs(), opts.reduction);
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
  if (input.dtype !== 'float32') throw new Error(`${op}: expected input of dtype float32, got ${input.dtype}`);
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
  if (target.dtype === 'float32' && sameShape(target.shape, input.shape)) {
    // class probabilities
    let logp = input.logSoftmax(classDim);
    if (opts.weight) {
      const C = input.shape[classDim];
      if (opts.weight.ndim !== 1 || opts.weight.shape[0] !== C) throw new Error(`${op}: expected weight of shape [${C}] (one per class), got ${fmt(opts.weight.shape)}`);
      logp = logp.mul(opts.weight.reshape([C, ...input.shape.slice(classDim + 1).map(() => 1)]));
    }
    // 'mean' divides by the number of samples (not by the weights), as PyTorch does for probabilities.
    return reduce(op, logp.mul(target).sum(classDim).neg(), opts.reduction);
  }
  if (target.dtype !== 'int32') {
    const expected = input.shape.filter((_, i) => i !== classDim);
    throw new Error(`${op}: expected target of dtype int32 (class indices, shape ${fmt(expected)}) or float32 class probabilities of the input's shape ${fmt(input.shape)}, got dtype ${target.dtype} with shape ${fmt(target.shape)}`);
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
  checkSameShape(op, input, target);
  checkReduction(op, opts.reduction);
  let loss = target.mul(clampedLog(input)).add(target.neg().add(1).mul(clampedLog(input.neg().add(1)))).neg();
  if (opts.weight) loss = loss.mul(opts.weight);
  return reduce(op, loss, opts.reduction);
}

/**
 * Binary cross entropy on logits, in the stable form PyTorch uses:
 * `(1 - y) x + m + log(exp(-m) + exp(-x - m))` with `m = max(-x, 0)` (the gradient is exactly
 * `sigmoid(x) - y`, also at x = 0).
 */
export function binaryCrossEntropyWithLogits(input: Tensor, target: Tensor, opts: BCEWithLogitsOptions = {}): Tensor {
  const op = 'binaryCrossEntropyWithLogits';
  checkSameShape(op, input, target);
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
  return reduce(op, loss, opts.reduction);
}
