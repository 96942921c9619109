// RMSprop, Adagrad and Adadelta (PyTorch 1.13's torch.optim, foreach-free single-tensor forms).
// Same shape as SGD and Adam: state is created eagerly, updated in place under noGrad, and every
// per-step quantity is tensor arithmetic or a per-call host scalar, so `compile` can replay `step()`.

import { noGrad, type Tensor } from '../runtime/index.ts';
import { checkNumber, checkOptions, Optimizer, type ParamsInput } from './optimizer.ts';

const nonNegative = (name: string, what: string, v: number): void => { checkNumber(name, what, v, (x) => x >= 0, 'a number >= 0'); };

export interface RMSpropOptions {
  /** default 0.01 */
  lr?: number;
  /** smoothing constant of the squared-gradient average (default 0.99) */
  alpha?: number;
  /** default 1e-8 */
  eps?: number;
  weightDecay?: number;
  momentum?: number;
  /** normalize by the variance estimate sqrt(E[g²] − E[g]²) instead of sqrt(E[g²]) */
  centered?: boolean;
}

const RMS_KEYS = ['lr', 'alpha', 'eps', 'weightDecay', 'momentum', 'centered'] as const;

/**
 * `g ← grad + wd·p; s ← α s + (1 − α) g²; avg ← sqrt(s − m²) + eps (centered, m ← α m + (1 − α) g)
 * or sqrt(s) + eps; with momentum buf ← μ buf + g / avg, p ← p − lr·buf; else p ← p − lr·g / avg`.
 */
export class RMSprop extends Optimizer<Required<Omit<RMSpropOptions, 'lr'>>> {
  readonly squareAvg: Tensor[];
  /** E[g] (centered groups only) */
  readonly gradAvg: (Tensor | null)[];
  /** momentum buffers (groups with momentum > 0 only) */
  readonly momentumBuffers: (Tensor | null)[];

  constructor(params: ParamsInput<RMSpropOptions>, opts: RMSpropOptions = {}) {
    checkOptions('RMSprop', opts, RMS_KEYS);
    const defaults = { lr: opts.lr ?? 0.01, alpha: opts.alpha ?? 0.99, eps: opts.eps ?? 1e-8, weightDecay: opts.weightDecay ?? 0, momentum: opts.momentum ?? 0, centered: opts.centered ?? false };
    super('RMSprop', params, defaults, RMS_KEYS, (g) => {
      nonNegative('RMSprop', 'alpha value', g.alpha);
      nonNegative('RMSprop', 'epsilon value', g.eps);
      nonNegative('RMSprop', 'weightDecay value', g.weightDecay);
      nonNegative('RMSprop', 'momentum value', g.momentum);
      if (typeof g.centered !== 'boolean') throw new Error(`RMSprop: centered must be a boolean, got ${typeof g.centered}`);
    });
    const each = <T>(f: (g: (typeof this.paramGroups)[number], p: Tensor) => T): T[] => this.paramGroups.flatMap((g) => g.params.map((p) => f(g, p)));
    this.squareAvg = each((_, p) => this.zerosFor(p, 'squareAvg'));
    this.gradAvg = each((g, p) => (g.centered ? this.zerosFor(p, 'gradAvg') : null));
    this.momentumBuffers = each((g, p) => (g.momentum > 0 ? this.zerosFor(p, 'momentumBuffer') : null));
  }

  protected readonly _stepInState = true;

  protected readonly _slotNames = ['squareAvg', 'gradAvg', 'momentumBuffer'];

  protected _state(): (Tensor | null)[][] {
    return this.params.map((_, i) => [this.squareAvg[i], this.gradAvg[i], this.momentumBuffers[i]]);
  }


  protected _update(): void {
    const lrs = new Map(this.paramGroups.map((g) => [g, this.lrOf(g)]));
    for (const [group, p, grad, i] of this.withGrads()) {
      const { alpha, eps, weightDecay, momentum } = group;
      const g = weightDecay !== 0 ? grad.add(p.mul(weightDecay)) : grad;
      const s = this.squareAvg[i].mul(alpha).add(g.mul(g).mul(1 - alpha));
      this.squareAvg[i].copy_(s);
      let avg: Tensor;
      const ga = this.gradAvg[i];
      if (ga) {
        const m = ga.mul(alpha).add(g.mul(1 - alpha));
        ga.copy_(m);
        avg = s.sub(m.mul(m)).sqrt().add(eps);
      } else {
        avg = s.sqrt().add(eps);
      }
      const buf = this.momentumBuffers[i];
      if (buf && momentum > 0) {
        const next = buf.mul(momentum).add(g.div(avg));
        buf.copy_(next);
        p.sub_(next.mul(lrs.get(group)!));
      } else {
        p.sub_(g.div(avg).mul(lrs.get(group)!));
      }
    }
    this.stepCount.add_(1);
  }
}

export interface AdagradOptions {
  /** default 0.01 */
  lr?: number;
  /** the step size is lr / (1 + (t − 1)·lrDecay) */
  lrDecay?: number;
  weightDecay?: number;
  /** the starting value of the sums of squared gradients (default 0) */
  initialAccumulatorValue?: number;
  /** default 1e-10 */
  eps?: number;
}

const ADAGRAD_KEYS = ['lr', 'lrDecay', 'weightDecay', 'initialAccumulatorValue', 'eps'] as const;

