// The WebGPU backend: storages are GPUBuffers, kernels are WGSL shaders generated per spec
// (compiler/codegen/wgsl.ts) and cached by source.
//
// One `WebGPUBackend` instance per GPUDevice holds everything tied to that device (pipelines, the
// pending command encoder, uniform chunks, the buffer pool, pending error checks) as private fields.
// `webgpuBackend`, the 'webgpu' backend of the registry, forwards to the instance of the current
// device; a new device (first use, or a new one after a loss) gets a fresh instance, and launchers
// prepared on the old one prepare themselves again on the new one.
//
// Launches are encoded into one pending command encoder that is submitted when a value is read, when
// data is uploaded into a buffer the pending work may still use, or after MAX_PENDING launches; nothing
// waits for the GPU until a read. Each launch gets its own slot of a per-batch uniform buffer holding the
// arguments' element offsets and the launch params, so slicing and new params never compile a shader
// (its bind group is reused when a loop's launch comes back to the same slot with the same buffers). Eager
// elementwise ops and in-place writes are recorded instead of launched, and launched fused before any
// other launch, read or write (runtime/eager-fusion.ts).
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
// goes back to its device's pool by size class, to be handed out again only after the submissions that
// may use it have completed (the pending encoder's buffers wait for the next submit). Free buffers past
// a cap are destroyed. Compiled steps allocate their temporaries once per signature (executor.ts). Tiny
// fused eager results take slots of per-dtype arena buffers instead (a storage's `base` is its first
// element there, added to every offset bound, read or written).
//
// What codegen needs of the device is its description (`target`, compiler/target.ts): the limits, and
// the adapter's codegen choices, which autotune.ts decides (workgroup cap, untuned matmul variants).
// Matmul kernels come in variants; autotune.ts times them per adapter and shape in the background on
// first use (KILN_AUTOTUNE=0: off) and the next launch picks the winner.

import type { DType, TypedArray } from '../../ir/dtype.ts';
import { writtenArgs, type KernelSpec } from '../../ir/kernel.ts';
import { structuralKey } from '../../ir/key.ts';
import { packUniform, wgslSource, type MatmulVariant, type WgslKernel } from '../../compiler/codegen/wgsl.ts';
import type { WgslTarget } from '../../compiler/target.ts';
import { registerBackend, type Backend, type BoundArg, type DeviceMemory, type EagerOperand, type KernelTimes, type Launch, type PrecompileReport, type Program, type Storage } from '../device.ts';
import { ElementwiseGroup } from '../eager-fusion.ts';
import type { AVal, PrimAttrs, Primitive } from '../../ir/primitives.ts';
import { numel } from '../../ir/shape.ts';
import { adapterInfo, getDeviceSync, init as deviceInit, isInitialized, onUncapturedError, subgroupMinSize } from './device.ts';
import { adapterKey, adapterPolicy, chooseMatmul, isSoftwareAdapter, holdTunesUntil, loadAutotuneCache, noteUserSubmit, onTuned, tunesPending } from './autotune.ts';
import { BufferPool, SLOT_MAX, sizeClass, type Block, type PoolStats } from './pool.ts';

/** A storage: a whole buffer, or a slot of an arena buffer starting at element `base` (pool.ts). */
export class WebGPUStorage implements Storage {
  readonly device = 'webgpu' as const;
  readonly buffer: GPUBuffer;
  /** the storage's first element in `buffer`: every offset bound, read or written is relative to it */
  readonly base: number;
  constructor(readonly dtype: DType, readonly size: number, readonly block: Block) {
    this.buffer = block.buffer;
    this.base = block.base;
  }
}

/** Bytes of free buffers the pool keeps; buffers returned past this are destroyed. */
const POOL_CAP = 256 * 1024 * 1024;
/** After this many launches the pending encoder is submitted (work is queued; nothing waits). */
const MAX_PENDING = 128;
/** Submissions a compiled step may leave unfinished before the next call waits for the device (backpressure). */
const MAX_IN_FLIGHT = 2;
/** Buffers created before settle() lets the event loop turn (so that collected tensors give theirs back). */
const NEW_BUFFERS_PER_TURN = 256;
const UNIFORM_ALIGN = 256;
const UNIFORM_CHUNK = MAX_PENDING * UNIFORM_ALIGN * 2;
/** Read-back buffers up to this size are kept for reuse (at most STAGING_KEEP of them). */
const STAGING_MAX = 64 * 1024;
const STAGING_KEEP = 8;

// The garbage collector does not see GPU memory, so dead tensors would pile up between collections.
// A zero-filled ArrayBuffer of the same size rides along with each big storage: V8 counts it as
// external memory (and collects sooner), while the OS maps its untouched pages lazily (no memory used).
// (Browsers may commit an ArrayBuffer's memory up front: the ballast is for Node only.)
const BALLAST_MIN = 1 << 20;
const inNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
const ballast = new WeakMap<WebGPUStorage, ArrayBuffer>();

// ---- test hooks (process-wide, not per device) ---------------------------------------------------

