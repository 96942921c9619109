// The primitive set: every op kiln can run is one of these. Each has one entry in the info table and one
// shape/dtype rule here, one VJP rule (runtime/vjp.ts), one lowering (compiler/lower.ts, the
// backend-neutral kernel) and, for scalar ops, one spelling per backend (compiler/codegen/spelling-*.ts).

import { type DType, isFloat, promote } from './dtype.ts';
import { convShape, type ConvAttrs } from './conv.ts';
import { broadcastShapes, fmt, numel, sameShape } from './shape.ts';

/** Attributes of each primitive. Elementwise ops take already-broadcast inputs of one shape. */
export interface PrimAttrs {
  // elementwise
  neg: {}; abs: {}; sign: {}; exp: {}; log: {}; sqrt: {}; rsqrt: {}; sin: {}; cos: {}; tanh: {}; sigmoid: {}; erf: {}; relu: {}; copy: {};
  add: {}; sub: {}; mul: {}; div: {}; pow: {}; maximum: {}; minimum: {};
  eq: {}; ne: {}; lt: {}; le: {}; gt: {}; ge: {};
  where: {};
  cast: { dtype: DType };
  // reductions keep reduced axes as size 1 (the frontend reshapes them away)
  sum: { axes: number[] };
  max: { axes: number[] };
  /** the first maximum's position over `axes`, counted row-major over them (a NaN counts as the maximum) */
  argmax: { axes: number[] };
  // movement (views; no data is copied unless a consumer needs it contiguous)
  reshape: { shape: number[] };
  permute: { perm: number[] };
  expand: { shape: number[] };
  slice: { starts: number[]; steps: number[]; shape: number[] };
  /** Inverse of slice: places the input at starts + i*steps inside zeros of `shape`. */
  pad: { starts: number[]; steps: number[]; shape: number[] };
  // [...B, M, K] @ [...B, K, N] with equal batch dims (the frontend broadcasts)
  matmul: {};
  // x [N, G, Cg, ...S] * w [G, Og, Cg, ...K] -> [N, G, Og, ...O] (ir/conv.ts)
  conv: ConvAttrs;
  // out[i] = x[i with i[axis] = index[i]]; index has the output's shape
  gather: { axis: number };
  // zeros(shape) then out[i with i[axis] = index[i]] += src[i]
  scatterAdd: { axis: number; shape: number[] };
  // a tensor filled with one value (constants fold into kernels)
  full: { shape: number[]; value: number; dtype: DType };
  // uniform numbers in [0, 1), counter-based: hashed from the 0-d seed input and each element's position
  random: { shape: number[] };
}
export type Primitive = keyof PrimAttrs;

/**
 * What a primitive is, for every pass and backend that classifies ops: each classification (elementwise,
 * view, barrier, float-only...) is derived from this one table, never written out as a second list.
 *   unary/binary/compare/select/cast  elementwise: one scalar op per element (fusible, commute with views)
 *   reduce   reduces axes (sum, max, argmax)       view     index arithmetic, never runs (reshape...)
 *   pad      inverse of a slice (zeros + a copy)   matmul   batched product
 *   conv     grouped N-d convolution (ir/conv.ts)
 *   gather/scatter  indexed reads / accumulating writes
 *   constant  a filled tensor (folds into kernels) random   counter-based uniform numbers
 */
export type PrimKind = 'unary' | 'binary' | 'compare' | 'select' | 'cast' | 'reduce' | 'view' | 'pad' | 'matmul' | 'conv' | 'gather' | 'scatter' | 'constant' | 'random';
export interface PrimitiveInfo {
  readonly kind: PrimKind;
  /** computed in float32: integer inputs are promoted, and the result is float32 */
  readonly floatOnly?: boolean;
}

const info = <K extends PrimKind>(kind: K, floatOnly = false) => ({ kind, floatOnly }) as const;

/** The primitive-info table (see PrimitiveInfo). */
export const primitiveInfo = {
  neg: info('unary'), abs: info('unary'), sign: info('unary'), relu: info('unary'), copy: info('unary'),
  exp: info('unary', true), log: info('unary', true), sqrt: info('unary', true), rsqrt: info('unary', true),
  sin: info('unary', true), cos: info('unary', true), tanh: info('unary', true), sigmoid: info('unary', true),
  erf: info('unary', true),
  add: info('binary'), sub: info('binary'), mul: info('binary'), div: info('binary', true), pow: info('binary'),
  maximum: info('binary'), minimum: info('binary'),
  eq: info('compare'), ne: info('compare'), lt: info('compare'), le: info('compare'), gt: info('compare'), ge: info('compare'),
  where: info('select'),
  cast: info('cast'),
  sum: info('reduce'), max: info('reduce'), argmax: info('reduce'),
  reshape: info('view'), permute: info('view'), expand: info('view'), slice: info('view'),
  pad: info('pad'),
  matmul: info('matmul'),
  conv: info('conv'),
  gather: info('gather'),
  scatterAdd: info('scatter'),
  full: info('constant'),
  random: info('random'),
} as const satisfies { [P in Primitive]: PrimitiveInfo };

