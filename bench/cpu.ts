// Benchmark `cpu`: kiln's CPU speed against the machine's own ceiling and the peers.
//   (a) a 1024³ f32 matmul in GFLOP/s beside the WebAssembly SIMD128 mul+add ceiling measured in the same
//       run (ceiling.ts), on 1 thread and on all cores; kiln eagerly on 1 and on all threads; peers.
//   (b) compiled against eager on the CPU, per model: the MLP step (1 thread and all threads) and a
//       nanoGPT-style step (2 layers, width 32, 4 heads, context 16, batch 4, Adam), the shape whose
//       compiled step was once 2.7× slower than eager (one generated function too big for V8).
import os from 'node:os';
import type * as K from '../index.ts';
import { cpuMsPerCall, simdCeiling, simdCeilingCpuTime } from './ceiling.ts';
import { checkMatmul } from './reference-matmul.ts';
import { mlpData } from './mlp-data.ts';
import { kilnMlp } from './mlp.ts';
import { loadKiln, type Kiln } from './peers/kiln.ts';
import { torchBench, torchMissing } from './peers/torch.ts';
import { finishTable, measure, rng, rowFrom, skipped, tryRow, uniformArray, type Row, type Table } from './timing.ts';

const N = 1024;
const MM_OPTS = { budgetMs: 3000, warmupMs: 300, minSamples: 5 };
const STEP_OPTS = { budgetMs: 2000, warmupMs: 500, minSamples: 5 };
const TOL = 1e-3;

async function matmulTable(kiln: typeof K): Promise<Table> {
  const cores = os.availableParallelism();
  const table: Table = { id: 'cpu-matmul', title: `CPU matmul ${N}×${N}×${N} f32 (median per product; GFLOP/s = 2n³ / time)`, unit: 'ms', rows: [], notes: [], baseline: '', showGflops: true };
  const rows = table.rows;
  const flop = 2 * N ** 3;
  const gflopRow = (name: string, gflops: number, note: string): Row => ({ name, ms: flop / (gflops * 1e6), gflops, note });
  const ceiling1 = await simdCeiling(1), ceilingAll = await simdCeiling(cores), ceilingCpu = await simdCeilingCpuTime();
  rows.push(gflopRow('SIMD128 ceiling, 1 thread', ceiling1, `tight loop of 12 independent f32x4 mul+add chains, best of 5; by CPU time ${ceilingCpu.toFixed(1)} GFLOP/s`));
  // One-thread rows also get GFLOP/s by CPU time: on a shared machine wall time counts the time the
  // thread was descheduled, CPU time does not, so those ratios hold on a busy machine too.
  const byCpuTime = async (r: Row, fn: () => unknown, iters: number): Promise<Row> => {
    const ms = await cpuMsPerCall(fn, iters);
    r.note = `${r.note}; by CPU time ${(flop / (ms * 1e6)).toFixed(1)} GFLOP/s = ${((100 * flop) / (ms * 1e6) / ceilingCpu).toFixed(0)}% of the CPU-time ceiling`;
    return r;
  };
  rows.push(gflopRow(`SIMD128 ceiling, ${cores} threads`, ceilingAll, 'the same loop on every core at once'));
  const next = rng(42);
  const a = uniformArray(N * N, -1, 1, next), b = uniformArray(N * N, -1, 1, next);
  const withCheck = (r: Row, err: number, ceiling: number): Row => {
    r.gflops = r.ms ? flop / (r.ms * 1e6) : null;
    r.note = `${r.note ? r.note + '; ' : ''}${r.gflops ? `${((100 * r.gflops) / ceiling).toFixed(0)}% of the ceiling; ` : ''}max rel err ${err.toExponential(1)}${err > TOL ? ' (WRONG RESULT)' : ''}`;
    return r;
  };
  for (const threads of [cores, 1]) {
    const name = `kiln matmul (cpu, ${threads} thread${threads > 1 ? 's' : ''})`;
    rows.push(await tryRow(name, async () => {
      kiln.setNumThreads(threads);
      const A = kiln.tensor(a, { shape: [N, N] }), B = kiln.tensor(b, { shape: [N, N] });
      const err = checkMatmul(A.matmul(B).dataSync(), a, b, N);
      const r = withCheck(rowFrom(name, await measure(() => A.matmul(B), MM_OPTS), 'eager matmul (the product is computed when the call returns)'), err, threads === 1 ? ceiling1 : ceilingAll);
      return threads === 1 ? byCpuTime(r, () => A.matmul(B), 3) : r;
    }));
  }
  kiln.setNumThreads(cores);
  rows.push(await tryRow('jax-js jit (wasm)', async () => {
    const jax = await import('./peers/jax.ts');
    const m = await jax.matmul('wasm', N, a, b);
    const err = checkMatmul(await m.check(), a, b, N);
    return byCpuTime(withCheck(rowFrom('jax-js jit (wasm)', await measure(m.run, MM_OPTS), m.note), err, ceiling1), m.run, 3);
  }));
  rows.push(await tryRow('tfjs (wasm)', async () => {
    const tfjs = await import('./peers/tfjs.ts');
    const m = await tfjs.matmul('wasm', N, a, b);
    const err = checkMatmul(await m.check(), a, b, N);
    const r = await byCpuTime(withCheck(rowFrom('tfjs (wasm)', await measure(m.run, MM_OPTS), m.note), err, ceiling1), m.run, 3);
    tfjs.disposeAll();
    return r;
  }));
  const tm = await torchMissing();
  if (tm) rows.push(skipped('PyTorch (2 threads)', tm));
  else rows.push(await tryRow('PyTorch (2 threads)', async () => {
    const r = await torchBench('matmul', 3);
    const row = rowFrom('PyTorch (2 threads)', r, `torch ${r.torch}, ${r.blas}`);
    row.gflops = flop / (r.medianMs * 1e6);
    return row;
  }));
  table.notes.push('ratio: time ÷ kiln on all threads; the ceiling rows are the time 2n³ flops would take at the ceiling');
  return finishTable(table, [`kiln matmul (cpu, ${cores} threads)`, 'kiln matmul (cpu, 1 thread)']);
}

