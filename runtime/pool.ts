// The CPU thread pool: threads sharing one WebAssembly.Memory with the calling thread, which run
// WebAssembly kernels over parts of a job (a product split by column panels or row blocks; runPart), and
// ranges of compiled programs' big JavaScript kernels over arrays in shared memory (codegen/js.ts
// JsParallel). Calls stay synchronous. This module is the pool as gemm-wasm.ts uses it -- its memory, its
// kernels, its size, run() -- and the process's pool(); the workers themselves (starting them, their
// program, handing out parts) are ./thread-workers.ts, which a browser build loads on the pool's first
// use: until it is there, split jobs run on this thread alone (with the same result: each part writes
// its own tiles of C in the same k order as one thread would). How many threads there are is
// ./threads.ts's setting; a browser build loads this module with the gemm (gemm-load.browser.ts).

import { loadWorkers } from '#thread-workers';
import type { JsParallel } from '../compiler/codegen/js.ts';
import type { TypedArray, TypedArrayClass } from '../ir/dtype.ts';
import { Arena } from './arena.ts';
import type { Crew } from './thread-workers.ts';
import { MAX_WORKERS, poolMade, requestedThreads, threadsUnavailable, type Builtin } from './threads.ts';

/** Largest size (64 KiB pages) the shared memory may grow to: 1 GiB. */
export const MAX_PAGES = 16384;
/** Bytes of the memory compiled programs' arrays may take (Pool.array): three quarters; the rest stays for the gemm's scratch. */
const ARRAYS_MAX_BYTES = (MAX_PAGES / 4) * 3 * 65536;
/** Bytes of the first two pages reserved for the control block and the kernels' modules; the arena (arrays, scratch) starts here. */
export const SCRATCH_START = 131072;

/** Bytes where kernel modules' bytes are kept for the workers: slots from SLOT on, SLOT_BYTES each (the control block is below). */
const SLOT = 12288, SLOT_BYTES = 8192, MAX_KERNELS = Math.floor((SCRATCH_START - SLOT) / SLOT_BYTES);
/** The memory map a pool hands its workers' module (./thread-workers.ts lays out the control block below SLOT). */
const MEMORY_MAP = { SCRATCH_START, SLOT, SLOT_BYTES, MAX_WORKERS };
export type MemoryMap = typeof MEMORY_MAP;

/**
 * A product (byte pointers; see gemm-wasm.ts): [pa, pb, pc, mBlocks, nPanels, k, ldcBytes, kc, RB, NR,
 * axis, srcA, sam, sak, srcB, sbk, sbn, m, n, packOwn, runLength, runStride, segments, ...unfolding].
 * A and B are packed per block of kc values of k: A's block at pa + k0 * mBlocks * RB floats, B's at
 * pb + k0 * ldc floats. With packOwn, each part packs its own slice of the operand it splits (B's panels
 * on axis 0, A's row blocks on axis 1; both on axis 2), a block of k just before using it, from the raw
 * copy at srcA / srcB (element strides sam, sak / sbk, sbn) or, when packOwn is 2 or 3, B by unfolding
 * a convolution's input (the 17 numbers of `unfolding`, UnfoldFn's from src on; 3: by window rows,
 * packUnfoldedRows); the other operand is packed before the job starts. A with runLength > 0 is read in
 * runs (gemm-wasm.ts Runs; axis 2 only). Axis 2 splits k into `segments` (see runPart). Axis 3, a
 * convolution (a transposed one: conv-gemm.ts), splits B's images and writes (adds) each image's C
 * into an output: 16 numbers more, [out, outImage, outChannel, channels, KP, kw, dhRow, dwBytes, outRow,
 * wi, h, p, images, srcImage, bias, relu] (byte addresses and strides; KP = 0: written in place, then
 * its bias added and ReLU applied where asked (bias 0: none); see runPart).
 * Axis 4 runs the dot kernel instead (no packing): [acc, a0, sao, san, arun, bt, sbn, brun, pairs,
 * images, runs, run, rows] (DotFn's; 3 unused), split by column pairs.
 */
