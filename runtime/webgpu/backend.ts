// The WebGPU backend: storages are GPUBuffers, kernels are WGSL shaders generated per spec
// (compiler/codegen/wgsl.ts) and cached by source.
//
// Launches are encoded into one pending command encoder that is submitted when a value is read, when
// data is uploaded into a buffer the pending work may still use, or after MAX_PENDING launches; nothing
// waits for the GPU until a read. Each launch gets its own slot of a per-batch uniform buffer holding the
// arguments' element offsets and the launch params, so slicing and new params never compile a shader.
//
// Errors: WebGPU reports shader and validation errors asynchronously. Every new pipeline is created
// inside a 'validation' error scope and its compilation info is collected; every submit is wrapped the
// same way. The outcomes are kept as promises, and the next `read` (e.g. `await t.data()`) awaits them
// and rejects with an Error naming the kernel and carrying the WGSL compiler's messages. A pipeline
// known to be bad makes later `run` calls with the same kernel throw synchronously.
//
// Bool storage: i32 0/1 on the device (see wgsl.ts); `upload` widens a Uint8Array and `read` narrows back.
//
// Compiled steps: `prepare(spec)` returns a launcher that resolves the pipeline once; `write` overwrites
// a storage (host scalars), submitting queued launches first when they use that buffer, because
// queue.writeBuffer would otherwise overtake them.
//
// Buffers are pooled (pool.ts): when a storage is garbage-collected (FinalizationRegistry), its GPUBuffer
// goes back to a pool by size class, to be handed out again only after the submissions that may use it
// have completed (the pending encoder's buffers wait for the next submit). Free buffers past a cap are
// destroyed. Compiled steps allocate their temporaries once per signature (executor.ts).
//
// Matmul kernels come in variants (wgsl.ts MatmulVariant); autotune.ts times them per adapter and
// shape in the background on first use (KILN_AUTOTUNE=0: off) and the next launch picks the winner.

import type { DType, TypedArray } from '../../ir/dtype.ts';
import type { KernelSpec } from '../../ir/kernel.ts';
import { defaultMatmul, packUniform, uniformLayout, wgslSource, type MatmulVariant, type WgslKernel, type WgslLimits } from '../../compiler/codegen/wgsl.ts';
import { registerBackend, type Backend, type BoundArg, type Storage } from '../device.ts';
import { adapterInfo, getDeviceSync, init as deviceInit, isInitialized, limits as deviceLimits, onUncapturedError } from './device.ts';
import { adapterKey, autotuneEnabled, cachedVariant, onTuned, requestTune, shapeKey, workOf, worthTuning } from './autotune.ts';
import { BufferPool, type PoolStats } from './pool.ts';

export class WebGPUStorage implements Storage {
  readonly device = 'webgpu' as const;
  constructor(readonly dtype: DType, readonly size: number, readonly buffer: GPUBuffer) {}
}

/** Bytes of free buffers the pool keeps; buffers returned past this are destroyed. */
const POOL_CAP = 256 * 1024 * 1024;
// (GPUBufferUsage exists only once the webgpu module is loaded: read at pool creation)
const storageUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
let pool: BufferPool | null = null;
/** submissions so far, and the buffers' way back to the pool when their storage is collected */
let submitCount = 0;
const reclaim = new FinalizationRegistry<{ buffer: GPUBuffer; pool: BufferPool }>(({ buffer, pool: p }) => {
  if (p !== pool) return; // a pool of a lost device
  p.release(buffer, pendingBuffers.has(buffer) ? submitCount + 1 : submitCount);
});
const BALLAST_MIN = 1 << 20;
/** (browsers may commit an ArrayBuffer's memory up front: the ballast is for Node only) */
const inNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
const ballast = new WeakMap<WebGPUStorage, ArrayBuffer>();
function pooledStorage(dtype: DType, size: number, buffer: GPUBuffer, p: BufferPool): WebGPUStorage {
  const s = new WebGPUStorage(dtype, size, buffer);
  reclaim.register(s, { buffer, pool: p });
  // The garbage collector does not see GPU memory, so dead tensors would pile up between collections.
  // A zero-filled ArrayBuffer of the same size rides along with each big storage: V8 counts it as
  // external memory (and collects sooner), while the OS maps its untouched pages lazily (no memory used).
  if (inNode && buffer.size >= BALLAST_MIN) ballast.set(s, new ArrayBuffer(buffer.size));
  return s;
}
/** The buffer pool's counters (tests and diagnostics). */
export function poolStats(): PoolStats | null { return pool ? { ...pool.stats } : null; }
/** Destroys the pool's idle buffers. */
export function trimPool(): void { pool?.trim(); }

