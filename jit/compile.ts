// compile(): trace a step once per signature, differentiate and optimize it, fuse it into kernels,
// plan its memory (compiler/pipeline.ts), and from then on run only the generated kernels
// (DESIGN.md, API.md "compile"). KILN_DUMP=dir writes every listing; KILN_VERIFY=1 verifies every stage.

import { formatNode, type Phase } from '../ir/graph.ts';
import { runPipeline, type Pipelined } from '../compiler/pipeline.ts';
import { kernelSource, maxKernelArgs, splitsReductions, type Target } from '../compiler/target.ts';
import { GraphListing, MemoryListing, ScheduleListing } from '../compiler/print.ts';
import { isGradEnabled } from '../runtime/autograd.ts';
import { backendFor, getDefaultDevice, type DeviceName } from '../runtime/device.ts';
import { env, nodeFs, nodePath, requireNode } from '../runtime/node.ts';
import { Tensor } from '../runtime/tensor.ts';
import { Executable } from './executor.ts';
import { trace, TraceError, type Guard } from './trace.ts';

export interface CompileOptions {
  /** run on this device (arguments are moved there) */
  device?: DeviceName;
  /** false: one kernel per op, for debugging */
  fuse?: boolean;
}

export interface KernelListing { name: string; language: 'wgsl' | 'js'; source: string; ops: string[] }

export interface Lowered {
  forward: GraphListing;
  backward: GraphListing;
  update: GraphListing;
  optimized: GraphListing;
  /** every stage of the pipeline, in order: 'traced', then one per graph pass (compiler/pipeline.ts) */
  stages: GraphListing[];
  /** the kernels in launch order with the buffers each reads and writes */
  schedule: ScheduleListing;
  /** pooled buffer slots, their sizes and the lifetimes of the buffers sharing them */
  memory: MemoryListing;
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
  lowered: Lowered;
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

/** `asked` undefined: a step without arguments or options.device runs where what it captures lives. */
function build(fn: (...args: Tensor[]) => unknown, args: Tensor[], key: string, asked: DeviceName | undefined, fuse: boolean): Entry {
  const traced = trace(fn, args, asked);
  const device = traced.device;
  // the compiler gets the device's description, never the backend
  const target = backendFor(device).target;
  const p = runPipeline(traced.graph, { fuse, maxArgs: maxKernelArgs(target), splitReductions: splitsReductions(target), verify: env('KILN_VERIFY') === '1' });
  const exec = new Executable(p.graph, p.schedule, p.plan, device, traced.returns, traced.checks);
  const lowered = listings(p, target);
  const dir = env('KILN_DUMP');
  if (dir) dump(dir, lowered);
  return {
    key, device, gradEnabled: isGradEnabled(), guards: traced.guards, exec, lowered,
    args: args.map((a) => ({ shape: [...a.shape], dtype: a.dtype, requiresGrad: a.requiresGrad, hasGrad: a._grad !== null })),
  };
}

function listings(p: Pipelined, target: Target): Lowered {
  const { graph: g, schedule: sched, plan } = p;
  const g0 = p.stages[0].graph;
  const phase = (ph: Phase) => g0.nodes.filter((n) => n.phase === ph && n.op !== 'input');
  const kernels = sched.kernels.map((k): KernelListing => {
    const ops = k.nodes.map((id) => formatNode(g.node(id)).trim());
    const header = [`// kernel ${k.spec.name}: ${k.nodes.length} IR node(s)`, ...ops.map((o) => `//   ${o}`)].join('\n');
    const { language, source } = kernelSource(k.spec, target);
    return { name: k.spec.name, language, source: `${header}\n${source}`, ops };
  });
  return {
    forward: new GraphListing('forward', g0, [...g0.inputNodes, ...phase('forward')], false),
    backward: new GraphListing('backward', g0, phase('backward'), false),
    update: new GraphListing('update', g0, phase('update'), true),
    optimized: new GraphListing(`optimized (${sched.kernels.length} kernels, ${plan.peakBytes} bytes of temporaries)`, g, g.nodes, true),
    stages: p.stages.map((s) => new GraphListing(s.name, s.graph, s.graph.nodes, true)),
    schedule: new ScheduleListing(g, sched),
    memory: new MemoryListing(g, sched, plan),
    kernels,
    peakBytes: plan.peakBytes,
  };
}

function dump(dir: string, l: Lowered): void {
  const { mkdirSync, writeFileSync } = requireNode(nodeFs, 'KILN_DUMP');
  const { join } = requireNode(nodePath, 'KILN_DUMP');
  mkdirSync(dir, { recursive: true });
  const n = dumpCount++;
  for (const part of ['forward', 'backward', 'update', 'optimized', 'schedule', 'memory'] as const) writeFileSync(join(dir, `step${n}.${part}.txt`), l[part].toString() + '\n');
  l.stages.forEach((st, i) => writeFileSync(join(dir, `step${n}.stage${i}.${st.title}.txt`), st.toString() + '\n'));
  l.kernels.forEach((k, i) => writeFileSync(join(dir, `step${n}.kernel${i}.${k.name}.${k.language}`), k.source + '\n'));
}

export function compile<A extends Tensor[], R>(fn: (...args: A) => R, options: CompileOptions = {}): CompiledFunction<A, R> {
  const entries: Entry[] = [];
  const fuse = options.fuse ?? true;
  let last: Entry | null = null;
  /** where a step without arguments ran last: on what it captures (set by its first trace) */
  let captured: DeviceName | null = null;
  const entryFor = (rawArgs: A): { entry: Entry; args: Tensor[] } => {
    const asked = options.device ?? rawArgs[0]?.device;
    const device = asked ?? captured ?? getDefaultDevice();
    // Fast path: the signature and guards of the last call still hold.
    if (last && last.device === device && sameSignature(last, rawArgs) && last.guards.every((g) => g.check())) return { entry: last, args: rawArgs };
    rawArgs.forEach((a, i) => {
      if (!(a instanceof Tensor)) throw new TypeError(`compile: argument ${i} must be a Tensor (got ${typeof a})`);
    });
    const args = rawArgs.map((a) => (a.device === device ? a : a.to(device)));
    const key = signature(args, device);
    let entry = entries.find((e) => e.key === key && e.guards.every((g) => g.check()));
    if (!entry) {
      entry = build(fn as (...args: Tensor[]) => unknown, args, key, asked, fuse);
      if (entry.device !== device) {
        captured = entry.device;
        entry.key = signature(args, entry.device);
      }
      entries.push(entry);
    }
    last = entry;
    return { entry, args };
  };
  const step = (async (...rawArgs: A): Promise<R> => {
    const { entry, args } = entryFor(rawArgs);
    const out = entry.exec.run(args) as R;
    // Bounded queue depth: a loop that never reads a value waits here when the device falls behind.
    await backendFor(entry.device).settle();
    return out;
  }) as CompiledFunction<A, R>;
  step.lower = async (...rawArgs: A) => entryFor(rawArgs).entry.lowered;
  Object.defineProperty(step, 'traces', { get: () => entries.length });
  return step;
}

export { TraceError };
