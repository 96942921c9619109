// compile(): trace a step once per signature, differentiate and optimize it, fuse it into kernels,
// plan its memory, and from then on run only the generated kernels (DESIGN.md, API.md "compile").

import { formatNode, type Graph, type InputSource, type Node, type Phase } from '../ir/graph.ts';
import { contiguousView, type View } from '../ir/view.ts';
import { isGradEnabled } from '../runtime/autograd.ts';
import { backendFor, getDefaultDevice, type DeviceName } from '../runtime/device.ts';
import { Executable } from '../runtime/executor.ts';
import { env, nodeFs, nodePath, requireNode } from '../runtime/node.ts';
import { Tensor } from '../runtime/tensor.ts';
import { cse } from './passes/cse.ts';
import { dce } from './passes/dce.ts';
import { schedule, type Schedule } from './passes/fusion.ts';
import { planMemory, type MemoryPlan } from './passes/memory.ts';
import { simplify } from './passes/simplify.ts';
import { splitReductions } from './passes/split-reduce.ts';
import { sourceTextsLoaded } from './source.ts';
import { trace, TraceError, type Guard } from './trace.ts';

export interface CompileOptions {
  /** run on this device (arguments are moved there) */
  device?: DeviceName;
  /** false: one kernel per op, for debugging */
  fuse?: boolean;
}

/** A readable IR listing (`toString()`), one node per line. */
export class GraphListing {
  constructor(readonly title: string, readonly graph: Graph, readonly nodes: readonly Node[], private showOutputs: boolean) {}
  toString(): string {
    const lines = [`${this.title}: ${this.nodes.length} nodes`, ...this.nodes.map(formatNode)];
    if (this.showOutputs) for (const o of this.graph.outputs) lines.push(`  ${o.kind.padEnd(6)} ${o.label} <- ${o.node === null ? 'null' : '%' + o.node}`);
    return lines.join('\n');
  }
}

export interface KernelListing { name: string; language: 'wgsl' | 'js'; source: string; ops: string[] }

export interface Lowered {
  forward: GraphListing;
  backward: GraphListing;
  update: GraphListing;
  optimized: GraphListing;
  kernels: KernelListing[];
  /** bytes of pooled intermediate buffers */
  peakBytes: number;
}

interface Entry {
  key: string;
  device: DeviceName;
  gradEnabled: boolean;
  args: { shape: number[]; dtype: Tensor['dtype']; requiresGrad: boolean; hasGrad: boolean }[];
  guards: Guard[];
  exec: Executable;
  /** the listings, built on first request (after a browser has fetched the source texts they show) */
  lowered: () => Lowered;
}

function sameSignature(e: Entry, args: readonly Tensor[]): boolean {
  if (args.length !== e.args.length || e.gradEnabled !== isGradEnabled()) return false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i], s = e.args[i];
    if (!(a instanceof Tensor) || a.device !== e.device || a.dtype !== s.dtype || a.requiresGrad !== s.requiresGrad || (a._grad !== null) !== s.hasGrad || a.shape.length !== s.shape.length) return false;
    for (let d = 0; d < s.shape.length; d++) if (a.shape[d] !== s.shape[d]) return false;
  }
  return true;
}

export type CompiledFunction<A extends Tensor[], R> = ((...args: A) => Promise<R>) & {
  lower(...args: A): Promise<Lowered>;
  /** how many signatures have been traced */
  readonly traces: number;
};

let dumpCount = 0;

function signature(args: readonly Tensor[], device: DeviceName): string {
  return `${device}|${isGradEnabled()}|` + args.map((a) => `${a.dtype}[${a.shape.join(',')}]${a.requiresGrad ? 'g' : ''}${a._grad ? 'G' : ''}`).join(';');
}

function build(fn: (...args: Tensor[]) => unknown, args: Tensor[], key: string, device: DeviceName, fuse: boolean): Entry {
  const traced = trace(fn, args, device);
  const g0 = traced.graph;
  let g = dce(simplify(cse(simplify(g0))));
  g = dce(cse(g));
  // A GPU wants long reductions in two passes; on the CPU one loop is best.
  if (device === 'webgpu') g = splitReductions(g, { minExtent: 1 << 16, maxOutputs: 64 });
  const inputViews = new Map<number, View>();
  for (const n of g.nodes) {
    if (n.op !== 'input') continue;
    const src = n.attrs as InputSource;
    inputViews.set(n.id, src.kind === 'capture' ? (src.ref as Tensor)._view : contiguousView(n.shape));
  }
  const maxArgs = backendFor(device).maxKernelArgs();
  const sched = schedule(g, { fuse, inputViews, maxArgs });
  const plan = planMemory(g, sched);
  const exec = new Executable(g, sched, plan, device, traced.returns);
  let built: Lowered | undefined;
  const lowered = (): Lowered => (built ??= listings(g0, g, sched, plan, device));
  const dir = env('KILN_DUMP');
  if (dir) dump(dir, lowered());
  return {
    key, device, gradEnabled: isGradEnabled(), guards: traced.guards, exec, lowered,
    args: args.map((a) => ({ shape: [...a.shape], dtype: a.dtype, requiresGrad: a.requiresGrad, hasGrad: a._grad !== null })),
  };
}


