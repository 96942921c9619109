// Eager elementwise fusion: a backend whose launches are expensive (WebGPU: ~15 us of driver time per
// dispatch on lavapipe, however small the kernel) records eager elementwise ops instead of launching
// them, and launches the recorded chain as a few multi-output map kernels when anything else touches the
// device (another kernel, a read, a write, a flush).
//
// Eager semantics are kept: the dispatcher has already checked shapes and dtypes and allocated the
// result's storage when an op is recorded (errors are raised at the op, kiln.memory() counts the
// storage at once), every recorded result is written to its storage at the flush (nothing is skipped:
// which tensors are still referenced is unknowable until the garbage collector runs), and the group
// holds its operands' storages until then, so their buffers cannot be reused under it. Each op is
// computed by its entry of the lowering table (compiler/lower.ts), as one-op eager kernels are; a value
// a later op of the same kernel uses is recomputed in registers instead of being read back. In-place
// writes (an optimizer's `p.sub_(...)`) join the group as copies into the target's storage.
//
// A flush costs little once warm: the group's structure (ops, attributes, operand layouts and dtypes)
// is spelled as a string while ops are recorded, and the kernels and prepared launchers are cached by
// it. A structure seen for the first time runs one kernel per op (the shaders eager ops share, so code
// that runs once compiles nothing new); from its second time on it runs fused, so a training loop
// compiles its fused shaders in its second iteration only.

import { lowerings, mapKernel } from '../compiler/lower.ts';
import { maxKernelArgs, type Target } from '../compiler/target.ts';
import type { DType } from '../ir/dtype.ts';
import type { Expr, KernelArg, KernelOutput, KernelSpec } from '../ir/kernel.ts';
import type { AVal, PrimAttrs, Primitive } from '../ir/primitives.ts';
import { numel } from '../ir/shape.ts';
import { structuralKey } from '../ir/key.ts';
import { contiguousView, isContiguous, type View } from '../ir/view.ts';
import type { BoundArg, EagerOperand, Launch, Storage } from './device.ts';

/** What the group needs of its backend. */
export interface FusionHost {
  target(): Target;
  alloc(dtype: DType, size: number): Storage;
  prepare(spec: KernelSpec): Launch;
  /** The buffer a storage lives in where storages share buffers (WebGPU arena slots); default: its own. */
  bufferOf?(storage: Storage): object;
  /** The bindings a kernel over `buffers` takes (`written[i]`: argument i is written); default: one per argument. */
  bindings?(buffers: readonly object[], written: readonly boolean[]): number;
}

/** Recorded ops a group holds at most before it launches them (bounds kernel size and latency). */
const MAX_OPS = 64;
/** The largest expression tree (shared operands counted per use) one fused op may have; past it, a new kernel. */
const MAX_TREE = 256;
/** Group structures whose kernels are kept (cleared when full: a loop reuses a handful). */
const MAX_CACHED = 256;

/** An operand of a recorded op: a group argument (a storage already computed) or an earlier op. */
type Ref = { arg: number } | { node: number };

interface Node { prim: Primitive; attrs: PrimAttrs[Primitive]; refs: Ref[]; out: AVal }

/** Kernels of one group structure: `bindings[k][a]` is the slot (group args, then op results) kernel k's argument a binds. */
interface Compiled { launches: Launch[]; bindings: number[][] }
/** A structure's kernels: one per op the first time it is seen, fused from the second time on. */
interface Cached { single: Compiled; fused?: Compiled }

export class ElementwiseGroup {
  /** the common shape of the recorded ops (one map kernel iterates over it) */
  private shape: readonly number[] | null = null;
  private args: { storage: Storage; offset: number; view: View; dtype: DType }[] = [];
  private nodes: Node[] = [];
  private outputs: Storage[] = [];
  /** recorded results by storage (a later op reads them as a node) */
  private byStorage = new Map<Storage, number>();
  private key = '';
  private readonly cache = new Map<string, Cached>();
  /** counters for tests and benchmarks: ops recorded, kernels launched, fused structures compiled, flushes */
  readonly stats = { ops: 0, kernels: 0, compiled: 0, flushes: 0 };

