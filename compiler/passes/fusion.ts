// Fusion: decides which IR nodes get a buffer ("realized") and builds one kernel per realized node,
// folding everything else into those kernels' expressions. The rules, each a sentence:
//  - Views (reshape/permute/expand/slice) never run: they fold into the load indices of consumers.
//  - Elementwise chains fuse: a node with one consumer is computed inside that consumer's kernel.
//  - An elementwise producer fuses into the reduction (or gather/scatter) that consumes it.
//  - A reduction's or matmul's elementwise consumer fuses into its epilogue when it is the only
//    consumer and the shapes line up (bias + activation; an optimizer update of a gradient).
//  - An elementwise kernel that is the only reader of another elementwise kernel of the same shape
//    absorbs it and writes both outputs (multi-output kernels: Adam's m, v and p in one kernel).
//  - A kernel stores only what the step outputs or a later kernel reads: a multi-output kernel drops
//    the writes of intermediates it now computes itself.
//  - A kernel never binds more buffers than the device allows: if it would, a producer is realized.

import type { Graph, Node } from '../../ir/graph.ts';
import { kernelArgs, mapKernelArgs } from '../../ir/kernel-args.ts';
import { exprLoads, mapLoads, postorder, type Expr, type Kernel, type KernelOutput, type KernelSpec, type LoadExpr } from '../../ir/kernel.ts';
import { isBarrier, isElementwise, isView, type PrimAttrs, type Primitive } from '../../ir/primitives.ts';
import { numel, sameShape } from '../../ir/shape.ts';
import { contiguousView, isContiguous, reshapeView, type View } from '../../ir/view.ts';
import { lowerings, mapKernel, moveLoads, type LoweredKernel, type Lowering } from '../lower.ts';

export interface ScheduledKernel {
  spec: KernelSpec;
  /** the node whose buffer each spec argument binds */
  args: number[];
  /** nodes whose buffers this kernel writes */
  writes: number[];
  /** IR nodes this kernel computes */
  nodes: number[];
}

export interface Schedule {
  kernels: ScheduledKernel[];
  /** nodes that own a buffer (computed by some kernel) */
  realized: Set<number>;
}

export interface FusionOptions {
  fuse: boolean;
  /** the view through which each input node's storage is read */
  inputViews: Map<number, View>;
  /** storage buffers a kernel may bind (WebGPU's maxStorageBuffersPerShaderStage) */
  maxArgs: number;
}

class NeedRealize { constructor(readonly id: number) {} }


/** Replaces the loads that `match` by `by` (epilogue `acc` or an inlined producer). */
const substitute = (e: Expr, match: (l: LoadExpr) => boolean, by: Expr): Expr => mapLoads(e, (l) => (match(l) ? by : l))!;

const remapArgs = (e: Expr, map: readonly number[]): Expr => mapLoads(e, (l) => ({ ...l, arg: map[l.arg] }))!;

/**
 * A kernel under construction: expressions load from node buffers, numbered as arguments on first use.
 * Each node's piece comes from the lowering table, as in eager mode.
 */
class KernelBuilder {
  args: number[] = [];
  covered = new Set<number>();
  private memo = new Map<number, Expr>();
  constructor(private g: Graph, private realized: Set<number>, private opts: FusionOptions, readonly root: number) {}

  arg(id: number): number {
    let i = this.args.indexOf(id);
    if (i < 0) { i = this.args.length; this.args.push(id); }
    return i;
  }

  /** Whether node `id` is read from a buffer here (an input, or a node another kernel computes). */
  private isLoaded(id: number): boolean { return this.g.node(id).op === 'input' || (this.realized.has(id) && id !== this.root); }

  /** The value of node `id` as an expression over its own shape. */
  expr(id: number): Expr {
    // Operands first, without recursion: a fused chain may be thousands of nodes long.
    const order = postorder([id], (i) => (this.memo.has(i) || this.isLoaded(i) ? [] : this.g.node(i).inputs));
    for (const i of order) if (!this.memo.has(i)) this.memo.set(i, this.compute(this.g.node(i)));
    return this.memo.get(id)!;
  }

  /** A node's expression, its operands' expressions already known. */
  private compute(n: Node): Expr {
    if (n.op === 'input') return { kind: 'load', arg: this.arg(n.id), view: this.opts.inputViews.get(n.id)!, dtype: n.dtype };
    if (this.isLoaded(n.id)) return { kind: 'load', arg: this.arg(n.id), view: contiguousView(n.shape), dtype: n.dtype };
    this.covered.add(n.id);
    return this.fold(n.op, n.attrs, n);
  }