function listings(g0: Graph, g: Graph, sched: Schedule, plan: MemoryPlan, device: DeviceName): Lowered {
  const phase = (p: Phase) => g0.nodes.filter((n) => n.phase === p && n.op !== 'input');
  const backend = backendFor(device);
  const kernels = sched.kernels.map((k): KernelListing => {
    const ops = k.nodes.map((id) => formatNode(g.node(id)).trim());
    const header = [`// kernel ${k.spec.name}: ${k.nodes.length} IR node(s)`, ...ops.map((o) => `//   ${o}`)].join('\n');
    const { language, source } = backend.kernelSource(k.spec);
    return { name: k.spec.name, language, source: `${header}\n${source}`, ops };
  });
  return {
    forward: new GraphListing('forward', g0, [...g0.inputNodes, ...phase('forward')], false),
    backward: new GraphListing('backward', g0, phase('backward'), false),
    update: new GraphListing('update', g0, phase('update'), true),
    optimized: new GraphListing(`optimized (${sched.kernels.length} kernels, ${plan.peakBytes} bytes of temporaries)`, g, g.nodes, true),
    kernels,
    peakBytes: plan.peakBytes,
  };
}

function dump(dir: string, l: Lowered): void {
  const { mkdirSync, writeFileSync } = requireNode(nodeFs, 'KILN_DUMP');
  const { join } = requireNode(nodePath, 'KILN_DUMP');
  mkdirSync(dir, { recursive: true });
  const n = dumpCount++;
  for (const part of ['forward', 'backward', 'update', 'optimized'] as const) writeFileSync(join(dir, `step${n}.${part}.txt`), l[part].toString() + '\n');
  l.kernels.forEach((k, i) => writeFileSync(join(dir, `step${n}.kernel${i}.${k.name}.${k.language}`), k.source + '\n'));
}

export function compile<A extends Tensor[], R>(fn: (...args: A) => R, options: CompileOptions = {}): CompiledFunction<A, R> {
  const entries: Entry[] = [];
  const fuse = options.fuse ?? true;
  let last: Entry | null = null;
  const entryFor = (rawArgs: A): { entry: Entry; args: Tensor[] } => {
    const device = options.device ?? rawArgs[0]?.device ?? getDefaultDevice();
    // Fast path: the signature and guards of the last call still hold.
    if (last && last.device === device && sameSignature(last, rawArgs) && last.guards.every((g) => g.check())) return { entry: last, args: rawArgs };
    rawArgs.forEach((a, i) => {
      if (!(a instanceof Tensor)) throw new TypeError(`compile: argument ${i} must be a Tensor (got ${typeof a})`);
    });
    const args = rawArgs.map((a) => (a.device === device ? a : a.to(device)));
    const key = signature(args, device);
    let entry = entries.find((e) => e.key === key && e.guards.every((g) => g.check()));
    if (!entry) {
      entry = build(fn as (...args: Tensor[]) => unknown, args, key, device, fuse);
      entries.push(entry);
    }
    last = entry;
    return { entry, args };
  };
  // A TraceError's expression needs acorn and perhaps a fetch of the user's file: completed here, asynchronously.
  const failed = async (e: unknown): Promise<never> => {
    throw e instanceof TraceError ? await e.withExpression() : e;
  };
  const step = (async (...rawArgs: A): Promise<R> => {
    let found;
    try {
      found = entryFor(rawArgs);
    } catch (e) {
      return failed(e);
    }
    return found.entry.exec.run(found.args) as R;
  }) as CompiledFunction<A, R>;
  step.lower = async (...rawArgs: A) => {
    let found;
    try {
      found = entryFor(rawArgs);
    } catch (e) {
      return failed(e);
    }
    await sourceTextsLoaded();
    return found.entry.lowered();
  };
  Object.defineProperty(step, 'traces', { get: () => entries.length });
  return step;
}

export { TraceError };
