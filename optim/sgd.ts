// SGD with momentum, dampening, Nesterov momentum and weight decay (PyTorch's torch.optim.SGD).

import type { Tensor } from '../runtime/index.ts';
import { checkNumber, checkOptions, Optimizer, type HyperValue, type Scalar } from './optimizer.ts';

export interface SGDOptions {
  /** learning rate (default 1e-3, as PyTorch 2.x) */
  lr?: number;
  momentum?: number;
  dampening?: number;
  /** L2 penalty: adds weightDecay * p to the gradient */
  weightDecay?: number;
  nesterov?: boolean;
}

const KEYS = ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'] as const;

/**
 * `g ← grad + wd·p; buf ← momentum·buf + (1 − dampening)·g (buf ← g on the first step);
 * g ← nesterov ? g + momentum·buf : buf; p ← p − lr·g`.
 * The momentum buffers start at zero and the first step uses coefficient 1 − dampening·min(step, 1),
 * which makes the first buffer exactly the gradient without branching on the step count.
 */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  /** One momentum buffer per parameter (null when momentum is 0). */
  readonly momentumBuffers: (Tensor | null)[];

  constructor(params: Iterable<Tensor>, opts: SGDOptions = {}) {
    checkOptions('SGD', opts, KEYS);
    super('SGD', params, opts.lr ?? 1e-3);
    this.momentum = checkNumber('SGD', 'momentum value', opts.momentum ?? 0, (x) => x >= 0, 'a number >= 0');
    this.dampening = checkNumber('SGD', 'dampening value', opts.dampening ?? 0, () => true, 'a finite number');
    this.weightDecay = checkNumber('SGD', 'weightDecay value', opts.weightDecay ?? 0, (x) => x >= 0, 'a number >= 0');
    this.nesterov = opts.nesterov ?? false;
    if (typeof this.nesterov !== 'boolean') throw new Error(`SGD: nesterov must be a boolean, got ${typeof this.nesterov}`);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new Error('SGD: Nesterov momentum requires a momentum > 0 and zero dampening');
    }
    this.momentumBuffers = this.params.map((p) => (this.momentum !== 0 ? this.zerosFor(p, 'momentumBuffer') : null));
  }

  protected readonly _slotNames = ['momentumBuffer'];

  protected _state(): (Tensor | null)[][] {
    return this.momentumBuffers.map((b) => [b]);
  }

  protected _hyper(): Record<string, HyperValue> {
    return { momentum: this.momentum, dampening: this.dampening, weightDecay: this.weightDecay, nesterov: this.nesterov };
  }

  protected _update(lr: Scalar): void {
    const { momentum, dampening, weightDecay, nesterov } = this;
    this.params.forEach((p, i) => {
      const grad = p.grad;
      if (grad === null) return;
      // 1 on the parameter's first step, 1 - dampening afterwards (a tensor only when dampening matters).
      const gradCoef: Scalar = momentum !== 0 && dampening !== 0 ? this.paramSteps[i].sub(1).minimum(1).mul(-dampening).add(1) : 1;
      let d = weightDecay !== 0 ? grad.add(p.mul(weightDecay)) : grad;
      const buf = this.momentumBuffers[i];
      if (buf) {
        const next = buf.mul(momentum).add(gradCoef === 1 ? d : d.mul(gradCoef));
        buf.copy_(next);
        d = nesterov ? d.add(next.mul(momentum)) : next;
      }
      p.sub_(d.mul(lr));
    });
  }
}
