// Common-subexpression elimination: one node per (op, attributes, inputs). Inputs are never merged.

import type { Graph } from '../../ir/graph.ts';
import { structuralKey } from '../../ir/key.ts';
import { rewrite } from './rewrite.ts';

export function cse(g: Graph): Graph {
  const seen = new Map<string, number>();
  return rewrite(g, (n, out) => {
    if (n.op === 'input') return out.add(n).id;
    const key = `${n.op}|${structuralKey(n.attrs)}|${n.inputs.join(',')}|${n.dtype}|${n.shape.join(',')}`;
    const hit = seen.get(key);
    if (hit !== undefined) return hit;
    const id = out.add(n).id;
    seen.set(key, id);
    return id;
  });
}
