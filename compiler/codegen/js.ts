// JavaScript codegen: one plain-loop function per kernel, sizes and strides baked in as constants.
// Each scalar op's JavaScript spelling lives in the two tables below (the JS kernel templates).

import type { DType } from '../../ir/dtype.ts';
import { exprChildren, exprLoads, type Expr, type Kernel, type KernelSpec } from '../../ir/kernel.ts';
import { contiguousView } from '../../ir/view.ts';
import type { BinaryOp, CompareOp, UnaryOp } from '../../ir/primitives.ts';
import type { View } from '../../ir/view.ts';

export const jsUnary: { [U in UnaryOp]: (x: string) => string } = {
  neg: (x) => `(-${x})`,
  abs: (x) => `Math.abs(${x})`,
  sign: (x) => `Math.sign(${x})`,
  exp: (x) => `Math.exp(${x})`,
  log: (x) => `Math.log(${x})`,
  sqrt: (x) => `Math.sqrt(${x})`,
  rsqrt: (x) => `(1 / Math.sqrt(${x}))`,
  sin: (x) => `Math.sin(${x})`,
  cos: (x) => `Math.cos(${x})`,
  tanh: (x) => `Math.tanh(${x})`,
  sigmoid: (x) => `(1 / (1 + Math.exp(-${x})))`,
  relu: (x) => `(${x} < 0 ? 0 : ${x})`,
  copy: (x) => x,
};

export const jsBinary: { [B in BinaryOp | CompareOp]: (a: string, b: string) => string } = {
  add: (a, b) => `(${a} + ${b})`,
  sub: (a, b) => `(${a} - ${b})`,
  mul: (a, b) => `(${a} * ${b})`,
  div: (a, b) => `(${a} / ${b})`,
  pow: (a, b) => `Math.pow(${a}, ${b})`,
  maximum: (a, b) => `Math.max(${a}, ${b})`,
  minimum: (a, b) => `Math.min(${a}, ${b})`,
  eq: (a, b) => `(${a} === ${b} ? 1 : 0)`,
  ne: (a, b) => `(${a} !== ${b} ? 1 : 0)`,
  lt: (a, b) => `(${a} < ${b} ? 1 : 0)`,
  le: (a, b) => `(${a} <= ${b} ? 1 : 0)`,
  gt: (a, b) => `(${a} > ${b} ? 1 : 0)`,
  ge: (a, b) => `(${a} >= ${b} ? 1 : 0)`,
};

function jsCast(x: string, from: DType, to: DType): string {
  if (to === 'bool') return `(${x} !== 0 ? 1 : 0)`;
  if (to === 'int32' && from === 'float32') return `Math.trunc(${x})`;
  return x;
}

