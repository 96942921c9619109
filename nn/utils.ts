// nn.utils: gradient clipping (PyTorch's clip_grad_norm_ / clip_grad_value_). Both are tensor
// arithmetic on the device: nothing is read back, so they work inside `compile` (the new gradients
// become write-backs like any other .grad assignment).

import { full, noGrad, stack, Tensor } from '../runtime/index.ts';

function gradsOf(op: string, params: Iterable<Tensor> | Tensor): [Tensor, Tensor][] {
  const list = params instanceof Tensor ? [params] : [...params];
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new Error(`${op}: params[${i}] is not a Tensor`);
  });
  return list.flatMap((p): [Tensor, Tensor][] => { const g = p.grad; return g ? [[p, g]] : []; });
}

/**
 * Scales all gradients together so that their total norm (of type `normType`: 2, any p > 0, or
 * Infinity) is at most `maxNorm`: each is multiplied by min(1, maxNorm / (total + 1e-6)).
 * Returns the total norm before clipping as a 0-d tensor (zero when no parameter has a gradient).
 */
export function clipGradNorm_(params: Iterable<Tensor> | Tensor, maxNorm: number, normType = 2): Tensor {
  const op = 'clipGradNorm_';
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm)) throw new Error(`${op}: maxNorm must be a number, got ${String(maxNorm)}`);
  if (typeof normType !== 'number' || !(normType > 0)) throw new Error(`${op}: normType must be a positive number or Infinity, got ${String(normType)}`);
  const pg = gradsOf(op, params);
  return noGrad(() => {
    if (pg.length === 0) return full([], 0);
    const grads = pg.map(([, g]) => g);
    const norms = grads.map((g) => (normType === Infinity ? g.abs().max() : normType === 2 ? g.mul(g).sum().sqrt() : g.abs().pow(normType).sum().pow(1 / normType)));
    const all = stack(norms);
    const total = normType === Infinity ? all.max() : normType === 2 ? all.mul(all).sum().sqrt() : all.pow(normType).sum().pow(1 / normType);
    const coef = total.add(1e-6).reciprocal().mul(maxNorm).clamp(undefined, 1);
    for (const [p, g] of pg) p.grad = g.mul(coef);
    return total;
  });
}

/** Clamps every gradient elementwise into [-clipValue, clipValue]. */
export function clipGradValue_(params: Iterable<Tensor> | Tensor, clipValue: number): void {
  if (typeof clipValue !== 'number' || !(clipValue >= 0)) throw new Error(`clipGradValue_: clipValue must be a number >= 0, got ${String(clipValue)}`);
  const pg = gradsOf('clipGradValue_', params);
  noGrad(() => {
    for (const [p, g] of pg) p.grad = g.clamp(-clipValue, clipValue);
  });
}