  constructor(private readonly host: FusionHost) {}

  /** Whether ops are waiting to be launched. */
  get pending(): boolean { return this.nodes.length > 0; }

  /**
   * Records `prim` (an elementwise lowering) over `inputs`; returns the storage its result will be
   * written to, allocated now.
   */
  record<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: readonly EagerOperand[], out: AVal): Storage {
    this.prepareFor(out.shape, inputs);
    const storage = this.host.alloc(out.dtype, numel(out.shape));
    this.add(prim, attrs, inputs, out, storage);
    return storage;
  }

  /**
   * Records an in-place write of `value` into `target` (an eager `writeInto`) when it can be fused: the
   * same dtype, and the target written whole (contiguous from offset 0). The write becomes a copy op
   * whose result is the target's storage: ops recorded before it read the old value (each invocation
   * computes every value before it stores any), ops recorded after it read the new one. False: the
   * caller launches the copy itself (this group launches first, as before any launch).
   */
  recordWrite(target: EagerOperand, value: EagerOperand): boolean {
    const shape = target.view.shape;
    if (target.dtype !== value.dtype || target.view.offset !== 0 || !isContiguous(target.view) || !sameShape(value.view.shape, shape)) return false;
    this.prepareFor(shape, [value]);
    // an earlier read of the target through another layout (a broadcast, a transpose) may run in another
    // invocation than the one writing that element: those reads are launched first
    if (this.args.some((a) => a.storage === target.storage && !(a.offset === 0 && isContiguous(a.view) && sameShape(a.view.shape, shape)))) this.flush();
    this.shape ??= shape;
    this.add('copy', {}, [value], { shape, dtype: target.dtype }, target.storage);
    return true;
  }

  /** Launches what an op of `shape` over `inputs` cannot join (another shape, a result read through another layout, a full group). */
  private prepareFor(shape: readonly number[], inputs: readonly EagerOperand[]): void {
    if (this.shape && !sameShape(this.shape, shape)) this.flush();
    // an earlier result read through anything but its own layout (a broadcast, a slice) is read from memory
    for (const x of inputs) {
      const n = this.byStorage.get(x.storage);
      if (n !== undefined && !this.readsWhole(x, n)) { this.flush(); break; }
    }
    if (this.nodes.length >= MAX_OPS) this.flush();
    this.shape ??= shape;
  }

  /** Appends an op whose result goes to `storage` (later ops reading that storage whole read the op). */
  private add(prim: Primitive, attrs: PrimAttrs[Primitive], inputs: readonly EagerOperand[], out: AVal, storage: Storage): void {
    const refs: Ref[] = [];
    let key = `${prim}${attrsKey(attrs)}${out.dtype}(`;
    for (const x of inputs) {
      const n = this.byStorage.get(x.storage);
      if (n !== undefined) {
        refs.push({ node: n });
        key += `n${n},`;
      } else {
        const a = this.argOf(x);
        refs.push({ arg: a });
        key += `a${a},`;
      }
    }
    this.key += key + ')';
    this.byStorage.set(storage, this.nodes.length);
    this.nodes.push({ prim, attrs, refs, out });
    this.outputs.push(storage);
    this.stats.ops++;
  }

  /** Launches the recorded ops (their kernels are encoded in order, before anything launched after). */
  flush(): void {
    if (!this.nodes.length) return;
    const { args, outputs, nodes } = this;
    // which arguments share a buffer decides how many bindings a kernel takes: part of the structure
    const table: BoundArg[] = [...args.map((a) => ({ storage: a.storage, offset: a.offset })), ...outputs.map((storage) => ({ storage, offset: 0 }))];
    const buffers = table.map((b) => this.host.bufferOf?.(b.storage) ?? b.storage);
    const first = new Map<object, number>();
    let share = '';
    buffers.forEach((b, i) => {
      const j = first.get(b);
      if (j === undefined) first.set(b, i);
      else share += `${i}=${j},`;
    });
    const key = `${this.shape!.join(',')}|${this.key}|${share}`;
    this.shape = null;
    this.args = [];
    this.nodes = [];
    this.outputs = [];
    this.byStorage = new Map();
    this.key = '';
    let c: Compiled;
    const cached = this.cache.get(key);
    if (!cached) {
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      c = this.compile(args, nodes, buffers, false);
      this.cache.set(key, { single: c });
    } else {
      if (!cached.fused) {
        cached.fused = this.compile(args, nodes, buffers, true);
        this.stats.compiled++;
      }
      c = cached.fused;
    }
    for (let k = 0; k < c.launches.length; k++) c.launches[k](c.bindings[k].map((slot) => table[slot]));
    this.stats.kernels += c.launches.length;
    this.stats.flushes++;
  }

  /** Whether operand `x` reads result `n` whole: its contiguous layout at offset 0 (then it fuses). */
  private readsWhole(x: EagerOperand, n: number): boolean {
    const shape = this.nodes[n].out.shape;
    return x.view.offset === 0 && isContiguous(x.view) && sameShape(x.view.shape, shape);
  }

  /** The group argument reading `x` (one per storage, offset, layout and dtype). */
  private argOf(x: EagerOperand): number {
    const { view } = x;
    for (let i = 0; i < this.args.length; i++) {
      const a = this.args[i];
      if (a.storage === x.storage && a.offset === view.offset && a.dtype === x.dtype && sameShape(a.view.shape, view.shape) && sameShape(a.view.strides, view.strides)) return i;
    }
    this.args.push({ storage: x.storage, offset: view.offset, view: { ...view, offset: 0 }, dtype: x.dtype });
    this.key += `[${x.dtype}:${view.shape.join(',')}:${view.strides.join(',')}]`;
    return this.args.length - 1;
  }

  /**
   * Splits the ops, in order, into map kernels of at most maxKernelArgs bindings each: an op joins the
   * current kernel when the buffers it adds (its result, the arguments of the ops it inlines, and the
   * results of earlier kernels it reads) still fit. `buffers[slot]`: the buffer each slot lives in.
   * Unless `fuse`: then every op is a kernel of its own.
   */
  private compile(args: ElementwiseGroup['args'], nodes: readonly Node[], buffers: readonly object[], fuse: boolean): Compiled {
    const maxArgs = maxKernelArgs(this.host.target());
    const nArgs = args.length;
    const kernelOf: number[] = [];
    const groups: { nodes: number[]; slots: Set<number> }[] = [];
    const fits = (slots: Set<number>, k: number, extra: number): boolean => {
      if (slots.size <= maxArgs || !this.host.bindings) return slots.size <= maxArgs;
      const list = [...slots];
      const written = list.map((s) => s >= nArgs && (s - nArgs === extra || kernelOf[s - nArgs] === k));
      return this.host.bindings(list.map((s) => buffers[s]), written) <= maxArgs;
    };
    // the slots op i reads when placed in kernel k (earlier ops of k are inlined)
    const slotsFor = (i: number, k: number, into: Set<number>, seen = new Set<number>()): void => {
      for (const r of nodes[i].refs) {
        if ('arg' in r) into.add(r.arg);
        else if (kernelOf[r.node] !== k) into.add(nArgs + r.node);
        else if (!seen.has(r.node)) { seen.add(r.node); slotsFor(r.node, k, into, seen); }
      }
    };
    // an op's expression written out as a tree (shared operands counted each time they are used): what
    // the kernel's structural key spells, so it must stay small (x = x * x + x doubles it per op)
    const tree: number[] = [];
    const treeIn = (i: number, k: number): number => nodes[i].refs.reduce((n, r) => n + ('node' in r && kernelOf[r.node] === k ? tree[r.node] : 1), 1);
    for (let i = 0; i < nodes.length; i++) {
      let k = groups.length - 1;
      let need = new Set<number>([nArgs + i]);
      if (k >= 0 && fuse && treeIn(i, k) <= MAX_TREE) {
        slotsFor(i, k, need);
        const union = new Set([...groups[k].slots, ...need]);
        if (fits(union, k, i)) { tree[i] = treeIn(i, k); groups[k].slots = union; groups[k].nodes.push(i); kernelOf[i] = k; continue; }
      }
      k = groups.length;
      need = new Set<number>([nArgs + i]);
      slotsFor(i, k, need);
      groups.push({ nodes: [i], slots: need });
      kernelOf[i] = k;
      tree[i] = treeIn(i, k);
    }
    const slotDType = (s: number): DType => (s < nArgs ? args[s].dtype : nodes[s - nArgs].out.dtype);
    const shape = nodes[0].out.shape;
    const launches: Launch[] = [];
    const bindings: number[][] = [];
    const dims = shape.join('x') || 'scalar';
    groups.forEach((g, k) => {
      // a kernel of one op: operands in order, then the result, named as lowerPrimitive names it, so that
      // it is the shader the op would launch unfused (one source, one pipeline)
      const single = g.nodes.length === 1 ? nodes[g.nodes[0]] : null;
      const slots = single
        ? [...new Set(single.refs.map((r) => ('arg' in r ? r.arg : nArgs + r.node))), nArgs + g.nodes[0]]
        : [...g.slots].sort((a, b) => a - b);
      const argIndex = new Map(slots.map((s, i) => [s, i]));
      const exprs = new Map<number, Expr>();
      const exprOf = (i: number): Expr => {
        const done = exprs.get(i);
        if (done) return done;
        const operands = nodes[i].refs.map((r): Expr => {
          if ('arg' in r) return { kind: 'load', arg: argIndex.get(r.arg)!, view: args[r.arg].view, dtype: args[r.arg].dtype };
          if (kernelOf[r.node] === k) return exprOf(r.node);
          return { kind: 'load', arg: argIndex.get(nArgs + r.node)!, view: contiguousView(shape), dtype: nodes[r.node].out.dtype };
        });
        const l = lowerings[nodes[i].prim];
        if (!('expr' in l)) throw new Error(`kiln: eager fusion recorded ${nodes[i].prim}, which is not elementwise`);
        const e = (l.expr as (xs: readonly Expr[], attrs: PrimAttrs[Primitive], out: AVal) => Expr)(operands, nodes[i].attrs, nodes[i].out);
        exprs.set(i, e);
        return e;
      };
      const outs: KernelOutput[] = g.nodes.map((i) => ({ arg: argIndex.get(nArgs + i)!, view: contiguousView(shape), dtype: nodes[i].out.dtype }));
      const kernel = { ...mapKernel(shape, exprOf(g.nodes[0]), outs[0]), exprs: g.nodes.map(exprOf), outputs: outs };
      const specArgs: KernelArg[] = slots.map((s) => ({ dtype: slotDType(s), size: s >= nArgs && g.nodes.includes(s - nArgs) ? numel(shape) : 0 }));
      const name = single ? `${single.prim}_${dims}` : `eager_${g.nodes.map((i) => nodes[i].prim).join('_').slice(0, 48)}_${dims}`;
      launches.push(this.host.prepare({ name, args: specArgs, kernel, params: 0 }));
      bindings.push(slots);
    });
    return { launches, bindings };
  }
}

/** structuralKey of an op's attributes; most elementwise ops have none (the common case, without JSON). */
function attrsKey(attrs: object): string {
  return Object.keys(attrs).length === 0 ? '{}' : structuralKey(attrs);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
