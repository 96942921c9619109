// optim.lrScheduler: learning-rate schedules (PyTorch's torch.optim.lr_scheduler, closed forms).
// A scheduler sets every parameter group's `lr` on the host; optimizers read it through hostScalar,
// so a compiled step picks the new rate up on its next call without retracing.

import { checkNumber, type Optimizer, type ParamGroup } from './optimizer.ts';

const positiveInt = (x: number): boolean => Number.isInteger(x) && x > 0;
const nonNegative = (x: number): boolean => x >= 0;

/** The base of all schedulers: `step()` advances the epoch counter and sets each group's lr. */
export abstract class LRScheduler {
  readonly optimizer: Optimizer;
  /** each group's learning rate when the scheduler was made (PyTorch's base_lrs) */
  readonly baseLrs: number[];
  /** the number of step() calls so far (PyTorch's last_epoch) */
  lastEpoch = 0;
  private lastLr: number[];

  constructor(optimizer: Optimizer, protected readonly name: string) {
    if (!optimizer || !Array.isArray((optimizer as Optimizer).paramGroups)) throw new Error(`${name}: expected an optimizer (e.g. new optim.SGD(...)), got ${optimizer === null ? 'null' : typeof optimizer}`);
    this.optimizer = optimizer;
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
    this.lastLr = [...this.baseLrs];
  }

  /** Sets the epoch-0 rates; subclasses call it at the end of their constructor. */
  protected start(): void { this.apply(); }

  /** The learning rate of group `i` at epoch `e`. */
  protected abstract lrAt(e: number, base: number, i: number): number;

  /** Advances one epoch (call after `opt.step()`) and sets the new rates. */
  step(): void {
    this.lastEpoch++;
    this.apply();
  }

  private apply(): void {
    this.lastLr = this.optimizer.paramGroups.map((g, i) => {
      const lr = this.lrAt(this.lastEpoch, this.baseLrs[i], i);
      g.lr = checkNumber(this.name, 'computed learning rate', lr, nonNegative, 'a number >= 0');
      this.onApply(g, this.lastEpoch, i);
      return lr;
    });
  }

  /** A hook for schedules that change more than the lr (OneCycleLR's momentum). */
  protected onApply(group: ParamGroup, epoch: number, i: number): void { void group; void epoch; void i; }

  /** Checks a constructor option, naming this scheduler in the error. */
  protected option(what: string, v: unknown, ok: (x: number) => boolean, range: string): number {
    return checkNumber(this.name, what, v, ok, range);
  }

  /** The rates the last step() set, one per group. */
  getLastLr(): number[] { return [...this.lastLr]; }
}


/** `base · gamma^⌊epoch / stepSize⌋`. */
export class StepLR extends LRScheduler {
  readonly stepSize: number;
  readonly gamma: number;
  constructor(optimizer: Optimizer, opts: { stepSize: number; gamma?: number }) {
    super(optimizer, 'StepLR');
    this.stepSize = this.option('stepSize', opts?.stepSize, positiveInt, 'a positive integer');
    this.gamma = this.option('gamma', opts.gamma ?? 0.1, nonNegative, 'a number >= 0');
    this.start();
  }
  protected lrAt(e: number, base: number): number { return base * this.gamma ** Math.floor(e / this.stepSize); }
}

/** `base · gamma^(number of milestones reached)`. */
export class MultiStepLR extends LRScheduler {
  readonly milestones: number[];
  readonly gamma: number;
  constructor(optimizer: Optimizer, opts: { milestones: readonly number[]; gamma?: number }) {
    super(optimizer, 'MultiStepLR');
    if (!Array.isArray(opts?.milestones) || opts.milestones.some((m) => !Number.isInteger(m) || m < 0)) throw new Error(`MultiStepLR: milestones must be an array of non-negative integers, got ${String(opts?.milestones)}`);
    this.milestones = [...opts.milestones].sort((a, b) => a - b);
    this.gamma = this.option('gamma', opts.gamma ?? 0.1, nonNegative, 'a number >= 0');
    this.start();
  }
  protected lrAt(e: number, base: number): number { return base * this.gamma ** this.milestones.filter((m) => m <= e).length; }
}

/** `base · gamma^epoch`. */
export class ExponentialLR extends LRScheduler {
  readonly gamma: number;
  constructor(optimizer: Optimizer, opts: { gamma: number }) {
    super(optimizer, 'ExponentialLR');
    this.gamma = this.option('gamma', opts?.gamma, nonNegative, 'a number >= 0');
    this.start();
  }
  protected lrAt(e: number, base: number): number { return base * this.gamma ** e; }
}

