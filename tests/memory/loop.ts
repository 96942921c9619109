// A small eager (or compiled) training loop that records the process's resident memory, for the
// memory test (CPU) and for measuring WebGPU by hand:
//   npx tsx tests/memory/loop.ts --device webgpu --steps 3000 [--compile] [--no-read [--settle]]
// An MLP 16-32-4 with SGD on a fixed batch; RSS is sampled after `warm` steps and at the end, after a
// full garbage collection when Node runs with --expose-gc (so that the figure is what is live, not
// when the collector last ran). `--json` prints the result as one JSON line (tests/memory.test.ts).

import * as kiln from '../../index.ts';

export interface LoopOptions {
  device: 'cpu' | 'webgpu';
  steps: number;
  /** the step after which the baseline is taken */
  warm: number;
  compile?: boolean;
  /** read the loss every step (false: never read a value until the end) */
  read?: boolean;
  /** an eager WebGPU loop that never reads awaits kiln.webgpu.settle() each step (else only a microtask) */
  settle?: boolean;
}

export interface LoopResult { rssWarm: number; rssEnd: number; lossEnd: number }

function rss(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
}

export async function trainingLoop(o: LoopOptions): Promise<LoopResult> {
  const { nn, F, optim } = kiln;
  const device = o.device;
  kiln.manualSeed(0);
  const model = new nn.Sequential(new nn.Linear(16, 32, { device }), new nn.ReLU(), new nn.Linear(32, 4, { device }));
  const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const x = kiln.randn([8, 16], { device });
  const y = kiln.tensor([0, 1, 2, 3, 0, 1, 2, 3], { dtype: 'int32', device });
  const body = (xb: kiln.Tensor, yb: kiln.Tensor): kiln.Tensor => {
    opt.zeroGrad();
    const loss = F.crossEntropy(model.forward(xb), yb);
    loss.backward();
    opt.step();
    return loss;
  };
  const step = o.compile ? kiln.compile(body) : null;
  let rssWarm = 0;
  let loss: kiln.Tensor | null = null;
  for (let i = 1; i <= o.steps; i++) {
    loss = step ? await step(x, y) : body(x, y);
    if (o.read !== false) await loss.item();
    else if (!step && device === 'webgpu') await (o.settle ? kiln.webgpu.settle() : Promise.resolve()); // an async loop that never reads
    if (i === o.warm) rssWarm = rss();
  }
  const lossEnd = await loss!.item();
  return { rssWarm, rssEnd: rss(), lossEnd };
}

const isMain = process.argv[1]?.endsWith('loop.ts');
if (isMain) {
  const arg = (n: string) => { const i = process.argv.indexOf(`--${n}`); return i >= 0 ? process.argv[i + 1] : undefined; };
  const device = (arg('device') ?? 'cpu') as 'cpu' | 'webgpu';
  if (device === 'webgpu') await kiln.webgpu.init();
  const steps = Number(arg('steps') ?? 3000);
  const r = await trainingLoop({ device, steps, warm: Math.round(steps / 10), compile: process.argv.includes('--compile'), read: !process.argv.includes('--no-read'), settle: process.argv.includes('--settle') });
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  if (process.argv.includes('--json')) console.log(JSON.stringify(r));
  else console.log(`${device}${process.argv.includes('--compile') ? ' compiled' : ' eager'}${process.argv.includes('--no-read') ? ` (never reads${process.argv.includes('--settle') ? ', awaits webgpu.settle()' : ''})` : ''}: ` +
    `RSS ${mb(r.rssWarm)} MB after ${Math.round(steps / 10)} steps, ${mb(r.rssEnd)} MB after ${steps} (${((r.rssEnd / r.rssWarm - 1) * 100).toFixed(1)}%), final loss ${r.lossEnd.toFixed(4)}`);
}
