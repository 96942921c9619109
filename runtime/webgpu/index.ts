// kiln.webgpu: the public WebGPU entry points (API.md "Devices").
//
//   await kiln.webgpu.available()   whether an adapter exists (acquires the device; never throws)
//   await kiln.webgpu.init()        acquires the device (throws a clear Error where there is none)
//   kiln.webgpu.adapterInfo(), kiln.webgpu.limits()
//   await kiln.webgpu.settle()      backpressure for an eager loop that never reads (compiled steps do it themselves)
//
// The 'webgpu' backend is registered when this module loads; its methods need the device to have been
// acquired by init() or available() first, and say so otherwise.

import { available as deviceAvailable } from './device.ts';
import { initWebGPU } from './backend.ts';

export { adapterInfo, limits, hasFeature, destroy, type AdapterInfo } from './device.ts';
export { sync, flush, settle, poolStats } from './backend.ts';

/** Whether a WebGPU device can be acquired here. Never throws. (Acquiring it also loads the tuned matmul choices.) */
export async function available(): Promise<boolean> {
  if (!(await deviceAvailable())) return false;
  try {
    await initWebGPU();
    return true;
  } catch {
    return false; // lost between the two calls
  }
}

/** Acquires the WebGPU device and registers the 'webgpu' backend. */
export async function init(): Promise<void> {
  await initWebGPU();
}

export { initWebGPU };
