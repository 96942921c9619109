// Dead-code elimination: keeps only the nodes the outputs depend on.

import type { Graph } from '../../ir/graph.ts';
import { addNode, rewrite } from './rewrite.ts';

export function dce(g: Graph): Graph {
  const live = new Uint8Array(g.nodes.length);
  const stack = g.outputs.flatMap((o) => (o.node === null ? [] : [o.node]));
  while (stack.length) {
    const id = stack.pop()!;
    if (live[id]) continue;
    live[id] = 1;
    stack.push(...g.nodes[id].inputs);
  }
  return rewrite(g, addNode, (n) => live[n.id] === 1);
}
