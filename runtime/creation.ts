// Tensor creation: from data, filled, ranges and seeded random numbers.

import { dtypeOfArray, typedArrayFor, type DType, type TypedArray } from '../ir/dtype.ts';
import { fmt, numel } from '../ir/shape.ts';
import { contiguousView } from '../ir/view.ts';
import { checkDevice, getDefaultDevice } from './device.ts';
import { noGrad } from './autograd.ts';
import { dispatch } from './dispatch.ts';
import { hostScalar } from './host.ts';
import { checkDtype, full, Tensor, uploaded, type CreationOptions } from './tensor.ts';

export type NestedData = number | boolean | readonly NestedData[];
export interface TensorOptions extends CreationOptions { shape?: readonly number[] }

/** A number stored as int32: PyTorch refuses values that do not fit instead of wrapping them. */
function toInt32(op: string, v: number): number {
  const n = Math.trunc(v);
  if (!(n >= -2147483648 && n <= 2147483647)) throw new Error(`${op}: value ${v} cannot be converted to type int32 without overflow`);
  return n;
}

function fromTyped(data: TypedArray, shape: readonly number[], opts: CreationOptions, op = 'tensor'): Tensor {
  const device = checkDevice(opts.device ?? getDefaultDevice());
  const dtype = checkDtype(op, opts.dtype) ?? dtypeOfArray(data);
  let arr = data;
  if (dtype !== dtypeOfArray(data)) {
    arr = typedArrayFor(dtype, data.length);
    for (let i = 0; i < data.length; i++) arr[i] = dtype === 'bool' ? (data[i] !== 0 ? 1 : 0) : dtype === 'int32' ? toInt32(op, data[i]) : data[i];
  }
  const t = Tensor._fromStorage(uploaded(device, arr, dtype), contiguousView(shape), dtype);
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** `tensor(data, opts?)`: numbers, nested arrays, booleans, or a typed array with `opts.shape`. */
export function tensor(data: NestedData | TypedArray, opts: TensorOptions = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    const typed = data as TypedArray;
    const shape = opts.shape ?? [typed.length];
    if (numel(shape) !== typed.length) throw new Error(`tensor: shape ${fmt(shape)} does not match ${typed.length} elements`);
    // Copy so later writes to the caller's array don't alias the tensor.
    return fromTyped(typed.slice(), shape, opts);
  }
  const shape: number[] = [];
  for (let d: NestedData = data; Array.isArray(d); d = (d as readonly NestedData[])[0]) shape.push((d as readonly NestedData[]).length);
  const flat: (number | boolean)[] = [];
  const walk = (d: NestedData, depth: number): void => {
    if (Array.isArray(d)) {
      if (depth >= shape.length || d.length !== shape[depth]) throw new Error(`tensor: nested arrays are ragged (expected length ${shape[depth]} at depth ${depth}, got ${d.length})`);
      for (const x of d as readonly NestedData[]) walk(x, depth + 1);
    } else {
      if (depth !== shape.length) throw new Error(`tensor: nested arrays are ragged at depth ${depth}`);
      if (typeof d !== 'number' && typeof d !== 'boolean') throw new Error(`tensor: expected numbers or booleans, got ${typeof d}`);
      flat.push(d);
    }
  };
  walk(data, 0);
  if (opts.shape && numel(opts.shape) !== flat.length) throw new Error(`tensor: shape ${fmt(opts.shape)} does not match ${flat.length} elements`);
  const dtype: DType = checkDtype('tensor', opts.dtype) ?? (flat.length > 0 && flat.every((v) => typeof v === 'boolean') ? 'bool' : 'float32');
  const arr = typedArrayFor(dtype, flat.length);
  flat.forEach((v, i) => (arr[i] = dtype === 'int32' ? toInt32('tensor', Number(v)) : Number(v)));
  return fromTyped(arr, opts.shape ?? shape, { ...opts, dtype });
}

export const zeros = (shape: readonly number[], opts: CreationOptions = {}): Tensor => full(shape, 0, opts);
export const ones = (shape: readonly number[], opts: CreationOptions = {}): Tensor => full(shape, 1, opts);
const likeOpts = (t: Tensor, opts: CreationOptions): CreationOptions => ({ dtype: t.dtype, device: t.device, ...opts });
export const zerosLike = (t: Tensor, opts: CreationOptions = {}): Tensor => full(t.shape, 0, likeOpts(t, opts));
export const onesLike = (t: Tensor, opts: CreationOptions = {}): Tensor => full(t.shape, 1, likeOpts(t, opts));
export const fullLike = (t: Tensor, value: number, opts: CreationOptions = {}): Tensor => full(t.shape, value, likeOpts(t, opts));

