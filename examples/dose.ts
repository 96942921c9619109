// Seed 000 (StatQuest, "张量与PyTorch"): the dose/effectiveness network
// BasicNN_train. Every weight and bias is already optimal except final_bias,
// which starts at 0 and is the only parameter that trains; SGD (lr 0.1) should
// bring it to about -16. Training stops once an epoch's total loss < 0.0001.
// Afterwards it draws effectiveness against dose, as the seed does with seaborn.
//
//   npx tsx examples/dose.ts
//   npx tsx examples/dose.ts --plot dose.svg   # the dose-response curve as SVG (default file: dose.svg)

import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';
import { withPlotDefault } from './plot-arg.ts';

const { tensor, nn, F, optim } = kiln;

export class BasicNNTrain extends nn.Module {
  w00: kiln.nn.Parameter;
  b00: kiln.nn.Parameter;
  w01: kiln.nn.Parameter;
  w10: kiln.nn.Parameter;
  b10: kiln.nn.Parameter;
  w11: kiln.nn.Parameter;
  finalBias: kiln.nn.Parameter;

  constructor(device: kiln.DeviceName = kiln.getDefaultDevice()) {
    super();
    this.w00 = new nn.Parameter(tensor(1.7, { device }), { requiresGrad: false });
    this.b00 = new nn.Parameter(tensor(-0.85, { device }), { requiresGrad: false });
    this.w01 = new nn.Parameter(tensor(-40.8, { device }), { requiresGrad: false });

    this.w10 = new nn.Parameter(tensor(12.6, { device }), { requiresGrad: false });
    this.b10 = new nn.Parameter(tensor(0.0, { device }), { requiresGrad: false });
    this.w11 = new nn.Parameter(tensor(2.7, { device }), { requiresGrad: false });

    // requiresGrad: true means this parameter is optimized.
    this.finalBias = new nn.Parameter(tensor(0.0, { device }), { requiresGrad: true });
  }

  forward(input: Tensor): Tensor {
    const inputToTopRelu = input.mul(this.w00).add(this.b00);
    const topReluOutput = F.relu(inputToTopRelu);
    const scaledTopReluOutput = topReluOutput.mul(this.w01);

    const inputToBottomRelu = input.mul(this.w10).add(this.b10);
    const bottomReluOutput = F.relu(inputToBottomRelu);
    const scaledBottomReluOutput = bottomReluOutput.mul(this.w11);

    const inputToFinalRelu = scaledTopReluOutput.add(scaledBottomReluOutput).add(this.finalBias);
    return F.relu(inputToFinalRelu);
  }
}

export interface DoseResult {
  /** The epoch at which the total loss fell below 0.0001 (null: never within maxEpochs). */
  stoppedAtEpoch: number | null;
  finalBias: number;
  /** Total loss of every epoch that ran, in order. */
  losses: number[];
  /** Effectiveness predicted for doses 0, 0.1, ..., 1 after training. */
  doses: number[];
  effectiveness: number[];
}

export async function run(options: { maxEpochs?: number; log?: boolean; plot?: string } = {}): Promise<DoseResult> {
  const { maxEpochs = 100, log = true, plot } = options;
  const print = (...args: unknown[]): void => {
    if (log) console.log(...args);
  };

  const model = new BasicNNTrain();
  const inputs = tensor([0, 0.5, 1]);
  const labels = tensor([0, 1, 0]);
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.1 });
  print(`final_bias before optimization: ${model.finalBias.detach().toString()}\n`);

  const losses: number[] = [];
  let stoppedAtEpoch: number | null = null;
  // the progress line (stderr) counts epochs; the seed's per-epoch lines are printed above it
  const bar = kiln.utils.progress(maxEpochs, { desc: 'training', disable: !log });
  for (const epoch of bar) {
    let totalLoss = 0; // the loss of every sample of this epoch, summed
    for (let iteration = 0; iteration < inputs.shape[0]; iteration++) {
      const inputI = inputs.index(iteration);
      const labelI = labels.index(iteration);

      const outputI = model.forward(inputI); // forward pass
      const loss = outputI.sub(labelI).pow(2);

      loss.backward(); // backward pass: accumulates into finalBias.grad
      totalLoss += await loss.item();
    }
    losses.push(totalLoss);
    bar.set({ loss: totalLoss });
    if (totalLoss < 0.0001) {
      stoppedAtEpoch = epoch;
      bar.write(`Epoch ${epoch}: total_loss < 0.0001, stopping.`);
      break;
    }
    optimizer.step(); // update the parameters that require grad
    optimizer.zeroGrad(); // and clear their gradients
    bar.write(`Epoch ${epoch}: final_bias = ${model.finalBias.detach().toString()}, total_loss = ${totalLoss}`);
  }
  const finalBias = await model.finalBias.item();
  print(`final_bias after optimization: ${finalBias}`);

  // The seed's doses 0, 0.1, ..., 1 as a table; the plot samples 101 doses so that the kinks of the
  // ReLUs sit where they are.
  const inputDoses = kiln.linspace(0, 1, 11);
  const outputValues = kiln.noGrad(() => model.forward(inputDoses));
  const doses = Array.from(await inputDoses.data());
  const effectiveness = Array.from(await outputValues.detach().data());
  print('\n  Dose | Effectiveness');
  print('  -----+--------------');
  doses.forEach((d, i) => print(`  ${d.toFixed(1).padStart(4)} | ${effectiveness[i].toFixed(4).padStart(12)}`));

  if (plot !== undefined) {
    const fine = kiln.linspace(0, 1, 101);
    const curve = kiln.noGrad(() => model.forward(fine));
    kiln.plot
      .figure({ title: `Dose response after training (final_bias = ${finalBias.toFixed(2)})`, xlabel: 'Dose', ylabel: 'Effectiveness' })
      .line(await fine.data(), await curve.data(), { label: 'model', color: 'green', lineWidth: 2.5 })
      .scatter(await inputs.data(), await labels.data(), { label: 'training data', color: '#333', size: 5 })
      .save(plot);
    print(`\nwrote ${plot}`);
  }
  return { stoppedAtEpoch, finalBias, losses, doses, effectiveness };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ args: withPlotDefault(process.argv.slice(2), 'dose.svg'), options: { plot: { type: 'string' } } });
  await run({ plot: values.plot });
}