/** After this many launches the pending encoder is submitted (work is queued; nothing waits). */
const MAX_PENDING = 128;
const UNIFORM_ALIGN = 256;
const UNIFORM_CHUNK = MAX_PENDING * UNIFORM_ALIGN * 2;

interface Pipeline {
  device: GPUDevice;
  name: string;
  kernel: WgslKernel;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** set once the pipeline's error scope resolved with an error */
  error: Error | null;
}

let device: GPUDevice | null = null;
const pipelines = new Map<string, Pipeline>();
/** pipelines by spec structure (the hot path); `pipelines` dedupes them by shader source */
const sourceCache = new Map<string, Pipeline>();
/** outcomes of error scopes not yet inspected by a read */
let pendingChecks: Promise<Error | null>[] = [];
const asyncErrors: Error[] = [];

let encoder: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let pendingLaunches = 0;
/** buffers the pending encoder uses (an upload into one of them flushes first) */
let pendingBuffers = new Set<GPUBuffer>();
let uniformChunk: GPUBuffer | null = null;
let uniformHost: ArrayBuffer | null = null;
let uniformI32 = new Int32Array(0);
let uniformF32 = new Float32Array(0);
let uniformUsed = 0;
const freeChunks: GPUBuffer[] = [];

/** Test hook: rewrites every generated shader before compilation (null: off). */
let shaderTransform: ((code: string, spec: KernelSpec) => string) | null = null;
export function setShaderTransform(fn: ((code: string, spec: KernelSpec) => string) | null): void {
  shaderTransform = fn;
  sourceCache.clear();
}

function dev(): GPUDevice {
  if (!isInitialized()) {
    throw new Error(
      "kiln: WebGPU is not initialised: call `await kiln.webgpu.init()` (or check `await kiln.webgpu.available()`) before using device 'webgpu'. " +
        'init() says why when no adapter exists; in Node on a machine without a GPU, install Mesa lavapipe (`sudo bash scripts/install-lavapipe.sh`), or use device \'cpu\'.',
    );
  }
  const d = getDeviceSync();
  if (d !== device) {
    // A new device (first use, or after a loss): everything cached belongs to the old one.
    device = d;
    maxBinding = d.limits.maxStorageBufferBindingSize;
    pipelines.clear();
    sourceCache.clear();
    encoder = null;
    pass = null;
    pendingLaunches = 0;
    pendingBuffers = new Set();
    uniformChunk = null;
    uniformHost = null;
    uniformUsed = 0;
    freeChunks.length = 0;
    pool = new BufferPool(d, POOL_CAP, storageUsage());
    submitCount = 0;
    unsubscribe?.();
    unsubscribe = onUncapturedError((e) => {
      asyncErrors.push(new Error(`kiln: WebGPU error: ${e.message}`));
    });
  }
  return d;
}
let unsubscribe: (() => void) | null = null;
/** the device's maxStorageBufferBindingSize (read once per device) */
let maxBinding = Infinity;

function wgslLimits(): WgslLimits {
  const l = deviceLimits();
  return {
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
  };
}

/**
 * The workgroup cap for per-element kernels: software adapters (lavapipe, SwiftShader) pay per
 * invocation, so fewer invocations each looping over more elements are several times faster there
 * (1M-element add: 22 ms with 4096 workgroups, 3 ms with 256).
 */