/** `etaMin + (base − etaMin)·(1 + cos(π·epoch / tMax)) / 2` (continuing as a cosine past tMax). */
export class CosineAnnealingLR extends LRScheduler {
  readonly tMax: number;
  readonly etaMin: number;
  constructor(optimizer: Optimizer, opts: { tMax: number; etaMin?: number }) {
    super(optimizer, 'CosineAnnealingLR');
    this.tMax = this.option('tMax', opts?.tMax, positiveInt, 'a positive integer');
    this.etaMin = this.option('etaMin', opts.etaMin ?? 0, nonNegative, 'a number >= 0');
    this.start();
  }
  protected lrAt(e: number, base: number): number { return this.etaMin + (base - this.etaMin) * (1 + Math.cos((Math.PI * e) / this.tMax)) / 2; }
}

/** The factor goes linearly from startFactor to endFactor over totalIters epochs, then stays. */
export class LinearLR extends LRScheduler {
  readonly startFactor: number;
  readonly endFactor: number;
  readonly totalIters: number;
  constructor(optimizer: Optimizer, opts: { startFactor?: number; endFactor?: number; totalIters?: number } = {}) {
    super(optimizer, 'LinearLR');
    this.startFactor = this.option('startFactor', opts.startFactor ?? 1 / 3, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
    this.endFactor = this.option('endFactor', opts.endFactor ?? 1, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
    this.totalIters = this.option('totalIters', opts.totalIters ?? 5, positiveInt, 'a positive integer');
    this.start();
  }
  protected lrAt(e: number, base: number): number {
    return base * (this.startFactor + ((this.endFactor - this.startFactor) * Math.min(e, this.totalIters)) / this.totalIters);
  }
}

/** `base · lrLambda(epoch)` (one function for all groups, or one per group). */
export class LambdaLR extends LRScheduler {
  private readonly lambdas: ((epoch: number) => number)[];
  constructor(optimizer: Optimizer, opts: { lrLambda: ((epoch: number) => number) | ((epoch: number) => number)[] }) {
    super(optimizer, 'LambdaLR');
    const l = opts?.lrLambda;
    const n = optimizer.paramGroups.length;
    this.lambdas = Array.isArray(l) ? l : Array.from({ length: n }, () => l);
    if (this.lambdas.length !== n || this.lambdas.some((f) => typeof f !== 'function')) throw new Error(`LambdaLR: lrLambda must be a function or an array of ${n} functions (one per param group)`);
    this.start();
  }
  protected lrAt(e: number, base: number, i: number): number { return base * this.lambdas[i](e); }
}

export interface OneCycleOptions {
  /** the peak learning rate */
  maxLr: number | readonly number[];
  /** the number of steps in the cycle (or give epochs and stepsPerEpoch) */
  totalSteps?: number;
  epochs?: number;
  stepsPerEpoch?: number;
  /** the share of the cycle spent increasing the rate (default 0.3) */
  pctStart?: number;
  annealStrategy?: 'cos' | 'linear';
  /** cycle momentum (SGD) or beta1 (Adam) inversely to the rate (default true) */
  cycleMomentum?: boolean;
  baseMomentum?: number;
  maxMomentum?: number;
  /** initial lr = maxLr / divFactor (default 25) */
  divFactor?: number;
  /** final lr = initial lr / finalDivFactor (default 1e4) */
  finalDivFactor?: number;
  threePhase?: boolean;
}

/**
 * The 1cycle policy (Smith & Topin): the rate rises from maxLr / divFactor to maxLr over pctStart of
 * the steps, then anneals to the initial rate / finalDivFactor; momentum moves the opposite way.
 */
export class OneCycleLR extends LRScheduler {
  readonly totalSteps: number;
  private readonly phases: { end: number; startLr: 'initial' | 'max' | 'min'; endLr: 'initial' | 'max' | 'min'; startM: 'max' | 'base'; endM: 'max' | 'base' }[];
  private readonly maxLrs: number[];
  private readonly opts: Required<Pick<OneCycleOptions, 'annealStrategy' | 'cycleMomentum' | 'baseMomentum' | 'maxMomentum' | 'divFactor' | 'finalDivFactor'>>;

  constructor(optimizer: Optimizer, opts: OneCycleOptions) {
    super(optimizer, 'OneCycleLR');
    const n = optimizer.paramGroups.length;
    const total = opts?.totalSteps ?? (opts?.epochs !== undefined && opts.stepsPerEpoch !== undefined ? opts.epochs * opts.stepsPerEpoch : undefined);
    this.totalSteps = this.option('totalSteps', total, positiveInt, 'a positive integer (or epochs and stepsPerEpoch)');
    this.maxLrs = Array.isArray(opts.maxLr) ? [...opts.maxLr] : Array.from({ length: n }, () => opts.maxLr as number);
    if (this.maxLrs.length !== n) throw new Error(`OneCycleLR: maxLr must be a number or an array of ${n} numbers (one per param group)`);
    this.maxLrs.forEach((v) => this.option('maxLr', v, nonNegative, 'a number >= 0'));
    const pct = this.option('pctStart', opts.pctStart ?? 0.3, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
    this.opts = {
      annealStrategy: opts.annealStrategy ?? 'cos', cycleMomentum: opts.cycleMomentum ?? true,
      baseMomentum: opts.baseMomentum ?? 0.85, maxMomentum: opts.maxMomentum ?? 0.95,
      divFactor: opts.divFactor ?? 25, finalDivFactor: opts.finalDivFactor ?? 1e4,
    };
    if (this.opts.annealStrategy !== 'cos' && this.opts.annealStrategy !== 'linear') throw new Error(`OneCycleLR: annealStrategy must be 'cos' or 'linear', got '${String(this.opts.annealStrategy)}'`);
    const T = this.totalSteps;
    this.phases = opts.threePhase
      ? [{ end: pct * T - 1, startLr: 'initial', endLr: 'max', startM: 'max', endM: 'base' },
        { end: 2 * pct * T - 2, startLr: 'max', endLr: 'initial', startM: 'base', endM: 'max' },
        { end: T - 1, startLr: 'initial', endLr: 'min', startM: 'max', endM: 'max' }]
      : [{ end: pct * T - 1, startLr: 'initial', endLr: 'max', startM: 'max', endM: 'base' },
        { end: T - 1, startLr: 'max', endLr: 'min', startM: 'base', endM: 'max' }];
    if (this.opts.cycleMomentum) {
      for (const g of optimizer.paramGroups) {
        const r = g as unknown as Record<string, unknown>;
        if (!('betas' in r) && !(typeof r.momentum === 'number' && r.momentum > 0)) {
          throw new Error('OneCycleLR: cycleMomentum needs an optimizer with momentum > 0 (SGD) or betas (Adam); pass cycleMomentum: false');
        }
      }
      // changes every step: compiled steps read it per call, like the lr
      optimizer.perCallOptions.add('betas' in optimizer.paramGroups[0] ? 'beta1' : 'momentum');
    }
    this.start();
  }

  private anneal(start: number, end: number, pct: number): number {
    return this.opts.annealStrategy === 'cos' ? end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1) : (end - start) * pct + start;
  }

  /** [lr, momentum] at step e for a group with peak rate maxLr. */
  private at(e: number, maxLr: number): [number, number] {
    if (e > this.totalSteps) throw new Error(`OneCycleLR: tried to step ${e} times, but the number of total steps is ${this.totalSteps}`);
    const initial = maxLr / this.opts.divFactor;
    const lrs = { initial, max: maxLr, min: initial / this.opts.finalDivFactor };
    const ms = { max: this.opts.maxMomentum, base: this.opts.baseMomentum };
    let start = 0, i = 0;
    while (i < this.phases.length - 1 && e > this.phases[i].end) start = this.phases[i++].end;
    const ph = this.phases[i];
    const pct = (e - start) / (ph.end - start);
    return [this.anneal(lrs[ph.startLr], lrs[ph.endLr], pct), this.anneal(ms[ph.startM], ms[ph.endM], pct)];
  }

  protected lrAt(e: number, _base: number, i: number): number { return this.at(e, this.maxLrs[i])[0]; }

  protected onApply(group: ParamGroup, epoch: number, i: number): void {
    if (!this.opts.cycleMomentum) return;
    const r = group as unknown as Record<string, unknown>;
    const m = this.at(epoch, this.maxLrs[i])[1];
    if (Array.isArray(r.betas)) r.betas = [m, r.betas[1]];
    else r.momentum = m;
  }
}
