// Runs a compiled step: binds the step's inputs (arguments, captured tensors, their .grad, host
// scalars), launches the planned kernels in order over the planned buffers, then performs the
// write-backs (in-place updates, .grad assignments) and wraps returned values as tensors.

import type { Graph, InputSource } from '../ir/graph.ts';
import { contiguousView } from '../ir/view.ts';
import { copyKernel } from '../compiler/lower.ts';
import type { Schedule } from '../compiler/passes/fusion.ts';
import type { MemoryPlan } from '../compiler/passes/memory.ts';
import type { ReturnTree } from '../compiler/trace.ts';
import { noGrad } from './autograd.ts';
import { backendFor, type Backend, type BoundArg, type DeviceName, type Storage } from './device.ts';
import { contiguous } from './dispatch.ts';
import { Tensor } from './tensor.ts';

type Launch = (args: readonly BoundArg[]) => void;

export class Executable {
  private backend: Backend;
  private launches: { run: Launch; argNodes: number[]; bound: BoundArg[] }[];
  private slots: Storage[] | null = null;
  private hostStorage = new Map<number, Storage>();
  private copies = new Map<number, Launch>();
  private bind: (Storage | null)[];

  constructor(private g: Graph, sched: Schedule, private plan: MemoryPlan, device: DeviceName, private returns: ReturnTree) {
    this.backend = backendFor(device);
    const b = this.backend;
    this.launches = sched.kernels.map((k) => ({
      run: b.prepare ? b.prepare(k.spec) : (args: readonly BoundArg[]) => b.run([k.spec], args),
      argNodes: k.args,
      bound: k.args.map(() => ({ storage: null as unknown as Storage, offset: 0 })),
    }));
    this.bind = g.nodes.map(() => null);
  }

  private copyLaunch(node: number): Launch {
    let l = this.copies.get(node);
    if (!l) {
      const n = this.g.node(node);
      const view = contiguousView(n.shape);
      const spec = copyKernel({ view, dtype: n.dtype }, { view, dtype: n.dtype });
      const b = this.backend;
      l = b.prepare ? b.prepare(spec) : (args) => b.run([spec], args);
      this.copies.set(node, l);
    }
    return l;
  }

  run(args: readonly Tensor[]): unknown {
    const { g, plan, backend, bind } = this;
    if (!this.slots) this.slots = plan.slots.map((s) => backend.alloc(s.dtype, s.size));
    const inputs = args.map((a) => (a._view.offset === 0 && a._storage!.size === a.numel() ? a : noGrad(() => contiguous(a))));
    const earlyReturns = new Map<number, Tensor>();
    for (const n of g.nodes) {
      if (n.op === 'input') {
        const src = n.attrs as InputSource;
        switch (src.kind) {
          case 'arg': bind[n.id] = inputs[src.index]._storage; break;
          case 'capture': bind[n.id] = (src.ref as Tensor)._storage; break;
          case 'grad': bind[n.id] = (src.ref as Tensor)._grad!._storage; break;
          case 'host': {
            let s = this.hostStorage.get(n.id);
            if (!s) { s = backend.alloc('float32', 1); this.hostStorage.set(n.id, s); }
            const value = Float32Array.of(src.read());
            if (backend.write) backend.write(s, value);
            else s = backend.upload(value);
            bind[n.id] = s;
            break;
          }
        }
      } else if (plan.slotOf.has(n.id)) bind[n.id] = this.slots[plan.slotOf.get(n.id)!];
      else if (plan.inPlace.has(n.id)) bind[n.id] = (plan.inPlace.get(n.id) as Tensor)._storage;
      else if (plan.fresh.has(n.id)) bind[n.id] = backend.alloc(n.dtype, n.shape.reduce((a, b) => a * b, 1));
    }
    // Returned inputs are copied before anything writes to them.
    for (const o of g.outputs) {
      if (o.kind === 'return' && o.node !== null && g.node(o.node).op === 'input' && !earlyReturns.has(o.node)) {
        const src = g.node(o.node).attrs as InputSource;
        const t = src.kind === 'arg' ? inputs[src.index] : src.kind === 'capture' ? (src.ref as Tensor) : src.kind === 'grad' ? (src.ref as Tensor)._grad! : this.tensorOf(o.node);
        earlyReturns.set(o.node, noGrad(() => t.detach().clone()));
      }
    }
    for (const l of this.launches) {
      for (let i = 0; i < l.argNodes.length; i++) l.bound[i].storage = bind[l.argNodes[i]]!;
      l.run(l.bound);
    }
    for (const o of g.outputs) {
      if (o.kind === 'write' && o.node !== null && !plan.inPlace.has(o.node)) {
        this.copyLaunch(o.node)([{ storage: bind[o.node]!, offset: 0 }, { storage: (o.ref as Tensor)._storage!, offset: 0 }]);
      } else if (o.kind === 'grad') {
        const target = o.ref instanceof Tensor ? o.ref : args[(o.ref as { arg: number }).arg];
        if (o.node === null) { target._grad = null; continue; }
        const old = target._grad;
        if (old && old._storage && old._view.offset === 0 && old._storage.size === old.numel() && old.device === target.device) {
          this.copyLaunch(o.node)([{ storage: bind[o.node]!, offset: 0 }, { storage: old._storage, offset: 0 }]);
        } else {
          const n = g.node(o.node);
          const fresh = backend.alloc(n.dtype, target.numel());
          this.copyLaunch(o.node)([{ storage: bind[o.node]!, offset: 0 }, { storage: fresh, offset: 0 }]);
          target._grad = Tensor._fromStorage(fresh, contiguousView(n.shape), n.dtype);
        }
      }
    }
    const build = (t: ReturnTree): unknown => {
      if (t === null) return undefined;
      if (typeof t === 'number') {
        const node = g.outputs[t].node!;
        return earlyReturns.get(node) ?? this.tensorOf(node);
      }
      if (Array.isArray(t)) return t.map(build);
      return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, build(v)]));
    };
    return build(this.returns);
  }

  private tensorOf(node: number): Tensor {
    const n = this.g.node(node);
    return Tensor._fromStorage(this.bind[node]!, contiguousView(n.shape), n.dtype);
  }
}
