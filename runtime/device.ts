// The backend interface: what a device must do for eager ops and compiled steps (a handful of methods),
// and the registry of devices.

import type { DType, TypedArray } from '../ir/dtype.ts';
import type { KernelSpec } from '../ir/kernel.ts';
import type { Target } from '../compiler/target.ts';

export type DeviceName = 'cpu' | 'webgpu';
export const DEVICES: readonly DeviceName[] = ['cpu', 'webgpu'];

/** Device memory. `size` counts elements. */
export interface Storage { readonly device: DeviceName; readonly dtype: DType; readonly size: number }

/** A storage bound to a kernel argument, starting `offset` elements in. */
export interface BoundArg { storage: Storage; offset: number }

/** A launcher for one kernel, compiled once; compiled steps and repeated eager ops call it again and again. */
export type Launch = (args: readonly BoundArg[]) => void;
/** A launcher for a whole kernel list over a storage table (a compiled step). */
export type Program = (table: readonly Storage[]) => void;

/**
 * Every device implements every method (the CPU's versions are trivial), so callers never branch on
 * what a device can do. What the compiler needs to know of a device is `target`: plain data
 * (compiler/target.ts), read once per compilation; the compiler never sees this object.
 */
export interface Backend {
  readonly name: DeviceName;
  /** the device as the compiler sees it: language, limits, codegen choices */
  readonly target: Target;
  alloc(dtype: DType, size: number): Storage;
  upload(data: TypedArray): Storage;
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
}

/** A program that runs one prepared launcher per kernel, binding each from the table (devices without a fused program). */
export function launcherProgram(prepare: (spec: KernelSpec) => Launch, specs: readonly KernelSpec[], bindings: readonly (readonly number[])[]): Program {
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

const backends = new Map<DeviceName, Backend>();
let defaultDevice: DeviceName = 'cpu';

export function registerBackend(b: Backend): void { backends.set(b.name, b); }

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