/** `g ← grad + wd·p; sum ← sum + g²; p ← p − lr / (1 + (t − 1)·lrDecay) · g / (sqrt(sum) + eps)`, t the parameter's step count. */
export class Adagrad extends Optimizer<Required<Omit<AdagradOptions, 'lr'>>> {
  /** the sums of squared gradients (PyTorch's state_sum) */
  readonly stateSum: Tensor[];

  constructor(params: ParamsInput<AdagradOptions>, opts: AdagradOptions = {}) {
    checkOptions('Adagrad', opts, ADAGRAD_KEYS);
    const defaults = { lr: opts.lr ?? 0.01, lrDecay: opts.lrDecay ?? 0, weightDecay: opts.weightDecay ?? 0, initialAccumulatorValue: opts.initialAccumulatorValue ?? 0, eps: opts.eps ?? 1e-10 };
    super('Adagrad', params, defaults, ADAGRAD_KEYS, (g) => {
      nonNegative('Adagrad', 'lrDecay value', g.lrDecay);
      nonNegative('Adagrad', 'weightDecay value', g.weightDecay);
      nonNegative('Adagrad', 'initialAccumulatorValue', g.initialAccumulatorValue);
      nonNegative('Adagrad', 'epsilon value', g.eps);
    });
    this.stateSum = this.paramGroups.flatMap((g) => g.params.map((p) => {
      const t = this.zerosFor(p, 'stateSum');
      if (g.initialAccumulatorValue !== 0) noGrad(() => t.fill_(g.initialAccumulatorValue));
      return t;
    }));
  }

  protected readonly _stepInState = true;

  /** PyTorch's state key is `sum` */
  protected readonly _slotNames = ['sum'];

  protected _state(): (Tensor | null)[][] {
    return this.stateSum.map((s) => [s]);
  }


  protected _update(): void {
    this.stepCount.add_(1);
    const lrs = new Map(this.paramGroups.map((g) => [g, this.lrOf(g)]));
    for (const [group, p, grad, i] of this.withGrads()) {
      const lr = lrs.get(group)!;
      // lr / (1 + (t - 1) * lrDecay), a tensor on the parameter's step count
      const clr = group.lrDecay === 0 ? lr : this.paramSteps[i].sub(1).mul(group.lrDecay).add(1).reciprocal().mul(lr);
      const g = group.weightDecay !== 0 ? grad.add(p.mul(group.weightDecay)) : grad;
      const sum = this.stateSum[i].add(g.mul(g));
      this.stateSum[i].copy_(sum);
      p.sub_(g.div(sum.sqrt().add(group.eps)).mul(clr));
    }
  }
}

export interface AdadeltaOptions {
  /** scales the update (default 1.0) */
  lr?: number;
  /** smoothing constant of both running averages (default 0.9) */
  rho?: number;
  /** default 1e-6 */
  eps?: number;
  weightDecay?: number;
}

const ADADELTA_KEYS = ['lr', 'rho', 'eps', 'weightDecay'] as const;

/**
 * `g ← grad + wd·p; s ← ρ s + (1 − ρ) g²; Δ ← sqrt((u + eps) / (s + eps)) · g;
 * u ← ρ u + (1 − ρ) Δ²; p ← p − lr·Δ`.
 */
export class Adadelta extends Optimizer<Required<Omit<AdadeltaOptions, 'lr'>>> {
  readonly squareAvg: Tensor[];
  /** running average of the squared updates (PyTorch's acc_delta) */
  readonly accDelta: Tensor[];

  constructor(params: ParamsInput<AdadeltaOptions>, opts: AdadeltaOptions = {}) {
    checkOptions('Adadelta', opts, ADADELTA_KEYS);
    const defaults = { lr: opts.lr ?? 1.0, rho: opts.rho ?? 0.9, eps: opts.eps ?? 1e-6, weightDecay: opts.weightDecay ?? 0 };
    super('Adadelta', params, defaults, ADADELTA_KEYS, (g) => {
      checkNumber('Adadelta', 'rho value', g.rho, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
      nonNegative('Adadelta', 'epsilon value', g.eps);
      nonNegative('Adadelta', 'weightDecay value', g.weightDecay);
    });
    this.squareAvg = this.params.map((p) => this.zerosFor(p, 'squareAvg'));
    this.accDelta = this.params.map((p) => this.zerosFor(p, 'accDelta'));
  }

  protected readonly _stepInState = true;

  protected readonly _slotNames = ['squareAvg', 'accDelta'];

  protected _state(): (Tensor | null)[][] {
    return this.params.map((_, i) => [this.squareAvg[i], this.accDelta[i]]);
  }


  protected _update(): void {
    const lrs = new Map(this.paramGroups.map((g) => [g, this.lrOf(g)]));
    for (const [group, p, grad, i] of this.withGrads()) {
      const { rho, eps, weightDecay } = group;
      const g = weightDecay !== 0 ? grad.add(p.mul(weightDecay)) : grad;
      const s = this.squareAvg[i].mul(rho).add(g.mul(g).mul(1 - rho));
      this.squareAvg[i].copy_(s);
      // sqrt(u + eps) / sqrt(s + eps) as one square root of the quotient: equal within float32
      // rounding, and one square root fewer per element (the divider is the update's bottleneck).
      const delta = this.accDelta[i].add(eps).div(s.add(eps)).sqrt().mul(g);
      this.accDelta[i].copy_(this.accDelta[i].mul(rho).add(delta.mul(delta).mul(1 - rho)));
      p.sub_(delta.mul(lrs.get(group)!));
    }
    this.stepCount.add_(1);
  }
}