export type GemmJob = readonly number[] & { length: 56 };
/** The micro-kernel: kernel(pa, pb, pc, mBlocks, nPanels, kc, ldcBytes, accumulate) over one block of k. */
export type KernelFn = (pa: number, pb: number, pc: number, mBlocks: number, nPanels: number, kc: number, ldc: number, accumulate: number) => void;
/**
 * A packer: pack(dst, dstBlockBytes, src, sElem, sK, count, b0, b1, kb) writes blocks b0..b1 of W
 * elements (rows of A, W = RB; columns of B, W = NR) interleaved over kb values of k, block b at
 * dst + b * dstBlockBytes, reading element e of k-step kk at src + (e * sElem + kk * sK) * 4; elements
 * past `count` are zeros.
 */
export type PackFn = (dst: number, dstBlockBytes: number, src: number, sElem: number, sK: number, count: number, b0: number, b1: number, kb: number) => void;
/**
 * The unfolding packer: packUnfolded(dst, dstBlockBytes, b0, b1, kb, k0, n, src, sN, sC, sH, sW, kh, kw,
 * oh, ow, h, w, strideH, strideW, dilationH, dilationW, padH, padW) writes panels b0..b1 of B for k-steps
 * k0..k0 + kb, B[(c, i, j), (image, y, x)] = input[src + image sN + c sC + (y strideH + i dilationH - padH) sH
 * + (x strideW + j dilationW - padW) sW] (zero outside the h x w input): im2col, straight into panels.
 */
export type UnfoldFn = (...args: number[]) => void;
/** addRows(dst, dstRowBytes, src, srcRowBytes, width, rows): for each row, width floats of src added into dst (byte pointers). */
export type AddRowsFn = (dst: number, dstRow: number, src: number, srcRow: number, width: number, rows: number) => void;
/**
 * The dot kernel: dot(acc, a0, sao, san, arun, bt, sbn, brun, rb0, rb1, cp0, cp1, np, images, r, l, m)
 * accumulates tiles of 4 rows x 2 columns (rows rb0 * 4.., column pairs cp0..) of C = A @ B over
 * `images` blocks of k, each r runs of l floats (l a multiple of 4), read where the operands are: row i of
 * A from a0 + i sao + image san + run arun, column j of B from the i32 table bt[j] + image sbn + run brun
 * (byte pointers and strides). Tile (rb, cp)'s 8 vectors of partial sums at acc + (rb np + cp) 128.
 */
export type DotFn = (...args: number[]) => void;
/** biasRelu(dst, rows, rowBytes, vectors, bias, relu): per row, its bias (bias: one float per row; 0: none) added, then, with relu, max(x, 0) (NaN and -0 kept). */
export type BiasReluFn = (dst: number, rows: number, rowBytes: number, vectors: number, bias: number, relu: number) => void;
/** A gemm module's exports. */
export interface GemmFns { kernel: KernelFn; packA: PackFn; packB: PackFn; packUnfolded: UnfoldFn; packUnfoldedRows: UnfoldFn; addRows: AddRowsFn; dot: DotFn; biasRelu: BiasReluFn }

/**
 * Runs part `part` of `parts` of a job (GemmJob; its `axis` says how it is split): column panels (0), row
 * blocks (1), segments of k (2), whole images of a convolution (3), or column pairs of the dot kernel
 * (4). Shared by the caller and the workers (spliced into their source, so everything it uses is inside
 * it), so both agree on the tiling without messages. Each part writes its own tiles of C, or its own
 * images, with the same arithmetic in the same order as one thread would: the same bits on any number
 * of threads.
 */
