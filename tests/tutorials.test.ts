// The seed tutorials (../shared/seeds/*.txt) reproduced with kiln, with the numbers
// PyTorch gives for them.
import { describe, expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values, type Device } from './golden.ts';
import { mulberry32 } from '../data/random.ts';
import { NeuralNetwork } from '../examples/mnist-mlp.ts';
import { BasicNNTrain } from '../examples/dose.ts';

const { nn, F, optim } = kiln;

// ---------------------------------------------------------------------------
// seed 000: StatQuest's dose/effectiveness network, only final_bias trains.


/**
 * The reference: PyTorch's float32 arithmetic for this program, op by op (Math.fround
 * after every op; the epoch's total is summed in double like Python's `total_loss += float(loss)`).
 * It stops at epoch 34 ("一共34轮训练后") with final_bias -16.001883 (≈ -16).
 */
function simulateStatQuest(): { stopEpoch: number; finalBias: number; firstEpochBias: number; firstEpochLoss: number; stopLoss: number } {
  const f = Math.fround;
  const [w00, b00, w01, w10, b10, w11] = [1.7, -0.85, -40.8, 12.6, 0, 2.7].map(f);
  const inputs = [0, 0.5, 1].map(f);
  const labels = [0, 1, 0].map(f);
  const relu = (x: number) => (x > 0 ? x : 0);
  let fb = f(0);
  let firstEpochBias = NaN;
  let firstEpochLoss = NaN;
  for (let epoch = 0; epoch < 100; epoch++) {
    let total = 0;
    let grad = f(0);
    for (let i = 0; i < 3; i++) {
      const x = inputs[i];
      const top = f(relu(f(f(x * w00) + b00)) * w01);
      const bottom = f(relu(f(f(x * w10) + b10)) * w11);
      const pre = f(f(top + bottom) + fb);
      const d = f(relu(pre) - labels[i]);
      total += f(d * d);
      grad = f(grad + (pre > 0 ? f(2 * d) : 0));
    }
    if (total < 0.0001) return { stopEpoch: epoch, finalBias: fb, firstEpochBias, firstEpochLoss, stopLoss: total };
    fb = f(fb + f(f(-0.1) * grad));
    if (epoch === 0) {
      firstEpochBias = fb;
      firstEpochLoss = total;
    }
  }
  return { stopEpoch: -1, finalBias: fb, firstEpochBias, firstEpochLoss, stopLoss: NaN };
}

// ---------------------------------------------------------------------------
// seed 001: linear regression from scratch.

function* dataIter(batchSize: number, features: kiln.Tensor, labels: kiln.Tensor, rand: () => number, device: Device) {
  const n = features.shape[0];
  const indices = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [indices[i], indices[j]] = [indices[j], indices[i]];
  }
  for (let i = 0; i < n; i += batchSize) {
    const idx = Int32Array.from(indices.slice(i, Math.min(i + batchSize, n)));
    const j = kiln.tensor(idx, { shape: [idx.length], device });
    yield [features.indexSelect(0, j), labels.indexSelect(0, j)] as const;
  }
}

const linreg = (X: kiln.Tensor, w: kiln.Tensor, b: kiln.Tensor) => X.mm(w).add(b);
const squaredLoss = (yHat: kiln.Tensor, y: kiln.Tensor) => yHat.sub(y.view(yHat.shape)).pow(2).div(2);

