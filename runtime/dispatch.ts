// The one dispatch path (DESIGN principle 2): every Tensor operation ends here. The primitive's shape
// rule validates and types the result; then it is either recorded by the active tracer (inside
// `compile`) or run now on the tensors' device; finally the tape records it for autograd.

import { savedForBackward, vjpRules } from './vjp.ts';
import { copyKernel, lowerings, lowerPrimitive, type Lowering } from '../compiler/lower.ts';
import { isFloat } from '../ir/dtype.ts';
import type { AVal, PrimAttrs, Primitive } from '../ir/primitives.ts';
import { isView, shapeRules } from '../ir/primitives.ts';
import { fmt, numel } from '../ir/shape.ts';
import { structuralKey } from '../ir/key.ts';
import { contiguousView, isContiguous, type View } from '../ir/view.ts';
import { isGradEnabled, type GradNode } from './autograd.ts';
import { backendFor, checkDType, type Backend, type DeviceName, type Launch } from './device.ts';
import { forgetValues, Tensor } from './tensor.ts';

/** Hooks a tracer installs to turn dispatches into IR (jit/trace.ts). */
export interface Tracer {
  /** `aliases`: a view op whose result shares its input's memory (eagerly it would be a view, not a copy). */
  record<P extends Primitive>(prim: P, inputs: readonly Tensor[], attrs: PrimAttrs[P], out: AVal, device: DeviceName, aliases: boolean): Tensor;
  /** `target`'s value is replaced by `value` (an in-place op). */
  assign(target: Tensor, value: Tensor): void;
  /** Code tried to read values of `t` (item(), data(), ...). */
  read(t: Tensor, method: string): never;
  /** `t.grad` of a concrete tensor while tracing: the traced value (symbolic, captured or null). */
  gradRead(t: Tensor): Tensor | null;
  /** `t.grad = g` on a concrete tensor while tracing: becomes a write-back after the step. */
  gradWrite(t: Tensor, g: Tensor | null): void;
  /** A JavaScript branch depends on `check()` staying true (e.g. a module's training flag). */
  guard(check: () => boolean, label: string): void;
  /** Labels the nodes recorded from now on (forward, backward, update) for the listings. */
  setPhase?(phase: 'forward' | 'backward' | 'update'): void;
  /** `check(t)` must pass (return null) for the concrete tensor behind traced `index` on every call. */
  rangeCheck?(index: Tensor, check: (t: Tensor) => string | null): void;
  /** A number read from the host on every call of the compiled step (runtime/host.ts). */
  hostScalar(read: () => number, dtype: 'float32' | 'float64'): Tensor;
}
let tracer: Tracer | null = null;
export const activeTracer = (): Tracer | null => tracer;
export function setTracer(t: Tracer | null): Tracer | null {
  const prev = tracer;
  tracer = t;
  return prev;
}

const gradNames: Partial<Record<Primitive, string>> = { matmul: 'MmBackward', copy: 'CloneBackward', full: 'FullBackward', scatterAdd: 'ScatterAddBackward' };
const gradName = (p: Primitive): string => gradNames[p] ?? p[0].toUpperCase() + p.slice(1) + 'Backward';

export function dispatch<P extends Primitive>(prim: P, inputs: Tensor[], attrs: PrimAttrs[P], device: DeviceName = inputs[0]?.device ?? 'cpu'): Tensor {
  for (const x of inputs) {
    if (x.device !== device) throw new Error(`${prim}: expected all tensors to be on the same device, but found at least two devices, ${device} and ${x.device}`);
  }
  const out = shapeRules[prim](inputs, attrs);
  checkDType(prim, device, out.dtype);
  if (!tracer) {
    for (const x of inputs) if (x._storage === null) throw new Error(`${prim}: a traced tensor escaped its compile() trace; only use tensors a compiled function returns`);
  }
  let result: Tensor;
  let aliases: boolean;
  if (tracer) {
    // Symbolic tensors carry the layout eager execution would give them, so that views, copies and
    // contiguous() alias exactly as they do eagerly.
    const lowering: Lowering<P> = lowerings[prim];
    const view = 'view' in lowering ? lowering.view(inputs[0]._view, attrs, out) : null;
    aliases = view !== null;
    result = tracer.record(prim, inputs, attrs, out, device, aliases);
    if (view) result._view = view;
  } else {
    result = runEager(prim, inputs, attrs, out, device);
    aliases = isView(prim) && result._storage === inputs[0]._storage;
  }
  if (aliases) {
    result._base = inputs[0]._base ?? inputs[0];
    result._vc = inputs[0]._vc;
  }
  if (isGradEnabled() && inputs.some((x) => x.requiresGrad)) {
    const rule = vjpRules[prim];
    const ctx = { inputs, out: result, attrs, prim: <Q extends Primitive>(q: Q, xs: Tensor[], a: PrimAttrs[Q]) => dispatch(q, xs, a) };
    const name = gradName(prim);
    // The rule reads these tensors' values later: an in-place write before backward is an error (PyTorch).
    const saved = savedForBackward(prim, inputs, result);
    const versions = saved.map((t) => t._version);
    const check = (): void => saved.forEach((t, i) => {
      if (t._version !== versions[i]) {
        throw new Error(`backward: one of the variables needed for gradient computation has been modified by an inplace operation: ` +
          `a tensor of shape ${fmt(t.shape)} saved by ${name} is at version ${t._version}; expected version ${versions[i]} ` +
          `(compute the new value out of place, or modify it only after backward)`);
      }
    });
    // A gradient has its input's dtype (PyTorch): a float32 operand promoted into a float64 op gets a float32 gradient.
    const vjp = (g: Tensor) => rule(g, ctx).map((gi, i) => (gi && gi.dtype !== inputs[i].dtype && isFloat(inputs[i].dtype) ? gi.to(inputs[i].dtype) : gi));
    const node: GradNode = { name, inputs, vjp, check };
    result._setGradNode(node);
  }
  return result;
}

