// Benchmark 2: one training step of a 784-512-512-10 ReLU MLP, batch 128,
// cross-entropy (mean), SGD lr 0.1, on fixed-seed random data. Each iteration
// reads the loss back (as a training loop that logs it does).
import { finishTable, measure, rowFrom, skipped, tryRow, type Row, type Table } from './timing.ts';
import { kilnMissing, loadKiln, type Device, type Kiln, type KTensor } from './peers/kiln.ts';
import { torchBench, torchMissing } from './peers/torch.ts';
import { mlpData, MLP_BATCH, MLP_SEED, MLP_SIZES, type MlpData } from './mlp-data.ts';

const OPTS = { budgetMs: 2000, warmupMs: 500, minSamples: 5 };
// Slow rows (hundreds of ms per step): fewer samples so the table stays under ~20 s.
const SLOW = { budgetMs: 2000, warmupMs: 0, minWarmup: 1, minSamples: 3 };

export function kilnMlp(kiln: Kiln, d: MlpData, device: Device) {
  const { nn, optim, F, tensor } = kiln;
  kiln.manualSeed(MLP_SEED);
  const [i, h1, h2, o] = d.sizes;
  const model = new nn.Sequential(new nn.Linear(i, h1), new nn.ReLU(), new nn.Linear(h1, h2), new nn.ReLU(), new nn.Linear(h2, o));
  if (device !== 'cpu') model.to(device);
  const x = tensor(d.x, { shape: [d.batch, i], device });
  const y = tensor(d.y, { shape: [d.batch], dtype: 'int32', device });
  const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
  const body = (xb: KTensor, yb: KTensor) => {
    const loss = F.crossEntropy(model.forward(xb), yb);
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss;
  };
  return { model, x, y, opt, body };
}

/** compiled kiln MLP step on a device; used by this file and by webgpu.ts. */
export async function kilnCompiledMlpRow(kiln: Kiln, d: MlpData, device: Device, name: string, opts = OPTS): Promise<Row> {
  const { x, y, body } = kilnMlp(kiln, d, device);
  const step = kiln.compile!(body, { device });
  const run = async () => ((await step(x, y)) as KTensor).item();
  return rowFrom(name, await measure(run, opts), 'first call includes trace + compile');
}

export async function runMlp(): Promise<Table> {
  const table: Table = {
    id: 'mlp',
    title: `MLP training step (${MLP_SIZES.join('-')}, ReLU, batch ${MLP_BATCH}, cross-entropy, SGD lr 0.1; median per step)`,
    unit: 'ms',
    rows: [],
    notes: [],
    baseline: '',
    showFirstValue: true,
  };
  const rows = table.rows;
  const d = mlpData();
  const load = await loadKiln();

  const cm = kilnMissing(load, 'compiled');
  if (cm) rows.push(skipped('kiln compiled (cpu)', cm));
  else rows.push(await tryRow('kiln compiled (cpu)', () => kilnCompiledMlpRow(load.kiln!, d, 'cpu', 'kiln compiled (cpu)')));

  const em = kilnMissing(load, 'eager');
  if (em) rows.push(skipped('kiln eager (cpu)', em));
  else
    rows.push(
      await tryRow('kiln eager (cpu)', async () => {
        const { x, y, body } = kilnMlp(load.kiln!, d, 'cpu');
        const run = () => body(x, y).itemSync();
        return rowFrom('kiln eager (cpu)', await measure(run, OPTS));
      }),
    );

  const tfjs = await import('./peers/tfjs.ts').catch((e: unknown) => e as Error);
  for (const b of ['cpu', 'wasm'] as const) {
    const name = `tfjs (${b})`;
    if (tfjs instanceof Error) {
      rows.push(skipped(name, `tfjs did not load: ${tfjs.message}`));
      continue;
    }
    rows.push(
      await tryRow(name, async () => {
        const { step, note } = await tfjs.mlpStep(b, d);
        const r = rowFrom(name, await measure(step, b === 'cpu' ? SLOW : OPTS), note);
        tfjs.disposeAll();
        return r;
      }),
    );
  }

  rows.push(
    await tryRow('jax-js jit (wasm)', async () => {
      const jax = await import('./peers/jax.ts');
      const { run, note } = await jax.mlpStep('wasm', d);
      return rowFrom('jax-js jit (wasm)', await measure(run, OPTS), note);
    }),
  );

  const tm = await torchMissing();
  if (tm) rows.push(skipped('PyTorch eager (2 threads)', tm));
  else
    rows.push(
      await tryRow('PyTorch eager (2 threads)', async () => {
        const r = await torchBench('mlp', OPTS.budgetMs / 1000);
        return rowFrom('PyTorch eager (2 threads)', r, `torch ${r.torch}, set_num_threads(${r.threads}), ${r.blas}`);
      }),
    );

  table.notes.push('reference numbers from the brief: tfjs cpu 514 ms, tfjs wasm 213 ms, jax-js wasm 20 ms, PyTorch 2.5–4.8 ms');
  table.notes.push('tfjs and jax-js start from identical weights/data (seeded mulberry32); kiln uses its own nn.Linear init (manualSeed), PyTorch its own (manual_seed)');
  return finishTable(table, ['kiln compiled (cpu)', 'kiln eager (cpu)'], ['PyTorch eager (2 threads)']);
}
