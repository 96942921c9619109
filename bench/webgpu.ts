// Benchmark 3: WebGPU. (a) the MLP training step of mlp.ts on the webgpu
// device; (b) a 1024×1024×1024 f32 matmul in GFLOP/s: kiln's matmul against
// two hand-written reference WGSL kernels (reference-matmul.ts) and the peers.
// In Node, WebGPU is the `webgpu` npm package (Dawn); without a GPU, Dawn runs
// on Mesa's lavapipe (Vulkan on the CPU), so these numbers measure lavapipe.
import { finishTable, measure, rowFrom, skipped, tryRow, rng, uniformArray, errorMessage, type Measurement, type Row, type Table } from './timing.ts';
import { kilnMissing, loadKiln } from './peers/kiln.ts';
import { webgpuEnv } from './peers/webgpu-env.ts';
import { referenceMatmul, checkMatmul, type RefKernel } from './reference-matmul.ts';
import { mlpData, MLP_BATCH, MLP_SIZES } from './mlp-data.ts';
import { kilnCompiledMlpRow } from './mlp.ts';
import { kilnDose } from './dose.ts';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** kiln's matmul measured in a child process (kiln-matmul-process.ts) with KILN_AUTOTUNE_CACHE=cacheFile. */
function kilnMatmulProcess(cacheFile: string): Promise<Measurement & { err: number; readBackMs: number }> {
  const script = fileURLToPath(new URL('./kiln-matmul-process.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...process.execArgv, script, String(N)], { env: { ...process.env, KILN_AUTOTUNE_CACHE: cacheFile }, timeout: 300_000 }, (e, stdout) => {
      const line = stdout.trim().split('\n').at(-1) ?? '';
      type Out = Partial<Measurement & { err: number; error: string }>;
      let out: Out | null = null;
      try { out = JSON.parse(line) as Out; } catch { /* reported below */ }
      if (out?.error !== undefined) reject(new Error(out.error));
      else if (out && typeof out.medianMs === 'number') resolve(out as Measurement & { err: number; readBackMs: number });
      else reject(new Error(`the child process printed no result${e ? ` (${e.message})` : ''}`));
    });
  });
}

/** The matmul variants a tuning cache file holds (e.g. 'r4x4@8x1'), for the row's note. */
function tunedChoice(cacheFile: string): string {
  try {
    const data = JSON.parse(fs.readFileSync(cacheFile, 'utf8')) as Record<string, Record<string, { variant?: { bm: number; bn: number; wg: number[]; tiled: boolean; lanes?: number }; tried?: string[] }>>;
    return Object.values(data).flatMap((shapes) => Object.values(shapes)).map((e) => e.variant ? `${e.variant.tiled ? 't' : 'r'}${e.variant.bm}x${e.variant.bn}@${e.variant.wg.join('x')}${e.variant.lanes ? `+sg${e.variant.lanes}` : ''}${e.tried ? ` (tune incomplete: ${e.tried.length} timed)` : ''}` : '?').join(', ');
  } catch {
    return '';
  }
}

const N = 1024;
const MLP_OPTS = { budgetMs: 1500, warmupMs: 300, minWarmup: 1, minSamples: 3 };
const MM_OPTS = { budgetMs: 1500, warmupMs: 0, minWarmup: 1, minSamples: 3, sampleMs: 0 };
/** Largest acceptable max relative error of a sampled matmul entry. */
const TOL = 1e-4;