/** A nanoGPT-style training step: token + position embeddings, 2 pre-norm blocks (causal attention, MLP), Adam. */
export function gptStep(kiln: typeof K) {
  const [B, T, C, H, L, V] = [4, 16, 32, 4, 2, 65];
  kiln.manualSeed(7);
  const param = (shape: number[], scale = 0.02) => kiln.randn(shape).mul(scale).requiresGrad_();
  const wte = param([V, C]), wpe = param([T, C]);
  const blocks = Array.from({ length: L }, () => ({
    attn: param([C, 3 * C]), attnB: kiln.zeros([3 * C]).requiresGrad_(), proj: param([C, C]),
    fc: param([C, 4 * C]), fcB: kiln.zeros([4 * C]).requiresGrad_(), out: param([4 * C, C]),
  }));
  const head = param([C, V]);
  const params = [wte, wpe, head, ...blocks.flatMap((b) => Object.values(b))];
  const opt = new kiln.optim.Adam(params, { lr: 1e-3 });
  const mask = kiln.tensor(Float32Array.from({ length: T * T }, (_, i) => (i % T > Math.floor(i / T) ? -1e9 : 0)), { shape: [T, T] });
  const norm = (x: K.Tensor) => {
    const mu = x.mean(-1, true), d = x.sub(mu);
    return d.mul(d.square().mean(-1, true).add(1e-5).rsqrt());
  };
  const next = rng(11);
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(next() * V));
  const targets = Int32Array.from({ length: B * T }, () => Math.floor(next() * V));
  const onehot = new Float32Array(B * T * V);
  tokens.forEach((t, i) => { onehot[i * V + t] = 1; });
  const x = kiln.tensor(onehot, { shape: [B * T, V] }), y = kiln.tensor(targets, { shape: [B * T], dtype: 'int32' });
  const hs = (t: K.Tensor) => t.reshape([B, T, H, C / H]).permute([0, 2, 1, 3]);
  const body = (xb: K.Tensor, yb: K.Tensor) => {
    let h = xb.matmul(wte).reshape([B, T, C]).add(wpe);
    for (const blk of blocks) {
      const qkv = norm(h).matmul(blk.attn).add(blk.attnB);
      const q = hs(qkv.index(null, null, [0, C])), k = hs(qkv.index(null, null, [C, 2 * C])), v = hs(qkv.index(null, null, [2 * C, 3 * C]));
      const att = q.matmul(k.transpose(-2, -1)).mul(1 / Math.sqrt(C / H)).add(mask).softmax(-1);
      h = h.add(att.matmul(v).permute([0, 2, 1, 3]).reshape([B, T, C]).matmul(blk.proj));
      h = h.add(norm(h).matmul(blk.fc).add(blk.fcB).relu().matmul(blk.out));
    }
    const loss = kiln.F.crossEntropy(norm(h).matmul(head).reshape([B * T, V]), yb);
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss;
  };
  return { x, y, body };
}

