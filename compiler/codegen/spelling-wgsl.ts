// The WGSL spelling table: how generated shaders write each scalar op, literal and cast (see emit.ts),
// and the helper functions (PRELUDE) those spellings call. Every value has the WGSL type of its dtype:
// float32 -> f32, int32 and bool -> i32 (a bool is the i32 0 or 1, as in JS). Literals inside ops are
// abstract (`0`, `1`), so one spelling serves f32 and i32 operands alike.

import type { DType } from '../../ir/dtype.ts';
import type { Spelling } from './emit.ts';

export type WType = 'f32' | 'i32';
export function wtype(d: DType): WType {
  // the runtime refuses float64 on WebGPU before anything reaches codegen (runtime/device.ts checkDType)
  if (d === 'float64') throw new Error('codegen: WGSL has no 64-bit floats (float64 tensors live on the CPU)');
  return d === 'float32' ? 'f32' : 'i32';
}

const unary: Spelling['unary'] = {
  neg: (x) => `(-${x})`,
  abs: (x) => `abs(${x})`,
  // Math.sign: NaN, 0 and -0 map to themselves
  sign: (x) => `select(select(${x}, 1, ${x} > 0), -1, ${x} < 0)`,
  exp: (x) => `exp(${x})`,
  log: (x) => `log(${x})`,
  sqrt: (x) => `sqrt(${x})`,
  rsqrt: (x) => `(1.0 / sqrt(${x}))`,
  sin: (x) => `sin(${x})`,
  cos: (x) => `cos(${x})`,
  tanh: (x) => `k_tanh(${x})`,
  sigmoid: (x) => `(1.0 / (1.0 + exp(-${x})))`,
  erf: (x) => `k_erf(${x})`,
  // x < 0 ? 0 : x  (NaN and -0 pass through, as in js.ts)
  relu: (x) => `select(${x}, 0, ${x} < 0)`,
  copy: (x) => x,
};


const binary: Spelling['binary'] = {
  add: (a, b) => `(${a} + ${b})`,
  sub: (a, b) => `(${a} - ${b})`,
  mul: (a, b) => `(${a} * ${b})`,
  div: (a, b) => `(${a} / ${b})`,
  pow: (a, b, t) => (t === 'float32' ? `k_pow(${a}, ${b})` : `k_powi(${a}, ${b})`),
  maximum: (a, b, t) => (t === 'float32' ? `k_max(${a}, ${b})` : `max(${a}, ${b})`),
  minimum: (a, b, t) => (t === 'float32' ? `k_min(${a}, ${b})` : `min(${a}, ${b})`),
  eq: (a, b) => `select(0i, 1i, ${a} == ${b})`,
  // `!=` must be true when either side is NaN; some drivers (lavapipe) compile it as an ordered compare
  ne: (a, b, t) => (t === 'float32' ? `select(0i, 1i, ${a} != ${b} || k_isnan(${a}) || k_isnan(${b}))` : `select(0i, 1i, ${a} != ${b})`),
  lt: (a, b) => `select(0i, 1i, ${a} < ${b})`,
  le: (a, b) => `select(0i, 1i, ${a} <= ${b})`,
  gt: (a, b) => `select(0i, 1i, ${a} > ${b})`,
  ge: (a, b) => `select(0i, 1i, ${a} >= ${b})`,
};


