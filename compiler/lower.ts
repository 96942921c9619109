// Lowers one primitive to the backend-neutral kernel description that codegen turns into JS or WGSL.
// Eager mode runs exactly these kernels; the fusion pass builds bigger ones from the same pieces.

import type { DType } from '../ir/dtype.ts';
import type { Expr, Kernel, KernelSpec } from '../ir/kernel.ts';
import type { AVal, BinaryOp, CompareOp, PrimAttrs, Primitive } from '../ir/primitives.ts';
import { isCompare, isUnary, primitiveInfo } from '../ir/primitives.ts';
import { numel } from '../ir/shape.ts';
import { contiguousView, expandView, sliceView, type View } from '../ir/view.ts';

export interface LowerInput { view: View; dtype: DType }

const load = (arg: number, x: LowerInput): Expr => ({ kind: 'load', arg, view: x.view, dtype: x.dtype });
const acc = (dtype: DType): Expr => ({ kind: 'acc', dtype });

/** The scalar expression of an elementwise primitive applied to operand expressions. */
export function elementwiseExpr(prim: Primitive, attrs: PrimAttrs[Primitive], xs: Expr[], dtype: DType): Expr {
  if (isUnary(prim)) return { kind: 'unary', op: prim, x: xs[0], dtype };
  if (primitiveInfo[prim].kind === 'binary' || isCompare(prim)) return { kind: 'binary', op: prim as BinaryOp | CompareOp, a: xs[0], b: xs[1], dtype };
  if (prim === 'where') return { kind: 'where', c: xs[0], a: xs[1], b: xs[2], dtype };
  if (prim === 'cast') return { kind: 'cast', x: xs[0], dtype: (attrs as PrimAttrs['cast']).dtype };
  if (prim === 'full') return { kind: 'const', value: (attrs as PrimAttrs['full']).value, dtype };
  throw new Error(`lower: ${prim} is not elementwise`);
}

const spec = (name: string, inputs: LowerInput[], out: AVal, kernel: Kernel): KernelSpec => ({
  name,
  args: [...inputs.map((x) => ({ dtype: x.dtype, size: 0 })), { dtype: out.dtype, size: numel(out.shape) }],
  kernel,
  params: 0,
});

/**
 * Kernels computing `prim` from `inputs` (args 0..n-1) into a contiguous output (arg n).
 * Movement primitives other than pad are views and have no kernel.
 */
export function lowerPrimitive<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: LowerInput[], out: AVal): KernelSpec[] {
  const o = inputs.length;
  const output = { arg: o, view: contiguousView(out.shape), dtype: out.dtype };
  const name = `${prim}_${out.shape.join('x') || 'scalar'}`;
  switch (prim) {
    case 'sum': case 'max': {
      const axes = (attrs as PrimAttrs['sum']).axes;
      return [spec(name, inputs, out, { kind: 'reduce', op: prim, inShape: [...inputs[0].view.shape], axes, body: load(0, inputs[0]), epilogue: acc(out.dtype), output })];
    }
    case 'argmax': {
      const axis = (attrs as PrimAttrs['argmax']).axis;
      return [spec(name, inputs, out, { kind: 'reduce', op: 'argmax', inShape: [...inputs[0].view.shape], axes: [axis], body: load(0, inputs[0]), epilogue: acc('int32'), output })];
    }
    case 'matmul': {
      const s = out.shape;
      const k = inputs[0].view.shape[inputs[0].view.shape.length - 1];
      return [spec(name, inputs, out, { kind: 'matmul', batch: s.slice(0, -2), m: s[s.length - 2], n: s[s.length - 1], k, a: load(0, inputs[0]), b: load(1, inputs[1]), epilogue: acc(out.dtype), output })];
    }
    case 'gather': {
      const { axis } = attrs as PrimAttrs['gather'];
      return [spec(name, inputs, out, { kind: 'gather', axis, shape: [...out.shape], src: { arg: 0, view: inputs[0].view, dtype: inputs[0].dtype }, index: load(1, inputs[1]), output })];
    }
    case 'scatterAdd': {
      const { axis } = attrs as PrimAttrs['scatterAdd'];
      return [spec(name, inputs, out, { kind: 'scatterAdd', axis, srcShape: [...inputs[0].view.shape], index: load(0, inputs[0]), src: load(1, inputs[1]), output })];
    }
    case 'pad': {
      const { starts, steps } = attrs as PrimAttrs['pad'];
      const inner = sliceView(output.view, starts, steps, inputs[0].view.shape);
      return [
        spec(`${name}_zero`, inputs, out, { kind: 'map', shape: [...out.shape], exprs: [{ kind: 'const', value: 0, dtype: out.dtype }], outputs: [output] }),
        spec(name, inputs, out, { kind: 'map', shape: [...inputs[0].view.shape], exprs: [load(0, inputs[0])], outputs: [{ ...output, view: inner }] }),
      ];
    }
    case 'random':
      return [spec(name, inputs, out, { kind: 'map', shape: [...out.shape], exprs: [{ kind: 'random', seed: load(0, { ...inputs[0], view: expandView(inputs[0].view, out.shape) }), dtype: 'float32' }], outputs: [output] })];
    case 'reshape': case 'permute': case 'expand': case 'slice':
      throw new Error(`lower: ${prim} is a view and has no kernel`);
    default: {
      const expr = elementwiseExpr(prim, attrs, inputs.map((x, i) => load(i, x)), out.dtype);
      return [spec(name, inputs, out, { kind: 'map', shape: [...out.shape], exprs: [expr], outputs: [output] })];
    }
  }
}

/** A kernel that copies `src` (arg 0, any view) into `dst` (arg 1, any view of the same shape). */
export function copyKernel(src: LowerInput, dst: LowerInput): KernelSpec {
  return {
    name: `copy_${src.view.shape.join('x') || 'scalar'}`,
    args: [{ dtype: src.dtype, size: 0 }, { dtype: dst.dtype, size: 0 }],
    kernel: { kind: 'map', shape: [...src.view.shape], exprs: [src.dtype === dst.dtype ? load(0, src) : { kind: 'cast', x: load(0, src), dtype: dst.dtype }], outputs: [{ arg: 1, view: dst.view, dtype: dst.dtype }] },
    params: 0,
  };
}
