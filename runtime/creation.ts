// Tensor creation: filled, ranges and seeded random numbers (`tensor(data)` itself is in tensor.ts, with
// `full`: the parts of the runtime that make tensors from data need only that module).

import { checkDTypeName, isFloat, typedArrayFor, type DType } from '../ir/dtype.ts';
import { fmt } from '../ir/shape.ts';
import { checkDevice, checkDType, getDefaultDevice } from './device.ts';
import { noGrad } from './autograd.ts';
import { dispatch } from './dispatch.ts';
import { hostScalar } from './host.ts';
import { fromTyped, full, Tensor, type CreationOptions } from './tensor.ts';

export { tensor, type NestedData, type TensorOptions } from './tensor.ts';

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
  const dtype = checkDTypeName('arange', opts.dtype ?? ([start, end, step].every(Number.isInteger) ? 'int32' : 'float32'));
  const arr = typedArrayFor(dtype, n);
  for (let i = 0; i < n; i++) arr[i] = start + i * step;
  return fromTyped('arange', arr, [n], { ...opts, dtype });
}

export function linspace(start: number, end: number, steps: number, opts: CreationOptions = {}): Tensor {
  if (!Number.isInteger(steps) || steps < 0) throw new Error(`linspace: steps must be a non-negative integer, got ${steps}`);
  // computed in float64 and stored as the dtype asked for (float32 by default)
  const arr = new Float64Array(steps);
  const step = steps > 1 ? (end - start) / (steps - 1) : 0;
  // PyTorch fills the second half from the end so that the last value is exactly `end`.
  for (let i = 0; i < steps; i++) arr[i] = i < steps / 2 ? start + i * step : end - (steps - 1 - i) * step;
  return fromTyped('linspace', arr, [steps], { ...opts, dtype: opts.dtype ?? 'float32' });
}

export function eye(n: number, opts: CreationOptions = {}): Tensor {
  const arr = typedArrayFor(checkDTypeName('eye', opts.dtype ?? 'float32'), n * n);
  for (let i = 0; i < n; i++) arr[i * n + i] = 1;
  return fromTyped('eye', arr, [n, n], opts);
}

// ---- seeded randomness (xoshiro128**; Box-Muller for normals) ----

/**
 * A seeded stream of random numbers (PyTorch's torch.Generator): `new kiln.Generator().manualSeed(n)`,
 * passed as `{ generator }` to the random creation functions and multinomial. Without one they draw
 * from the default generator that `kiln.manualSeed` seeds.
 */
export class Generator {
  private readonly state = new Uint32Array(4);
  private seed = 0;
  constructor() { this.manualSeed(Date.now() ^ (Math.random() * 0x100000000)); }

  /** Restarts the stream from `seed`; returns the generator. */
  manualSeed(seed: number): this {
    if (!Number.isFinite(seed)) throw new Error(`manualSeed: expected a finite number, got ${seed}`);
    // splitmix32 expands the seed into the four state words.
    this.seed = seed;
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.state[i] = (z ^ (z >>> 16)) >>> 0;
    }
    return this;
  }
  /** The seed given to the last manualSeed. */
  initialSeed(): number { return this.seed; }

  /** Uniform in [0, 1) with 24 random bits (exactly representable in float32). */
  nextUniform(): number {
    const s = this.state;
    const result = Math.imul(((Math.imul(s[1], 5) << 7) | (Math.imul(s[1], 5) >>> 25)), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ((s[3] << 11) | (s[3] >>> 21)) >>> 0;
    return (result >>> 8) / 16777216;
  }
  /** A fresh 24-bit seed for the counter-based `random` primitive. */
  nextSeed(): number { return Math.floor(this.nextUniform() * 16777216); }
}

const defaultGenerator = new Generator();

/** Makes all random creation (rand, randn, randint, init, dropout, shuffling defaults) reproducible. */
export function manualSeed(seed: number): void { defaultGenerator.manualSeed(seed); }

/** Uniform in [0, 1) from the default generator. */
export const nextUniform = (): number => defaultGenerator.nextUniform();

/** A fresh 24-bit seed from the default generator (reproducible after manualSeed). */
export const nextSeed = (): number => defaultGenerator.nextSeed();

/** Options of the random creation functions. */
export interface RandomOptions extends CreationOptions {
  /** draw from this generator instead of the default one */
  generator?: Generator;
}

function generatorOf(op: string, opts: RandomOptions): Generator {
  const g = opts.generator ?? defaultGenerator;
  if (!(g instanceof Generator)) throw new Error(`${op}: generator must be a kiln.Generator, got ${typeof g}`);
  return g;
}

/** The dtype a random creator makes: float32 unless `opts.dtype` asks for float64 (others are an error). */
function randomDType(op: string, opts: CreationOptions): DType {
  const dtype = checkDTypeName(op, opts.dtype ?? 'float32');
  if (!isFloat(dtype)) throw new Error(`${op}: expected a floating point dtype (float32, float64), got ${dtype}`);
  checkDType(op, checkDevice(opts.device ?? getDefaultDevice()), dtype);
  return dtype;
}

