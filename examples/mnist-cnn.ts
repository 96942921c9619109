// PyTorch's MNIST example (pytorch/examples, mnist/main.py) ported line by line: the Net of two
// convolutions, max pooling, dropout and two linear layers, log_softmax + nll_loss, Adadelta (lr 1.0)
// with StepLR (gamma 0.7), batch 64, test batch 1000, printing what main.py prints.
//
//   npx tsx examples/mnist-cnn.ts                    # eager, CPU, 1 epoch
//   npx tsx examples/mnist-cnn.ts --compile          # the training step compiled
//   npx tsx examples/mnist-cnn.ts --device webgpu    # on the GPU (eager or --compile)
//   npx tsx examples/mnist-cnn.ts --epochs 14 --lr 1.0 --gamma 0.7 --batch-size 64 --test-batch-size 1000 --limit 10000 --seed 1
// bench/reference/mnist_cnn_torch.py runs the same recipe in PyTorch.

import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import * as kiln from '../index.ts';
import type { Tensor } from '../index.ts';
import { MNIST_MEAN, MNIST_STD } from './mnist-mlp.ts';

const { nn, F, optim, data } = kiln;

type Device = 'cpu' | 'webgpu';

export class Net extends nn.Module {
  conv1 = new nn.Conv2d(1, 32, 3, { stride: 1 });
  conv2 = new nn.Conv2d(32, 64, 3, { stride: 1 });
  dropout1 = new nn.Dropout(0.25);
  dropout2 = new nn.Dropout(0.5);
  fc1 = new nn.Linear(9216, 128);
  fc2 = new nn.Linear(128, 10);

  forward(x: Tensor): Tensor {
    x = this.conv1.forward(x);
    x = F.relu(x);
    x = this.conv2.forward(x);
    x = F.relu(x);
    x = F.maxPool2d(x, 2);
    x = this.dropout1.forward(x);
    x = x.flatten(1);
    x = this.fc1.forward(x);
    x = F.relu(x);
    x = this.dropout2.forward(x);
    x = this.fc2.forward(x);
    return F.logSoftmax(x, 1);
  }
}

export interface MnistCnnOptions {
  epochs?: number;
  compile?: boolean;
  device?: Device;
  lr?: number;
  gamma?: number;
  batchSize?: number;
  /**
   * main.py's --test-batch-size (1000). On WebGPU the default is 250: conv2's output for 1000 images
   * (147 MB) is more than one binding may hold on many adapters (maxStorageBufferBindingSize, 128 MiB).
   */
  testBatchSize?: number;
  /** train on the first `limit` training images only (default: all 60000) */
  limit?: number;
  /** evaluate on the first `testLimit` test images only (default: all 10000) */
  testLimit?: number;
  /** seeds the weight initialization, dropout and the shuffling (main.py's default is 1) */
  seed?: number;
  /** print the loss every `logInterval` batches (main.py: 10) */
  logInterval?: number;
  log?: boolean;
}

export interface MnistCnnResult {
  /** the losses printed, in order */
  losses: number[];
  /** test accuracy in [0, 1] and average test loss after the last epoch */
  accuracy: number;
  testLoss: number;
  epochSeconds: number[];
}

function prepare(ds: kiln.data.TensorDataset, n: number | undefined): kiln.data.TensorDataset {
  const [images, labels] = ds.tensors;
  const k = n === undefined ? images.shape[0] : Math.min(n, images.shape[0]);
  // transforms.ToTensor() + Normalize((0.1307,), (0.3081,)); data.mnist() gives [N, 1, 28, 28] in [0, 1]
  return new data.TensorDataset(images.index([0, k]).sub(MNIST_MEAN).div(MNIST_STD), labels.index([0, k]));
}

