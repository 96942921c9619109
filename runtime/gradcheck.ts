// `kiln.autograd.gradcheck` / `gradgradcheck`: analytic Jacobians against central differences in
// float64, as PyTorch's. Loaded on first use through ./autograd-api.ts (both are async), so a page that
// never checks gradients never downloads this: in kiln's browser build it is a chunk of its own.

import { isFloat, type TypedArray } from '../ir/dtype.ts';
import { grad, noGrad } from './autograd.ts';
import { cat, full, Tensor, tensor } from './tensor.ts';

/** A function of tensors to a tensor, as gradcheck takes it (the plain function: pass `compile` to check it compiled). */
export type TensorFn = (...inputs: Tensor[]) => Tensor;
/** `kiln.compile` (passed in: the runtime sits below the compiler's tracing layer and cannot import it). */
export type Compiler = <A extends Tensor[], R>(fn: (...args: A) => R) => (...args: A) => Promise<R>;

export interface GradcheckOptions {
  /** the central-difference step (default 1e-6, as PyTorch) */
  eps?: number;
  /** absolute and relative tolerance of analytic vs numerical entries (defaults 1e-5 and 1e-3, as PyTorch) */
  atol?: number;
  rtol?: number;
  /**
   * `kiln.compile`: check the compiled function instead, its forward (for the differences) and its
   * backward (the analytic gradients are computed inside a compiled step).
   */
  compile?: Compiler;
  /** throw an Error describing the first mismatches (default); false: return false instead */
  raiseException?: boolean;
}

/**
 * PyTorch's `torch.autograd.gradcheck`: compares the analytic Jacobian of `fn` at `inputs` (one
 * vector-Jacobian product per output element, through autograd) with central differences
 * `(fn(x + eps) - fn(x - eps)) / 2eps`, one pair per input element. The inputs that require grad must be
 * float64 (finite differences in float32 are too coarse to check anything); the others (indices, masks)
 * are passed as they are. Resolves to true, or throws (see `raiseException`). Asynchronous because a
 * compiled function is.
 */
export async function gradcheck(fn: TensorFn, inputs: Tensor | Tensor[], opts: GradcheckOptions = {}): Promise<boolean> {
  const xs = Array.isArray(inputs) ? inputs : [inputs];
  const eps = opts.eps ?? 1e-6, atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-3;
  if (typeof fn !== 'function') throw new Error(`gradcheck: expected a function, got ${fn === null ? 'null' : typeof fn}`);
  for (const [k, v] of Object.entries({ eps, atol, rtol })) {
    if (typeof v !== 'number' || !(v >= 0) || (k === 'eps' && v === 0)) throw new Error(`gradcheck: ${k} must be a ${k === 'eps' ? 'positive' : 'non-negative'} number, got ${v}`);
  }
  xs.forEach((x, i) => {
    if (!(x instanceof Tensor)) throw new Error(`gradcheck: input ${i} must be a Tensor, got ${x === null ? 'null' : typeof x}`);
    if (x.requiresGrad && x.dtype !== 'float64') {
      throw new Error(`gradcheck: input ${i} requires grad but is ${x.dtype}; central differences need float64 (call .double() on the CPU)`);
    }
  });
  const wrt = xs.map((x, i) => (x.requiresGrad ? i : -1)).filter((i) => i >= 0);
  if (wrt.length === 0) throw new Error('gradcheck: no input requires grad');
  // A fresh leaf per call (so neither a perturbation nor a gradient touches the caller's tensors).
  const leaf = (x: Tensor, data: TypedArray, requiresGrad: boolean): Tensor => tensor(data, { shape: x.shape, dtype: x.dtype, device: x.device, requiresGrad });
  const base = xs.map((x) => x.dataSync());
  const forward = opts.compile ? opts.compile((...a: Tensor[]) => fn(...a)) : async (...a: Tensor[]) => fn(...a);
  const vjp = opts.compile ? opts.compile(vjpOf(fn, wrt)) : async (...a: Tensor[]) => vjpOf(fn, wrt)(...a);

  // (the leaves require grad as the inputs do: a function may differentiate inside, as gradgradcheck's does)
  const args = (perturbed?: [number, Float64Array]): Tensor[] => xs.map((x, i) => (i === perturbed?.[0] ? leaf(x, perturbed[1], true) : wrt.includes(i) ? leaf(x, base[i], true) : x));
  const y0 = await forward(...args());
  checkOutput(y0);
  const nOut = y0.numel();

  // numerical[k][r][c]: d out[r] / d input wrt[k][c]
  const numerical: Float64Array[][] = [];
  for (const i of wrt) {
    const cols: Float64Array[] = [];
    const data = Float64Array.from(base[i] as Float64Array);
    for (let c = 0; c < data.length; c++) {
      const v = data[c];
      data[c] = v + eps;
      const plus = (await forward(...args([i, data]))).dataSync();
      data[c] = v - eps;
      const minus = (await forward(...args([i, data]))).dataSync();
      data[c] = v;
      cols.push(Float64Array.from(plus, (p, r) => (p - Number(minus[r])) / (2 * eps)));
    }
    numerical.push(Array.from({ length: nOut }, (_, r) => Float64Array.from(cols, (col) => col[r])));
  }

  const problems: string[] = [];
  for (let r = 0; r < nOut; r++) {
    const onehot = new Float64Array(nOut);
    onehot[r] = 1;
    const v = tensor(onehot, { shape: y0.shape, dtype: y0.dtype, device: y0.device });
    const grads = await vjp(...xs.map((x, i) => (wrt.includes(i) ? leaf(x, base[i], true) : x)), v);
    wrt.forEach((i, k) => {
      const g = grads[k];
      if (g.dtype !== xs[i].dtype || g.shape.join() !== xs[i].shape.join()) {
        problems.push(`the gradient of input ${i} is ${g.dtype}[${g.shape.join(', ')}], the input is ${xs[i].dtype}[${xs[i].shape.join(', ')}]`);
        return;
      }
      const a = g.dataSync();
      for (let c = 0; c < a.length; c++) {
        const n = numerical[k][r][c], an = Number(a[c]);
        if (!(Math.abs(an - n) <= atol + rtol * Math.abs(n))) {
          problems.push(`d output[${r}] / d input ${i}[${c}]: analytic ${an}, numerical ${n}`);
        }
      }
    });
  }
  if (problems.length === 0) return true;
  if (opts.raiseException === false) return false;
  const what = opts.compile ? 'compiled' : 'eager';
  throw new Error(`gradcheck (${what}): ${problems.length} Jacobian entries differ (atol ${atol}, rtol ${rtol}, eps ${eps}): ${problems.slice(0, 6).join('; ')}${problems.length > 6 ? '; ...' : ''}`);
}

