// nn.functional's convolutions and pooling (API.md "Beyond the MLP"). Convolution is one primitive
// (ir/conv.ts) on a grouped layout; these functions reshape PyTorch's [N, C, ...] layout into it (views)
// and back. Pooling is not a primitive: windows are views folded into the consumers' indexing
// (README.md, "Convolution and the pooling decision", says why):
//  - maxPool2d: when the windows tile the input, one [N, C, Ho, kh, Wo, kw] view: the window maximum
//    without a gradient; with one, an argmax over the window finds the first maximum (PyTorch's rule
//    for ties) and a gather copies it, so the window is read once and the gradient is one scatter
//    (PyTorch's own backward). Otherwise k*k strided slices of the (padded) input, the first maximum
//    selected with a mask, so forward and backward are elementwise kernels that fuse;
//  - avgPool2d: a convolution of every channel with a constant 1/(kh*kw) window (padding counted, as
//    PyTorch's default), channels folded into the batch;
//  - adaptiveAvgPool2d: two products with averaging matrices (PyTorch's windows, overlapping or not).

import { convParams, expandTuple, naturalOrder, type ConvOptions, type IntOrTuple } from '../ir/conv.ts';
import { fmt } from '../ir/shape.ts';
import { argmaxOver, convGrouped, zeroPad } from '../runtime/conv.ts';
import { arange, full, isGradEnabled, noGrad, tensor, Tensor, where } from '../runtime/index.ts';
import { checkTensor } from '../runtime/tensor.ts';

/** Runs `f` on a batched input, accepting an unbatched one ([C, ...S]) as PyTorch does. */
function batched(x: Tensor, nd: number, f: (x: Tensor) => Tensor): Tensor {
  return x.ndim === nd + 1 ? f(x.unsqueeze(0)).squeeze(0) : f(x);
}

function convNd(op: string, nd: number, x: Tensor, weight: Tensor, bias: Tensor | null | undefined, opts: ConvOptions): Tensor {
  checkTensor(op, 'input', x);
  checkTensor(op, 'weight', weight);
  if (bias !== undefined && bias !== null) checkTensor(op, 'bias', bias);
  return batched(x, nd, (xb) => {
    const { attrs, groups } = convParams(op, xb.shape, weight.shape, opts, nd);
    const [n, c, ...s] = xb.shape, [o, cg, ...k] = weight.shape;
    if (bias && (bias.ndim !== 1 || bias.shape[0] !== o)) throw new Error(`${op}: expected a bias of shape [${o}] for weight ${fmt(weight.shape)}, got ${fmt(bias.shape)}`);
    const y = convGrouped(xb.reshape([n, groups, c / groups, ...s]), weight.reshape([groups, o / groups, cg, ...k]), attrs);
    const out = y.reshape([n, o, ...y.shape.slice(3)]);
    return bias ? out.add(bias.reshape([o, ...new Array<number>(nd).fill(1)])) : out;
  });
}

/** 1-d convolution: input [N, C, L] (or [C, L]), weight [O, C / groups, k], bias [O]. */
export const conv1d = (x: Tensor, weight: Tensor, bias?: Tensor | null, opts: ConvOptions = {}): Tensor => convNd('conv1d', 1, x, weight, bias, opts);
/** 2-d convolution: input [N, C, H, W] (or [C, H, W]), weight [O, C / groups, kH, kW], bias [O]. */
export const conv2d = (x: Tensor, weight: Tensor, bias?: Tensor | null, opts: ConvOptions = {}): Tensor => convNd('conv2d', 2, x, weight, bias, opts);

export interface PoolOptions {
  /** default: the kernel size */
  stride?: IntOrTuple;
  /** implicit padding on both sides, at most half the kernel (-inf for max, zeros counted for avg) */
  padding?: IntOrTuple;
}

interface Pool { k: number[]; s: number[]; p: number[]; out: number[] }

function poolParams(op: string, x: Tensor, kernelSize: IntOrTuple, opts: PoolOptions): Pool {
  checkTensor(op, 'input', x);
  if (x.ndim !== 4) throw new Error(`${op}: expected a 3-d or 4-d input [N, C, H, W], got ${fmt(x.shape)}`);
  const k = expandTuple(op, 'kernelSize', kernelSize, 2, 1, 1);
  const s = opts.stride === undefined || opts.stride === null ? k : expandTuple(op, 'stride', opts.stride, 2, 1, 1);
  const p = expandTuple(op, 'padding', opts.padding, 2, 0, 0);
  if (p.some((pp, d) => pp > k[d] / 2)) throw new Error(`${op}: padding ${fmt(p)} should be at most half of the kernel size ${fmt(k)}`);
  const hw = x.shape.slice(2);
  const out = hw.map((h, d) => Math.floor((h + 2 * p[d] - k[d]) / s[d]) + 1);
  if (out.some((o) => o < 1)) throw new Error(`${op}: kernel ${fmt(k)} is larger than the padded input ${fmt(hw.map((h, d) => h + 2 * p[d]))} (input ${fmt(x.shape)})`);
  return { k, s, p, out };
}

/** A constant float tensor on `device` (built on the host: a captured constant inside `compile`). */
const constant = (data: number[], shape: number[], device: Tensor['device']): Tensor => noGrad(() => tensor(Float32Array.from(data), { shape, device }));

/**
 * 2-d max pooling (floor mode). The gradient goes to the first maximum of each window, as in PyTorch;
 * NaN propagates.
 */
