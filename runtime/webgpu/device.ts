// WebGPU adapter/device acquisition for kiln.
//
// In Node the device comes from the `webgpu` npm package (Dawn, "dawn.node"):
// `create([])` returns a `GPU` object, the equivalent of `navigator.gpu`.
// In a browser it comes from `navigator.gpu`.
//
// One device per process (a cached singleton). Callers either `await init()`
// (or `await getDevice()`) once and then use `getDeviceSync()` on hot paths,
// or probe with `await available()`, which never throws.
//
// On a machine without a GPU, Dawn finds Mesa's lavapipe (a Vulkan driver that
// runs on the CPU) once it is installed: `sudo bash scripts/install-lavapipe.sh`
// (mesa-vulkan-drivers from Debian bookworm-backports; bookworm's own Mesa is
// too old for Dawn). Set XDG_RUNTIME_DIR to any writable folder to silence a
// Dawn/Vulkan loader warning.
//
// Errors: Dawn reports WebGPU validation/out-of-memory/internal errors that are
// not caught by an error scope as 'uncapturederror' events. We record them
// (see `takeUncapturedErrors()` / `throwIfUncapturedErrors()`) and pass them to
// listeners registered with `onUncapturedError()`, so the runtime can surface
// them as exceptions instead of relying on a line on stderr. A lost device is
// recorded too: `getDeviceSync()` then throws with the reason, and the next
// `getDevice()` acquires a fresh device (unless it was lost through `destroy()`).

// The global WebGPU types (GPUDevice, GPUBufferUsage, ...) come from
// @webgpu/types, which the `webgpu` package's own typings import.
import type {} from 'webgpu';
import { throttleDawnPolling } from './dawn-poll.ts';
import { subgroupLanes } from '../../compiler/codegen/wgsl.ts';
import { notAcquired } from './not-acquired.ts';
import { probeSubgroupLanes } from './subgroup-probe.ts';

/** String fields of the acquired adapter's GPUAdapterInfo (empty strings where the platform hides them). */
export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** the smallest subgroup size the adapter may use (0 when it does not say) */
  subgroupMinSize: number;
}

/** Limits we raise to the adapter's maximum when requesting the device. */
const RAISED_LIMITS = [
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxBindGroups',
] as const;

/** Optional features we enable when the adapter has them (none is required). */
const OPTIONAL_FEATURES = ['timestamp-query', 'shader-f16', 'subgroups'] as const;

const isNode =
  typeof process !== 'undefined' && typeof process.versions === 'object' && !!process.versions?.node;

interface State {
  gpu: GPU;
  adapter: GPUAdapter;
  device: GPUDevice;
  info: AdapterInfo;
  /** the adapter's smallest subgroup size where the lanes probe held (subgroup-probe.ts), else 0 */
  subgroupLanes: number;
}

let state: State | null = null;
let pending: Promise<State> | null = null;
let availableResult: Promise<boolean> | null = null;
let lostInfo: { reason: string; message: string } | null = null;
let uncaptured: GPUError[] = [];
const errorListeners = new Set<(error: GPUError) => void>();
// Keeps the `webgpu` module's GPU object alive for the life of the process:
// dawn.node tears down its instance once the object returned by create() is collected.
let nodeGpu: GPU | null = null;

const HOW_TO_GET_ONE_NODE =
  'In Node, kiln uses the `webgpu` npm package (Dawn): run `npm install webgpu`. ' +
  'On a machine without a GPU, install Mesa lavapipe (a Vulkan driver that runs on the CPU): ' +
  '`sudo bash scripts/install-lavapipe.sh` (mesa-vulkan-drivers and libvulkan1 from Debian bookworm-backports; ' +
  "bookworm's own Mesa is too old for Dawn). Or use device 'cpu'.";
const HOW_TO_GET_ONE_BROWSER =
  "Use a browser with WebGPU enabled (recent Chrome/Edge, Safari 26+, Firefox 141+ on Windows, or a flag), served from a secure context (https or localhost). Or use device 'cpu'.";

