// Convolution's shape arithmetic: the `conv` primitive's attributes and shape rule, the kernel that
// computes it, and the normalisation of PyTorch-style options (stride, padding incl. 'same'/'valid',
// dilation, groups) with errors that name the op and the shapes.
//
// The primitive works on an explicitly grouped layout so that both gradients are convolutions again
// (runtime/conv-vjp.ts), with the groups a batch-like dimension shared by all three operands:
//   x [N, G, Cg, ...S]  (input; Cg input channels per group, S spatial)
//   w [G, Og, Cg, ...K] (weight; Og output channels per group, K the window)
//   out [N, G, Og, ...O] with out[n, g, o, p] = sum_{c, k} x[n, g, c, pos(p, k)] * w[g, o, c, k'] where,
//   per spatial dim, q = p * stride + k * dilation - padLo; pos = q / lhsDilation when q is a multiple
//   of it and inside the input (else the term is 0), and k' = k, or K - 1 - k when `flip` is set.
// The result is that natural layout permuted by `outPerm` (the identity but for the weight gradient,
// which is computed straight into the weight's layout so that an optimizer update fuses into it).
// `lhsDilation` (zeros between input elements, never materialised) and `flip` exist for the input
// gradient, a transposed convolution; padding may be negative there (it then crops).

import type { Expr, KernelOutput, LoadExpr } from './kernel.ts';
import { fmt, numel, type Shape } from './shape.ts';

export interface ConvAttrs {
  stride: number[];
  padLo: number[];
  padHi: number[];
  dilation: number[];
  lhsDilation: number[];
  flip: boolean;
  /** output dim i is natural dim outPerm[i] */
  outPerm: number[];
}

/** The size of one output spatial dim (may be < 1: the window does not fit). */
export function convOutSize(inSize: number, k: number, stride: number, dilation: number, lo: number, hi: number, lhsDilation: number): number {
  const span = (inSize - 1) * lhsDilation + 1 + lo + hi - dilation * (k - 1) - 1;
  return span < 0 ? 0 : Math.floor(span / stride) + 1;
}

/** The shape rule of the `conv` primitive (grouped layout, see the top of this file). */
export function convShape(x: Shape, w: Shape, a: ConvAttrs): number[] {
  const nd = x.length - 3;
  const attrsOk = [a.stride, a.padLo, a.padHi, a.dilation, a.lhsDilation].every((v) => v.length === nd && v.every(Number.isInteger))
    && [a.stride, a.dilation, a.lhsDilation].every((v) => v.every((s) => s >= 1));
  if (nd < 1 || w.length !== x.length || !attrsOk) {
    throw new Error(`conv: expected input [N, G, Cg, ...spatial] and weight [G, Og, Cg, ...kernel] of equal rank with ${Math.max(nd, 0)} strides, paddings and dilations, got input ${fmt(x)}, weight ${fmt(w)}, attributes ${JSON.stringify(a)}`);
  }
  if (w[0] !== x[1] || w[2] !== x[2]) throw new Error(`conv: weight ${fmt(w)} does not match input ${fmt(x)} (groups ${x[1]} vs ${w[0]}, channels per group ${x[2]} vs ${w[2]})`);
  const out = x.slice(3).map((s, d) => convOutSize(s, w[3 + d], a.stride[d], a.dilation[d], a.padLo[d], a.padHi[d], a.lhsDilation[d]));
  if (out.some((o) => o < 1)) throw new Error(`conv: kernel ${fmt(w.slice(3))} (dilation ${fmt(a.dilation)}) is larger than the padded input ${fmt(x.slice(3).map((s, d) => (s - 1) * a.lhsDilation[d] + 1 + a.padLo[d] + a.padHi[d]))}`);
  const natural = [x[0], x[1], w[1], ...out];
  const p = a.outPerm;
  if (p.length !== natural.length || new Set(p).size !== p.length || p.some((d) => !Number.isInteger(d) || d < 0 || d >= p.length)) {
    throw new Error(`conv: outPerm ${fmt(p)} is not a permutation of the ${natural.length} output dims`);
  }
  return p.map((d) => natural[d]);
}

/** The identity `outPerm` of an output with `nd` spatial dims. */
export const naturalOrder = (nd: number): number[] => Array.from({ length: nd + 3 }, (_, i) => i);

/**
 * The kernel computing one `conv` node: `x` and `w` are loads through any views (a transposed or
 * permuted operand is read in place); `epilogue` (in which `acc` is the convolution's value) and
 * `output` are over the node's output shape (the natural [N, G, Og, ...O] permuted by outPerm).
 */
export interface ConvKernel { kind: 'conv'; attrs: ConvAttrs; x: LoadExpr; w: LoadExpr; epilogue: Expr; output: KernelOutput }

/** The sizes a conv kernel iterates over, read from its operands' views. */
export interface ConvGeometry {
  n: number; groups: number; cin: number; cout: number;
  inSize: number[]; kernel: number[]; outSize: number[];
}