/** The primitives of one kind, as a type (UnaryOp = the primitives whose kind is 'unary'). */
export type PrimOfKind<K extends PrimKind> = { [P in Primitive]: (typeof primitiveInfo)[P]['kind'] extends K ? P : never }[Primitive];
export type UnaryOp = PrimOfKind<'unary'>;
export type BinaryOp = PrimOfKind<'binary'>;
export type CompareOp = PrimOfKind<'compare'>;
export type ElementwiseOp = PrimOfKind<'unary' | 'binary' | 'compare' | 'select' | 'cast'>;
export type ViewOp = PrimOfKind<'view'>;
export type ReduceOp = PrimOfKind<'reduce'>;

const ELEMENTWISE_KINDS: ReadonlySet<PrimKind> = new Set(['unary', 'binary', 'compare', 'select', 'cast']);
const kindOf = (op: string): PrimKind | undefined => (primitiveInfo as Record<string, PrimitiveInfo>)[op]?.kind;
/** All primitives, in table order. */
export const PRIMITIVES = Object.keys(primitiveInfo) as Primitive[];
/** The primitives of the given kinds, in table order. */
export const primitivesOfKind = <K extends PrimKind>(...kinds: K[]): PrimOfKind<K>[] =>
  PRIMITIVES.filter((p) => (kinds as PrimKind[]).includes(primitiveInfo[p].kind)) as PrimOfKind<K>[];

// Classifications take any op name (an IR node's op may also be 'input', which is none of them).
export const isElementwise = (op: string): op is ElementwiseOp => ELEMENTWISE_KINDS.has(kindOf(op)!);
export const isView = (op: string): op is ViewOp => kindOf(op) === 'view';
export const isUnary = (op: string): op is UnaryOp => kindOf(op) === 'unary';
export const isCompare = (op: string): op is CompareOp => kindOf(op) === 'compare';
export const isFloatOnly = (op: string): boolean => (primitiveInfo as Record<string, PrimitiveInfo>)[op]?.floatOnly === true;
/**
 * Ops that always own a buffer in compiled code: everything neither elementwise, a view nor a constant
 * (reductions, matmul, gather/scatter, pad and random each build their own kernel).
 */
export const isBarrier = (op: string): boolean => { const k = kindOf(op); return k !== undefined && !ELEMENTWISE_KINDS.has(k) && k !== 'view' && k !== 'constant'; };

export interface AVal { readonly shape: readonly number[]; readonly dtype: DType }
/** Validates a primitive's operands and gives its result's shape and dtype (a clear Error on bad input). */
export type ShapeRule<P extends Primitive> = (inputs: AVal[], attrs: PrimAttrs[P]) => AVal;

const unary = (op: UnaryOp) => (x: AVal[]): AVal => ({ shape: x[0].shape, dtype: isFloatOnly(op) && !isFloat(x[0].dtype) ? 'float32' : x[0].dtype });
function sameShapes(op: string, xs: AVal[]): void {
  for (const x of xs.slice(1)) if (!sameShape(x.shape, xs[0].shape)) broadcastShapes(op, xs[0].shape, x.shape);
  for (const x of xs.slice(1)) if (!sameShape(x.shape, xs[0].shape)) throw new Error(`${op}: expected inputs of equal shape, got ${xs.map((x) => fmt(x.shape)).join(' and ')}`);
}
const binary = (op: BinaryOp) => (x: AVal[]): AVal => {
  sameShapes(op, x);
  const float = isFloatOnly(op);
  const dtype = promote(x[0].dtype, x[1].dtype);
  return { shape: x[0].shape, dtype: float && !isFloat(dtype) ? 'float32' : dtype === 'bool' ? 'int32' : dtype };
};
const compare = (op: string) => (x: AVal[]): AVal => { sameShapes(op, x); return { shape: x[0].shape, dtype: 'bool' }; };
const reduce = (x: AVal[], a: { axes: number[] }): AVal => ({ shape: x[0].shape.map((d, i) => (a.axes.includes(i) ? 1 : d)), dtype: x[0].dtype });

