// Tracing: runs the user's step once on symbolic tensors through the ordinary dispatcher and records
// every primitive into a Graph. Tensors the step reads without receiving them (parameters, optimizer
// state, their .grad) are lifted to inputs by reference; in-place writes and .grad assignments to them
// become outputs that the executor writes back after each call. Nothing real is modified while tracing.
//
// Aliasing is functionalized, as PyTorch's functionalization pass does: a view made while tracing
// remembers its root tensor and the movement ops that lead to it. Reading a view after its root was
// written re-derives it from the root's new value; writing into a view computes the root's new value
// (the written region scattered into the old one) and writes that. Arguments written in place become
// write-backs to the caller's tensors; tensors sharing a captured storage and view share one value.

import { Graph, primNode, type InputSource, type Phase } from '../ir/graph.ts';
import { shapeRules, type AVal, type PrimAttrs, type Primitive } from '../ir/primitives.ts';
import { fmt, sameShape } from '../ir/shape.ts';
import { isContiguous } from '../ir/view.ts';
import { setTracer, type Tracer } from '../runtime/dispatch.ts';
import { captureGuards, labelOf } from '../runtime/host.ts';
import { getDefaultDevice, type DeviceName } from '../runtime/device.ts';
import { Tensor } from '../runtime/tensor.ts';
import { describeLocation, describeUserSource, loadExpression, userFrame, type SourceLocation } from './source.ts';
import { TraceErrorBase } from './trace-error.ts';

/**
 * Thrown when traced code does something a static graph cannot express (reading values to branch).
 * A message given as a function receives " at file:line:column (expression)" for the user's line.
 */
export class TraceError extends TraceErrorBase {
  readonly location: SourceLocation | null;
  private readonly compose: (at: string) => string;

  constructor(message: string | ((at: string) => string), location: SourceLocation | null = null) {
    const compose = typeof message === 'string' ? () => message : message;
    super(compose(location ? ` at ${describeLocation(location)}` : ''));
    this.name = 'TraceError';
    this.location = location;
    this.compose = compose;
  }

  /** Completes the message with the expression at the user's line (fetching its text and importing acorn as needed). */
  async withExpression(): Promise<this> {
    if (!this.location) return this;
    await loadExpression(this.location);
    const before = this.message;
    this.message = this.compose(` at ${describeLocation(this.location)}`);
    if (this.stack) this.stack = this.stack.replace(before, this.message);
    return this;
  }
}

interface SymHandle { trace: Recorder; id: number }

/** A view made while tracing: its root (not itself a traced view), the ops from it, and the root value it was derived from. */
interface ViewOf { root: Tensor; ops: { prim: Primitive; attrs: PrimAttrs[Primitive] }[]; from: number }

/** A check that must hold for a traced graph to be reused. */
export interface Guard { check: () => boolean; label: string }

/** A returned value's shape: where each returned tensor goes. */
export type ReturnTree = null | number | ReturnTree[] | { [key: string]: ReturnTree };

/** A check of the values of an argument or captured tensor, run before every call (index ranges). */
export interface ValueCheck { source: { arg: number } | Tensor; check: (t: Tensor) => string | null }

export interface Traced {
  /** checks of input values run before each call */
  checks: ValueCheck[];
  /** the device the step runs on (its arguments', or what it captures when it has none) */
  device: DeviceName;
  graph: Graph;
  guards: Guard[];
  returns: ReturnTree;
}

class Recorder implements Tracer {
  /** `inferred`: no argument or option fixed the device; the first captured tensor may set it. */
  constructor(readonly device: DeviceName, private inferred = false) {}
  /** set when the first captured tensor lives on another device than an inferred one: trace again there */
  switchTo: DeviceName | null = null;
  graph = new Graph();
  phase: Phase = 'forward';
  guards: Guard[] = [];
  /** concrete tensor → node holding its current value (updated by in-place writes) */
  private values = new Map<Tensor, number>();
  private written = new Set<Tensor>();
  /** captured tensors by storage: the first one seen with a given view stands for all (detach() aliases) */
  private byStorage = new Map<unknown, Tensor[]>();
  /** traced views by handle (a detach() alias shares its tensor's handle, so it is the same view) */
  private views = new Map<SymHandle, ViewOf>();
  /** argument handles, to write back in-place updates of arguments */
  private argHandles = new Map<SymHandle, number>();
  private argWritten = new Set<number>();
  private argStorages: unknown[] = [];
  /** concrete tensor → its traced .grad (symbolic, lifted or null) */
  private grads = new Map<Tensor, Tensor | null>();
  private gradsInitial = new Map<Tensor, Tensor | null>();

  setPhase(p: Phase): void { this.phase = p; }