export function runPart(fns: GemmFns, job: GemmJob, part: number, parts: number): void {
  const [pa, pb, pc, mb, np, k, ldc, kc, rb, nr, axis, srcA, sam, sak, srcB, sbk, sbn, m, n, packOwn, runLength, runStride, segments] = job;
  const unfolded = job.slice(23, 40), extra = job.slice(40);
  /** The range [lo, hi) of `count` things that is this part's. */
  const mine = (count: number): [number, number] => [Math.floor((count * part) / parts), Math.floor((count * (part + 1)) / parts)];
  /** Packs A's row blocks c0..c1 for k-steps k0..k0 + kb at dst (row block c at dst + c * kb * rb floats), a run at a time when A is in runs. */
  const packA = (dst: number, k0: number, kb: number, c0: number, c1: number): void => {
    if (!runLength) { fns.packA(dst, kb * rb * 4, srcA + k0 * sak * 4, sam, sak, m, c0, c1, kb); return; }
    for (let s0 = k0; s0 < k0 + kb;) {
      const r = Math.floor(s0 / runLength), s1 = Math.min(k0 + kb, (r + 1) * runLength);
      fns.packA(dst + (s0 - k0) * rb * 4, kb * rb * 4, srcA + (r * runStride + (s0 - r * runLength) * sak) * 4, sam, sak, m, c0, c1, s1 - s0);
      s0 = s1;
    }
  };
  /** Packs B's panels q0..q1 for k-steps k0..k0 + kb (panel q at dst + q * kb * nr floats), from `src` (UnfoldFn's arguments) when unfolded. */
  const packB = (dst: number, k0: number, kb: number, q0: number, q1: number, cols = n, src = unfolded): void => {
    if (packOwn >= 2) (packOwn === 3 ? fns.packUnfoldedRows : fns.packUnfolded)(dst, kb * nr * 4, q0, q1, kb, k0, cols, ...src);
    else fns.packB(dst, kb * nr * 4, srcB + k0 * sbk * 4, sbn, sbk, n, q0, q1, kb);
  };

  /**
   * Axes 0 and 1. Chunks of 32 row blocks: a chunk of packed A (128 rows x kc) stays in the second-level
   * cache while the panels of B pass over it. A part packs its own operand a chunk at a time (32 panels
   * of B, or 32 row blocks of A) just before multiplying it, into its own chunk-sized buffer (at pb, or
   * pa, plus part x that buffer's size; see packedFloats): reused, it stays in cache instead of being
   * written back to memory.
   */
  const byPanelsOrRows = (): void => {
    const [p0, p1] = axis === 0 ? mine(np) : [0, np], [i0, i1] = axis === 1 ? mine(mb) : [0, mb];
    if (i1 <= i0 || p1 <= p0) return;
    const own = packOwn ? (axis === 0 ? pb + part * 32 * kc * nr * 4 : pa + part * 32 * kc * rb * 4) : 0;
    for (let k0 = 0; k0 < k; k0 += kc) {
      const kb = Math.min(kc, k - k0), acc = k0 > 0 ? 1 : 0;
      // this block of k: A's row blocks (kb * rb floats each) from aK, B's panels (kb * nr floats each) from bK
      const aK = pa + mb * rb * k0 * 4, bK = pb + ldc * k0, aBlock = kb * rb * 4, bPanel = kb * nr * 4;
      if (axis === 0) {
        for (let q0 = p0; q0 < p1; q0 += 32) {
          const q1 = Math.min(p1, q0 + 32);
          // panel q at bq + q * bPanel: in the shared packed B, or (packOwn) from the start of this part's buffer
          const bq = packOwn ? own - q0 * bPanel : bK;
          if (packOwn) packB(bq, k0, kb, q0, q1);
          for (let c0 = i0; c0 < i1; c0 += 32) fns.kernel(aK + c0 * aBlock, bq + q0 * bPanel, pc + c0 * rb * ldc + q0 * nr * 4, Math.min(32, i1 - c0), q1 - q0, kb, ldc, acc);
        }
      } else {
        for (let c0 = i0; c0 < i1; c0 += 32) {
          const c1 = Math.min(i1, c0 + 32);
          const ac = packOwn ? own - c0 * aBlock : aK;
          if (packOwn) packA(ac, k0, kb, c0, c1);
          fns.kernel(ac + c0 * aBlock, bK + p0 * bPanel, pc + c0 * rb * ldc + p0 * nr * 4, c1 - c0, p1 - p0, kb, ldc, acc);
        }
      }
    }
  };

  /**
   * Axis 2: k in `segments` runs of whole blocks, fixed by the shape; part p takes segments p, p + parts,
   * ... and for each block of k packs all of A and B into buffers of its own, accumulating the segment's
   * own C (pc + s * mBlocks * rb * ldc). The caller adds the segments' Cs up in order.
   */
  const byKSegments = (): void => {
    const blocks = Math.ceil(k / kc), aOwn = pa + part * mb * rb * kc * 4, bOwn = pb + part * kc * ldc;
    for (let s = part; s < segments; s += parts) {
      const b0 = Math.floor((blocks * s) / segments), b1 = Math.floor((blocks * (s + 1)) / segments);
      for (let blk = b0; blk < b1; blk++) {
        const k0 = blk * kc, kb = Math.min(kc, k - k0);
        packA(aOwn, k0, kb, 0, mb);
        packB(bOwn, k0, kb, 0, np);
        fns.kernel(aOwn, bOwn, pc + s * mb * rb * ldc, mb, np, kb, ldc, blk > b0 ? 1 : 0);
      }
    }
  };

  /**
   * Axis 3: a convolution image by image, each part whole images of B (a convolution's input unfolded, p
   * columns each). Per image, C = A @ B: with KP = 0, straight into `out` (its rows are out's channels, p
   * floats each), then its bias and ReLU while the image is in cache; else (a transposed convolution, B
   * read as a 1 x 1 window) into the part's own C, then col2im: C's row (channel o, window position t)
   * added into `out`'s channel o shifted by t, while C is in cache. An output element's sums come from
   * one image, in window order.
   */
  const byImages = (): void => {
    const [out, outImage, outChannel, channels, KP, kw, dhRow, dwBytes, outRow, wi, h, p, images, srcImage, bias, relu] = extra;
    const ppi = Math.ceil(p / nr), own = ppi * nr * 4, bOwn = pb + part * kc * ppi * nr * 4, cOwn = pc + part * mb * rb * own;
    const ldcI = KP ? own : outChannel, [img0, img1] = mine(images), src = unfolded.slice();
    for (let img = img0; img < img1; img++) {
      src[0] = unfolded[0] + img * srcImage;
      const cI = KP ? cOwn : out + img * outImage;
      for (let k0 = 0; k0 < k; k0 += kc) {
        const kb = Math.min(kc, k - k0), aK = pa + mb * rb * k0 * 4, aBlock = kb * rb * 4;
        packB(bOwn, k0, kb, 0, ppi, p, src);
        for (let c0 = 0; c0 < mb; c0 += 32) fns.kernel(aK + c0 * aBlock, bOwn, cI + c0 * rb * ldcI, Math.min(32, mb - c0), ppi, kb, ldcI, k0 > 0 ? 1 : 0);
      }
      if (!KP) {
        if (bias || relu) fns.biasRelu(cI, m, ldcI, p / 4, bias, relu);
        continue;
      }
      for (let o = 0; o < channels; o++) {
        for (let t = 0; t < KP; t++) {
          const i = Math.floor(t / kw), j = t - i * kw;
          fns.addRows(out + img * outImage + o * outChannel + i * dhRow + j * dwBytes, outRow, cOwn + (o * KP + t) * ldcI, wi * 4, wi, h);
        }
      }
    }
  };

  /** Axis 4: the dot kernel (gemm-wasm.ts Gemm.dotted), each part its column pairs over every row block. */
  const dotted = (): void => {
    const [acc, a0, sao, san, arun, bt, sbnB, brun, pairs, images, runs, run, rows] = extra;
    const [cp0, cp1] = mine(pairs);
    if (cp1 > cp0) fns.dot(acc, a0, sao, san, arun, bt, sbnB, brun, 0, mb, cp0, cp1, pairs, images, runs, run, rows);
  };

  [byPanelsOrRows, byPanelsOrRows, byKSegments, byImages, dotted][axis]();
}

