// The backend interface: what a device must do for eager ops and compiled steps (a handful of methods),
// and the registry of devices.

import type { DType, TypedArray } from '../ir/dtype.ts';
import type { KernelSpec } from '../ir/kernel.ts';
import type { Target } from '../compiler/target.ts';
import type { AVal, PrimAttrs, Primitive } from '../ir/primitives.ts';
import type { View } from '../ir/view.ts';

export type DeviceName = 'cpu' | 'webgpu';
export const DEVICES: readonly DeviceName[] = ['cpu', 'webgpu'];

/** Device memory. `size` counts elements. */
export interface Storage { readonly device: DeviceName; readonly dtype: DType; readonly size: number }

/** An operand of an eager op: its storage and the view (with offset) the op reads it through. */
export interface EagerOperand { storage: Storage; view: View; dtype: DType }

/** A storage bound to a kernel argument, starting `offset` elements in. */
export interface BoundArg { storage: Storage; offset: number }

/** A launcher for one kernel, compiled once; compiled steps and repeated eager ops call it again and again. */
export type Launch = (args: readonly BoundArg[]) => void;
/** A launcher for a whole kernel list over a storage table (a compiled step). */
export type Program = (table: readonly Storage[]) => void;

/**
 * How long a compiled program holds a storage its device's worker threads must see: 'held' as long as
 * the program (its temporaries; the parameters, state and gradients it captures), or for one 'call' (its
 * arguments and fresh outputs). The CPU puts held storages in its thread pool's memory, where the gemm
 * reads them in place, and gives a call's its own SharedArrayBuffers, which the garbage collector frees
 * unaided (a pool block comes back only when a FinalizationRegistry callback runs, and a tight `await`
 * loop postpones those).
 */
export type Sharing = 'held' | 'call';

/**
 * Every device implements every method (the CPU's versions are trivial), so callers never branch on
 * what a device can do. What the compiler needs to know of a device is `target`: plain data
 * (compiler/target.ts), read once per compilation; the compiler never sees this object.
 */
export interface Backend {
  readonly name: DeviceName;
  /** the device as the compiler sees it: language, limits, codegen choices */
  readonly target: Target;
  /** A zeroed storage; `shared`: one the device's worker threads can see, held as it says (see `share`). */
  alloc(dtype: DType, size: number, shared?: Sharing): Storage;
  upload(data: TypedArray): Storage;
  /**
   * Lets the device's worker threads see a storage (the CPU: its data moved, in place and once, into
   * shared memory, for compiled programs' split kernels); nothing where that means nothing.
   */
  share(storage: Storage, how: Sharing): void;
  /** Overwrites a storage from host data (host scalars of compiled steps). */
  write(storage: Storage, data: TypedArray): void;
  /** Runs kernels once, in order, over the bound arguments (indices as in each spec's args). */
  run(specs: readonly KernelSpec[], args: readonly BoundArg[], params?: readonly number[]): void;
  /** A launcher for one kernel, compiled once. */
  prepare(spec: KernelSpec): Launch;
  /** A launcher for a kernel list: `bindings[k][a]` is the table index that kernel k's argument a binds. */
  prepareProgram(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): Program;
  read(storage: Storage, offset: number, size: number): Promise<TypedArray>;
  /** Synchronous read; devices that cannot read synchronously throw an error naming the async reader. */
  readSync(storage: Storage, offset: number, size: number, method: string): TypedArray;
  /**
   * Backpressure: null when little work is queued, else a promise that resolves once the device has
   * caught up (a compiled step awaits it, so a loop that never reads still cannot queue without bound).
   */
  settle(): Promise<void> | null;
  /** Live storages and their bytes (kiln.memory()). */
  memory(): DeviceMemory;
  /**
   * Creates the pipelines of a compiled step's kernels before its first launch, in parallel where the
   * device can; null where there is nothing to create (the CPU compiles its kernels as it prepares them).
   * Background work such as tuning waits until `firstRun` resolves (the first call's kernels are queued),
   * so that it stays off the first call's path.
   */
  precompile(specs: readonly KernelSpec[], firstRun: Promise<void>): Promise<PrecompileReport | null>;
  /** Waits until all queued work has finished (at once on devices that run synchronously). */
  finish(): Promise<void>;
  /** Runs a program once, one kernel at a time, and measures each (compiled steps' `profile`). */
  profileProgram(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[], table: readonly Storage[]): Promise<KernelTimes>;
  /**
   * Devices whose launches cost more than small kernels' work (WebGPU) record eager elementwise ops
   * instead of launching each, and launch them fused before anything else touches the device
   * (runtime/eager-fusion.ts). Returns the result's storage (allocated now), or null to launch as usual.
   */
  deferElementwise?<P extends Primitive>(prim: P, attrs: PrimAttrs[P], inputs: readonly EagerOperand[], out: AVal): Storage | null;
  /** The same for an eager in-place write of `value` into `target` (writeInto); false to launch it as usual. */
  deferWrite?(target: EagerOperand, value: EagerOperand): boolean;
}

