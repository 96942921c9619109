// The optimizer base class. Written so that `compile` can trace `step()` once and replay it:
//  - all state (momentum buffers, Adam moments, the step count) is created eagerly in the
//    constructor and only updated with in-place ops under noGrad;
//  - no JavaScript branch depends on a value that changes from step to step (first-step and
//    bias-correction logic is tensor arithmetic on the 0-d step-count tensor);
//  - the learning rate is read through hostScalar, so a compiled step re-reads `opt.lr` on every call.
// Which parameters are updated depends only on whether their `.grad` is null (as in PyTorch), and each
// parameter counts its own steps (PyTorch's state[p]['step']): one without a gradient does not advance.
// State tensors follow their parameter when a module moves it (Tensor._addFollower).

import { enableGrad, full, givenLabel, hostScalar, noGrad, setLabel, Tensor, type DeviceName } from '../runtime/index.ts';

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

/** What Optimizer.stateDict() returns. */
export interface OptimizerStateDict {
  lr: number;
  tensors: Record<string, Tensor>;
}

export abstract class Optimizer {
  /** The parameters this optimizer updates (PyTorch's param_groups[0]['params']). */
  readonly params: Tensor[];
  /** The number of step() calls, as a 0-d float32 tensor on the parameters' device (updated in place). */
  readonly stepCount: Tensor;
  /** Per parameter, the number of steps that updated it (0-d tensors; PyTorch's state[p]['step']). */
  readonly paramSteps: Tensor[];
  protected readonly name: string;
  private _lr: number;

  constructor(name: string, params: Iterable<Tensor>, lr: number) {
    this.name = name;
    if (params === null || params === undefined || typeof (params as Iterable<Tensor>)[Symbol.iterator] !== 'function') {
      throw new Error(`${name}: params must be an iterable of Tensors (e.g. model.parameters()), got ${params === null ? 'null' : typeof params}`);
    }
    const list: Tensor[] = [];
    for (const p of params) {
      if (!(p instanceof Tensor)) {
        const group = p !== null && typeof p === 'object' && 'params' in p;
        throw new Error(`${name}: can only optimize Tensors, but one of the params is ${p === null ? 'null' : group ? 'a parameter group ({ params, ... }); parameter groups are not supported, pass a list of tensors' : typeof p}`);
      }
      if (!p.isLeaf) throw new Error(`${name}: can't optimize a non-leaf Tensor (gradFn ${p.gradFn}); pass parameters or tensors created with requiresGrad`);
      if (p.dtype !== 'float32') throw new Error(`${name}: can only optimize float32 tensors, got a ${p.dtype} tensor`);
      if (!list.includes(p)) list.push(p);
    }
    if (list.length === 0) throw new Error(`${name}: got an empty parameter list`);
    this.params = list;
    this._lr = checkNumber(name, 'learning rate', lr, (x) => x >= 0, 'a number >= 0');
    this.stepCount = noGrad(() => full([], 0, { device: list[0].device }));
    setLabel(this.stepCount, `${name}.stepCount`);
    list[0]._addFollower(this.stepCount);
    this.paramSteps = list.map((p) => this.stateFor(p, 'step', []));
  }

  /** The learning rate (PyTorch's param_groups[0]['lr']); setting it changes the next step, also in compiled steps. */
  get lr(): number {
    return this._lr;
  }
  set lr(v: number) {
    this._lr = checkNumber(this.name, 'learning rate', v, (x) => x >= 0, 'a number >= 0');
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
      this._update(hostScalar(() => this._lr));
      this.stepCount.add_(1);
    });
    return loss;
  }

  /**
   * The update itself, under noGrad, after paramSteps advanced for the parameters with a gradient;
   * `lr` is a number eagerly and a per-call scalar while tracing.
   */
  protected abstract _update(lr: Scalar): void;

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
      this._allState().forEach((ts, i) => ts.forEach(([j, t]) => { tensors[`state.${i}.${j}`] = t.clone(); }));
    });
    return { lr: this._lr, tensors };
  }

  /** Restores a stateDict() of an optimizer of the same kind over parameters of the same shapes, in place. */
  loadStateDict(dict: OptimizerStateDict): void {
    const own: [string, Tensor][] = [['stepCount', this.stepCount]];
    this._allState().forEach((ts, i) => ts.forEach(([j, t]) => own.push([`state.${i}.${j}`, t])));
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
    const lr = checkNumber(this.name, 'learning rate', dict.lr, (x) => x >= 0, 'a number >= 0');
    noGrad(() => { for (const [k, t] of own) t.copy_(given[k]); });
    this._lr = lr;
  }

  /** Per parameter: its state slots by key (`0`, `1`, ... for _state(), then `step`). */
  private _allState(): [string, Tensor][][] {
    const state = this._state();
    return this.params.map((_, i) => [
      ...(state[i] ?? []).flatMap((t, j): [string, Tensor][] => (t ? [[String(j), t]] : [])),
      ['step', this.paramSteps[i]],
    ]);
  }

  /** Zero state of a parameter's shape on its device, named `<param name>.<slot>` in compile's listings. */
  protected zerosFor(p: Tensor, slot: string): Tensor {
    return this.stateFor(p, slot, p.shape);
  }

  /** Zero state of `shape` on the parameter's device that moves with the parameter. */
  private stateFor(p: Tensor, slot: string, shape: readonly number[]): Tensor {
    const t = noGrad(() => full(shape, 0, { device: p.device }));
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
    this._allState().forEach((ts, i) => {
      const d = this.params[i].device;
      for (const [, t] of ts) if (t.device !== d) t._moveTo(d, this.name);
    });
  }
}
