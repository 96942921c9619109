// Adam and AdamW (PyTorch's torch.optim.Adam / AdamW, without amsgrad).

import { full, type Tensor } from '../runtime/index.ts';
import { checkNumber, checkOptions, oneMinus, Optimizer, type HyperValue, type ParamGroup, type ParamsInput } from './optimizer.ts';

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

type AdamGroupOptions = { betas: readonly [number, number]; eps: number; weightDecay: number };

function check(name: string, g: AdamGroupOptions): void {
  const betas = g.betas;
  if (!Array.isArray(betas) || betas.length !== 2) throw new Error(`${name}: betas must be a pair [beta1, beta2], got ${String(betas)}`);
  checkNumber(name, 'beta parameter at index 0', betas[0], (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  checkNumber(name, 'beta parameter at index 1', betas[1], (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  checkNumber(name, 'epsilon value', g.eps, (x) => x >= 0, 'a number >= 0');
  checkNumber(name, 'weightDecay value', g.weightDecay, (x) => x >= 0, 'a number >= 0');
}

/**
 * `m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
 * p ← p − lr / (1 − β1^t) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)`, with t the parameter's step count (a tensor).
 * Adam adds weightDecay·p to the gradient; AdamW multiplies p by 1 − lr·weightDecay first.
 */
abstract class AdamBase extends Optimizer<AdamGroupOptions> {
  /** First moments (PyTorch's exp_avg), one per parameter. */
  readonly expAvg: Tensor[];
  /** Second moments (PyTorch's exp_avg_sq), one per parameter. */
  readonly expAvgSq: Tensor[];
  /** AdamW's decoupled weight decay instead of Adam's L2 penalty. */
  private readonly decoupled: boolean;

  constructor(name: string, params: ParamsInput<AdamOptions>, opts: AdamOptions, decoupled: boolean) {
    checkOptions(name, opts, KEYS);
    const defaults = { lr: opts.lr ?? 1e-3, betas: opts.betas ?? ([0.9, 0.999] as const), eps: opts.eps ?? 1e-8, weightDecay: opts.weightDecay ?? (decoupled ? 0.01 : 0) };
    super(name, params as ParamsInput<AdamGroupOptions>, defaults, KEYS, (g) => check(name, g));
    this.decoupled = decoupled;
    this.expAvg = this.params.map((p) => this.zerosFor(p, 'expAvg'));
    this.expAvgSq = this.params.map((p) => this.zerosFor(p, 'expAvgSq'));
  }

  protected readonly _stepInState = true;

  protected readonly _slotNames = ['expAvg', 'expAvgSq'];

  protected _state(): (Tensor | null)[][] {
    return this.params.map((_, i) => [this.expAvg[i], this.expAvgSq[i]]);
  }

  /** (PyTorch also writes amsgrad, which kiln does not implement: always false) */
  protected _hyper(g: ParamGroup<AdamGroupOptions>): Record<string, HyperValue> {
    return { ...super._hyper(g), amsgrad: false };
  }

  protected _update(): void {
    this.stepCount.add_(1);
    // Per group: the learning rate and beta1 (per-call scalars where they change between calls).
    const perGroup = new Map(this.paramGroups.map((group) => {
      const beta1 = this.optionOf(group, 'beta1', () => group.betas[0]);
      return [group, { beta1, beta2: group.betas[1], lr: this.lrOf(group) }];
    }));
    for (const [group, p, grad, i] of this.withGrads()) {
      const { beta1, beta2, lr } = perGroup.get(group)!;
      const { eps, weightDecay } = group;
      // Bias corrections as tensor ops on the parameter's own step count (never stale inside a compiled
      // step); float64 for float64 parameters.
      const t = this.paramSteps[i];
      const { device, dtype } = t;
      const bc1 = full([], 1, { device, dtype }).mul(beta1).pow(t).neg().add(1);
      const bc2Sqrt = full([], beta2, { device, dtype }).pow(t).neg().add(1).sqrt();
      const stepSize = full([], 1, { device, dtype }).mul(lr).div(bc1);
      let g = grad;
      if (weightDecay !== 0) {
        if (this.decoupled) p.mul_(typeof lr === 'number' ? 1 - lr * weightDecay : lr.mul(-weightDecay).add(1));
        else g = g.add(p.mul(weightDecay));
      }
      const m = this.expAvg[i].mul(beta1).add(g.mul(oneMinus(beta1)));
      const v = this.expAvgSq[i].mul(beta2).add(g.mul(g).mul(1 - beta2));
      this.expAvg[i].copy_(m);
      this.expAvgSq[i].copy_(v);
      const denom = v.sqrt().div(bc2Sqrt).add(eps);
      p.sub_(m.div(denom).mul(stepSize));
    }
  }
}

/** Adam (weightDecay, default 0, is an L2 penalty added to the gradient). */
export class Adam extends AdamBase {
  constructor(params: ParamsInput<AdamOptions>, opts: AdamOptions = {}) {
    super('Adam', params, opts, false);
  }
}

/** Adam with decoupled weight decay (default 0.01): p ← p·(1 − lr·wd) before the Adam update. */
export class AdamW extends AdamBase {
  constructor(params: ParamsInput<AdamOptions>, opts: AdamOptions = {}) {
    super('AdamW', params, opts, true);
  }
}
