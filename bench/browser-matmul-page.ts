// Page code of browser-matmul.ts, bundled against /kiln.js: kiln's n³ matmul and the reference WGSL
// kernels (reference-matmul.ts) in the browser's WebGPU (SwiftShader in headless Chromium), with the
// same protocol as the Node rows (timing.ts). The page hands `window.kilnBench` to the driver.
import * as kiln from '../index.ts';
import { measure, rng, uniformArray, type Measurement } from './timing.ts';
import { checkMatmul, referenceMatmul, type RefKernel } from './reference-matmul.ts';

const MM_OPTS = { budgetMs: 1500, warmupMs: 0, minWarmup: 1, minSamples: 3, sampleMs: 0 };

export interface PageResult extends Measurement { err: number; note: string }

const operands = (n: number) => {
  const next = rng(42);
  return { a: uniformArray(n * n, -1, 1, next), b: uniformArray(n * n, -1, 1, next) };
};

/**
 * kiln's eager matmul: one element read back per product, as kiln-matmul-process.ts does, or (`sync`)
 * waiting for the queue as the references do.
 */
async function kilnMatmul(n: number, sync = false): Promise<PageResult> {
  await kiln.webgpu.init();
  const { a, b } = operands(n);
  const A = kiln.tensor(a, { shape: [n, n], device: 'webgpu' }), B = kiln.tensor(b, { shape: [n, n], device: 'webgpu' });
  const t0 = performance.now();
  const c = (await A.matmul(B).data()) as Float32Array;
  const firstMs = performance.now() - t0;
  const m = await measure(sync ? () => { A.matmul(B); return kiln.webgpu.sync(); } : () => A.matmul(B).index(n - 1, n - 1).item(), MM_OPTS);
  return { ...m, firstCallMs: firstMs, err: checkMatmul(c, a, b, n), note: JSON.stringify(kiln.webgpu.adapterInfo()) };
}

/** One reference kernel on a device of its own (the same adapter). */
async function reference(n: number, kind: RefKernel): Promise<PageResult> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const device = await adapter.requestDevice({ requiredFeatures: adapter.features.has('subgroups') ? ['subgroups' as GPUFeatureName] : [] });
  const { a, b } = operands(n);
  const mm = await referenceMatmul(device, kind, n, a, b, adapter.info.subgroupMinSize ?? 0);
  const err = checkMatmul(await mm.result(), a, b, n);
  const m = await measure(() => mm.run(), MM_OPTS);
  mm.destroy();
  device.destroy();
  return { ...m, err, note: '' };
}

const kilnBench = { kilnMatmul, reference };
export type KilnBench = typeof kilnBench;
(window as unknown as { kilnBench: KilnBench }).kilnBench = kilnBench;
