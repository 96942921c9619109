// The thread pool's workers (pool.ts is the pool): starting them (Node worker_threads, or Web
// Workers in a cross-origin-isolated page) on the pool's shared memory, their program, and handing
// them parts of a job. A job lives in that memory's first page -- a control block (below), the WebAssembly
// kernels' bytes (pool.ts keeps them; copied here into slots), flags -- so handing one out is a few
// atomic stores and one notify. The caller runs its own part, then waits for the rest -- with
// Atomics.wait in Node, spinning on Atomics.load in a browser's main thread (where Atomics.wait is not
// allowed; the parts are equal, so the spin is short).
//
// Jobs are of two kinds: a product (pool.ts runPart: each thread its own panels or row blocks), and a
// split JavaScript kernel (a compiled program's elementwise kernel or reduction over arrays in shared
// memory: the threads claim ranges of its outermost loop). What a split kernel needs beyond the memory
// -- its source and its arrays -- is posted to each worker once, on a port the worker reads synchronously
// when a job comes (Node's receiveMessageOnPort); a browser's workers have no such read, so there split
// kernels stay on the calling thread.
//
// pool.ts gets this module through package.json's "#thread-workers": in Node a static import (the
// workers are there for the first split job, as they always were), in a browser build an import() on
// the pool's first use, so that a page -- which starts its workers in the background anyway, and whose
// split jobs run on one thread until they are up -- does not load it first (README.md, "In the browser").
// The pool hands over its memory map and runPart; nothing of pool.ts or threads.ts is imported here but types.

import type { TypedArray } from '../ir/dtype.ts';
import type { JsParallel, SplitFn } from '../compiler/codegen/js.ts';
import type { GemmFns, GemmJob, MemoryMap, Pool, runPart } from './pool.ts';
import type { Builtin } from './threads.ts';

// Int32 indices into the control block. KIND: the job's kind, a product (GEMM: JOB holds a GemmJob) or a
// split JavaScript kernel (SPLIT: JOB holds [n, ...n array ids, extent]), whose CHUNKS ranges every
// thread claims one at a time (NEXT counts them out), so that a late or slow thread takes fewer.
const GEN = 0, PENDING = 1, KIND = 2, KERNEL = 3, NEXT = 4, CHUNKS = 5, PARTS = 15;
const PART = 64, READY = 128, DEAD = 192, FAULT = 256, EPOCH = 320, JOB = 384, JOB_LENGTH = 56;
const MESSAGE = 2048, MESSAGE_BYTES = 128; // byte offsets: a dead worker's last words
const GEMM = 0, SPLIT = 1;
/** The most arrays a split kernel may take (its ids fill JOB, with the count and the extent). */
const SPLIT_MAX_ARRAYS = 35;
/** Ranges a split kernel is cut into per thread: enough that a thread woken late still gets its share. */
const CHUNKS_PER_THREAD = 8;
/** The largest array outside shared memory that a split kernel may read: copied into shared memory on each call. */
const STAGED_MAX_BYTES = 256;

/** The memory's layout, which the worker's program gets in its start message (it is spliced in as source: no closure). */
const layout = (map: MemoryMap) => ({ GEN, PENDING, KIND, GEMM, KERNEL, NEXT, CHUNKS, JOB, JOB_LENGTH, PARTS, PART, READY, DEAD, FAULT, EPOCH, MESSAGE, MESSAGE_BYTES, ...map });

/**
 * What a worker is started with: its shared memory, its index, the epoch it was started in, the layout,
 * and in Node a port for what split JavaScript kernels need (their modules, their shared arrays: Messages),
 * which it reads synchronously (`receive`, Node's receiveMessageOnPort) when a job comes.
 */
interface WorkerStart { mem: WebAssembly.Memory; index: number; epoch: number; layout: ReturnType<typeof layout>; port?: MessagePortLike; receive?: (port: MessagePortLike) => { message: Message } | undefined }

/** What the pool tells a worker about split kernels: a kernel's module (returning its function of the buffer table: js.ts jsProgramSource) and the table slots it reads, an array over shared memory, an array no longer used. */
type Message = { kind: 'kernel'; id: number; module: string; slots: readonly number[] } | { kind: 'array'; id: number; array: ArrayBufferView } | { kind: 'drop'; id: number };
interface MessagePortLike { postMessage(m: Message): void; close(): void }