/** Helper functions of the shaders (NaN tests by bits, so no float optimisation can drop them); a shader carries those it calls (wgsl.ts preludeFor). */
export const PRELUDE = `
fn k_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn k_inf() -> f32 { let b = 0x7f800000u; return bitcast<f32>(b); }
fn k_nan() -> f32 { let b = 0x7fc00000u; return bitcast<f32>(b); }
fn k_max(a: f32, b: f32) -> f32 { if (k_isnan(a) || k_isnan(b)) { return k_nan(); } return select(b, a, a > b); }
fn k_min(a: f32, b: f32) -> f32 { if (k_isnan(a) || k_isnan(b)) { return k_nan(); } return select(b, a, a < b); }
// as spelling-js.ts's erf: the Taylor series to x^11 for |x| < 0.5, else Numerical Recipes' erfc
fn k_erf(x: f32) -> f32 {
  let z = abs(x);
  if (z < 0.5) {
    let s = x * x;
    return 1.1283791670955126 * x * (1.0 + s * (-1.0 / 3.0 + s * (0.1 + s * (-1.0 / 42.0 + s * (1.0 / 216.0 - s / 1320.0)))));
  }
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
fn k_tanh(x: f32) -> f32 {
  if (abs(x) > 9.1) { return sign(x); }
  if (abs(x) < 0.0004) { return x - x * x * x / 3.0; }
  return tanh(x);
}
fn k_pow(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (k_isnan(a) || k_isnan(b)) { return k_nan(); }
  if (b == 1.0) { return a; }
  if (b == 2.0) { return a * a; }
  if (b == -1.0) { return 1.0 / a; }
  if (b == 0.5 && a >= 0.0) { return sqrt(a); }
  let integral = b == floor(b);
  let m = abs(a);
  var r: f32;
  if (integral && abs(b) <= 32.0) {
    var e = u32(abs(b));
    var base = m;
    r = 1.0;
    loop {
      if ((e & 1u) != 0u) { r = r * base; }
      e = e >> 1u;
      if (e == 0u) { break; }
      base = base * base;
    }
    if (b < 0.0) { r = 1.0 / r; }
  } else if (m == 0.0) {
    r = select(k_inf(), 0.0, b > 0.0);
  } else if (abs(b) > 3.0e38) {
    if (m == 1.0) { return k_nan(); }
    r = select(0.0, k_inf(), (m > 1.0) == (b > 0.0));
  } else {
    r = exp2(b * log2(m));
  }
  if (a < 0.0) {
    if (!integral) { return select(k_nan(), r, m > 3.4028234e38); }
    let half = b * 0.5;
    if (abs(b) < 16777216.0 && half != floor(half)) { return -r; }
  }
  return r;
}
fn k_pcg(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn k_rnd(seed: i32, i: i32) -> f32 {
  return f32(k_pcg(k_pcg(bitcast<u32>(seed)) + bitcast<u32>(i)) >> 8u) / 16777216.0;
}
fn k_powi(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(1, -1, (b & 1) != 0); }
    return 0;
  }
  var e = u32(b);
  var base = a;
  var r = 1i;
  loop {
    if (e == 0u) { break; }
    if ((e & 1u) != 0u) { r = r * base; }
    e = e >> 1u;
    base = base * base;
  }
  return r;
}
`;

/** The same value in `to`'s WGSL type (f32 <-> i32; bool is an i32 holding 0/1). */
export function conv(x: string, from: DType, to: DType): string {
  const f = wtype(from), t = wtype(to);
  if (f === t) return x;
  return t === 'f32' ? `f32(${x})` : `i32(${x})`;
}

function literal(value: number, dtype: DType): string {
  if (dtype !== 'float32') return `i32(${dtype === 'bool' ? (value !== 0 ? 1 : 0) : Math.trunc(value) | 0})`;
  const v = Math.fround(value);
  if (Number.isNaN(v)) return 'k_nan()';
  if (v === Infinity) return 'k_inf()';
  if (v === -Infinity) return '(-k_inf())';
  if (Object.is(v, -0)) return '(-0.0f)';
  const s = String(v);
  return s.startsWith('-') ? `(${s}f)` : `${s}f`;
}

export const wgslSpelling: Spelling = {
  conv,
  unary,
  binary,
  where: (c, a, b) => `select(${b}, ${a}, ${c} != 0)`,
  cast: (x, from, to) => (to !== 'bool' ? conv(x, from, to) : from === 'float32' ? `select(0i, 1i, ${x} != 0 || k_isnan(${x}))` : `select(0i, 1i, ${x} != 0)`),
  literal,
  param: (index, dtype) => (dtype === 'float32' ? `U.pf[${index >> 2}][${index & 3}]` : `U.pi[${index >> 2}][${index & 3}]`),
  // the same hash as spelling-js.ts's uniformHash (PCG twice: keep k_pcg/k_rnd in step with it)
  random: (seed, counter) => `k_rnd(${seed}, ${counter})`,
  declare: (name, code) => `let ${name} = ${code};`,
  // a `let`, not an inline literal: an expression of literals only would be a WGSL const-expression,
  // and const-expressions that overflow (exp(100f)) or divide by zero fail shader creation
  inlineLiterals: false,
};
