// The primitive -> ONNX operator table: one entry per kiln primitive, typed `{ [P in Primitive]: ... }`
// so that adding a primitive does not typecheck until its export is written here. An entry receives
// an Emitter (onnx/export.ts builds the graph) and the ONNX names of the node's operands, and returns
// the name of the value it computes. kiln's elementwise ops take operands of one shape but possibly of
// different dtypes (promotion is implicit), while ONNX wants one type: entries cast explicitly.

import { compareType, isFloat, type DType } from '../ir/dtype.ts';
import type { NodeOf } from '../ir/graph.ts';
import type { Primitive } from '../ir/primitives.ts';
import type { AttrValue } from './proto.ts';

/** A dimension of an exported value: a number, or `a * batch + c` when the batch dimension is dynamic. */
export type Dim = number | { readonly a: number; readonly c: number };

/** What an entry may use to build the ONNX graph (implemented in onnx/export.ts). */
export interface Emitter {
  readonly opset: number;
  /** the batch sizes the graph was traced at (one when the export is static) */
  readonly batches: readonly number[];
  dtypeOf(id: number): DType;
  /** the dimensions of kiln node `id` (Dim objects only when the batch is dynamic) */
  dimsOf(id: number): readonly Dim[];
  /** one ONNX node with one output; returns the output's name */
  node(opType: string, inputs: readonly string[], attrs?: Record<string, AttrValue>): string;
  /** `x` converted from one dtype to another (no node when they are equal) */
  cast(x: string, from: DType, to: DType): string;
  /** a 1-D int64 constant */
  int64s(values: readonly number[]): string;
  /** a 0-d constant of a dtype */
  scalar(value: number, dtype: DType): string;
  /** a 1-D int64 shape: a constant when every dim is a number, computed from the input's batch size otherwise */
  shape(dims: readonly Dim[]): string;
  /** a clear error naming the node's op, the problem and the user's source line */
  unsupported(reason: string): never;
  /** the construct has no mapping with a dynamic batch (the exporter then falls back to a static one) */
  staticOnly(reason: string): never;
}

type Lowering<P extends Primitive> = (e: Emitter, n: NodeOf<P>, x: readonly string[]) => string;

export const ONNX_ELEM = { float32: 1, float64: 11, int32: 6, bool: 9 } as const satisfies Record<DType, number>;
const int = (value: number): AttrValue => ({ kind: 'int', value });
const ints = (value: readonly number[]): AttrValue => ({ kind: 'ints', value });
/** ONNX Slice's "to the end" (ends are clamped to the dimension; a JS number must stay exact). */
const TO_END = Number.MAX_SAFE_INTEGER;

export const evalDim = (d: Dim, batch: number): number => (typeof d === 'number' ? d : d.a * batch + d.c);

/**
 * An elementwise op computed in `compute`: operands are cast to it, the result is cast to the node's
 * dtype. ONNX's integer kernels exclude bool, so bool arithmetic runs in int32 (as kiln's JS does).
 */
function elementwise<P extends Primitive>(build: (e: Emitter, xs: string[], compute: DType) => string): Lowering<P> {
  return (e, n, x) => {
    const compute = n.dtype === 'bool' ? 'int32' : n.dtype;
    const xs = x.map((v, i) => e.cast(v, e.dtypeOf(n.inputs[i]), compute));
    return e.cast(build(e, xs, compute), compute, n.dtype);
  };
}
const simple = <P extends Primitive>(opType: string) => elementwise<P>((e, xs) => e.node(opType, xs));
/** Comparisons compute in the wider operand type (kiln's rule); bool operands in int32 (Less has no bool kernel). */
function compare<P extends Primitive>(opType: string, negate = false): Lowering<P> {
  return (e, n, x) => {
    const [ta, tb] = n.inputs.map((i) => e.dtypeOf(i));
    const t = compareType(ta, tb);
    const r = e.node(opType, [e.cast(x[0], ta, t), e.cast(x[1], tb, t)]);
    return negate ? e.node('Not', [r]) : r;
  };
}

