// Memory planning: which buffer each realized node lives in. Temporaries share pooled slots by
// liveness; returned values get fresh storage per call (the caller keeps them); an in-place update
// of a captured tensor is computed straight into that tensor's storage when no later kernel needs
// the old value.

import type { DType } from '../../ir/dtype.ts';
import type { Graph } from '../../ir/graph.ts';
import { exprLoads, unreachable, type Expr } from '../../ir/kernel.ts';
import { bytesPerElement } from '../../ir/dtype.ts';
import { numel } from '../../ir/shape.ts';
import { isContiguous, type View } from '../../ir/view.ts';
import type { Schedule, ScheduledKernel } from './fusion.ts';

export interface MemoryPlan {
  /** node → pooled slot */
  slotOf: Map<number, number>;
  slots: { dtype: DType; size: number }[];
  /** nodes allocated fresh on every call (returned values) */
  fresh: Set<number>;
  /** node → the captured tensor (a write-back target) whose storage it is computed into */
  inPlace: Map<number, unknown>;
  /** bytes of pooled temporaries */
  peakBytes: number;
}

function readsOnlyAtOutput(k: ScheduledKernel, inputArg: number): boolean {
  const kern = k.spec.kernel;
  const ok = (es: Expr[]) => es.every((e) => loadViewsOf(e, inputArg).every((v) => isContiguous(v) && v.offset === 0));
  switch (kern.kind) {
    case 'map': return kern.outputs.every((o) => isContiguous(o.view) && o.view.offset === 0) && ok(kern.exprs);
    case 'reduce': return loadViewsOf(kern.body, inputArg).length === 0 && ok([kern.epilogue]);
    case 'matmul': return loadViewsOf(kern.a, inputArg).length === 0 && loadViewsOf(kern.b, inputArg).length === 0 && ok([kern.epilogue]);
    case 'conv': return kern.x.arg !== inputArg && kern.w.arg !== inputArg && ok([kern.epilogue]);
    // gather and scatterAdd read their operands at other positions than they write
    case 'gather': case 'scatterAdd': return false;
    default: return unreachable(kern, 'kernel');
  }
}

const loadViewsOf = (e: Expr, arg: number): View[] => exprLoads(e).filter((l) => l.arg === arg).map((l) => l.view);

export function planMemory(g: Graph, sched: Schedule): MemoryPlan {
  const { kernels } = sched;
  const producer = new Map<number, number>();
  kernels.forEach((k, i) => k.writes.forEach((w) => { if (!producer.has(w)) producer.set(w, i); }));
  const outputCount = new Map<number, number>();
  for (const o of g.outputs) if (o.node !== null) outputCount.set(o.node, (outputCount.get(o.node) ?? 0) + 1);

  const fresh = new Set<number>();
  for (const o of g.outputs) if (o.kind === 'return' && o.node !== null) fresh.add(o.node);

  const inPlace = new Map<number, unknown>();
  for (const o of g.outputs) {
    if (o.kind !== 'write' || o.node === null || outputCount.get(o.node) !== 1 || !producer.has(o.node)) continue;
    const kIndex = producer.get(o.node)!;
    const k = kernels[kIndex];
    if (k.writes.length !== 1 && k.spec.kernel.kind !== 'map') continue;
    if (g.node(o.node).op === 'pad') continue;
    // Only captured tensors (an argument written in place goes back through its caller's view).
    const input = g.inputNodes.find((n) => n.attrs.kind === 'capture' && n.attrs.ref === o.ref);
    if (!input) continue;
    const readers = kernels.map((kk, i) => (kk.args.includes(input.id) ? i : -1)).filter((i) => i >= 0);
    if (readers.some((i) => i > kIndex)) continue;
    if (readers.includes(kIndex) && !readsOnlyAtOutput(k, k.args.indexOf(input.id))) continue;
    inPlace.set(o.node, o.ref);
  }

  // Liveness: a pooled buffer lives from its producer to its last reader (to the end for write-backs).
  const lastUse = new Map<number, number>();
  kernels.forEach((k, i) => k.args.forEach((a) => lastUse.set(a, Math.max(lastUse.get(a) ?? -1, i))));
  for (const o of g.outputs) if (o.node !== null) lastUse.set(o.node, Infinity);

  const slots: { dtype: DType; size: number }[] = [];
  const slotOf = new Map<number, number>();
  const free: number[] = [];
  const live: { node: number; slot: number }[] = [];
  kernels.forEach((k, i) => {
    for (let j = live.length - 1; j >= 0; j--) {
      if ((lastUse.get(live[j].node) ?? -1) < i) { free.push(live[j].slot); live.splice(j, 1); }
    }
    for (const w of k.writes) {
      if (slotOf.has(w) || fresh.has(w) || inPlace.has(w) || g.node(w).op === 'input') continue;
      const n = g.node(w);
      const size = numel(n.shape);
      const f = free.findIndex((s) => slots[s].dtype === n.dtype && slots[s].size === size);
      const slot = f >= 0 ? free.splice(f, 1)[0] : slots.push({ dtype: n.dtype, size }) - 1;
      slotOf.set(w, slot);
      live.push({ node: w, slot });
    }
  });
  const peakBytes = slots.reduce((b, s) => b + s.size * bytesPerElement(s.dtype), 0);
  return { slotOf, slots, fresh, inPlace, peakBytes };
}
