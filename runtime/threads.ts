// The CPU thread pool: workers (Node worker_threads, or Web Workers in a cross-origin-isolated page)
// sharing one WebAssembly.Memory with the calling thread, which run WebAssembly kernels over parts of a
// job. Everything a worker needs lives in that memory's first page (job, flags, kernel bytes), so a job
// is a few atomic stores and one notify: no messages. Calls stay synchronous: the caller runs part 0
// itself, then waits for the rest -- with Atomics.wait in Node, spinning on Atomics.load in a browser's
// main thread (where Atomics.wait is not allowed; the parts are equal, so the spin is short).

import { env } from './node.ts';

/** Largest size (64 KiB pages) the shared memory may grow to: 1 GiB. */
export const MAX_PAGES = 16384;
/** Bytes of the first page reserved for the control block; kernels' scratch starts here. */
export const SCRATCH_START = 65536;

// Int32 indices into the control block.
const GEN = 0, PENDING = 1, KERNEL = 3, JOB = 4, PARTS = 15;
const PART = 64, READY = 128, DEAD = 192, FAULT = 256, EPOCH = 320, MAX_WORKERS = 63;
const MESSAGE = 2048, MESSAGE_BYTES = 128; // byte offsets: a dead worker's last words
const SLOT = 12288, SLOT_BYTES = 4096, MAX_KERNELS = (SCRATCH_START - SLOT) / SLOT_BYTES;

/**
 * A product over packed operands (byte pointers; see gemm-wasm.ts): [pa, pb, pc, mBlocks, nPanels, k,
 * ldcBytes, kc, RB, NR, axis]. A and B are packed per block of kc values of k: A's block at
 * pa + k0 * mBlocks * RB floats, B's at pb + k0 * ldc floats.
 */
export type GemmJob = readonly [number, number, number, number, number, number, number, number, number, number, number];
/** The micro-kernel: kernel(pa, pb, pc, mBlocks, nPanels, kc, ldcBytes, accumulate) over one block of k. */
export type KernelFn = (pa: number, pb: number, pc: number, mBlocks: number, nPanels: number, kc: number, ldc: number, accumulate: number) => void;

/**
 * Runs part `part` of `parts` of a job: its column panels (axis 0) or row blocks (axis 1), over every
 * block of k. Shared by the caller and the workers (spliced into their source), so both agree on the
 * tiling without messages; each part writes its own tiles of C, in the same k order as one thread would.
 */
export function runPart(kernel: KernelFn, job: GemmJob, part: number, parts: number): void {
  const [pa, pb, pc, mb, np, k, ldc, kc, rb, nr, axis] = job;
  let i0 = 0, i1 = mb, p0 = 0, p1 = np;
  if (axis === 0) { p0 = Math.floor((np * part) / parts); p1 = Math.floor((np * (part + 1)) / parts); }
  else { i0 = Math.floor((mb * part) / parts); i1 = Math.floor((mb * (part + 1)) / parts); }
  if (i1 <= i0 || p1 <= p0) return;
  // Chunks of 32 row blocks: a chunk of packed A (128 rows x kc) stays in the second-level cache while
  // every panel of B passes over it.
  for (let k0 = 0; k0 < k; k0 += kc) {
    const kb = Math.min(kc, k - k0);
    for (let c0 = i0; c0 < i1; c0 += 32) {
      kernel(pa + (mb * rb * k0 + c0 * kb * rb) * 4, pb + ((ldc / 4) * k0 + p0 * kb * nr) * 4, pc + c0 * rb * ldc + p0 * nr * 4, Math.min(32, i1 - c0), p1 - p0, kb, ldc, k0 > 0 ? 1 : 0);
    }
  }
}

/** The control block's layout, which the worker's program gets in its start message (it is spliced in as source: no closure). */
const LAYOUT = { GEN, PENDING, KERNEL, JOB, PARTS, PART, READY, DEAD, FAULT, EPOCH, MESSAGE, MESSAGE_BYTES, SLOT, SLOT_BYTES, SCRATCH_START };

/** What a worker is started with: its shared memory, its index, the epoch it was started in, and the layout. */
interface WorkerStart { mem: WebAssembly.Memory; index: number; epoch: number; layout: typeof LAYOUT }

/** The globals of a worker that the program uses (Node's worker_threads, or a Web Worker). */
type WorkerGlobals = { process?: { on?(ev: 'exit', f: (code: number) => void): void; exit?(code: number): void }; close?(): void };