describeEachDevice('tutorials', (device) => {
  describe('seed 000: StatQuest BasicNN_train (only final_bias trains)', () => {
    it('stops at the same epoch as PyTorch (34) with final_bias ≈ -16', async () => {
      const ref = simulateStatQuest();
      expect(ref.stopEpoch, 'reference simulation').toBe(34);

      const model = new BasicNNTrain(device);
      const params = model.parameters();
      expect(params.length, 'model.parameters() lists all seven Parameters').toBe(7);
      const trainable = params.filter((p: kiln.Tensor) => p.requiresGrad);
      expect(trainable.length, 'only final_bias requires grad').toBe(1);

      const inputs = kiln.tensor([0, 0.5, 1], { device });
      const labels = kiln.tensor([0, 1, 0], { device });
      const optimizer = new optim.SGD(params, { lr: 0.1 });
      let stopEpoch = -1;
      let stopLoss = NaN;
      const history: { bias: number; totalLoss: number }[] = [];
      for (let epoch = 0; epoch < 100; epoch++) {
        let totalLoss = 0;
        for (let iteration = 0; iteration < 3; iteration++) {
          const inputI = inputs.index(iteration);
          const labelI = labels.index(iteration);
          const outputI = model.forward(inputI);
          const loss = outputI.sub(labelI).pow(2);
          loss.backward();
          totalLoss += await loss.item();
        }
        if (totalLoss < 0.0001) {
          stopEpoch = epoch;
          stopLoss = totalLoss;
          break;
        }
        optimizer.step();
        optimizer.zeroGrad();
        history.push({ bias: await model.finalBias.item(), totalLoss });
      }
      const bias = await model.finalBias.item();
      expect(history[0]?.totalLoss, 'epoch 0 total loss').toBeCloseTo(ref.firstEpochLoss, 3);
      expect(history[0]?.bias, 'final_bias after epoch 0').toBeCloseTo(ref.firstEpochBias, 4);
      expect(stopEpoch, `stopping epoch (last epochs: ${JSON.stringify(history.slice(-3))})`).toBe(ref.stopEpoch);
      expect(Math.abs(bias - ref.finalBias), `final_bias ${bias} vs PyTorch ${ref.finalBias}`).toBeLessThan(1e-3);
      expect(Math.abs(bias - -16), 'final_bias ≈ -16').toBeLessThan(0.01);
      expect(Math.abs(stopLoss - ref.stopLoss) / ref.stopLoss, `total loss at the stopping epoch ${stopLoss} vs ${ref.stopLoss}`).toBeLessThan(1e-2);
      // the frozen parameters did not move
      expectValues(await Promise.all([model.w00, model.b00, model.w01, model.w10, model.b10, model.w11].map((p) => p.item())),
        [1.7, -0.85, -40.8, 12.6, 0, 2.7].map(Math.fround), 'exact', 'frozen parameters');
    });

    it('the trained network maps the doses to the effectiveness curve (linspace(0, 1, 11))', async () => {
      const model = new BasicNNTrain(device);
      kiln.noGrad(() => model.finalBias.fill_(-16));
      const doses = kiln.linspace(0, 1, 11, { device });
      const out = model.forward(doses).detach();
      const expected = Array.from({ length: 11 }, (_, i) => {
        const x = Math.fround(i / 10);
        const r = (v: number) => Math.max(v, 0);
        return r(r(x * 1.7 - 0.85) * -40.8 + r(x * 12.6) * 2.7 - 16);
      });
      expectValues(await values(out), expected, { rtol: 1e-4, atol: 1e-4 }, 'effectiveness at doses 0, 0.1, ..., 1');
      expect(out.shape).toEqual([11]);
    });
  });

  describe('seed 001: linear regression from scratch', () => {
    it('recovers w = [2, -3.4], b = 4.2 within 0.01', async () => {
      kiln.manualSeed(2022);
      const numInputs = 2;
      const numExamples = 1000;
      const trueW = [2, -3.4];
      const trueB = 4.2;
      const features = kiln.randn([numExamples, numInputs], { device });
      let labels = features.index(null, 0).mul(trueW[0]).add(features.index(null, 1).mul(trueW[1])).add(trueB);
      labels = labels.add(kiln.randn([numExamples], { device }).mul(0.01));
      expect(labels.shape).toEqual([1000]);

      const w = kiln.randn([numInputs, 1], { device }).mul(0.01).detach().requiresGrad_();
      const b = kiln.zeros([1], { device, requiresGrad: true });
      expect(w.requiresGrad && b.requiresGrad).toBe(true);

      const lr = 0.03;
      const batchSize = 5;
      const numEpochs = 2;
      const rand = mulberry32(7);
      const sgd = (params: kiln.Tensor[]) =>
        kiln.noGrad(() => {
          for (const p of params) p.sub_(p.grad!.mul(lr / batchSize));
        });
      const epochLoss: number[] = [];
      for (let epoch = 0; epoch < numEpochs; epoch++) {
        for (const [X, y] of dataIter(batchSize, features, labels, rand, device)) {
          const l = squaredLoss(linreg(X, w, b), y).sum();
          l.backward();
          sgd([w, b]);
          w.grad!.zero_();
          b.grad!.zero_();
        }
        let trainL: kiln.Tensor | undefined;
        kiln.noGrad(() => {
          trainL = squaredLoss(linreg(features, w, b), labels).mean();
        });
        epochLoss.push(await trainL!.item());
      }
      const wv = await values(w);
      const bv = await values(b);
      expectValues(wv, trueW, { rtol: 0, atol: 0.01 }, 'learned w');
      expectValues(bv, [trueB], { rtol: 0, atol: 0.01 }, 'learned b');
      expect(epochLoss[numEpochs - 1], `mean squared loss / 2 after training (per epoch: ${epochLoss})`).toBeLessThan(1e-3);
      expect(w.shape).toEqual([2, 1]);
    });
  });

  describe('seed 002: only w2 trains (MyModelW2Only)', () => {
    it('20 epochs of SGD(lr 0.01) on [w2] give w2 = 2 - 0.98^20; w1 stays 1', async () => {
      class MyModelW2Only extends nn.Module {
        declare w1: kiln.Tensor;
        declare w2: kiln.Tensor;
        hiddenActivation: kiln.Tensor | null = null;
        constructor() {
          super();
          this.w1 = kiln.tensor([1.0], { device }); // not a Parameter: the optimizer never sees it
          this.w2 = new nn.Parameter(kiln.tensor([1.0], { device })) as unknown as kiln.Tensor;
        }
        forward(x: kiln.Tensor) {
          this.hiddenActivation = x.mul(this.w1);
          return this.hiddenActivation.mul(this.w2);
        }
      }
      const model = new MyModelW2Only();
      expect(model.parameters().length, 'only w2 is a Parameter').toBe(1);
      const input = kiln.tensor([1.0], { device });
      const target = kiln.tensor([2.0], { device });
      const opt = new optim.SGD([model.w2], { lr: 0.01 });
      const losses: number[] = [];
      for (let epoch = 0; epoch < 20; epoch++) {
        const output = model.forward(input);
        const loss = output.sub(target).pow(2);
        loss.backward();
        opt.step();
        opt.zeroGrad();
        losses.push(await loss.item());
      }
      let w2 = 1;
      const expectedLosses: number[] = [];
      for (let e = 0; e < 20; e++) {
        expectedLosses.push((w2 - 2) ** 2);
        w2 -= 0.01 * 2 * (w2 - 2);
      }
      expectValues(losses, expectedLosses, { rtol: 1e-5, atol: 1e-6 }, 'loss per epoch');
      expectValues(await values(model.w2), [w2], { rtol: 1e-5, atol: 1e-6 }, 'w2 after 20 epochs');
      expectValues(await values(model.w1), [1], 'exact', 'w1 (fixed)');
    });
  });

  describe('seed 003: the MNIST MLP', () => {
    it('structure, namedParameters, forward shapes, Softmax and argmax', async () => {
      kiln.manualSeed(0);
      const model = new NeuralNetwork().to(device);
      const named = model.namedParameters().map(([n, p]: [string, kiln.Tensor]) => [n, p.shape]);
      expect(named).toEqual([
        ['linearReluStack.0.weight', [512, 784]],
        ['linearReluStack.0.bias', [512]],
        ['linearReluStack.2.weight', [512, 512]],
        ['linearReluStack.2.bias', [512]],
        ['linearReluStack.4.weight', [10, 512]],
        ['linearReluStack.4.bias', [10]],
      ]);
      for (const p of model.parameters()) expect(p.device, 'parameter device after model.to').toBe(device);

      const X = kiln.rand([1, 28, 28], { device });
      const logits = model.forward(X);
      expect(logits.shape).toEqual([1, 10]);
      const predProbab = new nn.Softmax(1).forward(logits);
      const probs = await values(predProbab);
      expect(Math.abs(probs.reduce((s, v) => s + v, 0) - 1), 'softmax sums to 1').toBeLessThan(1e-5);
      const yPred = predProbab.argmax(1);
      expect(yPred.shape).toEqual([1]);
      expect(yPred.dtype).toBe('int32');
      const k = (await values(yPred))[0];
      expect(probs[k], 'argmax picks the largest probability').toBe(Math.max(...probs));

      const inputImage = kiln.rand([3, 28, 28], { device });
      const flatImage = new nn.Flatten().forward(inputImage);
      expect(flatImage.shape).toEqual([3, 784]);
      const layer1 = new nn.Linear(28 * 28, 20, { device });
      const hidden1 = new nn.ReLU().forward(layer1.forward(flatImage));
      expect(hidden1.shape).toEqual([3, 20]);
      expect((await values(hidden1)).every((v) => v >= 0), 'ReLU output is non-negative').toBe(true);
    });
  });
});