/**
 * Floats a job's packed A, packed B and C take (pa, pb, pc in runPart): in full, the operand packed
 * before the job (mp x k, k x ldc); the one the parts pack themselves (packOwn), a buffer of one chunk
 * per part; on axis 2, a block of k of each per part, and a C per segment; on axis 3, a block of k of
 * one image's B and that image's C per part.
 */
export function packedFloats(mp: number, ldc: number, k: number, kc: number, rb: number, nr: number, axis: number, packOwn: boolean, parts: number, segments: number): { a: number; b: number; c: number } {
  if (axis === 2) return { a: parts * mp * kc, b: parts * kc * ldc, c: segments * mp * ldc };
  if (axis === 3) return { a: mp * k, b: parts * kc * ldc, c: parts * mp * ldc }; // ldc: one image's columns
  const chunks = (w: number) => parts * 32 * kc * w; // runPart's per-part buffers: 32 blocks of kc steps
  return { a: packOwn && axis === 1 ? chunks(rb) : mp * k, b: packOwn && axis === 0 ? chunks(nr) : k * ldc, c: mp * ldc };
}

/** Threads sharing `memory`: the caller plus up to size - 1 workers. */
export class Pool {
  readonly memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
  /** the memory above the control block: compiled programs' arrays (array()) and the kernels' scratch */
  private readonly arena = new Arena(this.memory, SCRATCH_START, MAX_PAGES);
  /** every SharedArrayBuffer the memory has been seen as (each growth makes a new one; old views stay valid) */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  /** the scratch block [scratchAt, scratchAt + scratchBytes) every gemm on this memory packs into */
  private scratchAt = 0;
  private scratchBytes = 0;
  private readonly given = new FinalizationRegistry<number>((at) => this.arena.give(at));
  /** the kernel modules' bytes, by id (the workers compile each once) */
  readonly kernels: Uint8Array[] = [];
  private readonly ids = new Map<string, number>();
  private wanted: number;
  /** the workers, once ./thread-workers.ts has loaded (at once in Node) */
  private crew: Crew | null = null;
  /** settles once the workers' module is in place, or failed to load (then split jobs stay on one thread) */
  readonly ready: Promise<void>;
  /**
   * Whether split JavaScript kernels can run on the workers: in Node, whose workers read the arrays and
   * modules posted to them synchronously (receiveMessageOnPort). A browser's workers cannot while they
   * wait on the memory, so there those kernels run on the calling thread.
   */
  readonly splitsKernels = Boolean((globalThis as { process?: { getBuiltinModule?: Builtin } }).process?.getBuiltinModule?.('node:worker_threads'));