/** What `precompile` did: shaders compiled (deduplicated by source), their size, and the wall time. */
export interface PrecompileReport { kernels: number; shaders: number; bytes: number; ms: number; tunesPending: number }

/** Per-kernel times of one run: `ms[k]` for kernel k, and how they were measured. */
export interface KernelTimes { ms: number[]; method: 'timestamp-query' | 'wall' ; note: string }

/** What kiln.memory() reports for one device. */
export interface DeviceMemory {
  /** storages not yet garbage-collected: one per tensor that owns memory (views share their base's) */
  storages: number;
  /** their bytes */
  bytes: number;
  /** bytes of free buffers the device keeps for reuse (WebGPU's pool; 0 on the CPU) */
  cachedBytes: number;
  /** false while the device keeps no count (the CPU's starts with the first kiln.memory() call) */
  tracked: boolean;
}

const backends = new Map<DeviceName, Backend>();
let defaultDevice: DeviceName = 'cpu';

export function registerBackend(b: Backend): void { backends.set(b.name, b); }

/** The backend of a device, or undefined where it is not set up (WebGPU before init()). */
export const registeredBackend = (device: DeviceName): Backend | undefined => backends.get(device);

export function backendFor(device: DeviceName): Backend {
  const b = backends.get(device);
  if (b) return b;
  if (device === 'webgpu') {
    throw new Error("WebGPU is not initialised: call `await kiln.webgpu.init()` (or `await kiln.webgpu.available()`) before creating tensors on device 'webgpu'");
  }
  throw new Error(`unknown device '${device}' (expected one of ${DEVICES.join(', ')})`);
}

export function checkDevice(device: string): DeviceName {
  if (!(DEVICES as readonly string[]).includes(device)) throw new Error(`unknown device '${device}' (expected one of ${DEVICES.join(', ')})`);
  return device as DeviceName;
}

/**
 * A clear error, before anything is allocated, when `device` cannot hold `dtype` (float64 on WebGPU:
 * WGSL has no 64-bit floats). `op` names the operation in the message.
 */
export function checkDType(op: string, device: DeviceName, dtype: DType): void {
  if (dtype !== 'float64' || device === 'cpu') return; // the common case costs one comparison
  const target = backendFor(device).target;
  // (the language decides: JavaScript computes in doubles; WGSL has no 64-bit floats. A type-only look
  // at the target keeps the compiler out of the first-loaded chunk.)
  if (target.language !== 'js') {
    throw new Error(`${op}: float64 is not supported on device '${device}' (${target.language.toUpperCase()} has no 64-bit floats); float64 tensors live on the CPU: create them with { device: 'cpu' } or use float32 on ${device}`);
  }
}
export function setDefaultDevice(device: DeviceName): void { defaultDevice = checkDevice(device); }
export const getDefaultDevice = (): DeviceName => defaultDevice;