/**
 * PyTorch's `gradgradcheck`: gradcheck of the first derivative. The function checked maps
 * (inputs, gradOutput) to the gradients of `fn`'s output with respect to the inputs that require grad
 * (created with createGraph, flattened and concatenated), so second derivatives with respect to both
 * the inputs and the incoming gradient are compared with central differences. `gradOutput` defaults to
 * a fixed float64 tensor of the output's shape.
 */
export async function gradgradcheck(fn: TensorFn, inputs: Tensor | Tensor[], opts: GradcheckOptions & { gradOutput?: Tensor } = {}): Promise<boolean> {
  const xs = Array.isArray(inputs) ? inputs : [inputs];
  const wrt = xs.map((x, i) => (x.requiresGrad ? i : -1)).filter((i) => i >= 0);
  if (wrt.length === 0) throw new Error('gradgradcheck: no input requires grad');
  const y = noGrad(() => fn(...xs.map((x) => x.detach())));
  checkOutput(y);
  // a fixed, non-symmetric upstream gradient (values in [-1, 1]) unless one is given
  const v = opts.gradOutput ?? tensor(Float64Array.from({ length: y.numel() }, (_, i) => Math.sin(1.3 * i + 0.7)), { shape: y.shape, dtype: 'float64', device: y.device, requiresGrad: true });
  const first = (...a: Tensor[]): Tensor => {
    const gs = vjpOf(fn, wrt, true)(...a);
    return gs.length === 1 ? gs[0].reshape([-1]) : catFlat(gs);
  };
  return gradcheck(first, [...xs, v.requiresGrad ? v : v.detach().requiresGrad_()], opts);
}

/** `(...inputs, gradOutput) => gradients of fn's output for the inputs at wrt` (zeros where one is unused). */
function vjpOf(fn: TensorFn, wrt: readonly number[], createGraph = false): (...a: Tensor[]) => Tensor[] {
  return (...a: Tensor[]): Tensor[] => {
    const v = a[a.length - 1], xs = a.slice(0, -1);
    const y: unknown = fn(...xs);
    if (y instanceof Promise) throw new Error('gradcheck: the function must return a Tensor, not a Promise (pass the plain function and { compile })');
    checkOutput(y);
    const ins = wrt.map((i) => xs[i]);
    // an output that does not depend on any input has a zero Jacobian
    const gs = y.requiresGrad ? grad([y], ins, { gradOutputs: [v], allowUnused: true, createGraph }) : ins.map(() => null);
    return gs.map((g, k) => g ?? full(ins[k].shape, 0, { dtype: ins[k].dtype, device: ins[k].device }));
  };
}

function checkOutput(y: unknown): asserts y is Tensor {
  if (!(y instanceof Tensor)) throw new Error(`gradcheck: the function must return a Tensor, got ${y === null ? 'null' : typeof y}`);
  if (!isFloat(y.dtype)) throw new Error(`gradcheck: the function's output is ${y.dtype}; a Jacobian needs a floating point output`);
}

const catFlat = (gs: Tensor[]): Tensor => cat(gs.map((g) => g.reshape([-1])));
