// The optimizer base class. Written so that `compile` can trace `step()` once and replay it:
//  - all state (momentum buffers, Adam moments, the step count) is created eagerly in the
//    constructor and only updated with in-place ops under noGrad;
//  - no JavaScript branch depends on a value that changes from step to step (first-step and
//    bias-correction logic is tensor arithmetic on the 0-d step-count tensor);
//  - learning rates are read through hostScalar, so a compiled step re-reads `opt.lr` (and every
//    `opt.paramGroups[i].lr`) on every call.
// Which parameters are updated depends only on whether their `.grad` is null (as in PyTorch), and each
// parameter counts its own steps (PyTorch's state[p]['step']): one without a gradient does not advance.
// Parameters come in groups (PyTorch's param_groups), each with its own learning rate and options.
// State tensors follow their parameter when a module moves it (Tensor._addFollower).

import { enableGrad, full, givenLabel, hostScalar, noGrad, setLabel, Tensor, traceGuard, type DeviceName, type DType } from '../runtime/index.ts';

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

/** A hyper-parameter as a parameter group stores it. */
export type HyperValue = number | boolean | string | null | readonly number[];

/** One parameter group of a state dict (PyTorch's `param_groups[i]`, keys in camelCase). */
export type ParamGroupState = {
  lr: number;
  /** Indices of the group's parameters in the optimizer's parameter order. */
  params: number[];
  [hyper: string]: HyperValue;
};

/**
 * What Optimizer.stateDict() returns: PyTorch's `optimizer.state_dict()` layout with kiln's
 * spelling, so that a checkpoint maps onto torch.optim key for key. `state[i]` holds parameter i's
 * tensors (SGD: `momentumBuffer`; Adam/AdamW: `step`, `expAvg`, `expAvgSq`). A type alias, not an
 * interface, so that it is a state tree `kiln.save` accepts.
 */
export type OptimizerStateDict = {
  state: Record<string, Record<string, Tensor | null>>;
  paramGroups: ParamGroupState[];
};

/** Group keys PyTorch writes that change nothing in kiln's update (how torch runs it). */
const IGNORED_GROUP_KEYS = new Set(['foreach', 'capturable', 'differentiable', 'fused', 'initialLr']);

