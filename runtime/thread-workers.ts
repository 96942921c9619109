// The thread pool's workers (threads.ts is the pool): starting them (Node worker_threads, or Web
// Workers in a cross-origin-isolated page) on the pool's shared memory, their program, and handing
// them parts of a job. Everything a worker needs lives in that memory's first page -- a control block
// (below), the kernels' bytes (threads.ts keeps them; copied here into slots), flags -- so a job is a
// few atomic stores and one notify: no messages. The caller runs part 0 itself, then waits for the
// rest -- with Atomics.wait in Node, spinning on Atomics.load in a browser's main thread (where
// Atomics.wait is not allowed; the parts are equal, so the spin is short).
//
// threads.ts gets this module through package.json's "#thread-workers": in Node a static import (the
// workers are there for the first split job, as they always were), in a browser build an import() on
// the pool's first use, so that a page -- which starts its workers in the background anyway, and whose
// split jobs run on one thread until they are up -- does not load it first (README.md, "In the browser").
// The pool hands over its memory map and runPart; nothing of threads.ts is imported here but types.

import type { Builtin, GemmFns, GemmJob, MemoryMap, Pool, runPart } from './threads.ts';

// Int32 indices into the control block.
const GEN = 0, PENDING = 1, KERNEL = 3, PARTS = 15, JOB = 16, JOB_LENGTH = 37;
const PART = 64, READY = 128, DEAD = 192, FAULT = 256, EPOCH = 320;
const MESSAGE = 2048, MESSAGE_BYTES = 128; // byte offsets: a dead worker's last words

/** The memory's layout, which the worker's program gets in its start message (it is spliced in as source: no closure). */
const layout = (map: MemoryMap) => ({ GEN, PENDING, KERNEL, JOB, JOB_LENGTH, PARTS, PART, READY, DEAD, FAULT, EPOCH, MESSAGE, MESSAGE_BYTES, ...map });

/** What a worker is started with: its shared memory, its index, the epoch it was started in, and the layout. */
interface WorkerStart { mem: WebAssembly.Memory; index: number; epoch: number; layout: ReturnType<typeof layout> }

/** The globals of a worker that the program uses (Node's worker_threads, or a Web Worker). */
type WorkerGlobals = { process?: { on?(ev: 'exit', f: (code: number) => void): void; exit?(code: number): void }; close?(): void };

/**
 * The worker's program: `workerMain(runPart, start)` in the worker, spliced in with `toString()` as
 * runPart is, so it must use nothing from this module but its arguments. A worker whose slot has been
 * given to a newer one (the pool restarted or shrank while it was still winding down) touches nothing
 * and ends.
 */
function workerMain(run: typeof runPart, { mem, index, epoch, layout }: WorkerStart): void {
  const { GEN, PENDING, KERNEL, JOB, JOB_LENGTH, PARTS, PART, READY, DEAD, FAULT, EPOCH, MESSAGE, MESSAGE_BYTES, SLOT, SLOT_BYTES, SCRATCH_START } = layout;
  const g = globalThis as WorkerGlobals;
  const ctrl = new Int32Array(mem.buffer, 0, SCRATCH_START / 4);
  const kernels: GemmFns[] = [];
  const kernel = (id: number): GemmFns => {
    if (!kernels[id]) {
      const at = SLOT + id * SLOT_BYTES, len = Atomics.load(ctrl, at / 4);
      const bytes = new Uint8Array(mem.buffer, at + 4, len).slice();
      kernels[id] = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem } }).exports as unknown as GemmFns;
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
      run(kernel(ctrl[KERNEL]), Array.from(ctrl.subarray(JOB, JOB + JOB_LENGTH)) as unknown as GemmJob, part, ctrl[PARTS]);
    } catch (e) {
      say((e as Error | undefined)?.message || e);
      Atomics.store(ctrl, DEAD + index, 2);
    }
    finish();
  }
}

/**
 * The worker's source (statements): its program, started with `start` (an expression of the worker's
 * scope that holds a WorkerStart). Run from source by tsx, esbuild's keepNames wraps the program's
 * inner functions in a `__name` helper: the worker gets a stand-in (names are only cosmetic there).
 */
const workerSource = (part: typeof runPart, start: string): string =>
  `const __name = (f) => f;\n(${workerMain.toString()})(${part.toString()}, ${start});`;

interface WorkerHandle { terminate(): unknown; exited: boolean; exitCode: number | null }
interface NodeWorkerModule {
  Worker: new (code: string, opts: { eval: true; workerData: unknown }) => {
    on(ev: 'exit', f: (code: number) => void): void; on(ev: 'error', f: (e: Error) => void): void; unref(): void; terminate(): Promise<number>;
  };
}

