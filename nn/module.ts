// nn.Module and nn.Parameter (API.md "nn"). A Module discovers its Parameters and sub-Modules by
// walking its own enumerable properties in assignment order, as PyTorch's __setattr__ registers
// them; everything else a subclass stores (plain tensors, numbers, caches) is ignored. Buffers
// (tensors that move with the module and are saved in stateDict but are not trained) are declared
// with registerBuffer.

import { isFloat } from '../ir/dtype.ts';
// the runtime's modules themselves, not its index: the ONNX exporter (a chunk of its own in the
// browser build) imports this file, and through the index would share the whole runtime with the
// first module as a chunk of its own
import { noGrad } from '../runtime/autograd.ts';
import { checkDType, type DeviceName } from '../runtime/device.ts';
import { givenLabel, onCapture, setLabel, traceGuard, type HostGuard } from '../runtime/host.ts';
import { Tensor } from '../runtime/tensor.ts';

// ---------------------------------------------------------------------------------------------
// Parameter

const parameters = new WeakSet<Tensor>();

export interface ParameterOptions {
  /** default true */
  requiresGrad?: boolean;
}

/** The type of `nn.Parameter`: `new nn.Parameter(t)` returns a Tensor (a leaf sharing t's storage). */
export interface ParameterConstructor {
  new (data: Tensor, opts?: ParameterOptions): Tensor;
  [Symbol.hasInstance](x: unknown): boolean;
}

/** True for tensors made by `new nn.Parameter(...)`. */
export function isParameter(x: unknown): x is Tensor {
  return x instanceof Tensor && parameters.has(x);
}

function makeParameter(data: Tensor, opts: ParameterOptions): Tensor {
  if (!(data instanceof Tensor)) {
    throw new Error(`Parameter: expected a Tensor, got ${data === null ? 'null' : typeof data}`);
  }
  const p = data.detach();
  const flag = opts.requiresGrad ?? true;
  if (flag && !isFloat(p.dtype)) {
    throw new Error(`Parameter: only floating point tensors (float32, float64) can require gradients, got dtype ${p.dtype} (pass { requiresGrad: false } for a frozen ${p.dtype} parameter)`);
  }
  p.requiresGrad = flag;
  parameters.add(p);
  return p;
}

class ParameterImpl {
  constructor(data: Tensor, opts: ParameterOptions = {}) {
    // A constructor may return an object: `new Parameter(t)` is a real Tensor (instanceof Tensor).
    return makeParameter(data, opts) as unknown as ParameterImpl;
  }
  static [Symbol.hasInstance](x: unknown): boolean {
    return isParameter(x);
  }
}

/**
 * `new nn.Parameter(t, { requiresGrad = true })`: a leaf Tensor sharing `t`'s storage that Modules
 * register when it is assigned to one of their fields. `x instanceof nn.Parameter` works.
 */
export const Parameter = ParameterImpl as unknown as ParameterConstructor;
/** A Parameter is a Tensor. */
export type Parameter = Tensor;

// ---------------------------------------------------------------------------------------------
// names for compile's listings (`fc1.weight` instead of `t3[512, 784]`), kept in runtime/host.ts

/** Names a parameter or buffer for IR listings; the longest dotted name (seen from the outermost module) wins. */
function nameTensor(t: Tensor, name: string): void {
  const old = givenLabel(t);
  if (old !== undefined && old.split('.').length >= name.split('.').length) return;
  setLabel(t, name);
}

// ---------------------------------------------------------------------------------------------
// Module

/** A state dict: names (`fc1.weight`) to tensors, in module order. */
export type StateDict = Record<string, Tensor>;

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

const bufferNames = new WeakMap<Module, Set<string>>();

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/** Every live module, so compile can guard the attributes that hold captured parameters. */
const liveModules: WeakRef<Module>[] = [];

onCapture((captured) => {
  const guards: HostGuard[] = [];
  for (let i = liveModules.length - 1; i >= 0; i--) {
    const m = liveModules[i].deref();
    if (!m) { liveModules.splice(i, 1); continue; }
    for (const [key, value] of Object.entries(m)) {
      if (value instanceof Tensor && captured.has(value)) {
        guards.push({ check: () => (m as unknown as Record<string, unknown>)[key] === value, label: `${m.constructor.name}.${key} is the captured tensor` });
      }
    }
  }
  return guards;
});

export class Module {
  private _training = true;
  constructor() {
    liveModules.push(new WeakRef(this));
  }
  /**
   * Training mode (Dropout is active); set recursively by train() and eval(). Reading it while
   * `compile` traces makes the traced step valid only for this mode (a switch retraces).
   */
  get training(): boolean {
    const mode = this._training;
    traceGuard(() => this._training === mode, `${this.constructor.name}.training === ${mode}`);
    return mode;
  }
  set training(mode: boolean) { this._training = mode; }

