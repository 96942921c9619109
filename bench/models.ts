// Benchmark `models` (or any of `cnn chargpt makemore`): one training step of each example model,
// compiled kiln against eager kiln and the peers, the loss read back every step.
//   cnn      PyTorch's examples/mnist Net (Conv2d 32, Conv2d 64, max_pool2d, Dropout 0.25/0.5, Linear
//            9216-128-10, log_softmax + nll_loss), batch 64, Adadelta lr 1.0 (main.py's optimizer; jax-js has
//            none, so its Adadelta is written out as torch.optim.Adadelta computes it). Every framework starts
//            from the same weights and data (cnn-data.ts). CPU table: kiln compiled and eager, PyTorch, tfjs
//            wasm, jax-js wasm; WebGPU table: kiln compiled, tfjs webgpu, jax-js webgpu.
//   chargpt  examples/char-gpt.ts's transformer (batch 32, block 64, 4 layers, 4 heads, width 128, AdamW with
//            decay on matrices only, clipGradNorm_ 1.0) on a Moby Dick batch: kiln compiled and eager on the
//            CPU and on WebGPU, PyTorch from kiln's own initial weights.
//   makemore examples/makemore.ts's Bengio MLP (C[X], tanh 200, cross-entropy), batch 32, SGD lr 0.1: kiln
//            compiled and eager, PyTorch from kiln's initial weights.
// Rows that cannot run (no WebGPU adapter, no PyTorch, a peer lacking a kernel) print why.
import { fileURLToPath } from 'node:url';
import * as kiln from '../index.ts';
import type { StepProfile, Tensor } from '../index.ts';
import { GPT, Vocab, configureOptimizers, getBatch, gptStep, loadMobyDick } from '../examples/char-gpt.ts';
import { Net } from '../examples/mnist-cnn.ts';
import { MakemoreMLP, buildDataset, loadNames, makemoreStep } from '../examples/makemore.ts';
import { ADADELTA, CNN_BATCH, CNN_PARAMS, cnnData, type CnnData } from './cnn-data.ts';
import { torchMissing, torchModelBench, type NamedArray } from './peers/torch.ts';
import { webgpuEnv } from './peers/webgpu-env.ts';
import { errorMessage, finishTable, measure, rng, rowFrom, skipped, tryRow, type MeasureOptions, type Row, type Table } from './timing.ts';

type Device = 'cpu' | 'webgpu';

/** Steps of tens of milliseconds. */
const FAST: MeasureOptions = { budgetMs: 1500, warmupMs: 300, minSamples: 5 };
/** Steps of a second or more (the CNN and the transformer on the CPU): one warm-up, three samples. */
const SLOW: MeasureOptions = { budgetMs: 3000, warmupMs: 0, minWarmup: 1, minSamples: 3 };
/** Steps of many seconds (lavapipe, jax-js's wasm convolution): the first call, then two timed steps. */
const CRAWL: MeasureOptions = { budgetMs: 0, warmupMs: 0, minWarmup: 0, minSamples: 2 };

export const MODEL_BENCHMARKS = ['cnn', 'chargpt', 'makemore'] as const;
export type ModelBenchmark = (typeof MODEL_BENCHMARKS)[number];

/** kiln tensors (a state dict, inputs) as arrays for the PyTorch side, names prefixed. */
async function namedArrays(entries: [string, Tensor][]): Promise<NamedArray[]> {
  const out: NamedArray[] = [];
  for (const [name, t] of entries) {
    const d = await t.data();
    out.push({ name, shape: [...t.shape], data: d instanceof Float32Array ? Float32Array.from(d) : Int32Array.from(d, Number) });
  }
  return out;
}

