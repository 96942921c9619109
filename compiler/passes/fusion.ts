// Fusion: decides which IR nodes get a buffer ("realized") and builds one kernel per realized node,
// folding everything else into those kernels' expressions. The rules, each a sentence:
//  - Views (reshape/permute/expand/slice) never run: they fold into the load indices of consumers.
//  - Elementwise chains fuse: a node with one consumer is computed inside that consumer's kernel.
//  - An elementwise producer fuses into the reduction (or gather/scatter) that consumes it.
//  - A reduction's or matmul's elementwise consumer fuses into its epilogue when it is the only
//    consumer and the shapes line up (bias + activation; an optimizer update of a gradient).
//  - An elementwise kernel that is the only reader of another elementwise kernel of the same shape
//    absorbs it and writes both outputs (multi-output kernels: Adam's m, v and p in one kernel).
//  - A kernel never binds more buffers than the device allows: if it would, a producer is realized.

import type { DType } from '../../ir/dtype.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { exprLoads, mapLoads, type Expr, type Kernel, type KernelSpec, type LoadExpr } from '../../ir/kernel.ts';
import { isBarrier, isElementwise, isView, type PrimAttrs } from '../../ir/primitives.ts';
import { numel, sameShape } from '../../ir/shape.ts';
import { contiguousView, expandView, isContiguous, permuteView, reshapeView, sliceView, type View } from '../../ir/view.ts';
import { elementwiseExpr } from '../lower.ts';

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


/** Applies a view transform to every load of an expression (elementwise ops commute with views). */
const moveLoads = (e: Expr, f: (v: View) => View | null): Expr | null => mapLoads(e, (l) => { const v = f(l.view); return v && { ...l, view: v }; });

/** Replaces the loads that `match` by `by` (epilogue `acc` or an inlined producer). */
const substitute = (e: Expr, match: (l: LoadExpr) => boolean, by: Expr): Expr => mapLoads(e, (l) => (match(l) ? by : l))!;

const remapArgs = (e: Expr, map: readonly number[]): Expr => mapLoads(e, (l) => ({ ...l, arg: map[l.arg] }))!;

/** A kernel under construction: expressions load from node buffers, numbered as arguments on first use. */
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

  /** The value of node `id` as an expression over its own shape. */
  expr(id: number): Expr {
    const hit = this.memo.get(id);
    if (hit) return hit;
    const n = this.g.node(id);
    let e: Expr;
    if (n.op === 'input') {
      e = { kind: 'load', arg: this.arg(id), view: this.opts.inputViews.get(id)!, dtype: n.dtype };
    } else if (this.realized.has(id) && id !== this.root) {
      e = { kind: 'load', arg: this.arg(id), view: contiguousView(n.shape), dtype: n.dtype };
    } else {
      this.covered.add(id);
      if (n.op === 'full') e = { kind: 'const', value: (n.attrs as PrimAttrs['full']).value, dtype: n.dtype };
      else if (n.op === 'random' && id === this.root) e = { kind: 'random', seed: moveLoads(this.expr(n.inputs[0]), (v) => expandView(v, n.shape))!, dtype: n.dtype };
      else if (isView(n.op)) {
        const x = this.expr(n.inputs[0]);
        const f = viewTransform(n, this.g.node(n.inputs[0]).shape);
        const moved = moveLoads(x, f);
        if (!moved) throw new NeedRealize(n.inputs[0]);
        e = moved;
      } else if (isElementwise(n.op as never)) {
        e = elementwiseExpr(n.op as never, n.attrs as never, n.inputs.map((i) => this.expr(i)), n.dtype);
      } else {
        throw new NeedRealize(id);
      }
    }
    this.memo.set(id, e);
    return e;
  }

  /** An operand that must be a plain load (matmul operands, gather sources). */
  loadOf(id: number): LoadExpr {
    const e = this.expr(id);
    if (e.kind === 'load') return e;
    let base = id;
    while (isView(this.g.node(base).op) && !this.realized.has(base)) base = this.g.node(base).inputs[0];
    throw new NeedRealize(base);
  }
}

function viewTransform(n: Node, inShape: readonly number[]): (v: View) => View | null {
  switch (n.op) {
    case 'reshape': return (v) => reshapeView(v, n.shape);
    case 'permute': return (v) => permuteView(v, (n.attrs as PrimAttrs['permute']).perm);
    case 'expand': return (v) => expandView(v, n.shape);
    case 'slice': { const a = n.attrs as PrimAttrs['slice']; return (v) => sliceView(v, a.starts, a.steps, a.shape); }
    default: throw new Error(`fusion: ${n.op} is not a view (input shape ${inShape.join('x')})`);
  }
}