  /**
   * The computation. Subclasses implement it with their own signature; `module.call(...)` is the
   * same. (The base signature is open because every Module chooses its own arguments.)
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  forward(...args: any[]): any {
    void args;
    throw new Error(`Module [${this.constructor.name}] is missing the required "forward" function`);
  }

  /** `module.call(x)` is `module.forward(x)` (PyTorch's `module(x)`). */
  call(...args: Parameters<this['forward']>): ReturnType<this['forward']> {
    return (this.forward as (...a: unknown[]) => ReturnType<this['forward']>)(...args);
  }

  // ---- discovery ----
  private _fields(): [string, unknown][] {
    return Object.keys(this).map((k) => [k, (this as unknown as Record<string, unknown>)[k]]);
  }

  /** Registers a tensor that moves with the module and is saved in stateDict but is not a Parameter. */
  registerBuffer(name: string, t: Tensor | null): void {
    if (t !== null && !(t instanceof Tensor)) throw new Error(`registerBuffer: '${name}' must be a Tensor or null`);
    if (isParameter(t)) throw new Error(`registerBuffer: '${name}' is a Parameter; assign it as a field instead`);
    let names = bufferNames.get(this);
    if (!names) bufferNames.set(this, (names = new Set()));
    names.add(name);
    (this as unknown as Record<string, unknown>)[name] = t;
  }

  /** Assigns a Parameter (or null) as the field `name` (PyTorch's register_parameter). */
  registerParameter(name: string, p: Tensor | null): void {
    if (p !== null && !isParameter(p)) throw new Error(`registerParameter: '${name}' must be an nn.Parameter or null (wrap the tensor in new nn.Parameter(...))`);
    (this as unknown as Record<string, unknown>)[name] = p;
  }

  /** Assigns a sub-module (or null) as the field `name` (PyTorch's add_module / register_module). */
  addModule(name: string, m: Module | null): void {
    if (m !== null && !(m instanceof Module)) throw new Error(`addModule: '${name}' must be an nn.Module or null`);
    (this as unknown as Record<string, unknown>)[name] = m;
  }

  /** Direct Parameters of this module (not of its children), in assignment order. */
  private _ownParameters(): [string, Tensor][] {
    return this._fields().filter((e): e is [string, Tensor] => isParameter(e[1]));
  }

  private _ownBuffers(): [string, Tensor][] {
    const names = bufferNames.get(this);
    if (!names) return [];
    return this._fields().filter((e): e is [string, Tensor] => names.has(e[0]) && e[1] instanceof Tensor && !isParameter(e[1]));
  }

  namedChildren(): [string, Module][] {
    const seen = new Set<Module>();
    const out: [string, Module][] = [];
    for (const [k, v] of this._fields()) {
      if (v instanceof Module && !seen.has(v)) {
        seen.add(v);
        out.push([k, v]);
      }
    }
    return out;
  }

  children(): Module[] {
    return this.namedChildren().map(([, m]) => m);
  }

  /** This module and all its descendants, pre-order, each once, with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (m: Module, name: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([name, m]);
      for (const [k, c] of m.namedChildren()) visit(c, name ? `${name}.${k}` : k);
    };
    visit(this, prefix);
    return out;
  }

  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** `[name, parameter]` pairs with dotted names like `fc1.weight`, in assignment order, each parameter once. */
  namedParameters(prefix = '', recurse = true): [string, Tensor][] {
    return this._namedTensors(prefix, recurse, (m) => m._ownParameters());
  }

  parameters(recurse = true): Tensor[] {
    return this.namedParameters('', recurse).map(([, p]) => p);
  }

  namedBuffers(prefix = '', recurse = true): [string, Tensor][] {
    return this._namedTensors(prefix, recurse, (m) => m._ownBuffers());
  }

