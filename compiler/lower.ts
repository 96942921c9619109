// Lowering: the one table (`lowerings`) that says how each primitive computes, as a piece of the
// backend-neutral kernel description that codegen turns into JS or WGSL. Eager dispatch applies an entry
// to loads of its operands (lowerPrimitive); fusion applies the same entry to whatever expressions the
// operands fused into (passes/fusion.ts). So eager runs the same kernels as compiled code by construction.

import type { DType } from '../ir/dtype.ts';
import { mapLoads, type Expr, type Kernel, type KernelOutput, type KernelSpec, type LoadExpr } from '../ir/kernel.ts';
import type { AVal, BinaryOp, CompareOp, PrimAttrs, Primitive, ReduceOp, UnaryOp } from '../ir/primitives.ts';
import { numel } from '../ir/shape.ts';
import { contiguousView, expandView, permuteView, reshapeView, sliceView, type View } from '../ir/view.ts';

export interface LowerInput { view: View; dtype: DType }

/** What a lowering that builds its own kernels sees of its node. */
export interface KernelCtx<P extends Primitive> {
  readonly attrs: PrimAttrs[P];
  /** the result's shape and dtype */
  readonly out: AVal;
  /** the operands' shapes */
  readonly shapes: readonly (readonly number[])[];
  /** operand i's value, an expression over its own shape */
  x(i: number): Expr;
  /** operand i as a plain load (matmul operands, a gather source) */
  load(i: number): LoadExpr;
  /** the contiguous output (ask after the operands: fusion numbers arguments in order of use) */
  output(): KernelOutput;
}

/** One kernel of a lowering, and what its name gets appended (pad's zero-fill: '_zero'). */
export interface LoweredKernel { kernel: Kernel; suffix?: string }

/** How one primitive lowers: exactly one of the three shapes below. */
export type Lowering<P extends Primitive> =
  /** elementwise ops and constants: a scalar expression of the operands (it fuses into any consumer) */
  | { readonly expr: (xs: readonly Expr[], attrs: PrimAttrs[P], out: AVal) => Expr }
  /** views: index arithmetic on the operand's view; null when the layout cannot be viewed so (copy first) */
  | { readonly view: (v: View, attrs: PrimAttrs[P], out: AVal) => View | null }
  /** everything else: kernels of its own, with operands fused in where the kernel allows */
  | { readonly kernels: (c: KernelCtx<P>) => LoweredKernel[] };

const acc = (dtype: DType): Expr => ({ kind: 'acc', dtype });
const unary = (op: UnaryOp) => ({ expr: (xs: readonly Expr[], _: unknown, out: AVal): Expr => ({ kind: 'unary', op, x: xs[0], dtype: out.dtype }) });
const binary = (op: BinaryOp | CompareOp) => ({ expr: (xs: readonly Expr[], _: unknown, out: AVal): Expr => ({ kind: 'binary', op, a: xs[0], b: xs[1], dtype: out.dtype }) });
const reduce = (op: ReduceOp, axes: number[], c: KernelCtx<Primitive>): LoweredKernel[] =>
  [{ kernel: { kind: 'reduce', op, inShape: [...c.shapes[0]], axes, body: c.x(0), epilogue: acc(c.out.dtype), output: c.output() } }];

/** Applies a view transform to every load of an expression (elementwise ops commute with views). */
export const moveLoads = (e: Expr, f: (v: View) => View | null): Expr | null => mapLoads(e, (l) => { const v = f(l.view); return v && { ...l, view: v }; });

