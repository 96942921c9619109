// Seed 001 (d2l, "linear regression from scratch"): 1000 synthetic samples
// y = 2·x0 − 3.4·x1 + 4.2 + noise(σ = 0.01), shuffled mini-batches from
// dataIter, the model linreg, squaredLoss, and a hand-written sgd that
// updates the parameters in place under noGrad (the seed's `param.data -= ...`).
//
//   npx tsx examples/linear-regression.ts
//   npx tsx examples/linear-regression.ts --plot [file]   # the data and the fitted lines as SVG
//                                                        # (default file: linear-regression.svg)

import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';
import { mulberry32, permutation } from '../data/random.ts';
import { withPlotDefault } from './plot-arg.ts';

const { tensor } = kiln;

export const trueW = [2, -3.4];
export const trueB = 4.2;

/** Yields shuffled mini-batches (the last one may be smaller), like the seed's data_iter. */
export function* dataIter(batchSize: number, features: Tensor, labels: Tensor, rng: () => number = Math.random): Generator<[Tensor, Tensor]> {
  const numExamples = features.shape[0];
  const indices = permutation(numExamples, rng); // the samples are read in random order
  for (let i = 0; i < numExamples; i += batchSize) {
    const rows = indices.slice(i, Math.min(i + batchSize, numExamples)); // the last batch may be short
    const j = tensor(rows, { shape: [rows.length], dtype: 'int32' });
    yield [features.indexSelect(0, j), labels.indexSelect(0, j)];
  }
}

export function linreg(X: Tensor, w: Tensor, b: Tensor): Tensor {
  return X.mm(w).add(b);
}

/** Returns a vector; note that PyTorch's MSELoss does not divide by 2. */
export function squaredLoss(yHat: Tensor, y: Tensor): Tensor {
  return yHat.sub(y.view(yHat.shape)).pow(2).div(2);
}

export function sgd(params: Tensor[], lr: number, batchSize: number): void {
  kiln.noGrad(() => {
    for (const p of params) {
      if (p.grad === null) throw new Error('sgd: parameter has no gradient; call backward() first');
      p.sub_(p.grad.mul(lr / batchSize));
    }
  });
}

export interface LinearRegressionResult {
  /** Mean squared loss over the whole data set after each epoch. */
  losses: number[];
  w: number[];
  b: number;
  /** trueW - w and trueB - b. */
  wError: number[];
  bError: number;
}

export async function run(
  options: { seed?: number; numEpochs?: number; lr?: number; batchSize?: number; log?: boolean; plot?: string } = {},
): Promise<LinearRegressionResult> {
  const { seed = 0, numEpochs = 3, lr = 0.03, batchSize = 10, log = true, plot } = options;
  const print = (...args: unknown[]): void => {
    if (log) console.log(...args);
  };
  kiln.manualSeed(seed);
  const rng = mulberry32(seed);

  const numInputs = 2;
  const numExamples = 1000;
  // 1000 random samples with 2 features each
  const features = kiln.randn([numExamples, numInputs]);
  const labels = features
    .index(null, 0)
    .mul(trueW[0])
    .add(features.index(null, 1).mul(trueW[1]))
    .add(trueB)
    .add(kiln.randn([numExamples]).mul(0.01)); // noise ~ N(0, 0.01²)
  print(labels.shape);

  for (const [X, y] of dataIter(batchSize, features, labels, rng)) {
    print(X.toString(), '\n', y.toString());
    break;
  }

  const w = kiln.randn([numInputs, 1]).mul(0.01).requiresGrad_(); // N(0, 0.01²)
  const b = kiln.zeros([1], { requiresGrad: true });
  print(w.requiresGrad);
  print(b.requiresGrad);

  const net = linreg;
  const loss = squaredLoss;
  const losses: number[] = [];
  for (let epoch = 0; epoch < numEpochs; epoch++) {
    // Each epoch uses every sample once; X and y are a mini-batch of features and labels.
    const batches = kiln.utils.progress(dataIter(batchSize, features, labels, rng), {
      desc: `epoch ${epoch + 1}`,
      total: Math.ceil(numExamples / batchSize),
      disable: !log,
    });
    for (const [X, y] of batches) {
      const l = loss(net(X, w, b), y).sum(); // the loss of the mini-batch
      batches.set({ loss: l.detach().div(X.shape[0]) });
      l.backward(); // gradients of the loss with respect to the parameters
      sgd([w, b], lr, batchSize); // mini-batch stochastic gradient descent
      // do not forget to zero the gradients
      w.grad!.zero_();
      b.grad!.zero_();
    }
    const trainL = kiln.noGrad(() => loss(net(features, w, b), labels));
    const meanLoss = await trainL.mean().item();
    losses.push(meanLoss);
    print(`epoch ${epoch + 1}, loss ${meanLoss.toFixed(6)}`);
  }

  const wValues = Array.from(await w.data());
  const bValue = (await b.data())[0];
  const wError = trueW.map((t, i) => t - wValues[i]);
  const bError = trueB - bValue;
  print(`error in estimating w: [${wError.map((e) => e.toFixed(6)).join(', ')}]`);
  print(`error in estimating b: ${bError.toFixed(6)}`);

  if (plot !== undefined) {
    // The seed's scatter of the labels against each feature, and through each the fitted line: the
    // features are independent N(0, 1), so y's mean given x_i alone is w_i·x_i + b.
    const [x0, x1] = [features.index(null, 0), features.index(null, 1)];
    const ends = [-3.5, 3.5];
    const fit = (wi: number) => ends.map((x) => wi * x + bValue);
    const term = (wi: number, i: number) => `fit: y = ${wi.toFixed(2)}·x${i} + ${bValue.toFixed(2)}`;
    kiln.plot
      .figure({ title: 'Linear regression: labels against each feature', xlabel: 'feature value', ylabel: 'label y', xlim: [-3.5, 3.5] })
      .scatter(x0, labels, { label: 'x0', size: 2 })
      .scatter(x1, labels, { label: 'x1', size: 2 })
      .line(ends, fit(wValues[0]), { label: term(wValues[0], 0), color: '#0b3c6b', lineWidth: 2.5 })
      .line(ends, fit(wValues[1]), { label: term(wValues[1], 1), color: '#a34a00', lineWidth: 2.5 })
      .save(plot);
    print(`wrote ${plot}`);
  }
  return { losses, w: wValues, b: bValue, wError, bError };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ args: withPlotDefault(process.argv.slice(2), 'linear-regression.svg'), options: { plot: { type: 'string' } } });
  await run({ plot: values.plot });
}
