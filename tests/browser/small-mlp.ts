// A small compiled training step that tests/browser.test.ts runs twice: in Node on the CPU and in
// Chromium on WebGPU (bundled against /kiln.js), to compare the losses.
import * as kiln from '../../index.ts';
import type { Tensor } from '../../index.ts';

/** The losses of `steps` compiled SGD-with-momentum steps of an 8-16-3 MLP on fixed random data. */
export async function trainSmall(device: 'cpu' | 'webgpu', steps = 6): Promise<number[]> {
  if (device === 'webgpu') await kiln.webgpu.init();
  kiln.manualSeed(0);
  const { nn, F, optim } = kiln;
  const model = new nn.Sequential(new nn.Linear(8, 16), new nn.ReLU(), new nn.Linear(16, 3)).to(device);
  const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  const x = kiln.randn([32, 8]).to(device);
  const y = kiln.randint(0, 3, [32]).to(device);
  const step = kiln.compile((xb: Tensor, yb: Tensor) => {
    const loss = F.crossEntropy(model.forward(xb), yb);
    loss.backward();
    opt.step();
    opt.zeroGrad();
    return loss;
  });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) losses.push(await (await step(x, y)).item());
  return losses;
}