  private fold<P extends Primitive>(op: P, attrs: PrimAttrs[P], n: Node): Expr {
    const l: Lowering<P> = lowerings[op];
    const xs = n.inputs.map((i) => this.memo.get(i)!);
    if ('expr' in l) return l.expr(xs, attrs, n);
    if ('view' in l) {
      const moved = moveLoads(xs[0], (v) => l.view(v, attrs, n));
      if (!moved) throw new NeedRealize(n.inputs[0]);
      return moved;
    }
    // an op with kernels of its own is always realized, so only the root gets here
    throw new NeedRealize(n.id);
  }

  /** An operand that must be a plain load (matmul operands, gather sources). */
  loadOf(id: number): LoadExpr {
    const e = this.expr(id);
    if (e.kind === 'load') return e;
    let base = id;
    while (isView(this.g.node(base).op) && !this.realized.has(base)) base = this.g.node(base).inputs[0];
    throw new NeedRealize(base);
  }

  /** The kernels computing the root: its lowering's own, or a map kernel of its fused expression. */
  kernels<P extends Primitive>(op: P, attrs: PrimAttrs[P], n: Node): LoweredKernel[] {
    const l: Lowering<P> = lowerings[op];
    const output = (): KernelOutput => ({ arg: this.arg(n.id), view: contiguousView(n.shape), dtype: n.dtype });
    if (!('kernels' in l)) {
      const value = this.expr(n.id);
      return [{ kernel: mapKernel(n.shape, value, output()) }];
    }
    this.covered.add(n.id);
    return l.kernels({
      attrs, out: n, shapes: n.inputs.map((i) => this.g.node(i).shape), output,
      x: (i) => this.expr(n.inputs[i]), load: (i) => this.loadOf(n.inputs[i]),
    });
  }
}

function buildKernel(g: Graph, realized: Set<number>, opts: FusionOptions, id: number): ScheduledKernel[] {
  const n = g.node(id);
  if (n.op === 'input') throw new Error(`fusion: input %${id} has no kernel`);
  const b = new KernelBuilder(g, realized, opts, id);
  return b.kernels(n.op, n.attrs, n).map(({ kernel, suffix }) => {
    // A kernel binds only the arguments it uses (pad's zero-fill writes its output alone).
    const used = kernelArgs(kernel);
    const args = used.length === b.args.length ? b.args : used.map((a) => b.args[a]);
    if (args !== b.args) kernel = mapKernelArgs(kernel, (a) => used.indexOf(a));
    const spec: KernelSpec = { name: `${n.op}_${id}${suffix ?? ''}`, args: args.map((a) => ({ dtype: g.node(a).dtype, size: numel(g.node(a).shape) })), kernel, params: 0 };
    if (args.length > opts.maxArgs) {
      // Too many bindings: realize the covered producer with the most inputs and try again.
      const candidates = [...b.covered].filter((c) => c !== id && g.node(c).inputs.length > 0);
      if (candidates.length) throw new NeedRealize(candidates.sort((x, y) => g.node(y).inputs.length - g.node(x).inputs.length)[0]);
    }
    return { spec, args: [...args], writes: [id], nodes: [...b.covered].sort((x, y) => x - y) };
  });
}

/** Nodes that must own a buffer before any fusion decision. */
function initialRealized(g: Graph, fuse: boolean): Set<number> {
  const users = g.users();
  const realized = new Set<number>();
  for (const o of g.outputs) if (o.node !== null && g.node(o.node).op !== 'input') realized.add(o.node);
  for (const n of g.nodes) {
    if (n.op === 'input') continue;
    if (isBarrier(n.op)) realized.add(n.id);
    else if (!fuse && !isView(n.op)) realized.add(n.id);
    else if (isElementwise(n.op) && users[n.id].length > 1) realized.add(n.id);
  }
  return realized;
}

export function schedule(g: Graph, opts: FusionOptions): Schedule {
  const realized = initialRealized(g, opts.fuse);
  for (;;) {
    try {
      let kernels: ScheduledKernel[] = [];
      for (const n of g.nodes) if (realized.has(n.id)) kernels.push(...buildKernel(g, realized, opts, n.id));
      if (opts.fuse) kernels = dropDeadWrites(g, fuseEpilogues(g, kernels, opts.maxArgs));
      return { kernels, realized };
    } catch (e) {
      if (!(e instanceof NeedRealize)) throw e;
      if (realized.has(e.id) || g.node(e.id).op === 'input') throw new Error(`fusion: could not schedule node %${e.id}`);
      realized.add(e.id);
    }
  }
}