  symbolic(id: number, device: DeviceName): Tensor {
    const n = this.graph.node(id);
    return Tensor._symbolic(n.shape, n.dtype, device, { trace: this, id } satisfies SymHandle);
  }

  private input(source: InputSource, t: { shape: readonly number[]; dtype: Tensor['dtype'] }): number {
    return this.graph.add({ op: 'input', attrs: source, inputs: [], shape: [...t.shape], dtype: t.dtype, phase: this.phase, source: source.kind === 'arg' ? undefined : describeUserSource() }).id;
  }

  argument(t: Tensor, index: number): Tensor {
    const sym = this.symbolic(this.input({ kind: 'arg', index }, t), t.device);
    this.argHandles.set(sym._sym as SymHandle, index);
    this.argStorages[index] = t._storage;
    if (t.requiresGrad) sym._requiresGrad = true;
    // An argument's existing .grad is read at call time (the signature records whether there is one).
    if (t._grad) sym._grad = this.symbolic(this.input({ kind: 'grad', ref: { arg: index }, label: `arg${index}.grad` }, t._grad), t.device);
    this.argGrads.push(sym._grad);
    return sym;
  }
  readonly argGrads: (Tensor | null)[] = [];

  /** The node of a tensor's value: its own for symbolic tensors, a captured input for concrete ones. */
  valueOf(t: Tensor): number {
    if (t._storage === null) {
      const h = t._sym as SymHandle;
      if (h.trace !== this) throw new TraceError('a tensor from another compile() trace was used here');
      const v = this.views.get(h);
      if (v) {
        const root = this.valueOf(v.root);
        if (root !== v.from) {
          // The root was written since this view was taken: the view sees the new value.
          h.id = v.ops.reduce((id, op) => this.derive(op.prim, op.attrs, id), root);
          v.from = root;
        }
      }
      return h.id;
    }
    if (t.device !== this.device) {
      if (this.inferred && this.values.size === 0) {
        this.switchTo = t.device;
        throw this.fail(() => `(retracing on ${t.device})`);
      }
      throw this.fail((at) => `the compiled function runs on '${this.device}' (${this.inferred ? 'the default device' : "its arguments' device or options.device"}) but uses ${labelOf(t)}, ` +
        `which is on '${t.device}'; move the model and the inputs to one device (e.g. model.to('${t.device}') and x.to('${t.device}'))${at}`);
    }
    t = this.canonical(t);
    let id = this.values.get(t);
    if (id === undefined) {
      const view = t._view, storage = t._storage!;
      id = this.input({ kind: 'capture', ref: t, label: labelOf(t), view }, t);
      this.values.set(t, id);
      const device = t.device;
      this.guards.push({ check: () => t._storage === storage || (t.device === device && t._storage !== null && t._storage.size === storage.size && sameView(t._view, view)), label: `layout of ${labelOf(t)}` });
    }
    return id;
  }

  record<P extends Primitive>(prim: P, inputs: readonly Tensor[], attrs: PrimAttrs[P], out: AVal, device: DeviceName, aliases: boolean): Tensor {
    const ids = inputs.map((x) => this.valueOf(x));
    const result = this.symbolic(this.add(prim, attrs, ids, out.shape, out.dtype), device);
    if (aliases) {
      const x = inputs[0];
      const v = x._storage === null ? this.views.get(x._sym as SymHandle) : undefined;
      const op = { prim, attrs: attrs as PrimAttrs[Primitive] };
      const root = v ? v.root : x;
      this.views.set(result._sym as SymHandle, { root, ops: v ? [...v.ops, op] : [op], from: this.valueOf(root) });
    }
    return result;
  }

  /** A node applying movement op `prim` to node `id` (re-deriving a view). */
  private derive(prim: Primitive, attrs: PrimAttrs[Primitive], id: number): number {
    const x = this.graph.node(id);
    const out = (shapeRules[prim] as (xs: AVal[], a: PrimAttrs[Primitive]) => AVal)([x], attrs);
    return this.add(prim, attrs, [id], out.shape, out.dtype);
  }

