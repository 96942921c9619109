// Runs a compiled step: binds the step's inputs (arguments, captured tensors, their .grad, host
// scalars) into a storage table, launches the planned kernels over it (on the CPU as one generated
// function), then performs the write-backs (in-place updates, .grad assignments) and wraps returned
// values as tensors. Everything that does not change between calls is worked out once, here.

import { typedArrayFor, type DType, type TypedArray } from '../ir/dtype.ts';
import type { Graph, InputSource } from '../ir/graph.ts';
import { numel } from '../ir/shape.ts';
import { contiguousView, isContiguous } from '../ir/view.ts';
import { copyKernel } from '../compiler/lower.ts';
import type { Schedule } from '../compiler/passes/fusion.ts';
import type { MemoryPlan } from '../compiler/passes/memory.ts';
import type { ReturnTree, ValueCheck } from './trace.ts';
import { noGrad } from '../runtime/autograd.ts';
import { backendFor, type Backend, type DeviceName, type KernelTimes, type Launch, type Program, type Storage } from '../runtime/device.ts';
import type { KernelSpec } from '../ir/kernel.ts';
import { contiguous, writeInto } from '../runtime/dispatch.ts';
import { forgetValues, Tensor } from '../runtime/tensor.ts';

/** How a table entry is filled on each call. */
type Binding =
  | { kind: 'arg'; slot: number; index: number }
  | { kind: 'capture'; slot: number; tensor: Tensor }
  | { kind: 'grad'; slot: number; tensor: Tensor | { arg: number } }
  | { kind: 'host'; slot: number; read: () => number; dtype: DType; value: TypedArray; storage: Storage | null }
  | { kind: 'fresh'; slot: number; dtype: Tensor['dtype']; size: number };

export class Executable {
  private backend: Backend;
  private table: Storage[] = [];
  private slotOfNode = new Map<number, number>();
  private dynamic: Binding[] = [];
  private program: Program;
  private copies = new Map<number, Launch>();
  private pooledReady = false;
  /** the kernels and, per kernel, the table slots its arguments bind (for precompile and profile) */
  readonly specs: KernelSpec[];
  private readonly bindings: number[][];

  constructor(private g: Graph, sched: Schedule, private plan: MemoryPlan, device: DeviceName, private returns: ReturnTree, private checks: readonly ValueCheck[] = []) {
    const b = (this.backend = backendFor(device));
    const slotOf = (node: number): number => {
      let s = this.slotOfNode.get(node);
      if (s === undefined) { s = this.slotOfNode.size; this.slotOfNode.set(node, s); }
      return s;
    };
    for (const n of g.nodes) {
      if (n.op === 'input') {
        const src = n.attrs as InputSource;
        const slot = slotOf(n.id);
        if (src.kind === 'arg') this.dynamic.push({ kind: 'arg', slot, index: src.index });
        else if (src.kind === 'capture') this.dynamic.push({ kind: 'capture', slot, tensor: src.ref as Tensor });
        else if (src.kind === 'grad') this.dynamic.push({ kind: 'grad', slot, tensor: src.ref as Tensor | { arg: number } });
        else this.dynamic.push({ kind: 'host', slot, read: src.read, dtype: n.dtype, value: typedArrayFor(n.dtype, 1), storage: null });
      } else if (plan.inPlace.has(n.id)) {
        this.dynamic.push({ kind: 'capture', slot: slotOf(n.id), tensor: plan.inPlace.get(n.id) as Tensor });
      } else if (plan.fresh.has(n.id)) {
        this.dynamic.push({ kind: 'fresh', slot: slotOf(n.id), dtype: n.dtype, size: numel(n.shape) });
      } else if (plan.slotOf.has(n.id)) {
        slotOf(n.id);
      }
    }
    this.specs = sched.kernels.map((k) => k.spec);
    this.bindings = sched.kernels.map((k) => k.args.map(slotOf));
    this.program = b.prepareProgram(this.specs, this.bindings);
  }

  private copyLaunch(node: number): Launch {
    let l = this.copies.get(node);
    if (!l) {
      const n = this.g.node(node);
      const view = contiguousView(n.shape);
      const spec = copyKernel({ view, dtype: n.dtype }, { view, dtype: n.dtype });
      l = this.backend.prepare(spec);
      this.copies.set(node, l);
    }
    return l;
  }

  run(args: readonly Tensor[]): unknown {
    const early = this.bind(args);
    this.program(this.table);
    return this.finish(args, early);
  }

  /**
   * One real call (same effects and result as `run`) with each kernel timed by the backend
   * (`profileProgram`: GPU timestamps, or the wall clock around each launch).
   */
  async profile(args: readonly Tensor[]): Promise<{ result: unknown; times: KernelTimes }> {
    const early = this.bind(args);
    const { backend, table } = this;
    const times = await backend.profileProgram(this.specs, this.bindings, table);
    return { result: this.finish(args, early), times };
  }

