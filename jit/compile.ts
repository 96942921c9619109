// compile(): trace a step once per signature, differentiate and optimize it, fuse it into kernels,
// plan its memory (compiler/pipeline.ts), and from then on run only the generated kernels
// (DESIGN.md, API.md "compile"). KILN_DUMP=dir writes every listing; KILN_VERIFY=1 verifies every stage.
//
// First call: on devices that compile shaders, every kernel's pipeline is created before the first
// launch, all at once (backend.precompile). KILN_PROFILE=1 prints where a signature's first call went
// (trace, graph passes, pipeline creation, encoding, the run itself). `step.profile(...args)` makes one
// real call with every kernel timed, and returns (and formats) each kernel's share and source lines.

import { displaySource, formatNode, type Phase } from '../ir/graph.ts';
import { runPipeline, type Pipelined } from '../compiler/pipeline.ts';
import { kernelSource, maxKernelArgs, splitsReductions, type Target } from '../compiler/target.ts';
import { GraphListing, MemoryListing, ScheduleListing } from '../compiler/print.ts';
import { isGradEnabled } from '../runtime/autograd.ts';
import { backendFor, getDefaultDevice, type DeviceName, type KernelTimes, type PrecompileReport } from '../runtime/device.ts';
import { env, nodeFs, nodePath, requireNode } from '../runtime/node.ts';
import { Tensor } from '../runtime/tensor.ts';
import { Executable } from './executor.ts';
import { sourceTextsLoaded } from './source.ts';
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
  /** the listings, made on first use (lower(), KILN_DUMP; after a browser has fetched the source texts they show) */
  lowered: () => Lowered;
  /** the kernels' IR nodes, formatted, and their user source lines (profile) */
  kernelOps: { ops: string[]; sources: string[] }[];
  /** false until the first call (which creates the pipelines first: backend.precompile) */
  called: boolean;
  /** ms spent tracing and in the graph passes (KILN_PROFILE) */
  buildMs: { trace: number; passes: number };
}

/** One kernel's line of a step profile. */
export interface KernelProfile { name: string; ms: number; share: number; ops: string[]; sources: string[] }

