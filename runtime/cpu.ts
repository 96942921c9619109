// The CPU device: storages are typed arrays; kernels are generated JavaScript, compiled once per spec.
//
// Memory bookkeeping (kiln.memory()) counts storages as they are created and garbage-collected
// (a FinalizationRegistry). Registering every storage makes eager work on tiny tensors markedly
// slower (the dose epoch, all scalars: ~135 -> ~210 us), so the count starts only when asked for:
// with the first kiln.memory() call, or from the start with KILN_TRACK_MEMORY=1.

import { arrayClassOf, dtypeOfArray, typedArrayFor, type DType, type TypedArray } from '../ir/dtype.ts';
import type { ConvAttrs } from '../ir/conv.ts';
import type { KernelSpec } from '../ir/kernel.ts';
import type { View } from '../ir/view.ts';
import { structuralKey } from '../ir/key.ts';
import { compileJs, compileJsProgram, setJsKernelEnv, type JsKernelFn } from '../compiler/codegen/js.ts';
import { convCpu, type ConvEpilogue } from './conv-cpu.ts';
import { loadGemm } from '#gemm';
import type { Gemm } from './gemm-wasm.ts';
import type { Pool } from './pool.ts';
import { registerBackend, type Backend, type BoundArg, type DeviceMemory, type KernelTimes, type Sharing, type Storage } from './device.ts';
import { env } from './node.ts';

/** A CPU storage: its data, which `share` may move into shared memory (in place: every tensor on it follows). */
export interface CpuStorage extends Storage { data: TypedArray }

const cache = new Map<string, JsKernelFn>();

/** The compiled function of a kernel, cached by the kernel's structure (its name is only a label). */
export function cpuKernel(spec: KernelSpec): JsKernelFn {
  const key = structuralKey(spec.kernel) + '|' + spec.args.map((a) => a.dtype).join(',');
  let fn = cache.get(key);
  if (!fn) {
    fn = compileJs(spec);
    cache.set(key, fn);
  }
  return fn;
}

const live = { storages: 0, bytes: 0 };
let tracked: FinalizationRegistry<number> | null = null;
function startTracking(): FinalizationRegistry<number> {
  return (tracked ??= new FinalizationRegistry<number>((bytes) => {
    live.storages--;
    live.bytes -= bytes;
  }));
}
if (env('KILN_TRACK_MEMORY') === '1') startTracking();

function wrap(data: TypedArray, dtype: DType): CpuStorage {
  const s: CpuStorage = { device: 'cpu', dtype, size: data.length, data };
  if (tracked) {
    tracked.register(s, data.byteLength);
    live.storages++;
    live.bytes += data.byteLength;
  }
  return s;
}

const arrayOf = (a: BoundArg): TypedArray => {
  const d = (a.storage as CpuStorage).data;
  return a.offset === 0 ? d : d.subarray(a.offset);
};

/**
 * The thread pool split kernels run on (the gemm's; null until it loads, or without threads). Compiled
 * programs allocate their temporaries and outputs `shared` and `share` the storages they bind
 * (arguments, captured parameters and state, gradients): those of SHARED_MIN_BYTES and more move, once,
 * into shared memory, so that the program's big elementwise kernels and reductions can run in parts on
 * the pool (codegen/js.ts jsProgramSource). Those the program holds ('held': temporaries, parameters,
 * state) go into the pool's memory (Pool.array; a SharedArrayBuffer of their own when it is full), where
 * its products read them in place instead of copying them into the gemm's memory; a call's (arguments,
 * fresh outputs) get SharedArrayBuffers of their own (device.ts Sharing). Allocations stay private
 * otherwise: shared memory costs more to make and touch (a fresh 4 MiB SharedArrayBuffer ~1 ms more than
 * an ArrayBuffer), and eager code makes many. Smaller ones (scalars) stay private; the pool copies those
 * a split kernel reads.
 */
let threads: Pool | null = null;
const SHARED_MIN_BYTES = 64;
const sharing = (bytes: number): boolean => threads !== null && threads.splitsKernels && bytes >= SHARED_MIN_BYTES;

