// One VJP rule per primitive, written against Tensor methods. The eager tape calls them on real
// tensors; inside `compile` the same calls on symbolic tensors record the backward IR.
// A rule gets the output gradient `g` (shape of the output) and returns one gradient per input
// (null where an input has none). Kinks follow PyTorch: relu'(0) = 0, |x|'(0) = 0, ties in
// maximum/minimum split the gradient in half, ties in max share it evenly (a NaN maximum goes to the NaNs).

import { isFloat } from '../ir/dtype.ts';
import type { PrimAttrs, Primitive } from '../ir/primitives.ts';
import { convVjp } from './conv-vjp.ts';
import type { Tensor } from './tensor.ts';

export interface VjpContext<P extends Primitive> {
  inputs: readonly Tensor[];
  out: Tensor;
  attrs: PrimAttrs[P];
  /** calls a primitive directly (for rules that need slice/pad/gather/scatterAdd) */
  prim: <Q extends Primitive>(p: Q, inputs: Tensor[], attrs: PrimAttrs[Q]) => Tensor;
}
export type VjpRule<P extends Primitive> = (g: Tensor, ctx: VjpContext<P>) => (Tensor | null)[];

const none = (): null[] => [null, null, null];

/** Swaps the last two dims (matmul operands). */
const mT = (t: Tensor): Tensor => t.transpose(-1, -2);

/** Gradient mask of maximum/minimum: 1 where `x` wins, 0.5 on ties. */
const winMask = (x: Tensor, y: Tensor, wins: Tensor): Tensor => wins.float().add(x.eq(y).float().mul(0.5));

export const vjpRules: { [P in Primitive]: VjpRule<P> } = {
  neg: (g) => [g.neg()],
  abs: (g, { inputs: [x] }) => [g.mul(x.sign())],
  sign: (g) => [g.mul(0)],
  exp: (g, { out }) => [g.mul(out)],
  log: (g, { inputs: [x] }) => [g.div(x)],
  sqrt: (g, { out }) => [g.div(out.mul(2))],
  rsqrt: (g, { out }) => [g.mul(out.pow(3)).mul(-0.5)],
  sin: (g, { inputs: [x] }) => [g.mul(x.cos())],
  cos: (g, { inputs: [x] }) => [g.mul(x.sin()).neg()],
  tanh: (g, { out }) => [g.mul(out.mul(out).neg().add(1))],
  sigmoid: (g, { out }) => [g.mul(out.mul(out.neg().add(1)))],
  // erf'(x) = 2/√π · exp(−x²)
  erf: (g, { inputs: [x] }) => [g.mul(x.mul(x).neg().exp().mul(2 / Math.sqrt(Math.PI)))],
  relu: (g, { out }) => [g.mul(out.gt(0))],
  copy: (g) => [g],
  add: (g) => [g, g],
  sub: (g) => [g, g.neg()],
  mul: (g, { inputs: [x, y] }) => [g.mul(y), g.mul(x)],
  div: (g, { inputs: [, y], out }) => [g.div(y), g.mul(out).div(y).neg()],
  pow: (g, { inputs: [x, y], out }) => [
    // PyTorch: d/dx = y * x^(y-1), taken as 0 where y == 0; d/dy = x^y * log(x), taken as 0 where x == 0 and y >= 0.
    y.requiresGrad || x.requiresGrad ? g.mul(y).mul(x.pow(y.sub(1))).mul(y.ne(0)) : null,
    y.requiresGrad ? g.mul(out).mul(x.log()).where0(x.eq(0).logicalAnd(y.ge(0))) : null,
  ],
  maximum: (g, { inputs: [x, y] }) => [g.mul(winMask(x, y, x.gt(y))), g.mul(winMask(y, x, y.gt(x)))],
  minimum: (g, { inputs: [x, y] }) => [g.mul(winMask(x, y, x.lt(y))), g.mul(winMask(y, x, y.lt(x)))],
  eq: none, ne: none, lt: none, le: none, gt: none, ge: none,
  where: (g, { inputs: [c] }) => [null, g.where0(c.logicalNot()), g.where0(c)],
  // between float types the gradient comes back in the input's type (PyTorch); integer inputs get none
  cast: (g, { inputs: [x] }) => [isFloat(x.dtype) ? g.to(x.dtype) : null],
  sum: (g, { inputs: [x] }) => [g.expand(x.shape)],
  max: (g, { inputs: [x], out, attrs }) => {
    // Ties share the gradient evenly (PyTorch's amax/amin and full max()); a NaN maximum is its NaN inputs.
    const o = out.expand(x.shape);
    const mask = x.eq(o).float().add(x.ne(x).float().mul(o.ne(o).float()));
    const count = mask.sum(attrs.axes, true);
    return [mask.mul(g.div(count).expand(x.shape))];
  },
  argmax: none,
  reshape: (g, { inputs: [x] }) => [g.reshape(x.shape)],
  permute: (g, { attrs }) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => (inv[p] = i));
    return [g.permute(inv)];
  },
  expand: (g, { inputs: [x] }) => {
    const lead = g.ndim - x.ndim;
    const axes = g.shape.map((_, i) => i).filter((i) => i < lead || (x.shape[i - lead] === 1 && g.shape[i] !== 1));
    return [axes.length ? g.sum(axes, true).reshape(x.shape) : g.reshape(x.shape)];
  },
  slice: (g, { inputs: [x], attrs, prim }) => [prim('pad', [g], { starts: attrs.starts, steps: attrs.steps, shape: [...x.shape] })],
  pad: (g, { inputs: [x], attrs, prim }) => [prim('slice', [g], { starts: attrs.starts, steps: attrs.steps, shape: [...x.shape] })],
  matmul: (g, { inputs: [a, b] }) => [a.requiresGrad ? g.matmul(mT(b)) : null, b.requiresGrad ? mT(a).matmul(g) : null],
  conv: (g, { inputs: [x, w], attrs, prim }) => convVjp(g, x, w, attrs, (a, b, at) => prim('conv', [a, b], at)),
  gather: (g, { inputs: [x, index], attrs, prim }) => [prim('scatterAdd', [index, g], { axis: attrs.axis, shape: [...x.shape] }), null],
  scatterAdd: (g, { inputs: [index], attrs, prim }) => [null, prim('gather', [g, index], { axis: attrs.axis })],
  full: none,
  random: none,
};

/**
 * The tensors a primitive's rule reads values of (PyTorch's saved tensors), so that the tape can
 * refuse a backward after one of them was modified in place. Rules that need only shapes save none.
 */
export function savedForBackward(prim: Primitive, inputs: readonly Tensor[], out: Tensor): Tensor[] {
  switch (prim) {
    case 'abs': case 'log': case 'sin': case 'cos': return [inputs[0]];
    case 'exp': case 'sqrt': case 'rsqrt': case 'tanh': case 'sigmoid': case 'relu': return [out];
    case 'mul': case 'maximum': case 'minimum': case 'matmul': return [inputs[0], inputs[1]];
    case 'div': return [inputs[1], out];
    case 'pow': case 'max': return [...inputs, out];
    case 'where': case 'scatterAdd': return [inputs[0]];
    case 'gather': return [inputs[1]];
    default: return [];
  }
}
