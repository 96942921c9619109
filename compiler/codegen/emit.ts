// Expression emission shared by the JavaScript and WGSL backends: turns an expression DAG into named
// statements (each node once, structurally equal code once), spelling each scalar op with a backend's
// spelling table (spelling-js.ts, spelling-wgsl.ts). Adding a scalar op is one entry per spelling table;
// the kernel strategies of each backend only say how loads are indexed.

import { compareType, isFloat, type DType } from '../../ir/dtype.ts';
import { exprChildren, postorder, unreachable, type Expr, type LoadExpr } from '../../ir/kernel.ts';
import { isCompare, isFloatOnly, type BinaryOp, type CompareOp, type UnaryOp } from '../../ir/primitives.ts';
import type { View } from '../../ir/view.ts';

/** How one backend spells scalar values and ops. */
export interface Spelling {
  /** `x` (a value of dtype `from`) represented as `to`, value unchanged (WGSL: f32 <-> i32; JS: one number type) */
  conv(x: string, from: DType, to: DType): string;
  /** operand already in `t`, the result's representation (float-only ops: a float type); `t` picks a precision */
  unary: { [U in UnaryOp]: (x: string, t: DType) => string };
  /** operands in `t` (comparisons: compareType of the two sides); comparisons yield a bool */
  binary: { [B in BinaryOp | CompareOp]: (a: string, b: string, t: DType) => string };
  /** `c` a bool (0/1), `a` and `b` in the result's representation */
  where(c: string, a: string, b: string): string;
  /** the value conversion of a cast primitive (truncation, to-bool) */
  cast(x: string, from: DType, to: DType): string;
  literal(value: number, dtype: DType): string;
  /** the launch's scalar param `index` */
  param(index: number, dtype: DType): string;
  /** a uniform float in [0, 1) from an int32 seed and an int32 counter */
  random(seed: string, counter: string): string;
  /** a statement binding `code` to `name` */
  declare(name: string, code: string): string;
  /** literals are written inline; else they get a name like any value */
  inlineLiterals: boolean;
}

export interface EmitterOptions {
  /** the code reading a load (the kernel strategy knows its buffers and index variables) */
  load: (l: LoadExpr) => string;
  /** names of emitted values: prefix + a counter */
  prefix?: string;
  /** the accumulated value an epilogue reads as `acc` */
  acc?: { name: string; dtype: DType };
  /** the int32 counter random numbers are drawn with (map kernels only) */
  counter?: string;
  /**
   * Loads whose index is the same on every iteration (a 0-d value, a broadcast scalar). Given, values
   * that depend only on such loads and constants are declared in `hoisted` instead of `lines`, so a
   * backend that loops (JavaScript) computes them once per kernel instead of per element: an optimizer's
   * bias corrections (pow, sqrt of the step count) fused into its update.
   */
  invariant?: (l: LoadExpr) => boolean;
}

/** Emits the statements that evaluate expression DAGs (in `lines`); shared sub-expressions are computed once. */
export class Emitter {
  readonly lines: string[] = [];
  /** statements of loop-invariant values (only with `invariant`); they come before the loops */
  readonly hoisted: string[] = [];
  private names = new Map<Expr, string>();
  private invariant = new Set<Expr>();
  private byCode = new Map<string, string>();
  private n = 0;
  constructor(private sp: Spelling, private opts: EmitterOptions, private what = 'codegen') {}

  /** The name (or inline literal) holding `e`'s value, after emitting what it needs. Iterative: deep DAGs are fine. */
  emit(e: Expr): string {
    for (const x of postorder([e], (y) => (this.names.has(y) ? [] : exprChildren(y)))) {
      if (!this.names.has(x)) this.names.set(x, this.one(x));
    }
    return this.names.get(e)!;
  }

