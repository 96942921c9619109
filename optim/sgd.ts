// SGD with momentum, dampening, Nesterov momentum and weight decay (PyTorch's torch.optim.SGD).

import type { Tensor } from '../runtime/index.ts';
import { checkNumber, checkOptions, Optimizer, type ParamsInput, type Scalar } from './optimizer.ts';

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
 * Options may differ per parameter group; a group whose momentum is 0 when the optimizer is made has no buffers.
 */
type SGDGroupOptions = Required<Omit<SGDOptions, 'lr'>>;

export class SGD extends Optimizer<SGDGroupOptions> {
  /** One momentum buffer per parameter (null when its group's momentum is 0). */
  readonly momentumBuffers: (Tensor | null)[];

  constructor(params: ParamsInput<SGDOptions>, opts: SGDOptions = {}) {
    checkOptions('SGD', opts, KEYS);
    const defaults = { lr: opts.lr ?? 1e-3, momentum: opts.momentum ?? 0, dampening: opts.dampening ?? 0, weightDecay: opts.weightDecay ?? 0, nesterov: opts.nesterov ?? false };
    super('SGD', params, defaults, KEYS, (g) => {
      checkNumber('SGD', 'momentum value', g.momentum, (x) => x >= 0, 'a number >= 0');
      checkNumber('SGD', 'dampening value', g.dampening, () => true, 'a finite number');
      checkNumber('SGD', 'weightDecay value', g.weightDecay, (x) => x >= 0, 'a number >= 0');
      if (typeof g.nesterov !== 'boolean') throw new Error(`SGD: nesterov must be a boolean, got ${typeof g.nesterov}`);
      if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) throw new Error('SGD: Nesterov momentum requires a momentum > 0 and zero dampening');
    });
    this.momentumBuffers = this.paramGroups.flatMap((g) => g.params.map((p) => (g.momentum !== 0 ? this.zerosFor(p, 'momentumBuffer') : null)));
  }

  protected readonly _slotNames = ['momentumBuffer'];

  protected _state(): (Tensor | null)[][] {
    return this.momentumBuffers.map((b) => [b]);
  }


  protected _update(): void {
    // Per group: the learning rate and momentum (per-call scalars where they change between calls).
    const perGroup = new Map(this.paramGroups.map((g) => [g, { lr: this.lrOf(g), momentum: this.optionOf(g, 'momentum', () => g.momentum) }]));
    for (const [group, p, grad, i] of this.withGrads()) {
      const { dampening, weightDecay, nesterov } = group;
      const { lr, momentum } = perGroup.get(group)!;
      // 1 on the parameter's first step, 1 - dampening afterwards (a tensor only when dampening matters).
      const gradCoef: Scalar = group.momentum !== 0 && dampening !== 0 ? this.paramSteps[i].sub(1).minimum(1).mul(-dampening).add(1) : 1;
      let d = weightDecay !== 0 ? grad.add(p.mul(weightDecay)) : grad;
      const buf = this.momentumBuffers[i];
      if (buf) {
        const next = buf.mul(momentum).add(gradCoef === 1 ? d : d.mul(gradCoef));
        buf.copy_(next);
        d = nesterov ? d.add(next.mul(momentum)) : next;
      }
      p.sub_(d.mul(lr));
    }
    this.stepCount.add_(1);
  }
}
