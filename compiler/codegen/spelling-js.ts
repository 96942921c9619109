// The JavaScript spelling table: how generated JS writes each scalar op, literal and cast (see emit.ts).
// JS has one number type, so value representations never change (`conv` is the identity) and a bool is
// the number 0 or 1. Constant folding (passes/simplify.ts) evaluates ops with these same spellings.
// Float results that can round are rounded to float32 (Math.fround), as storing each op's result
// eagerly does: a fused chain computes exactly the unfused ops' values (an eq against a stored max
// sees the same bits; a compiled step equals eager execution bit for bit in elementwise code).

import type { DType } from '../../ir/dtype.ts';
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
  if (to === 'int32' && from === 'float32') return `Math.trunc(${x})`;
  return x;
}

export const jsSpelling: Spelling = {
  conv: (x) => x,
  unary: {
    neg: (x) => `(-${x})`,
    abs: (x) => `Math.abs(${x})`,
    sign: (x) => `Math.sign(${x})`,
    exp: (x) => f32(`Math.exp(${x})`),
    log: (x) => f32(`Math.log(${x})`),
    sqrt: (x) => f32(`Math.sqrt(${x})`),
    rsqrt: (x) => f32(`(1 / Math.sqrt(${x}))`),
    sin: (x) => f32(`Math.sin(${x})`),
    cos: (x) => f32(`Math.cos(${x})`),
    tanh: (x) => f32(`Math.tanh(${x})`),
    sigmoid: (x) => f32(`(1 / (1 + Math.exp(-${x})))`),
    relu: (x) => `(${x} < 0 ? 0 : ${x})`,
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
    eq: (a, b) => `(${a} === ${b} ? 1 : 0)`,
    ne: (a, b) => `(${a} !== ${b} ? 1 : 0)`,
    lt: (a, b) => `(${a} < ${b} ? 1 : 0)`,
    le: (a, b) => `(${a} <= ${b} ? 1 : 0)`,
    gt: (a, b) => `(${a} > ${b} ? 1 : 0)`,
    ge: (a, b) => `(${a} >= ${b} ? 1 : 0)`,
  },
  where: (c, a, b) => `(${c} !== 0 ? ${a} : ${b})`,
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
export const JS_RANDOM = `function rnd(seed, i) {
  const pcg = (x) => { const s = (Math.imul(x, 747796405) + 2891336453) >>> 0; const w = Math.imul((s >>> ((s >>> 28) + 4)) ^ s, 277803737) >>> 0; return ((w >>> 22) ^ w) >>> 0; };
  return (pcg((pcg(seed >>> 0) + i) >>> 0) >>> 8) / 16777216;
}`;