export function arange(start: number, end?: number, step = 1, opts: CreationOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0) throw new Error('arange: step must be nonzero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? ([start, end, step].every(Number.isInteger) ? 'int32' : 'float32');
  const arr = typedArrayFor(dtype, n);
  for (let i = 0; i < n; i++) arr[i] = start + i * step;
  return fromTyped(arr, [n], { ...opts, dtype });
}

export function linspace(start: number, end: number, steps: number, opts: CreationOptions = {}): Tensor {
  if (!Number.isInteger(steps) || steps < 0) throw new Error(`linspace: steps must be a non-negative integer, got ${steps}`);
  const arr = new Float32Array(steps);
  const step = steps > 1 ? (end - start) / (steps - 1) : 0;
  // PyTorch fills the second half from the end so that the last value is exactly `end`.
  for (let i = 0; i < steps; i++) arr[i] = i < steps / 2 ? start + i * step : end - (steps - 1 - i) * step;
  return fromTyped(arr, [steps], opts);
}

export function eye(n: number, opts: CreationOptions = {}): Tensor {
  const arr = typedArrayFor(opts.dtype ?? 'float32', n * n);
  for (let i = 0; i < n; i++) arr[i * n + i] = 1;
  return fromTyped(arr, [n, n], opts);
}

// ---- seeded randomness (xoshiro128**; Box-Muller for normals) ----
let rngState = new Uint32Array(4);
function seedState(seed: number): void {
  // splitmix32 expands the seed into the four state words.
  let x = seed >>> 0;
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    rngState[i] = (z ^ (z >>> 16)) >>> 0;
  }
}
seedState(Date.now() ^ (Math.random() * 0x100000000));

/** Makes all random creation (rand, randn, randint, init, dropout, shuffling defaults) reproducible. */
export function manualSeed(seed: number): void { seedState(seed); }

/** Uniform in [0, 1) with 24 random bits (exactly representable in float32). */
export function nextUniform(): number {
  const s = rngState;
  const result = Math.imul(((Math.imul(s[1], 5) << 7) | (Math.imul(s[1], 5) >>> 25)), 9) >>> 0;
  const t = (s[1] << 9) >>> 0;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
  s[2] ^= t;
  s[3] = ((s[3] << 11) | (s[3] >>> 21)) >>> 0;
  return (result >>> 8) / 16777216;
}

/** A fresh 24-bit seed from the global generator (reproducible after manualSeed). */
export const nextSeed = (): number => Math.floor(nextUniform() * 16777216);

/**
 * Uniform [0, 1) numbers from the counter-based `random` primitive. The seed comes from the global
 * generator through hostScalar, so inside `compile` every call draws new numbers.
 */
export function rand(shape: readonly number[], opts: CreationOptions = {}): Tensor {
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`rand: invalid shape ${fmt(shape)}`);
  const device = checkDevice(opts.device ?? getDefaultDevice());
  const t = noGrad(() => {
    const seed = hostScalar(nextSeed);
    const seedT = typeof seed === 'number' ? full([], seed, { device }) : seed;
    return dispatch('random', [seedT], { shape: [...shape] });
  });
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Standard normal numbers (Box-Muller over two uniform draws). */
export function randn(shape: readonly number[], opts: CreationOptions = {}): Tensor {
  const t = noGrad(() => {
    const u1 = rand(shape, { device: opts.device }), u2 = rand(shape, { device: opts.device });
    return u1.neg().add(1).log().mul(-2).sqrt().mul(u2.mul(2 * Math.PI).cos());
  });
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function randint(low: number, high: number, shape: readonly number[], opts: CreationOptions = {}): Tensor {
  if (!(high > low) || !Number.isInteger(low) || !Number.isInteger(high)) throw new Error(`randint: expected integers low < high, got low=${low}, high=${high}`);
  // u * (high - low) is non-negative, so truncation is floor.
  return noGrad(() => rand(shape, { device: opts.device }).mul(high - low).int().add(low));
}

/** Uniform in [low, high) of a given shape (used by nn.init). */
export function uniform(shape: readonly number[], low: number, high: number, opts: CreationOptions = {}): Tensor {
  const t = noGrad(() => rand(shape, { device: opts.device }).mul(high - low).add(low));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}