/**
 * The worker's program: `workerMain(runPart, start)` in the worker, spliced in with `toString()` as
 * runPart is, so it must use nothing from this module but its arguments. A worker whose slot has been
 * given to a newer one (the pool restarted or shrank while it was still winding down) touches nothing
 * and ends.
 */
function workerMain(run: typeof runPart, { mem, index, epoch, layout }: WorkerStart): void {
  const { GEN, PENDING, KERNEL, JOB, PARTS, PART, READY, DEAD, FAULT, EPOCH, MESSAGE, MESSAGE_BYTES, SLOT, SLOT_BYTES, SCRATCH_START } = layout;
  const g = globalThis as WorkerGlobals;
  const ctrl = new Int32Array(mem.buffer, 0, SCRATCH_START / 4);
  const kernels: KernelFn[] = [];
  const kernel = (id: number): KernelFn => {
    if (!kernels[id]) {
      const at = SLOT + id * SLOT_BYTES, len = Atomics.load(ctrl, at / 4);
      const bytes = new Uint8Array(mem.buffer, at + 4, len).slice();
      kernels[id] = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem } }).exports.kernel as KernelFn;
    }
    return kernels[id];
  };
  /** Leaves a dead worker's last words where the pool reads them. */
  const say = (why: unknown): void => {
    const text = new TextEncoder().encode(String(why).slice(0, MESSAGE_BYTES - 1));
    new Uint8Array(mem.buffer, MESSAGE + index * MESSAGE_BYTES, MESSAGE_BYTES).fill(0).set(text);
  };
  let holding = false;
  const finish = (): void => { holding = false; if (Atomics.sub(ctrl, PENDING, 1) === 1) Atomics.notify(ctrl, PENDING); };
  const mine = (): boolean => Atomics.load(ctrl, EPOCH + index) === epoch;
  const die = (why: string): void => {
    if (!mine()) return;
    say(why);
    Atomics.store(ctrl, DEAD + index, 1);
    if (holding) finish();
    Atomics.notify(ctrl, PENDING);
  };
  g.process?.on?.('exit', (code) => die(`exited with code ${code}`));
  let seen = Atomics.load(ctrl, GEN);
  Atomics.store(ctrl, READY + index, 1);
  for (;;) {
    Atomics.wait(ctrl, GEN, seen);
    seen = Atomics.load(ctrl, GEN);
    if (!mine()) return;
    const part = Atomics.exchange(ctrl, PART + index, -1);
    if (part < 0) continue;
    holding = true;
    if (Atomics.exchange(ctrl, FAULT + index, 0)) {
      g.process?.exit?.(70);
      die('closed on request'); g.close?.(); return;
    }
    try {
      run(kernel(ctrl[KERNEL]), Array.from(ctrl.subarray(JOB, JOB + 11)) as unknown as GemmJob, part, ctrl[PARTS]);
    } catch (e) {
      say((e as Error | undefined)?.message || e);
      Atomics.store(ctrl, DEAD + index, 2);
    }
    finish();
  }
}

/** The worker's source: its program, started with `start` (an expression of the worker's scope that holds a WorkerStart). */
const workerSource = (start: string): string => `(${workerMain.toString()})(${runPart.toString()}, ${start});`;

interface WorkerHandle { terminate(): unknown; exited: boolean; exitCode: number | null }
interface NodeWorkerModule {
  Worker: new (code: string, opts: { eval: true; workerData: unknown }) => {
    on(ev: 'exit', f: (code: number) => void): void; on(ev: 'error', f: (e: Error) => void): void; unref(): void; terminate(): Promise<number>;
  };
}
type Builtin = (id: string) => unknown;