export async function run(options: MnistCnnOptions = {}): Promise<MnistCnnResult> {
  const { epochs = 1, compile = false, device = 'cpu', lr = 1.0, gamma = 0.7, batchSize = 64, testBatchSize = device === 'webgpu' ? 250 : 1000, limit, testLimit, seed = 1, logInterval = 10, log = true } = options;
  const print = (...args: unknown[]): void => { if (log) console.log(...args); };
  if (device === 'webgpu' && !(await kiln.webgpu.available())) {
    throw new Error('mnist-cnn: --device webgpu was asked for but no WebGPU adapter is available (in Node, install a Vulkan driver such as Mesa lavapipe; see scripts/install-lavapipe.sh)');
  }
  kiln.manualSeed(seed);
  const train = prepare(data.mnist({ split: 'train' }), limit);
  const test = prepare(data.mnist({ split: 'test' }), testLimit);
  const trainLoader = new data.DataLoader(train, { batchSize, shuffle: true, seed });
  const testLoader = new data.DataLoader(test, { batchSize: testBatchSize });

  const model = new Net().to(device);
  const optimizer = new optim.Adadelta(model.parameters(), { lr });
  const scheduler = new optim.lrScheduler.StepLR(optimizer, { stepSize: 1, gamma });

  const trainStep = (x: Tensor, y: Tensor): Tensor => {
    optimizer.zeroGrad();
    const output = model.forward(x);
    const loss = F.nllLoss(output, y);
    loss.backward();
    optimizer.step();
    return loss;
  };
  const step = compile ? kiln.compile(trainStep) : null;

  const losses: number[] = [];
  const epochSeconds: number[] = [];
  let accuracy = 0, testLoss = 0;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    model.train();
    const t0 = performance.now();
    let batchIdx = 0;
    for (const [xb, yb] of trainLoader) {
      const x = device === 'cpu' ? xb : xb.to(device), y = device === 'cpu' ? yb : yb.to(device);
      const loss = step ? await step(x, y) : trainStep(x, y);
      if (batchIdx % logInterval === 0) {
        const value = await loss.item();
        losses.push(value);
        const seen = batchIdx * batchSize;
        print(`Train Epoch: ${epoch} [${seen}/${train.length} (${Math.round((100 * seen) / train.length)}%)]\tLoss: ${value.toFixed(6)}`);
      }
      batchIdx++;
    }
    await model.parameters()[0].data(); // queued GPU work finishes before the clock stops
    epochSeconds.push((performance.now() - t0) / 1000);
    ({ accuracy, testLoss } = await evaluate(model, testLoader, device));
    const correct = Math.round(accuracy * test.length);
    print(`\nTest set: Average loss: ${testLoss.toFixed(4)}, Accuracy: ${correct}/${test.length} (${Math.round(100 * accuracy)}%)\n`);
    scheduler.step();
  }
  return { losses, accuracy, testLoss, epochSeconds };
}

async function evaluate(model: Net, loader: kiln.data.DataLoader, device: Device): Promise<{ accuracy: number; testLoss: number }> {
  model.eval();
  let lossSum = 0, correct = 0;
  for (const [xb, yb] of loader) {
    const x = device === 'cpu' ? xb : xb.to(device), y = device === 'cpu' ? yb : yb.to(device);
    const [l, c] = kiln.noGrad(() => {
      const output = model.forward(x);
      return [F.nllLoss(output, y, { reduction: 'sum' }), output.argmax(1).eq(y).float().sum()];
    });
    lossSum += await l.item();
    correct += await c.item();
  }
  const n = loader.dataset.length;
  return { accuracy: correct / n, testLoss: lossSum / n };
}

function parseCli(argv: string[]): MnistCnnOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      epochs: { type: 'string' }, compile: { type: 'boolean' }, device: { type: 'string' }, lr: { type: 'string' }, gamma: { type: 'string' },
      'batch-size': { type: 'string' }, 'test-batch-size': { type: 'string' }, limit: { type: 'string' }, 'test-limit': { type: 'string' }, seed: { type: 'string' }, 'log-interval': { type: 'string' },
    },
  });
  const num = (name: string, v: string | undefined, integer: boolean): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || (integer && (!Number.isInteger(n) || n < 1))) throw new Error(`mnist-cnn: --${name} expects a ${integer ? 'positive integer' : 'number'}, got '${v}'`);
    return n;
  };
  const device = values.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'webgpu') throw new Error(`mnist-cnn: --device must be 'cpu' or 'webgpu', got '${device}'`);
  return {
    epochs: num('epochs', values.epochs, true), compile: values.compile ?? false, device,
    lr: num('lr', values.lr, false), gamma: num('gamma', values.gamma, false), batchSize: num('batch-size', values['batch-size'], true), testBatchSize: num('test-batch-size', values['test-batch-size'], true),
    limit: num('limit', values.limit, true), testLimit: num('test-limit', values['test-limit'], true), seed: num('seed', values.seed, false),
    logInterval: num('log-interval', values['log-interval'], true),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(parseCli(process.argv.slice(2)));
}