const sameHyper = (a: unknown, b: HyperValue): boolean =>
  Array.isArray(b) ? Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]) : a === b;

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
  /** The number of steps taken, as a 0-d tensor on the parameters' device (updated in place; float64 when every parameter is). */
  readonly stepCount: Tensor;
  /** Per parameter, the number of steps that updated it (0-d tensors of stepCount's dtype; PyTorch's state[p]['step']). */
  readonly paramSteps: Tensor[];
  protected readonly name: string;
  /** the option names groups may set (lr included) */
  private readonly keys: readonly string[];

  /**
   * `defaults` are the options with their defaults filled in (lr included); `keys` the allowed option
   * names; `check` validates one group's merged options (it throws a message naming the option).
   */
  constructor(name: string, params: ParamsInput<O>, defaults: O & { lr: number }, keys: readonly string[], check: (g: O & { lr: number }) => void) {
    this.name = name;
    this.keys = keys;
    if (params === null || params === undefined || typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new Error(`${name}: params must be an iterable of Tensors (e.g. model.parameters()) or of parameter groups, got ${params === null ? 'null' : typeof params}`);
    }
    const items = [...(params as Iterable<unknown>)];
    const groupCount = items.filter(isGroupSpec).length;
    if (groupCount > 0 && groupCount < items.length) throw new Error(`${name}: params must be all Tensors or all parameter groups ({ params, ...options }), not a mix`);
    const specs = groupCount > 0 ? (items as { params: Iterable<Tensor> }[]) : [{ params: items as Tensor[] }];
    const all: Tensor[] = [];
    this.paramGroups = specs.map((spec, gi) => {
      const { params: ps, ...overrides } = spec as { params: Iterable<Tensor> } & Record<string, unknown>;
      checkOptions(`${name} (param group ${gi})`, overrides, keys);
      if (ps === null || ps === undefined || typeof (ps as Iterable<unknown>)[Symbol.iterator] !== 'function') throw new Error(`${name}: param group ${gi} needs 'params', an iterable of Tensors`);
      const list: Tensor[] = [];
      for (const p of ps instanceof Tensor ? [ps] : ps) {
        if (!(p instanceof Tensor)) throw new Error(`${name}: can only optimize Tensors, but one of the params is ${p === null ? 'null' : typeof p}`);
        if (!p.isLeaf) throw new Error(`${name}: can't optimize a non-leaf Tensor (gradFn ${p.gradFn}); pass parameters or tensors created with requiresGrad`);
        if (p.dtype !== 'float32' && p.dtype !== 'float64') throw new Error(`${name}: can only optimize floating point tensors (float32, float64), got a ${p.dtype} tensor`);
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
    // float64 where every parameter is (the bias corrections computed from it then keep every digit)
    const stepDType = all.every((p) => p.dtype === 'float64') ? 'float64' : 'float32';
    this.stepCount = noGrad(() => full([], 0, { device: all[0].device, dtype: stepDType }));
    setLabel(this.stepCount, `${name}.stepCount`);
    all[0]._addFollower(this.stepCount);
    this.paramSteps = all.map((p) => this.stateFor(p, 'step', [], stepDType));
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
    if (this.perCallOptions.has(key)) return hostScalar(read, this.hostDType(group));
    const v = read();
    traceGuard(() => read() === v, `param group ${key} === ${v}`);
    return v;
  }

  /** A group's learning rate: a number eagerly, a per-call input while tracing (never a stale constant). */
  protected lrOf(group: ParamGroup<O>): Scalar {
    return hostScalar(() => checkNumber(this.name, 'learning rate', group.lr, (x) => x >= 0, 'a number >= 0'), this.hostDType(group));
  }

  /** Per-call scalars are float64 for a group of float64 parameters (eagerly they are plain numbers anyway). */
  private hostDType(group: ParamGroup<O>): 'float32' | 'float64' {
    return group.params.every((p) => p.dtype === 'float64') ? 'float64' : 'float32';
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
      this.params.forEach((p, i) => { if (p.grad !== null) this.paramSteps[i].add_(1); });
      this._update();
    });
    return loss;
  }

  /**
   * The update itself, under noGrad (learning rates through lrOf), after paramSteps advanced for the
   * parameters with a gradient; it advances stepCount.
   */
  protected abstract _update(): void;

  /** State tensors, one list per parameter (moved with their parameter if the model moved). */
  protected abstract _state(): (Tensor | null)[][];

  /** The names of the slots of `_state()`'s lists: PyTorch's state keys, in camelCase (`expAvg`). */
  protected abstract readonly _slotNames: readonly string[];

  /** A group's hyper-parameters, as PyTorch names them (camelCase), without lr: its options, in their order. */
  protected _hyper(group: ParamGroup<O>): Record<string, HyperValue> {
    return Object.fromEntries(this.keys.filter((k) => k !== 'lr').map((k) => [k, (group as unknown as Record<string, HyperValue>)[k]]));
  }

  /** Whether PyTorch keeps a per-parameter `step` in this optimizer's state (Adam does, SGD does not). */
  protected readonly _stepInState: boolean = false;

  /**
   * A snapshot of the optimizer in PyTorch's layout: `{ state: { '0': { step, expAvg, expAvgSq } },
   * paramGroups: [{ lr, betas, eps, weightDecay, amsgrad: false, maximize: false, params: [0, 1] }, ...] }`
   * (one entry per parameter group; `params` index the optimizer's parameter order). The tensors are
   * detached copies. `kiln.save` writes it with PyTorch's names (`exp_avg`, `param_groups`), which
   * torch.optim's load_state_dict accepts once the keys are mapped back to ints.
   */
  stateDict(): OptimizerStateDict {
    const state: OptimizerStateDict['state'] = {};
    noGrad(() => this._slots().forEach((slots, i) => {
      const entry: Record<string, Tensor> = {};
      if (this._stepInState) entry.step = this.paramSteps[i].clone();
      for (const [k, t] of Object.entries(slots)) if (t) entry[k] = t.clone();
      if (Object.keys(entry).length) state[String(i)] = entry;
    }));
    const paramGroups = this.paramGroups.map((g) => ({ lr: g.lr, ...this._hyper(g), maximize: false, params: g.params.map((p) => this.params.indexOf(p)) }));
    return { state, paramGroups };
  }

  /**
   * Restores a stateDict() (kiln's, or PyTorch's read with kiln.loadState) in place. Each group's
   * learning rate is taken from the dict; the groups must hold the same parameters and the other
   * hyper-parameters must equal this optimizer's. A missing state entry is a parameter that was never
   * updated (zeros). Anything that does not fit is an Error listing every problem, and then nothing has
   * been changed.
   */
  loadStateDict(dict: OptimizerStateDict): void {
    const problems: string[] = [];
    const groups = dict?.paramGroups;
    const n = this.paramGroups.length;
    if (!Array.isArray(groups) || groups.length !== n) problems.push(`expected paramGroups with ${n} group${n === 1 ? '' : 's'}, got ${Array.isArray(groups) ? `${groups.length} groups` : typeof groups}`);
    const lrs = this.paramGroups.map((g) => g.lr);
    if (Array.isArray(groups) && groups.length === n) {
      groups.forEach((group, gi) => {
        const own = this.paramGroups[gi];
        const at = `paramGroups[${gi}]`;
        if (group === null || typeof group !== 'object') { problems.push(`${at} is not an object`); return; }
        if (typeof group.lr !== 'number' || !Number.isFinite(group.lr) || group.lr < 0) problems.push(`${at}.lr is ${String(group.lr)}, not a number >= 0`);
        else lrs[gi] = group.lr;
        const expected = own.params.map((p) => this.params.indexOf(p));
        const params = group.params;
        if (!Array.isArray(params) || params.length !== expected.length || params.some((p, i) => Number(p) !== expected[i])) {
          problems.push(`${at}.params is ${JSON.stringify(params)}; this optimizer's group ${gi} holds parameters ${JSON.stringify(expected)}`);
        }
        const hyper = this._hyper(own);
        for (const [k, v] of Object.entries(hyper)) {
          if (k in group && !sameHyper(group[k], v)) problems.push(`${at}.${k} is ${JSON.stringify(group[k])}, this optimizer's is ${JSON.stringify(v)} (only lr is loaded; make an optimizer with the same settings)`);
        }
        for (const k of Object.keys(group)) {
          if (k === 'lr' || k === 'params' || k in hyper || IGNORED_GROUP_KEYS.has(k)) continue;
          if (group[k] !== false && group[k] !== null) problems.push(`${at}.${k} = ${JSON.stringify(group[k])} is not supported by kiln's ${this.name}`);
        }
      });
    }
    const given = dict?.state ?? {};
    const own = this._slots();
    const copies: [Tensor, Tensor | null][] = [];
    /** per parameter: its step count after loading */
    const steps = new Map<number, number>();
    if (given === null || typeof given !== 'object') problems.push('state is not an object');
    else {
      for (const key of Object.keys(given)) {
        const i = Number(key);
        if (!Number.isInteger(i) || i < 0 || i >= own.length) { problems.push(`state has an entry '${key}' but this optimizer has ${own.length} parameters`); continue; }
        const entry = given[key];
        if (entry === null || typeof entry !== 'object') { problems.push(`state.${key} is not an object`); continue; }
        const slots = own[i];
        for (const [slot, v] of Object.entries(entry)) {
          if (slot === 'step') {
            if (!(v instanceof Tensor) || v.numel() !== 1) problems.push(`state.${key}.step is not a one-element tensor`);
            else steps.set(i, v.itemSync());
          } else if (!(slot in slots)) {
            problems.push(`unexpected state.${key}.${slot} (${this.name} keeps ${['step', ...Object.keys(slots)].join(', ')})`);
          } else if (v !== null && !(v instanceof Tensor)) {
            problems.push(`state.${key}.${slot} is not a Tensor`);
          } else if (v instanceof Tensor && (v.dtype !== this.params[i].dtype || v.shape.length !== this.params[i].shape.length || v.shape.some((d, j) => d !== this.params[i].shape[j]))) {
            problems.push(`size mismatch for state.${key}.${slot}: ${v.dtype}[${v.shape.join(', ')}], the parameter is ${this.params[i].dtype}[${this.params[i].shape.join(', ')}]`);
          } else if (slots[slot] === null) {
            if (v !== null) problems.push(`state.${key}.${slot} is given but this ${this.name} keeps none (check its settings)`);
          } else {
            copies.push([slots[slot]!, v]);
          }
        }
        // PyTorch writes all of Adam's slots together with its step; SGD's buffer may be absent (zeros).
        for (const slot of Object.keys(slots)) {
          if (slots[slot] !== null && !(slot in entry) && this._stepInState) problems.push(`missing state.${key}.${slot}`);
        }
        if (this._stepInState && !('step' in entry)) problems.push(`missing state.${key}.step`);
      }
    }
    if (problems.length) throw new Error(`${this.name}.loadStateDict: the state dict does not fit this optimizer (nothing was changed): ${problems.join('; ')}`);
    // Without a step in the state (SGD), a parameter's momentum buffer means it took at least one step.
    const source = new Map(copies);
    const stepOf = (i: number): number => steps.get(i) ?? (Object.values(own[i]).some((t) => t !== null && source.get(t)) ? 1 : 0);
    noGrad(() => {
      for (const slots of own) for (const t of Object.values(slots)) if (t) { const v = source.get(t); if (v) t.copy_(v); else t.zero_(); }
      this.paramSteps.forEach((t, i) => t.fill_(stepOf(i)));
      this.stepCount.fill_(Math.max(0, ...this.params.map((_, i) => stepOf(i))));
    });
    this.paramGroups.forEach((g, i) => (g.lr = lrs[i]));
  }

  /** `_state()` with slot names: one `{ expAvg, expAvgSq }` record per parameter. */
  private _slots(): Record<string, Tensor | null>[] {
    return this._state().map((ts) => Object.fromEntries(ts.map((t, j) => [this._slotNames[j], t])));
  }

  /** Zero state of a parameter's shape on its device, named `<param name>.<slot>` in compile's listings. */
  protected zerosFor(p: Tensor, slot: string): Tensor {
    return this.stateFor(p, slot, p.shape, p.dtype);
  }

  /** Zero state of `shape` on the parameter's device that moves with the parameter. */
  private stateFor(p: Tensor, slot: string, shape: readonly number[], dtype: DType): Tensor {
    const t = noGrad(() => full(shape, 0, { device: p.device, dtype }));
    setLabel(t, `${givenLabel(p) ?? `${this.name}.params[${this.params.indexOf(p)}]`}.${slot}`);
    p._addFollower(t);
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
      for (const t of [...ts, this.paramSteps[i]]) if (t && t.device !== d) t._moveTo(d, this.name);
    });
  }
}