function noWebGPUError(what: string, cause?: unknown): Error {
  const how = isNode ? HOW_TO_GET_ONE_NODE : HOW_TO_GET_ONE_BROWSER;
  const detail = cause instanceof Error ? ` (${cause.message.split('\n')[0]})` : '';
  return new Error(`kiln: WebGPU is not available: ${what}${detail}. ${how}`, cause === undefined ? undefined : { cause });
}

async function getGPU(): Promise<GPU> {
  // dawn.node waits for the GPU in a setImmediate loop (dawn-poll.ts), also where a program has put
  // its GPU object on navigator.gpu
  if (isNode) throttleDawnPolling();
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode) throw noWebGPUError('navigator.gpu does not exist in this browser');
  if (nodeGpu) return nodeGpu;
  // A variable specifier keeps browser bundlers from trying to resolve the Node-only package.
  const specifier = 'webgpu';
  let mod: typeof import('webgpu');
  try {
    mod = (await import(/* @vite-ignore */ specifier)) as typeof import('webgpu');
  } catch (e) {
    throw noWebGPUError('the `webgpu` package could not be loaded', e);
  }
  // GPUBufferUsage, GPUMapMode, GPUShaderStage, ... as globals, as in a browser.
  const globals = mod.globals as Record<string, unknown>;
  for (const [k, v] of Object.entries(globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  try {
    nodeGpu = mod.create([]);
  } catch (e) {
    throw noWebGPUError('dawn.node failed to start', e);
  }
  return nodeGpu;
}

function readInfo(adapter: GPUAdapter): AdapterInfo {
  const i = (adapter as { info?: GPUAdapterInfo }).info;
  const s = (v: unknown) => (typeof v === 'string' ? v : '');
  const min = (i as { subgroupMinSize?: unknown } | undefined)?.subgroupMinSize;
  return { vendor: s(i?.vendor), architecture: s(i?.architecture), device: s(i?.device), description: s(i?.description), subgroupMinSize: typeof min === 'number' ? min : 0 };
}

async function acquire(): Promise<State> {
  const gpu = await getGPU();
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw noWebGPUError('requestAdapter() failed', e);
  }
  if (!adapter) {
    throw noWebGPUError(
      isNode ? 'no WebGPU adapter was found (Dawn found no Vulkan/Metal/D3D12 driver)' : 'requestAdapter() returned null',
    );
  }
  const requiredLimits: Record<string, number> = {};
  const al = adapter.limits as unknown as Record<string, number | undefined>;
  for (const name of RAISED_LIMITS) {
    const v = al[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'kiln' });
  } catch (e) {
    throw noWebGPUError('requestDevice() failed', e);
  }
  lostInfo = null;
  uncaptured = [];
  device.addEventListener('uncapturederror', (ev: Event) => {
    const error = (ev as GPUUncapturedErrorEvent).error;
    // Dawn (like browsers) also prints the error unless the event is cancelled; once
    // a listener has taken responsibility for reporting errors, keep the console quiet.
    if (errorListeners.size > 0) ev.preventDefault();
    uncaptured.push(error);
    if (uncaptured.length > 100) uncaptured.shift();
    for (const l of errorListeners) {
      try {
        l(error);
      } catch {
        // A listener's own failure must not hide the device error from the others.
      }
    }
  });
  void device.lost.then((info) => {
    if (state?.device !== device) return;
    lostInfo = { reason: String(info.reason), message: info.message };
    state = null;
    pending = null;
    if (info.reason !== 'destroyed') {
      availableResult = null;
      const err = new Error(`kiln: the WebGPU device was lost (${info.reason}): ${info.message}`);
      for (const l of errorListeners) {
        try {
          l(err as unknown as GPUError);
        } catch {}
      }
    }
  });
  const info = readInfo(adapter);
  const lanes = requiredFeatures.includes('subgroups') ? subgroupLanes(info.subgroupMinSize) : 0;
  const held = lanes > 0 && (await probeSubgroupLanes(device, lanes));
  return { gpu, adapter, device, info, subgroupLanes: held ? info.subgroupMinSize : 0 };
}

