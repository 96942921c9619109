// The eager autograd tape: grad mode, graph nodes, a topological (non-recursive) backward pass, and
// `autograd.grad` over it.
// The VJP rules themselves live in runtime/vjp.ts; inside `compile` the same pass runs on
// symbolic tensors and so records the backward IR.

import { fmt, sameShape } from '../ir/shape.ts';
import { activeTracer } from './dispatch.ts';
import { full, type Tensor } from './tensor.ts';

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

export interface GradOptions { gradOutputs?: Tensor | (Tensor | null)[]; retainGraph?: boolean; createGraph?: boolean; allowUnused?: boolean }

/** `kiln.autograd.grad`: the gradients of `outputs` with respect to `inputs`, without touching any `.grad`. */
export function grad(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], opts: GradOptions = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const ins = Array.isArray(inputs) ? inputs : [inputs];
  const gos = opts.gradOutputs === undefined ? [] : Array.isArray(opts.gradOutputs) ? opts.gradOutputs : [opts.gradOutputs];
  for (const x of ins) if (!x.requiresGrad) throw new Error('autograd.grad: one of the inputs does not require grad');
  const rootGrads = outs.map((o, i) => {
    if (!o.requiresGrad) throw new Error(`autograd.grad: output ${i} does not require grad and does not have a gradFn`);
    const g = gos[i];
    if (g) {
      if (!sameShape(g.shape, o.shape)) throw new Error(`autograd.grad: gradOutputs[${i}] has shape ${fmt(g.shape)} but output ${i} has shape ${fmt(o.shape)}`);
      return g;
    }
    if (o.numel() !== 1) throw new Error(`autograd.grad: grad can be implicitly created only for scalar outputs (output ${i} has shape ${fmt(o.shape)})`);
    return noGrad(() => full(o.shape, 1, { dtype: o.dtype, device: o.device }));
  });
  const got = runBackward(outs, rootGrads, { retainGraph: opts.retainGraph, createGraph: opts.createGraph }, ins);
  return ins.map((x, i) => {
    const g = got.get(x) ?? null;
    if (!g && !opts.allowUnused) throw new Error(`autograd.grad: input ${i} was not used in the graph (set allowUnused: true to get null)`);
    return g;
  });
}
