// The WGSL map (elementwise) strategy: one invocation per output element of a fused expression DAG,
// dims collapsed where every view walks them contiguously; past `maxWorkgroups`, a grid-stride loop.

import { exprLoads, type Kernel } from '../../../ir/kernel.ts';
import type { View } from '../../../ir/view.ts';
import { collapseDims, indexOf } from '../emit.ts';
import { decompose, emitter, perElement, store, type Args, type Body, type WgslLimits } from './common.ts';

export function mapKernel(k: Extract<Kernel, { kind: 'map' }>, args: Args, lim: WgslLimits, name: string, cap: number): Body {
  const views = [...k.exprs.flatMap((e) => exprLoads(e).map((l) => l.view)), ...k.outputs.map((o) => o.view)];
  const uniq = [...new Set(views)];
  // a view of lower rank than the iteration (a 0-d seed, say) is broadcast: its missing leading dims get stride 0
  const rank = k.shape.length;
  const full = (v: View): number[] => [...new Array<number>(Math.max(0, rank - v.strides.length)).fill(0), ...v.strides];
  const { shape, strides } = collapseDims(k.shape, uniq.map(full));
  const vars = shape.map((_, d) => `i${d}`);
  const collapsed = new Map<View, View>(uniq.map((v, i) => [v, { shape, strides: strides[i], offset: v.offset }]));
  const total = shape.reduce((a, b) => a * b, 1);
  const wg = Math.min(256, lim.maxComputeInvocationsPerWorkgroup);
  // `gi` is the row-major position in k.shape (collapsing dims keeps row-major order): random's counter
  const em = emitter(args, (v, arg) => indexOf(collapsed.get(v)!, vars, args.off(arg)), 'v', undefined, 'gi');
  const values = k.exprs.map((e) => em.emit(e));
  const stores = k.outputs.map((o, j) => store(args, o, indexOf(collapsed.get(o.view)!, vars, args.off(o.arg)), values[j], k.exprs[j].dtype));
  const { main, workgroups } = perElement(total, wg, cap, lim, name, [...decompose('gi', shape, vars, 'q'), ...em.lines, ...stores]);
  return { decls: [], wg, main, workgroups };
}