  /** Binds the call's inputs into the table; returns copies of returned inputs, taken before any kernel writes. */
  private bind(args: readonly Tensor[]): Map<number, Tensor> | null {
    const { g, plan, backend, table } = this;
    // Index ranges of arguments and captured tensors, before anything runs (a bad index changes nothing).
    for (const c of this.checks) {
      const msg = c.check(c.source instanceof Tensor ? c.source : args[c.source.arg]);
      if (msg) throw new Error(msg);
    }
    if (!this.pooledReady) {
      const pooled = plan.slots.map((s) => backend.alloc(s.dtype, s.size, 'held'));
      for (const [node, slot] of plan.slotOf) table[this.slotOfNode.get(node)!] = pooled[slot];
      this.pooledReady = true;
    }
    const inputs: Tensor[] = [];
    for (const a of args) inputs.push(a._view.offset === 0 && isContiguous(a._view) ? a : noGrad(() => contiguous(a)));
    for (const d of this.dynamic) {
      switch (d.kind) {
        // arguments, parameters, optimizer state and gradients: the program's split kernels read them
        // (and update the latter in place) from every thread
        case 'arg': backend.share((table[d.slot] = inputs[d.index]._storage!), 'call'); break;
        case 'capture': backend.share((table[d.slot] = d.tensor._storage!), 'held'); break;
        case 'grad': backend.share((table[d.slot] = (d.tensor instanceof Tensor ? d.tensor : args[d.tensor.arg])._grad!._storage!), 'held'); break;
        case 'fresh': table[d.slot] = backend.alloc(d.dtype, d.size, 'call'); break;
        case 'host': {
          d.value[0] = d.read();
          if (!d.storage) d.storage = backend.alloc(d.dtype, 1);
          backend.write(d.storage, d.value);
          table[d.slot] = d.storage;
          break;
        }
      }
    }
    // Outputs that are inputs (returned, written into another tensor, set as a .grad) are copied before
    // anything writes to them: the program and the write-backs may update those very buffers.
    let early: Map<number, Tensor> | null = null;
    for (const o of g.outputs) {
      if (o.node === null || g.node(o.node).op !== 'input' || early?.has(o.node)) continue;
      early ??= new Map();
      const src = g.node(o.node).attrs as InputSource;
      const gradOf = (ref: unknown): Tensor => (ref instanceof Tensor ? ref : args[(ref as { arg: number }).arg])._grad!;
      const t = src.kind === 'arg' ? inputs[src.index] : src.kind === 'capture' ? (src.ref as Tensor) : src.kind === 'grad' ? gradOf(src.ref) : this.tensorOf(o.node);
      early.set(o.node, noGrad(() => t.detach().clone()));
    }
    return early;
  }

  /** Write-backs (in-place updates, .grad) after the kernels, and the returned values. */
  private finish(args: readonly Tensor[], early: Map<number, Tensor> | null): unknown {
    const { g, plan, backend } = this;
    for (const o of g.outputs) {
      if (o.kind === 'write' && o.node !== null) {
        if (o.ref instanceof Tensor) {
          if (!plan.inPlace.has(o.node)) this.copyLaunch(o.node)([{ storage: this.sourceOf(o.node, early), offset: 0 }, { storage: o.ref._storage!, offset: 0 }]);
          forgetValues(o.ref._storage!);
          o.ref._version++;
        } else {
          // An argument written in place: into the caller's tensor, through its view.
          const target = args[(o.ref as { arg: number }).arg];
          const n = g.node(o.node);
          noGrad(() => writeInto(target, Tensor._fromStorage(this.sourceOf(o.node!, early), contiguousView(n.shape), n.dtype)));
          target._version++;
        }
      } else if (o.kind === 'grad') {
        const target = o.ref instanceof Tensor ? o.ref : args[(o.ref as { arg: number }).arg];
        if (o.node === null) { target._grad = null; continue; }
        const old = target._grad;
        if (old && old._storage && old._view.offset === 0 && old._storage.size === old.numel() && old.device === target.device) {
          this.copyLaunch(o.node)([{ storage: this.sourceOf(o.node, early), offset: 0 }, { storage: old._storage, offset: 0 }]);
        } else {
          const n = g.node(o.node);
          const fresh = backend.alloc(n.dtype, target.numel());
          this.copyLaunch(o.node)([{ storage: this.sourceOf(o.node, early), offset: 0 }, { storage: fresh, offset: 0 }]);
          target._grad = Tensor._fromStorage(fresh, contiguousView(n.shape), n.dtype);
        }
      }
    }
    return this.build(this.returns, early);
  }

  /** The returned tree's tensors: outputs' storages, or the early copies of returned inputs. */
  private build(t: ReturnTree, early: Map<number, Tensor> | null): unknown {
    if (t === null) return undefined;
    if (typeof t === 'number') {
      const node = this.g.outputs[t].node!;
      return early?.get(node) ?? this.tensorOf(node);
    }
    if (Array.isArray(t)) return t.map((v) => this.build(v, early));
    return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, this.build(v, early)]));
  }

  private storageOf(node: number): Storage { return this.table[this.slotOfNode.get(node)!]; }

  /** What a write-back copies from: an output's storage, or the early copy of a returned input. */
  private sourceOf(node: number, early: Map<number, Tensor> | null): Storage { return early?.get(node)?._storage ?? this.storageOf(node); }

  private tensorOf(node: number): Tensor {
    const n = this.g.node(node);
    return Tensor._fromStorage(this.storageOf(node), contiguousView(n.shape), n.dtype);
  }
}