/** The globals of a worker that the program uses (Node's worker_threads, or a Web Worker). */
type WorkerGlobals = { process?: { on?(ev: 'exit', f: (code: number) => void): void; exit?(code: number): void }; close?(): void };

/**
 * The worker's program: `workerMain(runPart, start)` in the worker, spliced in with `toString()` as
 * runPart is, so it must use nothing from this module but its arguments. A worker whose slot has been
 * given to a newer one (the pool restarted or shrank while it was still winding down) touches nothing
 * and ends.
 */
function workerMain(run: typeof runPart, { mem, index, epoch, layout, port, receive }: WorkerStart): void {
  const { GEN, PENDING, KIND, GEMM, KERNEL, NEXT, CHUNKS, JOB, JOB_LENGTH, PARTS, PART, READY, DEAD, FAULT, EPOCH, MESSAGE, MESSAGE_BYTES, SLOT, SLOT_BYTES, SCRATCH_START } = layout;
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
  const splitFns = new Map<number, { fn: SplitFn; slots: readonly number[] }>(), arrays = new Map<number, ArrayBufferView>(), noParams: number[] = [];
  /** Takes in what the pool posted for split kernels (posted before the job that needs it). */
  const drain = (): void => {
    for (let m = port && receive?.(port); m; m = receive!(port!)) {
      const msg = m.message;
      if (msg.kind === 'kernel') splitFns.set(msg.id, { fn: new Function('env', msg.module)(null) as SplitFn, slots: msg.slots });
      else if (msg.kind === 'array') arrays.set(msg.id, msg.array);
      else arrays.delete(msg.id);
    }
  };
  /** Runs ranges of the split kernel in the control block until none is left. */
  const runSplit = (): void => {
    const kernel = splitFns.get(ctrl[KERNEL]);
    if (!kernel) throw new Error(`split kernel ${ctrl[KERNEL]} was never shared`);
    const n = ctrl[JOB], extent = ctrl[JOB + 1 + n], chunks = ctrl[CHUNKS], table: ArrayBufferView[] = [];
    for (let i = 0; i < n; i++) {
      const a = arrays.get(ctrl[JOB + 1 + i]);
      if (!a) throw new Error(`split kernel: array ${ctrl[JOB + 1 + i]} was never shared`);
      table[kernel.slots[i]] = a;
    }
    for (let c = Atomics.add(ctrl, NEXT, 1); c < chunks; c = Atomics.add(ctrl, NEXT, 1)) {
      kernel.fn(table, noParams, Math.floor((extent * c) / chunks), Math.floor((extent * (c + 1)) / chunks));
    }
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
      drain();
      if (ctrl[KIND] === GEMM) run(kernel(ctrl[KERNEL]), Array.from(ctrl.subarray(JOB, JOB + JOB_LENGTH)) as unknown as GemmJob, part, ctrl[PARTS]);
      else runSplit();
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

/**
 * A started worker. In Node, `port` reaches it with what split kernels need; `kernels` and `arrays` are
 * the ids already posted to it (a restarted worker starts with none).
 */
interface WorkerHandle { terminate(): unknown; exited: boolean; exitCode: number | null; port: MessagePortLike | null; kernels: Set<number>; arrays: Set<number> }
interface NodeWorkerModule {
  Worker: new (code: string, opts: { eval: true; workerData: unknown; transferList: unknown[] }) => {
    on(ev: 'exit', f: (code: number) => void): void; on(ev: 'error', f: (e: Error) => void): void; unref(): void; terminate(): Promise<number>;
  };
  MessageChannel: new () => { port1: MessagePortLike & { unref(): void }; port2: MessagePortLike };
}

function spawnWorker(start: WorkerStart, part: typeof runPart): WorkerHandle | null {
  const g = globalThis as { process?: { getBuiltinModule?: Builtin }; Worker?: new (url: string) => { postMessage(m: unknown): void; terminate(): void; addEventListener(ev: string, f: () => void): void }; Blob?: typeof Blob; URL?: typeof URL };
  const wt = g.process?.getBuiltinModule?.('node:worker_threads') as NodeWorkerModule | undefined;
  if (wt) {
    const { port1, port2 } = new wt.MessageChannel();
    port1.unref();
    const w = new wt.Worker(workerSource(part, "Object.assign(require('node:worker_threads').workerData, { receive: require('node:worker_threads').receiveMessageOnPort })"),
      { eval: true, workerData: { ...start, port: port2 }, transferList: [port2] });
    w.unref(); // an idle pool never keeps the process alive
    const h: WorkerHandle = { terminate: () => { port1.close(); return w.terminate(); }, exited: false, exitCode: null, port: port1, kernels: new Set(), arrays: new Set() };
    w.on('exit', (code) => { h.exited = true; h.exitCode = code; });
    w.on('error', () => { h.exited = true; });
    return h;
  }
  if (g.Worker && g.Blob && g.URL) {
    const url = g.URL.createObjectURL(new g.Blob([`onmessage = (e) => {\n${workerSource(part, 'e.data')}\n};`], { type: 'text/javascript' }));
    const w = new g.Worker(url);
    const h: WorkerHandle = { terminate: () => w.terminate(), exited: false, exitCode: null, port: null, kernels: new Set(), arrays: new Set() };
    w.addEventListener('error', () => { h.exited = true; });
    w.postMessage(start);
    return h;
  }
  return null;
}

/** Whether the workers can share an array: a view of shared memory (posting it shares, never copies). */
const isShared = (a: unknown): a is ArrayBufferView => ArrayBuffer.isView(a) && typeof SharedArrayBuffer !== 'undefined' && a.buffer instanceof SharedArrayBuffer;

/** Whether this thread may block in Atomics.wait (Node's main thread and workers; not a browser's main thread). */
function canBlock(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } }; document?: unknown };
  return Boolean(g.process?.versions?.node) || g.document === undefined;
}


