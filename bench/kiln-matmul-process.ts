// Child process of the WebGPU benchmark (webgpu.ts): kiln's 1024³ matmul measured in a fresh process,
// so the tuner starts from whatever its cache file (KILN_AUTOTUNE_CACHE, set by the parent) holds:
// nothing on the first run, the first run's choice on the second. Prints one JSON line: a Measurement of
// products each waited for with webgpu.sync() (the queue, as the reference kernels are), the median with
// one element read back instead (readBackMs), and the max relative error of sampled entries; or { error }.
import { measure, rng, uniformArray, errorMessage } from './timing.ts';
import { loadKiln, type KTensor } from './peers/kiln.ts';
import { checkMatmul } from './reference-matmul.ts';

const N = Number(process.argv[2] ?? 1024);
const MM_OPTS = { budgetMs: 1500, warmupMs: 0, minWarmup: 1, minSamples: 3, sampleMs: 0 };

try {
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = '/tmp';
  const kiln = (await loadKiln()).kiln;
  if (!kiln?.webgpu) throw new Error('kiln.webgpu is missing');
  if (!(await kiln.webgpu.available())) throw new Error("kiln.webgpu.available() is false");
  const next = rng(42);
  const a = uniformArray(N * N, -1, 1, next);
  const b = uniformArray(N * N, -1, 1, next);
  const A = kiln.tensor(a, { shape: [N, N], device: 'webgpu' });
  const B = kiln.tensor(b, { shape: [N, N], device: 'webgpu' });
  const mm = (x: KTensor, y: KTensor) => (kiln.matmul ? kiln.matmul(x, y) : x.matmul(y));
  const t0 = performance.now();
  const c = (await mm(A, B).data()) as Float32Array;
  const firstMs = performance.now() - t0;
  const err = checkMatmul(c, a, b, N);
  // One element read back forces the product without a 4 MB copy (what a program that uses the result waits for).
  const readBack = await measure(() => mm(A, B).index(N - 1, N - 1).item(), MM_OPTS);
  const sync = kiln.webgpu.sync;
  if (!sync) throw new Error('kiln.webgpu.sync is missing');
  const m = await measure(() => { mm(A, B); return sync(); }, MM_OPTS);
  process.stdout.write(JSON.stringify({ ...m, readBackMs: readBack.medianMs, firstCallMs: firstMs, err }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ error: errorMessage(e) }) + '\n');
}