  /** Dotted names for the tensors `own` lists in each module (this one, or all when recursing), each tensor once. */
  private _namedTensors(prefix: string, recurse: boolean, own: (m: Module) => Iterable<[string, Tensor]>): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const mods: [string, Module][] = recurse ? this.namedModules(prefix) : [[prefix, this]];
    for (const [mname, m] of mods) {
      for (const [k, t] of own(m)) {
        if (seen.has(t)) continue;
        seen.add(t);
        const name = mname ? `${mname}.${k}` : k;
        nameTensor(t, name);
        out.push([name, t]);
      }
    }
    return out;
  }

  buffers(recurse = true): Tensor[] {
    return this.namedBuffers('', recurse).map(([, b]) => b);
  }

  /** Calls fn on every submodule (children first) and on this module; returns this. */
  apply(fn: (m: Module) => void): this {
    for (const c of this.children()) c.apply(fn);
    fn(this);
    return this;
  }

  // ---- modes ----
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  requiresGrad_(flag = true): this {
    for (const p of this.parameters()) p.requiresGrad = flag;
    return this;
  }

  /** Sets every parameter's grad to null (PyTorch 2.x's default set_to_none). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  // ---- devices ----
  /**
   * Moves every parameter and buffer to `device` in place (the same Parameter objects); returns this.
   * `to('float64')` / `to('float32')` is `double()` / `float()`.
   */
  to(device: DeviceName | 'float32' | 'float64'): this {
    if (device === 'float32' || device === 'float64') return this._castFloats(device, `Module.to('${device}')`);
    for (const t of [...this.parameters(), ...this.buffers()]) t._moveTo(device, 'Module.to');
    return this;
  }

  /** Converts every floating point parameter and buffer to float64 in place, as PyTorch's `module.double()` (CPU only). */
  double(): this { return this._castFloats('float64', 'Module.double'); }
  /** Converts every floating point parameter and buffer to float32 in place (`module.float()`). */
  float(): this { return this._castFloats('float32', 'Module.float'); }
  private _castFloats(dtype: 'float32' | 'float64', who: string): this {
    const floats = [...this.parameters(), ...this.buffers()].filter((t) => isFloat(t.dtype));
    for (const t of floats) checkDType(who, t.device, dtype); // all or nothing
    for (const t of floats) t._castTo(dtype, who);
    return this;
  }

  /** Like to(), but can also move from WebGPU to the CPU (reading a GPU buffer is asynchronous). */
  async toAsync(device: DeviceName): Promise<this> {
    for (const t of [...this.parameters(), ...this.buffers()]) await t._moveToAsync(device);
    return this;
  }

  // ---- state ----
  /** `name → tensor` (parameters, then buffers, module by module): detached copies of the current values. */
  stateDict(): StateDict {
    const out: StateDict = {};
    noGrad(() => {
      for (const [name, t] of this._stateEntries()) out[name] = t.detach().clone();
    });
    return out;
  }

  private _stateEntries(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [mname, m] of this.namedModules()) {
      for (const [k, t] of [...m._ownParameters(), ...m._ownBuffers()]) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([mname ? `${mname}.${k}` : k, t]);
      }
    }
    return out;
  }

  /**
   * Copies the values of `dict` into this module's parameters and buffers in place (under noGrad).
   * Missing or unexpected keys (when strict, the default) and shape mismatches throw an error that
   * names them, and then nothing has been changed.
   */
  loadStateDict(dict: StateDict | Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadStateDictResult {
    const strict = opts.strict ?? true;
    if (dict === null || typeof dict !== 'object') {
      throw new Error(`loadStateDict: expected a state dict (an object or Map of name -> Tensor, e.g. from stateDict()), got ${dict === null ? 'null' : typeof dict} (nothing was changed)`);
    }
    const given = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const own = new Map(this._stateEntries());
    const missingKeys = [...own.keys()].filter((k) => !given.has(k));
    const unexpectedKeys = [...given.keys()].filter((k) => !own.has(k));
    const problems: string[] = [];
    if (strict && missingKeys.length) problems.push(`Missing key(s) in state dict: ${missingKeys.map((k) => `"${k}"`).join(', ')}.`);
    if (strict && unexpectedKeys.length) problems.push(`Unexpected key(s) in state dict: ${unexpectedKeys.map((k) => `"${k}"`).join(', ')}.`);
    for (const [k, target] of own) {
      if (!given.has(k)) continue;
      const v = given.get(k);
      if (!(v instanceof Tensor)) {
        problems.push(`value for "${k}" is not a Tensor.`);
      } else if (v.shape.length !== target.shape.length || v.shape.some((d, i) => d !== target.shape[i])) {
        problems.push(`size mismatch for ${k}: copying a param with shape ${fmtShape(v.shape)} from the state dict, the shape in the current model is ${fmtShape(target.shape)}.`);
      }
    }
    if (problems.length) {
      throw new Error(`loadStateDict: Error(s) in loading state dict for ${this.constructor.name} (nothing was changed):\n\t${problems.join('\n\t')}`);
    }
    noGrad(() => {
      for (const [k, target] of own) {
        const v = given.get(k);
        if (v) target.copy_(v);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  // ---- printing ----
  /** Extra text inside `Name(...)` when printing (e.g. `inFeatures=4, outFeatures=2, bias=true`). */
  extraRepr(): string {
    return '';
  }

  toString(): string {
    const name = this.constructor.name;
    const extra = this.extraRepr();
    const kids = this.namedChildren();
    if (kids.length === 0) return `${name}(${extra})`;
    const lines: string[] = [];
    if (extra) lines.push(...extra.split('\n'));
    for (const [k, m] of kids) lines.push(`(${k}): ${String(m).split('\n').join('\n  ')}`);
    return `${name}(\n  ${lines.join('\n  ')}\n)`;
  }
}