async function torchRow(which: ModelBenchmark, arrays: () => Promise<NamedArray[]>, budgetS: number): Promise<Row> {
  const name = 'PyTorch (cpu, 2 threads)';
  const tm = await torchMissing();
  if (tm) return skipped(name, tm);
  return tryRow(name, async () => {
    const r = await torchModelBench(which, await arrays(), budgetS);
    return rowFrom(name, r, `torch ${r.torch}, set_num_threads(${r.threads}), ${r.blas}`);
  });
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The slowest kernels of one compiled call (step.profile), as a table note. */
function profileNote(label: string, p: StepProfile): string {
  const top = [...p.kernels].sort((a, b) => b.ms - a.ms).slice(0, 4).map((k) => {
    const what = (k.sources[0] ?? k.ops[0] ?? '').replaceAll(ROOT, '').replace(/\s+/g, ' ').trim();
    return `${(100 * k.share).toFixed(0)}% ${k.name}${what ? ` (${what.length > 70 ? what.slice(0, 67) + '...' : what})` : ''}`;
  });
  return `${label}: step.profile() of one call, ${p.kernels.length} kernels, ${p.totalMs.toFixed(1)} ms (${p.method}); slowest: ${top.join('; ')}`;
}

/** A compiled and an eager row of the same step (a fresh model each, so both start alike); the compiled
 * step's kernel profile goes to `notes`. */
async function kilnRows(device: Device, make: () => { x: Tensor; y: Tensor; body: (x: Tensor, y: Tensor) => Tensor }, opts: { compiled: MeasureOptions; eager: MeasureOptions | null }, notes: string[]): Promise<Row[]> {
  const rows: Row[] = [];
  const compiledName = `kiln compiled (${device})`, eagerName = `kiln eager (${device})`;
  rows.push(await tryRow(compiledName, async () => {
    const { x, y, body } = make();
    const step = kiln.compile(body, { device });
    const row = rowFrom(compiledName, await measure(async () => (await step(x, y)).item(), opts.compiled), 'first call includes trace + compile');
    try {
      notes.push(profileNote(compiledName, await step.profile(x, y)));
    } catch (e) {
      notes.push(`${compiledName}: step.profile() failed: ${errorMessage(e)}`);
    }
    return row;
  }));
  if (opts.eager) {
    const eagerOpts = opts.eager;
    rows.push(await tryRow(eagerName, async () => {
      const { x, y, body } = make();
      const run = device === 'cpu' ? () => body(x, y).itemSync() : () => body(x, y).item();
      return rowFrom(eagerName, await measure(run, eagerOpts));
    }));
  }
  return rows;
}

/** Why kiln cannot run on WebGPU here, or null. */
async function kilnWebgpuMissing(): Promise<string | null> {
  const env = await webgpuEnv().catch((e: unknown) => `webgpu setup failed: ${errorMessage(e)}`);
  if (typeof env === 'string') return env;
  try {
    return (await kiln.webgpu.available()) ? null : 'not available (kiln.webgpu.available() is false)';
  } catch (e) {
    return `not available (kiln.webgpu.available() threw: ${errorMessage(e)})`;
  }
}

// ---------------------------------------------------------------------------------------------
// MNIST CNN

/** examples/mnist-cnn.ts's Net (PyTorch's examples/mnist Net) from the shared weights, on `device`, with Adadelta. */
function kilnCnn(d: CnnData, device: Device) {
  const { F } = kiln;
  const model = new Net();
  model.loadStateDict(Object.fromEntries(CNN_PARAMS.map((n) => [n, kiln.tensor(d.params[n].data, { shape: d.params[n].shape })])));
  if (device !== 'cpu') model.to(device);
  const x = kiln.tensor(d.x, { shape: [d.batch, 1, 28, 28], device });
  const y = kiln.tensor(d.y, { shape: [d.batch], dtype: 'int32', device });
  const opt = new kiln.optim.Adadelta(model.parameters(), { ...ADADELTA });
  const body = (xb: Tensor, yb: Tensor): Tensor => {
    opt.zeroGrad();
    const loss = F.nllLoss(model.forward(xb), yb);
    loss.backward();
    opt.step();
    return loss;
  };
  return { x, y, body };
}

function cnnTable(id: string, title: string): Table {
  return { id, title, unit: 'ms', rows: [], notes: [], baseline: '', showFirstValue: true };
}

const CNN_TITLE = `PyTorch's examples/mnist Net, batch ${CNN_BATCH}, nll_loss, Adadelta lr 1.0; median per step`;
const CNN_NOTES = [
  'every framework starts from the same weights and data (bench/cnn-data.ts); the first losses still differ a little because each draws its own dropout masks',
  'optimizer: Adadelta (lr 1.0, rho 0.9, eps 1e-6) in every row; jax-js has no optimizer library, so its Adadelta is written out inside the jit as torch.optim.Adadelta computes it',
];

async function runCnn(): Promise<Table[]> {
  const d = cnnData();
  const cpu = cnnTable('cnn-cpu', `MNIST CNN training step on the CPU (${CNN_TITLE})`);
  cpu.rows.push(...(await kilnRows('cpu', () => kilnCnn(d, 'cpu'), { compiled: SLOW, eager: SLOW }, cpu.notes)));
  cpu.rows.push(await torchRow('cnn', async () => [
    { name: 'x', data: d.x, shape: [d.batch, 1, 28, 28] },
    { name: 'y', data: d.y, shape: [d.batch] },
    ...CNN_PARAMS.map((n) => ({ name: `model.${n}`, ...d.params[n] })),
  ], 3));
  const tfjs = await import('./peers/tfjs.ts').catch((e: unknown) => e as Error);
  const tfjsRow = (b: 'wasm' | 'webgpu', opts: MeasureOptions): Promise<Row> => tryRow(`tfjs (${b})`, async () => {
    if (tfjs instanceof Error) throw new Error(`tfjs did not load: ${tfjs.message}`);
    try {
      const { step, note } = await tfjs.cnnStep(b, d);
      return rowFrom(`tfjs (${b})`, await measure(step, opts), note);
    } finally {
      tfjs.disposeAll();
    }
  });
  cpu.rows.push(await tfjsRow('wasm', SLOW));
  cpu.rows.push(await tryRow('jax-js jit (wasm)', async () => {
    const jax = await import('./peers/jax.ts');
    const { run, note } = await jax.cnnStep('wasm', d);
    return rowFrom('jax-js jit (wasm)', await measure(run, CRAWL), note);
  }));
  cpu.notes.push(...CNN_NOTES);
  cpu.notes.push("tfjs's cpu backend (pure JavaScript) is not a row: on this 2-core machine its first CNN step had not finished after 300 s");
  finishTable(cpu, ['kiln compiled (cpu)', 'kiln eager (cpu)'], ['PyTorch (cpu, 2 threads)']);

  const gpu = cnnTable('cnn-webgpu', `MNIST CNN training step on WebGPU (${CNN_TITLE})`);
  const env = await webgpuEnv().catch((e: unknown) => `webgpu setup failed: ${errorMessage(e)}`);
  if (typeof env === 'string') {
    gpu.notes.push(`skipped: ${env}`);
    return [cpu, gpu];
  }
  gpu.notes.push(`adapter: ${env.info}`);
  // In this process (after jax-js's wasm row) jax-js's webgpu step fails on a synchronous read
  // ("OffscreenCanvas is not available"); in a process of its own the same cnnStep('webgpu') runs.
  gpu.rows.push(await tryRow('jax-js jit (webgpu)', async () => {
    const jax = await import('./peers/jax.ts');
    const { run, note } = await jax.cnnStep('webgpu', d);
    return rowFrom('jax-js jit (webgpu)', await measure(run, CRAWL), note);
  }));
  const missing = await kilnWebgpuMissing();
  if (missing) gpu.rows.push(skipped('kiln compiled (webgpu)', missing));
  else gpu.rows.push(...(await kilnRows('webgpu', () => kilnCnn(d, 'webgpu'), { compiled: CRAWL, eager: null }, gpu.notes)));
  gpu.rows.push(await tfjsRow('webgpu', CRAWL));
  gpu.notes.push(...CNN_NOTES);
  gpu.notes.push("jax-js webgpu fails in this process (after its wasm row) on a synchronous read; alone in a process (2026-11-30, same machine) its first step took 11.2 s");
  gpu.notes.push('first call includes WGSL pipeline creation (Mesa caches compiled shaders on disk, so it is far shorter on a warm cache)');
  finishTable(gpu, ['kiln compiled (webgpu)'], ['jax-js jit (webgpu)', 'tfjs (webgpu)']);
  return [cpu, gpu];
}

// ---------------------------------------------------------------------------------------------
// Character transformer

const GPT_CFG = { blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128 };
const GPT_BATCH = 32;
const GPT_SEED = 1337;

async function runCharGpt(): Promise<Table[]> {
  const table: Table = {
    id: 'chargpt',
    title: `Char transformer training step (examples/char-gpt.ts: batch ${GPT_BATCH}, block ${GPT_CFG.blockSize}, ${GPT_CFG.nLayer} layers, ${GPT_CFG.nHead} heads, width ${GPT_CFG.nEmbd}, AdamW, clipGradNorm_; median per step)`,
    unit: 'ms', rows: [], notes: [], baseline: '', showFirstValue: true,
  };
  const text = loadMobyDick();
  const vocab = new Vocab(text);
  const tokens = vocab.encode(text);
  const [xCpu, yCpu] = getBatch(tokens, GPT_CFG.blockSize, GPT_BATCH, new kiln.Generator().manualSeed(GPT_SEED), 'cpu');
  const make = (device: Device) => () => {
    kiln.manualSeed(GPT_SEED);
    const model = new GPT({ vocabSize: vocab.size, ...GPT_CFG, device });
    const opt = configureOptimizers(model, { lr: 1e-3, weightDecay: 0.1 });
    return { model, x: xCpu.to(device), y: yCpu.to(device), body: (x: Tensor, y: Tensor) => gptStep(model, opt, x, y) };
  };
  table.rows.push(...(await kilnRows('cpu', make('cpu'), { compiled: SLOW, eager: SLOW }, table.notes)));
  table.rows.push(await torchRow('chargpt', async () => {
    const { model, x, y } = make('cpu')();
    const config = Int32Array.from([vocab.size, GPT_CFG.blockSize, GPT_CFG.nLayer, GPT_CFG.nHead, GPT_CFG.nEmbd]);
    return [
      { name: 'config', data: config, shape: [5] },
      ...(await namedArrays([['x', x], ['y', y], ...Object.entries(model.stateDict()).map(([k, t]): [string, Tensor] => [`model.${k}`, t])])),
    ];
  }, 4));
  const missing = await kilnWebgpuMissing();
  if (missing) table.rows.push(skipped('kiln compiled (webgpu)', missing), skipped('kiln eager (webgpu)', missing));
  else table.rows.push(...(await kilnRows('webgpu', make('webgpu'), { compiled: CRAWL, eager: CRAWL }, table.notes)));
  table.notes.push(`one Moby Dick batch (vocabulary ${vocab.size}); PyTorch starts from kiln's initial weights (the same nanoGPT init), so the first losses agree`);
  table.notes.push('PyTorch 1.13 has no F.scaled_dot_product_attention; its attention is the same computation spelled out (masked_fill + softmax)');
  return [finishTable(table, ['kiln compiled (cpu)', 'kiln eager (cpu)'], ['PyTorch (cpu, 2 threads)'])];
}

// ---------------------------------------------------------------------------------------------
// makemore

const MAKEMORE_BATCH = 32;
const MAKEMORE_SEED = 2147483647;

async function runMakemore(): Promise<Table[]> {
  const table: Table = {
    id: 'makemore',
    title: `makemore training step (examples/makemore.ts: C[X] 27×10, tanh 200, cross-entropy, batch ${MAKEMORE_BATCH}, SGD lr 0.1; median per step)`,
    unit: 'ms', rows: [], notes: [], baseline: '', showFirstValue: true,
  };
  const { X, Y } = buildDataset(loadNames());
  const next = rng(MAKEMORE_SEED);
  const ix = kiln.tensor(Int32Array.from({ length: MAKEMORE_BATCH }, () => Math.floor(next() * X.shape[0]!)), { dtype: 'int32' });
  const Xb = X.index(ix), Yb = Y.index(ix);
  const make = () => {
    const model = new MakemoreMLP(new kiln.Generator().manualSeed(MAKEMORE_SEED));
    const opt = new kiln.optim.SGD(model.parameters(), { lr: 0.1 });
    return { model, x: Xb, y: Yb, body: (x: Tensor, y: Tensor) => makemoreStep(model, opt, x, y) };
  };
  table.rows.push(...(await kilnRows('cpu', make, { compiled: FAST, eager: FAST }, table.notes)));
  table.rows.push(await torchRow('makemore', async () => {
    const { model } = make();
    return namedArrays([['x', Xb], ['y', Yb], ...Object.entries(model.stateDict()).map(([k, t]): [string, Tensor] => [`model.${k}`, t])]);
  }, 2));
  table.notes.push('PyTorch starts from kiln\'s initial weights and the same minibatch, so the first losses agree');
  return [finishTable(table, ['kiln compiled (cpu)', 'kiln eager (cpu)'], ['PyTorch (cpu, 2 threads)'])];
}

export async function runModels(which: ModelBenchmark): Promise<Table[]> {
  if (which === 'cnn') return runCnn();
  if (which === 'chargpt') return runCharGpt();
  return runMakemore();
}
