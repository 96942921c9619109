// The kernel description: what codegen turns into a JavaScript function or a WGSL shader, and the only
// thing that passes from the compiler to a backend. An eager op is a one-node kernel; a fused group of
// the compiled graph is a bigger one. Loads read kernel arguments through views (strides folded in).

import type { DType } from './dtype.ts';
import type { BinaryOp, CompareOp, UnaryOp } from './primitives.ts';
import type { View } from './view.ts';

/** A scalar expression evaluated at one point of the kernel's iteration space. */
export type Expr =
  | { kind: 'load'; arg: number; view: View; dtype: DType }
  | { kind: 'const'; value: number; dtype: DType }
  | { kind: 'unary'; op: UnaryOp; x: Expr; dtype: DType }
  | { kind: 'binary'; op: BinaryOp | CompareOp; a: Expr; b: Expr; dtype: DType }
  | { kind: 'where'; c: Expr; a: Expr; b: Expr; dtype: DType }
  | { kind: 'cast'; x: Expr; dtype: DType }
  /** the value a reduce or matmul computed at this output point (epilogues only) */
  | { kind: 'acc'; dtype: DType }
  /** a scalar passed at launch (a host value such as a learning rate) */
  | { kind: 'param'; index: number; dtype: DType }
  /** a uniform number in [0, 1) hashed from `seed` and the position in a map kernel's iteration (counter-based) */
  | { kind: 'random'; seed: Expr; dtype: DType };

/** One output of a kernel: written at `view` (contiguous unless an in-place write into a view). */
export interface KernelOutput { arg: number; view: View; dtype: DType }

export type Kernel =
  /** out_j[i] = exprs[j] at every index i of `shape` */
  | { kind: 'map'; shape: number[]; exprs: Expr[]; outputs: KernelOutput[] }
  /**
   * Reduces `body` (an expression over `inShape`) over `axes`, then writes `epilogue` (in which `acc`
   * is the reduced value) at every point of the kept shape (reduced axes have size 1 there).
   */
  | { kind: 'reduce'; op: 'sum' | 'max' | 'argmax'; inShape: number[]; axes: number[]; body: Expr; epilogue: Expr; output: KernelOutput }
  /** [...B, M, K] @ [...B, K, N]: a and b are expressions over their operand shapes; epilogue over [...B, M, N] */
  | { kind: 'matmul'; batch: number[]; m: number; n: number; k: number; a: Expr; b: Expr; epilogue: Expr; output: KernelOutput }
  /** out[i] = src[i with i[axis] = index(i)]: `index` is an int expression over the output shape */
  | { kind: 'gather'; axis: number; shape: number[]; src: { arg: number; view: View; dtype: DType }; index: Expr; output: KernelOutput }
  /** out = zeros; out[i with i[axis] = index(i)] += src(i) over `srcShape` */
  | { kind: 'scatterAdd'; axis: number; srcShape: number[]; index: Expr; src: Expr; output: KernelOutput };

export interface KernelArg { dtype: DType; size: number }

/** A kernel with its argument list: buffers are arguments 0..n-1 (inputs and outputs alike). */
export interface KernelSpec {
  name: string;
  args: KernelArg[];
  kernel: Kernel;
  /** number of scalar params the launch passes (see Expr 'param') */
  params: number;
}

export type LoadExpr = Extract<Expr, { kind: 'load' }>;

/** The sub-expressions of an expression (the one place that knows each kind's children). */
export function exprChildren(e: Expr): Expr[] {
  switch (e.kind) {
    case 'unary': case 'cast': return [e.x];
    case 'binary': return [e.a, e.b];
    case 'where': return [e.c, e.a, e.b];
    case 'random': return [e.seed];
    default: return [];
  }
}

function withChildren(e: Expr, k: Expr[]): Expr {
  switch (e.kind) {
    case 'unary': case 'cast': return { ...e, x: k[0] };
    case 'binary': return { ...e, a: k[0], b: k[1] };
    case 'where': return { ...e, c: k[0], a: k[1], b: k[2] };
    case 'random': return { ...e, seed: k[0] };
    default: return e;
  }
}

/**
 * Rebuilds an expression DAG bottom-up, replacing each load by `f(load)` (null aborts the whole
 * rewrite). Shared sub-expressions stay shared.
 */
export function mapLoads(e: Expr, f: (l: LoadExpr) => Expr | null, memo = new Map<Expr, Expr | null>()): Expr | null {
  if (memo.has(e)) return memo.get(e)!;
  let r: Expr | null;
  if (e.kind === 'load') r = f(e);
  else {
    const kids = exprChildren(e);
    const mapped = kids.map((k) => mapLoads(k, f, memo));
    r = mapped.some((m) => m === null) ? null : mapped.every((m, i) => m === kids[i]) ? e : withChildren(e, mapped as Expr[]);
  }
  memo.set(e, r);
  return r;
}

/** Every load of an expression DAG, each once. */
export function exprLoads(e: Expr): LoadExpr[] {
  const out: LoadExpr[] = [];
  const seen = new Set<Expr>();
  const walk = (x: Expr): void => {
    if (seen.has(x)) return;
    seen.add(x);
    if (x.kind === 'load') out.push(x);
    exprChildren(x).forEach(walk);
  };
  walk(e);
  return out;
}
