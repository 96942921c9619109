// A kernel's arguments: which ones it reads or writes, and the same kernel with them renumbered -- the
// fusion pass's tools, apart from ./kernel.ts (which eager code loads) because only the compiler needs them.

import { exprLoads, mapLoads, unreachable, type Expr, type Kernel, type KernelOutput } from './kernel.ts';

/** The expressions of a kernel (the one place that knows where each kernel kind keeps them). */
export function kernelExprs(k: Kernel): Expr[] {
  switch (k.kind) {
    case 'map': return k.exprs;
    case 'reduce': return [k.body, k.epilogue];
    case 'matmul': return [k.a, k.b, k.epilogue];
    case 'conv': return [k.x, k.w, k.epilogue];
    case 'gather': return [k.index];
    case 'scatterAdd': return [k.index, k.src];
    default: return unreachable(k, 'kernel');
  }
}

/** The arguments a kernel reads or writes, ascending. */
export function kernelArgs(k: Kernel): number[] {
  const used = new Set<number>();
  for (const e of kernelExprs(k)) for (const l of exprLoads(e)) used.add(l.arg);
  switch (k.kind) {
    case 'map': for (const o of k.outputs) used.add(o.arg); break;
    case 'gather': used.add(k.src.arg); used.add(k.output.arg); break;
    case 'reduce': case 'matmul': case 'conv': case 'scatterAdd': used.add(k.output.arg); break;
    default: return unreachable(k, 'kernel');
  }
  return [...used].sort((a, b) => a - b);
}

/** The same kernel with every argument index `a` replaced by `f(a)` (loads and outputs alike). */
export function mapKernelArgs(k: Kernel, f: (arg: number) => number): Kernel {
  const e = (x: Expr): Expr => mapLoads(x, (l) => ({ ...l, arg: f(l.arg) }))!;
  const o = (x: KernelOutput): KernelOutput => ({ ...x, arg: f(x.arg) });
  switch (k.kind) {
    case 'map': return { ...k, exprs: k.exprs.map(e), outputs: k.outputs.map(o) };
    case 'reduce': return { ...k, body: e(k.body), epilogue: e(k.epilogue), output: o(k.output) };
    case 'matmul': return { ...k, a: e(k.a), b: e(k.b), epilogue: e(k.epilogue), output: o(k.output) };
    case 'conv': return { ...k, x: { ...k.x, arg: f(k.x.arg) }, w: { ...k.w, arg: f(k.w.arg) }, epilogue: e(k.epilogue), output: o(k.output) };
    case 'gather': return { ...k, src: { ...k.src, arg: f(k.src.arg) }, index: e(k.index), output: o(k.output) };
    case 'scatterAdd': return { ...k, index: e(k.index), src: e(k.src), output: o(k.output) };
    default: return unreachable(k, 'kernel');
  }
}