let gridCapOverride: number | null = null;
function isSoftware(): boolean {
  const i = adapterInfo();
  return i.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${i.device} ${i.description}`);
}
function gridCap(): number {
  if (gridCapOverride !== null) return gridCapOverride;
  return isSoftware() ? 256 : 4096;
}
/** Test hook: overrides the workgroup cap (null: by adapter). */
export function setGridCap(cap: number | null): void {
  gridCapOverride = cap;
  sourceCache.clear();
}
let reduceOverride: 'serial' | 'tree' | null = null;
/** Test hook: forces a reduce strategy (null: by size and adapter). */
export function setReduceStrategy(strategy: 'serial' | 'tree' | null): void {
  reduceOverride = strategy;
  sourceCache.clear();
}

function messageOf(e: unknown): string { return e instanceof Error ? e.message : String(e); }

function compileError(name: string, detail: string, code: string): Error {
  return new Error(`kiln: WebGPU kernel '${name}' failed to compile: ${detail}\n--- WGSL ---\n${code}`);
}

function pipelineFor(spec: KernelSpec, alias: readonly number[] | undefined, aligned: readonly boolean[] | undefined): Pipeline {
  const d = dev();
  const key = JSON.stringify(spec.kernel) + '|' + spec.args.map((a) => a.dtype).join(',') + '|' + spec.params + '|' + (alias?.join(',') ?? '') + '|' + (aligned?.map(Number).join('') ?? '');
  const cached = sourceCache.get(key);
  if (cached) return cached;
  const matmul = spec.kernel.kind === 'matmul' ? matmulVariant(d, spec, alias, aligned) : undefined;
  let kernel = wgslSource(spec, { limits: wgslLimits(), alias, aligned, maxWorkgroups: gridCap(), software: isSoftware(), reduce: reduceOverride ?? 'auto', matmul });
  if (shaderTransform) kernel = { ...kernel, code: shaderTransform(kernel.code, spec) };
  const pkey = kernel.code + '|' + kernel.bindings.map((b) => b.access).join(',');
  let shared = pipelines.get(pkey);
  if (!shared) {
    shared = createPipeline(d, spec.name, kernel);
    pipelines.set(pkey, shared);
  }
  // Specs with the same shader (sizes in uniforms) share the compiled pipeline, but each keeps its own
  // dispatch grid: a [3, 9, 676] batch must not launch the workgroups of a [2, 9, 676] one. The
  // per-spec record reads `error` (set later) through its prototype.
  const p: Pipeline = shared.kernel.workgroups.join() === kernel.workgroups.join() ? shared : Object.create(shared, { kernel: { value: kernel } });
  sourceCache.set(key, p);
  return p;
}

let variantOverride: MatmulVariant | null = null;
/** Test hook: every matmul uses this variant (null: the tuned or default one). */
export function setMatmulVariant(v: MatmulVariant | null): void {
  variantOverride = v;
  sourceCache.clear();
  generation++;
}
/** bumped whenever cached pipelines may be stale (a tune finished, a hook changed): launchers re-resolve */
let generation = 0;
onTuned(() => {
  sourceCache.clear();
  generation++;
});

/** The matmul variant for a spec: the override, the tuned choice, or the default (starting a tune). */
function matmulVariant(d: GPUDevice, spec: KernelSpec, alias: readonly number[] | undefined, aligned: readonly boolean[] | undefined): MatmulVariant {
  if (variantOverride) return variantOverride;
  const software = isSoftware();
  const fallback = defaultMatmul(software, workOf(spec));
  if (alias || !autotuneEnabled() || !worthTuning(spec)) return fallback;
  const shape = shapeKey(spec, aligned);
  if (!shape) return fallback;
  const adapter = adapterKey(adapterInfo());
  const known = cachedVariant(adapter, shape);
  if (known) return known;
  void requestTune({ device: d, adapter, spec, aligned, opts: { limits: wgslLimits(), maxWorkgroups: gridCap(), software }, software });
  return fallback;
}

function createPipeline(d: GPUDevice, name: string, kernel: WgslKernel): Pipeline {
  d.pushErrorScope('validation');
  d.pushErrorScope('internal');
  const module = d.createShaderModule({ code: kernel.code, label: name });
  const layout = d.createBindGroupLayout({
    label: name,
    entries: [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      ...kernel.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.access === 'read' ? 'read-only-storage' as const : 'storage' as const } })),
    ],
  });
  const pipeline = d.createComputePipeline({
    label: name,
    layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: 'main' },
  });
  const internal = d.popErrorScope();
  const validation = d.popErrorScope();
  const entry: Pipeline = { device: d, name, kernel, pipeline, layout, error: null };
  const code = kernel.code;
  const check = (async (): Promise<Error | null> => {
    const [ie, ve] = await Promise.all([internal, validation]);
    const err = ve ?? ie;
    if (!err) return null;
    let detail = err.message;
    try {
      const info = await module.getCompilationInfo();
      const lines = code.split('\n');
      const msgs = info.messages.filter((m) => m.type === 'error')
        .map((m) => `${m.lineNum}:${m.linePos}: ${m.message}${lines[m.lineNum - 1] !== undefined ? `\n    ${lines[m.lineNum - 1].trim()}` : ''}`);
      if (msgs.length) detail = msgs.join('\n');
    } catch {
      // keep the scope's message
    }
    entry.error = compileError(name, detail, code);
    return entry.error;
  })().catch((e: unknown) => compileError(name, messageOf(e), code));
  pendingChecks.push(check);
  return entry;
}

function takeChunk(d: GPUDevice): void {
  uniformChunk = freeChunks.pop() ?? d.createBuffer({ size: UNIFORM_CHUNK, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'kiln uniforms' });
  uniformHost = new ArrayBuffer(UNIFORM_CHUNK);
  uniformI32 = new Int32Array(uniformHost);
  uniformF32 = new Float32Array(uniformHost);
  uniformUsed = 0;
}

/** Submits the pending launches (without waiting for them). */
export function flush(): void {
  if (!encoder || !device) return;
  const d = device;
  pass?.end();
  pass = null;
  if (uniformChunk && uniformUsed > 0) d.queue.writeBuffer(uniformChunk, 0, uniformHost!, 0, uniformUsed);
  d.pushErrorScope('validation');
  d.queue.submit([encoder.finish()]);
  const scope = d.popErrorScope().then((e) => (e ? new Error(`kiln: WebGPU launch failed: ${e.message}`) : null));
  pendingChecks.push(scope);
  const chunk = uniformChunk;
  const epoch = ++submitCount;
  const p = pool;
  void d.queue.onSubmittedWorkDone().then(() => {
    if (device !== d) return;
    if (chunk) freeChunks.push(chunk);
    p?.completedUpTo(epoch);
  });
  encoder = null;
  uniformChunk = null;
  uniformHost = null;
  uniformUsed = 0;
  pendingLaunches = 0;
  pendingBuffers = new Set();
}

function encoderFor(d: GPUDevice, uniformBytes: number): GPUComputePassEncoder {
  const need = Math.ceil(uniformBytes / UNIFORM_ALIGN) * UNIFORM_ALIGN;
  if (encoder && (pendingLaunches >= MAX_PENDING || uniformUsed + need > UNIFORM_CHUNK)) flush();
  if (!encoder) {
    encoder = d.createCommandEncoder({ label: 'kiln' });
    takeChunk(d);
  }
  if (!pass) pass = encoder.beginComputePass();
  return pass;
}

/** Throws the first error recorded by error scopes or uncaptured-error events so far (awaits pending checks). */
async function surfaceErrors(): Promise<void> {
  while (pendingChecks.length) {
    const checks = pendingChecks;
    pendingChecks = [];
    const results = await Promise.all(checks);
    for (const r of results) if (r) asyncErrors.push(r);
  }
  if (asyncErrors.length) {
    const [first] = asyncErrors.splice(0, asyncErrors.length);
    throw first;
  }
}

function writtenArgs(spec: KernelSpec): Set<number> {
  const k = spec.kernel;
  return new Set(k.kind === 'map' ? k.outputs.map((o) => o.arg) : [k.output.arg]);
}

const align4 = (bytes: number): number => Math.max(4, Math.ceil(bytes / 4) * 4);

function storageFor(d: GPUDevice, dtype: DType, size: number): WebGPUStorage {
  const bytes = align4(size * 4);
  if (bytes > d.limits.maxBufferSize) {
    throw new Error(`kiln: cannot allocate a WebGPU buffer of ${size} elements (${bytes} bytes): this device's maxBufferSize is ${d.limits.maxBufferSize} bytes`);
  }
  // a size class never pushes a buffer past what may be bound or allocated
  const p = pool!;
  return pooledStorage(dtype, size, p.acquire(bytes, Math.min(d.limits.maxBufferSize, bytes <= maxBinding ? maxBinding : Infinity)), p);
}