function spawnWorker(start: WorkerStart, part: typeof runPart): WorkerHandle | null {
  const g = globalThis as { process?: { getBuiltinModule?: Builtin }; Worker?: new (url: string) => { postMessage(m: unknown): void; terminate(): void; addEventListener(ev: string, f: () => void): void }; Blob?: typeof Blob; URL?: typeof URL };
  const wt = g.process?.getBuiltinModule?.('node:worker_threads') as NodeWorkerModule | undefined;
  if (wt) {
    const w = new wt.Worker(workerSource(part, "require('node:worker_threads').workerData"), { eval: true, workerData: start });
    w.unref(); // an idle pool never keeps the process alive
    const h: WorkerHandle = { terminate: () => w.terminate(), exited: false, exitCode: null };
    w.on('exit', (code) => { h.exited = true; h.exitCode = code; });
    w.on('error', () => { h.exited = true; });
    return h;
  }
  if (g.Worker && g.Blob && g.URL) {
    const url = g.URL.createObjectURL(new g.Blob([`onmessage = (e) => {\n${workerSource(part, 'e.data')}\n};`], { type: 'text/javascript' }));
    const w = new g.Worker(url);
    const h: WorkerHandle = { terminate: () => w.terminate(), exited: false, exitCode: null };
    w.addEventListener('error', () => { h.exited = true; });
    w.postMessage(start);
    return h;
  }
  return null;
}

/** Whether this thread may block in Atomics.wait (Node's main thread and workers; not a browser's main thread). */
function canBlock(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; document?: unknown };
  return Boolean(g.process?.versions?.node) || g.document === undefined;
}


/** A pool's workers: started on its memory, given parts of its jobs; threads.ts's Pool holds one once this module has loaded. */
export class Crew {
  private readonly ctrl: Int32Array;
  private workers: (WorkerHandle | null)[] = [];
  /** how many of the pool's kernels have been copied into their slots */
  private copied = 0;
  private readonly blocking = canBlock();

  /** `map`: the pool's memory map; `part`: threads.ts's runPart (this thread runs part 0, and the workers get its source). */
  constructor(private readonly pool: Pool, private readonly map: MemoryMap, private readonly part: typeof runPart) {
    this.ctrl = new Int32Array(pool.memory.buffer, 0, map.SCRATCH_START / 4);
    this.ctrl.fill(0);
    for (let w = 0; w < map.MAX_WORKERS; w++) this.ctrl[PART + w] = -1;
  }

  /** Runs a job split into one part per ready worker and this thread; returns when every part is done. */
  run(id: number, fns: GemmFns, job: GemmJob): void {
    const ready = this.readyWorkers();
    const parts = 1 + ready.length;
    if (parts === 1) { this.part(fns, job, 0, 1); return; }
    this.publish(id, job, ready);
    let error: unknown = null;
    try { this.part(fns, job, 0, parts); } catch (e) { error = e; }
    this.join(ready);
    if (error) throw error;
  }

  /** Stops the workers past the first `n` (the pool shrank). */
  shrink(n: number): void {
    while (this.workers.length > n) this.stop(this.workers.length - 1);
  }

  /** Worker `w` (1-based) exits in the middle of its next job (threads.ts's Pool.injectFault). */
  injectFault(w: number): void {
    Atomics.store(this.ctrl, FAULT + w - 1, 1);
  }

  /** Copies the kernels the pool got since the last job into their slots, where the workers compile them. */
  private copyKernels(): void {
    for (; this.copied < this.pool.kernels.length; this.copied++) {
      const bytes = this.pool.kernels[this.copied], at = this.map.SLOT + this.copied * this.map.SLOT_BYTES;
      new Uint8Array(this.pool.memory.buffer, at + 4, bytes.length).set(bytes);
      Atomics.store(this.ctrl, at / 4, bytes.length);
    }
  }

  private publish(id: number, job: GemmJob, workers: number[]): void {
    this.copyKernels();
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
    const bytes = new Uint8Array(this.pool.memory.buffer, MESSAGE + w * MESSAGE_BYTES, MESSAGE_BYTES).slice();
    const said = new TextDecoder().decode(bytes.subarray(0, Math.max(0, bytes.indexOf(0)))) || `exited with code ${this.workers[w]?.exitCode ?? 'unknown'}`;
    // Restart: stop every worker, clear the flags; the next split job starts fresh ones.
    for (let i = this.workers.length - 1; i >= 0; i--) this.stop(i);
    Atomics.store(c, PENDING, 0);
    throw new Error(`kiln thread pool: worker ${w + 1} of ${this.pool.size} ${how} (${said}); its part of the product is missing. The pool has restarted; the next call runs on fresh workers.`);
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
    const want = this.pool.size - 1;
    if (want > 0 && this.workers.length < want) {
      for (let i = this.workers.length; i < want; i++) {
        for (const f of [READY, DEAD, FAULT]) Atomics.store(this.ctrl, f + i, 0);
        Atomics.store(this.ctrl, PART + i, -1);
        const epoch = Atomics.add(this.ctrl, EPOCH + i, 1) + 1;
        this.workers[i] = spawnWorker({ mem: this.pool.memory, index: i, epoch, layout: layout(this.map) }, this.part);
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
