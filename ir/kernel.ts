// The kernel description: what codegen turns into a JavaScript function or a WGSL shader, and the only
// thing that passes from the compiler to a backend. An eager op is a one-node kernel; a fused group of
// the compiled graph is a bigger one. Loads read kernel arguments through views (strides folded in).

import type { ConvKernel } from './conv.ts';
import type { DType } from './dtype.ts';
import type { BinaryOp, CompareOp, ReduceOp, UnaryOp } from './primitives.ts';
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
  | { kind: 'reduce'; op: ReduceOp; inShape: number[]; axes: number[]; body: Expr; epilogue: Expr; output: KernelOutput }
  /** [...B, M, K] @ [...B, K, N]: a and b are expressions over their operand shapes; epilogue over [...B, M, N] */
  | { kind: 'matmul'; batch: number[]; m: number; n: number; k: number; a: Expr; b: Expr; epilogue: Expr; output: KernelOutput }
  /** out[i] = src[i with i[axis] = index(i)]: `index` is an int expression over the output shape */
  | { kind: 'gather'; axis: number; shape: number[]; src: { arg: number; view: View; dtype: DType }; index: Expr; output: KernelOutput }
  /** out = zeros; out[i with i[axis] = index(i)] += src(i) over `srcShape` */
  | { kind: 'scatterAdd'; axis: number; srcShape: number[]; index: Expr; src: Expr; output: KernelOutput }
  /** a convolution (ir/conv.ts) with an epilogue over its output [N, G, Og, ...O] */
  | ConvKernel;

export interface KernelArg { dtype: DType; size: number }

/** The arguments a kernel writes. */
export const writtenArgs = (k: Kernel): number[] => (k.kind === 'map' ? k.outputs.map((o) => o.arg) : [k.output.arg]);

/** A kernel with its argument list: buffers are arguments 0..n-1 (inputs and outputs alike). */
export interface KernelSpec {
  name: string;
  args: KernelArg[];
  kernel: Kernel;
  /** number of scalar params the launch passes (see Expr 'param') */
  params: number;
}

export type LoadExpr = Extract<Expr, { kind: 'load' }>;

/** A switch over a union ends here: adding a member makes the missing case a type error. */
export function unreachable(x: never, what: string): never {
  throw new Error(`kiln: unhandled ${what} ${JSON.stringify(x)}`);
}

/** The sub-expressions of an expression (the one place that knows each kind's children). */
export function exprChildren(e: Expr): Expr[] {
  switch (e.kind) {
    case 'unary': case 'cast': return [e.x];
    case 'binary': return [e.a, e.b];
    case 'where': return [e.c, e.a, e.b];
    case 'random': return [e.seed];
    case 'load': case 'const': case 'acc': case 'param': return [];
    default: return unreachable(e, 'expression');
  }
}

function withChildren(e: Expr, k: Expr[]): Expr {
  switch (e.kind) {
    case 'unary': case 'cast': return { ...e, x: k[0] };
    case 'binary': return { ...e, a: k[0], b: k[1] };
    case 'where': return { ...e, c: k[0], a: k[1], b: k[2] };
    case 'random': return { ...e, seed: k[0] };
    case 'load': case 'const': case 'acc': case 'param': return e;
    default: return unreachable(e, 'expression');
  }
}

/**
 * The nodes of a DAG reachable from `roots`, each once, children before parents. Iterative (an
 * explicit stack), so a chain of thousands of fused ops cannot overflow the call stack.
 */
export function postorder<T>(roots: readonly T[], children: (x: T) => readonly T[]): T[] {
  const out: T[] = [];
  const state = new Map<T, 1 | 2>(); // 1: children pushed, 2: emitted
  const stack: T[] = [...roots].reverse();
  while (stack.length) {
    const x = stack[stack.length - 1];
    const st = state.get(x);
    if (st === 2) { stack.pop(); continue; }
    if (st === 1) { stack.pop(); state.set(x, 2); out.push(x); continue; }
    state.set(x, 1);
    const kids = children(x);
    for (let i = kids.length - 1; i >= 0; i--) if (!state.has(kids[i])) stack.push(kids[i]);
  }
  return out;
}

/**
 * Rebuilds an expression DAG bottom-up, replacing each load by `f(load)` (null aborts the whole
 * rewrite). Shared sub-expressions stay shared.
 */
export function mapLoads(e: Expr, f: (l: LoadExpr) => Expr | null): Expr | null {
  const memo = new Map<Expr, Expr>();
  for (const x of postorder([e], exprChildren)) {
    let r: Expr | null;
    if (x.kind === 'load') r = f(x);
    else {
      const kids = exprChildren(x);
      const mapped = kids.map((k) => memo.get(k)!);
      r = mapped.every((m, i) => m === kids[i]) ? x : withChildren(x, mapped);
    }
    if (r === null) return null;
    memo.set(x, r);
  }
  return memo.get(e)!;
}

/** Every load of an expression DAG, each once. */
export function exprLoads(e: Expr): LoadExpr[] {
  return postorder([e], exprChildren).filter((x): x is LoadExpr => x.kind === 'load');
}
