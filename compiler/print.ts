// Printers for what the compiler produces, as objects whose toString() is the listing (so a
// `Lowered` can hold them cheaply and print them on demand): a graph (one node per line), the
// schedule (kernels in launch order with the buffers each binds) and the memory plan (pooled slots
// with their sizes and the lifetimes of the buffers sharing them, plus fresh and in-place buffers).

import { formatNode, type Graph, type Node } from '../ir/graph.ts';
import { bytesPerElement } from '../ir/dtype.ts';
import { fmt } from '../ir/shape.ts';
import type { Schedule } from './passes/fusion.ts';
import type { MemoryPlan } from './passes/memory.ts';

/** A readable IR listing (`toString()`), one node per line. */
export class GraphListing {
  constructor(readonly title: string, readonly graph: Graph, readonly nodes: readonly Node[], private showOutputs: boolean) {}
  toString(): string {
    const lines = [`${this.title}: ${this.nodes.length} nodes`, ...this.nodes.map(formatNode)];
    if (this.showOutputs) for (const o of this.graph.outputs) lines.push(`  ${o.kind.padEnd(6)} ${o.label} <- ${o.node === null ? 'null' : '%' + o.node}`);
    return lines.join('\n');
  }
}

/** `%3 f32[4, 8]`: a node's buffer as a kernel binds it. */
const buffer = (g: Graph, id: number): string => {
  const n = g.node(id);
  return `%${id} ${n.dtype}${fmt(n.shape)}`;
};

/** The kernels in launch order: what each computes, the buffers it reads and the ones it writes. */
export class ScheduleListing {
  constructor(readonly graph: Graph, readonly schedule: Schedule) {}
  toString(): string {
    const { graph: g, schedule: s } = this;
    const lines = [`schedule: ${s.kernels.length} kernel launch(es), in order`];
    s.kernels.forEach((k, i) => {
      const reads = k.args.filter((a) => !k.writes.includes(a));
      lines.push(`  #${i} ${k.spec.name} (${k.spec.kernel.kind}, ${k.nodes.length} node(s): ${k.nodes.map((n) => '%' + n).join(' ')})`);
      lines.push(`      reads  ${reads.length ? reads.map((a) => buffer(g, a)).join(', ') : '-'}`);
      lines.push(`      writes ${k.writes.map((w) => buffer(g, w)).join(', ')}`);
    });
    return lines.join('\n');
  }
}

/**
 * Where every realized node lives: pooled slots (dtype, size, and which nodes share each, with the
 * kernel range each is live over: written by launch #a, last read by #b, `end` when it is an output),
 * buffers allocated fresh per call (returned values), and results computed into a captured tensor.
 */
export class MemoryListing {
  constructor(readonly graph: Graph, readonly schedule: Schedule, readonly plan: MemoryPlan) {}
  toString(): string {
    const { graph: g, schedule: s, plan } = this;
    const first = new Map<number, number>();
    const last = new Map<number, number>();
    s.kernels.forEach((k, i) => {
      for (const w of k.writes) if (!first.has(w)) first.set(w, i);
      for (const a of k.args) last.set(a, Math.max(last.get(a) ?? -1, i));
    });
    const outputs = new Set(g.outputs.flatMap((o) => (o.node === null ? [] : [o.node])));
    const life = (id: number): string => `#${first.get(id) ?? '?'}..${outputs.has(id) ? 'end' : '#' + (last.get(id) ?? '?')}`;
    const lines = [`memory plan: ${plan.slots.length} pooled slot(s), ${plan.peakBytes} bytes`];
    plan.slots.forEach((slot, i) => {
      const holders = [...plan.slotOf].filter(([, sl]) => sl === i).map(([node]) => `%${node} ${life(node)}`);
      lines.push(`  slot ${i}: ${slot.dtype}[${slot.size}] ${slot.size * bytesPerElement(slot.dtype)} bytes  <- ${holders.join(', ')}`);
    });
    for (const id of plan.fresh) lines.push(`  fresh   ${buffer(g, id)} ${life(id)} (returned: a new buffer each call)`);
    for (const [id, ref] of plan.inPlace) {
      const label = g.outputs.find((o) => o.kind === 'write' && o.ref === ref)?.label ?? 'a captured tensor';
      lines.push(`  inplace ${buffer(g, id)} ${life(id)} (computed into ${label})`);
    }
    return lines.join('\n');
  }
}