export function maxPool2d(x: Tensor, kernelSize: IntOrTuple, opts: PoolOptions = {}): Tensor {
  return batched(x, 2, (xb) => {
    const { k, s, p, out } = poolParams('maxPool2d', xb, kernelSize, opts);
    const [n, c, h, w] = xb.shape;
    if (p.every((pp) => pp === 0) && k.every((kk, d) => kk === s[d])) {
      // Windows tile the (cropped) input: one view [N, C, Ho, kh, Wo, kw].
      const v = xb.index(null, null, [0, out[0] * k[0]], [0, out[1] * k[1]]).reshape([n, c, out[0], k[0], out[1], k[1]]);
      if (!isGradEnabled() || !xb.requiresGrad) return v.max([3, 5]);
      // A band of kh input rows is one contiguous row of kh·W values, in which the window's first
      // maximum (a NaN first) at (i, j) = (first div kw, first mod kw) sits at i·W + wo·kw + j. Gathering
      // it copies the value, and its gradient is a scatter to exactly that position (PyTorch's rule).
      const idx = noGrad(() => {
        const first = argmaxOver(v, [3, 5]).reshape([n, c, out[0], out[1]]);
        let row = first.ge(k[1]).int(); // first div kw, without a division
        for (let r = 2; r < k[0]; r++) row = row.add(first.ge(r * k[1]).int());
        const col = arange(0, out[1] * k[1], k[1], { dtype: 'int32', device: xb.device });
        return first.add(row.mul(w - k[1])).add(col);
      });
      const bands = (out[0] * k[0] === h ? xb : xb.index(null, null, [0, out[0] * k[0]])).reshape([n, c, out[0], k[0] * w]);
      return bands.gather(3, idx);
    }
    // Padding with -inf, then one strided view per window position.
    let xp = xb;
    if (p.some((pp) => pp > 0)) {
      const hp = h + 2 * p[0], wp = w + 2 * p[1];
      const inside: number[] = [];
      for (let i = 0; i < hp; i++) for (let j = 0; j < wp; j++) inside.push(i >= p[0] && i < h + p[0] && j >= p[1] && j < w + p[1] ? 1 : 0);
      xp = where(constant(inside, [hp, wp], xb.device).ne(0), zeroPad(xb, p), -Infinity);
    }
    const views: Tensor[] = [];
    for (let i = 0; i < k[0]; i++) {
      for (let j = 0; j < k[1]; j++) views.push(xp.index(null, null, [i, i + s[0] * (out[0] - 1) + 1, s[0]], [j, j + s[1] * (out[1] - 1) + 1, s[1]]));
    }
    const m = views.slice(1).reduce((a, b) => a.maximum(b), views[0]).detach();
    // taken: 1 where an earlier window position already held the maximum. A window holding NaN has
    // no hit: it gives m (NaN). Selecting with `where` keeps the -inf padding out of products.
    let taken: Tensor | null = null, result: Tensor | null = null;
    for (const v of views) {
      const hit: Tensor = taken ? v.eq(m).logicalAnd(taken.eq(0)) : v.eq(m);
      const term = where(hit, v, 0);
      result = result ? result.add(term) : term;
      taken = taken ? taken.add(hit.float()) : hit.float();
    }
    return where(taken!.eq(0), m, result!);
  });
}

/** 2-d average pooling (floor mode; zero padding counted in the average, PyTorch's default). */
export function avgPool2d(x: Tensor, kernelSize: IntOrTuple, opts: PoolOptions = {}): Tensor {
  return batched(x, 2, (xb) => {
    const { k, s, p } = poolParams('avgPool2d', xb, kernelSize, opts);
    const [n, c, h, w] = xb.shape;
    const weight = full([1, 1, 1, k[0], k[1]], 1 / (k[0] * k[1]), { device: xb.device });
    const attrs = { stride: s, padLo: p, padHi: p, dilation: [1, 1], lhsDilation: [1, 1], flip: false, outPerm: naturalOrder(2) };
    const y = convGrouped(xb.reshape([n * c, 1, 1, h, w]), weight, attrs);
    return y.reshape([n, c, y.shape[3], y.shape[4]]);
  });
}

/** The [out, size] matrix averaging PyTorch's adaptive windows [floor(i*size/out), ceil((i+1)*size/out)). */
function averaging(size: number, out: number): { data: number[]; shape: number[] } {
  const data = new Array<number>(out * size).fill(0);
  for (let i = 0; i < out; i++) {
    const a = Math.floor((i * size) / out), b = Math.ceil(((i + 1) * size) / out);
    for (let j = a; j < b; j++) data[i * size + j] = 1 / (b - a);
  }
  return { data, shape: [out, size] };
}

/** 2-d adaptive average pooling to `outputSize` (a number, or [h, w] where null keeps the input's size). */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | readonly (number | null)[]): Tensor {
  checkTensor('adaptiveAvgPool2d', 'input', x);
  return batched(x, 2, (xb) => {
    if (xb.ndim !== 4) throw new Error(`adaptiveAvgPool2d: expected a 3-d or 4-d input [N, C, H, W], got ${fmt(x.shape)}`);
    const hw = xb.shape.slice(2);
    const req = typeof outputSize === 'number' ? [outputSize, outputSize] : [...outputSize];
    const out = req.map((o, d) => o ?? hw[d]);
    if (out.length !== 2 || out.some((o) => !Number.isInteger(o) || o < 1)) throw new Error(`adaptiveAvgPool2d: outputSize must be a positive integer or 2 of them, got ${JSON.stringify(outputSize)}`);
    if (out[0] === 1 && out[1] === 1) return xb.mean([2, 3], true);
    const ah = averaging(hw[0], out[0]), aw = averaging(hw[1], out[1]);
    const rows = constant(ah.data, ah.shape, xb.device), cols = constant(aw.data, aw.shape, xb.device);
    return rows.matmul(xb.matmul(cols.T));
  });
}