export const shapeRules: { [P in Primitive]: ShapeRule<P> } = {
  neg: unary('neg'), abs: unary('abs'), sign: unary('sign'), relu: unary('relu'), copy: unary('copy'),
  exp: unary('exp'), log: unary('log'), sqrt: unary('sqrt'), rsqrt: unary('rsqrt'),
  sin: unary('sin'), cos: unary('cos'), tanh: unary('tanh'), sigmoid: unary('sigmoid'), erf: unary('erf'),
  add: binary('add'), sub: binary('sub'), mul: binary('mul'), div: binary('div'), pow: binary('pow'),
  maximum: binary('maximum'), minimum: binary('minimum'),
  eq: compare('eq'), ne: compare('ne'), lt: compare('lt'), le: compare('le'), gt: compare('gt'), ge: compare('ge'),
  where: (x) => {
    sameShapes('where', x);
    if (x[0].dtype !== 'bool') throw new Error(`where: expected condition of dtype bool, got ${x[0].dtype}`);
    return { shape: x[1].shape, dtype: promote(x[1].dtype, x[2].dtype) };
  },
  cast: (x, a) => ({ shape: x[0].shape, dtype: a.dtype }),
  sum: (x, a) => ({ ...reduce(x, a), dtype: isFloat(x[0].dtype) ? x[0].dtype : 'int32' }),
  max: reduce,
  argmax: (x, a) => ({ ...reduce(x, a), dtype: 'int32' }),
  reshape: (x, a) => {
    if (numel(a.shape) !== numel(x[0].shape)) throw new Error(`reshape: shape ${fmt(a.shape)} is invalid for input of size ${numel(x[0].shape)}`);
    return { shape: a.shape, dtype: x[0].dtype };
  },
  permute: (x, a) => {
    const n = x[0].shape.length;
    if (a.perm.length !== n || new Set(a.perm).size !== n || a.perm.some((p) => p < 0 || p >= n)) {
      throw new Error(`permute: dims ${fmt(a.perm)} are not a permutation of ${n} dimensions`);
    }
    return { shape: a.perm.map((p) => x[0].shape[p]), dtype: x[0].dtype };
  },
  expand: (x, a) => {
    const s = x[0].shape, lead = a.shape.length - s.length;
    if (lead < 0 || s.some((d, i) => d !== 1 && d !== a.shape[i + lead])) {
      throw new Error(`expand: the shape ${fmt(s)} cannot be expanded to ${fmt(a.shape)}`);
    }
    return { shape: a.shape, dtype: x[0].dtype };
  },
  slice: (x, a) => ({ shape: a.shape, dtype: x[0].dtype }),
  pad: (x, a) => ({ shape: a.shape, dtype: x[0].dtype }),
  matmul: ([a, b]) => {
    const n = a.shape.length;
    if (n < 2 || b.shape.length !== n || !sameShape(a.shape.slice(0, -2), b.shape.slice(0, -2)) || a.shape[n - 1] !== b.shape[n - 2]) {
      throw new Error(`matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} cannot be multiplied`);
    }
    return { shape: [...a.shape.slice(0, -1), b.shape[n - 1]], dtype: promote(a.dtype, b.dtype) };
  },
  conv: ([x, w], a) => {
    if (x.dtype !== 'float32' || w.dtype !== 'float32') throw new Error(`conv: expected float32 input and weight, got ${x.dtype} and ${w.dtype}`);
    return { shape: convShape(x.shape, w.shape, a), dtype: 'float32' };
  },
  gather: ([x, index], a) => {
    if (index.dtype !== 'int32') throw new Error(`gather: expected index of dtype int32, got ${index.dtype}`);
    if (index.shape.length !== x.shape.length) throw new Error(`gather: index ${fmt(index.shape)} must have as many dimensions as input ${fmt(x.shape)}`);
    return { shape: index.shape, dtype: x.dtype };
  },
  scatterAdd: ([index, src], a) => {
    if (index.dtype !== 'int32') throw new Error(`scatterAdd: expected index of dtype int32, got ${index.dtype}`);
    if (!sameShape(index.shape, src.shape)) throw new Error(`scatterAdd: index ${fmt(index.shape)} and src ${fmt(src.shape)} must have the same shape`);
    return { shape: a.shape, dtype: src.dtype };
  },
  full: (_, a) => ({ shape: a.shape, dtype: a.dtype }),
  random: (x, a) => {
    if (x[0].shape.length !== 0) throw new Error(`random: expected a 0-d seed, got shape ${fmt(x[0].shape)}`);
    return { shape: a.shape, dtype: 'float32' };
  },
};