interface Overrides {
  /** rewrites every generated shader before compilation */
  shaderTransform: ((code: string, spec: KernelSpec) => string) | null;
  /** the workgroup cap of per-element kernels (null: the adapter's) */
  gridCap: number | null;
  /** a forced reduce strategy (null: by size and adapter) */
  reduce: 'serial' | 'tree' | null;
  /** the matmul variant of every matmul (null: tuned or untuned default) */
  matmul: MatmulVariant | null;
  /** whether eager elementwise ops are recorded and launched fused (KILN_EAGER_FUSION=0: off) */
  eagerFusion: boolean;
}
const envFusion = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_EAGER_FUSION;
const overrides: Overrides = { shaderTransform: null, gridCap: null, reduce: null, matmul: null, eagerFusion: envFusion !== '0' };
function override<K extends keyof Overrides>(key: K, value: Overrides[K]): void {
  overrides[key] = value;
  active?.invalidate();
}
/** Test hook: rewrites every generated shader before compilation (null: off). */
export const setShaderTransform = (fn: Overrides['shaderTransform']): void => override('shaderTransform', fn);
/** Test hook: overrides the workgroup cap (null: by adapter). */
export const setGridCap = (cap: number | null): void => override('gridCap', cap);
/** Test hook: forces a reduce strategy (null: by size and adapter). */
export const setReduceStrategy = (strategy: 'serial' | 'tree' | null): void => override('reduce', strategy);
/** Test hook: every matmul uses this variant (null: the tuned or default one). */
export const setMatmulVariant = (v: MatmulVariant | null): void => override('matmul', v);
/** Test and benchmark hook: whether eager elementwise ops are fused (default on; KILN_EAGER_FUSION=0: off). */
export function setEagerFusion(on: boolean): void {
  active?.flushEager();
  overrides.eagerFusion = on;
}

// ---- one device ----------------------------------------------------------------------------------

interface Pipeline {
  name: string;
  kernel: WgslKernel;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** set once the pipeline's error scope resolved with an error */
  error: Error | null;
}

/**
 * What a prepared launcher keeps between calls: its own uniform buffers (offsets and params, each
 * written once) and the bind groups of the buffer sets it last bound, so a compiled step that binds the
 * same buffers every call creates no bind group and writes no uniform per step.
 */
interface LaunchCache {
  /** the pipeline the groups were made for */
  pipeline: Pipeline | null;
  /** uniform buffers by offsets + params (written once each: queued work may still read them) */
  uniforms: Map<string, GPUBuffer>;
  /** bind groups by uniform key + buffer ids, least recently used first */
  groups: Map<string, GPUBindGroup>;
}
/** Per prepared launcher: uniforms kept (other offsets use the shared ring) and bind groups kept (LRU). */
const UNIFORMS_PER_LAUNCHER = 4;
const GROUPS_PER_LAUNCHER = 16;
/** Bind groups kept per pipeline layout for launches through the shared uniform ring (LRU). */
const RING_GROUPS_PER_LAYOUT = 64;
const newLaunchCache = (): LaunchCache => ({ pipeline: null, uniforms: new Map(), groups: new Map() });

/** Small ids of buffers (bind-group cache keys); a destroyed buffer is never bound again, so its entries simply age out. */
const bufferIds = new WeakMap<GPUBuffer, number>();
let nextBufferId = 0;
/** A program that runs one prepared launcher per kernel, binding each from the table (WebGPU has no fused program). */
function launcherProgram(prepare: (spec: KernelSpec) => Launch, specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): Program {
  const launches = specs.map((spec, k) => ({
    run: prepare(spec),
    slots: bindings[k],
    bound: bindings[k].map((): { storage: Storage | null; offset: number } => ({ storage: null, offset: 0 })),
  }));
  return (table) => {
    for (const l of launches) {
      for (let i = 0; i < l.slots.length; i++) l.bound[i].storage = table[l.slots[i]];
      l.run(l.bound as BoundArg[]);
    }
  };
}

function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

type PickPipeline = (alias: readonly number[] | undefined, aligned: readonly boolean[] | undefined) => Pipeline;

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const compileError = (name: string, detail: string, code: string): Error =>
  new Error(`kiln: WebGPU kernel '${name}' failed to compile: ${detail}\n--- WGSL ---\n${code}`);
const align4 = (bytes: number): number => Math.max(4, Math.ceil(bytes / 4) * 4);
const storageUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function asStorage(s: Storage): WebGPUStorage {
  if (!(s instanceof WebGPUStorage)) throw new Error(`kiln: webgpu backend got a storage on device '${s.device}'`);
  return s;
}

/**
 * Arguments bound to the same buffer share one binding when the kernel writes one of them (WebGPU
 * forbids a buffer bound both read-only and writable in one dispatch): for each argument, the first
 * argument of its buffer; undefined when no binding is shared.
 */
function sharedBindings<B>(buffers: readonly B[], written: (arg: number) => boolean): number[] | undefined {
  const all = buffers.map((b) => buffers.indexOf(b));
  const conflict = all.some((a, k) => a !== k && (written(k) || written(a) || all.some((b, m) => b === a && written(m))));
  return conflict ? all : undefined;
}

/** Host data as the device stores it (bool widened to i32). */
function deviceData(data: TypedArray, dtype: DType): TypedArray {
  return dtype === 'bool' ? Int32Array.from(data) : data;
}

