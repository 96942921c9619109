// kiln.webgpu as the package exports it: a lazy facade over ./index.ts. The WebGPU backend (device,
// buffer pool, autotuner, and the WGSL code generators it reaches) is imported by the first
// available() or init() -- the calls that must come before any WebGPU tensor exists, and that are
// async anyway -- so a page that never uses WebGPU never downloads it: in kiln's browser build it is
// a chunk of its own (README.md, "In the browser"). The synchronous calls answer as the backend would
// with no device acquired until it has been loaded. tests/bundle.test.ts checks that this module
// exports what ./index.ts does.

import { registeredBackend } from '../device.ts';
import { notAcquired } from './not-acquired.ts';

export type { AdapterInfo } from './device.ts';

type WebGPU = typeof import('./index.ts');
let loading: Promise<WebGPU> | undefined;
/** the module, once loaded */
let webgpu: WebGPU | undefined;

function load(): Promise<WebGPU> {
  loading ??= import('./index.ts').then(
    (m) => (webgpu = m),
    (e: unknown) => {
      loading = undefined; // a later call may try again (a page that was offline for a moment)
      throw new Error(`kiln.webgpu: cannot load kiln's WebGPU module: ${e instanceof Error ? e.message : String(e)}`);
    },
  );
  return loading;
}

/** Whether a WebGPU device can be acquired here (loads the backend, acquires the device). Never throws. */
export async function available(): Promise<boolean> {
  try {
    return (await load()).available();
  } catch {
    return false;
  }
}

/** Acquires the WebGPU device and registers the 'webgpu' backend (loading it first). */
export async function init(): Promise<void> {
  await (await load()).init();
}

/** The same as init(). */
export async function initWebGPU(): Promise<void> {
  await (await load()).initWebGPU();
}

export const adapterInfo: WebGPU['adapterInfo'] = () => {
  if (!webgpu) throw notAcquired('adapterInfo()');
  return webgpu.adapterInfo();
};

export const limits: WebGPU['limits'] = () => {
  if (!webgpu) throw notAcquired('limits()');
  return webgpu.limits();
};

export const hasFeature: WebGPU['hasFeature'] = (name) => webgpu?.hasFeature(name) ?? false;

export const destroy: WebGPU['destroy'] = () => webgpu?.destroy();

export const flush: WebGPU['flush'] = () => webgpu?.flush();

export const sync: WebGPU['sync'] = async () => webgpu?.sync();

// through the registered backend: whoever loaded it (this facade, or a direct import) queued the work
export const settle: WebGPU['settle'] = async () => { await registeredBackend('webgpu')?.settle(); };

export const poolStats: WebGPU['poolStats'] = () => webgpu?.poolStats() ?? null;