function spawnWorker(mem: WebAssembly.Memory, index: number, epoch: number): WorkerHandle | null {
  const g = globalThis as { process?: { getBuiltinModule?: Builtin }; Worker?: new (url: string) => { postMessage(m: unknown): void; terminate(): void; addEventListener(ev: string, f: () => void): void }; Blob?: typeof Blob; URL?: typeof URL };
  const wt = g.process?.getBuiltinModule?.('node:worker_threads') as NodeWorkerModule | undefined;
  if (wt) {
    const w = new wt.Worker(workerSource("require('node:worker_threads').workerData"), { eval: true, workerData: { mem, index, epoch, layout: LAYOUT } satisfies WorkerStart });
    w.unref(); // an idle pool never keeps the process alive
    const h: WorkerHandle = { terminate: () => w.terminate(), exited: false, exitCode: null };
    w.on('exit', (code) => { h.exited = true; h.exitCode = code; });
    w.on('error', () => { h.exited = true; });
    return h;
  }
  if (g.Worker && g.Blob && g.URL) {
    const url = g.URL.createObjectURL(new g.Blob([`onmessage = (e) => ${workerSource('e.data')}`], { type: 'text/javascript' }));
    const w = new g.Worker(url);
    const h: WorkerHandle = { terminate: () => w.terminate(), exited: false, exitCode: null };
    w.addEventListener('error', () => { h.exited = true; });
    w.postMessage({ mem, index, epoch, layout: LAYOUT } satisfies WorkerStart);
    return h;
  }
  return null;
}

/** Whether this thread may block in Atomics.wait (Node's main thread and workers; not a browser's main thread). */
function canBlock(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; document?: unknown };
  return Boolean(g.process?.versions?.node) || g.document === undefined;
}

