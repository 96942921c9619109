// Tracing: runs the user's step once on symbolic tensors through the ordinary dispatcher and records
// every primitive into a Graph. Tensors the step reads without receiving them (parameters, optimizer
// state, their .grad) are lifted to inputs by reference; in-place writes and .grad assignments to them
// become outputs that the executor writes back after each call. Nothing real is modified while tracing.

import { Graph, type InputSource, type Phase } from '../ir/graph.ts';
import type { AVal, PrimAttrs, Primitive } from '../ir/primitives.ts';
import { fmt, sameShape } from '../ir/shape.ts';
import { isContiguous } from '../ir/view.ts';
import { setTracer, type Tracer } from '../runtime/dispatch.ts';
import { captureGuards, labelOf } from '../runtime/host.ts';
import { getDefaultDevice, type DeviceName } from '../runtime/device.ts';
import { Tensor } from '../runtime/tensor.ts';
import { describeLocation, describeUserSource, userFrame } from './source.ts';

/** Thrown when traced code does something a static graph cannot express (reading values to branch). */
export class TraceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TraceError';
  }
}

interface SymHandle { trace: Recorder; id: number }

/** A check that must hold for a traced graph to be reused. */
export interface Guard { check: () => boolean; label: string }

/** A returned value's shape: where each returned tensor goes. */
export type ReturnTree = null | number | ReturnTree[] | { [key: string]: ReturnTree };

export interface Traced {
  graph: Graph;
  guards: Guard[];
  returns: ReturnTree;
}

class Recorder implements Tracer {
  constructor(readonly device: DeviceName) {}
  graph = new Graph();
  phase: Phase = 'forward';
  guards: Guard[] = [];
  /** concrete tensor → node holding its current value (updated by in-place writes) */
  private values = new Map<Tensor, number>();
  private written = new Set<Tensor>();
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
      return h.id;
    }
    let id = this.values.get(t);
    if (id === undefined) {
      const view = t._view, storage = t._storage;
      id = this.input({ kind: 'capture', ref: t, label: labelOf(t), view }, t);
      this.values.set(t, id);
      this.guards.push({ check: () => t._storage === storage || (t._storage !== null && t._storage.size === storage.size && sameView(t._view, view)), label: `layout of ${labelOf(t)}` });
    }
    return id;
  }

  record<P extends Primitive>(prim: P, inputs: readonly Tensor[], attrs: PrimAttrs[P], out: AVal, device: DeviceName): Tensor {
    const ids = inputs.map((x) => this.valueOf(x));
    const node = this.graph.add({ op: prim, attrs, inputs: ids, shape: [...out.shape], dtype: out.dtype, phase: this.phase, source: describeUserSource() });
    return this.symbolic(node.id, device);
  }

  assign(target: Tensor, value: Tensor): void {
    const id = this.valueOf(value);
    if (target._base) {
      throw this.fail(`an in-place write into a view (shape ${fmt(target.shape)}) of a tensor of shape ${fmt(target._base.shape)} cannot be compiled; ` +
        `compute the whole new value and write it with copy_ or an out-of-place op${where()}`);
    }
    if (target._storage === null) {
      (target._sym as SymHandle).id = id;
      return;
    }
    if (!isContiguous(target._view) || target._view.offset !== 0 || target._storage.size !== target.numel()) {
      throw this.fail(`an in-place write into a view of ${labelOf(target)} (shape ${fmt(target.shape)}) cannot be compiled; write the whole tensor${where()}`);
    }
    this.valueOf(target);
    this.values.set(target, id);
    this.written.add(target);
  }

  /** The first TraceError raised while tracing (async code may have swallowed it). */
  failure: TraceError | null = null;

  read(t: Tensor, method: string): never {
    const loc = userFrame();
    throw this.fail(`${method} reads the value of a traced tensor (shape ${fmt(t.shape)}) inside a compiled function${loc ? ` at ${describeLocation(loc)}` : ''}. ` +
      'Compiled code cannot branch on tensor values: return the tensor from the compiled function and read it outside, or express the choice with kiln.where().');
  }

  private fail(message: string): TraceError {
    const e = new TraceError(message);
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

  hostScalar(read: () => number): Tensor {
    const id = this.graph.add({ op: 'input', attrs: { kind: 'host', read, label: 'host scalar' }, inputs: [], shape: [], dtype: 'float32', phase: this.phase, source: describeUserSource() }).id;
    return this.symbolic(id, this.device);
  }

  guard(check: () => boolean, label: string): void { this.guards.push({ check, label }); }

  /** Outputs for in-place writes and .grad changes, after the step's function returned. */
  finish(): void {
    this.guards.push(...captureGuards(new Set(this.values.keys())));
    for (const t of this.written) this.graph.outputs.push({ kind: 'write', node: this.values.get(t)!, ref: t, label: labelOf(t) });
    for (const [t, g] of this.grads) {
      if (g === this.gradsInitial.get(t)) continue;
      this.graph.outputs.push({ kind: 'grad', node: g === null ? null : this.valueOf(g), ref: t, label: labelOf(t) + '.grad' });
    }
  }
}

const where = (): string => {
  const loc = userFrame();
  return loc ? ` (at ${describeLocation(loc)})` : '';
};

const sameView = (a: Tensor['_view'], b: Tensor['_view']): boolean =>
  a.offset === b.offset && sameShape(a.shape, b.shape) && sameShape(a.strides, b.strides);


/**
 * Traces `fn(...args)`: returns the graph (inputs: args, captures, host scalars; outputs: returned
 * tensors, write-backs, grads) and the guards under which it can be reused.
 */
export function trace(fn: (...args: Tensor[]) => unknown, args: readonly Tensor[], device: DeviceName = args[0]?.device ?? getDefaultDevice()): Traced {
  const rec = new Recorder(device);
  const symArgs = args.map((a, i) => rec.argument(a, i));
  const prev = setTracer(rec);
  let result: unknown;
  try {
    result = fn(...symArgs);
  } finally {
    setTracer(prev);
  }
  if (result instanceof Promise) result.catch(() => {});
  if (rec.failure) throw rec.failure;
  if (result instanceof Promise) throw new TraceError('the function passed to compile() must be synchronous (it returned a Promise)');
  const returns = flatten(result, rec);
  // Gradients that backward() left on symbolic arguments go back to the real arguments.
  symArgs.forEach((s, i) => {
    if (s._grad && s._grad !== rec.argGrads[i]) rec.graph.outputs.push({ kind: 'grad', node: rec.valueOf(s._grad), ref: { arg: i }, label: `arg${i}.grad` });
  });
  rec.finish();
  return { graph: rec.graph, guards: rec.guards, returns };
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
