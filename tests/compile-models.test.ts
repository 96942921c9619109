// Compiled == eager for the models beyond the MLP (issue 8): makemore's embedding MLP and a tiny
// nanoGPT-style transformer (embeddings, LayerNorm, causal attention, GELU, AdamW with parameter
// groups, clipGradNorm_), and a BatchNorm network whose running statistics are write-backs. The same
// initial parameters and batches go through 20+ steps eagerly and through kiln.compile; losses,
// parameters and buffers are compared (rtol 1e-4, atol 1e-5 x the parameters' scale).
import { expect, it } from 'vitest';
import * as kiln from '../index.ts';
import { BLOCK_SIZE, buildDataset, loadNames, MakemoreMLP, makemoreStep } from '../examples/makemore.ts';
import { configureOptimizers, getBatch, GPT, gptStep } from '../examples/char-gpt.ts';
import { describeEachDevice } from './devices.ts';
import { expectValues, values } from './golden.ts';

const { nn, F, optim } = kiln;
type Tensor = kiln.Tensor;
const RTOL = 1e-4;
/** Lavapipe compiles every new WGSL pipeline on a shared CPU: the WebGPU runs get more time. */
const timeoutFor = (device: string): number => (device === 'webgpu' ? 900_000 : 120_000);

/** Losses are read once at the end (one device sync, not two per step). */
async function expectSameLosses(got: Tensor[], expected: Tensor[], label: string): Promise<void> {
  const g = await Promise.all(got.map((t) => t.item())), e = await Promise.all(expected.map((t) => t.item()));
  e.forEach((v, i) => expectValues([g[i]], [v], { rtol: RTOL, atol: 1e-5 }, `${label} step ${i}: loss`));
}

async function expectSameTensors(got: [string, Tensor][], expected: [string, Tensor][], label: string): Promise<void> {
  expect(got.map(([n]) => n)).toEqual(expected.map(([n]) => n));
  for (let i = 0; i < got.length; i++) {
    const e = await values(expected[i][1]);
    const scale = Math.max(1, ...e.map(Math.abs));
    expectValues(await values(got[i][1]), e, { rtol: RTOL, atol: 1e-5 * scale }, `${label}: ${expected[i][0]}`);
  }
}

