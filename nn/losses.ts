// Loss modules: thin wrappers over the functional losses; weights are registered as buffers
// (they move with `to(device)` and are saved in stateDict, like PyTorch's).

import type { Tensor } from '../runtime/index.ts';
import * as F from './functional.ts';
import { Module } from './module.ts';

abstract class Loss extends Module {
  readonly reduction: F.Reduction;
  constructor(name: string, opts: F.LossOptions) {
    super();
    const r = opts.reduction ?? 'mean';
    if (r !== 'mean' && r !== 'sum' && r !== 'none') throw new Error(`${name}: reduction must be 'mean', 'sum' or 'none', got '${String(r)}'`);
    this.reduction = r;
  }
  abstract forward(input: Tensor, target: Tensor): Tensor;
  extraRepr(): string { return this.reduction === 'mean' ? '' : `reduction='${this.reduction}'`; }
}

export class MSELoss extends Loss {
  constructor(opts: F.LossOptions = {}) { super('MSELoss', opts); }
  forward(input: Tensor, target: Tensor): Tensor { return F.mseLoss(input, target, { reduction: this.reduction }); }
}

export class L1Loss extends Loss {
  constructor(opts: F.LossOptions = {}) { super('L1Loss', opts); }
  forward(input: Tensor, target: Tensor): Tensor { return F.l1Loss(input, target, { reduction: this.reduction }); }
}

export class NLLLoss extends Loss {
  declare weight: Tensor | null;
  readonly ignoreIndex: number;
  constructor(opts: F.NLLLossOptions = {}) {
    super('NLLLoss', opts);
    this.registerBuffer('weight', opts.weight ?? null);
    this.ignoreIndex = opts.ignoreIndex ?? -100;
  }
  forward(input: Tensor, target: Tensor): Tensor {
    return F.nllLoss(input, target, { reduction: this.reduction, weight: this.weight, ignoreIndex: this.ignoreIndex });
  }
}

/** Cross entropy of logits with int32 class targets (or float class probabilities). */
export class CrossEntropyLoss extends Loss {
  declare weight: Tensor | null;
  readonly ignoreIndex: number;
  constructor(opts: F.CrossEntropyOptions = {}) {
    super('CrossEntropyLoss', opts);
    this.registerBuffer('weight', opts.weight ?? null);
    this.ignoreIndex = opts.ignoreIndex ?? -100;
  }
  forward(input: Tensor, target: Tensor): Tensor {
    return F.crossEntropy(input, target, { reduction: this.reduction, weight: this.weight, ignoreIndex: this.ignoreIndex });
  }
}

/** Binary cross entropy of probabilities. */
export class BCELoss extends Loss {
  declare weight: Tensor | null;
  constructor(opts: F.BCELossOptions = {}) {
    super('BCELoss', opts);
    this.registerBuffer('weight', opts.weight ?? null);
  }
  forward(input: Tensor, target: Tensor): Tensor {
    return F.binaryCrossEntropy(input, target, { reduction: this.reduction, weight: this.weight });
  }
}

/** Binary cross entropy of logits (the stable form). */
export class BCEWithLogitsLoss extends Loss {
  declare weight: Tensor | null;
  declare posWeight: Tensor | null;
  constructor(opts: F.BCEWithLogitsOptions = {}) {
    super('BCEWithLogitsLoss', opts);
    this.registerBuffer('weight', opts.weight ?? null);
    this.registerBuffer('posWeight', opts.posWeight ?? null);
  }
  forward(input: Tensor, target: Tensor): Tensor {
    return F.binaryCrossEntropyWithLogits(input, target, { reduction: this.reduction, weight: this.weight, posWeight: this.posWeight });
  }
}
