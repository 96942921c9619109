// The optimizer base class. Written so that `compile` can trace `step()` once and replay it:
//  - all state (momentum buffers, Adam moments, the step count) is created eagerly in the
//    constructor and only updated with in-place ops under noGrad;
//  - no JavaScript branch depends on a value that changes from step to step (first-step and
//    bias-correction logic is tensor arithmetic on the 0-d step-count tensor);
//  - learning rates are read through hostScalar, so a compiled step re-reads `opt.lr` (and every
//    `opt.paramGroups[i].lr`) on every call.
// Which parameters are updated depends only on whether their `.grad` is null (as in PyTorch).
// Parameters come in groups (PyTorch's param_groups), each with its own learning rate and options.

import { enableGrad, full, givenLabel, hostScalar, noGrad, setLabel, Tensor, traceGuard, zerosLike, type DeviceName } from '../runtime/index.ts';

/** A host number or (while tracing) a 0-d tensor read on every call. */
export type Scalar = number | Tensor;

export function checkOptions(name: string, opts: object, allowed: readonly string[]): void {
  if (opts === null || typeof opts !== 'object') throw new Error(`${name}: expected an options object, got ${opts === null ? 'null' : typeof opts}`);
  for (const k of Object.keys(opts)) {
    if (!allowed.includes(k)) throw new Error(`${name}: unknown option '${k}' (expected ${allowed.join(', ')})`);
  }
}

export function checkNumber(name: string, what: string, v: unknown, ok: (x: number) => boolean, range: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new Error(`${name}: invalid ${what}: ${String(v)} (expected ${range})`);
  return v;
}

/** 1 - s for a host number or a traced scalar. */
export const oneMinus = (s: Scalar): Scalar => (typeof s === 'number' ? 1 - s : s.neg().add(1));

/** What Optimizer.stateDict() returns. */
export interface OptimizerStateDict {
  /** group 0's learning rate */
  lr: number;
  /** every group's learning rate (absent in older dicts: then `lr` applies to all) */
  lrs?: number[];
  tensors: Record<string, Tensor>;
}

/** One parameter group (PyTorch's param_groups[i]): its parameters, learning rate and options. */
export type ParamGroup<O extends object = object> = O & { params: Tensor[]; lr: number };

/** What optimizers accept: tensors, or groups `{ params, ...options }` whose options override the defaults. */
export type ParamsInput<O extends object = object> = Iterable<Tensor> | Iterable<{ params: Iterable<Tensor> } & Partial<O> & { lr?: number }>;

const isGroupSpec = (p: unknown): p is { params: Iterable<Tensor> } => p !== null && typeof p === 'object' && !(p instanceof Tensor) && 'params' in p;

export abstract class Optimizer<O extends object = object> {
  /** Every parameter this optimizer updates, over all groups, in order. */
  readonly params: Tensor[];
  /** The parameter groups; `paramGroups[i].lr` reads and sets a group's learning rate (also in compiled steps). */
  readonly paramGroups: ParamGroup<O>[];
  /** The number of steps taken, as a 0-d float32 tensor on the parameters' device (updated in place). */
  readonly stepCount: Tensor;
  protected readonly name: string;

  /**
   * `defaults` are the options with their defaults filled in (lr included); `keys` the allowed option
   * names; `check` validates one group's merged options (it throws a message naming the option).
   */
  constructor(name: string, params: ParamsInput<O>, defaults: O & { lr: number }, keys: readonly string[], check: (g: O & { lr: number }) => void) {
    this.name = name;
    if (params === null || params === undefined || typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new Error(`${name}: params must be an iterable of Tensors (e.g. model.parameters()) or of parameter groups, got ${params === null ? 'null' : typeof params}`);
    }
    const items = [...(params as Iterable<unknown>)];
    const specs: { params: Iterable<Tensor> }[] = items.length > 0 && items.every(isGroupSpec) ? items
      : items.some(isGroupSpec) ? (() => { throw new Error(`${name}: params must be all Tensors or all parameter groups ({ params, ...options }), not a mix`); })()
      : [{ params: items as Tensor[] }];
    const all: Tensor[] = [];
    this.paramGroups = specs.map((spec, gi) => {
      const { params: ps, ...overrides } = spec as { params: Iterable<Tensor> } & Record<string, unknown>;
      checkOptions(`${name} (param group ${gi})`, overrides, keys);
      if (ps === null || ps === undefined || typeof (ps as Iterable<unknown>)[Symbol.iterator] !== 'function') throw new Error(`${name}: param group ${gi} needs 'params', an iterable of Tensors`);
      const list: Tensor[] = [];
      for (const p of ps instanceof Tensor ? [ps] : ps) {
        if (!(p instanceof Tensor)) throw new Error(`${name}: can only optimize Tensors, but one of the params is ${p === null ? 'null' : typeof p}`);
        if (!p.isLeaf) throw new Error(`${name}: can't optimize a non-leaf Tensor (gradFn ${p.gradFn}); pass parameters or tensors created with requiresGrad`);
        if (p.dtype !== 'float32') throw new Error(`${name}: can only optimize float32 tensors, got a ${p.dtype} tensor`);
        if (all.includes(p)) {
          if (list.includes(p)) continue;
          throw new Error(`${name}: some parameters appear in more than one parameter group`);
        }
        list.push(p);
        all.push(p);
      }
      const merged = { ...defaults, ...overrides } as O & { lr: number };
      checkNumber(name, 'learning rate', merged.lr, (x) => x >= 0, 'a number >= 0');
      check(merged);
      return { ...merged, params: list } as ParamGroup<O>;
    });
    if (all.length === 0) throw new Error(`${name}: got an empty parameter list`);
    this.params = all;
    this.stepCount = noGrad(() => full([], 0, { device: all[0].device }));
    setLabel(this.stepCount, `${name}.stepCount`);
  }