/** Merges kernels into their consumers (epilogues and multi-output map kernels), see the rules above. */
function fuseEpilogues(g: Graph, kernels: ScheduledKernel[], maxArgs: number): ScheduledKernel[] {
  const outputs = new Set(g.outputs.flatMap((o) => (o.node === null ? [] : [o.node])));
  const producerOf = new Map<number, ScheduledKernel>();
  for (const k of kernels) for (const w of k.writes) producerOf.set(w, k);
  const removed = new Set<ScheduledKernel>();
  const argsOf = (args: readonly number[]) => args.map((a) => ({ dtype: g.node(a).dtype, size: numel(g.node(a).shape) }));

  /** The kernel computing `consumer` with the producer of its argument `argIndex` folded in, or null. */
  const tryMerge = (pos: number, consumer: ScheduledKernel, argIndex: number): { merged: ScheduledKernel; producer: ScheduledKernel } | null => {
    const cmap = consumer.spec.kernel as Extract<Kernel, { kind: 'map' }>;
    const rid = consumer.args[argIndex];
    const producer = producerOf.get(rid);
    if (!producer || producer === consumer || removed.has(producer) || consumer.writes.includes(rid)) return null;
    const pk = producer.spec.kernel;
    const rShape = g.node(rid).shape;
    if (numel(rShape) !== numel(cmap.shape)) return null;
    // Re-express the consumer over the producer's iteration shape (they differ by size-1 dims at most).
    const exprs = sameShape(rShape, cmap.shape) ? cmap.exprs : cmap.exprs.map((e) => moveLoads(e, (v) => reshapeView(v, rShape)));
    if (exprs.some((e) => e === null)) return null;
    // Every output of the producer that the consumer reads must be read at the same position.
    const producedArgs = new Set(consumer.args.flatMap((a, i) => (producer.writes.includes(a) ? [i] : [])));
    const identity = (l: LoadExpr) => !producedArgs.has(l.arg) || (isContiguous(l.view) && l.view.offset === 0 && sameShape(l.view.shape, rShape));
    if (!exprs.every((e) => exprLoads(e!).every(identity))) return null;
    const merged = mergeArgs(producer, consumer);
    const rArg = merged.producerMap[producer.args.indexOf(rid)];
    const nodes = [...producer.nodes, ...consumer.nodes].sort((x, y) => x - y);
    const name = `${producer.spec.name}_${consumer.spec.name}`;

    if (pk.kind === 'reduce' || pk.kind === 'matmul' || pk.kind === 'conv') {
      // Epilogue fusion: the producer's value is needed by this one-output consumer alone.
      if (consumer.writes.length !== 1 || producer.writes.length !== 1 || pk.epilogue.kind !== 'acc' || outputs.has(rid)) return null;
      const readers = kernels.filter((k) => !removed.has(k) && k !== producer && k.args.includes(rid));
      if (readers.length !== 1 || merged.args.length - 1 > maxArgs) return null;
      const outArg = merged.consumerMap[consumer.args.indexOf(consumer.writes[0])];
      const epilogue = substitute(remapArgs(exprs[0]!, merged.consumerMap), (l) => l.arg === rArg, { kind: 'acc', dtype: pk.epilogue.dtype });
      const remap = (e: Expr): Expr => remapArgs(e, merged.producerMap);
      const output = { arg: outArg, view: contiguousView(rShape), dtype: cmap.outputs[0].dtype };
      const kernel: Kernel = pk.kind === 'reduce' ? { ...pk, body: remap(pk.body), epilogue, output }
        : pk.kind === 'conv' ? { ...pk, x: remap(pk.x) as LoadExpr, w: remap(pk.w) as LoadExpr, epilogue, output }
        : { ...pk, a: remap(pk.a), b: remap(pk.b), epilogue, output };
      return { producer, merged: dropArg({ spec: { ...producer.spec, name, args: argsOf(merged.args), kernel }, args: merged.args, writes: consumer.writes, nodes }, rArg) };
    }
    if (pk.kind === 'map' && sameShape(pk.shape, cmap.shape) && pk.outputs.every((o) => isContiguous(o.view) && o.view.offset === 0)) {
      // Multi-output fusion: compute the producer inside the consumer and write both. Its outputs
      // are then written later, so nothing in between may read them.
      const between = kernels.slice(kernels.indexOf(producer) + 1, pos);
      if (between.some((k) => !removed.has(k) && k.args.some((a) => producer.writes.includes(a))) || merged.args.length > maxArgs) return null;
      const pExprs = pk.exprs.map((e) => remapArgs(e, merged.producerMap));
      const pOut = pk.outputs.map((o) => ({ ...o, arg: merged.producerMap[o.arg] }));
      const exprOfArg = new Map(pOut.map((o, i) => [o.arg, pExprs[i]]));
      const cExprs = cmap.exprs.map((e) => mapLoads(remapArgs(e, merged.consumerMap), (l) => exprOfArg.get(l.arg) ?? l)!);
      const kernel: Kernel = { kind: 'map', shape: cmap.shape, exprs: [...pExprs, ...cExprs], outputs: [...pOut, ...cmap.outputs.map((o) => ({ ...o, arg: merged.consumerMap[o.arg] }))] };
      return { producer, merged: { spec: { ...consumer.spec, name, args: argsOf(merged.args), kernel }, args: merged.args, writes: [...producer.writes, ...consumer.writes], nodes } };
    }
    return null;
  };

  for (let pos = 0; pos < kernels.length; pos++) {
    // Keep folding producers into this kernel until none fits (Adam: m, then v, into p's update).
    for (let again = true; again; ) {
      again = false;
      const consumer = kernels[pos];
      if (removed.has(consumer) || consumer.spec.kernel.kind !== 'map') break;
      if (consumer.spec.kernel.outputs.some((o) => !isContiguous(o.view) || o.view.offset !== 0)) break;
      for (const argIndex of consumer.args.keys()) {
        const m = tryMerge(pos, consumer, argIndex);
        if (!m) continue;
        kernels[pos] = m.merged;
        removed.add(m.producer);
        for (const w of m.merged.writes) producerOf.set(w, m.merged);
        again = true;
        break;
      }
    }
  }
  return kernels.filter((k) => !removed.has(k));
}