/** kiln reductions keep the reduced axes (size 1). */
function reduceAxes(e: Emitter, opType: string, x: string, axes: readonly number[], axesAsInput: boolean): string {
  if (axes.length === 0) return e.node('Identity', [x]);
  return axesAsInput
    ? e.node(opType, [x, e.int64s(axes)], { keepdims: int(1) })
    : e.node(opType, [x], { axes: ints(axes), keepdims: int(1) });
}

/** kiln's pad along one axis with a step > 1: interleave zeros (unsqueeze, pad, merge), then trim. */
function spread(e: Emitter, x: string, dims: Dim[], axis: number, step: number): { value: string; dims: Dim[] } {
  const n = dims[axis];
  if (typeof n !== 'number') e.staticOnly(`a strided pad along the batch dimension`);
  const wide = [...dims.slice(0, axis + 1), 1, ...dims.slice(axis + 1)];
  const unsq = e.node('Unsqueeze', [x, e.int64s([axis + 1])]);
  const pads = wide.map(() => 0).concat(wide.map((_, i) => (i === axis + 1 ? step - 1 : 0)));
  const padded = e.node('Pad', [unsq, e.int64s(pads)]);
  const merged: Dim[] = dims.map((d, i) => (i === axis ? n * step : d));
  const flat = e.node('Reshape', [padded, e.shape(merged)], { allowzero: int(1) });
  const len = n === 0 ? 0 : (n - 1) * step + 1;
  const trimmed = e.node('Slice', [flat, e.int64s([0]), e.int64s([len]), e.int64s([axis])]);
  return { value: trimmed, dims: dims.map((d, i) => (i === axis ? len : d)) };
}