/** Acquires the device (once; later calls return the same one). Throws a clear Error when WebGPU is not available. */
export function getDevice(): Promise<GPUDevice> {
  if (state) return Promise.resolve(state.device);
  if (!pending) {
    pending = acquire().then(
      (s) => {
        state = s;
        return s;
      },
      (e) => {
        pending = null; // let a later call retry
        throw e;
      },
    );
  }
  return pending.then((s) => s.device);
}

/** Acquires the device; afterwards getDeviceSync(), adapterInfo() and limits() work. */
export async function init(): Promise<void> {
  await getDevice();
}

/** Whether a WebGPU device can be acquired here. Never throws; the answer is cached (and acquires the device). */
export function available(): Promise<boolean> {
  if (state) return Promise.resolve(true);
  if (!availableResult) {
    availableResult = getDevice().then(
      () => true,
      () => false,
    );
  }
  return availableResult;
}

function notInitialized(what: string): Error {
  if (lostInfo && lostInfo.reason !== 'destroyed') {
    return new Error(
      `kiln: ${what}: the WebGPU device was lost (${lostInfo.reason}: ${lostInfo.message}); ` +
        'call `await kiln.webgpu.init()` to acquire a new one',
    );
  }
  return notAcquired(what);
}

/** The already-acquired device. Throws if init()/getDevice() has not completed. */
export function getDeviceSync(): GPUDevice {
  if (!state) throw notInitialized('getDeviceSync()');
  return state.device;
}

/** Whether the device has been acquired (and not lost or destroyed). */
export function isInitialized(): boolean {
  return state !== null;
}

/** Vendor/architecture/device/description of the acquired adapter (keys autotune caches, labels benchmarks). */
export function adapterInfo(): AdapterInfo {
  if (!state) throw notInitialized('adapterInfo()');
  return { ...state.info };
}

/** The acquired device's limits. */
export function limits(): GPUSupportedLimits {
  if (!state) throw notInitialized('limits()');
  return state.device.limits;
}

/**
 * The subgroup size kernels may count on: the adapter's smallest where the device has 'subgroups' and
 * a workgroup of 4 or 8 invocations proved to be one subgroup numbered from 0 (subgroup-probe.ts), else 0.
 */
export function subgroupMinSize(): number {
  return state ? state.subgroupLanes : 0;
}

/** Whether the acquired device has an optional feature enabled ('timestamp-query', 'shader-f16', 'subgroups'). */
export function hasFeature(name: string): boolean {
  return !!state && state.device.features.has(name);
}

/**
 * Registers a listener for errors Dawn/the browser did not deliver to an error
 * scope ('uncapturederror') and for device loss. Returns an unsubscribe function.
 * While any listener is registered, uncaptured errors are no longer also printed
 * by Dawn/the browser (the event is cancelled); they are still recorded for
 * takeUncapturedErrors()/throwIfUncapturedErrors().
 */
export function onUncapturedError(listener: (error: GPUError) => void): () => void {
  errorListeners.add(listener);
  return () => errorListeners.delete(listener);
}

/** Returns and clears the uncaptured errors recorded since the last call. */
export function takeUncapturedErrors(): GPUError[] {
  const e = uncaptured;
  uncaptured = [];
  return e;
}

/** Throws (and clears) if any uncaptured WebGPU error has been recorded. */
export function throwIfUncapturedErrors(context = 'WebGPU'): void {
  const errs = takeUncapturedErrors();
  if (errs.length === 0) return;
  const first = errs[0]!;
  const more = errs.length > 1 ? ` (and ${errs.length - 1} more)` : '';
  throw new Error(`kiln: ${context}: ${first.constructor?.name ?? 'GPUError'}: ${first.message}${more}`);
}

/**
 * Destroys the device and forgets it (a later getDevice() acquires a new one).
 * Not needed for the process to exit (dawn.node lets Node exit with a live device).
 */
export function destroy(): void {
  const s = state;
  state = null;
  pending = null;
  availableResult = null;
  if (s) {
    lostInfo = { reason: 'destroyed', message: 'destroyed by kiln.webgpu.destroy()' };
    s.device.destroy();
  }
}