function asStorage(s: Storage): WebGPUStorage {
  if (!(s instanceof WebGPUStorage)) throw new Error(`kiln: webgpu backend got a storage on device '${s.device}'`);
  return s;
}

/** Encodes one kernel launch into the pending command encoder. */
/**
 * What a prepared launcher keeps between calls: its own uniform buffer (offsets and params, written
 * once) and the bind group of the buffers it last bound, so a compiled step that binds the same
 * buffers every call creates no bind group and writes no uniform per step.
 */
interface LaunchCache { uniform?: GPUBuffer; uniformKey?: string; pipeline?: Pipeline; buffers?: GPUBuffer[]; group?: GPUBindGroup }

function launch(d: GPUDevice, spec: KernelSpec, args: readonly BoundArg[], storages: readonly WebGPUStorage[], params: readonly number[],
  pick: (alias: readonly number[] | undefined, aligned: readonly boolean[] | undefined) => Pipeline, cache?: LaunchCache): void {
  const n = spec.args.length;
  if (n > args.length) throw new Error(`kiln: kernel '${spec.name}' takes ${n} arguments, got ${args.length}`);
  // Arguments bound to the same buffer share one binding when the kernel writes one of them
  // (WebGPU forbids a buffer bound both read-only and writable in one dispatch).
  let alias: number[] | undefined;
  for (let i = 1; i < n && !alias; i++) {
    for (let j = 0; j < i; j++) {
      if (storages[i].buffer === storages[j].buffer) {
        const all = storages.slice(0, n).map((s) => storages.findIndex((t) => t.buffer === s.buffer));
        const written = writtenArgs(spec);
        const conflict = all.some((a, k) => a !== k && (written.has(k) || written.has(a) || all.some((b, m) => b === a && written.has(m))));
        alias = conflict ? all : undefined;
        i = n; // decided
        break;
      }
    }
  }
  // matmul reads aligned operands as vec4: which offsets are multiples of 4 is part of its shader
  const aligned = spec.kernel.kind === 'matmul' ? args.slice(0, n).map((a) => a.offset % 4 === 0) : undefined;
  const p = pick(alias, aligned);
  if (p.error) throw p.error;
  for (const b of p.kernel.bindings) {
    const size = storages[b.arg].buffer.size;
    if (size > maxBinding) {
      throw new Error(`kiln: WebGPU kernel '${spec.name}' binds a buffer of ${size} bytes (argument ${b.arg}), more than this device's maxStorageBufferBindingSize (${maxBinding} bytes)`);
    }
  }
  const wg = p.kernel.workgroups;
  if (wg[0] === 0 || wg[1] === 0 || wg[2] === 0) return;
  if (cache && launchCached(d, spec, args, storages, params, p, cache)) return;
  const cp = encoderFor(d, p.kernel.uniformBytes);
  const at = uniformUsed;
  packUniform(uniformI32, uniformF32, at / 4, n, spec.params, args.map((a) => a.offset), params);
  uniformUsed += Math.ceil(p.kernel.uniformBytes / UNIFORM_ALIGN) * UNIFORM_ALIGN;
  const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniformChunk!, offset: at, size: p.kernel.uniformBytes } }];
  for (const b of p.kernel.bindings) {
    const buffer = storages[b.arg].buffer;
    entries.push({ binding: b.binding, resource: { buffer } });
    pendingBuffers.add(buffer);
  }
  cp.setPipeline(p.pipeline);
  cp.setBindGroup(0, d.createBindGroup({ layout: p.layout, entries }));
  cp.dispatchWorkgroups(wg[0], wg[1], wg[2]);
  pendingLaunches++;
}