/** The backend of one GPUDevice: all its caches and queues, dropped with it. */
export class WebGPUBackend implements Backend {
  readonly name = 'webgpu' as const;
  /** adapterKey of the device's adapter (keys tuned choices), and whether it is a software one */
  private readonly adapter: string;
  private readonly software: boolean;
  private readonly maxBinding: number;
  private readonly pool: BufferPool;
  /** pipelines by shader source; `bySpec` maps spec structures (the hot path) onto them */
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly bySpec = new Map<string, Pipeline>();
  /** bumped whenever cached pipelines may be stale (a tune finished, a hook changed): launchers re-resolve */
  private generation = 0;
  private described: WgslTarget | null = null;
  /** outcomes of error scopes not yet inspected by a read */
  private pendingChecks: Promise<Error | null>[] = [];
  private readonly asyncErrors: Error[] = [];
  private readonly unsubscribe: () => void;
  // the pending command encoder, its compute pass, and the buffers its launches use
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pendingLaunches = 0;
  /** launches encoded so far */
  private launched = 0;
  /** timestamp writes of the next compute pass begun (profileProgram) */
  private passTimestamps: GPUComputePassTimestampWrites | null = null;
  private pendingBuffers = new Set<GPUBuffer>();
  /** submissions so far (the pool hands a returned buffer out once the submissions using it completed) */
  private submitCount = 0;
  /** the last submission known to have completed */
  private completed = 0;
  // the uniform chunk the pending launches' slots are packed into
  private uniformChunk: GPUBuffer | null = null;
  // host copy of the pending launches' slots: one for the instance (queue.writeBuffer copies it at flush)
  private readonly uniformHost = new ArrayBuffer(UNIFORM_CHUNK);
  private readonly uniformI32 = new Int32Array(this.uniformHost);
  private readonly uniformF32 = new Float32Array(this.uniformHost);
  private uniformUsed = 0;
  private readonly freeChunks: GPUBuffer[] = [];
  /** unmapped MAP_READ buffers of past reads, by size class */
  private readonly freeStaging: GPUBuffer[] = [];
  /** bind groups of launches through the uniform ring, by layout, then chunk, slot and buffers (LRU) */
  private readonly ringGroups = new WeakMap<GPUBindGroupLayout, Map<string, GPUBindGroup>>();
  /** eager elementwise ops recorded and not yet launched (launched before any other use of the device) */
  private readonly eager = new ElementwiseGroup({
    target: () => this.target,
    alloc: (dtype, size) => this.allocEager(dtype, size),
    prepare: (spec) => this.prepare(spec),
    // arena slots share their arena's buffer, and a kernel writing one binds it once (sharedBindings)
    bufferOf: (s) => asStorage(s).buffer,
    bindings: (buffers, written) => {
      const shared = sharedBindings(buffers, (k) => written[k]);
      return shared ? new Set(shared).size : buffers.length;
    },
  });
  /** a collected storage's buffer goes back to the pool */
  private readonly reclaim = new FinalizationRegistry<Block>((block) => {
    this.pool.release(block, this.pendingBuffers.has(block.buffer) ? this.submitCount + 1 : this.submitCount);
  });

  constructor(readonly device: GPUDevice) {
    const info = adapterInfo();
    this.adapter = adapterKey(info);
    this.software = isSoftwareAdapter(info);
    this.maxBinding = device.limits.maxStorageBufferBindingSize;
    this.pool = new BufferPool(device, POOL_CAP, storageUsage());
    this.unsubscribe = onUncapturedError((e) => {
      this.asyncErrors.push(new Error(`kiln: WebGPU error: ${e.message}`));
    });
  }

  /** Stops listening for the device's errors (the instance is being replaced). */
  dispose(): void { this.unsubscribe(); }

  /** Drops what a tune or a test hook may have made stale. */
  invalidate(): void {
    this.bySpec.clear();
    this.described = null;
    this.generation++;
  }

  /** The device as codegen sees it: its limits and its adapter's choices (overridable by test hooks). */
  get target(): WgslTarget {
    if (this.described) return this.described;
    const l = this.device.limits;
    const policy = adapterPolicy(adapterInfo(), subgroupMinSize());
    const options = { ...policy.options, ...(overrides.gridCap !== null && { maxWorkgroups: overrides.gridCap }), ...(overrides.reduce !== null && { reduce: overrides.reduce }) };
    return (this.described = {
      language: 'wgsl',
      limits: {
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        subgroupMinSize: subgroupMinSize(),
      },
      options,
      matmul: overrides.matmul ? [{ minWork: 0, variant: overrides.matmul }] : policy.matmul,
    });
  }

  alloc(dtype: DType, size: number): WebGPUStorage {
    const d = this.device;
    const bytes = align4(size * 4);
    if (bytes > d.limits.maxBufferSize) {
      throw new Error(`kiln: cannot allocate a WebGPU buffer of ${size} elements (${bytes} bytes): this device's maxBufferSize is ${d.limits.maxBufferSize} bytes`);
    }
    // a size class never pushes a buffer past what may be bound or allocated
    const block = this.pool.acquire(bytes, Math.min(d.limits.maxBufferSize, bytes <= this.maxBinding ? this.maxBinding : Infinity));
    const s = new WebGPUStorage(dtype, size, block);
    this.reclaim.register(s, block);
    if (inNode && block.bytes >= BALLAST_MIN) ballast.set(s, new ArrayBuffer(block.bytes));
    return s;
  }

  /** A storage for an eager elementwise result: an arena slot when tiny (pool.ts), else a buffer of its own. */
  allocEager(dtype: DType, size: number): WebGPUStorage {
    const bytes = align4(size * 4);
    if (bytes > SLOT_MAX) return this.alloc(dtype, size);
    const block = this.pool.acquireSlot(dtype, bytes);
    const s = new WebGPUStorage(dtype, size, block);
    this.reclaim.register(s, block);
    return s;
  }

  share(): void {} // GPU buffers: nothing to share

  upload(data: TypedArray): WebGPUStorage {
    const dtype: DType = data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'bool';
    const st = this.alloc(dtype, data.length);
    if (data.length > 0) {
      const src = deviceData(data, dtype);
      this.device.queue.writeBuffer(st.buffer, st.base * 4, src.buffer, src.byteOffset, src.byteLength);
    }
    return st;
  }

