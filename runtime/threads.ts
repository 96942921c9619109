// How many threads the CPU uses: setNumThreads/getNumThreads, KILN_NUM_THREADS, and whether this
// environment can have threads at all. The pool itself (./pool.ts) comes with the gemm -- in a browser
// build a chunk of its own -- and takes its size from here; a size set before it exists waits here.

import { env } from './node.ts';

/** The most workers a pool has (besides the calling thread). */
export const MAX_WORKERS = 63;

/** Node's process.getBuiltinModule (20.16 on), which reaches worker_threads and os without an import a browser build would see. */
export type Builtin = (id: string) => unknown;

/** Why threads are unavailable here, or null when they are. */
export function threadsUnavailable(): string | null {
  const g = globalThis as { process?: { getBuiltinModule?: Builtin }; crossOriginIsolated?: boolean; SharedArrayBuffer?: unknown; Worker?: unknown };
  if (typeof WebAssembly === 'undefined') return 'WebAssembly is unavailable';
  if (g.process?.getBuiltinModule?.('node:worker_threads')) return null;
  if (!g.Worker) return 'this environment has no Worker';
  if (!g.crossOriginIsolated || typeof g.SharedArrayBuffer === 'undefined') return 'the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp to share memory with workers)';
  return null;
}

function defaultThreads(): number {
  const fromEnv = env('KILN_NUM_THREADS');
  if (fromEnv !== undefined && fromEnv !== '') {
    const n = Number(fromEnv);
    if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS + 1) throw new Error(`KILN_NUM_THREADS must be an integer from 1 to ${MAX_WORKERS + 1}, got '${fromEnv}'`);
    return n;
  }
  const g = globalThis as { process?: { getBuiltinModule?: Builtin }; navigator?: { hardwareConcurrency?: number } };
  const os = g.process?.getBuiltinModule?.('node:os') as { availableParallelism?: () => number; cpus(): unknown[] } | undefined;
  const n = os ? (os.availableParallelism?.() ?? os.cpus().length) : (g.navigator?.hardwareConcurrency ?? 1);
  return Math.max(1, Math.min(n, MAX_WORKERS + 1));
}

/** What a pool does when the number of threads changes (./pool.ts's Pool). */
interface Resizable { readonly size: number; resize(n: number): void }

/** the pool, once ./pool.ts has made it (null: it could not) */
let made: Resizable | null | undefined;
let requested: number | undefined;

/** ./pool.ts's pool(), when it first runs. */
export function poolMade(p: Resizable | null): void { made = p; }

/** The number of threads a new pool gets: setNumThreads's, else KILN_NUM_THREADS or the cores. */
export function requestedThreads(): number { return (requested ??= defaultThreads()); }

/** Sets how many threads big CPU products and kernels use (default: the number of cores, or KILN_NUM_THREADS). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS + 1) throw new Error(`setNumThreads: n must be an integer from 1 to ${MAX_WORKERS + 1}, got ${n}`);
  requested = n;
  made?.resize(n);
}

/** How many threads big CPU products and kernels use. */
export function getNumThreads(): number {
  if (made !== undefined) return made?.size ?? 1;
  return threadsUnavailable() ? 1 : requestedThreads();
}