/** Why threads are unavailable here, or null when they are. */
function threadsUnavailable(): string | null {
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

/** Threads sharing `memory`: the caller plus up to size - 1 workers. */
export class Pool {
  readonly memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
  readonly scratchStart = SCRATCH_START;
  private ctrl = new Int32Array(this.memory.buffer, 0, SCRATCH_START / 4);
  private workers: (WorkerHandle | null)[] = [];
  private kernels = new Map<string, number>();
  private wanted: number;
  private readonly blocking = canBlock();

  constructor(size: number) {
    this.wanted = size;
    this.ctrl.fill(0);
    for (let w = 0; w < MAX_WORKERS; w++) this.ctrl[PART + w] = -1;
  }

  /** Threads a split job runs on (this one included). */
  get size(): number { return this.wanted; }

  /** Use n threads from now on (workers are started on the next split job, stopped here). */
  resize(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS + 1) throw new Error(`setNumThreads: n must be an integer from 1 to ${MAX_WORKERS + 1}, got ${n}`);
    this.wanted = n;
    while (this.workers.length > n - 1) this.stop(this.workers.length - 1);
  }

  /** Stores a kernel module's bytes where every worker can compile it (once per distinct module); returns its id. */
  addKernel(bytes: Uint8Array): number {
    const key = bytes.join(',');
    const known = this.kernels.get(key);
    if (known !== undefined) return known;
    if (this.kernels.size >= MAX_KERNELS) throw new Error(`thread pool: at most ${MAX_KERNELS} distinct kernels`);
    if (bytes.length > SLOT_BYTES - 4) throw new Error(`thread pool: a kernel module of ${bytes.length} bytes exceeds ${SLOT_BYTES - 4}`);
    const id = this.kernels.size, at = SLOT + id * SLOT_BYTES;
    this.kernels.set(key, id);
    new Uint8Array(this.memory.buffer, at + 4, bytes.length).set(bytes);
    Atomics.store(this.ctrl, at / 4, bytes.length);
    return id;
  }

  /** Runs a job split into one part per ready thread (this one included); returns when every part is done. */
  run(id: number, kernel: KernelFn, job: GemmJob): void {
    const ready = this.readyWorkers();
    const parts = 1 + ready.length;
    if (parts === 1) { runPart(kernel, job, 0, 1); return; }
    this.publish(id, job, ready);
    let error: unknown = null;
    try { runPart(kernel, job, 0, parts); } catch (e) { error = e; }
    this.join(ready);
    if (error) throw error;
  }

  /** For tests: worker `w` (1-based, as errors name it) exits, as if it crashed, in the middle of its next job. */
  injectFault(w: number): void {
    if (!Number.isInteger(w) || w < 1 || w >= this.wanted) throw new Error(`thread pool: no worker ${w} (workers are 1..${this.wanted - 1})`);
    Atomics.store(this.ctrl, FAULT + w - 1, 1);
  }

  private publish(id: number, job: GemmJob, workers: number[]): void {
    const c = this.ctrl;
    c[KERNEL] = id; c.set(job, JOB); c[PARTS] = 1 + workers.length;
    Atomics.store(c, PENDING, workers.length);
    workers.forEach((w, i) => Atomics.store(c, PART + w, i + 1));
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
  }

  /** Waits for the workers' parts; a worker that died or failed is an Error naming it, and the pool restarts. */
  private join(workers: number[]): void {
    const c = this.ctrl;
    for (let spins = 0; ; spins++) {
      const left = Atomics.load(c, PENDING);
      if (left === 0) break;
      if (workers.some((w) => Atomics.load(c, DEAD + w) === 1 || this.workers[w]?.exited)) break;
      if (this.blocking && spins > 500) Atomics.wait(c, PENDING, left, 20); // a short spin first: the parts are equal
    }
    const failed = workers.find((w) => Atomics.load(c, DEAD + w) !== 0 || this.workers[w]?.exited);
    if (failed !== undefined) this.fail(failed);
  }

  private fail(w: number): never {
    const c = this.ctrl;
    const how = Atomics.load(c, DEAD + w) === 2 ? 'failed' : 'died';
    const bytes = new Uint8Array(this.memory.buffer, MESSAGE + w * MESSAGE_BYTES, MESSAGE_BYTES).slice();
    const said = new TextDecoder().decode(bytes.subarray(0, Math.max(0, bytes.indexOf(0)))) || `exited with code ${this.workers[w]?.exitCode ?? 'unknown'}`;
    // Restart: stop every worker, clear the flags; the next split job starts fresh ones.
    for (let i = this.workers.length - 1; i >= 0; i--) this.stop(i);
    Atomics.store(c, PENDING, 0);
    throw new Error(`kiln thread pool: worker ${w + 1} of ${this.wanted} ${how} (${said}); its part of the product is missing. The pool has restarted; the next call runs on fresh workers.`);
  }

  private stop(i: number): void {
    Atomics.add(this.ctrl, EPOCH + i, 1); // the old worker, if it still runs, ends at its next wake-up
    this.workers[i]?.terminate();
    this.workers.length = Math.min(this.workers.length, i);
    Atomics.store(this.ctrl, READY + i, 0);
    Atomics.store(this.ctrl, DEAD + i, 0);
    Atomics.store(this.ctrl, FAULT + i, 0);
    Atomics.store(this.ctrl, PART + i, -1);
  }

  /** Workers that are up, starting missing ones (Node: waits up to 2 s for them; a browser's come up in the background). */
  private readyWorkers(): number[] {
    const want = this.wanted - 1;
    if (want > 0 && this.workers.length < want) {
      for (let i = this.workers.length; i < want; i++) {
        for (const f of [READY, DEAD, FAULT]) Atomics.store(this.ctrl, f + i, 0);
        Atomics.store(this.ctrl, PART + i, -1);
        const epoch = Atomics.add(this.ctrl, EPOCH + i, 1) + 1;
        this.workers[i] = spawnWorker(this.memory, i, epoch);
      }
      if (this.blocking) {
        const until = performance.now() + 2000;
        for (let i = 0; i < want; i++) {
          while (Atomics.load(this.ctrl, READY + i) === 0 && performance.now() < until) Atomics.wait(this.ctrl, READY + i, 0, 5);
        }
      }
    }
    const out: number[] = [];
    for (let i = 0; i < Math.min(want, this.workers.length); i++) {
      if (this.workers[i] && Atomics.load(this.ctrl, READY + i) === 1) out.push(i);
    }
    return out;
  }
}

let shared: Pool | null | undefined;

/** The process's pool, or null where threads are unavailable (then one thread, with one console note saying why). */
export function pool(): Pool | null {
  if (shared === undefined) {
    const size = defaultThreads();
    let why = threadsUnavailable();
    if (!why) {
      try {
        shared = new Pool(size);
      } catch (e) {
        why = `no shared WebAssembly memory (${e instanceof Error ? e.message : String(e)})`; // e.g. no address space for 1 GiB
      }
    }
    if (why) {
      if (size > 1) console.info(`kiln: running on one thread: ${why}.`);
      shared = null;
    }
  }
  return shared ?? null;
}

/** Sets how many threads big CPU products use (default: the number of cores, or KILN_NUM_THREADS). */
export function setNumThreads(n: number): void {
  const p = pool();
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS + 1) throw new Error(`setNumThreads: n must be an integer from 1 to ${MAX_WORKERS + 1}, got ${n}`);
  p?.resize(n);
}

/** How many threads big CPU products use. */
export function getNumThreads(): number {
  return pool()?.size ?? 1;
}
