// Benchmark 1: one epoch of the StatQuest dose network (seeds/000).
// w00=1.7 b00=-0.85 w01=-40.8 w10=12.6 b10=0 w11=2.7 fixed, final_bias trained;
// inputs [0, 0.5, 1], labels [0, 1, 0]. One epoch = for each sample: forward,
// squared error, backward (gradients accumulate), read the loss; then one SGD
// step (lr 0.1) and zero grad. Every row returns the epoch's total loss as a
// number, so the work is really done.
import { finishTable, measure, rowFrom, skipped, tryRow, type Row, type Table } from './timing.ts';
import { kilnMissing, loadKiln, type Device, type Kiln, type KTensor } from './peers/kiln.ts';
import { torchBench, torchMissing } from './peers/torch.ts';

const OPTS = { budgetMs: 2500, warmupMs: 500 };

/** The dose network on a device (webgpu.ts times it eagerly on WebGPU). */
export function kilnDose(kiln: Kiln, device: Device = 'cpu') {
  const { tensor, optim } = kiln;
  const s = (v: number) => tensor(v, { device });
  const w00 = s(1.7), b00 = s(-0.85), w01 = s(-40.8);
  const w10 = s(12.6), b10 = s(0.0), w11 = s(2.7);
  // A leaf that requires grad (what nn.Parameter(torch.tensor(0.0)) is in the tutorial).
  const finalBias = tensor(0.0, { requiresGrad: true, device });
  const inputs = tensor([0, 0.5, 1], { device });
  const labels = tensor([0, 1, 0], { device });
  const opt = new optim.SGD([finalBias], { lr: 0.1 });
  const forward = (x: KTensor) => {
    const top = x.mul(w00).add(b00).relu().mul(w01);
    const bottom = x.mul(w10).add(b10).relu().mul(w11);
    return top.add(bottom).add(finalBias).relu();
  };
  return { inputs, labels, opt, forward, finalBias };
}

export async function runDose(): Promise<Table> {
  const table: Table = {
    id: 'dose',
    title: 'dose epoch (StatQuest dose network: 3 samples fwd+bwd, 1 SGD step; median per epoch)',
    unit: 'us',
    rows: [],
    notes: [],
    baseline: '',
    showFirstValue: true,
  };
  const load = await loadKiln();
  const rows: Row[] = table.rows;

  // compiled kiln: the whole epoch (3 forwards, 3 backwards, step, zeroGrad) in one compile().
  const compiledMissing = kilnMissing(load, 'compiled');
  if (compiledMissing) rows.push(skipped('kiln compiled (cpu)', compiledMissing));
  else
    rows.push(
      await tryRow('kiln compiled (cpu)', async () => {
        const kiln = load.kiln!;
        const { inputs, labels, opt, forward } = kilnDose(kiln);
        const epoch = kiln.compile!((xs: KTensor, ys: KTensor) => {
          let total: KTensor | null = null;
          for (let i = 0; i < 3; i++) {
            const loss = forward(xs.index(i)).sub(ys.index(i)).pow(2);
            loss.backward();
            total = total ? total.add(loss) : loss;
          }
          opt.step();
          opt.zeroGrad();
          return total!;
        });
        const run = async () => ((await epoch(inputs, labels)) as KTensor).item();
        return rowFrom('kiln compiled (cpu)', await measure(run, OPTS), 'whole epoch in one compile(); total loss read once; first call includes trace + compile');
      }),
    );

  // the same epoch batched: the three samples as one [3] tensor, one summed loss, one backward
  if (!compiledMissing)
    rows.push(
      await tryRow('kiln compiled, batched (cpu)', async () => {
        const kiln = load.kiln!;
        const { inputs, labels, opt, forward } = kilnDose(kiln);
        const epoch = kiln.compile!((xs: KTensor, ys: KTensor) => {
          const loss = forward(xs).sub(ys).pow(2).sum();
          loss.backward();
          opt.step();
          opt.zeroGrad();
          return loss;
        });
        const run = async () => ((await epoch(inputs, labels)) as KTensor).item();
        return rowFrom('kiln compiled, batched (cpu)', await measure(run, OPTS), 'the 3 samples as one [3] tensor, one backward call');
      }),
    );

  const eagerMissing = kilnMissing(load, 'eager');
  if (eagerMissing) rows.push(skipped('kiln eager (cpu)', eagerMissing));
  else
    rows.push(
      await tryRow('kiln eager (cpu)', async () => {
        const { inputs, labels, opt, forward } = kilnDose(load.kiln!);
        const run = () => {
          let total = 0;
          for (let i = 0; i < 3; i++) {
            const loss = forward(inputs.index(i)).sub(labels.index(i)).pow(2);
            loss.backward();
            total += loss.itemSync();
          }
          opt.step();
          opt.zeroGrad();
          return total;
        };
        return rowFrom('kiln eager (cpu)', await measure(run, OPTS));
      }),
    );

  rows.push(
    await tryRow('tfjs (cpu)', async () => {
      const tfjs = await import('./peers/tfjs.ts');
      const run = await tfjs.doseEpoch();
      const r = rowFrom('tfjs (cpu)', await measure(run, OPTS), 'tf.variableGrads per sample, summed');
      tfjs.disposeAll();
      return r;
    }),
  );

  rows.push(
    await tryRow('jax-js jit (wasm)', async () => {
      const jax = await import('./peers/jax.ts');
      const { run, note } = await jax.doseEpoch('wasm');
      return rowFrom('jax-js jit (wasm)', await measure(run, OPTS), note);
    }),
  );

  const tm = await torchMissing();
  if (tm) rows.push(skipped('PyTorch eager', tm));
  else
    rows.push(
      await tryRow('PyTorch eager', async () => {
        const r = await torchBench('dose', OPTS.budgetMs / 1000);
        return rowFrom('PyTorch eager', r, `torch ${r.torch}, python loop as in the tutorial`);
      }),
    );

  table.notes.push('reference numbers from the brief (same kind of machine): PyTorch 55 µs, js-pytorch 89 µs, jax-js jit 171 µs, tfjs 258 µs');
  return finishTable(table, ['kiln compiled (cpu)', 'kiln eager (cpu)'], ['PyTorch eager']);
}
