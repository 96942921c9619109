// The one way passes rebuild a graph: visit nodes in order, let a rule map each to a node of the new
// graph (an existing one, or a new one it adds), then carry the outputs over.

import { Graph, type Node, type NodeInit } from '../../ir/graph.ts';

export type { NodeInit };
/** Returns the new id for `node` (whose inputs are already mapped into `out`). */
export type RewriteRule = (node: NodeInit, out: Graph, old: Node) => number;

export function rewrite(g: Graph, rule: RewriteRule, keep: (n: Node) => boolean = () => true): Graph {
  const out = new Graph();
  const map = new Array<number>(g.nodes.length).fill(-1);
  for (const n of g.nodes) {
    if (!keep(n)) continue;
    const { id: _, ...init } = n;
    const mapped: NodeInit = { ...init, inputs: n.inputs.map((i) => map[i]) };
    map[n.id] = rule(mapped, out, n);
  }
  out.outputs = g.outputs.map((o) => ({ ...o, node: o.node === null ? null : map[o.node] }));
  return out;
}

export const addNode = (n: NodeInit, out: Graph): number => out.add(n).id;
