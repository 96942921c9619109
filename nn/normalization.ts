// Normalization layers: BatchNorm1d/2d (running statistics are buffers, updated in training mode, also
// inside `compile`, where the in-place updates become write-backs), LayerNorm and GroupNorm.

import { full, noGrad, ones, zeros, type DeviceName, type Tensor } from '../runtime/index.ts';
import * as F from './functional.ts';
import { Module, Parameter } from './module.ts';

export interface BatchNormOptions {
  /** default 1e-5 */
  eps?: number;
  /** weight of each new batch in the running statistics (default 0.1); null: a cumulative average */
  momentum?: number | null;
  /** learnable per-channel weight and bias (default true) */
  affine?: boolean;
  /** keep running statistics for eval mode (default true) */
  trackRunningStats?: boolean;
  device?: DeviceName;
}

function checkCount(op: string, what: string, v: unknown): number {
  if (!Number.isInteger(v) || (v as number) <= 0) throw new Error(`${op}: ${what} must be a positive integer, got ${String(v)}`);
  return v as number;
}

abstract class BatchNormBase extends Module {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  weight: Tensor | null;
  bias: Tensor | null;
  runningMean!: Tensor | null;
  runningVar!: Tensor | null;
  numBatchesTracked!: Tensor | null;

  constructor(numFeatures: number, opts: BatchNormOptions) {
    super();
    const name = this.constructor.name;
    this.numFeatures = checkCount(name, 'numFeatures', numFeatures);
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum === undefined ? 0.1 : opts.momentum;
    if (this.momentum !== null && !(this.momentum >= 0 && this.momentum <= 1)) throw new Error(`${name}: momentum must be in [0, 1] or null, got ${this.momentum}`);
    this.affine = opts.affine ?? true;
    this.trackRunningStats = opts.trackRunningStats ?? true;
    const device = opts.device;
    this.weight = this.affine ? new Parameter(ones([numFeatures], { device })) : null;
    this.bias = this.affine ? new Parameter(zeros([numFeatures], { device })) : null;
    const track = this.trackRunningStats;
    this.registerBuffer('runningMean', track ? zeros([numFeatures], { device }) : null);
    this.registerBuffer('runningVar', track ? ones([numFeatures], { device }) : null);
    this.registerBuffer('numBatchesTracked', track ? full([], 0, { dtype: 'int32', device }) : null);
  }

  /** The input ranks this layer accepts (BatchNorm1d: 2 or 3; BatchNorm2d: 4). */
  protected abstract readonly ranks: readonly number[];

  forward(x: Tensor): Tensor {
    const name = this.constructor.name;
    if (!this.ranks.includes(x.ndim)) throw new Error(`${name}: expected ${this.ranks.join('D or ')}D input, got ${x.ndim}D input of shape [${x.shape.join(', ')}]`);
    if (x.shape[1] !== this.numFeatures) throw new Error(`${name}: expected input with ${this.numFeatures} channels (dim 1), got shape [${x.shape.join(', ')}]`);
    const training = this.training;
    const useBatchStats = training || this.runningMean === null;
    const update = training && this.trackRunningStats;
    const count = this.numBatchesTracked;
    // momentum null: the cumulative average, weight 1 / (number of batches so far, this one included)
    const momentum = this.momentum ?? (update && count ? noGrad(() => count.add(1).float().reciprocal()) : 0);
    const y = F.batchNorm(x, update || !training ? this.runningMean : null, update || !training ? this.runningVar : null, this.weight, this.bias, { training: useBatchStats, momentum, eps: this.eps });
    if (update && count) noGrad(() => count.add_(1));
    return y;
  }

  extraRepr(): string {
    return `${this.numFeatures}, eps=${this.eps}, momentum=${this.momentum}, affine=${this.affine}, trackRunningStats=${this.trackRunningStats}`;
  }
}

/** Batch normalization of `[N, C]` or `[N, C, L]` inputs over every dim but C. */
export class BatchNorm1d extends BatchNormBase {
  protected readonly ranks = [2, 3];
  constructor(numFeatures: number, opts: BatchNormOptions = {}) { super(numFeatures, opts); }
}

/** Batch normalization of `[N, C, H, W]` inputs over N, H and W. */
export class BatchNorm2d extends BatchNormBase {
  protected readonly ranks = [4];
  constructor(numFeatures: number, opts: BatchNormOptions = {}) { super(numFeatures, opts); }
}

export interface LayerNormOptions {
  eps?: number;
  /** learnable weight (ones) and bias (zeros) of normalizedShape (default true) */
  elementwiseAffine?: boolean;
  /** with elementwiseAffine, whether there is a bias (default true) */
  bias?: boolean;
  device?: DeviceName;
}

/** Normalizes over the last dims (normalizedShape), then a learnable elementwise affine map. */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly eps: number;
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(normalizedShape: number | readonly number[], opts: LayerNormOptions = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    this.normalizedShape.forEach((d) => checkCount('LayerNorm', 'normalizedShape entries', d));
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? new Parameter(ones(this.normalizedShape, { device: opts.device })) : null;
    this.bias = affine && (opts.bias ?? true) ? new Parameter(zeros(this.normalizedShape, { device: opts.device })) : null;
  }
  forward(x: Tensor): Tensor { return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, { eps: this.eps }); }
  extraRepr(): string { return `[${this.normalizedShape.join(', ')}], eps=${this.eps}, elementwiseAffine=${this.weight !== null}`; }
}

export interface GroupNormOptions {
  eps?: number;
  /** learnable per-channel weight and bias (default true) */
  affine?: boolean;
  device?: DeviceName;
}

/** Normalizes groups of channels (`numChannels / numGroups` each) over the channels and spatial dims. */
export class GroupNorm extends Module {
  readonly numGroups: number;
  readonly numChannels: number;
  readonly eps: number;
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(numGroups: number, numChannels: number, opts: GroupNormOptions = {}) {
    super();
    this.numGroups = checkCount('GroupNorm', 'numGroups', numGroups);
    this.numChannels = checkCount('GroupNorm', 'numChannels', numChannels);
    if (numChannels % numGroups !== 0) throw new Error(`GroupNorm: numChannels ${numChannels} must be divisible by numGroups ${numGroups}`);
    this.eps = opts.eps ?? 1e-5;
    const affine = opts.affine ?? true;
    this.weight = affine ? new Parameter(ones([numChannels], { device: opts.device })) : null;
    this.bias = affine ? new Parameter(zeros([numChannels], { device: opts.device })) : null;
  }
  forward(x: Tensor): Tensor { return F.groupNorm(x, this.numGroups, this.weight, this.bias, { eps: this.eps }); }
  extraRepr(): string { return `${this.numGroups}, ${this.numChannels}, eps=${this.eps}, affine=${this.weight !== null}`; }
}