async function stepsTable(kiln: typeof K): Promise<Table> {
  const cores = os.availableParallelism();
  const table: Table = { id: 'cpu-steps', title: 'CPU training steps, compiled against eager (median per step)', unit: 'ms', rows: [], notes: [], baseline: '', showFirstValue: true };
  const rows = table.rows;
  const d = mlpData();
  const k = kiln as unknown as Kiln;
  for (const threads of [cores, 1]) {
    const t = `${threads} thread${threads > 1 ? 's' : ''}`;
    kiln.setNumThreads(threads);
    rows.push(await tryRow(`MLP compiled (${t})`, async () => {
      const { x, y, body } = kilnMlp(k, d, 'cpu');
      const step = k.compile!(body);
      const run = async () => ((await step(x, y)) as K.Tensor).item();
      const r = rowFrom(`MLP compiled (${t})`, await measure(run, STEP_OPTS));
      if (threads === 1) r.note = `CPU time ${(await cpuMsPerCall(run, 5)).toFixed(2)} ms/step`;
      return r;
    }));
    rows.push(await tryRow(`MLP eager (${t})`, async () => {
      const { x, y, body } = kilnMlp(k, d, 'cpu');
      return rowFrom(`MLP eager (${t})`, await measure(() => body(x, y).itemSync(), STEP_OPTS));
    }));
  }
  kiln.setNumThreads(cores);
  rows.push(await tryRow('MLP jax-js jit (wasm)', async () => {
    const jax = await import('./peers/jax.ts');
    const { run, note } = await jax.mlpStep('wasm', d);
    const r = rowFrom('MLP jax-js jit (wasm)', await measure(run, STEP_OPTS), note);
    r.note = `${note}; CPU time ${(await cpuMsPerCall(run, 3)).toFixed(2)} ms/step`;
    return r;
  }));
  rows.push(await tryRow('nanoGPT-style compiled', async () => {
    const { x, y, body } = gptStep(kiln);
    const step = kiln.compile(body);
    return rowFrom('nanoGPT-style compiled', await measure(async () => (await step(x, y)).item(), STEP_OPTS));
  }));
  rows.push(await tryRow('nanoGPT-style eager', async () => {
    const { x, y, body } = gptStep(kiln);
    return rowFrom('nanoGPT-style eager', await measure(() => body(x, y).itemSync(), STEP_OPTS));
  }));
  table.notes.push('CPU time (one-thread rows): this process\'s CPU time per step, best of 5, which a busy machine inflates far less than wall time');
  table.notes.push('MLP: 784-512-512-10, batch 128, SGD (as in the mlp table); nanoGPT-style: 2 layers, width 32, 4 heads, context 16, batch 4, vocabulary 65, Adam');
  return finishTable(table, [`MLP compiled (${cores} threads)`]);
}

export async function runCpu(): Promise<Table[]> {
  const load = await loadKiln();
  if (!load.kiln) {
    const t: Table = { id: 'cpu-matmul', title: 'CPU', unit: 'ms', rows: [], notes: [`skipped: ${load.error}`], baseline: '' };
    return [t];
  }
  const kiln = load.kiln as unknown as typeof K;
  return [await matmulTable(kiln), await stepsTable(kiln)];
}