/**
 * Uniform [0, 1) numbers from the counter-based `random` primitive. The seed comes from the generator
 * through hostScalar, so inside `compile` every call draws new numbers. With `dtype: 'float64'` the
 * same 24-bit numbers are widened (exactly).
 */
export function rand(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`rand: invalid shape ${fmt(shape)}`);
  const device = checkDevice(opts.device ?? getDefaultDevice());
  const dtype = randomDType('rand', opts);
  const gen = generatorOf('rand', opts);
  const t = noGrad(() => {
    const seed = hostScalar(() => gen.nextSeed());
    const seedT = typeof seed === 'number' ? full([], seed, { device }) : seed;
    const u = dispatch('random', [seedT], { shape: [...shape] });
    return dtype === 'float32' ? u : u.to(dtype);
  });
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Standard normal numbers (Box-Muller over two uniform draws). */
export function randn(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const dtype = randomDType('randn', opts);
  const t = noGrad(() => {
    const r = { device: opts.device, generator: opts.generator, dtype };
    const u1 = rand(shape, r), u2 = rand(shape, r);
    return u1.neg().add(1).log().mul(-2).sqrt().mul(u2.mul(2 * Math.PI).cos());
  });
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export function randint(low: number, high: number, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  if (!(high > low) || !Number.isInteger(low) || !Number.isInteger(high)) throw new Error(`randint: expected integers low < high, got low=${low}, high=${high}`);
  // u * (high - low) is non-negative, so truncation is floor.
  return noGrad(() => rand(shape, { device: opts.device, generator: opts.generator }).mul(high - low).int().add(low));
}

/** Uniform in [low, high) of a given shape (used by nn.init). */
export function uniform(shape: readonly number[], low: number, high: number, opts: RandomOptions = {}): Tensor {
  const dtype = randomDType('uniform', opts);
  const t = noGrad(() => rand(shape, { device: opts.device, generator: opts.generator, dtype }).mul(high - low).add(low));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Normal numbers with the given mean and standard deviation (PyTorch's torch.normal(mean, std, size)). */
export function normal(mean: number, std: number, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  if (typeof mean !== 'number' || typeof std !== 'number' || !(std >= 0)) throw new Error(`normal: expected numbers mean and std >= 0, got mean=${String(mean)}, std=${String(std)}`);
  const t = noGrad(() => randn(shape, { device: opts.device, generator: opts.generator }).mul(std).add(mean));
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

export interface MultinomialOptions {
  /** draw with replacement (default false: each category at most once per row) */
  replacement?: boolean;
  generator?: Generator;
}

/**
 * `numSamples` category indices per row of `probs` (`[K]` or `[B, K]`, non-negative weights that need
 * not sum to 1), int32. Runs on the device, also inside `compile`: with replacement, the number of
 * cumulative weights below a uniform draw; without, the top `numSamples` of log(p) + Gumbel noise
 * (the same distribution as drawing one at a time without putting back).
 */
export function multinomial(probs: Tensor, numSamples: number, opts: MultinomialOptions = {}): Tensor {
  if (!(probs instanceof Tensor)) throw new Error(`multinomial: expected a Tensor of probabilities, got ${typeof probs}`);
  if (!isFloat(probs.dtype)) throw new Error(`multinomial: expected floating point probabilities (float32, float64), got ${probs.dtype}`);
  if (probs.ndim !== 1 && probs.ndim !== 2) throw new Error(`multinomial: probs must be 1-D or 2-D, got shape ${fmt(probs.shape)}`);
  const K = probs.shape[probs.ndim - 1];
  if (K === 0) throw new Error(`multinomial: probs of shape ${fmt(probs.shape)} have no categories`);
  if (!Number.isInteger(numSamples) || numSamples <= 0) throw new Error(`multinomial: numSamples must be a positive integer, got ${numSamples}`);
  const replacement = opts.replacement ?? false;
  if (!replacement && numSamples > K) throw new Error(`multinomial: cannot sample ${numSamples} > ${K} categories (shape ${fmt(probs.shape)}) without replacement`);
  const r = { device: probs.device, generator: opts.generator };
  return noGrad(() => {
    const p = probs.ndim === 1 ? probs.unsqueeze(0) : probs;
    const B = p.shape[0];
    let out: Tensor;
    if (replacement) {
      const cdf = p.cumsum(1);
      const u = rand([B, numSamples], r).mul(cdf.index(null, [K - 1, K])); // [B, n] in [0, total)
      out = cdf.unsqueeze(1).le(u.unsqueeze(2)).int().sum(2).minimum(K - 1);
    } else {
      const u = rand([B, K], r).clamp(1e-20);
      const keys = p.log().sub(u.log().neg().log());
      out = keys.topk(numSamples, 1).indices;
    }
    return probs.ndim === 1 ? out.reshape([numSamples]) : out;
  });
}