/** Launches through the prepared launcher's own uniform and bind group; false when it cannot (then the shared ring is used). */
function launchCached(d: GPUDevice, spec: KernelSpec, args: readonly BoundArg[], storages: readonly WebGPUStorage[], params: readonly number[], p: Pipeline, cache: LaunchCache): boolean {
  const n = spec.args.length;
  const offsets = args.slice(0, n).map((a) => a.offset);
  const key = `${offsets.join(',')}|${params.join(',')}`;
  // The uniform may still be read by queued work: never rewrite it; other offsets use the shared ring.
  if (cache.uniform && (cache.uniformKey !== key || cache.uniform.size < p.kernel.uniformBytes)) return false;
  const buffers = p.kernel.bindings.map((b) => storages[b.arg].buffer);
  if (!cache.uniform) {
    const bytes = new ArrayBuffer(Math.max(16, p.kernel.uniformBytes));
    packUniform(new Int32Array(bytes), new Float32Array(bytes), 0, n, spec.params, offsets, params);
    cache.uniform = d.createBuffer({ size: bytes.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${spec.name} uniforms` });
    d.queue.writeBuffer(cache.uniform, 0, bytes);
    cache.uniformKey = key;
  }
  if (!cache.group || cache.pipeline !== p || !cache.buffers!.every((b, i) => b === buffers[i])) {
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: cache.uniform, offset: 0, size: p.kernel.uniformBytes } }];
    p.kernel.bindings.forEach((b, i) => entries.push({ binding: b.binding, resource: { buffer: buffers[i] } }));
    cache.group = d.createBindGroup({ layout: p.layout, entries });
    cache.pipeline = p;
    cache.buffers = buffers;
  }
  for (const b of buffers) pendingBuffers.add(b);
  const cp = encoderFor(d, 0);
  const wg = p.kernel.workgroups;
  cp.setPipeline(p.pipeline);
  cp.setBindGroup(0, cache.group);
  cp.dispatchWorkgroups(wg[0], wg[1], wg[2]);
  pendingLaunches++;
  return true;
}

export const webgpuBackend: Backend = {
  name: 'webgpu',
  kernelSource: (spec) => ({ language: 'wgsl', source: wgslFor(spec).code }),
  // one binding per argument; lavapipe allows 16, WebGPU guarantees 8
  maxKernelArgs: () => (isInitialized() ? deviceLimits().maxStorageBuffersPerShaderStage : 8),
  alloc(dtype, size) {
    return storageFor(dev(), dtype, size);
  },
  upload(data) {
    const d = dev();
    const dtype: DType = data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'bool';
    const st = storageFor(d, dtype, data.length);
    if (data.length > 0) {
      const src = dtype === 'bool' ? Int32Array.from(data) : data;
      d.queue.writeBuffer(st.buffer, 0, src.buffer, src.byteOffset, src.byteLength);
    }
    return st;
  },
  run(specs: readonly KernelSpec[], args: readonly BoundArg[], params: readonly number[] = []) {
    const d = dev();
    const storages = args.map((a) => asStorage(a.storage));
    for (const spec of specs) launch(d, spec, args, storages, params, (alias, aligned) => pipelineFor(spec, alias, aligned));
  },
  prepare(spec: KernelSpec) {
    // the pipeline per (aliasing, alignment) variant, resolved without hashing the spec again
    const variants = new Map<string, Pipeline>();
    const noParams: number[] = [];
    const cache: LaunchCache = {};
    let gen = generation;
    return (args: readonly BoundArg[]) => {
      const d = dev();
      const storages = args.map((a) => asStorage(a.storage));
      if (gen !== generation) { variants.clear(); gen = generation; for (const k of Object.keys(cache) as (keyof LaunchCache)[]) delete cache[k]; }
      launch(d, spec, args, storages, noParams, (alias, aligned) => {
        const key = `${alias?.join(',') ?? ''}|${aligned?.map(Number).join('') ?? ''}`;
        let p = variants.get(key);
        if (!p || p.device !== d) {
          p = pipelineFor(spec, alias, aligned);
          variants.set(key, p);
        }
        return p;
      }, cache);
    };
  },
  write(s: Storage, data: TypedArray) {
    const st = asStorage(s);
    const d = dev();
    // queue.writeBuffer runs before the pending (unsubmitted) launches: submit those first if they use the buffer
    if (pendingBuffers.has(st.buffer)) flush();
    const src = st.dtype === 'bool' ? Int32Array.from(data) : data;
    const bytes = Math.min(src.byteLength, st.buffer.size) & ~3;
    if (bytes > 0) d.queue.writeBuffer(st.buffer, 0, src.buffer, src.byteOffset, bytes);
  },
  async read(s, offset, size) {
    const st = asStorage(s);
    const d = dev();
    const out = (n: number): TypedArray => (st.dtype === 'float32' ? new Float32Array(n) : st.dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n));
    if (size <= 0) {
      flush();
      await surfaceErrors();
      return out(0);
    }
    if (offset < 0 || offset + size > st.size) throw new Error(`kiln: webgpu read of [${offset}, ${offset + size}) is outside a storage of ${st.size} elements`);
    const bytes = size * 4;
    const staging = d.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    if (!encoder) {
      encoder = d.createCommandEncoder({ label: 'kiln read' });
    }
    pass?.end();
    pass = null;
    encoder.copyBufferToBuffer(st.buffer, offset * 4, staging, 0, bytes);
    flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      await surfaceErrors();
      throw new Error(`kiln: reading a WebGPU buffer failed: ${messageOf(e)}`, { cause: e });
    }
    const raw = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    await surfaceErrors();
    if (st.dtype === 'float32') return new Float32Array(raw);
    const ints = new Int32Array(raw);
    return st.dtype === 'int32' ? ints : Uint8Array.from(ints);
  },
  readSync(_s, _offset, _size, method) {
    throw new Error(`kiln: WebGPU tensors cannot be read synchronously; use \`await t.${method}\` instead`);
  },
};

/** Waits until all queued WebGPU work has finished, and surfaces any error it raised. */
export async function sync(): Promise<void> {
  if (!isInitialized()) return;
  const d = dev();
  flush();
  await d.queue.onSubmittedWorkDone();
  await surfaceErrors();
}

/** Registers the backend (its methods acquire nothing: they need `init()` to have completed). */
export function registerWebGPUBackend(): void {
  registerBackend(webgpuBackend);
}

registerWebGPUBackend();

/** Acquires the WebGPU device (a clear Error where there is none) and registers the 'webgpu' backend. */
export async function initWebGPU(): Promise<void> {
  await deviceInit();
  registerWebGPUBackend();
  dev();
}

/** The WGSL source a spec compiles to on this device (for inspection and `step.lower()`). */
export function wgslFor(spec: KernelSpec): WgslKernel {
  if (!isInitialized()) return wgslSource(spec, {});
  const aligned = spec.kernel.kind === 'matmul' ? spec.args.map(() => true) : undefined;
  let matmul: MatmulVariant | undefined;
  if (spec.kernel.kind === 'matmul') {
    const shape = variantOverride ? null : shapeKey(spec, aligned);
    matmul = variantOverride ?? (shape && autotuneEnabled() ? cachedVariant(adapterKey(adapterInfo()), shape) : undefined) ?? defaultMatmul(isSoftware(), workOf(spec));
  }
  return wgslSource(spec, { limits: wgslLimits(), maxWorkgroups: gridCap(), software: isSoftware(), aligned, matmul });
}

export { uniformLayout };