function runEager<P extends Primitive>(prim: P, inputs: Tensor[], attrs: PrimAttrs[P], out: AVal, device: DeviceName): Tensor {
  const lowering: Lowering<P> = lowerings[prim];
  if ('view' in lowering) {
    // Views share storage; only a layout the view cannot express (a reshape of a permuted tensor) copies.
    const x = inputs[0];
    const v = lowering.view(x._view, attrs, out);
    if (v) return Tensor._fromStorage(x._storage!, v, out.dtype);
    const copy = runEager('copy', [x], {}, { shape: x.shape, dtype: x.dtype }, device);
    return Tensor._fromStorage(copy._storage!, lowering.view(copy._view, attrs, out)!, out.dtype);
  }
  const backend = backendFor(device);
  if ('expr' in lowering && backend.deferElementwise) {
    // recorded now (checked, allocated), launched fused with its neighbours (runtime/eager-fusion.ts)
    const deferred = backend.deferElementwise(prim, attrs, inputs.map((t) => ({ storage: t._storage!, view: t._view, dtype: t.dtype })), out);
    if (deferred) return Tensor._fromStorage(deferred, contiguousView(out.shape), out.dtype);
  }
  const storage = backend.alloc(out.dtype, numel(out.shape));
  eagerLaunch(backend, prim, attrs, inputs, out)([...inputs.map((t) => ({ storage: t._storage!, offset: t._view.offset })), { storage, offset: 0 }]);
  return Tensor._fromStorage(storage, contiguousView(out.shape), out.dtype);
}

const eagerCache = new Map<string, Launch>();

/**
 * The launcher of one eager op, cached by a cheap key (op, attributes, operand layouts) so that a
 * repeated op skips lowering and codegen. Offsets are not part of it: they are bound at launch.
 */
function eagerLaunch<P extends Primitive>(backend: Backend, prim: P, attrs: PrimAttrs[P], inputs: readonly Tensor[], out: AVal): Launch {
  let key = `${backend.name}|${prim}|${structuralKey(attrs)}|${out.dtype}`;
  for (const t of inputs) key += `|${t.dtype}:${t._view.shape.join(',')}:${t._view.strides.join(',')}`;
  let launch = eagerCache.get(key);
  if (!launch) {
    const specs = lowerPrimitive(prim, attrs, inputs.map((t) => ({ view: { ...t._view, offset: 0 }, dtype: t.dtype })), out);
    const prepared = specs.map((sp) => backend.prepare(sp));
    launch = prepared.length === 1 ? prepared[0] : (args) => { for (const p of prepared) p(args); };
    eagerCache.set(key, launch);
  }
  return launch;
}

/** A tensor whose storage is laid out contiguously from offset 0 (a copy unless it already is). */
export function contiguous(x: Tensor): Tensor {
  // (a traced tensor's memory is its root's: a captured tensor's storage, or a traced value of the root's shape)
  const root = x._base ?? x;
  const size = x._storage?.size ?? root._storage?.size ?? numel(root.shape);
  if (isContiguous(x._view) && x._view.offset === 0 && size === numel(x.shape)) return x;
  return dispatch('copy', [x], {});
}

/** Writes `value` (already broadcast to target's shape) into `target`'s storage through its view. */
export function writeInto(target: Tensor, value: Tensor): void {
  if (tracer) return tracer.assign(target, value);
  forgetValues(target._storage!);
  const backend = backendFor(target.device);
  if (backend.deferWrite?.({ storage: target._storage!, view: target._view, dtype: target.dtype }, { storage: value._storage!, view: value._view, dtype: value.dtype })) return;
  const spec = copyKernel({ view: { ...value._view, offset: 0 }, dtype: value.dtype }, { view: { ...target._view, offset: 0 }, dtype: target.dtype });
  backend.run([spec], [{ storage: value._storage!, offset: value._view.offset }, { storage: target._storage!, offset: target._view.offset }]);
}

export type { View };
