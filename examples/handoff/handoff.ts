// kiln -> PyTorch DDP -> kiln: examples/mnist-mlp.ts's model trains in kiln, PyTorch continues
// with DistributedDataParallel on 2 local processes (ddp_train.py), and kiln takes the result
// back and evaluates it. The checkpoints are safetensors files with PyTorch's names, holding
// the model and the SGD state (momentum buffers) as `{ model, optimizer }`.
//
//   npx tsx examples/handoff/handoff.ts                               # 300 + 300 + 100 steps
//   npx tsx examples/handoff/handoff.ts --kiln-steps 50 --torch-steps 50 --resume-steps 20 --dir /tmp/handoff
//
// Needs /usr/bin/python3 with PyTorch (Debian: apt-get install python3-torch), or $KILN_PYTHON.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as kiln from '../../index.ts';
import type { Tensor } from '../../index.ts';
import { MNIST_MEAN, MNIST_STD, NeuralNetwork } from '../mnist-mlp.ts';

const { F, optim, data } = kiln;

export interface HandoffOptions {
  kilnSteps?: number;
  torchSteps?: number;
  /** Steps kiln trains after taking the model back. */
  resumeSteps?: number;
  batchSize?: number;
  /** Test images for the probe batch (loss at each hand-off) and for the final accuracy. */
  probeSize?: number;
  worldSize?: number;
  lr?: number;
  momentum?: number;
  dir?: string;
  python?: string;
  log?: boolean;
}

export interface HandoffResult {
  /** kiln's loss on the probe batch: at the start, after its steps, after loading PyTorch's checkpoint, after resuming. */
  kiln: { start: number; trained: number; loaded: number; firstResumed: number; resumed: number };
  /** PyTorch's (rank 0) on the same batch: right after loading kiln's checkpoint, after DDP training, after one more step. */
  torch: { loaded: number; trained: number; extra: number; steps: number; worldSize: number };
  /** Accuracy on the probe images after resuming. */
  accuracy: number;
  dir: string;
}

export async function handoff(options: HandoffOptions = {}): Promise<HandoffResult> {
  const { kilnSteps = 300, torchSteps = 300, resumeSteps = 100, batchSize = 64, probeSize = 1000, worldSize = 2, lr = 0.01, momentum = 0.9, log = true } = options;
  const python = options.python ?? process.env.KILN_PYTHON ?? '/usr/bin/python3';
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'kiln-handoff-'));
  mkdirSync(dir, { recursive: true });
  const print = (...a: unknown[]): void => { if (log) console.log(...a); };

  // Data: consecutive batches of standardized MNIST digits, kiln's first, then PyTorch's, then kiln's again.
  const n = (kilnSteps + torchSteps + resumeSteps) * batchSize;
  const train = data.mnist({ split: 'train' }).tensors.map((t) => t.index([0, n]));
  const test = data.mnist({ split: 'test' }).tensors.map((t) => t.index([0, probeSize]));
  const images = train[0].sub(MNIST_MEAN).div(MNIST_STD), labels = train[1];
  const [probeX, probeY] = [test[0].sub(MNIST_MEAN).div(MNIST_STD), test[1]];
  const batch = (s: number): [Tensor, Tensor] => [images.index([s * batchSize, (s + 1) * batchSize]), labels.index([s * batchSize, (s + 1) * batchSize])];

  kiln.manualSeed(0);
  const model = new NeuralNetwork();
  const opt = new optim.SGD(model.parameters(), { lr, momentum });
  const probeLoss = (): number => kiln.noGrad(() => F.crossEntropy(model.forward(probeX), probeY).itemSync());
  const step = ([x, y]: [Tensor, Tensor]): void => {
    opt.zeroGrad();
    F.crossEntropy(model.forward(x), y).backward();
    opt.step();
  };

  // 1. kiln trains, and saves the model with the optimizer's state.
  const start = probeLoss();
  for (let s = 0; s < kilnSteps; s++) step(batch(s));
  const trained = probeLoss();
  print(`kiln: ${kilnSteps} steps, probe loss ${start.toFixed(4)} -> ${trained.toFixed(4)}`);
  const kilnCkpt = join(dir, 'kiln.safetensors');
  await kiln.save({ model: model.stateDict(), optimizer: opt.stateDict() }, kilnCkpt);
  const range = (a: number, b: number) => [images.index([a * batchSize, b * batchSize]), labels.index([a * batchSize, b * batchSize])];
  const [tx, ty] = range(kilnSteps, kilnSteps + torchSteps);
  const [ex, ey] = batch(kilnSteps + torchSteps);
  await kiln.save({ images: tx, labels: ty, extraImages: ex, extraLabels: ey, probeImages: probeX, probeLabels: probeY }, join(dir, 'data.safetensors'));

  // 2. PyTorch continues with DistributedDataParallel.
  const torchCkpt = join(dir, 'torch.safetensors'), reportPath = join(dir, 'report.json');
  const script = fileURLToPath(new URL('./ddp_train.py', import.meta.url));
  const r = spawnSync(python, [script, '--checkpoint', kilnCkpt, '--data', join(dir, 'data.safetensors'), '--out', torchCkpt, '--report', reportPath,
    '--batch-size', String(batchSize), '--world-size', String(worldSize)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  if (r.error || r.status !== 0) throw new Error(`handoff: ${python} ${script} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
  const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { loaded: number; trained: number; extra: number; steps: number; world_size: number };
  print(`PyTorch DDP (${report.world_size} processes): ${report.steps} steps, probe loss ${report.loaded.toFixed(4)} -> ${report.trained.toFixed(4)}`);

  // 3. kiln takes the model and the optimizer back, evaluates, and resumes.
  const ckpt = await kiln.loadState<{ model: Record<string, Tensor>; optimizer: kiln.optim.OptimizerStateDict }>(torchCkpt);
  model.loadStateDict(ckpt.model);
  opt.loadStateDict(ckpt.optimizer);
  const loaded = probeLoss();
  step(batch(kilnSteps + torchSteps));
  const firstResumed = probeLoss();
  for (let s = kilnSteps + torchSteps + 1; s < kilnSteps + torchSteps + resumeSteps; s++) step(batch(s));
  const resumed = probeLoss();
  const accuracy = kiln.noGrad(() => model.forward(probeX).argmax(1).eq(probeY).float().mean().itemSync());
  print(`kiln: loaded probe loss ${loaded.toFixed(4)}, after ${resumeSteps} more steps ${resumed.toFixed(4)}; accuracy ${(100 * accuracy).toFixed(1)}% on ${probeSize} test images`);
  return {
    kiln: { start, trained, loaded, firstResumed, resumed },
    torch: { loaded: report.loaded, trained: report.trained, extra: report.extra, steps: report.steps, worldSize: report.world_size },
    accuracy,
    dir,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { 'kiln-steps': { type: 'string' }, 'torch-steps': { type: 'string' }, 'resume-steps': { type: 'string' }, 'batch-size': { type: 'string' }, dir: { type: 'string' } } });
  const int = (v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const k = Number(v);
    if (!Number.isInteger(k) || k < 1) throw new Error(`handoff: expected a positive integer, got '${v}'`);
    return k;
  };
  await handoff({ kilnSteps: int(values['kiln-steps']), torchSteps: int(values['torch-steps']), resumeSteps: int(values['resume-steps']), batchSize: int(values['batch-size']), dir: values.dir });
}
