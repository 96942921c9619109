// The primitive set: every op kiln can run is one of these. Each has exactly one shape/dtype rule here,
// one VJP rule in runtime/vjp.ts and one kernel template per backend (compiler/lower.ts
// builds the backend-neutral kernel; compiler/codegen/{js,wgsl}.ts spell out each scalar op).

import { type DType, isFloat, promote } from './dtype.ts';
import { broadcastShapes, fmt, numel, sameShape } from './shape.ts';

export const UNARY_OPS = ['neg', 'abs', 'sign', 'exp', 'log', 'sqrt', 'rsqrt', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'copy'] as const;
export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'] as const;
export const COMPARE_OPS = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];
export type BinaryOp = (typeof BINARY_OPS)[number];
export type CompareOp = (typeof COMPARE_OPS)[number];

/** Attributes of each primitive. Elementwise ops take already-broadcast inputs of one shape. */
export interface PrimAttrs {
  // elementwise
  neg: {}; abs: {}; sign: {}; exp: {}; log: {}; sqrt: {}; rsqrt: {}; sin: {}; cos: {}; tanh: {}; sigmoid: {}; relu: {}; copy: {};
  add: {}; sub: {}; mul: {}; div: {}; pow: {}; maximum: {}; minimum: {};
  eq: {}; ne: {}; lt: {}; le: {}; gt: {}; ge: {};
  where: {};
  cast: { dtype: DType };
  // reductions keep reduced axes as size 1 (the frontend reshapes them away)
  sum: { axes: number[] };
  max: { axes: number[] };
  argmax: { axis: number };
  // movement (views; no data is copied unless a consumer needs it contiguous)
  reshape: { shape: number[] };
  permute: { perm: number[] };
  expand: { shape: number[] };
  slice: { starts: number[]; steps: number[]; shape: number[] };
  /** Inverse of slice: places the input at starts + i*steps inside zeros of `shape`. */
  pad: { starts: number[]; steps: number[]; shape: number[] };
  // [...B, M, K] @ [...B, K, N] with equal batch dims (the frontend broadcasts)
  matmul: {};
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

export interface AVal { readonly shape: readonly number[]; readonly dtype: DType }
type ShapeRule<P extends Primitive> = (inputs: AVal[], attrs: PrimAttrs[P]) => AVal;

const unary = (x: AVal[]): AVal => ({ shape: x[0].shape, dtype: x[0].dtype });
const floatUnary = (x: AVal[]): AVal => ({ shape: x[0].shape, dtype: isFloat(x[0].dtype) ? x[0].dtype : 'float32' });
function sameShapes(op: string, xs: AVal[]): void {
  for (const x of xs.slice(1)) if (!sameShape(x.shape, xs[0].shape)) broadcastShapes(op, xs[0].shape, x.shape);
  for (const x of xs.slice(1)) if (!sameShape(x.shape, xs[0].shape)) throw new Error(`${op}: expected inputs of equal shape, got ${xs.map((x) => fmt(x.shape)).join(' and ')}`);
}
const binary = (op: string, float = false) => (x: AVal[]): AVal => {
  sameShapes(op, x);
  const dtype = promote(x[0].dtype, x[1].dtype);
  return { shape: x[0].shape, dtype: float && !isFloat(dtype) ? 'float32' : dtype === 'bool' ? 'int32' : dtype };
};
const compare = (op: string) => (x: AVal[]): AVal => { sameShapes(op, x); return { shape: x[0].shape, dtype: 'bool' }; };
const reduce = (x: AVal[], a: { axes: number[] }): AVal => ({ shape: x[0].shape.map((d, i) => (a.axes.includes(i) ? 1 : d)), dtype: x[0].dtype });

export const shapeRules: { [P in Primitive]: ShapeRule<P> } = {
  neg: unary, abs: unary, sign: unary, relu: unary, copy: unary,
  exp: floatUnary, log: floatUnary, sqrt: floatUnary, rsqrt: floatUnary,
  sin: floatUnary, cos: floatUnary, tanh: floatUnary, sigmoid: floatUnary,
  add: binary('add'), sub: binary('sub'), mul: binary('mul'), div: binary('div', true), pow: binary('pow'),
  maximum: binary('maximum'), minimum: binary('minimum'),
  eq: compare('eq'), ne: compare('ne'), lt: compare('lt'), le: compare('le'), gt: compare('gt'), ge: compare('ge'),
  where: (x) => {
    sameShapes('where', x);
    if (x[0].dtype !== 'bool') throw new Error(`where: expected condition of dtype bool, got ${x[0].dtype}`);
    return { shape: x[1].shape, dtype: promote(x[1].dtype, x[2].dtype) };
  },
  cast: (x, a) => ({ shape: x[0].shape, dtype: a.dtype }),
  sum: (x, a) => ({ ...reduce(x, a), dtype: x[0].dtype === 'float32' ? 'float32' : 'int32' }),
  max: reduce,
  argmax: (x, a) => ({ shape: x[0].shape.map((d, i) => (i === a.axis ? 1 : d)), dtype: 'int32' }),
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

export const isElementwise = (p: Primitive): boolean =>
  (UNARY_OPS as readonly string[]).includes(p) || (BINARY_OPS as readonly string[]).includes(p) ||
  (COMPARE_OPS as readonly string[]).includes(p) || p === 'where' || p === 'cast';
export const isMovement = (p: Primitive): boolean => p === 'reshape' || p === 'permute' || p === 'expand' || p === 'slice';
export const isReduce = (p: Primitive): boolean => p === 'sum' || p === 'max' || p === 'argmax';