export async function runWebgpu(): Promise<Table[]> {
  const mlpTable: Table = {
    id: 'webgpu-mlp',
    title: `WebGPU MLP training step (${MLP_SIZES.join('-')}, batch ${MLP_BATCH}; median per step)`,
    unit: 'ms',
    rows: [],
    notes: [],
    baseline: '',
    showFirstValue: true,
  };
  const mmTable: Table = {
    id: 'webgpu-matmul',
    title: `WebGPU matmul ${N}×${N}×${N} f32 (median per product, GFLOP/s = 2n³ / time)`,
    unit: 'ms',
    rows: [],
    notes: [],
    baseline: '',
    showGflops: true,
  };

  const env = await webgpuEnv().catch((e: unknown) => `webgpu setup failed: ${errorMessage(e)}`);
  if (typeof env === 'string') {
    for (const t of [mlpTable, mmTable]) t.notes.push(`skipped: ${env}`);
    return [mlpTable, mmTable];
  }
  mlpTable.notes.push(`adapter: ${env.info}`);
  mlpTable.notes.push('first call includes WGSL pipeline creation; Mesa caches compiled shaders on disk (~/.cache/mesa_shader_cache), so it is seconds on a cold cache and far less on later runs');
  mmTable.notes.push(`adapter: ${env.info}`);

  const load = await loadKiln();
  let kilnGpu: string | null = kilnMissing(load, 'webgpu');
  if (!kilnGpu) {
    try {
      if (!(await load.kiln!.webgpu!.available())) kilnGpu = 'not available (kiln.webgpu.available() is false)';
    } catch (e) {
      kilnGpu = `not available (kiln.webgpu.available() threw: ${errorMessage(e)})`;
    }
  }

  // The matmul runs first: it is the cleaner measurement, before the MLP peers
  // have filled the device with their pipelines and buffers.
  // (b) matmul.
  const next = rng(42);
  const a = uniformArray(N * N, -1, 1, next);
  const b = uniformArray(N * N, -1, 1, next);
  const flop = 2 * N ** 3;
  const rows: Row[] = mmTable.rows;
  const withGflops = (r: Row, err: number): Row => {
    r.gflops = r.ms ? flop / (r.ms * 1e6) : null;
    const e = `max rel err ${err.toExponential(1)}`;
    r.note = r.note ? `${r.note}; ${e}` : e;
    if (err > TOL) r.note += ' (WRONG RESULT)';
    return r;
  };

  // kiln in two fresh processes sharing a new tuning cache file: the first starts with no tuned
  // choice (it launches the adapter's untuned default; the tuner only uses quiet moments of the
  // queue in a process's first seconds), the second reads whatever the first persisted.
  const cacheFile = path.join(os.tmpdir(), `kiln-bench-autotune-${process.pid}.json`);
  for (const [name, note] of [['kiln matmul (webgpu), fresh process, no tuning cache', 'empty cache file: untuned default; the tuner waits for a quiet queue'], ['kiln matmul (webgpu), fresh process, warm tuning cache', 'the cache file the run above wrote']]) {
    if (kilnGpu) { rows.push(skipped(name, kilnGpu)); continue; }
    rows.push(
      await tryRow(name, async () => {
        const r = await kilnMatmulProcess(cacheFile);
        const chosen = tunedChoice(cacheFile);
        return withGflops({ ...rowFrom(name, r, `${note}; eager matmul, webgpu.sync() per product (${r.readBackMs.toFixed(0)} ms with one element read back)${chosen ? `; cache: ${chosen}` : ''}`), firstCallMs: r.firstCallMs }, r.err);
      }),
    );
  }
  try { fs.unlinkSync(cacheFile); } catch { /* not written */ }

  const lanes = env.adapter.info.subgroupMinSize ?? 0;
  for (const kind of ['register-blocked', 'register-blocked-8x1', 'tiled', 'register-blocked-subgroup'] as RefKernel[]) {
    const name = `reference WGSL ${kind}`;
    rows.push(
      await tryRow(name, async () => {
        const m = await referenceMatmul(env.device, kind, N, a, b, lanes);
        const err = checkMatmul(await m.result(), a, b, N);
        const what = kind === 'tiled' ? '64×64 tile, 16-deep k slices in workgroup memory, 4×4 per invocation'
          : kind === 'register-blocked-subgroup' ? `8×4 per invocation, one subgroup of ${lanes} lanes per workgroup loads A once and broadcasts it`
          : `4×4 per invocation, vec4 loads, no workgroup memory, ${kind === 'register-blocked' ? '8×8' : '8×1'} invocations`;
        const r = rowFrom(name, await measure(() => m.run(), MM_OPTS), what);
        m.destroy();
        return withGflops(r, err);
      }),
    );
  }

  rows.push(
    await tryRow('tfjs (webgpu)', async () => {
      const tfjs = await import('./peers/tfjs.ts');
      const m = await tfjs.matmul('webgpu', N, a, b);
      const err = checkMatmul(await m.check(), a, b, N);
      return withGflops(rowFrom('tfjs (webgpu)', await measure(m.run, MM_OPTS), `${m.note}, 1×1 slice read back`), err);
    }),
  );
  rows.push(
    await tryRow('jax-js jit (webgpu)', async () => {
      const jax = await import('./peers/jax.ts');
      const m = await jax.matmul('webgpu', N, a, b);
      const err = checkMatmul(await m.check(), a, b, N);
      return withGflops(rowFrom('jax-js jit (webgpu)', await measure(m.run, MM_OPTS), `${m.note}, blockUntilReady`), err);
    }),
  );
  finishTable(mmTable, ['kiln matmul (webgpu), fresh process, warm tuning cache'], ['reference WGSL register-blocked']);

  // (a) MLP step.
  const d = mlpData();
  const mrows: Row[] = mlpTable.rows;
  mrows.push(
    await tryRow('tfjs (webgpu)', async () => {
      const tfjs = await import('./peers/tfjs.ts');
      const { step, note } = await tfjs.mlpStep('webgpu', d);
      const r = rowFrom('tfjs (webgpu)', await measure(step, MLP_OPTS), note);
      tfjs.disposeAll();
      return r;
    }),
  );
  mrows.push(
    await tryRow('jax-js jit (webgpu)', async () => {
      const jax = await import('./peers/jax.ts');
      const { run, note } = await jax.mlpStep('webgpu', d);
      return rowFrom('jax-js jit (webgpu)', await measure(run, MLP_OPTS), note);
    }),
  );
  // kiln last: its matmul tunes run in the background once its queue is quiet, which would take CPU
  // from the peers' rows on a software adapter (they then slow only the eager dose row below)
  const compiledMissing = kilnGpu ?? kilnMissing(load, 'compiled');
  if (compiledMissing) mrows.unshift(skipped('kiln compiled (webgpu)', compiledMissing));
  else mrows.unshift(await tryRow('kiln compiled (webgpu)', () => kilnCompiledMlpRow(load.kiln!, d, 'webgpu', 'kiln compiled (webgpu)', MLP_OPTS)));
  finishTable(mlpTable, ['kiln compiled (webgpu)'], ['jax-js jit (webgpu)']);

  // (c) eager dispatch: the dose epoch (dose.ts) eagerly on WebGPU: 79 eager ops (fused by kiln into 3 kernels once warm) and 3 reads.
  const doseTable: Table = {
    id: 'webgpu-dose',
    title: 'dose epoch on WebGPU (3 samples fwd+bwd, 1 SGD step; median per epoch)',
    unit: 'us',
    rows: [],
    notes: [],
    baseline: '',
    showFirstValue: true,
  };
  const eagerMissing = kilnGpu ?? kilnMissing(load, 'eager');
  if (eagerMissing) doseTable.rows.push(skipped('kiln eager (webgpu)', eagerMissing));
  else
    doseTable.rows.push(
      await tryRow('kiln eager (webgpu)', async () => {
        const { inputs, labels, opt, forward } = kilnDose(load.kiln!, 'webgpu');
        const run = async () => {
          let total = 0;
          for (let i = 0; i < 3; i++) {
            const loss = forward(inputs.index(i)).sub(labels.index(i)).pow(2);
            loss.backward();
            total += await loss.item();
          }
          opt.step();
          opt.zeroGrad();
          return total;
        };
        return rowFrom('kiln eager (webgpu)', await measure(run, { budgetMs: 1500, warmupMs: 300 }), 'the loss read back after each sample (3 reads per epoch)');
      }),
    );
  finishTable(doseTable, ['kiln eager (webgpu)']);

  return [mlpTable, mmTable, doseTable];
}
