// Adam and AdamW (PyTorch's torch.optim.Adam / AdamW, without amsgrad).

import { full, type Tensor } from '../runtime/index.ts';
import { checkNumber, checkOptions, Optimizer, type HyperValue, type Scalar } from './optimizer.ts';

export interface AdamOptions {
  /** default 1e-3 */
  lr?: number;
  /** default [0.9, 0.999] */
  betas?: readonly [number, number];
  /** default 1e-8 */
  eps?: number;
  /** Adam: L2 penalty added to the gradient (default 0); AdamW: decoupled decay (default 0.01) */
  weightDecay?: number;
}

const KEYS = ['lr', 'betas', 'eps', 'weightDecay'] as const;

function settings(name: string, opts: AdamOptions, defaultWd: number): { betas: readonly [number, number]; eps: number; weightDecay: number } {
  const betas = opts.betas ?? [0.9, 0.999];
  if (!Array.isArray(betas) || betas.length !== 2) throw new Error(`${name}: betas must be a pair [beta1, beta2], got ${String(betas)}`);
  checkNumber(name, 'beta parameter at index 0', betas[0], (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  checkNumber(name, 'beta parameter at index 1', betas[1], (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  const eps = checkNumber(name, 'epsilon value', opts.eps ?? 1e-8, (x) => x >= 0, 'a number >= 0');
  const weightDecay = checkNumber(name, 'weightDecay value', opts.weightDecay ?? defaultWd, (x) => x >= 0, 'a number >= 0');
  return { betas: [betas[0], betas[1]], eps, weightDecay };
}

/**
 * `m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
 * p ← p − lr / (1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)`, with t the parameter's step count (a tensor).
 * Adam adds weightDecay·p to the gradient; AdamW multiplies p by 1 − lr·weightDecay first.
 */
abstract class AdamBase extends Optimizer {
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  /** First moments (PyTorch's exp_avg), one per parameter. */
  readonly expAvg: Tensor[];
  /** Second moments (PyTorch's exp_avg_sq), one per parameter. */
  readonly expAvgSq: Tensor[];
  /** AdamW's decoupled weight decay instead of Adam's L2 penalty. */
  private readonly decoupled: boolean;

  constructor(name: string, params: Iterable<Tensor>, opts: AdamOptions, decoupled: boolean) {
    checkOptions(name, opts, KEYS);
    super(name, params, opts.lr ?? 1e-3);
    const s = settings(name, opts, decoupled ? 0.01 : 0);
    this.betas = s.betas;
    this.eps = s.eps;
    this.weightDecay = s.weightDecay;
    this.decoupled = decoupled;
    this.expAvg = this.params.map((p) => this.zerosFor(p, 'expAvg'));
    this.expAvgSq = this.params.map((p) => this.zerosFor(p, 'expAvgSq'));
  }

  protected readonly _stepInState = true;

  protected readonly _slotNames = ['expAvg', 'expAvgSq'];

  protected _state(): (Tensor | null)[][] {
    return this.params.map((_, i) => [this.expAvg[i], this.expAvgSq[i]]);
  }

  protected _hyper(): Record<string, HyperValue> {
    return { betas: this.betas, eps: this.eps, weightDecay: this.weightDecay, amsgrad: false };
  }

  protected _update(lr: Scalar): void {
    const [beta1, beta2] = this.betas;
    const { eps, weightDecay, decoupled } = this;
    this.params.forEach((p, i) => {
      let g = p.grad;
      if (g === null) return;
      // Bias corrections as tensor ops on the parameter's own step count (never stale inside a compiled step).
      const t = this.paramSteps[i];
      const device = t.device;
      const bc1 = full([], beta1, { device }).pow(t).neg().add(1);
      const bc2Sqrt = full([], beta2, { device }).pow(t).neg().add(1).sqrt();
      const stepSize = full([], 1, { device }).mul(lr).div(bc1);
      if (weightDecay !== 0) {
        if (decoupled) p.mul_(typeof lr === 'number' ? 1 - lr * weightDecay : lr.mul(-weightDecay).add(1));
        else g = g.add(p.mul(weightDecay));
      }
      const m = this.expAvg[i].mul(beta1).add(g.mul(1 - beta1));
      const v = this.expAvgSq[i].mul(beta2).add(g.mul(g).mul(1 - beta2));
      this.expAvg[i].copy_(m);
      this.expAvgSq[i].copy_(v);
      const denom = v.sqrt().div(bc2Sqrt).add(eps);
      p.sub_(m.div(denom).mul(stepSize));
    });
  }
}

/** Adam (weightDecay, default 0, is an L2 penalty added to the gradient). */
export class Adam extends AdamBase {
  constructor(params: Iterable<Tensor>, opts: AdamOptions = {}) {
    super('Adam', params, opts, false);
  }
}

/** Adam with decoupled weight decay (default 0.01): p ← p·(1 − lr·wd) before the Adam update. */
export class AdamW extends AdamBase {
  constructor(params: Iterable<Tensor>, opts: AdamOptions = {}) {
    super('AdamW', params, opts, true);
  }
}