function jsConst(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return 'Infinity';
  if (value === -Infinity) return '-Infinity';
  return Object.is(value, -0) ? '-0' : String(value);
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

const f32 = (dtype: DType, code: string): string => (dtype === 'float32' ? `Math.fround(${code})` : code);

/** Emits the statements that evaluate expression DAGs; shared sub-expressions are computed once. */
class ExprEmitter {
  lines: string[] = [];
  private names = new Map<Expr, string>();
  private byCode = new Map<string, string>();
  private n = 0;
  constructor(private pos: (view: View) => string, private acc = 'acc') {}
  emit(e: Expr): string {
    const known = this.names.get(e);
    if (known) return known;
    let code: string;
    switch (e.kind) {
      case 'load': code = `b${e.arg}[${this.pos(e.view)}]`; break;
      // Float results are rounded to float32 as each op's would be stored eagerly: a fused chain then
      // computes exactly what the unfused ops do (an eq against a stored max must see the same bits).
      case 'const': return jsConst(e.dtype === 'float32' ? Math.fround(e.value) : e.value);
      case 'acc': return this.acc;
      case 'param': return `p[${e.index}]`;
      case 'unary': code = f32(e.dtype, jsUnary[e.op](this.emit(e.x))); break;
      case 'binary': code = f32(e.dtype, jsBinary[e.op](this.emit(e.a), this.emit(e.b))); break;
      case 'where': code = `(${this.emit(e.c)} !== 0 ? ${this.emit(e.a)} : ${this.emit(e.b)})`; break;
      case 'cast': code = jsCast(this.emit(e.x), e.x.dtype, e.dtype); break;
      case 'random': code = `rnd(${this.emit(e.seed)}, lin)`; break;
    }
    // Structurally equal expressions (the same load reached through two fused producers) share a name.
    let name = this.byCode.get(code);
    if (!name) {
      name = `v${this.n++}`;
      this.lines.push(`const ${name} = ${code};`);
      this.byCode.set(code, name);
    }
    this.names.set(e, name);
    return name;
  }
}


/** Index expression of `view` given the loop variable of each of its dims (null: dim not looped / size 1). */
function indexOf(view: View, vars: readonly (string | null)[]): string {
  const terms = [String(view.offset)];
  view.strides.forEach((s, d) => {
    if (s !== 0 && vars[d] !== null) terms.push(s === 1 ? vars[d]! : `${vars[d]} * ${s}`);
  });
  return terms.length > 1 && terms[0] === '0' ? terms.slice(1).join(' + ') : terms.join(' + ');
}

/**
 * A uniform float in [0, 1) from a seed and a counter: PCG's output hash applied to
 * pcg(seed) + counter (Jarzynski & Olano, "Hash Functions for GPU Rendering"); 24 bits.
 * The WGSL backend computes the same numbers.
 */
export const JS_RANDOM = `function rnd(seed, i) {
  const pcg = (x) => { const s = (Math.imul(x, 747796405) + 2891336453) >>> 0; const w = Math.imul((s >>> ((s >>> 28) + 4)) ^ s, 277803737) >>> 0; return ((w >>> 22) ^ w) >>> 0; };
  return (pcg((pcg(seed >>> 0) + i) >>> 0) >>> 8) / 16777216;
}`;

const usesRandom = (e: Expr): boolean => e.kind === 'random' || exprChildren(e).some(usesRandom);

function genMap(k: Extract<Kernel, { kind: 'map' }>): string {
  const random = k.exprs.some(usesRandom);
  // `lin` (the row-major position in the iteration space) is what random numbers are counted by.
  const linear = contiguousView(k.shape);
  const views = [...k.exprs.flatMap((e) => exprLoads(e).map((l) => l.view)), ...k.outputs.map((o) => o.view), ...(random ? [linear] : [])];
  const uniq = [...new Set(views)];
  const { shape, strides } = collapseDims(k.shape, uniq.map((v) => v.strides));
  const vars = shape.map((_, d) => `i${d}`);
  const collapsed = new Map<View, View>(uniq.map((v, i) => [v, { shape, strides: strides[i], offset: v.offset }]));
  const em = new ExprEmitter((v) => indexOf(collapsed.get(v)!, vars));
  const values = k.exprs.map((e) => em.emit(e));
  const body = [...em.lines, ...k.outputs.map((o, j) => `b${o.arg}[${indexOf(collapsed.get(o.view)!, vars)}] = ${values[j]};`)];
  if (random) body.unshift(`const lin = ${indexOf(collapsed.get(linear)!, vars)};`);
  return [...(random ? [JS_RANDOM] : []), ...nest(shape, vars, body)].join('\n');
}

function nest(shape: readonly number[], vars: readonly string[], body: string[]): string[] {
  let lines = body;
  for (let d = shape.length - 1; d >= 0; d--) {
    lines = [`for (let ${vars[d]} = 0; ${vars[d]} < ${shape[d]}; ${vars[d]}++) {`, ...lines.map((l) => '  ' + l), '}'];
  }
  return lines;
}

function genReduce(k: Extract<Kernel, { kind: 'reduce' }>): string {
  const kept = k.inShape.map((_, i) => i).filter((i) => !k.axes.includes(i) && k.inShape[i] !== 1);
  const red = k.axes.filter((i) => k.inShape[i] !== 1);
  const vars = k.inShape.map((d, i) => (d === 1 ? null : `i${i}`));
  const keptVars = k.inShape.map((_, i) => (kept.includes(i) ? `i${i}` : null));
  const inner = new ExprEmitter((v) => indexOf(v, vars));
  const value = inner.emit(k.body);
  const outer = new ExprEmitter((v) => indexOf(v, keptVars));
  const result = outer.emit(k.epilogue);
  const init = k.op === 'sum' ? 'let acc = 0;' : k.op === 'max' ? 'let acc = -Infinity;' : 'let acc = 0, best = -Infinity, n = 0;';
  const update = k.op === 'sum' ? [`acc += ${value};`]
    : k.op === 'max' ? [`if (${value} > acc || ${value} !== ${value}) acc = ${value};`]
    : [`if (${value} > best || (${value} !== ${value} && best === best)) { best = ${value}; acc = n; }`, 'n++;'];
  // argmax counts positions along its single axis; `n` runs over the flattened reduced loops. The
  // loop body is a block even with no loop (only size-1 extents reduced): its names shadow none of the epilogue's.
  const body = [init, ...nest(red.map((d) => k.inShape[d]), red.map((d) => vars[d]!), ['{', ...inner.lines, ...update, '}']), ...outer.lines,
    `b${k.output.arg}[${indexOf(k.output.view, keptVars)}] = ${result};`];
  return nest(kept.map((d) => k.inShape[d]), kept.map((d) => vars[d]!), body).join('\n');
}

function asLoad(e: Expr, what: string): Extract<Expr, { kind: 'load' }> {
  if (e.kind !== 'load') throw new Error(`js codegen: matmul operand ${what} must be a load`);
  return e;
}

/**
 * Matmul as 4x4 register blocks: each step of k loads 4 values of a and 4 of b and updates 16
 * accumulators (strides baked in), with scalar loops for the edges. The epilogue runs per element.
 */
function genMatmul(k: Extract<Kernel, { kind: 'matmul' }>): string {
  const a = asLoad(k.a, 'a'), b = asLoad(k.b, 'b');
  const nb = k.batch.length;
  const bv = k.batch.map((_, i) => `i${i}`);
  const [sam, sak] = a.view.strides.slice(nb), [sbk, sbn] = b.view.strides.slice(nb);
  const baseA = indexOf({ ...a.view, shape: k.batch, strides: a.view.strides.slice(0, nb) }, bv);
  const baseB = indexOf({ ...b.view, shape: k.batch, strides: b.view.strides.slice(0, nb) }, bv);
  const epi = new ExprEmitter((v) => indexOf(v, [...bv, 'ii', 'jj']));
  const result = epi.emit(k.epilogue);
  const storeLines = [...epi.lines, `b${k.output.arg}[${indexOf(k.output.view, [...bv, 'ii', 'jj'])}] = ${result};`].join(' ');
  const store = (acc: string, di: number | string, dj: number | string): string =>
    `{ const ii = i + ${di}, jj = j + ${dj}, acc = ${acc}; ${storeLines} }`;
  const A = `b${a.arg}`, B = `b${b.arg}`;
  const mul = (s: number, v: string): string => (s === 0 ? '0' : s === 1 ? v : `${v} * ${s}`);
  const R = [0, 1, 2, 3];
  const block = [
    `const pa = ${baseA} + ${mul(sam, 'i')}, pb = ${baseB} + ${mul(sbn, 'j')};`,
    `let ${R.flatMap((r) => R.map((c) => `c${r}${c} = 0`)).join(', ')};`,
    `for (let kk = 0; kk < ${k.k}; kk++) {`,
    `  const qa = pa + ${mul(sak, 'kk')}, qb = pb + ${mul(sbk, 'kk')};`,
    `  const ${R.map((r) => `a${r} = ${A}[qa + ${r * sam}]`).join(', ')};`,
    `  const ${R.map((c) => `v${c} = ${B}[qb + ${c * sbn}]`).join(', ')};`,
    ...R.map((r) => `  ${R.map((c) => `c${r}${c} += a${r} * v${c};`).join(' ')}`),
    '}',
    ...R.flatMap((r) => R.map((c) => store(`c${r}${c}`, r, c))),
  ];
  const single = (rows: string, cols: string): string[] => [
    `for (let i = ${rows}; i < ${k.m}; i++) for (let j = ${cols}; j < ${k.n}; j++) {`,
    `  const pa = ${baseA} + ${mul(sam, 'i')}, pb = ${baseB} + ${mul(sbn, 'j')};`,
    `  let s = 0;`,
    `  for (let kk = 0; kk < ${k.k}; kk++) s += ${A}[pa + ${mul(sak, 'kk')}] * ${B}[pb + ${mul(sbk, 'kk')}];`,
    `  ${store('s', 0, 0)}`,
    '}',
  ];
  if (a.dtype === 'float32' && b.dtype === 'float32' && k.m * k.n * k.k >= GEMM_MIN_WORK) {
    // Big float products go to the runtime's WebAssembly SIMD gemm (env.gemm); the epilogue stays here.
    return nest(k.batch, bv, [
      `const prod = env.gemm ? env.gemm(${A}, ${baseA}, ${sam}, ${sak}, ${B}, ${baseB}, ${sbk}, ${sbn}, ${k.m}, ${k.n}, ${k.k}) : null;`,
      'if (prod) {',
      '  const cc = prod.c, ldc = prod.ldc;',
      `  for (let i = 0; i < ${k.m}; i++) for (let j = 0; j < ${k.n}; j++) ${store('cc[i * ldc + j]', 0, 0)}`,
      '} else {',
      ...blocked().map((l) => '  ' + l),
      '}',
    ]).join('\n');
  }
  return nest(k.batch, bv, blocked()).join('\n');

  function blocked(): string[] {
  const m4 = k.m - (k.m % 4), n4 = k.n - (k.n % 4);
  return [
    `for (let i = 0; i < ${m4}; i += 4) {`,
    `  for (let j = 0; j < ${n4}; j += 4) {`,
    ...block.map((l) => '    ' + l),
    '  }',
    '}',
    // Right edge (columns past the last full block) for the blocked rows, then the bottom rows.
    ...(n4 < k.n ? single('0', String(n4)).map((l) => l.replace(`i < ${k.m}`, `i < ${m4}`)) : []),
    ...(m4 < k.m ? single(String(m4), '0') : []),
  ];
  }
}

/** Products with fewer multiply-adds than this stay in JavaScript (packing would cost more than it saves). */
const GEMM_MIN_WORK = 1 << 15;

function genGather(k: Extract<Kernel, { kind: 'gather' }>): string {
  const vars = k.shape.map((_, i) => `i${i}`);
  const em = new ExprEmitter((v) => indexOf(v, vars));
  const idx = em.emit(k.index);
  const srcVars = vars.map((v, i) => (i === k.axis ? 'g' : v));
  const body = [...em.lines, `const g = ${idx};`,
    `b${k.output.arg}[${indexOf(k.output.view, vars)}] = b${k.src.arg}[${indexOf({ ...k.src.view, shape: k.shape }, srcVars)}];`];
  return nest(k.shape, vars, body).join('\n');
}

function genScatterAdd(k: Extract<Kernel, { kind: 'scatterAdd' }>): string {
  const vars = k.srcShape.map((_, i) => `i${i}`);
  const em = new ExprEmitter((v) => indexOf(v, vars));
  const idx = em.emit(k.index), src = em.emit(k.src);
  const outVars = vars.map((v, i) => (i === k.axis ? 'g' : v));
  const o = k.output;
  const body = [...em.lines, `const g = ${idx};`, `b${o.arg}[${indexOf({ ...o.view, shape: k.srcShape }, outVars)}] += ${src};`];
  return [`b${o.arg}.fill(0);`, ...nest(k.srcShape, vars, body)].join('\n');
}

function jsBody(spec: KernelSpec): string {
  const k = spec.kernel;
  return k.kind === 'map' ? genMap(k) : k.kind === 'reduce' ? genReduce(k) : k.kind === 'matmul' ? genMatmul(k)
    : k.kind === 'gather' ? genGather(k) : genScatterAdd(k);
}

const indent = (text: string, by = '  '): string => text.split('\n').map((l) => by + l).join('\n');

export function jsSource(spec: KernelSpec): string {
  const args = spec.args.map((_, i) => `b${i}`).join(', ');
  return `function ${spec.name}(${args}${args ? ', ' : ''}p) {\n${indent(jsBody(spec))}\n}`;
}

/**
 * One function running a whole list of kernels in order (a compiled step on the CPU): each kernel
 * becomes a block whose `b0, b1, ...` name entries of the buffer table `B`.
 */
export function jsProgramSource(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): string {
  const blocks = specs.map((spec, i) => {
    const names = bindings[i].map((slot, a) => `b${a} = B[${slot}]`).join(', ');
    return `// ${spec.name}\n{\n${indent((names ? `const ${names};\n` : '') + jsBody(spec))}\n}`;
  });
  return `function program(B, p) {\n${indent(blocks.join('\n'))}\n}`;
}

export function compileJsProgram(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): (buffers: unknown[]) => void {
  const fn = new Function('env', `"use strict"; return (${jsProgramSource(specs, bindings)});`)(kernelEnv) as (B: unknown[], p: number[]) => void;
  const noParams: number[] = [];
  return (buffers) => fn(buffers, noParams);
}

export type JsKernelFn = (...args: unknown[]) => void;

/** Helpers generated kernels may call (`env.gemm`); the CPU runtime provides them. */
export interface JsKernelEnv { gemm: unknown }
let kernelEnv: JsKernelEnv = { gemm: null };
export function setJsKernelEnv(env: JsKernelEnv): void { kernelEnv = env; }

export function compileJs(spec: KernelSpec): JsKernelFn {
  const src = jsSource(spec);
  return new Function('env', `"use strict"; return (${src});`)(kernelEnv) as JsKernelFn;
}