/** A pool's workers: started on its memory, given parts of its jobs; pool.ts's Pool holds one once this module has loaded. */
export class Crew {
  private readonly ctrl: Int32Array;
  private workers: (WorkerHandle | null)[] = [];
  /** how many of the pool's kernels have been copied into their slots */
  private copied = 0;
  private readonly blocking = canBlock();

  /** `map`: the pool's memory map; `part`: pool.ts's runPart (this thread runs part 0, and the workers get its source). */
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
    this.ctrl[KIND] = GEMM; this.ctrl[KERNEL] = id; this.ctrl.set(job, JOB);
    this.publish(ready);
    let error: unknown = null;
    try { this.part(fns, job, 0, parts); } catch (e) { error = e; }
    this.join(ready);
    if (error) throw error;
  }

  /** Split JavaScript kernels as compiled programs use the pool (codegen/js.ts JsParallel). */
  readonly splitter: JsParallel = {
    kernel: (module, slots, written) => {
      let id = this.partIds.get(module);
      if (id === undefined) {
        id = this.parts.push({ module, slots, written }) - 1;
        this.partIds.set(module, id);
      }
      return id;
    },
    run: (id, table, params, extent, fn) => {
      if (this.pool.size > 1 && this.runSplit(id, table, params, extent, fn)) this.splitRuns++;
      else fn(table, params, 0, extent);
    },
  };

  /** How many split kernels have run on more than one thread. */
  splitRuns = 0;
  /** split kernels (their modules, the table slots they read and write), by id; posted to each worker before its first range */
  private readonly parts: { module: string; slots: readonly number[]; written: readonly number[] }[] = [];
  private readonly partIds = new Map<string, number>();

  /**
   * Runs split kernel `id` over buffer table `table` in ranges of [0, extent) that the ready workers and
   * this thread (`fn`) claim in turn, posting the workers the kernel and arrays they lack first.
   * Returns false, having run nothing, where the workers cannot take it: none ready, no port (a
   * browser's workers), params, or an array that is neither over shared memory nor small and only read.
   */
  private runSplit(id: number, table: readonly unknown[], params: readonly number[], extent: number, fn: SplitFn): boolean {
    const { module, slots, written } = this.parts[id];
    // the workers run ranges without params (compiled programs pass none)
    if (slots.length > SPLIT_MAX_ARRAYS || params.length > 0) return false;
    const shared: ArrayBufferView[] = [];
    for (const slot of slots) {
      const a = table[slot];
      if (isShared(a)) shared.push(a);
      else if (ArrayBuffer.isView(a) && a.byteLength <= STAGED_MAX_BYTES && !written.includes(slot)) shared.push(this.staged(slot, a as TypedArray));
      else return false;
    }
    const ready = this.readyWorkers().filter((w) => this.workers[w]!.port);
    if (ready.length === 0) return false;
    const ids = shared.map((a) => this.arrayId(a));
    for (const w of ready) {
      const h = this.workers[w]!;
      if (!h.kernels.has(id)) { h.port!.postMessage({ kind: 'kernel', id, module, slots }); h.kernels.add(id); }
      shared.forEach((a, i) => {
        if (!h.arrays.has(ids[i])) { h.port!.postMessage({ kind: 'array', id: ids[i], array: a }); h.arrays.add(ids[i]); }
      });
    }
    const c = this.ctrl, chunks = Math.min(extent, CHUNKS_PER_THREAD * (1 + ready.length));
    c[KIND] = SPLIT; c[KERNEL] = id; c[JOB] = ids.length; c.set(ids, JOB + 1); c[JOB + 1 + ids.length] = extent;
    c[CHUNKS] = chunks; Atomics.store(c, NEXT, 0);
    this.publish(ready);
    let error: unknown = null;
    try {
      for (let k = Atomics.add(c, NEXT, 1); k < chunks; k = Atomics.add(c, NEXT, 1)) fn(table, params, Math.floor((extent * k) / chunks), Math.floor((extent * (k + 1)) / chunks));
    } catch (e) { error = e; }
    this.join(ready);
    if (error) throw error;
    return true;
  }

  /**
   * A shared copy of a small array the kernel only reads (a 0-d scalar such as a learning rate, which the
   * CPU keeps outside shared memory: small storages are not worth it), refreshed on every call.
   */
  private staged(slot: number, a: TypedArray): TypedArray {
    let copy = this.staging.get(slot);
    if (!copy || copy.constructor !== a.constructor || copy.length !== a.length) {
      const C = a.constructor as new (buffer: SharedArrayBuffer) => TypedArray;
      copy = new C(new SharedArrayBuffer(a.byteLength));
      this.staging.set(slot, copy);
    }
    copy.set(a);
    return copy;
  }

  /** by table slot: a program's scalars keep their slot (programs run one at a time, so they can share the copies) */
  private readonly staging = new Map<number, TypedArray>();

  /** An array's id as the workers know it; once the array is garbage, the workers are told to drop it. */
  private arrayId(a: ArrayBufferView): number {
    let id = this.arrayIds.get(a);
    if (id === undefined) {
      id = this.nextArrayId++;
      this.arrayIds.set(a, id);
      this.dropped.register(a, id);
    }
    return id;
  }

  private readonly arrayIds = new WeakMap<ArrayBufferView, number>();
  private nextArrayId = 0;
  private readonly dropped = new FinalizationRegistry<number>((id) => {
    for (const h of this.workers) {
      if (h?.arrays.delete(id)) h.port!.postMessage({ kind: 'drop', id });
    }
  });

  /** Stops the workers past the first `n` (the pool shrank). */
  shrink(n: number): void {
    while (this.workers.length > n) this.stop(this.workers.length - 1);
  }

  /** Worker `w` (1-based) exits in the middle of its next job (pool.ts's Pool.injectFault). */
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

  /** Wakes `workers` for the job in the control block, one part each (this thread runs part 0). */
  private publish(workers: number[]): void {
    this.copyKernels();
    const c = this.ctrl;
    c[PARTS] = 1 + workers.length;
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
    throw new Error(`kiln thread pool: worker ${w + 1} of ${this.pool.size} ${how} (${said}); its part of the job is missing. The pool has restarted; the next call runs on fresh workers.`);
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