/** What `step.profile(...)` measured: each kernel of one real call, slowest first in `toString()`. */
export interface StepProfile {
  kernels: KernelProfile[];
  /** sum of the kernels' times */
  totalMs: number;
  method: KernelTimes['method'];
  note: string;
  /** the call's result, as the step itself returns it */
  result: unknown;
  toString(): string;
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

/** Whether every guard of a trace still holds (a loop, not a closure made per call: the fast path below is a microsecond). */
function guardsHold(e: Entry): boolean {
  for (const g of e.guards) if (!g.check()) return false;
  return true;
}

export type CompiledFunction<A extends Tensor[], R> = ((...args: A) => Promise<R>) & {
  lower(...args: A): Promise<Lowered>;
  /** One real call (same effects and result) with every kernel timed: each kernel's time, share and source lines. */
  profile(...args: A): Promise<StepProfile>;
  /** how many signatures have been traced */
  readonly traces: number;
};

let dumpCount = 0;

function signature(args: readonly Tensor[], device: DeviceName): string {
  return `${device}|${isGradEnabled()}|` + args.map((a) => `${a.dtype}[${a.shape.join(',')}]${a.requiresGrad ? 'g' : ''}${a._grad ? 'G' : ''}`).join(';');
}

/** `asked` undefined: a step without arguments or options.device runs where what it captures lives. */
function build(fn: (...args: Tensor[]) => unknown, args: Tensor[], key: string, asked: DeviceName | undefined, fuse: boolean): Entry {
  const t0 = performance.now();
  const traced = trace(fn, args, asked);
  const t1 = performance.now();
  const device = traced.device;
  // the compiler gets the device's description, never the backend
  const backend = backendFor(device);
  const target = backend.target;
  const p = runPipeline(traced.graph, { fuse, maxArgs: maxKernelArgs(target), splitReductions: splitsReductions(target), verify: env('KILN_VERIFY') === '1' });
  const exec = new Executable(p.graph, p.schedule, p.plan, device, traced.returns, traced.checks);
  const t2 = performance.now();
  let lowered: Lowered | null = null;
  const lower = (): Lowered => (lowered ??= listings(p, target));
  const dir = env('KILN_DUMP');
  if (dir) dump(dir, lower());
  const kernelOps = p.schedule.kernels.map((k) => {
    const nodes = k.nodes.map((id) => p.graph.node(id));
    return { ops: nodes.map((n) => formatNode(n).trim()), sources: [...new Set(nodes.map((n) => n.source).filter((x): x is string => !!x))] };
  });
  return {
    key, device, gradEnabled: isGradEnabled(), guards: traced.guards, exec, lowered: lower, kernelOps, called: false, buildMs: { trace: t1 - t0, passes: t2 - t1 },
    args: args.map((a) => ({ shape: [...a.shape], dtype: a.dtype, requiresGrad: a.requiresGrad, hasGrad: a._grad !== null })),
  };
}

/**
 * Before an entry's first call: creates its pipelines (all at once, where the backend compiles any);
 * `run` makes the call, and background work (tuning) waits until it has. Returns what precompile did.
 */
async function precompiled<T>(entry: Entry, run: () => T): Promise<{ pre: PrecompileReport | null; out: Awaited<T>; ms: [number, number] }> {
  entry.called = true;
  const backend = backendFor(entry.device);
  let ran = (): void => {};
  const first = new Promise<void>((resolve) => { ran = resolve; });
  const t0 = performance.now();
  try {
    const pre = await backend.precompile(entry.exec.specs, first).catch(() => null);
    const t1 = performance.now();
    const out = run();
    ran();
    return { pre, out: await out, ms: [t1 - t0, performance.now() - t1] };
  } finally {
    ran();
  }
}

/** The first call of an entry: creates its pipelines, runs, and with KILN_PROFILE=1 prints where the time went. */
async function firstCall(entry: Entry, args: Tensor[], callStart: number): Promise<unknown> {
  const { pre, out, ms: [waited, encoded] } = await precompiled(entry, () => entry.exec.run(args));
  if (env('KILN_PROFILE') !== '1') return out;
  const t2 = performance.now();
  const backend = backendFor(entry.device);
  await backend.finish();
  const t3 = performance.now();
  const f = (ms: number) => `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  const parts = [`trace ${f(entry.buildMs.trace)}`, `graph passes ${f(entry.buildMs.passes)}`];
  if (pre) parts.push(`pipelines ${f(waited)} (${pre.shaders} shaders for ${pre.kernels} kernels, ${(pre.bytes / 1024).toFixed(1)} KiB of WGSL, created together)`);
  parts.push(`encode ${f(encoded)}`);
  // a device that created pipelines runs asynchronously; on the others the run is part of encode
  if (pre) parts.push(`run ${f(t3 - t2)} (waited for: KILN_PROFILE only)`);
  const tunes = pre?.tunesPending ? `; ${pre.tunesPending} matmul shape(s) tuning in the background` : '';
  console.warn(`kiln profile: first call of ${entry.key}: ${f(t3 - callStart)} = ${parts.join(' + ')}${tunes}`);
  return out;
}

function formatProfile(p: Omit<StepProfile, 'toString'>): string {
  const lines = [`kiln step profile: ${p.kernels.length} kernels, ${p.totalMs.toFixed(3)} ms in total (${p.method}: ${p.note})`];
  const order = [...p.kernels].sort((a, b) => b.ms - a.ms);
  for (const k of order) {
    lines.push(`${k.ms.toFixed(3).padStart(10)} ms ${(100 * k.share).toFixed(1).padStart(5)}%  ${k.name}${k.sources.length ? '' : `  (${k.ops.length} IR node(s))`}`);
    for (const src of k.sources) lines.push(`${' '.repeat(22)}${src}`);
  }
  return lines.join('\n');
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
    if (last && last.device === device && sameSignature(last, rawArgs) && guardsHold(last)) return { entry: last, args: rawArgs };
    rawArgs.forEach((a, i) => {
      if (!(a instanceof Tensor)) throw new TypeError(`compile: argument ${i} must be a Tensor (got ${typeof a})`);
    });
    const args = rawArgs.map((a) => (a.device === device ? a : a.to(device)));
    const key = signature(args, device);
    let entry = entries.find((e) => e.key === key && guardsHold(e));
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
  // A TraceError's expression needs acorn and perhaps a fetch of the user's file: completed here, asynchronously.
  const failed = async (e: unknown): Promise<never> => {
    throw e instanceof TraceError ? await e.withExpression() : e;
  };
  const step = (async (...rawArgs: A): Promise<R> => {
    const t0 = performance.now();
    let found;
    try {
      found = entryFor(rawArgs);
    } catch (e) {
      return failed(e);
    }
    const { entry, args } = found;
    const out = entry.called ? entry.exec.run(args) : await firstCall(entry, args, t0);
    // Bounded queue depth: a loop that never reads a value waits here when the device falls behind
    // (the CPU never queues: nothing to wait for, not even a microtask).
    const behind = backendFor(entry.device).settle();
    if (behind) await behind;
    return out as R;
  }) as CompiledFunction<A, R>;
  /** The entry for these arguments; a TraceError completed with its expression. */
  const lookup = async (rawArgs: A): Promise<{ entry: Entry; args: Tensor[] }> => {
    try {
      return entryFor(rawArgs);
    } catch (e) {
      return failed(e);
    }
  };
  step.lower = async (...rawArgs: A) => {
    const { entry } = await lookup(rawArgs);
    await sourceTextsLoaded();
    return entry.lowered();
  };
  step.profile = async (...rawArgs: A): Promise<StepProfile> => {
    const { entry, args } = await lookup(rawArgs);
    await sourceTextsLoaded();
    const { result, times } = entry.called ? await entry.exec.profile(args) : (await precompiled(entry, () => entry.exec.profile(args))).out;
    const totalMs = times.ms.reduce((a, b) => a + b, 0);
    const kernels = entry.exec.specs.map((spec, k): KernelProfile => ({
      name: spec.name, ms: times.ms[k], share: totalMs > 0 ? times.ms[k] / totalMs : 0,
      ops: entry.kernelOps[k].ops, sources: entry.kernelOps[k].sources.map(displaySource),
    }));
    const p = { kernels, totalMs, method: times.method, note: times.note, result };
    return { ...p, toString: () => formatProfile(p) };
  };
  Object.defineProperty(step, 'traces', { get: () => entries.length });
  return step;
}

export { TraceError };