/** A zeroed array of `size` elements: with `shared`, where the pool's threads see it (see `threads`, Sharing). */
function hostArray(dtype: DType, size: number, shared: Sharing | undefined): TypedArray {
  const C = arrayClassOf[dtype];
  // private: typedArrayFor's one constructor per dtype (a `new C` over every dtype costs the dose epoch ~10%)
  if (!shared || !sharing(size * C.BYTES_PER_ELEMENT)) return typedArrayFor(dtype, size);
  return (shared === 'held' ? threads!.array(C, size) : null) ?? typedArrayFor(dtype, size, true);
}

export const cpuBackend: Backend = {
  name: 'cpu',
  target: { language: 'js' },
  alloc: (dtype, size, shared) => wrap(hostArray(dtype, size, shared), dtype),
  write(s, data) { (s as CpuStorage).data.set(data); },
  upload(data) {
    return wrap(data, dtypeOfArray(data));
  },
  share(s, how) {
    const st = s as CpuStorage;
    if (!sharing(st.data.byteLength) || st.data.buffer instanceof SharedArrayBuffer) return;
    const copy = hostArray(st.dtype, st.data.length, how);
    copy.set(st.data);
    st.data = copy;
  },
  run(specs: readonly KernelSpec[], args: readonly BoundArg[], params: readonly number[] = []) {
    const arrays = args.map(arrayOf);
    for (const spec of specs) cpuKernel(spec)(...arrays, params);
  },
  prepare(spec) {
    const fn = cpuKernel(spec);
    const noParams: number[] = [];
    return (args) => fn(...args.map(arrayOf), noParams);
  },
  prepareProgram(specs, bindings) {
    const program = compileJsProgram(specs, bindings);
    const arrays: TypedArray[] = [];
    return (table) => {
      for (let i = 0; i < table.length; i++) arrays[i] = (table[i] as CpuStorage).data;
      program(arrays);
    };
  },
  // kernels are compiled as they are prepared, and run synchronously
  async precompile() { return null; },
  async finish() {},
  async profileProgram(specs, bindings, table): Promise<KernelTimes> {
    const ms = specs.map((spec, k) => {
      const launch = cpuBackend.prepare(spec);
      const bound = bindings[k].map((slot) => ({ storage: table[slot], offset: 0 }));
      const t0 = performance.now();
      launch(bound);
      return performance.now() - t0;
    });
    return { ms, method: 'wall', note: 'cpu runs kernels synchronously: wall time around each kernel' };
  },
  async read(s, offset, size) { return (s as CpuStorage).data.slice(offset, offset + size); },
  memory(): DeviceMemory {
    const wasTracked = tracked !== null;
    startTracking();
    return { ...live, cachedBytes: 0, tracked: wasTracked };
  },
  readSync(s, offset, size) { return (s as CpuStorage).data.slice(offset, offset + size); },
  settle: () => null, // kernels run synchronously: nothing is ever queued
};

// The WebAssembly gemm: at once in Node; in a browser build a chunk of its own, fetched as kiln loads.
// Kernels generated before it arrives keep their JavaScript loops; later ones (the cache is cleared) use it.
const loading = loadGemm();
const useGemm = (gemm: Gemm | null): void => {
  threads = gemm?.threads ?? null;
  setJsKernelEnv({ gemm, conv: (a: ConvAttrs, x: Float32Array, xv: View, w: Float32Array, wv: View, epi?: ConvEpilogue) => convCpu(a, x, xv, w, wv, gemm, epi), parallel: threads?.splitter() ?? null });
};
if (loading instanceof Promise) {
  useGemm(null);
  loading.then((g) => { useGemm(g); cache.clear(); }, (e: unknown) => console.info(`kiln: CPU products run as JavaScript loops: the WebAssembly gemm did not load (${e instanceof Error ? e.message : String(e)}).`));
} else useGemm(loading);
registerBackend(cpuBackend);