/** The lowering table: one entry per primitive (a missing one is a type error). */
export const lowerings: { [P in Primitive]: Lowering<P> } = {
  neg: unary('neg'), abs: unary('abs'), sign: unary('sign'), exp: unary('exp'), log: unary('log'), sqrt: unary('sqrt'),
  rsqrt: unary('rsqrt'), sin: unary('sin'), cos: unary('cos'), tanh: unary('tanh'), sigmoid: unary('sigmoid'), erf: unary('erf'),
  relu: unary('relu'), copy: unary('copy'),
  add: binary('add'), sub: binary('sub'), mul: binary('mul'), div: binary('div'), pow: binary('pow'),
  maximum: binary('maximum'), minimum: binary('minimum'),
  eq: binary('eq'), ne: binary('ne'), lt: binary('lt'), le: binary('le'), gt: binary('gt'), ge: binary('ge'),
  where: { expr: (xs, _, out) => ({ kind: 'where', c: xs[0], a: xs[1], b: xs[2], dtype: out.dtype }) },
  cast: { expr: (xs, a) => ({ kind: 'cast', x: xs[0], dtype: a.dtype }) },
  full: { expr: (_, a, out) => ({ kind: 'const', value: a.value, dtype: out.dtype }) },
  sum: { kernels: (c) => reduce('sum', c.attrs.axes, c) },
  max: { kernels: (c) => reduce('max', c.attrs.axes, c) },
  argmax: { kernels: (c) => reduce('argmax', c.attrs.axes, c) },
  reshape: { view: (v, _, out) => reshapeView(v, out.shape) },
  permute: { view: (v, a) => permuteView(v, a.perm) },
  expand: { view: (v, _, out) => expandView(v, out.shape) },
  slice: { view: (v, a) => sliceView(v, a.starts, a.steps, a.shape) },
  pad: {
    kernels: (c) => {
      const src = c.x(0), output = c.output();
      const inner = sliceView(output.view, c.attrs.starts, c.attrs.steps, c.shapes[0]);
      return [
        { suffix: '_zero', kernel: { kind: 'map', shape: [...c.out.shape], exprs: [{ kind: 'const', value: 0, dtype: c.out.dtype }], outputs: [output] } },
        { kernel: { kind: 'map', shape: [...c.shapes[0]], exprs: [src], outputs: [{ ...output, view: inner }] } },
      ];
    },
  },
  matmul: {
    kernels: (c) => {
      const a = c.load(0), b = c.load(1), s = c.out.shape;
      return [{ kernel: { kind: 'matmul', batch: s.slice(0, -2), m: s[s.length - 2], n: s[s.length - 1], k: c.shapes[0][c.shapes[0].length - 1], a, b, epilogue: acc(c.out.dtype), output: c.output() } }];
    },
  },
  conv: {
    // operands are read through their views (a permuted operand of a gradient in place)
    kernels: (c) => {
      const x = c.load(0), w = c.load(1);
      return [{ kernel: { kind: 'conv', attrs: c.attrs, x, w, epilogue: acc(c.out.dtype), output: c.output() } }];
    },
  },
  gather: {
    kernels: (c) => {
      const src = c.load(0), index = c.x(1);
      return [{ kernel: { kind: 'gather', axis: c.attrs.axis, shape: [...c.out.shape], src: { arg: src.arg, view: src.view, dtype: src.dtype }, index, output: c.output() } }];
    },
  },
  scatterAdd: {
    kernels: (c) => {
      const index = c.x(0), src = c.x(1);
      return [{ kernel: { kind: 'scatterAdd', axis: c.attrs.axis, srcShape: [...c.shapes[1]], index, src, output: c.output() } }];
    },
  },
  random: {
    // counted by the position in the output: the 0-d seed is broadcast over it
    kernels: (c) => {
      const seed = moveLoads(c.x(0), (v) => expandView(v, c.out.shape))!;
      return [{ kernel: { kind: 'map', shape: [...c.out.shape], exprs: [{ kind: 'random', seed, dtype: 'float32' }], outputs: [c.output()] } }];
    },
  },
};

/** The one-output map kernel computing `value` at every point of `shape`. */
export const mapKernel = (shape: readonly number[], value: Expr, output: KernelOutput): Kernel => ({ kind: 'map', shape: [...shape], exprs: [value], outputs: [output] });

/**
 * Kernels computing `prim` from `inputs` (args 0..n-1) into a contiguous output (arg n): the lowering
 * table's entry applied to loads of the arguments. Views have no kernel (the dispatcher applies them).
 */
export function lowerPrimitive<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: LowerInput[], out: AVal): KernelSpec[] {
  const output: KernelOutput = { arg: inputs.length, view: contiguousView(out.shape), dtype: out.dtype };
  const name = `${prim}_${out.shape.join('x') || 'scalar'}`;
  const load = (i: number): LoadExpr => ({ kind: 'load', arg: i, view: inputs[i].view, dtype: inputs[i].dtype });
  const l: Lowering<P> = lowerings[prim];
  if ('view' in l) throw new Error(`lower: ${prim} is a view and has no kernel`);
  const kernels: LoweredKernel[] = 'expr' in l
    ? [{ kernel: mapKernel(out.shape, l.expr(inputs.map((_, i) => load(i)), attrs, out), output) }]
    : l.kernels({ attrs, out, shapes: inputs.map((x) => x.view.shape), x: load, load, output: () => output });
  const args = [...inputs.map((x) => ({ dtype: x.dtype, size: 0 })), { dtype: out.dtype, size: numel(out.shape) }];
  return kernels.map((k) => ({ name: name + (k.suffix ?? ''), args, kernel: k.kernel, params: 0 }));
}

/** A kernel that copies `src` (arg 0, any view) into `dst` (arg 1, any view of the same shape). */
export function copyKernel(src: LowerInput, dst: LowerInput): KernelSpec {
  const value: Expr = { kind: 'load', arg: 0, view: src.view, dtype: src.dtype };
  return {
    name: `copy_${src.view.shape.join('x') || 'scalar'}`,
    args: [{ dtype: src.dtype, size: 0 }, { dtype: dst.dtype, size: 0 }],
    kernel: mapKernel(src.view.shape, src.dtype === dst.dtype ? value : { kind: 'cast', x: value, dtype: dst.dtype }, { arg: 1, view: dst.view, dtype: dst.dtype }),
    params: 0,
  };
}
