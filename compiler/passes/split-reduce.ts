// Multi-pass reductions: a long reduction into few outputs (a full sum over a big tensor) leaves most
// of a GPU idle in one workgroup. Rewritten as two reductions — over chunks of about sqrt(n)
// elements, then over the partial results — each pass has enough independent work.

import { primNode, type Graph } from '../../ir/graph.ts';
import type { PrimAttrs, Primitive } from '../../ir/primitives.ts';
import { numel } from '../../ir/shape.ts';
import { rewrite } from './rewrite.ts';

export interface SplitOptions {
  /** reductions of at least this many elements per output are split */
  minExtent: number;
  /** ... when they have at most this many outputs */
  maxOutputs: number;
}

/** A divisor of n near sqrt(n) (within a factor of 4), or null. */
function chunkFor(n: number): number | null {
  const root = Math.sqrt(n);
  for (let d = 0; d < root; d++) {
    for (const c of [Math.floor(root) - d, Math.ceil(root) + d]) {
      if (c > 1 && c < n && n % c === 0 && c >= root / 4 && c <= root * 4) return c;
    }
  }
  return null;
}

export function splitReductions(g: Graph, opts: SplitOptions): Graph {
  return rewrite(g, (n, out) => {
    if (n.op !== 'sum' && n.op !== 'max') return out.add(n).id;
    const x = out.node(n.inputs[0]);
    const axes = n.attrs.axes;
    const extent = axes.reduce((p, a) => p * x.shape[a], 1);
    const outputs = numel(n.shape);
    const chunk = extent >= opts.minExtent && outputs <= opts.maxOutputs ? chunkFor(extent) : null;
    if (chunk === null) return out.add(n).id;
    const add = <P extends Primitive>(op: P, inputs: number[], attrs: PrimAttrs[P], shape: number[]): number =>
      out.add(primNode(op, attrs, { inputs, shape, dtype: n.dtype, phase: n.phase, source: n.source })).id;
    // [kept..., reduced...] -> [outputs, extent / chunk, chunk], then reduce twice.
    const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
    const perm = [...kept, ...axes];
    let v = perm.every((p, i) => p === i) ? x.id : add('permute', [x.id], { perm }, perm.map((p) => x.shape[p]));
    v = add('reshape', [v], { shape: [outputs, extent / chunk, chunk] }, [outputs, extent / chunk, chunk]);
    const first = add(n.op, [v], { axes: [2] }, [outputs, extent / chunk, 1]);
    const second = add(n.op, [first], { axes: [1] }, [outputs, 1, 1]);
    return add('reshape', [second], { shape: [...n.shape] }, [...n.shape]);
  });
}
