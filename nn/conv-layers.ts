// Convolution and pooling modules: Conv1d, Conv2d (PyTorch's default initialisation), MaxPool2d,
// AvgPool2d, AdaptiveAvgPool2d. The work is done by nn/conv.ts.

import { expandTuple, type ConvOptions, type IntOrTuple } from '../ir/conv.ts';
import { uniform, type DeviceName, type Tensor } from '../runtime/index.ts';
import * as F from './conv.ts';
import { Module, Parameter } from './module.ts';

export interface ConvModuleOptions extends ConvOptions {
  /** default true */
  bias?: boolean;
  device?: DeviceName;
}

const show = (v: unknown): string => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));

/**
 * The shared part of Conv1d and Conv2d: weight [out, in / groups, ...kernel] and bias [out], both
 * uniform in ±1/sqrt(fanIn) with fanIn = in / groups * prod(kernel) (PyTorch's kaiming_uniform with
 * a = sqrt(5), and its bias rule).
 */
abstract class ConvNd extends Module {
  readonly kernelSize: number[];
  readonly options: ConvOptions;
  weight: Tensor;
  bias: Tensor | null;

  constructor(op: string, nd: number, readonly inChannels: number, readonly outChannels: number, kernelSize: IntOrTuple, opts: ConvModuleOptions) {
    super();
    const groups = opts.groups ?? 1;
    for (const [n, v] of [['inChannels', inChannels], ['outChannels', outChannels], ['groups', groups]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`${op}: ${n} must be a positive integer, got ${String(v)}`);
    }
    if (inChannels % groups !== 0) throw new Error(`${op}: inChannels (${inChannels}) must be divisible by groups (${groups})`);
    if (outChannels % groups !== 0) throw new Error(`${op}: outChannels (${outChannels}) must be divisible by groups (${groups})`);
    this.kernelSize = expandTuple(op, 'kernelSize', kernelSize, nd, 1, 1);
    const { bias, device, ...conv } = opts;
    this.options = conv;
    const fanIn = (inChannels / groups) * this.kernelSize.reduce((a, b) => a * b, 1);
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = new Parameter(uniform([outChannels, inChannels / groups, ...this.kernelSize], -bound, bound, { device }));
    this.bias = (bias ?? true) ? new Parameter(uniform([outChannels], -bound, bound, { device })) : null;
  }

  extraRepr(): string {
    const o = this.options;
    const extra = (['stride', 'padding', 'dilation', 'groups'] as const).filter((k) => o[k] !== undefined).map((k) => `, ${k}=${show(o[k])}`).join('');
    return `${this.inChannels}, ${this.outChannels}, kernelSize=${show(this.kernelSize)}${extra}${this.bias ? '' : ', bias=false'}`;
  }
}

export class Conv1d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: IntOrTuple, opts: ConvModuleOptions = {}) {
    super('Conv1d', 1, inChannels, outChannels, kernelSize, opts);
  }
  forward(x: Tensor): Tensor { return F.conv1d(x, this.weight, this.bias, this.options); }
}

export class Conv2d extends ConvNd {
  constructor(inChannels: number, outChannels: number, kernelSize: IntOrTuple, opts: ConvModuleOptions = {}) {
    super('Conv2d', 2, inChannels, outChannels, kernelSize, opts);
  }
  forward(x: Tensor): Tensor { return F.conv2d(x, this.weight, this.bias, this.options); }
}

export class MaxPool2d extends Module {
  constructor(readonly kernelSize: IntOrTuple, readonly options: F.PoolOptions = {}) { super(); }
  forward(x: Tensor): Tensor { return F.maxPool2d(x, this.kernelSize, this.options); }
  extraRepr(): string { return `kernelSize=${show(this.kernelSize)}, stride=${show(this.options.stride ?? this.kernelSize)}, padding=${show(this.options.padding ?? 0)}`; }
}

export class AvgPool2d extends Module {
  constructor(readonly kernelSize: IntOrTuple, readonly options: F.PoolOptions = {}) { super(); }
  forward(x: Tensor): Tensor { return F.avgPool2d(x, this.kernelSize, this.options); }
  extraRepr(): string { return `kernelSize=${show(this.kernelSize)}, stride=${show(this.options.stride ?? this.kernelSize)}, padding=${show(this.options.padding ?? 0)}`; }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: number | readonly (number | null)[]) { super(); }
  forward(x: Tensor): Tensor { return F.adaptiveAvgPool2d(x, this.outputSize); }
  extraRepr(): string { return `outputSize=${show(this.outputSize)}`; }
}