export function convGeometry(x: Shape, w: Shape, a: ConvAttrs): ConvGeometry {
  const out = convShape(x, w, { ...a, outPerm: naturalOrder(x.length - 3) });
  return { n: x[0], groups: x[1], cin: x[2], cout: w[1], inSize: x.slice(3), kernel: w.slice(3), outSize: out.slice(3) };
}

// ---- PyTorch-style options (F.conv1d / F.conv2d, nn.Conv1d / nn.Conv2d) -----------------------------

export type IntOrTuple = number | readonly number[];

export interface ConvOptions {
  stride?: IntOrTuple;
  /** a number or one per spatial dim (both sides), or 'same' (stride 1 only) / 'valid' (no padding) */
  padding?: IntOrTuple | 'same' | 'valid';
  dilation?: IntOrTuple;
  groups?: number;
}

/** A number or a tuple of `nd` non-negative (or positive) integers, as PyTorch accepts them. */
export function expandTuple(op: string, what: string, v: IntOrTuple | undefined, nd: number, dflt: number, min: number): number[] {
  const arr = v === undefined ? new Array<number>(nd).fill(dflt) : typeof v === 'number' ? new Array<number>(nd).fill(v) : [...v];
  if (arr.length !== nd || arr.some((x) => !Number.isInteger(x) || x < min)) {
    throw new Error(`${op}: ${what} must be ${min > 0 ? 'a positive' : 'a non-negative'} integer or ${nd} of them, got ${JSON.stringify(v)}`);
  }
  return arr;
}

/** The attributes of a PyTorch-style convolution of input `x` [N, C, ...S] with weight `w` [O, C/groups, ...K]. */
export function convParams(op: string, x: Shape, w: Shape, opts: ConvOptions, nd: number): { attrs: ConvAttrs; groups: number } {
  if (x.length !== nd + 2) throw new Error(`${op}: expected a ${nd + 2}-d input [N, C, ${nd === 1 ? 'L' : 'H, W'}], got ${fmt(x)}`);
  if (w.length !== nd + 2) throw new Error(`${op}: expected a ${nd + 2}-d weight [outChannels, inChannels / groups, ${nd === 1 ? 'kL' : 'kH, kW'}], got ${fmt(w)}`);
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new Error(`${op}: groups must be a positive integer, got ${String(groups)}`);
  if (x[1] % groups !== 0) throw new Error(`${op}: groups ${groups} does not divide the input's ${x[1]} channels (input ${fmt(x)})`);
  if (w[0] % groups !== 0) throw new Error(`${op}: groups ${groups} does not divide the weight's ${w[0]} output channels (weight ${fmt(w)})`);
  if (w[1] * groups !== x[1]) {
    throw new Error(`${op}: input ${fmt(x)} has ${x[1]} channels but weight ${fmt(w)} expects ${w[1] * groups} (${w[1]} per group x groups ${groups})`);
  }
  const stride = expandTuple(op, 'stride', opts.stride, nd, 1, 1);
  const dilation = expandTuple(op, 'dilation', opts.dilation, nd, 1, 1);
  const k = w.slice(2);
  let padLo: number[], padHi: number[];
  if (opts.padding === 'same') {
    if (stride.some((s) => s !== 1)) throw new Error(`${op}: padding='same' is not supported for strided convolutions (stride ${fmt(stride)})`);
    // PyTorch puts the odd one of an even total on the high side.
    const total = k.map((kk, d) => dilation[d] * (kk - 1));
    padLo = total.map((t) => Math.floor(t / 2));
    padHi = total.map((t, d) => t - padLo[d]);
  } else if (opts.padding === 'valid') {
    padLo = new Array<number>(nd).fill(0); padHi = padLo;
  } else {
    padLo = expandTuple(op, 'padding', opts.padding, nd, 0, 0); padHi = padLo;
  }
  const padded = x.slice(2).map((s, d) => s + padLo[d] + padHi[d]);
  const span = k.map((kk, d) => dilation[d] * (kk - 1) + 1);
  if (span.some((s, d) => s > padded[d])) {
    throw new Error(`${op}: kernel ${fmt(k)}${dilation.some((d) => d !== 1) ? ` with dilation ${fmt(dilation)} (span ${fmt(span)})` : ''} is larger than the padded input ${fmt(padded)} (input ${fmt(x)}, weight ${fmt(w)})`);
  }
  return { attrs: { stride, padLo, padHi, dilation, lhsDilation: new Array<number>(nd).fill(1), flip: false, outPerm: naturalOrder(nd) }, groups };
}

/** The number of multiply-adds of a convolution (for choosing kernels and reporting). */
export const convWork = (g: ConvGeometry): number => g.n * g.groups * g.cout * numel(g.outSize) * g.cin * numel(g.kernel);
