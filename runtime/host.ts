// Host values that change between calls of a compiled step (a learning rate a scheduler changes,
// hyper-parameters the user edits). Eagerly they are plain numbers; while tracing they become
// scalar inputs of the graph that the compiled step re-reads on every call, never stale constants.

import { fmt } from '../ir/shape.ts';
import { activeTracer } from './dispatch.ts';
import type { Tensor } from './tensor.ts';

/** `dtype`: the type of the traced scalar (float64 where it scales float64 tensors, so they see every digit). */
export function hostScalar(read: () => number, dtype: 'float32' | 'float64' = 'float32'): number | Tensor {
  const tracer = activeTracer();
  return tracer ? tracer.hostScalar(read, dtype) : read();
}

/** Registers that a JavaScript branch taken while tracing depends on `check()` staying true. */
export function traceGuard(check: () => boolean, label: string): void {
  activeTracer()?.guard(check, label);
}

/** A check that a compiled step is still valid for the current host state. */
export interface HostGuard { check: () => boolean; label: string }

const captureGuardProviders: ((captured: ReadonlySet<Tensor>) => HostGuard[])[] = [];

/**
 * Lets the library guard where captured tensors come from: `nn` reports, for each captured
 * parameter, the module attribute that holds it, so replacing `lin.weight` retraces the step.
 */
export function onCapture(provider: (captured: ReadonlySet<Tensor>) => HostGuard[]): void {
  captureGuardProviders.push(provider);
}

export function captureGuards(captured: ReadonlySet<Tensor>): HostGuard[] {
  return captureGuardProviders.flatMap((p) => p(captured));
}

// The one name registry for tensors. A name the library gave (`given`) is kept apart from an
// automatic one so that callers can ask whether a tensor has been named (givenLabel).
const labels = new WeakMap<Tensor, { label: string; given: boolean }>();
let labelCount = 0;
/** A stable short name for a tensor in compile's listings (`t3[512, 784]`, or what the library set). */
export function labelOf(t: Tensor): string {
  let l = labels.get(t);
  if (!l) {
    l = { label: `t${labelCount++}${fmt(t.shape)}`, given: false };
    labels.set(t, l);
  }
  return l.label;
}
/** Lets the library name captured tensors (e.g. a module names its parameters `fc1.weight`). */
export function setLabel(t: Tensor, label: string): void { labels.set(t, { label, given: true }); }
/** The name setLabel gave `t`, if any (never an automatic one). */
export function givenLabel(t: Tensor): string | undefined {
  const l = labels.get(t);
  return l?.given ? l.label : undefined;
}
