// The JavaScript spelling table: how generated JS writes each scalar op, literal and cast (see emit.ts).
// JS has one number type, so value representations never change (`conv` is the identity) and a bool is
// the number 0 or 1; float32 values are doubles rounded where a cast or a store says so, and float ops
// that can round are rounded to float32 (Math.fround) when they compute in float32, as storing each op's
// result eagerly does: a fused chain computes exactly the unfused ops' values (an eq against a stored max
// sees the same bits; a compiled step equals eager execution bit for bit in elementwise code).
// Constant folding (passes/simplify.ts) evaluates ops with these same spellings.

import { isFloat, type DType } from '../../ir/dtype.ts';
import type { Spelling } from './emit.ts';

function literal(value: number, dtype: DType): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return 'Infinity';
  if (value === -Infinity) return '-Infinity';
  const v = dtype === 'float32' ? Math.fround(value) : value;
  return Object.is(v, -0) ? '-0' : String(v);
}

/** float32 rounding of a float op's result */
const f32 = (code: string): string => `Math.fround(${code})`;
const f32If = (t: DType, code: string): string => (t === 'float32' ? f32(code) : code);

function cast(x: string, from: DType, to: DType): string {
  if (to === 'bool') return `(${x} !== 0 ? 1 : 0)`;
  if (to === 'int32' && isFloat(from)) return `Math.trunc(${x})`;
  // float64 -> float32 rounds here, not only at a store, so that a fused kernel rounds where eager code does
  if (to === 'float32' && from === 'float64') return `Math.fround(${x})`;
  return x;
}

// Helpers that generated kernels inline: real functions (type-checked here, minified in a bundle),
// spliced into a kernel's source with toString(), so each must use nothing but its arguments -- and
// declare no named function inside (run from source by tsx, esbuild's keepNames would wrap it in a
// `__name` helper that a kernel does not have).

/**
 * erf in double precision (relative error ~1e-13): the Maclaurin series below |x| = 3 (at most ~45
 * terms; cancellation costs two or three digits near 3), the continued fraction of erfc from 3 to 6
 * (evaluated backwards from depth 60), and ±1 beyond (erfc(6) < 2e-17).
 */
function erf64(x: number): number {
  const z = Math.abs(x);
  if (z < 3) {
    const s = x * x;
    let term = x, sum = x;
    for (let n = 1; n < 80; n++) {
      term *= -s / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) <= 1e-17 * Math.abs(sum)) break;
    }
    return 1.1283791670955126 * sum;
  }
  if (z >= 6) return x > 0 ? 1 : -1;
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (z + f);
  const c = Math.exp(-z * z) / 1.7724538509055159 / (z + f);
  return x > 0 ? 1 - c : c - 1;
}

/**
 * erf for float32: |x| < 0.5, the Taylor series to x^11 (keeps erf(0) = 0 and the relative error
 * small); else Numerical Recipes' erfc (fractional error < 1.2e-7).
 */
function erf32(x: number): number {
  const z = Math.abs(x);
  if (z < 0.5) {
    const s = x * x;
    return 1.1283791670955126 * x * (1 + s * (-1 / 3 + s * (0.1 + s * (-1 / 42 + s * (1 / 216 - s / 1320)))));
  }
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

/**
 * `cond ? a : b` without a branch: both values go through a two-slot table and `cond` picks one.
 * V8 compiles a ternary on doubles to a jump, which mispredicts half the time on data of random sign
 * (a ReLU over activations: 4x slower than this); a kernel using it declares the table (JS_SELECT).
 */
const select = (cond: string, a: string, b: string): string => `(SEL[0] = ${b}, SEL[1] = ${a}, SEL[+(${cond})])`;
/** The table `select` writes through, declared once per generated program (compileJs, compileJsProgram). */
export const JS_SELECT = 'const SEL = new Float64Array(2);';

export const jsSpelling: Spelling = {
  conv: (x) => x,
  unary: {
    neg: (x) => `(-${x})`,
    abs: (x) => `Math.abs(${x})`,
    sign: (x) => `Math.sign(${x})`,
    exp: (x, t) => f32If(t, `Math.exp(${x})`),
    log: (x, t) => f32If(t, `Math.log(${x})`),
    sqrt: (x, t) => f32If(t, `Math.sqrt(${x})`),
    rsqrt: (x, t) => f32If(t, `(1 / Math.sqrt(${x}))`),
    sin: (x, t) => f32If(t, `Math.sin(${x})`),
    cos: (x, t) => f32If(t, `Math.cos(${x})`),
    tanh: (x, t) => f32If(t, `Math.tanh(${x})`),
    sigmoid: (x, t) => f32If(t, `(1 / (1 + Math.exp(-${x})))`),
    erf: (x, t) => (t === 'float64' ? `(${erf64.toString()})(${x})` : f32(`(${erf32.toString()})(${x})`)),
    relu: (x) => select(`!(${x} < 0)`, x, '0'),
    copy: (x) => x,
  },
  binary: {
    add: (a, b, t) => f32If(t, `(${a} + ${b})`),
    sub: (a, b, t) => f32If(t, `(${a} - ${b})`),
    mul: (a, b, t) => f32If(t, `(${a} * ${b})`),
    div: (a, b, t) => f32If(t, `(${a} / ${b})`),
    pow: (a, b, t) => f32If(t, `Math.pow(${a}, ${b})`),
    maximum: (a, b) => `Math.max(${a}, ${b})`,
    minimum: (a, b) => `Math.min(${a}, ${b})`,
    // +(a < b): a 0/1 number without a branch (a ternary mispredicts on data of random sign: 4x slower)
    eq: (a, b) => `+(${a} === ${b})`,
    ne: (a, b) => `+(${a} !== ${b})`,
    lt: (a, b) => `+(${a} < ${b})`,
    le: (a, b) => `+(${a} <= ${b})`,
    gt: (a, b) => `+(${a} > ${b})`,
    ge: (a, b) => `+(${a} >= ${b})`,
  },
  where: (c, a, b) => select(`${c} !== 0`, a, b),
  cast,
  literal,
  param: (index) => `p[${index}]`,
  random: (seed, counter) => `rnd(${seed}, ${counter})`,
  declare: (name, code) => `const ${name} = ${code};`,
  inlineLiterals: true,
};

/**
 * A uniform float in [0, 1) from a seed and a counter: PCG's output hash applied to
 * pcg(seed) + counter (Jarzynski & Olano, "Hash Functions for GPU Rendering"); 24 bits.
 * The WGSL backend computes the same numbers (spelling-wgsl.ts, k_rnd).
 */
function uniformHash(seed: number, i: number): number {
  let x = seed >>> 0;
  for (let round = 0; round < 2; round++) { // pcg(pcg(seed) + i)
    const s = (Math.imul(x, 747796405) + 2891336453) >>> 0;
    const w = Math.imul((s >>> ((s >>> 28) + 4)) ^ s, 277803737) >>> 0;
    x = ((w >>> 22) ^ w) >>> 0;
    if (round === 0) x = (x + i) >>> 0;
  }
  return (x >>> 8) / 16777216;
}

/** The declaration a kernel that draws random numbers starts with: `rnd(seed, i)` (see `random` above). */
export const JS_RANDOM = `const rnd = ${uniformHash.toString()};`;