  write(s: Storage, data: TypedArray): void {
    const st = asStorage(s);
    this.eager.flush();
    // queue.writeBuffer runs before the pending (unsubmitted) launches: submit those first if they use the buffer
    if (this.pendingBuffers.has(st.buffer)) this.flush();
    const src = deviceData(data, st.dtype);
    const bytes = Math.min(src.byteLength, st.block.bytes) & ~3;
    if (bytes > 0) this.device.queue.writeBuffer(st.buffer, st.base * 4, src.buffer, src.byteOffset, bytes);
  }

  run(specs: readonly KernelSpec[], args: readonly BoundArg[], params: readonly number[] = []): void {
    const storages = args.map((a) => asStorage(a.storage));
    for (const spec of specs) this.launch(spec, args, storages, params, (alias, aligned) => this.pipelineFor(spec, alias, aligned));
  }

  prepare(spec: KernelSpec): Launch {
    // the pipeline per (aliasing, alignment) variant, resolved without hashing the spec again
    const variants = new Map<string, Pipeline>();
    const noParams: number[] = [];
    let cache = newLaunchCache();
    let gen = this.generation;
    return (args) => {
      const storages = args.map((a) => asStorage(a.storage));
      if (gen !== this.generation) {
        variants.clear();
        gen = this.generation;
        cache = newLaunchCache();
      }
      this.launch(spec, args, storages, noParams, (alias, aligned) => {
        const key = `${alias?.join(',') ?? ''}|${aligned?.map(Number).join('') ?? ''}`;
        let p = variants.get(key);
        if (!p) {
          p = this.pipelineFor(spec, alias, aligned);
          variants.set(key, p);
        }
        return p;
      }, cache);
    };
  }

  prepareProgram(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): Program {
    return launcherProgram((spec) => this.prepare(spec), specs, bindings);
  }