/**
 * Removes the writes that nothing reads from multi-output kernels: a value that is neither a step
 * output nor bound by another kernel (an intermediate that the kernel now computes where it is used).
 */
function dropDeadWrites(g: Graph, kernels: ScheduledKernel[]): ScheduledKernel[] {
  const outputs = new Set(g.outputs.flatMap((o) => (o.node === null ? [] : [o.node])));
  const binders = new Map<number, number>();
  for (const k of kernels) for (const a of k.args) binders.set(a, (binders.get(a) ?? 0) + 1);
  return kernels.map((k) => {
    const kern = k.spec.kernel;
    if (kern.kind !== 'map' || kern.outputs.length < 2) return k;
    const loaded = new Set(kern.exprs.flatMap((e) => exprLoads(e).map((l) => l.arg)));
    const live = kern.outputs.map((o) => outputs.has(k.args[o.arg]) || binders.get(k.args[o.arg])! > 1 || loaded.has(o.arg));
    if (live.every(Boolean) || !live.some(Boolean)) return k;
    const kept: Kernel = { ...kern, exprs: kern.exprs.filter((_, i) => live[i]), outputs: kern.outputs.filter((_, i) => live[i]) };
    const used = kernelArgs(kept);
    return {
      ...k,
      spec: { ...k.spec, args: used.map((a) => k.spec.args[a]), kernel: mapKernelArgs(kept, (a) => used.indexOf(a)) },
      args: used.map((a) => k.args[a]),
      writes: kept.outputs.map((o) => k.args[o.arg]),
    };
  });
}

/** The union of two kernels' arguments, with index maps from each kernel's numbering. */
function mergeArgs(p: ScheduledKernel, c: ScheduledKernel): { args: number[]; producerMap: number[]; consumerMap: number[] } {
  const args: number[] = [];
  const idx = (id: number): number => { let i = args.indexOf(id); if (i < 0) { i = args.length; args.push(id); } return i; };
  const producerMap = p.args.map(idx);
  const consumerMap = c.args.map(idx);
  return { args, producerMap, consumerMap };
}

/** Removes argument `drop` (an epilogue-fused producer's buffer, no longer read or written). */
function dropArg(k: ScheduledKernel, drop: number): ScheduledKernel {
  const kernel = mapKernelArgs(k.spec.kernel, (a) => (a > drop ? a - 1 : a));
  return { ...k, args: k.args.filter((_, i) => i !== drop), spec: { ...k.spec, args: k.spec.args.filter((_, i) => i !== drop), kernel } };
}
