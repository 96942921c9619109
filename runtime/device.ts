// The backend interface: what a device must do for eager ops and compiled steps (a handful of methods).

import type { DType, TypedArray } from '../ir/dtype.ts';
import type { KernelSpec } from '../ir/kernel.ts';

export type DeviceName = 'cpu' | 'webgpu';
export const DEVICES: readonly DeviceName[] = ['cpu', 'webgpu'];

/** Device memory. `size` counts elements. */
export interface Storage { readonly device: DeviceName; readonly dtype: DType; readonly size: number }

/** A storage bound to a kernel argument, starting `offset` elements in. */
export interface BoundArg { storage: Storage; offset: number }

export interface Backend {
  readonly name: DeviceName;
  alloc(dtype: DType, size: number): Storage;
  upload(data: TypedArray): Storage;
  /** Runs kernels in order over the bound arguments (indices as in each spec's args). */
  run(specs: readonly KernelSpec[], args: readonly BoundArg[], params?: readonly number[]): void;
  read(storage: Storage, offset: number, size: number): Promise<TypedArray>;
  /** Synchronous read; devices that cannot read synchronously throw an error naming the async reader. */
  readSync(storage: Storage, offset: number, size: number, method: string): TypedArray;
  /** A launcher for one kernel, compiled once (compiled steps call it on every step). */
  prepare?(spec: KernelSpec): (args: readonly BoundArg[]) => void;
  /**
   * A launcher for a whole kernel list (a compiled step): `bindings[k][a]` is the index in the
   * storage table passed at launch that kernel k's argument a binds.
   */
  prepareProgram?(specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): (table: readonly Storage[]) => void;
  /** The source a kernel runs as, for listings (`lower()`, KILN_DUMP). */
  kernelSource(spec: KernelSpec): { language: 'js' | 'wgsl'; source: string };
  /** The most buffers one kernel may bind (WebGPU's maxStorageBuffersPerShaderStage); the fuser splits above it. */
  maxKernelArgs(): number;
  /** Overwrites a storage from host data (host scalars of compiled steps). */
  write?(storage: Storage, data: TypedArray): void;
  /** Live storages and their bytes (kiln.memory()). */
  memory(): DeviceMemory;
}

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

export function setDefaultDevice(device: DeviceName): void { defaultDevice = checkDevice(device); }
export const getDefaultDevice = (): DeviceName => defaultDevice;