  /** The learning rate of the first group (PyTorch's param_groups[0]['lr']); setting it changes the next step, also in compiled steps. */
  get lr(): number {
    return this.paramGroups[0].lr;
  }
  set lr(v: number) {
    this.paramGroups[0].lr = checkNumber(this.name, 'learning rate', v, (x) => x >= 0, 'a number >= 0');
  }

  /** Each (group, parameter, index into `params`) whose parameter has a gradient, for the updates. */
  protected *withGrads(): Generator<[ParamGroup<O>, Tensor, Tensor, number]> {
    let i = 0;
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        const g = p.grad;
        if (g !== null) yield [group, p, g, i];
        i++;
      }
    }
  }

  /**
   * Options a scheduler changes at every step (OneCycleLR's 'momentum' or 'beta1'): read per call like
   * learning rates instead of being guarded (which would retrace at every step).
   */
  readonly perCallOptions = new Set<'momentum' | 'beta1'>();

  /** A momentum-like option: per call when in perCallOptions, else a number the trace is guarded on. */
  protected optionOf(group: ParamGroup<O>, key: 'momentum' | 'beta1', read: () => number): Scalar {
    if (this.perCallOptions.has(key)) return hostScalar(read);
    const v = read();
    traceGuard(() => read() === v, `param group ${key} === ${v}`);
    return v;
  }

  /** A group's learning rate: a number eagerly, a per-call input while tracing (never a stale constant). */
  protected lrOf(group: ParamGroup<O>): Scalar {
    return hostScalar(() => checkNumber(this.name, 'learning rate', group.lr, (x) => x >= 0, 'a number >= 0'));
  }

  /** Sets every parameter's grad to null (PyTorch 2.x's set_to_none). */
  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }

  /**
   * One update of every parameter whose grad is not null. With a closure, calls it first (with
   * gradients enabled) and returns its loss.
   */
  step(closure?: () => Tensor): Tensor | undefined {
    const loss = closure ? enableGrad(closure) : undefined;
    noGrad(() => {
      this._syncDevices();
      this._update();
    });
    return loss;
  }

  /** The update itself, under noGrad (learning rates through lrOf). */
  protected abstract _update(): void;

  /** State tensors, one list per parameter (moved with their parameter if the model moved). */
  protected abstract _state(): (Tensor | null)[][];

  /**
   * A snapshot of the optimizer: the learning rate, the step count and every state tensor (detached
   * copies), keyed like `state.<param index>.<slot>` (e.g. `state.0.0` is param 0's first buffer).
   */
  stateDict(): OptimizerStateDict {
    const tensors: Record<string, Tensor> = {};
    noGrad(() => {
      tensors.stepCount = this.stepCount.clone();
      this._state().forEach((ts, i) => ts.forEach((t, j) => { if (t) tensors[`state.${i}.${j}`] = t.clone(); }));
    });
    return { lr: this.lr, lrs: this.paramGroups.map((g) => g.lr), tensors };
  }

  /** Restores a stateDict() of an optimizer of the same kind over parameters of the same shapes, in place. */
  loadStateDict(dict: OptimizerStateDict): void {
    const own: [string, Tensor][] = [['stepCount', this.stepCount]];
    this._state().forEach((ts, i) => ts.forEach((t, j) => { if (t) own.push([`state.${i}.${j}`, t]); }));
    const given = dict?.tensors ?? {};
    const ownKeys = new Set(own.map(([k]) => k));
    const problems: string[] = [];
    for (const [k, t] of own) {
      const v = given[k];
      if (!(v instanceof Tensor)) problems.push(`missing "${k}"`);
      else if (v.shape.length !== t.shape.length || v.shape.some((d, i) => d !== t.shape[i])) problems.push(`size mismatch for "${k}": [${v.shape.join(', ')}] vs [${t.shape.join(', ')}]`);
    }
    for (const k of Object.keys(given)) if (!ownKeys.has(k)) problems.push(`unexpected "${k}"`);
    if (problems.length) throw new Error(`${this.name}.loadStateDict: the state dict does not fit this optimizer (nothing was changed): ${problems.join('; ')}`);
    const lrs = (dict.lrs ?? this.paramGroups.map(() => dict.lr)).map((lr) => checkNumber(this.name, 'learning rate', lr, (x) => x >= 0, 'a number >= 0'));
    if (lrs.length !== this.paramGroups.length) throw new Error(`${this.name}.loadStateDict: the state dict has ${lrs.length} parameter groups, this optimizer ${this.paramGroups.length} (nothing was changed)`);
    noGrad(() => { for (const [k, t] of own) t.copy_(given[k]); });
    this.paramGroups.forEach((g, i) => (g.lr = lrs[i]));
  }

  /** Zero state of a parameter's shape on its device, named `<param name>.<slot>` in compile's listings. */
  protected zerosFor(p: Tensor, slot: string): Tensor {
    const t = noGrad(() => zerosLike(p, { requiresGrad: false }));
    setLabel(t, `${givenLabel(p) ?? `${this.name}.params[${this.params.indexOf(p)}]`}.${slot}`);
    return t;
  }

  /** The device all parameters are on (state follows it). */
  private _syncDevices(): void {
    const device: DeviceName = this.params[0].device;
    const other = this.params.find((p) => p.device !== device);
    if (other) throw new Error(`${this.name}: all parameters must be on the same device, found ${device} and ${other.device}`);
    if (this.stepCount.device !== device) this.stepCount._moveTo(device, this.name);
    this._state().forEach((ts, i) => {
      const d = this.params[i].device;
      for (const t of ts) if (t && t.device !== d) t._moveTo(d, this.name);
    });
  }
}