/** The ONNX graph for each primitive. */
export const onnxLowerings: { [P in Primitive]: Lowering<P> } = {
  neg: simple('Neg'),
  abs: simple('Abs'),
  sign: simple('Sign'),
  exp: simple('Exp'),
  log: simple('Log'),
  sqrt: simple('Sqrt'),
  rsqrt: elementwise((e, [x]) => e.node('Reciprocal', [e.node('Sqrt', [x])])),
  sin: simple('Sin'),
  cos: simple('Cos'),
  tanh: simple('Tanh'),
  sigmoid: simple('Sigmoid'),
  erf: simple('Erf'),
  // ONNX Runtime's Relu is float-only: integers take max(x, 0)
  relu: elementwise((e, [x], t) => (isFloat(t) ? e.node('Relu', [x]) : e.node('Max', [x, e.scalar(0, t)]))),
  copy: (e, n, [x]) => e.node('Identity', [x]),
  add: simple('Add'),
  sub: simple('Sub'),
  mul: simple('Mul'),
  div: simple('Div'),
  pow: simple('Pow'),
  maximum: simple('Max'),
  minimum: simple('Min'),
  eq: compare('Equal'),
  ne: compare('Equal', true),
  lt: compare('Less'),
  le: compare('LessOrEqual'),
  gt: compare('Greater'),
  ge: compare('GreaterOrEqual'),
  where: (e, n, [c, a, b]) =>
    e.node('Where', [c, e.cast(a, e.dtypeOf(n.inputs[1]), n.dtype), e.cast(b, e.dtypeOf(n.inputs[2]), n.dtype)]),
  cast: (e, n, [x]) => e.cast(x, e.dtypeOf(n.inputs[0]), n.attrs.dtype),
  // ReduceSum takes its axes as an input from opset 13; ReduceMax only from opset 18
  sum: (e, n, [x]) => reduceAxes(e, 'ReduceSum', e.cast(x, e.dtypeOf(n.inputs[0]), n.dtype), n.attrs.axes, true),
  max: (e, n, [x]) => {
    const from = e.dtypeOf(n.inputs[0]), t = from === 'bool' ? 'int32' : from;
    return e.cast(reduceAxes(e, 'ReduceMax', e.cast(x, from, t), n.attrs.axes, e.opset >= 18), t, n.dtype);
  },
  argmax: (e, n, [x]) => {
    // Tensor.argmax takes one dim; several axes come only from max pooling's gradient (nn/conv.ts),
    // which an export (traced without gradients) never contains.
    if (n.attrs.axes.length !== 1) e.unsupported(`argmax over several axes ${JSON.stringify(n.attrs.axes)} has no ONNX ArgMax`);
    const from = e.dtypeOf(n.inputs[0]);
    const arg = e.node('ArgMax', [e.cast(x, from, from === 'bool' ? 'int32' : from)], { axis: int(n.attrs.axes[0]), keepdims: int(1), select_last_index: int(0) });
    return e.node('Cast', [arg], { to: int(ONNX_ELEM.int32) });
  },
  reshape: (e, n, [x]) => {
    const dims = e.dimsOf(n.id);
    // without allowzero, a 0 in the shape means "copy the input's dimension"
    const attrs = dims.includes(0) ? { allowzero: int(1) } : undefined;
    // one dimension following the batch reads best as ONNX's "the rest" (-1)
    const dynamic = dims.filter((d) => typeof d !== 'number');
    if (dynamic.length === 1 && !dims.includes(0)) return e.node('Reshape', [x, e.int64s(dims.map((d) => (typeof d === 'number' ? d : -1)))]);
    return e.node('Reshape', [x, e.shape(dims)], attrs);
  },
  permute: (e, n, [x]) => e.node('Transpose', [x], { perm: ints(n.attrs.perm) }),
  expand: (e, n, [x]) => e.node('Expand', [x, e.shape(e.dimsOf(n.id))]),
  slice: (e, n, [x]) => {
    const inDims = e.dimsOf(n.inputs[0]), outDims = e.dimsOf(n.id);
    const { starts, steps } = n.attrs;
    const axes: number[] = [], st: number[] = [], en: number[] = [], sp: number[] = [];
    outDims.forEach((m, i) => {
      const whole = starts[i] === 0 && steps[i] === 1 && JSON.stringify(m) === JSON.stringify(inDims[i]);
      if (whole) return;
      let end: number;
      if (typeof m === 'number') {
        end = m === 0 ? starts[i] : starts[i] + steps[i] * (m - 1) + 1;
      } else {
        // a length that follows the batch: the slice must run to the end of the dimension at every traced size
        const toEnd = e.batches.every((b) => {
          const len = evalDim(inDims[i], b), last = starts[i] + steps[i] * (evalDim(m, b) - 1);
          return last <= len - 1 && last >= len - steps[i];
        });
        if (!toEnd) e.staticOnly(`a slice whose length follows the batch size but does not run to the end (axis ${i})`);
        end = TO_END;
      }
      axes.push(i); st.push(starts[i]); en.push(end); sp.push(steps[i]);
    });
    if (axes.length === 0) return e.node('Identity', [x]);
    return e.node('Slice', [x, e.int64s(st), e.int64s(en), e.int64s(axes), e.int64s(sp)]);
  },
  pad: (e, n, [x0]) => {
    let x = x0;
    let dims = [...e.dimsOf(n.inputs[0])];
    const { starts, steps } = n.attrs, outDims = e.dimsOf(n.id);
    steps.forEach((s, axis) => {
      if (s === 1) return;
      ({ value: x, dims } = spread(e, x, dims, axis, s));
    });
    const after = outDims.map((m, i) => {
      const amounts = e.batches.map((b) => evalDim(m, b) - starts[i] - evalDim(dims[i], b));
      if (amounts.some((a) => a !== amounts[0])) e.staticOnly(`a pad whose amount follows the batch size (axis ${i})`);
      return amounts[0];
    });
    if (starts.every((s) => s === 0) && after.every((a) => a === 0)) return e.node('Identity', [x]);
    return e.node('Pad', [x, e.int64s([...starts, ...after])], { mode: { kind: 'string', value: 'constant' } });
  },
  matmul: (e, n, [a, b]) => {
    if (n.dtype === 'bool') e.unsupported('a matrix product of bool tensors has no ONNX Runtime kernel');
    return e.node('MatMul', [e.cast(a, e.dtypeOf(n.inputs[0]), n.dtype), e.cast(b, e.dtypeOf(n.inputs[1]), n.dtype)]);
  },
  // kiln's grouped layout x [N, G, Cg, ...S], w [G, Og, Cg, ...K] -> [N, G, Og, ...O], permuted by outPerm:
  // ONNX's Conv on [N, G*Cg, ...S] and [G*Og, Cg, ...K] with group G (a Reshape's 0 keeps N, the batch)
  conv: (e, n, [x, w]) => {
    const a = n.attrs;
    if (a.flip || a.lhsDilation.some((d) => d !== 1)) e.unsupported('a convolution with input dilation or a flipped kernel (the transposed form of an input gradient) has no Conv form');
    if ([...a.padLo, ...a.padHi].some((p) => p < 0)) e.unsupported(`negative padding (${a.padLo} / ${a.padHi}) has no Conv form`);
    const [, G, Cg, ...S] = e.dimsOf(n.inputs[0]), [, Og, , ...K] = e.dimsOf(n.inputs[1]);
    // the node's dim i is the natural layout's dim outPerm[i]
    const O = a.outPerm.slice(3).map((_, j) => e.dimsOf(n.id)[a.outPerm.indexOf(j + 3)]);
    const fixed = [G, Cg, Og, ...S, ...K, ...O];
    if (!fixed.every((d): d is number => typeof d === 'number')) e.staticOnly('a convolution whose channels or spatial sizes follow the batch size');
    const [g, cg, og] = [G, Cg, Og] as number[];
    const x2 = e.node('Reshape', [x, e.int64s([0, g * cg, ...(S as number[])])]);
    const w2 = e.node('Reshape', [w, e.int64s([g * og, cg, ...(K as number[])])]);
    const y = e.node('Conv', [x2, w2], { group: int(g), kernel_shape: ints(K as number[]), strides: ints(a.stride), dilations: ints(a.dilation), pads: ints([...a.padLo, ...a.padHi]) });
    const natural = e.node('Reshape', [y, e.int64s([0, g, og, ...(O as number[])])]);
    return a.outPerm.every((p, i) => p === i) ? natural : e.node('Transpose', [natural], { perm: ints(a.outPerm) });
  },
  gather: (e, n, [x, index]) => e.node('GatherElements', [x, index], { axis: int(n.attrs.axis) }),
  scatterAdd: (e, n, [index, src]) => {
    if (n.dtype === 'bool') e.unsupported('ScatterElements with reduction "add" has no bool kernel in ONNX Runtime');
    const zeros = e.node('ConstantOfShape', [e.shape(e.dimsOf(n.id))], { value: tensorValue(0, n.dtype) });
    return e.node('ScatterElements', [zeros, index, src], { axis: int(n.attrs.axis), reduction: { kind: 'string', value: 'add' } });
  },
  full: (e, n) => e.node('ConstantOfShape', [e.shape(e.dimsOf(n.id))], { value: tensorValue(n.attrs.value, n.dtype) }),
  // ONNX has no counter-based generator: the numbers are ONNX Runtime's own (same distribution, other values)
  random: (e, n) => {
    const like = e.node('ConstantOfShape', [e.shape(e.dimsOf(n.id))], { value: tensorValue(0, 'float32') });
    return e.node('RandomUniformLike', [like], { dtype: int(ONNX_ELEM.float32), low: { kind: 'float', value: 0 }, high: { kind: 'float', value: 1 } });
  },
};

/** A one-element tensor attribute (ConstantOfShape's fill value). */
export function tensorValue(value: number, dtype: DType): AttrValue {
  return { kind: 'tensor', value: { name: '', dims: [1], dataType: ONNX_ELEM[dtype], rawData: rawBytes([value], dtype) } };
}

/** Little-endian bytes of values in an ONNX element type (bool: one byte each, float64: DOUBLE). */
export function rawBytes(values: ArrayLike<number>, dtype: DType): Uint8Array {
  const a = dtype === 'float32' ? Float32Array.from(values)
    : dtype === 'float64' ? Float64Array.from(values)
    : dtype === 'int32' ? Int32Array.from(values)
    : Uint8Array.from(values, (v) => (v !== 0 ? 1 : 0));
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