  private add<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: number[], shape: readonly number[], dtype: Tensor['dtype']): number {
    return this.graph.add(primNode(prim, attrs, { inputs, shape: [...shape], dtype, phase: this.phase, source: describeUserSource() })).id;
  }

  /** The captured tensor that stands for `t`: the first one seen with the same storage and view. */
  private canonical(t: Tensor): Tensor {
    const same = this.byStorage.get(t._storage);
    const c = same?.find((u) => u.dtype === t.dtype && sameView(u._view, t._view));
    if (c) return c;
    if (same) same.push(t);
    else this.byStorage.set(t._storage, [t]);
    return t;
  }

  assign(target: Tensor, value: Tensor): void {
    const id = this.valueOf(value);
    const view = target._storage === null ? this.views.get(target._sym as SymHandle) : undefined;
    if (view) {
      // A write into a view is a write of the root's new value: the root with this region replaced.
      this.valueOf(target); // brings the view up to date with its root first
      const levels = [this.valueOf(view.root)];
      for (const op of view.ops.slice(0, -1)) levels.push(this.derive(op.prim, op.attrs, levels[levels.length - 1]));
      let v = id;
      for (let k = view.ops.length - 1; k >= 0; k--) v = this.unview(view.ops[k], v, levels[k]);
      this.assign(view.root, this.symbolic(v, view.root.device));
      (target._sym as SymHandle).id = id;
      view.from = this.valueOf(view.root);
      return;
    }
    if (target._storage === null) {
      const h = target._sym as SymHandle;
      h.id = id;
      const arg = this.argHandles.get(h);
      if (arg !== undefined) this.argWritten.add(arg);
      return;
    }
    target = this.canonical(target);
    if (!isContiguous(target._view) || target._view.offset !== 0 || target._storage!.size !== target.numel()) {
      throw this.fail((at) => `an in-place write into a view of ${labelOf(target)} (shape ${fmt(target.shape)}) made outside the compiled function cannot be compiled; ` +
        `take the view inside the compiled function (a write into it is then a write into its base)${at}`);
    }
    const others = this.byStorage.get(target._storage)!.filter((u) => u !== target && this.values.has(u));
    if (others.length) {
      throw this.fail((at) => `an in-place write into ${labelOf(target)} cannot be compiled while another view of its storage (${labelOf(others[0])}, shape ${fmt(others[0].shape)}) ` +
        `is also used in the compiled function; take views inside the compiled function${at}`);
    }
    this.valueOf(target);
    this.values.set(target, id);
    this.written.add(target);
  }

  /** The value of a movement op's input after `v` (its new output) was written into it; `old` is its previous value. */
  private unview(op: ViewOf['ops'][number], v: number, old: number): number {
    const o = this.graph.node(old);
    switch (op.prim) {
      case 'reshape': return this.add('reshape', { shape: [...o.shape] }, [v], o.shape, o.dtype);
      case 'permute': {
        const perm = (op.attrs as PrimAttrs['permute']).perm;
        const inv = new Array<number>(perm.length);
        perm.forEach((p, i) => (inv[p] = i));
        return this.add('permute', { perm: inv }, [v], o.shape, o.dtype);
      }
      case 'slice': {
        const a = op.attrs as PrimAttrs['slice'];
        const pad = { starts: a.starts, steps: a.steps, shape: [...o.shape] };
        const placed = this.add('pad', pad, [v], o.shape, o.dtype);
        const ones = this.add('full', { shape: [...a.shape], value: 1, dtype: 'bool' }, [], a.shape, 'bool');
        const mask = this.add('pad', pad, [ones], o.shape, 'bool');
        return this.add('where', {}, [mask, placed, old], o.shape, o.dtype);
      }
      default:
        throw this.fail((at) => `an in-place write into an expanded view (shape ${fmt(this.graph.node(v).shape)}) cannot be compiled: more than one element of the written-to tensor ` +
          `refers to a single memory location (PyTorch raises as well); call .clone() before writing${at}`);
    }
  }

  /** The first TraceError raised while tracing (async code may have swallowed it). */
  failure: TraceError | null = null;

  read(t: Tensor, method: string): never {
    throw this.fail((at) => `${method} reads the value of a traced tensor (shape ${fmt(t.shape)}) inside a compiled function${at}. ` +
      'Compiled code cannot branch on tensor values: return the tensor from the compiled function and read it outside, or express the choice with kiln.where().');
  }

  /** A TraceError at the user's current line. */
  private fail(message: (at: string) => string): TraceError {
    const e = new TraceError(message, userFrame());
    this.failure ??= e;
    return e;
  }

  gradRead(t: Tensor): Tensor | null {
    if (!this.grads.has(t)) {
      const g = t._grad;
      let initial: Tensor | null = null;
      if (g === null) {
        this.guards.push({ check: () => t._grad === null, label: `${labelOf(t)}.grad is null` });
      } else {
        const shape = [...g.shape];
        initial = this.symbolic(this.input({ kind: 'grad', ref: t, label: labelOf(t) + '.grad' }, g), g.device);
        this.guards.push({ check: () => t._grad !== null && t._grad._storage !== null && sameShape(t._grad.shape, shape), label: `${labelOf(t)}.grad is set` });
      }
      this.grads.set(t, initial);
      this.gradsInitial.set(t, initial);
    }
    return this.grads.get(t)!;
  }

  gradWrite(t: Tensor, g: Tensor | null): void {
    this.gradRead(t);
    this.grads.set(t, g);
  }

  hostScalar(read: () => number, dtype: 'float32' | 'float64'): Tensor {
    const id = this.graph.add({ op: 'input', attrs: { kind: 'host', read, label: 'host scalar' }, inputs: [], shape: [], dtype, phase: this.phase, source: describeUserSource() }).id;
    return this.symbolic(id, this.device);
  }

  guard(check: () => boolean, label: string): void { this.guards.push({ check, label }); }

  readonly checks: ValueCheck[] = [];

  rangeCheck(index: Tensor, check: (t: Tensor) => string | null): void {
    // Follow value-preserving movement ops back to an input: an argument or a captured tensor.
    let n = this.graph.node(this.valueOf(index));
    while (n.op === 'reshape' || n.op === 'expand' || n.op === 'permute') n = this.graph.node(n.inputs[0]);
    if (n.op !== 'input') return; // computed inside the step: not checked (documented)
    const src = n.attrs as InputSource;
    if (src.kind === 'arg') this.checks.push({ source: { arg: src.index }, check });
    else if (src.kind === 'capture') this.checks.push({ source: src.ref as Tensor, check });
  }

  /** Outputs for in-place writes and .grad changes, after the step's function returned. */
  finish(argSyms: readonly Tensor[]): void {
    // An argument sharing memory with a captured tensor: a write to either is not seen by the other.
    for (const [i, st] of this.argStorages.entries()) {
      const captured = this.byStorage.get(st)?.find((u) => this.values.has(u));
      if (captured && (this.argWritten.has(i) || this.written.has(captured))) {
        throw this.fail(() => `argument ${i} shares memory with ${labelOf(captured)}, which the compiled function also uses, and one of them is written in place; ` +
          'pass a clone() of the argument (or write through one of them only)');
      }
    }
    for (const i of this.argWritten) this.graph.outputs.push({ kind: 'write', node: this.valueOf(argSyms[i]), ref: { arg: i }, label: `arg${i}` });
    this.guards.push(...captureGuards(new Set(this.values.keys())));
    for (const t of this.written) this.graph.outputs.push({ kind: 'write', node: this.values.get(t)!, ref: t, label: labelOf(t) });
    for (const [t, g] of this.grads) {
      if (g === this.gradsInitial.get(t)) continue;
      this.graph.outputs.push({ kind: 'grad', node: g === null ? null : this.valueOf(g), ref: t, label: labelOf(t) + '.grad' });
    }
  }
}