  constructor(size: number) {
    this.wanted = size;
    const workers = loadWorkers();
    if (!(workers instanceof Promise)) this.crew = new workers.Crew(this, MEMORY_MAP, runPart);
    this.ready = Promise.resolve(workers).then(
      (m) => { this.crew ??= new m.Crew(this, MEMORY_MAP, runPart); },
      (e: unknown) => console.info(`kiln: running on one thread: the thread pool's workers did not load (${e instanceof Error ? e.message : String(e)}).`),
    );
  }

  /** Threads a split job runs on (this one included). */
  get size(): number { return this.wanted; }

  /** Use n threads from now on (1..64, checked by setNumThreads; workers are started on the next split job, stopped here). */
  resize(n: number): void {
    this.wanted = n;
    this.crew?.shrink(n - 1);
  }

  /**
   * A zeroed array of `length` elements in the pool's memory, its block given back once the array is
   * garbage; null when the memory is full (then callers use a SharedArrayBuffer of their own). A gemm
   * reads such an array in place (owns) where it copies any other operand in.
   */
  array(ctor: TypedArrayClass, length: number): TypedArray | null {
    const bytes = length * ctor.BYTES_PER_ELEMENT;
    // what the arena holds besides the scratch is arrays: the rest stays for the gemm's scratch
    if (this.arena.takenBytes - this.scratchBytes + bytes > ARRAYS_MAX_BYTES) return null;
    const at = this.arena.take(bytes);
    if (at === null) return null;
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    const a = new ctor(buffer, at, length);
    a.fill(0); // a block given back holds its last owner's values
    this.given.register(a, at);
    return a;
  }