  /**
   * Records an eager elementwise op (runtime/eager-fusion.ts) unless fusion is off, the result is empty,
   * or a buffer is too big to bind (then launching it now raises the error at the op).
   */
  deferElementwise<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: readonly EagerOperand[], out: AVal): Storage | null {
    if (!overrides.eagerFusion) return null;
    const n = numel(out.shape);
    if (n === 0 || align4(n * 4) > this.maxBinding) return null;
    for (const x of inputs) if (asStorage(x.storage).buffer.size > this.maxBinding) return null;
    return this.eager.record(prim, attrs, inputs, out);
  }

  /** Records an eager in-place write (runtime/eager-fusion.ts) under the same conditions. */
  deferWrite(target: EagerOperand, value: EagerOperand): boolean {
    if (!overrides.eagerFusion) return false;
    const n = numel(target.view.shape);
    if (n === 0 || asStorage(target.storage).buffer.size > this.maxBinding || asStorage(value.storage).buffer.size > this.maxBinding) return false;
    return this.eager.recordWrite(target, value);
  }

  /** Launches the recorded eager ops (encoded, not submitted). */
  flushEager(): void { this.eager.flush(); }

  /** Eager fusion counters: ops recorded, kernels launched for them, group structures compiled, flushes. */
  eagerStats(): ElementwiseGroup['stats'] { return { ...this.eager.stats }; }

  memory(): DeviceMemory {
    const s = this.pool.stats;
    return { storages: s.liveBuffers, bytes: s.liveBytes, cachedBytes: s.freeBytes + s.waitingBytes, tracked: true };
  }

  async read(s: Storage, offset: number, size: number): Promise<TypedArray> {
    const st = asStorage(s);
    this.eager.flush();
    const d = this.device;
    const out = (n: number): TypedArray => (st.dtype === 'float32' ? new Float32Array(n) : st.dtype === 'int32' ? new Int32Array(n) : new Uint8Array(n));
    if (size <= 0) {
      this.flush();
      await this.surfaceErrors();
      return out(0);
    }
    if (offset < 0 || offset + size > st.size) throw new Error(`kiln: webgpu read of [${offset}, ${offset + size}) is outside a storage of ${st.size} elements`);
    const bytes = size * 4;
    const staging = this.takeStaging(bytes);
    this.encoder ??= d.createCommandEncoder({ label: 'kiln read' });
    this.pass?.end();
    this.pass = null;
    this.encoder.copyBufferToBuffer(st.buffer, (st.base + offset) * 4, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      await this.surfaceErrors();
      throw new Error(`kiln: reading a WebGPU buffer failed: ${messageOf(e)}`, { cause: e });
    }
    const raw = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    this.giveStaging(staging);
    await this.surfaceErrors();
    if (st.dtype === 'float32') return new Float32Array(raw);
    const ints = new Int32Array(raw);
    return st.dtype === 'int32' ? ints : Uint8Array.from(ints);
  }

  /** A MAP_READ buffer of at least `bytes` (small ones are reused: eager code reads a scalar per step). */
  private takeStaging(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const i = size <= STAGING_MAX ? this.freeStaging.findIndex((b) => b.size === size) : -1;
    if (i >= 0) return this.freeStaging.splice(i, 1)[0];
    return this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'kiln read' });
  }

  private giveStaging(b: GPUBuffer): void {
    if (b.size <= STAGING_MAX && this.freeStaging.length < STAGING_KEEP) this.freeStaging.push(b);
    else b.destroy();
  }

  readSync(_s: Storage, _offset: number, _size: number, method: string): never {
    throw new Error(`kiln: WebGPU tensors cannot be read synchronously; use \`await t.${method}\` instead`);
  }

  /** Submits the pending launches (without waiting for them). */
  flush(): void {
    this.eager.flush();
    const { encoder, device: d } = this;
    if (!encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.uniformChunk && this.uniformUsed > 0) d.queue.writeBuffer(this.uniformChunk, 0, this.uniformHost, 0, this.uniformUsed);
    d.pushErrorScope('validation');
    d.queue.submit([encoder.finish()]);
    noteUserSubmit(); // tunes wait for a quiet queue (autotune.ts)
    this.pendingChecks.push(d.popErrorScope().then((e) => (e ? new Error(`kiln: WebGPU launch failed: ${e.message}`) : null)));
    const chunk = this.uniformChunk;
    const epoch = ++this.submitCount;
    void d.queue.onSubmittedWorkDone().then(() => {
      if (chunk) this.freeChunks.push(chunk);
      this.completed = Math.max(this.completed, epoch);
      this.pool.completedUpTo(epoch);
    });
    this.encoder = null;
    this.uniformChunk = null;
    this.uniformUsed = 0;
    this.pendingLaunches = 0;
    this.pendingBuffers = new Set();
  }

  /**
   * Backpressure for loops that never read: the pending launches are submitted, and when more than
   * MAX_IN_FLIGHT submissions are unfinished the caller waits for the device, then lets the event loop
   * turn once so that collected tensors return their buffers to the pool (FinalizationRegistry runs as
   * a task, never between the microtasks of an `await step()` loop).
   */
  settle(): Promise<void> | null {
    this.flush();
    const turn = (): Promise<void> => new Promise<void>((resolve) => setTimeout(() => { this.createdAtTurn = this.pool.stats.created; resolve(); }, 0));
    if (this.submitCount - this.completed > MAX_IN_FLIGHT) return this.device.queue.onSubmittedWorkDone().then(turn);
    // Many new buffers since the event loop last turned: dead tensors are waiting for their finalizers.
    if (this.pool.stats.created - this.createdAtTurn > NEW_BUFFERS_PER_TURN) return turn();
    return null;
  }
  private createdAtTurn = 0;

  /**
   * Runs a compiled step's kernels once, each in its own compute pass, and measures each: with the
   * adapter's 'timestamp-query' feature, GPU timestamps at the start and end of each pass (one
   * submission); otherwise (or with `method` 'wall') each kernel is submitted alone and its wall time
   * from submit to completion counts (which includes the submission's own overhead).
   */
  async profileProgram(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[], table: readonly Storage[], method?: 'wall'): Promise<KernelTimes> {
    const d = this.device;
    const launches = specs.map((spec) => this.prepare(spec));
    const bound = (k: number): BoundArg[] => bindings[k].map((slot) => ({ storage: table[slot], offset: 0 }));
    await this.sync();
    const stamps = method !== 'wall' && d.features.has('timestamp-query');
    if (!stamps) {
      const ms: number[] = [];
      for (let k = 0; k < specs.length; k++) {
        const t0 = performance.now();
        launches[k](bound(k));
        this.flush();
        await d.queue.onSubmittedWorkDone();
        ms.push(performance.now() - t0);
      }
      await this.surfaceErrors();
      const why = method === 'wall' ? 'wall time asked for' : "this adapter has no 'timestamp-query'";
      return { ms, method: 'wall', note: `${why}: each kernel was submitted alone and timed from submit to completion (includes ~0.1-1 ms of submission overhead per kernel)` };
    }
    const n = specs.length;
    const querySet = d.createQuerySet({ type: 'timestamp', count: 2 * n });
    const resolved = d.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const readback = d.createBuffer({ size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const ran: boolean[] = [];
    try {
      for (let k = 0; k < n; k++) {
        // a pass per kernel, stamped at its start and end
        this.pass?.end();
        this.pass = null;
        this.passTimestamps = { querySet, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 };
        const before = this.launched;
        launches[k](bound(k));
        ran.push(this.launched > before); // a kernel with an empty grid launches nothing
        this.passTimestamps = null;
        (this.pass as GPUComputePassEncoder | null)?.end();
        this.pass = null;
      }
      this.encoder ??= d.createCommandEncoder({ label: 'kiln profile' });
      this.encoder.resolveQuerySet(querySet, 0, 2 * n, resolved, 0);
      this.encoder.copyBufferToBuffer(resolved, 0, readback, 0, 16 * n);
      this.flush();
      await readback.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(readback.getMappedRange().slice(0));
      readback.unmap();
      await this.surfaceErrors();
      return { ms: Array.from({ length: n }, (_, k) => (ran[k] && t[2 * k + 1] >= t[2 * k] ? Number(t[2 * k + 1] - t[2 * k]) / 1e6 : 0)), method: 'timestamp-query', note: 'GPU timestamps at the start and end of each kernel\'s compute pass' };
    } finally {
      this.passTimestamps = null;
      querySet.destroy();
      resolved.destroy();
      readback.destroy();
    }
  }

  /** Waits until all queued work has finished, and surfaces any error it raised. */
  finish(): Promise<void> { return this.sync(); }

  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.surfaceErrors();
  }

  poolStats(): PoolStats { return { ...this.pool.stats }; }
  trimPool(): void { this.pool.trim(); }

  /** Throws the first error recorded by error scopes or uncaptured-error events so far (awaits pending checks). */
  private async surfaceErrors(): Promise<void> {
    while (this.pendingChecks.length) {
      const checks = this.pendingChecks;
      this.pendingChecks = [];
      const results = await Promise.all(checks);
      for (const r of results) if (r) this.asyncErrors.push(r);
    }
    if (this.asyncErrors.length) {
      const [first] = this.asyncErrors.splice(0, this.asyncErrors.length);
      throw first;
    }
  }

  /** The shader a spec launches with (tuned matmul variant, test hooks applied) and its pipeline cache key. */
  private kernelFor(spec: KernelSpec, alias: readonly number[] | undefined, aligned: readonly boolean[] | undefined): { kernel: WgslKernel; pkey: string } {
    const t = this.target;
    const matmul = spec.kernel.kind === 'matmul' ? overrides.matmul ?? chooseMatmul({ device: this.device, adapter: this.adapter, software: this.software, target: t, spec, aligned, mayTune: !alias }) : undefined;
    let kernel = wgslSource(spec, { ...t.options, limits: t.limits, alias, aligned, matmul });
    if (overrides.shaderTransform) kernel = { ...kernel, code: overrides.shaderTransform(kernel.code, spec) };
    return { kernel, pkey: kernel.code + '|' + kernel.bindings.map((b) => b.access).join(',') };
  }

  private pipelineFor(spec: KernelSpec, alias: readonly number[] | undefined, aligned: readonly boolean[] | undefined): Pipeline {
    const key = structuralKey(spec.kernel) + '|' + spec.args.map((a) => a.dtype).join(',') + '|' + spec.params + '|' + (alias?.join(',') ?? '') + '|' + (aligned?.map(Number).join('') ?? '');
    const cached = this.bySpec.get(key);
    if (cached) return cached;
    const { kernel, pkey } = this.kernelFor(spec, alias, aligned);
    let shared = this.pipelines.get(pkey);
    if (!shared) {
      shared = this.createPipeline(spec.name, kernel);
      this.pipelines.set(pkey, shared);
    }
    // Specs with the same shader (sizes in uniforms) share the compiled pipeline, but each keeps its own
    // dispatch grid: a [3, 9, 676] batch must not launch the workgroups of a [2, 9, 676] one. The
    // per-spec record reads `error` (set later) through its prototype.
    const p: Pipeline = shared.kernel.workgroups.join() === kernel.workgroups.join() ? shared : Object.create(shared, { kernel: { value: kernel } });
    this.bySpec.set(key, p);
    return p;
  }

  /**
   * Creates the pipelines of a compiled step's kernels ahead of its first launch, all at once with
   * createComputePipelineAsync (the driver may compile them in parallel, and nothing blocks the event
   * loop). Kernels are assumed bound at offset 0 without aliasing, as compiled steps bind them; a shader
   * that fails here is left to the synchronous path, which reports its errors in full. Matmul tunes
   * wait for `firstRun`: on software adapters their shader compiles would otherwise share the CPU with
   * the first call's (measured on lavapipe, busy machine: 34 s first MLP step with tunes, 1.0 s without).
   */
  async precompile(specs: readonly KernelSpec[], firstRun: Promise<void>): Promise<PrecompileReport> {
    const t0 = performance.now();
    const d = this.device;
    // tunes (started below by new matmul shapes) wait until the first call's work has run
    holdTunesUntil(firstRun.then(() => this.sync()).catch(() => undefined));
    const made = new Map<string, Promise<void>>();
    let bytes = 0;
    for (const spec of specs) {
      const aligned = spec.kernel.kind === 'matmul' ? spec.args.map(() => true) : undefined;
      const { kernel, pkey } = this.kernelFor(spec, undefined, aligned);
      if (this.pipelines.has(pkey) || made.has(pkey)) continue;
      bytes += kernel.code.length;
      d.pushErrorScope('validation');
      d.pushErrorScope('internal');
      const module = d.createShaderModule({ code: kernel.code, label: spec.name });
      const layout = this.bindGroupLayout(spec.name, kernel);
      const pipeline = d.createComputePipelineAsync({ label: spec.name, layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' } });
      const scopes = Promise.all([d.popErrorScope(), d.popErrorScope()]);
      made.set(pkey, Promise.all([pipeline, scopes]).then(([pl, errs]) => {
        if (errs.some((e) => e !== null) || this.pipelines.has(pkey)) return;
        this.pipelines.set(pkey, { name: spec.name, kernel, pipeline: pl, layout, error: null });
      }, () => { /* the synchronous path reports it */ }));
    }
    await Promise.all(made.values());
    return { kernels: specs.length, shaders: made.size, bytes, ms: performance.now() - t0, tunesPending: tunesPending() };
  }

  private bindGroupLayout(label: string, kernel: WgslKernel): GPUBindGroupLayout {
    return this.device.createBindGroupLayout({
      label,
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
        ...kernel.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.access === 'read' ? 'read-only-storage' as const : 'storage' as const } })),
      ],
    });
  }

  private createPipeline(name: string, kernel: WgslKernel): Pipeline {
    const d = this.device;
    d.pushErrorScope('validation');
    d.pushErrorScope('internal');
    const module = d.createShaderModule({ code: kernel.code, label: name });
    const layout = this.bindGroupLayout(name, kernel);
    const pipeline = d.createComputePipeline({
      label: name,
      layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    const internal = d.popErrorScope();
    const validation = d.popErrorScope();
    const entry: Pipeline = { name, kernel, pipeline, layout, error: null };
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
    this.pendingChecks.push(check);
    return entry;
  }

  private takeChunk(): void {
    this.uniformChunk = this.freeChunks.pop() ?? this.device.createBuffer({ size: UNIFORM_CHUNK, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'kiln uniforms' });
    this.uniformUsed = 0;
  }

  private encoderFor(uniformBytes: number): GPUComputePassEncoder {
    const need = Math.ceil(uniformBytes / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    if (this.encoder && (this.pendingLaunches >= MAX_PENDING || this.uniformUsed + need > UNIFORM_CHUNK)) this.flush();
    if (!this.encoder) {
      this.encoder = this.device.createCommandEncoder({ label: 'kiln' });
      this.takeChunk();
    }
    this.pass ??= this.encoder.beginComputePass(this.passTimestamps ? { timestampWrites: this.passTimestamps } : undefined);
    return this.pass;
  }

  /** Encodes one kernel launch into the pending command encoder. */
  private launch(spec: KernelSpec, args: readonly BoundArg[], storages: readonly WebGPUStorage[], params: readonly number[], pick: PickPipeline, cache?: LaunchCache): void {
    this.eager.flush(); // recorded eager ops come first (this launch may read or overwrite their buffers)
    const n = spec.args.length;
    if (n > args.length) throw new Error(`kiln: kernel '${spec.name}' takes ${n} arguments, got ${args.length}`);
    let alias: number[] | undefined;
    for (let i = 1; i < n && !alias; i++) {
      for (let j = 0; j < i; j++) {
        if (storages[i].buffer === storages[j].buffer) {
          const written = new Set(writtenArgs(spec.kernel));
          alias = sharedBindings(storages.slice(0, n).map((s) => s.buffer), (k) => written.has(k));
          i = n; // decided
          break;
        }
      }
    }
    // offsets in the buffers: an arena slot starts at its base (pool.ts)
    const offs: number[] = [];
    for (let i = 0; i < n; i++) offs.push(args[i].offset + storages[i].base);
    // matmul reads aligned operands as vec4: which offsets are multiples of 4 is part of its shader
    const aligned = spec.kernel.kind === 'matmul' ? offs.map((o) => o % 4 === 0) : undefined;
    const p = pick(alias, aligned);
    if (p.error) throw p.error;
    for (const b of p.kernel.bindings) {
      const size = storages[b.arg].buffer.size;
      if (size > this.maxBinding) {
        throw new Error(`kiln: WebGPU kernel '${spec.name}' binds a buffer of ${size} bytes (argument ${b.arg}), more than this device's maxStorageBufferBindingSize (${this.maxBinding} bytes)`);
      }
    }
    const wg = p.kernel.workgroups;
    if (wg[0] === 0 || wg[1] === 0 || wg[2] === 0) return;
    if (cache && this.launchCached(spec, offs, storages, params, p, cache)) return;
    const cp = this.encoderFor(p.kernel.uniformBytes);
    const at = this.uniformUsed;
    packUniform(this.uniformI32, this.uniformF32, at / 4, n, spec.params, offs, params);
    this.uniformUsed += Math.ceil(p.kernel.uniformBytes / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    // The group (chunk, slot, buffers) is reused when a launch comes back to the same slot of a chunk
    // with the same buffers: a loop's launches take the same slots of the few chunks that take turns,
    // and eager kernels over arena slots bind the same arena launch after launch. (Not a dynamic offset:
    // on lavapipe one costs more per dispatch than creating the group.)
    const chunk = this.uniformChunk!;
    let groups = this.ringGroups.get(p.layout);
    if (!groups) this.ringGroups.set(p.layout, (groups = new Map()));
    let key = `${bufferId(chunk)}:${at}:${p.kernel.uniformBytes}#`;
    for (const b of p.kernel.bindings) key += `${bufferId(storages[b.arg].buffer)},`;
    let group = groups.get(key);
    if (group) {
      groups.delete(key); // most recently used last
    } else {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: chunk, offset: at, size: p.kernel.uniformBytes } }];
      for (const b of p.kernel.bindings) entries.push({ binding: b.binding, resource: { buffer: storages[b.arg].buffer } });
      group = this.device.createBindGroup({ layout: p.layout, entries });
      if (groups.size >= RING_GROUPS_PER_LAYOUT) groups.delete(groups.keys().next().value!);
    }
    groups.set(key, group);
    for (const b of p.kernel.bindings) this.pendingBuffers.add(storages[b.arg].buffer);
    cp.setPipeline(p.pipeline);
    cp.setBindGroup(0, group);
    cp.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    this.pendingLaunches++;
    this.launched++;
  }

  /**
   * Launches through the prepared launcher's own uniforms and bind groups; false when it cannot (then
   * the shared ring is used). Creating a bind group costs ~50 us in dawn.node (measured on lavapipe),
   * more than the rest of an eager launch, so a launcher keeps the groups of the last few buffer sets
   * it bound: compiled steps bind the same buffers every call, and eager loops get pooled buffers back.
   */
  private launchCached(spec: KernelSpec, offs: readonly number[], storages: readonly WebGPUStorage[], params: readonly number[], p: Pipeline, cache: LaunchCache): boolean {
    const d = this.device;
    const n = spec.args.length;
    let key = '';
    for (let i = 0; i < n; i++) key += `${offs[i]},`;
    key += `|${params.join(',')}`;
    let uniform = cache.uniforms.get(key);
    if (!uniform) {
      if (cache.uniforms.size >= UNIFORMS_PER_LAUNCHER) return false;
      const bytes = new ArrayBuffer(Math.max(16, p.kernel.uniformBytes));
      packUniform(new Int32Array(bytes), new Float32Array(bytes), 0, n, spec.params, offs, params);
      uniform = d.createBuffer({ size: bytes.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${spec.name} uniforms` });
      d.queue.writeBuffer(uniform, 0, bytes);
      cache.uniforms.set(key, uniform);
    }
    if (uniform.size < p.kernel.uniformBytes) return false;
    if (cache.pipeline !== p) {
      cache.groups.clear();
      cache.pipeline = p;
    }
    const buffers = p.kernel.bindings.map((b) => storages[b.arg].buffer);
    let gkey = key + '#';
    for (const b of buffers) gkey += `${bufferId(b)},`;
    let group = cache.groups.get(gkey);
    if (group) {
      cache.groups.delete(gkey); // most recently used last
    } else {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform, offset: 0, size: p.kernel.uniformBytes } }];
      p.kernel.bindings.forEach((b, i) => entries.push({ binding: b.binding, resource: { buffer: buffers[i] } }));
      group = d.createBindGroup({ layout: p.layout, entries });
      if (cache.groups.size >= GROUPS_PER_LAUNCHER) cache.groups.delete(cache.groups.keys().next().value!);
    }
    cache.groups.set(gkey, group);
    for (const b of buffers) this.pendingBuffers.add(b);
    const cp = this.encoderFor(0);
    const wg = p.kernel.workgroups;
    cp.setPipeline(p.pipeline);
    cp.setBindGroup(0, group);
    cp.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    this.pendingLaunches++;
    this.launched++;
    return true;
  }
}

// ---- the 'webgpu' backend: the current device's instance ------------------------------------------

let active: WebGPUBackend | null = null;
onTuned(() => active?.invalidate());

/** The instance of the current device; a new device (first use, or after a loss) gets a fresh one. */
function current(): WebGPUBackend {
  if (!isInitialized()) {
    throw new Error(
      "kiln: WebGPU is not initialised: call `await kiln.webgpu.init()` (or check `await kiln.webgpu.available()`) before using device 'webgpu'. " +
        'init() says why when no adapter exists; in Node on a machine without a GPU, install Mesa lavapipe (`sudo bash scripts/install-lavapipe.sh`), or use device \'cpu\'.',
    );
  }
  const d = getDeviceSync();
  if (active?.device !== d) {
    active?.dispose();
    active = new WebGPUBackend(d);
  }
  return active;
}

/** A launcher that prepares itself on the current device's instance, again whenever the device changes. */
function followingLaunch(spec: KernelSpec): Launch {
  let owner: WebGPUBackend | null = null;
  let launch: Launch | null = null;
  return (args) => {
    const b = current();
    if (b !== owner || !launch) {
      owner = b;
      launch = b.prepare(spec);
    }
    launch(args);
  };
}

export const webgpuBackend: Backend = {
  name: 'webgpu',
  get target() { return current().target; },
  alloc: (dtype, size) => current().alloc(dtype, size),
  upload: (data) => current().upload(data),
  share: () => {}, // GPU buffers: nothing to share
  write: (s, data) => current().write(s, data),
  run: (specs, args, params) => current().run(specs, args, params),
  prepare: followingLaunch,
  prepareProgram: (specs, bindings) => launcherProgram(followingLaunch, specs, bindings),
  read: (s, offset, size) => current().read(s, offset, size),
  readSync: (s, offset, size, method) => current().readSync(s, offset, size, method),
  settle: () => settle(), // before init() (kiln.webgpu.settle() in a loop on the CPU) there is nothing to wait for
  // before the device is first used there is nothing to count
  memory: () => active?.memory() ?? { storages: 0, bytes: 0, cachedBytes: 0, tracked: true },
  precompile: (specs, firstRun) => current().precompile(specs, firstRun),
  finish: () => current().sync(),
  profileProgram: (specs, bindings, table) => current().profileProgram(specs, bindings, table, profileMethod ?? undefined),
  deferElementwise: (prim, attrs, inputs, out) => current().deferElementwise(prim, attrs, inputs, out),
  deferWrite: (target, value) => current().deferWrite(target, value),
};

let profileMethod: 'wall' | null = null;
/** Test hook: profile by wall time even where the adapter has 'timestamp-query' (null: by adapter). */
export const setProfileMethod = (m: 'wall' | null): void => { profileMethod = m; };

/** Submits the pending launches (without waiting for them). */
export function flush(): void { active?.flush(); }

/**
 * Backpressure for eager loops: waits for the device when more than a couple of submissions are
 * unfinished, and lets the event loop turn so that dead tensors return their buffers. Compiled steps do
 * this on every call; an eager loop that never reads a value should await it once a step.
 */
export async function settle(): Promise<void> {
  if (isInitialized()) await current().settle();
}

/** Waits until all queued WebGPU work has finished, and surfaces any error it raised. */
export async function sync(): Promise<void> {
  if (isInitialized()) await current().sync();
}

/** The current device's eager fusion counters (tests and benchmarks); null before the device is used. */
export function eagerFusionStats(): ElementwiseGroup['stats'] | null { return active?.eagerStats() ?? null; }

/** The current device's buffer pool counters (tests and diagnostics); null before the device is used. */
export function poolStats(): PoolStats | null { return active?.poolStats() ?? null; }
/** Destroys the pool's idle buffers. */
export function trimPool(): void { active?.trimPool(); }

/** Registers the backend (its methods acquire nothing: they need `init()` to have completed). */
export function registerWebGPUBackend(): void {
  registerBackend(webgpuBackend);
}

registerWebGPUBackend();

/** Acquires the WebGPU device (a clear Error where there is none) and registers the 'webgpu' backend. */
export async function initWebGPU(): Promise<void> {
  await deviceInit();
  // browsers keep tuned matmul choices in IndexedDB (asynchronous): load them before the first kernel
  await loadAutotuneCache();
  registerWebGPUBackend();
  current();
}