describeEachDevice('compiled == eager: models beyond the MLP', (device) => {
  it('makemore (C[X] embedding, tanh, cross-entropy, SGD with an lr change): 24 steps', async () => {
    const words = loadNames().slice(0, 200);
    const { X, Y } = buildDataset(words, device);
    expect(X.shape[1]).toBe(BLOCK_SIZE);
    const make = () => new MakemoreMLP(new kiln.Generator().manualSeed(42), { embed: 4, hidden: 16, device });
    const eager = make(), comp = make();
    const optE = new optim.SGD(eager.parameters(), { lr: 0.1 }), optC = new optim.SGD(comp.parameters(), { lr: 0.1 });
    const step = kiln.compile((xb: Tensor, yb: Tensor) => makemoreStep(comp, optC, xb, yb));
    const g = new kiln.Generator().manualSeed(7);
    const le: Tensor[] = [], lc: Tensor[] = [];
    for (let i = 0; i < 24; i++) {
      const ix = kiln.randint(0, X.shape[0], [16], { generator: g, device });
      const xb = X.index(ix), yb = Y.index(ix);
      if (i === 12) { optE.lr = 0.05; optC.lr = 0.05; }
      le.push(makemoreStep(eager, optE, xb, yb));
      lc.push(await step(xb, yb));
    }
    await expectSameLosses(lc, le, `makemore [${device}]`);
    expect(step.traces).toBeLessThanOrEqual(2);
    await expectSameTensors(comp.namedParameters(), eager.namedParameters(), `makemore [${device}] after 24 steps`);
  }, timeoutFor(device));

  it('a tiny transformer (LayerNorm, causal attention, GELU, AdamW groups, clipGradNorm_): 20 steps', async () => {
    const cfg = { vocabSize: 11, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, device };
    kiln.manualSeed(3);
    const eager = new GPT(cfg);
    const comp = new GPT(cfg);
    comp.loadStateDict(eager.stateDict());
    const optE = configureOptimizers(eager, { lr: 3e-3, weightDecay: 0.1 });
    const optC = configureOptimizers(comp, { lr: 3e-3, weightDecay: 0.1 });
    expect(optC.paramGroups.map((pg) => pg.weightDecay)).toEqual([0.1, 0]);
    const step = kiln.compile((x: Tensor, y: Tensor) => gptStep(comp, optC, x, y, 0.5));
    const data = Int32Array.from({ length: 200 }, (_, i) => (i * 7 + (i >> 3)) % cfg.vocabSize);
    const g = new kiln.Generator().manualSeed(11);
    const le: Tensor[] = [], lc: Tensor[] = [];
    for (let i = 0; i < 20; i++) {
      const [x, y] = getBatch(data, cfg.blockSize, 3, g, device);
      le.push(gptStep(eager, optE, x, y, 0.5));
      lc.push(await step(x, y));
    }
    await expectSameLosses(lc, le, `transformer [${device}]`);
    expect(step.traces).toBeLessThanOrEqual(2);
    await expectSameTensors(comp.namedParameters(), eager.namedParameters(), `transformer [${device}] after 20 steps`);
  }, timeoutFor(device));

  it('BatchNorm1d + Linear: running statistics are updated inside compile exactly as eagerly (20 steps, then eval)', async () => {
    class Net extends nn.Module {
      fc1 = new nn.Linear(4, 6, { device });
      bn = new nn.BatchNorm1d(6, { device });
      fc2 = new nn.Linear(6, 3, { device });
      forward(x: Tensor): Tensor { return this.fc2.forward(F.relu(this.bn.forward(this.fc1.forward(x)))); }
    }
    kiln.manualSeed(5);
    const eager = new Net(), comp = new Net();
    comp.loadStateDict(eager.stateDict());
    const optE = new optim.SGD(eager.parameters(), { lr: 0.05, momentum: 0.9 });
    const optC = new optim.SGD(comp.parameters(), { lr: 0.05, momentum: 0.9 });
    const body = (m: Net, opt: kiln.optim.Optimizer, x: Tensor, y: Tensor): Tensor => {
      const loss = F.crossEntropy(m.forward(x), y);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss;
    };
    const step = kiln.compile((x: Tensor, y: Tensor) => body(comp, optC, x, y));
    const g = new kiln.Generator().manualSeed(9);
    const le: Tensor[] = [], lc: Tensor[] = [];
    for (let i = 0; i < 20; i++) {
      const x = kiln.randn([8, 4], { generator: g, device }), y = kiln.randint(0, 3, [8], { generator: g, device });
      le.push(body(eager, optE, x, y));
      lc.push(await step(x, y));
    }
    await expectSameLosses(lc, le, `batchnorm [${device}]`);
    await expectSameTensors(comp.namedBuffers(), eager.namedBuffers(), `batchnorm [${device}] buffers`);
    expect(await comp.bn.numBatchesTracked!.item()).toBe(20);
    await expectSameTensors(comp.namedParameters(), eager.namedParameters(), `batchnorm [${device}] parameters`);
    // eval mode (a new trace: the training flag is guarded) uses the running statistics
    eager.eval(); comp.eval();
    const xe = kiln.randn([5, 4], { generator: g, device });
    const evalStep = kiln.compile((x: Tensor) => comp.forward(x));
    const ye = await values(kiln.noGrad(() => eager.forward(xe)));
    expectValues(await values(await kiln.noGrad(() => evalStep(xe))), ye, { rtol: RTOL, atol: 1e-5 }, `batchnorm [${device}] eval output`);
  }, timeoutFor(device));
});