  private one(e: Expr): string {
    const sp = this.sp;
    const as = (x: Expr, to: DType): string => sp.conv(this.names.get(x)!, x.dtype, to);
    let code: string;
    switch (e.kind) {
      case 'load': code = this.opts.load(e); break;
      case 'const':
        code = sp.literal(e.value, e.dtype);
        if (sp.inlineLiterals) return code;
        break;
      case 'acc': {
        const acc = this.opts.acc;
        if (!acc) throw new Error(`${this.what}: \`acc\` outside an epilogue`);
        return sp.conv(acc.name, acc.dtype, e.dtype);
      }
      case 'param': code = sp.param(e.index, e.dtype); break;
      case 'unary':
        if (isFloatOnly(e.op)) {
          // computed in the result's float type (float32 for integer operands)
          const t: DType = isFloat(e.dtype) ? e.dtype : 'float32';
          code = sp.conv(sp.unary[e.op](as(e.x, t), t), t, e.dtype);
        } else {
          code = sp.unary[e.op](as(e.x, e.dtype), e.dtype);
        }
        break;
      case 'binary':
        if (isCompare(e.op)) {
          const t = compareType(e.a.dtype, e.b.dtype);
          code = sp.conv(sp.binary[e.op](as(e.a, t), as(e.b, t), t), 'bool', e.dtype);
        } else {
          code = sp.binary[e.op](as(e.a, e.dtype), as(e.b, e.dtype), e.dtype);
        }
        break;
      case 'where': code = sp.where(this.names.get(e.c)!, as(e.a, e.dtype), as(e.b, e.dtype)); break;
      case 'cast': code = sp.cast(this.names.get(e.x)!, e.x.dtype, e.dtype); break;
      case 'random': {
        // counted by the row-major position in a map kernel's iteration (the same numbers on every backend)
        if (this.opts.counter === undefined) throw new Error(`${this.what}: random numbers are only supported in map kernels`);
        code = sp.conv(sp.random(as(e.seed, 'int32'), this.opts.counter), 'float32', e.dtype);
        break;
      }
      default: return unreachable(e, 'expression');
    }
    // Structurally equal expressions (the same load reached through two fused producers) share a name.
    let name = this.byCode.get(code);
    const hoist = this.isInvariant(e);
    if (hoist) this.invariant.add(e);
    if (!name) {
      name = `${this.opts.prefix ?? 'v'}${this.n++}`;
      (hoist ? this.hoisted : this.lines).push(sp.declare(name, code));
      this.byCode.set(code, name);
    }
    return name;
  }

  /** Whether `e` (its children already emitted) has the same value on every iteration. */
  private isInvariant(e: Expr): boolean {
    const inv = this.opts.invariant;
    if (!inv) return false;
    switch (e.kind) {
      case 'load': return inv(e);
      case 'const': case 'param': return true;
      case 'acc': case 'random': return false;
      default: return exprChildren(e).every((c) => c.kind === 'const' || this.invariant.has(c)); // inline literals are never registered
    }
  }
}

/**
 * The index of `view`'s element given the loop variable of each dim (null: the dim is not looped, so
 * index 0), added to `base` (WGSL: the argument's launch offset). Size-1 dims contribute nothing.
 */
export function indexOf(view: View, vars: readonly (string | null | undefined)[], base?: string): string {
  const terms = base === undefined ? [] : [base];
  if (view.offset !== 0) terms.push(String(view.offset));
  view.strides.forEach((s, d) => {
    const v = vars[d];
    if (s !== 0 && v !== null && v !== undefined && view.shape[d] !== 1) terms.push(s === 1 ? v : `${v} * ${s}`);
  });
  return terms.length ? terms.join(' + ') : '0';
}

/** A matmul operand, which the lowering guarantees is a plain load. */
export function operandLoad(e: Expr, what: string, kernel: string): LoadExpr {
  if (e.kind !== 'load') throw new Error(`codegen: kernel '${kernel}': matmul operand ${what} must be a load`);
  return e;
}

/** Merges adjacent loop dims that every view walks contiguously, and drops size-1 dims. */
export function collapseDims(shape: readonly number[], views: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const dims = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  const out: number[] = [];
  const strides: number[][] = views.map(() => []);
  for (const d of dims) {
    const last = out.length - 1;
    if (last >= 0 && views.every((s, v) => strides[v][last] === s[d] * shape[d])) {
      out[last] *= shape[d];
      views.forEach((s, v) => (strides[v][last] = s[d]));
    } else {
      out.push(shape[d]);
      views.forEach((s, v) => strides[v].push(s[d]));
    }
  }
  return { shape: out, strides };
}

/**
 * `v` indexed over the loop `shape` with dim `axis` at a computed position (gather's source, scatterAdd's
 * output): the axis always contributes its term, even where `shape` has size 1 there.
 */
export const axisIndexedView = (v: View, shape: readonly number[], axis: number): View => ({ ...v, shape: shape.map((d, i) => (i === axis ? 2 : d)) });