const sameView = (a: Tensor['_view'], b: Tensor['_view']): boolean =>
  a.offset === b.offset && sameShape(a.shape, b.shape) && sameShape(a.strides, b.strides);


/**
 * Traces `fn(...args)`: returns the graph (inputs: args, captures, host scalars; outputs: returned
 * tensors, write-backs, grads) and the guards under which it can be reused.
 */
export function trace(fn: (...args: Tensor[]) => unknown, args: readonly Tensor[], device?: DeviceName): Traced {
  const rec = new Recorder(device ?? args[0]?.device ?? getDefaultDevice(), device === undefined && args.length === 0);
  const symArgs = args.map((a, i) => rec.argument(a, i));
  const prev = setTracer(rec);
  let result: unknown;
  try {
    result = fn(...symArgs);
  } catch (e) {
    if (!rec.switchTo) throw e;
  } finally {
    setTracer(prev);
  }
  if (result instanceof Promise) result.catch(() => {});
  if (rec.switchTo) return trace(fn, args, rec.switchTo);
  if (rec.failure) throw rec.failure;
  if (result instanceof Promise) throw new TraceError('the function passed to compile() must be synchronous (it returned a Promise)');
  const returns = flatten(result, rec);
  // Gradients that backward() left on symbolic arguments go back to the real arguments.
  symArgs.forEach((s, i) => {
    if (s._grad && s._grad !== rec.argGrads[i]) rec.graph.outputs.push({ kind: 'grad', node: rec.valueOf(s._grad), ref: { arg: i }, label: `arg${i}.grad` });
  });
  rec.finish(symArgs);
  return { device: rec.device, graph: rec.graph, guards: rec.guards, returns, checks: rec.checks };
}

function flatten(v: unknown, rec: Recorder): ReturnTree {
  if (v === undefined || v === null) return null;
  if (v instanceof Tensor) {
    rec.graph.outputs.push({ kind: 'return', node: rec.valueOf(v), label: `return ${rec.graph.outputs.filter((o) => o.kind === 'return').length}` });
    return rec.graph.outputs.length - 1;
  }
  if (Array.isArray(v)) return v.map((x) => flatten(x, rec));
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, flatten(x, rec)]));
  throw new TraceError(`a compiled function must return tensors, arrays or objects of tensors, or nothing (got ${typeof v})`);
}
