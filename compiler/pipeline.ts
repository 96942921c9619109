// The compile pipeline in one place: the named graph passes a traced step goes through, in order,
// then fusion (the schedule of kernels) and memory planning. Every stage's graph is kept so that
// `lower()` and KILN_DUMP can print each; with `verify` the IR verifier runs after every pass and
// names the pass that broke the graph.

import type { Graph, InputSource } from '../ir/graph.ts';
import { contiguousView, type View } from '../ir/view.ts';
import { verify } from '../ir/verify.ts';
import { cse } from './passes/cse.ts';
import { dce } from './passes/dce.ts';
import { schedule, type Schedule } from './passes/fusion.ts';
import { planMemory, type MemoryPlan } from './passes/memory.ts';
import { simplify } from './passes/simplify.ts';
import { splitReductions } from './passes/split-reduce.ts';

export interface PipelineOptions {
  /** false: one kernel per op (debugging) */
  fuse: boolean;
  /** storage buffers one kernel may bind (the target's limit) */
  maxArgs: number;
  /** rewrite long reductions into two passes (a GPU wants them; on the CPU one loop is best) */
  splitReductions: boolean;
  /** run the IR verifier after every pass (KILN_VERIFY=1) */
  verify: boolean;
}

export interface GraphPass {
  name: string;
  run: (g: Graph, o: PipelineOptions) => Graph;
}

/**
 * The graph passes, in order. Why this order:
 * - simplify first: folding constants and dropping identities (x*1, copies, identity views) puts
 *   the graph in a canonical form, so that CSE sees equal expressions as equal.
 * - cse then merges the duplicates autodiff creates (backward rules recompute forward values).
 * - simplify again: merged nodes expose new folds (ops whose operands are now the same constant).
 * - dce drops what the rewrites orphaned; a second cse + dce merges nodes that simplify rewrote
 *   into equal forms and removes the leftovers.
 * - split-reduce last: it is a target lowering (GPU only) whose two-pass form the generic passes
 *   must not see (simplify/cse would gain nothing and could only undo it).
 * Fusion runs after all of them because it needs the final graph, and memory planning after fusion
 * because buffer lifetimes are measured in kernel launches.
 */
export const graphPasses: readonly GraphPass[] = [
  { name: 'simplify', run: (g) => simplify(g) },
  { name: 'cse', run: (g) => cse(g) },
  { name: 'simplify.2', run: (g) => simplify(g) },
  { name: 'dce', run: (g) => dce(g) },
  { name: 'cse.2', run: (g) => cse(g) },
  { name: 'dce.2', run: (g) => dce(g) },
  { name: 'split-reduce', run: (g, o) => (o.splitReductions ? splitReductions(g, { minExtent: 1 << 16, maxOutputs: 64 }) : g) },
];

export interface Stage { name: string; graph: Graph }

export interface Pipelined {
  /** 'traced' then one entry per graph pass, in order */
  stages: Stage[];
  /** the last stage's graph: what the schedule runs */
  graph: Graph;
  schedule: Schedule;
  plan: MemoryPlan;
}

/** The view through which each input node is read: captured tensors as traced, the rest contiguous. */
export function inputViews(g: Graph): Map<number, View> {
  const views = new Map<number, View>();
  for (const n of g.inputNodes) {
    const src = n.attrs as InputSource;
    views.set(n.id, src.kind === 'capture' ? src.view : contiguousView(n.shape));
  }
  return views;
}

/** Runs `passes` (the pipeline above unless a test substitutes its own), then fusion and memory planning. */
export function runPipeline(traced: Graph, o: PipelineOptions, passes: readonly GraphPass[] = graphPasses): Pipelined {
  if (o.verify) verify(traced, 'trace');
  const stages: Stage[] = [{ name: 'traced', graph: traced }];
  let g = traced;
  for (const pass of passes) {
    g = pass.run(g, o);
    if (o.verify) verify(g, pass.name);
    stages.push({ name: pass.name, graph: g });
  }
  const sched = schedule(g, { fuse: o.fuse, inputViews: inputViews(g), maxArgs: o.maxArgs });
  return { stages, graph: g, schedule: sched, plan: planMemory(g, sched) };
}