function buildKernel(g: Graph, realized: Set<number>, opts: FusionOptions, id: number): ScheduledKernel[] {
  const n = g.node(id);
  const b = new KernelBuilder(g, realized, opts, id);
  const outView = contiguousView(n.shape);
  const make = (kernel: Kernel, name: string, args = b.args): ScheduledKernel => {
    const spec: KernelSpec = { name, args: args.map((a) => ({ dtype: g.node(a).dtype, size: numel(g.node(a).shape) })), kernel, params: 0 };
    if (args.length > opts.maxArgs) {
      // Too many bindings: realize the covered producer with the most inputs and try again.
      const candidates = [...b.covered].filter((c) => c !== id && g.node(c).inputs.length > 0);
      if (candidates.length) throw new NeedRealize(candidates.sort((x, y) => g.node(y).inputs.length - g.node(x).inputs.length)[0]);
    }
    return { spec, args: [...args], writes: [id], nodes: [...b.covered].sort((x, y) => x - y) };
  };
  const out = (): { arg: number; view: View; dtype: DType } => ({ arg: b.arg(id), view: outView, dtype: n.dtype });
  const label = `${n.op}_${id}`;
  switch (n.op) {
    case 'sum': case 'max': case 'argmax': {
      b.covered.add(id);
      const inShape = [...g.node(n.inputs[0]).shape];
      const body = b.expr(n.inputs[0]);
      const axes = n.op === 'argmax' ? [(n.attrs as PrimAttrs['argmax']).axis] : (n.attrs as PrimAttrs['sum']).axes;
      return [make({ kind: 'reduce', op: n.op, inShape, axes, body, epilogue: { kind: 'acc', dtype: n.dtype }, output: out() }, label)];
    }
    case 'matmul': {
      b.covered.add(id);
      const a = b.loadOf(n.inputs[0]), bb = b.loadOf(n.inputs[1]);
      const s = n.shape;
      return [make({ kind: 'matmul', batch: s.slice(0, -2), m: s[s.length - 2], n: s[s.length - 1], k: g.node(n.inputs[0]).shape.at(-1)!, a, b: bb, epilogue: { kind: 'acc', dtype: n.dtype }, output: out() }, label)];
    }
    case 'gather': {
      b.covered.add(id);
      const src = b.loadOf(n.inputs[0]);
      const index = b.expr(n.inputs[1]);
      return [make({ kind: 'gather', axis: (n.attrs as PrimAttrs['gather']).axis, shape: [...n.shape], src: { arg: src.arg, view: src.view, dtype: src.dtype }, index, output: out() }, label)];
    }
    case 'scatterAdd': {
      b.covered.add(id);
      const index = b.expr(n.inputs[0]), src = b.expr(n.inputs[1]);
      return [make({ kind: 'scatterAdd', axis: (n.attrs as PrimAttrs['scatterAdd']).axis, srcShape: [...g.node(n.inputs[1]).shape], index, src, output: out() }, label)];
    }
    case 'pad': {
      b.covered.add(id);
      const a = n.attrs as PrimAttrs['pad'];
      const src = b.expr(n.inputs[0]);
      const o = out();
      const zero = make({ kind: 'map', shape: [...n.shape], exprs: [{ kind: 'const', value: 0, dtype: n.dtype }], outputs: [o] }, `${label}_zero`, [id]);
      zero.spec = { ...zero.spec, kernel: { ...(zero.spec.kernel as Extract<Kernel, { kind: 'map' }>), outputs: [{ ...o, arg: 0 }] } };
      const inShape = [...g.node(n.inputs[0]).shape];
      return [zero, make({ kind: 'map', shape: inShape, exprs: [src], outputs: [{ ...o, view: sliceView(outView, a.starts, a.steps, inShape) }] }, label)];
    }
    default: {
      const e = b.expr(id);
      return [make({ kind: 'map', shape: [...n.shape], exprs: [e], outputs: [out()] }, label)];
    }
  }
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
      if (opts.fuse) kernels = fuseEpilogues(g, kernels, opts.maxArgs);
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

    if ((pk.kind === 'reduce' && pk.op !== 'argmax') || pk.kind === 'matmul') {
      // Epilogue fusion: the producer's value is needed by this one-output consumer alone.
      if (consumer.writes.length !== 1 || producer.writes.length !== 1 || pk.epilogue.kind !== 'acc' || outputs.has(rid)) return null;
      const readers = kernels.filter((k) => !removed.has(k) && k !== producer && k.args.includes(rid));
      if (readers.length !== 1 || merged.args.length - 1 > maxArgs) return null;
      const outArg = merged.consumerMap[consumer.args.indexOf(consumer.writes[0])];
      const epilogue = substitute(remapArgs(exprs[0]!, merged.consumerMap), (l) => l.arg === rArg, { kind: 'acc', dtype: pk.epilogue.dtype });
      const remap = (e: Expr): Expr => remapArgs(e, merged.producerMap);
      const output = { arg: outArg, view: contiguousView(rShape), dtype: cmap.outputs[0].dtype };
      const kernel: Kernel = pk.kind === 'reduce' ? { ...pk, body: remap(pk.body), epilogue, output } : { ...pk, a: remap(pk.a), b: remap(pk.b), epilogue, output };
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
  const renum = (a: number): number => (a > drop ? a - 1 : a);
  const kern = k.spec.kernel as Extract<Kernel, { kind: 'reduce' | 'matmul' }>;
  const fix = (e: Expr): Expr => mapLoads(e, (l) => ({ ...l, arg: renum(l.arg) }))!;
  const output = { ...kern.output, arg: renum(kern.output.arg) };
  const kernel: Kernel = kern.kind === 'reduce'
    ? { ...kern, body: fix(kern.body), epilogue: fix(kern.epilogue), output }
    : { ...kern, a: fix(kern.a), b: fix(kern.b), epilogue: fix(kern.epilogue), output };
  return { ...k, args: k.args.filter((_, i) => i !== drop), spec: { ...k.spec, args: k.spec.args.filter((_, i) => i !== drop), kernel } };
}