  /** Whether `a` lies in a block of array()'s (in the memory, outside the scratch): a gemm may read it where it is. */
  owns(a: ArrayBufferView): boolean {
    if (!this.buffers.has(a.buffer)) return false;
    const lo = a.byteOffset, hi = lo + a.byteLength;
    return hi <= this.scratchAt || lo >= this.scratchAt + this.scratchBytes;
  }

  /**
   * The byte address of the scratch, at least `bytes` long, its first `keep` bytes as they were (they
   * move with it when it must grow); null when the memory cannot hold it. Every gemm on the memory
   * shares it: calls are synchronous, one at a time.
   */
  scratch(bytes: number, keep: number): number | null {
    if (bytes <= this.scratchBytes) return this.scratchAt;
    const old = this.scratchAt;
    // Give the old block back first: the new one may overlap it (nothing is taken in between, so its
    // bytes are still there to move). A quarter more than asked: growing products grow it rarely.
    if (this.scratchBytes) this.arena.give(old);
    let size = Math.max(bytes, Math.ceil(this.scratchBytes * 1.25));
    let at = this.arena.take(size);
    if (at === null) at = this.arena.take((size = bytes));
    if (at === null && this.scratchBytes > 0) at = this.arena.take((size = this.scratchBytes)); // too big: keep the old size (it was free a moment ago)
    if (at !== null && keep > 0 && at !== old) new Uint8Array(this.memory.buffer).copyWithin(at, old, old + keep);
    this.scratchAt = at ?? 0;
    this.scratchBytes = at === null ? 0 : size;
    return size >= bytes ? at : null;
  }

  /** Keeps a kernel module's bytes where every worker can compile it (once per distinct module); returns its id. */
  addKernel(bytes: Uint8Array): number {
    const key = bytes.join(',');
    const known = this.ids.get(key);
    if (known !== undefined) return known;
    if (this.kernels.length >= MAX_KERNELS) throw new Error(`thread pool: at most ${MAX_KERNELS} distinct kernels`);
    if (bytes.length > SLOT_BYTES - 4) throw new Error(`thread pool: a kernel module of ${bytes.length} bytes exceeds ${SLOT_BYTES - 4}`);
    this.ids.set(key, this.kernels.length);
    this.kernels.push(bytes);
    return this.kernels.length - 1;
  }

  /**
   * The pool as compiled programs' split JavaScript kernels use it (codegen/js.ts JsParallel), or null where
   * they stay on the calling thread (see splitsKernels).
   */
  splitter(): JsParallel | null { return this.splitsKernels ? (this.crew?.splitter ?? null) : null; }

  /** How many split kernels have run on more than one thread (for tests and profiles). */
  get splitRuns(): number { return this.crew?.splitRuns ?? 0; }

  /** Runs a job split into one part per ready thread (this one included); returns when every part is done. */
  run(id: number, fns: GemmFns, job: GemmJob): void {
    if (this.crew) this.crew.run(id, fns, job);
    else runPart(fns, job, 0, 1);
  }

  /** For tests: worker `w` (1-based, as errors name it) exits, as if it crashed, in the middle of its next job. */
  injectFault(w: number): void {
    if (!Number.isInteger(w) || w < 1 || w >= this.wanted) throw new Error(`thread pool: no worker ${w} (workers are 1..${this.wanted - 1})`);
    if (!this.crew) throw new Error("thread pool: the workers' module has not loaded yet");
    this.crew.injectFault(w);
  }
}

let shared: Pool | null | undefined;

/** The process's pool, or null where threads are unavailable (then one thread, with one console note saying why). */
export function pool(): Pool | null {
  if (shared === undefined) {
    const size = requestedThreads();
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
    poolMade(shared ?? null);
  }
  return shared ?? null;
}

