// WebGPU in Node through the `webgpu` npm package (Dawn). One GPU instance is
// created and exposed as the browser-like globals that the peers look for
// (`navigator.gpu`, `GPUBufferUsage`, ...). On a machine without a GPU, Dawn
// finds Mesa's lavapipe (Vulkan on the CPU) if it is installed
// (scripts/install-lavapipe.sh).
//
// Every row waits for the GPU the way kiln does in Node: dawn.node polls in a
// setImmediate loop that takes a core from a software adapter, and kiln hands a
// long poll to a 1 ms timer (runtime/webgpu/dawn-poll.ts). It is installed here,
// before any peer runs, so that the rows compare kernels and runtimes, not wait
// loops (the peers gain from it too).
import { throttleDawnPolling } from '../../runtime/webgpu/dawn-poll.ts';

export interface GpuEnv {
  gpu: GPU;
  adapter: GPUAdapter;
  device: GPUDevice;
  info: string;
}

let envPromise: Promise<GpuEnv | string> | null = null;

/** Returns the environment, or a string saying why there is no WebGPU. */
export function webgpuEnv(): Promise<GpuEnv | string> {
  envPromise ??= (async () => {
    if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
    let mod: { create(o: string[]): GPU; globals: object };
    try {
      mod = (await import('webgpu')) as unknown as typeof mod;
    } catch (e) {
      return `the webgpu npm package did not load: ${e instanceof Error ? e.message : String(e)}`;
    }
    Object.assign(globalThis, mod.globals);
    throttleDawnPolling();
    const gpu = mod.create([]);
    const g = globalThis as unknown as { navigator?: Record<string, unknown> };
    if (g.navigator) {
      try {
        Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
      } catch {
        /* read-only navigator: peers will not see it */
      }
    } else {
      // jax-js reads navigator.userAgent as well as navigator.gpu.
      g.navigator = { gpu, userAgent: `Node.js/${process.versions.node}`, hardwareConcurrency: 2 };
    }
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return 'no WebGPU adapter (on a CPU-only machine install lavapipe: scripts/install-lavapipe.sh)';
    const device = await adapter.requestDevice({
      // the subgroup reference kernel needs it (kiln's own device asks for it too)
      requiredFeatures: adapter.features.has('subgroups') ? ['subgroups' as GPUFeatureName] : [],
      requiredLimits: {
        maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      },
    });
    const ai = adapter.info;
    const info = [ai.vendor, ai.architecture, ai.device, ai.description].filter((s) => s).join(' / ');
    return { gpu, adapter, device, info: info || 'unknown adapter' };
  })();
  return envPromise;
}
