// The eager autograd tape: grad mode, graph nodes, and a topological (non-recursive) backward pass.
// The VJP rules themselves live in runtime/vjp.ts; inside `compile` the same pass runs on
// symbolic tensors and so records the backward IR.

import { fmt, sameShape } from '../ir/shape.ts';
import { activeTracer } from './dispatch.ts';
import type { Tensor } from './tensor.ts';

let gradEnabled = true;

export const isGradEnabled = (): boolean => gradEnabled;

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs `fn` without recording gradients (PyTorch's `torch.no_grad()`); `fn` must be synchronous. */
export const noGrad = <T>(fn: () => T): T => withGradMode(false, fn);
export const enableGrad = <T>(fn: () => T): T => withGradMode(true, fn);

/** One recorded op: computes its inputs' gradients from its output's gradient. */
export interface GradNode {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  /** null once the graph was freed by a backward without retainGraph */
  vjp: ((g: Tensor) => (Tensor | null)[]) | null;
  /** throws when a tensor the rule reads was modified in place since the op ran */
  check?: () => void;
}

export interface BackwardOptions { retainGraph?: boolean; createGraph?: boolean }

/**
 * Propagates `grads` from `roots` through the tape in topological order. Gradients for tensors in
 * `capture` are returned instead of being accumulated into `.grad` (autograd.grad); otherwise leaves
 * that require grad accumulate.
 */
export function runBackward(roots: readonly Tensor[], rootGrads: readonly Tensor[], opts: BackwardOptions, capture?: readonly Tensor[]): Map<Tensor, Tensor> {
  const createGraph = opts.createGraph ?? false;
  const retainGraph = opts.retainGraph ?? createGraph;
  // Consumers per node (Kahn's algorithm), discovered with an explicit stack.
  const pending = new Map<GradNode, number>();
  const stack: GradNode[] = [];
  for (const r of roots) if (r._ctx && !pending.has(r._ctx)) { pending.set(r._ctx, 0); stack.push(r._ctx); }
  while (stack.length) {
    const node = stack.pop()!;
    for (const x of node.inputs) {
      const c = x._ctx;
      if (!c || !x.requiresGrad) continue;
      if (!pending.has(c)) { pending.set(c, 0); stack.push(c); }
      pending.set(c, pending.get(c)! + 1);
    }
  }
  const captured = new Map<Tensor, Tensor>();
  const captureSet = capture ? new Set(capture) : null;
  const nodeGrad = new Map<GradNode, Tensor>();
  const accumulate = (t: Tensor, g: Tensor) => {
    if (!sameShape(g.shape, t.shape)) throw new Error(`backward: gradient of shape ${fmt(g.shape)} does not match tensor of shape ${fmt(t.shape)}`);
    if (captureSet?.has(t)) {
      const prev = captured.get(t);
      captured.set(t, prev ? prev.add(g) : g);
    }
    if (t._ctx && pending.has(t._ctx)) {
      const prev = nodeGrad.get(t._ctx);
      nodeGrad.set(t._ctx, prev ? prev.add(g) : g);
    } else if (!t._ctx && !captureSet) {
      t._accumulateGrad(g, createGraph);
    }
  };

  for (const n of pending.keys()) {
    if (!n.vjp) {
      throw new Error('Trying to backward through the graph a second time (or directly access saved tensors after they have already been freed). ' +
        'Saved intermediate values of the graph are freed when you call backward(). Specify retainGraph: true if you need to backward through the graph a second time.');
    }
    n.check?.();
  }
  const tracer = activeTracer();
  tracer?.setPhase?.('backward');
  withGradMode(createGraph, () => {
    roots.forEach((r, i) => accumulate(r, rootGrads[i]));
    const ready = [...pending.keys()].filter((n) => pending.get(n) === 0);
    const visited: GradNode[] = [];
    while (ready.length) {
      const node = ready.pop()!;
      visited.push(node);
      const g = nodeGrad.get(node);
      nodeGrad.delete(node);
      if (g) {
        const inGrads = node.vjp!(g);
        node.inputs.forEach((x, i) => {
          const gi = inGrads[i];
          if (gi && x.requiresGrad) accumulate(x, gi);
        });
      }
      for (const x of node.inputs) {
        const c = x._ctx;
        if (!c || !x.requiresGrad || !pending.has(c)) continue;
        const left = pending.get(c)! - 1;
        pending.set(c, left);
        if (left === 0) ready.push(c);
      }
    }
    if (!retainGraph) for (const n of visited) n.vjp = null;
  });
  tracer?.setPhase?.('update');
  return captured;
}
